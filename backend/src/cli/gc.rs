//! `p2law gc`: what a data dir no longer needs, removed (or listed with `--dry-run`): the
//! working folders of finished jobs, exports of deleted jobs, pretrained parents no job has
//! used for a while, temporary files of killed processes, and the progress events of old jobs.
//! Uploads (kept byte for byte), runs, fits and every job's curves are never touched.

use crate::server::jobs::{export_dir, job_dir};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data dir to clean (a server's `--data-dir`).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Remove cached pretrained parents (`lab/parents/*`) unused for this many days; none while a
    /// job is queued or running.
    #[arg(long, default_value_t = 30.0)]
    pub parents_days: f64,
    /// Also remove the exports of jobs that finished this many days ago (default: only those of
    /// jobs no longer in the store).
    #[arg(long)]
    pub exports_days: Option<f64>,
    /// Drop the original bytes of uploads made this many days ago (default: never; uploads are
    /// kept byte for byte). Their runs and fits stay; `GET /api/uploads/{id}/raw` answers 410.
    #[arg(long)]
    pub upload_bytes_days: Option<f64>,
    /// Drop the progress events (steps without a checkpoint) of jobs finished this many days ago.
    #[arg(long, default_value_t = 30.0)]
    pub events_days: f64,
    /// Rewrite the SQLite file without its free pages afterwards.
    #[arg(long)]
    pub vacuum: bool,
    /// List what would go, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Temporary files younger than this may belong to a write in progress.
const TEMP_GRACE: Duration = Duration::from_secs(3600);

fn days(d: f64, flag: &str) -> Result<Duration> {
    if !(d.is_finite() && d >= 0.0) {
        bail!("--{flag}: a number of days, at least 0, got {d}");
    }
    Ok(Duration::from_secs_f64(d * 86_400.0))
}

/// Bytes under `path` (a file or a directory).
fn size(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path).map(|it| it.flatten().map(|e| size(&e.path())).sum()).unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// The newest modification time under `path`.
fn newest(path: &Path) -> Option<SystemTime> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let own = m.modified().ok();
    if !m.is_dir() {
        return own;
    }
    let inner = std::fs::read_dir(path).ok()?.flatten().filter_map(|e| newest(&e.path())).max();
    own.into_iter().chain(inner).max()
}

fn age(t: Option<SystemTime>) -> Duration {
    t.and_then(|t| SystemTime::now().duration_since(t).ok()).unwrap_or_default()
}

/// Entries of a directory (none when it does not exist).
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).map(|it| it.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    v.sort();
    v
}

struct Sweep {
    dry_run: bool,
    removed: Vec<(PathBuf, u64, String)>,
}

impl Sweep {
    fn remove(&mut self, path: &Path, why: impl Into<String>) -> Result<()> {
        let bytes = size(path);
        if !self.dry_run {
            let r = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
            r.with_context(|| format!("removing {}", path.display()))?;
        }
        self.removed.push((path.to_path_buf(), bytes, why.into()));
        Ok(())
    }
}

/// Temporary files and directories of interrupted writes, older than [`TEMP_GRACE`]:
/// `.ckpt-<step>.tmp` checkpoints, `.<name>.tmp-<pid>` files of [`crate::write_atomic`] and
/// `.<name>.partial-<pid>` exports.
fn temporaries(dir: &Path, out: &mut Vec<PathBuf>) {
    for p in entries(dir) {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let temp = name.starts_with(".ckpt-") && name.ends_with(".tmp") || name.starts_with('.') && (name.contains(".tmp-") || name.contains(".partial-"));
        if temp {
            if age(newest(&p)) > TEMP_GRACE {
                out.push(p);
            }
        } else if p.is_dir() && !p.is_symlink() {
            temporaries(&p, out);
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    let parents_age = days(a.parents_days, "parents-days")?;
    let exports_age = a.exports_days.map(|d| days(d, "exports-days")).transpose()?;
    days(a.events_days, "events-days")?;
    if let Some(d) = a.upload_bytes_days {
        days(d, "upload-bytes-days")?;
    }
    let data = &a.data_dir;
    if !data.join("p2law.sqlite").exists() {
        bail!("{}: no p2law store here (p2law.sqlite); give the server's --data-dir", data.display());
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let store = runtime.block_on(crate::store::Store::open(data)).with_context(|| format!("opening the store in {}", data.display()))?;
    let jobs = runtime.block_on(store.calibrations())?;
    let active = jobs.iter().any(|j| !j.status.finished());
    let mut sweep = Sweep { dry_run: a.dry_run, removed: Vec::new() };

    // Job folders: only a queued or running job resumes from its checkpoints.
    let jobs_root = job_dir(data, 0).parent().map(Path::to_path_buf).unwrap_or_default();
    for p in entries(&jobs_root) {
        let id = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<i64>().ok());
        match id.and_then(|id| jobs.iter().find(|j| j.id == id)) {
            Some(j) if !j.status.finished() => {}
            Some(j) => sweep.remove(&p, format!("job {} is {}", j.id, j.status.as_str()))?,
            None => sweep.remove(&p, "no such job in the store")?,
        }
    }
    // Exports: those of jobs gone from the store, and with --exports-days those of old jobs.
    let exports_root = export_dir(data, 0).parent().map(Path::to_path_buf).unwrap_or_default();
    for p in entries(&exports_root) {
        let id = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("job-")).and_then(|n| n.parse::<i64>().ok());
        let Some(id) = id else { continue };
        match jobs.iter().find(|j| j.id == id) {
            None => sweep.remove(&p, "no such job in the store")?,
            Some(j) if j.status.finished() && exports_age.is_some_and(|max| age(newest(&p)) > max) => {
                sweep.remove(&p, format!("job {} finished over {} days ago", j.id, a.exports_days.unwrap_or_default()))?
            }
            Some(_) => {}
        }
    }
    // Pretrained parents: a cache, rebuilt on demand; never while a job may be reading it.
    if !active {
        for p in entries(&data.join("lab").join("parents")) {
            let idle = age(newest(&p));
            if idle > parents_age {
                sweep.remove(&p, format!("unused for {:.0} days", idle.as_secs_f64() / 86_400.0))?;
            }
        }
    } else {
        println!("parents kept: a job is queued or running");
    }
    let mut temps = Vec::new();
    temporaries(data, &mut temps);
    for p in temps {
        sweep.remove(&p, "temporary file of an interrupted write")?;
    }

    let events = if a.dry_run { 0 } else { runtime.block_on(store.compact_events(a.events_days))? };
    let originals = match a.upload_bytes_days {
        Some(d) => Some(runtime.block_on(store.drop_upload_bytes(d, a.dry_run))?),
        None => None,
    };
    if a.vacuum && !a.dry_run {
        runtime.block_on(store.vacuum()).context("VACUUM (is a server writing? it waits for the server's transactions)")?;
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for (p, bytes, why) in &sweep.removed {
        let shown = p.strip_prefix(data).unwrap_or(p);
        println!("{verb} {} ({bytes} bytes): {why}", shown.display());
    }
    let total: u64 = sweep.removed.iter().map(|r| r.1).sum();
    println!("{verb} {} paths, {total} bytes; {events} progress events dropped", sweep.removed.len());
    if let Some((n, bytes)) = originals {
        println!("{} the original bytes of {n} uploads ({bytes} bytes); their runs stay", if a.dry_run { "would drop" } else { "dropped" });
    }
    Ok(())
}
