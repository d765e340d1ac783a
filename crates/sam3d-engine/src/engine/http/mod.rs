//! `sam3d-studio-engine serve-http`: the engine behind nnInteractive's remote protocol, so 3D
//! Slicer's nnInteractive extension (or any `nninteractive-client`, the viewer's remote engine
//! included) drives this project's model over HTTP: upload an image once, then many cheap
//! prompts, each answered with the changed box of the client's target buffer.
//!
//! - [`sessions`]: leases (claim, heartbeat, idle and liveness reaping, capacity);
//! - [`worker`]: the model thread, one model for every client, a volume state per client;
//! - [`image`]: what an uploaded array and a client's voxel coordinates mean (geometry);
//! - [`target`]: a client's target buffer and its changes (undo);
//! - [`handlers`]: the endpoints.
//!
//! The stack is axum on tokio. Bodies are read with a size limit and a deadline; every
//! decompression, preparation and prediction runs off the async threads. A panic in a request
//! becomes a 500 for that request, never the end of the server. It binds to loopback unless
//! told otherwise, and takes a bearer key from a file (`--api-key-file`).

pub mod handlers;
pub mod image;
pub mod sessions;
pub mod target;
pub mod worker;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sam3d_core::nninteractive::api::ErrorBody;
use sessions::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use worker::ModelWorker;

/// The server's settings.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub bind: SocketAddr,
    /// The bearer key every request but `/healthz` must carry (`None`: no key).
    pub api_key: Option<String>,
    pub max_sessions: usize,
    pub idle_timeout: Duration,
    pub liveness_timeout: Duration,
    /// How often idle and dead sessions are reaped.
    pub sweep_interval: Duration,
    /// The largest request body (a packed image, compressed).
    pub max_body_bytes: usize,
    /// The largest image or segmentation once unpacked.
    pub max_array_bytes: usize,
    /// How long a client may take to send a body.
    pub body_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 1527)),
            api_key: None,
            max_sessions: 4,
            idle_timeout: Duration::from_secs(600),
            liveness_timeout: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(15),
            max_body_bytes: 1 << 30,
            max_array_bytes: default_max_array_bytes(),
            body_timeout: Duration::from_secs(600),
        }
    }
}

/// A quarter of the machine's memory, at most 8 GiB (an image or a buffer larger than that
/// would not leave room for the model and the other clients).
pub fn default_max_array_bytes() -> usize {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok()))
        .map(|kib| kib * 1024)
        .unwrap_or(16 << 30);
    (total / 4).min(8 << 30)
}

/// What every request shares.
#[derive(Debug)]
pub struct AppState {
    pub options: HttpOptions,
    pub registry: Registry,
    pub worker: ModelWorker,
    pub capabilities: sam3d_core::nninteractive::api::Capabilities,
}

/// An error reply: a status and FastAPI's `{"detail": …}` body, which the client shows.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError { status, detail: detail.into(), retry_after: None }
    }
    pub fn bad(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody { detail: self.detail }).unwrap_or_default();
        let mut r = (self.status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// Checks the bearer key (when one is configured).
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.options.api_key else { return Ok(()) };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token (Authorization: Bearer <key>)")),
        Some(g) if sessions::constant_time_eq(g.as_bytes(), key.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid bearer token")),
    }
}

/// Runs the server until SIGINT or SIGTERM. `on_bound` hears the address once bound.
pub fn serve_http(options: HttpOptions, worker: ModelWorker, on_bound: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().thread_name("sam3d-http").build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.bind).await.map_err(|e| anyhow::anyhow!("could not listen on {}: {e}", options.bind))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(handlers::app_state(options, worker));
        on_bound(addr);
        let reaper = tokio::spawn(handlers::reap_forever(state.clone()));
        let app = handlers::router(state.clone());
        axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
        reaper.abort();
        for (lease, _) in state.registry.sweep_all() {
            state.worker.forget(lease.client);
        }
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
