//! `p2law worker`: runs calibration units from a database shared with a server and other
//! workers (see [`crate::store::queue`]).
//!
//! A worker claims one unit, renews its lease every third of the lease while the unit runs on a
//! blocking thread, and commits the result in one transaction. Parents, checkpoints and exports
//! live in the data dir: when every worker is given the same directory (a shared file system),
//! a unit taken over from a dead worker resumes from that worker's last checkpoint and parents
//! are pretrained once; with a directory per worker, a taken-over unit starts again from its
//! beginning and each worker pretrains the parents it needs again (deterministically, with the
//! job's seed). Database errors (a restart, a dropped connection) are waited out with back-off,
//! never taken as the unit's failure.

use crate::lab::{device, sweep};
use crate::server::jobs::{event, export_dir, fit_inputs, fit_summary, job_dir};
use crate::store::queue::{Claim, Commit, Lease, UnitKind};
use crate::store::{NewUpload, Store, StoreError};
use p2law_shared::calibrate::{CalibrationEvent, CalibrationRequest, DeviceChoice, JobStatus, Stage};
use p2law_shared::logs::{self, LogOptions};
use p2law_shared::report::FitReport;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How the worker is named in the queue and in events.
    pub name: String,
    /// Parents, checkpoints (`lab/`), Hugging Face models (`models/`), exports.
    pub data_dir: PathBuf,
    pub corpus_dir: PathBuf,
    /// Overrides each job's device choice when given.
    pub device: Option<DeviceChoice>,
    /// Seconds a claim holds without renewal.
    pub lease_s: f64,
    /// How often an idle worker asks for work.
    pub poll: Duration,
    /// Stop when the queue is empty instead of waiting (benchmarks, tests).
    pub exit_when_idle: bool,
}

/// Claims of one unit after which its job is failed: each ended with its worker.
pub const MAX_UNIT_CLAIMS: i64 = 3;

/// How long a database write is retried through errors (a restart) before the worker gives up.
pub const DB_PATIENCE: Duration = Duration::from_secs(120);

/// `op` again on any database error, backing off from 200 ms to 5 s, for up to [`DB_PATIENCE`].
pub async fn retry_db<T, F, Fut>(what: &str, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let started = std::time::Instant::now();
    let mut wait = Duration::from_millis(200);
    loop {
        match op().await {
            Err(e @ StoreError::Sql(_)) if started.elapsed() < DB_PATIENCE => {
                tracing::warn!("{what}: {e}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Runs units until `stop` is set (the running unit checkpoints and goes back to the queue) or,
/// with [`WorkerConfig::exit_when_idle`], until no unit is left to claim.
pub async fn run(store: Store, cfg: WorkerConfig, stop: Arc<AtomicBool>) {
    let mut wait = Duration::from_millis(200);
    while !stop.load(Ordering::SeqCst) {
        let claim = match store.claim_unit(&cfg.name, cfg.lease_s).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("worker {}: claiming a unit: {e}; retrying in {wait:?}", cfg.name);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        wait = Duration::from_millis(200);
        let Some(claim) = claim else {
            if cfg.exit_when_idle {
                return;
            }
            tokio::time::sleep(cfg.poll).await;
            continue;
        };
        tracing::info!("worker {}: job {} unit {} (claim {})", cfg.name, claim.job.id, claim.unit, claim.attempts);
        run_claim(&store, &cfg, claim, &stop).await;
    }
}

/// Stores one event of `job`, signed by the worker.
async fn publish(store: &Store, worker: &str, job: i64, mut e: CalibrationEvent) {
    e.worker = Some(worker.to_string());
    if let Err(err) = retry_db("storing an event", || store.append_open_event(job, e.clone())).await {
        tracing::error!("job {job}: storing an event: {err}");
    }
}

/// How a unit's run ended.
enum Outcome {
    Finished,
    /// The unit stopped at a step: for a cancel, the end of the job, a lost lease or the worker's stop.
    Stopped,
    Failed(String),
}

async fn run_claim(store: &Store, cfg: &WorkerConfig, claim: Claim, stop: &Arc<AtomicBool>) {
    let (id, name) = (claim.job.id, cfg.name.clone());
    if claim.attempts > MAX_UNIT_CLAIMS {
        let why = format!("unit {} was claimed {} times and its worker stopped before finishing it each time; not tried again", claim.unit, claim.attempts - 1);
        let mut e = event(Stage::Failed, Some(why.clone()));
        e.worker = Some(name.clone());
        let _ = retry_db("failing the job", || store.end_open_job(id, JobStatus::Failed, Some(&why), e.clone())).await;
        return;
    }
    let took_over = if claim.attempts > 1 { format!(" (claim {}: taken over after its lease ran out)", claim.attempts) } else { String::new() };
    publish(store, &name, id, CalibrationEvent { unit: Some(claim.unit.clone()), ..event(Stage::Running, Some(format!("worker {name} runs {}{took_over}", claim.unit))) }).await;

    // The unit's cancel flag: set by the heartbeat (cancel, job ended, lease lost) or the worker's stop.
    let flag = Arc::new(AtomicBool::new(false));
    let lost = Arc::new(AtomicBool::new(false));
    let beat = {
        let (store, unit, name, flag, lost, stop) = (store.clone(), claim.unit.clone(), name.clone(), flag.clone(), lost.clone(), stop.clone());
        let lease_s = cfg.lease_s;
        let every = Duration::from_secs_f64((lease_s / 3.0).max(0.2));
        tokio::spawn(async move {
            let mut last = tokio::time::Instant::now();
            loop {
                // The worker's stop reaches the unit within a fifth of a second; the lease is
                // renewed every third of its length.
                tokio::time::sleep(Duration::from_millis(200)).await;
                if stop.load(Ordering::SeqCst) {
                    flag.store(true, Ordering::SeqCst);
                }
                if last.elapsed() < every {
                    continue;
                }
                last = tokio::time::Instant::now();
                match store.renew_lease(id, &unit, &name, lease_s).await {
                    Ok(Lease::Held { stop: false }) => {}
                    Ok(Lease::Held { stop: true }) => flag.store(true, Ordering::SeqCst),
                    Ok(Lease::Lost) => {
                        lost.store(true, Ordering::SeqCst);
                        flag.store(true, Ordering::SeqCst);
                    }
                    // The database is away: keep working; the lease may still hold when it is back.
                    Err(e) => tracing::warn!("worker {name}: renewing the lease of {unit}: {e}"),
                }
            }
        })
    };
    let outcome = match claim.kind {
        UnitKind::Fit => fit(store, &name, id, &cfg.data_dir).await,
        _ => train(store, cfg, &claim, &flag).await,
    };
    beat.abort();
    // A unit that failed after its lease ran out may have failed for the other worker's sake
    // (which finished it and removed its checkpoints): only a holder fails the job.
    let outcome = match outcome {
        Outcome::Failed(why) if lost.load(Ordering::SeqCst) || matches!(store.renew_lease(id, &claim.unit, &name, cfg.lease_s).await, Ok(Lease::Lost)) => {
            lost.store(true, Ordering::SeqCst);
            tracing::warn!("worker {name}: {} failed after its lease was lost ({why}); the job is not failed for it", claim.unit);
            Outcome::Stopped
        }
        other => other,
    };
    match outcome {
        Outcome::Finished => {}
        Outcome::Stopped if lost.load(Ordering::SeqCst) => {
            tracing::warn!("worker {name}: lost the lease of {} (another worker holds it, or it is done)", claim.unit);
        }
        Outcome::Stopped if stop.load(Ordering::SeqCst) => {
            let _ = retry_db("giving the unit back", || store.release_unit(id, &claim.unit, &name)).await;
            publish(store, &name, id, CalibrationEvent { unit: Some(claim.unit.clone()), ..event(Stage::Interrupted, Some(format!("worker {name} stopped; {} goes back to the queue and resumes from its last checkpoint", claim.unit))) }).await;
        }
        Outcome::Stopped => {
            // Cancelled (or the job ended elsewhere): the first worker to see it ends the job.
            let mut e = event(Stage::Cancelled, Some("cancelled; finished curves are kept".into()));
            e.worker = Some(name.clone());
            let _ = retry_db("cancelling the job", || store.end_open_job(id, JobStatus::Cancelled, Some("cancelled; finished curves are kept"), e.clone())).await;
        }
        Outcome::Failed(why) => {
            let why = format!("{why}; finished curves are kept");
            let mut e = event(Stage::Failed, Some(why.clone()));
            e.worker = Some(name.clone());
            let _ = retry_db("failing the job", || store.end_open_job(id, JobStatus::Failed, Some(&why), e.clone())).await;
        }
    }
}

/// Runs a pretraining or train unit on a blocking thread; its curve is committed from there.
async fn train(store: &Store, cfg: &WorkerConfig, claim: &Claim, flag: &Arc<AtomicBool>) -> Outcome {
    let id = claim.job.id;
    let handle = tokio::runtime::Handle::current();
    let (store2, cfg2, claim2, flag2) = (store.clone(), cfg.clone(), claim.clone(), flag.clone());
    let result = tokio::task::spawn_blocking(move || -> Result<(), sweep::SweepError> {
        let (cfg, claim, flag) = (cfg2, claim2, flag2);
        let request = &claim.job.request;
        let dev = device::select(cfg.device.unwrap_or(request.device))?;
        let path = sweep::corpus_path(&cfg.corpus_dir, request.corpus.as_deref());
        let name = cfg.name.clone();
        let mut on_event = |e: CalibrationEvent| handle.block_on(publish(&store2, &name, id, e));
        let unit_key = claim.unit.clone();
        let mut on_curve = |unit: &p2law_shared::calibrate::Unit, curve: &p2law_shared::data::Curve| -> Result<(), String> {
            let csv = logs::canonical::write_csv(std::slice::from_ref(curve));
            let file = format!("calibration-{id}-{}.csv", unit.key().replace(['/', ':'], "_"));
            let options = LogOptions::default();
            let parsed = logs::parse(&file, &csv, &options).map_err(|e| e.to_string())?;
            let upload = NewUpload { filename: &file, bytes: csv.as_bytes(), options: &options, parsed: &parsed };
            let stored = CalibrationEvent { unit: Some(unit.key()), worker: Some(name.clone()), ..event(Stage::Run, Some("curve stored".into())) };
            let committed = handle.block_on(retry_db("storing a curve", || store2.commit_unit(id, &unit_key, &name, Some(&upload), Some(stored.clone())))).map_err(|e| e.to_string())?;
            if committed == Commit::Duplicate {
                let message = "another worker had stored this unit's curve first; this one was discarded";
                handle.block_on(publish(&store2, &name, id, CalibrationEvent { unit: Some(unit.key()), ..event(Stage::Run, Some(message.into())) }));
            }
            Ok(())
        };
        let mut ctx = sweep::Context {
            lab_dir: cfg.data_dir.join("lab"),
            job_dir: job_dir(&cfg.data_dir, id),
            models_dir: cfg.data_dir.join("models"),
            export_dir: request.export.then(|| export_dir(&cfg.data_dir, id)),
            device: dev,
            cancel: &flag,
            on_event: &mut on_event,
            on_curve: &mut on_curve,
        };
        match claim.kind {
            UnitKind::Pretrain => {
                let parent = claim.unit.strip_prefix("pretrain:").unwrap_or(&claim.unit).to_string();
                sweep::pretrain_parent(request, &parent, &path, &mut ctx)?;
                drop(ctx);
                let committed = handle.block_on(retry_db("marking the pretraining done", || store2.commit_unit(id, &claim.unit, &name, None, None))).map_err(|e| sweep::SweepError::Io(e.to_string()))?;
                if committed == Commit::Duplicate {
                    tracing::info!("worker {name}: {} was done by another worker meanwhile", claim.unit);
                }
                Ok(())
            }
            _ => {
                // The sweep of this unit's parent with every other unit counted done: it loads
                // (or pretrains) the parent, prunes, post-trains, exports and calls on_curve.
                let (units, one) = one_unit(request, &claim.unit).map_err(sweep::SweepError::Request)?;
                sweep::run(&one, &path, &units, &mut ctx).map(|_| ())
            }
        }
    })
    .await;
    match result {
        Err(join) => Outcome::Failed(format!("{}: the unit's thread panicked: {join}", claim.unit)),
        Ok(Err(sweep::SweepError::Cancelled)) => Outcome::Stopped,
        Ok(Err(e)) => Outcome::Failed(e.to_string()),
        Ok(Ok(())) => Outcome::Finished,
    }
}

/// The request narrowed to `key`'s parent, and its other units (to be skipped).
fn one_unit(request: &CalibrationRequest, key: &str) -> Result<(BTreeMap<String, ()>, CalibrationRequest), String> {
    let units = request.units().map_err(|(f, m)| format!("{f}: {m}"))?;
    let unit = units.iter().find(|u| u.key() == key).ok_or_else(|| format!("unit `{key}` is not one of the job's"))?;
    let one = CalibrationRequest { parents: vec![unit.parent.clone()], ..request.clone() };
    let others = units.iter().filter(|u| u.parent == unit.parent && u.key() != key).map(|u| (u.key(), ())).collect();
    Ok((others, one))
}

/// The fit unit: fits the law to the job's curves, stores it and ends the job `done`.
async fn fit(store: &Store, name: &str, id: i64, data_dir: &std::path::Path) -> Outcome {
    publish(store, name, id, event(Stage::Fit, Some("fitting the P² law to the job's curves".into()))).await;
    let job = match retry_db("reading the job", || store.calibration(id)).await {
        Ok(Some(j)) => j,
        Ok(None) => return Outcome::Failed("the job vanished".into()),
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let curves = match retry_db("reading the curves", || store.curves(&job.run_ids)).await {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let seed = job.request.seed;
    let fitted = tokio::task::spawn_blocking(move || sweep::fit(&curves, seed)).await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string()));
    let (request, provenance) = fit_inputs(&job);
    let (report, error) = match fitted {
        Ok(r) => (Some(FitReport { provenance: Some(provenance), ..r }), None),
        Err(e) => (None, Some(format!("every curve is stored, but the P² fit failed: {e}"))),
    };
    let summary = report.as_ref().map(|r| fit_summary("P² fit", r));
    let mut last = event(Stage::Done, error.clone().or(summary));
    last.worker = Some(name.to_string());
    match retry_db("storing the fit", || store.commit_fit(id, name, &request, report.as_ref(), error.as_deref(), last.clone())).await {
        Ok((Commit::Stored(_), _)) => {
            // The job is over: its units' checkpoints go (curves and exports stay).
            clear_job_dir(data_dir, id);
            Outcome::Finished
        }
        Ok((Commit::Duplicate, _)) => Outcome::Finished,
        Err(e) => Outcome::Failed(format!("storing the fit: {e}")),
    }
}

/// Removes a finished job's checkpoints from a shared data dir.
pub fn clear_job_dir(data_dir: &std::path::Path, id: i64) {
    let _ = std::fs::remove_dir_all(job_dir(data_dir, id));
}
