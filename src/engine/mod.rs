//! The edge to Docker (I/O): the one place that holds the engine client.
//! Reads live in [`observe`], writes in [`write`]: every write goes through
//! a typed method that counts it by [`WriteKind`] and carries the version
//! index as `u64`.

pub mod observe;
mod raw;
pub mod write;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;

pub use observe::{observe, observe_stack, observe_stack_reusing, Cache, Kinds, Observed, Reuse, Scope};
pub use write::WriteKind;

/// Oldest Engine API swarmlog supports (Docker 20.10).
pub const MIN_API: (u32, u32) = (1, 41);

/// What went wrong talking to the engine, in one sentence each.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine at {host}: {detail} (is dockerd running, and is DOCKER_HOST right?)")]
    Unreachable { host: String, detail: String },
    #[error("permission denied on the Docker socket {host} (run as root or as a member of the docker group)")]
    PermissionDenied { host: String },
    #[error("the Docker engine speaks API {found}, older than the {}.{} swarmlog needs (Docker 20.10 or newer)", MIN_API.0, MIN_API.1)]
    ApiTooOld { found: String },
    #[error("this Docker engine is not part of a swarm (run `docker swarm init` or join one)")]
    NotSwarm,
    #[error("this node is not a swarm manager: swarmlog must talk to a manager (run it on a manager node)")]
    NotManager,
    #[error("the swarm has no quorum: a majority of managers is unreachable, so nothing can be written")]
    NoQuorum,
    #[error("{what}: {name} already exists")]
    Conflict { what: String, name: String },
    #[error("{what}: {name} changed since it was read (update out of sequence)")]
    OutOfSequence { what: String, name: String },
    #[error("{what}: {name} does not exist")]
    NotFound { what: String, name: String },
    #[error("{what}: the engine answered {status}: {message}")]
    Api { what: String, status: u16, message: String },
    #[error("{what}{}: no complete answer from the engine within {} (it may be hung or overloaded)", if name.is_empty() { String::new() } else { format!(" {name}") }, humantime::format_duration(*after))]
    Timeout {
        what: String,
        name: String,
        after: Duration,
    },
    #[error("{what}: {detail}")]
    Other { what: String, detail: String },
}

impl EngineError {
    /// A static category, for exit codes, metrics and status.
    pub fn category(&self) -> &'static str {
        match self {
            EngineError::Unreachable { .. } => "unreachable",
            EngineError::PermissionDenied { .. } => "permission_denied",
            EngineError::ApiTooOld { .. } => "api_too_old",
            EngineError::NotSwarm => "not_swarm",
            EngineError::NotManager => "not_manager",
            EngineError::NoQuorum => "no_quorum",
            EngineError::Conflict { .. } => "conflict",
            EngineError::OutOfSequence { .. } => "out_of_sequence",
            EngineError::NotFound { .. } => "not_found",
            EngineError::Api { .. } => "api",
            EngineError::Timeout { .. } => "timeout",
            EngineError::Other { .. } => "other",
        }
    }

    /// Whether re-reading the swarm and planning again may resolve it.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            EngineError::Conflict { .. } | EngineError::OutOfSequence { .. } | EngineError::NotFound { .. }
        )
    }

    /// Process exit code for one-shot commands (1 is input errors; 2 is "changes" for plan).
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::Unreachable { .. } | EngineError::Timeout { .. } => 3,
            EngineError::PermissionDenied { .. } => 4,
            EngineError::ApiTooOld { .. } => 5,
            EngineError::NotSwarm => 6,
            EngineError::NotManager => 7,
            EngineError::NoQuorum => 8,
            _ => 9,
        }
    }

    /// Classifies a bollard error for the call `what` on object `name`.
    pub fn from_bollard(what: &str, name: &str, host: &str, e: bollard::errors::Error) -> EngineError {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError { status_code, message } => {
                let lower = message.to_lowercase();
                // Swarm-scoped objects report a lost creation race as a 500
                // whose text is the only signal (seen for networks on 20.10).
                if status_code == 409
                    || lower.contains("conflicts with an existing object")
                    || lower.contains("already exists")
                {
                    EngineError::Conflict {
                        what: what.to_string(),
                        name: name.to_string(),
                    }
                } else if lower.contains("update out of sequence")
                    || lower.contains("version") && lower.contains("out of")
                {
                    EngineError::OutOfSequence {
                        what: what.to_string(),
                        name: name.to_string(),
                    }
                } else if status_code == 404 {
                    EngineError::NotFound {
                        what: what.to_string(),
                        name: name.to_string(),
                    }
                } else if lower.contains("not part of a swarm")
                    || (lower.contains("not a swarm manager") && lower.contains("swarm init"))
                {
                    EngineError::NotSwarm
                } else if lower.contains("not a swarm manager") {
                    EngineError::NotManager
                } else if lower.contains("quorum")
                    || lower.contains("no leader")
                    || lower.contains("does not have a leader")
                {
                    EngineError::NoQuorum
                } else {
                    EngineError::Api {
                        what: what.to_string(),
                        status: status_code,
                        message,
                    }
                }
            }
            other => {
                // The cause (EACCES on the socket, say) is in the source
                // chain, not in the top error's text.
                let mut detail = other.to_string();
                let mut source = std::error::Error::source(&other);
                while let Some(s) = source {
                    detail.push_str(&format!(": {s}"));
                    source = s.source();
                }
                let lower = detail.to_lowercase();
                if lower.contains("permission denied") {
                    EngineError::PermissionDenied { host: host.to_string() }
                } else if lower.contains("connection refused")
                    || lower.contains("socket not found")
                    || lower.contains("no such file")
                    || lower.contains("connect")
                    || lower.contains("timed out")
                    || lower.contains("broken pipe")
                {
                    EngineError::Unreachable {
                        host: host.to_string(),
                        detail,
                    }
                } else {
                    EngineError::Other {
                        what: what.to_string(),
                        detail,
                    }
                }
            }
        }
    }
}

/// The engine client, with counters of writes by kind.
pub struct Engine {
    docker: Docker,
    pub host: String,
    pub api_version: String,
    timeout: Duration,
    writes: Mutex<BTreeMap<WriteKind, u64>>,
}

impl Engine {
    /// Connects to `host` (`unix:///path` or `tcp://addr`, with TCP
    /// keepalive: see [`KEEPALIVE`]), negotiates the API
    /// version and refuses engines older than [`MIN_API`].
    pub async fn connect(host: &str, timeout: Duration) -> Result<Engine, EngineError> {
        let secs = timeout.as_secs().max(1);
        let docker = if let Some(path) = host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, secs, bollard::API_DEFAULT_VERSION)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            tcp_with_keepalive(host, secs)
        } else if host.starts_with('/') {
            Docker::connect_with_unix(host, secs, bollard::API_DEFAULT_VERSION)
        } else {
            return Err(EngineError::Unreachable {
                host: host.to_string(),
                detail: "unsupported address (use unix:///path/to/docker.sock or tcp://host:port)".to_string(),
            });
        }
        .map_err(|e| EngineError::from_bollard("connect", host, host, e))?;
        let docker = match tokio::time::timeout(timeout, docker.negotiate_version()).await {
            Ok(r) => r.map_err(|e| EngineError::from_bollard("negotiate the API version", host, host, e))?,
            Err(_) => {
                return Err(EngineError::Timeout {
                    what: "negotiate the API version with".to_string(),
                    name: host.to_string(),
                    after: timeout,
                })
            }
        };
        let version = docker.client_version();
        let api_version = format!("{}.{}", version.major_version, version.minor_version);
        if (version.major_version as u32, version.minor_version as u32) < MIN_API {
            return Err(EngineError::ApiTooOld { found: api_version });
        }
        Ok(Engine {
            docker,
            host: host.to_string(),
            api_version,
            timeout,
            writes: Mutex::new(BTreeMap::new()),
        })
    }

    /// Runs one engine call under the per-call deadline, which covers the
    /// whole answer (bollard's own timeout ends at the headers: a body that
    /// stops mid-way would hang a reconcile forever).
    pub(crate) async fn bounded<T>(
        &self,
        what: &str,
        name: &str,
        call: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, EngineError> {
        self.within_deadline(what, name, async { call.await.map_err(|e| self.err(what, name, e)) })
            .await
    }

    /// `call` under the per-call deadline, its time in the trace log
    /// (`engine call`); [`Engine::bounded`] and the raw reads use it.
    pub(crate) async fn within_deadline<T>(
        &self,
        what: &str,
        name: &str,
        call: impl std::future::Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(self.timeout, call).await;
        tracing::trace!(
            call = what,
            name,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "engine call"
        );
        answer.unwrap_or_else(|_| {
            Err(EngineError::Timeout {
                what: what.to_string(),
                name: name.to_string(),
                after: self.timeout,
            })
        })
    }

    /// The per-call deadline.
    pub fn call_timeout(&self) -> Duration {
        self.timeout
    }

    /// Maps a bollard error with this engine's address.
    pub fn err(&self, what: &str, name: &str, e: bollard::errors::Error) -> EngineError {
        EngineError::from_bollard(what, name, &self.host, e)
    }

    /// Records one write call of `kind`.
    fn count_write(&self, kind: WriteKind) {
        if let Ok(mut w) = self.writes.lock() {
            *w.entry(kind).or_default() += 1;
        }
    }

    /// Write calls made so far, by kind.
    pub fn writes(&self) -> BTreeMap<WriteKind, u64> {
        self.writes.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Write calls made so far, all kinds.
    pub fn total_writes(&self) -> u64 {
        self.writes().values().sum()
    }
}

/// The engine address: the flag, else `DOCKER_HOST`, else the default socket.
pub fn default_host(flag: Option<&str>, docker_host_env: Option<&str>) -> String {
    flag.or(docker_host_env)
        .filter(|h| !h.is_empty())
        .unwrap_or("unix:///var/run/docker.sock")
        .to_string()
}

/// TCP keepalive on `tcp://` engine connections: idle this long, then a
/// probe every [`KEEPALIVE_INTERVAL`], [`KEEPALIVE_PROBES`] times. A peer
/// gone without a FIN or RST (a host powered off, a dropped NAT entry)
/// fails an open event stream within about 25 s; the event
/// subscription's 20 s renewal covers a peer that is there but silent.
pub const KEEPALIVE: Duration = Duration::from_secs(10);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
pub const KEEPALIVE_PROBES: u32 = 3;

/// bollard's own `connect_with_http` with TCP keepalive (its connector
/// has none) and no idle pool, as bollard's.
fn tcp_with_keepalive(host: &str, secs: u64) -> Result<Docker, bollard::errors::Error> {
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    let mut connector = HttpConnector::new();
    connector.set_keepalive(Some(KEEPALIVE));
    connector.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
    connector.set_keepalive_retries(Some(KEEPALIVE_PROBES));
    connector.set_nodelay(true);
    let mut builder = Client::builder(hyper_util::rt::TokioExecutor::new());
    builder.pool_max_idle_per_host(0);
    let client = std::sync::Arc::new(builder.build(connector));
    let addr = format!(
        "http://{}",
        host.trim_start_matches("tcp://").trim_start_matches("http://")
    );
    Docker::connect_with_custom_transport(
        move |req: bollard::BollardRequest| {
            let client = client.clone();
            async move { client.request(req).await.map_err(bollard::errors::Error::from) }
        },
        Some(addr),
        secs,
        bollard::API_DEFAULT_VERSION,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timer of the loopback connection from `local_port` in
    /// /proc/net/tcp: `02` is the keepalive timer, armed only with SO_KEEPALIVE.
    fn tcp_timer(local_port: u16, remote_port: u16) -> Option<String> {
        let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
        table.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = |a: &str| a.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            (port(f.get(1)?) == Some(local_port) && port(f.get(2)?) == Some(remote_port))
                .then(|| f.get(5).map(|t| t.split(':').next().unwrap_or_default().to_string()))
                .flatten()
        })
    }

    #[tokio::test]
    async fn a_tcp_engine_connection_has_keepalive() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // An engine that answers the event stream's headers and then stays silent.
        let (peer_tx, peer_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut sock, peer) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = sock.read(&mut buf).await;
            sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            let _ = peer_tx.send(peer.port());
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(sock);
        });
        let docker = tcp_with_keepalive(&format!("tcp://127.0.0.1:{port}"), 5).unwrap();
        let mut events = docker.events(None::<bollard::query_parameters::EventsOptions>);
        // The stream is open and idle: nothing arrives.
        let next = tokio::time::timeout(Duration::from_millis(300), futures::StreamExt::next(&mut events)).await;
        assert!(next.is_err(), "the silent engine sent an event: {next:?}");
        let client_port = peer_rx.await.unwrap();
        assert_eq!(
            tcp_timer(client_port, port).as_deref(),
            Some("02"),
            "the idle engine connection should have the keepalive timer armed"
        );
    }

    fn server(status: u16, message: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError {
            status_code: status,
            message: message.to_string(),
        }
    }

    #[test]
    fn classifies_engine_answers() {
        let c = |s, m| EngineError::from_bollard("update service", "x", "unix:///s", server(s, m));
        assert!(matches!(
            c(500, "rpc error: code = Unknown desc = update out of sequence"),
            EngineError::OutOfSequence { .. }
        ));
        assert!(matches!(
            c(409, "name conflicts with an existing object"),
            EngineError::Conflict { .. }
        ));
        assert!(matches!(c(404, "service x not found"), EngineError::NotFound { .. }));
        assert!(matches!(
            c(503, "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."),
            EngineError::NotSwarm
        ));
        assert!(matches!(c(503, "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager."), EngineError::NotManager));
        assert!(matches!(c(500, "rpc error: code = Unknown desc = The swarm does not have a leader. It's possible that too few managers are online."), EngineError::NoQuorum));
        assert!(c(409, "x").is_conflict());
        assert!(c(
            500,
            "rpc error: code = Unknown desc = name conflicts with an existing object"
        )
        .is_conflict());
        assert!(c(500, "rpc error: code = AlreadyExists desc = config x already exists").is_conflict());
        assert!(!c(500, "rpc error: code = Unknown desc = invalid mount config").is_conflict());
        assert_eq!(EngineError::NotSwarm.exit_code(), 6);
    }

    #[test]
    fn host_precedence() {
        assert_eq!(default_host(Some("unix:///a"), Some("unix:///b")), "unix:///a");
        assert_eq!(default_host(None, Some("unix:///b")), "unix:///b");
        assert_eq!(default_host(None, None), "unix:///var/run/docker.sock");
    }
}
