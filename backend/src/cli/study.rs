//! `p2law study run` (make the P² study's data, resumably) and `p2law study report` (fit and
//! analyse it, write the Markdown report and its figures).

use crate::lab::{device, study};
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: StudyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum StudyCommand {
    /// Pretrain the study's parents, prune and heal every unit of the grid; writes
    /// `curves.csv` and `manifest.json` into --out as each unit finishes, and resumes there.
    Run(RunArgs),
    /// Fit and analyse study data; writes `README.md` and SVG figures into --out.
    Report(super::study_report::Args),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Output directory (resumed when it holds a study already).
    #[arg(long)]
    pub out: PathBuf,
    /// Re-make one unit (`parent/method/setting/s<seed>`, as in the `run` column) into --out.
    #[arg(long)]
    pub only: Option<String>,
    /// Choose the largest grid whose estimated time (from speeds measured here) fits.
    #[arg(long)]
    pub budget_hours: Option<f64>,
    /// A committed study to compare the --only unit with (prints the largest difference).
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Byte-level training text (default: `<data-dir>/corpus/shakespeare`, set up by `./dev setup`).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Cache of pretrained parents and run checkpoints.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    #[arg(long, value_enum, default_value_t = device::DeviceChoice::Auto)]
    pub device: device::DeviceChoice,
}

pub fn run(a: Args) -> Result<()> {
    match a.command {
        StudyCommand::Run(r) => run_study(r),
        StudyCommand::Report(r) => super::study_report::run(r),
    }
}

fn run_study(a: RunArgs) -> Result<()> {
    if a.compare.is_some() && a.only.is_none() {
        bail!("--compare: compares the unit of --only; give --only too");
    }
    let corpus = a.corpus.clone().unwrap_or_else(|| crate::lab::sweep::corpus_path(&a.data_dir.join("corpus"), None));
    let dev = device::select(a.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    let o = study::Options { out: a.out.clone(), lab_dir: a.data_dir.join("lab"), corpus, device: dev.clone(), only: a.only.clone(), budget_hours: a.budget_hours };
    eprintln!("p2law study run on {}", dev.describe());
    let cancel = AtomicBool::new(false);
    let mut say = |s: &str| {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(s.as_bytes());
        let _ = e.flush();
    };
    let data = study::run(&o, &cancel, &mut say).map_err(anyhow::Error::msg)?;
    eprintln!();
    println!(
        "{} curves of {} parents -> {} and {} ({:.0} s wall, {:.0} s CPU in all)",
        data.curves.len(),
        data.manifest.parents.len(),
        a.out.join("curves.csv").display(),
        a.out.join("manifest.json").display(),
        data.manifest.wall_s,
        data.manifest.cpu_s
    );
    if let (Some(dir), Some(run)) = (&a.compare, &a.only) {
        let committed = study::load_dir(dir)?;
        let old = committed.curves.iter().find(|c| &c.run == run).with_context(|| format!("--compare: {} has no curve `{run}`", dir.display()))?;
        let new = data.curves.iter().find(|c| &c.run == run).context("the re-made unit")?;
        let mut worst = 0.0f64;
        for (p, q) in old.points.iter().zip(&new.points) {
            if p.tokens != q.tokens {
                bail!("--compare: checkpoints differ ({} vs {} tokens)", p.tokens, q.tokens);
            }
            worst = worst.max((p.loss - q.loss).abs());
        }
        println!("{run}: largest difference from {} over {} checkpoints: {worst:.4} nats", dir.display(), old.points.len().min(new.points.len()));
    }
    Ok(())
}
