//! The calculator in a real headless Chromium against the real backend on 127.0.0.1.

use anyhow::{Context, Result};
use p2law_shared::budget::Rule;
use p2law_shared::presets::presets;
use p2law_shared::report::recommend;
use p2law_shared::Inputs;
use p2law_tests::{Backend, Browser, artifacts, p2law_bin, set_input};
use std::time::Duration;

/// Llama-3.1-8B, the default model: its computed parameter count.
const N0: f64 = 8_030_261_248.0;

/// `p2law predict` / `p2law budget` on the same inputs as the page, through the real binary.
fn cli_json(args: &[&str]) -> Result<serde_json::Value> {
    let out = std::process::Command::new(p2law_bin()?).args(args).output()?;
    anyhow::ensure!(out.status.success(), "p2law {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn number_attr(b: &Browser, css: &str, name: &str) -> Result<f64> {
    let v = b.attr(css, name).await?;
    v.parse().with_context(|| format!("`{css}` {name}=`{v}`"))
}

/// Waits until the first curve's path differs from `before`.
async fn wait_changed(b: &Browser, before: &str) -> Result<String> {
    for _ in 0..100 {
        let d = b.attr("#plot path.curve", "d").await?;
        if d != before {
            return Ok(d);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the curve did not change")
}

/// Fits a P² law with `p2law fit` to curves drawn from known coefficients (test data, not a preset).
fn p2_fit_file(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let [nc, dc, e, alpha, beta, gamma, delta] = [40.0, 600.0, 0.8, 0.2, 0.35, -0.8, 0.05f64];
    let mut csv = String::from("run,n0,rho,l0,tokens,loss\n");
    for (n0, l0) in [(1.2e8f64, 3.3f64), (1.4e9, 2.6), (8e9, 1.9)] {
        for rho in [0.15f64, 0.3, 0.5] {
            for k in 0..10 {
                let d = 1e7 * 10f64.powf(k as f64 * 0.3);
                let loss = l0 + (1.0 / rho).powf(gamma) * (1.0 / n0).powf(delta) * (nc / n0.powf(alpha) + dc / d.powf(beta) + e);
                csv.push_str(&format!("m{n0:e}-{rho},{n0},{rho},{l0},{d},{loss}\n"));
            }
        }
    }
    let data = dir.join("p2-curves.csv");
    std::fs::write(&data, csv)?;
    let out = dir.join("p2-fit.json");
    let status = std::process::Command::new(p2law_bin()?)
        .args(["fit", "--law", "p2", "--out", &out.display().to_string(), &data.display().to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "p2law fit failed");
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calculator_draws_reacts_shares_and_matches_the_cli() -> Result<()> {
    let backend = Backend::start().await?;
    let b = Browser::start().await?;
    b.client.goto(&backend.url).await?;

    // A curve is drawn, three series with bands, one table row each.
    let d0 = b.attr("#plot path.curve", "d").await?;
    // The default 400 points per curve: one move and 399 lines, every vertex inside the plot.
    assert_eq!((d0.matches('M').count(), d0.matches('L').count()), (1, 399), "{d0}");
    let curves = b.client.find_all(fantoccini::Locator::Css("#plot path.curve")).await?;
    assert_eq!(curves.len(), 3);
    assert_eq!(b.client.find_all(fantoccini::Locator::Css("#plot path.band")).await?.len(), 3);

    // The page's numbers equal the CLI's for the same inputs.
    let dir = tempfile::tempdir()?;
    let fit = dir.path().join("refit.json");
    // The default view is the P² preset of the default method (depth), from p2law's own study.
    let id = p2law_shared::presets::study_preset_for("depth").context("a P² preset ships")?;
    let preset = presets().into_iter().find(|p| p.id == id).context("preset")?;
    std::fs::write(&fit, serde_json::to_string(&preset.report)?)?;
    let fit_arg = fit.display().to_string();
    let n0 = N0.to_string();
    let page_loss = number_attr(&b, "#results tr[data-series='0'] td.final-loss", "data-value").await?;
    let page_budget = number_attr(&b, "#results tr[data-series='0'] td.budget", "data-value").await?;
    let p = cli_json(&["predict", "--fit", &fit_arg, "--n0", &n0, "--rho", "0.2", "--l0", "1.9", "--tokens", "1e12", "--json"])?;
    let cli_loss = p["predictions"][0]["loss"].as_f64().context("loss")?;
    assert!((page_loss - cli_loss).abs() <= 1e-12 * cli_loss, "page {page_loss} vs p2law predict {cli_loss}");
    let q = cli_json(&["budget", "--fit", &fit_arg, "--n0", &n0, "--rho", "0.2", "--l0", "1.9", "--rule", "slope:0.01", "--json"])?;
    let cli_budget = q["recommendation"]["tokens"].as_f64().context("tokens")?;
    assert!((page_budget - cli_budget).abs() <= 1e-12 * cli_budget, "page {page_budget} vs p2law budget {cli_budget}");
    // A higher rate needs more healing tokens, and Llama-3.1-8B lies far beyond the study's parents:
    // the page says by how far.
    let mut budgets = Vec::new();
    for i in 0..3 {
        budgets.push(number_attr(&b, &format!("#results tr[data-series='{i}'] td.budget"), "data-value").await?);
    }
    assert!(budgets.windows(2).all(|w| w[1] > w[0]), "budgets by rate: {budgets:?}");
    let warning = b.wait_for("#messages li.extrapolation").await?.text().await?;
    assert!(warning.contains("the largest calibrated parent"), "{warning}");

    // Hover read-out: the law's loss at the tokens under the pointer.
    b.client
        .execute(
            "const p = document.getElementById('plot'); const r = p.getBoundingClientRect(); \
             p.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2}));",
            vec![],
        )
        .await?;
    let mut readout = String::new();
    for _ in 0..50 {
        readout = b.wait_for("#readout").await?.text().await?;
        if readout.starts_with("D = ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(readout.starts_with("D = ") && readout.contains("ρ = 0.2: "), "{readout}");

    // Exports: capture what each button hands to the browser's download.
    let exports = b
        .client
        .execute_async(
            r#"const cb = arguments[arguments.length - 1];
               const got = {};
               const blobs = new Map();
               const make = URL.createObjectURL;
               URL.createObjectURL = (blob) => { const u = make(blob); blobs.set(u, blob); return u; };
               HTMLAnchorElement.prototype.click = function () { got[this.download] = this.href; };
               for (const id of ['export-svg', 'export-csv', 'export-png']) document.getElementById(id).click();
               const wait = async () => {
                 for (let i = 0; i < 100 && !got['p2law-curves.png']; i++) await new Promise(r => setTimeout(r, 20));
                 cb({
                   svg: await blobs.get(got['p2law-curves.svg']).text(),
                   csv: await blobs.get(got['p2law-curves.csv']).text(),
                   png: (got['p2law-curves.png'] || '').slice(0, 22),
                 });
               };
               wait();"#,
            vec![],
        )
        .await?;
    let svg = exports["svg"].as_str().context("svg export")?;
    assert!(svg.starts_with("<svg") && svg.matches(r#"class="curve""#).count() == 3);
    let csv = exports["csv"].as_str().context("csv export")?;
    assert_eq!(csv.lines().count(), 1 + 3 * 400, "header + 3 curves x 400 points");
    assert!(csv.starts_with("curve,rho,n,tokens,loss,band_lo,band_hi\n"));
    assert_eq!(exports["png"], "data:image/png;base64,");

    let shot = artifacts()?.join("calculator-default.png");
    std::fs::write(&shot, b.client.screenshot().await?)?;
    println!("screenshot: {}", shot.display());

    // A P² fit the user pastes (fitted here by `p2law fit` on curves drawn from a known P² law),
    // shown alone: raising the first rate from 0.2 to 0.3 moves the curve and the budget the way
    // the law says.
    let p2_fit = p2_fit_file(dir.path())?;
    let p2_text = std::fs::read_to_string(&p2_fit)?;
    b.client
        .execute(
            "const t = document.getElementById('fit-paste'); t.value = arguments[0]; t.dispatchEvent(new Event('input', {bubbles: true}));",
            vec![serde_json::json!(p2_text)],
        )
        .await?;
    b.wait_for("#fit-paste-add").await?.click().await?;
    b.wait_for("input.preset[data-id='p2']").await?.click().await?;
    let d_p2 = wait_changed(&b, &d0).await?;
    let report: p2law_shared::FitReport = serde_json::from_str(&p2_text)?;
    let page_p2_budget = number_attr(&b, "#results tr[data-series='0'] td.budget", "data-value").await?;
    let p2_fit_arg = p2_fit.display().to_string();
    let q = cli_json(&["budget", "--fit", &p2_fit_arg, "--n0", &n0, "--rho", "0.2", "--l0", "1.9", "--rule", "slope:0.01", "--json"])?;
    let cli_p2_budget = q["recommendation"]["tokens"].as_f64().context("tokens")?;
    assert!((page_p2_budget - cli_p2_budget).abs() <= 1e-12 * cli_p2_budget, "page {page_p2_budget} vs p2law budget {cli_p2_budget}");
    let page_p2_loss = number_attr(&b, "#results tr[data-series='0'] td.final-loss", "data-value").await?;

    set_input(&b, "rates", "0.3,0.35,0.5").await?;
    let d1 = wait_changed(&b, &d_p2).await?;
    let loss_after = number_attr(&b, "#results tr[data-series='0'] td.final-loss", "data-value").await?;
    let budget_after = number_attr(&b, "#results tr[data-series='0'] td.budget", "data-value").await?;
    let law = |rho: f64| -> Result<(f64, f64)> {
        let x = Inputs { n0: N0, rho, l0: Some(1.9), tokens: 1e12 };
        let loss = p2law_shared::fit::predict(report.law, &report.coefficients()?, &x);
        Ok((loss, recommend(&report, &x, Rule::Slope(0.01), None, None)?.tokens))
    };
    let ((loss_lo, budget_lo), (loss_hi, budget_hi)) = (law(0.2)?, law(0.3)?);
    assert!(budget_hi != budget_lo && loss_hi != loss_lo, "the law must react to rho");
    assert_eq!((loss_after - page_p2_loss).signum(), (loss_hi - loss_lo).signum(), "loss {page_p2_loss} -> {loss_after}");
    assert_eq!((budget_after - page_p2_budget).signum(), (budget_hi - budget_lo).signum(), "budget {page_p2_budget} -> {budget_after}");
    assert!((budget_after / budget_hi - 1.0).abs() < 1e-12 && (loss_after / loss_hi - 1.0).abs() < 1e-12);

    // The URL holds the state: a fresh browser restores it exactly.
    let shared = b.client.current_url().await?.to_string();
    assert!(shared.contains("rates=0.3,0.35,0.5") && shared.contains("inline:p2:"), "{shared}");
    let shot = artifacts()?.join("calculator-p2.png");
    std::fs::write(&shot, b.client.screenshot().await?)?;
    println!("screenshot: {}", shot.display());
    let errors = b.errors().await?;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    b.close().await?;

    let c = Browser::start().await?;
    c.client.goto(&shared).await?;
    let d2 = c.attr("#plot path.curve", "d").await?;
    assert_eq!(d2, d1, "the shared link draws the same curve");
    let rates = c.client.execute("return document.getElementById('rates').value;", vec![]).await?;
    assert_eq!(rates, "0.3,0.35,0.5");
    assert_eq!(number_attr(&c, "#results tr[data-series='0'] td.budget", "data-value").await?, budget_after);
    let errors = c.errors().await?;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // Invalid values in a link: an inline message and the defaults, never a blank page.
    c.client.goto(&format!("{}?rates=abc&dmin=oops&rule=speed:3", backend.url)).await?;
    c.wait_for("#plot path.curve").await?;
    let messages = c.wait_for("#messages li").await?.text().await?;
    assert!(!messages.is_empty());
    let all = c.client.find(fantoccini::Locator::Css("#messages")).await?.text().await?;
    assert!(all.contains("rates") && all.contains("dmin") && all.contains("rule"), "{all}");
    assert_eq!(c.client.find_all(fantoccini::Locator::Css("#plot path.curve")).await?.len(), 3);
    let errors = c.errors().await?;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    c.close().await?;
    Ok(())
}

/// The Refit page: a log file in, the preview drawn by the browser's own parse, a fit on the
/// server (stored) and one in WASM (nothing uploaded), then the stored fit in the calculator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refit_page_previews_fits_and_opens_the_fit_in_the_calculator() -> Result<()> {
    let backend = Backend::start().await?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("five-runs.csv");
    std::fs::write(&log, p2law_tests::p2_curves_csv(5))?;
    let b = Browser::start().await?;
    b.client.goto(&format!("{}refit", backend.url)).await?;
    b.wait_for("#log-files").await?.send_keys(&log.display().to_string()).await?;
    let summary = b.wait_for("fieldset.file .parse.ok").await?.text().await?;
    assert!(summary.contains("5 run(s), 50 checkpoint(s)"), "{summary}");
    assert_eq!(b.client.find_all(fantoccini::Locator::Css("#preview circle.observed")).await?.len(), 50);

    // Per-run metadata is validated as it is typed, naming the run and the field.
    b.client
        .execute(
            "const e = document.querySelector(\"input.run-rho[data-run='m1.2e8-0.15']\"); e.focus(); e.value = '1.5'; e.dispatchEvent(new Event('input', {bubbles: true}));",
            vec![],
        )
        .await?;
    let bad = b.wait_for("fieldset.file .parse.error").await?.text().await?;
    assert!(bad.contains("field `runs.m1.2e8-0.15.rho`"), "{bad}");
    let focused = b.client.execute("return document.activeElement.getAttribute('data-run');", vec![]).await?;
    assert_eq!(focused, "m1.2e8-0.15", "typing keeps the focus in the field");
    set_run_rho(&b, "m1.2e8-0.15", "").await?;
    b.wait_for("fieldset.file .parse.ok").await?;

    // Fit in the browser: nothing is uploaded.
    b.wait_for("#fit-here").await?.click().await?;
    b.wait_for("#fit-result .coefficients").await?;
    let status = b.wait_for("#refit-status").await?.text().await?;
    assert!(status.contains("nothing was uploaded"), "{status}");
    let runs: serde_json::Value = reqwest_get(&format!("{}api/runs", backend.url)).await?;
    assert_eq!(runs, serde_json::json!([]));
    let here = coefficient(&b, "gamma").await?;

    // Fit on the server with the token: stored, same coefficients as in the browser.
    set_input(&b, "token", p2law_tests::TOKEN).await?;
    b.wait_for("#fit-server").await?.click().await?;
    for _ in 0..200 {
        if b.wait_for("#refit-status").await?.text().await?.contains("stored as fit #") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = b.wait_for("#refit-status").await?.text().await?;
    assert!(status.contains("stored as fit #1"), "{status}");
    let there = coefficient(&b, "gamma").await?;
    assert!((here - there).abs() <= 1e-9 * here.abs(), "browser {here} vs server {there}");
    assert_eq!(b.client.find_all(fantoccini::Locator::Css("#fit-plot path.curve")).await?.len(), 5);
    let shot = artifacts()?.join("refit.png");
    std::fs::write(&shot, b.client.screenshot().await?)?;
    println!("screenshot: {}", shot.display());

    // Open in calculator: the stored fit, fetched by id, is drawn.
    b.wait_for("#open-in-calculator").await?.click().await?;
    b.wait_for("#plot path.curve").await?;
    for _ in 0..100 {
        if b.client.find(fantoccini::Locator::Css("#results td.budget")).await.is_ok()
            && b.client.execute("return document.querySelector('input.custom-fit') !== null;", vec![]).await? == true
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = b.client.current_url().await?.to_string();
    assert!(url.contains("fits=server:1"), "{url}");
    let label = b.wait_for("input.custom-fit").await?;
    assert!(label.is_selected().await?);
    let errors = b.errors().await?;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    b.close().await?;
    Ok(())
}

async fn coefficient(b: &Browser, name: &str) -> Result<f64> {
    let t = b.wait_for(&format!("#fit-result td.coef[data-name='{name}']")).await?.text().await?;
    t.trim().parse().with_context(|| format!("coefficient {name} = `{t}`"))
}

async fn reqwest_get(url: &str) -> Result<serde_json::Value> {
    Ok(reqwest::get(url).await?.json().await?)
}

async fn set_run_rho(b: &Browser, run: &str, value: &str) -> Result<()> {
    b.client
        .execute(
            "const e = document.querySelector(`input.run-rho[data-run='${arguments[0]}']`); e.value = arguments[1]; e.dispatchEvent(new Event('input', {bubbles: true}));",
            vec![serde_json::json!(run), serde_json::json!(value)],
        )
        .await?;
    Ok(())
}

/// The Calibrate page starts a real (small) sweep on the in-process server, draws its curves as
/// the events stream in, lists the job and opens its fit in the calculator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibrate_page_runs_a_sweep_and_opens_its_fit() -> Result<()> {
    anyhow::ensure!(p2law_tests::corpus_dir().join("shakespeare/.complete").exists(), "run ./dev setup: it installs the default corpus");
    let backend = Backend::start().await?;
    let b = Browser::start().await?;
    b.client.goto(&format!("{}calibrate", backend.url)).await?;
    b.wait_for("#estimate").await?;
    // The smoke preset is the starting form; its estimate counts six models.
    let estimate = b.wait_for("#estimate").await?.text().await?;
    anyhow::ensure!(estimate.starts_with("6 pruned models"), "{estimate}");
    // A bad rate disables the start button and says why.
    set_input(&b, "rates", "0.25, lots").await?;
    anyhow::ensure!(b.wait_for("#estimate").await?.text().await?.contains("`lots`"));
    anyhow::ensure!(b.attr("#start", "disabled").await.is_ok());
    // A small sweep: one parent, depth and 2:4, few tokens.
    set_input(&b, "rates", "0.25").await?;
    for unchecked in ["label.parent input[value='p2-micro']", "label.method input[value='width']"] {
        b.wait_for(unchecked).await?.click().await?;
    }
    set_input(&b, "tokens", "32768").await?;
    set_input(&b, "pretrain-scale", "0.05").await?;
    b.client.execute("const s = document.getElementById('device'); s.value = 'cpu'; s.dispatchEvent(new Event('change', {bubbles: true}));", vec![]).await?;
    set_input(&b, "token", p2law_tests::TOKEN).await?;
    anyhow::ensure!(b.wait_for("#estimate").await?.text().await?.starts_with("2 pruned models"));
    b.wait_for("#start").await?.click().await?;
    // Live curves appear while the job runs (after the parent's pretraining); the job ends done
    // with a fit link.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut saw_live_points = false;
    let link = loop {
        saw_live_points |= b.client.find(fantoccini::Locator::Css("#live-plot svg circle")).await.is_ok();
        if let Ok(a) = b.client.find(fantoccini::Locator::Css("tr.job[data-status='done'] a.open-fit")).await {
            break a.attr("href").await?.context("href")?;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "the job did not finish: {}", b.wait_for("#progress").await?.text().await?);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    anyhow::ensure!(link.starts_with("/?fits=server:"), "{link}");
    anyhow::ensure!(saw_live_points || b.client.find(fantoccini::Locator::Css("#live-plot svg circle")).await.is_ok(), "no live points were drawn");
    let progress = b.wait_for("#progress").await?.text().await?;
    anyhow::ensure!(progress.starts_with("done"), "{progress}");
    let png = b.client.screenshot().await?;
    std::fs::write(artifacts()?.join("calibrate.png"), png)?;
    b.wait_for("a.open-fit").await?.click().await?;
    b.wait_for("input.custom-fit").await?;
    anyhow::ensure!(b.errors().await?.is_empty(), "page errors: {:?}", b.errors().await?);
    b.close().await
}

/// The text of element `id` once it contains `want`, or as it stands after 5 s (the caller's
/// assertion says what is missing).
async fn text_once(b: &Browser, id: &str, want: &str) -> Result<String> {
    let mut text = String::new();
    for _ in 0..100 {
        let v = b.client.execute("const e = document.getElementById(arguments[0]); return e ? e.textContent : '';", vec![serde_json::json!(id)]).await?;
        text = v.as_str().unwrap_or_default().to_string();
        if text.contains(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(text)
}

/// The Forecast page: a partial log dropped in (read in the browser, nothing uploaded), the
/// forecast drawn with its band and rule marker, a broken log's warning named at its step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecast_page_forecasts_a_dropped_log_and_names_its_warnings() -> Result<()> {
    let backend = Backend::start().await?;
    let dir = tempfile::tempdir()?;
    // L = 1.8 + 0.9 (D/1e6)^-0.3, every 10 steps of 4096 tokens; a NaN at step 1500.
    let mut healthy = String::from("step,loss\n");
    let mut broken = String::from("step,loss\n");
    for i in 1..=200u32 {
        let d = f64::from(i) * 10.0 * 4096.0;
        let l = 1.8 + 0.9 * (d / 1e6).powf(-0.3);
        healthy.push_str(&format!("{},{l}\n", i * 10));
        broken.push_str(&format!("{},{}\n", i * 10, if i == 150 { "nan".to_string() } else { l.to_string() }));
    }
    let (good, bad) = (dir.path().join("healing.csv"), dir.path().join("broken.csv"));
    std::fs::write(&good, healthy)?;
    std::fs::write(&bad, broken)?;
    let b = Browser::start().await?;
    b.client.goto(&format!("{}forecast", backend.url)).await?;
    b.wait_for("#forecast-file").await?;
    set_input(&b, "forecast-tps", "4096").await?;
    set_input(&b, "forecast-rule", "gap:0.1").await?;
    b.wait_for("#forecast-file").await?.send_keys(&good.display().to_string()).await?;
    let summary = b.wait_for("#forecast-summary").await?.text().await?;
    assert!(summary.contains("200 checkpoints"), "{summary}");
    assert_eq!(b.client.find_all(fantoccini::Locator::Css("#forecast-plot circle.observed")).await?.len(), 200);
    assert_eq!(b.client.find_all(fantoccini::Locator::Css("#forecast-plot path.band")).await?.len(), 1);
    // gap 0.1 on the exact curve: 1e6 · 9^(1/0.3) tokens, marked on the plot.
    let t = number_attr(&b, "#forecast-plot g.rule-marker", "data-tokens").await?;
    let want = 1e6 * 9f64.powf(1.0 / 0.3);
    assert!((t / want - 1.0).abs() < 0.05, "{t:e} vs {want:e}");
    let rule = text_once(&b, "forecast-rule-met", "of the way").await?;
    if !(rule.contains("gap:0.1 met at") && rule.contains("of the way")) {
        let html = b.client.execute("return document.querySelector('main.forecast').innerHTML;", vec![]).await?;
        let html = html.as_str().unwrap_or_default().to_string();
        panic!("rule `{rule}`; page: {}", &html[..html.len().min(4000)]);
    }
    assert!(b.client.find_all(fantoccini::Locator::Css("#forecast-warnings li")).await?.is_empty());
    assert!(b.client.find_all(fantoccini::Locator::Css("#forecast-prior")).await?.is_empty(), "no prior without the model's inputs");
    // The pruned model's inputs: the width preset becomes the prior, and says so.
    set_input(&b, "forecast-method", "width").await?;
    set_input(&b, "forecast-n0", "3e6").await?;
    set_input(&b, "forecast-rho", "0.25").await?;
    set_input(&b, "forecast-l0", "1.7").await?;
    let prior = b.wait_for("#forecast-prior").await?;
    assert_eq!(prior.attr("data-source").await?.as_deref(), Some("p2-study-width"));
    assert!(prior.text().await?.contains("% of the forecast"));
    // A bad field is named; emptied, the forecast is the log's own again.
    set_input(&b, "forecast-rho", "1.5").await?;
    let err = b.wait_for("#forecast-error").await?.text().await?;
    assert!(err.starts_with("ρ:"), "{err}");
    for id in ["forecast-method", "forecast-n0", "forecast-rho", "forecast-l0"] {
        set_input(&b, id, "").await?;
    }
    b.wait_for("#forecast-summary").await?;
    // Along a known schedule the notes say so; a bad schedule is named.
    set_input(&b, "forecast-schedule", "cosine:8.192e7:0.1").await?;
    set_input(&b, "forecast-anneal", "0.05").await?;
    let notes = text_once(&b, "forecast-notes", "follows the schedule cosine").await?;
    assert!(notes.contains("follows the schedule cosine") && notes.contains("K = 0.0500 given"), "{notes}");
    set_input(&b, "forecast-schedule", "step:1e9").await?;
    let err = b.wait_for("#forecast-error").await?.text().await?;
    assert!(err.starts_with("learning-rate schedule:"), "{err}");
    for id in ["forecast-schedule", "forecast-anneal"] {
        set_input(&b, id, "").await?;
    }
    b.wait_for("#forecast-summary").await?;
    let shot = artifacts()?.join("forecast.png");
    std::fs::write(&shot, b.client.screenshot().await?)?;
    println!("screenshot: {}", shot.display());

    // The broken log: a NaN warning naming step 1500.
    b.wait_for("#forecast-file").await?.send_keys(&bad.display().to_string()).await?;
    let mut text = String::new();
    for _ in 0..100 {
        if let Ok(w) = b.client.find(fantoccini::Locator::Css("#forecast-warnings li[data-kind='nan']")).await {
            text = w.text().await?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text.contains("step 1500"), "no NaN warning naming step 1500: {text}");
    // Nothing was uploaded.
    let runs: serde_json::Value = reqwest_get(&format!("{}api/runs", backend.url)).await?;
    assert_eq!(runs, serde_json::json!([]));
    // A log without tokens says why, naming the file.
    set_input(&b, "forecast-tps", "").await?;
    let err = b.wait_for("#forecast-error").await?.text().await?;
    assert!(err.contains("broken.csv") && err.contains("tokens"), "{err}");

    // A run stored on the server (uploaded with the token), fetched by id and forecast here.
    let form = reqwest::multipart::Form::new()
        .text("meta", serde_json::json!({"all": {"tokens_per_step": 4096.0}}).to_string())
        .part("file", reqwest::multipart::Part::bytes(std::fs::read(&good)?).file_name("healing.csv"));
    let up: serde_json::Value = reqwest::Client::new().post(format!("{}api/uploads", backend.url)).bearer_auth(p2law_tests::TOKEN).multipart(form).send().await?.json().await?;
    let id = up["files"][0]["runs"][0]["id"].as_i64().context("run id")?;
    set_input(&b, "forecast-server-run", &id.to_string()).await?;
    b.wait_for("#forecast-load").await?.click().await?;
    let mut summary = String::new();
    for _ in 0..100 {
        if let Ok(e) = b.client.find(fantoccini::Locator::Css("#forecast-summary")).await {
            summary = e.text().await?;
            if summary.contains("200 checkpoints") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(summary.contains("200 checkpoints"), "{summary}");
    let t2 = number_attr(&b, "#forecast-plot g.rule-marker", "data-tokens").await?;
    assert!((t2 / t - 1.0).abs() < 1e-9, "the stored run forecasts as the dropped file did: {t2:e} vs {t:e}");
    let errors = b.errors().await?;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    b.close().await?;
    Ok(())
}

/// The Refit page reads a TensorBoard file written by an independent writer (PyTorch's
/// SummaryWriter, `tests/fixtures/tensorboard/make_fixtures.py`) in the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refit_page_reads_a_tensorboard_file_in_the_browser() -> Result<()> {
    let backend = Backend::start().await?;
    let b = Browser::start().await?;
    b.client.goto(&format!("{}refit", backend.url)).await?;
    b.wait_for("#log-files").await?;
    // Chromium takes canonical paths only.
    let tb = p2law_tests::workspace().join("tests/fixtures/tensorboard/simple/events.out.tfevents.fixture").canonicalize()?;
    b.client.find(fantoccini::Locator::Css("#log-files")).await?.send_keys(&tb.display().to_string()).await?;
    let mut tb_summary = String::new();
    for _ in 0..100 {
        tb_summary = b.client.execute("return [...document.querySelectorAll('fieldset.file .parse')].map(e => e.textContent).join(' | ');", vec![]).await?.as_str().unwrap_or_default().to_string();
        if tb_summary.contains("Tensorboard") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(tb_summary.contains("Tensorboard: 1 run(s), 20 checkpoint(s), tokens Logged"), "{tb_summary}");
    assert_eq!(b.client.find_all(fantoccini::Locator::Css("#preview circle.observed")).await?.len(), 20);
    let errors = b.errors().await?;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    b.close().await?;
    Ok(())
}

/// The Forecast page follows a calibration job's unit as it trains (`/forecast?job=ID&unit=KEY`,
/// the job's server-sent events): the forecast is redrawn as held-out checkpoints arrive, and
/// ends on the unit's whole curve, the same as the run the job stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecast_page_follows_a_calibration_job_as_it_trains() -> Result<()> {
    anyhow::ensure!(p2law_tests::corpus_dir().join("shakespeare/.complete").exists(), "run ./dev setup: it installs the default corpus");
    let backend = Backend::start().await?;
    let client = reqwest::Client::new();
    let unit = "p2-nano/depth/0.25";
    let request = serde_json::json!({"parents": ["p2-nano"], "methods": ["depth"], "rates": [0.25], "tokens": 1_048_576, "pretrain_scale": 0.05, "device": "cpu"});
    let job: serde_json::Value = client.post(format!("{}api/calibrations", backend.url)).bearer_auth(p2law_tests::TOKEN).json(&request).send().await?.json().await?;
    let id = job["id"].as_i64().context("job id")?;
    let b = Browser::start().await?;
    b.client.goto(&format!("{}forecast?job={id}&unit={unit}", backend.url)).await?;
    // Checkpoint counts seen in the summary while the unit trains, until the job ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut seen = std::collections::BTreeSet::new();
    let read = "const e = document.getElementById(arguments[0]); return e ? e.textContent : '';";
    loop {
        let summary = b.client.execute(read, vec![serde_json::json!("forecast-summary")]).await?.as_str().unwrap_or_default().to_string();
        if let Some(n) = summary.split(" checkpoints)").next().and_then(|s| s.rsplit('(').next()).and_then(|n| n.trim().parse::<usize>().ok()) {
            seen.insert(n);
        }
        let live = b.client.execute(read, vec![serde_json::json!("forecast-live")]).await?.as_str().unwrap_or_default().to_string();
        if live.contains("the job ended") {
            anyhow::ensure!(live.contains("the job ended: done"), "{live}");
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "the job did not end: {live}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The last forecast uses the whole stored curve.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let summary = b.wait_for("#forecast-summary").await?.text().await?;
    let job: serde_json::Value = client.get(format!("{}api/calibrations/{id}", backend.url)).send().await?.json().await?;
    let run: serde_json::Value = client.get(format!("{}api/runs/{}", backend.url, job["run_ids"][0])).send().await?.json().await?;
    let stored = run["checkpoints"].as_array().context("checkpoints")?;
    let last = stored.last().context("a checkpoint")?;
    assert!(summary.starts_with(unit) && summary.contains(&format!("loss {:.4}", last["loss"].as_f64().unwrap())), "{summary} vs {last}");
    let final_count = summary.split(" checkpoints)").next().and_then(|s| s.rsplit('(').next()).and_then(|n| n.trim().parse::<usize>().ok()).context("checkpoint count")?;
    seen.insert(final_count);
    assert!(seen.len() >= 2, "the forecast was drawn only once, with {seen:?} checkpoints: it did not follow the run");
    assert_eq!(seen.iter().max(), Some(&final_count));
    // The forecast follows the unit's own schedule, which the job's events carry.
    let notes = b.wait_for("#forecast-notes").await?.text().await?;
    assert!(notes.contains("follows the schedule cosine") && notes.contains("post-training recipe, from the job's events"), "{notes}");
    // Every checkpoint after D = 0 is drawn (log axes leave D = 0 out).
    let positive = stored.iter().filter(|p| p["tokens"].as_f64().unwrap_or(0.0) > 0.0).count();
    assert_eq!(b.client.find_all(fantoccini::Locator::Css("#forecast-plot circle.observed")).await?.len(), positive, "{summary}");
    anyhow::ensure!(b.errors().await?.is_empty(), "page errors: {:?}", b.errors().await?);
    b.close().await
}
