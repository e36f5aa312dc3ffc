//! The fit file: one JSON object that `p2law fit --json` prints, `--out` writes, and `predict`,
//! `budget` and the browser read.
//!
//! `{"law", "objective_kind", "params": {name: value}, "objective", "metrics", "holdout",
//! "intervals", ...}`: coefficients are keyed by name so the file stays readable and order-free.

use crate::bootstrap::Bootstrap;
use crate::budget::{self, Rule};
use crate::data::Curve;
use crate::fit::{FitResult, Metrics, Objective, Spread};
use crate::law::{Features, Inputs, LawForm, centred};
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
    /// Loss before pruning, over the curves that give it (absent in fit files older than it).
    #[serde(default)]
    pub l0_range: Option<[f64; 2]>,
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
            tokens_range: range(curves.iter().flat_map(|c| c.points.iter().map(|p| p.tokens)).filter(|&d| d > 0.0).collect()),
            l0_range: range(curves.iter().filter_map(|c| c.l0).collect()),
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
    /// Coefficients whose bootstrap interval is wider than [`BOOTSTRAP_WIDTH`] times their
    /// estimate: the resampled data move them freely, even where the starts agree. Scale
    /// coefficients are judged by their term at [`Self::centre`] ([`crate::law::centred`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bootstrap_unidentified: Vec<String>,
    /// The data's centre, where the identification tests judge scale coefficients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centre: Option<Inputs>,
    pub data: Option<DataSummary>,
    /// Where the data came from (files, models, token range), free text.
    #[serde(default)]
    pub provenance: Option<String>,
}

/// A coefficient is not identified when its bootstrap interval is wider than this many times
/// its estimate (a relative half-width over 100 %: the data do not fix even its size).
pub const BOOTSTRAP_WIDTH: f64 = 2.0;

/// A fit file that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("fit file: coefficient `{name}` of law `{law}` is missing from `params`")]
    MissingParam { name: &'static str, law: LawForm },
    #[error("fit file: coefficient `{name}` is not finite")]
    NotFinite { name: String },
}

/// One coefficient as the identification tests judge it ([`crate::law::centred`]): a scale
/// coefficient's term at the data's centre (`scale: true`), or the coefficient itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    pub scale: bool,
    pub value: f64,
    pub interval: Option<[f64; 2]>,
}

/// [`Judged`] for every coefficient of `params`, with the bootstrap's intervals.
fn centred_terms(law: LawForm, params: &[f64], centre: Option<&Inputs>, b: &Bootstrap) -> Vec<Judged> {
    let l = law.law();
    let Some(c) = centre else {
        return params.iter().zip(b.param_intervals()).map(|(&value, interval)| Judged { scale: false, value, interval }).collect();
    };
    let f = Features::new(c);
    let samples: Vec<Vec<f64>> = b.samples.iter().filter(|s| s.len() == params.len()).map(|s| centred(l, s, &f)).collect();
    centred(l, params, &f)
        .into_iter()
        .enumerate()
        .map(|(i, value)| Judged {
            scale: l.scales()[i],
            value,
            interval: crate::bootstrap::percentile_interval(&samples.iter().map(|s| s[i]).collect::<Vec<_>>(), b.level),
        })
        .collect()
}

impl FitReport {
    /// The coefficients as the identification tests judged them (`None` without a bootstrap).
    pub fn judged(&self) -> Option<Vec<Judged>> {
        let b = self.bootstrap()?;
        let p = self.coefficients().ok()?;
        Some(centred_terms(self.law, &p, self.centre.as_ref(), &b))
    }

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
            bootstrap_unidentified: boot
                .map(|b| {
                    let terms = centred_terms(result.law, &result.params, result.centre.as_ref(), b);
                    names.iter().zip(terms).filter(|(_, t)| t.interval.is_none_or(|[lo, hi]| hi - lo > BOOTSTRAP_WIDTH * t.value.abs())).map(|(n, _)| n.to_string()).collect()
                })
                .unwrap_or_default(),
            centre: result.centre,
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
            bootstrap_unidentified: Vec::new(),
            centre: None,
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

    /// Why this fit's coefficients cannot be trusted one by one, if they cannot: the ones the
    /// data do not pin down, by either test: near-optimal starts disagree by more than 5 %, or
    /// the bootstrap interval is wider than [`BOOTSTRAP_WIDTH`] times the estimate. Every place
    /// that shows a fit shows this line; no preset is made from a fit that has one.
    pub fn degeneracy(&self) -> Option<String> {
        let mut reasons = Vec::new();
        if !self.weakly_identified.is_empty() {
            reasons.push(format!("{} (near-optimal starts disagree by more than 5 %)", self.weakly_identified.join(", ")));
        }
        if !self.bootstrap_unidentified.is_empty() {
            let level = self.intervals.as_ref().map_or(95.0, |i| i.level * 100.0);
            reasons.push(format!("{} (the {level:.0} % bootstrap interval is wider than {BOOTSTRAP_WIDTH}× the estimate)", self.bootstrap_unidentified.join(", ")));
        }
        (!reasons.is_empty()).then(|| {
            format!(
                "degenerate fit: the data do not pin down {}; its curves may still describe the data, but these \
                 coefficients and any budget read from them beyond the data are not to be trusted",
                reasons.join(" and ")
            )
        })
    }

    /// Whether `name` is among the coefficients the data do not pin down (either test).
    pub fn is_unidentified(&self, name: &str) -> bool {
        self.weakly_identified.iter().chain(&self.bootstrap_unidentified).any(|w| w == name)
    }

    /// Where `x` (and `tokens`, when given) lies outside the data this fit was made from, with
    /// by how far; empty inside the calibrated ranges, or when the fit does not say its data.
    pub fn extrapolation(&self, x: &Inputs, tokens: Option<f64>) -> Vec<Extrapolation> {
        let Some(d) = &self.data else { return Vec::new() };
        let mut out = Vec::new();
        let ratio = |field: &'static str, what: &str, v: f64, r: Option<[f64; 2]>, out: &mut Vec<Extrapolation>| {
            let Some([lo, hi]) = r else { return };
            if v > hi * (1.0 + 1e-9) {
                out.push(Extrapolation { field, value: v, range: [lo, hi], message: format!("{field} {} is {}× the largest calibrated {what} ({})", num(v), ratio_text(v / hi), num(hi)) });
            } else if v < lo * (1.0 - 1e-9) {
                out.push(Extrapolation { field, value: v, range: [lo, hi], message: format!("{field} {} is 1/{} of the smallest calibrated {what} ({})", num(v), ratio_text(lo / v), num(lo)) });
            }
        };
        ratio("N0", "parent", x.n0, d.n0_range, &mut out);
        if let Some(t) = tokens {
            ratio("D", "post-training tokens", t, d.tokens_range, &mut out);
        }
        let mut span = |field: &'static str, what: &str, v: f64, r: Option<[f64; 2]>| {
            let Some([lo, hi]) = r else { return };
            if v > hi + 1e-9 || v < lo - 1e-9 {
                let (edge, by) = if v > hi { (hi, v - hi) } else { (lo, lo - v) };
                out.push(Extrapolation { field, value: v, range: [lo, hi], message: format!("{field} {} is {} outside the calibrated {what} {}–{} (nearest {})", num(v), num(by), num(lo), num(hi), num(edge)) });
            }
        };
        if self.law.law().needs().pruned {
            span("rho", "pruning rates", x.rho, d.rho_range);
        }
        if let Some(l0) = x.l0.filter(|_| self.law.law().needs().l0) {
            span("L0", "losses before pruning", l0, d.l0_range);
        }
        out
    }
}

/// One way a prediction lies outside a fit's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Extrapolation {
    /// `N0`, `D`, `rho` or `L0`.
    pub field: &'static str,
    pub value: f64,
    /// The calibrated range of the field.
    pub range: [f64; 2],
    /// In words, with by how far: "N0 8.03e9 is 4.0e4× the largest calibrated parent (2.0e5)".
    pub message: String,
}

/// A number short: 4 significant digits, scientific beyond 1e5 or under 1e-3.
fn num(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) { format!("{v:.3e}") } else { format!("{}", (v * 1e4).round() / 1e4) }
}

fn ratio_text(r: f64) -> String {
    if r >= 100.0 { format!("{:.0}", r) } else { format!("{r:.2}") }
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// A prediction as every front end shows it (`p2law predict --json`, `POST /api/predict`): the
/// curve with its band, every way the inputs lie outside the fit's data, and the fit's degeneracy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PredictionReport {
    pub law: LawForm,
    pub inputs: Inputs,
    pub predictions: Vec<Prediction>,
    /// Outside the calibrated ranges of N0, ρ, L0, and D (the largest and smallest asked).
    pub extrapolation: Vec<Extrapolation>,
    /// [`FitReport::degeneracy`]: which coefficients the data do not pin down, when any.
    pub degenerate: Option<String>,
}

/// [`predict`] with the extrapolation warnings and the degeneracy: one path for the CLI and the
/// API. `tokens` must be positive and finite.
pub fn predict_report(report: &FitReport, x: &Inputs, tokens: &[f64]) -> Result<PredictionReport, ReportError> {
    let predictions = predict(report, x, tokens)?;
    let largest = tokens.iter().copied().fold(0.0, f64::max);
    let smallest = tokens.iter().copied().fold(f64::INFINITY, f64::min);
    let mut extrapolation = report.extrapolation(x, Some(largest));
    if smallest.is_finite() {
        extrapolation.extend(report.extrapolation(x, Some(smallest)).into_iter().filter(|e| e.field == "D" && e.value < e.range[0]));
    }
    Ok(PredictionReport { law: report.law, inputs: *x, predictions, extrapolation, degenerate: report.degeneracy() })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::CurvePoint;

    fn curve(run: &str, n0: f64, rho: f64, l0: f64, tokens: &[f64]) -> Curve {
        let mut c = Curve::new(run.to_string());
        (c.n0, c.rho, c.l0) = (Some(n0), Some(rho), Some(l0));
        c.points = tokens.iter().map(|&t| CurvePoint { tokens: t, loss: l0 + 1.0 / t }).collect();
        c
    }

    fn report(weak: &[&str]) -> FitReport {
        let params = LawForm::P2.law().params().iter().map(|n| (n.to_string(), 1.0)).collect();
        let mut r = FitReport::from_coefficients(LawForm::P2, Objective::Lsq, params, Metrics { r2: Some(0.99), rmse: 0.01, huber: 0.0, asd: None, points: 4 }, "test".into());
        r.weakly_identified = weak.iter().map(|s| s.to_string()).collect();
        r.data = Some(DataSummary::of(&[curve("a", 2.0e4, 0.15, 1.9, &[0.0, 1e3, 1e6]), curve("b", 2.0e5, 0.5, 1.6, &[0.0, 2e3, 2e6])]));
        r
    }

    #[test]
    fn data_summary_ranges_skip_the_unhealed_point_and_record_l0() {
        let d = report(&[]).data.expect("data");
        assert_eq!(d.tokens_range, Some([1e3, 2e6]));
        assert_eq!(d.l0_range, Some([1.6, 1.9]));
        assert_eq!(d.n0_range, Some([2.0e4, 2.0e5]));
        // A fit file written before `l0_range` existed still reads.
        let mut v = serde_json::to_value(&d).expect("json");
        v.as_object_mut().expect("object").remove("l0_range");
        let old: DataSummary = serde_json::from_value(v).expect("old file");
        assert_eq!(old.l0_range, None);
    }

    #[test]
    fn degeneracy_names_the_coefficients() {
        assert_eq!(report(&[]).degeneracy(), None);
        let msg = report(&["D_C", "beta"]).degeneracy().expect("degenerate");
        assert!(msg.starts_with("degenerate fit") && msg.contains("D_C, beta"), "{msg}");
        // Starts that agree do not make a coefficient identified when the bootstrap moves it.
        let mut r = report(&[]);
        r.bootstrap_unidentified = vec!["N_C".into(), "E".into()];
        let msg = r.degeneracy().expect("degenerate");
        assert!(msg.contains("N_C, E (the 95 % bootstrap interval is wider than 2× the estimate)"), "{msg}");
        assert!(r.is_unidentified("E") && !r.is_unidentified("beta"));
    }

    /// The bootstrap test on a real fit: a coefficient is flagged exactly when its interval is
    /// wider than the bound, and well-fixed ones (beta, on curves of five sizes) are not.
    #[test]
    fn the_bootstrap_test_flags_exactly_the_wide_intervals() {
        use crate::bootstrap::{BootstrapOptions, Resample, bootstrap};
        let curves = crate::fit::tests::p2_curves(&crate::fit::tests::TRUTH, 0.01, 5);
        let options = crate::fit::FitOptions::new(LawForm::P2);
        let best = crate::fit::fit(&curves, &options).expect("fit");
        let boot = bootstrap(&curves, &options, &best, &BootstrapOptions { resamples: 40, seed: 3, by: Resample::Curves, level: 0.95 }).expect("bootstrap");
        let r = FitReport::new(&best, &curves, None, Some(&boot));
        let judged = r.judged().expect("judged");
        for (name, j) in r.law.law().params().iter().zip(&judged) {
            let [lo, hi] = j.interval.expect("interval");
            assert_eq!(r.bootstrap_unidentified.iter().any(|n| n == name), hi - lo > BOOTSTRAP_WIDTH * j.value.abs(), "{name}: {} in [{lo}, {hi}]", j.value);
            // Exponents are judged as they are; scale coefficients by their term at the centre.
            assert_eq!(j.scale, ["N_C", "D_C", "E"].contains(name), "{name}");
            if !j.scale {
                assert_eq!(j.value, r.params[*name], "{name}");
            }
        }
        assert!(!r.bootstrap_unidentified.iter().any(|n| n == "beta"), "{:?}", r.bootstrap_unidentified);
    }

    /// A scale coefficient's verdict does not depend on the unit `N0` is counted in. Counted in
    /// millions, the same curves fit the same surface with `D_C` smaller by `1e6^delta`; its raw
    /// bootstrap interval then moves with `delta` (by `N0^delta`), but the term it scales at the
    /// data's centre, and so the verdict, is the same in both units.
    #[test]
    fn identification_does_not_depend_on_units() {
        use crate::bootstrap::{BootstrapOptions, Resample, bootstrap};
        // The P² law with N_C = E = 0 is the reduced form: [D_C, beta, gamma, delta] = [2e5, 0.35, -0.8, 0.3].
        let curves = crate::fit::tests::p2_curves(&[0.0, 2.0e5, 0.0, 0.2, 0.35, -0.8, 0.3], 0.004, 7);
        let millions: Vec<Curve> = curves.iter().cloned().map(|c| Curve { n0: c.n0.map(|n| n / 1e6), ..c }).collect();
        let judge = |curves: &[Curve]| {
            let mut o = crate::fit::FitOptions::new(LawForm::P2Reduced);
            o.starts = crate::fit::Starts::Full;
            let best = crate::fit::fit(curves, &o).expect("fit");
            let boot = bootstrap(curves, &o, &best, &BootstrapOptions { resamples: 40, seed: 3, by: Resample::Curves, level: 0.95 }).expect("bootstrap");
            FitReport::new(&best, curves, None, Some(&boot))
        };
        let (a, b) = (judge(&curves), judge(&millions));
        let delta = a.params["delta"];
        // N0 counted in millions is 1e6 times smaller, so N0^-delta is 1e6^delta larger.
        let ratio = b.params["D_C"] / a.params["D_C"];
        assert!((ratio * 1e6f64.powf(delta) - 1.0).abs() < 1e-3, "D_C in millions {ratio} = 1e6^-{delta}?");
        let (ja, jb) = (a.judged().expect("judged"), b.judged().expect("judged"));
        for (name, (x, y)) in a.law.law().params().iter().zip(ja.iter().zip(&jb)) {
            assert!((x.value / y.value - 1.0).abs() < 1e-3, "{name}: {} vs {}", x.value, y.value);
            let ([xl, xh], [yl, yh]) = (x.interval.expect("a"), y.interval.expect("b"));
            assert!((xl / yl - 1.0).abs() < 0.02 && (xh / yh - 1.0).abs() < 0.02, "{name}: [{xl}, {xh}] vs [{yl}, {yh}]");
        }
        assert_eq!(a.bootstrap_unidentified, b.bootstrap_unidentified);
        assert_eq!(a.weakly_identified, b.weakly_identified);
        assert!(a.degeneracy().is_none(), "{:?}", a.degeneracy());
        // The raw D_C interval is not what is judged: relative to its estimate it differs between units.
        let raw = |r: &FitReport| {
            let [lo, hi] = r.intervals.as_ref().expect("intervals").params["D_C"];
            (hi - lo) / r.params["D_C"]
        };
        assert!((raw(&a) / raw(&b) - 1.0).abs() > 0.05, "raw widths {} and {}", raw(&a), raw(&b));
    }

    #[test]
    fn extrapolation_says_which_field_and_how_far() {
        let r = report(&[]);
        let inside = Inputs { n0: 5.0e4, rho: 0.3, l0: Some(1.7), tokens: 1e4 };
        assert!(r.extrapolation(&inside, Some(1e4)).is_empty());
        let far = Inputs { n0: 8.0e9, rho: 0.6, l0: Some(2.0), tokens: 1e9 };
        let e = r.extrapolation(&far, Some(1e9));
        let fields: Vec<&str> = e.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["N0", "D", "rho", "L0"]);
        // 8e9 / 2e5 = 40000; 1e9 / 2e6 = 500; by hand.
        assert!(e[0].message.contains("40000× the largest calibrated parent"), "{}", e[0].message);
        assert!(e[1].message.contains("500×"), "{}", e[1].message);
        assert!(e[2].message.contains("0.1 outside") && e[3].message.contains("0.1 outside"), "{e:?}");
        let small = Inputs { n0: 1.0e3, rho: 0.3, l0: Some(1.7), tokens: 1e4 };
        assert!(r.extrapolation(&small, None)[0].message.contains("1/20.00 of the smallest"), "{:?}", r.extrapolation(&small, None));
        // A fit without data (a published one) says nothing rather than guessing.
        let published = FitReport { data: None, ..r };
        assert!(published.extrapolation(&far, Some(1e9)).is_empty());
    }
}
