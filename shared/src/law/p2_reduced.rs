//! The P² law reduced to the terms a narrow span of parent sizes identifies (p2law's, not the
//! paper's): `N_C = E = 0`, so that healing tends back to `L0`.
//!
//! ```text
//! L = L0 + (1/rho)^gamma (1/N0)^delta D_C / D^beta
//! ```
//!
//! Nested in the P² law: its `N_C / N0^alpha + E` part is the asymptote's distance from `L0`
//! and its own size dependence, two power terms in `N0` beside `N0^-delta`. Five parents spanning
//! 34× in `N0`, healed over two decades of `D` without flattening, do not separate them (their
//! bootstrap intervals span zero or many decades); this form keeps the rate, size and token
//! exponents, which the same data do fix. The study fits it where the full form is degenerate
//! and says so wherever the fit is shown.

use super::{Features, Law, Needs, TokensTerm, pow_neg};

/// Coefficients `[D_C, beta, gamma, delta]`.
#[derive(Debug, Clone, Copy)]
pub struct P2Reduced;

impl Law for P2Reduced {
    fn params(&self) -> &'static [&'static str] {
        &["D_C", "beta", "gamma", "delta"]
    }

    fn positive(&self) -> &'static [bool] {
        &[true, false, false, false]
    }

    fn needs(&self) -> Needs {
        Needs { l0: true, pruned: true }
    }

    fn value(&self, p: &[f64], x: &Features) -> f64 {
        x.l0 + p[0] * (-p[2] * x.ln_rho - p[3] * x.ln_n0 - p[1] * x.ln_d).exp()
    }

    fn value_grad(&self, p: &[f64], x: &Features, g: &mut [f64]) -> f64 {
        let u = (-p[2] * x.ln_rho - p[3] * x.ln_n0 - p[1] * x.ln_d).exp();
        let t = p[0] * u;
        g[0] = u;
        g[1] = -x.ln_d * t;
        g[2] = -x.ln_rho * t;
        g[3] = -x.ln_n0 * t;
        x.l0 + t
    }

    fn grid_full(&self) -> Vec<Vec<f64>> {
        vec![vec![1e1, 1e3, 1e5], vec![0.1, 0.3, 0.6], vec![-1.5, -0.5], vec![0.0, 0.2, 0.4]]
    }

    fn grid_quick(&self) -> Vec<Vec<f64>> {
        vec![vec![1e2, 1e4], vec![0.3], vec![-1.5, -0.5], vec![0.2]]
    }

    fn tokens_term(&self, p: &[f64], x: &Features) -> Option<TokensTerm> {
        let k = pow_neg(x.ln_rho, p[2]) * pow_neg(x.ln_n0, p[3]);
        Some(TokensTerm { asymptote: x.l0, coef: k * p[0], beta: p[1] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::law::P2;
    use crate::law::testing::{check_gradient, features};

    const P: [f64; 4] = [1000.0, 0.5, -1.0, 0.1];

    #[test]
    fn hand_computed_point() {
        // 2 + 0.5^1 * 1e9^-0.1 * 1000 / 1e9^0.5 = 2 + 0.5 * 0.12589254 * 0.031622777 = 2.0019905
        let x = features(1e9, 0.5, 2.0, 1e9);
        assert!((P2Reduced.value(&P, &x) - 2.001_990_535_852_767_7).abs() < 1e-12);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(&P2Reduced, &P, &features(1e9, 0.5, 2.0, 1e9), 1e-6);
        check_gradient(&P2Reduced, &[40.0, 0.2, -0.3, -0.05], &features(3e8, 0.2, 3.1, 2e7), 1e-6);
    }

    #[test]
    fn is_the_p2_law_with_n_c_and_e_at_zero() {
        for x in [features(1e9, 0.5, 2.0, 1e9), features(2.5e4, 0.15, 1.9, 3.3e4), features(8e5, 0.75, 1.5, 2e6)] {
            let full = P2.value(&[0.0, P[0], 0.0, 0.3, P[1], P[2], P[3]], &x);
            assert!((P2Reduced.value(&P, &x) - full).abs() < 1e-12 * full);
        }
    }

    #[test]
    fn heals_back_to_l0() {
        let x = features(1e6, 0.5, 2.0, 1e6);
        let t = P2Reduced.tokens_term(&P, &x).expect("closed form");
        assert_eq!(t.asymptote, 2.0);
        assert!((t.asymptote + t.coef * 1e6f64.powf(-t.beta) - P2Reduced.value(&P, &x)).abs() < 1e-12);
    }
}
