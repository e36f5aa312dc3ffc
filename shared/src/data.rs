//! Loss curves: the data every fit, plot and store in p2law works on.
//!
//! A [`Curve`] is one post-training run: its model metadata and its checkpoints `(tokens, loss)`.
//! Metadata is optional at this level (a raw log rarely carries `N0`); each law says what it needs
//! and the fitter refuses a curve that lacks it, naming the run and the field.

use crate::law::{Features, Inputs};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One checkpoint of a curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CurvePoint {
    /// Post-training tokens `D` seen at this checkpoint.
    pub tokens: f64,
    /// Loss in nats/token on the evaluation split.
    pub loss: f64,
}

/// One run: metadata plus its checkpoints, in the order logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub run: String,
    /// Parameters before pruning, embeddings included.
    pub n0: Option<f64>,
    /// Fraction of the parameters removed (`0` for a dense model).
    pub rho: Option<f64>,
    /// Loss of the unpruned model, nats/token.
    pub l0: Option<f64>,
    /// Pruning method (`depth`, `width`, `2:4`, ...), free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Which loss this is: `train`, `eval`, or an eval set's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    pub points: Vec<CurvePoint>,
}

impl Curve {
    /// A curve with no metadata.
    pub fn new(run: impl Into<String>) -> Self {
        Self { run: run.into(), n0: None, rho: None, l0: None, method: None, family: None, split: None, points: Vec::new() }
    }

    /// Parameters after pruning, when `N0` and `rho` are known.
    pub fn n(&self) -> Option<f64> {
        Some(self.n0? * (1.0 - self.rho?))
    }

    /// Model inputs of one checkpoint (`rho` defaults to 0, a dense model).
    pub fn inputs(&self, tokens: f64) -> Option<Inputs> {
        Some(Inputs { n0: self.n0?, rho: self.rho.unwrap_or(0.0), l0: self.l0, tokens })
    }

    /// Features of every checkpoint, or `None` when `N0` is unknown.
    pub fn features(&self) -> Option<Vec<Features>> {
        self.points.iter().map(|p| self.inputs(p.tokens).map(|x| Features::new(&x))).collect()
    }

    /// Drops checkpoints before `tokens` (warm-up exclusion).
    pub fn skip_tokens(&mut self, tokens: f64) -> usize {
        let before = self.points.len();
        self.points.retain(|p| p.tokens >= tokens);
        before - self.points.len()
    }

    /// Resumed-run de-duplication: when the token count goes back (a run resumed from an earlier
    /// checkpoint), the later log supersedes every earlier point at or past the resume point.
    /// Returns how many points were dropped. The result is sorted by tokens.
    pub fn dedup_resumed(&mut self) -> usize {
        let before = self.points.len();
        let mut kept: Vec<CurvePoint> = Vec::with_capacity(before);
        for p in &self.points {
            while kept.last().is_some_and(|q| q.tokens >= p.tokens) {
                kept.pop();
            }
            kept.push(*p);
        }
        self.points = kept;
        before - self.points.len()
    }

    /// Exponential moving average of the loss with weight `alpha` on the newest point (0 < alpha <= 1),
    /// the smoothing W&B applies to noisy training curves.
    pub fn smooth_ema(&mut self, alpha: f64) {
        let mut acc: Option<f64> = None;
        for p in &mut self.points {
            let v = match acc {
                None => p.loss,
                Some(a) => alpha * p.loss + (1.0 - alpha) * a,
            };
            acc = Some(v);
            p.loss = v;
        }
    }
}

/// Where in an input an error sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Location {
    /// 1-based line of a text file.
    Line(u64),
    /// 0-based record of a structured file (e.g. an entry of `log_history`).
    Record(u64),
    /// The file as a whole.
    File,
}

/// A bad input: names the file, the line or record, and the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct InputError {
    pub file: String,
    pub location: Location,
    pub field: Option<String>,
    pub message: String,
}

impl InputError {
    pub fn new(file: &str, location: Location, field: Option<&str>, message: impl Into<String>) -> Self {
        Self { file: file.to_string(), location, field: field.map(str::to_string), message: message.into() }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        match self.location {
            Location::Line(l) => write!(f, ", line {l}")?,
            Location::Record(r) => write!(f, ", record {r}")?,
            Location::File => {}
        }
        if let Some(field) = &self.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(points: &[(f64, f64)]) -> Curve {
        let mut c = Curve::new("r");
        c.points = points.iter().map(|&(tokens, loss)| CurvePoint { tokens, loss }).collect();
        c
    }

    #[test]
    fn resumed_run_supersedes_the_overlap() {
        // Logged 1,2,3,4 then resumed from 2: the second 3 and 4 replace the first.
        let mut c = curve(&[(1.0, 5.0), (2.0, 4.0), (3.0, 3.9), (4.0, 3.8), (3.0, 3.5), (4.0, 3.4), (5.0, 3.3)]);
        assert_eq!(c.dedup_resumed(), 2);
        let t: Vec<f64> = c.points.iter().map(|p| p.tokens).collect();
        let l: Vec<f64> = c.points.iter().map(|p| p.loss).collect();
        assert_eq!(t, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(l, vec![5.0, 4.0, 3.5, 3.4, 3.3]);
    }

    #[test]
    fn warmup_exclusion_and_smoothing() {
        let mut c = curve(&[(1.0, 4.0), (2.0, 2.0), (3.0, 3.0)]);
        assert_eq!(c.skip_tokens(2.0), 1);
        c.smooth_ema(0.5);
        assert_eq!(c.points[1].loss, 2.5);
    }

    #[test]
    fn error_names_file_line_and_field() {
        let e = InputError::new("a.csv", Location::Line(7), Some("tokens"), "must be > 0");
        assert_eq!(e.to_string(), "a.csv, line 7, field `tokens`: must be > 0");
    }
}
