//! The curves a fit reads, checked against what the law needs and flattened into rows.

use super::FitError;
use crate::data::Curve;
use crate::law::{Features, LawForm};

/// Checkpoints flattened for fitting: features, observed loss, and which curve each came from.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub features: Vec<Features>,
    pub loss: Vec<f64>,
    /// `ln loss`, for the log-space objective.
    pub ln_loss: Vec<f64>,
    pub curve_of: Vec<usize>,
    pub runs: Vec<String>,
}

impl Dataset {
    /// Checks every curve against what `law` needs and flattens it.
    pub fn new(curves: &[Curve], law: LawForm) -> Result<Self, FitError> {
        let needs = law.law().needs();
        let mut d = Dataset { features: Vec::new(), loss: Vec::new(), ln_loss: Vec::new(), curve_of: Vec::new(), runs: Vec::new() };
        // A D = 0 checkpoint (the loss right after pruning) is data, but no law is defined there:
        // fits leave it out.
        for c in curves.iter().filter(|c| c.points.iter().any(|p| p.tokens != 0.0)) {
            let missing = |field| FitError::MissingField { run: c.run.clone(), field, law };
            let n0 = c.n0.ok_or_else(|| missing("n0"))?;
            if !(n0.is_finite() && n0 > 0.0) {
                return Err(FitError::InvalidPoint { run: c.run.clone(), index: 0, field: "n0", value: n0 });
            }
            let rho = match (c.rho, needs.pruned) {
                (Some(r), true) if r > 0.0 && r < 1.0 => r,
                (Some(r), true) => return Err(FitError::RhoOutOfRange { run: c.run.clone(), rho: r, law }),
                (None, true) => return Err(missing("rho")),
                (Some(r), false) if (0.0..1.0).contains(&r) => r,
                (Some(r), false) => return Err(FitError::RhoOutOfRange { run: c.run.clone(), rho: r, law }),
                (None, false) => 0.0,
            };
            if needs.l0 {
                match c.l0 {
                    None => return Err(missing("l0")),
                    Some(l0) if !(l0.is_finite() && l0 > 0.0) => {
                        return Err(FitError::InvalidPoint { run: c.run.clone(), index: 0, field: "l0", value: l0 });
                    }
                    Some(_) => {}
                }
            }
            let k = d.runs.len();
            d.runs.push(c.run.clone());
            for (i, p) in c.points.iter().enumerate().filter(|(_, p)| p.tokens != 0.0) {
                let bad = |field, value| FitError::InvalidPoint { run: c.run.clone(), index: i, field, value };
                if !(p.tokens.is_finite() && p.tokens > 0.0) {
                    return Err(bad("tokens", p.tokens));
                }
                if !(p.loss.is_finite() && p.loss > 0.0) {
                    return Err(bad("loss", p.loss));
                }
                let x = crate::law::Inputs { n0, rho, l0: c.l0, tokens: p.tokens };
                d.features.push(Features::new(&x));
                d.loss.push(p.loss);
                d.ln_loss.push(p.loss.ln());
                d.curve_of.push(k);
            }
        }
        if d.loss.is_empty() {
            return Err(FitError::EmptyData);
        }
        let params = law.law().params().len();
        if d.loss.len() <= params {
            return Err(FitError::TooFewPoints { points: d.loss.len(), params, law });
        }
        Ok(d)
    }

    pub fn len(&self) -> usize {
        self.loss.len()
    }

    pub fn is_empty(&self) -> bool {
        self.loss.is_empty()
    }

    /// The subset at `indices` (points, in the given order), renumbering curves.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut d = Dataset { features: Vec::new(), loss: Vec::new(), ln_loss: Vec::new(), curve_of: Vec::new(), runs: Vec::new() };
        let mut map = std::collections::HashMap::new();
        for &i in indices {
            let k = *map.entry(self.curve_of[i]).or_insert_with(|| {
                d.runs.push(self.runs[self.curve_of[i]].clone());
                d.runs.len() - 1
            });
            d.features.push(self.features[i]);
            d.loss.push(self.loss[i]);
            d.ln_loss.push(self.ln_loss[i]);
            d.curve_of.push(k);
        }
        d
    }
}
