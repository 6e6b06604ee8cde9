//! Plan, pinning (pure): a service that mounts a named volume (Elasticsearch)
//! keeps its data on one node, so it is pinned there with `node.id == ID`
//! and the label [`LABEL_DATA_NODE`]. The node is the one recorded in that
//! label, else the one its task runs on, else (first create) the first
//! ready, active node its constraints allow, by hostname. Swarm then never
//! restarts it elsewhere on an empty volume: a down or drained data node
//! makes it wait, reported. Moving it is an explicit act: `--allow-move`,
//! or constraints (values) the data node no longer meets, with `--allow-move`.
//! A global service (the shipper) is never pinned: each node keeps its own
//! volume for its own task.

use bollard::models::{Node, Service, ServiceSpec, TaskSpecPlacement};

use super::placement::{available, constraints_of, hostname, node_matches, state_and_availability};
use super::{Blocker, Inputs};
use crate::render::desired::DesiredService;

/// Service label: the node that holds the service's volume.
pub const LABEL_DATA_NODE: &str = "io.swarmlog.data-node";

/// The node a service's data is on, as observed: the label, else a task.
pub fn recorded_data_node(inputs_observed: &crate::engine::Observed, o: &Service) -> Option<String> {
    let label = o
        .spec
        .as_ref()
        .and_then(|s| s.labels.as_ref())
        .and_then(|l| l.get(LABEL_DATA_NODE))
        .cloned();
    label.or_else(|| {
        let sid = o.id.as_deref()?;
        inputs_observed
            .tasks
            .iter()
            .filter(|t| t.service_id.as_deref() == Some(sid))
            .find_map(|t| t.node_id.clone())
    })
}

/// The desired spec, pinned to its data node when it mounts a named volume;
/// or the reason it may not be written (its data node no longer allowed).
pub(super) fn pinned(inputs: &Inputs, d: &DesiredService, o: Option<&Service>) -> Result<ServiceSpec, Blocker> {
    let volumes = d.named_volumes();
    if volumes.is_empty() || d.is_global() {
        return Ok(d.spec.clone());
    }
    let constraints = constraints_of(&d.spec);
    let nodes = &inputs.observed.nodes;
    let by_id = |id: &str| nodes.iter().find(|n| n.id.as_deref() == Some(id));
    let recorded = o.and_then(|o| recorded_data_node(inputs.observed, o));
    // Bound to its node by its own spec (an Elasticsearch cluster's member):
    // it waits for that node, whatever became of it; nothing to move.
    if recorded.as_ref().is_some_and(|id| {
        constraints
            .iter()
            .any(|c| c.replace(' ', "") == format!("node.id=={id}"))
    }) {
        return Ok(d.spec.clone());
    }
    let node_id = match recorded {
        // Still allowed (down or drained too: the service waits for it).
        Some(id) if by_id(&id).is_some_and(|n| node_matches(n, &constraints)) => Some(id),
        Some(id) if !inputs.opts.allow_move => {
            return Err(Blocker::WouldMove {
                service: d.spec.name.clone().unwrap_or_default(),
                host: by_id(&id)
                    .map(hostname)
                    .unwrap_or_else(|| format!("{id} (gone from the swarm)")),
                volumes,
            });
        }
        // First placement, or a move that was asked for.
        _ => {
            let mut allowed: Vec<&Node> = nodes
                .iter()
                .filter(|n| available(n) && node_matches(n, &constraints))
                .collect();
            allowed.sort_by_key(|n| hostname(n));
            allowed.first().and_then(|n| n.id.clone())
        }
    };
    let mut spec = d.spec.clone();
    let Some(node_id) = node_id else {
        // No node may run it: the preconditions say so.
        return Ok(spec);
    };
    spec.labels
        .get_or_insert_with(Default::default)
        .insert(LABEL_DATA_NODE.to_string(), node_id.clone());
    let placement = spec
        .task_template
        .get_or_insert_with(Default::default)
        .placement
        .get_or_insert_with(TaskSpecPlacement::default);
    let pin = format!("node.id=={node_id}");
    let constraints = placement.constraints.get_or_insert_with(Vec::new);
    // A spec bound to its node already (an Elasticsearch cluster's member).
    if !constraints.iter().any(|c| c.replace(' ', "") == pin) {
        constraints.push(pin);
    }
    Ok(spec)
}

/// A pinned service whose data node cannot run it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub service: String,
    pub hostname: String,
    pub why: String,
}

/// The pinned services of the desired state whose data node is down,
/// drained or gone: they wait for it (nothing moves them on its own).
pub fn waiting_on_data_nodes(
    desired: &crate::render::desired::DesiredState,
    observed: &crate::engine::Observed,
) -> Vec<Waiting> {
    let mut out = Vec::new();
    for d in desired
        .services
        .iter()
        .filter(|d| !d.named_volumes().is_empty() && !d.is_global())
    {
        let Some(o) = observed
            .services
            .iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_ref()) == d.spec.name.as_ref())
        else {
            continue;
        };
        let Some(id) = o
            .spec
            .as_ref()
            .and_then(|s| s.labels.as_ref())
            .and_then(|l| l.get(LABEL_DATA_NODE))
        else {
            continue;
        };
        let node = observed.nodes.iter().find(|n| n.id.as_deref() == Some(id.as_str()));
        let why = match node {
            None => "has left the swarm".to_string(),
            Some(n) if available(n) => continue,
            Some(n) => {
                let (state, availability) = state_and_availability(n);
                format!("is {state}, availability {availability}")
            }
        };
        let service = d.spec.name.clone().unwrap_or_default();
        out.push(Waiting {
            hostname: node.map(hostname).unwrap_or_else(|| id.clone()),
            why: format!(
                "{why}; it holds the data of {service}, which waits for it (not moved: --allow-move or a values change moves it, to an empty volume)"
            ),
            service,
        });
    }
    out
}
