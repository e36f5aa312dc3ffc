//! The HTTP service: `app(state) -> Router` (testable without `main`) and `serve`.
//!
//! Serves the browser app from its built `dist/` folder at `/` and a JSON API under `/api`.
//! Reading is open; uploads, fits and deletes need the bearer token.

mod api;
mod auth;
mod calibrate;
pub mod error;
pub mod jobs;

pub use axum::Router;

use crate::store::Store;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Json};
use axum::routing::{delete, get, post};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tower_http::services::{ServeDir, ServeFile};

/// The largest request body the API accepts.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// The default [`ServerConfig::max_job_flops`]: 1e17 training FLOPs, about three weeks of this
/// project's 2-core CPU at 50 GFLOP/s and under an hour of one datacenter GPU: the whole built-in
/// family at its recipe fits, weeks of accidental compute do not.
pub const DEFAULT_MAX_JOB_FLOPS: f64 = 1e17;

/// Which `Host` (and `Origin`) a request may name. A server on loopback answers only to loopback
/// names, so a page on another site whose DNS name is rebound to 127.0.0.1 cannot read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPolicy {
    /// `localhost`, `127.0.0.0/8` and `[::1]`, any port.
    Loopback,
    /// These host names (lower case, without port), and loopback ones.
    List(Vec<String>),
    /// Any host (a server behind a proxy that checks it).
    Any,
}

impl HostPolicy {
    /// Whether `authority` (`host[:port]`, as in a `Host` header) is allowed.
    pub fn allows(&self, authority: &str) -> bool {
        let host = host_of(authority);
        match self {
            HostPolicy::Any => true,
            HostPolicy::Loopback => is_loopback_name(&host),
            HostPolicy::List(names) => is_loopback_name(&host) || names.iter().any(|n| n.eq_ignore_ascii_case(&host)),
        }
    }
}

/// The host of `host[:port]` or `[v6]:port`, lower case, brackets kept for IPv6.
fn host_of(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    if a.starts_with('[') {
        return a.split_once(']').map_or(a.clone(), |(h, _)| format!("{h}]"));
    }
    a.rsplit_once(':').filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit())).map_or(a.clone(), |(h, _)| h.to_string())
}

fn is_loopback_name(host: &str) -> bool {
    host == "localhost" || host == "[::1]" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// The default [`ServerConfig::max_event_streams`].
pub const DEFAULT_MAX_EVENT_STREAMS: usize = 64;

/// What the server bounds and accepts, beyond the request caps in `p2law-shared`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Training FLOPs one calibration job may ask for (`6 N D`, pretraining included).
    pub max_job_flops: f64,
    pub hosts: HostPolicy,
    /// Fits computed at once; more get 503 with `Retry-After`.
    pub max_concurrent_fits: usize,
    /// Event streams (`/events`) open at once; more get 503.
    pub max_event_streams: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { max_job_flops: DEFAULT_MAX_JOB_FLOPS, hosts: HostPolicy::Loopback, max_concurrent_fits: cores.max(1), max_event_streams: DEFAULT_MAX_EVENT_STREAMS }
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    static_dir: Option<PathBuf>,
    lab: Arc<jobs::Lab>,
    config: ServerConfig,
    fits: Arc<tokio::sync::Semaphore>,
    streams: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// The state, and the calibration worker started on the tokio runtime (jobs left running by
    /// an earlier process resume). Data (the lab's parents and checkpoints) goes under
    /// `data_dir`; corpora are read from `corpus_dir`.
    pub fn new(store: Store, static_dir: Option<PathBuf>, data_dir: PathBuf, corpus_dir: PathBuf) -> Self {
        Self::with_config(store, static_dir, data_dir, corpus_dir, ServerConfig::default())
    }

    /// [`AppState::new`] with the server's limits and host policy.
    pub fn with_config(store: Store, static_dir: Option<PathBuf>, data_dir: PathBuf, corpus_dir: PathBuf, config: ServerConfig) -> Self {
        let lab = Arc::new(jobs::Lab::new(data_dir, corpus_dir));
        if store.dialect() == crate::store::Dialect::Sqlite {
            tokio::spawn(jobs::worker(store.clone(), lab.clone()));
        } else {
            // A shared database's jobs are run by `p2law worker` processes.
            lab.mark_stopped();
        }
        let fits = Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_fits.max(1)));
        let streams = Arc::new(tokio::sync::Semaphore::new(config.max_event_streams.max(1)));
        Self { inner: Arc::new(Inner { store, static_dir, lab, config, fits, streams }) }
    }

    /// A slot for one open event stream, or 503 when every slot is taken.
    pub fn event_stream_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, error::ApiError> {
        self.inner.streams.clone().try_acquire_owned().map_err(|_| {
            error::ApiError::Busy(format!("{} event streams are open, this server's limit; retry shortly", self.inner.config.max_event_streams))
        })
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// A slot to compute a fit in, or 503 when every slot is taken.
    pub fn fit_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, error::ApiError> {
        self.inner.fits.clone().try_acquire_owned().map_err(|_| {
            error::ApiError::Busy(format!("the server is computing {} fits, its limit; retry shortly", self.inner.config.max_concurrent_fits))
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn lab(&self) -> &jobs::Lab {
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
        .route("/runs/{id}/forecast", post(api::forecast_run))
        .route("/fits", get(api::fits).post(api::create_fit))
        .route("/fits/{id}", get(api::get_fit).delete(api::delete_fit))
        .route("/predict", post(api::predict))
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
    router.layer(axum::middleware::from_fn(refuse_large_bodies)).layer(axum::middleware::from_fn_with_state(state.clone(), check_host)).with_state(state)
}

/// The most of an over-limit body the server reads and discards before answering 413.
const DRAIN_BYTES: u64 = 4 * MAX_BODY_BYTES as u64;

/// Answers 413 to a request whose `Content-Length` is over [`MAX_BODY_BYTES`] before any handler
/// reads it. The body is read and discarded first (up to [`DRAIN_BYTES`]): a server that closes
/// with unread bytes makes the kernel reset the connection, and the client then loses the 413
/// and sees only a broken pipe.
async fn refuse_large_bodies(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let length = request.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let Some(length) = length.filter(|&n| n > MAX_BODY_BYTES as u64) else {
        return next.run(request).await;
    };
    if length <= DRAIN_BYTES {
        use futures_util::StreamExt;
        let mut body = request.into_body().into_data_stream();
        while let Some(Ok(_)) = body.next().await {}
    }
    error::ApiError::TooLarge(format!("the request body is {length} bytes, over the server's limit of {} MiB", MAX_BODY_BYTES >> 20)).into_response()
}

/// Refuses a request whose `Host` or `Origin` the [`HostPolicy`] does not allow (DNS rebinding,
/// cross-site pages), before any handler runs.
async fn check_host(State(state): State<AppState>, request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let policy = &state.inner.config.hosts;
    let host = request.headers().get(axum::http::header::HOST).and_then(|v| v.to_str().ok()).map(str::to_string).or_else(|| request.uri().authority().map(|a| a.to_string()));
    let origin = request.headers().get(axum::http::header::ORIGIN).and_then(|v| v.to_str().ok());
    let refused = match (&host, origin) {
        (None, _) if *policy != HostPolicy::Any => Some("the request names no host".to_string()),
        (Some(h), _) if !policy.allows(h) => Some(format!("host `{h}` is not one this server answers to")),
        // `Origin: null` (a sandboxed page, a file) is no site of ours either.
        (_, Some(o)) if !policy.allows(o.split_once("://").map_or(o, |(_, rest)| rest)) => Some(format!("origin `{o}` is not one this server answers to")),
        _ => None,
    };
    match refused {
        Some(why) => error::ApiError::Forbidden(format!("{why}; start the server with `--allowed-host NAME` to allow it")).into_response(),
        None => next.run(request).await,
    }
}

/// The OpenAPI document, generated from the handlers' annotations and the API types.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "p2law", description = "Predict, refit and calibrate post-training after pruning (P² law)."),
    paths(health, presets, api::upload, api::delete_upload, api::upload_raw, api::runs, api::run, api::forecast_run, api::create_fit, api::fits, api::get_fit, api::delete_fit, api::predict,
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
        // The host check answers every route before its handler: say so on each operation.
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let forbidden = ResponseBuilder::new()
            .description("the request's Host or Origin is not one this server answers to (`p2law serve --allowed-host`)")
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build();
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.delete, &mut item.put, &mut item.patch].into_iter().flatten() {
                op.responses.responses.entry("403".into()).or_insert_with(|| RefOr::T(forbidden.clone()));
            }
        }
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

/// How long a client may take to send a request's headers (slow-header connections are closed).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a clean shutdown waits for the running calibration unit to checkpoint.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

/// Binds `addr` and serves until SIGTERM or Ctrl-C; prints the bound address (port 0 picks one).
/// On the signal it stops accepting, lets requests in flight finish (up to 5 s), and stops the
/// calibration worker: the running unit checkpoints and its job resumes at the next start.
pub async fn serve(addr: SocketAddr, state: AppState) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    println!("p2law listening on http://{bound}");
    let lab = state.inner.lab.clone();
    serve_until(listener, app(state), shutdown_signal()).await?;
    eprintln!("p2law: shutting down; a running calibration checkpoints and resumes at the next start");
    lab.shutdown();
    if tokio::time::timeout(SHUTDOWN_GRACE, lab.stopped()).await.is_err() {
        eprintln!("p2law: the calibration did not stop within {} s; it resumes from its last checkpoint", SHUTDOWN_GRACE.as_secs());
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves `router` on an already bound listener until the process ends.
pub async fn serve_on(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    serve_until(listener, router, std::future::pending()).await
}

/// Serves `router` on `listener` until `shutdown` resolves: HTTP/1.1 with a header-read timeout
/// ([`HEADER_READ_TIMEOUT`]), then a graceful close of the open connections (at most 5 s, since
/// event streams stay open).
pub async fn serve_until(listener: tokio::net::TcpListener, router: Router, shutdown: impl std::future::Future<Output = ()>) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors and the like: wait rather than spin or stop serving.
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
                let connection = graceful.watch(builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_policy_answers_to_loopback_names_only() {
        let p = HostPolicy::Loopback;
        for ok in ["127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:8080", "127.1.2.3"] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in ["attacker.example", "attacker.example:8080", "127.0.0.1.attacker.example", "localhost.attacker.example:8080", "10.0.0.1:8080", "[::2]:80", "null", ""] {
            assert!(!p.allows(bad), "{bad}");
        }
        let list = HostPolicy::List(vec!["p2law.lab".into()]);
        assert!(list.allows("P2LAW.lab:443") && list.allows("127.0.0.1:1") && !list.allows("other.lab"));
        assert!(HostPolicy::Any.allows("attacker.example"));
    }
}
