//! Controller, nodes: the policy (pure: auto-label rules, which nodes are
//! logger nodes, which of them are degraded) and the one write it makes,
//! [`label`] (I/O, version-checked, adds labels only).

use std::collections::BTreeMap;

use bollard::models::{Node, NodeSpec, NodeSpecRoleEnum, NodeState};

use super::Context;
use crate::clock::now;
use crate::engine::{EngineError, Observed};
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

pub fn hostname(n: &Node) -> String {
    n.description
        .as_ref()
        .and_then(|d| d.hostname.clone())
        .unwrap_or_default()
}

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

/// Logger nodes (matching `label == value`), and degraded ones: down,
/// drained, or once a logger node and now without the label.
pub fn logger_nodes(
    nodes: &[Node],
    label: &str,
    value: &str,
    known: &BTreeMap<String, String>,
) -> (Vec<LoggerNode>, Vec<Degraded>) {
    let mut loggers = Vec::new();
    let mut degraded = Vec::new();
    for n in nodes {
        let l = labels(n);
        let id = n.id.clone().unwrap_or_default();
        let host = hostname(n);
        let state = n
            .status
            .as_ref()
            .and_then(|s| s.state)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let availability = n
            .spec
            .as_ref()
            .and_then(|s| s.availability)
            .map(|a| a.to_string())
            .unwrap_or_default();
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
            degraded.push(Degraded {
                hostname: host,
                reason: format!("lost its label {label}={value}"),
            });
        }
    }
    // Known logger nodes that left the swarm.
    for (id, host) in known {
        if !nodes.iter().any(|n| n.id.as_deref() == Some(id.as_str())) {
            degraded.push(Degraded {
                hostname: host.clone(),
                reason: "logger node left the swarm".to_string(),
            });
        }
    }
    (loggers, degraded)
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
        let (loggers, degraded) = logger_nodes(&nodes, "logger", "true", &known);
        assert_eq!(loggers.len(), 2);
        let reasons: Vec<String> = degraded
            .iter()
            .map(|d| format!("{}: {}", d.hostname, d.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                "logger-1: logger node is down",
                "logger-2: lost its label logger=true",
                "logger-9: logger node left the swarm"
            ]
        );
    }
}
