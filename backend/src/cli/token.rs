//! `p2law token`: replace the API token (the old one stops working) and print the new one once.

use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data dir of the server whose token to replace.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let token = runtime.block_on(async {
        let store = crate::store::Store::open(&a.data_dir).await.with_context(|| format!("opening the store in {}", a.data_dir.display()))?;
        anyhow::Ok(store.rotate_token().await?)
    })?;
    println!("{token}");
    Ok(())
}
