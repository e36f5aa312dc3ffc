//! `p2law predict`: the loss curve a fit predicts for one pruned model.

use super::table::{num, render};
use super::ModelArgs;
use anyhow::Result;
use p2law_shared::report::predict_report;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Post-training token counts, comma-separated (e.g. 1e8,1e9,1e10).
    #[arg(long, value_delimiter = ',', required = true)]
    pub tokens: Vec<f64>,
}

pub fn run(a: Args) -> Result<()> {
    let report = super::read_fit(&a.model.fit)?;
    let x = a.model.inputs(report.law)?;
    anyhow::ensure!(!a.tokens.is_empty(), "--tokens: give at least one token count");
    if let Some(t) = a.tokens.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
        anyhow::bail!("field `tokens`: must be > 0, got {t}");
    }
    let out = predict_report(&report, &x, &a.tokens)?;
    if a.model.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        super::warn_fit(out.degenerate.as_deref(), &out.extrapolation);
        let rows: Vec<Vec<String>> = out
            .predictions
            .iter()
            .map(|p| {
                let band = p.band.map_or(String::new(), |[lo, hi]| format!("[{lo:.5}, {hi:.5}]"));
                vec![num(p.tokens), format!("{:.6}", p.loss), band]
            })
            .collect();
        print!("{}", render(&["tokens", "loss", "band"], &rows));
    }
    Ok(())
}
