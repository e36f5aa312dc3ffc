//! Shipped presets: fits with their provenance. p2law invents no coefficient: a preset is either
//! a published fit quoted with its source, or a fit p2law made itself from public data, which the
//! tests re-make and compare.
//!
//! - `chinchilla-epoch-published`: Epoch AI's estimates (Besiroglu et al., arXiv 2404.10102,
//!   `shared/data/external/epoch_chinchilla_fit_params.json`), no band (only SEs are published);
//! - `chinchilla-epoch-refit`: p2law's Huber-on-log refit of the same 240 points with a 200-resample
//!   point bootstrap, made by `cargo run --release -p p2law-shared --example make_presets`.
//!
//! - `p2-study-depth`, `p2-study-width`, `p2-study-nm`, `p2-study-pooled`: the P² law fitted to
//!   p2law's own study (`shared/data/study`, made by `p2law study run`), per method and pooled,
//!   least squares from the full grid of starts with a bootstrap over curves; where the full law
//!   is degenerate, its reduction `p2-reduced` (N_C = E = 0), labelled as such; a group where both
//!   are degenerate ships no preset, and `shared/presets/p2-study.json` says why (the test
//!   `study_presets_are_what_the_fitter_makes` re-makes them from the committed data).
//!
//! The paper's coefficient tables are not available here: every P² preset comes from p2law's
//! own study.

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
const STUDY_PRESETS: &str = include_str!("../presets/p2-study.json");
const STUDY_CSV: &str = include_str!("../data/study/curves.csv");
const STUDY_MANIFEST: &str = include_str!("../data/study/manifest.json");

/// The P² presets made from the study, and the groups that got none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StudyPresets {
    pub presets: Vec<Preset>,
    pub refused: Vec<Refusal>,
}

/// A group of the study that ships no preset, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub id: String,
    pub reason: String,
}

/// Resamples of the study presets' bootstrap over curves.
pub const STUDY_RESAMPLES: usize = 100;

/// The committed study data.
pub fn study_data() -> Result<crate::study::StudyData, crate::data::InputError> {
    crate::study::StudyData::parse("shared/data/study/curves.csv", STUDY_CSV, "shared/data/study/manifest.json", STUDY_MANIFEST)
}

/// The preset id of a study group.
pub fn study_preset_id(group: &str) -> String {
    format!("p2-study-{group}")
}

/// The P² preset of the calculator's method (`depth`, `width`, `2:4` and the other N:M
/// patterns), or the pooled one when that method has none; `None` when no P² preset ships.
pub fn study_preset_for(method: &str) -> Option<String> {
    study_preset_in(&study_presets().presets, method).map(|p| p.id.clone())
}

/// [`study_preset_for`] among presets already read (the calculator reads [`presets`] once).
pub fn study_preset_in<'a>(presets: &'a [Preset], method: &str) -> Option<&'a Preset> {
    let group = if method.contains(':') { "nm" } else { method };
    [study_preset_id(group), study_preset_id("pooled")].into_iter().find_map(|id| presets.iter().find(|p| p.id == id))
}

/// The shipped study presets (empty when the file does not parse: the test below fails then).
pub fn study_presets() -> StudyPresets {
    serde_json::from_str(STUDY_PRESETS).unwrap_or_default()
}

/// The fits behind a study preset (see [`crate::study::analysis::StudyFit`]): the P² law by least
/// squares from its full grid of starts, and its reduction when the full form is degenerate,
/// each with a [`STUDY_RESAMPLES`]-fold bootstrap over curves (seed 0).
pub fn make_study_fit(data: &crate::study::StudyData, group: &crate::study::analysis::Group) -> crate::study::analysis::StudyFit {
    crate::study::analysis::fit_study_group(data, group, STUDY_RESAMPLES, 0)
}

/// Re-makes every study preset (what `make_presets` writes): the chosen fit, its three held-out
/// protocols, and the provenance; a group with no identified fit becomes a refusal.
pub fn make_study_presets(data: &crate::study::StudyData) -> StudyPresets {
    use crate::study::analysis::{GROUPS, protocols};
    let m = &data.manifest;
    let mut out = StudyPresets::default();
    for g in &GROUPS {
        let id = study_preset_id(g.id);
        let fits = make_study_fit(data, g);
        let mut report = match fits.chosen() {
            Ok(r) => r.clone(),
            Err(why) => {
                out.refused.push(Refusal { id, reason: why });
                continue;
            }
        };
        let law = report.law;
        let form = match fits.full_set_aside() {
            None => "P² law (L1 form of Chen et al., arXiv 2411.10272)".to_string(),
            Some(why) => {
                let full = fits.full.as_ref().ok();
                format!(
                    "P² law reduced to N_C = E = 0 (`{law}`, p2law's nested form: L0 + (1/rho)^gamma (1/N0)^delta D_C/D^beta, healing tends to L0), \
                     because the full P² law on the same curves is a {why} (full form R² {}, RMSE {}; reduced R² {}, RMSE {:.4})",
                    full.and_then(|f| f.metrics.r2).map_or("n/a".into(), |r| format!("{r:.4}")),
                    full.map_or("n/a".into(), |f| format!("{:.4}", f.metrics.rmse)),
                    report.metrics.r2.map_or("n/a".into(), |r| format!("{r:.4}")),
                    report.metrics.rmse
                )
            }
        };
        let d = report.data.clone().unwrap_or_else(|| crate::report::DataSummary::of(&[]));
        let range = |r: Option<[f64; 2]>| r.map_or("n/a".to_string(), |[a, b]| format!("{a:.4}–{b:.4}"));
        let range_e = |r: Option<[f64; 2]>| r.map_or("n/a".to_string(), |[a, b]| format!("{a:.3e}–{b:.3e}"));
        let parents: Vec<String> = {
            let mut n0s: Vec<u64> = data.pruned(g.methods).iter().filter_map(|c| c.n0).map(|n| n as u64).collect();
            n0s.sort_unstable();
            n0s.dedup();
            m.parents.iter().filter(|p| n0s.contains(&p.n0)).map(|p| format!("{} ({} parameters, L0 {:.4})", p.name, p.n0, p.l0)).collect()
        };
        let checks: Vec<String> = protocols(data, g, law, 0)
            .into_iter()
            .map(|r| match r {
                Ok(p) => format!("{}: mean |rel err| {:.2} %, max {:.2} % ({} test points)", p.protocol, p.mean_rel_error * 100.0, p.max_rel_error * 100.0, p.test_points),
                Err(e) => format!("not scored: {e}"),
            })
            .collect();
        let band = report.intervals.as_ref().map_or("no band".to_string(), |i| {
            format!("{:.0} % band from {} curve-bootstrap refits ({} failed, seed {})", i.level * 100.0, i.resamples, i.failed, i.seed)
        });
        report.provenance = Some(format!(
            "{form}, fitted by p2law to its own study, shared/data/study \
             (p2law {} at {}; corpus {} sha256 {}; {}): {} ({} curves, {} checkpoints from D = 32 768 tokens, 16 optimizer steps, on), parents {}. \
             Calibrated ranges: N0 {}, rho {}, D {} tokens, L0 {} nats. Least squares from the full grid of {} starts: \
             R² {}, RMSE {:.4} nats; every coefficient identified (near-optimal starts within 5 %, 95 % interval at most twice the estimate; \
             scale coefficients judged by their terms at the data's centre{}). Held out: {}. {}. Byte-level decoders trained on one corpus: \
             outside these ranges every prediction is an extrapolation.",
            m.p2law_version,
            &m.p2law_commit[..m.p2law_commit.len().min(12)],
            m.corpus.source,
            &m.corpus.sha256[..m.corpus.sha256.len().min(16)],
            m.device,
            g.title,
            d.curves,
            d.points,
            parents.join(", "),
            range_e(d.n0_range),
            range(d.rho_range),
            range_e(d.tokens_range),
            range(d.l0_range),
            report.starts_tried,
            report.metrics.r2.map_or("n/a".into(), |r| format!("{r:.4}")),
            report.metrics.rmse,
            report.centre.map_or(String::new(), |c| format!(", N0 {:.3e}, rho {:.3}, D {:.3e}", c.n0, c.rho, c.tokens)),
            checks.join("; "),
            band
        ));
        out.presets.push(Preset {
            id,
            title: if law == LawForm::P2 { format!("P² — p2law study, {}", g.title) } else { format!("P² (reduced: N_C = E = 0) — p2law study, {}", g.title) },
            provenance: report.provenance.clone().unwrap_or_default(),
            report,
        });
    }
    out
}

/// An id no shipped preset has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no such preset `{id}`; shipped: {shipped}")]
pub struct UnknownPreset {
    pub id: String,
    pub shipped: String,
}

/// The shipped preset `id` (the CLI's `--fit preset:ID`, the API's `preset`).
pub fn preset(id: &str) -> Result<Preset, UnknownPreset> {
    let all = presets();
    let shipped = all.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ");
    all.into_iter().find(|p| p.id == id).ok_or(UnknownPreset { id: id.to_string(), shipped })
}

/// Every shipped preset: the study's P² presets first, then the dense references.
pub fn presets() -> Vec<Preset> {
    let mut out = study_presets().presets;
    out.push(published());
    if let Ok(report) = serde_json::from_str::<FitReport>(REFIT) {
        out.push(Preset {
            id: "chinchilla-epoch-refit".into(),
            title: "Chinchilla — dense, trained from scratch: p2law refit of Epoch AI's data, with bootstrap band".into(),
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
        title: "Chinchilla — dense, trained from scratch: Epoch AI's published fit".into(),
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

    /// Against the outside: Epoch AI's published estimates and bootstrap (4 000 resamples of
    /// the same 240 points, `shared/data/external/epoch_chinchilla_fit_params.json`). The refit's
    /// coefficients lie within a tenth of Epoch's standard error of theirs, and its 95 % band's
    /// ends within a tenth of Epoch's interval width of theirs (200 resamples against 4 000).
    #[test]
    fn refit_and_its_band_agree_with_epochs_published_bootstrap() {
        let text = include_str!("../data/external/epoch_chinchilla_fit_params.json");
        let epoch: serde_json::Value = serde_json::from_str(text).expect("Epoch's file parses");
        let shipped: FitReport = serde_json::from_str(REFIT).expect("shipped preset parses");
        let band = shipped.intervals.as_ref().expect("band");
        assert_eq!(band.level, 0.95);
        for name in ["A", "B", "E", "alpha", "beta"] {
            let e = &epoch["epoch_estimates"][name];
            let (value, se) = (e["value"].as_f64().unwrap(), e["se"].as_f64().unwrap());
            let (lo, hi) = (e["ci95"][0].as_f64().unwrap(), e["ci95"][1].as_f64().unwrap());
            let ours = shipped.params[name];
            assert!((ours - value).abs() <= 0.1 * se, "{name}: refit {ours}, Epoch {value} ± {se}");
            let [a, b] = band.params[name];
            let tol = 0.1 * (hi - lo);
            assert!((a - lo).abs() <= tol && (b - hi).abs() <= tol, "{name}: band [{a}, {b}], Epoch's [{lo}, {hi}]");
        }
    }

    #[test]
    fn every_preset_has_provenance_and_usable_coefficients() {
        let all = presets();
        let study = study_presets();
        assert_eq!(all.len(), 2 + study.presets.len());
        assert_eq!(study.presets.len() + study.refused.len(), crate::study::analysis::GROUPS.len());
        for p in &all {
            assert!(p.report.coefficients().is_ok(), "{}", p.id);
            assert_eq!(p.report.provenance.as_deref().unwrap_or(&p.provenance), p.provenance, "{}", p.id);
        }
        // Each names its data, its models and its fit quality.
        for p in all.iter().filter(|p| p.id.starts_with("chinchilla")) {
            for must in ["arXiv 2404.10102", "240", "44M–16B", "Dense pretraining, not pruning"] {
                assert!(p.provenance.contains(must), "{}: no `{must}` in {}", p.id, p.provenance);
            }
        }
        let data = study_data().expect("study data");
        let m = &data.manifest;
        for p in &study.presets {
            for must in ["shared/data/study", &m.corpus.sha256[..16], "Calibrated ranges: N0 ", " rho ", " L0 ", "R² ", "RMSE ", "Held out: last20: ", "largest-n0: ", "highest-rho: ", "95 % band from 100"] {
                assert!(p.provenance.contains(must), "{}: no `{must}` in {}", p.id, p.provenance);
            }
            for parent in &m.parents {
                assert!(p.provenance.contains(&parent.name), "{}: parent {} not named", p.id, parent.name);
            }
            if p.report.law != LawForm::P2 {
                // A reduced form says so, and why the full law was set aside.
                assert!(p.provenance.contains("reduced to N_C = E = 0") && p.provenance.contains("degenerate"), "{}", p.provenance);
                assert!(p.title.contains("reduced"), "{}", p.title);
            }
        }
        // No P² preset from a degenerate fit. (The Chinchilla refit's A and B trade off against
        // its exponents, as in Epoch's own standard errors; it ships as the dense reference and
        // says so wherever it is shown.)
        for p in &study.presets {
            assert_eq!(p.report.degeneracy(), None, "{}", p.id);
        }
    }

    #[test]
    fn study_presets_are_what_the_fitter_makes() {
        let data = study_data().expect("the committed study data parse");
        let shipped = study_presets();
        for g in &crate::study::analysis::GROUPS {
            let id = study_preset_id(g.id);
            let fits = make_study_fit(&data, g);
            let made = fits.chosen().cloned();
            match shipped.presets.iter().find(|p| p.id == id) {
                Some(p) => {
                    let made = made.expect("a shipped preset's fit re-makes");
                    assert_eq!(p.report.law, made.law, "{id}");
                    assert_eq!(made.degeneracy(), None, "{id}");
                    for (k, v) in &made.params {
                        let s = p.report.params[k];
                        assert!((s - v).abs() <= 1e-6 * v.abs().max(1e-9), "{id} {k}: shipped {s}, made {v}");
                    }
                    let (a, b) = (p.report.intervals.as_ref().expect("band"), made.intervals.expect("band"));
                    assert_eq!(a.samples.len(), b.samples.len(), "{id}");
                    for (x, y) in a.samples.iter().flatten().zip(b.samples.iter().flatten()) {
                        assert!((x - y).abs() <= 1e-6 * y.abs().max(1e-9), "{id}: {x} vs {y}");
                    }
                    assert_eq!(p.report.data, made.data, "{id}");
                }
                None => {
                    let why = shipped.refused.iter().find(|r| r.id == id).expect("a group without a preset says why");
                    // Refused because no form is identified (or the fits fail), and it still is.
                    assert!(made.is_err(), "{id} refused ({}) but fits cleanly", why.reason);
                }
            }
        }
    }

    #[test]
    fn the_calculators_method_finds_its_preset() {
        let study = study_presets();
        let shipped: Vec<String> = study.presets.iter().map(|p| p.id.clone()).collect();
        for (method, group) in [("depth", "depth"), ("width", "width"), ("2:4", "nm"), ("1:4", "nm")] {
            let own = study_preset_id(group);
            let pooled = study_preset_id("pooled");
            let want = [&own, &pooled].into_iter().find(|id| shipped.contains(id)).cloned();
            assert_eq!(study_preset_for(method), want, "{method}");
        }
    }
}
