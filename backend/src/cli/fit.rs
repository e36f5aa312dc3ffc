//! `p2law fit`: fit a law to curves, with held-out validation and bootstrap intervals.

use super::load::LoadArgs;
use super::table::{num, render};
use anyhow::Result;
use p2law_shared::bootstrap::Resample;
use p2law_shared::report::run_fit;
use p2law_shared::validate::Protocol;
use p2law_shared::{FitReport, LawForm, Objective};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Law form: p2, p2-no-delta, p2-no-l0, p2-additive (the three ablations are p2law's own), p2-reduced (P² with N_C = E = 0, p2law's), chinchilla, sparsity.
    #[arg(long)]
    pub law: LawForm,
    /// Objective: lsq (raw loss, Levenberg–Marquardt) or huber-log (Huber 1e-3 on log loss, L-BFGS).
    #[arg(long, default_value = "lsq")]
    pub objective: Objective,
    /// Starts: quick, full (the law's whole grid) or a count drawn from the full grid.
    #[arg(long, default_value = "quick")]
    pub starts: String,
    /// Held-out protocol to score: last20, largest-n0 or highest-rho.
    #[arg(long)]
    pub holdout: Option<Protocol>,
    /// Bootstrap resamples for intervals (0: none; at most 2000, as through the API).
    #[arg(long, default_value_t = 0)]
    pub bootstrap: usize,
    /// Resample whole curves (default) or single points.
    #[arg(long, default_value = "curves")]
    pub bootstrap_by: Resample,
    /// Central interval level (0.5 to 0.999).
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Seed for sampled starts and the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object (the fit file) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write the fit file here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write an SVG of observed points and fitted curves here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub fn run(a: Args) -> Result<()> {
    let (curves, _) = a.load.load()?;
    // The request the server would be sent, resolved the same way: the same caps and checks.
    let request = p2law_shared::api::FitRequest {
        run_ids: Vec::new(),
        law: a.law,
        objective: a.objective,
        starts: a.starts.clone(),
        holdout: a.holdout,
        bootstrap: a.bootstrap,
        bootstrap_by: a.bootstrap_by,
        seed: a.seed,
        level: Some(a.level),
    };
    let (options, holdout, boot) = request.resolve().map_err(|e| match e {
        p2law_shared::fit::FitError::InvalidOption { option, message } => anyhow::anyhow!("--{}: {message}", option.replace('_', "-")),
        other => other.into(),
    })?;
    let mut report = run_fit(&curves, &options, holdout, boot)?;
    report.provenance = Some(format!(
        "p2law {} fit of {} on {}",
        env!("CARGO_PKG_VERSION"),
        a.law,
        a.load.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
    ));
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &a.out {
        super::write_atomic(path, json.as_bytes())?;
    }
    if let Some(path) = &a.plot {
        super::plot::fit_svg(path, &curves, &report)?;
    }
    if a.json {
        println!("{json}");
    } else {
        print!("{}", human(&report));
    }
    Ok(())
}

fn human(r: &FitReport) -> String {
    let mut out = format!(
        "law        {} — {}\nobjective  {} = {:.10} ({} starts, {} near-optimal; {} iterations, {})\n\n",
        r.law,
        r.law.describe(),
        r.objective_kind,
        r.objective,
        r.starts_tried,
        r.near_optimal_starts,
        r.iterations,
        r.stop_reason
    );
    let names = r.law.law().params();
    let rows: Vec<Vec<String>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let band = r.intervals.as_ref().and_then(|iv| iv.params.get(*n)).map_or(String::new(), |[lo, hi]| format!("[{}, {}]", num(*lo), num(*hi)));
            let se = r.covariance.as_ref().map_or(String::new(), |c| num(c[i][i].max(0.0).sqrt()));
            let weak = if r.is_unidentified(n) { "not identified" } else { "" };
            vec![n.to_string(), num(r.params[*n]), se, band, weak.to_string()]
        })
        .collect();
    let level = r.intervals.as_ref().map_or("interval".to_string(), |i| format!("{:.0}% interval", i.level * 100.0));
    out.push_str(&render(&["coefficient", "value", "std err", &level, ""], &rows));
    let m = &r.metrics;
    out.push_str(&format!("\nR² {}   RMSE {:.6}   Huber {:.6e}   ASD {}   ({} points)\n", opt(m.r2), m.rmse, m.huber, opt(m.asd), m.points));
    if let Some(why) = r.degeneracy() {
        out.push_str(&format!("WARNING: {why}\n"));
    }
    if let Some(h) = &r.holdout {
        out.push_str(&format!(
            "holdout {}: train {} / test {} points; R² {}, RMSE {:.5}, mean |err| {:.5}, max |err| {:.5}, mean rel {:.3}%, max rel {:.3}%\n",
            h.protocol,
            h.train_points,
            h.test_points,
            opt(h.metrics.r2),
            h.metrics.rmse,
            h.mean_abs_error,
            h.max_abs_error,
            h.mean_rel_error * 100.0,
            h.max_rel_error * 100.0
        ));
    }
    out
}

fn opt(v: Option<f64>) -> String {
    v.map_or("n/a".to_string(), |v| format!("{v:.6}"))
}
