//! p2law's own ablation of the P² law (not from the paper): the `N0^-delta` factor removed.
//!
//! ```text
//! L = L0 + (1/rho)^gamma (N_C / N0^alpha + D_C / D^beta + E)
//! ```

use super::{Features, Law, Needs, TokensTerm, pow_neg};

/// Coefficients `[N_C, D_C, E, alpha, beta, gamma]`.
#[derive(Debug, Clone, Copy)]
pub struct P2NoDelta;

impl Law for P2NoDelta {
    fn params(&self) -> &'static [&'static str] {
        &["N_C", "D_C", "E", "alpha", "beta", "gamma"]
    }

    fn positive(&self) -> &'static [bool] {
        &[true, true, true, false, false, false]
    }

    fn needs(&self) -> Needs {
        Needs { l0: true, pruned: true }
    }

    fn value(&self, p: &[f64], x: &Features) -> f64 {
        let k = pow_neg(x.ln_rho, p[5]);
        x.l0 + k * (p[0] * pow_neg(x.ln_n0, p[3]) + p[1] * pow_neg(x.ln_d, p[4]) + p[2])
    }

    fn value_grad(&self, p: &[f64], x: &Features, g: &mut [f64]) -> f64 {
        let k = pow_neg(x.ln_rho, p[5]);
        let un = pow_neg(x.ln_n0, p[3]);
        let ud = pow_neg(x.ln_d, p[4]);
        let bracket = p[0] * un + p[1] * ud + p[2];
        g[0] = k * un;
        g[1] = k * ud;
        g[2] = k;
        g[3] = -k * p[0] * un * x.ln_n0;
        g[4] = -k * p[1] * ud * x.ln_d;
        g[5] = -x.ln_rho * k * bracket;
        x.l0 + k * bracket
    }

    fn grid_full(&self) -> Vec<Vec<f64>> {
        vec![
            vec![1e-2, 1.0, 1e2],
            vec![1e1, 1e3, 1e5],
            vec![1e-3, 0.01, 0.1],
            vec![0.1, 0.3, 0.6],
            vec![0.1, 0.3, 0.6],
            vec![-1.5, -0.5],
        ]
    }

    fn grid_quick(&self) -> Vec<Vec<f64>> {
        vec![vec![1.0], vec![1e2, 1e4], vec![0.01], vec![0.3], vec![0.2, 0.5], vec![-1.5, -0.5]]
    }

    fn tokens_term(&self, p: &[f64], x: &Features) -> Option<TokensTerm> {
        let k = pow_neg(x.ln_rho, p[5]);
        Some(TokensTerm { asymptote: x.l0 + k * (p[0] * pow_neg(x.ln_n0, p[3]) + p[2]), coef: k * p[1], beta: p[4] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::law::testing::{check_gradient, features};

    const P: [f64; 6] = [100.0, 1000.0, 0.5, 0.25, 0.5, -1.0];

    #[test]
    fn hand_computed_point() {
        // 0.5 * (100/177.8279 + 1000/31622.78 + 0.5) + 2 = 2.5469821
        let x = features(1e9, 0.5, 2.0, 1e9);
        assert!((P2NoDelta.value(&P, &x) - 2.546_982_050_896_016).abs() < 1e-12);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(&P2NoDelta, &P, &features(1e9, 0.5, 2.0, 1e9), 1e-6);
        check_gradient(&P2NoDelta, &[0.3, 20.0, 0.01, 0.4, 0.3, -0.7], &features(5e8, 0.15, 2.7, 3e7), 1e-6);
    }
}
