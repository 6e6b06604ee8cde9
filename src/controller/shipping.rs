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
/// rejected there, where a task waits with an error (no resources), or
/// where swarm schedules none at all (its placement excludes the node). A
/// node that just joined and is starting one is only listed as missing (the
/// `SwarmlogShipperMissing` alert fires when that lasts).
pub fn status(desired: &DesiredState, observed: &Observed) -> (ShippingStatus, Vec<String>) {
    status_with(desired, observed, None)
}

/// The shipper's service name (the desired state's service with [`LABEL_SHIPPER`]).
pub fn service(desired: &DesiredState) -> Option<String> {
    desired
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
}

/// [`status`] from the shipper's tasks in `tasks` (all its tasks, also
/// those swarm shut down after a failure, which the observe's list of
/// running ones does not hold) instead of the observed ones.
pub fn status_with(
    desired: &DesiredState,
    observed: &Observed,
    tasks: Option<&[bollard::models::Task]>,
) -> (ShippingStatus, Vec<String>) {
    let Some(service) = service(desired) else {
        return (ShippingStatus::default(), Vec::new());
    };
    let id = observed
        .services
        .iter()
        .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(service.as_str()))
        .and_then(|s| s.id.clone());
    // By node, once: a swarm of 1,000 nodes has as many shipper tasks.
    let mut by_node: std::collections::HashMap<&str, Vec<&bollard::models::Task>> = Default::default();
    for t in tasks
        .unwrap_or(&observed.tasks)
        .iter()
        .filter(|t| id.is_some() && t.service_id == id)
    {
        by_node
            .entry(t.node_id.as_deref().unwrap_or_default())
            .or_default()
            .push(t);
    }
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
        let on_node: &[&bollard::models::Task] = by_node
            .get(n.id.as_deref().unwrap_or_default())
            .map_or(&[], Vec::as_slice);
        let state = |t: &&bollard::models::Task| t.status.as_ref().and_then(|s| s.state);
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
        } else if let Some(err) = on_node
            .iter()
            .filter(|t| matches!(state(t), Some(TaskState::PENDING | TaskState::ASSIGNED)))
            .find_map(|t| t.status.as_ref().and_then(|s| s.err.clone()).filter(|e| !e.is_empty()))
        {
            problems.push(format!("the shipper ({service}) cannot start on {host}: {err}"));
        } else if id.is_some()
            && !on_node
                .iter()
                .any(|t| matches!(t.desired_state, Some(TaskState::RUNNING | TaskState::READY)))
        {
            problems.push(format!(
                "the shipper ({service}) has no task on {host}: swarm places none there (do its placement constraints exclude the node?)"
            ));
        }
        st.missing.push(host);
    }
    st.missing.sort();
    st.problems = problems.clone();
    (st, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{Node, NodeDescription, NodeSpec, NodeStatus, Service, ServiceSpec, Task, TaskStatus};

    fn desired(shipper: bool) -> DesiredState {
        let values = format!("shipper:\n  enabled: {shipper}\n");
        crate::render::chart::Chart::embedded()
            .expect("chart")
            .render(&crate::render::chart::RenderOptions {
                values_files: vec![("v.yaml".into(), values)],
                set: Vec::new(),
                stack: None,
                env: &|_| None,
                credential: &|_, _| Ok(b"test-password".to_vec()),
                generations: &|_| Default::default(),
                tls: &|_, _, _| Ok(None),
            })
            .expect("renders")
            .desired
    }

    fn node(id: &str, ready: bool, availability: NodeSpecAvailabilityEnum) -> Node {
        Node {
            id: Some(id.into()),
            spec: Some(NodeSpec {
                availability: Some(availability),
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: Some(format!("host-{id}")),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: Some(if ready { NodeState::READY } else { NodeState::DOWN }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(node: &str, state: TaskState, err: Option<&str>, at: &str) -> Task {
        Task {
            service_id: Some("svc-shipper".into()),
            node_id: Some(node.into()),
            desired_state: Some(TaskState::RUNNING),
            updated_at: Some(at.into()),
            status: Some(TaskStatus {
                state: Some(state),
                err: err.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn counts_ready_active_nodes_and_names_where_it_fails() {
        let d = desired(true);
        let observed = Observed {
            nodes: vec![
                node("a", true, NodeSpecAvailabilityEnum::ACTIVE),
                node("b", true, NodeSpecAvailabilityEnum::ACTIVE),
                node("c", true, NodeSpecAvailabilityEnum::ACTIVE),
                node("f", true, NodeSpecAvailabilityEnum::ACTIVE),
                node("g", true, NodeSpecAvailabilityEnum::ACTIVE),
                // Drained and down nodes run no global task: not counted.
                node("d", true, NodeSpecAvailabilityEnum::DRAIN),
                node("e", false, NodeSpecAvailabilityEnum::ACTIVE),
            ],
            services: vec![Service {
                id: Some("svc-shipper".into()),
                spec: Some(ServiceSpec {
                    name: Some("logging_shipper".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            tasks: vec![
                task("a", TaskState::RUNNING, None, "1"),
                // b: starting (just joined): missing, not a problem.
                task("b", TaskState::PREPARING, None, "1"),
                // c: failed twice, the latest error is named.
                task("c", TaskState::REJECTED, Some("old"), "1"),
                task("c", TaskState::FAILED, Some("bind source path does not exist"), "2"),
                // f: waiting for resources.
                task(
                    "f",
                    TaskState::PENDING,
                    Some("no suitable node (insufficient resources on 1 node)"),
                    "1",
                ),
                // g: only an old task, shut down: swarm places none there.
                Task {
                    desired_state: Some(TaskState::SHUTDOWN),
                    ..task("g", TaskState::SHUTDOWN, None, "1")
                },
            ],
            ..Default::default()
        };
        let (st, problems) = status(&d, &observed);
        assert!(st.enabled);
        assert_eq!(st.service.as_deref(), Some("logging_shipper"));
        assert_eq!((st.nodes, st.running), (5, 1));
        assert_eq!(st.missing, ["host-b", "host-c", "host-f", "host-g"]);
        assert_eq!(
            problems,
            [
                "the shipper (logging_shipper) fails on host-c: bind source path does not exist",
                "the shipper (logging_shipper) cannot start on host-f: no suitable node (insufficient resources on 1 node)",
                "the shipper (logging_shipper) has no task on host-g: swarm places none there (do its placement constraints exclude the node?)",
            ]
        );
        let (off, problems) = status(&desired(false), &observed);
        assert_eq!(off, ShippingStatus::default());
        assert!(problems.is_empty());
    }
}
