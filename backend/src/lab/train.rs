//! Post-training, written out by hand: the learning rate from a pure function of the step,
//! forward, loss, backward, AdamW step, and held-out loss at the checkpoints asked for.

use super::model::Llama;
use super::prune::sparse::{Masks, apply};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// A post-training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch: usize,
    /// Micro-batches whose gradients make one optimizer step.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Tokens per sequence (the model sees `seq_len`, predicts the next of each).
    pub seq_len: usize,
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub seed: u64,
}

fn one() -> usize {
    1
}

impl TrainConfig {
    /// Tokens consumed by one optimizer step.
    pub fn tokens_per_step(&self) -> u64 {
        (self.batch * self.grad_accum * self.seq_len) as u64
    }

    /// [`lr_at`]'s schedule in tokens, relative to the peak, as a forecast follows it.
    pub fn schedule(&self) -> p2law_shared::forecast::schedule::Shape {
        super::study::recipe(self).schedule()
    }
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
pub fn windows(data: &[u32], len: usize, count: usize, rng: &mut impl Rng) -> Vec<i64> {
    let mut out = Vec::with_capacity(len * count);
    for _ in 0..count {
        let start = rng.random_range(0..=data.len() - len);
        out.extend(data[start..start + len].iter().map(|&t| i64::from(t)));
    }
    out
}

fn batch(ids: Vec<i64>, rows: usize, len: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(ids, [rows, len]), device)
}

/// Mean held-out loss (nats/token) over fixed, evenly spaced windows of `held_out`, evaluated in
/// batches of at most 16 windows.
pub fn evaluate(model: &Llama, held_out: &[u32], seq_len: usize, windows: usize) -> f64 {
    let model = model.valid();
    let device = model.embed.weight.val().device();
    let len = seq_len + 1;
    let stride = ((held_out.len() - len) / windows.max(1)).max(1);
    let starts: Vec<usize> = (0..windows).map(|w| w * stride).collect();
    let mut sum = 0.0;
    for chunk in starts.chunks(16) {
        let ids: Vec<i64> = chunk.iter().flat_map(|&s| held_out[s..s + len].iter().map(|&t| i64::from(t))).collect();
        let loss = model.loss(batch(ids, chunk.len(), len, &device));
        sum += f64::from(loss.into_scalar::<f32>()) * chunk.len() as f64;
    }
    sum / windows as f64
}

/// The optimizer steps after which to evaluate: `count` log-spaced steps ending at `steps`
/// (step 0, before any training, is always evaluated by the caller).
pub fn log_spaced_steps(steps: usize, count: usize) -> Vec<usize> {
    let mut out: Vec<usize> = (1..=count).map(|k| (steps as f64).powf(k as f64 / count as f64).round() as usize).collect();
    out.retain(|&s| s >= 1);
    out.dedup();
    out
}

/// `count` log-spaced steps from step 1 to `steps`, both included (fewer when rounding makes
/// two equal).
pub fn log_spaced_from_one(steps: usize, count: usize) -> Vec<usize> {
    let last = count.saturating_sub(1).max(1) as f64;
    let mut out: Vec<usize> = (0..count).map(|k| ((steps as f64).powf(k as f64 / last).round() as usize).clamp(1, steps.max(1))).collect();
    out.dedup();
    out
}

/// What the per-step callback tells the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Where a (resumed) run starts: the optimizer state and the steps already taken.
pub struct Resume {
    pub optim: ModuleOptimizer,
    pub step: usize,
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resume").field("step", &self.step).finish_non_exhaustive()
    }
}

/// Trains `model` from `start` (step and optimizer; fresh AdamW when `None`) to `cfg.steps` on
/// random windows of `train` (the windows of step `s` depend only on the seed and `s`, so a
/// resumed run sees the same data). With `masks`, they are re-applied after every step. After
/// each step, `on_step(step, tokens_seen, &model, &optim)` may stop the run.
pub fn train(
    mut model: Llama,
    masks: Option<&Masks>,
    train: &[u32],
    cfg: &TrainConfig,
    device: &Device,
    start: Option<Resume>,
    mut on_step: impl FnMut(usize, u64, &Llama, &ModuleOptimizer) -> Control,
) -> (Llama, ModuleOptimizer, usize) {
    let (mut optim, first) = match start {
        Some(r) => (r.optim, r.step),
        None => (AdamWConfig::new().with_weight_decay(cfg.weight_decay as f32).init(), 0),
    };
    p2law_alloc::keep_freed_memory();
    let len = cfg.seq_len + 1;
    let mut done = first;
    for step in first..cfg.steps {
        let lr = lr_at(step, cfg.steps, cfg.warmup_steps, cfg.peak_lr, cfg.min_lr);
        let mut rng = rand_pcg::Pcg64::seed_from_u64(cfg.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut acc = GradientsAccumulator::new();
        for _ in 0..cfg.grad_accum {
            let tokens = batch(windows(train, len, cfg.batch, &mut rng), cfg.batch, len, device);
            let loss = model.loss(tokens) / cfg.grad_accum as f64;
            acc.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
        }
        model = optim.step(lr, model, acc.grads());
        if let Some(m) = masks {
            model = apply(model, m);
        }
        done = step + 1;
        if on_step(done, done as u64 * cfg.tokens_per_step(), &model, &optim) == Control::Stop {
            break;
        }
    }
    (model, optim, done)
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

    /// The schedule a forecast follows is the one the optimizer steps by: its rate at the end of
    /// each step's tokens is `lr_at` over the peak, within the step's resolution.
    #[test]
    fn the_forecast_schedule_is_the_optimizer_s() {
        let cfg = TrainConfig { steps: 1000, batch: 4, grad_accum: 2, seq_len: 16, peak_lr: 2e-3, min_lr: 1e-4, warmup_steps: 50, weight_decay: 0.0, seed: 0 };
        let s = cfg.schedule();
        let tps = cfg.tokens_per_step() as f64;
        assert_eq!(s.total, 1000.0 * 128.0);
        for step in [0usize, 25, 49, 50, 200, 500, 800, 999] {
            let want = lr_at(step, cfg.steps, cfg.warmup_steps, cfg.peak_lr, cfg.min_lr) / cfg.peak_lr;
            let got = s.rate((step + 1) as f64 * tps);
            assert!((got - want).abs() < 0.005, "step {step}: schedule {got}, optimizer {want}");
        }
    }

    #[test]
    fn checkpoints_from_the_first_step_span_three_decades() {
        let s = log_spaced_from_one(1024, 16);
        assert_eq!(s, vec![1, 2, 3, 4, 6, 10, 16, 25, 40, 64, 102, 161, 256, 406, 645, 1024]);
    }

    /// Real burn training on the flex CPU backend lowers the held-out loss of a small model on
    /// real text (a licence file of the external data).
    #[test]
    fn training_lowers_held_out_loss() {
        let text: Vec<u32> = include_bytes!("../../../shared/data/external/colpret_LICENSE.txt").repeat(4).into_iter().map(u32::from).collect();
        let (train_text, held_out) = text.split_at(text.len() * 9 / 10);
        let device = Device::flex().autodiff();
        let shape = crate::lab::model::tests::tiny(true);
        let model = Llama::new(&shape, &ModelOptions { max_seq_len: 64, ..Default::default() }, &device);
        let before = evaluate(&model, held_out, 32, 8);
        let cfg = TrainConfig { steps: 60, batch: 8, grad_accum: 1, seq_len: 32, peak_lr: 3e-3, min_lr: 3e-4, warmup_steps: 5, weight_decay: 0.01, seed: 1 };
        let (model, _, _) = train(model, None, train_text, &cfg, &device, None, |_, _, _, _| Control::Continue);
        let after = evaluate(&model, held_out, 32, 8);
        // A byte-level model starts near ln 256 = 5.55 nats.
        assert!(before > 5.0, "{before}");
        assert!(after < before - 1.0, "held-out loss {before} -> {after}");
    }
}
