//! Training recipes of the built-in parent family (`p2law_shared::calibrate::FAMILY`).

use super::train::TrainConfig;
pub use p2law_shared::calibrate::{FAMILY, Parent, parent};

/// Pretraining and post-training recipes.
pub trait Recipe {
    /// The pretraining run, `scale` × the parent's tokens.
    fn pretrain_config(&self, scale: f64, seed: u64) -> TrainConfig;
    /// A post-training run of `tokens` tokens: half the peak rate, 5% warm-up.
    fn post_train_config(&self, tokens: u64, seed: u64) -> TrainConfig;
}

impl Recipe for Parent {
    fn pretrain_config(&self, scale: f64, seed: u64) -> TrainConfig {
        let per_step = (self.batch * self.seq_len) as f64;
        let steps = ((self.pretrain_tokens as f64 * scale) / per_step).ceil().max(1.0) as usize;
        TrainConfig {
            steps,
            batch: self.batch,
            grad_accum: 1,
            seq_len: self.seq_len,
            peak_lr: self.peak_lr,
            min_lr: self.peak_lr / 10.0,
            warmup_steps: (steps / 20).max(1),
            weight_decay: 0.1,
            seed,
        }
    }

    fn post_train_config(&self, tokens: u64, seed: u64) -> TrainConfig {
        post_train(self.batch, self.seq_len, self.peak_lr / 2.0, self.peak_lr / 20.0, tokens, seed)
    }
}

/// A post-training run of `tokens` tokens in batches of `batch` windows of `seq_len`: warm-up
/// over the first 5% of steps to `peak_lr`, cosine decay to `min_lr`.
pub fn post_train(batch: usize, seq_len: usize, peak_lr: f64, min_lr: f64, tokens: u64, seed: u64) -> TrainConfig {
    let steps = tokens.div_ceil((batch * seq_len) as u64).max(1) as usize;
    TrainConfig { steps, batch, grad_accum: 1, seq_len, peak_lr, min_lr, warmup_steps: (steps / 20).max(1), weight_decay: 0.1, seed }
}
