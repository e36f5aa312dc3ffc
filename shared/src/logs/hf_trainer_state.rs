//! Hugging Face `trainer_state.json`: the `log_history` array the `Trainer` writes beside each
//! checkpoint.
//!
//! Entries carry train `loss`, `eval_loss` or `eval_<name>_loss` with `step` and, when the
//! trainer counts them, `num_input_tokens_seen` (0 when counting was off). Entries without the
//! chosen metric — learning-rate logs, `predict_*` results, the final `train_runtime` summary —
//! are skipped, not errors.

use super::{LogOptions, ParsedLog, Skipped, TokenSource, check_loss, check_tokens, stem};
use crate::data::{Curve, CurvePoint, InputError, Location};
use serde_json::Value;

/// Parses a `trainer_state.json`.
pub fn parse(file: &str, text: &str, o: &LogOptions) -> Result<ParsedLog, InputError> {
    let root: Value = serde_json::from_str(&super::quote_non_finite(text)).map_err(|e| {
        InputError::new(file, Location::Line(e.line() as u64), None, format!("invalid JSON: {e}"))
    })?;
    let history = root
        .get("log_history")
        .and_then(Value::as_array)
        .ok_or_else(|| InputError::new(file, Location::File, Some("log_history"), "missing or not an array"))?;
    let metric = match &o.metric {
        Some(m) => m.clone(),
        None if history.iter().any(|e| e.get("eval_loss").is_some()) => "eval_loss".to_string(),
        None => "loss".to_string(),
    };
    let split = match metric.as_str() {
        "loss" => "train".to_string(),
        "eval_loss" => "eval".to_string(),
        m => m.strip_prefix("eval_").and_then(|r| r.strip_suffix("_loss")).unwrap_or(m).to_string(),
    };
    let mut curve = Curve::new(o.run.clone().unwrap_or_else(|| stem(file)));
    curve.split = Some(split);
    let mut skipped = Vec::new();
    let mut source = TokenSource::Logged;
    for (i, entry) in history.iter().enumerate() {
        let loc = || Location::Record(i as u64);
        let obj = entry.as_object().ok_or_else(|| InputError::new(file, loc(), None, "log_history entry is not an object"))?;
        let Some(value) = obj.get(&metric) else {
            let what = obj.keys().find(|k| k.starts_with("predict_") || *k == "train_runtime").cloned();
            skipped.push(Skipped {
                location: loc(),
                reason: match what {
                    Some(k) => format!("`{k}` entry has no `{metric}`"),
                    None => format!("no `{metric}`"),
                },
            });
            continue;
        };
        let loss = super::json_number(value)
            .ok_or_else(|| InputError::new(file, loc(), Some(&metric), format!("expected a number, got {value}")))?;
        let loss = check_loss(file, loc(), &metric, loss, o)?;
        let seen = match obj.get("num_input_tokens_seen") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_f64().ok_or_else(|| {
                InputError::new(file, loc(), Some("num_input_tokens_seen"), format!("expected a number, got {v}"))
            })?),
        };
        let tokens = match (seen.filter(|t| *t != 0.0), o.tokens_per_step) {
            (Some(t), _) => t,
            (None, Some(tps)) => {
                source = TokenSource::Steps;
                let step = obj.get("step").and_then(Value::as_f64).ok_or_else(|| {
                    InputError::new(file, loc(), Some("step"), "missing or not a number")
                })?;
                step * tps
            }
            (None, None) => {
                return Err(InputError::new(
                    file,
                    loc(),
                    Some("num_input_tokens_seen"),
                    "absent or 0 (token counting was off); give --tokens-per-step to derive tokens from `step`",
                ));
            }
        };
        if tokens == 0.0 {
            skipped.push(Skipped { location: loc(), reason: "step 0: no post-training tokens yet".into() });
            continue;
        }
        let tokens = check_tokens(file, loc(), "num_input_tokens_seen", tokens)?;
        curve.points.push(CurvePoint { tokens, loss });
    }
    Ok(ParsedLog {
        file: file.to_string(),
        format: super::Format::Hf,
        curves: vec![curve],
        token_source: source,
        skipped,
        deduplicated: 0,
        warmup_dropped: 0,
    })
}

/// The learning rate as the trainer logged it (`learning_rate` entries) and where the schedule
/// ends (`max_steps`), in tokens: what a forecast says about a decaying schedule. `None` when
/// the file logs no learning rate or no token count can be given to its entries.
pub fn schedule(text: &str, o: &LogOptions) -> Option<crate::forecast::Schedule> {
    let root: Value = serde_json::from_str(&super::quote_non_finite(text)).ok()?;
    let history = root.get("log_history")?.as_array()?;
    let seen = |e: &Value| e.get("num_input_tokens_seen").and_then(Value::as_f64).filter(|t| *t > 0.0);
    let step = |e: &Value| e.get("step").and_then(Value::as_f64);
    // Tokens per step: given, or as the trainer counted them at its last counted entry.
    let tps = o.tokens_per_step.or_else(|| history.iter().rev().find_map(|e| Some(seen(e)? / step(e).filter(|s| *s > 0.0)?)));
    let lr: Vec<(f64, f64)> = history
        .iter()
        .filter_map(|e| {
            let v = e.get("learning_rate").and_then(super::json_number)?;
            let t = seen(e).or_else(|| Some(step(e)? * tps?))?;
            Some((t, v))
        })
        .collect();
    if lr.is_empty() {
        return None;
    }
    let total_tokens = root.get("max_steps").and_then(Value::as_f64).filter(|s| *s > 0.0).and_then(|s| Some(s * tps?));
    Some(crate::forecast::Schedule { lr, total_tokens })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like a real `trainer_state.json` of transformers 4.4x with `include_num_input_tokens_seen`
    /// off: train logs, eval logs, a `predict_*` entry and the final summary.
    const SAMPLE: &str = r#"{
  "best_metric": null, "epoch": 1.0, "global_step": 30, "is_world_process_zero": true,
  "log_history": [
    {"epoch": 0.33, "grad_norm": 1.91, "learning_rate": 4.5e-05, "loss": 3.412, "num_input_tokens_seen": 0, "step": 10},
    {"epoch": 0.33, "eval_loss": 3.301, "eval_runtime": 1.2, "eval_samples_per_second": 80.1, "num_input_tokens_seen": 0, "step": 10},
    {"epoch": 0.67, "grad_norm": 1.52, "learning_rate": 2.5e-05, "loss": 3.105, "num_input_tokens_seen": 0, "step": 20},
    {"epoch": 0.67, "eval_loss": 3.021, "eval_wikitext_loss": 3.4, "num_input_tokens_seen": 0, "step": 20},
    {"epoch": 1.0, "predict_loss": 2.95, "predict_runtime": 0.9, "step": 30},
    {"epoch": 1.0, "eval_loss": 2.911, "num_input_tokens_seen": 0, "step": 30},
    {"epoch": 1.0, "step": 30, "total_flos": 1.2e15, "train_loss": 3.2, "train_runtime": 40.1}
  ],
  "max_steps": 30, "train_batch_size": 8
}"#;

    #[test]
    fn eval_loss_by_default_tokens_from_steps() {
        let o = LogOptions { tokens_per_step: Some(8.0 * 1024.0), ..Default::default() };
        let log = parse("out/trainer_state.json", SAMPLE, &o).expect("valid");
        let c = &log.curves[0];
        assert_eq!(c.run, "trainer_state");
        assert_eq!(c.split.as_deref(), Some("eval"));
        let got: Vec<(f64, f64)> = c.points.iter().map(|p| (p.tokens, p.loss)).collect();
        assert_eq!(got, vec![(81920.0, 3.301), (163840.0, 3.021), (245760.0, 2.911)]);
        assert_eq!(log.token_source, TokenSource::Steps);
        assert_eq!(log.skipped.len(), 4);
        assert!(log.skipped.iter().any(|s| s.reason.contains("predict_")));
    }

    #[test]
    fn the_schedule_is_read_in_tokens() {
        let o = LogOptions { tokens_per_step: Some(100.0), ..Default::default() };
        let s = schedule(SAMPLE, &o).expect("learning rates");
        assert_eq!(s.lr, vec![(1000.0, 4.5e-5), (2000.0, 2.5e-5)]);
        assert_eq!(s.total_tokens, Some(3000.0));
        assert_eq!(schedule(r#"{"log_history": [{"loss": 1.0, "step": 1}]}"#, &o), None);
    }

    #[test]
    fn train_and_named_eval_metrics() {
        let o = LogOptions { tokens_per_step: Some(100.0), metric: Some("loss".into()), ..Default::default() };
        assert_eq!(parse("t.json", SAMPLE, &o).expect("valid").curves[0].points.len(), 2);
        let o = LogOptions { tokens_per_step: Some(100.0), metric: Some("eval_wikitext_loss".into()), ..Default::default() };
        let log = parse("t.json", SAMPLE, &o).expect("valid");
        assert_eq!(log.curves[0].split.as_deref(), Some("wikitext"));
        assert_eq!(log.curves[0].points.len(), 1);
    }

    #[test]
    fn logged_tokens_are_used_when_non_zero() {
        let text = r#"{"log_history": [{"loss": 3.0, "step": 1, "num_input_tokens_seen": 4096}, {"loss": 2.5, "step": 2, "num_input_tokens_seen": 8192}]}"#;
        let log = parse("t.json", text, &LogOptions::default()).expect("valid");
        assert_eq!(log.token_source, TokenSource::Logged);
        assert_eq!(log.curves[0].points[1].tokens, 8192.0);
    }

    #[test]
    fn errors_name_record_and_field() {
        let e = parse("t.json", SAMPLE, &LogOptions::default()).unwrap_err().to_string();
        assert!(e.contains("t.json, record 1, field `num_input_tokens_seen`"), "{e}");
        let bad = r#"{"log_history": [{"loss": "high", "step": 1}]}"#;
        let e = parse("t.json", bad, &LogOptions::default()).unwrap_err().to_string();
        assert!(e.contains("record 0, field `loss`"), "{e}");
        let e = parse("t.json", "{\"log_history\": 3}", &LogOptions::default()).unwrap_err().to_string();
        assert!(e.contains("field `log_history`"), "{e}");
        let e = parse("t.json", "{\"log_history\": [", &LogOptions::default()).unwrap_err().to_string();
        assert!(e.contains("invalid JSON"), "{e}");
    }
}
