//! The shipper in the controller (pure): on which nodes of the swarm its
//! global service runs, and which nodes it fails on.

use bollard::models::{NodeSpecAvailabilityEnum, NodeState, TaskState};

use crate::engine::Observed;
use crate::render::desired::DesiredState;
use crate::status::ShippingStatus;

/// The label of the shipper's service (the chart's `shipper`).
pub const LABEL_SHIPPER: &str = "io.swarmlog.shipper";

/// The shipper's status, and the problems that make the phase Degraded: a
/// node without a running shipper whose shipper tasks failed or were
/// rejected there (a node that just joined and is starting one is only
/// listed as missing; the `SwarmlogShipperMissing` alert fires when that
/// lasts).
pub fn status(desired: &DesiredState, observed: &Observed) -> (ShippingStatus, Vec<String>) {
    let Some(service) = desired
        .services
        .iter()
        .find(|s| {
            s.spec
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_SHIPPER))
                .map(String::as_str)
                == Some("true")
        })
        .and_then(|s| s.spec.name.clone())
    else {
        return (ShippingStatus::default(), Vec::new());
    };
    let id = observed
        .services
        .iter()
        .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(service.as_str()))
        .and_then(|s| s.id.clone());
    let tasks: Vec<_> = observed
        .tasks
        .iter()
        .filter(|t| id.is_some() && t.service_id == id)
        .collect();
    let mut st = ShippingStatus {
        enabled: true,
        service: Some(service.clone()),
        ..Default::default()
    };
    let mut problems = Vec::new();
    for n in &observed.nodes {
        let ready = n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY);
        let active = n.spec.as_ref().and_then(|s| s.availability) == Some(NodeSpecAvailabilityEnum::ACTIVE);
        if !(ready && active) {
            continue;
        }
        st.nodes += 1;
        let on_node: Vec<_> = tasks.iter().filter(|t| t.node_id == n.id).collect();
        let state = |t: &&&bollard::models::Task| t.status.as_ref().and_then(|s| s.state);
        if on_node.iter().any(|t| state(t) == Some(TaskState::RUNNING)) {
            st.running += 1;
            continue;
        }
        let host = n
            .description
            .as_ref()
            .and_then(|d| d.hostname.clone())
            .or_else(|| n.id.clone())
            .unwrap_or_default();
        let failed = on_node
            .iter()
            .filter(|t| matches!(state(t), Some(TaskState::FAILED | TaskState::REJECTED)))
            .max_by_key(|t| t.updated_at.clone().unwrap_or_default());
        if let Some(t) = failed {
            let err = t
                .status
                .as_ref()
                .and_then(|s| s.err.clone().or_else(|| s.message.clone()))
                .unwrap_or_else(|| "no reason given".into());
            problems.push(format!("the shipper ({service}) fails on {host}: {err}"));
        }
        st.missing.push(host);
    }
    st.missing.sort();
    st.problems = problems.clone();
    (st, problems)
}
