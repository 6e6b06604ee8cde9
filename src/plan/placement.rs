//! Plan, placement (pure): which nodes a service's constraints allow, and
//! the node selector the chart's services share.

use bollard::models::{Node, ServiceSpec};

use crate::render::desired::DesiredState;

/// The placement constraints of a spec.
pub fn constraints_of(spec: &ServiceSpec) -> Vec<String> {
    spec.task_template
        .as_ref()
        .and_then(|t| t.placement.as_ref())
        .and_then(|p| p.constraints.clone())
        .unwrap_or_default()
}

pub(super) fn node_ready(n: &Node) -> bool {
    n.status.as_ref().and_then(|s| s.state) == Some(bollard::models::NodeState::READY)
}

/// A node's hostname (what auto-label rules and messages use).
pub fn hostname(n: &Node) -> String {
    n.description
        .as_ref()
        .and_then(|d| d.hostname.clone())
        .unwrap_or_default()
}

/// A node's state (`ready`, `down`, ...) and availability (`active`,
/// `drain`, `pause`), as the engine words them.
pub fn state_and_availability(n: &Node) -> (String, String) {
    let state = n.status.as_ref().and_then(|s| s.state).map(|s| s.to_string());
    let availability = n.spec.as_ref().and_then(|s| s.availability).map(|a| a.to_string());
    (state.unwrap_or_default(), availability.unwrap_or_default())
}

/// Ready and active: tasks may start there.
pub fn available(n: &Node) -> bool {
    node_ready(n)
        && n.spec.as_ref().and_then(|s| s.availability) == Some(bollard::models::NodeSpecAvailabilityEnum::ACTIVE)
}

/// Whether a node satisfies every constraint (`node.labels.x == y`, `node.role != manager`, ...).
pub fn node_matches(node: &Node, constraints: &[String]) -> bool {
    constraints.iter().all(|c| constraint_matches(node, c))
}

fn constraint_matches(node: &Node, c: &str) -> bool {
    let (key, value, equal) = if let Some((k, v)) = c.split_once("==") {
        (k.trim(), v.trim(), true)
    } else if let Some((k, v)) = c.split_once("!=") {
        (k.trim(), v.trim(), false)
    } else {
        return false;
    };
    let spec = node.spec.as_ref();
    let desc = node.description.as_ref();
    let actual: Option<String> = match key {
        "node.id" => node.id.clone(),
        "node.hostname" => desc.and_then(|d| d.hostname.clone()),
        "node.role" => spec.and_then(|s| s.role).map(|r| r.to_string()),
        "node.platform.os" => desc.and_then(|d| d.platform.as_ref()?.os.clone()),
        "node.platform.arch" => desc.and_then(|d| d.platform.as_ref()?.architecture.clone()),
        k if k.starts_with("node.labels.") => {
            spec.and_then(|s| s.labels.as_ref()?.get(&k["node.labels.".len()..]).cloned())
        }
        k if k.starts_with("engine.labels.") => desc.and_then(|d| {
            d.engine
                .as_ref()?
                .labels
                .as_ref()?
                .get(&k["engine.labels.".len()..])
                .cloned()
        }),
        _ => None,
    };
    // Swarm compares case-insensitively; a missing value never equals.
    let same = actual.is_some_and(|a| a.eq_ignore_ascii_case(value));
    same == equal
}

pub(super) fn label_hint(constraints: &[String]) -> String {
    constraints
        .iter()
        .find_map(|c| {
            let (k, v) = c.split_once("==")?;
            let label = k.trim().strip_prefix("node.labels.")?;
            Some(format!(
                "; label a node: docker node update --label-add {label}={} NODE",
                v.trim()
            ))
        })
        .unwrap_or_default()
}

/// The node selector of the desired state: the `node.labels.X == Y` its
/// services share (the chart's `nodeSelector`).
pub fn selector(desired: &DesiredState) -> (String, String) {
    desired
        .services
        .iter()
        .flat_map(|s| constraints_of(&s.spec))
        .find_map(|c| {
            let (k, v) = c.split_once("==")?;
            Some((k.trim().strip_prefix("node.labels.")?.to_string(), v.trim().to_string()))
        })
        .unwrap_or_else(|| ("logger".to_string(), "true".to_string()))
}
