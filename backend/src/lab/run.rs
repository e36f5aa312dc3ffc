//! One resumable training run: evaluate at log-spaced token checkpoints, save a checkpoint
//! (model, optimizer state, step, points so far) at each of them, and pick up from the last one
//! when started again on the same directory.

use super::corpus::Corpus;
use super::model::Llama;
use super::prune::sparse::Masks;
use super::train::{Control, Resume, TrainConfig, evaluate, log_spaced_from_one, log_spaced_steps, train};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::prelude::*;
use p2law_shared::data::CurvePoint;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use crate::write_atomic;

/// How held-out loss is measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    pub seq_len: usize,
    pub windows: usize,
    /// Log-spaced checkpoints after the one at D = 0.
    pub checkpoints: usize,
    /// Whether the first of them is after one step (so that they span the whole run), rather
    /// than at `steps^(1/checkpoints)`.
    #[serde(default)]
    pub from_first_step: bool,
}

/// A step of progress, for the caller to show or stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub step: usize,
    pub steps: usize,
    pub tokens: u64,
    /// Set when a checkpoint was just evaluated.
    pub point: Option<CurvePoint>,
}

/// Why a run stopped early or failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cancelled")]
    Cancelled,
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: String, message: String },
    #[error("training diverged: the held-out loss is {loss} at step {step} ({tokens} tokens)")]
    Diverged { step: usize, tokens: u64, loss: f64 },
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    step: usize,
    points: Vec<CurvePoint>,
    /// The run's configuration as serialized (compared as text: parsing floats back need not be exact).
    config: String,
}

fn ck(path: &Path, message: impl ToString) -> RunError {
    RunError::Checkpoint { path: path.display().to_string(), message: message.to_string() }
}

/// A finished run.
#[derive(Debug)]
pub struct Finished {
    pub model: Llama,
    pub points: Vec<CurvePoint>,
    /// Steps taken in this call (fewer than the run's when it resumed).
    pub steps_taken: usize,
}

/// Saves a model's weights (burnpack) through a temporary file and a rename.
pub fn save_model(model: &Llama, path: &Path) -> Result<(), RunError> {
    let bytes = model.clone().into_record().into_bytes().map_err(|e| ck(path, format!("{e:?}")))?;
    write_atomic(path, &bytes).map_err(|e| ck(path, e))
}

/// Loads weights saved by [`save_model`] into a model of the same shape. The file is read
/// whole first: burn's own file loader reads lazily, which would see a later checkpoint
/// written over the same path.
pub fn load_model(model: Llama, path: &Path) -> Result<Llama, RunError> {
    let bytes = std::fs::read(path).map_err(|e| ck(path, e))?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| ck(path, format!("{e:?}")))?;
    model.try_load_record(record).map_err(|e| ck(path, format!("{e:?}")))
}

/// Writes one checkpoint as a unit: model, optimizer and state go into a fresh temporary
/// directory, each file fsynced, the directory renamed to `ckpt-<step>` and the parent fsynced;
/// only then are older checkpoints removed. A kill at any point leaves the previous checkpoint
/// whole (a `ckpt-*` directory exists only complete); the temporary one is cleared at the next load.
fn save(dir: &Path, model: &Llama, optim: &ModuleOptimizer, state: &State) -> Result<(), RunError> {
    let tmp = dir.join(format!(".ckpt-{}.tmp", state.step));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| ck(&tmp, e))?;
    let model_bytes = model.clone().into_record().into_bytes().map_err(|e| ck(&tmp, format!("{e:?}")))?;
    let optim_bytes = optim.into_bytes().map_err(|e| ck(&tmp, format!("{e:?}")))?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| ck(dir, e))?;
    for (name, bytes) in [("model.bpk", &model_bytes[..]), ("optim.bpk", &optim_bytes[..]), ("state.json", &json[..])] {
        crate::write_synced(&tmp.join(name), bytes).map_err(|e| ck(&tmp.join(name), e))?;
    }
    crate::sync_dir(&tmp).map_err(|e| ck(&tmp, e))?;
    crate::fault_point("checkpoint");
    let done = dir.join(format!("ckpt-{}", state.step));
    let _ = std::fs::remove_dir_all(&done);
    std::fs::rename(&tmp, &done).map_err(|e| ck(&done, e))?;
    crate::sync_dir(dir).map_err(|e| ck(dir, e))?;
    // The new checkpoint is durable: the older ones (and the flat layout of earlier versions) go.
    for (step, path) in checkpoints(dir) {
        if step != state.step {
            let _ = std::fs::remove_dir_all(path);
        }
    }
    for legacy in ["state.json", "model.bpk", "optim.bpk"] {
        let _ = std::fs::remove_file(dir.join(legacy));
    }
    Ok(())
}

/// The complete checkpoints in `dir`, by step.
fn checkpoints(dir: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(usize, PathBuf)> = entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.strip_prefix("ckpt-")?.parse().ok()?, e.path())))
        .collect();
    out.sort();
    out
}

/// The newest complete checkpoint in `dir` (or one in the flat layout of earlier versions),
/// after clearing what a killed process left half-written.
fn load(dir: &Path, model: Llama, cfg: &TrainConfig) -> Result<Option<(Llama, ModuleOptimizer, State)>, RunError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.starts_with(".ckpt-") || (n.starts_with('.') && n.contains(".tmp-"))) {
                let _ = if e.path().is_dir() { std::fs::remove_dir_all(e.path()) } else { std::fs::remove_file(e.path()) };
            }
        }
    }
    let at = match checkpoints(dir).pop() {
        Some((_, path)) => path,
        None if dir.join("state.json").exists() => dir.to_path_buf(),
        None => return Ok(None),
    };
    let state_path = at.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| ck(&state_path, e))?;
    let state: State = serde_json::from_str(&text).map_err(|e| ck(&state_path, e))?;
    if state.config != serde_json::to_string(cfg).unwrap_or_default() {
        return Err(ck(&state_path, "was written by a run with another configuration"));
    }
    let model = load_model(model, &at.join("model.bpk"))?;
    let optim_path = at.join("optim.bpk");
    let bytes = std::fs::read(&optim_path).map_err(|e| ck(&optim_path, e))?;
    let optim = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .init()
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| ck(&optim_path, format!("{e:?}")))?;
    Ok(Some((model, optim, state)))
}

/// Runs (or resumes) `cfg` on `model` in checkpoint directory `dir`, evaluating held-out loss
/// at D = 0 and at log-spaced steps. `cancel` stops it at the next step (the last checkpoint
/// stays, so the run can resume).
#[allow(clippy::too_many_arguments)]
pub fn run(
    model: Llama,
    masks: Option<&Masks>,
    corpus: &Corpus,
    cfg: &TrainConfig,
    eval: &EvalConfig,
    device: &Device,
    dir: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Finished, RunError> {
    std::fs::create_dir_all(dir).map_err(|e| ck(dir, e))?;
    let eval_steps = if eval.from_first_step { log_spaced_from_one(cfg.steps, eval.checkpoints) } else { log_spaced_steps(cfg.steps, eval.checkpoints) };
    let (model, start, mut points) = match load(dir, model.clone(), cfg)? {
        Some((m, optim, state)) => (m, Some(Resume { optim, step: state.step }), state.points),
        None => {
            let loss = evaluate(&model, &corpus.held_out, eval.seq_len, eval.windows);
            let point = CurvePoint { tokens: 0.0, loss };
            progress(&Progress { step: 0, steps: cfg.steps, tokens: 0, point: Some(point) });
            (model, None, vec![point])
        }
    };
    let save_every = (cfg.steps / 10).max(1);
    let first = start.as_ref().map_or(0, |r| r.step);
    let mut failure = None;
    let (model, _, done) = train(model, masks, &corpus.train, cfg, device, start, |step, tokens, m, optim| {
        let mut p = Progress { step, steps: cfg.steps, tokens, point: None };
        let at_eval = eval_steps.contains(&step);
        if at_eval {
            let point = CurvePoint { tokens: tokens as f64, loss: evaluate(m, &corpus.held_out, eval.seq_len, eval.windows) };
            // A non-finite loss is a failed run, never a stored point.
            if !point.loss.is_finite() {
                failure = Some(RunError::Diverged { step, tokens, loss: point.loss });
                return Control::Stop;
            }
            points.push(point);
            p.point = Some(point);
        }
        // Checkpoints at every evaluation, at least every tenth of the run, and where a cancel or
        // shutdown stops it (so that a resume repeats no step).
        let stopping = cancel.load(Ordering::Relaxed) && step < cfg.steps;
        if at_eval || step % save_every == 0 || stopping {
            if let Err(e) = save(dir, m, optim, &State { step, points: points.clone(), config: serde_json::to_string(cfg).unwrap_or_default() }) {
                failure = Some(e);
                return Control::Stop;
            }
        }
        progress(&p);
        if cancel.load(Ordering::Relaxed) { Control::Stop } else { Control::Continue }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if done < cfg.steps {
        return Err(RunError::Cancelled);
    }
    Ok(Finished { model, points, steps_taken: done - first })
}

/// The checkpoint directory of a run inside `root`.
pub fn dir_for(root: &Path, key: &str) -> PathBuf {
    root.join(key.replace(['/', ':', ' '], "_"))
}
