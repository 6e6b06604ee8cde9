//! Controller, nodes: the policy (pure: auto-label rules, which nodes are
//! logger nodes, which of them are degraded, and when a logger node that
//! left or lost its label still matters) and the one write it makes,
//! [`label`] (I/O, version-checked, adds labels only).

use std::collections::BTreeMap;

use bollard::models::{MountType, Node, NodeSpec, NodeSpecRoleEnum, NodeState, TaskState};

use super::Context;
use crate::clock::now;
use crate::engine::{EngineError, Observed};
use crate::render::desired::DesiredState;
pub use crate::status::{Degraded, LoggerNode};

/// One rule: nodes matching every condition get the labels (when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRule {
    /// Glob on the hostname (`*` and `?`).
    pub hostname: Option<String>,
    pub role: Option<String>,
    /// Existing labels the node must carry.
    pub labels: BTreeMap<String, String>,
    /// Labels to add.
    pub add: BTreeMap<String, String>,
    /// The rule as written, for messages.
    pub text: String,
}

/// Parses `hostname=logger-*,role=worker,label.zone=a:logger=true,tier=logs`.
pub fn parse_rule(text: &str) -> Result<LabelRule, String> {
    let (cond, add) = text.rsplit_once(':').ok_or_else(|| {
        format!("auto-label rule {text:?}: expected CONDITIONS:LABELS, such as hostname=logger-*:logger=true")
    })?;
    let mut rule = LabelRule {
        hostname: None,
        role: None,
        labels: BTreeMap::new(),
        add: BTreeMap::new(),
        text: text.to_string(),
    };
    for c in cond.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (k, v) = c
            .split_once('=')
            .ok_or_else(|| format!("auto-label rule {text:?}: condition {c:?} must be KEY=VALUE"))?;
        match k.trim() {
            "hostname" => rule.hostname = Some(v.trim().to_string()),
            "role" => match v.trim() {
                "manager" | "worker" => rule.role = Some(v.trim().to_string()),
                other => return Err(format!("auto-label rule {text:?}: role {other:?} must be manager or worker")),
            },
            k if k.starts_with("label.") => {
                rule.labels.insert(k["label.".len()..].to_string(), v.trim().to_string());
            }
            other => {
                return Err(format!(
                    "auto-label rule {text:?}: unknown condition {other:?} (use hostname=GLOB, role=manager|worker or label.KEY=VALUE)"
                ))
            }
        }
    }
    if rule.hostname.is_none() && rule.role.is_none() && rule.labels.is_empty() {
        return Err(format!("auto-label rule {text:?}: needs at least one condition"));
    }
    for a in add.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("auto-label rule {text:?}: label {a:?} must be KEY=VALUE"))?;
        let k = k.trim();
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(format!("auto-label rule {text:?}: invalid label key {k:?}"));
        }
        rule.add.insert(k.to_string(), v.trim().to_string());
    }
    if rule.add.is_empty() {
        return Err(format!("auto-label rule {text:?}: no label to add"));
    }
    Ok(rule)
}

/// Shell-style glob with `*` and `?`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

pub use crate::plan::placement::hostname;

fn labels(n: &Node) -> BTreeMap<String, String> {
    n.spec
        .as_ref()
        .and_then(|s| s.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn matches(rule: &LabelRule, n: &Node) -> bool {
    let host = hostname(n);
    let role = n.spec.as_ref().and_then(|s| s.role).map(|r| match r {
        NodeSpecRoleEnum::MANAGER => "manager",
        _ => "worker",
    });
    let have = labels(n);
    rule.hostname.as_ref().is_none_or(|g| glob(g, &host))
        && rule.role.as_deref().is_none_or(|r| Some(r) == role)
        && rule.labels.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// Labels to add to one node: only keys it lacks. A key a person set to
/// another value is left as it is and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelChange {
    pub node_id: String,
    pub hostname: String,
    pub version: u64,
    pub add: BTreeMap<String, String>,
    /// Keys the rules want but a person set differently: (key, theirs, rule's).
    pub kept: Vec<(String, String, String)>,
}

/// What the rules ask of each node.
pub fn label_changes(rules: &[LabelRule], nodes: &[Node]) -> Vec<LabelChange> {
    let mut out = Vec::new();
    for n in nodes {
        let have = labels(n);
        let mut add = BTreeMap::new();
        let mut kept = Vec::new();
        for r in rules.iter().filter(|r| matches(r, n)) {
            for (k, v) in &r.add {
                match have.get(k) {
                    None => {
                        add.insert(k.clone(), v.clone());
                    }
                    Some(theirs) if theirs != v => kept.push((k.clone(), theirs.clone(), v.clone())),
                    Some(_) => {}
                }
            }
        }
        if !add.is_empty() || !kept.is_empty() {
            out.push(LabelChange {
                node_id: n.id.clone().unwrap_or_default(),
                hostname: hostname(n),
                version: n.version.as_ref().and_then(|v| v.index).unwrap_or(0),
                add,
                kept,
            });
        }
    }
    out
}

/// What makes a logger node that left or lost its label matter: while it
/// does, it is degraded; otherwise it is only an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stakes {
    /// Node ID -> services with a volume whose task runs there, or ran there
    /// last (their data is on that node).
    pub data_nodes: BTreeMap<String, Vec<String>>,
    /// Desired services with a task that no node can take now.
    pub unplaced: Vec<String>,
}

/// Logger nodes and how they stand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loggers {
    /// Nodes matching `label == value`.
    pub nodes: Vec<LoggerNode>,
    /// Logger nodes that cannot serve, and known ones that left or lost
    /// their label while it matters.
    pub degraded: Vec<Degraded>,
    /// Known logger nodes that left or lost their label and do not matter:
    /// reported once as an event, then forgotten.
    pub gone: Vec<(String, Degraded)>,
}

/// Logger nodes (matching `label == value`), and degraded ones: down,
/// drained, or a known logger node (`known`: id -> hostname) that left the
/// swarm or lost its label while it matters ([`Stakes`]).
pub fn logger_nodes(
    nodes: &[Node],
    label: &str,
    value: &str,
    known: &BTreeMap<String, String>,
    stakes: &Stakes,
) -> Loggers {
    let mut out = Loggers::default();
    // A lost logger node: degraded while it matters, else gone.
    let mut lost = |id: &str, hostname: String, why: String| {
        let matters = if let Some(services) = stakes.data_nodes.get(id) {
            Some(format!("{why}; it holds the data of {}", services.join(", ")))
        } else if !stakes.unplaced.is_empty() {
            Some(format!(
                "{why}; tasks of {} cannot be placed",
                stakes.unplaced.join(", ")
            ))
        } else {
            None
        };
        match matters {
            Some(reason) => out.degraded.push(Degraded { hostname, reason }),
            None => out.gone.push((id.to_string(), Degraded { hostname, reason: why })),
        }
    };
    let mut loggers = Vec::new();
    let mut degraded = Vec::new();
    for n in nodes {
        let l = labels(n);
        let id = n.id.clone().unwrap_or_default();
        let host = hostname(n);
        let (state, availability) = crate::plan::placement::state_and_availability(n);
        if l.get(label).is_some_and(|v| v.eq_ignore_ascii_case(value)) {
            if n.status.as_ref().and_then(|s| s.state) != Some(NodeState::READY) {
                degraded.push(Degraded {
                    hostname: host.clone(),
                    reason: format!("logger node is {state}"),
                });
            } else if availability != "active" {
                degraded.push(Degraded {
                    hostname: host.clone(),
                    reason: format!("logger node availability is {availability}"),
                });
            }
            loggers.push(LoggerNode {
                id,
                hostname: host,
                state,
                availability,
                labels: l,
            });
        } else if known.contains_key(&id) {
            lost(&id, host, format!("lost its label {label}={value}"));
        }
    }
    // Known logger nodes that left the swarm.
    for (id, host) in known {
        if !nodes.iter().any(|n| n.id.as_deref() == Some(id.as_str())) {
            lost(id, host.clone(), "logger node left the swarm".to_string());
        }
    }
    degraded.append(&mut out.degraded);
    out.nodes = loggers;
    out.degraded = degraded;
    out
}

/// The nodes holding the data of the desired services with a volume: where
/// each one's task runs now, else where it ran last (`remembered`: service
/// -> node ID, updated here).
pub fn data_nodes(
    desired: &DesiredState,
    observed: &Observed,
    remembered: &mut BTreeMap<String, String>,
) -> BTreeMap<String, Vec<String>> {
    let with_volume = desired.services.iter().filter(|d| {
        d.spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.mounts.as_ref())
            .is_some_and(|m| m.iter().any(|m| m.typ == Some(MountType::VOLUME)))
    });
    let mut wanted = Vec::new();
    for d in with_volume {
        let Some(name) = d.spec.name.clone() else { continue };
        let sid = observed
            .services
            .iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name.as_str()))
            .and_then(|s| s.id.clone());
        let running = observed
            .tasks
            .iter()
            .filter(|t| sid.is_some() && t.service_id == sid)
            .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
            .find_map(|t| t.node_id.clone().filter(|n| !n.is_empty()));
        if let Some(node) = running {
            remembered.insert(name.clone(), node);
        }
        wanted.push(name);
    }
    remembered.retain(|service, _| wanted.contains(service));
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (service, node) in remembered.iter() {
        out.entry(node.clone()).or_default().push(service.clone());
    }
    out
}

/// Desired services with a task waiting for a node (none can take it).
pub fn unplaced(desired: &DesiredState, observed: &Observed) -> Vec<String> {
    let mut out: Vec<String> = desired
        .services
        .iter()
        .filter_map(|d| {
            let name = d.spec.name.as_deref()?;
            let sid = observed
                .services
                .iter()
                .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name))?
                .id
                .as_deref()?;
            observed
                .tasks
                .iter()
                .any(|t| {
                    t.service_id.as_deref() == Some(sid)
                        && t.node_id.as_deref().unwrap_or_default().is_empty()
                        && t.status.as_ref().and_then(|s| s.state) == Some(TaskState::PENDING)
                })
                .then(|| name.to_string())
        })
        .collect();
    out.sort();
    out
}

/// Adds the labels the auto-label rules ask for (never removing any),
/// version-checked. Returns whether any node was changed.
pub async fn label(ctx: &Context, observed: &Observed) -> Result<bool, EngineError> {
    let changes = label_changes(&ctx.settings.auto_label, &observed.nodes);
    let mut changed = false;
    for c in changes {
        for (k, theirs, ours) in &c.kept {
            tracing::warn!(node = %c.hostname, label = %k, set = %theirs, rule = %ours, "node label set by hand differs from the auto-label rule; kept");
        }
        if c.add.is_empty() {
            continue;
        }
        let Some(node) = observed
            .nodes
            .iter()
            .find(|n| n.id.as_deref() == Some(c.node_id.as_str()))
        else {
            continue;
        };
        let mut spec: NodeSpec = node.spec.clone().unwrap_or_default();
        let labels = spec.labels.get_or_insert_with(Default::default);
        for (k, v) in &c.add {
            labels.insert(k.clone(), v.clone());
        }
        ctx.engine.update_node(&c.hostname, &c.node_id, c.version, spec).await?;
        let added: Vec<String> = c.add.iter().map(|(k, v)| format!("{k}={v}")).collect();
        tracing::info!(node = %c.hostname, labels = %added.join(","), "labelled node");
        ctx.update_status(|st| {
            st.event(
                now(),
                "node",
                format!("labelled {} with {}", c.hostname, added.join(",")),
            )
        });
        changed = true;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{NodeDescription, NodeSpec, NodeStatus, ObjectVersion};

    fn node(id: &str, host: &str, role: NodeSpecRoleEnum, labels: &[(&str, &str)], ready: bool) -> Node {
        Node {
            id: Some(id.into()),
            version: Some(ObjectVersion { index: Some(7) }),
            spec: Some(NodeSpec {
                role: Some(role),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                availability: Some(bollard::models::NodeSpecAvailabilityEnum::ACTIVE),
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: Some(host.into()),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: Some(if ready { NodeState::READY } else { NodeState::DOWN }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn globs() {
        assert!(glob("logger-*", "logger-1"));
        assert!(glob("logger-?", "logger-2"));
        assert!(!glob("logger-?", "logger-12"));
        assert!(glob("*", ""));
        assert!(glob("*-1", "worker-1"));
        assert!(!glob("logger-*", "worker-1"));
    }

    #[test]
    fn rules_parse_and_refuse() {
        let r = parse_rule("hostname=logger-*,role=worker,label.zone=a:logger=true,tier=logs").unwrap();
        assert_eq!(r.hostname.as_deref(), Some("logger-*"));
        assert_eq!(r.role.as_deref(), Some("worker"));
        assert_eq!(r.labels["zone"], "a");
        assert_eq!(r.add["tier"], "logs");
        for bad in [
            "logger=true",
            "hostname=x:",
            ":a=b",
            "role=boss:a=b",
            "colour=red:a=b",
            "hostname=x:bad key=1",
        ] {
            assert!(parse_rule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_missing_labels_are_added_and_human_values_kept() {
        let rules = vec![parse_rule("hostname=logger-*:logger=true").unwrap()];
        let nodes = vec![
            node("a", "logger-1", NodeSpecRoleEnum::WORKER, &[], true),
            node("b", "logger-2", NodeSpecRoleEnum::WORKER, &[("logger", "true")], true),
            node("c", "logger-3", NodeSpecRoleEnum::WORKER, &[("logger", "false")], true),
            node("d", "worker-1", NodeSpecRoleEnum::WORKER, &[], true),
        ];
        let changes = label_changes(&rules, &nodes);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].hostname, "logger-1");
        assert_eq!(changes[0].add["logger"], "true");
        assert_eq!(changes[0].version, 7);
        assert!(changes[1].add.is_empty());
        assert_eq!(
            changes[1].kept,
            vec![("logger".to_string(), "false".to_string(), "true".to_string())]
        );
    }

    #[test]
    fn role_and_label_conditions() {
        let rules = vec![parse_rule("role=manager,label.zone=a:ops=yes").unwrap()];
        let nodes = vec![
            node("a", "m1", NodeSpecRoleEnum::MANAGER, &[("zone", "a")], true),
            node("b", "m2", NodeSpecRoleEnum::MANAGER, &[("zone", "b")], true),
            node("c", "w1", NodeSpecRoleEnum::WORKER, &[("zone", "a")], true),
        ];
        let changes = label_changes(&rules, &nodes);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].hostname, "m1");
    }

    #[test]
    fn degraded_logger_nodes() {
        let nodes = vec![
            node("a", "logger-1", NodeSpecRoleEnum::WORKER, &[("logger", "true")], false),
            node("b", "logger-2", NodeSpecRoleEnum::WORKER, &[], true),
            node("c", "logger-3", NodeSpecRoleEnum::WORKER, &[("logger", "true")], true),
        ];
        let mut known = BTreeMap::new();
        known.insert("b".to_string(), "logger-2".to_string());
        known.insert("z".to_string(), "logger-9".to_string());
        // Both lost nodes hold data: degraded.
        let stakes = Stakes {
            data_nodes: [("b", "logging_elasticsearch"), ("z", "logging_other")]
                .into_iter()
                .map(|(n, s)| (n.to_string(), vec![s.to_string()]))
                .collect(),
            unplaced: Vec::new(),
        };
        let found = logger_nodes(&nodes, "logger", "true", &known, &stakes);
        assert_eq!(found.nodes.len(), 2);
        assert!(found.gone.is_empty());
        let reasons: Vec<String> = found
            .degraded
            .iter()
            .map(|d| format!("{}: {}", d.hostname, d.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                "logger-1: logger node is down",
                "logger-2: lost its label logger=true; it holds the data of logging_elasticsearch",
                "logger-9: logger node left the swarm; it holds the data of logging_other"
            ]
        );
    }

    /// Issue 11 item 9: a logger node unlabelled or removed on purpose that
    /// holds no data, with every task placed, is an event, not degraded.
    #[test]
    fn lost_logger_nodes_that_do_not_matter_are_gone_not_degraded() {
        let nodes = vec![
            node("a", "logger-1", NodeSpecRoleEnum::WORKER, &[("logger", "true")], true),
            node("b", "worker-1", NodeSpecRoleEnum::WORKER, &[], true),
        ];
        let known: BTreeMap<String, String> = [("a", "logger-1"), ("b", "worker-1"), ("z", "logger-8")]
            .into_iter()
            .map(|(i, h)| (i.to_string(), h.to_string()))
            .collect();
        let data = Stakes {
            data_nodes: [("a".to_string(), vec!["logging_elasticsearch".to_string()])].into(),
            unplaced: Vec::new(),
        };
        let found = logger_nodes(&nodes, "logger", "true", &known, &data);
        assert_eq!(found.degraded, vec![]);
        let gone: Vec<String> = found
            .gone
            .iter()
            .map(|(id, d)| format!("{id} {}: {}", d.hostname, d.reason))
            .collect();
        assert_eq!(
            gone,
            [
                "b worker-1: lost its label logger=true",
                "z logger-8: logger node left the swarm"
            ]
        );
        // While a desired task cannot be placed, they matter.
        let stuck = Stakes {
            unplaced: vec!["logging_kibana".to_string()],
            ..data
        };
        let found = logger_nodes(&nodes, "logger", "true", &known, &stuck);
        assert!(found.gone.is_empty());
        assert_eq!(found.degraded.len(), 2);
        assert!(found.degraded[0]
            .reason
            .ends_with("tasks of logging_kibana cannot be placed"));
    }

    fn desired() -> DesiredState {
        crate::render::test_desired("")
    }

    fn service(name: &str) -> bollard::models::Service {
        bollard::models::Service {
            id: Some(format!("id-{name}")),
            spec: Some(bollard::models::ServiceSpec {
                name: Some(name.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(service: &str, node: Option<&str>, state: TaskState) -> bollard::models::Task {
        bollard::models::Task {
            service_id: Some(format!("id-{service}")),
            node_id: node.map(str::to_string),
            status: Some(bollard::models::TaskStatus {
                state: Some(state),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn data_nodes_are_where_a_volume_service_runs_or_ran_last() {
        let d = desired();
        let names: Vec<String> = d.services.iter().filter_map(|s| s.spec.name.clone()).collect();
        let es = names.iter().find(|n| n.ends_with("_elasticsearch")).unwrap().clone();
        let kibana = names.iter().find(|n| n.ends_with("_kibana")).unwrap().clone();
        let mut observed = Observed {
            services: names.iter().map(|n| service(n)).collect(),
            tasks: vec![
                task(&es, Some("n1"), TaskState::RUNNING),
                task(&kibana, Some("n2"), TaskState::RUNNING),
            ],
            ..Default::default()
        };
        let mut remembered = BTreeMap::new();
        let data = data_nodes(&d, &observed, &mut remembered);
        assert_eq!(data, [("n1".to_string(), vec![es.clone()])].into());
        // Its task gone (the node left): the node it ran on still holds the data.
        observed.tasks = vec![task(&es, None, TaskState::PENDING)];
        assert_eq!(data_nodes(&d, &observed, &mut remembered), data);
        assert_eq!(unplaced(&d, &observed), vec![es.clone()]);
        // Running on another node now: that one holds it.
        observed.tasks = vec![task(&es, Some("n3"), TaskState::RUNNING)];
        assert_eq!(
            data_nodes(&d, &observed, &mut remembered),
            [("n3".to_string(), vec![es.clone()])].into()
        );
        assert!(unplaced(&d, &observed).is_empty());
    }
}
