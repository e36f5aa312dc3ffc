//! p2law-alloc: the allocator every p2law program runs on, and its setting for training.
//!
//! Training frees and reallocates the same activation sizes every step. glibc hands large blocks
//! back to the kernel and faults them in again (measured: a quarter of a step), so the programs
//! allocate through mimalloc ([`MiMalloc`], declared `#[global_allocator]` by the binaries'
//! crates). mimalloc in turn purges freed memory after `purge_delay` (1 s in the mimalloc 3 that
//! libmimalloc-sys builds): a training step frees its activations and allocates them again a few
//! hundred milliseconds later, and on p2-m every step still faulted about 1 700 pages back in for
//! the kernel to zero (`clear_page_erms`, 8 % of the cycles). [`keep_freed_memory`] turns purging
//! off for the process: its resident set stays at a step's peak, which every step reaches anyway.

pub use mimalloc::MiMalloc;

/// `mi_option_purge_delay` in `mimalloc.h` (the same position in its v2 and v3; the Rust
/// bindings name no constant for it). The test below checks its default, so a renumbering
/// upstream fails a test instead of setting another option.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The delay as mimalloc holds it now (milliseconds; -1: never purge).
pub fn purge_delay() -> i64 {
    // SAFETY: `mi_option_get` reads one of mimalloc's process-wide options; any option index in
    // range is valid and 15 is one (see `MI_OPTION_PURGE_DELAY`).
    #[allow(unsafe_code)]
    let v = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
    // `c_long` is 64 bits here, 32 on Windows.
    #[allow(clippy::useless_conversion)]
    i64::from(v)
}

/// Makes mimalloc keep the pages the process frees instead of returning them to the kernel
/// (once per process; `MIMALLOC_PURGE_DELAY`, when set, is left to rule).
pub fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: `mi_option_set` stores one of mimalloc's process-wide options (an atomic
            // store); -1 is a valid `purge_delay` ("no purging at all", mimalloc.h).
            #[allow(unsafe_code)]
            unsafe {
                libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1)
            };
        }
    });
}

#[cfg(test)]
mod tests {
    #[global_allocator]
    static ALLOCATOR: super::MiMalloc = super::MiMalloc;

    #[test]
    fn training_keeps_freed_memory() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            eprintln!("MIMALLOC_PURGE_DELAY is set: the option is the environment's, not checked");
            return;
        }
        // mimalloc 3's default purge delay: the option is the one it names.
        assert_eq!(super::purge_delay(), 1000, "option 15 is not mimalloc's purge_delay (default 1000 ms)");
        super::keep_freed_memory();
        assert_eq!(super::purge_delay(), -1);
        let v: Vec<u8> = vec![1; 1 << 24];
        assert_eq!(v.iter().map(|&b| usize::from(b)).sum::<usize>(), 1 << 24);
    }
}
