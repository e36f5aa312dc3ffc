//! What a fit is asked to do: the objective, the starts, the options that hold them, and the
//! flag that cancels a fit in flight.

use super::FitError;
use crate::law::LawForm;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The fitting objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Objective {
    /// Sum of squared loss residuals, Levenberg–Marquardt.
    #[default]
    Lsq,
    /// Sum of Huber(delta) of log-loss residuals, L-BFGS.
    HuberLog,
}

impl FromStr for Objective {
    type Err = FitError;
    fn from_str(s: &str) -> Result<Self, FitError> {
        match s {
            "lsq" => Ok(Objective::Lsq),
            "huber-log" => Ok(Objective::HuberLog),
            _ => Err(FitError::InvalidOption { option: "objective", message: format!("`{s}`: expected lsq or huber-log") }),
        }
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Objective::Lsq => "lsq",
            Objective::HuberLog => "huber-log",
        })
    }
}

/// Which initial points to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Starts {
    /// The form's small grid.
    Quick,
    /// The form's full grid.
    Full,
    /// This many points drawn (seeded, without replacement) from the full grid.
    Count(usize),
}

impl FromStr for Starts {
    type Err = FitError;
    fn from_str(s: &str) -> Result<Self, FitError> {
        match s {
            "quick" => Ok(Starts::Quick),
            "full" => Ok(Starts::Full),
            n => match n.parse::<usize>() {
                Ok(k) if k > 0 => Ok(Starts::Count(k)),
                _ => Err(FitError::InvalidOption { option: "starts", message: format!("`{s}`: expected quick, full or a positive count") }),
            },
        }
    }
}

/// Fit options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    pub law: LawForm,
    pub objective: Objective,
    pub starts: Starts,
    /// Huber threshold on log-loss residuals.
    pub huber_delta: f64,
    /// Seed for drawing starts (and for the bootstrap).
    pub seed: u64,
    /// Iteration cap per start.
    pub max_iters: u64,
    /// Worker threads for the starts on native targets; 0 takes every core.
    #[serde(default)]
    pub threads: usize,
    /// Stops the fit at the next start or resample once set (a server's client that left).
    #[serde(skip)]
    pub cancel: Cancel,
}

impl FitOptions {
    pub fn new(law: LawForm) -> Self {
        Self { law, objective: Objective::Lsq, starts: Starts::Quick, huber_delta: 1e-3, seed: 0, max_iters: 1000, threads: 0, cancel: Cancel::default() }
    }
}

/// A flag that stops a running fit, shared between its caller and its threads. It is no part of
/// what the fit computes: any two compare equal.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl PartialEq for Cancel {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
