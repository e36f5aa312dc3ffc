//! `p2law prune`: prune a Hugging Face checkpoint once (no post-training) and write it back as a
//! Hugging Face directory, with its held-out loss before and after.

use crate::lab::sweep::{self, Resolved, Source};
use crate::lab::{device, hf, train};
use anyhow::{Context, Result, bail};
use p2law_shared::calibrate::{NmPattern, PruneMethod, Pruning, Unit};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The checkpoint directory (LlamaForCausalLM or Qwen2ForCausalLM: config.json, safetensors, tokenizer.json).
    #[arg(long)]
    pub parent: PathBuf,
    /// `depth` (remove layers), `width` (key/value groups and MLP channels) or `sparse` (N:M, Wanda).
    #[arg(long, value_enum)]
    pub method: PruneMethod,
    /// Target fraction of parameters for depth and width.
    #[arg(long)]
    pub rate: Option<f64>,
    /// N:M pattern for sparse.
    #[arg(long, default_value = "2:4")]
    pub pattern: NmPattern,
    /// Calibration and held-out text (a file or directory; default: `<data-dir>/corpus/shakespeare`).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// The new model's directory (must not exist or be empty).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = device::DeviceChoice::Cpu)]
    pub device: device::DeviceChoice,
}

pub fn run(a: Args) -> Result<()> {
    let pruning = match (a.method, a.rate) {
        (PruneMethod::Sparse, _) => Pruning::Sparse(a.pattern),
        (m, Some(r)) => Pruning::parse(m, &r.to_string()).map_err(|e| anyhow::anyhow!("--rate: {e}"))?,
        (m, None) => bail!("--rate is needed for --method {m}"),
    };
    let dir = a.parent.canonicalize().with_context(|| format!("--parent {}", a.parent.display()))?;
    let models_dir = dir.parent().map(PathBuf::from).unwrap_or_default();
    let name = format!("hf:{}", dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()));
    let r = Resolved::new(&name, &models_dir)?;
    let Source::Hf(h) = &r.source else { bail!("--parent: not a Hugging Face checkpoint") };
    let corpus_path = a.corpus.clone().unwrap_or_else(|| sweep::corpus_path(&a.data_dir.join("corpus"), None));
    let corpus = r.corpus(&corpus_path)?;
    let dev = device::select(a.device)?;
    let started = Instant::now();
    let model = h.load(r.seq_len + 1, &dev.device)?;
    let loaded = started.elapsed().as_secs_f64();
    let l0 = train::evaluate(&model, &corpus.held_out, r.seq_len, 64);
    let unit = Unit { parent: name.clone(), pruning };
    let pruned = sweep::prune_unit(model, &r.shape, r.seq_len, pruning, &corpus).map_err(anyhow::Error::msg)?;
    let loss = train::evaluate(&pruned.model, &corpus.held_out, r.seq_len, 64);
    let record = sweep::export_record(&name, &unit, (pruned.rho, pruned.removed, &pruned.detail), 0, &[p2law_shared::data::CurvePoint { tokens: 0.0, loss }]);
    let written = hf::export(&pruned.model, &pruned.shape, h, record, &a.out, 4 << 30)?;
    println!("{} ({}, {:?}): N0 = {}, loaded in {loaded:.1} s", h.dir.display(), h.config.arch.class(), h.dtype, r.shape.parameters());
    println!("{}: achieved rho = {:.6} ({} parameters); {}", unit.key(), pruned.rho, pruned.removed, pruned.detail);
    println!("held-out loss ({} tokens of {}): {l0:.4} before, {loss:.4} after pruning", corpus.held_out.len(), corpus.source);
    println!("wrote {} ({} files, {} bytes)", written.dir.display(), written.files.len(), written.bytes);
    Ok(())
}
