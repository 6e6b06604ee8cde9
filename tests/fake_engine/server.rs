//! The fake engine's HTTP side: the Docker Engine API paths swarmlog calls
//! (with or without a `/v1.xx` prefix), the event stream and its firehose,
//! and the counters on `GET /_fake/stats` (not counted themselves).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Value as Json};
use tokio::sync::broadcast;

use crate::swarm::{labels_match, parse_filters, ApiError, Emitted, Filters, Obj, Swarm};

/// Requests and response bytes, by `METHOD /path` with IDs as `{id}`.
#[derive(Default)]
pub struct Stats {
    by_path: BTreeMap<String, (u64, u64)>,
    total_requests: u64,
    total_bytes: u64,
    events_emitted: u64,
    event_streams_open: u64,
}

impl Stats {
    fn add_request(&mut self, key: &str) {
        self.by_path.entry(key.to_string()).or_default().0 += 1;
        self.total_requests += 1;
    }

    fn add_bytes(&mut self, key: &str, n: u64) {
        self.by_path.entry(key.to_string()).or_default().1 += n;
        self.total_bytes += n;
    }

    pub fn json(&self) -> Json {
        let paths: serde_json::Map<String, Json> = self
            .by_path
            .iter()
            .map(|(k, (r, b))| (k.clone(), json!({"requests": r, "bytes": b})))
            .collect();
        json!({
            "total_requests": self.total_requests,
            "total_bytes": self.total_bytes,
            "events_emitted": self.events_emitted,
            "event_streams_open": self.event_streams_open,
            "paths": paths,
        })
    }
}

/// One published event: its filter keys and its JSON line.
#[derive(Clone)]
pub struct Event {
    typ: &'static str,
    action: &'static str,
    id: String,
    name: String,
    time_nano: u128,
    line: Bytes,
}

pub struct App {
    pub swarm: Mutex<Swarm>,
    pub stats: Mutex<Stats>,
    events: broadcast::Sender<Arc<Event>>,
    /// The last events, for `since`.
    history: Mutex<VecDeque<Arc<Event>>>,
    /// Firehose events a second (`--events-per-sec`, `POST /_fake/firehose?per_sec=N`).
    pub rate: AtomicU64,
}

const HISTORY: usize = 10_000;

fn now_nano() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

impl App {
    pub fn new(swarm: Swarm) -> Arc<App> {
        let (events, _) = broadcast::channel(1 << 16);
        Arc::new(App {
            swarm: Mutex::new(swarm),
            stats: Mutex::new(Stats::default()),
            events,
            history: Mutex::new(VecDeque::new()),
            rate: AtomicU64::new(0),
        })
    }

    pub fn stats_json(&self) -> Json {
        self.stats.lock().map(|s| s.json()).unwrap_or_default()
    }

    /// Publishes an event to every open `/events` stream.
    pub fn publish(&self, (typ, action, id, name): Emitted) {
        let time_nano = now_nano();
        let line = match self.swarm.lock() {
            Ok(s) => s.shapes.event(typ, action, &id, &name, time_nano),
            Err(_) => return,
        };
        let mut line = serde_json::to_vec(&line).unwrap_or_default();
        line.push(b'\n');
        let ev = Arc::new(Event {
            typ,
            action,
            id,
            name,
            time_nano,
            line: Bytes::from(line),
        });
        if let Ok(mut h) = self.history.lock() {
            if h.len() >= HISTORY {
                h.pop_front();
            }
            h.push_back(ev.clone());
        }
        if let Ok(mut s) = self.stats.lock() {
            s.events_emitted += 1;
        }
        // No subscriber is not an error.
        let _ = self.events.send(ev);
    }

    fn count(&self, key: &str, bytes: u64) {
        if let Ok(mut s) = self.stats.lock() {
            s.add_request(key);
            s.add_bytes(key, bytes);
        }
    }
}

/// The firehose: [`App::rate`] `service update` events a second for the
/// services `other_svc_N`, round robin, until the process ends.
pub async fn firehose(app: Arc<App>) {
    let targets: Vec<(String, String)> = match app.swarm.lock() {
        Ok(s) => s
            .services
            .iter()
            .filter(|o| o.name.starts_with("other_svc_"))
            .map(|o| (o.id.clone(), o.name.clone()))
            .collect(),
        Err(_) => return,
    };
    if targets.is_empty() {
        return;
    }
    let mut started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent: u64 = 0;
    let mut per_sec = 0;
    loop {
        tick.tick().await;
        let rate = app.rate.load(Ordering::Relaxed);
        if rate != per_sec {
            (per_sec, started, sent) = (rate, tokio::time::Instant::now(), 0);
        }
        let due = (started.elapsed().as_secs_f64() * per_sec as f64) as u64;
        while sent < due {
            let (id, name) = &targets[(sent % targets.len() as u64) as usize];
            app.publish(("service", "update", id.clone(), name.clone()));
            sent += 1;
        }
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(dispatch).with_state(app)
}

/// The path without its `/v1.xx` prefix.
fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(i) = rest.find('/') {
            let v = &rest[..i];
            if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return &rest[i..];
            }
        }
    }
    path
}

/// The stats key: method and path with object IDs as `{id}`.
fn stats_key(method: &Method, segs: &[&str]) -> String {
    let mut out = String::new();
    for (i, s) in segs.iter().enumerate() {
        out.push('/');
        let is_id = i == 1 && !matches!(*s, "create");
        out.push_str(if is_id { "{id}" } else { s });
    }
    format!("{method} {out}")
}

fn json_response(status: u16, body: Bytes) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn api_error(e: ApiError) -> (u16, Bytes) {
    (e.status, Bytes::from(json!({"message": e.message}).to_string()))
}

fn list(items: impl Iterator<Item = Bytes>) -> Bytes {
    let mut out = Vec::with_capacity(1 << 16);
    out.push(b'[');
    for (i, b) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&b);
    }
    out.push(b']');
    Bytes::from(out)
}

fn ok_json(v: &Json) -> (u16, Bytes) {
    (200, Bytes::from(v.to_string()))
}

fn body_json(body: &Bytes) -> Result<Json, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError {
        status: 400,
        message: format!("invalid JSON body: {e}"),
    })
}

async fn dispatch(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = strip_version(uri.path()).trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["_fake", "stats"] => return json_response(200, Bytes::from(app.stats_json().to_string())),
        ["_fake", "firehose"] if method == Method::POST => {
            return match q.get("per_sec").and_then(|r| r.parse::<u64>().ok()) {
                Some(r) => {
                    app.rate.store(r, Ordering::Relaxed);
                    json_response(200, Bytes::from(json!({"per_sec": r}).to_string()))
                }
                None => json_response(400, Bytes::from_static(b"{\"message\":\"per_sec=N is required\"}")),
            };
        }
        ["_fake", ..] => {
            return json_response(
                404,
                Bytes::from_static(b"{\"message\":\"/_fake/stats or POST /_fake/firehose?per_sec=N\"}"),
            )
        }
        _ => {}
    }
    let key = stats_key(&method, &segs);
    if method == Method::GET && segs == ["events"] {
        return events(app, key, &q);
    }
    let filters = match parse_filters(q.get("filters").map(String::as_str)) {
        Ok(f) => f,
        Err(e) => {
            let (status, b) = api_error(e);
            app.count(&key, b.len() as u64);
            return json_response(status, b);
        }
    };
    let (status, bytes, emitted) = handle(&app, &method, &segs, &q, &filters, &body);
    app.count(&key, bytes.len() as u64);
    if let Some(e) = emitted {
        app.publish(e);
    }
    if segs == ["_ping"] {
        let mut r = (StatusCode::OK, bytes).into_response();
        r.headers_mut().insert("api-version", HeaderValue::from_static("1.41"));
        return r;
    }
    json_response(status, bytes)
}

/// Answers one request: status, body, and the event it causes.
fn handle(
    app: &App,
    method: &Method,
    segs: &[&str],
    q: &HashMap<String, String>,
    f: &Filters,
    body: &Bytes,
) -> (u16, Bytes, Option<Emitted>) {
    let Ok(mut s) = app.swarm.lock() else {
        return (
            500,
            Bytes::from_static(b"{\"message\":\"fake engine: state poisoned\"}"),
            None,
        );
    };
    let version = q.get("version").and_then(|v| v.parse::<u64>().ok());
    let get_one = |objs: &[Obj], kind: &str, key: &str| -> (u16, Bytes, Option<Emitted>) {
        match objs.iter().find(|o| o.id == key || o.name == key) {
            Some(o) => (200, o.bytes.clone(), None),
            None => {
                let (st, b) = api_error(ApiError {
                    status: 404,
                    message: format!("{kind} {key} not found"),
                });
                (st, b, None)
            }
        }
    };
    let write = |r: Result<(Json, Emitted), ApiError>| match r {
        Ok((answer, ev)) => (201, Bytes::from(answer.to_string()), Some(ev)),
        Err(e) => {
            let (st, b) = api_error(e);
            (st, b, None)
        }
    };
    let done = |r: Result<Emitted, ApiError>, status: u16| match r {
        Ok(ev) => (status, Bytes::new(), Some(ev)),
        Err(e) => {
            let (st, b) = api_error(e);
            (st, b, None)
        }
    };
    let parsed = || body_json(body);
    match (method.clone(), segs) {
        (Method::GET | Method::HEAD, ["_ping"]) => (200, Bytes::from_static(b"OK"), None),
        (Method::GET, ["version"]) => {
            let (st, b) = ok_json(&s.shapes.version);
            (st, b, None)
        }
        (Method::GET, ["info"]) => {
            let (st, b) = ok_json(&s.info());
            (st, b, None)
        }
        (Method::GET, ["nodes"]) => (200, list(s.list_nodes(f).into_iter().map(|o| o.bytes.clone())), None),
        (Method::GET, ["nodes", id]) => get_one(&s.nodes, "node", id),
        (Method::GET, ["services"]) => {
            let items = Swarm::list_objs(&s.services, f);
            if q.get("status").map(String::as_str) == Some("true") {
                let st = s.service_status();
                let b = list(
                    items
                        .into_iter()
                        .map(|o| with_status(o, st.get(o.id.as_str()).copied())),
                );
                (200, b, None)
            } else {
                (200, list(items.into_iter().map(|o| o.bytes.clone())), None)
            }
        }
        (Method::GET, ["services", id]) => match s.find_service(id) {
            Some(o) => (200, o.bytes.clone(), None),
            None => get_one(&[], "service", id),
        },
        (Method::GET, ["tasks"]) => match s.list_tasks(f) {
            Ok(tasks) => (200, list(tasks.into_iter().map(|t| t.bytes.clone())), None),
            Err(e) => {
                let (st, b) = api_error(e);
                (st, b, None)
            }
        },
        (Method::GET, ["tasks", id]) => match s.tasks.iter().find(|t| t.id == *id) {
            Some(t) => (200, t.bytes.clone(), None),
            None => get_one(&[], "task", id),
        },
        (Method::GET, ["tasks", _, "logs"]) => (200, Bytes::new(), None),
        (Method::GET, ["networks"]) => (200, list(s.list_networks(f).into_iter().map(|o| o.bytes.clone())), None),
        (Method::GET, ["networks", id]) => get_one(&s.networks, "network", id),
        (Method::GET, ["configs"]) => (
            200,
            list(Swarm::list_objs(&s.configs, f).into_iter().map(|o| o.bytes.clone())),
            None,
        ),
        (Method::GET, ["configs", id]) => get_one(&s.configs, "config", id),
        (Method::GET, ["secrets"]) => (
            200,
            list(Swarm::list_objs(&s.secrets, f).into_iter().map(|o| o.bytes.clone())),
            None,
        ),
        (Method::GET, ["secrets", id]) => get_one(&s.secrets, "secret", id),
        (Method::POST, ["services", "create"]) => write(parsed().and_then(|b| s.create_service(b))),
        (Method::POST, ["services", id, "update"]) => {
            let r = parsed().and_then(|b| s.update_service(id, version, b));
            match r {
                Ok(ev) => (200, Bytes::from_static(b"{\"Warnings\":null}"), Some(ev)),
                Err(e) => {
                    let (st, b) = api_error(e);
                    (st, b, None)
                }
            }
        }
        (Method::DELETE, ["services", id]) => done(s.remove_service(id), 200),
        (Method::POST, ["networks", "create"]) => write(parsed().and_then(|b| s.create_network(b))),
        (Method::DELETE, ["networks", id]) => done(s.remove("network", id), 204),
        (Method::POST, ["configs", "create"]) => write(parsed().and_then(|b| s.create_file(false, b))),
        (Method::DELETE, ["configs", id]) => done(s.remove("config", id), 204),
        (Method::POST, ["secrets", "create"]) => write(parsed().and_then(|b| s.create_file(true, b))),
        (Method::DELETE, ["secrets", id]) => done(s.remove("secret", id), 204),
        (Method::POST, ["nodes", id, "update"]) => done(parsed().and_then(|b| s.update_node(id, version, b)), 200),
        _ => {
            let (st, b) = api_error(ApiError {
                status: 404,
                message: format!("page not found: {method} /{}", segs.join("/")),
            });
            (st, b, None)
        }
    }
}

/// A service's JSON with `ServiceStatus` (the `status=true` query).
fn with_status(o: &Obj, counts: Option<(u64, u64)>) -> Bytes {
    let (running, desired) = counts.unwrap_or_default();
    let head =
        format!("{{\"ServiceStatus\":{{\"RunningTasks\":{running},\"DesiredTasks\":{desired},\"CompletedTasks\":0}},");
    let mut out = head.into_bytes();
    out.extend_from_slice(o.bytes.get(1..).unwrap_or_default());
    Bytes::from(out)
}

/// A point in time of `since`/`until`: Unix seconds (with a fraction), or a
/// duration before now (`10m`), as the engine accepts them.
fn parse_time(s: &str) -> Option<u128> {
    if let Ok(secs) = s.parse::<f64>() {
        return Some((secs * 1e9) as u128);
    }
    let d = humantime::parse_duration(s).ok()?;
    Some(now_nano().saturating_sub(d.as_nanos()))
}

/// The event filters the engine applies: `type`, `event`, `label`, and the
/// object filters (`service`, `node`, `network`, `config`, `secret`: ID or name).
fn event_matches(ev: &Event, f: &Filters) -> bool {
    let one = |k: &str, v: &str| f.get(k).is_none_or(|w| w.iter().any(|x| x == v));
    let object = |k: &str| {
        f.get(k)
            .is_none_or(|w| ev.typ == k && w.iter().any(|x| *x == ev.id || *x == ev.name))
    };
    // The fake's events carry only a name attribute: a label filter matches none.
    let labels = BTreeMap::new();
    one("type", ev.typ)
        && one("event", ev.action)
        && labels_match(&labels, f.get("label"))
        && ["service", "node", "network", "config", "secret"]
            .iter()
            .all(|k| object(k))
}

/// `GET /events`: the recorded events since `since`, then the live ones
/// until `until` (or forever), as chunked JSON lines.
fn events(app: Arc<App>, key: String, q: &HashMap<String, String>) -> Response {
    let filters = match parse_filters(q.get("filters").map(String::as_str)) {
        Ok(f) => f,
        Err(e) => {
            let (status, b) = api_error(e);
            app.count(&key, b.len() as u64);
            return json_response(status, b);
        }
    };
    let since = q.get("since").and_then(|s| parse_time(s));
    let until = q.get("until").and_then(|s| parse_time(s));
    app.count(&key, 0);
    let rx = app.events.subscribe();
    let past: Vec<Arc<Event>> = match (since, app.history.lock()) {
        (Some(since), Ok(h)) => h
            .iter()
            .filter(|e| e.time_nano >= since && until.is_none_or(|u| e.time_nano <= u))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let replay_end = past.last().map(|e| e.time_nano).unwrap_or_default();
    if let Ok(mut s) = app.stats.lock() {
        s.event_streams_open += 1;
    }
    let live = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => return Some((ev, rx)),
                // A slow reader misses events, as it would on the engine.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter(move |e| std::future::ready(e.time_nano > replay_end));
    // With `until`, the live part ends at that time (at once if it is past).
    let live = match until {
        Some(u) => {
            let left = Duration::from_nanos(u.saturating_sub(now_nano()).min(u64::MAX as u128) as u64);
            live.take_until(tokio::time::sleep(left)).boxed()
        }
        None => live.boxed(),
    };
    let guard = StreamGuard { app: app.clone() };
    let app2 = app.clone();
    let stream = futures::stream::iter(past)
        .chain(live)
        .filter(move |e| std::future::ready(event_matches(e, &filters)))
        .map(move |e| {
            let _keep = &guard;
            app2.count_bytes(&key, e.line.len() as u64);
            Ok::<Bytes, std::io::Error>(e.line.clone())
        });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Counts an event stream as closed when its body is dropped.
struct StreamGuard {
    app: Arc<App>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.app.stats.lock() {
            s.event_streams_open = s.event_streams_open.saturating_sub(1);
        }
    }
}

impl App {
    fn count_bytes(&self, key: &str, n: u64) {
        if let Ok(mut s) = self.stats.lock() {
            s.add_bytes(key, n);
        }
    }
}
