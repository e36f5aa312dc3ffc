//! Law forms: one file per form, registered in [`LawForm`].
//!
//! Every form predicts a loss from one [`Features`] row (the inputs of a checkpoint with their
//! logarithms computed once) and a coefficient vector, gives the analytic gradient with respect to
//! those coefficients, names them, says which are positive constants (fitted as `exp(.)` under the
//! Huber-on-log objective) and supplies initial grids for multi-start fitting.

mod chinchilla;
mod p2;
mod p2_additive;
mod p2_no_delta;
mod p2_no_l0;
mod p2_reduced;
mod sparsity;

pub use chinchilla::Chinchilla;
pub use p2::P2;
pub use p2_additive::P2Additive;
pub use p2_no_delta::P2NoDelta;
pub use p2_no_l0::P2NoL0;
pub use p2_reduced::P2Reduced;
pub use sparsity::Sparsity;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The inputs of one prediction, in p2law's conventions.
///
/// `n0`: parameters before pruning (embeddings included); `rho`: fraction of them removed
/// (`0` for a dense model); `l0`: loss of the unpruned model in nats/token; `tokens`: post-training
/// tokens `D`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Inputs {
    pub n0: f64,
    pub rho: f64,
    pub l0: Option<f64>,
    pub tokens: f64,
}

impl Inputs {
    /// Inputs from the size after pruning `n` instead of `rho`: `rho = 1 - n / n0`.
    pub fn from_sizes(n0: f64, n: f64, l0: Option<f64>, tokens: f64) -> Self {
        Self { n0, rho: 1.0 - n / n0, l0, tokens }
    }

    /// Parameters after pruning, `N = N0 (1 - rho)`.
    pub fn n(&self) -> f64 {
        self.n0 * (1.0 - self.rho)
    }
}

/// One row of inputs with the logarithms every law needs, computed once per data point rather
/// than once per objective evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    pub n0: f64,
    pub ln_n0: f64,
    pub rho: f64,
    pub ln_rho: f64,
    /// `ln(1 - rho)`
    pub ln_keep: f64,
    /// `ln N`, `N = N0 (1 - rho)`
    pub ln_n: f64,
    /// `L0`, or NaN when the data has none (only forms that do not need it are fitted then).
    pub l0: f64,
    pub tokens: f64,
    pub ln_d: f64,
}

impl Features {
    pub fn new(x: &Inputs) -> Self {
        Self {
            n0: x.n0,
            ln_n0: x.n0.ln(),
            rho: x.rho,
            ln_rho: x.rho.ln(),
            ln_keep: (-x.rho).ln_1p(),
            ln_n: x.n().ln(),
            l0: x.l0.unwrap_or(f64::NAN),
            tokens: x.tokens,
            ln_d: x.tokens.ln(),
        }
    }

    /// The same row at another token count.
    pub fn at_tokens(mut self, tokens: f64) -> Self {
        self.tokens = tokens;
        self.ln_d = tokens.ln();
        self
    }
}

/// What a form needs from the data beyond `N0` and `D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// `L0`, the loss before pruning.
    pub l0: bool,
    /// `0 < rho < 1` (a pruned model); otherwise `0 <= rho < 1` is accepted.
    pub pruned: bool,
}

/// The token dependence of a form at fixed model inputs: `L(D) = asymptote + coef * D^-beta`.
/// Every budget rule has a closed form on this shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokensTerm {
    pub asymptote: f64,
    pub coef: f64,
    pub beta: f64,
}

/// One law form.
pub trait Law: Sync {
    /// Coefficient names, in the order of the coefficient vector.
    fn params(&self) -> &'static [&'static str];
    /// Which coefficients are positive constants (fitted as `exp(.)` under Huber-on-log).
    fn positive(&self) -> &'static [bool];
    fn needs(&self) -> Needs;
    fn value(&self, p: &[f64], x: &Features) -> f64;
    /// Value, with `grad[i] = dL/dp[i]` written into `grad` (same length as `p`).
    fn value_grad(&self, p: &[f64], x: &Features, grad: &mut [f64]) -> f64;
    /// Values and gradients at many rows: `values[i]`, and `grads[i * k..(i + 1) * k]` with `k`
    /// coefficients. The fitters call this once per objective evaluation so that the per-row
    /// call is static and inlined, not a virtual call per data point.
    fn values_grads(&self, p: &[f64], xs: &[Features], values: &mut [f64], grads: &mut [f64]) {
        let k = p.len();
        for ((x, v), g) in xs.iter().zip(values.iter_mut()).zip(grads.chunks_exact_mut(k)) {
            *v = self.value_grad(p, x, g);
        }
    }
    /// Candidate values per coefficient for the full multi-start grid (their product).
    fn grid_full(&self) -> Vec<Vec<f64>>;
    /// A smaller grid for quick fits.
    fn grid_quick(&self) -> Vec<Vec<f64>>;
    /// The closed-form token dependence at fixed model inputs, when the form has one.
    fn tokens_term(&self, p: &[f64], x: &Features) -> Option<TokensTerm>;
    /// Which coefficients multiply a term of the form linearly (`D_C` in `D_C / D^beta`). Their
    /// value depends on the units of the inputs, through the exponents beside them: `D_C` is the
    /// term at one token, `N0 = 1`, `rho = 1`, far outside any data. Whether the data pin one
    /// down is judged by the term it scales at the data's centre ([`centred`]). Default: the
    /// positive constants.
    fn scales(&self) -> &'static [bool] {
        self.positive()
    }
}

/// The coefficients as the identification tests judge them: each [`Law::scales`] coefficient
/// replaced by the value of the term it multiplies at `centre` (`p_i · ∂L/∂p_i`, in nats), the
/// others (exponents, token scales) as they are. Unlike the raw `D_C`, whose bootstrap interval
/// widens with the unit `N0` is counted in (it moves with `delta` by `N0^delta`), these do not
/// depend on units: a term the data fix at their centre is identified however it is written.
pub fn centred(law: &dyn Law, p: &[f64], centre: &Features) -> Vec<f64> {
    let mut g = vec![0.0; p.len()];
    law.value_grad(p, centre, &mut g);
    law.scales().iter().zip(p.iter().zip(&g)).map(|(&s, (&v, &d))| if s { v * d } else { v }).collect()
}

impl Inputs {
    /// The centre of a data set, where [`centred`] judges a fit's terms: the geometric means of
    /// `N0`, of `rho` over pruned rows (`0` when none is pruned) and of `D`, and the mean `L0`.
    pub fn centre(rows: &[Features]) -> Option<Self> {
        let gmean = |v: Vec<f64>| (!v.is_empty()).then(|| (v.iter().sum::<f64>() / v.len() as f64).exp());
        let n0 = gmean(rows.iter().map(|x| x.ln_n0).filter(|v| v.is_finite()).collect())?;
        let tokens = gmean(rows.iter().map(|x| x.ln_d).filter(|v| v.is_finite()).collect())?;
        let rho = gmean(rows.iter().filter(|x| x.rho > 0.0).map(|x| x.ln_rho).filter(|v| v.is_finite()).collect()).unwrap_or(0.0);
        let l0: Vec<f64> = rows.iter().map(|x| x.l0).filter(|v| v.is_finite()).collect();
        let l0 = (!l0.is_empty()).then(|| l0.iter().sum::<f64>() / l0.len() as f64);
        Some(Inputs { n0, rho, l0, tokens })
    }
}

/// The registered law forms. Adding a form is one file plus one variant here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LawForm {
    /// The P² law (form "L1") of Chen et al., arXiv 2411.10272 (ACL 2025).
    P2,
    /// Our ablation: P² without the `N0^-delta` factor.
    P2NoDelta,
    /// Our ablation: P² without the `L0` anchor.
    P2NoL0,
    /// Our ablation: additive terms `L0 + N_C/N0^a + D_C/D^b + R_C rho^g + E`.
    P2Additive,
    /// Ours: P² with `N_C = E = 0`, the terms a narrow span of parents identifies.
    P2Reduced,
    /// Hoffmann et al. 2022: `E + A/N^alpha + B/D^beta`.
    Chinchilla,
    /// Frantar et al. 2023 (arXiv 2309.08520) sparsity scaling law.
    Sparsity,
}

impl LawForm {
    pub const ALL: [LawForm; 7] = [
        LawForm::P2,
        LawForm::P2NoDelta,
        LawForm::P2NoL0,
        LawForm::P2Additive,
        LawForm::P2Reduced,
        LawForm::Chinchilla,
        LawForm::Sparsity,
    ];

    pub fn law(self) -> &'static dyn Law {
        match self {
            LawForm::P2 => &P2,
            LawForm::P2NoDelta => &P2NoDelta,
            LawForm::P2NoL0 => &P2NoL0,
            LawForm::P2Additive => &P2Additive,
            LawForm::P2Reduced => &P2Reduced,
            LawForm::Chinchilla => &Chinchilla,
            LawForm::Sparsity => &Sparsity,
        }
    }

    /// The command-line and JSON name.
    pub fn name(self) -> &'static str {
        match self {
            LawForm::P2 => "p2",
            LawForm::P2NoDelta => "p2-no-delta",
            LawForm::P2NoL0 => "p2-no-l0",
            LawForm::P2Additive => "p2-additive",
            LawForm::P2Reduced => "p2-reduced",
            LawForm::Chinchilla => "chinchilla",
            LawForm::Sparsity => "sparsity",
        }
    }

    /// A one-line formula with its attribution; ablations are labelled as p2law's own.
    pub fn describe(self) -> &'static str {
        match self {
            LawForm::P2 => {
                "P² law (Chen et al. 2024, arXiv 2411.10272): L0 + (1/rho)^gamma (1/N0)^delta (N_C/N0^alpha + D_C/D^beta + E)"
            }
            LawForm::P2NoDelta => {
                "p2law ablation, not from the paper: L0 + (1/rho)^gamma (N_C/N0^alpha + D_C/D^beta + E)"
            }
            LawForm::P2NoL0 => {
                "p2law ablation, not from the paper: (1/rho)^gamma (1/N0)^delta (N_C/N0^alpha + D_C/D^beta + E)"
            }
            LawForm::P2Additive => {
                "p2law ablation, not from the paper: L0 + N_C/N0^alpha + D_C/D^beta + R_C rho^gamma + E"
            }
            LawForm::P2Reduced => {
                "P² law reduced by p2law, not from the paper: L0 + (1/rho)^gamma (1/N0)^delta D_C/D^beta (N_C = E = 0: healing tends to L0)"
            }
            LawForm::Chinchilla => "Chinchilla (Hoffmann et al. 2022): E + A/N^alpha + B/D^beta",
            LawForm::Sparsity => {
                "Sparsity law (Frantar et al. 2023, arXiv 2309.08520): (a_S (1-S)^b_S + c_S) (1/N)^b_N + (a_D/D)^b_D + c"
            }
        }
    }
}

impl fmt::Display for LawForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Inputs a form cannot be evaluated at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct InputsError {
    pub field: &'static str,
    pub message: String,
}

impl LawForm {
    /// Checks that `x` is inside the domain of this form (the `tokens` field included when
    /// `check_tokens`).
    pub fn check(self, x: &Inputs, check_tokens: bool) -> Result<(), InputsError> {
        let err = |field, message: String| Err(InputsError { field, message });
        let needs = self.law().needs();
        if !(x.n0.is_finite() && x.n0 > 0.0) {
            return err("n0", format!("must be a positive parameter count, got {}", x.n0));
        }
        if needs.pruned && !(x.rho > 0.0 && x.rho < 1.0) {
            return err("rho", format!("must be in (0, 1) for law `{self}`, got {}", x.rho));
        }
        if !needs.pruned && !(0.0..1.0).contains(&x.rho) {
            return err("rho", format!("must be in [0, 1), got {}", x.rho));
        }
        match x.l0 {
            None if needs.l0 => return err("l0", format!("law `{self}` needs the loss before pruning")),
            Some(l0) if !(l0.is_finite() && l0 > 0.0) => return err("l0", format!("must be a positive loss, got {l0}")),
            _ => {}
        }
        if check_tokens && !(x.tokens.is_finite() && x.tokens > 0.0) {
            return err("tokens", format!("must be > 0, got {}", x.tokens));
        }
        Ok(())
    }
}

/// An unknown law name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown law `{name}`; expected one of p2, p2-no-delta, p2-no-l0, p2-additive, p2-reduced, chinchilla, sparsity")]
pub struct UnknownLaw {
    pub name: String,
}

impl FromStr for LawForm {
    type Err = UnknownLaw;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LawForm::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownLaw { name: s.to_string() })
    }
}

/// `x^-e` as `exp(-e ln x)` with `ln x` precomputed.
#[inline]
pub(crate) fn pow_neg(ln_x: f64, e: f64) -> f64 {
    (-e * ln_x).exp()
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Central finite differences of `value` against `value_grad`, relative tolerance `tol`.
    pub fn check_gradient(law: &dyn Law, p: &[f64], x: &Features, tol: f64) {
        let mut g = vec![0.0; p.len()];
        let v = law.value_grad(p, x, &mut g);
        assert!((v - law.value(p, x)).abs() <= 1e-12 * v.abs().max(1.0));
        for i in 0..p.len() {
            let h = 1e-5 * p[i].abs().max(1e-2);
            let mut hi = p.to_vec();
            let mut lo = p.to_vec();
            hi[i] += h;
            lo[i] -= h;
            let fd = (law.value(&hi, x) - law.value(&lo, x)) / (2.0 * h);
            let scale = fd.abs().max(g[i].abs()).max(1e-8);
            assert!(
                (fd - g[i]).abs() < tol * scale + 1e-9,
                "d/d{}: analytic {} vs finite difference {}",
                law.params()[i],
                g[i],
                fd
            );
        }
    }

    pub fn features(n0: f64, rho: f64, l0: f64, tokens: f64) -> Features {
        Features::new(&Inputs { n0, rho, l0: Some(l0), tokens })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for f in LawForm::ALL {
            assert_eq!(f.name().parse::<LawForm>(), Ok(f));
            assert_eq!(f.law().params().len(), f.law().positive().len());
            assert_eq!(f.law().grid_full().len(), f.law().params().len());
            assert_eq!(f.law().grid_quick().len(), f.law().params().len());
        }
        let e = "p3".parse::<LawForm>().unwrap_err();
        assert!(e.to_string().contains("unknown law `p3`"));
    }

    #[test]
    fn sizes_convert_to_rho() {
        let x = Inputs::from_sizes(1e9, 7.5e8, Some(2.0), 1e9);
        assert!((x.rho - 0.25).abs() < 1e-15);
        assert!((x.n() - 7.5e8).abs() < 1e-3);
    }

    #[test]
    fn tokens_term_reproduces_value() {
        // For every form, asymptote + coef * D^-beta must equal the prediction.
        let x = testing::features(1.2e9, 0.3, 2.4, 5e8);
        for f in LawForm::ALL {
            let law = f.law();
            let p: Vec<f64> = law.grid_full().iter().map(|g| g[g.len() / 2]).collect();
            let t = law.tokens_term(&p, &x).expect("every registered form has a tokens term");
            let v = law.value(&p, &x);
            let w = t.asymptote + t.coef * x.tokens.powf(-t.beta);
            assert!((v - w).abs() < 1e-9 * v.abs().max(1.0), "{f}: {v} vs {w}");
        }
    }
}
