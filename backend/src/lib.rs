//! p2law-backend: the `p2law` command line, the axum service, the store and the calibration lab.
//!
//! - [`cli`]: `convert`, `fit`, `predict`, `budget`; flags parsed by clap, then resolved and
//!   validated before anything runs;
//! - [`lab`]: the calibration lab: burn models, corpora, pruning, post-training, sweeps;
//! - [`server`]: the axum service (`app(state) -> Router`) serving the browser app and the API;
//! - [`store`]: the SQLite store (uploads, runs, fits, tokens);
//! - [`tensorboard`]: the TensorBoard event-file reader.

/// Every program built on this crate (the `p2law` binary, its examples and tests) allocates
/// through mimalloc: training frees and reallocates the same activation sizes every step, which
/// glibc hands back to the kernel and faults in again (measured: a quarter of a step).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod cli;
pub mod lab;
pub mod server;
pub mod store;
pub mod tensorboard;

/// Writes `contents` to `path` through a temporary file beside it and a rename, so a failed
/// write never leaves half a file behind.
pub fn write_atomic(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}
