//! The HTTP service: `app(state) -> Router` (testable without `main`) and `serve`.
//!
//! Serves the browser app from its built `dist/` folder at `/` and a JSON API under `/api`.
//! Reading is open; uploads, fits and deletes need the bearer token.

mod api;
mod auth;
mod calibrate;
pub mod error;
pub mod lab;

pub use axum::Router;

use crate::store::Store;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Json};
use axum::routing::{delete, get, post};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tower_http::services::{ServeDir, ServeFile};

/// The largest request body the API accepts.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    static_dir: Option<PathBuf>,
    lab: Arc<lab::Lab>,
}

impl AppState {
    /// The state, and the calibration worker started on the tokio runtime (jobs left running by
    /// an earlier process resume). Data (the lab's parents and checkpoints) goes under
    /// `data_dir`; corpora are read from `corpus_dir`.
    pub fn new(store: Store, static_dir: Option<PathBuf>, data_dir: PathBuf, corpus_dir: PathBuf) -> Self {
        let lab = Arc::new(lab::Lab::new(data_dir, corpus_dir));
        tokio::spawn(lab::worker(store.clone(), lab.clone()));
        Self { inner: Arc::new(Inner { store, static_dir, lab }) }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn lab(&self) -> &lab::Lab {
        &self.inner.lab
    }
}

/// The router: `/api/...` and the frontend.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/presets", get(presets))
        .route("/uploads", post(api::upload))
        .route("/uploads/{id}", delete(api::delete_upload))
        .route("/uploads/{id}/raw", get(api::upload_raw))
        .route("/runs", get(api::runs))
        .route("/runs/{id}", get(api::run))
        .route("/fits", get(api::fits).post(api::create_fit))
        .route("/fits/{id}", get(api::get_fit).delete(api::delete_fit))
        .route("/calibrations", get(calibrate::list).post(calibrate::create))
        .route("/calibrations/{id}", get(calibrate::get))
        .route("/calibrations/{id}/cancel", post(calibrate::cancel))
        .route("/calibrations/{id}/events", get(calibrate::events))
        .route("/lab", get(calibrate::info))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { error::ApiError::NotFound("API route".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let router = Router::new().nest("/api", api);
    let router = match &state.inner.static_dir {
        Some(dir) => router.fallback_service(ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")))),
        None => router.fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "the frontend is not built: run `cargo xtask web`") }),
    };
    router.with_state(state)
}

/// The OpenAPI document, generated from the handlers' annotations and the API types.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "p2law", description = "Predict, refit and calibrate post-training after pruning (P² law)."),
    paths(health, presets, api::upload, api::delete_upload, api::upload_raw, api::runs, api::run, api::create_fit, api::fits, api::get_fit, api::delete_fit,
        calibrate::create, calibrate::list, calibrate::get, calibrate::cancel, calibrate::events, calibrate::info),
    components(schemas(p2law_shared::api::UploadMeta, p2law_shared::calibrate::CalibrationEvent)),
    modifiers(&BearerAuth),
    tags((name = "uploads"), (name = "runs"), (name = "fits"), (name = "calibrations"), (name = "meta"))
)]
#[derive(Debug)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

async fn openapi() -> impl IntoResponse {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

#[utoipa::path(get, path = "/api/health", tag = "meta", responses((status = 200, description = "the server is up")))]
async fn health() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

#[utoipa::path(get, path = "/api/presets", tag = "meta", responses((status = 200, body = Vec<p2law_shared::presets::Preset>)))]
async fn presets() -> impl IntoResponse {
    Json(p2law_shared::presets::presets())
}

/// Binds `addr` and serves until the process ends; prints the bound address (port 0 picks one).
pub async fn serve(addr: SocketAddr, state: AppState) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    println!("p2law listening on http://{bound}");
    serve_on(listener, app(state)).await
}

/// Serves `router` on an already bound listener.
pub async fn serve_on(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}
