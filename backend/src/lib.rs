//! p2law-backend: the `p2law` command line, the axum service, the store and the calibration lab.
//!
//! - [`cli`]: `convert`, `fit`, `predict`, `budget`; flags parsed by clap, then resolved and
//!   validated before anything runs;
//! - [`lab`]: the calibration lab: burn models, corpora, pruning, post-training, sweeps;
//! - [`server`]: the axum service (`app(state) -> Router`) serving the browser app and the API;
//! - [`store`]: the SQLite store (uploads, runs, fits, tokens);

/// Every program built on this crate (the `p2law` binary, its examples and tests) allocates
/// through mimalloc: training frees and reallocates the same activation sizes every step, which
/// glibc hands back to the kernel and faults in again (measured: a quarter of a step); training
/// also turns off mimalloc's own purging ([`p2law_alloc::keep_freed_memory`]).
#[global_allocator]
static ALLOCATOR: p2law_alloc::MiMalloc = p2law_alloc::MiMalloc;

pub mod cli;
pub mod lab;
pub mod server;
pub mod store;
pub mod worker;

/// Fault injection for the kill tests (`tests/tests/calibrate.rs`, `tests/tests/api.rs`): when
/// the environment variable `P2LAW_FAULT` names `point`, the process SIGKILLs itself there — no
/// destructors, no flushes, what the OOM killer or a power cut does. Points: `prune` (a unit just
/// pruned, nothing of it on disk), `checkpoint` (a checkpoint half written: its files in the
/// temporary directory, not yet renamed), `export` (a healed model's directory half written),
/// `upload` (an upload's rows inserted, the transaction not committed).
pub fn fault_point(point: &str) {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if FAULT.get_or_init(|| std::env::var("P2LAW_FAULT").ok()).as_deref() == Some(point) {
        eprintln!("P2LAW_FAULT: killing this process at `{point}`");
        // The shell's built-in `kill` (no procps needed); abort if even that fails.
        let _ = std::process::Command::new("sh").args(["-c", &format!("kill -KILL {}", std::process::id())]).status();
        std::process::abort();
    }
}

/// Test hook: with `P2LAW_SLOW=<phase>:<ms>` (`load`, `prune`, `export`), each step of that
/// phase (a layer loaded, a calibration batch, a tensor exported) first waits `ms` or until
/// `cancel` is set, so a test can cancel in the middle of a phase that is otherwise over in
/// milliseconds.
pub fn slow_point(phase: &str, cancel: &std::sync::atomic::AtomicBool) {
    static SLOW: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    let slow = SLOW.get_or_init(|| {
        let v = std::env::var("P2LAW_SLOW").ok()?;
        let (p, ms) = v.split_once(':')?;
        Some((p.to_string(), ms.parse().ok()?))
    });
    if let Some((p, ms)) = slow {
        if p == phase {
            let until = std::time::Instant::now() + std::time::Duration::from_millis(*ms);
            while std::time::Instant::now() < until && !cancel.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// Writes `contents` to `path` through a temporary file beside it and a rename, so a failed
/// write never leaves half a file behind.
pub fn write_atomic(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    write_synced(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Writes `contents` to `path` and fsyncs the file before returning.
pub fn write_synced(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Fsyncs a directory, so that the renames and creations in it survive a power cut.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
