//! Benchmark (not a test): input → redraw time of the calculator in headless Chromium, in the
//! page's own code path, for three curves of 400 points with bootstrap bands (the default view).
//!
//! Each round types new rates into the form and times, in the page, (a) the recompute + SVG
//! render inside the WASM app, (b) input event → DOM updated, (c) input event → next frame.
//! Prints the medians. Needs `cargo xtask web` and Debian's chromium + chromium-driver.
//!
//! `cargo run --release -p p2law-tests --bin browser_bench [-- ROUNDS]`

use anyhow::{Context, Result};
use p2law_tests::{Backend, Browser, workspace};

const ROUND: &str = r#"
const cb = arguments[arguments.length - 1];
const before = window.__p2law_redraws || 0;
const input = document.getElementById('rates');
const t0 = performance.now();
input.value = arguments[0];
input.dispatchEvent(new Event('input', { bubbles: true }));
const check = () => {
  if ((window.__p2law_redraws || 0) > before) {
    const dom = performance.now() - t0;
    requestAnimationFrame(() => cb([window.__p2law_redraw_ms, dom, performance.now() - t0]));
  } else {
    setTimeout(check, 0);
  }
};
check();
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let backend = Backend::start().await?;
    let b = Browser::start().await?;
    b.client.goto(&backend.url).await?;
    b.wait_for("#plot path.curve").await?;
    let curves = b.client.find_all(fantoccini::Locator::Css("#plot path.curve")).await?.len();
    let bands = b.client.find_all(fantoccini::Locator::Css("#plot path.band")).await?.len();
    let points = b.client.execute("return document.getElementById('points').value;", vec![]).await?.as_str().unwrap_or_default().to_string();
    let (mut compute, mut dom, mut frame) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let rates = format!("{:.3},0.35,0.5", 0.1 + 0.002 * i as f64);
        let v = b.client.execute_async(ROUND, vec![serde_json::json!(rates)]).await?;
        let t: Vec<f64> = serde_json::from_value(v).context("timings")?;
        if i >= 5 {
            // The first rounds warm up the JIT and allocator.
            compute.push(t[0]);
            dom.push(t[1]);
            frame.push(t[2]);
        }
    }
    let errors = b.errors().await?;
    b.close().await?;
    let size = std::fs::read_to_string(workspace().join("frontend/dist/size.json")).unwrap_or_default();
    println!("view: {curves} curves x {points} points, {bands} bands (200 bootstrap samples each)");
    println!("rounds: {} (after 5 warm-up)", compute.len());
    println!("median recompute + SVG render in WASM: {:.2} ms", median(compute));
    println!("median input event -> DOM updated:     {:.2} ms", median(dom));
    println!("median input event -> next frame:      {:.2} ms", median(frame));
    println!("bundle: {}", size.trim());
    anyhow::ensure!(errors.is_empty(), "console errors: {errors:?}");
    Ok(())
}
