//! `p2law serve`: the web app and its API.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (loopback by default; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Where p2law keeps its data.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// The built frontend (`cargo xtask web` writes frontend/dist).
    #[arg(long, default_value = "frontend/dist")]
    pub static_dir: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    std::fs::create_dir_all(&a.data_dir).with_context(|| format!("creating data dir {}", a.data_dir.display()))?;
    let static_dir = a.static_dir.join("index.html").exists().then_some(a.static_dir.clone());
    if static_dir.is_none() {
        eprintln!("warning: {} has no built frontend (run `cargo xtask web`); serving the API only", a.static_dir.display());
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime
        .block_on(crate::server::serve(a.addr, crate::server::AppState::new(static_dir)))
        .with_context(|| format!("serving on {}", a.addr))
}
