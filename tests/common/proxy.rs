//! An engine proxy for the tests: a unix socket in front of a node's Docker
//! socket that records the method, path and status of every request it
//! passes on (so writes are counted where they happen, at the engine, not
//! from anyone's log), streams bodies both ways (the long-lived `/events`
//! stream too), and can inject faults: freeze, delay, errors, cut.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

type Body = BoxBody<Bytes, hyper::Error>;

/// One request that reached the proxy.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The path without the API version prefix (`/v1.41`) and query.
    pub path: String,
    pub query: String,
    /// The `Name` in a JSON request body (what a create or update names).
    pub name: Option<String>,
    /// The engine's answer (or the injected one); None while it is pending.
    pub status: Option<u16>,
    /// The message of an error answer (status 400 and up).
    pub error: Option<String>,
    pub at: Instant,
}

impl Call {
    /// A call that changes the swarm (every POST, PUT, DELETE of the API the
    /// operator uses; the reads are GET and HEAD).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "DELETE" | "PATCH")
    }
}

impl Call {
    /// The engine refused it as a conflict: 409 (a name taken), or the 500
    /// the swarm answers for a lost creation race or a stale version ("name
    /// conflicts with an existing object", "update out of sequence").
    pub fn is_conflict(&self) -> bool {
        let msg = self.error.as_deref().unwrap_or_default().to_lowercase();
        self.is_write()
            && (self.status == Some(409)
                || (self.status == Some(500)
                    && (msg.contains("conflicts with an existing object")
                        || msg.contains("out of sequence")
                        || msg.contains("already exists"))))
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.status.map_or("-".to_string(), |s| s.to_string());
        write!(f, "{} {} -> {status}", self.method, self.path)?;
        if let Some(e) = &self.error {
            write!(f, " {e:?}")?;
        }
        if let Some(n) = &self.name {
            write!(f, " (Name {n})")?;
        }
        Ok(())
    }
}

/// A fault for the requests that match a method (None: any) and a path
/// prefix (after the version prefix).
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: Option<String>,
    pub path_prefix: String,
    pub fault: Fault,
    /// How many more requests it applies to (None: all).
    pub times: Option<usize>,
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and `{"message": ...}` without asking the engine.
    Error(u16, String),
    /// Answer with this status and this JSON body, without asking the engine.
    Json(u16, String),
    /// Pass the request on after this long.
    Delay(Duration),
    /// Hold the request until [`EngineProxy::open_gate`] (a barrier: two
    /// clients that both observed the swarm then write at the same time).
    Hold,
    /// Pass the request on and rewrite the engine's JSON answer (a field the
    /// engine "stores differently" than it was written).
    Rewrite(fn(&mut serde_json::Value)),
    /// Answers the headers and the first `n` bytes of the engine's body,
    /// then nothing more on a connection kept open (an engine or proxy
    /// frozen mid-answer).
    StallBody(usize),
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    rules: Vec<Rule>,
}

struct Inner {
    upstream: PathBuf,
    /// The endpoints let through (method, path pattern with `{id}`
    /// segments); others are answered 403 and recorded.
    allow: Vec<(String, String)>,
    /// Event streams opened so far; those numbered below `muted_below`
    /// pass nothing on (a half-open connection: silent, not closed).
    streams: std::sync::atomic::AtomicU64,
    muted_below: tokio::sync::watch::Sender<u64>,
    state: Mutex<State>,
    /// Cancelled by `cut`: every open connection is dropped.
    cut: Mutex<CancellationToken>,
    frozen: tokio::sync::watch::Sender<bool>,
    /// Open: held requests go on.
    gate: tokio::sync::watch::Sender<bool>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running proxy; it stops when dropped.
pub struct EngineProxy {
    /// The proxy's socket: point a client at `unix://<sock>`.
    pub sock: PathBuf,
    inner: Arc<Inner>,
    stop: CancellationToken,
}

impl EngineProxy {
    /// Listens on `sock` (replacing a stale file) and passes everything on
    /// to `upstream`; runs on `rt` until dropped.
    pub fn start(rt: &tokio::runtime::Runtime, upstream: &Path, sock: &Path) -> Result<EngineProxy, String> {
        if sock.exists() {
            std::fs::remove_file(sock).map_err(|e| format!("remove stale {}: {e}", sock.display()))?;
        }
        let listener = {
            let _guard = rt.enter();
            UnixListener::bind(sock).map_err(|e| format!("proxy: bind {}: {e}", sock.display()))?
        };
        let (frozen, _) = tokio::sync::watch::channel(false);
        let (gate, _) = tokio::sync::watch::channel(false);
        let (muted_below, _) = tokio::sync::watch::channel(0);
        let inner = Arc::new(Inner {
            upstream: upstream.to_path_buf(),
            allow: allowed_endpoints()?,
            streams: std::sync::atomic::AtomicU64::new(0),
            muted_below,
            state: Mutex::new(State::default()),
            cut: Mutex::new(CancellationToken::new()),
            frozen,
            gate,
        });
        let stop = CancellationToken::new();
        rt.spawn(serve(listener, inner.clone(), stop.clone()));
        Ok(EngineProxy {
            sock: sock.to_path_buf(),
            inner,
            stop,
        })
    }

    /// `unix://...` of the proxy, for DOCKER_HOST.
    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.state().calls.clone()
    }

    /// A mark for [`EngineProxy::since`].
    pub fn mark(&self) -> usize {
        self.inner.state().calls.len()
    }

    /// The requests after a mark.
    pub fn since(&self, mark: usize) -> Vec<Call> {
        self.inner.state().calls.iter().skip(mark).cloned().collect()
    }

    /// The writes (POST, PUT, DELETE) after a mark.
    pub fn writes_since(&self, mark: usize) -> Vec<Call> {
        self.since(mark).into_iter().filter(Call::is_write).collect()
    }

    /// Adds a fault rule (applied in order; the first that matches wins).
    pub fn inject(&self, rule: Rule) {
        self.inner.state().rules.push(rule);
    }

    /// Removes every fault rule (and lets everything held or frozen go on).
    pub fn clear_faults(&self) {
        self.inner.state().rules.clear();
        self.inner.frozen.send_replace(false);
        self.inner.gate.send_replace(true);
    }

    /// While frozen, requests wait (nothing reaches the engine).
    pub fn freeze(&self, on: bool) {
        self.inner.frozen.send_replace(on);
    }

    /// Lets the requests held by a [`Fault::Hold`] rule go on (and every
    /// later one that such a rule matches).
    pub fn open_gate(&self) {
        self.inner.gate.send_replace(true);
    }

    /// Requests still waiting for an answer (held ones among them).
    pub fn pending(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.status.is_none()).collect()
    }

    /// Every event stream open now goes silent for good (its events are
    /// dropped, the connection stays open: what a half-open TCP connection
    /// or a frozen proxy looks like); streams opened later pass.
    pub fn mute_open_streams(&self) {
        let n = self.inner.streams.load(std::sync::atomic::Ordering::SeqCst);
        self.inner.muted_below.send_replace(n);
    }

    /// Drops every open connection (event streams included) at once.
    pub fn cut(&self) {
        let mut cut = self.inner.cut.lock().unwrap_or_else(|e| e.into_inner());
        cut.cancel();
        *cut = CancellationToken::new();
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
        let _ = std::fs::remove_file(&self.sock);
    }
}

/// Summarises calls as "METHOD path -> status" lines, for error messages.
pub fn describe(calls: &[Call]) -> String {
    if calls.is_empty() {
        return "(none)".to_string();
    }
    calls.iter().map(|c| format!("  {c}")).collect::<Vec<_>>().join("\n")
}

async fn serve(listener: UnixListener, inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let cut = inner.cut.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let inner = inner.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, inner.clone()));
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = cut.cancelled() => {}
            }
        });
    }
}

/// The endpoints the README's socket-proxy paragraph lists ("Behind a
/// Docker socket proxy ... swarmlog needs: `GET /_ping`, ..."): every
/// operator behind this proxy gets only those, so the list is proven
/// complete by every test that runs one. A README without the list is an
/// error, not a proxy that lets everything through.
fn allowed_endpoints() -> Result<Vec<(String, String)>, String> {
    let path = super::repo().join("README.md");
    let readme = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let missing =
        || "README.md: no \"**Behind a Docker socket proxy**\" paragraph ending at SWARMLOG_DOCKER_HOST".to_string();
    let start = readme.find("**Behind a Docker socket proxy**").ok_or_else(missing)?;
    let end = start + readme[start..].find("SWARMLOG_DOCKER_HOST").ok_or_else(missing)?;
    let list: Vec<(String, String)> = readme[start..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|item| {
            let (method, path) = item.split_once(' ')?;
            (matches!(method, "GET" | "POST" | "DELETE" | "PUT") && path.starts_with('/'))
                .then(|| (method.to_string(), path.to_string()))
        })
        .collect();
    if list.is_empty() {
        return Err("README.md: the socket-proxy paragraph lists no endpoint".to_string());
    }
    Ok(list)
}

/// `/services/{id}/update` matches `/services/abc/update`.
fn path_matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let a: Vec<&str> = path.split('/').collect();
    p.len() == a.len()
        && p.iter()
            .zip(&a)
            .all(|(p, a)| p == a || (p.starts_with('{') && p.ends_with('}') && !a.is_empty()))
}

/// `/v1.41/services/create` -> `/services/create`.
fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(i) = rest.find('/') {
            if rest[..i].chars().all(|c| c.is_ascii_digit() || c == '.') {
                return &rest[i..];
            }
        }
    }
    path
}

fn answer(status: u16, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Request bodies up to this size with a length are read whole (to record
/// the `Name` they carry) before they are passed on; others stream.
const READ_BODY_MAX: u64 = 1 << 20;

async fn handle(req: Request<Incoming>, inner: Arc<Inner>) -> Result<Response<Body>, Infallible> {
    let method = req.method().to_string();
    let path = strip_version(req.uri().path()).to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let length = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let (parts, body) = req.into_parts();
    let (body, name): (Body, Option<String>) = match length {
        Some(n) if n > 0 && n <= READ_BODY_MAX => match body.collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                let name = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("Name")?.as_str().map(str::to_string));
                (Full::new(bytes).map_err(|never| match never {}).boxed(), name)
            }
            Err(e) => return Ok(answer(400, &format!("engine proxy: reading the request body: {e}"))),
        },
        _ => (body.boxed(), None),
    };
    let req = Request::from_parts(parts, body);
    let (index, fault) = {
        let mut st = inner.state();
        st.calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            query,
            name,
            status: None,
            error: None,
            at: Instant::now(),
        });
        let index = st.calls.len() - 1;
        let mut fault = None;
        for rule in st.rules.iter_mut() {
            let method_ok = rule.method.as_deref().is_none_or(|m| m == method);
            if method_ok && path.starts_with(&rule.path_prefix) && rule.times != Some(0) {
                if let Some(t) = rule.times.as_mut() {
                    *t -= 1;
                }
                fault = Some(rule.fault.clone());
                break;
            }
        }
        (index, fault)
    };
    if !inner
        .allow
        .iter()
        .any(|(m, pattern)| *m == method && path_matches(pattern, &path))
    {
        let message = format!("{method} {path} is not in the README's socket-proxy list");
        if let Some(c) = inner.state().calls.get_mut(index) {
            c.status = Some(403);
            c.error = Some(message.clone());
        }
        return Ok(answer(403, &message));
    }
    let mut frozen = inner.frozen.subscribe();
    while *frozen.borrow_and_update() {
        if frozen.changed().await.is_err() {
            break;
        }
    }
    let set_status = |status: u16, error: Option<String>| {
        if let Some(c) = inner.state().calls.get_mut(index) {
            c.status = Some(status);
            c.error = error;
        }
    };
    match fault {
        Some(Fault::Error(status, message)) => {
            set_status(status, Some(message.clone()));
            return Ok(answer(status, &message));
        }
        Some(Fault::Json(status, body)) => {
            set_status(status, None);
            let mut resp = answer(status, "");
            *resp.body_mut() = Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed();
            return Ok(resp);
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Rewrite(f)) => {
            let resp = match forward(req, &inner.upstream).await {
                Ok(r) => r,
                Err(e) => {
                    set_status(502, Some(e.clone()));
                    return Ok(answer(502, &format!("engine proxy: {e}")));
                }
            };
            let status = resp.status().as_u16();
            let (mut parts, body) = resp.into_parts();
            let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let bytes = match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(mut v) if status < 400 => {
                    f(&mut v);
                    Bytes::from(v.to_string())
                }
                _ => bytes,
            };
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            set_status(status, None);
            return Ok(Response::from_parts(
                parts,
                Full::new(bytes).map_err(|never| match never {}).boxed(),
            ));
        }
        Some(Fault::StallBody(n)) => {
            let resp = match forward(req, &inner.upstream).await {
                Ok(r) => r,
                Err(e) => {
                    set_status(502, Some(e.clone()));
                    return Ok(answer(502, &format!("engine proxy: {e}")));
                }
            };
            let status = resp.status().as_u16();
            let (mut parts, body) = resp.into_parts();
            let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let head = bytes.slice(..n.min(bytes.len()));
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
            set_status(status, Some(format!("stalled after {} bytes", head.len())));
            let frames = futures::stream::once(async move { Ok::<_, hyper::Error>(hyper::body::Frame::data(head)) })
                .chain(futures::stream::pending());
            return Ok(Response::from_parts(
                parts,
                BodyExt::boxed(http_body_util::StreamBody::new(frames)),
            ));
        }
        Some(Fault::Hold) => {
            let mut gate = inner.gate.subscribe();
            while !*gate.borrow_and_update() {
                if gate.changed().await.is_err() {
                    break;
                }
            }
        }
        None => {}
    }
    match forward(req, &inner.upstream).await {
        Ok(resp) if resp.status().as_u16() >= 400 => {
            // Error answers are small: read them to record the message.
            let status = resp.status().as_u16();
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).to_string());
            set_status(status, Some(message));
            Ok(Response::from_parts(
                parts,
                Full::new(bytes).map_err(|never| match never {}).boxed(),
            ))
        }
        Ok(resp) if path == "/events" => {
            set_status(resp.status().as_u16(), None);
            let number = inner.streams.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut muted = inner.muted_below.subscribe();
            // Frames pass while this stream is not muted; once it is, they
            // are dropped and the connection stays open.
            let (parts, body) = resp.into_parts();
            let frames = http_body_util::BodyStream::new(body).filter(move |_| {
                let pass = number >= *muted.borrow_and_update();
                futures::future::ready(pass)
            });
            Ok(Response::from_parts(
                parts,
                BodyExt::boxed(http_body_util::StreamBody::new(frames)),
            ))
        }
        Ok(resp) => {
            set_status(resp.status().as_u16(), None);
            Ok(resp.map(|b| b.boxed()))
        }
        Err(e) => {
            set_status(502, Some(e.clone()));
            Ok(answer(502, &format!("engine proxy: {e}")))
        }
    }
}

async fn forward(req: Request<Body>, upstream: &Path) -> Result<Response<Incoming>, String> {
    let stream = UnixStream::connect(upstream)
        .await
        .map_err(|e| format!("connect {}: {e}", upstream.display()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(|e| format!("request: {e}"))
}
