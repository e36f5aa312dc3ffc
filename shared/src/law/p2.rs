//! The P² law, form "L1" of Chen et al., "P² Law: Scaling Law for Post-Training After Model
//! Pruning", arXiv 2411.10272 (ACL 2025):
//!
//! ```text
//! L(N0, D, rho, L0) = L0 + (1/rho)^gamma (1/N0)^delta (N_C / N0^alpha + D_C / D^beta + E)
//! ```
//!
//! Signs are not fixed by the paper (`gamma < 0` in this printed form makes `L -> L0` as
//! `rho -> 0`), so only `N_C`, `D_C` and `E` are treated as positive constants.

use super::{Features, Law, Needs, TokensTerm, pow_neg};

/// `(1/rho)^gamma (1/N0)^delta (N_C / N0^alpha + D_C / D^beta + E)`: the P² law less its `L0`
/// anchor (shared with the `p2-no-l0` ablation).
pub(super) fn scaled_bracket(p: &[f64], x: &Features) -> f64 {
    let k = (-p[5] * x.ln_rho - p[6] * x.ln_n0).exp();
    k * (p[0] * pow_neg(x.ln_n0, p[3]) + p[1] * pow_neg(x.ln_d, p[4]) + p[2])
}

/// [`scaled_bracket`] with its gradient written into `g`.
pub(super) fn scaled_bracket_grad(p: &[f64], x: &Features, g: &mut [f64]) -> f64 {
    let k = (-p[5] * x.ln_rho - p[6] * x.ln_n0).exp();
    let un = pow_neg(x.ln_n0, p[3]);
    let ud = pow_neg(x.ln_d, p[4]);
    let bracket = p[0] * un + p[1] * ud + p[2];
    g[0] = k * un;
    g[1] = k * ud;
    g[2] = k;
    g[3] = -k * p[0] * un * x.ln_n0;
    g[4] = -k * p[1] * ud * x.ln_d;
    g[5] = -x.ln_rho * k * bracket;
    g[6] = -x.ln_n0 * k * bracket;
    k * bracket
}

/// The token term of [`scaled_bracket`], anchored at `l0`.
pub(super) fn scaled_tokens_term(p: &[f64], x: &Features, l0: f64) -> TokensTerm {
    let k = (-p[5] * x.ln_rho - p[6] * x.ln_n0).exp();
    TokensTerm { asymptote: l0 + k * (p[0] * pow_neg(x.ln_n0, p[3]) + p[2]), coef: k * p[1], beta: p[4] }
}

/// The P² law; coefficients `[N_C, D_C, E, alpha, beta, gamma, delta]`.
#[derive(Debug, Clone, Copy)]
pub struct P2;

impl Law for P2 {
    fn params(&self) -> &'static [&'static str] {
        &["N_C", "D_C", "E", "alpha", "beta", "gamma", "delta"]
    }

    fn positive(&self) -> &'static [bool] {
        &[true, true, true, false, false, false, false]
    }

    fn needs(&self) -> Needs {
        Needs { l0: true, pruned: true }
    }

    fn value(&self, p: &[f64], x: &Features) -> f64 {
        x.l0 + scaled_bracket(p, x)
    }

    fn value_grad(&self, p: &[f64], x: &Features, g: &mut [f64]) -> f64 {
        x.l0 + scaled_bracket_grad(p, x, g)
    }

    fn grid_full(&self) -> Vec<Vec<f64>> {
        vec![
            vec![1.0, 1e2, 1e4],
            vec![1e1, 1e3, 1e5],
            vec![0.01, 0.1, 1.0],
            vec![0.1, 0.3, 0.6],
            vec![0.1, 0.3, 0.6],
            vec![-1.5, -0.5],
            vec![0.0, 0.2],
        ]
    }

    fn grid_quick(&self) -> Vec<Vec<f64>> {
        vec![
            vec![1e2],
            vec![1e2, 1e4],
            vec![0.1],
            vec![0.3],
            vec![0.2, 0.5],
            vec![-1.5, -0.5],
            vec![0.0, 0.2],
        ]
    }

    fn tokens_term(&self, p: &[f64], x: &Features) -> Option<TokensTerm> {
        Some(scaled_tokens_term(p, x, x.l0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::law::testing::{check_gradient, features};

    const P: [f64; 7] = [100.0, 1000.0, 0.5, 0.25, 0.5, -1.0, 0.1];

    #[test]
    fn hand_computed_point() {
        // K = 0.5^1 * 1e9^-0.1 = 0.06294627; bracket = 100/1e9^0.25 + 1000/1e9^0.5 + 0.5 = 1.09396410
        let x = features(1e9, 0.5, 2.0, 1e9);
        assert!((P2.value(&P, &x) - 2.068_860_960_366_828_6).abs() < 1e-12);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(&P2, &P, &features(1e9, 0.5, 2.0, 1e9), 1e-6);
        check_gradient(&P2, &[3.0, 40.0, 0.02, 0.5, 0.2, -0.3, -0.05], &features(3e8, 0.2, 3.1, 2e7), 1e-6);
    }

    #[test]
    fn approaches_l0_as_rho_vanishes_when_gamma_negative() {
        let l = P2.value(&P, &features(1e9, 1e-9, 2.0, 1e9));
        assert!((l - 2.0).abs() < 1e-8);
    }
}
