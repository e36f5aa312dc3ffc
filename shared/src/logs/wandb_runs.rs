//! Weights & Biases runs-table export: one row per run with summary metrics and `config.*`
//! columns. Each run becomes a one-checkpoint curve at its final token count.

use super::{LogOptions, ParsedLog, Skipped, TokenSource, check_loss, check_tokens, number};
use crate::data::{Curve, CurvePoint, InputError, Location};

/// Parses a W&B runs-table CSV.
pub fn parse(file: &str, text: &str, o: &LogOptions) -> Result<ParsedLog, InputError> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| InputError::new(file, Location::Line(1), None, format!("unreadable header: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let name_col = col("Name").ok_or_else(|| InputError::new(file, Location::Line(1), Some("Name"), "missing"))?;
    let metric = match &o.metric {
        Some(m) => m.clone(),
        None => headers
            .iter()
            .find(|h| h.to_lowercase().contains("loss"))
            .map(str::to_string)
            .ok_or_else(|| InputError::new(file, Location::Line(1), None, "no column names a loss; choose one with --metric"))?,
    };
    let metric_col = col(&metric).ok_or_else(|| InputError::new(file, Location::Line(1), Some(&metric), "no such column"))?;
    let tokens_col = headers.iter().position(|h| h.to_lowercase().contains("tokens"));
    let steps_col = col("steps").or_else(|| col("train/step")).or_else(|| col("_step"));
    let (x_col, source) = match (tokens_col, steps_col, o.tokens_per_step) {
        (Some(c), _, _) => (c, TokenSource::Logged),
        (None, Some(c), Some(_)) => (c, TokenSource::Steps),
        _ => {
            return Err(InputError::new(file, Location::Line(1), Some("tokens"), "no token-count column; give --tokens-per-step with a `steps` column"));
        }
    };
    let mut curves = Vec::new();
    let mut skipped = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            InputError::new(file, Location::Line(e.position().map_or(0, |p| p.line())), None, format!("malformed CSV row: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let loc = || Location::Line(line);
        let Some(loss) = super::number_with(file, loc(), &metric, record.get(metric_col).unwrap_or(""), o.keep_non_finite)? else {
            skipped.push(Skipped { location: loc(), reason: format!("no `{metric}` value") });
            continue;
        };
        let Some(x) = number(file, loc(), &headers[x_col], record.get(x_col).unwrap_or(""))? else {
            skipped.push(Skipped { location: loc(), reason: format!("no `{}` value", &headers[x_col]) });
            continue;
        };
        let tokens = match source {
            TokenSource::Logged => x,
            TokenSource::Steps => x * o.tokens_per_step.unwrap_or(1.0),
        };
        let mut c = Curve::new(record.get(name_col).unwrap_or_default().to_string());
        c.split = Some(metric.clone());
        c.points.push(CurvePoint {
            tokens: check_tokens(file, loc(), &headers[x_col], tokens)?,
            loss: check_loss(file, loc(), &metric, loss, o)?,
        });
        curves.push(c);
    }
    Ok(ParsedLog {
        file: file.to_string(),
        format: super::Format::WandbRuns,
        curves,
        token_source: source,
        skipped,
        deduplicated: 0,
        warmup_dropped: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../data/external/misfitting_wandb_runs_export_spm.csv");

    #[test]
    fn real_runs_table() {
        let log = parse("spm.csv", SAMPLE, &LogOptions::default()).expect("valid");
        assert_eq!(log.token_source, TokenSource::Logged);
        assert_eq!(log.curves.len() + log.skipped.len(), 70);
        let first = &log.curves[0];
        assert_eq!(first.run, "moe_bsz1M.ngpu16_20240225-093130.model-12m.moe-spm.lr_1e-3,number_of_experts_4");
        assert_eq!(first.points[0].tokens, 262_144_000.0);
        assert_eq!(first.points[0].loss, 4.940_222_740_173_34);
        assert_eq!(first.split.as_deref(), Some("train/avg_loss_AVG"));
    }

    #[test]
    fn missing_metric_column_is_named() {
        let o = LogOptions { metric: Some("eval/loss".into()), ..Default::default() };
        let e = parse("spm.csv", SAMPLE, &o).unwrap_err().to_string();
        assert!(e.contains("spm.csv, line 1, field `eval/loss`"), "{e}");
    }
}
