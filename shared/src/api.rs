//! Types of the p2law HTTP API, shared by the axum backend and the browser app.

use crate::bootstrap::{BootstrapOptions, Resample};
use crate::fit::{FitError, FitOptions};
use crate::data::CurvePoint;
use crate::fit::Objective;
use crate::law::LawForm;
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

/// `POST /api/fits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FitRequest {
    pub run_ids: Vec<i64>,
    pub law: LawForm,
    #[serde(default)]
    pub objective: Objective,
    /// `quick`, `full` or a count.
    #[serde(default = "quick")]
    pub starts: String,
    #[serde(default)]
    pub holdout: Option<Protocol>,
    /// Bootstrap resamples (0: none).
    #[serde(default)]
    pub bootstrap: usize,
    #[serde(default)]
    pub bootstrap_by: Resample,
    #[serde(default)]
    pub seed: u64,
}

fn quick() -> String {
    "quick".into()
}

/// The largest bootstrap a request may ask for.
pub const MAX_BOOTSTRAP: usize = 2000;

impl FitRequest {
    /// Resolves the request into fit options, checking each field.
    pub fn resolve(&self) -> Result<(FitOptions, Option<Protocol>, Option<BootstrapOptions>), FitError> {
        let mut o = FitOptions::new(self.law);
        o.objective = self.objective;
        o.starts = self.starts.parse()?;
        o.seed = self.seed;
        if self.bootstrap > MAX_BOOTSTRAP {
            return Err(FitError::InvalidOption { option: "bootstrap", message: format!("at most {MAX_BOOTSTRAP} resamples, got {}", self.bootstrap) });
        }
        let boot = (self.bootstrap > 0).then_some(BootstrapOptions { resamples: self.bootstrap, seed: self.seed, by: self.bootstrap_by, level: 0.95 });
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
