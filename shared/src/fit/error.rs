//! Why a fit cannot run, naming the run, checkpoint, field or option at fault.

use crate::law::LawForm;

/// Why a fit cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("no data: give at least one curve with checkpoints")]
    EmptyData,
    #[error("run `{run}`: field `{field}` is missing; law `{law}` needs it")]
    MissingField { run: String, field: &'static str, law: LawForm },
    #[error("run `{run}`: field `rho` must be in (0, 1) for law `{law}` (a pruned model), got {rho}")]
    RhoOutOfRange { run: String, rho: f64, law: LawForm },
    #[error("run `{run}`, checkpoint {index}: {field} must be a positive finite number, got {value}")]
    InvalidPoint { run: String, index: usize, field: &'static str, value: f64 },
    #[error("{points} checkpoints cannot determine the {params} coefficients of law `{law}`")]
    TooFewPoints { points: usize, params: usize, law: LawForm },
    #[error("option `{option}`: {message}")]
    InvalidOption { option: &'static str, message: String },
    #[error("no start converged to a finite objective")]
    NoConvergence,
    #[error("holdout `{protocol}`: {message}")]
    Holdout { protocol: String, message: String },
    #[error("the fit was cancelled")]
    Cancelled,
}
