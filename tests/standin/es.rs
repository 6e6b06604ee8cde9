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
//! - For tests: `GET /_standin/requests` (every request this node served,
//!   in order, `millis METHOD path-and-query body`; the writes among them
//!   are also appended to `standin-requests.log` in the data path, which
//!   outlives a restart), `PUT /_standin/disk`
//!   `{"percent": 91}` (the disk use `_cat/allocation` reports).
//!
//! Not simulated: documents, indices other than the one table, security,
//! TLS, shard sizes, anything Elasticsearch does on its own beyond the
//! above. A node leaves the view of the others 3 s after it stops
//! answering (Elasticsearch's fault detection takes about 30 s).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::json::{self, Json};

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
    table: Option<(u64, Vec<Copy>)>,
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
    table: Vec<Copy>,
    table_version: u64,
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
}

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
            table: Vec::new(),
            table_version: 0,
            disk_percent: 20.0,
            requests: VecDeque::new(),
            problem: None,
            ip,
            proposal: None,
            voted: None,
            started: now_millis(),
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
        node
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
            table: None,
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
        for p in &members {
            if p.settings.version > self.settings.version {
                self.settings = p.settings.clone();
            }
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
    if node.master.as_deref() == Some(node.cfg.node_name.as_str()) {
        out.push_str(&format!("table_version={}\n", node.table_version));
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
        table: None,
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

/// One exchange of states with a peer (short deadlines): this node's
/// state goes with the request, so the peer knows of it too (as a node
/// that joins tells the master); the peer's comes back.
fn exchange(addr: std::net::SocketAddr, mine: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.set_write_timeout(Some(Duration::from_millis(500))).ok()?;
    write!(
        s,
        "POST /_standin/state HTTP/1.1\r\nHost: peer\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{mine}",
        mine.len()
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Every address of every seed host (a name may stand for many tasks).
fn seed_addresses(cfg: &Config) -> Vec<std::net::SocketAddr> {
    let mut out = Vec::new();
    for host in &cfg.seed_hosts {
        let with_port = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            host.clone()
        } else {
            format!("{host}:9300")
        };
        if let Ok(addrs) = with_port.to_socket_addrs() {
            out.extend(addrs);
        }
    }
    out.sort();
    out.dedup();
    out
}

fn poll_peers(node: &Arc<Mutex<Node>>) {
    let (cfg, my_uuid, mine) = match node.lock() {
        Ok(n) => (n.cfg.clone(), n.uuid.clone(), encode_state(&n)),
        Err(_) => return,
    };
    let mut found = Vec::new();
    for addr in seed_addresses(&cfg) {
        if let Some(peer) = exchange(addr, &mine).as_deref().and_then(decode_state) {
            if peer.uuid != my_uuid {
                found.push(peer);
            }
        }
    }
    if let Ok(mut n) = node.lock() {
        for p in found {
            n.peers.insert(p.name.clone(), p);
        }
        n.form();
        n.allocate();
    }
}

// ----- HTTP -----

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    raw_target: String,
    body: String,
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
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
    let length = lines
        .filter_map(|l| l.split_once(':'))
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
    })
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
        for (path, v) in entries {
            if path.len() == 1 {
                leaves.push(format!("{}:{}", json::quote(path[0]), json::quote(v)));
            } else {
                groups.entry(path[0]).or_default().push((path[1..].to_vec(), v));
            }
        }
        for (k, sub) in groups {
            leaves.push(format!("{}:{}", json::quote(k), nest(&sub)));
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

fn handle(node: &Arc<Mutex<Node>>, mut stream: TcpStream) {
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
    let no_master = || es_error("master_not_discovered_exception", "master not discovered yet", 503);
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
            (
                200,
                "application/json",
                format!(
                    "{{\"persistent\":{},\"transient\":{}}}",
                    settings_json(&n.settings.persistent, flat),
                    settings_json(&n.settings.transient, flat)
                ),
            )
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
        (m, p) => (
            400,
            "application/json",
            format!(
                "{{\"error\":{},\"status\":400}}",
                json::quote(&format!("no handler found for uri [{p}] and method [{m}]"))
            ),
        ),
    };
    let settings_version = n.settings.version;
    drop(n);
    // A cluster settings change is acknowledged once every member has it
    // (Elasticsearch: once the cluster state is published), within 3 s.
    let changes_settings = matches!(
        (req.method.as_str(), req.path.as_str()),
        ("PUT", "/_cluster/settings") | ("POST" | "DELETE", "/_cluster/voting_config_exclusions")
    );
    if changes_settings && status == 200 {
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let everywhere = node
                .lock()
                .map(|n| n.members().iter().all(|p| p.settings.version >= settings_version))
                .unwrap_or(true);
            if everywhere {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    let body = if req.method == "HEAD" { String::new() } else { body };
    respond(&mut stream, status, ctype, &body);
}

fn handle_transport(node: &Arc<Mutex<Node>>, mut stream: TcpStream) {
    let Some(req) = read_request(&mut stream) else {
        return;
    };
    let body = match (req.method.as_str(), req.path.as_str(), node.lock()) {
        ("POST", "/_standin/state", Ok(mut n)) => {
            if let Some(peer) = decode_state(&req.body).filter(|p| p.uuid != n.uuid) {
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

/// Runs the simulator; returns the ports it listens on (it serves in threads).
pub fn start() -> Vec<u16> {
    let cfg = Config::from_env();
    eprintln!(
        "standin-es: node {} of cluster {} (http {}, transport {}, data {}, seed hosts {:?}, initial masters {:?})",
        cfg.node_name,
        cfg.cluster_name,
        cfg.http_port,
        cfg.transport_port,
        cfg.data_path.display(),
        cfg.seed_hosts,
        cfg.initial_masters
    );
    let (http_port, transport_port) = (cfg.http_port, cfg.transport_port);
    let node = Arc::new(Mutex::new(Node::load(cfg, own_ip())));
    let mut ports = Vec::new();
    if let Some(l) = listen(transport_port, "transport") {
        ports.push(transport_port);
        let node = node.clone();
        thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let node = node.clone();
                thread::spawn(move || handle_transport(&node, conn));
            }
        });
    }
    if let Some(l) = listen(http_port, "http") {
        ports.push(http_port);
        let node = node.clone();
        thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let node = node.clone();
                thread::spawn(move || handle(&node, conn));
            }
        });
    }
    thread::spawn(move || {
        let mut last_problem = None;
        loop {
            let started = Instant::now();
            poll_peers(&node);
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
    ports
}
