//! The calibration worker: one job at a time from the store's queue, on a blocking thread (burn
//! uses every core). Events are numbered and stored before they are broadcast, so a client that
//! connects late replays them; finished units are stored as runs as soon as they finish, so a
//! killed server loses at most the unit in progress, which resumes from its last checkpoint.

use crate::lab::{device, sweep};
use crate::store::{NewUpload, Store};
use p2law_shared::api::FitRequest;
use p2law_shared::calibrate::{CalibrationEvent, CalibrationJob, JobStatus, Stage};
use p2law_shared::law::LawForm;
use p2law_shared::logs::{self, LogOptions};
use p2law_shared::report::FitReport;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, broadcast};

/// Shared between handlers and the worker.
#[derive(Debug)]
pub struct Lab {
    pub data_dir: PathBuf,
    pub corpus_dir: PathBuf,
    wake: Notify,
    cancel: Mutex<HashMap<i64, Arc<AtomicBool>>>,
    channels: Mutex<HashMap<i64, broadcast::Sender<CalibrationEvent>>>,
    /// Set by [`Lab::shutdown`]: the running job stops at its next step, checkpointed, and stays
    /// `running` so the next start resumes it.
    shutting_down: AtomicBool,
    /// The worker has returned (or never ran: workers of a shared database run the jobs).
    stopped: tokio::sync::watch::Sender<bool>,
}

impl Lab {
    pub fn new(data_dir: PathBuf, corpus_dir: PathBuf) -> Self {
        Self {
            data_dir,
            corpus_dir,
            wake: Notify::new(),
            cancel: Mutex::default(),
            channels: Mutex::default(),
            shutting_down: AtomicBool::new(false),
            stopped: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Asks the worker to stop: the running unit checkpoints at its next step and the job is
    /// left to resume at the next start, its start not counted against [`MAX_STARTS`].
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for flag in self.cancel.lock().unwrap_or_else(|e| e.into_inner()).values() {
            flag.store(true, Ordering::SeqCst);
        }
        self.wake.notify_one();
    }

    /// Resolves once the worker has returned (after [`Lab::shutdown`]).
    pub async fn stopped(&self) {
        let mut rx = self.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Says the worker has returned; for a server whose jobs other processes run.
    pub fn mark_stopped(&self) {
        self.stopped.send_replace(true);
    }

    fn stopping(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Hugging Face parents (`hf:NAME`) are directories here.
    pub fn models_dir(&self) -> PathBuf {
        self.data_dir.join("models")
    }

    /// A path of the lab as public responses show it: relative ones as they are, absolute ones
    /// from the data or corpus directory (`<data-dir>/models/x`), never the host's layout.
    pub fn public_path(&self, path: &std::path::Path) -> String {
        if path.is_relative() {
            return path.display().to_string();
        }
        for (root, name) in [(&self.data_dir, "<data-dir>"), (&self.corpus_dir, "<corpus-dir>")] {
            if let Ok(rest) = path.strip_prefix(root) {
                return if rest.as_os_str().is_empty() { name.to_string() } else { format!("{name}/{}", rest.display()) };
            }
        }
        path.file_name().map_or_else(|| "(a server path)".into(), |n| format!(".../{}", n.to_string_lossy()))
    }

    /// `text` (an event message, a job's error) with every absolute path under the data or corpus
    /// directory written as [`Lab::public_path`] writes it: the API never shows the host's layout.
    pub fn public_text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (root, name) in [(&self.data_dir, "<data-dir>"), (&self.corpus_dir, "<corpus-dir>")] {
            if root.is_absolute() {
                let r = root.display().to_string();
                let r = r.trim_end_matches('/');
                if !r.is_empty() {
                    out = out.replace(r, name);
                }
            }
        }
        out
    }

    /// Tells the worker there is work.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Live events of a job.
    pub fn subscribe(&self, job: i64) -> broadcast::Receiver<CalibrationEvent> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.entry(job).or_insert_with(|| broadcast::channel(1024).0).subscribe()
    }

    fn sender(&self, job: i64) -> broadcast::Sender<CalibrationEvent> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.entry(job).or_insert_with(|| broadcast::channel(1024).0).clone()
    }

    /// Stops a running job at its next step.
    pub fn cancel(&self, job: i64) {
        if let Some(flag) = self.cancel.lock().unwrap_or_else(|e| e.into_inner()).get(&job) {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

pub fn event(stage: Stage, message: Option<String>) -> CalibrationEvent {
    CalibrationEvent { seq: 0, stage, unit: None, step: 0, steps: 0, tokens: 0, point: None, eta_s: None, message, run_id: None, fit_id: None, worker: None, schedule: None }
}

/// Stores and broadcasts one event.
pub(crate) async fn publish(store: &Store, lab: &Lab, job: i64, mut e: CalibrationEvent) {
    e.message = e.message.map(|m| lab.public_text(&m));
    match crate::store::retry_busy("storing an event", || store.append_event(job, e.clone())).await {
        Ok(e) => {
            let _ = lab.sender(job).send(e);
        }
        Err(err) => tracing::error!("job {job}: storing an event: {err}"),
    }
}

/// Runs queued (and interrupted) jobs until the process ends or [`Lab::shutdown`].
pub async fn worker(store: Store, lab: Arc<Lab>) {
    work(&store, &lab).await;
    lab.stopped.send_replace(true);
}

async fn work(store: &Store, lab: &Arc<Lab>) {
    let (store, lab) = (store.clone(), lab.clone());
    if let Err(e) = store.settle_cancelled().await {
        tracing::error!("calibration queue: {e}");
    }
    loop {
        if lab.stopping() {
            return;
        }
        let next = match store.next_calibration().await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("calibration queue: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                continue;
            }
        };
        let Some(job) = next else {
            if !lab.stopping() {
                lab.wake.notified().await;
            }
            continue;
        };
        let id = job.id;
        let resumed = job.status == JobStatus::Running;
        let starts = match store.claim_calibration(id).await {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!("job {id}: {e}");
                continue;
            }
        };
        let (status, error, fit_id) = if resumed && starts > MAX_STARTS {
            // Every earlier start ended with the process: running it again would end it again.
            let why = format!("the server stopped while running this job on each of its {} starts; not resumed again (see the server log of those runs)", starts - 1);
            (JobStatus::Failed, Some(why), None)
        } else {
            publish(&store, &lab, id, event(Stage::Running, Some(if resumed { "resumed after a restart".to_string() } else { "started".into() }))).await;
            run_job(&store, &lab, job).await
        };
        if status == JobStatus::Cancelled && lab.stopping() && !store.cancel_requested(id).await.unwrap_or(false) {
            // Stopped by the shutdown, not by a user: the job stays `running` and resumes at the
            // next start, which this one does not count against.
            if let Err(e) = store.release_start(id).await {
                tracing::error!("job {id}: {e}");
            }
            publish(&store, &lab, id, event(Stage::Interrupted, Some("the server is shutting down; the job resumes from its last checkpoint at the next start".into()))).await;
            lab.cancel.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return;
        }
        let error = error.map(|e| lab.public_text(&e));
        let mut last = event(status.into(), error.clone());
        last.fit_id = fit_id;
        match crate::store::retry_busy("finishing the job", || store.finish_calibration(id, status, error.as_deref(), fit_id, last.clone())).await {
            Ok(e) => {
                let _ = lab.sender(id).send(e);
            }
            Err(e) => tracing::error!("job {id}: {e}"),
        }
        lab.cancel.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        // A finished job is never resumed: its units' checkpoints go (curves and exports stay).
        let _ = std::fs::remove_dir_all(job_dir(&lab.data_dir, id));
        // Subscribers have the final event queued; dropping the sender ends their streams.
        lab.channels.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

/// A job's working folder (its units' checkpoints while they train) in a data dir.
pub fn job_dir(data_dir: &std::path::Path, id: i64) -> PathBuf {
    data_dir.join("lab").join("jobs").join(id.to_string())
}

/// Where a job writes its healed Hugging Face models (`"export": true`).
pub fn export_dir(data_dir: &std::path::Path, id: i64) -> PathBuf {
    data_dir.join("exports").join(format!("job-{id}"))
}

/// Starts a job may have: the first and one resume after a restart. A job interrupted on both
/// (its run killed the process twice) is failed at the next start instead of resumed forever.
pub const MAX_STARTS: i64 = 2;

async fn run_job(store: &Store, lab: &Arc<Lab>, job: CalibrationJob) -> (JobStatus, Option<String>, Option<i64>) {
    let id = job.id;
    let flag = Arc::new(AtomicBool::new(false));
    lab.cancel.lock().unwrap_or_else(|e| e.into_inner()).insert(id, flag.clone());
    if lab.stopping() || store.cancel_requested(id).await.unwrap_or(false) {
        flag.store(true, Ordering::Relaxed);
    }
    let done: BTreeMap<String, ()> = match store.calibration_units(id).await {
        Ok(units) => units.into_iter().map(|(k, _)| (k, ())).collect(),
        Err(e) => return (JobStatus::Failed, Some(e.to_string()), None),
    };
    let handle = tokio::runtime::Handle::current();
    let (store2, lab2, request) = (store.clone(), lab.clone(), job.request.clone());
    let outcome = tokio::task::spawn_blocking(move || -> Result<(), sweep::SweepError> {
        let dev = device::select(request.device)?;
        let described = dev.describe();
        handle.block_on(crate::store::retry_busy("marking the job running", || store2.set_calibration_status(id, JobStatus::Running, Some(&described), None, None))).map_err(|e| sweep::SweepError::Io(e.to_string()))?;
        let path = sweep::corpus_path(&lab2.corpus_dir, request.corpus.as_deref());
        let mut on_event = |e: CalibrationEvent| handle.block_on(publish(&store2, &lab2, id, e));
        let mut on_curve = |unit: &p2law_shared::calibrate::Unit, curve: &p2law_shared::data::Curve| -> Result<(), String> {
            let csv = logs::canonical::write_csv(std::slice::from_ref(curve));
            let name = format!("calibration-{id}-{}.csv", unit.key().replace(['/', ':'], "_"));
            let options = LogOptions::default();
            let parsed = logs::parse(&name, &csv, &options).map_err(|e| e.to_string())?;
            let (key, upload) = (unit.key(), NewUpload { filename: &name, bytes: csv.as_bytes(), options: &options, parsed: &parsed });
            let run_id = handle
                .block_on(crate::store::retry_busy("storing a curve", || store2.insert_calibration_run(id, &key, &upload)))
                .map_err(|e| e.to_string())?;
            handle.block_on(publish(&store2, &lab2, id, CalibrationEvent { unit: Some(unit.key()), run_id: Some(run_id), ..event(Stage::Run, Some("curve stored".into())) }));
            Ok(())
        };
        let mut ctx = sweep::Context {
            lab_dir: lab2.data_dir.join("lab"),
            job_dir: job_dir(&lab2.data_dir, id),
            models_dir: lab2.models_dir(),
            export_dir: request.export.then(|| export_dir(&lab2.data_dir, id)),
            device: dev,
            cancel: &flag,
            on_event: &mut on_event,
            on_curve: &mut on_curve,
        };
        sweep::run(&request, &path, &done, &mut ctx).map(|_| ())
    })
    .await;
    match outcome {
        Err(join) => (JobStatus::Failed, Some(format!("the job's thread panicked: {join}")), None),
        Ok(Err(sweep::SweepError::Cancelled)) => (JobStatus::Cancelled, Some("cancelled; finished curves are kept".into()), None),
        Ok(Err(e)) => (JobStatus::Failed, Some(format!("{e}; finished curves are kept")), None),
        Ok(Ok(())) => match fit_job(store, lab, id).await {
            Ok(fit) => (JobStatus::Done, None, Some(fit)),
            Err(e) => (JobStatus::Done, Some(format!("every curve is stored, but the P² fit failed: {e}")), None),
        },
    }
}

/// What a job's fit is stored with: the request it stands for and its provenance.
pub fn fit_inputs(job: &CalibrationJob) -> (FitRequest, String) {
    let provenance = format!(
        "p2law {} calibration job {}: parents {}, methods {}, {} post-training tokens per model, device {}; runs {:?}",
        env!("CARGO_PKG_VERSION"),
        job.id,
        job.request.parents.join("+"),
        job.request.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join("+"),
        job.request.tokens,
        job.device.as_deref().unwrap_or("?"),
        job.run_ids
    );
    let request = FitRequest {
        run_ids: job.run_ids.clone(),
        law: LawForm::P2,
        objective: Default::default(),
        starts: "quick".into(),
        holdout: None,
        bootstrap: 0,
        bootstrap_by: Default::default(),
        seed: job.request.seed,
        level: None,
    };
    (request, provenance)
}

/// The event that says what a stored fit found.
pub fn fit_summary(label: &str, report: &FitReport) -> String {
    format!(
        "{label}: R² {}, RMSE {:.4}{}",
        report.metrics.r2.map_or("n/a".into(), |r| format!("{r:.4}")),
        report.metrics.rmse,
        report.degeneracy().map_or(String::new(), |w| format!("; {w}"))
    )
}

/// Fits the P² law to the job's stored runs and stores the fit with its provenance.
async fn fit_job(store: &Store, lab: &Lab, id: i64) -> Result<i64, String> {
    publish(store, lab, id, event(Stage::Fit, Some("fitting the P² law to the job's curves".into()))).await;
    let job = store.calibration(id).await.map_err(|e| e.to_string())?.ok_or("the job vanished")?;
    let curves = store.curves(&job.run_ids).await.map_err(|e| e.to_string())?;
    let seed = job.request.seed;
    let report = tokio::task::spawn_blocking(move || sweep::fit(&curves, seed)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let (request, provenance) = fit_inputs(&job);
    let report = FitReport { provenance: Some(provenance), ..report };
    let stored = store.insert_fit(&request, &report).await.map_err(|e| e.to_string())?;
    publish(store, lab, id, event(Stage::Fit, Some(fit_summary(&format!("P² fit #{}", stored.id), &report)))).await;
    Ok(stored.id)
}
