//! Status step, over HTTP (axum): `/status`, `/healthz`, `/readyz`,
//! `/metrics`, a human page at `/`, and `POST /reconcile`.

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
use crate::status::liveness::Liveness;
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
    /// Whether the controller loop makes progress.
    pub liveness: Arc<Liveness>,
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

/// Healthy: the loop runs and finishes reconciles (see [`Liveness`]); a
/// hung engine turns it red, not only a dead process.
async fn healthz(State(state): State<HttpState>) -> Response {
    match state.liveness.check(std::time::Instant::now()) {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {why}\n")).into_response(),
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
    if let Err(why) = state.liveness.check(std::time::Instant::now()) {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response();
    }
    match snapshot(&state).map(|s| is_ready(&s)) {
        Some(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Some(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response(),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    // The gauges say how things stand now, not at the last reconcile (the
    // engine may have gone away since).
    if let Some(st) = snapshot(&state) {
        state.metrics.observe_status(&st);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// The body is read (and so held to the limit) though nothing is expected in it.
async fn reconcile(State(state): State<HttpState>, headers: HeaderMap, _body: axum::body::Bytes) -> Response {
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
        Some(s) => Html(crate::status::page::render(&s)).into_response(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::leader::Role;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn state_with(phase: Phase, token: Option<&str>, open: bool) -> (HttpState, mpsc::Receiver<Trigger>) {
        let (tx, rx) = mpsc::channel(4);
        let mut s = Status::new("logging", "2026-01-01T00:00:00Z".into(), Role::Leader);
        s.phase = phase;
        if phase != Phase::Pending && phase != Phase::EngineUnavailable {
            s.engine.connected = true;
            s.reconcile.count = 1;
        }
        let state = HttpState {
            status: Arc::new(RwLock::new(s)),
            metrics: Arc::new(Metrics::new()),
            trigger: tx,
            token: token.map(str::to_string),
            open_reconcile: open,
            liveness: Arc::new(Liveness::new(Duration::from_secs(60))),
        };
        (state, rx)
    }

    async fn call(
        state: &HttpState,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, String) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let resp = router(state.clone())
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let code = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (code, String::from_utf8_lossy(&bytes).to_string())
    }

    #[tokio::test]
    async fn every_phase_on_every_read_endpoint() {
        for phase in crate::metrics::PHASES {
            let (state, _rx) = state_with(phase, None, false);
            let (code, body) = call(&state, "GET", "/status", None, vec![]).await;
            assert_eq!(code, StatusCode::OK);
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(json["phase"], crate::metrics::phase_name(phase));
            assert_eq!(json["schema_version"], crate::status::SCHEMA_VERSION);
            let (code, _) = call(&state, "GET", "/healthz", None, vec![]).await;
            assert_eq!(code, StatusCode::OK);
            let (code, _) = call(&state, "GET", "/readyz", None, vec![]).await;
            let ready = !matches!(phase, Phase::Pending | Phase::EngineUnavailable);
            assert_eq!(code == StatusCode::OK, ready, "{phase:?}");
            let (code, page) = call(&state, "GET", "/", None, vec![]).await;
            assert_eq!(code, StatusCode::OK);
            assert!(
                page.contains(&format!(">{}</span>", crate::metrics::phase_name(phase))),
                "{phase:?}"
            );
            let (code, metrics) = call(&state, "GET", "/metrics", None, vec![]).await;
            assert_eq!(code, StatusCode::OK);
            let line = format!("swarmlog_phase{{phase=\"{}\"}} 1", crate::metrics::phase_name(phase));
            assert!(metrics.contains(&line), "{phase:?}: no `{line}` in\n{metrics}");
        }
    }

    #[tokio::test]
    async fn healthz_fails_when_the_loop_stopped() {
        let (state, _rx) = state_with(Phase::Converged, None, false);
        state.liveness.stopped();
        assert_eq!(
            call(&state, "GET", "/healthz", None, vec![]).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn reconcile_auth() {
        let (off, _rx) = state_with(Phase::Converged, None, false);
        assert_eq!(
            call(&off, "POST", "/reconcile", None, vec![]).await.0,
            StatusCode::FORBIDDEN
        );
        let (open, mut rx) = state_with(Phase::Converged, None, true);
        assert_eq!(
            call(&open, "POST", "/reconcile", None, vec![]).await.0,
            StatusCode::ACCEPTED
        );
        assert_eq!(rx.recv().await, Some(Trigger::Manual));
        let (guarded, mut rx) = state_with(Phase::Converged, Some("s3cret"), false);
        assert_eq!(
            call(&guarded, "POST", "/reconcile", None, vec![]).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&guarded, "POST", "/reconcile", Some("Bearer nope"), vec![])
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&guarded, "POST", "/reconcile", Some("Basic s3cret"), vec![])
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&guarded, "POST", "/reconcile", Some("Bearer s3cret"), vec![])
                .await
                .0,
            StatusCode::ACCEPTED
        );
        assert_eq!(rx.recv().await, Some(Trigger::Manual));
    }

    #[tokio::test]
    async fn unknown_paths_wrong_methods_and_big_bodies() {
        let (state, _rx) = state_with(Phase::Converged, None, true);
        assert_eq!(
            call(&state, "GET", "/nope", None, vec![]).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            call(&state, "GET", "/reconcile", None, vec![]).await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            call(&state, "POST", "/status", None, vec![]).await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            call(&state, "DELETE", "/", None, vec![]).await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let big = vec![b'x'; BODY_LIMIT + 1];
        assert_eq!(
            call(&state, "POST", "/reconcile", None, big).await.0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[tokio::test]
    async fn status_snapshot_of_a_known_state() {
        let (state, _rx) = state_with(Phase::Degraded, None, false);
        if let Ok(mut s) = state.status.write() {
            s.node_id = "node1".into();
            s.engine.host = "unix:///run/docker.sock".into();
            s.engine.api_version = "1.41".into();
            s.engine.nodes = 3;
            s.degraded_nodes.push(crate::controller::nodes::Degraded {
                hostname: "logger-1".into(),
                reason: "logger node is down".into(),
            });
            s.objects.push(crate::status::ObjectStatus {
                kind: crate::plan::ObjectKind::Service,
                name: "logging_kibana".into(),
                state: crate::status::ObjectState::Drifted,
                replicas_desired: Some(1),
                replicas_running: Some(0),
                last_change: None,
                why: Some("TaskTemplate.ContainerSpec.Env".into()),
            });
            s.companion.desired = vec![vec!["kibana.example.com".into()]];
            s.shipping = crate::status::ShippingStatus {
                enabled: true,
                service: Some("logging_shipper".into()),
                nodes: 3,
                running: 2,
                missing: vec!["worker-2".into()],
                problems: vec![
                    "the shipper (logging_shipper) fails on worker-2: bind source path does not exist".into(),
                ],
            };
            s.elasticsearch.retention = crate::status::RetentionStatus {
                retention: Some("14d".into()),
                policy: "swarmlog-logs".into(),
                policy_state: "in-force".into(),
                template: "swarmlog-logs".into(),
                template_state: "in-force".into(),
                detail: None,
                data_streams: vec![crate::status::DataStreamStatus {
                    name: "logs-swarm-default".into(),
                    indices: 3,
                    ilm_policy: Some("swarmlog-logs".into()),
                }],
                oldest_index: Some(".ds-logs-swarm-default-2025.12.30-000001".into()),
                oldest_day: Some("2025-12-30".into()),
            };
            s.elasticsearch.watermarks = Some(Default::default());
            s.preflight = crate::status::PreflightStatus {
                state: crate::status::PreflightState::On,
                image: Some("swarmlog:0.1.0".into()),
                min_map_count: Some(262144),
                nodes: vec![crate::status::PreflightNode {
                    hostname: "logger-2".into(),
                    node_id: "node2".into(),
                    state: crate::status::PreflightNodeState::Low,
                    value: Some(65530),
                    checked_at: Some("2026-01-01T00:00:02Z".into()),
                    message: "vm.max_map_count on logger-2 is 65530, below 262144".into(),
                }],
            };
            s.event(
                "2026-01-01T00:00:01Z".into(),
                "node",
                "logger-1 degraded: logger node is down",
            );
        }
        let (_, body) = call(&state, "GET", "/status", None, vec![]).await;
        let mut json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["version"] = "<version>".into();
        insta::assert_json_snapshot!("status_known_state", json);
    }

    /// The OpenAPI file lists exactly the routes and the /status fields.
    #[test]
    fn openapi_is_true() {
        let text = include_str!("../docs/openapi.yaml");
        let doc = crate::render::yaml::parse("docs/openapi.yaml", text).unwrap().to_json();
        let mut paths: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
        paths.sort();
        assert_eq!(paths, ["/", "/healthz", "/metrics", "/readyz", "/reconcile", "/status"]);
        assert!(doc["paths"]["/reconcile"]["post"].is_object());
        let (state, _rx) = state_with(Phase::Converged, None, false);
        let status = serde_json::to_value(&*state.status.read().unwrap()).unwrap();
        let schema = &doc["components"]["schemas"]["Status"]["properties"];
        let mut documented: Vec<&String> = schema.as_object().unwrap().keys().collect();
        let mut actual: Vec<&String> = status.as_object().unwrap().keys().collect();
        documented.sort();
        actual.sort();
        assert_eq!(
            documented, actual,
            "docs/openapi.yaml Status properties differ from the /status document"
        );
        for key in [
            "engine",
            "reconcile",
            "companion",
            "preflight",
            "elasticsearch",
            "shipping",
        ] {
            let name = schema[key]["$ref"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string();
            let mut documented: Vec<&String> = doc["components"]["schemas"][&name]["properties"]
                .as_object()
                .unwrap()
                .keys()
                .collect();
            let mut actual: Vec<&String> = status[key].as_object().unwrap().keys().collect();
            documented.sort();
            actual.sort();
            assert_eq!(documented, actual, "{name}");
        }
    }
}
