//! Seeded bootstrap uncertainty: refit on resampled data, then percentile intervals for
//! coefficients, predictions at any `D`, and budgets.
//!
//! Resampling whole curves is the default: checkpoints of one curve are correlated, so resampling
//! points understates the spread.

use crate::budget::{self, Rule};
use crate::data::Curve;
use crate::fit::{Dataset, FitError, FitOptions, FitResult, fit_dataset, par_map};
use crate::law::{Features, Inputs, LawForm};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// What to resample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Resample {
    #[default]
    Curves,
    Points,
}

impl FromStr for Resample {
    type Err = FitError;
    fn from_str(s: &str) -> Result<Self, FitError> {
        match s {
            "curves" => Ok(Resample::Curves),
            "points" => Ok(Resample::Points),
            _ => Err(FitError::InvalidOption { option: "bootstrap-by", message: format!("`{s}`: expected curves or points") }),
        }
    }
}

/// Bootstrap settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapOptions {
    pub resamples: usize,
    pub seed: u64,
    pub by: Resample,
    /// Central interval level, e.g. 0.95.
    pub level: f64,
}

/// The refitted coefficient vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    pub law: LawForm,
    pub by: Resample,
    pub seed: u64,
    pub level: f64,
    pub resamples: usize,
    /// Resamples whose refit failed (too few points, no finite objective).
    pub failed: usize,
    pub samples: Vec<Vec<f64>>,
}

/// Refits `resamples` times, each from the best fit's coefficients.
pub fn bootstrap(curves: &[Curve], options: &FitOptions, best: &FitResult, b: &BootstrapOptions) -> Result<Bootstrap, FitError> {
    if !(b.level > 0.0 && b.level < 1.0) {
        return Err(FitError::InvalidOption { option: "level", message: format!("must be in (0, 1), got {}", b.level) });
    }
    let data = Dataset::new(curves, options.law)?;
    let mut by_curve: Vec<Vec<usize>> = vec![Vec::new(); data.runs.len()];
    for (i, &c) in data.curve_of.iter().enumerate() {
        by_curve[c].push(i);
    }
    // Index sets are drawn in order from one generator (so results do not depend on thread
    // scheduling), a batch at a time: memory is a few resamples per thread, never all of them
    // (2 000 point resamples of a 2 M-point fit would be 32 GB).
    let mut rng = rand_pcg::Pcg64::seed_from_u64(b.seed);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let batch = 4 * if options.threads == 0 { cores } else { options.threads }.max(1);
    let start = vec![best.params.clone()];
    let mut refits: Vec<Option<Vec<f64>>> = Vec::with_capacity(b.resamples);
    let mut left = b.resamples;
    while left > 0 {
        if options.cancel.is_cancelled() {
            return Err(FitError::Cancelled);
        }
        let n = left.min(batch);
        left -= n;
        let draws: Vec<Vec<usize>> = (0..n)
            .map(|_| match b.by {
                Resample::Curves => (0..by_curve.len())
                    .flat_map(|_| by_curve[rng.random_range(0..by_curve.len())].iter().copied())
                    .collect(),
                Resample::Points => (0..data.len()).map(|_| rng.random_range(0..data.len())).collect(),
            })
            .collect();
        refits.extend(par_map(options.threads, &draws, |idx| fit_dataset(&data.subset(idx), options, &start).ok().map(|r| r.params)));
    }
    let failed = refits.iter().filter(|r| r.is_none()).count();
    Ok(Bootstrap {
        law: options.law,
        by: b.by,
        seed: b.seed,
        level: b.level,
        resamples: b.resamples,
        failed,
        samples: refits.into_iter().flatten().collect(),
    })
}

/// The `(1 - level) / 2` and `(1 + level) / 2` percentiles (linear interpolation), or `None`
/// when no value is finite.
pub fn percentile_interval(values: &[f64], level: f64) -> Option<[f64; 2]> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    percentile_interval_in_place(&mut v, level)
}

/// [`percentile_interval`] of finite `values`, reordering them in place: linear-time selection
/// instead of a sort, for drawing bands at many points.
pub fn percentile_interval_in_place(v: &mut [f64], level: f64) -> Option<[f64; 2]> {
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    let mut q = |p: f64| {
        let pos = p * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let (_, a, rest) = v.select_nth_unstable_by(lo, f64::total_cmp);
        let a = *a;
        // The next order statistic is the smallest of what lies above.
        let b = if pos > lo as f64 { rest.iter().copied().fold(f64::INFINITY, f64::min) } else { a };
        a + (b - a) * (pos - lo as f64)
    };
    Some([q((1.0 - level) / 2.0), q((1.0 + level) / 2.0)])
}

impl Bootstrap {
    /// Interval of each coefficient.
    pub fn param_intervals(&self) -> Vec<Option<[f64; 2]>> {
        let k = self.law.law().params().len();
        (0..k).map(|i| percentile_interval(&self.samples.iter().map(|s| s[i]).collect::<Vec<_>>(), self.level)).collect()
    }

    /// Interval of the predicted loss at `x`.
    pub fn predict_interval(&self, x: &Inputs) -> Option<[f64; 2]> {
        let f = Features::new(x);
        let law = self.law.law();
        percentile_interval(&self.samples.iter().map(|s| law.value(s, &f)).collect::<Vec<_>>(), self.level)
    }

    /// Interval of the recommended tokens; resamples for which the rule is unreachable are left
    /// out, and their share is returned beside the interval.
    pub fn budget_interval(&self, x: &Inputs, rule: Rule) -> (Option<[f64; 2]>, f64) {
        let tokens: Vec<f64> = self.samples.iter().filter_map(|s| budget::recommend(self.law, s, x, rule).ok()).collect();
        let unreachable = 1.0 - tokens.len() as f64 / self.samples.len().max(1) as f64;
        (percentile_interval(&tokens, self.level), unreachable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::{Starts, fit};

    #[test]
    fn percentiles_interpolate() {
        let v: Vec<f64> = (0..=100).map(f64::from).collect();
        let [lo, hi] = percentile_interval(&v, 0.9).expect("finite");
        assert!((lo - 5.0).abs() < 1e-12 && (hi - 95.0).abs() < 1e-12);
        // Against a sort, on shuffled values with interpolation between order statistics.
        let mut w: Vec<f64> = (0..37).map(|i| ((i * 17) % 37) as f64 * 0.5).collect();
        let mut sorted = w.clone();
        sorted.sort_by(f64::total_cmp);
        let pos = 0.025 * 36.0;
        let want = sorted[0] + (sorted[1] - sorted[0]) * pos;
        let got = percentile_interval_in_place(&mut w, 0.95).expect("finite");
        assert!((got[0] - want).abs() < 1e-12, "{got:?} vs {want}");
        assert_eq!(percentile_interval(&[f64::NAN], 0.9), None);
    }

    #[test]
    fn intervals_cover_the_truth_and_are_seeded() {
        let truth = crate::fit::tests::TRUTH;
        let curves = crate::fit::tests::p2_curves(&truth, 0.01, 5);
        let mut o = FitOptions::new(LawForm::P2);
        o.starts = Starts::Quick;
        let best = fit(&curves, &o).expect("fit");
        let b = BootstrapOptions { resamples: 40, seed: 9, by: Resample::Curves, level: 0.95 };
        let boot = bootstrap(&curves, &o, &best, &b).expect("bootstrap");
        assert_eq!(boot.samples.len() + boot.failed, 40);
        let again = bootstrap(&curves, &o, &best, &b).expect("bootstrap");
        assert_eq!(boot.samples, again.samples);
        // The prediction band at a new D must contain the noise-free truth.
        let x = Inputs { n0: 1.4e9, rho: 0.3, l0: Some(2.6), tokens: 3e9 };
        let [lo, hi] = boot.predict_interval(&x).expect("band");
        let t = crate::fit::predict(LawForm::P2, &truth, &x);
        assert!(lo <= t && t <= hi, "{lo} <= {t} <= {hi}");
        let points = bootstrap(&curves, &o, &best, &BootstrapOptions { by: Resample::Points, ..b }).expect("points");
        assert_ne!(points.samples, boot.samples);
    }
}
