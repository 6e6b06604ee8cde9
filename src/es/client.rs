//! Elasticsearch client (I/O): HTTP or HTTPS (trusting swarmlog's CA only)
//! to the addresses the operator reaches the cluster at, every call bounded
//! by a deadline. An address
//! that does not answer is a state the caller reports, never a panic or an
//! endless wait.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use hyper_util::rt::TokioExecutor;
use serde_json::Value as Json;

use super::{
    disk, flat_setting, nodes, persistent_setting, read_only_indices, retention, CatAllocation, CatNode, DataStream,
    Health, RetentionRead, Snapshot,
};

/// Largest answer read (cat tables of a large cluster fit).
const MAX_ANSWER: usize = 16 << 20;

pub const ALLOCATION_ENABLE: &str = "cluster.routing.allocation.enable";
pub const EXCLUDE_NAME: &str = "cluster.routing.allocation.exclude._name";

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EsError {
    #[error("{url}: no answer within {}", humantime::format_duration(*.after))]
    Timeout { url: String, after: Duration },
    #[error("{url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// Elasticsearch answered with an error (such as 503 while no master is elected).
    #[error("{url}: HTTP {status}: {reason}")]
    Status { url: String, status: u16, reason: String },
    #[error("{url}: unexpected answer: {detail}")]
    Answer { url: String, detail: String },
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client for one cluster.
#[derive(Clone)]
pub struct Client {
    http: HyperClient<Connector, Full<Bytes>>,
    /// Why the client's TLS settings could not be made: every call says so.
    broken: Option<String>,
    timeout: Duration,
    /// `Authorization` header value (Basic), when security is on.
    auth: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credentials are never printed.
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .field("broken", &self.broken)
            .field("auth", &self.auth.as_ref().map(|_| "(hidden)"))
            .finish()
    }
}

impl Client {
    /// A client for `http://` (and `https://`, which trusts nothing).
    pub fn new(timeout: Duration) -> Client {
        Client::trusting(timeout, None)
    }

    /// A client whose `https://` calls trust the CA certificates in
    /// `ca_pem` only, and check the URL's host name against the server's
    /// certificate.
    pub fn trusting(timeout: Duration, ca_pem: Option<&str>) -> Client {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let (config, broken) = crate::tls::client_config(ca_pem);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Client {
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
            broken,
            timeout,
            auth: None,
        }
    }

    /// The same client, calling as `user` (HTTP Basic).
    pub fn as_user(&self, user: &str, password: &str) -> Client {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Client {
            auth: Some(format!("Basic {token}")),
            ..self.clone()
        }
    }

    /// One call: `method base+path`, with a JSON body; the answer's JSON.
    pub async fn call(&self, base: &str, method: &str, path: &str, body: Option<&Json>) -> Result<Json, EsError> {
        let url = format!("{}{}", base.trim_end_matches('/'), path);
        let unreachable = |detail: String| EsError::Unreachable {
            url: url.clone(),
            detail,
        };
        if let (Some(why), true) = (&self.broken, url.starts_with("https://")) {
            return Err(unreachable(why.clone()));
        }
        let mut req = hyper::Request::builder().method(method).uri(&url);
        if let Some(a) = &self.auth {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let bytes = match body {
            Some(b) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| unreachable(format!("building the request: {e}")))?;
        let work = async {
            let resp = self.http.request(req).await.map_err(|e| {
                let mut detail = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    detail = format!("{detail}: {s}");
                    src = s.source();
                }
                unreachable(detail)
            })?;
            let status = resp.status().as_u16();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, EsError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| EsError::Timeout {
                url: url.clone(),
                after: self.timeout,
            })??;
        let json: Result<Json, _> = serde_json::from_slice(&body);
        if !(200..300).contains(&status) {
            // Elasticsearch's errors: {"error":{"type":..,"reason":..},"status":..}
            let reason = json
                .as_ref()
                .ok()
                .and_then(|j| {
                    let e = j.get("error")?;
                    Some(
                        match (
                            e.get("type").and_then(Json::as_str),
                            e.get("reason").and_then(Json::as_str),
                        ) {
                            (Some(t), Some(r)) => format!("{t}: {r}"),
                            _ => e.to_string(),
                        },
                    )
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(EsError::Status { url, status, reason });
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Json::Null);
        }
        json.map_err(|e| EsError::Answer {
            url,
            detail: format!("not JSON: {e}"),
        })
    }

    fn typed<T: serde::de::DeserializeOwned>(base: &str, path: &str, v: Json) -> Result<T, EsError> {
        serde_json::from_value(v).map_err(|e| EsError::Answer {
            url: format!("{base}{path}"),
            detail: e.to_string(),
        })
    }

    /// `GET /`: the node's name and its cluster's UUID (`None` until it joined one).
    pub async fn root(&self, base: &str) -> Result<(String, Option<String>), EsError> {
        let v = self.call(base, "GET", "/", None).await?;
        let name = v.get("name").and_then(Json::as_str).unwrap_or_default().to_string();
        let uuid = v
            .get("cluster_uuid")
            .and_then(Json::as_str)
            .filter(|u| !u.is_empty() && *u != "_na_")
            .map(str::to_string);
        Ok((name, uuid))
    }

    /// One read of the cluster through `base`.
    pub async fn read(&self, base: &str) -> Result<Snapshot, EsError> {
        let ilm = format!("/_ilm/policy/{}", retention::POLICY);
        let tpl = format!("/_index_template/{}", retention::TEMPLATE);
        let streams = format!("/_data_stream/{}", retention::DATA_STREAMS);
        let (root, health, cat, alloc, settings, policy, template, streams, blocks) = tokio::join!(
            self.call(base, "GET", "/", None),
            self.call(base, "GET", "/_cluster/health", None),
            self.call(
                base,
                "GET",
                "/_cat/nodes?format=json&time=s&h=name,node.role,master,version,ip,uptime",
                None
            ),
            self.call(
                base,
                "GET",
                "/_cat/allocation?format=json&bytes=b&h=node,shards,disk.percent,disk.used,disk.total",
                None
            ),
            self.call(
                base,
                "GET",
                "/_cluster/settings?include_defaults=true&flat_settings=true",
                None
            ),
            self.get_optional(base, &ilm),
            self.get_optional(base, &tpl),
            self.call(base, "GET", &streams, None),
            self.call(
                base,
                "GET",
                "/_all/_settings/index.blocks.read_only_allow_delete?flat_settings=true&expand_wildcards=all",
                None
            ),
        );
        let root = root?;
        let health: Health = Self::typed(base, "/_cluster/health", health?)?;
        let cat: Vec<CatNode> = Self::typed(base, "/_cat/nodes", cat?)?;
        let alloc: Vec<CatAllocation> = Self::typed(base, "/_cat/allocation", alloc?)?;
        let settings = settings?;
        Ok(Snapshot {
            endpoint: base.to_string(),
            cluster_name: root
                .get("cluster_name")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string(),
            cluster_uuid: root
                .get("cluster_uuid")
                .and_then(Json::as_str)
                .filter(|u| !u.is_empty() && *u != "_na_")
                .map(str::to_string),
            health,
            nodes: nodes(&cat, &alloc),
            allocation_enable: flat_setting(&settings, ALLOCATION_ENABLE),
            exclude_name: persistent_setting(&settings, EXCLUDE_NAME),
            watermarks: disk::watermarks(&settings),
            // What retention and flood stage read is reported on its own: a
            // failure there does not make the cluster unreadable.
            read_only: blocks.map(|b| read_only_indices(&b)).map_err(|e| e.to_string()),
            retention: RetentionRead {
                policy: policy.map_err(|e| e.to_string()),
                template: template.map_err(|e| e.to_string()),
                streams: streams.map_err(|e| e.to_string()).and_then(|v| {
                    let list = v.get("data_streams").cloned().unwrap_or(Json::Array(Vec::new()));
                    serde_json::from_value::<Vec<DataStream>>(list)
                        .map_err(|e| format!("{base}/_data_stream: unexpected answer: {e}"))
                }),
            },
        })
    }

    /// A GET whose 404 means "there is none".
    pub async fn get_optional(&self, base: &str, path: &str) -> Result<Option<Json>, EsError> {
        match self.call(base, "GET", path, None).await {
            Ok(v) => Ok(Some(v)),
            Err(EsError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT path` with a JSON body that Elasticsearch must acknowledge.
    pub async fn put_acknowledged(&self, base: &str, path: &str, body: &Json) -> Result<(), EsError> {
        let v = self.call(base, "PUT", path, Some(body)).await?;
        if v.get("acknowledged").and_then(Json::as_bool) != Some(true) {
            return Err(EsError::Answer {
                url: format!("{base}{path}"),
                detail: format!("not acknowledged: {v}"),
            });
        }
        Ok(())
    }

    /// The first of `bases` that gives a whole read, or every failure.
    pub async fn read_any(&self, bases: &[String]) -> Result<Snapshot, Vec<EsError>> {
        let mut errors = Vec::new();
        for b in bases {
            match self.read(b).await {
                Ok(s) => return Ok(s),
                Err(e) => errors.push(e),
            }
        }
        Err(errors)
    }

    /// `PUT /_cluster/settings` with one persistent setting (`None` resets it).
    pub async fn put_persistent(&self, base: &str, key: &str, value: Option<&str>) -> Result<(), EsError> {
        let body = serde_json::json!({ "persistent": { key: value } });
        let v = self.call(base, "PUT", "/_cluster/settings", Some(&body)).await?;
        if v.get("acknowledged").and_then(Json::as_bool) != Some(true) {
            return Err(EsError::Answer {
                url: format!("{base}/_cluster/settings"),
                detail: format!("not acknowledged: {v}"),
            });
        }
        Ok(())
    }

    /// `POST /_flush`: every index flushed (a restarting node recovers faster).
    pub async fn flush(&self, base: &str) -> Result<(), EsError> {
        self.call(base, "POST", "/_flush", None).await.map(|_| ())
    }

    /// `POST /_cluster/voting_config_exclusions?node_names=NAME`: a
    /// master-eligible node about to leave for good stops counting for the
    /// quorum first.
    pub async fn exclude_from_voting(&self, base: &str, node: &str) -> Result<(), EsError> {
        let path = format!("/_cluster/voting_config_exclusions?node_names={}", query_value(node));
        self.call(base, "POST", &path, None).await.map(|_| ())
    }

    /// `DELETE /_cluster/voting_config_exclusions?wait_for_removal=false`:
    /// clears the exclusions (Elasticsearch clears them all at once) once the
    /// excluded nodes have left.
    pub async fn clear_voting_exclusions(&self, base: &str) -> Result<(), EsError> {
        self.call(
            base,
            "DELETE",
            "/_cluster/voting_config_exclusions?wait_for_removal=false",
            None,
        )
        .await
        .map(|_| ())
    }
}

/// A query parameter's value, percent-encoded but for the unreserved characters.
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
