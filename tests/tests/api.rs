//! The API over a real socket with the real SQLite file: every sample format in, fits out, a
//! restart of the server process, and a table of bad inputs.

use std::time::Duration;
use anyhow::{Context, Result};
use p2law_tests::{Backend, ServerProcess, TOKEN, p2_curves_csv, workspace};
use reqwest::multipart::{Form, Part};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

fn external(name: &str) -> Result<Vec<u8>> {
    Ok(std::fs::read(workspace().join("shared/data/external").join(name))?)
}

fn file(name: &str, bytes: Vec<u8>) -> Part {
    Part::bytes(bytes).file_name(name.to_string())
}

async fn upload(client: &Client, url: &str, files: Vec<Part>, meta: Option<Value>, token: Option<&str>) -> Result<(StatusCode, Value)> {
    let mut form = Form::new();
    if let Some(m) = meta {
        form = form.text("meta", m.to_string());
    }
    for f in files {
        form = form.part("file", f);
    }
    let mut req = client.post(format!("{url}/api/uploads")).multipart(form);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// A trainer_state.json as transformers writes it with token counting off.
const TRAINER_STATE: &str = r#"{"global_step": 300, "log_history": [
  {"step": 100, "loss": 3.2, "learning_rate": 1e-4, "num_input_tokens_seen": 0},
  {"step": 100, "eval_loss": 3.1, "num_input_tokens_seen": 0},
  {"step": 200, "eval_loss": 2.9, "num_input_tokens_seen": 0},
  {"step": 300, "predict_loss": 2.8, "predict_runtime": 1.0},
  {"step": 300, "eval_loss": 2.8, "num_input_tokens_seen": 0},
  {"step": 300, "train_loss": 3.0, "train_runtime": 99.0, "total_flos": 1e15}]}"#;

type Snapshot = (Value, Value, Value, Value, Vec<Vec<u8>>);

/// Everything the API can read back.
async fn snapshot(client: &Client, url: &str, fit_id: i64, run_id: i64, uploads: &[i64]) -> Result<Snapshot> {
    let runs: Value = client.get(format!("{url}/api/runs")).send().await?.json().await?;
    let fits: Value = client.get(format!("{url}/api/fits")).send().await?.json().await?;
    let one: Value = client.get(format!("{url}/api/fits/{fit_id}")).send().await?.json().await?;
    let run: Value = client.get(format!("{url}/api/runs/{run_id}")).send().await?.json().await?;
    let mut raws = Vec::new();
    for id in uploads {
        raws.push(client.get(format!("{url}/api/uploads/{id}/raw")).send().await?.bytes().await?.to_vec());
    }
    Ok((runs, fits, one, run, raws))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_fits_and_a_restart_lose_nothing() -> Result<()> {
    let data = tempfile::tempdir()?;
    let server = ServerProcess::start(data.path())?;
    let url = server.url.clone();
    let client = Client::new();

    // Every sample format, each with what its log lacks.
    let tb = p2law_shared::logs::tensorboard::write_scalars(&[
        (100, "eval/loss", 3.4),
        (100, "train/num_input_tokens_seen", 819_200.0),
        (200, "eval/loss", 3.1),
        (200, "train/num_input_tokens_seen", 1_638_400.0),
    ]);
    let uploads: Vec<(&str, Vec<u8>, Value, usize, usize, &str)> = vec![
        (
            "colpret_olmo_wandb_export_sample.csv",
            external("colpret_olmo_wandb_export_sample.csv")?,
            json!({"all": {"tokens_per_step": 4194304.0}, "runs": {"colpret_olmo_wandb_export_sample.csv": {"OLMo-7B-run-002": {"n0": 6.888e9, "rho": 0.0}}}}),
            36,
            0,
            "steps",
        ),
        ("misfitting_wandb_runs_export_spm.csv", external("misfitting_wandb_runs_export_spm.csv")?, json!({}), 0, 0, "logged"),
        (
            "pythia_train_lm_loss_70m-0.csv",
            external("pythia_train_lm_loss_70m-0.csv")?,
            json!({"all": {"format": "csv", "metric": "train/lm_loss", "tokens_per_step": 2097152.0, "n0": 70426624.0}}),
            1,
            142_999,
            "steps",
        ),
        ("trainer_state.json", TRAINER_STATE.as_bytes().to_vec(), json!({"all": {"tokens_per_step": 65536.0, "n0": 1.2e9, "rho": 0.25, "l0": 2.7, "method": "depth"}}), 1, 3, "steps"),
        ("events.out.tfevents.1700000000.host", tb.clone(), json!({"all": {"n0": 1.2e9, "rho": 0.5, "l0": 2.7}}), 1, 2, "logged"),
    ];
    let mut stored_upload_ids = Vec::new();
    for (name, bytes, meta, runs, points, source) in &uploads {
        let (status, body) = upload(&client, &url, vec![file(name, bytes.clone())], Some(meta.clone()), Some(TOKEN)).await?;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        let f = &body["files"][0];
        assert_eq!(f["bytes"], bytes.len());
        assert_eq!(f["token_source"], *source, "{name}");
        let got_runs = f["runs"].as_array().context("runs")?;
        if *runs > 0 {
            assert_eq!(got_runs.len(), *runs, "{name}");
        }
        if *points > 0 {
            assert_eq!(got_runs.iter().map(|r| r["points"].as_u64().unwrap_or(0)).sum::<u64>(), *points as u64, "{name}");
        }
        stored_upload_ids.push((f["upload_id"].as_i64().context("id")?, bytes.clone()));
        if let Some(r) = got_runs.iter().find(|r| r["name"] == "OLMo-7B-run-002") {
            assert_eq!(r["n0"], 6.888e9, "per-run metadata is applied");
            assert!(got_runs.iter().filter(|r| r["name"] != "OLMo-7B-run-002").all(|r| r["n0"].is_null()));
        }
    }
    // The trainer_state's skipped entries are reported, not errors.
    let (_, hf) = upload(&client, &url, vec![file("trainer_state.json", TRAINER_STATE.as_bytes().to_vec())], Some(json!({"all": {"tokens_per_step": 65536.0}})), Some(TOKEN)).await?;
    let skipped: Vec<String> = hf["files"][0]["skipped"].as_array().context("skipped")?.iter().map(|s| s["reason"].to_string()).collect();
    assert!(skipped.iter().any(|s| s.contains("predict_")), "{skipped:?}");

    // Five P² runs, then a fit with holdout and bootstrap.
    let (status, body) = upload(&client, &url, vec![file("p2.csv", p2_curves_csv(5).into_bytes())], None, Some(TOKEN)).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run_ids: Vec<i64> = body["files"][0]["runs"].as_array().context("runs")?.iter().filter_map(|r| r["id"].as_i64()).collect();
    assert_eq!(run_ids.len(), 5);
    let resp = client
        .post(format!("{url}/api/fits"))
        .bearer_auth(TOKEN)
        .json(&json!({"run_ids": run_ids, "law": "p2", "starts": "full", "holdout": "last20", "bootstrap": 20, "seed": 1}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let fit: Value = resp.json().await?;
    assert!(fit["report"]["metrics"]["rmse"].as_f64().context("rmse")? < 1e-5);
    assert_eq!(fit["report"]["holdout"]["protocol"], "last20");
    // Five parents of one law: every coefficient is pinned down, and the fit says nothing more.
    assert!(fit.get("degenerate").is_none(), "{}", fit["degenerate"]);
    let fit_id = fit["id"].as_i64().context("id")?;
    // The scheme of the Authorization header is case-insensitive.
    let write = client.post(format!("{url}/api/fits")).header("authorization", format!("BEARER {TOKEN}")).json(&json!({"run_ids": run_ids, "law": "p2"})).send().await?;
    assert_eq!(write.status(), StatusCode::CREATED, "{}", write.text().await?);

    let ids: Vec<i64> = stored_upload_ids.iter().map(|(id, _)| *id).collect();
    let before = snapshot(&client, &url, fit_id, run_ids[0], &ids).await?;
    assert_eq!(before.2, fit);
    for ((_, original), raw) in stored_upload_ids.iter().zip(&before.4) {
        assert_eq!(original, raw, "uploads are kept byte for byte");
    }
    assert_eq!(before.3["checkpoints"].as_array().context("points")?.len(), 10);

    // Kill the server outright and start a new one on the same data dir.
    server.kill()?;
    let again = ServerProcess::start(data.path())?;
    let after = snapshot(&client, &again.url, fit_id, run_ids[0], &ids).await?;
    assert_eq!(before, after, "everything reads back unchanged after a restart");
    assert!(data.path().join("p2law.sqlite").exists());
    drop(again);

    // `p2law token` replaces the token: the old one is refused, the new one accepted.
    let out = std::process::Command::new(p2law_tests::p2law_bin()?).arg("token").arg("--data-dir").arg(data.path()).output()?;
    assert!(out.status.success());
    let fresh = String::from_utf8(out.stdout)?.trim().to_string();
    let third = ServerProcess::start_with_token(data.path(), None)?;
    let del = |t: String| client.delete(format!("{}/api/fits/{fit_id}", third.url)).bearer_auth(t).send();
    assert_eq!(del(TOKEN.to_string()).await?.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(del(fresh).await?.status(), StatusCode::NO_CONTENT);
    drop(third);
    // A restart with the old --token cannot undo the rotation, and a short token is refused:
    // each is a message and exit 1 before anything listens.
    for (token, want) in [(TOKEN, "was revoked"), ("short", "at least 16 characters")] {
        let out = std::process::Command::new(p2law_tests::p2law_bin()?)
            .args(["serve", "--addr", "127.0.0.1:0", "--static-dir", "/nonexistent", "--data-dir"])
            .arg(data.path())
            .args(["--token", token])
            .env_remove("P2LAW_TOKEN")
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{token}: {stderr}");
        assert!(stderr.contains(want), "{token}: {stderr}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_status_and_nothing_partial_is_stored() -> Result<()> {
    let backend = Backend::api_only().await?;
    let url = format!("http://{}", backend.addr);
    let client = Client::new();
    let good = || file("good.csv", p2_curves_csv(2).into_bytes());
    let csv = |name: &str, text: &str| file(name, text.as_bytes().to_vec());
    let mut corrupt_tb = p2law_shared::logs::tensorboard::write_scalars(&[(1, "loss", 2.0)]);
    let n = corrupt_tb.len();
    corrupt_tb[n - 6] ^= 0xff;

    // (what, files, meta, token, status, text the body must contain)
    let cases: Vec<(&str, Vec<Part>, Option<Value>, Option<&str>, StatusCode, &str)> = vec![
        ("no token", vec![good()], None, None, StatusCode::UNAUTHORIZED, "bearer token"),
        ("wrong token", vec![good()], None, Some("nope"), StatusCode::UNAUTHORIZED, "bearer token"),
        ("no file part", vec![], Some(json!({})), Some(TOKEN), StatusCode::BAD_REQUEST, "no `file` part"),
        ("short CSV row", vec![csv("short.csv", "run,n0,rho,l0,tokens,loss\na,1e9,0.2,2.5,1e8\n")], None, Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "short.csv, line 2"),
        ("NaN loss", vec![csv("nan.csv", "run,tokens,loss\na,1e8,NaN\n")], None, Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "nan.csv, line 2, field `loss`"),
        ("negative tokens", vec![csv("neg.csv", "run,tokens,loss\na,0,3.4\na,-5,2.9\n")], None, Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "neg.csv, line 3, field `tokens`"),
        ("rho outside [0,1)", vec![good()], Some(json!({"all": {"rho": 1.5}})), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "field `rho`"),
        ("unknown meta key", vec![good()], Some(json!({"all": {"tokens_per_stp": 1}})), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "field `meta`"),
        ("meta for a missing file", vec![good()], Some(json!({"files": {"other.csv": {}}})), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "other.csv"),
        ("meta for a missing run", vec![good()], Some(json!({"runs": {"good.csv": {"nope": {"n0": 1e9}}}})), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "field `runs.nope`"),
        ("run rho out of range", vec![good()], Some(json!({"runs": {"good.csv": {"m1.2e8-0.15": {"rho": 1.0}}}})), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "field `runs.m1.2e8-0.15.rho`"),
        ("binary, not TensorBoard", vec![file("blob.bin", vec![0xff, 0xfe, 0x00, 0x01])], None, Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "not UTF-8"),
        ("corrupt TensorBoard", vec![file("events.out.tfevents.x", corrupt_tb)], Some(json!({"all": {"tokens_per_step": 1.0}})), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "checksum"),
        ("TensorBoard steps × 1e308", vec![file("events.out.tfevents.y", p2law_shared::logs::tensorboard::write_scalars(&[(1, "loss", 2.0), (2, "loss", 1.5)]))], Some(json!({"all": {"tokens_per_step": 1e308}})), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "field `tokens_per_step`"),
        ("HF without token counts", vec![csv("trainer_state.json", TRAINER_STATE)], None, Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "record 1, field `num_input_tokens_seen`"),
        ("second file bad", vec![good(), csv("bad.csv", "run,tokens,loss\na,-1,2\n")], None, Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "bad.csv, line 2"),
        ("over the size limit", vec![file("huge.csv", vec![b'1'; (64 << 20) + 1024])], None, Some(TOKEN), StatusCode::PAYLOAD_TOO_LARGE, "limit"),
    ];
    for (what, files, meta, token, status, want) in cases {
        let (got, body) = upload(&client, &url, files, meta, token).await?;
        assert_eq!(got, status, "{what}: {body}");
        assert!(body["error"].as_str().unwrap_or_default().contains(want), "{what}: `{want}` not in {body}");
    }
    let runs: Value = client.get(format!("{url}/api/runs")).send().await?.json().await?;
    assert_eq!(runs, json!([]), "a rejected upload stores nothing");

    // Fits: each malformed request gets its status.
    let (status, body) = upload(&client, &url, vec![good()], None, Some(TOKEN)).await?;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["files"][0]["runs"][0]["id"].as_i64().context("run id")?;
    let fit_cases: Vec<(&str, Value, Option<&str>, StatusCode, &str)> = vec![
        ("no token", json!({"run_ids": [id], "law": "p2"}), None, StatusCode::UNAUTHORIZED, "bearer token"),
        ("no runs", json!({"run_ids": [], "law": "p2"}), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "field `run_ids`"),
        ("unknown run", json!({"run_ids": [id, 9999], "law": "p2"}), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "run 9999"),
        ("unknown law", json!({"run_ids": [id], "law": "p3"}), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "p3"),
        ("bad starts", json!({"run_ids": [id], "law": "p2", "starts": "lots"}), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "starts"),
        ("too few points", json!({"run_ids": [id], "law": "p2", "holdout": "largest-n0"}), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "holdout"),
        ("bootstrap too large", json!({"run_ids": [id], "law": "p2", "bootstrap": 100000}), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "option `bootstrap`"),
        ("a run listed twice", json!({"run_ids": [id, id], "law": "p2"}), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "is listed twice"),
        ("too many runs", json!({"run_ids": (1..=10_001).collect::<Vec<i64>>(), "law": "p2"}), Some(TOKEN), StatusCode::UNPROCESSABLE_ENTITY, "at most 10000 runs"),
    ];
    for (what, body, token, status, want) in fit_cases {
        let mut req = client.post(format!("{url}/api/fits")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let got = resp.status();
        let text = resp.text().await?;
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.contains(want), "{what}: `{want}` not in {text}");
    }
    // A body over the 64 MiB limit is 413 with the JSON error body, not a parse error.
    let big = format!("{{\"run_ids\": [{id}], \"law\": \"p2\", \"pad\": \"{}\"}}", "x".repeat(66 << 20));
    let resp = client.post(format!("{url}/api/fits")).bearer_auth(TOKEN).header("content-type", "application/json").body(big).send().await?;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = resp.json().await?;
    assert!(body["error"].as_str().context("error")?.contains("64 MiB"), "{body}");
    // A sweep that would expand to 10 000 × 2 × 9 999 units is refused at once, naming the cap.
    let huge = json!({"parents": vec!["p2-nano"; 10_000], "methods": ["depth", "width"], "rates": (1..10_000).map(|i| f64::from(i) / 1e4).collect::<Vec<_>>(), "tokens": 1000});
    let started = std::time::Instant::now();
    let resp = client.post(format!("{url}/api/calibrations")).bearer_auth(TOKEN).json(&huge).send().await?;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.text().await?.contains("field `parents`: at most 16"));
    assert!(started.elapsed() < Duration::from_secs(5), "refused without expanding the sweep");
    assert_eq!(client.get(format!("{url}/api/fits/12345")).send().await?.status(), StatusCode::NOT_FOUND);
    // An id beyond i64 and a body that is not multipart answer the JSON error body, as the spec says.
    for path in ["runs/9223372036854775808", "fits/abc", "calibrations/-1x", "uploads/9223372036854775808/raw"] {
        let resp = client.get(format!("{url}/api/{path}")).send().await?;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"), "{path}");
        let body: Value = resp.json().await?;
        assert!(body["error"].as_str().unwrap_or_default().contains("path `{id}`"), "{path}: {body}");
    }
    let resp = client.post(format!("{url}/api/uploads")).bearer_auth(TOKEN).send().await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    assert_eq!(client.delete(format!("{url}/api/fits/1")).send().await?.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(client.get(format!("{url}/api/nothing")).send().await?.status(), StatusCode::NOT_FOUND);
    Ok(())
}

/// Fits are bounded (one at a time here) and a fit whose client leaves stops: its slot frees
/// within seconds, where the fit itself would run for minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fit_whose_client_leaves_stops_and_frees_its_slot() -> Result<()> {
    let config = p2law_backend::server::ServerConfig { max_concurrent_fits: 1, ..Default::default() };
    let backend = p2law_tests::Backend::api_with(config).await?;
    let url = format!("http://{}", backend.addr);
    let client = Client::new();
    // 6 curves of 5 000 checkpoints: a full-grid P² fit with a 2 000-resample bootstrap on them
    // takes minutes on two cores.
    let mut big = String::from("run,n0,rho,l0,tokens,loss\n");
    for r in 0..6 {
        let (n0, rho) = (1e8 * f64::from(r + 1), 0.1 + 0.07 * f64::from(r));
        for k in 1..=5000 {
            let d = 1e6 * f64::from(k);
            big.push_str(&format!("r{r},{n0},{rho},2.5,{d},{}\n", 2.5 + 0.3 * rho + 40.0 * d.powf(-0.3)));
        }
    }
    let (status, body) = upload(&client, &url, vec![file("big.csv", big.into_bytes())], None, Some(TOKEN)).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ids: Vec<i64> = body["files"][0]["runs"].as_array().context("runs")?.iter().filter_map(|r| r["id"].as_i64()).collect();
    let (_, small) = upload(&client, &url, vec![file("small.csv", p2_curves_csv(3).into_bytes())], None, Some(TOKEN)).await?;
    let small_ids: Vec<i64> = small["files"][0]["runs"].as_array().context("runs")?.iter().filter_map(|r| r["id"].as_i64()).collect();

    let long = json!({"run_ids": ids, "law": "p2", "starts": "full", "bootstrap": 2000});
    let gone = client.post(format!("{url}/api/fits")).bearer_auth(TOKEN).json(&long).timeout(Duration::from_millis(1500)).send().await;
    assert!(gone.is_err_and(|e| e.is_timeout()), "the long fit is still running when the client leaves");
    let quick = json!({"run_ids": small_ids, "law": "p2"});
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    loop {
        let resp = client.post(format!("{url}/api/fits")).bearer_auth(TOKEN).json(&quick).send().await?;
        statuses.push(resp.status());
        if resp.status() == StatusCode::CREATED || started.elapsed() > Duration::from_secs(20) {
            break;
        }
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{}", resp.text().await?);
        assert!(resp.headers().get("retry-after").is_some());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(statuses.last(), Some(&StatusCode::CREATED), "the slot freed after the client left: {statuses:?}");
    eprintln!("slot free {:.1} s after the client left ({} tries)", started.elapsed().as_secs_f64(), statuses.len());
    Ok(())
}

/// Open event streams are bounded: past the server's limit a client gets 503 with
/// `Retry-After`, and a slot frees when its stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_past_the_limit_get_503() -> Result<()> {
    let config = p2law_backend::server::ServerConfig { max_event_streams: 1, ..Default::default() };
    let backend = p2law_tests::Backend::api_with(config).await?;
    let url = format!("http://{}", backend.addr);
    let client = Client::new();
    let request = json!({"parents": ["p2-nano"], "methods": ["depth"], "rates": [0.25], "tokens": 131072, "pretrain_scale": 0.06, "device": "cpu"});
    let resp = client.post(format!("{url}/api/calibrations")).bearer_auth(TOKEN).json(&request).send().await?;
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", resp.text().await?);
    let job: Value = client.get(format!("{url}/api/calibrations")).send().await?.json().await?;
    let id = job[0]["id"].as_i64().context("job id")?;
    let first = client.get(format!("{url}/api/calibrations/{id}/events")).send().await?;
    assert_eq!(first.status(), StatusCode::OK);
    let second = client.get(format!("{url}/api/calibrations/{id}/events")).send().await?;
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    let body: Value = second.json().await?;
    assert!(body["error"].as_str().unwrap_or_default().contains("1 event streams are open"), "{body}");
    // Cancelling ends the first stream (its final event), which frees the slot.
    client.post(format!("{url}/api/calibrations/{id}/cancel")).bearer_auth(TOKEN).send().await?;
    let text = tokio::time::timeout(Duration::from_secs(120), first.text()).await??;
    assert!(text.contains("event: cancelled"), "{text}");
    let mut freed = false;
    for _ in 0..50 {
        let again = client.get(format!("{url}/api/calibrations/{id}/events")).send().await?;
        if again.status() == StatusCode::OK {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "the slot is free once the stream ended");
    Ok(())
}

/// The OpenAPI document describes every route and the types it carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_covers_the_api() -> Result<()> {
    let backend = Backend::api_only().await?;
    let doc: Value = reqwest::get(format!("http://{}/api/openapi.json", backend.addr)).await?.json().await?;
    assert!(doc["openapi"].as_str().unwrap_or_default().starts_with("3."));
    for path in ["/api/uploads", "/api/uploads/{id}", "/api/uploads/{id}/raw", "/api/runs", "/api/runs/{id}", "/api/runs/{id}/forecast", "/api/fits", "/api/fits/{id}", "/api/presets", "/api/health"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    for schema in ["FitReport", "FitRequest", "StoredFit", "UploadResponse", "RunDetail", "ErrorBody", "LogOptions", "Metrics", "HoldoutReport"] {
        assert!(doc["components"]["schemas"].get(schema).is_some(), "schema {schema} missing");
    }
    assert_eq!(doc["paths"]["/api/fits"]["post"]["security"][0]["bearer"], json!([]));
    // Every status a route answers is listed: 400 for a bad `{id}`, 403 from the host check on
    // every operation, 503 when the fit slots are taken.
    for (path, ops) in doc["paths"].as_object().context("paths")? {
        for (method, op) in ops.as_object().context("operations")? {
            assert!(op["responses"].get("403").is_some(), "{method} {path} does not list 403");
            if path.contains("{id}") {
                assert!(op["responses"].get("400").is_some(), "{method} {path} does not list 400");
            }
        }
    }
    assert!(doc["paths"]["/api/fits"]["post"]["responses"].get("503").is_some());
    Ok(())
}

/// `POST /api/runs/{id}/forecast`: a stored run forecast from its own checkpoints; bad options
/// and unreachable rules answer 422 naming the field or the reason, a missing run 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_run_is_forecast_and_bad_requests_are_422() -> Result<()> {
    let backend = Backend::api_only().await?;
    let url = format!("http://{}", backend.addr);
    let client = Client::new();
    // L = 1.8 + 0.9 (D/1e6)^-0.3 every 10 steps of 4096 tokens.
    let mut csv = String::from("step,loss\n");
    for i in 1..=200u32 {
        let d = f64::from(i) * 10.0 * 4096.0;
        csv.push_str(&format!("{},{}\n", i * 10, 1.8 + 0.9 * (d / 1e6).powf(-0.3)));
    }
    let (status, body) = upload(&client, &url, vec![file("heal.csv", csv.into_bytes())], Some(json!({"all": {"tokens_per_step": 4096.0}})), Some(TOKEN)).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["files"][0]["runs"][0]["id"].as_i64().context("run id")?;
    let post = |body: Value, id: i64| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let resp = client.post(format!("{url}/api/runs/{id}/forecast")).json(&body).send().await?;
            let status = resp.status();
            anyhow::Ok((status, resp.json::<Value>().await.unwrap_or(Value::Null)))
        }
    };
    let (status, f) = post(json!({"at": [8.192e7], "rule": "gap:0.1"}), id).await?;
    assert_eq!(status, StatusCode::OK, "{f}");
    let p = &f["points"][0];
    let want = 1.8 + 0.9 * (8.192e7f64 / 1e6).powf(-0.3);
    assert!((p["loss"].as_f64().unwrap() / want - 1.0).abs() < 1e-3, "{p}");
    assert!(p["lo"].as_f64().unwrap() <= want && want <= p["hi"].as_f64().unwrap(), "{p}");
    assert!(f["rule"]["tokens"].as_f64().unwrap() > 8.192e6);
    for (body, want) in [
        (json!({"rule": "soon:3"}), "field `rule`"),
        (json!({"at": [-1.0]}), "field `at`"),
        (json!({"level": 1.5}), "field `level`"),
        (json!({"resamples": 10_000_000}), "field `resamples`"),
        (json!({"rule": "target:1.2"}), "can never be met"),
        (json!({"n0": 3e6, "method": "width"}), "field `rho`"),
        (json!({"method": "magnitude", "n0": 3e6, "rho": 0.25, "l0": 1.7}), "field `method`"),
        (json!({"prior": "p2-nonesuch", "n0": 3e6, "rho": 0.25, "l0": 1.7}), "field `prior`"),
    ] {
        let (status, e) = post(body.clone(), id).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert!(e["error"].as_str().unwrap_or_default().contains(want), "{body}: {e}");
    }
    // The run's method's P² preset as the prior, from N0, ρ and L0 given with the request (an
    // uploaded CSV carries none): named in the fit and in the notes.
    let (status, f) = post(json!({"at": [8.192e7], "method": "width", "n0": 3e6, "rho": 0.25, "l0": 1.7}), id).await?;
    assert_eq!(status, StatusCode::OK, "{f}");
    assert_eq!(f["fit"]["prior"]["source"], "p2-study-width", "{f}");
    let w = f["fit"]["prior"]["weight"].as_f64().context("weight")?;
    assert!((0.0..=1.0).contains(&w), "{f}");
    assert!(f["notes"].as_array().is_some_and(|n| n.iter().any(|n| n.as_str().unwrap_or_default().contains("p2-study-width"))), "{f}");
    let (status, f) = post(json!({"at": [8.192e7], "prior": "none", "method": "width", "n0": 3e6, "rho": 0.25, "l0": 1.7}), id).await?;
    assert_eq!(status, StatusCode::OK, "{f}");
    assert!(f["fit"].get("prior").is_none(), "{f}");
    let (status, _) = post(json!({"unknown": 1}), id).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = post(json!({}), 999).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

/// SIGKILL in the middle of an upload (its rows inserted, the transaction not committed): the
/// client gets no answer, the restarted server holds nothing of it, and the same upload then
/// goes through and reads back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_the_middle_of_an_upload_stores_nothing_of_it() -> Result<()> {
    use std::os::unix::process::ExitStatusExt;
    let data = tempfile::tempdir()?;
    let client = Client::new();
    let csv = p2_curves_csv(5).into_bytes();
    let server = ServerProcess::start_with_env(data.path(), &[("P2LAW_FAULT", "upload")])?;
    let url = server.url.trim_end_matches('/').to_string();
    let answer = upload(&client, &url, vec![file("p2.csv", csv.clone())], None, Some(TOKEN)).await;
    assert!(answer.is_err(), "the killed server answered: {answer:?}");
    let exit = server.wait_exit(Duration::from_secs(30))?;
    assert_eq!(exit.signal(), Some(9), "{exit}");

    let server = ServerProcess::start(data.path())?;
    let url = server.url.trim_end_matches('/').to_string();
    let runs: Value = client.get(format!("{url}/api/runs")).send().await?.json().await?;
    assert_eq!(runs, json!([]), "nothing of the interrupted upload is stored");
    let (status, body) = upload(&client, &url, vec![file("p2.csv", csv.clone())], None, Some(TOKEN)).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["files"][0]["upload_id"].as_i64().context("upload id")?;
    let raw = client.get(format!("{url}/api/uploads/{id}/raw")).send().await?.bytes().await?;
    assert_eq!(raw.to_vec(), csv);
    let runs: Value = client.get(format!("{url}/api/runs")).send().await?.json().await?;
    assert_eq!(runs.as_array().map(Vec::len), Some(5), "{runs}");

    // Retention of originals (`p2law gc --upload-bytes-days`, opt-in): the file answers 410
    // saying why and when, its runs and their points stay.
    let store = p2law_backend::store::Store::open(data.path()).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.drop_upload_bytes(0.0, false).await?, (1, csv.len() as u64));
    let resp = client.get(format!("{url}/api/uploads/{id}/raw")).send().await?;
    assert_eq!(resp.status(), StatusCode::GONE);
    let body: Value = resp.json().await?;
    assert!(body["error"].as_str().unwrap_or("").contains("dropped by retention"), "{body}");
    let run_id = runs[0]["id"].as_i64().context("run id")?;
    let run: Value = client.get(format!("{url}/api/runs/{run_id}")).send().await?.json().await?;
    assert!(!run["checkpoints"].as_array().context("checkpoints")?.is_empty(), "{run}");
    Ok(())
}

/// `POST /api/predict` on a preset: Chinchilla's form evaluated by hand from the preset's own
/// coefficients, a bootstrap band around it, the extrapolation said with by how far, and bad
/// requests answered 4xx naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_answers_the_preset_curve_with_its_band_and_extrapolation() -> Result<()> {
    let data = tempfile::tempdir()?;
    let server = ServerProcess::start(data.path())?;
    let url = server.url.trim_end_matches('/').to_string();
    let client = Client::new();
    let presets: Value = client.get(format!("{url}/api/presets")).send().await?.json().await?;
    let refit = presets.as_array().context("presets")?.iter().find(|p| p["id"] == "chinchilla-epoch-refit").context("the Epoch refit preset")?;
    let p = &refit["report"]["params"];
    let (a, b, e, alpha, beta) = (p["A"].as_f64().unwrap(), p["B"].as_f64().unwrap(), p["E"].as_f64().unwrap(), p["alpha"].as_f64().unwrap(), p["beta"].as_f64().unwrap());
    // 1e13 parameters with 30 % removed: far beyond Chinchilla's largest model.
    let (n0, rho, tokens): (f64, f64, [f64; 3]) = (1e13, 0.3, [1e9, 1e11, 1e13]);
    let body = json!({"preset": "chinchilla-epoch-refit", "n0": n0, "rho": rho, "tokens": tokens});
    let resp = client.post(format!("{url}/api/predict")).json(&body).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let out: Value = resp.json().await?;
    let points = out["predictions"].as_array().context("predictions")?;
    assert_eq!(points.len(), 3);
    for (pt, d) in points.iter().zip(tokens) {
        let want = e + a / (n0 * (1.0 - rho)).powf(alpha) + b / d.powf(beta);
        let got = pt["loss"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9 * want, "D {d}: {got} vs {want}");
        let band = pt["band"].as_array().context("a band from the preset's bootstrap")?;
        assert!(band[0].as_f64().unwrap() <= got && got <= band[1].as_f64().unwrap(), "{pt}");
    }
    let beyond: Vec<&str> = out["extrapolation"].as_array().context("extrapolation")?.iter().filter_map(|x| x["message"].as_str()).collect();
    assert!(beyond.iter().any(|m| m.starts_with("N0 1.000e13 is") && m.contains("× the largest calibrated parent")), "{beyond:?}");

    for (body, status, field) in [
        (json!({"preset": "chinchilla-epoch-refit", "fit_id": 1, "n0": 1e9, "rho": 0.2, "tokens": [1e9]}), 422, "fit_id"),
        (json!({"preset": "gpt-9", "n0": 1e9, "rho": 0.2, "tokens": [1e9]}), 422, "preset"),
        (json!({"preset": "chinchilla-epoch-refit", "n0": 1e9, "rho": 0.2, "tokens": []}), 422, "tokens"),
        (json!({"preset": "chinchilla-epoch-refit", "n0": 1e9, "rho": 0.2, "tokens": [-5.0]}), 422, "tokens"),
        (json!({"preset": "chinchilla-epoch-refit", "n0": 1e9, "rho": 1.5, "tokens": [1e9]}), 422, "rho"),
        (json!({"preset": "chinchilla-epoch-refit", "n0": 1e9, "tokens": [1e9]}), 422, "rho"),
        (json!({"fit_id": 4242, "n0": 1e9, "rho": 0.2, "tokens": [1e9]}), 404, "fit 4242"),
    ] {
        let resp = client.post(format!("{url}/api/predict")).json(&body).send().await?;
        let got = resp.status().as_u16();
        let text = resp.text().await?;
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.contains(field), "{body}: {text}");
        // An input out of its domain names its field in the body too, for a client to point at.
        if matches!(field, "tokens" | "rho") {
            let e: p2law_shared::api::ErrorBody = serde_json::from_str(&text)?;
            assert_eq!(e.field.as_deref(), Some(field), "{text}");
        }
    }
    Ok(())
}
