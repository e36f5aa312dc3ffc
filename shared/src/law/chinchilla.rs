//! Chinchilla (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models"):
//!
//! ```text
//! L(N, D) = E + A / N^alpha + B / D^beta
//! ```
//!
//! `N` is the model's parameter count: `N0 (1 - rho)`, which is `N0` for dense data.
//! Under Huber-on-log with `A = e^a, B = e^b, E = e^e` this is the objective of Chinchilla's
//! Approach 3 as replicated by Besiroglu et al. (arXiv 2404.10102).

use super::{Features, Law, Needs, TokensTerm, pow_neg};

/// Coefficients `[A, B, E, alpha, beta]`.
#[derive(Debug, Clone, Copy)]
pub struct Chinchilla;

impl Law for Chinchilla {
    fn params(&self) -> &'static [&'static str] {
        &["A", "B", "E", "alpha", "beta"]
    }

    fn positive(&self) -> &'static [bool] {
        &[true, true, true, false, false]
    }

    fn needs(&self) -> Needs {
        Needs { l0: false, pruned: false }
    }

    fn value(&self, p: &[f64], x: &Features) -> f64 {
        p[2] + p[0] * pow_neg(x.ln_n, p[3]) + p[1] * pow_neg(x.ln_d, p[4])
    }

    fn value_grad(&self, p: &[f64], x: &Features, g: &mut [f64]) -> f64 {
        let un = pow_neg(x.ln_n, p[3]);
        let ud = pow_neg(x.ln_d, p[4]);
        g[0] = un;
        g[1] = ud;
        g[2] = 1.0;
        g[3] = -p[0] * un * x.ln_n;
        g[4] = -p[1] * ud * x.ln_d;
        p[2] + p[0] * un + p[1] * ud
    }

    /// Epoch AI's grid: `a, b` in 0..25 step 5, `e` in -1..1 step 0.5 (in log space),
    /// `alpha, beta` in 0..2 step 0.5: 4500 starts.
    fn grid_full(&self) -> Vec<Vec<f64>> {
        let exp_of = |v: &[f64]| v.iter().map(|x| x.exp()).collect::<Vec<_>>();
        vec![
            exp_of(&[0.0, 5.0, 10.0, 15.0, 20.0, 25.0]),
            exp_of(&[0.0, 5.0, 10.0, 15.0, 20.0, 25.0]),
            exp_of(&[-1.0, -0.5, 0.0, 0.5, 1.0]),
            vec![0.0, 0.5, 1.0, 1.5, 2.0],
            vec![0.0, 0.5, 1.0, 1.5, 2.0],
        ]
    }

    fn grid_quick(&self) -> Vec<Vec<f64>> {
        let exp_of = |v: &[f64]| v.iter().map(|x| x.exp()).collect::<Vec<_>>();
        vec![
            exp_of(&[5.0, 10.0]),
            exp_of(&[5.0, 10.0]),
            exp_of(&[0.0, 0.5]),
            vec![0.5],
            vec![0.5],
        ]
    }

    fn tokens_term(&self, p: &[f64], x: &Features) -> Option<TokensTerm> {
        Some(TokensTerm { asymptote: p[2] + p[0] * pow_neg(x.ln_n, p[3]), coef: p[1], beta: p[4] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::law::Inputs;
    use crate::law::testing::check_gradient;

    const EPOCH: [f64; 5] = [477.84, 2143.86, 1.8172, 0.3473, 0.3672];

    fn dense(n: f64, d: f64) -> Features {
        Features::new(&Inputs { n0: n, rho: 0.0, l0: None, tokens: d })
    }

    #[test]
    fn hand_computed_point() {
        // 1.8172 + 477.84/(3e8)^0.3473 + 2143.86/(6e9)^0.3672, computed independently in Python.
        assert!((Chinchilla.value(&EPOCH, &dense(3e8, 6e9)) - 2.911_049_136_381_906).abs() < 1e-12);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_gradient(&Chinchilla, &EPOCH, &dense(3e8, 6e9), 1e-6);
        check_gradient(&Chinchilla, &[406.4, 410.7, 1.69, 0.34, 0.28], &dense(7e10, 1.4e12), 1e-6);
    }

    #[test]
    fn full_grid_is_epochs_4500_starts() {
        let n: usize = Chinchilla.grid_full().iter().map(Vec::len).product();
        assert_eq!(n, 4500);
    }
}
