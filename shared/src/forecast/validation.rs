//! How well forecasts from a prefix of a curve predict its end: every curve is cut at fractions
//! of its tokens, forecast from the cut to its final checkpoint, and scored beside a plain
//! least-squares fit of `c + a·D^-β` on the same prefix (every checkpoint, unbinned, no window).
//!
//! A third column is the preset alone: for a study curve of a method with a shipped P² preset, the
//! preset's form refitted on the study without the curve's parent ([`study_baselines`]: the
//! shipped preset was fitted on these very curves, so it would be scored in-sample), asked for
//! the final loss from the curve's N0, ρ and L0 and nothing of its log. The same leave-one-parent-
//! out preset is the forecast's prior for that curve, as a user's run gets the shipped preset of
//! its method.
//!
//! The "final loss" is the curve's last bin (16 per decade of tokens): its last checkpoint for an
//! evaluation curve logged a few times a decade, the mean of the last steps of a per-step
//! training log, whose single last value is mostly noise.

use super::schedule::Shape;
use super::{ForecastOptions, Obs, Prior, forecast, median, power};
use crate::law::Inputs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One curve to validate on, with the group it is reported in.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub group: String,
    pub name: String,
    /// `(tokens, loss)`, tokens ascending.
    pub points: Vec<(f64, f64)>,
    /// The preset's curve from the curve's inputs alone, where a preset covers it: the forecast's
    /// prior and the preset-alone baseline.
    pub baseline: Option<Prior>,
    /// The curve's learning-rate schedule, when its recipe states one.
    pub schedule: Option<Shape>,
    /// The anneal `K` of finished runs of the same recipe (for a study curve: of the other
    /// parents' curves, [`study_schedules`]).
    pub anneal: Option<f64>,
}

/// One forecast of one curve from one cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub group: String,
    pub name: String,
    pub fraction: f64,
    pub final_tokens: f64,
    pub final_loss: f64,
    pub forecast: f64,
    pub lo: f64,
    pub hi: f64,
    /// `forecast / final − 1`.
    pub error: f64,
    /// The plain fit's `prediction / final − 1`.
    pub plain_error: Option<f64>,
    /// The preset alone's `prediction / final − 1`, where a preset covers the curve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset_error: Option<f64>,
}

/// Scores of one group at one cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub group: String,
    pub fraction: f64,
    pub curves: usize,
    pub median_abs_error: f64,
    pub max_abs_error: f64,
    /// Share of finals inside the band.
    pub coverage: f64,
    pub plain_median_abs_error: Option<f64>,
    pub plain_max_abs_error: Option<f64>,
    /// The preset alone, over the curves a preset covers (how many: `preset_curves`).
    pub preset_median_abs_error: Option<f64>,
    pub preset_max_abs_error: Option<f64>,
    pub preset_curves: usize,
    /// Curves whose prefix held too few checkpoints to forecast.
    pub skipped: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub level: f64,
    pub cases: Vec<Case>,
    pub scores: Vec<Score>,
}

/// The plain baseline: every prefix checkpoint as its own bin, equal weights, no window.
fn plain(prefix: &[(f64, f64)], d: f64) -> Option<f64> {
    let bins: Vec<power::Bin> = prefix.iter().map(|&(tokens, loss)| power::Bin { tokens, loss, count: 1 }).collect();
    power::fit(&bins).map(|f| f.value(d))
}

/// Validates on `series` at each cut `fraction` of its final tokens.
pub fn validate(series: &[Series], fractions: &[f64], options: &ForecastOptions) -> Validation {
    let mut cases = Vec::new();
    let mut skipped: Vec<(String, f64)> = Vec::new();
    for s in series {
        let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.0 > 0.0 && p.1.is_finite()).collect();
        let Some(last_bin) = power::bin(&pts).last().copied() else { continue };
        let (t_final, l_final) = (last_bin.tokens, last_bin.loss);
        let t_end = pts.last().map_or(t_final, |p| p.0);
        for &f in fractions {
            let prefix: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.0 <= f * t_end).collect();
            let obs: Vec<Obs> = prefix.iter().map(|&(tokens, loss)| Obs { tokens, loss, step: None }).collect();
            let o = ForecastOptions { at: vec![t_final], rule: None, prior: s.baseline.clone(), shape: s.schedule, anneal: s.schedule.and(s.anneal), ..options.clone() };
            match forecast(&obs, None, &o) {
                Ok(fc) => {
                    let p = fc.points[0];
                    cases.push(Case {
                        group: s.group.clone(),
                        name: s.name.clone(),
                        fraction: f,
                        final_tokens: t_final,
                        final_loss: l_final,
                        forecast: p.loss,
                        lo: p.lo,
                        hi: p.hi,
                        error: p.loss / l_final - 1.0,
                        plain_error: plain(&prefix, t_final).map(|v| v / l_final - 1.0),
                        preset_error: s.baseline.as_ref().map(|b| b.value(t_final) / l_final - 1.0).filter(|e| e.is_finite()),
                    });
                }
                Err(_) => skipped.push((s.group.clone(), f)),
            }
        }
    }
    let mut groups: Vec<String> = series.iter().map(|s| s.group.clone()).collect();
    groups.sort();
    groups.dedup();
    groups.push("all".into());
    let mut scores = Vec::new();
    for g in &groups {
        for &f in fractions {
            let sel: Vec<&Case> = cases.iter().filter(|c| (g == "all" || &c.group == g) && c.fraction == f).collect();
            let n_skip = skipped.iter().filter(|(sg, sf)| (g == "all" || sg == g) && *sf == f).count();
            if sel.is_empty() {
                continue;
            }
            let mut abs: Vec<f64> = sel.iter().map(|c| c.error.abs()).collect();
            let mut plain: Vec<f64> = sel.iter().filter_map(|c| c.plain_error.map(f64::abs)).collect();
            let mut preset: Vec<f64> = sel.iter().filter_map(|c| c.preset_error.map(f64::abs)).collect();
            scores.push(Score {
                group: g.clone(),
                fraction: f,
                curves: sel.len(),
                median_abs_error: median(&mut abs),
                max_abs_error: abs.iter().copied().fold(0.0, f64::max),
                coverage: sel.iter().filter(|c| c.lo <= c.final_loss && c.final_loss <= c.hi).count() as f64 / sel.len() as f64,
                plain_median_abs_error: (!plain.is_empty()).then(|| median(&mut plain)),
                plain_max_abs_error: (!plain.is_empty()).then(|| plain.iter().copied().fold(0.0, f64::max)),
                preset_max_abs_error: (!preset.is_empty()).then(|| preset.iter().copied().fold(0.0, f64::max)),
                preset_curves: preset.len(),
                preset_median_abs_error: (!preset.is_empty()).then(|| median(&mut preset)),
                skipped: n_skip,
            });
        }
    }
    Validation { level: options.level, cases, scores }
}

/// The preset-alone baseline of every study curve that a shipped P² preset serves (the one
/// [`crate::presets::study_preset_in`] picks for its method), by run: that preset's form
/// refitted, with the study's fit options, on the preset's group less the curve's parent (leave
/// one parent out), so that no curve is predicted by a fit that saw it.
pub fn study_baselines(data: &crate::study::StudyData) -> BTreeMap<String, Prior> {
    use crate::study::analysis::{GROUPS, curves, options};
    let shipped = crate::presets::study_presets().presets;
    let serves = |c: &crate::data::Curve, id: &str| c.method.as_deref().and_then(|m| crate::presets::study_preset_in(&shipped, m)).is_some_and(|p| p.id == id);
    let mut out = BTreeMap::new();
    for g in &GROUPS {
        let id = crate::presets::study_preset_id(g.id);
        let Some(preset) = shipped.iter().find(|p| p.id == id) else { continue };
        let law = preset.report.law;
        let group = curves(data, g);
        let mut parents: Vec<u64> = group.iter().filter(|c| serves(c, &id)).filter_map(|c| c.n0).map(|n| n as u64).collect();
        parents.sort_unstable();
        parents.dedup();
        for n0 in parents {
            let (held, rest): (Vec<_>, Vec<_>) = group.iter().cloned().partition(|c| c.n0.map(|n| n as u64) == Some(n0));
            let Ok(fit) = crate::fit::fit(&rest, &options(law, 0)) else { continue };
            for c in held.into_iter().filter(|c| serves(c, &id)) {
                let (Some(n0), Some(rho)) = (c.n0, c.rho) else { continue };
                let source = format!("{id} refitted without parent N0 = {n0:.0}");
                out.insert(c.run, Prior { source, law, params: fit.params.clone(), inputs: Inputs { n0, rho, l0: c.l0, tokens: 1.0 }, caveat: preset.report.degeneracy() });
            }
        }
    }
    out
}

/// Every study curve's schedule (its unit's post-training recipe) and anneal, by run: the anneal
/// `K` is the median of those fitted (the schedule-aware form with `K` free, on the checkpoints
/// the study's fits use) to the whole pruned curves of the *other* parents, so that no curve's own
/// end informs its forecast, as a user's finished run of the same recipe would inform the next.
pub fn study_schedules(data: &crate::study::StudyData) -> BTreeMap<String, (Shape, f64)> {
    use crate::study::analysis::FIT_MIN_TOKENS;
    let shapes: BTreeMap<&str, Shape> = data.manifest.units.iter().map(|u| (u.run.as_str(), u.post_train.schedule())).collect();
    // (parent N0, K) of every pruned curve.
    let fitted: Vec<(u64, f64)> = data
        .curves
        .iter()
        .filter(|c| c.rho.is_some_and(|r| r > 0.0))
        .filter_map(|c| {
            let shape = *shapes.get(c.run.as_str())?;
            let pts: Vec<(f64, f64)> = c.points.iter().filter(|p| p.tokens >= FIT_MIN_TOKENS && p.loss.is_finite()).map(|p| (p.tokens, p.loss)).collect();
            let f = power::fit_form(&power::bin(&pts), &power::Form { schedule: Some(shape), anneal: Some(power::Anneal::Free) })?;
            Some((c.n0? as u64, f.anneal))
        })
        .collect();
    let mut out = BTreeMap::new();
    for c in &data.curves {
        let (Some(&shape), Some(n0)) = (shapes.get(c.run.as_str()), c.n0) else { continue };
        let mut others: Vec<f64> = fitted.iter().filter(|(p, _)| *p != n0 as u64).map(|(_, k)| *k).collect();
        if others.is_empty() {
            continue;
        }
        out.insert(c.run.clone(), (shape, median(&mut others)));
    }
    out
}
