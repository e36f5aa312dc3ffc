//! Build orchestration that needs no tool downloaded at build time.
//!
//! `cargo xtask web` builds the Leptos frontend for `wasm32-unknown-unknown` (profile
//! `wasm-release`), generates its JS glue with wasm-bindgen used as a library (pinned to the
//! `wasm-bindgen` in Cargo.lock), shrinks it with wasm-opt when a good one (binaryen >= 116) is
//! installed, copies the static files, and reports the size raw and gzipped.

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("web") => web(),
        _ => {
            eprintln!("usage: cargo xtask web");
            std::process::exit(2);
        }
    }
}

/// The workspace root. `cargo run` sets `CARGO_MANIFEST_DIR` for the process it starts, which
/// names this checkout even when a target directory shared between clones holds an xtask binary
/// built from another one; the compile-time value is only the fallback.
fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from).join("..")
}

fn web() -> Result<()> {
    let root = root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["build", "--locked", "--profile", "wasm-release", "--target", "wasm32-unknown-unknown", "-p", "p2law-frontend"])
        .status()
        .context("running cargo build for wasm32")?;
    if !status.success() {
        bail!("building p2law-frontend for wasm32 failed");
    }
    let wasm = target_dir.join("wasm32-unknown-unknown/wasm-release/p2law_frontend.wasm");
    let dist = root.join("frontend/dist");
    let pkg = dist.join("pkg");
    std::fs::create_dir_all(&pkg)?;
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .web(true)?
        .omit_default_module_path(false)
        .typescript(false)
        .generate(&pkg)
        .context("wasm-bindgen")?;
    let out = pkg.join("p2law_frontend_bg.wasm");
    let before = std::fs::metadata(&out)?.len();
    match wasm_opt() {
        Some(opt) => {
            let tmp = pkg.join("opt.wasm");
            let status = Command::new(&opt)
                .args(["-Oz", "--enable-bulk-memory", "--enable-nontrapping-float-to-int", "--enable-sign-ext", "--enable-mutable-globals", "--enable-reference-types"])
                .arg(&out)
                .arg("-o")
                .arg(&tmp)
                .status()
                .with_context(|| format!("running {}", opt.display()))?;
            if !status.success() {
                bail!("wasm-opt failed");
            }
            std::fs::rename(&tmp, &out)?;
        }
        None => eprintln!("xtask: no wasm-opt >= 116 found (run ./dev setup for binaryen 132 from npm); the bundle is not size-optimised"),
    }
    for f in ["index.html", "style.css"] {
        std::fs::copy(root.join("frontend").join(f), dist.join(f)).with_context(|| format!("copying {f}"))?;
    }
    let bytes = std::fs::read(&out)?;
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&bytes)?;
    let gz_len = gz.finish()?.len();
    let report = format!(
        "{{\"wasm_bytes\": {}, \"wasm_gzip_bytes\": {gz_len}, \"before_wasm_opt_bytes\": {before}}}\n",
        bytes.len()
    );
    std::fs::write(dist.join("size.json"), &report)?;
    println!("frontend/dist: wasm {} KB raw, {} KB gzipped (before wasm-opt {} KB)", bytes.len() / 1024, gz_len / 1024, before / 1024);
    Ok(())
}

/// A wasm-opt new enough not to break wasm-bindgen output: `$P2LAW_WASM_OPT`, the npm binaryen
/// that `./dev setup` installs under `.tools/`, or one on PATH.
fn wasm_opt() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("P2LAW_WASM_OPT").map(PathBuf::from),
        Some(root().join(".tools/node_modules/.bin/wasm-opt")),
        Some(PathBuf::from("wasm-opt")),
    ];
    candidates.into_iter().flatten().find(|c| version_ok(c))
}

fn version_ok(bin: &Path) -> bool {
    let Ok(out) = Command::new(bin).arg("--version").output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    // "wasm-opt version 132 (version_132)"
    text.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|v| v >= 116)
}
