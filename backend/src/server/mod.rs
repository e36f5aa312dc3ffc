//! The HTTP service: `app(state) -> Router` (testable without `main`) and `serve`.
//!
//! Serves the browser app from its built `dist/` folder at `/` and a JSON API under `/api`.
//! Reading is open; uploads, fits and deletes need the bearer token.

mod api;
mod auth;
pub mod error;

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
}

impl AppState {
    pub fn new(store: Store, static_dir: Option<PathBuf>) -> Self {
        Self { inner: Arc::new(Inner { store, static_dir }) }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
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
        .fallback(|| async { error::ApiError::NotFound("API route".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let router = Router::new().nest("/api", api);
    let router = match &state.inner.static_dir {
        Some(dir) => router.fallback_service(ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")))),
        None => router.fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "the frontend is not built: run `cargo xtask web`") }),
    };
    router.with_state(state)
}

async fn health() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

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
