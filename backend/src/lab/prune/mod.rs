//! Pruning to a target fraction `rho` of total parameters, one file per method. Each reports
//! the fraction it actually removed, exactly, from parameter counts.
//!
//! - [`depth`]: drop whole decoder layers, lowest block influence first (ShortGPT).
//! - [`width`]: drop key/value groups (with their query heads) and MLP channels by activation
//!   importance; the result is a smaller dense model with an updated shape.
//! - [`sparse`]: N:M semi-structured sparsity (2:4 by default) by Wanda scores `|W|·‖X‖`; the
//!   mask is kept and re-applied after every optimizer step.

pub mod calib;
pub mod depth;
pub mod sparse;
pub mod width;

use crate::lab::model::Llama;
use burn::prelude::*;
use p2law_shared::models::DecoderShape;

/// Where pruning's own compute runs (the ranking, the masks, the block influence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compute {
    /// The CubeCL kernels of `p2law-kernels`, on the model's wgpu tensors.
    Kernels,
    /// The CPU references of `p2law-kernels` and burn tensor ops: any device.
    Reference,
}

impl Compute {
    /// The kernels on a wgpu device, the references elsewhere.
    pub fn for_device(device: &Device) -> Self {
        if p2law_kernels::gpu::is_wgpu(device) { Self::Kernels } else { Self::Reference }
    }
}

/// Why pruning could not reach its target.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PruneError {
    #[error("rho = {rho} is outside (0, 1)")]
    Rate { rho: f64 },
    #[error("{method}: {message}")]
    Unreachable { method: &'static str, message: String },
    #[error("{n}:{m} sparsity needs 0 < n < m and every linear's input width ({width}) a multiple of m")]
    Pattern { n: usize, m: usize, width: usize },
    #[error("kernel: {0}")]
    Kernel(String),
    /// A mask that does not hold its N:M pattern after training (the first offending group).
    #[error("layer {layer} linear {linear} output {output} group {group}: {nonzeros} non-zeros, expected {n}")]
    Broken { layer: usize, linear: usize, output: usize, group: usize, nonzeros: usize, n: usize },
    #[error("cancelled")]
    Cancelled,
}

pub(crate) fn check_rate(rho: f64) -> Result<(), PruneError> {
    if rho > 0.0 && rho < 1.0 { Ok(()) } else { Err(PruneError::Rate { rho }) }
}

/// A pruned model and what was done to it.
#[derive(Debug)]
pub struct Pruned {
    pub model: Llama,
    /// The shape of the pruned model (for sparsity, the dense shape it is stored in).
    pub shape: DecoderShape,
    /// Parameters removed (set to zero, for sparsity) over the parent's parameters.
    pub rho: f64,
    pub removed: u64,
    /// For sparsity, the masks to re-apply after every step.
    pub masks: Option<sparse::Masks>,
    /// What was removed, for the record (layers, groups and channels kept, ...).
    pub detail: String,
}

pub(crate) fn host<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.clone().into_data().iter::<f32>().collect()
}
