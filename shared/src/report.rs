//! The fit file: one JSON object that `p2law fit --json` prints, `--out` writes, and `predict`,
//! `budget` and the browser read.
//!
//! `{"law", "objective_kind", "params": {name: value}, "objective", "metrics", "holdout",
//! "intervals", ...}`: coefficients are keyed by name so the file stays readable and order-free.

use crate::bootstrap::Bootstrap;
use crate::budget::{self, Rule};
use crate::data::Curve;
use crate::fit::{FitResult, Metrics, Objective, Spread};
use crate::law::{Features, Inputs, LawForm};
use crate::validate::HoldoutReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bootstrap intervals as stored in a fit file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Intervals {
    pub level: f64,
    pub by: crate::bootstrap::Resample,
    pub seed: u64,
    pub resamples: usize,
    pub failed: usize,
    /// Percentile interval per coefficient.
    pub params: BTreeMap<String, [f64; 2]>,
    /// The refitted coefficient vectors, in the law's coefficient order, for bands at any `D`.
    pub samples: Vec<Vec<f64>>,
}

/// What the fit was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DataSummary {
    pub points: usize,
    pub curves: usize,
    pub runs: Vec<String>,
    pub n0_range: Option<[f64; 2]>,
    pub rho_range: Option<[f64; 2]>,
    pub tokens_range: Option<[f64; 2]>,
}

impl DataSummary {
    pub fn of(curves: &[Curve]) -> Self {
        let range = |vals: Vec<f64>| {
            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo <= hi).then_some([lo, hi])
        };
        DataSummary {
            points: curves.iter().map(|c| c.points.len()).sum(),
            curves: curves.len(),
            runs: curves.iter().map(|c| c.run.clone()).collect(),
            n0_range: range(curves.iter().filter_map(|c| c.n0).collect()),
            rho_range: range(curves.iter().filter_map(|c| c.rho).collect()),
            tokens_range: range(curves.iter().flat_map(|c| c.points.iter().map(|p| p.tokens)).collect()),
        }
    }
}

/// A stored fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FitReport {
    pub law: LawForm,
    pub objective_kind: Objective,
    pub params: BTreeMap<String, f64>,
    pub objective: f64,
    pub metrics: Metrics,
    pub holdout: Option<HoldoutReport>,
    pub intervals: Option<Intervals>,
    #[serde(default)]
    pub covariance: Option<Vec<Vec<f64>>>,
    #[serde(default)]
    pub iterations: u64,
    #[serde(default)]
    pub stop_reason: String,
    #[serde(default)]
    pub starts_tried: usize,
    #[serde(default)]
    pub near_optimal_starts: usize,
    #[serde(default)]
    pub spread: BTreeMap<String, Spread>,
    #[serde(default)]
    pub weakly_identified: Vec<String>,
    pub data: Option<DataSummary>,
    /// Where the data came from (files, models, token range), free text.
    #[serde(default)]
    pub provenance: Option<String>,
}

/// A fit file that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("fit file: coefficient `{name}` of law `{law}` is missing from `params`")]
    MissingParam { name: &'static str, law: LawForm },
    #[error("fit file: coefficient `{name}` is not finite")]
    NotFinite { name: String },
}

impl FitReport {
    pub fn new(result: &FitResult, curves: &[Curve], holdout: Option<HoldoutReport>, boot: Option<&Bootstrap>) -> Self {
        let names = result.law.law().params();
        let keyed = |v: &[f64]| names.iter().zip(v).map(|(n, x)| (n.to_string(), *x)).collect::<BTreeMap<_, _>>();
        let intervals = boot.map(|b| Intervals {
            level: b.level,
            by: b.by,
            seed: b.seed,
            resamples: b.resamples,
            failed: b.failed,
            params: names
                .iter()
                .zip(b.param_intervals())
                .filter_map(|(n, i)| i.map(|i| (n.to_string(), i)))
                .collect(),
            samples: b.samples.clone(),
        });
        FitReport {
            law: result.law,
            objective_kind: result.objective_kind,
            params: keyed(&result.params),
            objective: result.objective,
            metrics: result.metrics,
            holdout,
            intervals,
            covariance: result.covariance.clone(),
            iterations: result.iterations,
            stop_reason: result.stop_reason.clone(),
            starts_tried: result.starts_tried,
            near_optimal_starts: result.near_optimal_starts,
            spread: names.iter().zip(&result.spread).map(|(n, s)| (n.to_string(), *s)).collect(),
            weakly_identified: result.weakly_identified().into_iter().map(str::to_string).collect(),
            data: Some(DataSummary::of(curves)),
            provenance: None,
        }
    }

    /// A report that carries coefficients only (a published fit, or one from a link): no data,
    /// no metrics beyond what is given.
    pub fn from_coefficients(law: LawForm, objective_kind: Objective, params: BTreeMap<String, f64>, metrics: Metrics, provenance: String) -> Self {
        FitReport {
            law,
            objective_kind,
            params,
            objective: metrics.huber,
            metrics,
            holdout: None,
            intervals: None,
            covariance: None,
            iterations: 0,
            stop_reason: String::new(),
            starts_tried: 0,
            near_optimal_starts: 0,
            spread: BTreeMap::new(),
            weakly_identified: Vec::new(),
            data: None,
            provenance: Some(provenance),
        }
    }

    /// Coefficients in the law's order.
    pub fn coefficients(&self) -> Result<Vec<f64>, ReportError> {
        self.law
            .law()
            .params()
            .iter()
            .map(|&name| {
                let v = *self.params.get(name).ok_or(ReportError::MissingParam { name, law: self.law })?;
                if v.is_finite() { Ok(v) } else { Err(ReportError::NotFinite { name: name.to_string() }) }
            })
            .collect()
    }

    /// The bootstrap as a [`Bootstrap`], for bands.
    pub fn bootstrap(&self) -> Option<Bootstrap> {
        let i = self.intervals.as_ref()?;
        let k = self.law.law().params().len();
        Some(Bootstrap {
            law: self.law,
            by: i.by,
            seed: i.seed,
            level: i.level,
            resamples: i.resamples,
            failed: i.failed,
            samples: i.samples.iter().filter(|s| s.len() == k).cloned().collect(),
        })
    }
}

/// The whole fit pipeline every front end runs: the multi-start fit, the held-out protocol if
/// asked, the bootstrap if asked, and the report.
pub fn run_fit(
    curves: &[Curve],
    options: &crate::fit::FitOptions,
    protocol: Option<crate::validate::Protocol>,
    boot: Option<crate::bootstrap::BootstrapOptions>,
) -> Result<FitReport, crate::fit::FitError> {
    let best = crate::fit::fit(curves, options)?;
    let held_out = protocol.map(|p| crate::validate::holdout(curves, options, p)).transpose()?;
    let boot = boot.filter(|b| b.resamples > 0).map(|b| crate::bootstrap::bootstrap(curves, options, &best, &b)).transpose()?;
    Ok(FitReport::new(&best, curves, held_out, boot.as_ref()))
}

/// One predicted point with its band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub tokens: f64,
    pub loss: f64,
    pub band: Option<[f64; 2]>,
}

/// Predictions at each token count.
pub fn predict(report: &FitReport, x: &Inputs, tokens: &[f64]) -> Result<Vec<Prediction>, ReportError> {
    let p = report.coefficients()?;
    let boot = report.bootstrap();
    let f = Features::new(x);
    Ok(tokens
        .iter()
        .map(|&d| Prediction {
            tokens: d,
            loss: report.law.law().value(&p, &f.at_tokens(d)),
            band: boot.as_ref().and_then(|b| b.predict_interval(&Inputs { tokens: d, ..*x })),
        })
        .collect())
}

/// A recommended budget with its band and cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub rule: Rule,
    pub tokens: f64,
    pub loss_at_budget: f64,
    pub asymptote: Option<f64>,
    pub tokens_band: Option<[f64; 2]>,
    /// Share of bootstrap resamples for which the rule cannot be met.
    pub unreachable_share: Option<f64>,
    pub cost: budget::Cost,
}

/// Errors of [`recommend`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecommendError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Budget(#[from] budget::BudgetError),
}

/// Applies `rule` to the fit at `x` and costs the result.
pub fn recommend(
    report: &FitReport,
    x: &Inputs,
    rule: Rule,
    teacher: Option<f64>,
    hw: Option<&budget::Hardware>,
) -> Result<Recommendation, RecommendError> {
    let p = report.coefficients()?;
    let tokens = budget::recommend(report.law, &p, x, rule)?;
    let f = Features::new(x).at_tokens(tokens);
    let law = report.law.law();
    let (tokens_band, unreachable_share) = match report.bootstrap() {
        Some(b) => {
            let (band, share) = b.budget_interval(x, rule);
            (band, Some(share))
        }
        None => (None, None),
    };
    Ok(Recommendation {
        rule,
        tokens,
        loss_at_budget: law.value(&p, &f),
        asymptote: law.tokens_term(&p, &f).map(|t| t.asymptote),
        tokens_band,
        unreachable_share,
        cost: budget::cost(x.n(), tokens, teacher, hw)?,
    })
}
