//! The Calibrate page's logic that needs no browser: the cost estimate of a sweep and the live
//! curves built from a job's events.

use crate::refit::preview_svg;
use p2law_shared::calibrate::{CalibrationEvent, CalibrationRequest, Stage};
use p2law_shared::data::Curve;
use std::collections::BTreeMap;

/// Training throughput assumed by the estimate when the user gives none: burn's flex backend on
/// a 2-core CPU, as measured by `bench/lab_tokens.sh` (see the README).
pub const DEFAULT_GFLOPS: f64 = 10.0;

/// `12.3 s`, `4.5 min`, `2.1 h`.
pub fn human_seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// One line: units, training FLOPs and the time at `gflops`, or what is wrong with the form.
pub fn estimate(req: &CalibrationRequest, gflops: f64) -> Result<String, String> {
    let units = req.units().map_err(|(field, m)| format!("{field}: {m}"))?;
    let flops = req.flops();
    let secs = flops / (gflops.max(1e-3) * 1e9);
    let hf = if req.parents.iter().any(|p| p.starts_with("hf:")) { " (Hugging Face parents not counted)" } else { "" };
    Ok(format!("{} pruned models · {:.3e} training FLOPs (6·N·D, pretraining included){hf} · about {} at {gflops} GFLOP/s", units.len(), flops, human_seconds(secs)))
}

/// The curves of a job so far, one per unit, from its events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveCurves {
    pub curves: BTreeMap<String, Curve>,
    /// The latest progress line.
    pub status: String,
    pub finished: Option<CalibrationEvent>,
    pub last_seq: u64,
    /// The unit whose held-out checkpoint came last.
    pub latest: Option<String>,
    /// Each training unit's learning-rate schedule, as its events give it.
    pub schedules: BTreeMap<String, p2law_shared::forecast::schedule::Shape>,
}

impl LiveCurves {
    /// The anneal for `unit` from the job's other units that ran its schedule to the end (their
    /// whole curves' `K`, the median), with how many gave one.
    pub fn anneal_for(&self, unit: &str) -> Option<(f64, usize)> {
        let shape = self.schedules.get(unit)?;
        let whole: Vec<(Vec<(f64, f64)>, &p2law_shared::forecast::schedule::Shape)> = self
            .curves
            .iter()
            .filter(|(k, _)| k.as_str() != unit)
            .filter_map(|(k, c)| {
                let s = self.schedules.get(k)?;
                let end = c.points.last()?.tokens;
                (end >= s.total * (1.0 - 1e-9)).then(|| (c.points.iter().map(|p| (p.tokens, p.loss)).collect(), s))
            })
            .collect();
        p2law_shared::forecast::family_anneal(whole.iter().map(|(p, s)| (p.as_slice(), *s)), shape)
    }

    /// Takes one event (ignores repeats).
    pub fn apply(&mut self, e: &CalibrationEvent) {
        if e.seq != 0 && e.seq <= self.last_seq {
            return;
        }
        self.last_seq = e.seq;
        let unit = e.unit.clone().unwrap_or_default();
        if e.stage == Stage::Train {
            if let Some(s) = e.schedule {
                self.schedules.insert(unit.clone(), s);
            }
            if let Some(p) = e.point {
                self.curves.entry(unit.clone()).or_insert_with(|| Curve::new(unit.clone())).points.push(p);
                self.latest = Some(unit.clone());
            }
        }
        let eta = e.eta_s.map_or(String::new(), |s| format!(" · about {} left", human_seconds(s)));
        self.status = match e.stage {
            Stage::Train | Stage::Pretrain => format!(
                "{} {unit}: step {}/{}{}{eta}",
                e.stage,
                e.step,
                e.steps,
                e.point.map_or(String::new(), |p| format!(" · held-out loss {:.4} at D = {:.3e}", p.loss, p.tokens))
            ),
            other => format!("{other} {unit} {}", e.message.clone().unwrap_or_default()).trim().to_string(),
        };
        if e.stage.is_final() {
            self.finished = Some(e.clone());
        }
    }

    /// The plot of every unit's held-out loss against post-training tokens (log axes: the plot
    /// leaves the D = 0 point out).
    pub fn svg(&self) -> String {
        preview_svg(&self.curves.values().cloned().collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, stage: Stage, unit: &str, point: Option<(f64, f64)>) -> CalibrationEvent {
        CalibrationEvent {
            seq,
            stage,
            unit: Some(unit.into()),
            step: 1,
            steps: 10,
            tokens: 0,
            point: point.map(|(tokens, loss)| p2law_shared::data::CurvePoint { tokens, loss }),
            eta_s: Some(30.0),
            message: None,
            run_id: None,
            fit_id: None,
            worker: None,
            schedule: None,
        }
    }

    #[test]
    fn live_curves_collect_points_per_unit_and_skip_repeats() {
        let mut live = LiveCurves::default();
        for e in [ev(1, Stage::Train, "a", Some((0.0, 3.0))), ev(2, Stage::Train, "a", Some((1e3, 2.5))), ev(2, Stage::Train, "a", Some((1e3, 2.5))), ev(3, Stage::Train, "b", Some((1e3, 2.7))), ev(4, Stage::Train, "b", None)] {
            live.apply(&e);
        }
        assert_eq!(live.curves["a"].points.len(), 2);
        assert_eq!(live.curves["b"].points.len(), 1);
        // The unit training now is the one whose checkpoint came last (a progress step without
        // one does not change it).
        assert_eq!(live.latest.as_deref(), Some("b"));
        assert!(live.status.contains("step 1/10") && live.status.contains("30 s left"), "{}", live.status);
        assert!(live.svg().contains("<svg"));
        live.apply(&ev(5, Stage::Done, "", None));
        assert_eq!(live.finished.as_ref().map(|e| e.seq), Some(5));
    }

    #[test]
    fn estimate_counts_units_and_flops() {
        let r = CalibrationRequest::preset("smoke").unwrap();
        let line = estimate(&r, 10.0).unwrap();
        assert!(line.starts_with("6 pruned models"), "{line}");
        let mut bad = r.clone();
        bad.rates = vec![2.0];
        assert!(estimate(&bad, 10.0).unwrap_err().starts_with("rates"));
        assert_eq!(human_seconds(30.0), "30 s");
        assert_eq!(human_seconds(600.0), "10.0 min");
    }
}
