//! Elasticsearch simulator: what the stand-in does when it runs as the
//! Elasticsearch image. No registry serves Elastic's images here, so this
//! stands in for the subset of Elasticsearch 8 that swarmlog uses, with the
//! shapes of Elastic's documented REST API. Simulated, not real:
//!
//! - HTTP (`http.port`, 9200): `GET /`, `GET /_cluster/health`, `GET
//!   /_cat/nodes`, `GET /_cat/allocation`, `GET /_cat/shards` (`format=json`
//!   or text, `h=`, `v`), `GET|PUT /_cluster/settings` (`flat_settings`,
//!   `persistent` and `transient`, `null` resets), `POST /_flush`. Without
//!   an elected master the cluster APIs answer 503
//!   `master_not_discovered_exception`, as Elasticsearch does.
//! - Discovery and formation: every node polls the peers named in
//!   `discovery.seed_hosts` (each name's every address, default transport
//!   port 9300) over its transport port. A node that never joined a cluster
//!   bootstraps one only when `cluster.initial_master_nodes` names it and a
//!   majority of those names are discovered (or with `discovery.type:
//!   single-node`); without either it waits and joins a cluster it
//!   discovers. Once formed, its node and cluster UUIDs are kept in its data
//!   path (`path.data`, default `/usr/share/elasticsearch/data`) and it
//!   never bootstraps again; a node whose data holds another cluster UUID
//!   refuses to join and says so.
//! - Master election: a majority of the voting configuration (the
//!   master-eligible nodes that joined, less `POST
//!   /_cluster/voting_config_exclusions`) must be present; the master is
//!   the lowest node name among them. The master keeps a shard table (one
//!   index, `STANDIN_ES_PRIMARIES` primaries, default 4, one replica each)
//!   that honours `cluster.routing.allocation.enable` (all, primaries,
//!   new_primaries, none) and `cluster.routing.allocation.exclude._name`,
//!   promotes a replica when a primary's node leaves, delays re-allocating
//!   a departed node's replicas by `STANDIN_ES_NODE_LEFT_DELAY` (default
//!   60 s, Elasticsearch's `index.unassigned.node_left.delayed_timeout`)
//!   unless the node comes back, and takes `STANDIN_ES_RECOVERY` (default
//!   2 s) to start a copy. Health is red with a primary unassigned, yellow
//!   with a replica unassigned, else green.
//! - Cluster metadata (kept in the data path, gossiped like the settings,
//!   a change acknowledged once every member holds it): `GET|PUT|DELETE
//!   /_ilm/policy/<name>` (phases and their actions checked as Elasticsearch
//!   8 checks them; stored normalised: `min_age` `0ms` where not given,
//!   `delete_searchable_snapshot`, a version and `modified_date`, `in_use_by`;
//!   a PUT of the same policy is a no-op), `GET|PUT|DELETE
//!   /_index_template/<name>` (unknown fields refused, overlapping patterns
//!   at the same priority refused with Elasticsearch's message, settings
//!   stored nested under `index` with string values), `GET|PUT|DELETE
//!   /_data_stream/<name|pattern>` (a matching template with `data_stream`
//!   needed; backing indices `.ds-<name>-<yyyy.MM.dd>-<generation>` with the
//!   template's policy). 404 `resource_not_found_exception` /
//!   `index_not_found_exception` as Elasticsearch answers.
//! - ILM on the master, every tick (Elasticsearch: every 10 min): a write
//!   index older than the hot phase's `rollover.max_age` rolls over; an
//!   index rolled over longer ago than the delete phase's `min_age` is
//!   deleted. Dates are the days in the index names.
//! - Disk: `GET /_cluster/settings?include_defaults=true` lists the disk
//!   watermark defaults; the master's flood-stage monitor puts
//!   `index.blocks.read_only_allow_delete` on every index with a shard on a
//!   node at or above the flood stage and lifts it once all such nodes are
//!   below the high watermark (`GET /_all/_settings/index.blocks.read_only_allow_delete`).
//! - For tests: `GET /_standin/requests` (every request this node served,
//!   in order, `millis METHOD path-and-query body`; the writes among them
//!   are also appended to `standin-requests.log` in the data path, which
//!   outlives a restart), `PUT /_standin/disk`
//!   `{"percent": 91}` (the disk use `_cat/allocation` reports and the
//!   flood-stage monitor reads), `POST
//!   /_standin/data_stream/<name>/backing_index` `{"date": "yyyy.MM.dd"}`
//!   (an index a rollover on that day would have left, so a test has old
//!   indices without waiting days).
//!
//! - Security with `xpack.security.enabled: true`: basic authentication,
//!   the reserved users, `_security` users, roles and passwords, privileges
//!   (tests/standin/security.rs); users and roles are cluster metadata.
//! - TLS with security on (settings and files: tests/standin/es_tls.rs):
//!   - `xpack.security.http.ssl.enabled: true`: HTTPS on the HTTP port with
//!     `xpack.security.http.ssl.certificate` / `.key` (PEM). Plain HTTP on
//!     that port is not answered: the node logs "received plaintext http
//!     traffic on an https channel, closing connection" and closes, as
//!     Elasticsearch does. `GET /_ssl/certificates` (authenticated, needs
//!     `monitor`) lists every configured certificate as Elasticsearch does:
//!     `path` (as configured), `format` `PEM`, `alias` null, `subject_dn`,
//!     `serial_number` (hex), `has_private_key`, `expiry`, `issuer`.
//!   - `xpack.security.transport.ssl.enabled: true`: node-to-node exchanges
//!     over mutual TLS; a peer must present a certificate that chains to
//!     `xpack.security.transport.ssl.certificate_authorities`, else its
//!     handshake is refused and logged with the certificate's CN and serial.
//!     Outbound, `verification_mode` `full` (default) also checks the seed
//!     host's name or address against the peer's certificate, `certificate`
//!     only the chain (inbound, as in Java, no host name is checked).
//!   - Simulator only: `GET /_standin/transport_peers` (no authentication,
//!     as every `/_standin/...`): `{"tls": bool, "verification_mode":
//!     "full"|"certificate"|"none"|null, "inbound": [{"node", "address",
//!     "subject_dn", "common_name", "serial_number", "issuer",
//!     "last_millis"}], "refused": [{"direction": "inbound"|"outbound",
//!     "address", "certificate": "CN=<cn> serial <hex>"|null, "reason",
//!     "count", "last_millis"}]}`: the client certificate each peer that
//!     connected last used (by node name), and the failed handshakes (an
//!     inbound one by the peer's IP address; repeats counted, at most 50).
//!   - A setting that is on without its files, or a file that cannot be
//!     read or holds no PEM certificate or key, stops the node at start
//!     with the setting and the path (exit status 1).
//!
//! Not simulated: documents (so no data stream is made by a first write,
//! and no rollover by size), shards of the backing indices, shard sizes,
//! TLS client authentication on HTTP, keystores (PKCS#12), key passphrases,
//! reloading changed certificate files, anything Elasticsearch does on its own beyond the
//! above. A node leaves the view of the others 3 s after it stops
//! answering (Elasticsearch's fault detection takes about 30 s).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use self::metadata::Metadata;
use crate::es_tls;
use crate::json::{self, Json};
use crate::tls::{self, Conn};
use crate::x509;

/// How often a node polls its peers and the master allocates.
const TICK: Duration = Duration::from_millis(300);
/// A peer not heard from for this long has left.
const FAULT_DETECTION: Duration = Duration::from_secs(3);
/// Requests kept for `GET /_standin/requests`.
const REQUEST_LOG: usize = 2000;
const INDEX: &str = "logs-standin";

/// Whether this process runs as the Elasticsearch image: asked explicitly,
/// or the environment has what only Elasticsearch's does.
pub fn wanted() -> bool {
    let var = |k: &str| std::env::var_os(k).is_some();
    std::env::var("STANDIN_ROLE").is_ok_and(|r| r == "elasticsearch")
        || var("ES_JAVA_OPTS")
        || var("discovery.type")
        || var("discovery.seed_hosts")
        || var("cluster.initial_master_nodes")
}

/// The node's settings, from the environment as the Elasticsearch image reads them.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub cluster_name: String,
    pub master_eligible: bool,
    pub data: bool,
    pub seed_hosts: Vec<String>,
    pub initial_masters: Vec<String>,
    pub single_node: bool,
    pub http_port: u16,
    pub transport_port: u16,
    pub data_path: PathBuf,
    pub version: String,
    pub primaries: usize,
    pub node_left_delay: Duration,
    pub recovery: Duration,
    /// `xpack.security.enabled: true` (see tests/standin/security.rs).
    pub security: bool,
    /// `ELASTIC_PASSWORD` (or the file `ELASTIC_PASSWORD_FILE`): the
    /// `elastic` user's password until one is set through the API.
    pub bootstrap_password: Option<String>,
}

fn list(v: &str) -> Vec<String> {
    v.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn secs(v: Option<String>, default: Duration) -> Duration {
    v.and_then(|s| s.trim_end_matches('s').parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(default)
}

impl Config {
    pub fn from_env() -> Config {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let hostname = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "standin".to_string());
        let roles = get("node.roles").map(|r| list(&r));
        let has = |role: &str| roles.as_ref().is_none_or(|r| r.iter().any(|x| x == role));
        Config {
            node_name: get("node.name").unwrap_or(hostname),
            cluster_name: get("cluster.name").unwrap_or_else(|| "docker-cluster".to_string()),
            master_eligible: has("master"),
            data: has("data") || roles.as_ref().is_some_and(|r| r.iter().any(|x| x.starts_with("data_"))),
            seed_hosts: get("discovery.seed_hosts").map(|s| list(&s)).unwrap_or_default(),
            initial_masters: get("cluster.initial_master_nodes")
                .map(|s| list(&s))
                .unwrap_or_default(),
            single_node: get("discovery.type").as_deref() == Some("single-node"),
            http_port: get("http.port").and_then(|p| p.parse().ok()).unwrap_or(9200),
            transport_port: get("transport.port").and_then(|p| p.parse().ok()).unwrap_or(9300),
            data_path: PathBuf::from(get("path.data").unwrap_or_else(|| "/usr/share/elasticsearch/data".to_string())),
            version: get("STANDIN_ES_VERSION").unwrap_or_else(|| "8.15.3".to_string()),
            primaries: get("STANDIN_ES_PRIMARIES").and_then(|p| p.parse().ok()).unwrap_or(4),
            node_left_delay: secs(get("STANDIN_ES_NODE_LEFT_DELAY"), Duration::from_secs(60)),
            recovery: secs(get("STANDIN_ES_RECOVERY"), Duration::from_secs(2)),
            security: get("xpack.security.enabled").as_deref() == Some("true"),
            bootstrap_password: get("ELASTIC_PASSWORD").or_else(|| {
                get("ELASTIC_PASSWORD_FILE")
                    .and_then(|f| std::fs::read_to_string(f).ok())
                    .map(|p| p.trim_end_matches(['\n', '\r']).to_string())
            }),
        }
    }
}

/// One copy of a shard in the table.
#[derive(Debug, Clone, PartialEq)]
struct Copy {
    shard: usize,
    primary: bool,
    /// The node holding it (none: unassigned).
    node: Option<String>,
    state: CopyState,
    /// Initializing or relocating: when it is done.
    ready_at: Option<u128>,
    /// Relocating: where to.
    target: Option<String>,
    /// Unassigned after its node left: which node and since when (millis).
    left: Option<(String, u128)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyState {
    Unassigned,
    Initializing,
    Started,
    Relocating,
}

impl CopyState {
    fn as_str(self) -> &'static str {
        match self {
            CopyState::Unassigned => "UNASSIGNED",
            CopyState::Initializing => "INITIALIZING",
            CopyState::Started => "STARTED",
            CopyState::Relocating => "RELOCATING",
        }
    }

    fn parse(s: &str) -> CopyState {
        match s {
            "INITIALIZING" => CopyState::Initializing,
            "STARTED" => CopyState::Started,
            "RELOCATING" => CopyState::Relocating,
            _ => CopyState::Unassigned,
        }
    }
}

/// A member of the cluster as the master publishes it.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    uuid: String,
    ip: String,
    version: String,
    master_eligible: bool,
    data: bool,
    disk_percent: f64,
    /// When its process started (ms since the epoch): `_cat/nodes` uptime.
    started: u128,
}

impl Member {
    fn of(p: &Peer) -> Member {
        Member {
            name: p.name.clone(),
            uuid: p.uuid.clone(),
            ip: p.ip.clone(),
            version: p.version.clone(),
            master_eligible: p.master_eligible,
            data: p.data,
            disk_percent: p.disk_percent,
            started: p.started,
        }
    }
}

/// What a node knows of another, from its last answer.
#[derive(Debug, Clone)]
struct Peer {
    name: String,
    uuid: String,
    cluster_uuid: Option<String>,
    cluster_name: String,
    master_eligible: bool,
    data: bool,
    ip: String,
    version: String,
    master: Option<String>,
    voting: BTreeSet<String>,
    settings: Settings,
    metadata: Metadata,
    table: Option<(u64, Vec<Copy>)>,
    /// A master's flood-stage blocks (indices that are read-only).
    blocks: BTreeSet<String>,
    disk_percent: f64,
    /// Bootstrapping: the cluster UUID it proposes, and the proposal it voted for.
    proposal: Option<String>,
    voted: Option<String>,
    /// A master's members (its cluster state's nodes).
    published: Vec<Member>,
    seen: Instant,
    started: u128,
}

/// Cluster settings (and the voting exclusions), versioned by the time of
/// the change, so the newest wins across nodes.
#[derive(Debug, Clone, Default, PartialEq)]
struct Settings {
    version: u64,
    persistent: BTreeMap<String, String>,
    transient: BTreeMap<String, String>,
    exclusions: BTreeSet<String>,
}

impl Settings {
    /// A copy to change: its version is later than this one's.
    fn next(&self) -> Settings {
        Settings {
            version: (self.version + 1).max(now_millis() as u64),
            ..self.clone()
        }
    }
}

impl Settings {
    /// The effective value: transient over persistent.
    fn get(&self, key: &str) -> Option<&str> {
        self.transient
            .get(key)
            .or_else(|| self.persistent.get(key))
            .map(String::as_str)
    }
}

struct Node {
    cfg: Config,
    uuid: String,
    cluster_uuid: Option<String>,
    voting: BTreeSet<String>,
    peers: BTreeMap<String, Peer>,
    master: Option<String>,
    settings: Settings,
    /// ILM policies, index templates, data streams (kept in the data path).
    metadata: Metadata,
    table: Vec<Copy>,
    table_version: u64,
    /// Indices with the flood-stage block `index.blocks.read_only_allow_delete`
    /// (the master's, copied by the others).
    blocks: BTreeSet<String>,
    disk_percent: f64,
    requests: VecDeque<String>,
    /// Why this node is not in a cluster (for `/` and the log).
    problem: Option<String>,
    ip: String,
    /// Bootstrapping: the cluster UUID this node proposes (it votes for it).
    proposal: Option<String>,
    /// Bootstrapping: the proposal this node voted for (one vote only).
    voted: Option<String>,
    /// When this process started (ms since the epoch).
    started: u128,
    /// What `GET /_ssl/certificates` lists (read at start).
    ssl_certificates: Vec<es_tls::CertificateInfo>,
    /// Transport TLS's verification mode (`None`: transport TLS off).
    transport_tls: Option<tls::Verify>,
    /// Transport TLS: the certificate each peer that connected used, by
    /// node name.
    inbound_peers: BTreeMap<String, InboundPeer>,
    /// Transport TLS: the refused handshakes, the latest last (at most
    /// [`REFUSALS`]; a repeat moves to the end with its count).
    refusals: VecDeque<Refusal>,
}

/// A peer that connected to the transport port with a client certificate.
#[derive(Debug, Clone)]
struct InboundPeer {
    address: String,
    cert: Result<x509::Summary, String>,
    last_millis: u128,
}

/// A transport handshake that failed.
#[derive(Debug, Clone, PartialEq)]
struct Refusal {
    /// `inbound` (a peer connected) or `outbound` (to a seed host).
    direction: &'static str,
    address: String,
    /// The certificate refused (`CN=name serial 1a2b`), when known.
    certificate: Option<String>,
    reason: String,
    count: u64,
    last_millis: u128,
}

/// Refusals kept for `GET /_standin/transport_peers`.
const REFUSALS: usize = 50;

/// A node's uptime as `_cat` writes times: whole seconds with `time=s`,
/// else the largest unit that fits (`12s`, `3.4m`, `1.2h`).
fn uptime(req: &Request, started: u128) -> String {
    let ms = now_millis().saturating_sub(started);
    match req.query.get("time").map(String::as_str) {
        Some("s") => (ms / 1000).to_string(),
        Some("ms") => ms.to_string(),
        _ if ms < 60_000 => format!("{}s", ms / 1000),
        _ if ms < 3_600_000 => format!("{:.1}m", ms as f64 / 60_000.0),
        _ => format!("{:.1}h", ms as f64 / 3_600_000.0),
    }
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A random id (hex of /dev/urandom; the clock if that fails).
fn random_id() -> String {
    let mut buf = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        buf[..16].copy_from_slice(&now_millis().to_le_bytes());
    }
    buf.iter().map(|b| format!("{b:02x}")).collect::<String>()[..22].to_string()
}

impl Node {
    fn state_file(&self) -> PathBuf {
        self.cfg.data_path.join("standin-es-state")
    }

    /// Keeps the UUIDs and the voting configuration in the data path
    /// (written whole, then renamed: never half a file).
    fn persist(&self) {
        let mut text = format!("node_uuid={}\n", self.uuid);
        if let Some(c) = &self.cluster_uuid {
            text.push_str(&format!("cluster_uuid={c}\n"));
        }
        for v in &self.voting {
            text.push_str(&format!("voting={v}\n"));
        }
        let tmp = self.cfg.data_path.join("standin-es-state.tmp");
        let result = std::fs::create_dir_all(&self.cfg.data_path)
            .and_then(|_| std::fs::write(&tmp, text))
            .and_then(|_| std::fs::rename(&tmp, self.state_file()));
        if let Err(e) = result {
            eprintln!("standin-es: cannot write {}: {e}", self.state_file().display());
        }
    }

    fn load(cfg: Config, ip: String) -> Node {
        let mut node = Node {
            uuid: String::new(),
            cluster_uuid: None,
            voting: BTreeSet::new(),
            peers: BTreeMap::new(),
            master: None,
            settings: Settings::default(),
            metadata: Metadata::default(),
            table: Vec::new(),
            table_version: 0,
            blocks: BTreeSet::new(),
            disk_percent: 20.0,
            requests: VecDeque::new(),
            problem: None,
            ip,
            proposal: None,
            voted: None,
            started: now_millis(),
            ssl_certificates: Vec::new(),
            transport_tls: None,
            inbound_peers: BTreeMap::new(),
            refusals: VecDeque::new(),
            cfg,
        };
        if let Ok(text) = std::fs::read_to_string(node.state_file()) {
            for line in text.lines() {
                match line.split_once('=') {
                    Some(("node_uuid", v)) => node.uuid = v.to_string(),
                    Some(("cluster_uuid", v)) => node.cluster_uuid = Some(v.to_string()),
                    Some(("voting", v)) => {
                        node.voting.insert(v.to_string());
                    }
                    _ => {}
                }
            }
        }
        if node.uuid.is_empty() {
            node.uuid = random_id();
            node.persist();
        }
        if let Ok(text) = std::fs::read_to_string(node.metadata_file()) {
            for line in text.lines() {
                let Some((k, v)) = line.split_once('=') else { continue };
                if let Err(e) = node.metadata.decode_line(k, v) {
                    eprintln!("standin-es: {}: {e}", node.metadata_file().display());
                }
            }
        }
        node
    }

    /// A peer that connected over transport TLS with this certificate
    /// (logged when the certificate is new for that node).
    fn note_inbound(&mut self, name: &str, address: String, cert: Result<x509::Summary, String>) {
        if self.inbound_peers.get(name).map(|p| &p.cert) != Some(&cert) {
            let who = match &cert {
                Ok(c) => c.identity(),
                Err(e) => e.clone(),
            };
            eprintln!(
                "standin-es: {}: transport peer {name} from {address} authenticated with [{who}]",
                self.cfg.node_name
            );
        }
        self.inbound_peers.insert(
            name.to_string(),
            InboundPeer {
                address,
                cert,
                last_millis: now_millis(),
            },
        );
    }

    /// A failed transport handshake: logged when new (not on every poll).
    /// An inbound one is kept by the peer's IP address (its port changes
    /// with every connection).
    fn note_refused(&mut self, direction: &'static str, address: String, e: &tls::HandshakeError) {
        let address = match (direction, address.parse::<std::net::SocketAddr>()) {
            ("inbound", Ok(a)) => a.ip().to_string(),
            _ => address,
        };
        let now = now_millis();
        let same = |r: &Refusal| r.direction == direction && r.address == address && r.reason == e.error;
        if let Some(i) = self.refusals.iter().position(same) {
            if let Some(mut r) = self.refusals.remove(i) {
                r.count += 1;
                r.last_millis = now;
                r.certificate = e.refused.clone().or(r.certificate);
                self.refusals.push_back(r);
            }
            return;
        }
        let whose = match direction {
            "inbound" => "from",
            _ => "to",
        };
        // With a certificate named, this node refused it; else the
        // handshake failed otherwise (the peer refused ours: an alert).
        match &e.refused {
            Some(_) => eprintln!(
                "standin-es: {}: refused transport connection {whose} {address}: {e}",
                self.cfg.node_name
            ),
            None => eprintln!(
                "standin-es: {}: transport handshake {whose} {address} failed: {e}",
                self.cfg.node_name
            ),
        }
        self.refusals.push_back(Refusal {
            direction,
            address,
            certificate: e.refused.clone(),
            reason: e.error.clone(),
            count: 1,
            last_millis: now,
        });
        while self.refusals.len() > REFUSALS {
            self.refusals.pop_front();
        }
    }

    /// `GET /_standin/transport_peers`.
    fn transport_peers_json(&self) -> String {
        let inbound: Vec<String> = self
            .inbound_peers
            .iter()
            .map(|(name, p)| {
                let cert = match &p.cert {
                    Ok(c) => format!(
                        "\"subject_dn\":{},\"common_name\":{},\"serial_number\":{},\"issuer\":{}",
                        json::quote(&c.subject_dn),
                        c.common_name
                            .as_deref()
                            .map(json::quote)
                            .unwrap_or_else(|| "null".into()),
                        json::quote(&c.serial_number),
                        json::quote(&c.issuer_dn)
                    ),
                    Err(e) => format!("\"error\":{}", json::quote(e)),
                };
                format!(
                    "{{\"node\":{},\"address\":{},{cert},\"last_millis\":{}}}",
                    json::quote(name),
                    json::quote(&p.address),
                    p.last_millis
                )
            })
            .collect();
        let refused: Vec<String> = self
            .refusals
            .iter()
            .map(|r| {
                format!(
                    "{{\"direction\":\"{}\",\"address\":{},\"certificate\":{},\"reason\":{},\"count\":{},\"last_millis\":{}}}",
                    r.direction,
                    json::quote(&r.address),
                    r.certificate.as_deref().map(json::quote).unwrap_or_else(|| "null".into()),
                    json::quote(&r.reason),
                    r.count,
                    r.last_millis
                )
            })
            .collect();
        format!(
            "{{\"tls\":{},\"verification_mode\":{},\"inbound\":[{}],\"refused\":[{}]}}",
            self.transport_tls.is_some(),
            self.transport_tls
                .map(|v| json::quote(v.as_str()))
                .unwrap_or_else(|| "null".into()),
            inbound.join(","),
            refused.join(",")
        )
    }

    fn metadata_file(&self) -> PathBuf {
        self.cfg.data_path.join("standin-es-metadata")
    }

    /// Keeps the cluster metadata in the data path, as Elasticsearch keeps
    /// its cluster state (written whole, then renamed).
    fn persist_metadata(&self) {
        let tmp = self.cfg.data_path.join("standin-es-metadata.tmp");
        let result = std::fs::create_dir_all(&self.cfg.data_path)
            .and_then(|_| std::fs::write(&tmp, self.metadata.encode()))
            .and_then(|_| std::fs::rename(&tmp, self.metadata_file()));
        if let Err(e) = result {
            eprintln!("standin-es: cannot write {}: {e}", self.metadata_file().display());
        }
    }

    /// A metadata change made on this node: newer than any, kept on disk.
    fn change_metadata(&mut self, change: impl FnOnce(&mut Metadata)) {
        let mut next = self.metadata.next(now_millis());
        change(&mut next);
        self.metadata = next;
        self.persist_metadata();
    }

    fn me(&self) -> Peer {
        Peer {
            name: self.cfg.node_name.clone(),
            uuid: self.uuid.clone(),
            cluster_uuid: self.cluster_uuid.clone(),
            cluster_name: self.cfg.cluster_name.clone(),
            master_eligible: self.cfg.master_eligible,
            data: self.cfg.data,
            ip: self.ip.clone(),
            version: self.cfg.version.clone(),
            master: self.master.clone(),
            voting: self.voting.clone(),
            settings: self.settings.clone(),
            metadata: self.metadata.clone(),
            table: None,
            blocks: self.blocks.clone(),
            disk_percent: self.disk_percent,
            proposal: self.proposal.clone(),
            voted: self.voted.clone(),
            published: Vec::new(),
            seen: Instant::now(),
            started: self.started,
        }
    }

    /// The members of this node's cluster it can see, itself first.
    fn members(&self) -> Vec<Peer> {
        let mut out = vec![self.me()];
        if self.cluster_uuid.is_none() {
            return out;
        }
        for p in self.peers.values() {
            if p.seen.elapsed() < FAULT_DETECTION
                && p.cluster_uuid == self.cluster_uuid
                && p.cluster_name == self.cfg.cluster_name
            {
                out.push(p.clone());
            }
        }
        out
    }

    /// The cluster's members as the cluster APIs show them: the elected
    /// master's list (its cluster state), this node's own view on the master.
    fn view(&self) -> Vec<Member> {
        let me = Some(self.cfg.node_name.as_str());
        match self.master.as_deref() {
            Some(m) if Some(m) != me => match self.peers.get(m) {
                Some(p) if p.seen.elapsed() < FAULT_DETECTION && !p.published.is_empty() => {
                    let mut list = p.published.clone();
                    // This node's own figures are its own.
                    for x in list.iter_mut().filter(|x| x.uuid == self.uuid) {
                        *x = Member::of(&self.me());
                    }
                    list
                }
                _ => self.members().iter().map(Member::of).collect(),
            },
            _ => self.members().iter().map(Member::of).collect(),
        }
    }

    fn fresh_peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values().filter(|p| p.seen.elapsed() < FAULT_DETECTION)
    }

    /// Formation, the voting configuration and the election, from what the
    /// last poll found.
    fn form(&mut self) {
        let name = self.cfg.node_name.clone();
        if self.cluster_uuid.is_none() {
            let formed: Option<String> = self
                .fresh_peers()
                .filter(|p| p.cluster_name == self.cfg.cluster_name)
                // A cluster with a master, or the one this node voted to bootstrap.
                .filter(|p| p.master.is_some() || (p.cluster_uuid.is_some() && p.cluster_uuid == self.voted))
                .find_map(|p| p.cluster_uuid.clone());
            if let Some(uuid) = formed {
                eprintln!("standin-es: {name} joins cluster {uuid}");
                self.cluster_uuid = Some(uuid);
                self.problem = None;
                self.proposal = None;
                self.voted = None;
                self.persist();
            } else if self.cfg.single_node {
                self.bootstrap(BTreeSet::from([name.clone()]));
            } else if self.cfg.initial_masters.is_empty() {
                self.problem = Some(format!(
                    "master not discovered yet, this node has not previously joined a bootstrapped cluster, and [cluster.initial_master_nodes] is empty on this node [{name}]"
                ));
            } else if self.cfg.master_eligible && self.cfg.initial_masters.contains(&name) {
                self.elect_first_master();
            } else {
                self.problem = Some("master not discovered yet".to_string());
            }
        }
        let Some(uuid) = self.cluster_uuid.clone() else {
            self.master = None;
            return;
        };
        let foreign: Vec<String> = self
            .fresh_peers()
            .filter(|p| p.cluster_uuid.as_ref().is_some_and(|c| *c != uuid))
            .map(|p| format!("{} (cluster {})", p.name, p.cluster_uuid.clone().unwrap_or_default()))
            .collect();
        self.problem = (!foreign.is_empty()).then(|| {
            format!(
                "this node belongs to cluster {uuid} and will not join the nodes of another cluster: {}",
                foreign.join(", ")
            )
        });
        let members = self.members();
        let before = self.voting.clone();
        for p in &members {
            self.voting.extend(p.voting.iter().cloned());
            if p.master_eligible {
                self.voting.insert(p.name.clone());
            }
        }
        if self.cfg.single_node {
            // Single-node discovery: the node elects itself, whatever its
            // name was before (the voting configuration is of node IDs,
            // which the data path keeps; the simulator keys it by name, and
            // a container's name changes with each task).
            self.voting = BTreeSet::from([name.clone()]);
        }
        for p in &members {
            if p.settings.version > self.settings.version {
                self.settings = p.settings.clone();
            }
        }
        let newest = members.iter().max_by_key(|p| p.metadata.version);
        if let Some(p) = newest.filter(|p| p.metadata.version > self.metadata.version) {
            self.metadata = p.metadata.clone();
            self.persist_metadata();
        }
        if self.voting != before {
            self.persist();
        }
        let voters: BTreeSet<&String> = self
            .voting
            .iter()
            .filter(|v| !self.settings.exclusions.contains(*v))
            .collect();
        let present: Vec<&String> = members
            .iter()
            .filter(|p| p.master_eligible && voters.contains(&p.name))
            .map(|p| &p.name)
            .collect();
        let elected = !voters.is_empty() && present.len() > voters.len() / 2;
        let master = elected.then(|| present.iter().min().map(|n| n.to_string())).flatten();
        if master != self.master {
            eprintln!("standin-es: {name}: master is now {master:?}");
        }
        self.master = master;
    }

    /// The first election, with one vote per initial master: the lowest
    /// name among the discovered initial masters proposes a cluster UUID
    /// once it sees a majority of them; each votes for one proposal (the
    /// lowest-named proposer's); a proposal with a majority of votes
    /// bootstraps. Two majorities of one list always share a voter, so two
    /// clusters never form.
    fn elect_first_master(&mut self) {
        let name = self.cfg.node_name.clone();
        let quorum = self.cfg.initial_masters.len() / 2 + 1;
        let initial: Vec<Peer> = self
            .fresh_peers()
            .filter(|p| p.cluster_uuid.is_none() && p.master_eligible && self.cfg.initial_masters.contains(&p.name))
            .cloned()
            .collect();
        // A lower-named proposer: withdraw and vote for it (before voting for anyone else).
        let proposer = initial
            .iter()
            .filter(|p| p.proposal.is_some())
            .min_by(|a, b| a.name.cmp(&b.name));
        match (&self.voted, proposer) {
            (None, Some(p)) if p.name < name => {
                self.proposal = None;
                self.voted = p.proposal.clone();
            }
            (Some(v), Some(p)) if self.proposal.as_ref() == Some(v) && p.name < name => {
                self.proposal = None;
                self.voted = p.proposal.clone();
            }
            _ => {}
        }
        if self.voted.is_none() {
            let mut found: BTreeSet<String> = initial.iter().map(|p| p.name.clone()).collect();
            found.insert(name.clone());
            if found.len() >= quorum && found.iter().next() == Some(&name) {
                let uuid = random_id();
                self.proposal = Some(uuid.clone());
                self.voted = Some(uuid);
            } else {
                self.problem = Some(format!(
                    "master not discovered yet: have discovered {found:?}; need {quorum} of {:?} to bootstrap",
                    self.cfg.initial_masters
                ));
                return;
            }
        }
        if let Some(p) = self.proposal.clone() {
            let mut voters: BTreeSet<String> = initial
                .iter()
                .filter(|peer| peer.voted.as_ref() == Some(&p))
                .map(|peer| peer.name.clone())
                .collect();
            voters.insert(name.clone());
            if voters.len() >= quorum {
                self.bootstrap_as(p, voters);
            } else {
                self.problem = Some(format!("proposing cluster {p}: votes from {voters:?}, need {quorum}"));
            }
        }
    }

    fn bootstrap(&mut self, masters: BTreeSet<String>) {
        self.bootstrap_as(random_id(), masters);
    }

    fn bootstrap_as(&mut self, uuid: String, masters: BTreeSet<String>) {
        eprintln!(
            "standin-es: {} bootstraps cluster {uuid} with {masters:?}",
            self.cfg.node_name
        );
        self.cluster_uuid = Some(uuid);
        self.voting = masters;
        self.problem = None;
        self.proposal = None;
        self.voted = None;
        self.persist();
    }

    /// The master's allocation round; others take the master's table.
    fn allocate(&mut self) {
        let Some(master) = self.master.clone() else {
            return;
        };
        if master != self.cfg.node_name {
            if let Some(p) = self.peers.get(&master) {
                if let Some((v, t)) = &p.table {
                    self.table = t.clone();
                    self.table_version = *v;
                    self.blocks = p.blocks.clone();
                }
            }
            return;
        }
        let now = now_millis();
        let members = self.members();
        let excluded: BTreeSet<String> = self
            .settings
            .get("cluster.routing.allocation.exclude._name")
            .map(list)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let data: Vec<String> = members.iter().filter(|p| p.data).map(|p| p.name.clone()).collect();
        let enable = self
            .settings
            .get("cluster.routing.allocation.enable")
            .unwrap_or("all")
            .to_string();
        let before = self.table.clone();
        if self.table.is_empty() {
            for shard in 0..self.cfg.primaries {
                for primary in [true, false] {
                    self.table.push(Copy {
                        shard,
                        primary,
                        node: None,
                        state: CopyState::Unassigned,
                        ready_at: None,
                        target: None,
                        left: None,
                    });
                }
            }
        }
        // Copies on nodes that left.
        for c in self.table.iter_mut() {
            if let Some(n) = c.node.clone() {
                if !data.contains(&n) {
                    c.node = None;
                    c.state = CopyState::Unassigned;
                    c.ready_at = None;
                    c.target = None;
                    c.left = Some((n, now));
                }
            }
            if let Some(t) = c.target.clone() {
                if !data.contains(&t) {
                    c.target = None;
                    c.ready_at = None;
                    c.state = CopyState::Started;
                }
            }
        }
        // A lost primary: its started replica takes over.
        for shard in 0..self.cfg.primaries {
            let primary_lost = self
                .table
                .iter()
                .any(|c| c.shard == shard && c.primary && c.state == CopyState::Unassigned);
            let replica = self.table.iter().position(|c| {
                c.shard == shard && !c.primary && matches!(c.state, CopyState::Started | CopyState::Relocating)
            });
            if primary_lost && replica.is_some() {
                for c in self.table.iter_mut().filter(|c| c.shard == shard) {
                    c.primary = !c.primary;
                }
            }
        }
        // Recoveries and relocations that are done.
        for c in self.table.iter_mut() {
            if c.ready_at.is_some_and(|t| t <= now) {
                c.ready_at = None;
                if let Some(t) = c.target.take() {
                    c.node = Some(t);
                }
                c.state = CopyState::Started;
            }
        }
        let allowed = |primary: bool| match enable.as_str() {
            "none" => false,
            "primaries" | "new_primaries" => primary,
            _ => true,
        };
        let recovery = self.cfg.recovery.as_millis();
        // Unassigned copies, where the settings allow.
        for i in 0..self.table.len() {
            let c = self.table[i].clone();
            if c.state != CopyState::Unassigned || !allowed(c.primary) {
                continue;
            }
            // A replica whose node left waits for it, up to the delay.
            if let Some((left_node, since)) = &c.left {
                let back = data.contains(left_node) && !excluded.contains(left_node);
                let holds_other = self.table.iter().any(|o| {
                    o.shard == c.shard && (o.node.as_ref() == Some(left_node) || o.target.as_ref() == Some(left_node))
                });
                if back && !holds_other {
                    let t = &mut self.table[i];
                    t.node = Some(left_node.clone());
                    t.state = CopyState::Initializing;
                    t.ready_at = Some(now + recovery / 2);
                    t.left = None;
                    continue;
                }
                if !c.primary && now < since + self.cfg.node_left_delay.as_millis() {
                    continue;
                }
            }
            let Some(target) = self.least_loaded(&data, &excluded, c.shard) else {
                continue;
            };
            let t = &mut self.table[i];
            t.node = Some(target);
            t.state = CopyState::Initializing;
            t.ready_at = Some(now + recovery);
            t.left = None;
        }
        // Copies on excluded nodes move away (relocation needs `all`).
        if allowed(false) {
            for i in 0..self.table.len() {
                let c = self.table[i].clone();
                let on_excluded = c.node.as_ref().is_some_and(|n| excluded.contains(n));
                if c.state != CopyState::Started || !on_excluded {
                    continue;
                }
                if let Some(target) = self.least_loaded(&data, &excluded, c.shard) {
                    let t = &mut self.table[i];
                    t.state = CopyState::Relocating;
                    t.target = Some(target);
                    t.ready_at = Some(now + recovery);
                }
            }
        }
        // Rebalance (Elasticsearch's `cluster.routing.rebalance.enable`,
        // default all): a node with two copies more than another gives one
        // away; at most two copies move at once.
        let rebalance = self.settings.get("cluster.routing.rebalance.enable").unwrap_or("all");
        let moving = self
            .table
            .iter()
            .filter(|c| matches!(c.state, CopyState::Relocating | CopyState::Initializing))
            .count();
        if enable == "all" && rebalance == "all" && moving < 2 {
            let eligible: Vec<&String> = data.iter().filter(|n| !excluded.contains(*n)).collect();
            let load = |n: &String| {
                self.table
                    .iter()
                    .filter(|c| c.node.as_ref() == Some(n) || c.target.as_ref() == Some(n))
                    .count()
            };
            let most = eligible
                .iter()
                .max_by_key(|n| (load(n), std::cmp::Reverse((**n).clone())));
            let least = eligible.iter().min_by_key(|n| (load(n), (**n).clone()));
            if let (Some(most), Some(least)) = (most, least) {
                if load(most) >= load(least) + 2 {
                    let pick = self.table.iter().position(|c| {
                        c.state == CopyState::Started
                            && c.node.as_ref() == Some(*most)
                            && !self.table.iter().any(|o| {
                                o.shard == c.shard
                                    && (o.node.as_ref() == Some(*least) || o.target.as_ref() == Some(*least))
                            })
                    });
                    if let Some(i) = pick {
                        let t = &mut self.table[i];
                        t.state = CopyState::Relocating;
                        t.target = Some((*least).clone());
                        t.ready_at = Some(now + recovery);
                    }
                }
            }
        }
        if self.table != before {
            self.table_version += 1;
        }
    }

    /// The data node with the fewest copies that holds no copy of `shard`.
    fn least_loaded(&self, data: &[String], excluded: &BTreeSet<String>, shard: usize) -> Option<String> {
        data.iter()
            .filter(|n| !excluded.contains(*n))
            .filter(|n| {
                !self
                    .table
                    .iter()
                    .any(|c| c.shard == shard && (c.node.as_ref() == Some(n) || c.target.as_ref() == Some(n)))
            })
            .min_by_key(|n| {
                let load = self
                    .table
                    .iter()
                    .filter(|c| c.node.as_ref() == Some(n) || c.target.as_ref() == Some(n))
                    .count();
                (load, (*n).clone())
            })
            .cloned()
    }

    fn health(&self) -> (&'static str, usize, usize, usize, usize, usize) {
        let count = |f: &dyn Fn(&Copy) -> bool| self.table.iter().filter(|c| f(c)).count();
        let primaries_active = count(&|c| c.primary && matches!(c.state, CopyState::Started | CopyState::Relocating));
        let active = count(&|c| matches!(c.state, CopyState::Started | CopyState::Relocating));
        let relocating = count(&|c| c.state == CopyState::Relocating);
        let initializing = count(&|c| c.state == CopyState::Initializing);
        let unassigned = count(&|c| c.state == CopyState::Unassigned);
        let red = self
            .table
            .iter()
            .any(|c| c.primary && !matches!(c.state, CopyState::Started | CopyState::Relocating));
        let status = if red || self.table.is_empty() {
            "red"
        } else if active < self.table.len() {
            "yellow"
        } else {
            "green"
        };
        (status, primaries_active, active, relocating, initializing, unassigned)
    }

    /// Every index: the shard table's (once there is one) and the backing
    /// indices of the data streams.
    fn index_names(&self) -> Vec<String> {
        let table = (!self.table.is_empty()).then(|| INDEX.to_string());
        table
            .into_iter()
            .chain(self.metadata.backing_indices().map(|(_, i)| i.name.clone()))
            .collect()
    }

    /// A disk watermark (`low`, `high`, `flood_stage`) as a percentage of
    /// the disk used: set, else Elasticsearch's default. `None` for a byte
    /// value (free space), which the simulator does not read.
    fn watermark(&self, which: &str) -> Option<f64> {
        let key = format!("{WATERMARK}{which}");
        let value = match self.settings.get(&key) {
            Some(v) => v.to_string(),
            None => default_settings(&self.settings).remove(&key)?,
        };
        watermark_percent(&value)
    }

    /// The master's flood-stage monitor (Elasticsearch's
    /// `DiskThresholdMonitor`): an index gets the block
    /// `index.blocks.read_only_allow_delete` while a node holding one of
    /// its shards is at or above the flood-stage watermark, and loses it
    /// once every such node is below the high watermark. The table's index
    /// is held by the nodes with a copy; a backing index, which has no
    /// shards in the table, by every data node.
    fn flood_stage(&mut self) {
        if self.master.as_deref() != Some(self.cfg.node_name.as_str()) {
            return;
        }
        let indices = self.index_names();
        self.blocks.retain(|b| indices.contains(b));
        if self.settings.get(THRESHOLD_ENABLED) == Some("false") {
            return;
        }
        let disk: BTreeMap<String, f64> = self
            .members()
            .iter()
            .filter(|p| p.data)
            .map(|p| (p.name.clone(), p.disk_percent))
            .collect();
        let (flood, high) = (self.watermark("flood_stage"), self.watermark("high"));
        for index in indices {
            let holders: Vec<&String> = if index == INDEX {
                self.table
                    .iter()
                    .flat_map(|c| c.node.iter().chain(c.target.iter()))
                    .collect()
            } else {
                disk.keys().collect()
            };
            let fullest = holders
                .iter()
                .filter_map(|h| disk.get(*h))
                .fold(f64::NEG_INFINITY, |a, b| a.max(*b));
            if flood.is_some_and(|f| fullest >= f) {
                self.blocks.insert(index);
            } else if high.is_none_or(|h| fullest < h) {
                self.blocks.remove(&index);
            }
        }
    }
    /// The master's ILM, for the data streams' backing indices (Elasticsearch
    /// runs it every `indices.lifecycle.poll_interval`, 10 min by default;
    /// the simulator every tick). An index's dates are the day in its name
    /// (the simulator keeps no creation time):
    /// - rollover: a write index older than its policy's hot
    ///   `rollover.max_age` is rolled over (a new write index, dated today,
    ///   of the next generation);
    /// - delete: an index that is no longer the write index is deleted once
    ///   the time since its rollover (the day of the next index) reaches the
    ///   delete phase's `min_age`.
    fn ilm(&mut self) {
        if self.master.as_deref() != Some(self.cfg.node_name.as_str()) {
            return;
        }
        let now = now_millis();
        let today = metadata::index_date(now);
        let mut next = self.metadata.clone();
        let mut changed = false;
        for (name, ds) in next.data_streams.iter_mut() {
            let age_of = |index: &str| {
                metadata::backing_date(index)
                    .and_then(|d| metadata::day_start(&d))
                    .map(|start| now.saturating_sub(start))
            };
            let policy_of = |i: &metadata::BackingIndex| {
                i.lifecycle
                    .as_ref()
                    .and_then(|p| self.metadata.policies.get(p))
                    .map(|p| p.body.clone())
            };
            if let Some(write) = ds.indices.last().cloned() {
                let max_age = policy_of(&write)
                    .and_then(|p| metadata::phase_value(&p, "hot", &["actions", "rollover", "max_age"]));
                if max_age.zip(age_of(&write.name)).is_some_and(|(max, age)| age >= max)
                    && metadata::backing_date(&write.name).as_deref() != Some(today.as_str())
                {
                    ds.generation += 1;
                    ds.indices.push(metadata::BackingIndex {
                        name: format!(".ds-{name}-{today}-{:06}", ds.generation),
                        uuid: random_id(),
                        lifecycle: write.lifecycle.clone(),
                    });
                    changed = true;
                }
            }
            let rolled: Vec<Option<u128>> = ds.indices.iter().skip(1).map(|i| age_of(&i.name)).collect();
            let before = ds.indices.len();
            let mut keep = Vec::new();
            for (i, index) in ds.indices.iter().enumerate() {
                let since_rollover = rolled.get(i).copied().flatten();
                let min_age = policy_of(index).and_then(|p| metadata::phase_value(&p, "delete", &["min_age"]));
                let gone = since_rollover.zip(min_age).is_some_and(|(age, min)| age >= min);
                if !gone {
                    keep.push(index.clone());
                }
            }
            changed |= keep.len() != before;
            ds.indices = keep;
        }
        if changed {
            let streams = next.data_streams;
            self.change_metadata(|m| m.data_streams = streams);
        }
    }
}

const WATERMARK: &str = "cluster.routing.allocation.disk.watermark.";
const THRESHOLD_ENABLED: &str = "cluster.routing.allocation.disk.threshold_enabled";

/// Elasticsearch 8's defaults of the disk-threshold and allocation
/// settings the simulator reads, less those that are set (as
/// `include_defaults` lists them). The max headrooms default to `-1` once
/// a watermark is set, as in Elasticsearch.
fn default_settings(settings: &Settings) -> BTreeMap<String, String> {
    let set = |w: &str| settings.get(&format!("{WATERMARK}{w}")).is_some();
    let watermark_set = set("low") || set("high") || set("flood_stage");
    let headroom = |v: &'static str| if watermark_set { "-1" } else { v };
    let frozen_headroom = if set("flood_stage.frozen") { "-1" } else { "20gb" };
    let defaults = [
        (THRESHOLD_ENABLED.to_string(), "true"),
        (format!("{WATERMARK}low"), "85%"),
        (format!("{WATERMARK}low.max_headroom"), headroom("200gb")),
        (format!("{WATERMARK}high"), "90%"),
        (format!("{WATERMARK}high.max_headroom"), headroom("150gb")),
        (format!("{WATERMARK}flood_stage"), "95%"),
        (format!("{WATERMARK}flood_stage.max_headroom"), headroom("100gb")),
        (format!("{WATERMARK}flood_stage.frozen"), "95%"),
        (format!("{WATERMARK}flood_stage.frozen.max_headroom"), frozen_headroom),
        ("cluster.routing.allocation.enable".to_string(), "all"),
        ("cluster.routing.rebalance.enable".to_string(), "all"),
    ];
    defaults
        .iter()
        .filter(|(k, _)| !settings.persistent.contains_key(k) && !settings.transient.contains_key(k))
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect()
}

/// A watermark as a percentage of the disk used: `95%` or the ratio
/// `0.95`; `None` for a byte value such as `10gb` (free space).
fn watermark_percent(value: &str) -> Option<f64> {
    let value = value.trim();
    match value.strip_suffix('%') {
        Some(p) => p.trim().parse().ok(),
        None => value
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .map(|r| r * 100.0),
    }
}

// ----- The peer protocol (transport port): one line per field. -----

fn encode_state(node: &Node) -> String {
    let me = node.me();
    let mut out = format!(
        "name={}\nuuid={}\ncluster_name={}\nmaster_eligible={}\ndata={}\nip={}\nversion={}\ndisk={}\nstarted={}\n",
        me.name, me.uuid, me.cluster_name, me.master_eligible, me.data, me.ip, me.version, me.disk_percent, me.started
    );
    if let Some(c) = &me.cluster_uuid {
        out.push_str(&format!("cluster_uuid={c}\n"));
    }
    if let Some(m) = &me.master {
        out.push_str(&format!("master={m}\n"));
    }
    if let Some(p) = &me.proposal {
        out.push_str(&format!("proposal={p}\n"));
    }
    if let Some(v) = &me.voted {
        out.push_str(&format!("voted={v}\n"));
    }
    for v in &me.voting {
        out.push_str(&format!("voting={v}\n"));
    }
    out.push_str(&format!("settings_version={}\n", node.settings.version));
    for (k, v) in &node.settings.persistent {
        out.push_str(&format!("persistent={k}\t{v}\n"));
    }
    for (k, v) in &node.settings.transient {
        out.push_str(&format!("transient={k}\t{v}\n"));
    }
    for e in &node.settings.exclusions {
        out.push_str(&format!("exclusion={e}\n"));
    }
    out.push_str(&node.metadata.encode());
    if node.master.as_deref() == Some(node.cfg.node_name.as_str()) {
        out.push_str(&format!("table_version={}\n", node.table_version));
        for b in &node.blocks {
            out.push_str(&format!("block={b}\n"));
        }
        for m in node.view() {
            out.push_str(&format!(
                "member={}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                m.name, m.uuid, m.ip, m.version, m.master_eligible, m.data, m.disk_percent, m.started
            ));
        }
        for c in &node.table {
            out.push_str(&format!(
                "copy={}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                c.shard,
                c.primary,
                c.node.clone().unwrap_or_default(),
                c.state.as_str(),
                c.ready_at.map(|t| t.to_string()).unwrap_or_default(),
                c.target.clone().unwrap_or_default(),
                c.left.as_ref().map(|(n, t)| format!("{n}@{t}")).unwrap_or_default(),
            ));
        }
    }
    out
}

fn decode_state(text: &str) -> Option<Peer> {
    let mut p = Peer {
        name: String::new(),
        uuid: String::new(),
        cluster_uuid: None,
        cluster_name: String::new(),
        master_eligible: false,
        data: false,
        ip: String::new(),
        version: String::new(),
        master: None,
        voting: BTreeSet::new(),
        settings: Settings::default(),
        metadata: Metadata::default(),
        table: None,
        blocks: BTreeSet::new(),
        disk_percent: 0.0,
        proposal: None,
        voted: None,
        published: Vec::new(),
        seen: Instant::now(),
        started: 0,
    };
    let mut table = Vec::new();
    let mut table_version = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        match k {
            "name" => p.name = v.to_string(),
            "uuid" => p.uuid = v.to_string(),
            "cluster_name" => p.cluster_name = v.to_string(),
            "cluster_uuid" => p.cluster_uuid = Some(v.to_string()),
            "master_eligible" => p.master_eligible = v == "true",
            "data" => p.data = v == "true",
            "ip" => p.ip = v.to_string(),
            "version" => p.version = v.to_string(),
            "disk" => p.disk_percent = v.parse().unwrap_or(0.0),
            "started" => p.started = v.parse().unwrap_or(0),
            "master" => p.master = Some(v.to_string()),
            "proposal" => p.proposal = Some(v.to_string()),
            "member" => {
                let f: Vec<&str> = v.split('\t').collect();
                if f.len() == 8 {
                    p.published.push(Member {
                        name: f[0].to_string(),
                        uuid: f[1].to_string(),
                        ip: f[2].to_string(),
                        version: f[3].to_string(),
                        master_eligible: f[4] == "true",
                        data: f[5] == "true",
                        disk_percent: f[6].parse().unwrap_or(0.0),
                        started: f[7].parse().unwrap_or(0),
                    });
                }
            }
            "voted" => p.voted = Some(v.to_string()),
            "voting" => {
                p.voting.insert(v.to_string());
            }
            "settings_version" => p.settings.version = v.parse().unwrap_or(0),
            "exclusion" => {
                p.settings.exclusions.insert(v.to_string());
            }
            "persistent" | "transient" => {
                if let Some((sk, sv)) = v.split_once('\t') {
                    let map = if k == "persistent" {
                        &mut p.settings.persistent
                    } else {
                        &mut p.settings.transient
                    };
                    map.insert(sk.to_string(), sv.to_string());
                }
            }
            "table_version" => table_version = v.parse().ok(),
            "block" => {
                p.blocks.insert(v.to_string());
            }
            k if Metadata::is_key(k) => {
                if let Err(e) = p.metadata.decode_line(k, v) {
                    eprintln!("standin-es: from {}: {e}", p.name);
                }
            }
            "copy" => {
                let f: Vec<&str> = v.split('\t').collect();
                if f.len() == 7 {
                    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
                    table.push(Copy {
                        shard: f[0].parse().unwrap_or(0),
                        primary: f[1] == "true",
                        node: opt(f[2]),
                        state: CopyState::parse(f[3]),
                        ready_at: f[4].parse().ok(),
                        target: opt(f[5]),
                        left: f[6]
                            .split_once('@')
                            .map(|(n, t)| (n.to_string(), t.parse().unwrap_or(0))),
                    });
                }
            }
            _ => {}
        }
    }
    p.table = table_version.map(|v| (v, table));
    (!p.name.is_empty()).then_some(p)
}

/// Why an exchange with a peer failed.
enum ExchangeError {
    /// Not there (yet), or no good answer: normal while nodes come and go.
    Unreachable,
    /// The TLS handshake failed: the peer's certificate or ours was refused.
    Tls(tls::HandshakeError),
}

/// One exchange of states with a peer (short deadlines): this node's
/// state goes with the request, so the peer knows of it too (as a node
/// that joins tells the master); the peer's comes back. With transport
/// TLS, over mutual TLS to `host` (the seed host's name or address).
fn exchange(
    addr: std::net::SocketAddr,
    host: &str,
    mine: &str,
    tls: Option<&es_tls::Transport>,
) -> Result<String, ExchangeError> {
    let unreachable = |_| ExchangeError::Unreachable;
    let s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).map_err(unreachable)?;
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(unreachable)?;
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .map_err(unreachable)?;
    let mut s = match tls {
        Some(t) => tls::connect(s, &t.client, host).map_err(ExchangeError::Tls)?,
        None => Conn::Plain(s),
    };
    write!(
        s,
        "POST /_standin/state HTTP/1.1\r\nHost: peer\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{mine}",
        mine.len()
    )
    .and_then(|_| s.flush())
    .map_err(|e| tls_failure(e, tls.is_some()))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| tls_failure(e, tls.is_some()))?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or(ExchangeError::Unreachable)?;
    if head.starts_with("HTTP/1.1 200") {
        Ok(body.to_string())
    } else {
        Err(ExchangeError::Unreachable)
    }
}

/// An error after the handshake: under TLS 1.3 a server refuses the
/// client's certificate after the client finished, so the client reads
/// the refusal (an alert) here.
fn tls_failure(e: std::io::Error, tls: bool) -> ExchangeError {
    if tls && e.kind() == std::io::ErrorKind::InvalidData {
        ExchangeError::Tls(tls::HandshakeError {
            error: e.to_string(),
            refused: None,
        })
    } else {
        ExchangeError::Unreachable
    }
}

/// Every address of every seed host (a name may stand for many tasks),
/// with the host as named (what its certificate must name under `full`).
fn seed_addresses(cfg: &Config) -> Vec<(std::net::SocketAddr, String)> {
    let mut out = Vec::new();
    for host in &cfg.seed_hosts {
        let (name, with_port) = match host.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), host.clone()),
            _ => (host.clone(), format!("{host}:9300")),
        };
        if let Ok(addrs) = with_port.to_socket_addrs() {
            out.extend(addrs.map(|a| (a, name.clone())));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn poll_peers(node: &Arc<Mutex<Node>>, tls: Option<&es_tls::Transport>) {
    let (cfg, my_uuid, mine) = match node.lock() {
        Ok(n) => (n.cfg.clone(), n.uuid.clone(), encode_state(&n)),
        Err(_) => return,
    };
    let mut found = Vec::new();
    let mut refused = Vec::new();
    for (addr, host) in seed_addresses(&cfg) {
        match exchange(addr, &host, &mine, tls) {
            Ok(text) => {
                if let Some(peer) = decode_state(&text) {
                    if peer.uuid != my_uuid {
                        found.push(peer);
                    }
                }
            }
            Err(ExchangeError::Tls(e)) => refused.push((format!("{host} ({addr})"), e)),
            Err(ExchangeError::Unreachable) => {}
        }
    }
    if let Ok(mut n) = node.lock() {
        for (address, e) in refused {
            n.note_refused("outbound", address, &e);
        }
        for p in found {
            n.peers.insert(p.name.clone(), p);
        }
        n.form();
        n.allocate();
        n.flood_stage();
        n.ilm();
    }
}

// ----- HTTP -----

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    raw_target: String,
    body: String,
    /// The `Authorization` header.
    authorization: Option<String>,
}

/// Reads one request (the stream's read timeout set by the caller).
fn read_request(stream: &mut impl Read) -> Option<Request> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if data.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once(':')).collect();
    let authorization = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(1024 * 1024);
    while data.len() < head_end + length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&data[head_end..(head_end + length).min(data.len())]).to_string();
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    let query = q
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.replace("%2C", ",").replace("%2c", ","))
        })
        .collect();
    Some(Request {
        method,
        path: path.trim_end_matches('/').to_string(),
        query,
        raw_target: target.clone(),
        body,
        authorization,
    })
}

fn respond(stream: &mut impl Write, status: u16, content_type: &str, body: &str) {
    respond_with(stream, status, content_type, "", body)
}

/// An answer with extra header lines (`extra` ends each with `\r\n`).
fn respond_with(stream: &mut impl Write, status: u16, content_type: &str, extra: &str, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn es_error(kind: &str, reason: &str, status: u16) -> String {
    format!(
        "{{\"error\":{{\"root_cause\":[{{\"type\":{t},\"reason\":{r}}}],\"type\":{t},\"reason\":{r}}},\"status\":{status}}}",
        t = json::quote(kind),
        r = json::quote(reason)
    )
}

/// A `_cat` answer: rows of (column, value), as JSON or a text table.
fn cat(req: &Request, rows: Vec<Vec<(&str, String)>>) -> (String, &'static str) {
    let wanted: Option<Vec<String>> = req.query.get("h").map(|h| list(h));
    let pick = |row: &Vec<(&str, String)>| -> Vec<(String, String)> {
        match &wanted {
            Some(cols) => cols
                .iter()
                .map(|c| {
                    let v = row
                        .iter()
                        .find(|(k, _)| k == c)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    (c.clone(), v)
                })
                .collect(),
            None => row.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        }
    };
    let picked: Vec<Vec<(String, String)>> = rows.iter().map(pick).collect();
    if req.query.get("format").map(String::as_str) == Some("json") {
        let items: Vec<String> = picked
            .iter()
            .map(|r| {
                let fields: Vec<String> = r
                    .iter()
                    .map(|(k, v)| {
                        let v = if v.is_empty() {
                            "null".to_string()
                        } else {
                            json::quote(v)
                        };
                        format!("{}:{v}", json::quote(k))
                    })
                    .collect();
                format!("{{{}}}", fields.join(","))
            })
            .collect();
        return (format!("[{}]", items.join(",")), "application/json");
    }
    let mut out = String::new();
    if req.query.contains_key("v") {
        if let Some(r) = picked.first() {
            out.push_str(&r.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(" "));
            out.push('\n');
        }
    }
    for r in &picked {
        out.push_str(&r.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" "));
        out.push('\n');
    }
    (out, "text/plain; charset=UTF-8")
}

fn settings_json(map: &BTreeMap<String, String>, flat: bool) -> String {
    if flat {
        let items: Vec<String> = map
            .iter()
            .map(|(k, v)| format!("{}:{}", json::quote(k), json::quote(v)))
            .collect();
        return format!("{{{}}}", items.join(","));
    }
    // Nested: "a.b.c": v -> {"a":{"b":{"c":v}}}.
    fn nest(entries: &[(Vec<&str>, &str)]) -> String {
        let mut groups: BTreeMap<&str, Vec<(Vec<&str>, &str)>> = BTreeMap::new();
        let mut leaves: Vec<String> = Vec::new();
        let mut values: BTreeSet<&str> = BTreeSet::new();
        for (path, v) in entries {
            if path.len() == 1 {
                leaves.push(format!("{}:{}", json::quote(path[0]), json::quote(v)));
                values.insert(path[0]);
            } else {
                groups.entry(path[0]).or_default().push((path[1..].to_vec(), v));
            }
        }
        for (k, sub) in groups {
            if values.contains(k) {
                // A value and a prefix at once (`low`, `low.max_headroom`):
                // the longer keys stay dotted beside it, as Elasticsearch writes them.
                for (path, v) in sub {
                    let key = format!("{k}.{}", path.join("."));
                    leaves.push(format!("{}:{}", json::quote(&key), json::quote(v)));
                }
            } else {
                leaves.push(format!("{}:{}", json::quote(k), nest(&sub)));
            }
        }
        format!("{{{}}}", leaves.join(","))
    }
    let entries: Vec<(Vec<&str>, &str)> = map.iter().map(|(k, v)| (k.split('.').collect(), v.as_str())).collect();
    nest(&entries)
}

/// Flattens `{"cluster":{"routing":{...}}}` and `{"cluster.routing...": v}` alike.
fn flatten(prefix: &str, v: &Json, out: &mut Vec<(String, Option<String>)>) {
    match v {
        Json::Object(m) => {
            for (k, sub) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, sub, out);
            }
        }
        other => out.push((prefix.to_string(), other.setting_value())),
    }
}

fn handle(node: &Arc<Mutex<Node>>, mut stream: Conn) {
    let Some(req) = read_request(&mut stream) else {
        return;
    };
    let Ok(mut n) = node.lock() else {
        return;
    };
    let line = format!(
        "{} {} {} {}",
        now_millis(),
        req.method,
        req.raw_target,
        req.body.replace('\n', " ")
    );
    if !req.path.starts_with("/_standin") {
        // Writes are also kept in the data path, across restarts (a test
        // reads the whole history of a rolling change from the volumes).
        if req.method != "GET" && req.method != "HEAD" {
            let _ = std::fs::create_dir_all(&n.cfg.data_path).and_then(|_| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(n.cfg.data_path.join("standin-requests.log"))
                    .and_then(|mut f| writeln!(f, "{line}"))
            });
        }
        n.requests.push_back(line);
        if n.requests.len() > REQUEST_LOG {
            n.requests.pop_front();
        }
    }
    // Security: every request but the simulator's own authenticates and
    // must be allowed; the `_security` API changes the native realm.
    if n.cfg.security && !req.path.starts_with("/_standin") {
        let who = n
            .metadata
            .security
            .authenticate(
                req.authorization.as_deref(),
                n.cfg.bootstrap_password.as_deref(),
                &req.path,
            )
            .and_then(|p| n.metadata.security.authorize(&p, &req.method, &req.path).map(|_| p));
        let who = match who {
            Ok(p) => p,
            Err((status, body)) => {
                drop(n);
                let extra = if status == 401 {
                    format!("WWW-Authenticate: {}\r\n", crate::security::WWW_AUTHENTICATE)
                } else {
                    String::new()
                };
                respond_with(&mut stream, status, "application/json", &extra, &body);
                return;
            }
        };
        if req.path.starts_with("/_security/") {
            let metadata_before = n.metadata.version;
            let (status, body) = if n.master.is_none() {
                (
                    503,
                    es_error("master_not_discovered_exception", "master not discovered yet", 503),
                )
            } else {
                match crate::security::api(&n.metadata.security, &who, &req.method, &req.path, &req.body) {
                    Ok((next, status, body)) => {
                        if let Some(next) = next {
                            n.change_metadata(|m| m.security = next);
                        }
                        (status, body)
                    }
                    Err(refusal) => refusal,
                }
            };
            let metadata_version = n.metadata.version;
            drop(n);
            if metadata_version != metadata_before {
                wait_published(node, 0, metadata_version);
            }
            respond(&mut stream, status, "application/json", &body);
            return;
        }
    }
    let no_master = || es_error("master_not_discovered_exception", "master not discovered yet", 503);
    let metadata_before = n.metadata.version;
    let (status, ctype, body): (u16, &str, String) = match (req.method.as_str(), req.path.as_str()) {
        ("GET" | "HEAD", "") => (
            200,
            "application/json",
            format!(
                "{{\"name\":{},\"cluster_name\":{},\"cluster_uuid\":{},\"version\":{{\"number\":{},\"build_flavor\":\"default\",\"build_type\":\"docker\",\"lucene_version\":\"9.11.1\",\"minimum_wire_compatibility_version\":\"7.17.0\",\"minimum_index_compatibility_version\":\"7.0.0\"}},\"tagline\":\"You Know, for Search\"}}",
                json::quote(&n.cfg.node_name),
                json::quote(&n.cfg.cluster_name),
                json::quote(n.cluster_uuid.as_deref().unwrap_or("_na_")),
                json::quote(&n.cfg.version)
            ),
        ),
        ("GET", "/_cluster/health") if n.master.is_none() => (503, "application/json", no_master()),
        ("GET", "/_cluster/health") => {
            let (status, primaries, active, relocating, initializing, unassigned) = n.health();
            let members = n.view();
            let total = n.table.len().max(1);
            (
                200,
                "application/json",
                format!(
                    "{{\"cluster_name\":{},\"status\":\"{status}\",\"timed_out\":false,\"number_of_nodes\":{},\"number_of_data_nodes\":{},\"active_primary_shards\":{primaries},\"active_shards\":{active},\"relocating_shards\":{relocating},\"initializing_shards\":{initializing},\"unassigned_shards\":{unassigned},\"delayed_unassigned_shards\":0,\"number_of_pending_tasks\":0,\"number_of_in_flight_fetch\":0,\"task_max_waiting_in_queue_millis\":0,\"active_shards_percent_as_number\":{:.1}}}",
                    json::quote(&n.cfg.cluster_name),
                    members.len(),
                    members.iter().filter(|p| p.data).count(),
                    active as f64 * 100.0 / total as f64
                ),
            )
        }
        ("GET", "/_cat/nodes" | "/_cat/allocation" | "/_cat/shards") if n.master.is_none() => {
            (503, "application/json", no_master())
        }
        ("GET", "/_cat/nodes") => {
            let master = n.master.clone().unwrap_or_default();
            let rows = n
                .view()
                .iter()
                .map(|p| {
                    let role = format!("{}{}", if p.data { "d" } else { "" }, if p.master_eligible { "m" } else { "" });
                    vec![
                        ("ip", p.ip.clone()),
                        ("heap.percent", "40".to_string()),
                        ("ram.percent", "60".to_string()),
                        ("cpu", "3".to_string()),
                        ("load_1m", "0.10".to_string()),
                        ("load_5m", "0.10".to_string()),
                        ("load_15m", "0.10".to_string()),
                        ("node.role", role),
                        ("master", if p.name == master { "*" } else { "-" }.to_string()),
                        ("name", p.name.clone()),
                        ("id", p.uuid.chars().take(4).collect()),
                        ("version", p.version.clone()),
                        ("uptime", uptime(&req, p.started)),
                    ]
                })
                .collect();
            let (body, ctype) = cat(&req, rows);
            (200, ctype, body)
        }
        ("GET", "/_cat/allocation") => {
            let rows = n
                .view()
                .iter()
                .filter(|p| p.data)
                .map(|p| {
                    let shards = n.table.iter().filter(|c| c.node.as_ref() == Some(&p.name)).count();
                    let total: u64 = 100 * 1024 * 1024 * 1024;
                    let used = (total as f64 * p.disk_percent / 100.0) as u64;
                    vec![
                        ("shards", shards.to_string()),
                        ("disk.indices", format!("{}", shards * 1024 * 1024)),
                        ("disk.used", used.to_string()),
                        ("disk.avail", (total - used).to_string()),
                        ("disk.total", total.to_string()),
                        ("disk.percent", format!("{}", p.disk_percent.round() as u64)),
                        ("host", p.ip.clone()),
                        ("ip", p.ip.clone()),
                        ("node", p.name.clone()),
                    ]
                })
                .collect();
            let (body, ctype) = cat(&req, rows);
            (200, ctype, body)
        }
        ("GET", "/_cat/shards") => {
            let rows = n
                .table
                .iter()
                .map(|c| {
                    let node = match (&c.node, &c.target) {
                        (Some(a), Some(b)) => format!("{a} -> {b}"),
                        (Some(a), None) => a.clone(),
                        _ => String::new(),
                    };
                    vec![
                        ("index", INDEX.to_string()),
                        ("shard", c.shard.to_string()),
                        ("prirep", if c.primary { "p" } else { "r" }.to_string()),
                        ("state", c.state.as_str().to_string()),
                        ("node", node),
                    ]
                })
                .collect();
            let (body, ctype) = cat(&req, rows);
            (200, ctype, body)
        }
        ("GET", "/_cluster/settings") => {
            let flat = req.query.get("flat_settings").map(String::as_str) == Some("true");
            let defaults = if req.query.get("include_defaults").map(String::as_str) == Some("true") {
                format!(",\"defaults\":{}", settings_json(&default_settings(&n.settings), flat))
            } else {
                String::new()
            };
            (
                200,
                "application/json",
                format!(
                    "{{\"persistent\":{},\"transient\":{}{defaults}}}",
                    settings_json(&n.settings.persistent, flat),
                    settings_json(&n.settings.transient, flat)
                ),
            )
        }
        ("GET", "/_all/_settings/index.blocks.read_only_allow_delete" | "/_settings/index.blocks.read_only_allow_delete")
            if n.master.is_none() =>
        {
            (503, "application/json", no_master())
        }
        ("GET", "/_all/_settings/index.blocks.read_only_allow_delete" | "/_settings/index.blocks.read_only_allow_delete") => {
            let (status, body) = read_only_settings(&n, &req);
            (status, "application/json", body)
        }
        (_, p) if metadata_route(p).is_some() => {
            let (status, body) = metadata_api(&mut n, &req);
            (status, "application/json", body)
        }
        ("POST", p) if p.starts_with("/_standin/data_stream/") && p.ends_with("/backing_index") => {
            let (status, body) = add_backing_index(&mut n, &req);
            (status, "application/json", body)
        }
        ("PUT", "/_cluster/settings") if n.master.is_none() => (503, "application/json", no_master()),
        ("PUT", "/_cluster/settings") => match json::parse(&req.body) {
            Ok(doc) => {
                let mut changed = n.settings.next();
                let mut acked = (Vec::new(), Vec::new());
                for (scope, map) in [("persistent", 0), ("transient", 1)] {
                    let mut pairs = Vec::new();
                    if let Some(v) = doc.get(scope) {
                        flatten("", v, &mut pairs);
                    }
                    let target = if map == 0 {
                        &mut changed.persistent
                    } else {
                        &mut changed.transient
                    };
                    for (k, v) in pairs {
                        match &v {
                            Some(val) => {
                                target.insert(k.clone(), val.clone());
                            }
                            None => {
                                target.remove(&k);
                            }
                        }
                        if map == 0 {
                            acked.0.push((k, v));
                        } else {
                            acked.1.push((k, v));
                        }
                    }
                }
                n.settings = changed;
                let show = |pairs: &Vec<(String, Option<String>)>| {
                    let m: BTreeMap<String, String> =
                        pairs.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
                    settings_json(&m, false)
                };
                (
                    200,
                    "application/json",
                    format!(
                        "{{\"acknowledged\":true,\"persistent\":{},\"transient\":{}}}",
                        show(&acked.0),
                        show(&acked.1)
                    ),
                )
            }
            Err(e) => (
                400,
                "application/json",
                es_error("x_content_parse_exception", &format!("failed to parse the request body: {e}"), 400),
            ),
        },
        ("POST" | "GET", p) if p == "/_flush" || p.ends_with("/_flush") => {
            let total = n.table.len();
            (
                200,
                "application/json",
                format!("{{\"_shards\":{{\"total\":{total},\"successful\":{total},\"failed\":0}}}}"),
            )
        }
        ("POST", "/_cluster/voting_config_exclusions") => {
            let names = req.query.get("node_names").map(|v| list(v)).unwrap_or_default();
            if names.is_empty() {
                (
                    400,
                    "application/json",
                    es_error("illegal_argument_exception", "node_names is required", 400),
                )
            } else {
                let mut changed = n.settings.next();
                changed.exclusions.extend(names);
                n.settings = changed;
                (200, "application/json", String::new())
            }
        }
        ("DELETE", "/_cluster/voting_config_exclusions") => {
            let mut changed = n.settings.next();
            changed.exclusions.clear();
            n.settings = changed;
            (200, "application/json", String::new())
        }
        ("GET", "/_ssl/certificates") => (
            200,
            "application/json",
            es_tls::certificates_json(&n.ssl_certificates),
        ),
        ("GET", "/_standin/transport_peers") => (200, "application/json", n.transport_peers_json()),
        ("GET", "/_standin/requests") => (200, "text/plain", n.requests.iter().cloned().collect::<Vec<_>>().join("\n")),
        ("GET", "/_standin/problem") => (200, "text/plain", n.problem.clone().unwrap_or_default()),
        ("PUT", "/_standin/disk") => match json::parse(&req.body).ok().and_then(|d| match d.get("percent") {
            Some(Json::Number(p)) => Some(*p),
            _ => None,
        }) {
            Some(p) => {
                n.disk_percent = p;
                (200, "application/json", "{\"acknowledged\":true}".to_string())
            }
            None => (400, "text/plain", "expected {\"percent\": <number>}".to_string()),
        },
        (m, p) => {
            let (status, body) = no_handler(m, p);
            (status, "application/json", body)
        }
    };
    let settings_version = n.settings.version;
    let metadata_version = n.metadata.version;
    drop(n);
    // A cluster settings change is acknowledged once every member has it
    // (Elasticsearch: once the cluster state is published), within 3 s.
    let changes_settings = matches!(
        (req.method.as_str(), req.path.as_str()),
        ("PUT", "/_cluster/settings") | ("POST" | "DELETE", "/_cluster/voting_config_exclusions")
    );
    // So is a metadata change (policies, templates, data streams).
    if (changes_settings && status == 200) || metadata_version != metadata_before {
        wait_published(node, settings_version, metadata_version);
    }
    let body = if req.method == "HEAD" { String::new() } else { body };
    respond(&mut stream, status, ctype, &body);
}

/// Waits (3 s at most) until every member holds these settings and
/// metadata versions: a change is acknowledged once published.
fn wait_published(node: &Arc<Mutex<Node>>, settings_version: u64, metadata_version: u64) {
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let everywhere = node
            .lock()
            .map(|n| {
                n.members()
                    .iter()
                    .all(|p| p.settings.version >= settings_version && p.metadata.version >= metadata_version)
            })
            .unwrap_or(true);
        if everywhere {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A peer's `POST /_standin/state` on the transport port; `peer_cert` is
/// the certificate it authenticated with (transport TLS).
fn handle_transport(node: &Arc<Mutex<Node>>, mut stream: Conn, address: String) {
    let peer_cert = stream
        .peer_certificate()
        .map(|c| x509::summary(c).map_err(|e| format!("unreadable client certificate: {e}")));
    let Some(req) = read_request(&mut stream) else {
        return;
    };
    let body = match (req.method.as_str(), req.path.as_str(), node.lock()) {
        ("POST", "/_standin/state", Ok(mut n)) => {
            if let Some(peer) = decode_state(&req.body).filter(|p| p.uuid != n.uuid) {
                if let Some(cert) = peer_cert {
                    n.note_inbound(&peer.name, address, cert);
                }
                n.peers.insert(peer.name.clone(), peer);
            }
            encode_state(&n)
        }
        _ => {
            respond(&mut stream, 404, "text/plain", "");
            return;
        }
    };
    respond(&mut stream, 200, "text/plain", &body);
}

/// This host's first non-loopback address (its address on the overlay), as
/// `_cat/nodes` shows it.
fn own_ip() -> String {
    std::fs::read_to_string("/etc/hosts")
        .ok()
        .and_then(|hosts| {
            let name = std::fs::read_to_string("/etc/hostname").ok()?.trim().to_string();
            hosts
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .find(|l| l.split_whitespace().skip(1).any(|h| h == name))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

fn listen(port: u16, what: &str) -> Option<TcpListener> {
    match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("standin-es: cannot listen on {what} port {port}: {e}");
            None
        }
    }
}

/// Serves the HTTP port: plain, or HTTPS with `tls`.
fn serve_http(node: Arc<Mutex<Node>>, listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    for tcp in listener.incoming().flatten() {
        let node = node.clone();
        let tls = tls.clone();
        thread::spawn(move || {
            if tcp.set_read_timeout(Some(Duration::from_secs(5))).is_err() {
                return;
            }
            let name = || node.lock().map(|n| n.cfg.node_name.clone()).unwrap_or_default();
            let address = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            let conn = match &tls {
                None => Conn::Plain(tcp),
                Some(config) => {
                    match tls::starts_with_handshake(&tcp) {
                        Ok(true) => {}
                        Ok(false) => {
                            // Elasticsearch's words; it closes the connection.
                            eprintln!(
                                "standin-es: {}: received plaintext http traffic on an https channel, closing connection from {address}",
                                name()
                            );
                            return;
                        }
                        Err(_) => return,
                    }
                    match tls::accept(tcp, config) {
                        Ok(c) => c,
                        Err(e) => {
                            eprintln!(
                                "standin-es: {}: http client {address}: TLS handshake failed: {e}",
                                name()
                            );
                            return;
                        }
                    }
                }
            };
            handle(&node, conn);
        });
    }
}

/// Serves the transport port: plain, or mutual TLS with `tls`.
fn serve_transport(node: Arc<Mutex<Node>>, listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    for tcp in listener.incoming().flatten() {
        let node = node.clone();
        let tls = tls.clone();
        thread::spawn(move || {
            if tcp.set_read_timeout(Some(Duration::from_secs(5))).is_err() {
                return;
            }
            let address = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            let conn = match &tls {
                None => Conn::Plain(tcp),
                Some(config) => match tls::accept(tcp, config) {
                    Ok(c) => c,
                    Err(e) => {
                        if let Ok(mut n) = node.lock() {
                            n.note_refused("inbound", address, &e);
                        }
                        return;
                    }
                },
            };
            handle_transport(&node, conn, address);
        });
    }
}

/// Runs the simulator; returns the ports it listens on (it serves in
/// threads), or why the node cannot start (a TLS setting).
pub fn start() -> Result<Vec<u16>, String> {
    let cfg = Config::from_env();
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let tls = es_tls::EsTls::load(&get)?;
    eprintln!(
        "standin-es: node {} of cluster {} (http {}{}, transport {}{}, data {}, seed hosts {:?}, initial masters {:?})",
        cfg.node_name,
        cfg.cluster_name,
        cfg.http_port,
        if tls.http.is_some() { " over TLS" } else { "" },
        cfg.transport_port,
        match &tls.transport {
            Some(t) => format!(" over mutual TLS, verification {}", t.verify.as_str()),
            None => String::new(),
        },
        cfg.data_path.display(),
        cfg.seed_hosts,
        cfg.initial_masters
    );
    let (http_port, transport_port) = (cfg.http_port, cfg.transport_port);
    let mut node = Node::load(cfg, own_ip());
    node.ssl_certificates = tls.certificates.clone();
    node.transport_tls = tls.transport.as_ref().map(|t| t.verify);
    let node = Arc::new(Mutex::new(node));
    let mut ports = Vec::new();
    if let Some(l) = listen(transport_port, "transport") {
        ports.push(transport_port);
        let node = node.clone();
        let server = tls.transport.as_ref().map(|t| t.server.clone());
        thread::spawn(move || serve_transport(node, l, server));
    }
    if let Some(l) = listen(http_port, "http") {
        ports.push(http_port);
        let node = node.clone();
        let server = tls.http.clone();
        thread::spawn(move || serve_http(node, l, server));
    }
    thread::spawn(move || {
        let mut last_problem = None;
        loop {
            let started = Instant::now();
            poll_peers(&node, tls.transport.as_ref());
            if let Ok(n) = node.lock() {
                if n.problem != last_problem {
                    if let Some(p) = &n.problem {
                        eprintln!("standin-es: {}: {p}", n.cfg.node_name);
                    }
                    last_problem = n.problem.clone();
                }
            }
            thread::sleep(TICK.saturating_sub(started.elapsed()));
        }
    });
    Ok(ports)
}

// ----- The metadata APIs (ILM policies, index templates, data streams) -----

/// A metadata API a path names: (`_ilm/policy` | `_index_template` |
/// `_data_stream`, the name or pattern after it, if any).
fn metadata_route(path: &str) -> Option<(&'static str, Option<&str>)> {
    for api in ["/_ilm/policy", "/_index_template", "/_data_stream"] {
        if path == api {
            return Some((api, None));
        }
        if let Some(name) = path.strip_prefix(api).and_then(|r| r.strip_prefix('/')) {
            if !name.is_empty() && !name.contains('/') {
                return Some((api, Some(name)));
            }
        }
    }
    None
}

fn rejected(r: &metadata::Rejected) -> (u16, String) {
    (400, es_error(r.kind(), r.reason(), 400))
}

fn not_found(reason: &str) -> (u16, String) {
    (404, es_error("resource_not_found_exception", reason, 404))
}

const ACKNOWLEDGED: &str = "{\"acknowledged\":true}";

/// Names (comma-separated, `*` globs, `_all`) against what exists: the
/// matches, or the first concrete name that does not exist.
fn select<'a, V>(wanted: Option<&str>, have: &'a BTreeMap<String, V>) -> Result<Vec<(&'a String, &'a V)>, String> {
    let Some(wanted) = wanted.filter(|w| *w != "_all" && *w != "*") else {
        return Ok(have.iter().collect());
    };
    let mut out = Vec::new();
    for w in wanted.split(',') {
        if w.contains('*') {
            out.extend(have.iter().filter(|(k, _)| metadata::glob(w, k)));
        } else {
            match have.get_key_value(w) {
                Some(kv) => out.push(kv),
                None => return Err(w.to_string()),
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

/// `GET|PUT|DELETE /_ilm/policy[/<name>]`, `GET|PUT|DELETE
/// /_index_template[/<name>]`, `GET|PUT|DELETE /_data_stream[/<name>]`,
/// answered as Elasticsearch 8 answers them. A change is made on this node
/// and gossiped (the newest metadata wins), and is acknowledged once every
/// member holds it (see `handle`).
fn metadata_api(n: &mut Node, req: &Request) -> (u16, String) {
    let Some((api, name)) = metadata_route(&req.path) else {
        return no_handler(&req.method, &req.path);
    };
    if n.master.is_none() {
        return (
            503,
            es_error("master_not_discovered_exception", "master not discovered yet", 503),
        );
    }
    let method = req.method.as_str();
    match (api, method, name) {
        ("/_ilm/policy", "GET", _) => match select(name, &n.metadata.policies) {
            Err(missing) => not_found(&format!("Lifecycle policy not found: [{missing}]")),
            Ok(found) => {
                let entries: Vec<String> = found
                    .iter()
                    .map(|(k, p)| format!("{}:{}", json::quote(k), policy_json(&n.metadata, k, p)))
                    .collect();
                (200, format!("{{{}}}", entries.join(",")))
            }
        },
        ("/_ilm/policy", "PUT", Some(name)) => match metadata::normalise_policy(&req.body) {
            Err(r) => rejected(&r),
            Ok(body) => {
                let same = n.metadata.policies.get(name).is_some_and(|p| p.body == body);
                if !same {
                    // Elasticsearch makes a PUT of the same policy a no-op.
                    let now = now_millis();
                    n.change_metadata(|m| {
                        let version = m.policies.get(name).map_or(1, |p| p.version + 1);
                        m.policies.insert(
                            name.to_string(),
                            metadata::Policy {
                                version,
                                modified: now,
                                body,
                            },
                        );
                    });
                }
                (200, ACKNOWLEDGED.to_string())
            }
        },
        ("/_ilm/policy", "DELETE", Some(name)) => {
            if !n.metadata.policies.contains_key(name) {
                return not_found(&format!("Lifecycle policy not found: [{name}]"));
            }
            let users: Vec<String> = n
                .metadata
                .backing_indices()
                .filter(|(_, i)| i.lifecycle.as_deref() == Some(name))
                .map(|(_, i)| i.name.clone())
                .collect();
            if !users.is_empty() {
                return rejected(&metadata::Rejected::Argument(format!(
                    "Cannot delete policy [{name}]. It is in use by one or more indices: [{}]",
                    users.join(", ")
                )));
            }
            n.change_metadata(|m| {
                m.policies.remove(name);
            });
            (200, ACKNOWLEDGED.to_string())
        }
        ("/_index_template", "GET", _) => match select(name, &n.metadata.templates) {
            Err(missing) => not_found(&format!("index template matching [{missing}] not found")),
            Ok(found) => {
                let list: Vec<String> = found
                    .iter()
                    .map(|(k, t)| format!("{{\"name\":{},\"index_template\":{t}}}", json::quote(k)))
                    .collect();
                (200, format!("{{\"index_templates\":[{}]}}", list.join(",")))
            }
        },
        ("/_index_template", "PUT", Some(name)) => {
            match metadata::normalise_template(name, &req.body, &n.metadata.templates) {
                Err(r) => rejected(&r),
                Ok(t) => {
                    if n.metadata.templates.get(name) != Some(&t) {
                        n.change_metadata(|m| {
                            m.templates.insert(name.to_string(), t);
                        });
                    }
                    (200, ACKNOWLEDGED.to_string())
                }
            }
        }
        ("/_index_template", "DELETE", Some(name)) => {
            if !n.metadata.templates.contains_key(name) {
                return not_found(&format!("index_template [{name}] missing"));
            }
            let users: Vec<&String> = n
                .metadata
                .data_streams
                .keys()
                .filter(|ds| n.metadata.template_for(ds).is_some_and(|(t, _)| t == name))
                .collect();
            if !users.is_empty() {
                return rejected(&metadata::Rejected::Argument(format!(
                    "unable to remove composable templates [{name}] as they are in use by a data streams [{}]",
                    users.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            n.change_metadata(|m| {
                m.templates.remove(name);
            });
            (200, ACKNOWLEDGED.to_string())
        }
        ("/_data_stream", "GET", _) => match select(name, &n.metadata.data_streams) {
            Err(missing) => (
                404,
                es_error("index_not_found_exception", &format!("no such index [{missing}]"), 404),
            ),
            Ok(found) => {
                let list: Vec<String> = found
                    .iter()
                    .map(|(k, ds)| data_stream_json(&n.metadata, k, ds))
                    .collect();
                (200, format!("{{\"data_streams\":[{}]}}", list.join(",")))
            }
        },
        ("/_data_stream", "PUT", Some(name)) => match create_data_stream(n, name, now_millis()) {
            Ok(()) => (200, ACKNOWLEDGED.to_string()),
            Err(e) => e,
        },
        ("/_data_stream", "DELETE", Some(name)) => match select(Some(name), &n.metadata.data_streams) {
            Err(missing) => (
                404,
                es_error("index_not_found_exception", &format!("no such index [{missing}]"), 404),
            ),
            Ok(found) => {
                let names: Vec<String> = found.iter().map(|(k, _)| (*k).clone()).collect();
                n.change_metadata(|m| {
                    for k in &names {
                        m.data_streams.remove(k);
                    }
                });
                (200, ACKNOWLEDGED.to_string())
            }
        },
        _ => (
            405,
            es_error(
                "method_not_allowed",
                &format!("Incorrect HTTP method for uri [{}] and method [{method}]", req.path),
                405,
            ),
        ),
    }
}

/// One policy of `GET _ilm/policy`: version, modified date, the policy and
/// what uses it.
fn policy_json(m: &metadata::Metadata, name: &str, p: &metadata::Policy) -> String {
    let indices: Vec<String> = m
        .backing_indices()
        .filter(|(_, i)| i.lifecycle.as_deref() == Some(name))
        .map(|(_, i)| json::quote(&i.name))
        .collect();
    let templates: Vec<String> = m
        .templates
        .iter()
        .filter(|(_, t)| metadata::lifecycle(t).as_deref() == Some(name))
        .map(|(k, _)| json::quote(k))
        .collect();
    let streams: Vec<String> = m
        .data_streams
        .keys()
        .filter(|ds| {
            m.template_for(ds)
                .is_some_and(|(_, t)| metadata::lifecycle(t).as_deref() == Some(name))
        })
        .map(|k| json::quote(k))
        .collect();
    format!(
        "{{\"version\":{},\"modified_date\":{},\"policy\":{},\"in_use_by\":{{\"indices\":[{}],\"data_streams\":[{}],\"composable_templates\":[{}]}}}}",
        p.version,
        json::quote(&metadata::iso8601(p.modified)),
        p.body,
        indices.join(","),
        streams.join(","),
        templates.join(",")
    )
}

/// One data stream of `GET _data_stream`.
fn data_stream_json(m: &metadata::Metadata, name: &str, ds: &metadata::DataStream) -> String {
    let template = m.template_for(name);
    let policy = template.and_then(|(_, t)| metadata::lifecycle(t));
    let managed = |p: &Option<String>| {
        if p.is_some() {
            "Index Lifecycle Management"
        } else {
            "Unmanaged"
        }
    };
    let indices: Vec<String> = ds
        .indices
        .iter()
        .map(|i| {
            let mut fields = vec![
                format!("\"index_name\":{}", json::quote(&i.name)),
                format!("\"index_uuid\":{}", json::quote(&i.uuid)),
                "\"prefer_ilm\":true".to_string(),
            ];
            if let Some(p) = &i.lifecycle {
                fields.push(format!("\"ilm_policy\":{}", json::quote(p)));
            }
            fields.push(format!("\"managed_by\":{}", json::quote(managed(&i.lifecycle))));
            format!("{{{}}}", fields.join(","))
        })
        .collect();
    let mut fields = vec![
        format!("\"name\":{}", json::quote(name)),
        "\"timestamp_field\":{\"name\":\"@timestamp\"}".to_string(),
        format!("\"indices\":[{}]", indices.join(",")),
        format!("\"generation\":{}", ds.generation),
        "\"status\":\"GREEN\"".to_string(),
    ];
    if let Some((t, _)) = template {
        fields.push(format!("\"template\":{}", json::quote(t)));
    }
    if let Some(p) = &policy {
        fields.push(format!("\"ilm_policy\":{}", json::quote(p)));
    }
    fields.push(format!(
        "\"next_generation_managed_by\":{}",
        json::quote(managed(&policy))
    ));
    fields.push("\"prefer_ilm\":true,\"hidden\":false,\"system\":false,\"allow_custom_routing\":false,\"replicated\":false,\"rollover_on_write\":false".to_string());
    format!("{{{}}}", fields.join(","))
}

/// `PUT _data_stream/<name>` (and the first write to a data stream's name):
/// a template with `data_stream` must match; the first backing index is
/// `.ds-<name>-<yyyy.MM.dd>-000001` and takes the template's policy.
fn create_data_stream(n: &mut Node, name: &str, now: u128) -> Result<(), (u16, String)> {
    metadata::check_data_stream_name(name).map_err(|r| rejected(&r))?;
    if n.metadata.data_streams.contains_key(name) {
        return Err((
            400,
            es_error(
                "resource_already_exists_exception",
                &format!("data_stream [{name}] already exists"),
                400,
            ),
        ));
    }
    let Some((_, template)) = n.metadata.template_for(name) else {
        return Err(rejected(&metadata::Rejected::Argument(format!(
            "no matching index template found for data stream [{name}]"
        ))));
    };
    if template.get("data_stream").is_none() {
        return Err(rejected(&metadata::Rejected::Argument(format!(
            "matching index template [{}] for data stream [{name}] has no data stream template",
            n.metadata
                .template_for(name)
                .map(|(k, _)| k.as_str())
                .unwrap_or_default()
        ))));
    }
    let lifecycle = metadata::lifecycle(template);
    let index = metadata::BackingIndex {
        name: format!(".ds-{name}-{}-000001", metadata::index_date(now)),
        uuid: random_id(),
        lifecycle,
    };
    n.change_metadata(|m| {
        m.data_streams.insert(
            name.to_string(),
            metadata::DataStream {
                generation: 1,
                indices: vec![index],
            },
        );
    });
    Ok(())
}

/// `POST /_standin/data_stream/<name>/backing_index {"date": "yyyy.MM.dd"}`
/// (test control): a backing index as a rollover on that day would have
/// left it, placed by date among the others (the write index stays last
/// unless the new one is newer). So a test gets an old index without
/// waiting for days.
fn add_backing_index(n: &mut Node, req: &Request) -> (u16, String) {
    let name = req
        .path
        .trim_start_matches("/_standin/data_stream/")
        .trim_end_matches("/backing_index")
        .to_string();
    let Some(ds) = n.metadata.data_streams.get(&name) else {
        return (
            404,
            es_error("index_not_found_exception", &format!("no such index [{name}]"), 404),
        );
    };
    let date = match json::parse(&req.body) {
        Ok(doc) => match doc.get("date").and_then(Json::as_str) {
            Some(d) if metadata::is_index_date(d) => d.to_string(),
            _ => {
                return (
                    400,
                    es_error("illegal_argument_exception", "expected {\"date\": \"yyyy.MM.dd\"}", 400),
                )
            }
        },
        Err(e) => return (400, es_error("x_content_parse_exception", &e, 400)),
    };
    let generation = ds.generation + 1;
    let lifecycle = ds.indices.last().and_then(|i| i.lifecycle.clone());
    let index = metadata::BackingIndex {
        name: format!(".ds-{name}-{date}-{generation:06}"),
        uuid: random_id(),
        lifecycle,
    };
    let created = index.name.clone();
    n.change_metadata(|m| {
        if let Some(ds) = m.data_streams.get_mut(&name) {
            ds.generation = generation;
            let at = ds
                .indices
                .iter()
                .position(|i| metadata::backing_date(&i.name).is_some_and(|d| d.as_str() > date.as_str()))
                .unwrap_or(ds.indices.len());
            ds.indices.insert(at, index);
        }
    });
    (
        200,
        format!("{{\"acknowledged\":true,\"index\":{}}}", json::quote(&created)),
    )
}

/// `GET /_all/_settings/index.blocks.read_only_allow_delete`: every index,
/// with the block where the flood stage set it (`{}` settings elsewhere),
/// `flat_settings` as asked.
fn read_only_settings(n: &Node, req: &Request) -> (u16, String) {
    let flat = req.query.get("flat_settings").map(String::as_str) == Some("true");
    let entries: Vec<String> = n
        .index_names()
        .iter()
        .map(|i| {
            let settings = if !n.blocks.contains(i) {
                "{}".to_string()
            } else if flat {
                "{\"index.blocks.read_only_allow_delete\":\"true\"}".to_string()
            } else {
                "{\"index\":{\"blocks\":{\"read_only_allow_delete\":\"true\"}}}".to_string()
            };
            format!("{}:{{\"settings\":{settings}}}", json::quote(i))
        })
        .collect();
    (200, format!("{{{}}}", entries.join(",")))
}

/// Elasticsearch's answer to a path or method it has no handler for.
fn no_handler(method: &str, path: &str) -> (u16, String) {
    (
        400,
        format!(
            "{{\"error\":{},\"status\":400}}",
            json::quote(&format!("no handler found for uri [{path}] and method [{method}]"))
        ),
    )
}

// ----- Cluster metadata: ILM policies, index templates, data streams -----

/// The cluster metadata beyond the settings, pure (no I/O): ILM policies,
/// composable index templates and data streams as Elasticsearch stores and
/// returns them, their validation, and their encoding (one line per
/// record, for the peer protocol and the data path alike).
mod metadata {
    use std::collections::BTreeMap;

    use crate::json::{self, Json};

    /// The ILM phases and the actions each allows (Elasticsearch 8's
    /// `TimeseriesLifecycleType`).
    const PHASES: [(&str, &[&str]); 5] = [
        (
            "hot",
            &[
                "set_priority",
                "unfollow",
                "rollover",
                "readonly",
                "downsample",
                "shrink",
                "forcemerge",
                "searchable_snapshot",
            ],
        ),
        (
            "warm",
            &[
                "set_priority",
                "unfollow",
                "readonly",
                "allocate",
                "migrate",
                "downsample",
                "shrink",
                "forcemerge",
            ],
        ),
        (
            "cold",
            &[
                "set_priority",
                "unfollow",
                "readonly",
                "searchable_snapshot",
                "allocate",
                "migrate",
                "downsample",
                "freeze",
            ],
        ),
        ("frozen", &["unfollow", "searchable_snapshot"]),
        ("delete", &["wait_for_snapshot", "delete"]),
    ];

    /// The fields `PUT _index_template` reads.
    const TEMPLATE_FIELDS: [&str; 10] = [
        "index_patterns",
        "template",
        "composed_of",
        "priority",
        "version",
        "_meta",
        "data_stream",
        "allow_auto_create",
        "ignore_missing_component_templates",
        "deprecated",
    ];

    /// Why a request body was refused (status 400), as Elasticsearch says it.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Rejected {
        /// Not the JSON the API reads: `x_content_parse_exception`.
        Parse(String),
        /// Well-formed, refused content: `illegal_argument_exception`.
        Argument(String),
    }

    impl Rejected {
        pub fn kind(&self) -> &'static str {
            match self {
                Rejected::Parse(_) => "x_content_parse_exception",
                Rejected::Argument(_) => "illegal_argument_exception",
            }
        }

        pub fn reason(&self) -> &str {
            match self {
                Rejected::Parse(r) | Rejected::Argument(r) => r,
            }
        }
    }

    fn parse_error(reason: String) -> Rejected {
        Rejected::Parse(reason)
    }

    fn argument(reason: String) -> Rejected {
        Rejected::Argument(reason)
    }

    /// An ILM policy as stored.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Policy {
        /// 1 at the first PUT, one more at each PUT.
        pub version: u64,
        /// Milliseconds since the epoch.
        pub modified: u128,
        /// The normalised `policy` object.
        pub body: Json,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub struct BackingIndex {
        pub name: String,
        pub uuid: String,
        /// The policy its template named when it was created (Elasticsearch
        /// copies `index.lifecycle.name` into the index's own settings).
        pub lifecycle: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub struct DataStream {
        pub generation: u64,
        /// Oldest first; the last is the write index.
        pub indices: Vec<BackingIndex>,
    }

    /// ILM policies, index templates and data streams, versioned like the
    /// settings (by the time of the change: the newest wins across nodes).
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct Metadata {
        pub version: u64,
        pub policies: BTreeMap<String, Policy>,
        /// The normalised `index_template` objects.
        pub templates: BTreeMap<String, Json>,
        pub data_streams: BTreeMap<String, DataStream>,
        /// The native realm's users and roles.
        pub security: crate::security::Security,
    }

    fn number(n: u128) -> Json {
        Json::Number(n as f64)
    }

    impl Metadata {
        /// A copy to change: its version is later than this one's.
        pub fn next(&self, now: u128) -> Metadata {
            Metadata {
                version: (self.version + 1).max(now as u64),
                ..self.clone()
            }
        }

        /// One `key=record` line per record, the record as compact JSON.
        pub fn encode(&self) -> String {
            let mut out = format!("metadata_version={}\n", self.version);
            for (name, p) in &self.policies {
                let record = Json::object([
                    ("name", Json::str(name)),
                    ("version", number(p.version.into())),
                    ("modified", number(p.modified)),
                    ("policy", p.body.clone()),
                ]);
                out.push_str(&format!("ilm_policy={record}\n"));
            }
            for (name, t) in &self.templates {
                let record = Json::object([("name", Json::str(name)), ("index_template", t.clone())]);
                out.push_str(&format!("index_template={record}\n"));
            }
            for (name, ds) in &self.data_streams {
                let indices = ds
                    .indices
                    .iter()
                    .map(|i| {
                        let lifecycle = i.lifecycle.as_deref().map(Json::str).unwrap_or(Json::Null);
                        Json::object([
                            ("index_name", Json::str(&i.name)),
                            ("index_uuid", Json::str(&i.uuid)),
                            ("lifecycle", lifecycle),
                        ])
                    })
                    .collect();
                let record = Json::object([
                    ("name", Json::str(name)),
                    ("generation", number(ds.generation.into())),
                    ("indices", Json::Array(indices)),
                ]);
                out.push_str(&format!("data_stream={record}\n"));
            }
            out.push_str(&self.security.encode());
            out
        }

        /// Whether `key` is one of the lines `encode` writes.
        pub fn is_key(key: &str) -> bool {
            matches!(
                key,
                "metadata_version" | "ilm_policy" | "index_template" | "data_stream"
            ) || crate::security::Security::is_key(key)
        }

        /// Reads one line `encode` wrote.
        pub fn decode_line(&mut self, key: &str, value: &str) -> Result<(), String> {
            if key == "metadata_version" {
                self.version = value.parse().map_err(|e| format!("metadata_version {value:?}: {e}"))?;
                return Ok(());
            }
            if crate::security::Security::is_key(key) {
                return self.security.decode_line(key, value);
            }
            let record = json::parse(value).map_err(|e| format!("{key}: {e}"))?;
            let text = |field: &str| record.get(field).and_then(Json::as_str).map(str::to_string);
            let name = text("name").ok_or_else(|| format!("{key}: no name in {value}"))?;
            let whole = |field: &str| record.get(field).and_then(Json::as_u64);
            match key {
                "ilm_policy" => {
                    let policy = Policy {
                        version: whole("version").ok_or_else(|| format!("{key} {name}: no version"))?,
                        modified: whole("modified").unwrap_or(0).into(),
                        body: record
                            .get("policy")
                            .cloned()
                            .ok_or_else(|| format!("{key} {name}: no policy"))?,
                    };
                    self.policies.insert(name, policy);
                }
                "index_template" => {
                    let t = record.get("index_template").cloned();
                    self.templates
                        .insert(name.clone(), t.ok_or_else(|| format!("{key} {name}: no template"))?);
                }
                "data_stream" => {
                    let mut indices = Vec::new();
                    for i in record.get("indices").and_then(Json::as_array).unwrap_or(&[]) {
                        let field = |f: &str| i.get(f).and_then(Json::as_str).map(str::to_string);
                        indices.push(BackingIndex {
                            name: field("index_name")
                                .ok_or_else(|| format!("{key} {name}: an index without a name"))?,
                            uuid: field("index_uuid").unwrap_or_default(),
                            lifecycle: field("lifecycle"),
                        });
                    }
                    let generation = whole("generation").unwrap_or(indices.len() as u64);
                    self.data_streams.insert(name, DataStream { generation, indices });
                }
                _ => return Err(format!("not a metadata line: {key}")),
            }
            Ok(())
        }

        /// The template a new index (or data stream) named `name` takes:
        /// the highest priority among those with a matching pattern.
        pub fn template_for(&self, name: &str) -> Option<(&String, &Json)> {
            self.templates
                .iter()
                .filter(|(_, t)| patterns(t).iter().any(|p| glob(p, name)))
                .max_by_key(|(n, t)| (priority(t), std::cmp::Reverse((*n).clone())))
        }

        /// Every backing index, with its data stream.
        pub fn backing_indices(&self) -> impl Iterator<Item = (&String, &BackingIndex)> {
            self.data_streams
                .iter()
                .flat_map(|(name, ds)| ds.indices.iter().map(move |i| (name, i)))
        }
    }

    /// A template's `index_patterns`.
    pub fn patterns(template: &Json) -> Vec<String> {
        template
            .get("index_patterns")
            .and_then(Json::as_array)
            .unwrap_or(&[])
            .iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect()
    }

    /// A template's priority (0 when not given, as Elasticsearch compares them).
    pub fn priority(template: &Json) -> u64 {
        template.get("priority").and_then(Json::as_u64).unwrap_or(0)
    }

    /// The ILM policy a template's settings name (`index.lifecycle.name`).
    pub fn lifecycle(template: &Json) -> Option<String> {
        let mut flat = BTreeMap::new();
        flatten("", template.get("template")?.get("settings")?, &mut flat);
        flat.get("index.lifecycle.name")
            .and_then(Json::as_str)
            .map(str::to_string)
    }

    /// `a.b.c: v` for every leaf of a settings tree (given nested, dotted or both).
    pub fn flatten(prefix: &str, v: &Json, out: &mut BTreeMap<String, Json>) {
        match v {
            Json::Object(m) => {
                for (k, sub) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, sub, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.clone());
            }
        }
    }

    /// Flat settings as Elasticsearch nests them: `a.b: x` becomes
    /// `{"a":{"b":x}}`; where a key is both a value and a prefix (`low` and
    /// `low.max_headroom`) the longer one stays dotted beside the value.
    pub fn nest(flat: &BTreeMap<String, Json>) -> Json {
        fn put(map: &mut BTreeMap<String, Json>, prefix: &str, key: &str, v: Json) {
            match key.split_once('.') {
                None => {
                    let full = format!("{prefix}{key}");
                    if let Some(Json::Object(inner)) = map.remove(&full) {
                        for (k, x) in inner {
                            map.insert(format!("{full}.{k}"), x);
                        }
                    }
                    map.insert(full, v);
                }
                Some((head, rest)) => {
                    let full = format!("{prefix}{head}");
                    let is_value = map.get(&full).is_some_and(|x| !matches!(x, Json::Object(_)));
                    if is_value {
                        put(map, &format!("{full}."), rest, v);
                    } else if let Json::Object(inner) = map.entry(full).or_insert_with(|| Json::Object(BTreeMap::new()))
                    {
                        put(inner, "", rest, v);
                    }
                }
            }
        }
        let mut root = BTreeMap::new();
        for (k, v) in flat {
            put(&mut root, "", k, v.clone());
        }
        Json::Object(root)
    }

    /// A `*` glob (Elasticsearch's simple match).
    pub fn glob(pattern: &str, text: &str) -> bool {
        let parts: Vec<&str> = pattern.split('*').collect();
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if parts.len() == 1 {
            return pattern == text;
        }
        let Some(mut rest) = text.strip_prefix(first) else {
            return false;
        };
        for mid in &parts[1..parts.len() - 1] {
            match rest.find(mid) {
                Some(i) => rest = &rest[i + mid.len()..],
                None => return false,
            }
        }
        rest.ends_with(last)
    }

    /// Whether two index patterns may match one name. Simpler than
    /// Elasticsearch's automaton intersection: one matches the other
    /// literally, or both have a `*` and the text before the first `*` of
    /// one starts the other's (`logs-*` and `logs-app-*`).
    pub fn overlap(a: &str, b: &str) -> bool {
        let head = |p: &str| p.split('*').next().unwrap_or("").to_string();
        glob(a, b)
            || glob(b, a)
            || (a.contains('*') && b.contains('*') && (head(a).starts_with(&head(b)) || head(b).starts_with(&head(a))))
    }

    fn body_object(body: &str) -> Result<BTreeMap<String, Json>, Rejected> {
        match json::parse(body) {
            Ok(Json::Object(m)) => Ok(m),
            Ok(_) => Err(parse_error("request body must be a JSON object".to_string())),
            Err(e) => Err(parse_error(format!("failed to parse the request body: {e}"))),
        }
    }

    /// `PUT _ilm/policy/<name>`'s body, checked, as Elasticsearch returns
    /// it: each phase with `min_age` (`0ms` when not given) and `actions`,
    /// a `delete` action with `delete_searchable_snapshot` (true when not
    /// given); everything else (`_meta` among it) as given.
    pub fn normalise_policy(body: &str) -> Result<Json, Rejected> {
        let doc = body_object(body)?;
        let policy = match doc.get("policy") {
            None => return Err(argument("Required [policy]".to_string())),
            Some(Json::Object(p)) => p,
            Some(_) => {
                return Err(parse_error(
                    "[put_lifecycle_request] policy must be an object".to_string(),
                ))
            }
        };
        let phases = match policy.get("phases") {
            None => return Err(argument("Required [phases]".to_string())),
            Some(Json::Object(p)) => p,
            Some(_) => return Err(parse_error("[lifecycle_policy] phases must be an object".to_string())),
        };
        let mut out_phases = BTreeMap::new();
        for (phase, def) in phases {
            let allowed = PHASES
                .iter()
                .find(|(p, _)| p == phase)
                .map(|(_, a)| *a)
                .ok_or_else(|| argument(format!("Timeseries lifecycle does not support phase [{phase}]")))?;
            let Json::Object(def) = def else {
                return Err(parse_error(format!("[phases] phase [{phase}] must be an object")));
            };
            let actions = match def.get("actions") {
                None => BTreeMap::new(),
                Some(Json::Object(a)) => a.clone(),
                Some(_) => return Err(parse_error(format!("[phase] actions of [{phase}] must be an object"))),
            };
            let mut out_actions = BTreeMap::new();
            for (action, conf) in actions {
                if !allowed.contains(&action.as_str()) {
                    return Err(argument(format!(
                        "invalid action [{action}] defined in phase [{phase}]"
                    )));
                }
                let Json::Object(mut conf) = conf else {
                    return Err(parse_error(format!("[{action}] must be an object")));
                };
                if action == "delete" {
                    conf.entry("delete_searchable_snapshot".to_string())
                        .or_insert(Json::Bool(true));
                }
                out_actions.insert(action, Json::Object(conf));
            }
            let mut def = def.clone();
            def.insert("actions".to_string(), Json::Object(out_actions));
            def.entry("min_age".to_string()).or_insert_with(|| Json::str("0ms"));
            out_phases.insert(phase.clone(), Json::Object(def));
        }
        let mut out = policy.clone();
        out.insert("phases".to_string(), Json::Object(out_phases));
        Ok(Json::Object(out))
    }

    /// Settings as a template stores them: nested, every key under
    /// `index.` (Elasticsearch adds the prefix), values as strings.
    fn normalise_settings(v: &Json) -> Result<Json, Rejected> {
        if !matches!(v, Json::Object(_)) {
            return Err(parse_error("[template] settings must be an object".to_string()));
        }
        let mut flat = BTreeMap::new();
        flatten("", v, &mut flat);
        let mut out = BTreeMap::new();
        for (k, v) in flat {
            let key = if k.starts_with("index.") {
                k
            } else {
                format!("index.{k}")
            };
            let value = match &v {
                Json::Null => continue,
                Json::Array(a) => Json::Array(a.iter().filter_map(|x| x.setting_value().map(Json::Str)).collect()),
                other => match other.setting_value() {
                    Some(s) => Json::Str(s),
                    None => continue,
                },
            };
            out.insert(key, value);
        }
        Ok(nest(&out))
    }

    fn strings(v: &Json, what: &str) -> Result<Vec<String>, Rejected> {
        match v {
            Json::Str(s) => Ok(vec![s.clone()]),
            Json::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| parse_error(format!("[index_template] {what} must be strings"))),
            _ => Err(parse_error(format!(
                "[index_template] {what} must be an array of strings"
            ))),
        }
    }

    /// `PUT _index_template/<name>`'s body, checked against the other
    /// templates, as Elasticsearch returns it: `index_patterns` an array,
    /// `composed_of` `[]` when not given, `data_stream` with `hidden` and
    /// `allow_custom_routing` (false when not given), settings nested under
    /// `index` with string values; `priority`, `version`, `_meta` and the
    /// mappings and aliases as given (`priority` absent when not given).
    pub fn normalise_template(name: &str, body: &str, others: &BTreeMap<String, Json>) -> Result<Json, Rejected> {
        let doc = body_object(body)?;
        if let Some(k) = doc.keys().find(|k| !TEMPLATE_FIELDS.contains(&k.as_str())) {
            return Err(parse_error(format!("[index_template] unknown field [{k}]")));
        }
        let wanted = match doc.get("index_patterns") {
            None => return Err(argument("Required [index_patterns]".to_string())),
            Some(v) => strings(v, "index_patterns")?,
        };
        if wanted.is_empty() {
            return Err(argument(format!("index template [{name}] has no index patterns")));
        }
        let mut out = BTreeMap::new();
        out.insert(
            "index_patterns".to_string(),
            Json::Array(wanted.iter().map(|p| Json::str(p)).collect()),
        );
        let composed = match doc.get("composed_of") {
            None => Vec::new(),
            Some(v) => strings(v, "composed_of")?,
        };
        if !composed.is_empty() {
            // No component templates exist in the simulator.
            return Err(argument(format!(
                "index template [{name}] specifies component templates [{}] that do not exist",
                composed.join(", ")
            )));
        }
        out.insert("composed_of".to_string(), Json::Array(Vec::new()));
        for field in ["priority", "version"] {
            if let Some(v) = doc.get(field) {
                if v.as_u64().is_none() {
                    return Err(parse_error(format!(
                        "[index_template] {field} must be a whole number >= 0"
                    )));
                }
                out.insert(field.to_string(), v.clone());
            }
        }
        if let Some(v) = doc.get("_meta") {
            if !matches!(v, Json::Object(_)) {
                return Err(parse_error("[index_template] _meta must be an object".to_string()));
            }
            out.insert("_meta".to_string(), v.clone());
        }
        for field in ["allow_auto_create", "ignore_missing_component_templates", "deprecated"] {
            if let Some(v) = doc.get(field) {
                out.insert(field.to_string(), v.clone());
            }
        }
        if let Some(v) = doc.get("data_stream") {
            let Json::Object(ds) = v else {
                return Err(parse_error(
                    "[index_template] data_stream must be an object".to_string(),
                ));
            };
            let mut ds = ds.clone();
            for flag in ["hidden", "allow_custom_routing"] {
                ds.entry(flag.to_string()).or_insert(Json::Bool(false));
            }
            out.insert("data_stream".to_string(), Json::Object(ds));
        }
        if let Some(v) = doc.get("template") {
            let Json::Object(t) = v else {
                return Err(parse_error("[index_template] template must be an object".to_string()));
            };
            let mut template = BTreeMap::new();
            for (k, v) in t {
                let v = match k.as_str() {
                    "settings" => normalise_settings(v)?,
                    "mappings" | "aliases" | "lifecycle" => v.clone(),
                    _ => return Err(parse_error(format!("[template] unknown field [{k}]"))),
                };
                template.insert(k.clone(), v);
            }
            out.insert("template".to_string(), Json::Object(template));
        }
        let out = Json::Object(out);
        let mine = priority(&out);
        let clashes: Vec<(&String, Vec<String>)> = others
            .iter()
            .filter(|(other, t)| *other != name && priority(t) == mine)
            .map(|(other, t)| (other, patterns(t)))
            .filter(|(_, theirs)| theirs.iter().any(|b| wanted.iter().any(|a| overlap(a, b))))
            .collect();
        if !clashes.is_empty() {
            let names: Vec<&str> = clashes.iter().map(|(n, _)| n.as_str()).collect();
            let theirs: Vec<String> = clashes
                .iter()
                .map(|(n, p)| format!("{n} => [{}]", p.join(", ")))
                .collect();
            return Err(argument(format!(
                "index template [{name}] has index patterns [{}] matching patterns from existing templates [{}] with patterns ({}) that have the same priority [{mine}], multiple index templates may not match during index creation, please use a different priority",
                wanted.join(", "),
                names.join(","),
                theirs.join(",")
            )));
        }
        Ok(out)
    }

    /// Elasticsearch's rules for a data stream's name (those that matter here).
    pub fn check_data_stream_name(name: &str) -> Result<(), Rejected> {
        if name.to_lowercase() != name {
            return Err(argument(format!("data_stream [{name}] must be lowercase")));
        }
        if name.starts_with(".ds-") {
            return Err(argument(format!("data_stream [{name}] must not start with '.ds-'")));
        }
        let bad = ['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];
        if name.contains(bad) || name.starts_with(['-', '_', '+']) || name == "." || name == ".." {
            return Err(argument(format!("data_stream [{name}] must not contain the following characters [{}], must not start with '-', '_' or '+' and must not be '.' or '..'", bad.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", "))));
        }
        Ok(())
    }

    /// The day in a backing index's name (`.ds-<stream>-<yyyy.MM.dd>-<generation>`).
    pub fn backing_date(index: &str) -> Option<String> {
        let rest = index.strip_prefix(".ds-")?;
        let (head, generation) = rest.rsplit_once('-')?;
        if generation.is_empty() || !generation.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let date = head.get(head.len().checked_sub(10)?..)?;
        is_index_date(date).then(|| date.to_string())
    }

    /// Milliseconds since the epoch at the start (UTC) of a `yyyy.MM.dd` day.
    pub fn day_start(date: &str) -> Option<u128> {
        if !is_index_date(date) {
            return None;
        }
        let y: i64 = date[0..4].parse().ok()?;
        let m: i64 = date[5..7].parse().ok()?;
        let d: i64 = date[8..10].parse().ok()?;
        // Howard Hinnant's days-from-civil.
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        (days >= 0).then(|| days as u128 * 86_400_000)
    }

    /// An Elasticsearch time value (`30d`, `12h`, `0ms`) in milliseconds.
    pub fn time_value(v: &str) -> Option<u128> {
        let v = v.trim();
        let units: [(&str, f64); 7] = [
            ("nanos", 1e-6),
            ("micros", 1e-3),
            ("ms", 1.0),
            ("s", 1e3),
            ("m", 60e3),
            ("h", 3_600e3),
            ("d", 86_400e3),
        ];
        for (unit, factor) in units {
            if let Some(n) = v.strip_suffix(unit) {
                if let Ok(n) = n.trim().parse::<f64>() {
                    if n >= 0.0 && n.is_finite() {
                        return Some((n * factor) as u128);
                    }
                }
            }
        }
        None
    }

    /// A policy's `phases.<phase>` value at a path of its actions (`["rollover", "max_age"]`) or `min_age`.
    pub fn phase_value(policy: &Json, phase: &str, path: &[&str]) -> Option<u128> {
        let mut v = policy.get("phases")?.get(phase)?;
        for p in path {
            v = v.get(p)?;
        }
        time_value(v.as_str()?)
    }

    /// Year, month, day (UTC) and the millisecond of that day.
    fn civil(ms: u128) -> (i64, u32, u32, u64) {
        let days = (ms / 86_400_000) as i64;
        let of_day = (ms % 86_400_000) as u64;
        // Howard Hinnant's days-to-civil.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y, m, d, of_day)
    }

    /// `2026-12-01T10:00:00.000Z`.
    pub fn iso8601(ms: u128) -> String {
        let (y, m, d, t) = civil(ms);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            t / 3_600_000,
            t / 60_000 % 60,
            t / 1000 % 60,
            t % 1000
        )
    }

    /// `2026.12.01`, as backing indices are named.
    pub fn index_date(ms: u128) -> String {
        let (y, m, d, _) = civil(ms);
        format!("{y:04}.{m:02}.{d:02}")
    }

    /// Whether `s` reads `yyyy.MM.dd`.
    pub fn is_index_date(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 10
            && b[4] == b'.'
            && b[7] == b'.'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    }
}
