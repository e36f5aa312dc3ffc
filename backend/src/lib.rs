//! p2law-backend: the `p2law` command line (and, with later issues, the axum service, the store
//! and the calibration lab).
//!
//! - [`cli`]: `convert`, `fit`, `predict`, `budget`; flags parsed by clap, then resolved and
//!   validated before anything runs.

pub mod cli;
