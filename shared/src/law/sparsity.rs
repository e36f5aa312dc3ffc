//! The sparsity scaling law of Frantar et al., "Scaling Laws for Sparsely-Connected Foundation
//! Models", arXiv 2309.08520 (ICLR 2024):
//!
//! ```text
//! L(S, N, D) = (a_S (1 - S)^b_S + c_S) (1/N)^b_N + (a_D / D)^b_D + c
//! ```
//!
//! p2law reads the sparsity `S` as the pruning rate `rho` and `N` as the parameters that remain,
//! `N0 (1 - rho)`.

use super::{Features, Law, Needs, TokensTerm, pow_neg};

/// Coefficients `[a_S, b_S, c_S, b_N, a_D, b_D, c]`.
#[derive(Debug, Clone, Copy)]
pub struct Sparsity;

impl Law for Sparsity {
    fn params(&self) -> &'static [&'static str] {
        &["a_S", "b_S", "c_S", "b_N", "a_D", "b_D", "c"]
    }

    fn positive(&self) -> &'static [bool] {
        &[true, false, true, false, true, false, true]
    }

    fn needs(&self) -> Needs {
        Needs { l0: false, pruned: false }
    }

    /// `a_D` is a token count (`(a_D / D)^b_D`), already in the units of `D`: judged as it is.
    fn scales(&self) -> &'static [bool] {
        &[true, false, true, false, false, false, true]
    }

    fn value(&self, p: &[f64], x: &Features) -> f64 {
        let s = p[0] * (p[1] * x.ln_keep).exp() + p[2];
        s * pow_neg(x.ln_n, p[3]) + (p[5] * (p[4].ln() - x.ln_d)).exp() + p[6]
    }

    fn value_grad(&self, p: &[f64], x: &Features, g: &mut [f64]) -> f64 {
        let keep = (p[1] * x.ln_keep).exp();
        let s = p[0] * keep + p[2];
        let un = pow_neg(x.ln_n, p[3]);
        let ln_ratio = p[4].ln() - x.ln_d;
        let v = (p[5] * ln_ratio).exp();
        g[0] = keep * un;
        g[1] = p[0] * keep * x.ln_keep * un;
        g[2] = un;
        g[3] = -s * un * x.ln_n;
        g[4] = p[5] * v / p[4];
        g[5] = v * ln_ratio;
        g[6] = 1.0;
        s * un + v + p[6]
    }

    fn grid_full(&self) -> Vec<Vec<f64>> {
        vec![
            vec![1.0, 1e2],
            vec![0.5, 1.5],
            vec![1.0, 1e2],
            vec![0.1, 0.3, 0.5],
            vec![1e6, 1e8],
            vec![0.1, 0.3, 0.5],
            vec![0.5, 1.5],
        ]
    }

    fn grid_quick(&self) -> Vec<Vec<f64>> {
        vec![vec![10.0], vec![1.0], vec![10.0], vec![0.2, 0.4], vec![1e7], vec![0.2, 0.4], vec![1.0]]
    }

    fn tokens_term(&self, p: &[f64], x: &Features) -> Option<TokensTerm> {
        let s = p[0] * (p[1] * x.ln_keep).exp() + p[2];
        Some(TokensTerm { asymptote: s * pow_neg(x.ln_n, p[3]) + p[6], coef: p[4].powf(p[5]), beta: p[5] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::law::testing::{check_gradient, features};

    const P: [f64; 7] = [2.0, 1.5, 1.0, 0.2, 5e7, 0.4, 1.5];

    #[test]
    fn hand_computed_point() {
        // N = 5e8 remaining: (2 * 0.5^1.5 + 1) / (5e8)^0.2 + (5e7/1e9)^0.4 + 1.5 = 1.8327878
        let x = features(1e9, 0.5, 2.0, 1e9);
        assert!((Sparsity.value(&P, &x) - 1.832_787_791_792_971).abs() < 1e-12);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(&Sparsity, &P, &features(1e9, 0.5, 2.0, 1e9), 1e-6);
        check_gradient(&Sparsity, &[30.0, 0.8, 5.0, 0.3, 2e6, 0.25, 0.9], &features(4e8, 0.75, 2.0, 3e8), 1e-6);
    }
}
