//! Plan, Elasticsearch cluster (pure): with `topology: cluster`, the
//! rendered `elasticsearch` service is a template, and the services that
//! exist are its members, one per logger node: `<stack>_es_<hostname>`,
//! bound to its node (`node.id == ID`, the data-node label) with that
//! node's own volume.
//!
//! Which members there are comes from the swarm: every member that exists
//! stays (a node that left or lost its label keeps its service, reported;
//! removing one is `swarmlog es decommission`), and every available node
//! the template's constraints allow that has none gets one. The first
//! `io.swarmlog.es.master-nodes` members (by hostname) are master-eligible;
//! a member keeps the role it was created with.
//!
//! Bootstrap happens once: `cluster.initial_master_nodes` is set only while
//! no cluster UUID is known (recorded on the members' label
//! [`LABEL_ES_CLUSTER_UUID`] once the operator read it from Elasticsearch).
//! After that, a new member never gets it, and a member that still has it
//! from the bootstrap keeps it as it is until its next rolling change: taking
//! it away alone would restart every node at once for nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{Node, Service, ServiceSpec};

use super::pinning::LABEL_DATA_NODE;
use super::placement::{available, constraints_of, hostname, node_matches};
use crate::engine::Observed;
use crate::render::desired::{
    made_config, made_secret, rehash, DesiredConfig, DesiredSecret, DesiredService, DesiredState, LABEL_MANAGED,
    LABEL_SPEC_HASH,
};

/// Service label: the Elasticsearch service and its topology (`single` or `cluster`).
pub const LABEL_ES: &str = "io.swarmlog.elasticsearch";
/// Template label: how many members are master-eligible.
pub const LABEL_ES_MASTER_NODES: &str = "io.swarmlog.es.master-nodes";
/// Template label: the hostnames (comma separated) of the nodes to be
/// master-eligible, instead of the first `master-nodes`.
pub const LABEL_ES_MASTER_HOSTS: &str = "io.swarmlog.es.master-hosts";
/// Member label: the template's service name (`<stack>_elasticsearch`).
pub const LABEL_ES_MEMBER_OF: &str = "io.swarmlog.es.member-of";
/// Member label: `true` when master-eligible.
pub const LABEL_ES_MASTER: &str = "io.swarmlog.es.master";
/// Member label: the cluster UUID the members formed (read from Elasticsearch).
pub const LABEL_ES_CLUSTER_UUID: &str = "io.swarmlog.es.cluster-uuid";
/// Member label: where a rolling change of this member stands.
pub const LABEL_ES_ROLL: &str = "io.swarmlog.es.roll";
/// Member label: the hostname of its node when it was made (for people).
pub const LABEL_ES_HOSTNAME: &str = "io.swarmlog.es.hostname";

/// Node label (set by `swarmlog es decommission`): the node's member moves
/// its shards away and is removed; no member is made for the node again
/// while it is there.
pub const LABEL_ES_DECOMMISSION: &str = "io.swarmlog.es.decommission";

/// The template's compose key (its service is `<stack>_elasticsearch`).
const ES_SERVICE_KEY: &str = "elasticsearch";

/// Environment keys swarmlog sets on each member.
pub const ENV_NODE_NAME: &str = "node.name";
pub const ENV_SEED_HOSTS: &str = "discovery.seed_hosts";
pub const ENV_PUBLISH_HOST: &str = "network.publish_host";
pub const ENV_ROLES: &str = "node.roles";
pub const ENV_INITIAL_MASTERS: &str = "cluster.initial_master_nodes";
/// The roles of a member that is not master-eligible.
pub const DATA_ROLES: &str = "data,ingest";

/// How many master-eligible members a template asks for when it does not say.
pub const DEFAULT_MASTER_NODES: usize = 3;

/// Elasticsearch's topology in a desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Single,
    Cluster,
}

/// The Elasticsearch service of a desired state (the template, in a
/// cluster), and its topology.
pub fn elasticsearch(desired: &DesiredState) -> Option<(&DesiredService, Topology)> {
    desired.services.iter().find_map(|s| {
        let t = match s.spec.labels.as_ref()?.get(LABEL_ES)?.as_str() {
            "cluster" => Topology::Cluster,
            _ => Topology::Single,
        };
        Some((s, t))
    })
}

/// One member of the cluster, existing or to be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its service name, which is also its `node.name`.
    pub name: String,
    pub node_id: String,
    /// The node's hostname now (or when the member was made, if the node is gone).
    pub hostname: String,
    pub master: bool,
    /// The service exists.
    pub exists: bool,
    /// Its node is in the swarm, ready and active.
    pub node_available: bool,
    /// Its node still matches the template's constraints (a logger node).
    pub node_selected: bool,
    /// Its node carries [`LABEL_ES_DECOMMISSION`].
    pub decommission: bool,
}

/// The cluster the swarm holds or should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// The template's service name.
    pub template: String,
    pub members: Vec<Member>,
    /// The cluster UUID recorded on a member, if any.
    pub recorded_uuid: Option<String>,
    pub master_nodes: usize,
}

impl Cluster {
    pub fn masters(&self) -> Vec<&Member> {
        self.members.iter().filter(|m| m.master).collect()
    }

    /// What failure the masters survive, in words.
    pub fn survives(&self) -> String {
        let m = self.masters().len();
        match m {
            0 => "no master-eligible node yet".to_string(),
            1 => "no node failure: one master-eligible node (label three logger nodes for a quorum that survives one)"
                .to_string(),
            2 => "no master failure: two master-eligible nodes need both for a quorum (a third logger node fixes this)"
                .to_string(),
            m => format!(
                "the loss of {} master-eligible node{} ({m} master-eligible, a quorum is {})",
                (m - 1) / 2,
                if (m - 1) / 2 == 1 { "" } else { "s" },
                m / 2 + 1
            ),
        }
    }
}

fn label<'a>(s: &'a Service, key: &str) -> Option<&'a str> {
    s.spec.as_ref()?.labels.as_ref()?.get(key).map(String::as_str)
}

/// The members of the cluster of `template` that exist, by name.
pub fn existing_members<'a>(observed: &'a Observed, template: &str) -> Vec<&'a Service> {
    let mut v: Vec<&Service> = observed
        .services
        .iter()
        .filter(|s| label(s, LABEL_ES_MEMBER_OF) == Some(template))
        .collect();
    v.sort_by_key(|s| s.spec.as_ref().and_then(|s| s.name.clone()));
    v
}

/// A service-name part from a hostname: lowercase letters, digits and `-`.
fn name_part(host: &str) -> String {
    let mut out: String = host
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out = out.trim_matches('-').to_string();
    out.truncate(40);
    out.trim_end_matches('-').to_string()
}

/// The cluster of `desired`'s template as the swarm stands: the members that
/// exist, then one for each available node the template allows that has none.
pub fn cluster(desired: &DesiredState, observed: &Observed) -> Option<Cluster> {
    let (template, Topology::Cluster) = elasticsearch(desired)? else {
        return None;
    };
    let tname = template.spec.name.clone().unwrap_or_default();
    let labels = template.spec.labels.clone().unwrap_or_default();
    let master_nodes = labels
        .get(LABEL_ES_MASTER_NODES)
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MASTER_NODES);
    let master_hosts: Vec<String> = labels
        .get(LABEL_ES_MASTER_HOSTS)
        .map(|v| {
            v.split(',')
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let constraints = constraints_of(&template.spec);
    let node_by_id = |id: &str| observed.nodes.iter().find(|n| n.id.as_deref() == Some(id));
    let mut members = Vec::new();
    let mut recorded_uuid = None;
    for s in existing_members(observed, &tname) {
        let name = s.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default();
        let node_id = label(s, LABEL_DATA_NODE).unwrap_or_default().to_string();
        let node = node_by_id(&node_id);
        if recorded_uuid.is_none() {
            recorded_uuid = label(s, LABEL_ES_CLUSTER_UUID).map(str::to_string);
        }
        members.push(Member {
            name,
            hostname: node
                .map(hostname)
                .or_else(|| label(s, LABEL_ES_HOSTNAME).map(str::to_string))
                .unwrap_or_default(),
            node_id,
            master: label(s, LABEL_ES_MASTER) == Some("true"),
            exists: true,
            node_available: node.is_some_and(available),
            node_selected: node.is_some_and(|n| node_matches(n, &constraints)),
            decommission: node.is_some_and(decommissioned),
        });
    }
    let prefix = tname.strip_suffix("_elasticsearch").unwrap_or(&tname).to_string();
    let mut candidates: Vec<&Node> = observed
        .nodes
        .iter()
        .filter(|n| available(n) && node_matches(n, &constraints) && !decommissioned(n))
        .filter(|n| !members.iter().any(|m| Some(m.node_id.as_str()) == n.id.as_deref()))
        .collect();
    candidates.sort_by_key(|n| (hostname(n), n.id.clone()));
    let mut masters = members.iter().filter(|m| m.master).count();
    for n in candidates {
        let id = n.id.clone().unwrap_or_default();
        let host = hostname(n);
        let part = name_part(&host);
        let mut name = format!("{prefix}_es_{}", if part.is_empty() { &id } else { &part });
        if members.iter().any(|m| m.name == name) || observed_has(observed, &name) {
            name = format!("{name}_{}", id.chars().take(6).collect::<String>());
        }
        let master = if master_hosts.is_empty() {
            masters < master_nodes
        } else {
            master_hosts.contains(&host)
        };
        masters += usize::from(master);
        members.push(Member {
            name,
            node_id: id,
            hostname: host,
            master,
            exists: false,
            node_available: true,
            node_selected: true,
            decommission: false,
        });
    }
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Some(Cluster {
        template: tname,
        members,
        recorded_uuid,
        master_nodes,
    })
}

/// The node carries the decommission label.
pub fn decommissioned(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.labels.as_ref())
        .is_some_and(|l| l.contains_key(LABEL_ES_DECOMMISSION))
}

fn observed_has(observed: &Observed, name: &str) -> bool {
    observed
        .services
        .iter()
        .any(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name))
}

/// The desired state with the template replaced by its members' services.
/// `uuid`: the cluster UUID Elasticsearch reported, when the operator read
/// it (recorded on every member; the bootstrap setting is then never given
/// again). Without a cluster topology, `desired` as it is.
pub fn expand(desired: &DesiredState, observed: &Observed, uuid: Option<&str>) -> DesiredState {
    let Some(c) = cluster(desired, observed) else {
        return keep_members_of_single(desired, observed);
    };
    let Some(template) = desired
        .services
        .iter()
        .find(|s| s.spec.name.as_deref() == Some(&c.template))
    else {
        return desired.clone();
    };
    let uuid = c.recorded_uuid.as_deref().or(uuid);
    let masters: Vec<&str> = c.masters().iter().map(|m| m.name.as_str()).collect();
    let mut out = desired.clone();
    out.services.retain(|s| s.spec.name.as_deref() != Some(&c.template));
    // A running single Elasticsearch of this name stays: moving its data
    // into a cluster is a step of its own (see the README).
    let single_runs = observed_has(observed, &c.template);
    if single_runs {
        out.held.insert(
            c.template.clone(),
            format!(
                "{} runs as a single node: switching it to topology cluster is not automatic (see the README, \"Elasticsearch as a cluster\"); it is kept as it is",
                c.template
            ),
        );
    }
    // Bootstrap: no member exists yet, so they are made together.
    let bootstrap = !c.members.iter().any(|m| m.exists);
    let node_certs = NodeCerts::take(&mut out);
    // While the single node runs, no member is made (one would share its
    // node's volume).
    for m in c.members.iter().filter(|m| m.exists || !single_runs) {
        let observed_spec = observed
            .services
            .iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(m.name.as_str()))
            .and_then(|s| s.spec.as_ref());
        let files = match node_certs.for_member(&m.name) {
            Ok(f) => f,
            Err(why) => {
                out.held.insert(m.name.clone(), why);
                None
            }
        };
        let mut swap = Vec::new();
        if let (Some(t), Some(f)) = (&node_certs.placeholders, &files) {
            swap.push((t.0.spec.name.clone(), f.0.spec.name.clone()));
            swap.push((t.1.spec.name.clone(), f.1.spec.name.clone()));
        }
        out.services.push(member_service(
            template,
            &m.clone(),
            &masters,
            uuid,
            bootstrap,
            observed_spec,
            &swap,
        ));
        if let Some((c, s)) = files {
            out.configs.push(c);
            out.secrets.push(s);
        }
    }
    out.services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    out
}

/// A secured cluster: the chart's `node` certificate and key are
/// placeholders; each member mounts its own, for its names, under the
/// stack's CA.
struct NodeCerts {
    placeholders: Option<(DesiredConfig, DesiredSecret)>,
    /// The chart has one placeholder without the other.
    lone: bool,
    issuer: Option<crate::tls::Issuer>,
    stack: String,
}

fn tls_role(labels: Option<&HashMap<String, String>>) -> Option<&str> {
    labels?.get(crate::tls::LABEL_TLS).map(String::as_str)
}

impl NodeCerts {
    /// Takes the placeholders out of `out`.
    fn take(out: &mut DesiredState) -> NodeCerts {
        let c = out
            .configs
            .iter()
            .position(|c| tls_role(c.spec.labels.as_ref()) == Some(crate::tls::NODE));
        let s = out
            .secrets
            .iter()
            .position(|s| tls_role(s.spec.labels.as_ref()) == Some(crate::tls::NODE_KEY));
        let (placeholders, lone) = match (c, s) {
            (Some(c), Some(s)) => (Some((out.configs.remove(c), out.secrets.remove(s))), false),
            (None, None) => (None, false),
            // One without the other: no node could start with it.
            _ => (None, true),
        };
        NodeCerts {
            placeholders,
            lone,
            issuer: out.tls_issuer.clone(),
            stack: out.stack.clone(),
        }
    }

    /// The member's certificate and key (none: security off), or why
    /// the member waits.
    fn for_member(&self, name: &str) -> Result<Option<(DesiredConfig, DesiredSecret)>, String> {
        if self.lone {
            return Err(format!(
                "the chart mounts a node certificate ({}) without its key ({}), or the key without the certificate",
                crate::tls::NODE,
                crate::tls::NODE_KEY
            ));
        }
        let Some((c, s)) = &self.placeholders else {
            return Ok(None);
        };
        let Some(issuer) = &self.issuer else {
            return Err(
                "its certificate is issued from the root key, which this run does not have (give --root-key-file)"
                    .to_string(),
            );
        };
        let (role, key_role) = crate::tls::node_roles(name);
        let leaf = issuer
            .leaf(
                &role,
                &key_role,
                &crate::tls::node_names(&self.stack, ES_SERVICE_KEY, name),
                name,
            )
            .map_err(|e| format!("its certificate could not be issued: {e}"))?;
        Ok(Some((
            made_config(
                c,
                &object_base(name, "cert"),
                leaf.cert.data.as_bytes(),
                leaf.cert.labels,
            ),
            made_secret(s, &object_base(name, "key"), leaf.key.data.as_bytes(), leaf.key.labels),
        )))
    }
}

/// The engine's longest config or secret name.
const MAX_OBJECT_NAME: usize = 64;

/// The name, before its `_<hash8>` content suffix, of a member's config or
/// secret: `<member>_<what>`; when that would pass the engine's limit, the
/// member's name is cut and a hash of it keeps it apart from another's.
fn object_base(member: &str, what: &str) -> String {
    let full = format!("{member}_{what}");
    // The content suffix: `_` and 8 hex digits.
    if full.len() + 9 <= MAX_OBJECT_NAME {
        return full;
    }
    use sha2::Digest as _;
    let h: String = sha2::Sha256::digest(member.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let keep = MAX_OBJECT_NAME - 9 - (1 + h.len()) - (1 + what.len());
    let cut: String = member.chars().take(keep).collect();
    format!("{cut}_{h}_{what}")
}

fn env_of(spec: &ServiceSpec) -> Vec<String> {
    spec.task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
}

fn env_get<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter().find_map(|e| e.strip_prefix(key)?.strip_prefix('='))
}

/// Topology single: the services of a cluster made before stay as they are,
/// held (going back from a cluster to one node is not automatic; removing
/// them all at once would take the cluster down).
fn keep_members_of_single(desired: &DesiredState, observed: &Observed) -> DesiredState {
    let mut out = desired.clone();
    let Some((template, Topology::Single)) = elasticsearch(desired) else {
        return out;
    };
    let tname = template.spec.name.clone().unwrap_or_default();
    let members = existing_members(observed, &tname);
    for s in &members {
        let name = s.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default();
        out.held.insert(
            name,
            "topology is single, but this node of the cluster runs: going back from a cluster to one node is not automatic (see the README, \"Elasticsearch as a cluster\"); it is kept as it is".to_string(),
        );
    }
    // Nor is the single node made beside them (it would share a member's volume).
    if !members.is_empty() && !observed_has(observed, &tname) {
        out.held.insert(
            tname,
            "the nodes of a cluster run: the single node is not made beside them (see the README, \"Elasticsearch as a cluster\")".to_string(),
        );
    }
    out
}

/// One member's service: the template's, named and bound to its node, with
/// the settings that make it a node of this cluster.
fn member_service(
    template: &DesiredService,
    m: &Member,
    masters: &[&str],
    uuid: Option<&str>,
    bootstrap: bool,
    observed: Option<&ServiceSpec>,
    swap: &[(Option<String>, Option<String>)],
) -> DesiredService {
    let mut spec = template.spec.clone();
    // The placeholders' files become the member's own.
    if let Some(c) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()) {
        let renamed = |n: &mut Option<String>| {
            if let Some((_, to)) = swap.iter().find(|(from, _)| from == n) {
                n.clone_from(to);
            }
        };
        for r in c.configs.iter_mut().flatten() {
            renamed(&mut r.config_name);
        }
        for r in c.secrets.iter_mut().flatten() {
            renamed(&mut r.secret_name);
        }
        if let Some(v) = c.configs.as_mut() {
            v.sort_by(|a, b| a.config_name.cmp(&b.config_name));
        }
        if let Some(v) = c.secrets.as_mut() {
            v.sort_by(|a, b| a.secret_name.cmp(&b.secret_name));
        }
    }
    spec.name = Some(m.name.clone());
    let labels = spec.labels.get_or_insert_with(HashMap::new);
    labels.remove(LABEL_MANAGED);
    labels.remove(LABEL_SPEC_HASH);
    labels.insert(
        LABEL_ES_MEMBER_OF.to_string(),
        template.spec.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_ES_MASTER.to_string(), m.master.to_string());
    labels.insert(LABEL_DATA_NODE.to_string(), m.node_id.clone());
    let hostname = observed
        .and_then(|o| o.labels.as_ref()?.get(LABEL_ES_HOSTNAME).cloned())
        .unwrap_or_else(|| m.hostname.clone());
    labels.insert(LABEL_ES_HOSTNAME.to_string(), hostname);
    if let Some(u) = uuid {
        labels.insert(LABEL_ES_CLUSTER_UUID.to_string(), u.to_string());
    }
    let mut set: BTreeMap<&str, String> = BTreeMap::new();
    set.insert(ENV_NODE_NAME, m.name.clone());
    set.insert(ENV_SEED_HOSTS, masters.join(","));
    set.insert(ENV_PUBLISH_HOST, m.name.clone());
    if !m.master {
        set.insert(ENV_ROLES, DATA_ROLES.to_string());
    }
    let observed_env = observed.map(env_of).unwrap_or_default();
    match (observed, env_get(&observed_env, ENV_INITIAL_MASTERS)) {
        // The very first members, made together: they bootstrap.
        (None, _) if bootstrap && uuid.is_none() => {
            set.insert(ENV_INITIAL_MASTERS, masters.join(","));
        }
        // A member that has it from the bootstrap keeps it as it is (its
        // next rolling restart takes it away once the UUID is recorded).
        (Some(_), Some(kept)) => {
            set.insert(ENV_INITIAL_MASTERS, kept.to_string());
        }
        // Anything else joins a cluster: never the setting (a node joining
        // with it could bootstrap a second cluster).
        _ => {}
    }
    let ours: BTreeSet<&str> = [
        ENV_NODE_NAME,
        ENV_SEED_HOSTS,
        ENV_PUBLISH_HOST,
        ENV_ROLES,
        ENV_INITIAL_MASTERS,
    ]
    .into();
    if let Some(c) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()) {
        let mut env: Vec<String> = c
            .env
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !ours.contains(e.split('=').next().unwrap_or_default()))
            .collect();
        env.extend(set.iter().map(|(k, v)| format!("{k}={v}")));
        env.sort();
        c.env = Some(env);
    }
    if let Some(p) = spec.task_template.as_mut().and_then(|t| t.placement.as_mut()) {
        p.constraints = Some(vec![format!("node.id == {}", m.node_id)]);
    }
    rehash(&template.key, spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{desired_with, node as any_node, observed_from};

    fn node(id: &str, host: &str, labels: &[(&str, &str)]) -> Node {
        let mut n = any_node(id, host, labels);
        if let Some(s) = n.spec.as_mut() {
            s.availability = Some(bollard::models::NodeSpecAvailabilityEnum::ACTIVE);
        }
        n
    }

    fn cluster_values(masters: usize) -> DesiredState {
        desired_with(&format!(
            "elasticsearch:\n  topology: cluster\n  security: false\n  masterNodes: {masters}\n  preflight:\n    maxMapCount: 0\n"
        ))
    }

    fn loggers(hosts: &[&str]) -> Vec<Node> {
        hosts
            .iter()
            .enumerate()
            .map(|(i, h)| node(&format!("id{i}"), h, &[("logger", "true")]))
            .collect()
    }

    fn env(s: &DesiredService) -> Vec<String> {
        env_of(&s.spec)
    }

    fn member<'a>(d: &'a DesiredState, name: &str) -> &'a DesiredService {
        d.services
            .iter()
            .find(|s| s.spec.name.as_deref() == Some(name))
            .unwrap_or_else(|| {
                panic!(
                    "no {name} in {:?}",
                    d.services.iter().map(|s| &s.spec.name).collect::<Vec<_>>()
                )
            })
    }

    #[test]
    fn one_member_per_logger_node_and_the_first_three_are_masters() {
        let d = cluster_values(3);
        let mut o = observed_from(&DesiredState {
            services: Vec::new(),
            ..d.clone()
        });
        o.nodes = loggers(&["logger-2", "Logger_1", "logger-3", "logger-4"]);
        o.nodes.push(node("w", "worker-1", &[]));
        let x = expand(&d, &o, None);
        let names: Vec<&str> = x.services.iter().filter_map(|s| s.spec.name.as_deref()).collect();
        assert_eq!(
            names,
            [
                "logging_es_logger-1",
                "logging_es_logger-2",
                "logging_es_logger-3",
                "logging_es_logger-4",
                "logging_kibana",
                "logging_logstash"
            ]
        );
        let m1 = member(&x, "logging_es_logger-1");
        let e = env(m1);
        assert!(e.contains(&"node.name=logging_es_logger-1".to_string()), "{e:?}");
        assert!(e.contains(&"network.publish_host=logging_es_logger-1".to_string()));
        let masters = "logging_es_logger-1,logging_es_logger-2,logging_es_logger-3";
        assert!(e.contains(&format!("discovery.seed_hosts={masters}")));
        assert!(e.contains(&format!("cluster.initial_master_nodes={masters}")));
        assert!(
            !e.iter().any(|v| v.starts_with("node.roles=")),
            "masters keep every role"
        );
        assert!(!e.iter().any(|v| v.starts_with("discovery.type=")));
        let e4 = env(member(&x, "logging_es_logger-4"));
        assert!(e4.contains(&"node.roles=data,ingest".to_string()), "{e4:?}");
        assert_eq!(
            constraints_of(&m1.spec),
            ["node.id == id1"],
            "bound to its node, not to the label"
        );
        let l = m1.spec.labels.as_ref().expect("labels");
        assert_eq!(l.get(LABEL_ES_MASTER).map(String::as_str), Some("true"));
        assert_eq!(l.get(LABEL_DATA_NODE).map(String::as_str), Some("id1"));
        assert_eq!(l.get(LABEL_SPEC_HASH), Some(&m1.hash));
        assert_ne!(m1.hash, member(&x, "logging_es_logger-2").hash);
    }

    fn tls_role_of(labels: Option<&HashMap<String, String>>) -> Option<String> {
        tls_role(labels).map(str::to_string)
    }

    /// The member's certificate config and key secret (names), as
    /// its spec mounts them, with their targets.
    fn node_files(x: &DesiredState, name: &str) -> ((String, String), (String, String)) {
        let (role, key_role) = crate::tls::node_roles(name);
        let cert = x
            .configs
            .iter()
            .find(|c| tls_role_of(c.spec.labels.as_ref()) == Some(role.clone()))
            .expect("the member's certificate");
        let key = x
            .secrets
            .iter()
            .find(|c| tls_role_of(c.spec.labels.as_ref()) == Some(key_role.clone()))
            .expect("the member's key");
        let c = member(x, name)
            .spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .expect("a container");
        let cert_name = cert.spec.name.clone().expect("a name");
        let key_name = key.spec.name.clone().expect("a name");
        let cert_target = c
            .configs
            .iter()
            .flatten()
            .find(|r| r.config_name.as_ref() == Some(&cert_name))
            .and_then(|r| r.file.as_ref()?.name.clone())
            .expect("the certificate mounted");
        let key_target = c
            .secrets
            .iter()
            .flatten()
            .find(|r| r.secret_name.as_ref() == Some(&key_name))
            .and_then(|r| r.file.as_ref()?.name.clone())
            .expect("the key mounted");
        ((cert_name, cert_target), (key_name, key_target))
    }

    fn data_of(spec_data: Option<&String>) -> String {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(spec_data.expect("data"))
            .expect("base64");
        String::from_utf8(bytes).expect("PEM text")
    }

    /// A secured cluster's desired state, issued with the test root key and
    /// `existing` certificates at `now`.
    fn secured(existing: &[DesiredConfig], now: std::time::SystemTime) -> DesiredState {
        let engine: Vec<bollard::models::Config> = existing
            .iter()
            .map(|c| bollard::models::Config {
                spec: Some(c.spec.clone()),
                ..Default::default()
            })
            .collect();
        let found = crate::tls::Existing::from_configs(&engine);
        // Rendered as the operator renders: the bundle from the swarm's
        // certificates, at `now` (the CA config and the issuer agree).
        let tls = |stack: &str, names: &[String], policy: &crate::tls::Policy| {
            let key = crate::security::RootKey::from_bytes(b"a test root key of 32 bytes .....")?;
            crate::tls::bundle(&key, stack, names, &found, now, policy).map(Some)
        };
        crate::render::chart::Chart::embedded()
            .expect("chart")
            .render(&crate::render::chart::RenderOptions {
                values_files: vec![(
                    "v.yaml".into(),
                    "elasticsearch:\n  topology: cluster\n  preflight:\n    maxMapCount: 0\n".into(),
                )],
                set: Vec::new(),
                stack: None,
                env: &|_| None,
                credential: &|_, _| Ok(b"test-password".to_vec()),
                generations: &|_| Default::default(),
                tls: &tls,
            })
            .expect("renders")
            .desired
    }

    #[test]
    fn a_secured_clusters_nodes_each_mount_a_certificate_of_their_own() {
        let now = std::time::SystemTime::now();
        let d = secured(&[], now);
        assert!(d.tls_issuer.is_some(), "the chart mounts the node placeholders");
        let mut o = observed_from(&DesiredState {
            services: Vec::new(),
            ..d.clone()
        });
        o.nodes = loggers(&["logger-1", "logger-2", "logger-3"]);
        let x = expand(&d, &o, None);
        assert!(x.held.is_empty(), "{:?}", x.held);
        // The chart's placeholders are gone: nothing mounts or makes them.
        assert!(!x
            .configs
            .iter()
            .any(|c| tls_role_of(c.spec.labels.as_ref()).as_deref() == Some(crate::tls::NODE)));
        assert!(!x
            .secrets
            .iter()
            .any(|c| tls_role_of(c.spec.labels.as_ref()).as_deref() == Some(crate::tls::NODE_KEY)));
        let ca = x.tls_config(crate::tls::CA).expect("the CA");
        let ca_pem = data_of(ca.spec.data.as_ref());
        let mut pems = std::collections::BTreeSet::new();
        for m in ["logging_es_logger-1", "logging_es_logger-2", "logging_es_logger-3"] {
            let ((cert, cert_target), (key, key_target)) = node_files(&x, m);
            assert!(cert.starts_with(&format!("{m}_cert_")), "{cert}");
            assert!(key.starts_with(&format!("{m}_key_")), "{key}");
            assert_eq!(cert_target, "/usr/share/elasticsearch/config/certs/node.crt");
            assert_eq!(key_target, "/usr/share/elasticsearch/config/certs/node.key");
            let c = x
                .configs
                .iter()
                .find(|c| c.spec.name.as_ref() == Some(&cert))
                .expect("made");
            let pem = data_of(c.spec.data.as_ref());
            // Signed by the stack's CA, for the member's own names only.
            assert!(crate::tls::verifies(
                &pem,
                &ca_pem,
                &crate::tls::node_names("logging", "elasticsearch", m),
                now
            ));
            assert!(!crate::tls::verifies(
                &pem,
                &ca_pem,
                &["logging_es_logger-9".into()],
                now
            ));
            assert!(pems.insert(pem), "each node's certificate is its own");
            let k = x
                .secrets
                .iter()
                .find(|s| s.spec.name.as_ref() == Some(&key))
                .expect("made");
            assert!(data_of(k.spec.data.as_ref()).contains("BEGIN PRIVATE KEY"));
            let e = env(member(&x, m));
            for want in [
                "xpack.security.transport.ssl.enabled=true",
                "xpack.security.transport.ssl.verification_mode=certificate",
                "xpack.security.transport.ssl.certificate=certs/node.crt",
                "xpack.security.transport.ssl.key=certs/node.key",
                "xpack.security.http.ssl.certificate=certs/node.crt",
                "xpack.security.http.ssl.key=certs/node.key",
                "xpack.security.transport.ssl.certificate_authorities=certs/ca.crt",
            ] {
                assert!(e.contains(&want.to_string()), "{m} lacks {want}: {e:?}");
            }
        }
    }

    #[test]
    fn a_nodes_certificate_is_reused_until_due_then_issued_again_for_that_node() {
        let now = std::time::SystemTime::now();
        let d = secured(&[], now);
        let mut o = observed_from(&DesiredState {
            services: Vec::new(),
            ..d.clone()
        });
        o.nodes = loggers(&["logger-1", "logger-2", "logger-3"]);
        let first = expand(&d, &o, Some("u1"));
        let names = |x: &DesiredState| {
            ["logging_es_logger-1", "logging_es_logger-2", "logging_es_logger-3"].map(|m| node_files(x, m))
        };
        // Two hours on (another issue period), with the swarm's certificates:
        // the same ones, so no node restarts.
        let later = now + std::time::Duration::from_secs(2 * 3600);
        let again = expand(&secured(&first.configs, later), &o, Some("u1"));
        assert_eq!(names(&again), names(&first));
        // Due (the default renews 30 days before a year ends): each node's
        // next certificate and key, under the same CA.
        let due = now + std::time::Duration::from_secs(340 * 24 * 3600);
        let renewed = expand(&secured(&first.configs, due), &o, Some("u1"));
        for (a, b) in names(&first).iter().zip(names(&renewed).iter()) {
            assert_ne!(a.0 .0, b.0 .0, "a new certificate");
            assert_ne!(a.1 .0, b.1 .0, "a new key");
        }
        // Under the same CA: its config, and the issuer each node's
        // certificate names.
        assert_eq!(
            renewed.tls_config(crate::tls::CA).and_then(|c| c.spec.name.clone()),
            first.tls_config(crate::tls::CA).and_then(|c| c.spec.name.clone()),
        );
        let issuers = |x: &DesiredState| -> Vec<String> {
            x.configs
                .iter()
                .filter(|c| tls_role_of(c.spec.labels.as_ref()).is_some_and(|r| r.starts_with("node:")))
                .map(|c| c.spec.labels.as_ref().expect("labels")[crate::tls::LABEL_ISSUER].clone())
                .collect()
        };
        let ca_id = first
            .tls_config(crate::tls::CA)
            .expect("the CA")
            .spec
            .labels
            .as_ref()
            .expect("labels")[crate::tls::LABEL_KEY_ID]
            .clone();
        assert_eq!(issuers(&renewed), vec![ca_id.clone(); 3]);
        assert_eq!(issuers(&first), vec![ca_id; 3]);
    }

    #[test]
    fn a_node_certificate_without_its_key_holds_the_nodes() {
        let mut d = secured(&[], std::time::SystemTime::now());
        d.secrets
            .retain(|s| tls_role_of(s.spec.labels.as_ref()).as_deref() != Some(crate::tls::NODE_KEY));
        let mut o = observed_from(&DesiredState {
            services: Vec::new(),
            ..d.clone()
        });
        o.nodes = loggers(&["logger-1"]);
        let x = expand(&d, &o, None);
        assert!(
            x.held["logging_es_logger-1"].contains("without its key"),
            "{:?}",
            x.held
        );
    }

    #[test]
    fn a_long_nodes_certificate_names_stay_within_the_engines_limit() {
        let long = format!("logging_es_{}", "ip-172-31-45-123-eu-central-1-compute-in");
        let other = format!("{long}_abc123");
        for what in ["cert", "key"] {
            let a = object_base(&long, what);
            let b = object_base(&other, what);
            assert!(a.len() + 9 <= MAX_OBJECT_NAME, "{a}");
            assert!(b.len() + 9 <= MAX_OBJECT_NAME, "{b}");
            assert_ne!(a, b, "two members, two names");
            assert!(a.ends_with(&format!("_{what}")), "{a}");
        }
        assert_eq!(object_base("logging_es_logger-1", "cert"), "logging_es_logger-1_cert");
    }

    #[test]
    fn without_the_root_key_a_secured_clusters_nodes_wait() {
        // An offline render (no root key): placeholders, no issuer.
        let d = desired_with("elasticsearch:\n  topology: cluster\n  preflight:\n    maxMapCount: 0\n");
        assert!(d.tls_issuer.is_none());
        let mut o = observed_from(&DesiredState {
            services: Vec::new(),
            ..d.clone()
        });
        o.nodes = loggers(&["logger-1", "logger-2", "logger-3"]);
        let x = expand(&d, &o, None);
        assert_eq!(x.held.len(), 3, "{:?}", x.held);
        assert!(x.held.values().all(|why| why.contains("root key")), "{:?}", x.held);
    }

    #[test]
    fn existing_members_stay_and_a_formed_cluster_never_bootstraps_again() {
        let d = cluster_values(3);
        let mut o = observed_from(&DesiredState {
            services: Vec::new(),
            ..d.clone()
        });
        o.nodes = loggers(&["logger-1", "logger-2", "logger-3"]);
        // Bootstrapped: the members exist, the UUID not recorded yet.
        let formed = expand(&d, &o, None);
        let mut o = observed_from(&formed);
        o.nodes = loggers(&["logger-1", "logger-2", "logger-3"]);
        // logger-3 lost its label and logger-4 joined.
        o.nodes[2] = node("id2", "logger-3", &[]);
        o.nodes.push(node("id3", "logger-4", &[("logger", "true")]));
        // The operator read the cluster UUID from Elasticsearch.
        let x = expand(&d, &o, Some("uuid-1"));
        let m3 = member(&x, "logging_es_logger-3");
        assert_eq!(env(m3), env(member(&formed, "logging_es_logger-3")), "kept as it was");
        let e1 = env(member(&x, "logging_es_logger-1"));
        assert!(
            e1.iter().any(|v| v.starts_with("cluster.initial_master_nodes=")),
            "a bootstrap member keeps the setting until its next roll: {e1:?}"
        );
        let e4 = env(member(&x, "logging_es_logger-4"));
        assert!(
            !e4.iter().any(|v| v.starts_with("cluster.initial_master_nodes")),
            "a node joining a formed cluster never gets it: {e4:?}"
        );
        assert!(
            e4.contains(&"node.roles=data,ingest".to_string()),
            "three masters already"
        );
        let l4 = member(&x, "logging_es_logger-4")
            .spec
            .labels
            .clone()
            .unwrap_or_default();
        assert_eq!(l4.get(LABEL_ES_CLUSTER_UUID).map(String::as_str), Some("uuid-1"));
    }

    #[test]
    fn a_running_single_node_is_kept_not_replaced() {
        let single = desired_with("elasticsearch:\n  preflight:\n    maxMapCount: 0\n");
        let mut o = observed_from(&single);
        o.nodes = loggers(&["logger-1"]);
        let x = expand(&cluster_values(3), &o, None);
        assert!(x.held.contains_key("logging_elasticsearch"), "{:?}", x.held);
        assert!(
            !x.services
                .iter()
                .any(|s| s.spec.name.as_deref() == Some("logging_es_logger-1")),
            "no member beside the single node: it would share its volume"
        );
        let p = crate::plan::plan(&x, &o, Default::default());
        assert!(
            !p.actions.iter().any(
                |a| matches!(a, crate::plan::Action::RemoveService { name, .. } if name == "logging_elasticsearch")
            ),
            "{:?}",
            p.actions
        );
    }

    #[test]
    fn values_may_choose_the_master_eligible_nodes() {
        let d = desired_with(
            "elasticsearch:\n  topology: cluster\n  security: false\n  masterHosts: [logger-2, logger-4, logger-5]\n  preflight:\n    maxMapCount: 0\n",
        );
        let mut o = observed_from(&DesiredState {
            services: Vec::new(),
            ..d.clone()
        });
        o.nodes = loggers(&["logger-1", "logger-2", "logger-3", "logger-4", "logger-5"]);
        let c = cluster(&d, &o).expect("a cluster");
        let masters: Vec<&str> = c.masters().iter().map(|m| m.hostname.as_str()).collect();
        assert_eq!(masters, ["logger-2", "logger-4", "logger-5"]);
        let x = expand(&d, &o, None);
        let e = env(member(&x, "logging_es_logger-1"));
        assert!(
            e.contains(&"discovery.seed_hosts=logging_es_logger-2,logging_es_logger-4,logging_es_logger-5".to_string()),
            "{e:?}"
        );
    }

    /// Back to single: the cluster's services stay, the single node is not
    /// made beside them.
    #[test]
    fn going_back_to_single_removes_and_makes_nothing() {
        let d = cluster_values(3);
        let mut o = observed_from(&DesiredState {
            services: Vec::new(),
            ..d.clone()
        });
        o.nodes = loggers(&["logger-1", "logger-2", "logger-3"]);
        let formed = expand(&d, &o, Some("u1"));
        let mut o = observed_from(&formed);
        o.nodes = loggers(&["logger-1", "logger-2", "logger-3"]);
        let single = desired_with("elasticsearch:\n  preflight:\n    maxMapCount: 0\n");
        let x = expand(&single, &o, None);
        let p = crate::plan::plan(&x, &o, Default::default());
        let touched: Vec<String> =
            p.actions
                .iter()
                .filter_map(|a| match a {
                    crate::plan::Action::RemoveService { name, .. }
                    | crate::plan::Action::CreateService { name, .. } => Some(name.clone()),
                    _ => None,
                })
                .filter(|n| n.contains("_es_") || n.ends_with("_elasticsearch"))
                .collect();
        assert!(touched.is_empty(), "{touched:?}");
        assert_eq!(x.held.len(), 4, "{:?}", x.held);
    }

    /// A node that joins before the UUID is recorded (the cluster formed,
    /// but not read yet) never gets the bootstrap setting.
    #[test]
    fn only_the_very_first_members_bootstrap() {
        let d = cluster_values(3);
        let mut o = observed_from(&DesiredState {
            services: Vec::new(),
            ..d.clone()
        });
        o.nodes = loggers(&["logger-1", "logger-2"]);
        let first = expand(&d, &o, None);
        assert!(first
            .services
            .iter()
            .filter(|s| s.spec.name.as_deref().is_some_and(|n| n.contains("_es_")))
            .all(|s| env(s).iter().any(|e| e.starts_with("cluster.initial_master_nodes="))));
        let mut o = observed_from(&first);
        o.nodes = loggers(&["logger-1", "logger-2", "logger-3"]);
        let x = expand(&d, &o, None);
        let e3 = env(member(&x, "logging_es_logger-3"));
        assert!(
            !e3.iter().any(|e| e.starts_with("cluster.initial_master_nodes")),
            "{e3:?}"
        );
        let e1 = env(member(&x, "logging_es_logger-1"));
        assert!(
            e1.iter().any(|e| e.starts_with("cluster.initial_master_nodes")),
            "kept as it is: {e1:?}"
        );
    }

    /// A node gone from the swarm: its member waits for it, and nothing
    /// else is blocked.
    #[test]
    fn a_member_whose_node_left_the_swarm_blocks_nothing() {
        let d = cluster_values(3);
        let mut o = observed_from(&DesiredState {
            services: Vec::new(),
            ..d.clone()
        });
        o.nodes = loggers(&["logger-1", "logger-2", "logger-3"]);
        let formed = expand(&d, &o, Some("u1"));
        let mut o = observed_from(&formed);
        o.nodes = loggers(&["logger-1", "logger-2"]);
        let x = expand(&d, &o, None);
        assert!(x
            .services
            .iter()
            .any(|s| s.spec.name.as_deref() == Some("logging_es_logger-3")));
        let p = crate::plan::plan(&x, &o, Default::default());
        assert!(p.refusals().is_empty(), "{:?}", p.refusals());
    }

    #[test]
    fn survivable_failures_are_said() {
        let mut c = Cluster::default();
        let m = |name: &str| Member {
            name: name.into(),
            node_id: name.into(),
            hostname: name.into(),
            master: true,
            exists: true,
            node_available: true,
            node_selected: true,
            decommission: false,
        };
        c.members = vec![m("a")];
        assert!(c.survives().starts_with("no node failure"));
        c.members.push(m("b"));
        assert!(c.survives().starts_with("no master failure"));
        c.members.push(m("c"));
        assert_eq!(
            c.survives(),
            "the loss of 1 master-eligible node (3 master-eligible, a quorum is 2)"
        );
    }

    #[test]
    fn hostnames_become_name_parts() {
        assert_eq!(name_part("Logger_1.example.com"), "logger-1-example-com");
        assert_eq!(name_part("--"), "");
    }
}
