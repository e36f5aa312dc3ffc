//! Making the P² study's data (`p2law study run`): pretrain each parent of
//! [`STUDY_FAMILY`](p2law_shared::study::STUDY_FAMILY) until converged, then for every unit of the
//! grid prune it (or not: the control), heal it and record its held-out curve.
//!
//! Everything is kept as it finishes: parents in a cache keyed by corpus, shape and recipe; each
//! unit's run in a checkpoint directory it resumes from; each finished curve in `curves.csv` and
//! `manifest.json`, both rewritten whole through a rename after every unit, curves first (a
//! curve the manifest does not list yet is made again). A later call with the same `--out` goes
//! on where the last one stopped.

use super::corpus::{self, Corpus};
use super::device::LabDevice;
use super::model::{Llama, ModelOptions};
use super::prune;
use super::run::{self, EvalConfig, Progress};
use super::sweep;
use super::train::{self, TrainConfig};
use p2law_shared::calibrate::Parent;
use p2law_shared::data::Curve;
use p2law_shared::logs::canonical;
use p2law_shared::study::{
    CHECKPOINTS, CONVERGED_WITHIN, Convergence, CorpusInfo, EPOCH_CAP, EVAL_WINDOWS, Grid, Manifest, ParentInfo, Recipe, StudyData, StudyUnit, UnitInfo,
    study_parent,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Why the study could not run, with the flag to blame where there is one.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    #[error("{0}")]
    Run(String),
    #[error("cancelled")]
    Cancelled,
}

fn flag(flag: &'static str, message: impl Into<String>) -> StudyError {
    StudyError::Flag { flag, message: message.into() }
}

fn fail(message: impl std::fmt::Display) -> StudyError {
    StudyError::Run(message.to_string())
}

impl From<run::RunError> for StudyError {
    fn from(e: run::RunError) -> Self {
        match e {
            run::RunError::Cancelled => StudyError::Cancelled,
            other => fail(other),
        }
    }
}

/// What `study run` was asked.
#[derive(Debug)]
pub struct Options {
    /// `curves.csv` and `manifest.json` go here.
    pub out: PathBuf,
    /// Parents and run checkpoints are cached under `<lab_dir>/study`.
    pub lab_dir: PathBuf,
    pub corpus: PathBuf,
    pub device: LabDevice,
    /// Re-make this one unit only (its parent from the cache, or pretrained anew).
    pub only: Option<String>,
    /// Choose the largest grid whose estimated time fits.
    pub budget_hours: Option<f64>,
}

/// The CPU seconds this process has used (user and system, all threads), from `/proc/self/stat`
/// (in clock ticks of 1/100 s, the Linux ABI's `USER_HZ`); 0 where there is no procfs.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0
}

/// Wall and CPU time of one piece of work.
struct Stopwatch {
    wall: Instant,
    cpu: f64,
}

impl Stopwatch {
    fn start() -> Self {
        Stopwatch { wall: Instant::now(), cpu: cpu_seconds() }
    }
    fn read(&self) -> (f64, f64) {
        (self.wall.elapsed().as_secs_f64(), cpu_seconds() - self.cpu)
    }
}

/// The commit this binary's checkout is at (`git describe --always --dirty`), or `unknown`.
fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=40"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn options(p: &Parent) -> ModelOptions {
    ModelOptions { max_seq_len: p.seq_len + 1, ..ModelOptions::default() }
}

/// Held-out loss at D = 0 and at [`CHECKPOINTS`] log-spaced steps, the first after one step.
fn eval_config(p: &Parent) -> EvalConfig {
    EvalConfig { seq_len: p.seq_len, windows: EVAL_WINDOWS, checkpoints: CHECKPOINTS, from_first_step: true }
}

/// Pretraining on `tokens`: warm-up over 5 % of the steps, cosine decay to a tenth of the peak.
pub fn pretrain_config(p: &Parent, tokens: u64, seed: u64) -> TrainConfig {
    let per_step = (p.batch * p.seq_len) as u64;
    let steps = tokens.div_ceil(per_step).max(1) as usize;
    TrainConfig { steps, batch: p.batch, grad_accum: 1, seq_len: p.seq_len, peak_lr: p.peak_lr, min_lr: p.peak_lr / 10.0, warmup_steps: (steps / 20).max(1), weight_decay: 0.1, seed }
}

/// The recipe a configuration runs, as the study records it.
pub(crate) fn recipe(cfg: &TrainConfig) -> Recipe {
    Recipe {
        tokens: cfg.steps as u64 * cfg.tokens_per_step(),
        steps: cfg.steps,
        batch: cfg.batch,
        seq_len: cfg.seq_len,
        peak_lr: cfg.peak_lr,
        min_lr: cfg.min_lr,
        warmup_steps: cfg.warmup_steps,
        weight_decay: cfg.weight_decay,
        seed: cfg.seed,
    }
}

/// The pretraining budgets of a parent: the most whole power-of-two steps the epoch cap allows,
/// and half of it (its own run, for the convergence figure).
fn chain(p: &Parent, train_tokens: usize) -> Vec<u64> {
    let per_step = (p.batch * p.seq_len) as u64;
    let cap_steps = ((EPOCH_CAP * train_tokens as f64) as u64 / per_step).max(2);
    let steps = 1u64 << (63 - cap_steps.leading_zeros());
    vec![steps / 2 * per_step, steps * per_step]
}

/// A parent pretrained on `tokens` tokens with seed `seed`, cached; `(model, held-out loss)`.
/// The pretrained parent of one budget, its held-out loss, and the wall and CPU seconds its
/// pretraining took (from `time.json` beside a cached run; `None` for a cache made before it).
type Pretrained = (Llama, f64, Option<(f64, f64)>);

fn pretrained(p: &Parent, tokens: u64, seed: u64, corpus: &Corpus, root: &Path, device: &LabDevice, cancel: &AtomicBool, say: &mut dyn FnMut(&str)) -> Result<Pretrained, StudyError> {
    let clock = Stopwatch::start();
    let cfg = pretrain_config(p, tokens, seed);
    let dir = root.join("parents").join(format!("{}-{}-{}x{}-s{seed}", p.name, &corpus.sha256[..12], cfg.steps, cfg.tokens_per_step()));
    let fresh = || {
        burn::tensor::Device::seed(&device.device, seed);
        Llama::new(&p.shape, &options(p), &device.device)
    };
    let loss_path = dir.join("loss.json");
    let time_path = dir.join("time.json");
    if let Ok(text) = std::fs::read_to_string(&loss_path) {
        let loss: f64 = serde_json::from_str(&text).map_err(|e| fail(format!("{}: {e}", loss_path.display())))?;
        let time = std::fs::read_to_string(&time_path).ok().and_then(|t| serde_json::from_str::<(f64, f64)>(&t).ok());
        return Ok((run::load_model(fresh(), &dir.join("final.bpk"))?, loss, time));
    }
    let name = p.name;
    let mut progress = |pr: &Progress| {
        if pr.step % 50 == 0 || pr.point.is_some() {
            say(&format!("\r\x1b[Kpretrain {name} on {tokens} tokens: step {}/{}{}", pr.step, pr.steps, pr.point.map_or(String::new(), |pt| format!(", loss {:.4}", pt.loss))));
        }
    };
    let finished = run::run(fresh(), None, corpus, &cfg, &eval_config(p), &device.device, &dir.join("run"), cancel, &mut progress)?;
    let loss = finished.points.last().map_or(f64::NAN, |pt| pt.loss);
    run::save_model(&finished.model, &dir.join("final.bpk"))?;
    let time = clock.read();
    crate::write_atomic(&time_path, serde_json::json!([time.0, time.1]).to_string().as_bytes()).map_err(|e| fail(format!("{}: {e}", time_path.display())))?;
    crate::write_atomic(&loss_path, loss.to_string().as_bytes()).map_err(|e| fail(format!("{}: {e}", loss_path.display())))?;
    let _ = std::fs::remove_dir_all(dir.join("run"));
    Ok((finished.model, loss, Some(time)))
}

/// Pretrains `p` on as many tokens as the epoch cap allows, and on half as many: the record says
/// whether doubling still lowered the held-out loss by [`CONVERGED_WITHIN`] or more.
fn converge(p: &Parent, seed: u64, corpus: &Corpus, root: &Path, device: &LabDevice, cancel: &AtomicBool, say: &mut dyn FnMut(&str)) -> Result<(Llama, ParentInfo), StudyError> {
    let budgets = chain(p, corpus.train.len());
    let mut done: Vec<(u64, f64)> = Vec::new();
    let mut best = None;
    let (mut wall_s, mut cpu_s, mut untimed) = (0.0, 0.0, Vec::new());
    for &tokens in &budgets {
        let (model, loss, time) = pretrained(p, tokens, seed, corpus, root, device, cancel, say)?;
        say(&format!("\r\x1b[Kpretrained {} on {tokens} tokens: held-out loss {loss:.4}\n", p.name));
        match time {
            Some((w, c)) => (wall_s, cpu_s) = (wall_s + w, cpu_s + c),
            None => untimed.push(tokens),
        }
        done.push((tokens, loss));
        best = Some(model);
    }
    let model = best.ok_or_else(|| fail(format!("{}: no pretraining budget fits the corpus", p.name)))?;
    let [.., (half_tokens, half_loss), (tokens, loss)] = done[..] else { return Err(fail(format!("{}: the chain needs two runs", p.name))) };
    let improvement = (half_loss - loss) / half_loss;
    let info = ParentInfo {
        name: p.name.into(),
        shape: p.shape,
        n0: p.shape.parameters(),
        l0: loss,
        seed,
        recipe: recipe(&pretrain_config(p, tokens, seed)),
        convergence: Convergence {
            criterion: format!(
                "held-out loss improves by less than {:.0} % when the pretraining tokens double (each budget its own run, warm-up and cosine schedule), at most {EPOCH_CAP} epochs",
                CONVERGED_WITHIN * 100.0
            ),
            half_tokens,
            half_loss,
            tokens,
            loss,
            improvement,
            converged: improvement < CONVERGED_WITHIN,
            epochs: tokens as f64 / corpus.train.len() as f64,
        },
        chain: done,
        wall_s,
        cpu_s,
        untimed,
    };
    Ok((model, info))
}

/// Post-training of the study: half the parent's peak rate, a twentieth at the end, and no warm-up.
/// A warm-up holds the loss flat over its first steps and bends each curve into a sigmoid in log D,
/// which no form of the law has; healing from a trained parent starts at the post-training rate.
fn post_train_config(p: &Parent, tokens: u64, seed: u64) -> TrainConfig {
    let mut cfg = super::family::post_train(p.batch, p.seq_len, p.peak_lr / 2.0, p.peak_lr / 20.0, tokens, seed);
    cfg.warmup_steps = 0;
    cfg
}

/// One unit: pruned (or the unpruned control) and healed, as a curve and its record.
#[allow(clippy::too_many_arguments)]
fn heal(p: &Parent, parent: &ParentInfo, model: &Llama, u: &StudyUnit, tokens: u64, corpus: &Corpus, root: &Path, device: &LabDevice, cancel: &AtomicBool, say: &mut dyn FnMut(&str)) -> Result<(Curve, UnitInfo), StudyError> {
    let clock = Stopwatch::start();
    let run_name = u.run();
    let (model, masks, rho, removed, detail) = match u.pruning().map_err(|m| fail(format!("{run_name}: {m}")))? {
        None => (model.clone(), None, 0.0, 0, "unpruned".to_string()),
        Some(pruning) => {
            let pr = sweep::prune_unit(model.clone(), &p.shape, p.seq_len, pruning, corpus).map_err(|m| fail(format!("{run_name}: {m}")))?;
            (pr.model, pr.masks, pr.rho, pr.removed, pr.detail)
        }
    };
    let cfg = post_train_config(p, tokens, u.seed);
    let dir = root.join("runs").join(format!("{}-{}", &corpus.sha256[..12], run::dir_for(Path::new(""), &run_name).display()));
    let mut progress = |pr: &Progress| {
        if pr.step % 25 == 0 || pr.point.is_some() {
            say(&format!("\r\x1b[K{run_name}: step {}/{}{}", pr.step, pr.steps, pr.point.map_or(String::new(), |pt| format!(", loss {:.4}", pt.loss))));
        }
    };
    let finished = run::run(model, masks.as_ref(), corpus, &cfg, &eval_config(p), &device.device, &dir, cancel, &mut progress)?;
    if let Some(m) = &masks {
        prune::sparse::check_pattern(&finished.model, m.n, m.m).map_err(|e| fail(format!("{run_name}: {e}")))?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (wall_s, cpu_s) = clock.read();
    let curve = Curve {
        run: run_name.clone(),
        n0: Some(parent.n0 as f64),
        rho: Some(rho),
        l0: Some(parent.l0),
        method: Some(u.method_label()),
        family: Some("p2law-study".into()),
        split: Some("held-out".into()),
        points: finished.points,
    };
    let info = UnitInfo { run: run_name, unit: u.clone(), rho, parameters_removed: removed, detail, post_train: recipe(&cfg), wall_s, cpu_s, p2law_commit: commit() };
    Ok((curve, info))
}

/// Tokens per second of a training step of each parent on this device, from a few timed steps.
fn measure_speed(p: &Parent, corpus: &Corpus, device: &LabDevice) -> f64 {
    let model = Llama::new(&p.shape, &options(p), &device.device);
    let mut cfg = post_train_config(p, 0, 0);
    cfg.steps = 5;
    let mut t0 = None;
    let _ = train::train(model, None, &corpus.train, &cfg, &device.device, None, |step, _, m, _| {
        if step == 2 {
            let _ = m.embed.weight.val().into_data();
            t0 = Some(Instant::now());
        }
        train::Control::Continue
    });
    let secs = t0.map_or(1.0, |t| t.elapsed().as_secs_f64()).max(1e-6);
    3.0 * cfg.tokens_per_step() as f64 / secs
}

/// What a smaller grid leaves out of the full one, for `--budget-hours` to say which points it
/// took fewer of.
fn left_out(full: &Grid, g: &Grid) -> String {
    let mut gone = Vec::new();
    let missing = |all: &[String], kept: &[String]| all.iter().filter(|x| !kept.contains(x)).cloned().collect::<Vec<_>>();
    let rates = |v: &[f64]| v.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    for (what, all, kept) in [
        ("parents", full.parents.clone(), g.parents.clone()),
        ("depth rates", rates(&full.depth_rates), rates(&g.depth_rates)),
        ("width rates", rates(&full.width_rates), rates(&g.width_rates)),
        ("N:M patterns", full.patterns.clone(), g.patterns.clone()),
    ] {
        let m = missing(&all, &kept);
        if !m.is_empty() {
            gone.push(format!("{what} {}", m.join(", ")));
        }
    }
    let extra = |g: &Grid| g.parents.iter().take(g.extra_seed_parents).cloned().collect::<Vec<_>>();
    let seeds = missing(&extra(full), &extra(g));
    if !seeds.is_empty() {
        gone.push(format!("the second seeds of {}", seeds.join(", ")));
    }
    if gone.is_empty() { "taking the full grid".into() } else { format!("taking fewer points: leaves out {}", gone.join("; ")) }
}

/// Estimated hours of a grid: pretraining (both runs, unless cached) and post-training (pruned models counted at 3/4 of their parent's cost).
fn estimate_hours(grid: &Grid, corpus: &Corpus, speed: &dyn Fn(&Parent) -> f64, cached: &dyn Fn(&Parent) -> bool) -> f64 {
    let mut secs = 0.0;
    for name in &grid.parents {
        let Some(p) = study_parent(name) else { continue };
        let tps = speed(&p);
        if !cached(&p) {
            let c = chain(&p, corpus.train.len());
            let pretrain: u64 = c.iter().sum();
            secs += pretrain as f64 / tps;
        }
        let units = grid.units().iter().filter(|u| &u.parent == name).count();
        secs += units as f64 * grid.post_train_tokens as f64 * 0.75 / tps;
    }
    secs / 3600.0
}

/// Study data that cannot be read: the file, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Data(#[from] p2law_shared::data::InputError),
}

/// Study data as committed: `curves.csv` and `manifest.json` of `dir`, checked against each other.
pub fn load_dir(dir: &Path) -> Result<StudyData, LoadError> {
    let (csv_path, manifest_path) = (dir.join("curves.csv"), dir.join("manifest.json"));
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|source| LoadError::Io { path: p.display().to_string(), source });
    let (csv, manifest) = (read(&csv_path)?, read(&manifest_path)?);
    Ok(StudyData::parse(&csv_path.display().to_string(), &csv, &manifest_path.display().to_string(), &manifest)?)
}

/// The study's state in `out`, if a run has begun there.
fn load_existing(out: &Path) -> Result<Option<StudyData>, StudyError> {
    let (csv_path, manifest_path) = (out.join("curves.csv"), out.join("manifest.json"));
    let Ok(manifest) = std::fs::read_to_string(&manifest_path) else { return Ok(None) };
    let manifest_name = manifest_path.display().to_string();
    let m: Manifest = serde_json::from_str(&manifest).map_err(|e| fail(format!("{manifest_name}: {e}")))?;
    let csv = std::fs::read_to_string(&csv_path).unwrap_or_else(|_| canonical::CSV_HEADER.to_string() + "\n");
    // Only the curves the manifest lists are kept: a curve written just before a kill, whose
    // record was not, is made again.
    let log = canonical::parse_csv(&csv_path.display().to_string(), &csv, &Default::default()).map_err(|e| fail(e.to_string()))?;
    let listed: std::collections::BTreeSet<&str> = m.units.iter().map(|u| u.run.as_str()).collect();
    let curves: Vec<Curve> = log.curves.into_iter().filter(|c| listed.contains(c.run.as_str())).collect();
    let mut m = m;
    let have: std::collections::BTreeSet<String> = curves.iter().map(|c| c.run.clone()).collect();
    m.units.retain(|u| have.contains(&u.run));
    Ok(Some(StudyData { manifest: m, curves }))
}

/// Writes the curves, then the manifest, each through a temporary file and a rename.
fn save(out: &Path, data: &StudyData) -> Result<(), StudyError> {
    let order: Vec<String> = data.manifest.grid.units().iter().map(StudyUnit::run).collect();
    let mut curves = data.curves.clone();
    curves.sort_by_key(|c| order.iter().position(|r| r == &c.run).unwrap_or(usize::MAX));
    let csv_path = out.join("curves.csv");
    crate::write_atomic(&csv_path, canonical::write_csv(&curves).as_bytes()).map_err(|e| flag("--out", format!("{}: {e}", csv_path.display())))?;
    let path = out.join("manifest.json");
    let json = serde_json::to_string_pretty(&data.manifest).map_err(fail)?;
    crate::write_atomic(&path, json.as_bytes()).map_err(|e| flag("--out", format!("{}: {e}", path.display())))
}

/// Runs (or resumes) the study. `say` gets progress text (with `\r` for in-place lines).
pub fn run(o: &Options, cancel: &AtomicBool, say: &mut dyn FnMut(&str)) -> Result<StudyData, StudyError> {
    let started = Stopwatch::start();
    if !o.corpus.exists() {
        return Err(flag("--corpus", format!("{} does not exist (./dev setup installs the default corpus)", o.corpus.display())));
    }
    let only = match &o.only {
        Some(run) => {
            let u = StudyUnit::from_run(run).filter(|u| Grid::full().units().contains(u));
            Some(u.ok_or_else(|| flag("--only", format!("`{run}` is not a unit of the study's grid (for example {})", Grid::full().units()[1].run())))?)
        }
        None => None,
    };
    if let Some(h) = o.budget_hours
        && !(h.is_finite() && h > 0.0)
    {
        return Err(flag("--budget-hours", format!("a positive number of hours, got {h}")));
    }
    // The output directory must take a file before any work starts.
    std::fs::create_dir_all(&o.out).map_err(|e| flag("--out", format!("{}: {e}", o.out.display())))?;
    let probe = o.out.join(".p2law-write-test");
    crate::write_atomic(&probe, b"").and_then(|()| std::fs::remove_file(&probe)).map_err(|e| flag("--out", format!("{} is not writable: {e}", o.out.display())))?;
    let corpus = corpus::load(&o.corpus).map_err(|e| flag("--corpus", e.to_string()))?;
    let root = o.lab_dir.join("study");
    say(&format!("corpus {}: {} documents, {} train and {} held-out tokens, sha256 {}\n", corpus.source, corpus.documents, corpus.train.len(), corpus.held_out.len(), &corpus.sha256[..16]));

    let existing = if only.is_some() { None } else { load_existing(&o.out)? };
    let grid = match (&only, &existing, o.budget_hours) {
        (Some(u), _, _) => Grid { parents: vec![u.parent.clone()], ..Grid::full() },
        (None, Some(d), _) => {
            if d.manifest.corpus.sha256 != corpus.sha256 {
                return Err(flag("--out", format!("{} holds a study of another corpus (sha256 {})", o.out.display(), d.manifest.corpus.sha256)));
            }
            say(&format!("resuming: {} of {} units done\n", d.curves.len(), d.manifest.grid.units().len()));
            d.manifest.grid.clone()
        }
        (None, None, None) => Grid::full(),
        (None, None, Some(hours)) => {
            let mut speeds = std::collections::BTreeMap::new();
            for p in p2law_shared::study::STUDY_FAMILY {
                let tps = measure_speed(&p, &corpus, &o.device);
                say(&format!("measured {}: {tps:.0} tokens/s\n", p.name));
                speeds.insert(p.name, tps);
            }
            let cached = |p: &Parent| {
                let c = chain(p, corpus.train.len());
                c.iter().take(2).all(|&t| {
                    let cfg = pretrain_config(p, t, 0);
                    root.join("parents").join(format!("{}-{}-{}x{}-s0", p.name, &corpus.sha256[..12], cfg.steps, cfg.tokens_per_step())).join("loss.json").exists()
                })
            };
            let speed = |p: &Parent| speeds.get(p.name).copied().unwrap_or(1.0);
            let levels = Grid::levels();
            let mut chosen = None;
            for g in &levels {
                let h = estimate_hours(g, &corpus, &speed, &cached);
                say(&format!("grid of {} units on {} parents: about {h:.1} h\n", g.units().len(), g.parents.len()));
                if h <= hours {
                    chosen = Some(g.clone());
                    break;
                }
            }
            if let Some(g) = &chosen {
                say(&format!("{}\n", left_out(&Grid::full(), g)));
            }
            let smallest = levels.last().map_or(0.0, |g| estimate_hours(g, &corpus, &speed, &cached));
            chosen.ok_or_else(|| flag("--budget-hours", format!("{hours} h is less than the smallest grid needs (about {smallest:.1} h)")))?
        }
    };
    let units: Vec<StudyUnit> = match &only {
        Some(u) => vec![u.clone()],
        None => grid.units(),
    };
    let mut data = existing.unwrap_or_else(|| StudyData {
        manifest: Manifest {
            p2law_version: env!("CARGO_PKG_VERSION").into(),
            p2law_commit: commit(),
            device: o.device.describe(),
            corpus: CorpusInfo {
                source: corpus.source.clone(),
                sha256: corpus.sha256.clone(),
                documents: corpus.documents,
                train_tokens: corpus.train.len(),
                held_out_tokens: corpus.held_out.len(),
                split: format!("by document: every tenth of the {} documents (by file name) is held out, whole", corpus.documents),
            },
            grid: grid.clone(),
            eval_windows: EVAL_WINDOWS,
            checkpoints: CHECKPOINTS,
            parents: Vec::new(),
            units: Vec::new(),
            wall_s: 0.0,
            cpu_s: 0.0,
        },
        curves: Vec::new(),
    });
    if only.is_some() {
        data.manifest.grid = Grid { parents: grid.parents.clone(), ..grid.clone() };
    }
    let (wall0, cpu0) = (data.manifest.wall_s, data.manifest.cpu_s);
    let account = |data: &mut StudyData| {
        let (w, c) = started.read();
        data.manifest.wall_s = wall0 + w;
        data.manifest.cpu_s = cpu0 + c;
    };
    // In the grid's order: the first seed of every parent, then the second seeds (a parent's
    // second visit reads it back from the cache).
    let visits: Vec<(u64, &String)> = [0u64, 1].iter().flat_map(|&s| grid.parents.iter().map(move |p| (s, p))).collect();
    for (seed, name) in visits {
        let mine: Vec<&StudyUnit> =
            units.iter().filter(|u| &u.parent == name && u.seed == seed && !data.manifest.units.iter().any(|d| &d.unit == *u)).collect();
        if mine.is_empty() {
            continue;
        }
        let p = study_parent(name).ok_or_else(|| fail(format!("unknown study parent `{name}`")))?;
        let (model, info) = converge(&p, 0, &corpus, &root, &o.device, cancel, say)?;
        if !info.convergence.converged {
            say(&format!(
                "note: {} is not converged by the criterion ({:.2} % from doubling at {:.1} epochs); the epoch cap stops it\n",
                p.name,
                info.convergence.improvement * 100.0,
                info.convergence.epochs
            ));
        }
        match data.manifest.parents.iter_mut().find(|q| q.name == info.name) {
            // Read back from the cache: the times measured when it was made stand.
            Some(q) if info.wall_s < q.wall_s => {
                *q = ParentInfo { wall_s: q.wall_s, cpu_s: q.cpu_s, untimed: Vec::new(), ..info.clone() };
            }
            Some(q) => *q = info.clone(),
            None => data.manifest.parents.push(info.clone()),
        }
        account(&mut data);
        save(&o.out, &data)?;
        for u in mine {
            let (curve, record) = heal(&p, &info, &model, u, grid.post_train_tokens, &corpus, &root, &o.device, cancel, say)?;
            let first = curve.points.first().map_or(f64::NAN, |pt| pt.loss);
            let last = curve.points.last().map_or(f64::NAN, |pt| pt.loss);
            say(&format!("\r\x1b[Kdone {}: rho {:.4}, loss {first:.4} -> {last:.4} ({:.0} s)\n", record.run, record.rho, record.wall_s));
            data.curves.retain(|c| c.run != curve.run);
            data.curves.push(curve);
            data.manifest.units.retain(|d| d.run != record.run);
            data.manifest.units.push(record);
            account(&mut data);
            save(&o.out, &data)?;
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_doubling_chain_respects_the_epoch_cap() {
        let p = p2law_shared::study::STUDY_FAMILY[4];
        // 4.5 M training tokens: the cap is 18 M.
        let c = chain(&p, 4_500_000);
        // 18 M tokens allow 8789 steps of 2048: 8192 is the largest power of two.
        assert_eq!(c, vec![4096 * 2048, 8192 * 2048]);
        assert!(c[1] as f64 <= 4.0 * 4_500_000.0);
    }

    #[test]
    fn a_smaller_grid_says_what_it_leaves_out() {
        let levels = Grid::levels();
        let full = Grid::full();
        assert_eq!(left_out(&full, &levels[0]), "taking the full grid");
        assert_eq!(left_out(&full, &levels[1]), "taking fewer points: leaves out the second seeds of study-h16, study-h32");
        let last = levels.last().unwrap();
        assert_eq!(
            left_out(&full, last),
            "taking fewer points: leaves out parents study-h64, study-h96; depth rates 0.15, 0.35; width rates 0.15, 0.35; N:M patterns 3:4; the second seeds of study-h16, study-h32"
        );
    }

    #[test]
    fn cpu_time_moves_with_work() {
        let before = cpu_seconds();
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed().as_millis() < 200 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        assert!(x != 1);
        assert!(cpu_seconds() - before > 0.1, "{} -> {}", before, cpu_seconds());
    }
}
