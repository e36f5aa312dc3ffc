//! `p2law worker`: runs calibration units from a PostgreSQL database that a `p2law serve
//! --database` queues them in (see `p2law_backend::worker`).

use anyhow::{Context, Result};
use p2law_shared::calibrate::DeviceChoice;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The database the server queues units in (`postgres://user:password@host/db`).
    #[arg(long, env = "P2LAW_DATABASE", hide_env_values = true)]
    pub database: String,
    /// Parents, checkpoints and exports. Give every worker the same directory (a shared file
    /// system) and a unit taken over from a dead worker resumes from its last checkpoint;
    /// with one per worker it starts again and parents are pretrained once per worker.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Corpora (default: `<data-dir>/corpus`).
    #[arg(long)]
    pub corpus_dir: Option<PathBuf>,
    /// Device for every unit, instead of each job's choice.
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    /// The worker's name in the queue and in events (default: host name and process id).
    #[arg(long)]
    pub name: Option<String>,
    /// Seconds a claimed unit stays this worker's without a renewal (renewed every third).
    #[arg(long, default_value_t = 30.0)]
    pub lease_s: f64,
    /// Exit once no unit is left to claim instead of waiting for more.
    #[arg(long)]
    pub exit_when_idle: bool,
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    format!("{}-{}", if host.is_empty() { "worker" } else { &host }, std::process::id())
}

pub fn run(a: Args) -> Result<()> {
    if !(a.lease_s.is_finite() && a.lease_s >= 1.0) {
        anyhow::bail!("--lease-s: must be at least 1 second, got {}", a.lease_s);
    }
    if !(a.database.starts_with("postgres://") || a.database.starts_with("postgresql://")) {
        anyhow::bail!("--database `{}`: workers share a PostgreSQL database (postgres://...)", crate::store::masked(&a.database));
    }
    std::fs::create_dir_all(&a.data_dir).with_context(|| format!("creating data dir {}", a.data_dir.display()))?;
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).with_writer(std::io::stderr).try_init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let store = crate::store::Store::open_postgres(&a.database).await.with_context(|| format!("opening the database {}", crate::store::masked(&a.database)))?;
        let cfg = crate::worker::WorkerConfig {
            name: a.name.clone().unwrap_or_else(default_name),
            corpus_dir: a.corpus_dir.clone().unwrap_or_else(|| a.data_dir.join("corpus")),
            data_dir: a.data_dir.clone(),
            device: a.device,
            lease_s: a.lease_s,
            poll: std::time::Duration::from_millis(500),
            exit_when_idle: a.exit_when_idle,
        };
        eprintln!("p2law worker {} on {}", cfg.name, crate::store::masked(&a.database));
        let stop = Arc::new(AtomicBool::new(false));
        let signal = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = async { if let Some(t) = term.as_mut() { t.recv().await; } else { std::future::pending::<()>().await } } => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                eprintln!("p2law worker: stopping; the running unit checkpoints and goes back to the queue");
                stop.store(true, Ordering::SeqCst);
            })
        };
        crate::worker::run(store, cfg, stop).await;
        signal.abort();
        Ok(())
    })
}
