//! Elasticsearch, as the operator reads and steers it: the few REST calls
//! it makes (`client`, I/O) and what they answer (the types here, pure).
//! Only the documented API shapes of Elasticsearch 8 are relied on:
//! `GET /`, `GET /_cluster/health`, `GET /_cat/nodes?format=json`,
//! `GET /_cat/allocation?format=json&bytes=b`, `GET|PUT /_cluster/settings`,
//! `POST /_flush`.

pub mod client;
pub mod disk;
pub mod retention;
pub mod security;

use serde::{Deserialize, Serialize};

/// Cluster health colour, as `_cluster/health` words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Green,
    Yellow,
    Red,
}

impl Color {
    pub const ALL: [Color; 3] = [Color::Green, Color::Yellow, Color::Red];

    pub fn as_str(self) -> &'static str {
        match self {
            Color::Green => "green",
            Color::Yellow => "yellow",
            Color::Red => "red",
        }
    }
}

/// `GET /_cluster/health`, the fields used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: Color,
    #[serde(default)]
    pub number_of_nodes: u64,
    #[serde(default)]
    pub number_of_data_nodes: u64,
    #[serde(default)]
    pub relocating_shards: u64,
    #[serde(default)]
    pub initializing_shards: u64,
    #[serde(default)]
    pub unassigned_shards: u64,
}

/// One row of `GET /_cat/nodes?format=json&time=s&h=name,node.role,master,version,ip,uptime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatNode {
    pub name: String,
    #[serde(rename = "node.role", default)]
    pub role: String,
    /// `*` on the elected master.
    #[serde(default)]
    pub master: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub ip: String,
    /// With `time=s`: seconds since the node's process started.
    #[serde(default)]
    pub uptime: Option<String>,
}

/// One row of `GET /_cat/allocation?format=json&bytes=b` (cat values are strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatAllocation {
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub shards: Option<String>,
    #[serde(rename = "disk.percent", default)]
    pub disk_percent: Option<String>,
    #[serde(rename = "disk.used", default)]
    pub disk_used: Option<String>,
    #[serde(rename = "disk.total", default)]
    pub disk_total: Option<String>,
}

/// A node of the cluster as one read found it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub name: String,
    pub master_eligible: bool,
    /// The elected master.
    pub elected_master: bool,
    pub version: String,
    /// Seconds since its process started (a restart resets it).
    pub uptime_secs: Option<u64>,
    /// Shards it holds (data nodes).
    pub shards: Option<u64>,
    pub disk_percent: Option<f64>,
    pub disk_used_bytes: Option<u64>,
    pub disk_total_bytes: Option<u64>,
}

/// What one read of the cluster found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// The address that answered.
    pub endpoint: String,
    pub cluster_name: String,
    /// `None` while the node that answered has not joined a cluster.
    pub cluster_uuid: Option<String>,
    pub health: Health,
    pub nodes: Vec<Node>,
    /// `cluster.routing.allocation.enable` (persistent, else transient), if set.
    pub allocation_enable: Option<String>,
    /// `cluster.routing.allocation.exclude._name` as a persistent setting
    /// (the one swarmlog writes; a transient one of someone else's is not
    /// copied into it), if set.
    pub exclude_name: Option<String>,
    /// The disk watermarks in force.
    pub watermarks: disk::Watermarks,
    /// Indices with `index.blocks.read_only_allow_delete` (flood stage), or
    /// why they could not be read.
    pub read_only: Result<Vec<String>, String>,
    /// The retention policy, template and data streams as Elasticsearch holds them.
    pub retention: RetentionRead,
}

/// What one read found of retention.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetentionRead {
    /// `GET /_ilm/policy/swarmlog-logs` (`None`: 404).
    pub policy: Result<Option<serde_json::Value>, String>,
    /// `GET /_index_template/swarmlog-logs` (`None`: 404).
    pub template: Result<Option<serde_json::Value>, String>,
    /// `GET /_data_stream/logs-swarm-*`.
    pub streams: Result<Vec<DataStream>, String>,
}

impl Default for RetentionRead {
    fn default() -> Self {
        RetentionRead {
            policy: Err("not read".into()),
            template: Err("not read".into()),
            streams: Err("not read".into()),
        }
    }
}

/// One data stream of `GET /_data_stream/...`, the fields used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataStream {
    pub name: String,
    /// Backing indices, oldest first.
    #[serde(default, deserialize_with = "index_names")]
    pub indices: Vec<String>,
    #[serde(default)]
    pub ilm_policy: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
}

fn index_names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    struct Index {
        index_name: String,
    }
    Ok(Vec::<Index>::deserialize(d)?
        .into_iter()
        .map(|i| i.index_name)
        .collect())
}

/// The indices `GET /_all/_settings/index.blocks.read_only_allow_delete?flat_settings=true`
/// shows blocked, sorted.
pub fn read_only_indices(answer: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = answer
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| {
            let s = v.get("settings");
            let flat = s.and_then(|s| s.get("index.blocks.read_only_allow_delete"));
            let nested = s.and_then(|s| s.pointer("/index/blocks/read_only_allow_delete"));
            flat.or(nested)
                .is_some_and(|b| b.as_str() == Some("true") || b.as_bool() == Some(true))
        })
        .map(|(k, _)| k.clone())
        .collect();
    out.sort();
    out
}

impl Snapshot {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// No shard moving or starting: what a roll may go on with.
    pub fn settled(&self) -> bool {
        self.health.initializing_shards == 0 && self.health.relocating_shards == 0
    }

    /// How the health reads in words: `yellow (2 unassigned, 1 initializing)`.
    pub fn health_words(&self) -> String {
        let h = &self.health;
        let mut parts = Vec::new();
        for (n, what) in [
            (h.unassigned_shards, "unassigned"),
            (h.initializing_shards, "initializing"),
            (h.relocating_shards, "relocating"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if parts.is_empty() {
            h.status.as_str().to_string()
        } else {
            format!("{} ({} shards)", h.status.as_str(), parts.join(", "))
        }
    }
}

/// A cat value as a number (`"91"`, `"91.5"`); absent or empty: none.
pub fn number(v: Option<&str>) -> Option<f64> {
    v.map(str::trim).filter(|s| !s.is_empty())?.parse().ok()
}

/// The nodes of a read, from `_cat/nodes` and `_cat/allocation`.
pub fn nodes(cat: &[CatNode], alloc: &[CatAllocation]) -> Vec<Node> {
    let mut out: Vec<Node> = cat
        .iter()
        .map(|n| {
            let a = alloc.iter().find(|a| a.node == n.name);
            Node {
                name: n.name.clone(),
                master_eligible: n.role.contains('m'),
                elected_master: n.master.trim() == "*",
                version: n.version.clone(),
                uptime_secs: number(n.uptime.as_deref()).map(|v| v as u64),
                shards: a.and_then(|a| number(a.shards.as_deref())).map(|v| v as u64),
                disk_percent: a.and_then(|a| number(a.disk_percent.as_deref())),
                disk_used_bytes: a.and_then(|a| number(a.disk_used.as_deref())).map(|v| v as u64),
                disk_total_bytes: a.and_then(|a| number(a.disk_total.as_deref())).map(|v| v as u64),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

impl Node {
    /// Which disk watermark it has reached (`None`: its disk is not known).
    pub fn disk_level(&self, w: &disk::Watermarks) -> Option<disk::Level> {
        self.disk_percent.map(|p| disk::level(w, p, self.disk_total_bytes))
    }
}

/// A flat setting of `GET /_cluster/settings?flat_settings=true`: a
/// transient value wins over a persistent one, as in Elasticsearch
/// (transient settings are deprecated; the operator writes persistent ones).
pub fn flat_setting(settings: &serde_json::Value, key: &str) -> Option<String> {
    let get = |scope: &str| {
        settings.get(scope)?.get(key).and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| (!v.is_null()).then(|| v.to_string()))
        })
    };
    get("transient").or_else(|| get("persistent"))
}

/// A flat persistent setting of `GET /_cluster/settings?flat_settings=true`.
pub fn persistent_setting(settings: &serde_json::Value, key: &str) -> Option<String> {
    settings.get("persistent")?.get(key).and_then(|v| {
        v.as_str()
            .map(str::to_string)
            .or_else(|| (!v.is_null()).then(|| v.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cat_rows_as_elasticsearch_writes_them() {
        let cat: Vec<CatNode> = serde_json::from_str(
            r#"[{"name":"es_b","node.role":"dim","master":"-","version":"8.15.3","ip":"10.0.0.3"},
                {"name":"es_a","node.role":"cdfhilmrstw","master":"*","version":"8.15.3","ip":"10.0.0.2"},
                {"name":"es_c","node.role":"di","master":"-","version":"8.15.3","ip":"10.0.0.4"}]"#,
        )
        .expect("cat nodes");
        let alloc: Vec<CatAllocation> = serde_json::from_str(
            r#"[{"shards":"3","disk.indices":"1","disk.used":"9663676416","disk.avail":"1","disk.total":"10737418240","disk.percent":"90","host":"10.0.0.2","ip":"10.0.0.2","node":"es_a"},
                {"shards":"2","disk.indices":null,"disk.used":null,"disk.avail":null,"disk.total":null,"disk.percent":null,"host":null,"ip":null,"node":"UNASSIGNED"}]"#,
        )
        .expect("cat allocation");
        let n = nodes(&cat, &alloc);
        assert_eq!(
            n.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["es_a", "es_b", "es_c"]
        );
        assert!(n[0].elected_master && n[0].master_eligible);
        assert!(n[1].master_eligible && !n[2].master_eligible);
        assert_eq!(n[0].disk_percent, Some(90.0));
        assert_eq!(n[0].shards, Some(3));
        assert_eq!(n[0].disk_total_bytes, Some(10737418240));
        assert_eq!(n[1].disk_percent, None);
    }

    #[test]
    fn settings_read_flat_transient_first() {
        let s = serde_json::json!({
            "persistent": {"cluster.routing.allocation.enable": "primaries"},
            "transient": {}
        });
        assert_eq!(
            flat_setting(&s, "cluster.routing.allocation.enable").as_deref(),
            Some("primaries")
        );
        let s = serde_json::json!({"persistent": {}, "transient": {"cluster.routing.allocation.enable": "none"}});
        assert_eq!(
            flat_setting(&s, "cluster.routing.allocation.enable").as_deref(),
            Some("none")
        );
        assert_eq!(flat_setting(&s, "cluster.routing.allocation.exclude._name"), None);
        let s = serde_json::json!({
            "persistent": {"cluster.routing.allocation.exclude._name": "a"},
            "transient": {"cluster.routing.allocation.exclude._name": "b"}
        });
        assert_eq!(
            persistent_setting(&s, "cluster.routing.allocation.exclude._name").as_deref(),
            Some("a")
        );
    }
}
