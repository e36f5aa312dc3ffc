//! Fitting the law to the study the way the paper does, and testing its claims on the data.
//!
//! - [`fit_group`]: the P² law (or an ablation, or Chinchilla read as a dense model of
//!   `N = N0 (1 - rho)` parameters) per method [`Group`], least squares (the P² law from its full grid
//!   of starts, the others from a seeded sample of theirs), with a bootstrap over curves;
//! - [`protocols`]: the paper's three validations, fit on part of the curves and predict the
//!   rest: the first 80 % of every curve's checkpoints → the last 20 %; the smaller parents →
//!   the largest; the lower target rates → the highest (by the unit's nominal rate or pattern,
//!   since the achieved rate of one setting differs slightly between parents);
//! - [`trends`]: how many tokens healing takes as the rate and the size change, measured on
//!   the curves themselves (no law assumed).

use super::{StudyData, StudyUnit};
use crate::bootstrap::{BootstrapOptions, Resample};
use crate::data::Curve;
use crate::fit::{FitError, FitOptions, Objective, Starts};
use crate::law::{Features, LawForm};
use crate::report::{FitReport, run_fit};
use serde::{Deserialize, Serialize};

/// A set of methods fitted together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub id: &'static str,
    pub title: &'static str,
    /// Values of the `method` column; empty for every pruned curve.
    pub methods: &'static [&'static str],
}

/// Depth, width, N:M sparsity, and all three pooled.
pub const GROUPS: [Group; 4] = [
    Group { id: "depth", title: "depth (whole layers, lowest block influence first)", methods: &["depth"] },
    Group { id: "width", title: "width (key/value groups with their query heads, MLP channels)", methods: &["width"] },
    Group { id: "nm", title: "N:M sparsity (1:4, 2:4, 3:4 by Wanda scores)", methods: &["1:4", "2:4", "3:4"] },
    Group { id: "pooled", title: "all methods pooled", methods: &[] },
];

/// The forms compared: the P² law, p2law's three ablations, its reduction, and Chinchilla read as
/// dense.
pub const FORMS: [LawForm; 6] = [LawForm::P2, LawForm::P2NoDelta, LawForm::P2NoL0, LawForm::P2Additive, LawForm::P2Reduced, LawForm::Chinchilla];

/// Starts of the forms compared with the P² law: this many drawn (seeded) from each one's full
/// grid, so that the side-by-side tables cost minutes, not an hour (Chinchilla's grid alone is
/// 4 500 starts).
pub const ABLATION_STARTS: usize = 243;

/// Fit options of the study: least squares (the paper's); the P² law and its reduction from their
/// full grids of starts, the other forms from [`ABLATION_STARTS`] of theirs.
pub fn options(law: LawForm, seed: u64) -> FitOptions {
    let mut o = FitOptions::new(law);
    o.objective = Objective::Lsq;
    o.starts = if matches!(law, LawForm::P2 | LawForm::P2Reduced) { Starts::Full } else { Starts::Count(ABLATION_STARTS) };
    o.seed = seed;
    o
}

/// The first healing checkpoint the fits use: 16 optimizer steps of 16 × 128 tokens. Over the
/// first steps the loss falls by about as much per step as the learning rate allows, whatever
/// the tokens (linearly in steps, not as a power of D): that regime is the optimizer's, not the
/// data's, and no form of the law describes it. The report shows the fits on every checkpoint
/// beside these.
pub const FIT_MIN_TOKENS: f64 = 32_768.0;

/// The curves of a group, checkpoints from [`FIT_MIN_TOKENS`] on.
pub fn curves(data: &StudyData, g: &Group) -> Vec<Curve> {
    curves_from(data, g, FIT_MIN_TOKENS)
}

/// The curves of a group, checkpoints from `min_tokens` on (D = 0 always left out).
pub fn curves_from(data: &StudyData, g: &Group, min_tokens: f64) -> Vec<Curve> {
    let mut out = data.pruned(g.methods);
    for c in &mut out {
        c.points.retain(|p| p.tokens > 0.0 && p.tokens >= min_tokens);
    }
    out.retain(|c| !c.points.is_empty());
    out
}

/// The fit of one form to one group, with a `resamples`-fold bootstrap over curves.
pub fn fit_group(data: &StudyData, g: &Group, law: LawForm, resamples: usize, seed: u64) -> Result<FitReport, FitError> {
    fit_curves(&curves(data, g), law, resamples, seed)
}

/// The fit of one form to `curves`, with a `resamples`-fold bootstrap over curves.
pub fn fit_curves(curves: &[Curve], law: LawForm, resamples: usize, seed: u64) -> Result<FitReport, FitError> {
    let boot = (resamples > 0).then_some(BootstrapOptions { resamples, seed, by: Resample::Curves, level: 0.95 });
    run_fit(curves, &options(law, seed), None, boot)
}

/// A group's fits for a preset: the P² law, and, when the data leave it degenerate (or it fails),
/// its reduction [`LawForm::P2Reduced`]. The rule is fixed before looking at any metric: the
/// full form when its coefficients are identified, else the reduced form when its are, else none.
#[derive(Debug, Clone)]
pub struct StudyFit {
    pub full: Result<FitReport, FitError>,
    /// Made only when the full form is degenerate or fails.
    pub reduced: Option<Result<FitReport, FitError>>,
}

/// Why a fit cannot make a preset: it is degenerate, or it failed; `None` when it can.
fn unusable(r: &Result<FitReport, FitError>) -> Option<String> {
    match r {
        Ok(r) => r.degeneracy(),
        Err(e) => Some(format!("the fit failed: {e}")),
    }
}

impl StudyFit {
    /// The fit a preset is made from, or why none is.
    pub fn chosen(&self) -> Result<&FitReport, String> {
        let Some(full_why) = unusable(&self.full) else { return self.full.as_ref().map_err(|e| e.to_string()) };
        match &self.reduced {
            Some(r) => match unusable(r) {
                None => r.as_ref().map_err(|e| e.to_string()),
                Some(reduced_why) => Err(format!("P² law: {full_why}; reduced form ({}): {reduced_why}", LawForm::P2Reduced)),
            },
            None => Err(full_why),
        }
    }

    /// Why the full form was set aside, when the chosen fit is the reduced one.
    pub fn full_set_aside(&self) -> Option<String> {
        if self.chosen().is_ok_and(|c| c.law == LawForm::P2) { None } else { unusable(&self.full) }
    }
}

/// [`StudyFit`] of one group, with a `resamples`-fold bootstrap over curves.
pub fn fit_study_group(data: &StudyData, g: &Group, resamples: usize, seed: u64) -> StudyFit {
    let curves = curves(data, g);
    let full = fit_curves(&curves, LawForm::P2, resamples, seed);
    let reduced = unusable(&full).is_some().then(|| fit_curves(&curves, LawForm::P2Reduced, resamples, seed));
    StudyFit { full, reduced }
}

/// One protocol's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtocolResult {
    /// `last20`, `largest-n0` or `highest-rho`.
    pub protocol: String,
    pub train_curves: usize,
    pub test_curves: usize,
    pub test_points: usize,
    pub params: Vec<f64>,
    pub mean_abs_error: f64,
    pub max_abs_error: f64,
    pub mean_rel_error: f64,
    pub max_rel_error: f64,
    /// `(run, tokens, observed, predicted)` of every test point.
    pub predictions: Vec<(String, f64, f64, f64)>,
}

fn nominal(c: &Curve) -> Option<StudyUnit> {
    StudyUnit::from_run(&c.run)
}

/// How severe a unit's setting is: the target rate, or the pruned fraction `1 - n/m` of N:M.
pub fn severity(u: &StudyUnit) -> f64 {
    match u.setting.split_once(':') {
        Some((n, m)) => 1.0 - n.parse::<f64>().unwrap_or(0.0) / m.parse::<f64>().unwrap_or(1.0),
        None => u.setting.parse().unwrap_or(0.0),
    }
}

/// Fits on `train`, predicts the checkpoints of `test` past D = 0.
fn score(protocol: &str, train: &[Curve], test: &[Curve], train_curves: usize, law: LawForm, seed: u64) -> Result<ProtocolResult, FitError> {
    let fitted = crate::fit::fit(train, &options(law, seed))?;
    let mut predictions = Vec::new();
    for c in test {
        for p in c.points.iter().filter(|p| p.tokens > 0.0) {
            let Some(x) = c.inputs(p.tokens) else { continue };
            predictions.push((c.run.clone(), p.tokens, p.loss, law.law().value(&fitted.params, &Features::new(&x))));
        }
    }
    if predictions.is_empty() {
        return Err(FitError::Holdout { protocol: protocol.into(), message: "no checkpoints are left to test on".into() });
    }
    let abs: Vec<f64> = predictions.iter().map(|(_, _, o, p)| (p - o).abs()).collect();
    let rel: Vec<f64> = predictions.iter().zip(&abs).map(|((_, _, o, _), a)| a / o).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    Ok(ProtocolResult {
        protocol: protocol.into(),
        train_curves,
        test_curves: test.len(),
        test_points: predictions.len(),
        params: fitted.params,
        mean_abs_error: mean(&abs),
        max_abs_error: max(&abs),
        mean_rel_error: mean(&rel),
        max_rel_error: max(&rel),
        predictions,
    })
}

/// The paper's three protocols on one group and form.
pub fn protocols(data: &StudyData, g: &Group, law: LawForm, seed: u64) -> Vec<Result<ProtocolResult, FitError>> {
    let all = curves(data, g);
    // First 80 % of every curve's checkpoints (D = 0 aside) train, the rest test.
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    for c in &all {
        let pts: Vec<_> = c.points.iter().filter(|p| p.tokens > 0.0).copied().collect();
        let keep = ((pts.len() as f64) * 0.8).ceil() as usize;
        let (a, b) = pts.split_at(keep.min(pts.len()));
        head.push(Curve { points: a.to_vec(), ..c.clone() });
        tail.push(Curve { points: b.to_vec(), ..c.clone() });
    }
    let last20 = score("last20", &head, &tail, head.len(), law, seed);
    let largest = all.iter().filter_map(|c| c.n0).fold(0.0, f64::max);
    let (small, big): (Vec<Curve>, Vec<Curve>) = all.iter().cloned().partition(|c| c.n0 != Some(largest));
    let largest_n0 = score("largest-n0", &small, &big, small.len(), law, seed);
    // The highest nominal setting of each method is held out.
    let top: Vec<(String, f64)> = {
        let mut m: std::collections::BTreeMap<String, f64> = Default::default();
        for u in all.iter().filter_map(nominal) {
            let e = m.entry(u.method.clone()).or_insert(0.0);
            *e = e.max(severity(&u));
        }
        m.into_iter().collect()
    };
    let is_top = |c: &Curve| nominal(c).is_some_and(|u| top.iter().any(|(m, s)| m == &u.method && (*s - severity(&u)).abs() < 1e-9));
    let (low, high): (Vec<Curve>, Vec<Curve>) = all.iter().cloned().partition(|c| !is_top(c));
    let highest = score("highest-rho", &low, &high, low.len(), law, seed);
    vec![last20, largest_n0, highest]
}

/// The tokens a curve takes to achieve `share` of its healing (`L(0) - L(D_max)`), interpolated
/// in `log D` between checkpoints; `None` when the curve does not heal.
pub fn tokens_to_heal(c: &Curve, share: f64) -> Option<f64> {
    let first = c.points.first()?;
    let last = c.points.last()?;
    let gain = first.loss - last.loss;
    if !(gain > 0.0) {
        return None;
    }
    let target = first.loss - share * gain;
    let pts: Vec<_> = c.points.iter().filter(|p| p.tokens > 0.0).collect();
    let mut prev: Option<&crate::data::CurvePoint> = None;
    for p in pts {
        if p.loss <= target {
            return Some(match prev {
                Some(q) if q.loss > p.loss => {
                    let t = (q.loss - target) / (q.loss - p.loss);
                    (q.tokens.ln() + t * (p.tokens.ln() - q.tokens.ln())).exp()
                }
                _ => p.tokens,
            });
        }
        prev = Some(p);
    }
    Some(last.tokens)
}

/// One pairwise comparison of the trends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// What is compared (`rate, within parent and method` or `size, within method and setting`).
    pub axis: String,
    pub method: String,
    /// Pairs where the heavier pruning (or the larger parent) took more tokens, fewer, or the same.
    pub more: usize,
    pub fewer: usize,
    pub ties: usize,
}

/// Does a higher rate take more tokens to heal (within one parent and method), and a larger
/// parent fewer (within one method and setting)? Counted over all pairs of curves, with
/// [`tokens_to_heal`] at `share` as the measure.
pub fn trends(data: &StudyData, share: f64) -> Vec<Trend> {
    let units: Vec<(StudyUnit, &Curve, f64)> = data
        .curves
        .iter()
        .filter(|c| c.rho.is_some_and(|r| r > 0.0))
        .filter_map(|c| Some((nominal(c)?, c, tokens_to_heal(c, share)?)))
        .filter(|(u, _, _)| u.seed == 0)
        .collect();
    let mut out = Vec::new();
    for method in ["depth", "width", "sparse"] {
        let mine: Vec<&(StudyUnit, &Curve, f64)> = units.iter().filter(|(u, _, _)| u.method == method).collect();
        let mut rate = Trend { axis: "higher rate, same parent".into(), method: method.into(), more: 0, fewer: 0, ties: 0 };
        let mut size = Trend { axis: "larger parent, same setting".into(), method: method.into(), more: 0, fewer: 0, ties: 0 };
        for (i, a) in mine.iter().enumerate() {
            for b in &mine[i + 1..] {
                let cmp = |t: &mut Trend, up: bool| {
                    let (x, y) = if up { (a.2, b.2) } else { (b.2, a.2) };
                    // `y` is the tokens of the heavier (or larger) of the pair.
                    if (y - x).abs() <= 1e-9 * x.max(y) {
                        t.ties += 1;
                    } else if y > x {
                        t.more += 1;
                    } else {
                        t.fewer += 1;
                    }
                };
                if a.0.parent == b.0.parent && severity(&a.0) != severity(&b.0) {
                    cmp(&mut rate, severity(&b.0) > severity(&a.0));
                }
                if a.0.setting == b.0.setting && a.1.n0 != b.1.n0 {
                    cmp(&mut size, b.1.n0 > a.1.n0);
                }
            }
        }
        out.push(rate);
        out.push(size);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::CurvePoint;

    fn curve(run: &str, pts: &[(f64, f64)]) -> Curve {
        let mut c = Curve::new(run);
        c.n0 = Some(1e5);
        c.rho = Some(0.25);
        c.l0 = Some(2.0);
        c.points = pts.iter().map(|&(tokens, loss)| CurvePoint { tokens, loss }).collect();
        c
    }

    #[test]
    fn tokens_to_heal_interpolates_in_log_tokens() {
        // Healing 3.0 -> 2.0; half of it (2.5) is reached between 100 (2.6) and 1000 (2.4).
        let c = curve("p/depth/0.25/s0", &[(0.0, 3.0), (100.0, 2.6), (1000.0, 2.4), (10000.0, 2.0)]);
        let t = tokens_to_heal(&c, 0.5).expect("heals");
        assert!((t - 10f64.powf(2.5)).abs() < 1e-6, "{t}");
        assert_eq!(tokens_to_heal(&curve("x", &[(0.0, 2.0), (10.0, 2.1)]), 0.5), None);
    }

    #[test]
    fn severity_reads_rates_and_patterns() {
        let u = |s: &str| StudyUnit { parent: "p".into(), method: "m".into(), setting: s.into(), seed: 0 };
        assert_eq!(severity(&u("0.35")), 0.35);
        assert_eq!(severity(&u("1:4")), 0.75);
        assert_eq!(severity(&u("3:4")), 0.25);
    }
}
