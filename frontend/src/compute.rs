//! From a scenario to what the page shows: one series per fit and rate — the predicted curve on a
//! log-spaced token grid, its bootstrap band, the recommended budget and its cost.

use crate::state::Scenario;
use p2law_shared::bootstrap::percentile_interval;
use p2law_shared::law::{Features, Inputs};
use p2law_shared::report::{Recommendation, recommend};

/// One drawn curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub fit_label: String,
    pub rho: f64,
    pub inputs: Inputs,
    pub tokens: Vec<f64>,
    pub loss: Vec<f64>,
    pub band: Option<Vec<[f64; 2]>>,
    pub budget: Result<Recommendation, String>,
    /// The predicted loss at the end of the token range.
    pub final_loss: f64,
}

/// A series that cannot be drawn, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesError {
    pub label: String,
    pub message: String,
}

/// `n` log-spaced token counts from `dmin` to `dmax`.
pub fn token_grid(dmin: f64, dmax: f64, n: usize) -> Vec<f64> {
    let (a, b) = (dmin.ln(), dmax.ln());
    (0..n).map(|i| (a + (b - a) * i as f64 / (n - 1) as f64).exp()).collect()
}

/// Every series of the scenario.
pub fn compute(s: &Scenario) -> (Vec<Series>, Vec<SeriesError>) {
    let tokens = token_grid(s.dmin, s.dmax, s.points);
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let multi = s.fits.len() > 1;
    for fit in &s.fits {
        let law = fit.report.law;
        let Ok(params) = fit.report.coefficients() else { continue };
        let boot = fit.report.bootstrap().filter(|b| !b.samples.is_empty());
        for &rho in &s.rates {
            let label = if multi { format!("{} · ρ={rho}", fit.label) } else { format!("ρ = {rho}") };
            let x = Inputs { n0: s.n0, rho, l0: s.l0, tokens: s.dmax };
            if let Err(e) = law.check(&x, true) {
                errors.push(SeriesError { label, message: e.to_string() });
                continue;
            }
            let f0 = Features::new(&x);
            let l = law.law();
            let loss: Vec<f64> = tokens.iter().map(|&d| l.value(&params, &f0.at_tokens(d))).collect();
            let band = boot.as_ref().map(|b| {
                let mut column = vec![0.0; b.samples.len()];
                tokens
                    .iter()
                    .map(|&d| {
                        let f = f0.at_tokens(d);
                        for (c, p) in column.iter_mut().zip(&b.samples) {
                            *c = l.value(p, &f);
                        }
                        percentile_interval(&column, b.level).unwrap_or([f64::NAN, f64::NAN])
                    })
                    .collect()
            });
            let budget = recommend(&fit.report, &x, s.rule, s.teacher, Some(&s.hardware)).map_err(|e| e.to_string());
            out.push(Series {
                label,
                fit_label: fit.label.clone(),
                rho,
                inputs: x,
                final_loss: *loss.last().unwrap_or(&f64::NAN),
                tokens: tokens.clone(),
                loss,
                band,
                budget,
            });
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Form, resolve};

    #[test]
    fn default_scenario_draws_three_banded_curves() {
        let (s, errors) = resolve(&Form::default(), &Default::default());
        assert!(errors.is_empty(), "{errors:?}");
        let (series, errs) = compute(&s);
        assert!(errs.is_empty());
        assert_eq!(series.len(), 3);
        for c in &series {
            assert_eq!(c.tokens.len(), 400);
            let band = c.band.as_ref().expect("the refit preset carries a bootstrap");
            // The band brackets the central prediction wherever the prediction is inside the
            // resamples' spread (checked at the middle of the range).
            let [lo, hi] = band[200];
            assert!(lo <= c.loss[200] && c.loss[200] <= hi);
            assert!(c.budget.is_ok());
        }
        // A higher pruning rate leaves fewer parameters: a higher loss under Chinchilla.
        assert!(series[2].final_loss > series[0].final_loss);
    }

    #[test]
    fn grid_is_log_spaced() {
        let g = token_grid(1e8, 1e12, 5);
        for (a, b) in g.iter().zip([1e8, 1e9, 1e10, 1e11, 1e12]) {
            assert!((a / b - 1.0).abs() < 1e-12);
        }
    }
}
