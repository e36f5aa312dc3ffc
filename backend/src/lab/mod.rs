//! The calibration lab: built-in Llama-style models in burn, corpora, pruning (depth, width,
//! N:M), post-training, and sweeps that turn all of it into loss curves and a fitted law.

pub mod corpus;
pub mod device;
pub mod family;
pub mod hf;
pub mod model;
pub mod prune;
pub mod run;
pub mod study;
pub mod sweep;
pub mod train;

#[cfg(test)]
mod tests;
