//! p2law's canonical curve data, CSV or JSON lines: one row per checkpoint.
//!
//! Columns: `run, n0, rho | n, l0, tokens, loss` and optional `method, family, split`; the
//! Chinchilla form needs only `n, tokens, loss`. `rho` and `n` are alternatives (`rho = 1 - n/n0`);
//! with `n` alone the model is dense (`n0 = n`, `rho = 0`). A `step` column times the user's
//! tokens-per-step may stand in for `tokens`, and the loss column may be named with `--metric`.
//! Rows sharing a `run` form one curve and must agree on its metadata.

use super::{LogOptions, ParsedLog, Skipped, TokenSource, check_loss, check_tokens, number};
use crate::data::{Curve, CurvePoint, InputError, Location};
use std::collections::HashMap;

/// One row, before grouping.
#[derive(Debug, Default)]
struct Row {
    run: Option<String>,
    n0: Option<f64>,
    rho: Option<f64>,
    n: Option<f64>,
    l0: Option<f64>,
    tokens: f64,
    loss: f64,
    method: Option<String>,
    family: Option<String>,
    split: Option<String>,
}

/// Reads canonical CSV.
pub fn parse_csv(file: &str, text: &str, o: &LogOptions) -> Result<ParsedLog, InputError> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| InputError::new(file, Location::Line(1), None, format!("unreadable header: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let metric = o.metric.as_deref().unwrap_or("loss");
    let loss_col = col(metric).ok_or_else(|| {
        InputError::new(file, Location::Line(1), Some(metric), format!("no `{metric}` column (columns: {})", headers.iter().collect::<Vec<_>>().join(", ")))
    })?;
    let (tokens_col, source) = match (col("tokens"), col("step"), o.tokens_per_step) {
        (Some(c), _, _) => (c, TokenSource::Logged),
        (None, Some(c), Some(_)) => (c, TokenSource::Steps),
        (None, Some(_), None) => {
            return Err(InputError::new(file, Location::Line(1), Some("tokens"), "no `tokens` column; the `step` column needs --tokens-per-step"));
        }
        (None, None, _) => return Err(InputError::new(file, Location::Line(1), Some("tokens"), "no `tokens` column")),
    };
    let [run, n0, rho, n, l0, method, family, split] =
        ["run", "n0", "rho", "n", "l0", "method", "family", "split"].map(|c| col(c));
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            InputError::new(file, Location::Line(line), None, format!("malformed CSV row: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let loc = || Location::Line(line);
        let cell = |c: Option<usize>| c.and_then(|i| record.get(i)).unwrap_or("");
        let num = |c: Option<usize>, name: &str| number(file, loc(), name, cell(c));
        let text_of = |c: Option<usize>| Some(cell(c).to_string()).filter(|s| !s.is_empty());
        let raw_tokens = num(Some(tokens_col), headers.get(tokens_col).unwrap_or("tokens"))?
            .ok_or_else(|| InputError::new(file, loc(), Some("tokens"), "empty"))?;
        let tokens = match source {
            TokenSource::Logged => raw_tokens,
            TokenSource::Steps if raw_tokens == 0.0 => {
                skipped.push(Skipped { location: loc(), reason: "step 0: no tokens seen yet".into() });
                continue;
            }
            TokenSource::Steps => raw_tokens * o.tokens_per_step.unwrap_or(1.0),
        };
        let loss = super::number_with(file, loc(), metric, cell(Some(loss_col)), o.keep_non_finite)?.ok_or_else(|| InputError::new(file, loc(), Some(metric), "empty"))?;
        rows.push((
            line,
            Row {
                run: text_of(run),
                n0: num(n0, "n0")?,
                rho: num(rho, "rho")?,
                n: num(n, "n")?,
                l0: num(l0, "l0")?,
                tokens: check_tokens(file, loc(), "tokens", tokens)?,
                loss: check_loss(file, loc(), metric, loss, o)?,
                method: text_of(method),
                family: text_of(family),
                split: text_of(split),
            },
        ));
    }
    let mut log = group(file, rows, source, |line| Location::Line(line))?;
    log.skipped = skipped;
    Ok(log)
}

/// Reads canonical JSON lines: one object per line with the CSV's column names as keys.
pub fn parse_jsonl(file: &str, text: &str, o: &LogOptions) -> Result<ParsedLog, InputError> {
    let metric = o.metric.as_deref().unwrap_or("loss");
    let mut rows = Vec::new();
    let mut source = TokenSource::Logged;
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        let loc = || Location::Line(line_no);
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&super::quote_non_finite(line))
            .map_err(|e| InputError::new(file, loc(), None, format!("not a JSON object: {e}")))?;
        let obj = v.as_object().ok_or_else(|| InputError::new(file, loc(), None, "not a JSON object"))?;
        let num = |key: &str| -> Result<Option<f64>, InputError> {
            match obj.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::String(_))) if super::json_number(v).is_some() => Ok(super::json_number(v)),
                Some(other) => Err(InputError::new(file, loc(), Some(key), format!("expected a number, got {other}"))),
            }
        };
        let text_of = |key: &str| match obj.get(key) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(serde_json::Value::Number(x)) => Some(x.to_string()),
            _ => None,
        };
        let tokens = match (num("tokens")?, num("step")?, o.tokens_per_step) {
            (Some(t), _, _) => t,
            (None, Some(s), Some(tps)) => {
                source = TokenSource::Steps;
                s * tps
            }
            (None, Some(_), None) => {
                return Err(InputError::new(file, loc(), Some("tokens"), "missing; `step` needs --tokens-per-step"));
            }
            (None, None, _) => return Err(InputError::new(file, loc(), Some("tokens"), "missing")),
        };
        let loss = num(metric)?.ok_or_else(|| InputError::new(file, loc(), Some(metric), "missing"))?;
        rows.push((
            line_no,
            Row {
                run: text_of("run"),
                n0: num("n0")?,
                rho: num("rho")?,
                n: num("n")?,
                l0: num("l0")?,
                tokens: check_tokens(file, loc(), "tokens", tokens)?,
                loss: check_loss(file, loc(), metric, loss, o)?,
                method: text_of("method"),
                family: text_of("family"),
                split: text_of("split"),
            },
        ));
    }
    group(file, rows, source, |line| Location::Line(line))
}

/// Groups rows into curves by run, resolving `rho | n` and checking that a run's rows agree.
fn group(
    file: &str,
    rows: Vec<(u64, Row)>,
    token_source: TokenSource,
    loc: impl Fn(u64) -> Location,
) -> Result<ParsedLog, InputError> {
    let mut curves: Vec<Curve> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (line, row) in rows {
        let err = |field: &str, msg: String| InputError::new(file, loc(line), Some(field), msg);
        let (n0, rho) = match (row.n0, row.rho, row.n) {
            (n0, Some(r), None) => (n0, Some(r)),
            (Some(n0), None, Some(n)) => {
                if !(n > 0.0 && n <= n0) {
                    return Err(err("n", format!("must be in (0, n0 = {n0}], got {n}")));
                }
                (Some(n0), Some(1.0 - n / n0))
            }
            (None, None, Some(n)) => (Some(n), Some(0.0)),
            (Some(n0), Some(r), Some(n)) => {
                if ((1.0 - r) * n0 - n).abs() > 1e-6 * n0 {
                    return Err(err("n", format!("disagrees with n0 (1 - rho) = {}", (1.0 - r) * n0)));
                }
                (Some(n0), Some(r))
            }
            (n0, None, None) => (n0, None),
            (None, Some(r), Some(_)) => (None, Some(r)),
        };
        if let Some(n0) = n0 {
            if n0 <= 0.0 {
                return Err(err("n0", format!("must be > 0, got {n0}")));
            }
        }
        if let Some(r) = rho {
            if !(0.0..1.0).contains(&r) {
                return Err(err("rho", format!("must be in [0, 1), got {r}")));
            }
        }
        if let Some(l0) = row.l0 {
            if l0 <= 0.0 {
                return Err(err("l0", format!("must be > 0, got {l0}")));
            }
        }
        let key = row.run.clone().unwrap_or_else(|| default_run_name(n0, rho, row.l0));
        let i = *index.entry(key.clone()).or_insert_with(|| {
            let mut c = Curve::new(key.clone());
            c.n0 = n0;
            c.rho = rho;
            c.l0 = row.l0;
            c.method = row.method.clone();
            c.family = row.family.clone();
            c.split = row.split.clone();
            curves.push(c);
            curves.len() - 1
        });
        let c = &mut curves[i];
        let same = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
            (None, None) => true,
            _ => false,
        };
        for (field, a, b) in [("n0", c.n0, n0), ("rho", c.rho, rho), ("l0", c.l0, row.l0)] {
            if !same(a, b) {
                return Err(err(field, format!("run `{key}` has {a:?} on an earlier row and {b:?} here")));
            }
        }
        c.points.push(CurvePoint { tokens: row.tokens, loss: row.loss });
    }
    if curves.is_empty() {
        return Err(InputError::new(file, Location::File, None, "no data rows"));
    }
    Ok(ParsedLog { file: file.to_string(), format: super::Format::Csv, curves, token_source, skipped: Vec::new(), deduplicated: 0, warmup_dropped: 0 })
}

fn default_run_name(n0: Option<f64>, rho: Option<f64>, l0: Option<f64>) -> String {
    let mut s = String::new();
    if let Some(n0) = n0 {
        s.push_str(&format!("n0={n0:e}"));
    }
    if let Some(r) = rho.filter(|r| *r > 0.0) {
        s.push_str(&format!(" rho={r}"));
    }
    if let Some(l0) = l0 {
        s.push_str(&format!(" l0={l0}"));
    }
    if s.is_empty() { "run".to_string() } else { s }
}

/// The canonical CSV header.
pub const CSV_HEADER: &str = "run,n0,rho,n,l0,tokens,loss,method,family,split";

/// Writes curves as canonical CSV.
pub fn write_csv(curves: &[Curve]) -> String {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for c in curves {
        for p in &c.points {
            let row = [
                c.run.clone(),
                opt(c.n0),
                opt(c.rho),
                opt(c.n()),
                opt(c.l0),
                p.tokens.to_string(),
                p.loss.to_string(),
                c.method.clone().unwrap_or_default(),
                c.family.clone().unwrap_or_default(),
                c.split.clone().unwrap_or_default(),
            ];
            // Writing to a Vec cannot fail.
            let _ = w.write_record(&row);
        }
    }
    let _ = w.flush();
    out.push_str(&String::from_utf8_lossy(w.get_ref()));
    out
}

/// Writes curves as canonical JSON lines.
pub fn write_jsonl(curves: &[Curve]) -> String {
    let mut out = String::new();
    for c in curves {
        for p in &c.points {
            let row = serde_json::json!({
                "run": c.run, "n0": c.n0, "rho": c.rho, "n": c.n(), "l0": c.l0,
                "tokens": p.tokens, "loss": p.loss,
                "method": c.method, "family": c.family, "split": c.split,
            });
            out.push_str(&row.to_string());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_rows_by_run_and_resolves_n() {
        let text = "run,n0,n,l0,tokens,loss,method\na,1e9,7.5e8,2.1,1e8,2.9,depth\na,1e9,7.5e8,2.1,2e8,2.7,depth\nb,1e9,5e8,2.1,1e8,3.4,width\n";
        let log = parse_csv("c.csv", text, &LogOptions::default()).expect("valid");
        assert_eq!(log.curves.len(), 2);
        assert_eq!(log.curves[0].points.len(), 2);
        assert!((log.curves[1].rho.expect("rho") - 0.5).abs() < 1e-12);
        assert_eq!(log.curves[1].method.as_deref(), Some("width"));
    }

    #[test]
    fn chinchilla_shape_is_dense() {
        let log = parse_csv("c.csv", "n,tokens,loss\n1e8,2e9,3.1\n", &LogOptions::default()).expect("valid");
        assert_eq!(log.curves[0].n0, Some(1e8));
        assert_eq!(log.curves[0].rho, Some(0.0));
    }

    #[test]
    fn steps_need_tokens_per_step() {
        let text = "step,train/lm_loss\n10,5.0\n20,4.0\n";
        let o = LogOptions { metric: Some("train/lm_loss".into()), ..Default::default() };
        let e = parse_csv("p.csv", text, &o).unwrap_err();
        assert!(e.to_string().contains("--tokens-per-step"), "{e}");
        let o = LogOptions { tokens_per_step: Some(1000.0), ..o };
        let log = parse_csv("p.csv", text, &o).expect("valid");
        assert_eq!(log.curves[0].points[1].tokens, 20_000.0);
        assert_eq!(log.token_source, TokenSource::Steps);
    }

    #[test]
    fn csv_and_jsonl_round_trip() {
        let text = "run,n0,rho,l0,tokens,loss,method,family,split\na,1e9,0.25,2.1,1e8,2.9,2:4,llama,eval\na,1e9,0.25,2.1,2e8,2.7,2:4,llama,eval\n";
        let a = parse_csv("c.csv", text, &LogOptions::default()).expect("valid");
        let b = parse_csv("c.csv", &write_csv(&a.curves), &LogOptions::default()).expect("round trip");
        assert_eq!(a.curves, b.curves);
        let c = parse_jsonl("c.jsonl", &write_jsonl(&a.curves), &LogOptions::default()).expect("round trip");
        assert_eq!(a.curves, c.curves);
    }

    #[test]
    fn errors_name_line_and_field() {
        let cases = [
            ("run,tokens,loss\na,1e8,2.9\na,-5,2.8\n", "line 3, field `tokens`"),
            ("run,tokens,loss\na,0,2.9\na,-1,2.9\n", "line 3, field `tokens`"),
            ("run,tokens,loss\na,1e8,NaN\n", "line 2, field `loss`"),
            ("run,tokens,loss\na,1e8,abc\n", "line 2, field `loss`"),
            ("run,rho,tokens,loss\na,1.2,1e8,2.9\n", "line 2, field `rho`"),
            ("run,tokens,loss\na,1e8\n", "line 2"),
            ("run,n0,tokens,loss\na,1e9,1e8,2.9\na,2e9,2e8,2.8\n", "line 3, field `n0`"),
            ("run,tokens\na,1e8\n", "field `loss`"),
            ("run,tokens,loss\n", "no data rows"),
        ];
        for (text, want) in cases {
            let e = parse_csv("bad.csv", text, &LogOptions::default()).expect_err(text).to_string();
            assert!(e.starts_with("bad.csv") && e.contains(want), "{text:?}: {e}");
        }
        let e = parse_jsonl("bad.jsonl", "{\"tokens\": 1e8, \"loss\": 2}\n{\"tokens\": \"x\", \"loss\": 2}\n", &LogOptions::default())
            .expect_err("string tokens");
        assert!(e.to_string().contains("bad.jsonl, line 2, field `tokens`"), "{e}");
    }
}

#[cfg(test)]
mod zero_tokens {
    use super::*;

    /// A D = 0 checkpoint (the loss right after pruning) is read and kept; fits leave it out.
    #[test]
    fn the_checkpoint_right_after_pruning_is_kept_and_not_fitted() {
        let text = "run,n0,rho,l0,tokens,loss\na,1e9,0.25,2.5,0,3.4\na,1e9,0.25,2.5,1e8,2.9\na,1e9,0.25,2.5,1e9,2.7\n";
        let log = parse_csv("z.csv", text, &LogOptions::default()).unwrap();
        assert_eq!(log.curves[0].points[0].tokens, 0.0);
        let data = crate::fit::Dataset::new(&log.curves, crate::LawForm::P2);
        // Two points are left for seven coefficients: the D = 0 one was not counted.
        assert!(matches!(data, Err(crate::fit::FitError::TooFewPoints { points: 2, .. })), "{data:?}");
    }
}
