//! p2law's own additive ablation (not from the paper): the pruning rate enters as its own term.
//!
//! ```text
//! L = L0 + N_C / N0^alpha + D_C / D^beta + R_C rho^gamma + E
//! ```

use super::{Features, Law, Needs, TokensTerm, pow_neg};

/// Coefficients `[N_C, D_C, R_C, E, alpha, beta, gamma]`.
#[derive(Debug, Clone, Copy)]
pub struct P2Additive;

impl Law for P2Additive {
    fn params(&self) -> &'static [&'static str] {
        &["N_C", "D_C", "R_C", "E", "alpha", "beta", "gamma"]
    }

    fn positive(&self) -> &'static [bool] {
        &[true, true, true, false, false, false, false]
    }

    fn needs(&self) -> Needs {
        Needs { l0: true, pruned: true }
    }

    fn value(&self, p: &[f64], x: &Features) -> f64 {
        x.l0 + p[0] * pow_neg(x.ln_n0, p[4])
            + p[1] * pow_neg(x.ln_d, p[5])
            + p[2] * (p[6] * x.ln_rho).exp()
            + p[3]
    }

    fn value_grad(&self, p: &[f64], x: &Features, g: &mut [f64]) -> f64 {
        let un = pow_neg(x.ln_n0, p[4]);
        let ud = pow_neg(x.ln_d, p[5]);
        let ur = (p[6] * x.ln_rho).exp();
        g[0] = un;
        g[1] = ud;
        g[2] = ur;
        g[3] = 1.0;
        g[4] = -p[0] * un * x.ln_n0;
        g[5] = -p[1] * ud * x.ln_d;
        g[6] = p[2] * ur * x.ln_rho;
        x.l0 + p[0] * un + p[1] * ud + p[2] * ur + p[3]
    }

    fn grid_full(&self) -> Vec<Vec<f64>> {
        vec![
            vec![1e-2, 1.0, 1e2],
            vec![1e1, 1e3, 1e5],
            vec![0.1, 1.0, 5.0],
            vec![-0.5, 0.0],
            vec![0.1, 0.3, 0.6],
            vec![0.1, 0.3, 0.6],
            vec![0.5, 1.0, 2.0],
        ]
    }

    fn grid_quick(&self) -> Vec<Vec<f64>> {
        vec![vec![1.0], vec![1e2, 1e4], vec![1.0], vec![0.0], vec![0.3], vec![0.2, 0.5], vec![0.5, 2.0]]
    }

    fn tokens_term(&self, p: &[f64], x: &Features) -> Option<TokensTerm> {
        Some(TokensTerm {
            asymptote: x.l0 + p[0] * pow_neg(x.ln_n0, p[4]) + p[2] * (p[6] * x.ln_rho).exp() + p[3],
            coef: p[1],
            beta: p[5],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::law::testing::{check_gradient, features};

    const P: [f64; 7] = [100.0, 1000.0, 0.8, 0.5, 0.25, 0.5, 1.5];

    #[test]
    fn hand_computed_point() {
        // 2 + 0.5623413 + 0.0316228 + 0.8 * 0.5^1.5 + 0.5 = 3.3768068
        let x = features(1e9, 0.5, 2.0, 1e9);
        assert!((P2Additive.value(&P, &x) - 3.376_806_814_266_652).abs() < 1e-12);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(&P2Additive, &P, &features(1e9, 0.5, 2.0, 1e9), 1e-6);
        check_gradient(&P2Additive, &[2.0, 300.0, 1.2, -0.1, 0.15, 0.35, 0.8], &features(7e8, 0.3, 2.2, 4e9), 1e-6);
    }
}
