//! Fitting a law form to loss curves.
//!
//! Two objectives, both multi-start over the form's initial grid:
//! - [`Objective::Lsq`]: least squares on raw loss, Levenberg–Marquardt (the P² paper's method);
//! - [`Objective::HuberLog`]: Huber (delta 1e-3) on `ln L_pred - ln L_obs`, L-BFGS, positive
//!   constants fitted as `exp(.)` (Chinchilla Approach 3 as replicated by Epoch AI).
//!
//! [`fit`] returns the best start with its metrics, the spread of near-optimal starts (weakly
//! identified coefficients show up there), and, for least squares, the covariance.

mod dataset;
mod error;
mod huber;
mod lsq;
pub mod metrics;
mod options;
mod pool;

pub use dataset::Dataset;
pub use error::FitError;
pub use metrics::Metrics;
pub use options::{Cancel, FitOptions, Objective, Starts};
pub(crate) use pool::par_map;

use crate::data::Curve;
use crate::law::{Features, Inputs, Law, LawForm, centred};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

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
    /// The data's centre ([`Inputs::centre`]), where scale coefficients are judged.
    #[serde(default)]
    pub centre: Option<Inputs>,
    /// [`Self::spread`] of the coefficients as [`crate::law::centred`] writes them at `centre`.
    #[serde(default)]
    pub centred_spread: Vec<Spread>,
}

impl FitResult {
    /// Coefficients whose near-optimal spread exceeds 5 % of their magnitude: the data
    /// cannot pin them down. Scale coefficients are judged by their term at the data's centre
    /// (when the fit knows it), so that the test does not depend on units.
    pub fn weakly_identified(&self) -> Vec<&'static str> {
        let law = self.law.law();
        let (spread, params) = match self.centre.as_ref().filter(|_| self.centred_spread.len() == self.params.len()) {
            Some(c) => (&self.centred_spread, centred(law, &self.params, &Features::new(c))),
            None => (&self.spread, self.params.clone()),
        };
        spread
            .iter()
            .zip(&params)
            .zip(law.params())
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
    let spread_of = |v: &[Vec<f64>]| -> Vec<Spread> {
        (0..best.params.len())
            .map(|i| Spread {
                min: v.iter().map(|p| p[i]).fold(f64::INFINITY, f64::min),
                max: v.iter().map(|p| p[i]).fold(f64::NEG_INFINITY, f64::max),
            })
            .collect()
    };
    let spread = spread_of(&near.iter().map(|r| r.params.clone()).collect::<Vec<_>>());
    let centre = Inputs::centre(&data.features);
    let centred_spread = centre.as_ref().map_or_else(Vec::new, |c| {
        let f = Features::new(c);
        spread_of(&near.iter().map(|r| centred(law, &r.params, &f)).collect::<Vec<_>>())
    });
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
        centre,
        centred_spread,
    })
}

/// Predicted loss of `law` with `params` at `x`.
pub fn predict(law: LawForm, params: &[f64], x: &Inputs) -> f64 {
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
