//! Plan, rolling changes of an Elasticsearch cluster (pure): which member's
//! update may go now, which wait and why, and what to tell Elasticsearch
//! first. Elastic's rolling-restart procedure, one node at a time:
//!
//! 1. gate: every member joined, health green (during a version upgrade,
//!    yellow with no shard initializing or relocating), and
//!    `cluster.routing.allocation.enable` not set by someone else;
//! 2. the member is marked `prepare` (a label-only write: no restart), so a
//!    restarted operator knows the allocation setting it finds is its own;
//! 3. `cluster.routing.allocation.enable: primaries`, `POST /_flush`, then
//!    the member's update, marked `restart`;
//! 4. once the node is back in the cluster under its name, the setting is
//!    reset (null); once health is green again, the mark is taken away.
//!
//! Members that are not master-eligible go first, masters last, each in
//! name order. The state of a roll is the members' labels and the
//! cluster's own setting, both outside the operator's memory: an operator
//! restart or a new leader picks the roll up where it stands.

use std::collections::BTreeMap;

use bollard::models::ServiceSpec;
use serde::Serialize;

use super::cluster::{Cluster, LABEL_ES_ROLL};
use super::{Action, Plan};
use crate::engine::Observed;
use crate::es::{Color, Snapshot};
use crate::render::desired::{rehash, DesiredState};

/// The value of [`LABEL_ES_ROLL`] while a member is being rolled.
pub const PREPARE: &str = "prepare";
pub const RESTART: &str = "restart";

/// Member label: when its rolling restart was written (seconds since the
/// epoch): a node counts as back once Elasticsearch reports it up for less
/// than that long (a stale read of the process before cannot pass).
pub const LABEL_ES_ROLL_AT: &str = "io.swarmlog.es.roll-at";

/// A call to Elasticsearch the roll needs before this reconcile's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EsCall {
    /// `cluster.routing.allocation.enable: primaries`, then `POST /_flush`.
    HoldReplicas,
    /// `cluster.routing.allocation.enable: null`.
    ReleaseReplicas,
}

/// Where a roll stands, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollStatus {
    /// The member being changed (none: the roll waits to start).
    pub member: Option<String>,
    /// `waiting`, `prepare`, `restart`, `settle`.
    pub step: String,
    /// What it waits for, in words.
    pub waiting_for: Option<String>,
    /// Members whose change is still to come.
    pub pending: Vec<String>,
}

/// What the roll decides for one reconcile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Members whose update waits (name -> why).
    pub held: BTreeMap<String, String>,
    /// Members' specs to write instead of the desired ones (name -> spec).
    pub specs: BTreeMap<String, ServiceSpec>,
    /// The call to make before writing, if any.
    pub call: Option<EsCall>,
    pub status: Option<RollStatus>,
}

fn roll_label(observed: &Observed, name: &str) -> Option<String> {
    observed
        .services
        .iter()
        .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name))?
        .spec
        .as_ref()?
        .labels
        .as_ref()?
        .get(LABEL_ES_ROLL)
        .cloned()
}

fn roll_label_at(observed: &Observed, name: &str) -> Option<u64> {
    observed_spec(observed, name)?
        .labels
        .as_ref()?
        .get(LABEL_ES_ROLL_AT)?
        .parse()
        .ok()
}

fn spec_hash(spec: &ServiceSpec) -> Option<&str> {
    spec.labels
        .as_ref()?
        .get(crate::render::desired::LABEL_SPEC_HASH)
        .map(String::as_str)
}

fn observed_spec<'a>(observed: &'a Observed, name: &str) -> Option<&'a ServiceSpec> {
    observed
        .services
        .iter()
        .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name))?
        .spec
        .as_ref()
}

fn image(spec: Option<&ServiceSpec>) -> Option<String> {
    spec?.task_template.as_ref()?.container_spec.as_ref()?.image.clone()
}

/// The version an image reference names: Elastic's Elasticsearch image
/// (its repository's last part is `elasticsearch`) tagged with a version
/// (`...:8.16.1`); a digest after the tag is ignored. Other images (built
/// on top of it, with tags of their own) name none.
pub fn image_version(image: &str) -> Option<String> {
    let image = image.split('@').next()?;
    let (repo, tag) = image.rsplit_once(':')?;
    if repo.rsplit('/').next() != Some("elasticsearch") {
        return None;
    }
    let parts: Vec<&str> = tag.split('.').collect();
    (parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    .then(|| tag.to_string())
}

/// The members whose planned update restarts them: a change to the task
/// (`TaskTemplate`) or its endpoint. Labels, replicas and update settings
/// change no running task.
pub fn restarting_updates(plan: &Plan, c: &Cluster) -> Vec<String> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::UpdateService { name, changes, .. }
                if c.members.iter().any(|m| &m.name == name)
                    && changes
                        .iter()
                        .any(|ch| ch.field.starts_with("TaskTemplate") || ch.field.starts_with("EndpointSpec")) =>
            {
                Some(name.clone())
            }
            _ => None,
        })
        .collect()
}

/// `desired`'s spec of `name` with the roll label set to `value` (or taken away).
fn with_roll(desired: &DesiredState, name: &str, value: Option<&str>) -> Option<ServiceSpec> {
    with_roll_labels(desired, name, value, None, |_| {})
}

/// `desired`'s spec of `name` with the roll labels (`value`, and `at` when
/// given), changed by `edit`, hashed as the desired state hashes it (so the
/// spec with no roll label is exactly the desired one: no extra write).
fn with_roll_labels(
    desired: &DesiredState,
    name: &str,
    value: Option<&str>,
    at: Option<u64>,
    edit: impl FnOnce(&mut ServiceSpec),
) -> Option<ServiceSpec> {
    let d = desired.services.iter().find(|s| s.spec.name.as_deref() == Some(name))?;
    let mut spec = d.spec.clone();
    let labels = spec.labels.get_or_insert_with(Default::default);
    labels.remove(crate::render::desired::LABEL_SPEC_HASH);
    labels.remove(crate::render::desired::LABEL_MANAGED);
    labels.remove(LABEL_ES_ROLL);
    labels.remove(LABEL_ES_ROLL_AT);
    if let Some(v) = value {
        labels.insert(LABEL_ES_ROLL.to_string(), v.to_string());
    }
    if let Some(at) = at {
        labels.insert(LABEL_ES_ROLL_AT.to_string(), at.to_string());
    }
    edit(&mut spec);
    Some(rehash(&d.key, spec).spec)
}

/// The spec a member restarts with: once the cluster UUID is recorded, the
/// bootstrap setting it may still carry goes with this restart (never set
/// again, and never a restart of its own).
fn restart_spec(desired: &DesiredState, name: &str, at: u64) -> Option<ServiceSpec> {
    with_roll_labels(desired, name, Some(RESTART), Some(at), |spec| {
        let formed = spec
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(super::cluster::LABEL_ES_CLUSTER_UUID));
        if formed {
            if let Some(c) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()) {
                if let Some(env) = c.env.as_mut() {
                    let key = format!("{}=", super::cluster::ENV_INITIAL_MASTERS);
                    env.retain(|e| !e.starts_with(&key));
                }
            }
        }
    })
}

/// The member's spec as it runs now, with the desired labels and the roll
/// label `value`: a label-only write, which restarts nothing.
fn labels_only(desired: &DesiredState, observed: &Observed, name: &str, value: Option<&str>) -> Option<ServiceSpec> {
    let mut spec = observed_spec(observed, name)?.clone();
    // A mark kept as it is keeps its restart time: a new one would make the
    // node's own restart look older than the mark, and the roll wait forever.
    let at =
        roll_label_at(observed, name).filter(|_| value.is_some() && roll_label(observed, name).as_deref() == value);
    let mut labels = with_roll_labels(desired, name, value, at, |_| {})?
        .labels
        .unwrap_or_default();
    // What it runs now is still the old spec: keep the old hash, so the
    // restart that follows reads as the change it is.
    if let Some(h) = spec
        .labels
        .as_ref()
        .and_then(|l| l.get(crate::render::desired::LABEL_SPEC_HASH))
    {
        labels.insert(crate::render::desired::LABEL_SPEC_HASH.to_string(), h.clone());
    }
    spec.labels = Some(labels);
    Some(spec)
}

/// The roll's decision. `pending`: the members whose update restarts them
/// ([`restarting_updates`]); `snapshot`: the last read of the cluster, or
/// why there is none.
pub fn decide(
    c: &Cluster,
    desired: &DesiredState,
    observed: &Observed,
    pending: &[String],
    snapshot: Result<&Snapshot, &str>,
    now: u64,
) -> Decision {
    let mut d = Decision::default();
    let existing: Vec<&str> = c.members.iter().filter(|m| m.exists).map(|m| m.name.as_str()).collect();
    let marked: Vec<(String, String)> = existing
        .iter()
        .filter_map(|n| roll_label(observed, n).map(|v| (n.to_string(), v)))
        .collect();
    // Upgrading: the image of a member changes.
    let upgrade = pending.iter().any(|n| {
        image(observed_spec(observed, n))
            != image(
                desired
                    .services
                    .iter()
                    .find(|s| s.spec.name.as_deref() == Some(n))
                    .map(|s| &s.spec),
            )
    });
    let mut order: Vec<&str> = pending.iter().map(String::as_str).collect();
    order.sort_by_key(|n| (c.members.iter().any(|m| m.name == *n && m.master), n.to_string()));
    let hold_all = |d: &mut Decision, except: Option<&str>, why: &str| {
        for n in &order {
            if Some(*n) != except {
                d.held.insert(n.to_string(), why.to_string());
            }
        }
    };
    let pending_names: Vec<String> = order.iter().map(|s| s.to_string()).collect();
    let status = |member: Option<&str>, step: &str, why: Option<String>| RollStatus {
        member: member.map(str::to_string),
        step: step.to_string(),
        waiting_for: why,
        pending: pending_names.clone(),
    };
    // One member at a time: a second mark (left by an older operator) waits.
    let current = marked.first().cloned();
    for (extra, value) in marked.iter().skip(1) {
        if let Some(spec) = labels_only(desired, observed, extra, Some(value)) {
            d.specs.insert(extra.clone(), spec);
        }
    }
    let snap = match snapshot {
        Ok(s) => s,
        Err(why) => {
            let why = format!("Elasticsearch's health cannot be read ({why}): rolling changes wait");
            hold_all(&mut d, None, &why);
            if let Some((name, value)) = &current {
                if let Some(spec) = labels_only(desired, observed, name, Some(value)) {
                    d.specs.insert(name.clone(), spec);
                }
            }
            if current.is_some() || !order.is_empty() {
                d.status = Some(status(current.as_ref().map(|c| c.0.as_str()), "waiting", Some(why)));
            }
            return d;
        }
    };
    let healthy =
        |s: &Snapshot| s.health.status == Color::Green || (upgrade && s.health.status == Color::Yellow && s.settled());
    match current {
        Some((name, value)) if value == RESTART => {
            if order.contains(&name.as_str()) {
                // Changed again while out: its update goes now, still marked.
                // The node it brings up is the one to wait for, so the
                // restart time is now: a process started after the first
                // write (and up for less than since then) is the one this
                // update stops, and must not pass as back. The same desired
                // spec as written keeps its time (the engine keeps something
                // else: the same write, which the write-loop guard catches).
                hold_all(
                    &mut d,
                    Some(&name),
                    &format!("one node at a time: {name} is restarting"),
                );
                let written = observed_spec(observed, &name).and_then(spec_hash);
                let at = roll_label_at(observed, &name)
                    .filter(|at| {
                        restart_spec(desired, &name, *at)
                            .is_some_and(|s| spec_hash(&s).is_some() && spec_hash(&s) == written)
                    })
                    .unwrap_or(now);
                if let Some(spec) = restart_spec(desired, &name, at) {
                    d.specs.insert(name.clone(), spec);
                }
                d.status = Some(status(Some(&name), RESTART, None));
                return d;
            }
            // Restarted after the write: up for less time than since then.
            let at = roll_label_at(observed, &name).unwrap_or(now);
            // And on the version its image names, when it names one.
            let version = image(
                desired
                    .services
                    .iter()
                    .find(|s| s.spec.name.as_deref() == Some(&name))
                    .map(|s| &s.spec),
            )
            .and_then(|i| image_version(&i));
            let node = snap.node(&name);
            let restarted = node.is_some_and(|n| n.uptime_secs.is_none_or(|up| up <= now.saturating_sub(at)));
            let on_version = node.is_some_and(|n| version.as_ref().is_none_or(|v| &n.version == v));
            let joined = restarted && on_version;
            let why = if !restarted {
                Some(format!("{name} to rejoin the cluster"))
            } else if !on_version {
                Some(format!(
                    "{name} to rejoin on version {} (it reports {})",
                    version.as_deref().unwrap_or_default(),
                    node.map(|n| n.version.as_str()).unwrap_or_default()
                ))
            } else if snap.allocation_enable.as_deref() == Some("primaries") {
                d.call = Some(EsCall::ReleaseReplicas);
                Some(format!(
                    "green after {name} rejoined (replica allocation enabled again)"
                ))
            } else if !healthy(snap) {
                Some(format!("green after {name} rejoined (now {})", snap.health_words()))
            } else {
                None
            };
            match why {
                Some(why) => {
                    hold_all(&mut d, None, &format!("one node at a time: waiting for {why}"));
                    if let Some(spec) = restart_spec(desired, &name, at) {
                        d.specs.insert(name.clone(), spec);
                    }
                    d.status = Some(status(Some(&name), if joined { "settle" } else { RESTART }, Some(why)));
                }
                None => {
                    // Done with it: the mark goes (a label-only write).
                    hold_all(
                        &mut d,
                        None,
                        &format!("one node at a time: {name} is done, the next follows"),
                    );
                    if let Some(spec) = with_roll(desired, &name, None) {
                        d.specs.insert(name.clone(), spec);
                    }
                    // Shown until the mark is gone (the last node's too: a
                    // roll is over once no node carries a mark).
                    d.status = Some(status(Some(&name), "settle", None));
                }
            }
            d
        }
        Some((name, _prepare)) => {
            if !order.contains(&name.as_str()) {
                // Nothing to change any more (the change was taken back):
                // undo what the prepare may have set, then drop the mark.
                if snap.allocation_enable.as_deref() == Some("primaries") {
                    d.call = Some(EsCall::ReleaseReplicas);
                    if let Some(spec) = labels_only(desired, observed, &name, Some(PREPARE)) {
                        d.specs.insert(name.clone(), spec);
                    }
                } else if let Some(spec) = with_roll(desired, &name, None) {
                    d.specs.insert(name.clone(), spec);
                }
                hold_all(&mut d, None, "one node at a time");
                return d;
            }
            match gate(c, snap, upgrade, true) {
                Ok(()) => {
                    d.call = Some(EsCall::HoldReplicas);
                    hold_all(&mut d, Some(&name), &format!("one node at a time: {name} first"));
                    if let Some(spec) = restart_spec(desired, &name, now) {
                        d.specs.insert(name.clone(), spec);
                    }
                    d.status = Some(status(Some(&name), RESTART, None));
                }
                Err(why) => {
                    hold_all(&mut d, None, &format!("rolling change waits for {why}"));
                    if let Some(spec) = labels_only(desired, observed, &name, Some(PREPARE)) {
                        d.specs.insert(name.clone(), spec);
                    }
                    d.status = Some(status(Some(&name), PREPARE, Some(why)));
                }
            }
            d
        }
        None => {
            let Some(first) = order.first().map(|s| s.to_string()) else {
                return d;
            };
            // The cluster UUID goes on every node before any restart (label
            // only): the bootstrap setting must never come back, even
            // while Elasticsearch cannot be read.
            let has_uuid = |spec: Option<&ServiceSpec>| {
                spec.and_then(|s| s.labels.as_ref())
                    .is_some_and(|l| l.contains_key(super::cluster::LABEL_ES_CLUSTER_UUID))
            };
            let unrecorded: Vec<&str> = order
                .iter()
                .copied()
                .filter(|n| !has_uuid(observed_spec(observed, n)))
                .collect();
            if !unrecorded.is_empty() {
                let why = "the cluster UUID to be recorded on every node".to_string();
                hold_all(&mut d, None, &format!("rolling change waits for {why}"));
                for n in &unrecorded {
                    let desired_spec = desired.services.iter().find(|s| s.spec.name.as_deref() == Some(n));
                    if has_uuid(desired_spec.map(|s| &s.spec)) {
                        if let Some(spec) = labels_only(desired, observed, n, None) {
                            d.held.remove(*n);
                            d.specs.insert(n.to_string(), spec);
                        }
                    }
                }
                d.status = Some(status(None, "waiting", Some(why)));
                return d;
            }
            match gate(c, snap, upgrade, false) {
                Ok(()) => {
                    hold_all(&mut d, Some(&first), &format!("one node at a time: {first} first"));
                    if let Some(spec) = labels_only(desired, observed, &first, Some(PREPARE)) {
                        d.specs.insert(first.clone(), spec);
                    }
                    d.status = Some(status(Some(&first), PREPARE, None));
                }
                Err(why) => {
                    hold_all(&mut d, None, &format!("rolling change waits for {why}"));
                    d.status = Some(status(None, "waiting", Some(why)));
                }
            }
            d
        }
    }
}

/// For the CLI (`plan`, `apply`), which does not read Elasticsearch: a
/// cluster expanded into its members (a cluster UUID recorded on them is
/// used), every update that restarts one held for the operator to roll.
pub fn offline(desired: &DesiredState, observed: &Observed, opts: super::PlanOptions) -> DesiredState {
    let Some(c) = super::cluster::cluster(desired, observed) else {
        return desired.clone();
    };
    let mut out = super::cluster::expand(desired, observed, None);
    // A roll under way is the operator's: its marks stay as they are.
    for m in c.members.iter().filter(|m| m.exists) {
        if roll_label(observed, &m.name).is_some() {
            out.held.insert(
                m.name.clone(),
                "a rolling change of the Elasticsearch cluster is under way (the operator's; swarmlog status shows it)"
                    .to_string(),
            );
        }
    }
    let p = super::plan(&out, observed, opts);
    for name in restarting_updates(&p, &c) {
        out.held.insert(
            name,
            "a change that restarts an Elasticsearch cluster node is rolled one node at a time by the operator (swarmlog run), which reads the cluster's health".to_string(),
        );
    }
    out
}

/// Whether a member may be taken out now, or what it waits for. `ours`: the
/// allocation setting may be one swarmlog set (a prepared member).
fn gate(c: &Cluster, s: &Snapshot, upgrade: bool, ours: bool) -> Result<(), String> {
    let missing: Vec<&str> = c
        .members
        .iter()
        .filter(|m| m.exists && s.node(&m.name).is_none())
        .map(|m| m.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "every node to be in the cluster (missing: {})",
            missing.join(", ")
        ));
    }
    let ok = s.health.status == Color::Green || (upgrade && s.health.status == Color::Yellow && s.settled());
    if !ok {
        let want = if upgrade {
            "green, or yellow with no shard moving (a version upgrade)"
        } else {
            "green"
        };
        return Err(format!("{want} (now {})", s.health_words()));
    }
    match s.allocation_enable.as_deref() {
        None | Some("all") => Ok(()),
        Some("primaries") if ours => Ok(()),
        Some(other) => Err(format!(
            "cluster.routing.allocation.enable to be unset (it is {other:?}, not set by swarmlog)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::es::{Health, Node as EsNode};
    use crate::plan::cluster::{cluster, expand, LABEL_ES_CLUSTER_UUID};
    use crate::plan::tests::{desired_with, node as any_node, observed_from};
    use bollard::models::Node;

    fn node(id: &str, host: &str) -> Node {
        let mut n = any_node(id, host, &[("logger", "true")]);
        if let Some(s) = n.spec.as_mut() {
            s.availability = Some(bollard::models::NodeSpecAvailabilityEnum::ACTIVE);
        }
        n
    }

    fn values(env: &str) -> DesiredState {
        desired_with(&format!(
            "elasticsearch:\n  topology: cluster\n  security: false\n  preflight:\n    maxMapCount: 0\n  env:\n    X: \"{env}\"\n"
        ))
    }

    fn snapshot(nodes: &[&str], status: Color, allocation: Option<&str>) -> Snapshot {
        Snapshot {
            endpoint: "http://es:9200".into(),
            cluster_name: "logging".into(),
            cluster_uuid: Some("u1".into()),
            health: Health {
                status,
                number_of_nodes: nodes.len() as u64,
                number_of_data_nodes: nodes.len() as u64,
                relocating_shards: 0,
                initializing_shards: 0,
                unassigned_shards: u64::from(status != Color::Green),
            },
            nodes: nodes
                .iter()
                .map(|n| EsNode {
                    name: n.to_string(),
                    master_eligible: true,
                    elected_master: false,
                    version: "8.15.3".into(),
                    uptime_secs: None,
                    shards: Some(2),
                    disk_percent: None,
                    disk_used_bytes: None,
                    disk_total_bytes: None,
                })
                .collect(),
            allocation_enable: allocation.map(str::to_string),
            exclude_name: None,
            watermarks: Default::default(),
            read_only: Ok(Vec::new()),
            retention: Default::default(),
        }
    }

    /// A cluster of three logger nodes formed from `values` (with the
    /// cluster UUID recorded when given): its desired state, and the swarm
    /// that runs it.
    fn three_nodes(values: &DesiredState, uuid: Option<&str>) -> (DesiredState, Observed) {
        let nodes: Vec<Node> = (1..=3)
            .map(|i| node(&format!("id{i}"), &format!("logger-{i}")))
            .collect();
        let mut o = observed_from(&DesiredState {
            services: Vec::new(),
            ..values.clone()
        });
        o.nodes = nodes.clone();
        let formed = expand(values, &o, uuid);
        let mut o = observed_from(&formed);
        o.nodes = nodes;
        (formed, o)
    }

    fn set_label(o: &mut Observed, name: &str, value: Option<&str>) {
        for s in o.services.iter_mut() {
            if let Some(spec) = s.spec.as_mut().filter(|s| s.name.as_deref() == Some(name)) {
                let l = spec.labels.get_or_insert_with(Default::default);
                match value {
                    Some(v) => l.insert(LABEL_ES_ROLL.to_string(), v.to_string()),
                    None => l.remove(LABEL_ES_ROLL),
                };
            }
        }
    }

    fn env_of(spec: &ServiceSpec) -> Vec<String> {
        spec.task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
    }

    /// The roll through its steps on a 4-node cluster (3 masters, 1 data).
    #[test]
    fn one_node_at_a_time_data_nodes_first_under_the_gates() {
        let nodes: Vec<Node> = ["logger-1", "logger-2", "logger-3", "logger-4"]
            .iter()
            .enumerate()
            .map(|(i, h)| node(&format!("id{i}"), h))
            .collect();
        let mut o = observed_from(&DesiredState {
            services: Vec::new(),
            ..values("1")
        });
        o.nodes = nodes.clone();
        let formed = expand(&values("1"), &o, Some("u1"));
        let mut o = observed_from(&formed);
        o.nodes = nodes;
        let desired = expand(&values("2"), &o, None);
        let c = cluster(&values("2"), &o).expect("a cluster");
        assert!(c.members.iter().all(|m| m.exists));
        let all = [
            "logging_es_logger-1",
            "logging_es_logger-2",
            "logging_es_logger-3",
            "logging_es_logger-4",
        ];
        let pending: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let green = snapshot(&all, Color::Green, None);

        // Not read: nothing moves.
        let d = decide(&c, &desired, &o, &pending, Err("timeout"), 1000);
        assert_eq!(d.held.len(), 4, "{d:?}");
        assert!(d.specs.is_empty() && d.call.is_none());

        // Yellow outside an upgrade: waits, and says for what.
        let d = decide(
            &c,
            &desired,
            &o,
            &pending,
            Ok(&snapshot(&all, Color::Yellow, None)),
            1000,
        );
        assert_eq!(d.held.len(), 4);
        let why = d
            .status
            .as_ref()
            .and_then(|s| s.waiting_for.clone())
            .unwrap_or_default();
        assert!(why.starts_with("green (now yellow"), "{why}");

        // An allocation setting that is not swarmlog's: waits.
        let d = decide(
            &c,
            &desired,
            &o,
            &pending,
            Ok(&snapshot(&all, Color::Green, Some("none"))),
            1000,
        );
        assert_eq!(d.held.len(), 4);

        // Green: the data-only node is marked first, a label-only write.
        let d = decide(&c, &desired, &o, &pending, Ok(&green), 1000);
        let first = "logging_es_logger-4";
        assert_eq!(d.specs.keys().collect::<Vec<_>>(), [first]);
        assert_eq!(d.held.len(), 3);
        assert!(!d.held.contains_key(first));
        assert_eq!(d.call, None);
        let spec = &d.specs[first];
        assert_eq!(
            spec.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_ES_ROLL))
                .map(String::as_str),
            Some(PREPARE)
        );
        assert!(env_of(spec).contains(&"X=1".to_string()), "nothing restarts yet");

        // Marked: replicas held, then the restart with the new spec.
        set_label(&mut o, first, Some(PREPARE));
        let d = decide(&c, &desired, &o, &pending, Ok(&green), 1000);
        assert_eq!(d.call, Some(EsCall::HoldReplicas));
        let spec = &d.specs[first];
        assert!(env_of(spec).contains(&"X=2".to_string()));
        assert_eq!(
            spec.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_ES_ROLL))
                .map(String::as_str),
            Some(RESTART)
        );
        assert!(spec
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(LABEL_ES_CLUSTER_UUID)));
        assert_eq!(d.held.len(), 3);

        // Restarting: out of the cluster; the others wait, nothing is called.
        set_label(&mut o, first, Some(RESTART));
        let rest: Vec<String> = pending.iter().filter(|p| *p != first).cloned().collect();
        let three = ["logging_es_logger-1", "logging_es_logger-2", "logging_es_logger-3"];
        let d = decide(
            &c,
            &desired,
            &o,
            &rest,
            Ok(&snapshot(&three, Color::Yellow, Some("primaries"))),
            1000,
        );
        assert_eq!(d.call, None);
        assert_eq!(d.held.len(), 3);
        assert_eq!(d.status.as_ref().map(|s| s.step.as_str()), Some(RESTART));

        // A read that still shows the process from before the restart (up
        // longer than since the restart was written) is not "back".
        for s in o.services.iter_mut() {
            if let Some(spec) = s.spec.as_mut().filter(|s| s.name.as_deref() == Some(first)) {
                spec.labels
                    .get_or_insert_with(Default::default)
                    .insert(LABEL_ES_ROLL_AT.to_string(), "990".into());
            }
        }
        let mut stale = snapshot(&all, Color::Yellow, Some("primaries"));
        for n in stale.nodes.iter_mut() {
            n.uptime_secs = Some(if n.name == first { 500 } else { 900 });
        }
        let d = decide(&c, &desired, &o, &rest, Ok(&stale), 1000);
        assert_eq!(d.call, None, "a stale read does not release replicas");
        let at = d.specs[first]
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_ES_ROLL_AT).cloned());
        assert_eq!(at.as_deref(), Some("990"), "the restart time is kept while waiting");
        for n in stale.nodes.iter_mut().filter(|n| n.name == first) {
            n.uptime_secs = Some(4);
        }
        let d = decide(&c, &desired, &o, &rest, Ok(&stale), 1000);
        assert_eq!(
            d.call,
            Some(EsCall::ReleaseReplicas),
            "restarted 4 s ago, 10 s after the write"
        );

        // Back: replicas released; then green: the mark goes.
        let d = decide(
            &c,
            &desired,
            &o,
            &rest,
            Ok(&snapshot(&all, Color::Yellow, Some("primaries"))),
            1000,
        );
        assert_eq!(d.call, Some(EsCall::ReleaseReplicas));
        assert_eq!(d.held.len(), 3);
        let d = decide(&c, &desired, &o, &rest, Ok(&green), 1000);
        assert_eq!(d.call, None);
        assert!(d.specs[first]
            .labels
            .as_ref()
            .is_some_and(|l| !l.contains_key(LABEL_ES_ROLL)));
        assert_eq!(d.held.len(), 3, "the next waits for the mark to go");

        // Next: a master, the lowest name.
        set_label(&mut o, first, None);
        let d = decide(&c, &desired, &o, &rest, Ok(&green), 1000);
        assert_eq!(d.specs.keys().collect::<Vec<_>>(), ["logging_es_logger-1"]);
    }

    /// A change taken back while a node is only marked: the setting swarmlog
    /// may have made is reset, then the mark goes.
    #[test]
    fn a_prepared_roll_with_nothing_left_to_change_undoes_itself() {
        let (formed, mut o) = three_nodes(&values("1"), Some("u1"));
        let c = cluster(&values("1"), &o).expect("a cluster");
        let name = "logging_es_logger-1";
        set_label(&mut o, name, Some(PREPARE));
        let three = ["logging_es_logger-1", "logging_es_logger-2", "logging_es_logger-3"];
        let d = decide(
            &c,
            &formed,
            &o,
            &[],
            Ok(&snapshot(&three, Color::Green, Some("primaries"))),
            1000,
        );
        assert_eq!(d.call, Some(EsCall::ReleaseReplicas));
        let d = decide(&c, &formed, &o, &[], Ok(&snapshot(&three, Color::Green, None)), 1000);
        assert_eq!(d.call, None);
        assert!(d.specs[name]
            .labels
            .as_ref()
            .is_some_and(|l| !l.contains_key(LABEL_ES_ROLL)));
    }

    #[test]
    fn versions_come_from_image_tags_that_are_versions() {
        assert_eq!(
            image_version("docker.elastic.co/elasticsearch/elasticsearch:8.16.1").as_deref(),
            Some("8.16.1")
        );
        assert_eq!(
            image_version("registry:5000/elasticsearch:8.16.1@sha256:abc").as_deref(),
            Some("8.16.1")
        );
        assert_eq!(
            image_version("registry:5000/es-custom:1.0.0"),
            None,
            "not Elastic's image"
        );
        assert_eq!(image_version("es:latest"), None);
        assert_eq!(image_version("es:8.16"), None);
        assert_eq!(image_version("registry:5000/es"), None);
    }

    /// An upgrade: a node back on the old version is not "back".
    #[test]
    fn an_upgraded_node_counts_as_back_only_on_the_new_version() {
        let nodes: Vec<Node> = (1..=3)
            .map(|i| node(&format!("id{i}"), &format!("logger-{i}")))
            .collect();
        let old = values("1");
        let mut o = observed_from(&DesiredState {
            services: Vec::new(),
            ..old.clone()
        });
        o.nodes = nodes.clone();
        let formed = expand(&old, &o, Some("u1"));
        let mut o = observed_from(&formed);
        o.nodes = nodes;
        let new = desired_with(
            "elasticsearch:\n  topology: cluster\n  security: false\n  image: docker.elastic.co/elasticsearch/elasticsearch:8.16.1\n  preflight:\n    maxMapCount: 0\n  env:\n    X: \"1\"\n",
        );
        let desired = expand(&new, &o, None);
        let c = cluster(&new, &o).expect("a cluster");
        let name = "logging_es_logger-1";
        for s in o.services.iter_mut() {
            if let Some(spec) = s.spec.as_mut().filter(|s| s.name.as_deref() == Some(name)) {
                let l = spec.labels.get_or_insert_with(Default::default);
                l.insert(LABEL_ES_ROLL.to_string(), RESTART.to_string());
                l.insert(LABEL_ES_ROLL_AT.to_string(), "990".to_string());
            }
        }
        let three = ["logging_es_logger-1", "logging_es_logger-2", "logging_es_logger-3"];
        let rest = vec!["logging_es_logger-2".to_string(), "logging_es_logger-3".to_string()];
        let mut s = snapshot(&three, Color::Yellow, Some("primaries"));
        for n in s.nodes.iter_mut() {
            n.uptime_secs = Some(if n.name == name { 3 } else { 900 });
        }
        let d = decide(&c, &desired, &o, &rest, Ok(&s), 1000);
        assert_eq!(d.call, None, "restarted, but still on 8.15.3");
        let why = d.status.and_then(|r| r.waiting_for).unwrap_or_default();
        assert!(why.contains("on version 8.16.1"), "{why}");
        for n in s.nodes.iter_mut().filter(|n| n.name == name) {
            n.version = "8.16.1".into();
        }
        let d = decide(&c, &desired, &o, &rest, Ok(&s), 1000);
        assert_eq!(d.call, Some(EsCall::ReleaseReplicas));
    }

    /// A node changed again while it is out for a restart (a renewed
    /// certificate while the roll restarts it for the one before): the
    /// process it runs is stopped by this update, so it is not "back" for
    /// having started after the first write; the restart time is the new
    /// write's. The same spec written again keeps its time.
    #[test]
    fn a_node_changed_again_while_out_waits_for_the_process_of_its_last_update() {
        let (_, mut o) = three_nodes(&values("1"), Some("u1"));
        let name = "logging_es_logger-1";
        let three = ["logging_es_logger-1", "logging_es_logger-2", "logging_es_logger-3"];
        let rest = vec!["logging_es_logger-2".to_string(), "logging_es_logger-3".to_string()];
        // Restarted at 990 onto X=2, as the roll wrote it.
        let c = cluster(&values("2"), &o).expect("a cluster");
        let two = expand(&values("2"), &o, None);
        let written = restart_spec(&two, name, 990).expect("a member");
        let put = |o: &mut Observed, spec: &ServiceSpec| {
            for s in o.services.iter_mut() {
                if s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name) {
                    s.spec = Some(spec.clone());
                }
            }
        };
        put(&mut o, &written);
        // The same spec still differs (the engine keeps something else):
        // written again with its time, so the write-loop guard sees it.
        let mut pending = vec![name.to_string()];
        pending.extend(rest.clone());
        let d = decide(
            &c,
            &two,
            &o,
            &pending,
            Ok(&snapshot(&three, Color::Yellow, Some("primaries"))),
            1000,
        );
        let at = |spec: &ServiceSpec| spec.labels.as_ref().and_then(|l| l.get(LABEL_ES_ROLL_AT).cloned());
        assert_eq!(at(&d.specs[name]).as_deref(), Some("990"));
        assert_eq!(d.specs[name], written, "the same write");

        // Changed again (X=3) while out: the update goes now, marked with now.
        let three_values = values("3");
        let desired = expand(&three_values, &o, None);
        let d = decide(
            &c,
            &desired,
            &o,
            &pending,
            Ok(&snapshot(&three, Color::Yellow, Some("primaries"))),
            1000,
        );
        assert_eq!(d.held.len(), 2, "{d:?}");
        let again = d.specs[name].clone();
        assert_eq!(at(&again).as_deref(), Some("1000"));
        assert!(env_of(&again).contains(&"X=3".to_string()));

        // Written. The node that answers was started after the first write
        // (up 5 s at 1003: since 998), before this one: the process this
        // update stops. Not back, nothing released, the others wait.
        put(&mut o, &again);
        let mut s = snapshot(&three, Color::Green, Some("primaries"));
        for n in s.nodes.iter_mut() {
            n.uptime_secs = Some(if n.name == name { 5 } else { 900 });
        }
        let d = decide(&c, &desired, &o, &rest, Ok(&s), 1003);
        assert_eq!(d.call, None, "the process before the last update is not back");
        assert_eq!(d.held.len(), 2);
        let why = d.status.and_then(|r| r.waiting_for).unwrap_or_default();
        assert!(why.contains("to rejoin the cluster"), "{why}");
        // Its own process, up 2 s at 1003: back.
        for n in s.nodes.iter_mut().filter(|n| n.name == name) {
            n.uptime_secs = Some(2);
        }
        let d = decide(&c, &desired, &o, &rest, Ok(&s), 1003);
        assert_eq!(d.call, Some(EsCall::ReleaseReplicas));
    }

    /// A cluster whose UUID is not on the services yet (recorded while a
    /// change was pending): the labels go first, nothing restarts.
    #[test]
    fn the_cluster_uuid_is_recorded_before_any_restart() {
        // Bootstrapped, UUID not recorded yet.
        let (_, o) = three_nodes(&values("1"), None);
        let desired = expand(&values("2"), &o, Some("u1"));
        let c = cluster(&values("2"), &o).expect("a cluster");
        let all = ["logging_es_logger-1", "logging_es_logger-2", "logging_es_logger-3"];
        let pending: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let d = decide(
            &c,
            &desired,
            &o,
            &pending,
            Ok(&snapshot(&all, Color::Green, None)),
            1000,
        );
        assert!(d.held.is_empty(), "{:?}", d.held);
        assert_eq!(d.specs.len(), 3);
        for (name, spec) in &d.specs {
            let l = spec.labels.clone().unwrap_or_default();
            assert_eq!(l.get(LABEL_ES_CLUSTER_UUID).map(String::as_str), Some("u1"), "{name}");
            assert!(!l.contains_key(LABEL_ES_ROLL), "{name}: no roll yet");
            assert!(env_of(spec).contains(&"X=1".to_string()), "{name}: nothing restarts");
        }
        assert_eq!(d.call, None);
    }

    /// Elasticsearch unreadable while a node restarts (no quorum, say): the
    /// mark stays exactly as it is, its restart time too.
    #[test]
    fn a_mark_is_kept_whole_while_elasticsearch_cannot_be_read() {
        let (_, mut o) = three_nodes(&values("1"), Some("u1"));
        let desired = expand(&values("2"), &o, None);
        let c = cluster(&values("2"), &o).expect("a cluster");
        let name = "logging_es_logger-1";
        for s in o.services.iter_mut() {
            if let Some(spec) = s.spec.as_mut().filter(|s| s.name.as_deref() == Some(name)) {
                let l = spec.labels.get_or_insert_with(Default::default);
                l.insert(LABEL_ES_ROLL.to_string(), RESTART.to_string());
                l.insert(LABEL_ES_ROLL_AT.to_string(), "990".to_string());
            }
        }
        let rest = vec!["logging_es_logger-2".to_string(), "logging_es_logger-3".to_string()];
        let d = decide(&c, &desired, &o, &rest, Err("no master"), 1000);
        let l = d.specs[name].labels.clone().unwrap_or_default();
        assert_eq!(l.get(LABEL_ES_ROLL).map(String::as_str), Some(RESTART));
        assert_eq!(l.get(LABEL_ES_ROLL_AT).map(String::as_str), Some("990"));
        assert_eq!(d.held.len(), 2);
    }
}
