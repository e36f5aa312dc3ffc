//! Calibration statistics: one pass of the model over calibration windows, recording what each
//! pruning method ranks by.

use super::Compute;
use crate::lab::model::{Llama, rms};
use burn::prelude::*;
use p2law_kernels::gpu;

/// What one decoder layer showed on the calibration text.
#[derive(Debug, Clone, Default)]
pub struct LayerStats {
    /// Block influence (ShortGPT): `1 - mean cos(x_in, x_out)` over tokens.
    pub influence: f64,
    /// Per input column, the sum over tokens of the squared activation, for each linear's input:
    /// `q`/`k`/`v` (the attention norm's output), `o` (the heads' outputs), `gate`/`up` (the MLP
    /// norm's output) and `down` (the SwiGLU product).
    pub attn_in: Vec<f64>,
    pub o_in: Vec<f64>,
    pub mlp_in: Vec<f64>,
    pub down_in: Vec<f64>,
}

fn column_sumsq(x: &Tensor<3>) -> Vec<f64> {
    let [b, s, d] = x.dims();
    let sums = x.clone().reshape([b * s, d]).powi_scalar(2).sum_dim(0);
    sums.into_data().iter::<f32>().map(f64::from).collect()
}

fn add(into: &mut Vec<f64>, more: Vec<f64>) {
    if into.is_empty() {
        *into = more;
    } else {
        into.iter_mut().zip(more).for_each(|(a, b)| *a += b);
    }
}

/// Runs `model` (without gradients) over `windows` `[rows, seq]` of token ids and accumulates
/// per-layer statistics into `stats` (one entry per layer, created when empty). The block
/// influence is one CubeCL reduction per layer with [`Compute::Kernels`], burn ops otherwise.
pub fn accumulate(model: &Llama, tokens: Tensor<2, Int>, stats: &mut Vec<LayerStats>, token_count: &mut usize, compute: Compute) {
    let [rows, seq] = tokens.dims();
    if stats.is_empty() {
        stats.resize(model.blocks.len(), LayerStats::default());
    }
    let total_before = *token_count as f64;
    let n = (rows * seq) as f64;
    let mut x = model.embed.forward(tokens);
    for (block, st) in model.blocks.iter().zip(stats.iter_mut()) {
        let a_in = rms(&block.attn_norm, x.clone());
        let heads = block.attn.mix(a_in.clone(), &model.rope);
        let h = x.clone() + block.attn.o.forward(heads.clone());
        let m_in = rms(&block.mlp_norm, h.clone());
        let act = block.mlp.act(m_in.clone());
        let out = h + block.mlp.down.forward(act.clone());
        let cos_mean = mean_cosine(&x, &out, compute);
        // Running mean of the influence, weighted by tokens.
        st.influence = (st.influence * total_before + (1.0 - cos_mean) * n) / (total_before + n);
        add(&mut st.attn_in, column_sumsq(&a_in));
        add(&mut st.o_in, column_sumsq(&heads));
        add(&mut st.mlp_in, column_sumsq(&m_in));
        add(&mut st.down_in, column_sumsq(&act));
        x = out;
    }
    *token_count += rows * seq;
}

/// The mean over tokens of the cosine between each token's input and output hidden state.
fn mean_cosine(x: &Tensor<3>, out: &Tensor<3>, compute: Compute) -> f64 {
    let [b, s, d] = x.dims();
    if compute == Compute::Kernels {
        match gpu::block_influence(&x.clone().reshape([b * s, d]), &out.clone().reshape([b * s, d])) {
            Ok(influence) => return 1.0 - influence,
            Err(e) => tracing::warn!("block influence kernel: {e}; using burn ops"),
        }
    }
    let dot = (x.clone() * out.clone()).sum_dim(2);
    let norms = x.clone().powi_scalar(2).sum_dim(2).sqrt() * out.clone().powi_scalar(2).sum_dim(2).sqrt();
    f64::from((dot / norms.clamp_min(1e-12)).mean().into_scalar::<f32>())
}

/// Statistics over `count` evenly spaced windows of `seq` tokens from `data`, in batches of
/// `batch`, with the kernels on wgpu.
pub fn collect(model: &Llama, data: &[u32], seq: usize, count: usize, batch: usize) -> Vec<LayerStats> {
    let compute = Compute::for_device(&model.embed.weight.val().device());
    collect_with(model, data, seq, count, batch, compute)
}

/// [`collect`] with the given compute.
pub fn collect_with(model: &Llama, data: &[u32], seq: usize, count: usize, batch: usize, compute: Compute) -> Vec<LayerStats> {
    collect_until(model, data, seq, count, batch, compute, &std::sync::atomic::AtomicBool::new(false)).unwrap_or_default()
}

/// [`collect_with`], or `None` once `cancel` is set (checked before each batch of windows: the
/// statistics of a large parent are many forward passes).
pub fn collect_until(model: &Llama, data: &[u32], seq: usize, count: usize, batch: usize, compute: Compute, cancel: &std::sync::atomic::AtomicBool) -> Option<Vec<LayerStats>> {
    let model = model.valid();
    let device = &model.embed.weight.val().device();
    let mut stats = Vec::new();
    let mut tokens = 0;
    let stride = ((data.len() - seq) / count.max(1)).max(1);
    let starts: Vec<usize> = (0..count).map(|w| w * stride).collect();
    for chunk in starts.chunks(batch.max(1)) {
        crate::slow_point("prune", cancel);
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let ids: Vec<i64> = chunk.iter().flat_map(|&s| data[s..s + seq].iter().map(|&t| i64::from(t))).collect();
        let t = Tensor::<2, Int>::from_data(TensorData::new(ids, [chunk.len(), seq]), device);
        accumulate(&model, t, &mut stats, &mut tokens, compute);
    }
    Some(stats)
}
