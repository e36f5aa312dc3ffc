//! A run's learning-rate schedule as a function of tokens, for the schedule-aware forecast: the
//! rate relative to its peak, `u(D)`, and its area, `S(D) = ∫₀ᴰ u dD` (tokens at the peak rate's
//! worth of progress).
//!
//! With a known schedule the forecast's form is `L(D) = c + a·(S(D)/S(D_ref))^-β + K·u(D)`
//! (after Tissue et al. 2024, "Scaling Law with Learning Rate Annealing", with an instant
//! response to the rate): progress follows the rate's area, so a decaying rate slows the power
//! term, and the loss carries an excess proportional to the current rate, `K` nats at the peak,
//! which the decay anneals away. `K` is the **anneal**: the drop the loss takes when the rate
//! falls from its peak to zero.

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// The decay after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Decay {
    /// Half a cosine from the peak to the floor.
    Cosine,
    /// A straight line from the peak to the floor.
    Linear,
    /// The peak throughout.
    Constant,
}

/// A schedule: linear warm-up from 0 over `warmup` tokens, then `decay` from the peak to
/// `floor × peak` at `total` tokens, the floor after that.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Shape {
    pub decay: Decay,
    /// Tokens at which the decay ends.
    pub total: f64,
    /// The last rate over the peak, 0 to 1.
    pub floor: f64,
    /// Warm-up tokens.
    pub warmup: f64,
}

impl Shape {
    /// The rate over the peak at `d` tokens.
    pub fn rate(&self, d: f64) -> f64 {
        if d < self.warmup {
            return (d / self.warmup).max(0.0);
        }
        let p = ((d - self.warmup) / (self.total - self.warmup)).clamp(0.0, 1.0);
        match self.decay {
            Decay::Constant => 1.0,
            Decay::Cosine => self.floor + 0.5 * (1.0 - self.floor) * (1.0 + (PI * p).cos()),
            Decay::Linear => self.floor + (1.0 - self.floor) * (1.0 - p),
        }
    }

    /// `∫₀ᵈ rate`, in tokens (closed form).
    pub fn area(&self, d: f64) -> f64 {
        let d = d.max(0.0);
        let w = self.warmup;
        if d <= w {
            return if w > 0.0 { 0.5 * d * d / w } else { 0.0 };
        }
        let span = self.total - w;
        let t = (d - w).min(span);
        let (f, g) = (self.floor, 1.0 - self.floor);
        let decayed = match self.decay {
            Decay::Constant => t,
            Decay::Cosine => f * t + 0.5 * g * (t + span / PI * (PI * t / span).sin()),
            Decay::Linear => f * t + g * (t - 0.5 * t * t / span),
        };
        let beyond = if self.decay == Decay::Constant { 1.0 } else { f } * (d - w - t).max(0.0);
        0.5 * w + decayed + beyond
    }

    /// `d rate / d D` at `d`.
    pub fn rate_slope(&self, d: f64) -> f64 {
        if d < self.warmup {
            return 1.0 / self.warmup;
        }
        let span = self.total - self.warmup;
        let p = (d - self.warmup) / span;
        if !(0.0..1.0).contains(&p) {
            return 0.0;
        }
        match self.decay {
            Decay::Constant => 0.0,
            Decay::Cosine => -0.5 * (1.0 - self.floor) * PI / span * (PI * p).sin(),
            Decay::Linear => -(1.0 - self.floor) / span,
        }
    }

    /// The rate after the schedule ends.
    pub fn end_rate(&self) -> f64 {
        if self.decay == Decay::Constant { 1.0 } else { self.floor }
    }

    pub fn check(&self) -> Result<(), String> {
        if !(self.total.is_finite() && self.total > 0.0) {
            return Err(format!("the total tokens must be positive, got {}", self.total));
        }
        if !(0.0..=1.0).contains(&self.floor) {
            return Err(format!("the floor is the last rate over the peak, 0 to 1, got {}", self.floor));
        }
        if !(self.warmup.is_finite() && self.warmup >= 0.0 && self.warmup < self.total) {
            return Err(format!("the warm-up must be at least 0 and below the total ({:e}), got {}", self.total, self.warmup));
        }
        Ok(())
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.decay {
            Decay::Cosine => "cosine",
            Decay::Linear => "linear",
            Decay::Constant => "constant",
        };
        write!(f, "{kind}:{:e}:{}:{:e}", self.total, self.floor, self.warmup)
    }
}

impl std::str::FromStr for Shape {
    type Err = String;

    /// `KIND:TOTAL[:FLOOR[:WARMUP]]`: `cosine:2.1e6:0.1`, `linear:3e11:0.1:3.75e8`,
    /// `constant:1e9`; the floor defaults to 0 (transformers' cosine and linear schedules), the
    /// warm-up to none.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let decay = match parts[0] {
            "cosine" => Decay::Cosine,
            "linear" => Decay::Linear,
            "constant" => Decay::Constant,
            other => return Err(format!("`{other}`: the decay is `cosine`, `linear` or `constant` (as in `cosine:TOTAL_TOKENS[:FLOOR[:WARMUP_TOKENS]]`)")),
        };
        if !(2..=4).contains(&parts.len()) {
            return Err(format!("`{s}`: expected KIND:TOTAL_TOKENS[:FLOOR[:WARMUP_TOKENS]]"));
        }
        let num = |i: usize, what: &str, default: f64| -> Result<f64, String> {
            parts.get(i).map_or(Ok(default), |v| v.trim().parse::<f64>().map_err(|_| format!("`{v}`: the {what} is not a number")))
        };
        let shape = Shape { decay, total: num(1, "total", f64::NAN)?, floor: num(2, "floor", 0.0)?, warmup: num(3, "warm-up", 0.0)? };
        shape.check()?;
        Ok(shape)
    }
}

/// The schedule a run's logged learning rate follows, from `(tokens, rate)` entries (a
/// trainer_state.json's `learning_rate`) and the tokens at which it ends (`max_steps` × tokens per
/// step): a warm-up when the rate rises to its peak, then whichever of a cosine or a linear decay
/// (each with its floor fitted) follows the logged rate within 2 % of the peak at every entry; a
/// constant rate when it has not moved over half the run. `None` when the log cannot tell: fewer
/// than 4 entries, no decay visible yet, or neither shape follows it.
pub fn infer(lr: &[(f64, f64)], total: f64) -> Option<Shape> {
    let pts: Vec<(f64, f64)> = lr.iter().copied().filter(|(t, v)| t.is_finite() && *t >= 0.0 && v.is_finite() && *v > 0.0).collect();
    if pts.len() < 4 || !(total.is_finite() && total > 0.0) {
        return None;
    }
    let peak = pts.iter().map(|p| p.1).fold(0.0, f64::max);
    let at_peak = pts.iter().position(|p| p.1 >= peak * (1.0 - 1e-9))?;
    let warmup = if at_peak > 0 && pts[0].1 < 0.99 * peak { pts[at_peak].0 } else { 0.0 };
    if warmup >= total {
        return None;
    }
    // (progress through the decay, rate): the logged peak may fall a little after the true one.
    let decay: Vec<(f64, f64)> = pts[at_peak..].iter().map(|&(t, v)| (((t - warmup) / (total - warmup)).clamp(0.0, 1.0), v)).collect();
    let &(p_last, v_last) = decay.last()?;
    if 1.0 - v_last / peak < 0.02 {
        return (p_last >= 0.5).then_some(Shape { decay: Decay::Constant, total, floor: 0.0, warmup });
    }
    if decay.len() < 3 {
        return None;
    }
    let mut best: Option<(f64, Shape)> = None;
    for kind in [Decay::Cosine, Decay::Linear] {
        let g = |p: f64| if kind == Decay::Cosine { 0.5 * (1.0 + (PI * p).cos()) } else { 1.0 - p };
        // rate = P·(floor + (1 - floor)·g) = A·(1 - g) + B·g, with the peak P = B and floor A / B:
        // least squares in A and B.
        let (mut saa, mut sab, mut sbb, mut sav, mut sbv) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(p, v) in &decay {
            let (a, b) = (1.0 - g(p), g(p));
            (saa, sab, sbb, sav, sbv) = (saa + a * a, sab + a * b, sbb + b * b, sav + a * v, sbv + b * v);
        }
        let det = saa * sbb - sab * sab;
        if det.abs() <= 1e-12 * saa * sbb {
            continue;
        }
        let (a, b) = ((sav * sbb - sbv * sab) / det, (saa * sbv - sab * sav) / det);
        if b.is_nan() || b <= 0.0 {
            continue;
        }
        let floor = (a / b).clamp(0.0, 0.99);
        let worst = decay.iter().map(|&(p, v)| (v / b - (floor + (1.0 - floor) * g(p))).abs()).fold(0.0, f64::max);
        if best.as_ref().is_none_or(|x| worst < x.0) {
            best = Some((worst, Shape { decay: kind, total, floor, warmup }));
        }
    }
    best.filter(|b| b.0 <= 0.02).map(|b| b.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_area(s: &Shape, d: f64) -> f64 {
        let n = 200_000;
        let h = d / n as f64;
        (0..n).map(|i| s.rate((i as f64 + 0.5) * h)).sum::<f64>() * h
    }

    #[test]
    fn the_area_is_the_integral_of_the_rate() {
        for decay in [Decay::Cosine, Decay::Linear, Decay::Constant] {
            let s = Shape { decay, total: 1e6, floor: 0.1, warmup: 5e4 };
            for d in [1e4, 5e4, 3e5, 9.99e5, 2e6] {
                let (a, n) = (s.area(d), numeric_area(&s, d));
                assert!((a - n).abs() < 1e-6 * n.max(1.0), "{decay:?} at {d}: {a} vs {n}");
            }
            // The slope of the rate against finite differences, away from the kinks.
            for d in [2e4, 3e5, 7e5] {
                let h = 1.0;
                let fd = (s.rate(d + h) - s.rate(d - h)) / (2.0 * h);
                assert!((s.rate_slope(d) - fd).abs() < 1e-9, "{decay:?} at {d}");
            }
        }
        // By hand: a cosine to 0.1 is at 0.55 halfway and covers 0.55 of its span.
        let s = Shape { decay: Decay::Cosine, total: 1e6, floor: 0.1, warmup: 0.0 };
        assert!((s.rate(5e5) - 0.55).abs() < 1e-12);
        assert!((s.area(1e6) - 0.55e6).abs() < 1e-6);
        assert_eq!(s.rate(3e6), 0.1);
    }

    #[test]
    fn a_shape_is_parsed_and_checked() {
        let s: Shape = "cosine:2.1e6:0.1".parse().unwrap();
        assert_eq!(s, Shape { decay: Decay::Cosine, total: 2.1e6, floor: 0.1, warmup: 0.0 });
        assert_eq!(s.to_string().parse::<Shape>().unwrap(), s);
        let s: Shape = "linear:3e11:0.1:3.75e8".parse().unwrap();
        assert_eq!(s.warmup, 3.75e8);
        assert_eq!("constant:1e9".parse::<Shape>().unwrap().floor, 0.0);
        for (bad, says) in [("step:1e6", "`step`"), ("cosine", "expected"), ("cosine:x", "total"), ("cosine:1e6:1.5", "floor"), ("cosine:1e6:0:2e6", "warm-up"), ("cosine:-1", "positive")] {
            let e = bad.parse::<Shape>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_logged_rate_tells_its_schedule() {
        // transformers' cosine_with_min_lr: 100 warm-up steps, to a tenth at 10 000 steps of 4096
        // tokens, logged every 50 steps up to step 2 500.
        let tps = 4096.0;
        let truth = Shape { decay: Decay::Cosine, total: 1e4 * tps, floor: 0.1, warmup: 100.0 * tps };
        let log = |s: &Shape, to: usize| -> Vec<(f64, f64)> { (1..=to / 50).map(|i| ((i * 50) as f64 * tps, 3e-4 * s.rate((i * 50) as f64 * tps))).collect() };
        let got = infer(&log(&truth, 2500), truth.total).expect("a cosine");
        assert_eq!(got.decay, Decay::Cosine);
        assert!((got.floor - 0.1).abs() < 1e-6 && (got.warmup - truth.warmup).abs() < 1.0, "{got:?}");
        // Linear to zero (transformers' default), no warm-up.
        let lin = Shape { decay: Decay::Linear, total: 1e4 * tps, floor: 0.0, warmup: 0.0 };
        let got = infer(&log(&lin, 3000), lin.total).expect("a linear decay");
        assert_eq!((got.decay, got.warmup), (Decay::Linear, 0.0));
        assert!(got.floor < 1e-6, "{got:?}");
        // Too early to tell: the rate has not moved yet; constant over most of the run.
        assert_eq!(infer(&log(&truth, 400), truth.total), None);
        let flat: Vec<(f64, f64)> = (1..=120).map(|i| (i as f64 * 50.0 * tps, 3e-4)).collect();
        assert_eq!(infer(&flat, 1e4 * tps).map(|s| s.decay), Some(Decay::Constant));
        // A schedule neither shape follows (a step decay) is not guessed.
        let step: Vec<(f64, f64)> = (1..=60).map(|i| (i as f64 * 50.0 * tps, if i < 30 { 3e-4 } else { 1e-4 })).collect();
        assert_eq!(infer(&step, 1e4 * tps), None);
    }
}
