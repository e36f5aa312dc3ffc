//! The `p2law` command line. Each subcommand is one file: its clap arguments, their resolution
//! into shared-crate options, and the output (an aligned table, or one JSON object with `--json`).

mod budget;
mod calibrate;
mod convert;
mod fit;
mod forecast;
mod gc;
mod load;
mod plot;
mod predict;
mod prune;
mod serve;
mod study;
mod study_report;
mod token;
mod watch;
mod worker;
mod table;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::Path;

/// Predict, fit and budget the post-training of pruned LLMs with the P² law.
#[derive(Debug, Parser)]
#[command(name = "p2law", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert run logs (HF trainer_state.json, W&B CSV, CSV/JSONL) to canonical curve CSV on stdout.
    Convert(convert::Args),
    /// Fit a law to loss curves; print the fit, optionally write it (--out) and plot it (--plot).
    Fit(fit::Args),
    /// Forecast one run from its own partial log: loss ahead with a band, when a rule is met,
    /// warnings (divergence, NaN, spikes, over-fitting); `--validate` scores the method.
    Forecast(forecast::Args),
    /// Follow a log while the run writes it, re-forecasting on every change.
    Watch(watch::Args),
    /// Predict the post-training loss curve from a fit file.
    Predict(predict::Args),
    /// Recommend a post-training token budget from a fit file, and cost it.
    Budget(budget::Args),
    /// Run a calibration sweep (pretrain, prune, post-train, fit) in this process.
    Calibrate(calibrate::Args),
    /// Prune a Hugging Face checkpoint (depth, width or N:M) and write it back in the same format.
    Prune(prune::Args),
    /// The P² study: make its data (`run`), or fit and analyse it (`report`).
    Study(study::Args),
    /// Serve the web app and its API.
    Serve(serve::Args),
    /// Run calibration units from a PostgreSQL database shared with `p2law serve --database`.
    Worker(worker::Args),
    /// Replace the API token of a data dir and print the new one.
    Token(token::Args),
    /// Remove what a data dir no longer needs: finished jobs' checkpoints, old caches and exports,
    /// temporary files, old progress events.
    Gc(gc::Args),
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Convert(a) => convert::run(a),
        Command::Fit(a) => fit::run(a),
        Command::Forecast(a) => forecast::run(a),
        Command::Watch(a) => watch::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Budget(a) => budget::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Prune(a) => prune::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Worker(a) => worker::run(a),
        Command::Study(a) => study::run(a),
        Command::Token(a) => token::run(a),
        Command::Gc(a) => gc::run(a),
    }
}

/// Writes `contents` to `path` through a temporary file and a rename, so a failed write never
/// leaves half a file behind.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    crate::write_atomic(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Reads a fit file written by `p2law fit --out` (or `--json`).
pub(crate) fn read_fit(path: &Path) -> Result<p2law_shared::FitReport> {
    // `preset:ID`: a shipped preset (`GET /api/presets` lists the same), with its provenance.
    if let Some(id) = path.to_str().and_then(|p| p.strip_prefix("preset:")) {
        return p2law_shared::presets::preset(id).map(|p| p.report).map_err(|e| anyhow::anyhow!("--fit preset:{id}: {e}"));
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading fit file {}", path.display()))?;
    let report: p2law_shared::FitReport =
        serde_json::from_str(&text).with_context(|| format!("{}: not a p2law fit file", path.display()))?;
    report.coefficients().with_context(|| path.display().to_string())?;
    Ok(report)
}

/// The warnings a prediction carries, one line each, before its figures: a degenerate fit, and
/// every input outside the data the fit was made from.
pub(crate) fn warn_fit(degenerate: Option<&str>, beyond: &[p2law_shared::report::Extrapolation]) {
    if let Some(why) = degenerate {
        println!("WARNING: {why}");
    }
    for e in beyond {
        println!("EXTRAPOLATION: {}", e.message);
    }
}

/// Model inputs shared by `predict` and `budget`.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Fit file written by `p2law fit --out` (or its --json output), or `preset:ID` for a shipped preset (e.g. `preset:p2-study-depth`).
    #[arg(long)]
    pub fit: std::path::PathBuf,
    /// Parameters before pruning, embeddings included.
    #[arg(long)]
    pub n0: f64,
    /// Pruning rate: fraction of parameters removed, 0 < rho < 1.
    #[arg(long, conflicts_with = "n", required_unless_present = "n")]
    pub rho: Option<f64>,
    /// Parameters after pruning (instead of --rho).
    #[arg(long)]
    pub n: Option<f64>,
    /// Loss of the unpruned model, nats/token.
    #[arg(long)]
    pub l0: Option<f64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl ModelArgs {
    /// The resolved inputs (tokens set later), checked against the fit's law.
    pub fn inputs(&self, law: p2law_shared::LawForm) -> Result<p2law_shared::Inputs> {
        // The CLI names the flag where the API names the field.
        p2law_shared::api::model_inputs(law, self.n0, self.rho, self.n, self.l0).map_err(|e| anyhow::anyhow!("--{}: {}", e.field, e.message))
    }
}
