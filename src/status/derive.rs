//! Status, derived (pure): object states from the desired state, the
//! observation, the plan and what apply wrote; the phase from the facts of
//! one reconcile. The only place either is computed.

use bollard::models::TaskState;

use super::{ObjectState, ObjectStatus, Phase};
use crate::apply::{Verb, Written};
use crate::engine::Observed;
use crate::plan::placement::{available, constraints_of, node_matches};
use crate::plan::{Action, ObjectKind, ObjectRef, Plan, Reason};
use crate::render::desired::DesiredState;

/// What one reconcile found, for the phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// The engine answered.
    pub engine_reachable: bool,
    /// A desired state is in force (rendered now or kept from before).
    pub has_desired: bool,
    /// The desired state does not render now.
    pub invalid: bool,
    /// This instance does not write.
    pub standby: bool,
    /// Apply refused (blockers or conflicts).
    pub blocked: bool,
    /// A logger node cannot serve.
    pub degraded: bool,
    /// Something was written.
    pub wrote: bool,
    /// Every desired service has its tasks running.
    pub tasks_running: bool,
}

/// The phase, from worst to best.
pub fn phase(f: &Facts) -> Phase {
    if !f.engine_reachable {
        Phase::EngineUnavailable
    } else if !f.has_desired {
        if f.invalid {
            Phase::Invalid
        } else {
            Phase::Pending
        }
    } else if f.standby {
        Phase::Standby
    } else if f.blocked {
        Phase::Degraded
    } else if f.invalid {
        Phase::Invalid
    } else if f.degraded {
        Phase::Degraded
    } else if f.wrote || !f.tasks_running {
        Phase::Progressing
    } else {
        Phase::Converged
    }
}

/// Tasks of a service whose state is running.
pub fn running_tasks(observed: &Observed, service_id: &str) -> u64 {
    observed
        .tasks
        .iter()
        .filter(|t| t.service_id.as_deref() == Some(service_id))
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .count() as u64
}

/// Whether every desired service has as many running tasks as it asks for:
/// its replicas, or for a global service one on every ready, active node
/// its constraints allow (one at least), so a node that joins is looked at
/// again until its task runs.
pub fn tasks_running(observed: &Observed, desired: &DesiredState) -> bool {
    desired.services.iter().all(|d| {
        observed
            .services
            .iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == d.spec.name.as_deref())
            .is_some_and(|svc| runs_its_spec(observed, svc))
    })
}

/// Whether as many tasks as the service asks for run its current spec. A
/// start-first update keeps the old task running while the new one fails to
/// start: that task runs another container spec and does not count. A task
/// without a spec (none read) counts unless the engine says an update is
/// under way or paused.
fn runs_its_spec(observed: &Observed, svc: &bollard::models::Service) -> bool {
    use bollard::models::ServiceUpdateStatusStateEnum as U;
    let mode = svc.spec.as_ref().and_then(|s| s.mode.as_ref());
    let wanted = match mode.and_then(|m| m.replicated.as_ref()) {
        Some(r) => r.replicas.unwrap_or(1) as u64,
        None if mode.is_some_and(|m| m.global.is_some()) => {
            let constraints = svc.spec.as_ref().map(constraints_of).unwrap_or_default();
            let nodes = observed
                .nodes
                .iter()
                .filter(|n| available(n) && node_matches(n, &constraints))
                .count() as u64;
            nodes.max(1)
        }
        None => 1,
    };
    let template = svc.spec.as_ref().and_then(|s| s.task_template.as_ref());
    let updating = matches!(
        svc.update_status.as_ref().and_then(|u| u.state),
        Some(U::UPDATING | U::PAUSED | U::ROLLBACK_STARTED | U::ROLLBACK_PAUSED)
    );
    let id = svc.id.as_deref().unwrap_or_default();
    let current = observed
        .tasks
        .iter()
        .filter(|t| t.service_id.as_deref() == Some(id))
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        .filter(|t| match (t.spec.as_ref(), template) {
            (Some(task), Some(want)) => {
                task.container_spec == want.container_spec && task.force_update == want.force_update
            }
            _ => !updating,
        })
        .count() as u64;
    current >= wanted
}

/// The desired services whose update the engine paused (a new task failed,
/// and the update's failure action is pause): each with the engine's
/// message. Their spec does not run until another update goes through.
pub fn paused_updates(observed: &Observed, desired: &DesiredState) -> Vec<String> {
    use bollard::models::ServiceUpdateStatusStateEnum as U;
    observed
        .services
        .iter()
        .filter(|s| {
            let name = s.spec.as_ref().and_then(|s| s.name.as_deref());
            desired.services.iter().any(|d| d.spec.name.as_deref() == name)
        })
        // A paused update whose spec runs anyway (swarm replaced the failed
        // task later) is no problem.
        .filter(|s| !runs_its_spec(observed, s))
        .filter_map(|s| {
            let u = s.update_status.as_ref()?;
            let what = match u.state? {
                U::PAUSED => "update",
                U::ROLLBACK_PAUSED => "rollback",
                _ => return None,
            };
            let name = s.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default();
            let message = u.message.clone().unwrap_or_default();
            Some(format!(
                "the {what} of {name} is paused: {message} (`docker service ps --no-trunc {name}` says why the new task failed)"
            ))
        })
        .collect()
}

/// The state of one object as the plan sees it, and why.
fn planned_state(p: &Plan, object: &ObjectRef) -> (ObjectState, Option<String>) {
    if p.conflicts.iter().any(|c| &c.object == object) {
        return (
            ObjectState::Conflict,
            Some("exists and is not owned by swarmlog".to_string()),
        );
    }
    if object.kind == ObjectKind::Service {
        if let Some(n) = p.not_converging.iter().find(|n| n.service == object.name) {
            return (ObjectState::NotConverging, Some(n.to_string()));
        }
        if let Some(h) = p.held.iter().find(|h| h.service == object.name) {
            return (ObjectState::Held, Some(h.to_string()));
        }
    }
    let action = p
        .actions
        .iter()
        .find(|a| a.kind() == object.kind && a.name() == object.name);
    match action {
        None => (ObjectState::InSync, None),
        Some(Action::UpdateService { reason, changes, .. }) => (
            if *reason == Reason::Drifted {
                ObjectState::Drifted
            } else {
                ObjectState::Changed
            },
            Some(changes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>().join(", ")),
        ),
        Some(a) if a.verb() == "create" => (ObjectState::Missing, None),
        Some(_) => (ObjectState::Removing, None),
    }
}

/// What apply wrote, over the planned states: created, updated.
pub fn mark_written(objects: &mut [ObjectStatus], written: &[Written], at: &str) {
    for o in objects.iter_mut() {
        let Some(w) = written
            .iter()
            .find(|w| w.object.kind == o.kind && w.object.name == o.name)
        else {
            continue;
        };
        o.state = match w.verb {
            Verb::Created => ObjectState::Created,
            Verb::Updated => ObjectState::Updated,
            Verb::Removed => ObjectState::Removing,
        };
        o.last_change = Some(at.to_string());
    }
}

/// Per object of the desired state: its state as the plan found it,
/// replicas for services, and why.
pub fn objects(desired: &DesiredState, observed: &Observed, p: &Plan) -> Vec<ObjectStatus> {
    let mut out = Vec::new();
    let mut push = |object: ObjectRef, replicas: Option<(u64, u64)>| {
        let (state, why) = planned_state(p, &object);
        out.push(ObjectStatus {
            kind: object.kind,
            name: object.name,
            state,
            replicas_desired: replicas.map(|r| r.0),
            replicas_running: replicas.map(|r| r.1),
            last_change: None,
            why,
        });
    };
    for n in &desired.networks {
        push(ObjectRef::new(ObjectKind::Network, n.spec.name.clone()), None);
    }
    for c in &desired.configs {
        push(
            ObjectRef::new(ObjectKind::Config, c.spec.name.clone().unwrap_or_default()),
            None,
        );
    }
    for d in &desired.services {
        let name = d.spec.name.clone().unwrap_or_default();
        let wanted = d
            .spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .map(|r| r.replicas.unwrap_or(1) as u64);
        let running = observed
            .services
            .iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name.as_str()))
            .map(|s| running_tasks(observed, s.id.as_deref().unwrap_or_default()))
            .unwrap_or(0);
        push(
            ObjectRef::new(ObjectKind::Service, name),
            Some((wanted.unwrap_or(running.max(1)), running)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_order() {
        let ok = Facts {
            engine_reachable: true,
            has_desired: true,
            tasks_running: true,
            ..Facts::default()
        };
        assert_eq!(phase(&ok), Phase::Converged);
        assert_eq!(phase(&Facts { wrote: true, ..ok }), Phase::Progressing);
        assert_eq!(
            phase(&Facts {
                tasks_running: false,
                ..ok
            }),
            Phase::Progressing
        );
        assert_eq!(phase(&Facts { degraded: true, ..ok }), Phase::Degraded);
        assert_eq!(phase(&Facts { invalid: true, ..ok }), Phase::Invalid);
        assert_eq!(
            phase(&Facts {
                blocked: true,
                invalid: true,
                ..ok
            }),
            Phase::Degraded
        );
        assert_eq!(
            phase(&Facts {
                standby: true,
                blocked: true,
                ..ok
            }),
            Phase::Standby
        );
        assert_eq!(
            phase(&Facts {
                has_desired: false,
                invalid: true,
                ..ok
            }),
            Phase::Invalid
        );
        assert_eq!(
            phase(&Facts {
                has_desired: false,
                ..ok
            }),
            Phase::Pending
        );
        assert_eq!(
            phase(&Facts {
                engine_reachable: false,
                ..ok
            }),
            Phase::EngineUnavailable
        );
    }

    #[test]
    fn a_global_service_runs_when_every_allowed_node_runs_its_task() {
        use bollard::models::{
            Node, NodeSpec, NodeSpecAvailabilityEnum, NodeState, NodeStatus, Service, ServiceSpec, ServiceSpecMode,
            Task, TaskStatus,
        };
        let d = crate::render::chart::Chart::embedded()
            .expect("chart")
            .render(&crate::render::chart::RenderOptions {
                values_files: vec![("v.yaml".into(), "shipper:\n  enabled: true\n".into())],
                set: Vec::new(),
                stack: None,
                env: &|_| None,
                credential: &|_, _| Ok(b"test-password".to_vec()),
                generations: &|_| Default::default(),
                tls: &|_, _, _| Ok(None),
            })
            .expect("renders")
            .desired;
        let node = |id: &str, availability| Node {
            id: Some(id.into()),
            spec: Some(NodeSpec {
                availability: Some(availability),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: Some(NodeState::READY),
                ..Default::default()
            }),
            ..Default::default()
        };
        let running = |svc: &str, node: &str| Task {
            service_id: Some(svc.into()),
            node_id: Some(node.into()),
            status: Some(TaskStatus {
                state: Some(TaskState::RUNNING),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut observed = Observed {
            nodes: vec![
                node("a", NodeSpecAvailabilityEnum::ACTIVE),
                node("b", NodeSpecAvailabilityEnum::ACTIVE),
                // Drained: no global task is wanted there.
                node("c", NodeSpecAvailabilityEnum::DRAIN),
            ],
            ..Default::default()
        };
        for s in &d.services {
            let name = s.spec.name.clone().unwrap_or_default();
            let mode = if s.is_global() {
                Some(ServiceSpecMode {
                    global: Some(Default::default()),
                    ..Default::default()
                })
            } else {
                s.spec.mode.clone()
            };
            observed.services.push(Service {
                id: Some(name.clone()),
                spec: Some(ServiceSpec {
                    name: Some(name.clone()),
                    mode,
                    ..Default::default()
                }),
                ..Default::default()
            });
            observed.tasks.push(running(&name, "a"));
        }
        // The shipper runs on a only: node b (just joined) still waits for it.
        assert!(!tasks_running(&observed, &d));
        observed.tasks.push(running("logging_shipper", "b"));
        assert!(tasks_running(&observed, &d));
        // Kibana's start-first update whose new task cannot start: the old
        // task runs on, and the engine says the update is under way, then
        // paused on the failure. Neither is the desired spec running.
        use bollard::models::{ServiceUpdateStatus, ServiceUpdateStatusStateEnum as U};
        for (state, runs) in [
            (U::UPDATING, false),
            (U::PAUSED, false),
            (U::ROLLBACK_STARTED, false),
            (U::COMPLETED, true),
        ] {
            let kibana = observed
                .services
                .iter_mut()
                .find(|s| s.id.as_deref() == Some("logging_kibana"))
                .expect("kibana");
            kibana.update_status = Some(ServiceUpdateStatus {
                state: Some(state),
                ..Default::default()
            });
            assert_eq!(tasks_running(&observed, &d), runs, "{state:?}");
            let paused = paused_updates(&observed, &d);
            assert_eq!(paused.len(), usize::from(state == U::PAUSED), "{state:?}: {paused:?}");
        }
        // With the specs read: the old task runs another image and does not
        // count, whatever the update state says; once a task of the current
        // spec runs, a stale `paused` is no problem.
        use bollard::models::{TaskSpec, TaskSpecContainerSpec};
        let spec = |image: &str| TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let kibana = observed
            .services
            .iter_mut()
            .find(|s| s.id.as_deref() == Some("logging_kibana"))
            .expect("kibana");
        kibana.update_status = Some(ServiceUpdateStatus {
            state: Some(U::PAUSED),
            ..Default::default()
        });
        if let Some(s) = kibana.spec.as_mut() {
            s.task_template = Some(spec("kibana:new"));
        }
        let task = observed
            .tasks
            .iter_mut()
            .find(|t| t.service_id.as_deref() == Some("logging_kibana"))
            .expect("kibana's task");
        task.spec = Some(spec("kibana:old"));
        assert!(!tasks_running(&observed, &d));
        assert_eq!(paused_updates(&observed, &d).len(), 1);
        let task = observed
            .tasks
            .iter_mut()
            .find(|t| t.service_id.as_deref() == Some("logging_kibana"))
            .expect("kibana's task");
        task.spec = Some(spec("kibana:new"));
        assert!(tasks_running(&observed, &d));
        assert!(paused_updates(&observed, &d).is_empty());
    }
}
