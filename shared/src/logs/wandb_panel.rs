//! Weights & Biases panel export ("Download CSV" on a line plot): an x-axis column (`Step`, or a
//! token count) then, per run, `<run> - <metric>` with `__MIN` / `__MAX` companions. Runs that were
//! not logged at a step leave the cell empty.

use super::{LogOptions, ParsedLog, TokenSource, check_loss, check_tokens, number};
use crate::data::{Curve, CurvePoint, InputError, Location};

/// Parses a W&B panel CSV; one curve per run column.
pub fn parse(file: &str, text: &str, o: &LogOptions) -> Result<ParsedLog, InputError> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| InputError::new(file, Location::Line(1), None, format!("unreadable header: {e}")))?
        .clone();
    let x_name = headers.get(0).unwrap_or("Step").to_string();
    let x_is_tokens = x_name.to_lowercase().contains("token");
    if !x_is_tokens && o.tokens_per_step.is_none() {
        return Err(InputError::new(
            file,
            Location::Line(1),
            Some(&x_name),
            "the panel's x-axis counts steps; give --tokens-per-step (or export with a token x-axis)",
        ));
    }
    // (column, run, metric) for value columns.
    let mut columns: Vec<(usize, String, String)> = Vec::new();
    for (i, h) in headers.iter().enumerate().skip(1) {
        if h.ends_with("__MIN") || h.ends_with("__MAX") {
            continue;
        }
        let Some((run, metric)) = h.rsplit_once(" - ") else {
            return Err(InputError::new(file, Location::Line(1), Some(h), "expected `<run> - <metric>`"));
        };
        columns.push((i, run.to_string(), metric.to_string()));
    }
    let mut metrics: Vec<&str> = columns.iter().map(|c| c.2.as_str()).collect();
    metrics.sort_unstable();
    metrics.dedup();
    let metric = match &o.metric {
        Some(m) if metrics.contains(&m.as_str()) => m.clone(),
        Some(m) => {
            return Err(InputError::new(file, Location::Line(1), Some(m), format!("no such metric; the export has: {}", metrics.join(", "))));
        }
        None if metrics.len() == 1 => metrics[0].to_string(),
        None => {
            return Err(InputError::new(file, Location::Line(1), None, format!("several metrics ({}); choose one with --metric", metrics.join(", "))));
        }
    };
    columns.retain(|c| c.2 == metric);
    let mut curves: Vec<Curve> = columns
        .iter()
        .map(|(_, run, _)| {
            let mut c = Curve::new(run.clone());
            c.split = Some(metric.clone());
            c
        })
        .collect();
    for record in reader.records() {
        let record = record.map_err(|e| {
            InputError::new(file, Location::Line(e.position().map_or(0, |p| p.line())), None, format!("malformed CSV row: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let loc = || Location::Line(line);
        let Some(x) = number(file, loc(), &x_name, record.get(0).unwrap_or(""))? else {
            return Err(InputError::new(file, loc(), Some(&x_name), "empty"));
        };
        let tokens = if x_is_tokens { x } else { x * o.tokens_per_step.unwrap_or(1.0) };
        for (k, (col, _, _)) in columns.iter().enumerate() {
            let Some(loss) = super::number_with(file, loc(), &headers[*col], record.get(*col).unwrap_or(""), o.keep_non_finite)? else {
                continue;
            };
            if tokens == 0.0 {
                continue;
            }
            let tokens = check_tokens(file, loc(), &x_name, tokens)?;
            let loss = check_loss(file, loc(), &headers[*col], loss, o)?;
            curves[k].points.push(CurvePoint { tokens, loss });
        }
    }
    Ok(ParsedLog {
        file: file.to_string(),
        format: super::Format::WandbPanel,
        curves,
        token_source: if x_is_tokens { TokenSource::Logged } else { TokenSource::Steps },
        skipped: Vec::new(),
        deduplicated: 0,
        warmup_dropped: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../data/external/colpret_olmo_wandb_export_sample.csv");

    #[test]
    fn real_olmo_export() {
        let o = LogOptions { tokens_per_step: Some(4e6), ..Default::default() };
        let log = parse("olmo.csv", SAMPLE, &o).expect("valid");
        assert_eq!(log.curves.len(), 36);
        let run2 = log.curves.iter().find(|c| c.run == "OLMo-7B-run-002").expect("run 002");
        // First row of the file: step 21000, loss 2.8338048458099365.
        assert_eq!(run2.points[0].tokens, 21000.0 * 4e6);
        assert_eq!(run2.points[0].loss, 2.833_804_845_809_936_5);
        assert!(log.curves.iter().all(|c| c.split.as_deref() == Some("eval/ice-validation/CrossEntropyLoss")));
    }

    #[test]
    fn steps_without_tokens_per_step_is_an_error() {
        let e = parse("olmo.csv", SAMPLE, &LogOptions::default()).unwrap_err().to_string();
        assert!(e.contains("olmo.csv, line 1, field `Step`"), "{e}");
        let e = parse("olmo.csv", SAMPLE, &LogOptions { tokens_per_step: Some(1.0), metric: Some("acc".into()), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such metric"), "{e}");
    }
}
