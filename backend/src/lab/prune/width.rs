//! Width pruning: remove whole key/value groups (a key head, a value head and the query heads
//! that share them, so grouped-query attention stays grouped) and MLP channels, ranked in each
//! layer by activation importance on calibration text:
//!
//! - a group's importance is the summed squared output of its query heads (the input of `o`);
//! - a channel's importance is the summed squared SwiGLU product (the input of `down`).
//!
//! Every layer loses the same number of groups and channels, so the result is a smaller dense
//! model whose shape is a valid `config.json`. Attention takes the target fraction rounded to
//! whole groups; channels make up the rest, to the nearest channel in every layer.

use super::calib::LayerStats;
use super::{PruneError, Pruned, check_rate};
use crate::lab::model::Llama;
use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use p2law_shared::models::DecoderShape;

/// Counts to remove from every layer: key/value groups and MLP channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub groups: u64,
    pub channels: u64,
}

/// Parameters of one key/value group (its query heads included) in one layer.
pub fn group_parameters(shape: &DecoderShape) -> u64 {
    let (h, hd) = (shape.hidden_size, shape.head_dim);
    let qpk = shape.num_attention_heads / shape.num_key_value_heads;
    let bias = if shape.attention_bias { qpk * hd + 2 * hd } else { 0 };
    h * qpk * hd + 2 * h * hd + qpk * hd * h + bias
}

/// The counts that bring the removed parameters nearest `rho` of the total.
pub fn plan(shape: &DecoderShape, rho: f64) -> Result<Plan, PruneError> {
    check_rate(rho)?;
    let (layers, kv, inter) = (shape.num_hidden_layers, shape.num_key_value_heads, shape.intermediate_size);
    let target = rho * shape.parameters() as f64;
    let (gp, cp) = (group_parameters(shape) as f64, 3.0 * shape.hidden_size as f64);
    let prunable = layers as f64 * (kv as f64 * gp + inter as f64 * cp);
    if target > prunable - layers as f64 * (gp + cp) {
        return Err(PruneError::Unreachable {
            method: "width",
            message: format!("rho = {rho} needs {target:.0} parameters but only {prunable:.0} sit in attention groups and MLP channels, and one of each must stay"),
        });
    }
    let share = target / prunable;
    let ideal = (share * kv as f64).round() as u64;
    // The nearest group count whose remainder the channels can absorb.
    let fits = |g: u64| {
        let rest = target - layers as f64 * g as f64 * gp;
        (rest >= -0.5 * layers as f64 * cp && g < kv).then(|| (rest / (layers as f64 * cp)).round().max(0.0) as u64).filter(|&c| c < inter)
    };
    let mut candidates: Vec<u64> = (0..kv).collect();
    candidates.sort_by_key(|&g| g.abs_diff(ideal));
    for g in candidates {
        if let Some(c) = fits(g) {
            return Ok(Plan { groups: g, channels: c });
        }
    }
    Err(PruneError::Unreachable { method: "width", message: format!("no group and channel counts reach rho = {rho}") })
}

/// The `keep` indices of largest score, in index order (ties: the lower index stays).
pub fn keep_top(scores: &[f64], keep: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut kept: Vec<usize> = order.into_iter().take(keep).collect();
    kept.sort_unstable();
    kept
}

fn index(ids: &[usize], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [ids.len()]), device)
}

/// Keeps input rows (`dim = 0`) or output columns (`dim = 1`, with the bias) of a linear.
fn select(linear: Linear, dim: usize, ids: &[usize]) -> Linear {
    let w = linear.weight.val();
    let device = w.device();
    let weight = Param::from_tensor(w.select(dim, index(ids, &device)).detach());
    let bias = match (linear.bias, dim) {
        (Some(b), 1) => Some(Param::from_tensor(b.val().select(0, index(ids, &device)).detach())),
        (b, _) => b,
    };
    Linear { weight, bias }
}

/// Removes groups and channels to reach `rho` of total parameters.
pub fn prune(model: Llama, shape: &DecoderShape, stats: &[LayerStats], rho: f64) -> Result<Pruned, PruneError> {
    let p = plan(shape, rho)?;
    let (kv, hd) = (shape.num_key_value_heads as usize, shape.head_dim as usize);
    let qpk = shape.num_attention_heads as usize / kv;
    let keep_groups = kv - p.groups as usize;
    let keep_channels = (shape.intermediate_size - p.channels) as usize;
    let mut model = model;
    let blocks = std::mem::take(&mut model.blocks);
    let mut kept_log = Vec::new();
    for (mut block, st) in blocks.into_iter().zip(stats) {
        let group_score: Vec<f64> = (0..kv).map(|g| st.o_in[g * qpk * hd..(g + 1) * qpk * hd].iter().sum()).collect();
        let groups = keep_top(&group_score, keep_groups);
        let channels = keep_top(&st.down_in, keep_channels);
        let q_cols: Vec<usize> = groups.iter().flat_map(|&g| g * qpk * hd..(g + 1) * qpk * hd).collect();
        let kv_cols: Vec<usize> = groups.iter().flat_map(|&g| g * hd..(g + 1) * hd).collect();
        let a = block.attn;
        block.attn = crate::lab::model::Attention {
            q: select(a.q, 1, &q_cols),
            k: select(a.k, 1, &kv_cols),
            v: select(a.v, 1, &kv_cols),
            o: select(a.o, 0, &q_cols),
            heads: keep_groups * qpk,
            kv_heads: keep_groups,
            head_dim: hd,
        };
        let m = block.mlp;
        block.mlp = crate::lab::model::Mlp { gate: select(m.gate, 1, &channels), up: select(m.up, 1, &channels), down: select(m.down, 0, &channels) };
        kept_log.push(format!("{groups:?}"));
        model.blocks.push(block);
    }
    let mut new_shape = *shape;
    new_shape.num_key_value_heads = keep_groups as u64;
    new_shape.num_attention_heads = (keep_groups * qpk) as u64;
    new_shape.intermediate_size = keep_channels as u64;
    let removed = shape.parameters() - new_shape.parameters();
    Ok(Pruned {
        model,
        shape: new_shape,
        rho: removed as f64 / shape.parameters() as f64,
        removed,
        masks: None,
        detail: format!(
            "removed {} of {kv} key/value groups and {} of {} MLP channels per layer; groups kept per layer {}",
            p.groups,
            p.channels,
            shape.intermediate_size,
            kept_log.join(" ")
        ),
    })
}
