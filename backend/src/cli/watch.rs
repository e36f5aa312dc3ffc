//! `p2law watch`: follows a log while the run writes it and re-forecasts whenever it changes.
//!
//! The file is polled (size and modification time), not watched through the OS, so the same
//! code follows a log on a network file system. A read that finds the file mid-rewrite (a
//! trainer_state.json half written, a CSV line half appended) fails to parse: the view says so
//! and the next poll reads it again. Ctrl-C stops it with exit status 0.

use super::forecast::{ForecastArgs, LogArgs, read_run_bytes, render};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("`{s}`: expected a duration such as 30s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m)")),
    };
    if !(secs.is_finite() && (0.05..=86_400.0).contains(&secs)) {
        return Err(format!("`{s}`: must be between 50ms and a day"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub forecast: ForecastArgs,
    /// How often to look at the file.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub every: Duration,
    /// Print each view below the last instead of redrawing the screen (for logs and pipes).
    #[arg(long)]
    pub plain: bool,
    /// The log the run is writing.
    pub file: PathBuf,
}

/// A bar of `width` cells, `share` of them full.
fn bar(share: f64, width: usize) -> String {
    let full = ((share.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(full), ".".repeat(width - full))
}

fn view(a: &Args, bytes: &[u8]) -> String {
    let name = a.file.display().to_string();
    let run = match read_run_bytes(&name, bytes, &a.log) {
        Ok(r) => r,
        Err(e) => return format!("waiting: {e:#}\n(the file may be mid-write; it is read again at the next change)\n"),
    };
    match a.forecast.options().and_then(|o| run.forecast(&o).map_err(|e| anyhow::anyhow!("{}: {e}", run.file))) {
        Ok(f) => {
            let mut s = String::new();
            if let Some(r) = &f.rule {
                match r.progress {
                    Some(p) => s.push_str(&format!("{} {:5.1} % toward {} ({:.3e} of {:.3e} tokens)\n\n", bar(p, 40), 100.0 * p.min(1.0), r.rule, f.last.tokens, r.tokens.unwrap_or(f64::NAN))),
                    None => s.push_str(&format!("{} the fitted curve never meets {}\n\n", bar(0.0, 40), r.rule)),
                }
            }
            s.push_str(&render(&run, &f));
            s
        }
        Err(e) => format!("waiting: {e:#}\n"),
    }
}

pub fn run(a: Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the timer")?;
    rt.block_on(async move {
        let mut seen: Option<(u64, SystemTime)> = None;
        let mut frames = 0u64;
        loop {
            let stamp = std::fs::metadata(&a.file).ok().map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
            if stamp != seen || frames == 0 {
                let body = match std::fs::read(&a.file) {
                    Ok(bytes) => view(&a, &bytes),
                    Err(e) => format!("waiting: cannot read {}: {e}\n", a.file.display()),
                };
                frames += 1;
                let now = humantime_now();
                if a.plain {
                    println!("--- {} at {now} (view {frames})\n{body}", a.file.display());
                } else {
                    // Clear the screen, cursor home.
                    print!("\x1b[2J\x1b[H{} at {now}, every {:?}; Ctrl-C stops\n\n{body}", a.file.display(), a.every);
                }
                use std::io::Write;
                let _ = std::io::stdout().flush();
                seen = stamp;
            }
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tokio::time::sleep(a.every) => {}
            }
        }
        println!("\nstopped after {frames} view(s)");
        Ok(())
    })
}

/// Wall-clock time of day (UTC), for the view's header.
fn humantime_now() -> String {
    let s = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02} UTC", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_bars() {
        assert_eq!(duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("5").unwrap(), Duration::from_secs(5));
        assert!(duration("1ms").is_err() && duration("3h").is_err() && duration("soon").is_err());
        assert_eq!(bar(0.25, 8), "[##......]");
        assert_eq!(bar(2.0, 4), "[####]");
    }
}
