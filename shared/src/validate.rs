//! Held-out validation, the protocols of the P² paper: fit on part of the data, predict the rest.
//!
//! - `last20`: the first 80 % of each curve's checkpoints (by tokens) train, the last 20 % test;
//! - `largest-n0`: curves of smaller models train, the largest `N0` tests;
//! - `highest-rho`: lower pruning rates train, the highest `rho` tests.

use crate::data::Curve;
use crate::fit::{Dataset, FitError, FitOptions, Metrics, fit_dataset, start_points};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A held-out protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Protocol {
    Last20,
    LargestN0,
    HighestRho,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Last20, Protocol::LargestN0, Protocol::HighestRho];
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Last20 => "last20",
            Protocol::LargestN0 => "largest-n0",
            Protocol::HighestRho => "highest-rho",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = FitError;
    fn from_str(s: &str) -> Result<Self, FitError> {
        Protocol::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| FitError::InvalidOption {
            option: "holdout",
            message: format!("`{s}`: expected last20, largest-n0 or highest-rho"),
        })
    }
}

/// Scores of a fit on data it did not see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldoutReport {
    pub protocol: Protocol,
    pub train_points: usize,
    pub test_points: usize,
    /// Coefficients fitted on the training part.
    pub params: Vec<f64>,
    /// Metrics of the training fit's predictions on the test part.
    pub metrics: Metrics,
    pub mean_abs_error: f64,
    pub max_abs_error: f64,
    pub mean_rel_error: f64,
    pub max_rel_error: f64,
}

/// Splits the checkpoints of `data` into (train, test) indices.
pub fn split(data: &Dataset, protocol: Protocol) -> Result<(Vec<usize>, Vec<usize>), FitError> {
    let err = |message: String| FitError::Holdout { protocol: protocol.name().into(), message };
    let (mut train, mut test) = (Vec::new(), Vec::new());
    match protocol {
        Protocol::Last20 => {
            let mut by_curve: Vec<Vec<usize>> = vec![Vec::new(); data.runs.len()];
            for (i, &c) in data.curve_of.iter().enumerate() {
                by_curve[c].push(i);
            }
            for mut idx in by_curve {
                idx.sort_by(|&a, &b| data.features[a].tokens.total_cmp(&data.features[b].tokens));
                let keep = if idx.len() < 2 { idx.len() } else { (idx.len() as f64 * 0.8).ceil() as usize };
                let keep = keep.min(idx.len().saturating_sub(1)).max(1.min(idx.len()));
                train.extend_from_slice(&idx[..keep]);
                test.extend_from_slice(&idx[keep..]);
            }
        }
        Protocol::LargestN0 | Protocol::HighestRho => {
            let key = |i: usize| match protocol {
                Protocol::LargestN0 => data.features[i].n0,
                _ => data.features[i].rho,
            };
            let max = (0..data.len()).map(key).fold(f64::NEG_INFINITY, f64::max);
            for i in 0..data.len() {
                if key(i) == max { test.push(i) } else { train.push(i) }
            }
            if train.is_empty() {
                return Err(err("every curve has the same value; nothing is left to train on".into()));
            }
        }
    }
    if test.is_empty() {
        return Err(err("no checkpoints are left to test on".into()));
    }
    Ok((train, test))
}

/// Fits on the protocol's training part and scores the fit on its test part.
pub fn holdout(curves: &[Curve], options: &FitOptions, protocol: Protocol) -> Result<HoldoutReport, FitError> {
    let data = Dataset::new(curves, options.law)?;
    let (train_idx, test_idx) = split(&data, protocol)?;
    let train = data.subset(&train_idx);
    let test = data.subset(&test_idx);
    let params_len = options.law.law().params().len();
    if train.len() <= params_len {
        return Err(FitError::TooFewPoints { points: train.len(), params: params_len, law: options.law });
    }
    let starts = start_points(options.law.law(), options.starts, options.seed);
    let fitted = fit_dataset(&train, options, &starts)?;
    let law = options.law.law();
    let predicted: Vec<f64> = test.features.iter().map(|x| law.value(&fitted.params, x)).collect();
    let abs: Vec<f64> = predicted.iter().zip(&test.loss).map(|(p, o)| (p - o).abs()).collect();
    let rel: Vec<f64> = abs.iter().zip(&test.loss).map(|(a, o)| a / o).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    Ok(HoldoutReport {
        protocol,
        train_points: train.len(),
        test_points: test.len(),
        params: fitted.params,
        metrics: Metrics::compute(&test, &predicted, options.huber_delta),
        mean_abs_error: mean(&abs),
        max_abs_error: max(&abs),
        mean_rel_error: mean(&rel),
        max_rel_error: max(&rel),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::Starts;
    use crate::law::LawForm;

    #[test]
    fn last20_keeps_the_first_80_percent_of_each_curve() {
        let curves = crate::fit::tests::p2_curves(&crate::fit::tests::TRUTH, 0.0, 3);
        let data = Dataset::new(&curves, LawForm::P2).expect("data");
        let (train, test) = split(&data, Protocol::Last20).expect("split");
        // 12 curves of 12 checkpoints: ceil(9.6) = 10 train, 2 test each.
        assert_eq!((train.len(), test.len()), (120, 24));
        let max_train = train.iter().map(|&i| data.features[i].tokens).fold(0.0, f64::max);
        let min_test = test.iter().map(|&i| data.features[i].tokens).fold(f64::INFINITY, f64::min);
        assert!(max_train < min_test);
    }

    /// Synthetic recovery: curves from a known P² law plus uniform noise of standard deviation
    /// sigma; held-out errors must be at noise level (mean |error| of pure noise is sigma·√3/2).
    #[test]
    fn held_out_errors_are_at_noise_level() {
        let sigma = 0.005;
        let curves = crate::fit::tests::p2_curves(&crate::fit::tests::TRUTH, sigma, 11);
        let mut o = FitOptions::new(LawForm::P2);
        o.starts = Starts::Full;
        for protocol in [Protocol::Last20, Protocol::LargestN0, Protocol::HighestRho] {
            let r = holdout(&curves, &o, protocol).expect("holdout");
            assert!(r.metrics.rmse < 1.5 * sigma, "{protocol}: rmse {} vs noise {sigma}", r.metrics.rmse);
            assert!(r.mean_abs_error < 1.5 * sigma, "{protocol}: mean |err| {}", r.mean_abs_error);
        }
    }

    #[test]
    fn one_size_cannot_hold_out_the_largest() {
        let mut curves = crate::fit::tests::p2_curves(&crate::fit::tests::TRUTH, 0.0, 3);
        for c in &mut curves {
            c.n0 = Some(1e9);
        }
        let e = holdout(&curves, &FitOptions::new(LawForm::P2), Protocol::LargestN0).unwrap_err();
        assert!(e.to_string().starts_with("holdout `largest-n0`"), "{e}");
    }
}
