//! Depth pruning: remove whole decoder layers, the least influential first (ShortGPT's block
//! influence, `1 - cos(x_in, x_out)` on calibration text). Every layer has the same parameter
//! count, so the number removed is the target rounded to the nearest layer.

use super::calib::LayerStats;
use super::{PruneError, Pruned, check_rate};
use crate::lab::model::Llama;
use p2law_shared::models::DecoderShape;

/// The layers to remove: `count` of them, lowest influence first (ties: the later layer).
pub fn choose(stats: &[LayerStats], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..stats.len()).collect();
    order.sort_by(|&a, &b| stats[a].influence.total_cmp(&stats[b].influence).then(b.cmp(&a)));
    let mut out: Vec<usize> = order.into_iter().take(count).collect();
    out.sort_unstable();
    out
}

/// Removes layers to reach `rho` of total parameters (nearest whole layer; at least one kept).
pub fn prune(model: Llama, shape: &DecoderShape, stats: &[LayerStats], rho: f64) -> Result<Pruned, PruneError> {
    check_rate(rho)?;
    let total = shape.parameters();
    let per_layer = shape.layer_parameters();
    let layers = shape.num_hidden_layers as usize;
    let count = ((rho * total as f64) / per_layer as f64).round() as usize;
    if count == 0 || count >= layers {
        return Err(PruneError::Unreachable {
            method: "depth",
            message: format!("rho = {rho} rounds to {count} of {layers} layers ({per_layer} parameters each, {total} in all)"),
        });
    }
    let drop = choose(stats, count);
    let mut model = model;
    let blocks = std::mem::take(&mut model.blocks);
    model.blocks = blocks.into_iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, b)| b).collect();
    let mut new_shape = *shape;
    new_shape.num_hidden_layers -= count as u64;
    let removed = count as u64 * per_layer;
    let influence: Vec<String> = stats.iter().map(|s| format!("{:.4}", s.influence)).collect();
    Ok(Pruned {
        model,
        shape: new_shape,
        rho: removed as f64 / total as f64,
        removed,
        masks: None,
        detail: format!("removed layers {drop:?} of {layers}; block influence [{}]", influence.join(", ")),
    })
}
