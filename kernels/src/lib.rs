//! p2law-kernels: the compute that pruning needs, as CubeCL kernels on burn's wgpu tensors
//! ([`gpu`]), each beside a plain CPU reference ([`reference`]) that the tests hold it to; and
//! the fused operations that training the lab's decoder needs ([`fused`]: RMSNorm, SwiGLU,
//! rotary causal attention, cross-entropy, each with its own backward pass), fast on burn's CPU
//! backend, with burn's own tensor ops as the general path elsewhere.
//!
//! Layout: a weight is `rows × cols` in row-major order with one row per *output* and one column
//! per *input* (PyTorch's and Hugging Face's layout). N:M groups are `m` consecutive inputs of
//! one row.

pub mod adapter;
pub mod fused;
pub mod gpu;
pub mod reference;

/// A shape the computation cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("{n}:{m} needs 0 < n < m")]
    Pattern { n: usize, m: usize },
    #[error("the input width {cols} is not a multiple of m = {m}")]
    Ragged { cols: usize, m: usize },
    #[error("{what}: expected {expected} values, got {got}")]
    Length { what: &'static str, expected: usize, got: usize },
    #[error("empty tensor ({rows} × {cols})")]
    Empty { rows: usize, cols: usize },
    #[error("m = {m}: a group is ranked in registers, so the kernels take m ≤ {max}")]
    GroupTooWide { m: usize, max: usize },
}
