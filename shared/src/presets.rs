//! Shipped presets: fits with their provenance. p2law invents no coefficient: a preset is either
//! a published fit quoted with its source, or a fit p2law made itself from public data, which the
//! tests re-make and compare.
//!
//! - `chinchilla-epoch-published`: Epoch AI's estimates (Besiroglu et al., arXiv 2404.10102,
//!   `shared/data/external/epoch_chinchilla_fit_params.json`), no band (only SEs are published);
//! - `chinchilla-epoch-refit`: p2law's Huber-on-log refit of the same 240 points with a 200-resample
//!   point bootstrap, made by `cargo run --release -p p2law-shared --example make_presets`.
//!
//! No P² preset ships yet: the paper's coefficient tables are not available here, and a P² preset
//! must come from p2law's own calibration runs.

use crate::data::{Curve, CurvePoint};
use crate::fit::{Metrics, Objective};
use crate::law::LawForm;
use crate::report::FitReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A preset fit and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Preset {
    pub id: String,
    pub title: String,
    /// Data, models, token range and fit quality, in words.
    pub provenance: String,
    pub report: FitReport,
}

/// The Epoch AI points: 245 digitised from Chinchilla's Figure 4, the 5 highest losses dropped,
/// `D = FLOP / (6 N)`, one single-point curve per row.
pub fn epoch_curves() -> Vec<Curve> {
    let text = include_str!("../data/external/epoch_chinchilla_svg_extracted_data.csv");
    let mut rows: Vec<(f64, f64, f64)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            Some((c.get(3)?.parse().ok()?, c.get(4)?.parse().ok()?, c.get(6)?.parse().ok()?))
        })
        .collect();
    rows.sort_by(|a, b| a.2.total_cmp(&b.2));
    rows.truncate(rows.len().saturating_sub(5));
    rows.iter()
        .enumerate()
        .map(|(i, &(n, flop, loss))| {
            let mut c = Curve::new(format!("epoch-{i}"));
            c.n0 = Some(n);
            c.rho = Some(0.0);
            c.points.push(CurvePoint { tokens: flop / (6.0 * n), loss });
            c
        })
        .collect()
}

const REFIT: &str = include_str!("../presets/chinchilla-epoch-refit.json");

/// Every shipped preset.
pub fn presets() -> Vec<Preset> {
    let mut out = vec![published()];
    if let Ok(report) = serde_json::from_str::<FitReport>(REFIT) {
        out.push(Preset {
            id: "chinchilla-epoch-refit".into(),
            title: "Chinchilla — p2law refit of Epoch AI's data, with bootstrap band".into(),
            provenance: report.provenance.clone().unwrap_or_default(),
            report,
        });
    }
    out
}

/// Epoch AI's published Chinchilla estimates.
fn published() -> Preset {
    let params: BTreeMap<String, f64> = [("A", 482.00572), ("B", 2085.43420), ("E", 1.81686), ("alpha", 0.34781), ("beta", 0.36585)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let provenance = "Epoch AI's estimates of the Chinchilla law (Besiroglu, Erdil, Barnett, You, 'Chinchilla Scaling: \
        A replication attempt', arXiv 2404.10102): Huber-on-log fit of 240 (N, D, loss) points digitised from \
        Hoffmann et al.'s Figure 4; dense models of 44M–16B parameters, 5e9–5e11 tokens; bootstrap SEs \
        A ±124.5, B ±1293.3, E ±0.026, alpha ±0.015, beta ±0.021. Dense pretraining, not pruning: \
        a pruned model is read as a dense model of N = N0 (1 - rho) parameters trained for D tokens."
        .to_string();
    Preset {
        id: "chinchilla-epoch-published".into(),
        title: "Chinchilla — Epoch AI's published fit (dense baseline)".into(),
        provenance: provenance.clone(),
        report: FitReport::from_coefficients(
            LawForm::Chinchilla,
            Objective::HuberLog,
            params,
            Metrics { r2: None, rmse: 0.02191, huber: 0.001_018_644_7, asd: None, points: 240 },
            provenance,
        ),
    }
}

/// Re-makes the refit preset (what `make_presets` writes).
pub fn make_refit() -> Result<FitReport, crate::fit::FitError> {
    use crate::bootstrap::{BootstrapOptions, Resample, bootstrap};
    use crate::fit::{FitOptions, Starts, fit};
    let curves = epoch_curves();
    let mut o = FitOptions::new(LawForm::Chinchilla);
    o.objective = Objective::HuberLog;
    o.starts = Starts::Full;
    let best = fit(&curves, &o)?;
    let b = bootstrap(&curves, &o, &best, &BootstrapOptions { resamples: 200, seed: 0, by: Resample::Points, level: 0.95 })?;
    let mut report = FitReport::new(&best, &curves, None, Some(&b));
    report.provenance = Some(format!(
        "p2law's Huber-on-log (delta 1e-3) refit, full 4500-start grid, of Epoch AI's 240 Chinchilla points \
         (arXiv 2404.10102; dense models 44M–16B parameters, 5e9–5e11 tokens); objective {:.10}, RMSE {:.4} nats; \
         95% band from 200 point-bootstrap refits (seed 0). Dense pretraining, not pruning: a pruned model is read \
         as a dense model of N = N0 (1 - rho) parameters trained for D tokens.",
        report.objective, report.metrics.rmse
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refit_preset_is_what_the_fitter_makes() {
        let shipped: FitReport = serde_json::from_str(REFIT).expect("shipped preset parses");
        let made = make_refit().expect("refit");
        for (k, v) in &made.params {
            let s = shipped.params[k];
            assert!((s - v).abs() <= 1e-6 * v.abs(), "{k}: shipped {s}, made {v}");
        }
        let (a, b) = (shipped.intervals.expect("band"), made.intervals.expect("band"));
        assert_eq!(a.samples.len(), b.samples.len());
        for (x, y) in a.samples.iter().flatten().zip(b.samples.iter().flatten()) {
            assert!((x - y).abs() <= 1e-6 * y.abs().max(1e-9), "{x} vs {y}");
        }
    }

    #[test]
    fn every_preset_has_provenance_and_usable_coefficients() {
        let all = presets();
        assert_eq!(all.len(), 2);
        for p in all {
            assert!(p.provenance.len() > 100, "{}", p.id);
            assert!(p.report.coefficients().is_ok(), "{}", p.id);
        }
    }
}
