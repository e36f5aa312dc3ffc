//! Run-log parsers: one file per format, all producing [`Curve`]s.
//!
//! - [`canonical`]: p2law's own CSV / JSONL (one row per checkpoint), read and written;
//! - [`hf_trainer_state`]: Hugging Face `trainer_state.json` (`log_history`);
//! - [`wandb_panel`]: a Weights & Biases panel export (`Step`, `<run> - <metric>` columns);
//! - [`wandb_runs`]: a Weights & Biases runs-table export (one row per run, summary metrics);
//! - [`tensorboard`]: TensorBoard event files (binary: [`parse_bytes`] reads them).
//!
//! [`parse`] detects the format, applies the user's metadata, drops warm-up checkpoints and
//! de-duplicates resumed runs. Every error names the file, the line or record, and the field.

pub mod canonical;
pub mod hf_trainer_state;
pub mod tensorboard;
pub mod wandb_panel;
pub mod wandb_runs;

use crate::data::{Curve, InputError, Location};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Format {
    #[default]
    Auto,
    Hf,
    WandbPanel,
    WandbRuns,
    Csv,
    Jsonl,
    /// TensorBoard event files: binary, read by [`parse_bytes`].
    Tensorboard,
}

/// A format name p2law does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format `{0}`; expected auto, hf, wandb-panel, wandb-runs, csv, jsonl or tensorboard")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        Ok(match s {
            "auto" => Format::Auto,
            "hf" => Format::Hf,
            "wandb-panel" => Format::WandbPanel,
            "wandb-runs" => Format::WandbRuns,
            "csv" => Format::Csv,
            "jsonl" => Format::Jsonl,
            "tensorboard" => Format::Tensorboard,
            _ => return Err(UnknownFormat(s.to_string())),
        })
    }
}

/// How tokens were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TokenSource {
    /// Logged by the trainer (`num_input_tokens_seen`, a `tokens` column).
    Logged,
    /// Step times the tokens per step the user gave.
    Steps,
}

/// What the user tells p2law about the logs: which metric, and the metadata logs lack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogOptions {
    pub format: Format,
    /// The loss key or column (`eval_loss`, `train/lm_loss`, ...); each format has a default.
    pub metric: Option<String>,
    /// Run name for single-run logs (default: the file name).
    pub run: Option<String>,
    pub n0: Option<f64>,
    pub rho: Option<f64>,
    /// Parameters after pruning; converted to `rho = 1 - n / n0`.
    pub n: Option<f64>,
    pub l0: Option<f64>,
    pub method: Option<String>,
    pub family: Option<String>,
    /// Tokens per optimizer step, for logs that count steps only.
    pub tokens_per_step: Option<f64>,
    /// Warm-up exclusion: checkpoints before this many tokens are dropped.
    pub skip_tokens: Option<f64>,
    /// Keep NaN and infinite losses as checkpoints instead of refusing the file: a forecast
    /// reads a broken run's log to say where it broke. Never set for fitting, nor over HTTP.
    #[serde(skip)]
    pub keep_non_finite: bool,
}

/// An entry a parser passed over, and why (not an error: e.g. a `predict_*` record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Skipped {
    pub location: Location,
    pub reason: String,
}

/// What a log parser understood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedLog {
    pub file: String,
    pub format: Format,
    pub curves: Vec<Curve>,
    pub token_source: TokenSource,
    pub skipped: Vec<Skipped>,
    /// Checkpoints dropped as superseded by a resumed run.
    pub deduplicated: usize,
    /// Checkpoints dropped by the warm-up exclusion.
    pub warmup_dropped: usize,
}

/// Parses one file's text, in the format given or detected.
pub fn parse(file: &str, text: &str, options: &LogOptions) -> Result<ParsedLog, InputError> {
    check_options(file, options)?;
    let format = match options.format {
        Format::Auto => detect(file, text)?,
        f => f,
    };
    let mut log = match format {
        Format::Hf => hf_trainer_state::parse(file, text, options)?,
        Format::WandbPanel => wandb_panel::parse(file, text, options)?,
        Format::WandbRuns => wandb_runs::parse(file, text, options)?,
        Format::Csv => canonical::parse_csv(file, text, options)?,
        Format::Jsonl => canonical::parse_jsonl(file, text, options)?,
        Format::Tensorboard => {
            return Err(InputError::new(file, Location::File, None, "TensorBoard event files are binary: read them as bytes (`parse_bytes`)"));
        }
        Format::Auto => unreachable!("detect returns a concrete format"),
    };
    log.format = format;
    finish(file, log, options)
}

/// Parses one file's bytes in any format: a TensorBoard event file when asked for or when the
/// bytes open with a valid record, else UTF-8 text through [`parse`]. The CLI, the server and the
/// browser all read files through here.
pub fn parse_bytes(file: &str, bytes: &[u8], options: &LogOptions) -> Result<ParsedLog, InputError> {
    if options.format == Format::Tensorboard || (options.format == Format::Auto && tensorboard::looks_like(bytes)) {
        return tensorboard::parse(file, bytes, options);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| InputError::new(file, Location::File, None, format!("not UTF-8 text (byte {}) and not a TensorBoard event file", e.valid_up_to())))?;
    parse(file, text, options)
}

/// The most tokens one optimizer step may stand for: far above any real global batch (Llama 3
/// trained at 16 M), low enough that `step × tokens_per_step` stays an exact, finite count.
pub const MAX_TOKENS_PER_STEP: f64 = 1e9;

/// Checks the numeric options before any parser uses them, naming the field.
pub fn check_options(file: &str, o: &LogOptions) -> Result<(), InputError> {
    if let Some(t) = o.tokens_per_step {
        if !(t.is_finite() && t > 0.0 && t <= MAX_TOKENS_PER_STEP) {
            return Err(InputError::new(file, Location::File, Some("tokens_per_step"), format!("must be a positive token count of at most {MAX_TOKENS_PER_STEP:e}, got {t}")));
        }
    }
    if let Some(t) = o.skip_tokens {
        if !(t.is_finite() && t >= 0.0) {
            return Err(InputError::new(file, Location::File, Some("skip_tokens"), format!("must be a token count >= 0, got {t}")));
        }
    }
    Ok(())
}

/// Applies the user's metadata to a parsed log, orders or de-duplicates its checkpoints, drops
/// the warm-up, and refuses a log with nothing left. Every parser's output goes through here.
pub fn finish(file: &str, mut log: ParsedLog, options: &LogOptions) -> Result<ParsedLog, InputError> {
    let format = log.format;
    apply_metadata(file, &mut log.curves, options)?;
    for c in &mut log.curves {
        match format {
            // Trainer logs are in time order: a step going back is a resumed run.
            Format::Hf | Format::WandbPanel | Format::Tensorboard => log.deduplicated += c.dedup_resumed(),
            _ => c.points.sort_by(|a, b| a.tokens.total_cmp(&b.tokens)),
        }
        if let Some(t) = options.skip_tokens {
            log.warmup_dropped += c.skip_tokens(t);
        }
    }
    log.curves.retain(|c| !c.points.is_empty());
    if log.curves.is_empty() {
        return Err(InputError::new(file, Location::File, None, "no checkpoints left: the file holds no loss values p2law can use"));
    }
    Ok(log)
}

/// Tells the format from the content (JSON object with `log_history`, JSON lines, or a CSV header).
pub fn detect(file: &str, text: &str) -> Result<Format, InputError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.is_empty() {
        return Err(InputError::new(file, Location::File, None, "the file is empty"));
    }
    if trimmed.starts_with('{') {
        // A trainer_state.json is one object holding `log_history`; anything else is JSON lines.
        return Ok(if trimmed.contains("\"log_history\"") { Format::Hf } else { Format::Jsonl });
    }
    let header = trimmed.lines().next().unwrap_or_default();
    let cells: Vec<String> = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(header.as_bytes())
        .records()
        .next()
        .and_then(Result::ok)
        .map(|r| r.iter().map(str::to_string).collect())
        .unwrap_or_default();
    if cells.iter().skip(1).any(|c| c.contains(" - ")) {
        return Ok(Format::WandbPanel);
    }
    if cells.first().is_some_and(|c| c == "Name") {
        return Ok(Format::WandbRuns);
    }
    if cells.iter().any(|c| c == "loss" || c == "tokens" || c == "step") {
        return Ok(Format::Csv);
    }
    Err(InputError::new(
        file,
        Location::Line(1),
        None,
        "cannot tell the format from the header; pass --format hf|wandb-panel|wandb-runs|csv|jsonl",
    ))
}

/// Fills metadata the user gave into curves that lack it; checks its ranges.
fn apply_metadata(file: &str, curves: &mut [Curve], o: &LogOptions) -> Result<(), InputError> {
    let meta = RunMeta { n0: o.n0, rho: o.rho, n: o.n, l0: o.l0, method: o.method.clone(), family: o.family.clone() };
    let (n0, rho) = meta.resolve().map_err(|(field, msg)| InputError::new(file, Location::File, Some(field), msg))?;
    for c in curves {
        c.n0 = c.n0.or(n0);
        c.rho = c.rho.or(rho);
        c.l0 = c.l0.or(o.l0);
        c.method = c.method.take().or_else(|| o.method.clone());
        c.family = c.family.take().or_else(|| o.family.clone());
    }
    Ok(())
}

/// Metadata the user gives for one run, overriding what its log and the file's options say.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunMeta {
    pub n0: Option<f64>,
    pub rho: Option<f64>,
    /// Parameters after pruning, instead of `rho`.
    pub n: Option<f64>,
    pub l0: Option<f64>,
    pub method: Option<String>,
    pub family: Option<String>,
}

impl RunMeta {
    /// Checks ranges and turns `n` into `rho`: `(n0, rho)`, or the field at fault and why.
    pub fn resolve(&self) -> Result<(Option<f64>, Option<f64>), (&'static str, String)> {
        if let Some(n0) = self.n0 {
            if !(n0.is_finite() && n0 > 0.0) {
                return Err(("n0", format!("must be a positive parameter count, got {n0}")));
            }
        }
        let rho = match (self.rho, self.n) {
            (Some(_), Some(_)) => return Err(("rho", "give rho or n, not both".into())),
            (Some(r), None) => Some(r),
            (None, Some(n)) => {
                let n0 = self.n0.ok_or(("n", "n needs n0 to give rho = 1 - n/n0".to_string()))?;
                if !(n.is_finite() && n > 0.0 && n <= n0) {
                    return Err(("n", format!("must be in (0, n0 = {n0}], got {n}")));
                }
                Some(1.0 - n / n0)
            }
            (None, None) => None,
        };
        if let Some(r) = rho {
            if !(r.is_finite() && (0.0..1.0).contains(&r)) {
                return Err(("rho", format!("must be in [0, 1), got {r}")));
            }
        }
        if let Some(l0) = self.l0 {
            if !(l0.is_finite() && l0 > 0.0) {
                return Err(("l0", format!("must be a positive loss, got {l0}")));
            }
        }
        Ok((self.n0, rho))
    }
}

/// Applies per-run metadata (by run name) to a file's curves; a name that matches no run, or a
/// value out of range, is an error naming the run and the field.
pub fn apply_run_meta(file: &str, curves: &mut [Curve], runs: &std::collections::BTreeMap<String, RunMeta>) -> Result<(), InputError> {
    for (name, meta) in runs {
        let at = |field: &str| format!("runs.{name}.{field}");
        let c = curves
            .iter_mut()
            .find(|c| &c.run == name)
            .ok_or_else(|| InputError::new(file, Location::File, Some(&format!("runs.{name}")), "no run of that name in the file"))?;
        let (n0, rho) = meta.resolve().map_err(|(field, msg)| InputError::new(file, Location::File, Some(&at(field)), msg))?;
        c.n0 = n0.or(c.n0);
        c.rho = rho.or(c.rho);
        c.l0 = meta.l0.or(c.l0);
        if meta.method.is_some() {
            c.method = meta.method.clone();
        }
        if meta.family.is_some() {
            c.family = meta.family.clone();
        }
    }
    Ok(())
}

/// Parses a number cell; empty cells are `None`.
pub(crate) fn number(file: &str, loc: Location, field: &str, cell: &str) -> Result<Option<f64>, InputError> {
    number_with(file, loc, field, cell, false)
}

/// [`number`], or with `non_finite` a NaN or infinity too (a loss a forecast reads).
pub(crate) fn number_with(file: &str, loc: Location, field: &str, cell: &str, non_finite: bool) -> Result<Option<f64>, InputError> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Ok(None);
    }
    let v: f64 = cell
        .parse()
        .map_err(|_| InputError::new(file, loc.clone(), Some(field), format!("`{cell}` is not a number")))?;
    if !v.is_finite() && !non_finite {
        return Err(InputError::new(file, loc, Some(field), format!("`{cell}` is not a finite number")));
    }
    Ok(Some(v))
}

/// A loss value must be finite and positive.
pub(crate) fn check_loss(file: &str, loc: Location, field: &str, v: f64, o: &LogOptions) -> Result<f64, InputError> {
    if (v.is_finite() && v > 0.0) || (o.keep_non_finite && !v.is_finite()) {
        Ok(v)
    } else {
        Err(InputError::new(file, loc, Some(field), format!("loss must be a positive finite number, got {v}")))
    }
}

/// JSON as Python's `json` module writes it: bare `NaN`, `Infinity` and `-Infinity` (which
/// strict JSON has no words for) quoted into strings, so that the file parses and
/// [`json_number`] reads them back as numbers. Text without them is borrowed unchanged.
pub fn quote_non_finite(text: &str) -> std::borrow::Cow<'_, str> {
    if !(text.contains("NaN") || text.contains("Infinity")) {
        return std::borrow::Cow::Borrowed(text);
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped, mut last) = (false, false, 0usize);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        let word = ["-Infinity", "Infinity", "NaN"].into_iter().find(|w| b[i..].starts_with(w.as_bytes()));
        if let Some(w) = word {
            out.push_str(&text[last..i]);
            out.push('"');
            out.push_str(w);
            out.push('"');
            i += w.len();
            last = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&text[last..]);
    std::borrow::Cow::Owned(out)
}

/// A JSON number, or one of the strings [`quote_non_finite`] makes.
pub fn json_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(x) => x.as_f64(),
        serde_json::Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// A token count must be finite and not negative; 0 is the checkpoint right after pruning (kept
/// in the curve, left out of fits: no law is defined at D = 0).
pub fn check_tokens(file: &str, loc: Location, field: &str, v: f64) -> Result<f64, InputError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(InputError::new(file, loc, Some(field), format!("tokens must be >= 0, got {v}")))
    }
}

/// The default run name: the file name without directories and extension.
pub(crate) fn stem(file: &str) -> String {
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    base.split('.').next().filter(|s| !s.is_empty()).unwrap_or(base).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_non_finite_json_is_read_as_numbers() {
        let t = r#"{"a": NaN, "b": [Infinity, -Infinity], "c": "NaN text", "d": "q\"NaN"}"#;
        let q = quote_non_finite(t);
        let v: serde_json::Value = serde_json::from_str(&q).expect("parses");
        assert!(json_number(&v["a"]).unwrap().is_nan());
        assert_eq!(json_number(&v["b"][0]), Some(f64::INFINITY));
        assert_eq!(json_number(&v["b"][1]), Some(f64::NEG_INFINITY));
        assert_eq!(v["c"], "NaN text");
        assert_eq!(v["d"], "q\"NaN");
        assert!(matches!(quote_non_finite("{\"a\": 1}"), std::borrow::Cow::Borrowed(_)));
        // Strict parsing names the record; a forecast's lenient parsing keeps the point.
        let hf = r#"{"log_history": [{"loss": 2.0, "step": 1, "num_input_tokens_seen": 10}, {"loss": NaN, "step": 2, "num_input_tokens_seen": 20}]}"#;
        let e = parse("s.json", hf, &LogOptions::default()).unwrap_err().to_string();
        assert!(e.contains("record 1, field `loss`") && e.contains("NaN"), "{e}");
        let log = parse("s.json", hf, &LogOptions { keep_non_finite: true, ..Default::default() }).unwrap();
        assert!(log.curves[0].points[1].loss.is_nan());
        let jl = "{\"tokens\": 10, \"loss\": 2.0}\n{\"tokens\": 20, \"loss\": Infinity}\n";
        let e = parse("s.jsonl", jl, &LogOptions::default()).unwrap_err().to_string();
        assert!(e.contains("line 2, field `loss`"), "{e}");
        let csv = "tokens,loss\n10,2.0\n20,nan\n";
        assert!(parse("s.csv", csv, &LogOptions::default()).unwrap_err().to_string().contains("line 3"));
        assert!(parse("s.csv", csv, &LogOptions { keep_non_finite: true, ..Default::default() }).unwrap().curves[0].points[1].loss.is_nan());
    }

    #[test]
    fn detects_each_sample() {
        let d = |name: &str, text: &str| detect(name, text).map_err(|e| e.to_string());
        assert_eq!(d("x", "{\"log_history\": []}"), Ok(Format::Hf));
        assert_eq!(d("x", "{\"tokens\": 1, \"loss\": 2}\n"), Ok(Format::Jsonl));
        assert_eq!(d("x", "\"Step\",\"run - loss\"\n"), Ok(Format::WandbPanel));
        assert_eq!(d("x", "\"Name\",\"loss\"\n"), Ok(Format::WandbRuns));
        assert_eq!(d("x", "run,n0,rho,l0,tokens,loss\n"), Ok(Format::Csv));
        assert!(d("x.bin", "a,b,c\n").unwrap_err().contains("x.bin, line 1"));
        assert!(d("x", "  ").unwrap_err().contains("empty"));
    }

    #[test]
    fn run_metadata_overrides_and_names_the_run() {
        let text = "run,tokens,loss\na,10,3\na,20,2.5\nb,10,3.2\nb,20,2.8\n";
        let mut log = parse("r.csv", text, &LogOptions { n0: Some(1e9), rho: Some(0.2), ..Default::default() }).expect("valid");
        let mut runs = std::collections::BTreeMap::new();
        runs.insert("b".to_string(), RunMeta { n: Some(5e8), n0: Some(1e9), l0: Some(2.1), ..Default::default() });
        apply_run_meta("r.csv", &mut log.curves, &runs).expect("valid");
        assert_eq!(log.curves[0].rho, Some(0.2));
        assert_eq!(log.curves[1].rho, Some(0.5));
        assert_eq!(log.curves[1].l0, Some(2.1));
        runs.insert("c".to_string(), RunMeta::default());
        let e = apply_run_meta("r.csv", &mut log.curves, &runs).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("runs.c"));
        runs.remove("c");
        runs.insert("a".to_string(), RunMeta { rho: Some(1.0), ..Default::default() });
        let e = apply_run_meta("r.csv", &mut log.curves, &runs).unwrap_err();
        assert_eq!(e.to_string(), "r.csv, field `runs.a.rho`: must be in [0, 1), got 1");
    }

    #[test]
    fn token_options_are_checked_before_parsing() {
        let text = "step,loss\n10,3\n20,2.5\n";
        for (o, field) in [
            (LogOptions { tokens_per_step: Some(1e308), ..Default::default() }, "tokens_per_step"),
            (LogOptions { tokens_per_step: Some(f64::NAN), ..Default::default() }, "tokens_per_step"),
            (LogOptions { tokens_per_step: Some(-1.0), ..Default::default() }, "tokens_per_step"),
            (LogOptions { tokens_per_step: Some(1.0), skip_tokens: Some(f64::INFINITY), ..Default::default() }, "skip_tokens"),
        ] {
            let e = parse("a.csv", text, &o).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            assert!(e.to_string().starts_with("a.csv"), "{e}");
        }
        let log = parse("a.csv", text, &LogOptions { tokens_per_step: Some(MAX_TOKENS_PER_STEP), ..Default::default() }).expect("valid");
        assert_eq!(log.curves[0].points[1].tokens, 20.0 * MAX_TOKENS_PER_STEP);
    }

    #[test]
    fn metadata_ranges_are_checked() {
        let text = "tokens,loss\n10,3\n20,2.5\n";
        let o = LogOptions { rho: Some(1.5), ..Default::default() };
        let e = parse("a.csv", text, &o).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("rho"));
        let o = LogOptions { n0: Some(100.0), n: Some(75.0), l0: Some(2.0), ..Default::default() };
        let log = parse("a.csv", text, &o).expect("valid");
        assert!((log.curves[0].rho.expect("rho") - 0.25).abs() < 1e-12);
    }
}

#[cfg(test)]
mod fuzz {
    //! Every text format under the fuzzer: a short campaign here, a million inputs each in
    //! `bash bench/fuzz.sh`.
    use super::*;
    use crate::fuzz::{Campaign, TEXT_DICTIONARY, assert_clean, inputs_from_env};

    fn external(name: &str, lines: usize) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/external").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines().take(lines).collect::<Vec<_>>().join("\n").into_bytes()
    }

    /// What a parser that accepted an input must have produced.
    fn check(log: &ParsedLog) -> Result<(), String> {
        if log.curves.is_empty() {
            return Err("accepted with no curves".into());
        }
        for c in &log.curves {
            if c.points.is_empty() {
                return Err(format!("run `{}` has no checkpoints", c.run));
            }
            for p in &c.points {
                if !(p.tokens.is_finite() && p.tokens >= 0.0 && p.loss.is_finite() && p.loss > 0.0) {
                    return Err(format!("run `{}`: checkpoint tokens {} loss {}", c.run, p.tokens, p.loss));
                }
            }
            for (field, v) in [("n0", c.n0), ("rho", c.rho), ("l0", c.l0)] {
                if v.is_some_and(|v| !v.is_finite()) {
                    return Err(format!("run `{}`: {field} {v:?}", c.run));
                }
            }
            if c.rho.is_some_and(|r| !(0.0..1.0).contains(&r)) || c.n0.is_some_and(|n| n <= 0.0) {
                return Err(format!("run `{}`: n0 {:?} rho {:?} out of range", c.run, c.n0, c.rho));
            }
        }
        Ok(())
    }

    pub(crate) fn campaigns() -> Vec<(&'static str, Format, Vec<Vec<u8>>)> {
        let hf = br#"{"log_history": [
  {"epoch": 0.33, "learning_rate": 4.5e-05, "loss": 3.412, "num_input_tokens_seen": 81920, "step": 10},
  {"epoch": 0.33, "eval_loss": 3.301, "num_input_tokens_seen": 81920, "step": 10},
  {"epoch": 0.67, "eval_loss": 3.021, "eval_wikitext_loss": 3.4, "num_input_tokens_seen": 163840, "step": 20},
  {"epoch": 1.0, "predict_loss": 2.95, "step": 30},
  {"epoch": 1.0, "step": 30, "total_flos": 1.2e15, "train_loss": 3.2, "train_runtime": 40.1}
], "max_steps": 30}"#
            .to_vec();
        let hf_steps = br#"{"log_history": [{"loss": 3.2, "step": 100, "num_input_tokens_seen": 0}, {"eval_loss": 3.1, "step": 100}, {"eval_loss": 2.9, "step": 200}]}"#.to_vec();
        let csv = b"run,n0,rho,n,l0,tokens,loss,method,family,split\na,1e9,0.25,,2.5,0,3.1,depth,f,eval\na,1e9,0.25,,2.5,1e8,2.9,depth,f,eval\nb,1e9,,5e8,2.5,2e8,2.8,width,,\n".to_vec();
        let steps_csv = b"step,loss\n10,3.5\n20,3.1\n30,2.9\n".to_vec();
        let jsonl = b"{\"run\": \"a\", \"n0\": 1e9, \"rho\": 0.2, \"l0\": 2.5, \"tokens\": 1e8, \"loss\": 2.9}\n{\"run\": \"a\", \"tokens\": 2e8, \"loss\": 2.8, \"step\": 3}\n".to_vec();
        vec![
            ("hf trainer_state", Format::Hf, vec![hf.clone(), hf_steps.clone()]),
            ("wandb panel", Format::WandbPanel, vec![external("colpret_olmo_wandb_export_sample.csv", 40)]),
            ("wandb runs table", Format::WandbRuns, vec![external("misfitting_wandb_runs_export_spm.csv", 20)]),
            ("canonical csv", Format::Csv, vec![csv.clone(), steps_csv.clone(), external("pythia_train_lm_loss_70m-0.csv", 60)]),
            ("canonical jsonl", Format::Jsonl, vec![jsonl.clone()]),
            ("format detection", Format::Auto, vec![hf, hf_steps, csv, steps_csv, jsonl, external("colpret_olmo_wandb_export_sample.csv", 10)]),
        ]
    }

    pub(crate) fn run_all(inputs: u64) -> Vec<crate::fuzz::Outcome> {
        let mut out = Vec::new();
        for (i, (name, format, seeds)) in campaigns().into_iter().enumerate() {
            let c = Campaign { name, seeds, dictionary: TEXT_DICTIONARY, fixup: None };
            let options = [
                LogOptions { format, ..Default::default() },
                LogOptions { format, tokens_per_step: Some(4096.0), skip_tokens: Some(1e3), n0: Some(1e9), rho: Some(0.25), l0: Some(2.5), ..Default::default() },
            ];
            out.push(c.run(inputs, 7 + i as u64, |bytes| {
                let text = String::from_utf8_lossy(bytes);
                let mut accepted = false;
                for o in &options {
                    match parse("fuzz-input", &text, o) {
                        Ok(log) => {
                            check(&log)?;
                            accepted = true;
                        }
                        Err(e) => {
                            // The message names the file and is not empty.
                            let m = e.to_string();
                            if !m.starts_with("fuzz-input") {
                                return Err(format!("error without the file name: {m}"));
                            }
                        }
                    }
                }
                Ok(accepted)
            }));
        }
        out
    }

    #[test]
    fn text_log_parsers_survive_the_fuzzer() {
        assert_clean(&run_all(inputs_from_env(3000)));
    }
}
