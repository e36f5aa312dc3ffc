//! JSON API handlers: uploads, runs, fits.

use super::auth::Authorized;
use super::error::ApiError;
use super::AppState;
use crate::store::NewUpload;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::Json;
use p2law_shared::api::{ErrorBody, FileSummary, FitRequest, FitSummary, ForecastRequest, PredictRequest, RunDetail, RunSummary, StoredFit, UploadMeta, UploadResponse};
use p2law_shared::logs::{self, ParsedLog};
use p2law_shared::FitReport;
use p2law_shared::report::run_fit;

/// The most checkpoints one upload may hold, and one fit may use.
pub const MAX_POINTS: usize = 2_000_000;

/// The most runs one fit may name.
pub const MAX_FIT_RUNS: usize = 10_000;

/// The multipart body of `POST /api/uploads`, for the OpenAPI document only (`Deserialize` only
/// so that `deny_unknown_fields` states that no other part is taken).
#[derive(utoipa::ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadForm {
    /// Log files: at least one `file` part.
    #[schema(value_type = Vec<String>, format = Binary, min_items = 1)]
    file: Vec<Vec<u8>>,
    /// Options: JSON `UploadMeta`.
    meta: Option<String>,
}

/// `POST /api/uploads`: multipart `file` parts (any number) and an optional `meta` part (JSON
/// [`UploadMeta`]). Everything is parsed before anything is stored; one bad file rejects all.
#[utoipa::path(post, path = "/api/uploads", tag = "uploads", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data", description = "`file` parts (at least one) and an optional `meta` part: JSON UploadMeta"),
    responses((status = 201, body = UploadResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload(State(state): State<AppState>, _: Authorized, multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>) -> Result<(StatusCode, Json<UploadResponse>), ApiError> {
    // Not multipart at all (no body, another content type): the JSON error, not axum's text.
    let mut multipart = multipart.map_err(|e| ApiError::BadRequest(format!("the body must be multipart/form-data with `file` parts: {}", e.body_text())))?;
    let mut meta = UploadMeta::default();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("meta") => {
                let text = field.text().await.map_err(multipart_error)?;
                // `null` is no options, as an absent part is.
                meta = serde_json::from_str::<Option<UploadMeta>>(&text).map_err(|e| ApiError::Unprocessable(format!("field `meta`: {e}")))?.unwrap_or_default();
            }
            Some("file") => {
                let name = field.file_name().map(str::to_string).filter(|n| !n.is_empty()).ok_or_else(|| ApiError::BadRequest("a `file` part has no file name".into()))?;
                let bytes = field.bytes().await.map_err(multipart_error)?;
                files.push((name, bytes.to_vec()));
            }
            Some(other) => return Err(ApiError::BadRequest(format!("unknown multipart field `{other}`; expected `file` and `meta`"))),
            None => return Err(ApiError::BadRequest("a multipart part has no name".into())),
        }
    }
    if files.is_empty() {
        return Err(ApiError::BadRequest("no `file` part: attach at least one log".into()));
    }
    for (part, names) in [("files", meta.files.keys().collect::<Vec<_>>()), ("runs", meta.runs.keys().collect())] {
        if let Some(name) = names.into_iter().find(|k| !files.iter().any(|(n, _)| n == *k)) {
            return Err(ApiError::Unprocessable(format!("field `meta.{part}`: `{name}` is not among the uploaded files")));
        }
    }
    let parsed = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let mut out = Vec::new();
        let mut points = 0usize;
        for (name, bytes) in files {
            let options = meta.files.get(&name).cloned().unwrap_or_else(|| meta.all.clone());
            let mut log = parse_file(&name, &bytes, &options)?;
            if let Some(runs) = meta.runs.get(&name) {
                logs::apply_run_meta(&name, &mut log.curves, runs)?;
            }
            points += log.curves.iter().map(|c| c.points.len()).sum::<usize>();
            if points > MAX_POINTS {
                return Err(ApiError::Unprocessable(format!("{name}: the upload holds more than {MAX_POINTS} checkpoints; split it or thin the logs")));
            }
            out.push((name, bytes, options, log));
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let new: Vec<NewUpload<'_>> = parsed.iter().map(|(name, bytes, options, log)| NewUpload { filename: name, bytes, options, parsed: log }).collect();
    let stored = state.store().insert_uploads(&new).await?;
    let files = parsed
        .iter()
        .zip(stored)
        .map(|((name, bytes, _, log), (upload_id, runs))| FileSummary {
            file: name.clone(),
            upload_id,
            bytes: bytes.len(),
            format: log.format,
            token_source: log.token_source,
            runs,
            skipped: log.skipped.clone(),
            deduplicated: log.deduplicated,
            warmup_dropped: log.warmup_dropped,
        })
        .collect();
    Ok((StatusCode::CREATED, Json(UploadResponse { files })))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(format!("the upload exceeds the server's limit of {} MiB", super::MAX_BODY_BYTES >> 20))
    } else {
        ApiError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// Parses one file in any format (TensorBoard by its record checksums, text by the shared parsers).
fn parse_file(name: &str, bytes: &[u8], options: &logs::LogOptions) -> Result<ParsedLog, ApiError> {
    Ok(logs::parse_bytes(name, bytes, options)?)
}

#[utoipa::path(get, path = "/api/runs", tag = "runs", responses((status = 200, body = Vec<RunSummary>)))]
pub async fn runs(State(state): State<AppState>) -> Result<Json<Vec<RunSummary>>, ApiError> {
    Ok(Json(state.store().runs().await?))
}

#[utoipa::path(get, path = "/api/runs/{id}", tag = "runs", params(("id" = i64, Path, minimum = 1)), responses((status = 400, body = ErrorBody), (status = 200, body = RunDetail), (status = 404, body = ErrorBody)))]
pub async fn run(State(state): State<AppState>, super::error::Id(id): super::error::Id) -> Result<Json<RunDetail>, ApiError> {
    state.store().run(id).await?.map(Json).ok_or_else(|| ApiError::NotFound(format!("run {id}")))
}

/// `POST /api/runs/{id}/forecast`: forecasts a stored run from its own checkpoints (a read: no
/// token), off the async executor in one of the fit slots.
#[utoipa::path(post, path = "/api/runs/{id}/forecast", tag = "runs", params(("id" = i64, Path, minimum = 1)), request_body = ForecastRequest,
    responses((status = 200, body = p2law_shared::forecast::Forecast), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody, description = "every fit slot is busy; retry after `Retry-After` seconds")))]
pub async fn forecast_run(State(state): State<AppState>, super::error::Id(id): super::error::Id, body: Result<Json<ForecastRequest>, JsonRejection>) -> Result<Json<p2law_shared::forecast::Forecast>, ApiError> {
    let Json(request) = body?;
    let options = request.resolve()?;
    let run = state.store().run(id).await?.ok_or_else(|| ApiError::NotFound(format!("run {id}")))?;
    // The prior from the run's own N0, ρ, L0 and method where the request leaves them out; a run
    // that cannot take one (a control at ρ = 0, no method recorded) is forecast without, and says so.
    let (options, no_prior) = if options.prior.is_none() && request.prior.as_deref().is_none_or(|p| p == "auto") {
        let s = &run.summary;
        match request.clone().with_run(s).resolve() {
            Ok(o) => (o, None),
            Err(e) => (options, Some(format!("no prior from the run's own inputs: field `{}`: {}", e.field, e.message))),
        }
    } else {
        (options, None)
    };
    // A calibration job's run follows the schedule it was trained along, unless the request gives one.
    let (options, from_job) = match (options.shape, run.schedule) {
        (None, Some(s)) => (p2law_shared::forecast::ForecastOptions { shape: Some(s), ..options }, Some(format!("the schedule {s} is the post-training recipe of the calibration job that made run {id}, from its events"))),
        _ => (options, None),
    };
    let obs: Vec<p2law_shared::forecast::Obs> = run.checkpoints.iter().map(|p| p2law_shared::forecast::Obs { tokens: p.tokens, loss: p.loss, step: None }).collect();
    let slot = state.fit_slot()?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        p2law_shared::forecast::forecast(&obs, None, &options).map(|mut f| {
            f.notes.extend(no_prior);
            f.notes.extend(from_job);
            f
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map(Json)
    .map_err(|e| ApiError::Unprocessable(format!("run {id}: {e}")))
}

/// `POST /api/fits`: fits the law to stored runs off the async executor and stores the result.
#[utoipa::path(post, path = "/api/fits", tag = "fits", security(("bearer" = [])), request_body = FitRequest,
    responses((status = 201, body = StoredFit), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody, description = "every fit slot is busy; retry after `Retry-After` seconds")))]
pub async fn create_fit(State(state): State<AppState>, _: Authorized, body: Result<Json<FitRequest>, JsonRejection>) -> Result<(StatusCode, Json<StoredFit>), ApiError> {
    let Json(request) = body?;
    if request.run_ids.is_empty() {
        return Err(ApiError::Unprocessable("field `run_ids`: give at least one run".into()));
    }
    if request.run_ids.len() > MAX_FIT_RUNS {
        return Err(ApiError::Unprocessable(format!("field `run_ids`: at most {MAX_FIT_RUNS} runs, got {}", request.run_ids.len())));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(id) = request.run_ids.iter().find(|id| !seen.insert(**id)) {
        return Err(ApiError::Unprocessable(format!("field `run_ids`: run {id} is listed twice")));
    }
    let (options, protocol, boot) = request.resolve().map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let curves = state.store().curves(&request.run_ids).await?;
    let points: usize = curves.iter().map(|c| c.points.len()).sum();
    if points > MAX_POINTS {
        return Err(ApiError::Unprocessable(format!("field `run_ids`: the runs hold {points} checkpoints, over the {MAX_POINTS} a fit may use")));
    }
    // The slot goes with the computation, so it frees when the fit's threads stop, not when the
    // client stops waiting.
    let slot = state.fit_slot()?;
    // Dropped with this handler's future, also when the client leaves mid-fit: the fit's
    // threads stop at their next start or resample instead of running on for nobody.
    let guard = CancelOnDrop(options.cancel.clone());
    let provenance = format!("p2law {} fit of {} to stored runs {:?}", env!("CARGO_PKG_VERSION"), request.law, request.run_ids);
    let report = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        run_fit(&curves, &options, protocol, boot)
    })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let report = FitReport { provenance: Some(provenance), ..report };
    let stored = state.store().insert_fit(&request, &report).await?;
    drop(guard);
    Ok((StatusCode::CREATED, Json(stored)))
}

/// Cancels a fit when dropped.
struct CancelOnDrop(p2law_shared::fit::Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// `POST /api/predict`: the curve a stored fit or a preset predicts for one pruned model, with
/// its bootstrap band, every input outside the fit's calibrated ranges (and by how far), and the
/// fit's degeneracy. Cheap (no fitting): open like the other reads.
#[utoipa::path(post, path = "/api/predict", tag = "fits", request_body = PredictRequest,
    responses((status = 200, body = p2law_shared::report::PredictionReport), (status = 404, body = ErrorBody, description = "no stored fit with `fit_id`"), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn predict(State(state): State<AppState>, body: Result<Json<PredictRequest>, JsonRejection>) -> Result<Json<p2law_shared::report::PredictionReport>, ApiError> {
    let Json(r) = body?;
    r.check_tokens()?;
    let report = match (r.fit_id, r.preset.as_deref()) {
        (Some(id), None) => state.store().fit(id).await?.ok_or_else(|| ApiError::NotFound(format!("fit {id}")))?.report,
        (None, Some(p)) => p2law_shared::presets::preset(p).map_err(|e| ApiError::Unprocessable(format!("field `preset`: {e}")))?.report,
        _ => return Err(ApiError::Unprocessable("fields `fit_id`, `preset`: give exactly one of them".into())),
    };
    let x = p2law_shared::api::model_inputs(report.law, r.n0, r.rho, r.n, r.l0)?;
    let out = p2law_shared::report::predict_report(&report, &x, &r.tokens).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/fits", tag = "fits", responses((status = 200, body = Vec<FitSummary>)))]
pub async fn fits(State(state): State<AppState>) -> Result<Json<Vec<FitSummary>>, ApiError> {
    Ok(Json(state.store().fits().await?))
}

#[utoipa::path(get, path = "/api/fits/{id}", tag = "fits", params(("id" = i64, Path, minimum = 1)), responses((status = 400, body = ErrorBody), (status = 200, body = StoredFit), (status = 404, body = ErrorBody)))]
pub async fn get_fit(State(state): State<AppState>, super::error::Id(id): super::error::Id) -> Result<Json<StoredFit>, ApiError> {
    state.store().fit(id).await?.map(Json).ok_or_else(|| ApiError::NotFound(format!("fit {id}")))
}

#[utoipa::path(delete, path = "/api/fits/{id}", tag = "fits", security(("bearer" = [])), params(("id" = i64, Path, minimum = 1)),
    responses((status = 400, body = ErrorBody), (status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_fit(State(state): State<AppState>, _: Authorized, super::error::Id(id): super::error::Id) -> Result<StatusCode, ApiError> {
    if state.store().delete_fit(id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::NotFound(format!("fit {id}"))) }
}

#[utoipa::path(delete, path = "/api/uploads/{id}", tag = "uploads", security(("bearer" = [])), params(("id" = i64, Path, minimum = 1)),
    responses((status = 400, body = ErrorBody), (status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_upload(State(state): State<AppState>, _: Authorized, super::error::Id(id): super::error::Id) -> Result<StatusCode, ApiError> {
    if state.store().delete_upload(id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::NotFound(format!("upload {id}"))) }
}

/// `GET /api/uploads/{id}/raw`: the file exactly as uploaded; 410 once retention dropped it.
#[utoipa::path(get, path = "/api/uploads/{id}/raw", tag = "uploads", params(("id" = i64, Path, minimum = 1)),
    responses((status = 400, body = ErrorBody), (status = 200, description = "the file exactly as uploaded", content_type = "application/octet-stream"), (status = 404, body = ErrorBody),
        (status = 410, body = ErrorBody, description = "retention (`p2law gc --upload-bytes-days`) dropped the original; its runs stay")))]
pub async fn upload_raw(State(state): State<AppState>, super::error::Id(id): super::error::Id) -> Result<Vec<u8>, ApiError> {
    match state.store().upload_original(id).await? {
        Some(crate::store::Original::Kept { bytes, .. }) => Ok(bytes),
        Some(crate::store::Original::Dropped { filename, at }) => {
            Err(ApiError::Gone(format!("upload {id} ({filename}): its original bytes were dropped by retention (`p2law gc --upload-bytes-days`) at {at}; its runs stay")))
        }
        None => Err(ApiError::NotFound(format!("upload {id}"))),
    }
}
