//! Status step, over HTTP (axum): `/status`, `/healthz`, `/readyz`,
//! `/metrics`, a human page at `/`, and `POST /reconcile`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::mpsc;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::controller::triggers::Trigger;
use crate::metrics::Metrics;
use crate::status::{Phase, Status};

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 16 * 1024;
/// Longest a request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub status: Arc<RwLock<Status>>,
    pub metrics: Arc<Metrics>,
    pub trigger: mpsc::Sender<Trigger>,
    /// Bearer token for `POST /reconcile`.
    pub token: Option<String>,
    /// `POST /reconcile` without a token (off by default).
    pub open_reconcile: bool,
    /// False once the controller loop has stopped.
    pub alive: Arc<AtomicBool>,
}

/// The API's routes, for serving and for `oneshot` tests.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status", get(status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/reconcile", post(reconcile))
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

fn snapshot(state: &HttpState) -> Option<Status> {
    state.status.read().ok().map(|s| s.clone())
}

fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint (see /status, /healthz, /readyz, /metrics, /)",
    )
}

async fn status(State(state): State<HttpState>) -> Response {
    match state.status.read() {
        Ok(s) => Json(&*s).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "status unavailable"),
    }
}

async fn healthz(State(state): State<HttpState>) -> Response {
    if state.alive.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the controller loop stopped\n").into_response()
    }
}

/// Ready: the engine answers and a first full observe is done (a standby is ready).
pub fn is_ready(s: &Status) -> Result<(), String> {
    if !s.engine.connected {
        return Err(format!(
            "engine not reachable: {}",
            s.engine.last_error.as_deref().unwrap_or("not connected yet")
        ));
    }
    if s.reconcile.count == 0 || s.phase == Phase::Pending {
        return Err("no full observe yet".to_string());
    }
    Ok(())
}

async fn readyz(State(state): State<HttpState>) -> Response {
    match snapshot(&state).map(|s| is_ready(&s)) {
        Some(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Some(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response(),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn reconcile(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    match &state.token {
        None if !state.open_reconcile => {
            return error(
                StatusCode::FORBIDDEN,
                "POST /reconcile is off: configure a token (--reconcile-token-file) to enable it",
            )
        }
        None => {}
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match given {
                None => {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, "Bearer")],
                        Json(serde_json::json!({"error": "a bearer token is required"})),
                    )
                        .into_response()
                }
                Some(g) if !constant_time_eq(g.as_bytes(), token.as_bytes()) => {
                    return error(StatusCode::FORBIDDEN, "wrong token")
                }
                Some(_) => {}
            }
        }
    }
    match state.trigger.try_send(Trigger::Manual) {
        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"accepted": true, "message": "a reconcile is scheduled"})),
        )
            .into_response(),
        Err(mpsc::error::TrySendError::Closed(_)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "the controller has stopped")
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn page(State(state): State<HttpState>) -> Response {
    match snapshot(&state) {
        Some(s) => Html(crate::page::render(&s)).into_response(),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "status unavailable"),
    }
}

/// Serves until `shutdown`, then drains open requests within `grace`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: tokio_util::sync::CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let stop = shutdown.clone();
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move { stop.cancelled().await });
    tokio::select! {
        r = server => r,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("HTTP requests still open after the shutdown deadline; closing");
            Ok(())
        }
    }
}
