//! Huber loss on log-loss residuals, minimised with L-BFGS (argmin) over transformed
//! coefficients: positive constants as `exp(theta)`, the rest as they are. This is the objective of
//! Chinchilla's Approach 3 as replicated by Besiroglu et al. (arXiv 2404.10102).

use super::{Dataset, LocalFit};
use crate::law::Law;
use argmin::core::{CostFunction, Error, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use std::cell::RefCell;

/// `huber_delta(r)`: quadratic within `delta`, linear beyond.
#[inline]
pub fn huber(r: f64, delta: f64) -> f64 {
    let a = r.abs();
    if a <= delta { 0.5 * r * r } else { delta * (a - 0.5 * delta) }
}

#[inline]
fn huber_slope(r: f64, delta: f64) -> f64 {
    r.clamp(-delta, delta)
}

/// How tightly a local run converges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tolerance {
    /// Cost changes below 1e-10 (scipy L-BFGS-B stops at 2.2e-9 for an objective below 1): enough to rank starts.
    Search,
    /// Cost changes below 1e-16: the reported optimum.
    Polish,
}

/// Coefficients from the optimiser's variables: positive constants are `exp(theta)`.
fn coefficients(law: &dyn Law, theta: &[f64]) -> Vec<f64> {
    theta.iter().zip(law.positive()).map(|(t, pos)| if *pos { t.exp() } else { *t }).collect()
}

struct Problem<'a> {
    law: &'a dyn Law,
    data: &'a Dataset,
    delta: f64,
    /// The last point evaluated with its cost and gradient (argmin asks for both separately).
    cache: RefCell<Option<(Vec<f64>, f64, Vec<f64>)>>,
    /// Scratch for per-row values and gradients.
    scratch: RefCell<(Vec<f64>, Vec<f64>)>,
    /// The best point seen, kept even if the line search later gives up.
    best: &'a RefCell<Option<(f64, Vec<f64>)>>,
}

impl Problem<'_> {
    fn coefficients(&self, theta: &[f64]) -> Vec<f64> {
        coefficients(self.law, theta)
    }

    fn evaluate(&self, theta: &[f64]) -> Result<(f64, Vec<f64>), Error> {
        if let Some((t, c, g)) = self.cache.borrow().as_ref() {
            if t.as_slice() == theta {
                return Ok((*c, g.clone()));
            }
        }
        let p = self.coefficients(theta);
        let k = p.len();
        let mut g = vec![0.0; k];
        let mut cost = 0.0;
        let mut scratch = self.scratch.borrow_mut();
        let (values, grads) = &mut *scratch;
        self.law.values_grads(&p, &self.data.features, values, grads);
        for ((pred, ln_y), dl) in values.iter().zip(&self.data.ln_loss).zip(grads.chunks_exact(k)) {
            if !(*pred > 0.0 && pred.is_finite()) {
                return Err(argmin::argmin_error!(InvalidParameter, "prediction is not a positive finite loss"));
            }
            let r = pred.ln() - ln_y;
            cost += huber(r, self.delta);
            let w = huber_slope(r, self.delta) / pred;
            for (gk, dk) in g.iter_mut().zip(dl) {
                *gk += w * dk;
            }
        }
        for (k, pos) in self.law.positive().iter().enumerate() {
            if *pos {
                g[k] *= p[k];
            }
        }
        if !cost.is_finite() || g.iter().any(|v| !v.is_finite()) {
            return Err(argmin::argmin_error!(InvalidParameter, "objective is not finite"));
        }
        *self.cache.borrow_mut() = Some((theta.to_vec(), cost, g.clone()));
        let mut best = self.best.borrow_mut();
        if best.as_ref().is_none_or(|(c, _)| cost < *c) {
            *best = Some((cost, theta.to_vec()));
        }
        Ok((cost, g))
    }
}

impl CostFunction for Problem<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, theta: &Vec<f64>) -> Result<f64, Error> {
        Ok(self.evaluate(theta)?.0)
    }
}

impl Gradient for Problem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, theta: &Vec<f64>) -> Result<Vec<f64>, Error> {
        Ok(self.evaluate(theta)?.1)
    }
}

/// One L-BFGS run from coefficients `p0`; `None` if `p0` cannot be evaluated (e.g. a positive
/// constant that is not positive).
///
/// `tolerance` is the cost change below which the run stops; the multi-start pass uses a loose
/// one and polishes its best results with a tight one.
pub(super) fn minimize(law: &dyn Law, data: &Dataset, p0: &[f64], delta: f64, max_iters: u64, tolerance: Tolerance) -> Option<LocalFit> {
    let theta0: Vec<f64> =
        p0.iter().zip(law.positive()).map(|(v, pos)| if *pos { v.ln() } else { *v }).collect();
    if theta0.iter().any(|t| !t.is_finite()) {
        return None;
    }
    let best = RefCell::new(None);
    let scratch = RefCell::new((vec![0.0; data.len()], vec![0.0; data.len() * p0.len()]));
    let problem = Problem { law, data, delta, cache: RefCell::new(None), scratch, best: &best };
    problem.evaluate(&theta0).ok()?;
    let (tol_grad, tol_cost) = match tolerance {
        Tolerance::Search => (1e-8, 1e-10),
        Tolerance::Polish => (1e-12, 1e-16),
    };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(tol_grad)
        .ok()?
        .with_tolerance_cost(tol_cost)
        .ok()?;
    let run = Executor::new(problem, solver).configure(|s| s.param(theta0).max_iters(max_iters)).timer(false).run();
    let (iterations, stop_reason) = match &run {
        Ok(r) => (
            r.state().get_iter(),
            r.state().get_termination_reason().map_or("running".to_string(), |t| t.text().to_string()),
        ),
        Err(e) => (0, format!("line search stopped: {e}")),
    };
    let (objective, theta) = best.into_inner()?;
    Some(LocalFit { params: coefficients(law, &theta), objective, iterations, stop_reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huber_is_quadratic_then_linear() {
        assert_eq!(huber(0.0005, 1e-3), 0.5 * 0.0005 * 0.0005);
        assert!((huber(-0.01, 1e-3) - 1e-3 * (0.01 - 0.0005)).abs() < 1e-18);
        assert_eq!(huber_slope(0.5, 1e-3), 1e-3);
    }
}
