//! Types of the p2law HTTP API, shared by the axum backend and the browser app.

use crate::bootstrap::{BootstrapOptions, Resample};
use crate::fit::{FitError, FitOptions};
use crate::data::CurvePoint;
use crate::fit::Objective;
use crate::law::{InputsError, LawForm};
use crate::logs::{Format, LogOptions, RunMeta, Skipped, TokenSource};
use crate::report::FitReport;
use crate::validate::Protocol;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `meta` part of `POST /api/uploads`: options for every file, overridden per file name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadMeta {
    /// Applies to every file.
    pub all: LogOptions,
    /// By file name; replaces `all` for that file.
    pub files: BTreeMap<String, LogOptions>,
    /// By file name, then run name: metadata of single runs (e.g. each run of a W&B export).
    pub runs: BTreeMap<String, BTreeMap<String, RunMeta>>,
}

/// A run as stored: metadata and counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunSummary {
    pub id: i64,
    pub upload_id: Option<i64>,
    pub name: String,
    pub n0: Option<f64>,
    pub rho: Option<f64>,
    pub l0: Option<f64>,
    pub method: Option<String>,
    pub family: Option<String>,
    pub split: Option<String>,
    pub token_source: TokenSource,
    pub points: usize,
    pub created_at: String,
}

/// A run with its checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunDetail {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub checkpoints: Vec<CurvePoint>,
    /// The learning-rate schedule it was trained along, when p2law knows it: a calibration job's
    /// run, from the job's events. A forecast of the run follows it unless told another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::forecast::schedule::Shape>,
}

/// What the server understood of one uploaded file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileSummary {
    pub file: String,
    pub upload_id: i64,
    pub bytes: usize,
    pub format: Format,
    pub token_source: TokenSource,
    pub runs: Vec<RunSummary>,
    pub skipped: Vec<Skipped>,
    pub deduplicated: usize,
    pub warmup_dropped: usize,
}

/// The answer to `POST /api/uploads`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadResponse {
    pub files: Vec<FileSummary>,
}

/// The most token counts one forecast request may ask for.
pub const MAX_FORECAST_AT: usize = 256;
/// The most bootstrap resamples one forecast may draw.
pub const MAX_FORECAST_RESAMPLES: usize = 5000;

/// The schema of `at`: up to [`MAX_FORECAST_AT`] positive token counts.
#[cfg(feature = "openapi")]
fn positive_tokens() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::Number).minimum(Some(1.0)).maximum(Some(1e30)))
        .max_items(Some(MAX_FORECAST_AT))
        .build()
}

/// `tokens` of a prediction: 1 to [`MAX_PREDICT_TOKENS`] positive counts.
#[cfg(feature = "openapi")]
fn predict_tokens() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::Number).exclusive_minimum(Some(0.0)).maximum(Some(1e300)))
        .min_items(Some(1))
        .max_items(Some(MAX_PREDICT_TOKENS))
        .build()
}

/// `POST /api/runs/{id}/forecast`, and the options `p2law forecast` resolves the same way.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForecastRequest {
    /// Token counts to forecast the loss at (default: 2×, 10×, 100× the last checkpoint).
    #[cfg_attr(feature = "openapi", schema(schema_with = positive_tokens))]
    pub at: Vec<f64>,
    /// `slope:<tau>`, `gap:<eps>` or `target:<loss>`.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(target|slope|gap):(0*[1-9][0-9]*(\.[0-9]*)?|0*\.[0-9]*[1-9][0-9]*)([eE][+-]?[0-9]{1,2})?$"))]
    pub rule: Option<String>,
    /// Band level, default 0.9: from 0.01 to 0.999 (closer to 1 the band is the bootstrap's
    /// extreme resamples, and JSON parsers round 0.9999999999999999 to 1).
    #[cfg_attr(feature = "openapi", schema(minimum = 0.01, maximum = 0.999))]
    pub level: Option<f64>,
    /// Bootstrap resamples, default 400.
    #[cfg_attr(feature = "openapi", schema(minimum = 50, maximum = 5000))]
    pub resamples: Option<usize>,
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 9223372036854775807_i64))]
    pub seed: Option<u64>,
    /// The prior blended into the forecast: `auto` (the default: the P² preset of `method`,
    /// when `n0`, `rho` and `l0` are known), `none`, or a preset id.
    pub prior: Option<String>,
    /// The run's pruning method for the prior: `depth`, `width` or an N:M pattern (`2:4`). A
    /// stored run's own, when omitted.
    pub method: Option<String>,
    /// Parameters of the model before pruning. A stored run's own, when omitted.
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0.0))]
    pub n0: Option<f64>,
    /// Pruning rate. A stored run's own, when omitted.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, exclusive_maximum = 1.0))]
    pub rho: Option<f64>,
    /// Loss before pruning. A stored run's own, when omitted.
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0.0))]
    pub l0: Option<f64>,
    /// The run's learning-rate schedule, `KIND:TOTAL_TOKENS[:FLOOR[:WARMUP_TOKENS]]` (`cosine`,
    /// `linear` or `constant`; the floor is the last rate over the peak, default 0): the forecast
    /// then follows it.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(cosine|linear|constant):[^:]+(:[^:]+){0,2}$"))]
    pub schedule: Option<String>,
    /// Along a schedule (given, or read from the log's learning rate): the anneal K (nats, the
    /// loss's drop from the peak rate to zero) from a finished run of the same recipe
    /// (`fit.anneal` of its forecast).
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub anneal: Option<f64>,
}

/// The band levels a forecast request may ask for.
pub const MIN_LEVEL: f64 = 0.01;
pub const MAX_LEVEL: f64 = 0.999;

impl ForecastRequest {
    /// The forecast's options, or the first bad field.
    pub fn resolve(&self) -> Result<crate::forecast::ForecastOptions, InputsError> {
        let d = crate::forecast::ForecastOptions::default();
        if self.at.len() > MAX_FORECAST_AT {
            return Err(field("at", format!("at most {MAX_FORECAST_AT} token counts, got {}", self.at.len())));
        }
        // Below one token `D^-β` runs to infinity; nobody forecasts there.
        if let Some(t) = self.at.iter().find(|t| !(t.is_finite() && **t >= 1.0)) {
            return Err(field("at", format!("token counts must be at least 1, got {t}")));
        }
        let rule = match &self.rule {
            None => None,
            Some(r) => Some(r.parse::<crate::budget::Rule>().map_err(|e| field("rule", e.to_string()))?),
        };
        let level = self.level.unwrap_or(d.level);
        if !(MIN_LEVEL..=MAX_LEVEL).contains(&level) {
            return Err(field("level", format!("from {MIN_LEVEL} to {MAX_LEVEL}, got {level}")));
        }
        let resamples = self.resamples.unwrap_or(d.resamples);
        if !(50..=MAX_FORECAST_RESAMPLES).contains(&resamples) {
            return Err(field("resamples", format!("must be 50 to {MAX_FORECAST_RESAMPLES}, got {resamples}")));
        }
        if let Some(seed) = self.seed.filter(|s| *s > i64::MAX as u64) {
            return Err(field("seed", format!("at most {}, got {seed}", i64::MAX)));
        }
        if let Some(t) = self.at.iter().find(|t| **t > 1e30) {
            return Err(field("at", format!("at most 1e30 tokens, got {t}")));
        }
        let prior = self.resolve_prior()?;
        let shape = match &self.schedule {
            None => None,
            Some(t) => Some(t.parse::<crate::forecast::schedule::Shape>().map_err(|e| field("schedule", e))?),
        };
        // An anneal without a schedule is checked by the forecast, which may read the schedule
        // from the log's learning rate.
        if let Some(k) = self.anneal.filter(|k| !(k.is_finite() && *k >= 0.0)) {
            return Err(field("anneal", format!("a loss drop in nats, 0 or more, got {k}")));
        }
        Ok(crate::forecast::ForecastOptions { at: self.at.clone(), rule, level, resamples, seed: self.seed.unwrap_or(d.seed), schedule: None, prior, shape, anneal: self.anneal })
    }

    /// Fills the model inputs the request leaves out from a stored run's.
    pub fn with_run(mut self, run: &RunSummary) -> Self {
        self.n0 = self.n0.or(run.n0);
        self.rho = self.rho.or(run.rho);
        self.l0 = self.l0.or(run.l0);
        if self.method.is_none() {
            self.method.clone_from(&run.method);
        }
        self
    }

    /// The prior: none unless asked for by name or, under `auto`, unless the run's N0, ρ and L0
    /// are known; then all three (and, under `auto`, a method with a P² preset) or the first
    /// missing field.
    fn resolve_prior(&self) -> Result<Option<crate::forecast::Prior>, InputsError> {
        let mode = self.prior.as_deref().unwrap_or("auto");
        let given = self.n0.is_some() || self.rho.is_some() || self.l0.is_some();
        if mode == "none" || (mode == "auto" && !given) {
            return Ok(None);
        }
        let need = |v: Option<f64>, name: &'static str, what: &str| v.ok_or_else(|| field(name, format!("the prior needs the run's {what} (with n0, rho and l0 all given)")));
        let n0 = need(self.n0, "n0", "parameter count before pruning")?;
        let rho = need(self.rho, "rho", "pruning rate")?;
        let l0 = need(self.l0, "l0", "loss before pruning")?;
        let preset = if mode == "auto" {
            let method = self.method.as_deref().ok_or_else(|| field("method", "the prior is the P² preset of the run's method: give depth, width or an N:M pattern such as 2:4 (or prior none)".into()))?;
            if !(method == "depth" || method == "width" || method.parse::<crate::calibrate::NmPattern>().is_ok()) {
                return Err(field("method", format!("`{method}` is not a pruning method: depth, width or an N:M pattern such as 2:4")));
            }
            let shipped = crate::presets::study_presets().presets;
            crate::presets::study_preset_in(&shipped, method).cloned().ok_or_else(|| field("prior", "no P² preset ships: give prior none, or a preset id".into()))?
        } else {
            crate::presets::preset(mode).map_err(|e| field("prior", format!("unknown preset `{}`; shipped: {}, or auto or none", e.id, e.shipped)))?
        };
        crate::forecast::Prior::from_preset(&preset, crate::law::Inputs { n0, rho, l0: Some(l0), tokens: 1.0 }).map(Some).map_err(|e| match e {
            crate::forecast::ForecastError::Invalid { field: f, message } => field(f, message),
            other => field("prior", other.to_string()),
        })
    }
}

/// `POST /api/fits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FitRequest {
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10000))]
    pub run_ids: Vec<i64>,
    pub law: LawForm,
    #[serde(default)]
    pub objective: Objective,
    /// `quick`, `full` or a count.
    #[serde(default = "quick")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^(quick|full|[1-9][0-9]{0,4})$"))]
    pub starts: String,
    #[serde(default)]
    pub holdout: Option<Protocol>,
    /// Bootstrap resamples (0: none).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 2000))]
    pub bootstrap: usize,
    #[serde(default)]
    pub bootstrap_by: Resample,
    #[serde(default)]
    pub seed: u64,
    /// Central level of the bootstrap intervals (default 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.5, maximum = 0.999))]
    pub level: Option<f64>,
}

fn quick() -> String {
    "quick".into()
}

/// The largest bootstrap a request may ask for.
pub const MAX_BOOTSTRAP: usize = 2000;

impl FitRequest {
    /// Resolves the request into fit options, checking each field: the one path from a request
    /// to a fit for the server, `p2law fit` and the browser alike.
    pub fn resolve(&self) -> Result<(FitOptions, Option<Protocol>, Option<BootstrapOptions>), FitError> {
        let mut o = FitOptions::new(self.law);
        o.objective = self.objective;
        o.starts = self.starts.parse()?;
        o.seed = self.seed;
        if self.bootstrap > MAX_BOOTSTRAP {
            return Err(FitError::InvalidOption { option: "bootstrap", message: format!("at most {MAX_BOOTSTRAP} resamples, got {}", self.bootstrap) });
        }
        let level = self.level.unwrap_or(0.95);
        if !(0.5..=0.999).contains(&level) {
            return Err(FitError::InvalidOption { option: "level", message: format!("from 0.5 to 0.999, got {level}") });
        }
        let boot = (self.bootstrap > 0).then_some(BootstrapOptions { resamples: self.bootstrap, seed: self.seed, by: self.bootstrap_by, level });
        Ok((o, self.holdout, boot))
    }
}

/// A stored fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredFit {
    pub id: i64,
    pub created_at: String,
    pub run_ids: Vec<i64>,
    pub request: FitRequest,
    pub report: FitReport,
    /// [`FitReport::degeneracy`]: which coefficients the data do not pin down, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degenerate: Option<String>,
}

/// One line of `GET /api/fits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FitSummary {
    pub id: i64,
    pub created_at: String,
    pub law: LawForm,
    pub objective_kind: Objective,
    pub rmse: f64,
    pub r2: Option<f64>,
    pub runs: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degenerate: Option<String>,
}

/// Every error body: a message, and where in the input the problem is when known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<crate::data::Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The inputs of one pruned model: `n0`, the rate `rho` or the size after pruning `n`, and `l0`
/// where the law needs it, checked against the law's domain. The CLI's `predict`/`budget` and
/// `POST /api/predict` resolve through here.
pub fn model_inputs(law: LawForm, n0: f64, rho: Option<f64>, n: Option<f64>, l0: Option<f64>) -> Result<crate::law::Inputs, InputsError> {
    let x = match (rho, n) {
        (Some(_), Some(_)) => return Err(field("rho", "give `rho` or `n`, not both".into())),
        (Some(rho), None) => crate::law::Inputs { n0, rho, l0, tokens: 1.0 },
        (None, Some(n)) => {
            if !(n.is_finite() && n > 0.0 && n <= n0) {
                return Err(field("n", format!("must be in (0, n0 = {n0}], got {n}")));
            }
            crate::law::Inputs::from_sizes(n0, n, l0, 1.0)
        }
        (None, None) => return Err(field("rho", "give `rho` or `n`".into())),
    };
    law.check(&x, false)?;
    Ok(x)
}

/// A request field that does not hold, by name (the API's 422 and the CLI's `--flag` both read
/// the field).
fn field(field: &'static str, message: String) -> InputsError {
    InputsError { field, message }
}

/// The most token counts one prediction may ask for.
pub const MAX_PREDICT_TOKENS: usize = 1024;

/// `POST /api/predict`: the curve a stored fit or a preset predicts for one pruned model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PredictRequest {
    /// A stored fit (`GET /api/fits`); or give `preset`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub fit_id: Option<i64>,
    /// A preset id (`GET /api/presets`); or give `fit_id`.
    #[serde(default)]
    pub preset: Option<String>,
    /// Parameters before pruning, embeddings included.
    #[cfg_attr(feature = "openapi", schema(exclusive_minimum = 0.0))]
    pub n0: f64,
    /// Fraction of parameters removed (or give `n`).
    #[serde(default)]
    pub rho: Option<f64>,
    /// Parameters after pruning (instead of `rho`).
    #[serde(default)]
    pub n: Option<f64>,
    /// Loss before pruning, nats/token (laws anchored on it need it).
    #[serde(default)]
    pub l0: Option<f64>,
    /// Post-training token counts.
    #[cfg_attr(feature = "openapi", schema(schema_with = predict_tokens))]
    pub tokens: Vec<f64>,
}

impl PredictRequest {
    /// Checks the token counts (the model inputs are checked against the fit's law, once the
    /// fit is known: [`model_inputs`]).
    pub fn check_tokens(&self) -> Result<(), InputsError> {
        if self.tokens.is_empty() || self.tokens.len() > MAX_PREDICT_TOKENS {
            return Err(field("tokens", format!("1 to {MAX_PREDICT_TOKENS} token counts, got {}", self.tokens.len())));
        }
        match self.tokens.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
            Some(t) => Err(field("tokens", format!("token counts must be positive, got {t}"))),
            None => Ok(()),
        }
    }
}

/// A preset sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NamedPreset {
    pub name: String,
    pub request: crate::calibrate::CalibrationRequest,
}

/// A Hugging Face checkpoint in the models directory, as its config describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelInfo {
    /// The parent's name in a request: `hf:` and the directory name.
    pub name: String,
    pub architecture: Option<String>,
    pub parameters: Option<u64>,
    pub layers: Option<u64>,
    pub dtype: Option<String>,
    /// Why it cannot be used, when it cannot.
    pub error: Option<String>,
}

/// What the lab offers: the built-in parents, the Hugging Face checkpoints in the models
/// directory, the presets and the wgpu adapters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LabInfo {
    pub parents: Vec<ParentInfo>,
    pub models_dir: String,
    pub models: Vec<ModelInfo>,
    pub presets: Vec<NamedPreset>,
    pub adapters: Vec<String>,
    pub corpus_dir: String,
    pub corpora: Vec<String>,
}

/// A built-in parent as `GET /api/lab` lists it: [`crate::calibrate::Parent`] on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParentInfo {
    pub name: String,
    pub shape: crate::models::DecoderShape,
    pub pretrain_tokens: u64,
    pub batch: usize,
    pub seq_len: usize,
    pub peak_lr: f64,
}

impl From<&crate::calibrate::Parent> for ParentInfo {
    fn from(p: &crate::calibrate::Parent) -> Self {
        Self { name: p.name.to_string(), shape: p.shape, pretrain_tokens: p.pretrain_tokens, batch: p.batch, seq_len: p.seq_len, peak_lr: p.peak_lr }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(prior: Option<&str>, method: Option<&str>, n0: Option<f64>, rho: Option<f64>, l0: Option<f64>) -> ForecastRequest {
        ForecastRequest { prior: prior.map(str::to_string), method: method.map(str::to_string), n0, rho, l0, ..Default::default() }
    }

    #[test]
    fn a_forecast_prior_is_resolved_or_refused_by_field() {
        // Nothing known about the run: no prior, and no complaint.
        assert_eq!(request(None, None, None, None, None).resolve().unwrap().prior, None);
        // The method's own P² preset.
        let o = request(None, Some("width"), Some(3e6), Some(0.25), Some(2.1)).resolve().unwrap();
        assert_eq!(o.prior.expect("a prior").source, "p2-study-width");
        let o = request(Some("auto"), Some("2:4"), Some(3e6), Some(0.5), Some(2.1)).resolve().unwrap();
        assert_eq!(o.prior.unwrap().source, "p2-study-nm");
        // Named, or turned off.
        let o = request(Some("p2-study-pooled"), None, Some(3e6), Some(0.25), Some(2.1)).resolve().unwrap();
        assert_eq!(o.prior.unwrap().source, "p2-study-pooled");
        assert_eq!(request(Some("none"), Some("width"), Some(3e6), Some(0.25), Some(2.1)).resolve().unwrap().prior, None);
        // Each missing or bad field by name.
        let bad = |r: ForecastRequest| r.resolve().unwrap_err().field;
        assert_eq!(bad(request(None, Some("width"), Some(3e6), None, Some(2.1))), "rho");
        assert_eq!(bad(request(None, Some("width"), Some(3e6), Some(0.25), None)), "l0");
        assert_eq!(bad(request(None, None, Some(3e6), Some(0.25), Some(2.1))), "method");
        assert_eq!(bad(request(None, Some("magnitude"), Some(3e6), Some(0.25), Some(2.1))), "method");
        assert_eq!(bad(request(Some("p2-nonesuch"), None, Some(3e6), Some(0.25), Some(2.1))), "prior");
        assert_eq!(bad(request(None, Some("depth"), Some(3e6), Some(1.5), Some(2.1))), "rho");
        assert_eq!(bad(request(None, Some("depth"), Some(-1.0), Some(0.25), Some(2.1))), "n0");
        // A stored run's inputs fill what the request leaves out.
        let run = RunSummary {
            id: 1,
            upload_id: None,
            name: "r".into(),
            n0: Some(3e6),
            rho: Some(0.35),
            l0: Some(2.0),
            method: Some("depth".into()),
            family: None,
            split: None,
            token_source: TokenSource::Logged,
            points: 0,
            created_at: String::new(),
        };
        let p = ForecastRequest::default().with_run(&run).resolve().unwrap().prior.unwrap();
        assert_eq!((p.source.as_str(), p.inputs.rho), ("p2-study-depth", 0.35));
        let p = ForecastRequest { rho: Some(0.5), ..Default::default() }.with_run(&run).resolve().unwrap().prior.unwrap();
        assert_eq!(p.inputs.rho, 0.5);
    }

    #[test]
    fn a_forecast_schedule_and_anneal_are_resolved_or_refused_by_field() {
        let r = ForecastRequest { schedule: Some("linear:3e11:0.1:3.75e8".into()), anneal: Some(0.04), ..Default::default() };
        let o = r.resolve().unwrap();
        let s = o.shape.expect("a schedule");
        assert_eq!((s.decay, s.total, s.floor, s.warmup), (crate::forecast::schedule::Decay::Linear, 3e11, 0.1, 3.75e8));
        assert_eq!(o.anneal, Some(0.04));
        let bad = |r: ForecastRequest| r.resolve().unwrap_err();
        let e = bad(ForecastRequest { schedule: Some("step:1e9".into()), ..Default::default() });
        assert!(e.field == "schedule" && e.message.contains("`step`"), "{e:?}");
        // Alone, an anneal is left to the forecast (the log may tell the schedule).
        assert_eq!(ForecastRequest { anneal: Some(0.04), ..Default::default() }.resolve().unwrap().anneal, Some(0.04));
        let e = bad(ForecastRequest { schedule: Some("cosine:1e9".into()), anneal: Some(-1.0), ..Default::default() });
        assert_eq!(e.field, "anneal");
        // JSON carries both, and an unknown field is still refused.
        let r: ForecastRequest = serde_json::from_str(r#"{"schedule": "cosine:2e9:0.1", "anneal": 0.05}"#).unwrap();
        assert_eq!(r.resolve().unwrap().anneal, Some(0.05));
        assert!(serde_json::from_str::<ForecastRequest>(r#"{"schedual": "cosine:2e9"}"#).is_err());
    }
}
