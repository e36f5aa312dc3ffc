//! Post-training, written out by hand: the learning rate from a pure function of the step,
//! forward, loss, backward, AdamW step, and held-out loss at the checkpoints asked for.

use super::model::Llama;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use rand::{Rng, SeedableRng};

/// A post-training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub steps: usize,
    pub batch: usize,
    /// Tokens per sequence (the model sees `seq_len`, predicts the next of each).
    pub seq_len: usize,
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub seed: u64,
}

/// Linear warm-up to `peak`, then cosine decay to `min` at `total`.
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64, min: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    min + 0.5 * (peak - min) * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

/// `count` windows of `len` tokens from `data`, starting at seeded random offsets.
pub fn windows(data: &[u8], len: usize, count: usize, rng: &mut impl Rng) -> Vec<i64> {
    let mut out = Vec::with_capacity(len * count);
    for _ in 0..count {
        let start = rng.random_range(0..=data.len() - len);
        out.extend(data[start..start + len].iter().map(|&b| i64::from(b)));
    }
    out
}

fn batch(ids: Vec<i64>, rows: usize, len: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(ids, [rows, len]), device)
}

/// Mean held-out loss (nats/token) over fixed, evenly spaced windows of `held_out`.
pub fn evaluate(model: &Llama, held_out: &[u8], seq_len: usize, windows: usize, device: &Device) -> f64 {
    let model = model.valid();
    let len = seq_len + 1;
    let stride = ((held_out.len() - len) / windows.max(1)).max(1);
    let ids: Vec<i64> = (0..windows).flat_map(|w| held_out[w * stride..w * stride + len].iter().map(|&b| i64::from(b))).collect();
    let loss = model.loss(batch(ids, windows, len, device));
    f64::from(loss.into_scalar::<f32>())
}

/// Trains `model` for `cfg.steps` steps on random windows of `train`; after each step, calls
/// `checkpoint(step, tokens_seen, &model)` so the caller can evaluate when it wants.
pub fn train(mut model: Llama, train: &[u8], cfg: &TrainConfig, device: &Device, mut checkpoint: impl FnMut(usize, u64, &Llama)) -> Llama {
    let mut optim = AdamWConfig::new().with_weight_decay(cfg.weight_decay as f32).init();
    let mut rng = rand_pcg::Pcg64::seed_from_u64(cfg.seed);
    let len = cfg.seq_len + 1;
    for step in 0..cfg.steps {
        let lr = lr_at(step, cfg.steps, cfg.warmup_steps, cfg.peak_lr, cfg.min_lr);
        let tokens = batch(windows(train, len, cfg.batch, &mut rng), cfg.batch, len, device);
        let loss = model.loss(tokens);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        checkpoint(step + 1, ((step + 1) * cfg.batch * cfg.seq_len) as u64, &model);
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::model::ModelOptions;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        assert!((lr_at(0, 100, 10, 1e-3, 1e-4) - 1e-4).abs() < 1e-12);
        assert!((lr_at(9, 100, 10, 1e-3, 1e-4) - 1e-3).abs() < 1e-12);
        assert!((lr_at(55, 100, 10, 1e-3, 1e-4) - 5.5e-4).abs() < 1e-12);
        assert!((lr_at(100, 100, 10, 1e-3, 1e-4) - 1e-4).abs() < 1e-12);
    }

    /// Real burn training on the flex CPU backend lowers the held-out loss of a small model on
    /// real text (a licence file of the external data).
    #[test]
    fn training_lowers_held_out_loss() {
        let text = include_bytes!("../../../shared/data/external/colpret_LICENSE.txt").repeat(4);
        let (train_text, held_out) = text.split_at(text.len() * 9 / 10);
        let device = Device::flex().autodiff();
        let shape = crate::lab::model::tests::tiny(true);
        let model = Llama::new(&shape, &ModelOptions { max_seq_len: 64, ..Default::default() }, &device);
        let before = evaluate(&model, held_out, 32, 8, &device);
        let cfg = TrainConfig { steps: 60, batch: 8, seq_len: 32, peak_lr: 3e-3, min_lr: 3e-4, warmup_steps: 5, weight_decay: 0.01, seed: 1 };
        let model = train(model, train_text, &cfg, &device, |_, _, _| {});
        let after = evaluate(&model, held_out, 32, 8, &device);
        // A byte-level model starts near ln 256 = 5.55 nats.
        assert!(before > 5.0, "{before}");
        assert!(after < before - 1.0, "held-out loss {before} -> {after}");
    }
}
