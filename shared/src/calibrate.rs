//! The calibration lab's vocabulary, shared by the service, the CLI and the browser: the built-in
//! parent family, sweep requests and presets, and the events a running job streams.

use crate::data::CurvePoint;
use crate::models::DecoderShape;
use serde::{Deserialize, Serialize};

/// A built-in parent: a byte-level Llama-style decoder and the tokens p2law pretrains it on
/// (tens of tokens per parameter: enough that post-training budgets, a few per cent of it, heal
/// a pruned model rather than keep training the parent).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Parent {
    pub name: &'static str,
    pub shape: DecoderShape,
    pub pretrain_tokens: u64,
    pub batch: usize,
    pub seq_len: usize,
    pub peak_lr: f64,
}

/// A byte-level decoder with tied embeddings and no attention bias.
const fn shape(h: u64, i: u64, l: u64, heads: u64, kv: u64, hd: u64) -> DecoderShape {
    crate::models::shape(256, h, i, l, heads, kv, hd, true, false)
}

/// The family, smallest first: 58 thousand to 8.5 million parameters. Every width is a multiple
/// of 8, so N:M patterns with `m` up to 8 fit.
pub const FAMILY: [Parent; 7] = [
    Parent { name: "p2-nano", shape: shape(32, 96, 4, 4, 2, 8), pretrain_tokens: 3_000_000, batch: 16, seq_len: 64, peak_lr: 3e-3 },
    Parent { name: "p2-micro", shape: shape(48, 128, 4, 4, 2, 12), pretrain_tokens: 5_000_000, batch: 16, seq_len: 64, peak_lr: 3e-3 },
    Parent { name: "p2-xs", shape: shape(64, 192, 4, 4, 2, 16), pretrain_tokens: 8_000_000, batch: 16, seq_len: 128, peak_lr: 2e-3 },
    Parent { name: "p2-s", shape: shape(96, 256, 6, 6, 2, 16), pretrain_tokens: 20_000_000, batch: 16, seq_len: 128, peak_lr: 2e-3 },
    Parent { name: "p2-m", shape: shape(128, 352, 8, 8, 4, 16), pretrain_tokens: 50_000_000, batch: 16, seq_len: 128, peak_lr: 1.5e-3 },
    Parent { name: "p2-l", shape: shape(192, 512, 10, 12, 4, 16), pretrain_tokens: 150_000_000, batch: 32, seq_len: 128, peak_lr: 1e-3 },
    Parent { name: "p2-xl", shape: shape(256, 704, 12, 16, 4, 16), pretrain_tokens: 400_000_000, batch: 32, seq_len: 256, peak_lr: 1e-3 },
];

/// A name or setting of a sweep that p2law does not know, naming what it got and what it takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("unknown parent `{name}`; built-in parents are {known}")]
    UnknownParent { name: String, known: String },
    #[error("`{0}`: a Hugging Face parent is `hf:` and a directory name in the models directory (letters, digits, `.`, `_`, `-`)")]
    HfName(String),
    #[error("method `{0}`: expected depth, width or sparse")]
    Method(String),
    #[error("device `{0}`: expected auto, wgpu or cpu")]
    Device(String),
    #[error("rate `{0}`: expected a number in [{MIN_RATE}, 1)")]
    Rate(String),
    #[error("pattern `{0}`: expected N:M with 0 < N < M <= 64, like 2:4")]
    Pattern(String),
    #[error("unknown preset `{0}`; presets are smoke, mini")]
    Preset(String),
}

/// A parent by name: the built-in family, or the P² study's ([`crate::study::STUDY_FAMILY`]).
pub fn parent(name: &str) -> Result<Parent, SettingError> {
    FAMILY.iter().chain(&crate::study::STUDY_FAMILY).find(|p| p.name == name).copied().ok_or_else(|| {
        let names: Vec<&str> = FAMILY.iter().chain(&crate::study::STUDY_FAMILY).map(|p| p.name).collect();
        SettingError::UnknownParent { name: name.to_string(), known: names.join(", ") }
    })
}

/// `POST /api/calibrations`: a sweep of parents × methods × rates at one post-training budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CalibrationRequest {
    /// Built-in parent names (see `FAMILY`), or `hf:NAME` for a Hugging Face checkpoint
    /// directory `NAME` in the server's models directory (`<data-dir>/models`).
    pub parents: Vec<String>,
    pub methods: Vec<PruneMethod>,
    /// Target fractions of total parameters, for `depth` and `width`.
    #[serde(default)]
    pub rates: Vec<f64>,
    /// N:M patterns for `sparse` (default `["2:4"]`).
    #[serde(default = "two_four")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub patterns: Vec<NmPattern>,
    /// Post-training tokens per pruned model.
    pub tokens: u64,
    /// Pretraining tokens as a multiple of each parent's recipe.
    #[serde(default = "unit")]
    pub pretrain_scale: f64,
    #[serde(default)]
    pub device: DeviceChoice,
    /// A corpus in the server's corpus directory (default: the one set up, `shakespeare`).
    #[serde(default)]
    pub corpus: Option<String>,
    #[serde(default)]
    pub seed: u64,
    /// Peak post-training learning rate, overriding the parent's recipe (built-in parents: half
    /// their pretraining peak; Hugging Face parents: [`HF_PEAK_LR`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Write each healed Hugging Face model back as a Hugging Face directory (server:
    /// `<data-dir>/exports/job-<id>/`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub export: bool,
}

/// Post-training of a Hugging Face parent: peak learning rate (continued pretraining of a
/// released model, not training from scratch), batch and window.
pub const HF_PEAK_LR: f64 = 1e-4;
pub const HF_BATCH: usize = 8;
pub const HF_SEQ_LEN: usize = 128;

/// The directory name of a `hf:NAME` parent, checked to be a plain name; `None` for other names.
pub fn hf_parent(name: &str) -> Option<Result<&str, SettingError>> {
    let dir = name.strip_prefix("hf:")?;
    let ok = !dir.is_empty() && !dir.starts_with('.') && dir.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    Some(if ok { Ok(dir) } else { Err(SettingError::HfName(name.to_string())) })
}

fn two_four() -> Vec<NmPattern> {
    vec![NmPattern::TWO_FOUR]
}
fn unit() -> f64 {
    1.0
}

/// A pruning method: what a sweep removes from its parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum PruneMethod {
    /// Whole decoder layers, lowest block influence first.
    Depth,
    /// Key/value groups with their query heads, and MLP channels.
    Width,
    /// N of every M weights of each linear layer's inputs kept (Wanda scores), dense with zeros.
    Sparse,
}

impl PruneMethod {
    pub const ALL: [PruneMethod; 3] = [PruneMethod::Depth, PruneMethod::Width, PruneMethod::Sparse];

    pub fn as_str(self) -> &'static str {
        match self {
            PruneMethod::Depth => "depth",
            PruneMethod::Width => "width",
            PruneMethod::Sparse => "sparse",
        }
    }
}

impl std::fmt::Display for PruneMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for PruneMethod {
    type Err = SettingError;
    fn from_str(s: &str) -> Result<Self, SettingError> {
        PruneMethod::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| SettingError::Method(s.to_string()))
    }
}

/// An N:M pattern: `n` of every `m` consecutive inputs kept, `0 < n < m <= 64`. On the wire and
/// in run names, the string `"n:m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NmPattern {
    pub n: usize,
    pub m: usize,
}

impl NmPattern {
    pub const TWO_FOUR: NmPattern = NmPattern { n: 2, m: 4 };

    /// The fraction of weights removed, `1 - n/m`.
    pub fn rate(self) -> f64 {
        1.0 - self.n as f64 / self.m as f64
    }
}

impl std::fmt::Display for NmPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.n, self.m)
    }
}

impl std::str::FromStr for NmPattern {
    type Err = SettingError;
    fn from_str(s: &str) -> Result<Self, SettingError> {
        parse_pattern(s).map(|(n, m)| NmPattern { n, m })
    }
}

impl TryFrom<String> for NmPattern {
    type Error = SettingError;
    fn try_from(s: String) -> Result<Self, SettingError> {
        s.parse()
    }
}

impl From<NmPattern> for String {
    fn from(p: NmPattern) -> String {
        p.to_string()
    }
}

/// Where a job trains: `cpu` (burn's flex backend), `wgpu` (a GPU, or Mesa's lavapipe on a
/// CPU-only machine), or `auto` (a real GPU adapter when one exists, the CPU otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DeviceChoice {
    #[default]
    Auto,
    Wgpu,
    Cpu,
}

impl DeviceChoice {
    pub const ALL: [DeviceChoice; 3] = [DeviceChoice::Auto, DeviceChoice::Wgpu, DeviceChoice::Cpu];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Wgpu => "wgpu",
            DeviceChoice::Cpu => "cpu",
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = SettingError;
    fn from_str(s: &str) -> Result<Self, SettingError> {
        DeviceChoice::ALL.into_iter().find(|d| d.as_str() == s).ok_or_else(|| SettingError::Device(s.to_string()))
    }
}

/// What one unit removes: a method with its target rate, or a pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pruning {
    /// Depth pruning to a target fraction of the parent's parameters.
    Depth(f64),
    /// Width pruning to a target fraction of the parent's parameters.
    Width(f64),
    Sparse(NmPattern),
}

impl Pruning {
    pub fn method(self) -> PruneMethod {
        match self {
            Pruning::Depth(_) => PruneMethod::Depth,
            Pruning::Width(_) => PruneMethod::Width,
            Pruning::Sparse(_) => PruneMethod::Sparse,
        }
    }

    /// The rate (`0.25`, as Rust prints the `f64`) or the pattern (`2:4`): the setting part of
    /// run names, which resumed jobs match on.
    pub fn setting(self) -> String {
        match self {
            Pruning::Depth(r) | Pruning::Width(r) => format!("{r}"),
            Pruning::Sparse(p) => p.to_string(),
        }
    }

    /// The `method` column of a curve: `depth`, `width`, or the N:M pattern.
    pub fn label(self) -> String {
        match self {
            Pruning::Sparse(p) => p.to_string(),
            other => other.method().to_string(),
        }
    }

    /// Parses a method and its setting (`depth` and `0.25`, `sparse` and `2:4`).
    pub fn parse(method: PruneMethod, setting: &str) -> Result<Self, SettingError> {
        let rate = || setting.trim().parse::<f64>().ok().filter(|r| (MIN_RATE..1.0).contains(r)).ok_or_else(|| SettingError::Rate(setting.to_string()));
        Ok(match method {
            PruneMethod::Depth => Pruning::Depth(rate()?),
            PruneMethod::Width => Pruning::Width(rate()?),
            PruneMethod::Sparse => Pruning::Sparse(setting.parse()?),
        })
    }
}

/// One pruned model of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub parent: String,
    pub pruning: Pruning,
}

impl Unit {
    /// `parent/method/setting`, the unit's name in runs and events.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.parent, self.pruning.method(), self.pruning.setting())
    }
}

/// Parses `"n:m"`.
pub fn parse_pattern(s: &str) -> Result<(usize, usize), SettingError> {
    let bad = || SettingError::Pattern(s.to_string());
    let (n, m) = s.split_once(':').ok_or_else(bad)?;
    let (n, m): (usize, usize) = (n.trim().parse().map_err(|_| bad())?, m.trim().parse().map_err(|_| bad())?);
    if n == 0 || n >= m || m > 64 {
        return Err(bad());
    }
    Ok((n, m))
}

/// The most parents, rates, N:M patterns and units one sweep may have.
pub const MAX_PARENTS: usize = 16;
pub const MAX_RATES: usize = 16;
pub const MAX_PATTERNS: usize = 8;
pub const MAX_UNITS: usize = 256;
/// The smallest pruning rate a sweep takes (below it nothing is removed from any parent).
pub const MIN_RATE: f64 = 1e-3;

/// The most tokens one request may ask to post-train per model.
pub const MAX_TOKENS: u64 = 10_000_000_000;

impl CalibrationRequest {
    /// A named preset: `smoke` (two tiny parents, one rate per method, few tokens; minutes on a
    /// laptop CPU) or `mini` (three parents, three methods, three rates).
    pub fn preset(name: &str) -> Result<Self, SettingError> {
        let base = |parents: &[&str], rates: Vec<f64>, patterns: &[(usize, usize)], tokens: u64, pretrain_scale: f64| CalibrationRequest {
            parents: parents.iter().map(|s| s.to_string()).collect(),
            methods: PruneMethod::ALL.to_vec(),
            rates,
            patterns: patterns.iter().map(|&(n, m)| NmPattern { n, m }).collect(),
            tokens,
            pretrain_scale,
            device: DeviceChoice::Auto,
            corpus: None,
            seed: 0,
            lr: None,
            export: false,
        };
        match name {
            "smoke" => Ok(base(&["p2-nano", "p2-micro"], vec![0.25], &[(2, 4)], 131_072, 0.06)),
            "mini" => Ok(base(&["p2-nano", "p2-micro", "p2-xs"], vec![0.15, 0.25, 0.35], &[(3, 4), (2, 4), (1, 4)], 131_072, 0.5)),
            other => Err(SettingError::Preset(other.to_string())),
        }
    }

    /// Checks every field and expands the sweep into its units, naming the first bad field:
    /// the caps ([`MAX_PARENTS`], [`MAX_RATES`], [`MAX_PATTERNS`], [`MAX_UNITS`]) before any
    /// expansion, so an absurd request costs nothing; no parent, method, rate or pattern twice; a
    /// rate is at least [`MIN_RATE`].
    pub fn units(&self) -> Result<Vec<Unit>, (&'static str, String)> {
        if self.parents.is_empty() {
            return Err(("parents", "at least one parent is needed".into()));
        }
        let cap = |field: &'static str, n: usize, max: usize| if n > max { Err((field, format!("at most {max}, got {n}"))) } else { Ok(()) };
        cap("parents", self.parents.len(), MAX_PARENTS)?;
        cap("methods", self.methods.len(), 3)?;
        cap("rates", self.rates.len(), MAX_RATES)?;
        cap("patterns", self.patterns.len(), MAX_PATTERNS)?;
        let per_parent = self.methods.iter().map(|m| if *m == PruneMethod::Sparse { self.patterns.len() } else { self.rates.len() }).sum::<usize>();
        cap("parents", self.parents.len() * per_parent, MAX_UNITS).map_err(|(f, m)| (f, format!("a sweep of {} units is too large: {m}", self.parents.len() * per_parent)))?;
        fn once<T: PartialEq + std::fmt::Display>(field: &'static str, v: &[T]) -> Result<(), (&'static str, String)> {
            match v.iter().enumerate().find(|(i, x)| v[..*i].contains(x)) {
                Some((_, x)) => Err((field, format!("`{x}` is listed twice"))),
                None => Ok(()),
            }
        }
        once("parents", &self.parents)?;
        once("methods", &self.methods)?;
        once("rates", &self.rates)?;
        once("patterns", &self.patterns)?;
        for p in &self.parents {
            match hf_parent(p) {
                Some(r) => r.map(|_| ()).map_err(|e| ("parents", e.to_string()))?,
                None => parent(p).map(|_| ()).map_err(|e| ("parents", e.to_string()))?,
            }
        }
        if let Some(lr) = self.lr
            && !(lr > 0.0 && lr < 1.0)
        {
            return Err(("lr", format!("in (0, 1), got {lr}")));
        }
        if self.methods.is_empty() {
            return Err(("methods", "at least one method is needed".into()));
        }
        if !(1..=MAX_TOKENS).contains(&self.tokens) {
            return Err(("tokens", format!("between 1 and {MAX_TOKENS}, got {}", self.tokens)));
        }
        if !(self.pretrain_scale > 0.0 && self.pretrain_scale <= 100.0) {
            return Err(("pretrain_scale", format!("in (0, 100], got {}", self.pretrain_scale)));
        }
        if let Some(c) = &self.corpus {
            if c.is_empty() || c.contains(['/', '\\']) || c.starts_with('.') {
                return Err(("corpus", format!("`{c}`: a name in the corpus directory, not a path")));
            }
        }
        let mut out = Vec::new();
        for p in &self.parents {
            for &m in &self.methods {
                let parent = p.clone();
                match m {
                    PruneMethod::Depth | PruneMethod::Width => {
                        if self.rates.is_empty() {
                            return Err(("rates", format!("method `{m}` needs at least one rate")));
                        }
                        for &r in &self.rates {
                            if !(r >= MIN_RATE && r < 1.0) {
                                return Err(("rates", format!("{r} is outside [{MIN_RATE}, 1)")));
                            }
                            let pruning = if m == PruneMethod::Depth { Pruning::Depth(r) } else { Pruning::Width(r) };
                            out.push(Unit { parent: parent.clone(), pruning });
                        }
                    }
                    PruneMethod::Sparse => {
                        if self.patterns.is_empty() {
                            return Err(("patterns", "method `sparse` needs at least one pattern".into()));
                        }
                        out.extend(self.patterns.iter().map(|&nm| Unit { parent: parent.clone(), pruning: Pruning::Sparse(nm) }));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Training FLOPs of the whole sweep, `6 N D` per run (pretraining included, counted once per
    /// parent; pruned models counted at their parent's size, an upper bound).
    pub fn flops(&self) -> f64 {
        self.flops_with(|_| None)
    }

    /// [`CalibrationRequest::flops`], counting a Hugging Face parent (`hf:NAME`, never
    /// pretrained) at the parameters `hf_parameters(NAME)` gives, when it gives them.
    pub fn flops_with(&self, hf_parameters: impl Fn(&str) -> Option<f64>) -> f64 {
        let Ok(units) = self.units() else { return 0.0 };
        let mut total = 0.0;
        for p in &self.parents {
            if let Ok(parent) = parent(p) {
                total += 6.0 * parent.shape.parameters() as f64 * parent.pretrain_tokens as f64 * self.pretrain_scale;
            }
        }
        for u in &units {
            let n = match (parent(&u.parent), hf_parent(&u.parent)) {
                (Ok(parent), _) => Some(parent.shape.parameters() as f64),
                (_, Some(Ok(dir))) => hf_parameters(dir),
                _ => None,
            };
            total += 6.0 * n.unwrap_or(0.0) * self.tokens as f64;
        }
        total
    }
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn finished(self) -> bool {
        matches!(self, JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }
}

/// What a job's event reports, in the order a job goes through them; the last three end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Stage {
    /// Accepted, waiting for the lab.
    Queued,
    /// Started, or resumed after a restart.
    Running,
    /// The device and adapter chosen.
    Device,
    /// The corpus read and split.
    Corpus,
    /// A parent pretraining (progress with held-out checkpoints).
    Pretrain,
    /// A parent ready: pretrained, or read from the cache or a checkpoint directory.
    Parent,
    /// A unit pruned: the rate achieved.
    Prune,
    /// A unit post-training (progress with held-out checkpoints).
    Train,
    /// A healed Hugging Face model written.
    Export,
    /// A unit's curve stored as a run.
    Run,
    /// The law fitted to the job's curves.
    Fit,
    /// The server stopped; the job resumes at its next start.
    Interrupted,
    Done,
    Failed,
    Cancelled,
}

impl Stage {
    pub const ALL: [Stage; 15] = [
        Stage::Queued,
        Stage::Running,
        Stage::Device,
        Stage::Corpus,
        Stage::Pretrain,
        Stage::Parent,
        Stage::Prune,
        Stage::Train,
        Stage::Export,
        Stage::Run,
        Stage::Fit,
        Stage::Interrupted,
        Stage::Done,
        Stage::Failed,
        Stage::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Running => "running",
            Stage::Device => "device",
            Stage::Corpus => "corpus",
            Stage::Pretrain => "pretrain",
            Stage::Parent => "parent",
            Stage::Prune => "prune",
            Stage::Train => "train",
            Stage::Export => "export",
            Stage::Run => "run",
            Stage::Fit => "fit",
            Stage::Interrupted => "interrupted",
            Stage::Done => "done",
            Stage::Failed => "failed",
            Stage::Cancelled => "cancelled",
        }
    }

    /// `done`, `failed` or `cancelled`: nothing follows in the job's event log.
    pub fn is_final(self) -> bool {
        matches!(self, Stage::Done | Stage::Failed | Stage::Cancelled)
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl From<JobStatus> for Stage {
    /// The stage of a job's event when it enters `status`.
    fn from(status: JobStatus) -> Stage {
        match status {
            JobStatus::Queued => Stage::Queued,
            JobStatus::Running => Stage::Running,
            JobStatus::Done => Stage::Done,
            JobStatus::Failed => Stage::Failed,
            JobStatus::Cancelled => Stage::Cancelled,
        }
    }
}

/// One progress event of a job (`GET /api/calibrations/{id}/events`, one per SSE message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CalibrationEvent {
    /// Position in the job's event log, from 1.
    pub seq: u64,
    pub stage: Stage,
    /// The unit (`parent/method/setting`) or parent it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default)]
    pub step: usize,
    #[serde(default)]
    pub steps: usize,
    #[serde(default)]
    pub tokens: u64,
    /// A held-out checkpoint just measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<CurvePoint>,
    /// Seconds left in the whole job, estimated from the throughput so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The run stored for a finished unit, or the fit at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_id: Option<i64>,
    /// The worker that sent it (`p2law worker --name`), when workers share a database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// A training unit's learning-rate schedule in tokens (on its `train` events), so that a
    /// forecast of its curve follows the decay ahead instead of guessing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::forecast::schedule::Shape>,
}

/// A job, as listed and read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CalibrationJob {
    pub id: i64,
    pub created_at: String,
    pub updated_at: String,
    pub status: JobStatus,
    pub request: CalibrationRequest,
    /// Units finished (their runs stored) out of all.
    pub units_done: usize,
    pub units: usize,
    pub run_ids: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_id: Option<i64>,
    /// The fit's degeneracy ([`crate::report::FitReport::degeneracy`]), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_warning: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The device and adapter the job ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_spans_more_than_ten_times_and_fits_n_m() {
        let n: Vec<u64> = FAMILY.iter().map(|p| p.shape.parameters()).collect();
        assert!(n.windows(2).all(|w| w[0] < w[1]), "{n:?}");
        assert!(n[n.len() - 1] > 100 * n[0]);
        // p2-nano by hand: 4 layers × (attention 3 072 + MLP 9 216 + norms 64) + embedding 8 192 + norm 32.
        assert_eq!(n[0], 57_632);
        for p in FAMILY {
            assert_eq!(p.shape.hidden_size % 8, 0);
            assert_eq!(p.shape.intermediate_size % 8, 0);
            assert_eq!(p.shape.num_attention_heads % p.shape.num_key_value_heads, 0);
        }
    }

    #[test]
    fn absurd_sweeps_are_refused_before_they_expand() {
        let ok = CalibrationRequest::preset("mini").unwrap();
        let field = |r: CalibrationRequest| r.units().unwrap_err();
        // 10 000 parents × 9 999 rates: refused on the count, without building a unit.
        let huge = CalibrationRequest { parents: vec!["p2-nano".into(); 10_000], rates: (1..10_000).map(|i| i as f64 / 10_000.0).collect(), ..ok.clone() };
        let (f, m) = field(huge);
        assert_eq!(f, "parents");
        assert!(m.contains("at most 16"), "{m}");
        let (f, m) = field(CalibrationRequest { parents: vec!["p2-nano".into(), "p2-nano".into()], ..ok.clone() });
        assert_eq!((f, m.contains("twice")), ("parents", true), "{m}");
        let (f, m) = field(CalibrationRequest { rates: vec![0.25, 0.25], ..ok.clone() });
        assert_eq!((f, m.contains("twice")), ("rates", true), "{m}");
        let (f, _) = field(CalibrationRequest { patterns: vec![NmPattern::TWO_FOUR, " 2:4".parse().unwrap()], ..ok.clone() });
        assert_eq!(f, "patterns");
        let (f, m) = field(CalibrationRequest { rates: vec![1e-200], ..ok.clone() });
        assert_eq!(f, "rates", "{m}");
        let (f, m) = field(CalibrationRequest { parents: FAMILY.iter().take(7).map(|p| p.name.to_string()).collect(), rates: (1..=16).map(|i| i as f64 / 20.0).collect(), patterns: (2..=8).map(|m| NmPattern { n: 1, m }).collect(), ..ok.clone() });
        assert!(f == "parents" && m.contains("units is too large"), "{f}: {m}");
        assert!(ok.units().is_ok());
    }

    #[test]
    fn presets_expand_and_bad_fields_are_named() {
        assert_eq!(CalibrationRequest::preset("smoke").unwrap().units().unwrap().len(), 6);
        assert_eq!(CalibrationRequest::preset("mini").unwrap().units().unwrap().len(), 27);
        let mut r = CalibrationRequest::preset("smoke").unwrap();
        r.methods = vec![PruneMethod::Sparse];
        r.patterns = vec![];
        assert_eq!(r.units().unwrap_err().0, "patterns");
        r = CalibrationRequest::preset("smoke").unwrap();
        r.parents = vec!["gpt-5".into()];
        assert!(r.units().unwrap_err().1.contains("p2-nano"));
        r = CalibrationRequest::preset("smoke").unwrap();
        r.corpus = Some("../etc".into());
        assert_eq!(r.units().unwrap_err().0, "corpus");
    }

    #[test]
    fn the_vocabulary_reads_and_writes_the_wire_strings() {
        // Methods, devices and stages are their lowercase names on the wire, in run names and on
        // the command line; every one parses back.
        for m in PruneMethod::ALL {
            assert_eq!(serde_json::to_value(m).unwrap(), serde_json::json!(m.as_str()));
            assert_eq!(m.as_str().parse::<PruneMethod>(), Ok(m));
        }
        for d in DeviceChoice::ALL {
            assert_eq!(serde_json::to_value(d).unwrap(), serde_json::json!(d.as_str()));
            assert_eq!(d.as_str().parse::<DeviceChoice>(), Ok(d));
        }
        for s in Stage::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
            assert_eq!(serde_json::from_value::<Stage>(serde_json::json!(s.as_str())).unwrap(), s);
        }
        assert_eq!(Stage::ALL.iter().filter(|s| s.is_final()).count(), 3);
        assert_eq!("magnitude".parse::<PruneMethod>(), Err(SettingError::Method("magnitude".into())));
        assert_eq!(SettingError::Method("magnitude".into()).to_string(), "method `magnitude`: expected depth, width or sparse");
        assert!("tpu".parse::<DeviceChoice>().is_err());
        // N:M patterns: the string "n:m", spaces tolerated, 0 < n < m <= 64.
        let p: NmPattern = serde_json::from_str("\" 2 : 4\"").unwrap();
        assert_eq!((p, serde_json::to_string(&p).unwrap()), (NmPattern::TWO_FOUR, "\"2:4\"".to_string()));
        assert_eq!(NmPattern { n: 1, m: 4 }.rate(), 0.75);
        for bad in ["4:4", "0:4", "2", "2:x", "1:65", ""] {
            assert!(serde_json::from_value::<NmPattern>(serde_json::json!(bad)).is_err(), "{bad}");
        }
        let bad: Result<CalibrationRequest, _> = serde_json::from_value(serde_json::json!({"parents": ["p2-nano"], "methods": ["depth"], "rates": [0.25], "tokens": 10, "patterns": ["4:4"]}));
        assert!(bad.unwrap_err().to_string().contains("pattern `4:4`"));
        // A unit's key is what resumed jobs match on: the rate as Rust prints it, the pattern.
        let u = |pruning| Unit { parent: "p2-nano".into(), pruning }.key();
        assert_eq!(u(Pruning::Depth(0.25)), "p2-nano/depth/0.25");
        assert_eq!(u(Pruning::Width(0.1)), "p2-nano/width/0.1");
        assert_eq!(u(Pruning::Sparse(NmPattern { n: 3, m: 4 })), "p2-nano/sparse/3:4");
        assert_eq!(Pruning::Sparse(NmPattern::TWO_FOUR).label(), "2:4");
        assert_eq!(Pruning::parse(PruneMethod::Width, "0.35"), Ok(Pruning::Width(0.35)));
        assert!(Pruning::parse(PruneMethod::Depth, "1.5").is_err());
        assert_eq!(Pruning::parse(PruneMethod::Sparse, "1:4"), Ok(Pruning::Sparse(NmPattern { n: 1, m: 4 })));
    }

    #[test]
    fn flops_count_pretraining_once_and_every_unit() {
        // smoke: p2-nano and p2-micro pretrained at 0.06 of their recipes (3 M and 5 M tokens),
        // then 3 units each (depth, width, 2:4) of 131 072 tokens, all counted at 6 N D.
        let r = CalibrationRequest::preset("smoke").unwrap();
        let n = |name: &str| parent(name).unwrap().shape.parameters() as f64;
        let want = 6.0 * n("p2-nano") * 3e6 * 0.06 + 6.0 * n("p2-micro") * 5e6 * 0.06 + 3.0 * 6.0 * (n("p2-nano") + n("p2-micro")) * 131_072.0;
        assert!((r.flops() / want - 1.0).abs() < 1e-12, "{} vs {want}", r.flops());
        // A Hugging Face parent counts only its post-training, at the size the caller reads.
        let hf = CalibrationRequest { parents: vec!["hf:tiny".into()], methods: vec![PruneMethod::Depth], rates: vec![0.25, 0.5], ..r };
        assert_eq!(hf.flops(), 0.0);
        assert_eq!(hf.flops_with(|name| (name == "tiny").then_some(1e6)), 2.0 * 6.0 * 1e6 * 131_072.0);
    }
}
