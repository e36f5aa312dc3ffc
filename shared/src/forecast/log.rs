//! One run's log, read for a forecast the same way by the CLI, `p2law watch` and the Forecast
//! page: the loss to forecast (non-finite values kept, so the forecast can say where the run
//! broke), the training loss beside it for the over-fitting check, and the learning rate.

use super::{Forecast, ForecastError, ForecastOptions, Obs, Schedule, forecast};
use crate::data::{InputError, Location};
use crate::logs::{Format, LogOptions, ParsedLog, TokenSource, hf_trainer_state};
use serde::{Deserialize, Serialize};

/// Which curve of a log to forecast, and how to read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogChoice {
    pub format: Format,
    /// Loss key, column or tag to forecast (each format has a default: the eval loss when logged).
    pub metric: Option<String>,
    /// The training loss beside it (default: `loss` in a trainer_state.json forecasting an eval loss).
    pub train_metric: Option<String>,
    /// Which run, in a log that holds several.
    pub run: Option<String>,
    pub tokens_per_step: Option<f64>,
}

/// A run's log, read.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLog {
    pub file: String,
    pub run: String,
    /// What is forecast (`eval`, `train`, a tag).
    pub metric: String,
    pub eval: Vec<Obs>,
    pub train: Option<Vec<Obs>>,
    pub schedule: Option<Schedule>,
}

impl RunLog {
    pub fn forecast(&self, o: &ForecastOptions) -> Result<Forecast, ForecastError> {
        let o = ForecastOptions { schedule: self.schedule.clone(), ..o.clone() };
        forecast(&self.eval, self.train.as_deref(), &o)
    }
}

/// The checkpoints of the chosen run, with steps where the tokens came from them.
fn observations(file: &str, log: &ParsedLog, want: Option<&str>, tps: Option<f64>) -> Result<(String, String, Vec<Obs>), InputError> {
    let names = || log.curves.iter().map(|c| c.run.as_str()).collect::<Vec<_>>().join(", ");
    let curve = match (log.curves.as_slice(), want) {
        ([one], None) => one,
        (all, Some(w)) => all.iter().find(|c| c.run == w).ok_or_else(|| InputError::new(file, Location::File, Some("run"), format!("no run `{w}`; the log has: {}", names())))?,
        (all, None) => return Err(InputError::new(file, Location::File, Some("run"), format!("the log holds {} runs; choose one ({})", all.len(), names()))),
    };
    let steps = log.token_source == TokenSource::Steps;
    let obs = curve.points.iter().map(|p| Obs { tokens: p.tokens, loss: p.loss, step: tps.filter(|_| steps).map(|t| (p.tokens / t).round()) }).collect();
    Ok((curve.run.clone(), curve.split.clone().unwrap_or_default(), obs))
}

/// Reads a run's log with `parse` (which knows how to read the file's bytes: the shared text
/// parsers, or the backend's TensorBoard reader too); `text` is the file as text, when it is
/// text, for the learning rate of a trainer_state.json.
pub fn read(file: &str, text: Option<&str>, c: &LogChoice, parse: &dyn Fn(&LogOptions) -> Result<ParsedLog, InputError>) -> Result<RunLog, InputError> {
    let o = LogOptions { format: c.format, metric: c.metric.clone(), tokens_per_step: c.tokens_per_step, keep_non_finite: true, ..Default::default() };
    let log = parse(&o)?;
    let (run, split, eval) = observations(file, &log, c.run.as_deref(), c.tokens_per_step)?;
    let metric = if split.is_empty() { c.metric.clone().unwrap_or_else(|| "loss".into()) } else { split };
    let is_hf = log.format == Format::Hf;
    let guessed = (is_hf && metric != "train").then(|| "loss".to_string());
    let train = match c.train_metric.clone().or(guessed) {
        None => None,
        Some(m) => {
            let o = LogOptions { metric: Some(m.clone()), format: log.format, ..o.clone() };
            match parse(&o).and_then(|l| observations(file, &l, c.run.as_deref(), c.tokens_per_step)) {
                Ok((_, _, t)) => Some(t),
                // Asked for by name, its absence is an error; guessed, it is simply not logged.
                Err(e) if c.train_metric.is_some() => return Err(InputError { field: Some("train_metric".into()), message: format!("`{m}`: {}", e.message), ..e }),
                Err(_) => None,
            }
        }
    };
    let schedule = if is_hf { text.and_then(|t| hf_trainer_state::schedule(t, &o)) } else { None };
    Ok(RunLog { file: file.to_string(), run, metric, eval, train, schedule })
}
