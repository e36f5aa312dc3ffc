//! The calibration lab: built-in Llama-style models in burn, and their post-training. Pruning,
//! jobs and sweeps build on these (see the calibration-lab issue).

pub mod model;
pub mod train;
