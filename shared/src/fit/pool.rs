//! The fitters' one parallel map: scoped threads on native targets, the calling thread in the
//! browser.

/// Maps `f` over `items`; on native targets across the machine's cores (the browser runs it
/// on its one thread).
pub(crate) fn par_map<T: Sync, R: Send>(threads: usize, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    #[cfg(target_arch = "wasm32")]
    let _ = threads;
    #[cfg(not(target_arch = "wasm32"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if threads == 0 { cores } else { threads }.min(items.len().max(1));
        if threads > 1 && items.len() >= 8 {
            let chunk = items.len().div_ceil(threads);
            let f = &f;
            return std::thread::scope(|s| {
                let handles: Vec<_> =
                    items.chunks(chunk).map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<_>>())).collect();
                // A worker that panicked takes the fit down with it: its items are not dropped
                // from the result as if they had never been asked for.
                handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
            });
        }
    }
    items.iter().map(f).collect()
}
