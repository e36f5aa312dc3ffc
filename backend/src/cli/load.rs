//! Reading curve files: the flags `convert` and `fit` share, resolved into [`LogOptions`]. Every
//! format is read here, TensorBoard event files included (by the backend's reader).

use anyhow::{Context, Result};
use p2law_shared::Curve;
use p2law_shared::logs::{Format, LogOptions, ParsedLog};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Input format; `auto` tells it from the content.
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Loss key or column (`eval_loss`, `loss`, `train/lm_loss`, ...); each format has a default.
    #[arg(long)]
    pub metric: Option<String>,
    /// Run name for single-run logs (default: the file name).
    #[arg(long)]
    pub run: Option<String>,
    /// Parameters before pruning, for logs that lack it.
    #[arg(long = "n0")]
    pub n0: Option<f64>,
    /// Pruning rate 0..1, for logs that lack it.
    #[arg(long, conflicts_with = "n")]
    pub rho: Option<f64>,
    /// Parameters after pruning (instead of --rho).
    #[arg(long)]
    pub n: Option<f64>,
    /// Loss of the unpruned model, for logs that lack it.
    #[arg(long)]
    pub l0: Option<f64>,
    /// Pruning method label (depth, width, 2:4, ...).
    #[arg(long)]
    pub method: Option<String>,
    /// Model family label.
    #[arg(long)]
    pub family: Option<String>,
    /// Tokens per optimizer step, for logs that count steps only.
    #[arg(long)]
    pub tokens_per_step: Option<f64>,
    /// Drop checkpoints before this many tokens (warm-up exclusion).
    #[arg(long)]
    pub skip_tokens: Option<f64>,
    /// Smooth each curve with an exponential moving average of this weight (0 < a <= 1).
    #[arg(long)]
    pub smooth: Option<f64>,
    /// Log files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

impl LoadArgs {
    fn options(&self) -> Result<LogOptions> {
        let positive = |name: &str, v: Option<f64>| -> Result<()> {
            if let Some(v) = v {
                anyhow::ensure!(v.is_finite() && v > 0.0, "--{name}: must be a positive number, got {v}");
            }
            Ok(())
        };
        positive("tokens-per-step", self.tokens_per_step)?;
        if let Some(s) = self.skip_tokens {
            anyhow::ensure!(s.is_finite() && s >= 0.0, "--skip-tokens: must be >= 0, got {s}");
        }
        if let Some(a) = self.smooth {
            anyhow::ensure!(a > 0.0 && a <= 1.0, "--smooth: must be in (0, 1], got {a}");
        }
        Ok(LogOptions {
            format: self.format,
            metric: self.metric.clone(),
            run: self.run.clone(),
            n0: self.n0,
            rho: self.rho,
            n: self.n,
            l0: self.l0,
            method: self.method.clone(),
            family: self.family.clone(),
            tokens_per_step: self.tokens_per_step,
            skip_tokens: self.skip_tokens,
            keep_non_finite: false,
        })
    }

    /// Parses every file; the first bad one stops everything with its file, line and field.
    pub fn load(&self) -> Result<(Vec<Curve>, Vec<ParsedLog>)> {
        let options = self.options()?;
        let mut curves = Vec::new();
        let mut logs = Vec::new();
        for path in &self.files {
            let name = path.display().to_string();
            let bytes = std::fs::read(path).with_context(|| format!("reading {name}"))?;
            let mut log = p2law_shared::logs::parse_bytes(&name, &bytes, &options)?;
            if let Some(a) = self.smooth {
                log.curves.iter_mut().for_each(|c| c.smooth_ema(a));
            }
            curves.extend(log.curves.iter().cloned());
            logs.push(log);
        }
        Ok((curves, logs))
    }
}
