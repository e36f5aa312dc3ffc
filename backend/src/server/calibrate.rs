//! Calibration endpoints: start a sweep, list and read jobs, cancel, and stream a job's events
//! as server-sent events.

use super::AppState;
use super::auth::Authorized;
use super::error::ApiError;
use crate::lab::{device, sweep};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use p2law_shared::api::{ErrorBody, LabInfo, ModelInfo, NamedPreset, ParentInfo};
use p2law_shared::calibrate::{CalibrationEvent, CalibrationJob, CalibrationRequest, DeviceChoice, FAMILY, Stage};
use std::convert::Infallible;

/// `POST /api/calibrations`: queues a sweep.
#[utoipa::path(post, path = "/api/calibrations", tag = "calibrations", security(("bearer" = [])), request_body = CalibrationRequest,
    responses((status = 201, body = CalibrationJob), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(State(state): State<AppState>, _: Authorized, body: Result<Json<CalibrationRequest>, JsonRejection>) -> Result<(StatusCode, Json<CalibrationJob>), ApiError> {
    let Json(request) = body?;
    let units = request.units().map_err(|(field, m)| ApiError::Unprocessable(format!("field `{field}`: {m}")))?;
    let lab = state.lab();
    let corpus = sweep::corpus_path(&lab.corpus_dir, request.corpus.as_deref());
    if !corpus.exists() {
        return Err(ApiError::Unprocessable(format!(
            "field `corpus`: `{}` is not in the corpus directory {} (`./dev setup` installs the default)",
            request.corpus.as_deref().unwrap_or(sweep::DEFAULT_CORPUS),
            lab.public_path(&lab.corpus_dir)
        )));
    }
    for p in &request.parents {
        if let Some(Ok(dir)) = p2law_shared::calibrate::hf_parent(p) {
            let path = lab.models_dir().join(dir);
            if !path.join("config.json").exists() {
                return Err(ApiError::Unprocessable(format!("field `parents`: `{p}`: {} has no config.json (Hugging Face parents are directories in the models directory)", lab.public_path(&path))));
            }
        }
    }
    if request.export && !request.parents.iter().any(|p| p.starts_with("hf:")) {
        return Err(ApiError::Unprocessable("field `export`: only Hugging Face parents (`hf:NAME`) are exported".into()));
    }
    if request.device == DeviceChoice::Wgpu && device::adapters().is_empty() {
        return Err(ApiError::Unprocessable("field `device`: this server has no wgpu adapter; use `cpu` or `auto`".into()));
    }
    let models = lab.models_dir();
    let flops = request.flops_with(|dir| crate::lab::hf::config::HfConfig::read(&models.join(dir)).ok().map(|c| c.shape.parameters() as f64));
    let max = state.config().max_job_flops;
    if flops > max {
        return Err(ApiError::Unprocessable(format!(
            "fields `parents`, `tokens`, `pretrain_scale`: the sweep needs about {flops:.2e} training FLOPs (6 N D over {} units and pretraining), over this server's budget of {max:.2e} per job (`p2law serve --max-job-flops`)",
            units.len()
        )));
    }
    let job = if state.store().dialect() == crate::store::Dialect::Postgres {
        // Workers sharing the database run it, a unit at a time.
        state.store().insert_queued_calibration(&request, &units).await?
    } else {
        let job = state.store().insert_calibration(&request, units.len()).await?;
        lab.wake();
        job
    };
    Ok((StatusCode::CREATED, Json(job)))
}

#[utoipa::path(get, path = "/api/calibrations", tag = "calibrations", responses((status = 200, body = Vec<CalibrationJob>)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<CalibrationJob>>, ApiError> {
    Ok(Json(state.store().calibrations().await?))
}

#[utoipa::path(get, path = "/api/calibrations/{id}", tag = "calibrations", params(("id" = i64, Path, minimum = 1)), responses((status = 400, body = ErrorBody), (status = 200, body = CalibrationJob), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, super::error::Id(id): super::error::Id) -> Result<Json<CalibrationJob>, ApiError> {
    state.store().calibration(id).await?.map(Json).ok_or_else(|| ApiError::NotFound(format!("calibration {id}")))
}

/// `POST /api/calibrations/{id}/cancel`: a queued job is cancelled at once, a running one at its
/// next training step; finished curves are kept.
#[utoipa::path(post, path = "/api/calibrations/{id}/cancel", tag = "calibrations", security(("bearer" = [])), params(("id" = i64, Path, minimum = 1)),
    responses((status = 400, body = ErrorBody), (status = 202, body = CalibrationJob), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn cancel(State(state): State<AppState>, _: Authorized, super::error::Id(id): super::error::Id) -> Result<(StatusCode, Json<CalibrationJob>), ApiError> {
    match state.store().request_cancel(id).await? {
        None => return Err(ApiError::NotFound(format!("calibration {id}"))),
        // It never started: its event log ends here.
        Some(true) => super::jobs::publish(state.store(), state.lab(), id, super::jobs::event(Stage::Cancelled, Some("cancelled before it started".into()))).await,
        Some(false) if state.store().is_queued_job(id).await? => {
            // Workers see the cancel at their next lease renewal and end the job; with none
            // holding one of its units, nobody would: it ends here.
            if !state.store().job_has_live_lease(id).await? {
                let e = super::jobs::event(Stage::Cancelled, Some("cancelled; finished curves are kept".into()));
                state.store().end_open_job(id, p2law_shared::calibrate::JobStatus::Cancelled, Some("cancelled; finished curves are kept"), e).await?;
            }
        }
        Some(false) => state.lab().cancel(id),
    }
    let job = state.store().calibration(id).await?.ok_or_else(|| ApiError::NotFound(format!("calibration {id}")))?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// `GET /api/calibrations/{id}/events`: every event so far (after `Last-Event-ID` when given),
/// then live ones; the stream ends after the final `done`, `failed` or `cancelled`.
#[utoipa::path(get, path = "/api/calibrations/{id}/events", tag = "calibrations", params(("id" = i64, Path, minimum = 1)),
    responses((status = 400, body = ErrorBody), (status = 200, description = "server-sent events, each a JSON CalibrationEvent", content_type = "text/event-stream"), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "the server's event streams are all open; retry after `Retry-After` seconds")))]
pub async fn events(State(state): State<AppState>, super::error::Id(id): super::error::Id, headers: HeaderMap) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if state.store().calibration(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("calibration {id}")));
    }
    let after: u64 = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    let slot = state.event_stream_slot()?;
    // Workers in other processes write a queued job's events: the store is the only source.
    let polled = state.store().is_queued_job(id).await?;
    // Subscribe before reading the log, so nothing falls between the two.
    let mut live = state.lab().subscribe(id);
    let store = state.store().clone();
    let stream = async_stream(move |tx| async move {
        let _slot = slot;
        let mut last = after;
        // Sends one event; false when the stream is over (client gone, or the job ended).
        let forward = |e: CalibrationEvent, last: &mut u64| {
            *last = e.seq;
            let end = e.stage.is_final();
            let tx = tx.clone();
            async move { tx.send(e).await.is_ok() && !end }
        };
        // The log so far, a page at a time: a long job's log is never held whole.
        loop {
            let Ok(page) = store.events_page(id, last, EVENT_PAGE).await else { return };
            let full = page.len() == EVENT_PAGE;
            for e in page {
                if !forward(e, &mut last).await {
                    return;
                }
            }
            if !full {
                break;
            }
        }
        while polled {
            tokio::time::sleep(EVENT_POLL).await;
            let Ok(page) = store.events_page(id, last, EVENT_PAGE).await else { continue };
            for e in page {
                if !forward(e, &mut last).await {
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
        }
        loop {
            let batch = match live.recv().await {
                Ok(e) if e.seq <= last => continue,
                Ok(e) => vec![e],
                // Fell behind: catch up from the log.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => match store.events(id, last).await {
                    Ok(missed) => missed,
                    Err(_) => return,
                },
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            for e in batch {
                if !forward(e, &mut last).await {
                    return;
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// How often a stream of a job run by workers reads new events from the store.
pub const EVENT_POLL: std::time::Duration = std::time::Duration::from_millis(300);

/// Stored events read per query when a stream replays a job's log.
pub const EVENT_PAGE: usize = 512;

/// Feeds a channel from a task and streams it as SSE events.
fn async_stream<F, Fut>(producer: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<CalibrationEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(producer(tx));
    futures_util::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |e: CalibrationEvent| {
        Ok(Event::default().id(e.seq.to_string()).event(e.stage.as_str()).json_data(&e).unwrap_or_else(|_| Event::default().comment("unserialisable event")))
    })
}

fn models(dir: &std::path::Path) -> Vec<ModelInfo> {
    let mut out: Vec<ModelInfo> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.path().join("config.json").exists()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let name = format!("hf:{}", e.file_name().to_string_lossy());
            match crate::lab::hf::HfConfig::read(&e.path()) {
                Ok(c) => ModelInfo {
                    name,
                    architecture: Some(c.arch.class().into()),
                    parameters: Some(c.shape.parameters()),
                    layers: Some(c.shape.num_hidden_layers),
                    dtype: c.dtype.map(|d| format!("{d:?}")),
                    error: None,
                },
                Err(err) => ModelInfo { name, architecture: None, parameters: None, layers: None, dtype: None, error: Some(err.to_string()) },
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[utoipa::path(get, path = "/api/lab", tag = "calibrations", responses((status = 200, body = LabInfo)))]
pub async fn info(State(state): State<AppState>) -> Json<LabInfo> {
    let adapters = tokio::task::spawn_blocking(device::adapters).await.unwrap_or_default();
    let lab = state.lab();
    let mut corpora: Vec<String> = std::fs::read_dir(&lab.corpus_dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect())
        .unwrap_or_default();
    corpora.sort();
    let models_dir = lab.models_dir();
    let found = tokio::task::spawn_blocking({
        let d = models_dir.clone();
        move || models(&d)
    })
    .await
    .unwrap_or_default();
    Json(LabInfo {
        parents: FAMILY.iter().map(ParentInfo::from).collect(),
        models_dir: lab.public_path(&models_dir),
        models: found,
        presets: ["smoke", "mini"].iter().filter_map(|p| CalibrationRequest::preset(p).ok().map(|request| NamedPreset { name: p.to_string(), request })).collect(),
        adapters: adapters.iter().map(|a| format!("{} [{}, {}]", a.name, a.kind, a.backend)).collect(),
        corpus_dir: lab.public_path(&lab.corpus_dir),
        corpora,
    })
}
