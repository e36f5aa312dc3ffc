//! Fitting a law form to loss curves.
//!
//! Two objectives, both multi-start over the form's initial grid:
//! - [`Objective::Lsq`]: least squares on raw loss, Levenberg–Marquardt (the P² paper's method);
//! - [`Objective::HuberLog`]: Huber (delta 1e-3) on `ln L_pred - ln L_obs`, L-BFGS, positive
//!   constants fitted as `exp(.)` (Chinchilla Approach 3 as replicated by Epoch AI).
//!
//! [`fit`] returns the best start with its metrics, the spread of near-optimal starts (weakly
//! identified coefficients show up there), and, for least squares, the covariance.

mod huber;
mod lsq;
pub mod metrics;

pub use metrics::Metrics;

use crate::data::Curve;
use crate::law::{Features, Law, LawForm};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The fitting objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Objective {
    /// Sum of squared loss residuals, Levenberg–Marquardt.
    #[default]
    Lsq,
    /// Sum of Huber(delta) of log-loss residuals, L-BFGS.
    HuberLog,
}

impl FromStr for Objective {
    type Err = FitError;
    fn from_str(s: &str) -> Result<Self, FitError> {
        match s {
            "lsq" => Ok(Objective::Lsq),
            "huber-log" => Ok(Objective::HuberLog),
            _ => Err(FitError::InvalidOption { option: "objective", message: format!("`{s}`: expected lsq or huber-log") }),
        }
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Objective::Lsq => "lsq",
            Objective::HuberLog => "huber-log",
        })
    }
}

/// Which initial points to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Starts {
    /// The form's small grid.
    Quick,
    /// The form's full grid.
    Full,
    /// This many points drawn (seeded, without replacement) from the full grid.
    Count(usize),
}

impl FromStr for Starts {
    type Err = FitError;
    fn from_str(s: &str) -> Result<Self, FitError> {
        match s {
            "quick" => Ok(Starts::Quick),
            "full" => Ok(Starts::Full),
            n => match n.parse::<usize>() {
                Ok(k) if k > 0 => Ok(Starts::Count(k)),
                _ => Err(FitError::InvalidOption { option: "starts", message: format!("`{s}`: expected quick, full or a positive count") }),
            },
        }
    }
}

/// Fit options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    pub law: LawForm,
    pub objective: Objective,
    pub starts: Starts,
    /// Huber threshold on log-loss residuals.
    pub huber_delta: f64,
    /// Seed for drawing starts (and for the bootstrap).
    pub seed: u64,
    /// Iteration cap per start.
    pub max_iters: u64,
    /// Worker threads for the starts on native targets; 0 takes every core.
    #[serde(default)]
    pub threads: usize,
    /// Stops the fit at the next start or resample once set (a server's client that left).
    #[serde(skip)]
    pub cancel: Cancel,
}

impl FitOptions {
    pub fn new(law: LawForm) -> Self {
        Self { law, objective: Objective::Lsq, starts: Starts::Quick, huber_delta: 1e-3, seed: 0, max_iters: 1000, threads: 0, cancel: Cancel::default() }
    }
}

/// A flag that stops a running fit, shared between its caller and its threads. It is no part of
/// what the fit computes: any two compare equal.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl PartialEq for Cancel {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Why a fit cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("no data: give at least one curve with checkpoints")]
    EmptyData,
    #[error("run `{run}`: field `{field}` is missing; law `{law}` needs it")]
    MissingField { run: String, field: &'static str, law: LawForm },
    #[error("run `{run}`: field `rho` must be in (0, 1) for law `{law}` (a pruned model), got {rho}")]
    RhoOutOfRange { run: String, rho: f64, law: LawForm },
    #[error("run `{run}`, checkpoint {index}: {field} must be a positive finite number, got {value}")]
    InvalidPoint { run: String, index: usize, field: &'static str, value: f64 },
    #[error("{points} checkpoints cannot determine the {params} coefficients of law `{law}`")]
    TooFewPoints { points: usize, params: usize, law: LawForm },
    #[error("option `{option}`: {message}")]
    InvalidOption { option: &'static str, message: String },
    #[error("no start converged to a finite objective")]
    NoConvergence,
    #[error("holdout `{protocol}`: {message}")]
    Holdout { protocol: String, message: String },
    #[error("the fit was cancelled")]
    Cancelled,
}

/// Checkpoints flattened for fitting: features, observed loss, and which curve each came from.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub features: Vec<Features>,
    pub loss: Vec<f64>,
    /// `ln loss`, for the log-space objective.
    pub ln_loss: Vec<f64>,
    pub curve_of: Vec<usize>,
    pub runs: Vec<String>,
}

impl Dataset {
    /// Checks every curve against what `law` needs and flattens it.
    pub fn new(curves: &[Curve], law: LawForm) -> Result<Self, FitError> {
        let needs = law.law().needs();
        let mut d = Dataset { features: Vec::new(), loss: Vec::new(), ln_loss: Vec::new(), curve_of: Vec::new(), runs: Vec::new() };
        // A D = 0 checkpoint (the loss right after pruning) is data, but no law is defined there:
        // fits leave it out.
        for c in curves.iter().filter(|c| c.points.iter().any(|p| p.tokens != 0.0)) {
            let missing = |field| FitError::MissingField { run: c.run.clone(), field, law };
            let n0 = c.n0.ok_or_else(|| missing("n0"))?;
            if !(n0.is_finite() && n0 > 0.0) {
                return Err(FitError::InvalidPoint { run: c.run.clone(), index: 0, field: "n0", value: n0 });
            }
            let rho = match (c.rho, needs.pruned) {
                (Some(r), true) if r > 0.0 && r < 1.0 => r,
                (Some(r), true) => return Err(FitError::RhoOutOfRange { run: c.run.clone(), rho: r, law }),
                (None, true) => return Err(missing("rho")),
                (Some(r), false) if (0.0..1.0).contains(&r) => r,
                (Some(r), false) => return Err(FitError::RhoOutOfRange { run: c.run.clone(), rho: r, law }),
                (None, false) => 0.0,
            };
            if needs.l0 {
                match c.l0 {
                    None => return Err(missing("l0")),
                    Some(l0) if !(l0.is_finite() && l0 > 0.0) => {
                        return Err(FitError::InvalidPoint { run: c.run.clone(), index: 0, field: "l0", value: l0 });
                    }
                    Some(_) => {}
                }
            }
            let k = d.runs.len();
            d.runs.push(c.run.clone());
            for (i, p) in c.points.iter().enumerate().filter(|(_, p)| p.tokens != 0.0) {
                let bad = |field, value| FitError::InvalidPoint { run: c.run.clone(), index: i, field, value };
                if !(p.tokens.is_finite() && p.tokens > 0.0) {
                    return Err(bad("tokens", p.tokens));
                }
                if !(p.loss.is_finite() && p.loss > 0.0) {
                    return Err(bad("loss", p.loss));
                }
                let x = crate::law::Inputs { n0, rho, l0: c.l0, tokens: p.tokens };
                d.features.push(Features::new(&x));
                d.loss.push(p.loss);
                d.ln_loss.push(p.loss.ln());
                d.curve_of.push(k);
            }
        }
        if d.loss.is_empty() {
            return Err(FitError::EmptyData);
        }
        let params = law.law().params().len();
        if d.loss.len() <= params {
            return Err(FitError::TooFewPoints { points: d.loss.len(), params, law });
        }
        Ok(d)
    }

    pub fn len(&self) -> usize {
        self.loss.len()
    }

    pub fn is_empty(&self) -> bool {
        self.loss.is_empty()
    }

    /// The subset at `indices` (points, in the given order), renumbering curves.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut d = Dataset { features: Vec::new(), loss: Vec::new(), ln_loss: Vec::new(), curve_of: Vec::new(), runs: Vec::new() };
        let mut map = std::collections::HashMap::new();
        for &i in indices {
            let k = *map.entry(self.curve_of[i]).or_insert_with(|| {
                d.runs.push(self.runs[self.curve_of[i]].clone());
                d.runs.len() - 1
            });
            d.features.push(self.features[i]);
            d.loss.push(self.loss[i]);
            d.ln_loss.push(self.ln_loss[i]);
            d.curve_of.push(k);
        }
        d
    }
}

/// The result of one local optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalFit {
    pub params: Vec<f64>,
    pub objective: f64,
    pub iterations: u64,
    pub stop_reason: String,
}

/// The spread of a coefficient over the near-optimal starts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Spread {
    pub min: f64,
    pub max: f64,
}

/// A finished multi-start fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitResult {
    pub law: LawForm,
    pub objective_kind: Objective,
    pub params: Vec<f64>,
    /// Sum of squared residuals (lsq) or of Huber terms (huber-log) at `params`.
    pub objective: f64,
    pub iterations: u64,
    pub stop_reason: String,
    /// `s^2 (J^T J)^-1` for least squares when `J` has full rank; none for Huber.
    pub covariance: Option<Vec<Vec<f64>>>,
    /// `L_pred - L_obs` per checkpoint.
    pub residuals: Vec<f64>,
    pub metrics: Metrics,
    pub starts_tried: usize,
    pub starts_finite: usize,
    /// Coefficient ranges over the starts within 0.1 % of the best objective.
    pub spread: Vec<Spread>,
    pub near_optimal_starts: usize,
}

impl FitResult {
    /// Coefficients whose near-optimal spread exceeds 5 % of their magnitude: the data
    /// cannot pin them down.
    pub fn weakly_identified(&self) -> Vec<&'static str> {
        let names = self.law.law().params();
        self.spread
            .iter()
            .zip(&self.params)
            .zip(names)
            .filter(|((s, p), _)| (s.max - s.min) > 0.05 * p.abs().max(1e-3))
            .map(|(_, n)| *n)
            .collect()
    }
}

/// The full, quick, or sampled grid of starts.
pub fn start_points(law: &dyn Law, starts: Starts, seed: u64) -> Vec<Vec<f64>> {
    let grid = match starts {
        Starts::Quick => law.grid_quick(),
        _ => law.grid_full(),
    };
    let mut points: Vec<Vec<f64>> = vec![Vec::new()];
    for axis in &grid {
        points = points.into_iter().flat_map(|p| axis.iter().map(move |v| [p.clone(), vec![*v]].concat())).collect();
    }
    if let Starts::Count(n) = starts {
        if n < points.len() {
            let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
            points.shuffle(&mut rng);
            points.truncate(n);
        }
    }
    points
}

/// Fits `options.law` to `curves`.
pub fn fit(curves: &[Curve], options: &FitOptions) -> Result<FitResult, FitError> {
    let data = Dataset::new(curves, options.law)?;
    let starts = start_points(options.law.law(), options.starts, options.seed);
    fit_dataset(&data, options, &starts)
}

/// How many of the best multi-start results are polished with tight tolerances.
const POLISHED: usize = 8;

/// Fits a prepared dataset from the given starts.
pub fn fit_dataset(data: &Dataset, options: &FitOptions, starts: &[Vec<f64>]) -> Result<FitResult, FitError> {
    if !(options.huber_delta.is_finite() && options.huber_delta > 0.0) {
        return Err(FitError::InvalidOption { option: "huber_delta", message: format!("must be > 0, got {}", options.huber_delta) });
    }
    let law = options.law.law();
    let local = |p0: &Vec<f64>, tolerance| match options.objective {
        Objective::Lsq => lsq::minimize(law, data, p0, options.max_iters),
        Objective::HuberLog => huber::minimize(law, data, p0, options.huber_delta, options.max_iters, tolerance),
    };
    let results = par_map(options.threads, starts, |p0| if options.cancel.is_cancelled() { None } else { local(p0, huber::Tolerance::Search) });
    if options.cancel.is_cancelled() {
        return Err(FitError::Cancelled);
    }
    let mut finite: Vec<&LocalFit> = results.iter().flatten().filter(|r| r.objective.is_finite()).collect();
    finite.sort_by(|a, b| a.objective.total_cmp(&b.objective));
    let mut best = finite.first().copied().ok_or(FitError::NoConvergence)?.clone();
    if options.objective == Objective::HuberLog {
        // Polish the best few search results to a tight optimum.
        let polished = par_map(options.threads, &finite[..finite.len().min(POLISHED)], |r| local(&r.params, huber::Tolerance::Polish));
        for p in polished.into_iter().flatten() {
            if p.objective < best.objective {
                best = p;
            }
        }
    }
    let tolerance = best.objective.abs() * 1e-3 + 1e-12;
    let near: Vec<&&LocalFit> = finite.iter().filter(|r| r.objective <= best.objective + tolerance).collect();
    let spread = (0..best.params.len())
        .map(|i| Spread {
            min: near.iter().map(|r| r.params[i]).fold(f64::INFINITY, f64::min),
            max: near.iter().map(|r| r.params[i]).fold(f64::NEG_INFINITY, f64::max),
        })
        .collect();
    let predicted: Vec<f64> = data.features.iter().map(|x| law.value(&best.params, x)).collect();
    let residuals: Vec<f64> = predicted.iter().zip(&data.loss).map(|(p, o)| p - o).collect();
    let metrics = Metrics::compute(data, &predicted, options.huber_delta);
    let covariance = match options.objective {
        Objective::Lsq => lsq::covariance(law, data, &best.params),
        Objective::HuberLog => None,
    };
    Ok(FitResult {
        law: options.law,
        objective_kind: options.objective,
        params: best.params,
        objective: best.objective,
        iterations: best.iterations,
        stop_reason: best.stop_reason,
        covariance,
        residuals,
        metrics,
        starts_tried: starts.len(),
        starts_finite: finite.len(),
        spread,
        near_optimal_starts: near.len(),
    })
}

/// Maps `f` over `items`; on native targets across the machine's cores (the browser runs it
/// on its one thread).
pub(crate) fn par_map<T: Sync, R: Send>(threads: usize, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    #[cfg(target_arch = "wasm32")]
    let _ = threads;
    #[cfg(not(target_arch = "wasm32"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if threads == 0 { cores } else { threads }.min(items.len().max(1));
        if threads > 1 && items.len() >= 8 {
            let chunk = items.len().div_ceil(threads);
            let f = &f;
            return std::thread::scope(|s| {
                let handles: Vec<_> =
                    items.chunks(chunk).map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<_>>())).collect();
                // A worker that panicked takes the fit down with it: its items are not dropped
                // from the result as if they had never been asked for.
                handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
            });
        }
    }
    items.iter().map(f).collect()
}

/// Predicted loss of `law` with `params` at `x`.
pub fn predict(law: LawForm, params: &[f64], x: &crate::law::Inputs) -> f64 {
    law.law().value(params, &Features::new(x))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::CurvePoint;

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    #[should_panic(expected = "item 5")]
    fn a_panicking_worker_is_not_dropped_from_the_result() {
        let items: Vec<usize> = (0..64).collect();
        let out = par_map(4, &items, |&i| if i == 5 { panic!("item 5") } else { i });
        // Before: the panicking chunk's 16 items were silently missing.
        assert_eq!(out.len(), 64);
    }

    /// Curves drawn exactly from a P² law: the fit must recover the generating loss surface.
    pub(crate) fn p2_curves(truth: &[f64], noise: f64, seed: u64) -> Vec<Curve> {
        use rand::Rng;
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        let mut curves = Vec::new();
        for (n0, l0) in [(1.2e8, 3.3), (4.1e8, 2.9), (1.4e9, 2.6), (4.0e9, 2.4)] {
            for rho in [0.15, 0.3, 0.5] {
                let mut c = Curve::new(format!("n0={n0:e} rho={rho}"));
                c.n0 = Some(n0);
                c.rho = Some(rho);
                c.l0 = Some(l0);
                for k in 0..12 {
                    let tokens = 1e7 * 10f64.powf(k as f64 * 3.0 / 11.0);
                    let x = crate::law::Inputs { n0, rho, l0: Some(l0), tokens };
                    let clean = predict(LawForm::P2, truth, &x);
                    let eps: f64 = rng.random_range(-1.0..1.0) * noise * 3f64.sqrt();
                    c.points.push(CurvePoint { tokens, loss: clean + eps });
                }
                curves.push(c);
            }
        }
        curves
    }

    pub(crate) const TRUTH: [f64; 7] = [40.0, 600.0, 0.8, 0.2, 0.35, -0.8, 0.05];

    #[test]
    fn lsq_recovers_noise_free_p2() {
        let curves = p2_curves(&TRUTH, 0.0, 1);
        let mut o = FitOptions::new(LawForm::P2);
        o.starts = Starts::Full;
        let r = fit(&curves, &o).expect("fit");
        assert!(r.metrics.rmse < 1e-6, "rmse {}", r.metrics.rmse);
        assert!(r.metrics.r2.expect("r2") > 0.999_999);
    }

    #[test]
    fn huber_log_recovers_noise_free_p2() {
        let curves = p2_curves(&TRUTH, 0.0, 1);
        let mut o = FitOptions::new(LawForm::P2);
        o.objective = Objective::HuberLog;
        o.starts = Starts::Full;
        let r = fit(&curves, &o).expect("fit");
        assert!(r.metrics.rmse < 1e-5, "rmse {}", r.metrics.rmse);
    }

    #[test]
    fn dataset_refuses_what_the_law_cannot_use() {
        let mut curves = p2_curves(&TRUTH, 0.0, 1);
        curves[0].rho = Some(1.2);
        let e = Dataset::new(&curves, LawForm::P2).unwrap_err();
        assert!(matches!(e, FitError::RhoOutOfRange { .. }), "{e}");
        curves[0].rho = Some(0.0);
        assert!(matches!(Dataset::new(&curves, LawForm::P2), Err(FitError::RhoOutOfRange { .. })));
        curves[0].rho = Some(0.2);
        curves[1].l0 = None;
        let e = Dataset::new(&curves, LawForm::P2).unwrap_err();
        assert_eq!(e.to_string(), format!("run `{}`: field `l0` is missing; law `p2` needs it", curves[1].run));
        assert!(Dataset::new(&curves, LawForm::P2NoL0).is_ok());
        curves[1].l0 = Some(2.9);
        curves[2].points[3].tokens = f64::NAN;
        assert!(matches!(Dataset::new(&curves, LawForm::P2), Err(FitError::InvalidPoint { field: "tokens", .. })));
        assert_eq!(Dataset::new(&[], LawForm::P2).unwrap_err(), FitError::EmptyData);
    }

    #[test]
    fn starts_are_the_grid_product_and_sampling_is_seeded() {
        let law = LawForm::Chinchilla.law();
        assert_eq!(start_points(law, Starts::Full, 0).len(), 4500);
        let a = start_points(law, Starts::Count(10), 7);
        assert_eq!(a, start_points(law, Starts::Count(10), 7));
        assert_ne!(a, start_points(law, Starts::Count(10), 8));
        assert!("0".parse::<Starts>().is_err());
        assert!("many".parse::<Starts>().is_err());
    }
}
