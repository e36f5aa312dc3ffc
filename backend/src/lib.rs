//! p2law-backend: the `p2law` command line (and, with later issues, the axum service, the store
//! and the calibration lab).
//!
//! - [`cli`]: `convert`, `fit`, `predict`, `budget`; flags parsed by clap, then resolved and
//!   validated before anything runs;
//! - [`lab`]: the calibration lab's burn models and post-training;
//! - [`server`]: the axum service (`app(state) -> Router`) serving the browser app and the API;
//! - [`store`]: the SQLite store (uploads, runs, fits, tokens);
//! - [`tensorboard`]: the TensorBoard event-file reader.

pub mod cli;
pub mod lab;
pub mod server;
pub mod store;
pub mod tensorboard;
