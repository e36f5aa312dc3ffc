//! Fit quality: R², RMSE, Huber, and ASD.
//!
//! ASD (average slope difference) is the P² paper's name; its formula is not public. p2law's
//! definition: the mean absolute difference between observed and predicted slopes
//! `dL / dlog10(D)` over consecutive checkpoints of each curve (loss per decade of tokens).

use super::Dataset;
use super::huber::huber;
use serde::{Deserialize, Serialize};

/// Quality of predictions against observed losses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Metrics {
    /// None when the observed losses have no variance (a single point).
    pub r2: Option<f64>,
    /// Root mean squared loss error, nats/token.
    pub rmse: f64,
    /// Sum of Huber(delta) of `ln L_pred - ln L_obs`.
    pub huber: f64,
    /// Average slope difference (see module docs); None when no curve has two checkpoints.
    pub asd: Option<f64>,
    pub points: usize,
}

impl Metrics {
    pub fn compute(data: &Dataset, predicted: &[f64], delta: f64) -> Self {
        let n = data.loss.len();
        let mean = data.loss.iter().sum::<f64>() / n as f64;
        let ssr: f64 = predicted.iter().zip(&data.loss).map(|(p, o)| (p - o).powi(2)).sum();
        let sst: f64 = data.loss.iter().map(|o| (o - mean).powi(2)).sum();
        let huber = predicted.iter().zip(&data.loss).map(|(p, o)| huber(p.ln() - o.ln(), delta)).sum();
        Metrics {
            r2: (sst > 0.0).then(|| 1.0 - ssr / sst),
            rmse: (ssr / n as f64).sqrt(),
            huber,
            asd: asd(data, predicted),
            points: n,
        }
    }
}

fn asd(data: &Dataset, predicted: &[f64]) -> Option<f64> {
    let mut by_curve: Vec<Vec<usize>> = vec![Vec::new(); data.runs.len()];
    for (i, &c) in data.curve_of.iter().enumerate() {
        by_curve[c].push(i);
    }
    let (mut sum, mut count) = (0.0, 0usize);
    for mut idx in by_curve {
        idx.sort_by(|&a, &b| data.features[a].tokens.total_cmp(&data.features[b].tokens));
        for w in idx.windows(2) {
            let (a, b) = (w[0], w[1]);
            let dx = (data.features[b].ln_d - data.features[a].ln_d) / std::f64::consts::LN_10;
            if dx <= 0.0 {
                continue;
            }
            let observed = (data.loss[b] - data.loss[a]) / dx;
            let fitted = (predicted[b] - predicted[a]) / dx;
            sum += (observed - fitted).abs();
            count += 1;
        }
    }
    (count > 0).then(|| sum / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::law::{Features, Inputs};

    #[test]
    fn hand_computed_metrics() {
        // One curve at D = 10, 100, 1000; observed 3, 2, 1.5; predicted 3.1, 2, 1.4.
        let f = |d: f64| Features::new(&Inputs { n0: 1e6, rho: 0.0, l0: None, tokens: d });
        let data = Dataset {
            features: vec![f(10.0), f(100.0), f(1000.0)],
            loss: vec![3.0, 2.0, 1.5],
            ln_loss: vec![3f64.ln(), 2f64.ln(), 1.5f64.ln()],
            curve_of: vec![0, 0, 0],
            runs: vec!["a".into()],
        };
        let m = Metrics::compute(&data, &[3.1, 2.0, 1.4], 1e-3);
        // SSR = 0.02, SST = 1.1666.., RMSE = sqrt(0.02/3)
        assert!((m.r2.expect("r2") - (1.0 - 0.02 / (7.0 / 6.0))).abs() < 1e-12);
        assert!((m.rmse - (0.02f64 / 3.0).sqrt()).abs() < 1e-12);
        // slopes per decade: observed -1, -0.5; fitted -1.1, -0.6 -> ASD = 0.1
        assert!((m.asd.expect("asd") - 0.1).abs() < 1e-12);
        let h = huber((3.1f64 / 3.0).ln(), 1e-3) + huber((1.4f64 / 1.5).ln(), 1e-3);
        assert!((m.huber - h).abs() < 1e-15);
    }
}
