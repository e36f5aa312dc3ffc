//! The general path: each fused operation in burn tensor ops, differentiated by burn's autodiff.
//! It runs wherever the fused path does not (wgpu, other dtypes, shapes the kernels refuse), and
//! it is what the tests hold the fused kernels to.

use burn::prelude::*;
use burn::tensor::activation::{silu, softmax};

/// RMSNorm as burn's `RmsNorm` computes it: `x / sqrt(mean(x²) + eps) · gamma`.
pub fn rms_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, eps: f64) -> Tensor<D> {
    let rms = (x.clone().square().mean_dim(D - 1) + eps).sqrt();
    (x / rms) * gamma.unsqueeze()
}

/// `silu(gate) · up`.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    silu(gate) * up
}

/// `x · cos + rotate_half(x) · sin` for `x: [batch, heads, seq, head_dim]`, tables `[≥ seq, head_dim]`.
pub fn rope(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<4> {
    let [_, _, seq, head_dim] = x.dims();
    let half = head_dim / 2;
    let cos = cos.clone().slice([0..seq, 0..head_dim]).unsqueeze::<4>();
    let sin = sin.clone().slice([0..seq, 0..head_dim]).unsqueeze::<4>();
    let first = x.clone().narrow(3, 0, half);
    let second = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![second.neg(), first], 3);
    x * cos + rotated * sin
}

/// Causal grouped-query attention with rotary embeddings on `q: [batch, seq, heads · d]`,
/// `k, v: [batch, seq, kv_heads · d]`; returns `[batch, seq, heads · d]`.
pub fn attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, cos: &Tensor<2>, sin: &Tensor<2>, heads: usize, kv_heads: usize) -> Tensor<3> {
    let [batch, seq, width] = q.dims();
    let hd = width / heads;
    // [batch, seq, heads * head_dim] -> [batch, heads, seq, head_dim]
    let q = q.reshape([batch, seq, heads, hd]).swap_dims(1, 2);
    let k = k.reshape([batch, seq, kv_heads, hd]).swap_dims(1, 2);
    let v = v.reshape([batch, seq, kv_heads, hd]).swap_dims(1, 2);
    let (q, k) = (rope(q, cos, sin), rope(k, cos, sin));
    // Each key/value head serves `heads / kv_heads` query heads.
    let repeat = |t: Tensor<4>| t.unsqueeze_dim::<5>(2).expand([batch, kv_heads, heads / kv_heads, seq, hd]).reshape([batch, heads, seq, hd]);
    let (k, v) = (repeat(k), repeat(v));
    let scores = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt(); // [batch, heads, seq, seq]
    let future = Tensor::<2, Bool>::tril_mask([seq, seq], 0, &scores.device()).unsqueeze::<4>();
    let weights = softmax(scores.mask_fill(future, f32::NEG_INFINITY), 3);
    weights.matmul(v).swap_dims(1, 2).reshape([batch, seq, heads * hd])
}

/// Mean cross-entropy, as burn's `CrossEntropyLoss` computes it.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    burn::nn::loss::CrossEntropyLossConfig::new().init(&logits.device()).forward(logits, targets)
}
