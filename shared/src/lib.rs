//! p2law-shared: the pure-Rust core of p2law, built unchanged for native targets and for
//! `wasm32-unknown-unknown` (the browser runs this same code).
//!
//! - [`api`]: request and response types of the HTTP API;
//! - [`law`]: the law forms (P² and its ablations, Chinchilla, the sparsity law), with analytic
//!   gradients and initial grids;
//! - [`data`]: loss curves and input errors that name file, line and field;
//! - [`logs`]: parsers for real run logs and p2law's canonical curve CSV / JSONL;
//! - [`forecast`]: one run's own partial log forecast, with warnings and a validation;
//! - [`fit`]: multi-start Levenberg–Marquardt and Huber-on-log L-BFGS fitting, with metrics;
//! - [`validate`]: the held-out protocols (`last20`, `largest-n0`, `highest-rho`);
//! - [`bootstrap`]: seeded bootstrap intervals for coefficients, predictions and budgets;
//! - [`budget`]: token-budget rules and their cost;
//! - [`report`]: the fit file (JSON) that `predict`, `budget` and the browser read;
//! - [`models`]: published model shapes and their exact parameter counts;
//! - [`plot`]: the one SVG renderer of loss curves and fits (pages and CLI);
//! - [`presets`]: fits p2law made itself, shipped with their provenance;
//! - [`study`]: the P² study's family, grid, manifest and data;
//! - `fuzz` (native only): the seeded fuzzer every parser's tests run.

pub mod api;
pub mod bootstrap;
pub mod calibrate;
pub mod budget;
pub mod data;
pub mod fit;
pub mod forecast;
#[cfg(not(target_arch = "wasm32"))]
pub mod fuzz;
pub mod law;
pub mod logs;
pub mod models;
pub mod plot;
pub mod presets;
pub mod report;
pub mod study;
pub mod validate;

pub use data::{Curve, CurvePoint, InputError, Location};
pub use fit::{FitError, FitOptions, FitResult, Objective, Starts, fit};
pub use law::{Inputs, LawForm};
pub use report::FitReport;
