//! Token budgets and their cost.
//!
//! Rules (each applied to the law's curve at fixed model inputs, `L(D) = L_inf + c D^-beta`):
//! - `target:<loss>` — tokens until the predicted loss reaches `loss`: `D = (c / (loss - L_inf))^(1/beta)`;
//! - `slope:<tau>` — tokens until the loss falls slower than `tau` per 1e9 tokens:
//!   `D = (beta c / tau')^(1/(beta+1))` with `tau' = tau / 1e9`;
//! - `gap:<eps>` — tokens until within `eps` of the asymptote: `D = (c / eps)^(1/beta)`.
//!
//! Forms without that closed shape fall back to bisection on `ln D` ([`recommend_numeric`]).
//! Cost: training FLOPs `6 N D` (+ `2 N_teacher D` when healing by distillation), GPU-hours at a
//! stated throughput and utilisation, money at a stated price.

use crate::law::{Features, Inputs, LawForm};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Tokens per unit of the slope rule's `tau`.
pub const SLOPE_UNIT_TOKENS: f64 = 1e9;

/// A budget rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", content = "value", rename_all = "snake_case")]
pub enum Rule {
    /// Reach this loss.
    Target(f64),
    /// Loss falls slower than this per 1e9 tokens.
    Slope(f64),
    /// Within this of the asymptote.
    Gap(f64),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Target(v) => write!(f, "target:{v}"),
            Rule::Slope(v) => write!(f, "slope:{v}"),
            Rule::Gap(v) => write!(f, "gap:{v}"),
        }
    }
}

/// Why no budget can be given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetError {
    #[error("rule `{text}`: expected target:<loss>, slope:<tau> or gap:<eps> with a positive number")]
    InvalidRule { text: String },
    #[error("target loss {target} is at or below the predicted asymptote {asymptote:.4}: more tokens never reach it")]
    Unreachable { target: f64, asymptote: f64 },
    #[error("the fitted curve does not fall with tokens (coefficient {coef}, exponent {beta}); no budget follows")]
    NoDecrease { coef: f64, beta: f64 },
    #[error("no token count up to {max_tokens:e} satisfies `{rule}`")]
    NotFound { rule: Rule, max_tokens: f64 },
    #[error("field `{field}`: must be a positive finite number, got {value}")]
    InvalidInput { field: &'static str, value: f64 },
}

impl FromStr for Rule {
    type Err = BudgetError;
    fn from_str(s: &str) -> Result<Self, BudgetError> {
        let bad = || BudgetError::InvalidRule { text: s.to_string() };
        let (kind, value) = s.split_once(':').ok_or_else(bad)?;
        let v: f64 = value.trim().parse().map_err(|_| bad())?;
        if !(v.is_finite() && v > 0.0) {
            return Err(bad());
        }
        match kind.trim() {
            "target" => Ok(Rule::Target(v)),
            "slope" => Ok(Rule::Slope(v)),
            "gap" => Ok(Rule::Gap(v)),
            _ => Err(bad()),
        }
    }
}

/// Recommended post-training tokens for `rule` (the `tokens` field of `x` is ignored).
pub fn recommend(law: LawForm, params: &[f64], x: &Inputs, rule: Rule) -> Result<f64, BudgetError> {
    let f = Features::new(x);
    let Some(t) = law.law().tokens_term(params, &f) else {
        return recommend_numeric(law, params, x, rule);
    };
    if !(t.coef > 0.0 && t.beta > 0.0) {
        return Err(BudgetError::NoDecrease { coef: t.coef, beta: t.beta });
    }
    let d = match rule {
        Rule::Target(target) => {
            if target <= t.asymptote {
                return Err(BudgetError::Unreachable { target, asymptote: t.asymptote });
            }
            (t.coef / (target - t.asymptote)).powf(1.0 / t.beta)
        }
        Rule::Slope(tau) => (t.beta * t.coef * SLOPE_UNIT_TOKENS / tau).powf(1.0 / (t.beta + 1.0)),
        Rule::Gap(eps) => (t.coef / eps).powf(1.0 / t.beta),
    };
    Ok(d)
}

/// The largest token count the numeric search considers.
const MAX_TOKENS: f64 = 1e18;

/// Bisection on `ln D` over `[1, 1e18]` for any form: the first `D` at which the rule holds,
/// assuming the loss falls monotonically with tokens.
pub fn recommend_numeric(law: LawForm, params: &[f64], x: &Inputs, rule: Rule) -> Result<f64, BudgetError> {
    let f0 = Features::new(x);
    let loss = |d: f64| law.law().value(params, &f0.at_tokens(d));
    // dL/dD by a central difference in ln D: dL/dD = (dL/dlnD) / D.
    let slope = |d: f64| {
        let h: f64 = 1e-4;
        (loss(d * h.exp()) - loss(d * (-h).exp())) / (2.0 * h) / d
    };
    // The asymptote, numerically: D^-beta has vanished at 1e300 tokens for any practical beta.
    let far = loss(1e300);
    let holds = |d: f64| match rule {
        Rule::Target(target) => loss(d) <= target,
        Rule::Slope(tau) => -slope(d) <= tau / SLOPE_UNIT_TOKENS,
        Rule::Gap(eps) => loss(d) - far <= eps,
    };
    let (mut lo, mut hi) = (0.0f64, MAX_TOKENS.ln());
    if holds(1.0) {
        return Ok(1.0);
    }
    if !holds(MAX_TOKENS) {
        return Err(BudgetError::NotFound { rule, max_tokens: MAX_TOKENS });
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if holds(mid.exp()) { hi = mid } else { lo = mid }
        if hi - lo < 1e-12 {
            break;
        }
    }
    Ok(hi.exp())
}

/// Throughput and price of the hardware a run is costed on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hardware {
    /// Peak FLOP/s of one GPU (e.g. 9.89e14 for an H100 SXM in dense bf16).
    pub gpu_flops: f64,
    /// Model FLOP utilisation, 0..1.
    pub mfu: f64,
    /// Price of one GPU-hour.
    pub price_per_gpu_hour: f64,
}

/// The cost of a post-training run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub tokens: f64,
    /// `6 N D` (+ `2 N_teacher D`).
    pub flops: f64,
    pub gpu_hours: Option<f64>,
    pub price: Option<f64>,
}

/// Costs `tokens` of post-training a model of `n` parameters (after pruning), optionally healed
/// by distillation from a teacher of `teacher` parameters.
pub fn cost(n: f64, tokens: f64, teacher: Option<f64>, hw: Option<&Hardware>) -> Result<Cost, BudgetError> {
    let positive = |field, value: f64| if value.is_finite() && value > 0.0 { Ok(value) } else { Err(BudgetError::InvalidInput { field, value }) };
    positive("n", n)?;
    positive("tokens", tokens)?;
    let flops = 6.0 * n * tokens + teacher.map(|t| positive("teacher", t).map(|t| 2.0 * t * tokens)).transpose()?.unwrap_or(0.0);
    let (gpu_hours, price) = match hw {
        Some(h) => {
            positive("gpu_flops", h.gpu_flops)?;
            if !(h.mfu > 0.0 && h.mfu <= 1.0) {
                return Err(BudgetError::InvalidInput { field: "mfu", value: h.mfu });
            }
            let hours = flops / (h.gpu_flops * h.mfu) / 3600.0;
            (Some(hours), Some(hours * h.price_per_gpu_hour))
        }
        None => (None, None),
    };
    Ok(Cost { tokens, flops, gpu_hours, price })
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: [f64; 7] = [100.0, 1000.0, 0.5, 0.25, 0.5, -1.0, 0.1];
    const X: Inputs = Inputs { n0: 1e9, rho: 0.5, l0: Some(2.0), tokens: 0.0 };

    #[test]
    fn closed_forms_satisfy_their_rules() {
        let law = LawForm::P2;
        let at = |d: f64| crate::fit::predict(law, &P, &Inputs { tokens: d, ..X });
        let d = recommend(law, &P, &X, Rule::Target(2.08)).expect("target");
        assert!((at(d) - 2.08).abs() < 1e-12);
        // Slope by finite difference at the recommended D equals tau per 1e9 tokens.
        let d = recommend(law, &P, &X, Rule::Slope(1e-3)).expect("slope");
        let h = d * 1e-6;
        let s = -(at(d + h) - at(d - h)) / (2.0 * h) * 1e9;
        assert!((s - 1e-3).abs() < 1e-8, "{s}");
        let d = recommend(law, &P, &X, Rule::Gap(1e-3)).expect("gap");
        let asym = at(1e30);
        assert!((at(d) - asym - 1e-3).abs() < 1e-10);
    }

    #[test]
    fn numeric_search_agrees_with_closed_forms() {
        for rule in [Rule::Target(2.08), Rule::Slope(1e-3), Rule::Gap(1e-3)] {
            let a = recommend(LawForm::P2, &P, &X, rule).expect("closed");
            let b = recommend_numeric(LawForm::P2, &P, &X, rule).expect("numeric");
            assert!((a / b - 1.0).abs() < 1e-4, "{rule}: {a} vs {b}");
        }
    }

    #[test]
    fn unreachable_and_invalid_rules() {
        assert!(matches!(recommend(LawForm::P2, &P, &X, Rule::Target(1.9)), Err(BudgetError::Unreachable { .. })));
        for bad in ["target", "target:-1", "slope:x", "speed:1", "gap:nan"] {
            assert!(bad.parse::<Rule>().is_err(), "{bad}");
        }
        assert_eq!("slope:0.01".parse::<Rule>(), Ok(Rule::Slope(0.01)));
    }

    #[test]
    fn cost_by_hand() {
        // 6 * 1e9 * 1e10 = 6e19 FLOPs, + 2 * 8e9 * 1e10 = 1.6e20 with a teacher;
        // at 1e15 FLOP/s * 0.5: 2.2e20 / 5e14 / 3600 = 122.2 h; at $2/h = $244.4.
        let hw = Hardware { gpu_flops: 1e15, mfu: 0.5, price_per_gpu_hour: 2.0 };
        let c = cost(1e9, 1e10, Some(8e9), Some(&hw)).expect("cost");
        assert_eq!(c.flops, 2.2e20);
        assert!((c.gpu_hours.expect("hours") - 2.2e20 / 5e14 / 3600.0).abs() < 1e-9);
        assert!((c.price.expect("price") - 244.444_444_444).abs() < 1e-6);
        assert!(cost(1e9, -1.0, None, None).is_err());
    }
}
