//! N:M semi-structured sparsity (2:4 by default) by Wanda scores `|W_ij| · ‖X_j‖`: in every
//! output row of every decoder linear (`q k v o gate up down`; embeddings and head excluded), keep
//! the `n` highest-scoring of each `m` consecutive input weights. The model stays dense with zeros;
//! the masks are kept and re-applied after every optimizer step. On wgpu, scoring, selection and
//! masking are one CubeCL kernel pass per linear and the re-masking after each step another, in
//! place; elsewhere, the CPU reference of `p2law-kernels` and burn ops. Both give the same masks
//! and bit-identical weights (ties go to the lower input index; dropped weights are `+0.0`).

use super::calib::LayerStats;
use super::{Compute, PruneError, Pruned, host};
use crate::lab::model::{Block, Llama};
use burn::nn::Linear;
use burn::prelude::*;
use p2law_kernels::{gpu, reference};
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

/// Prunes every decoder linear to `n:m`, with the kernels on wgpu and the reference elsewhere.
pub fn prune(model: Llama, shape: &DecoderShape, stats: &[LayerStats], n: usize, m: usize) -> Result<Pruned, PruneError> {
    // Groups wider than the kernels rank in registers go to the reference.
    let compute = match Compute::for_device(&model.embed.weight.val().device()) {
        Compute::Kernels if m > gpu::MAX_M => Compute::Reference,
        c => c,
    };
    prune_with(model, shape, stats, n, m, compute)
}

/// One linear's mask and pruned weight (both `[d_input, d_output]`), and how many it dropped.
fn mask_one(w: &Tensor<2>, norms: &[f64], n: usize, m: usize, compute: Compute) -> Result<(Tensor<2>, Tensor<2>, u64), PruneError> {
    let [d_in, d_out] = w.dims();
    let device = w.device();
    let pattern = PruneError::Pattern { n, m, width: d_in };
    let norms: Vec<f32> = norms.iter().map(|s| s.sqrt() as f32).collect();
    match compute {
        Compute::Kernels => {
            // The kernel sees the weight as [out, in] through a transposed view, no copy.
            let norms = Tensor::<1>::from_floats(norms.as_slice(), &device).inner();
            let (mask, pruned) = gpu::wanda_nm(&w.clone().transpose(), &norms, n, m).map_err(|e| match e {
                gpu::KernelError::Shape(_) => pattern,
                other => PruneError::Kernel(other.to_string()),
            })?;
            // Ranks within a group are a permutation, so exactly `m - n` of every `m` are dropped.
            Ok((mask.transpose(), pruned.transpose(), (d_in * d_out / m * (m - n)) as u64))
        }
        Compute::Reference => {
            // burn stores [in, out]; the reference takes one row per output.
            let rows = host(&w.clone().transpose());
            let keep = reference::wanda_nm_mask(&rows, &norms, d_out, d_in, n, m).map_err(|_| pattern)?;
            let removed = keep.iter().filter(|k| !**k).count() as u64;
            let keep: Vec<f32> = keep.into_iter().map(|k| if k { 1.0 } else { 0.0 }).collect();
            let mask = Tensor::<2>::from_data(TensorData::new(keep, [d_out, d_in]), &device).inner().transpose();
            let pruned = zero_dropped(w.clone().inner(), &mask, Compute::Reference);
            Ok((mask, pruned, removed))
        }
    }
}

/// Prunes every decoder linear to `n:m` with the given compute.
pub fn prune_with(model: Llama, shape: &DecoderShape, stats: &[LayerStats], n: usize, m: usize, compute: Compute) -> Result<Pruned, PruneError> {
    let mut model = model;
    let blocks = std::mem::take(&mut model.blocks);
    let mut layers = Vec::with_capacity(blocks.len());
    let mut removed = 0u64;
    for (block, st) in blocks.into_iter().zip(stats) {
        let mut masks: Vec<Tensor<2>> = Vec::with_capacity(7);
        let mut failure = None;
        let block = map_linears(block, |i, linear| {
            if failure.is_some() {
                return linear;
            }
            match mask_one(&linear.weight.val(), input_sums(st, i), n, m, compute) {
                Ok((mask, pruned, dropped)) => {
                    removed += dropped;
                    masks.push(mask);
                    map_weight(linear, |_| pruned)
                }
                Err(e) => {
                    failure = Some(e);
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

/// `w` with the weights `mask` drops set to `+0.0`: one in-place kernel pass on wgpu, a masked
/// fill elsewhere (not a product, which would leave `-0.0` for negative weights).
fn zero_dropped(w: Tensor<2>, mask: &Tensor<2>, compute: Compute) -> Tensor<2> {
    if compute == Compute::Kernels {
        match gpu::apply_mask(w.clone(), mask) {
            Ok(t) => return t,
            Err(e) => tracing::warn!("masked update kernel: {e}; using burn ops"),
        }
    }
    w.mask_fill(mask.clone().equal_elem(0.0), 0.0)
}

/// Replaces a linear's weight by `f(weight)` (taken off the autodiff graph), keeping the
/// parameter (its id, so the optimizer's state stays attached) and making it a fresh leaf that
/// takes gradients when the old one did.
fn map_weight(linear: Linear, f: impl FnOnce(Tensor<2>) -> Tensor<2>) -> Linear {
    let Linear { weight, bias } = linear;
    let weight = weight.map(|w| {
        let (autodiff, tracked) = (w.is_autodiff(), w.is_require_grad());
        let value = f(w.inner());
        match (autodiff, tracked) {
            (true, true) => value.autodiff().require_grad(),
            (true, false) => value.autodiff(),
            _ => value,
        }
    });
    Linear { weight, bias }
}

/// Re-applies a mask to a linear's weight (after an optimizer step). The weight is handed to
/// the kernel by value, so on wgpu it is masked in place.
pub fn mask_linear(linear: Linear, mask: &Tensor<2>, compute: Compute) -> Linear {
    map_weight(linear, |w| zero_dropped(w, mask, compute))
}

/// Re-applies the masks (after an optimizer step): in place on wgpu, one kernel pass per linear.
pub fn apply(model: Llama, masks: &Masks) -> Llama {
    let compute = Compute::for_device(&model.embed.weight.val().device());
    apply_with(model, masks, compute)
}

/// [`apply`] with the given compute.
pub fn apply_with(model: Llama, masks: &Masks, compute: Compute) -> Llama {
    let mut model = model;
    let blocks = std::mem::take(&mut model.blocks);
    model.blocks = blocks.into_iter().zip(&masks.layers).map(|(b, layer)| map_linears(b, |i, l| mask_linear(l, &layer[i], compute))).collect();
    model
}

/// Checks every group of `m` inputs of every output of every decoder linear has exactly `n`
/// non-zero weights; the first offending linear is named.
pub fn check_pattern(model: &Llama, n: usize, m: usize) -> Result<(), PruneError> {
    for (l, b) in model.blocks.iter().enumerate() {
        for (i, linear) in linears(b).iter().enumerate() {
            let w = linear.weight.val();
            let [d_in, _] = w.dims();
            let rows = host(&w.transpose());
            for (r, row) in rows.chunks_exact(d_in).enumerate() {
                for (g, group) in row.chunks_exact(m).enumerate() {
                    let nz = group.iter().filter(|v| **v != 0.0).count();
                    if nz != n {
                        return Err(PruneError::Broken { layer: l, linear: i, output: r, group: g, nonzeros: nz, n });
                    }
                }
            }
        }
    }
    Ok(())
}
