//! `p2law convert`: real logs in, canonical curves out.

use super::load::LoadArgs;
use anyhow::Result;
use p2law_shared::logs::canonical;
use std::io::Write;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Write JSON lines instead of CSV.
    #[arg(long)]
    pub jsonl: bool,
}

pub fn run(a: Args) -> Result<()> {
    let (curves, logs) = a.load.load()?;
    for log in &logs {
        eprintln!(
            "{}: {:?}, {} curve(s), {} checkpoint(s), tokens {:?}, {} entr(ies) skipped, {} superseded by a resumed run, {} in warm-up",
            log.file,
            log.format,
            log.curves.len(),
            log.curves.iter().map(|c| c.points.len()).sum::<usize>(),
            log.token_source,
            log.skipped.len(),
            log.deduplicated,
            log.warmup_dropped,
        );
    }
    let out = if a.jsonl { canonical::write_jsonl(&curves) } else { canonical::write_csv(&curves) };
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}
