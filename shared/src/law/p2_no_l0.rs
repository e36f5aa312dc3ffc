//! p2law's own ablation of the P² law (not from the paper): no `L0` anchor.
//!
//! ```text
//! L = (1/rho)^gamma (1/N0)^delta (N_C / N0^alpha + D_C / D^beta + E)
//! ```

use super::{Features, Law, Needs, TokensTerm};

/// Coefficients `[N_C, D_C, E, alpha, beta, gamma, delta]`.
#[derive(Debug, Clone, Copy)]
pub struct P2NoL0;

impl Law for P2NoL0 {
    fn params(&self) -> &'static [&'static str] {
        &["N_C", "D_C", "E", "alpha", "beta", "gamma", "delta"]
    }

    fn positive(&self) -> &'static [bool] {
        &[true, true, true, false, false, false, false]
    }

    fn needs(&self) -> Needs {
        Needs { l0: false, pruned: true }
    }

    fn value(&self, p: &[f64], x: &Features) -> f64 {
        super::p2::scaled_bracket(p, x)
    }

    fn value_grad(&self, p: &[f64], x: &Features, g: &mut [f64]) -> f64 {
        super::p2::scaled_bracket_grad(p, x, g)
    }

    fn grid_full(&self) -> Vec<Vec<f64>> {
        vec![
            vec![1e1, 1e3, 1e5],
            vec![1e1, 1e3, 1e5],
            vec![0.5, 2.0],
            vec![0.1, 0.3, 0.6],
            vec![0.1, 0.3, 0.6],
            vec![-0.3, -0.05],
            vec![-0.05, 0.0, 0.05],
        ]
    }

    fn grid_quick(&self) -> Vec<Vec<f64>> {
        vec![vec![1e2, 1e4], vec![1e3], vec![2.0], vec![0.3], vec![0.2, 0.5], vec![-0.1], vec![0.0]]
    }

    fn tokens_term(&self, p: &[f64], x: &Features) -> Option<TokensTerm> {
        Some(super::p2::scaled_tokens_term(p, x, 0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::law::testing::{check_gradient, features};

    const P: [f64; 7] = [100.0, 1000.0, 0.5, 0.25, 0.5, -1.0, 0.1];

    #[test]
    fn hand_computed_point() {
        // The P² value at the same point minus L0 = 2.
        let x = features(1e9, 0.5, 2.0, 1e9);
        assert!((P2NoL0.value(&P, &x) - 0.068_860_960_366_828_54).abs() < 1e-13);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(&P2NoL0, &P, &features(1e9, 0.5, 2.0, 1e9), 1e-6);
        check_gradient(&P2NoL0, &[1e3, 5e3, 1.5, 0.2, 0.35, -0.1, 0.02], &features(2e8, 0.4, 2.0, 1e8), 1e-6);
    }
}
