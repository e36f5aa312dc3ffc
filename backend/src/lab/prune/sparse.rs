//! N:M semi-structured sparsity (2:4 by default) by Wanda scores `|W_ij| · ‖X_j‖`: in every
//! output row of every decoder linear (`q k v o gate up down`; embeddings and head excluded), keep
//! the `n` highest-scoring of each `m` consecutive input weights. The model stays dense with zeros;
//! the masks are kept and re-applied after every optimizer step. Selection is the CPU reference
//! of `p2law-kernels` (ties go to the lower input index).

use super::calib::LayerStats;
use super::{PruneError, Pruned, host};
use crate::lab::model::{Block, Llama};
use burn::nn::Linear;
use burn::prelude::*;
use p2law_kernels::reference;
use p2law_shared::models::DecoderShape;

/// One mask per decoder linear, `[d_input, d_output]` like burn's weights, 1 = kept.
#[derive(Debug, Clone)]
pub struct Masks {
    pub n: usize,
    pub m: usize,
    pub layers: Vec<[Tensor<2>; 7]>,
}

/// The seven linears of a block, in a fixed order.
pub fn linears(b: &Block) -> [&Linear; 7] {
    [&b.attn.q, &b.attn.k, &b.attn.v, &b.attn.o, &b.mlp.gate, &b.mlp.up, &b.mlp.down]
}

/// Rebuilds a block with each linear mapped by `f(index, linear)`.
pub fn map_linears(b: Block, mut f: impl FnMut(usize, Linear) -> Linear) -> Block {
    let Block { attn_norm, attn, mlp_norm, mlp } = b;
    let attn = crate::lab::model::Attention { q: f(0, attn.q), k: f(1, attn.k), v: f(2, attn.v), o: f(3, attn.o), ..attn };
    let mlp = crate::lab::model::Mlp { gate: f(4, mlp.gate), up: f(5, mlp.up), down: f(6, mlp.down) };
    Block { attn_norm, attn, mlp_norm, mlp }
}

fn input_sums(st: &LayerStats, which: usize) -> &[f64] {
    match which {
        0..=2 => &st.attn_in,
        3 => &st.o_in,
        4 | 5 => &st.mlp_in,
        _ => &st.down_in,
    }
}

/// Prunes every decoder linear to `n:m`.
pub fn prune(model: Llama, shape: &DecoderShape, stats: &[LayerStats], n: usize, m: usize) -> Result<Pruned, PruneError> {
    let mut model = model;
    let blocks = std::mem::take(&mut model.blocks);
    let mut layers = Vec::with_capacity(blocks.len());
    let mut removed = 0u64;
    for (block, st) in blocks.into_iter().zip(stats) {
        let mut masks: Vec<Tensor<2>> = Vec::with_capacity(7);
        let mut failure = None;
        let block = map_linears(block, |i, linear| {
            let w = linear.weight.val();
            let [d_in, d_out] = w.dims();
            let device = w.device();
            // burn stores [in, out]; the reference takes one row per output.
            let rows = host(&w.clone().transpose());
            let norms: Vec<f32> = input_sums(st, i).iter().map(|s| s.sqrt() as f32).collect();
            match reference::wanda_nm_mask(&rows, &norms, d_out, d_in, n, m) {
                Ok(mask_rows) => {
                    removed += mask_rows.iter().filter(|k| !**k).count() as u64;
                    let mask_rows: Vec<f32> = mask_rows.into_iter().map(|k| if k { 1.0 } else { 0.0 }).collect();
                    let mask = Tensor::<2>::from_data(TensorData::new(mask_rows, [d_out, d_in]), &device).transpose();
                    masks.push(mask.clone());
                    mask_linear(linear, &mask)
                }
                Err(_) => {
                    failure.get_or_insert(PruneError::Pattern { n, m, width: d_in });
                    linear
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        model.blocks.push(block);
        let masks: [Tensor<2>; 7] = masks.try_into().map_err(|_| PruneError::Pattern { n, m, width: 0 })?;
        layers.push(masks);
    }
    let total = shape.parameters();
    Ok(Pruned {
        model,
        shape: *shape,
        rho: removed as f64 / total as f64,
        removed,
        masks: Some(Masks { n, m, layers }),
        detail: format!("{n}:{m} Wanda masks on the 7 linears of {} layers ({removed} weights zeroed)", shape.num_hidden_layers),
    })
}

/// Multiplies a linear's weight by a mask, keeping the parameter (its id, so the optimizer's
/// state stays attached) and making it a fresh leaf that takes gradients.
pub fn mask_linear(linear: Linear, mask: &Tensor<2>) -> Linear {
    let Linear { weight, bias } = linear;
    let weight = weight.map(|w| {
        let (autodiff, tracked) = (w.is_autodiff(), w.is_require_grad());
        // The product is taken off the autodiff graph, then made a leaf again.
        let masked = w.inner() * mask.clone().inner();
        match (autodiff, tracked) {
            (true, true) => masked.autodiff().require_grad(),
            (true, false) => masked.autodiff(),
            _ => masked,
        }
    });
    Linear { weight, bias }
}

/// Re-applies the masks (after an optimizer step).
pub fn apply(model: Llama, masks: &Masks) -> Llama {
    let mut model = model;
    let blocks = std::mem::take(&mut model.blocks);
    model.blocks = blocks.into_iter().zip(&masks.layers).map(|(b, layer)| map_linears(b, |i, l| mask_linear(l, &layer[i]))).collect();
    model
}

/// Checks every group of `m` inputs of every output of every decoder linear has exactly `n`
/// non-zero weights; the first offending linear is named.
pub fn check_pattern(model: &Llama, n: usize, m: usize) -> Result<(), String> {
    for (l, b) in model.blocks.iter().enumerate() {
        for (i, linear) in linears(b).iter().enumerate() {
            let w = linear.weight.val();
            let [d_in, d_out] = w.dims();
            let rows = host(&w.transpose());
            for (r, row) in rows.chunks_exact(d_in).enumerate() {
                for (g, group) in row.chunks_exact(m).enumerate() {
                    let nz = group.iter().filter(|v| **v != 0.0).count();
                    if nz != n {
                        return Err(format!("layer {l} linear {i} output {r} group {g}: {nz} non-zeros, expected {n} (d_out {d_out})"));
                    }
                }
            }
        }
    }
    Ok(())
}
