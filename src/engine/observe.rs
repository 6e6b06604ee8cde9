//! Observe step (I/O): the live swarm in a constant number of list calls,
//! whatever the number of services, and the few other reads the operator
//! makes (events, one service's tasks, a task's log).

use std::collections::HashMap;

use bollard::models::{Config, EventMessage, Network, Node, Secret, Service, Task};
use bollard::query_parameters::{
    EventsOptions, ListConfigsOptions, ListNetworksOptions, ListNodesOptions, ListSecretsOptions, ListTasksOptions,
    LogsOptions,
};
use futures::{Stream, StreamExt};
use serde_json::Value as Json;

use super::{Engine, EngineError};

/// Everything a plan is computed from.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// This engine's node id in the swarm.
    pub node_id: String,
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    pub networks: Vec<Network>,
    pub configs: Vec<Config>,
    pub secrets: Vec<Secret>,
    /// Tasks whose desired state is running.
    pub tasks: Vec<Task>,
}

/// API calls one [`observe`] makes: info, nodes, services, networks, configs,
/// secrets, tasks.
pub const CALLS_PER_OBSERVE: u64 = 7;

/// Reads the swarm, every running task included. Fails with a clear error
/// when the engine is not a swarm manager.
pub async fn observe(engine: &Engine) -> Result<Observed, EngineError> {
    observe_scoped(engine, None).await
}

/// Reads the swarm as the plan of `stack` needs it: the running tasks of
/// that stack's services only (every use of tasks is per service of the
/// stack: placement, the data node, whether it runs). On a large swarm the
/// tasks are most of the bytes (89 % at 1,000 nodes and 50,000 tasks).
pub async fn observe_stack(engine: &Engine, stack: &str) -> Result<Observed, EngineError> {
    observe_scoped(engine, Some(stack)).await
}

/// Whether a service belongs to `stack`: by the stack label swarmlog and
/// `docker stack deploy` set, or by its name.
pub fn of_stack(service: &Service, stack: &str) -> bool {
    let Some(spec) = service.spec.as_ref() else {
        return false;
    };
    let labelled = spec.labels.as_ref().is_some_and(|l| {
        l.get(crate::render::desired::LABEL_NAMESPACE).map(String::as_str) == Some(stack)
            || l.get(crate::render::desired::LABEL_STACK).map(String::as_str) == Some(stack)
    });
    labelled
        || spec
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix(stack))
            .is_some_and(|rest| rest.starts_with('_'))
}

async fn observe_scoped(engine: &Engine, stack: Option<&str>) -> Result<Observed, EngineError> {
    let d = &engine.docker;
    let info = engine.bounded("read engine info", "", d.info()).await?;
    let swarm = info.swarm.unwrap_or_default();
    let state = swarm.local_node_state.map(|s| s.to_string()).unwrap_or_default();
    if state != "active" {
        return Err(EngineError::NotSwarm);
    }
    if swarm.control_available != Some(true) {
        return Err(EngineError::NotManager);
    }
    let (nodes, services, networks, configs, secrets) = tokio::try_join!(
        engine.bounded("list nodes", "", d.list_nodes(None::<ListNodesOptions>)),
        engine.list_services(),
        engine.bounded("list networks", "", d.list_networks(None::<ListNetworksOptions>)),
        engine.bounded("list configs", "", d.list_configs(None::<ListConfigsOptions>)),
        engine.bounded("list secrets", "", d.list_secrets(None::<ListSecretsOptions>)),
    )?;
    let mut filters = HashMap::from([("desired-state".to_string(), vec!["running".to_string()])]);
    if let Some(stack) = stack {
        let ids: Vec<String> = services
            .iter()
            .filter(|s| of_stack(s, stack))
            .filter_map(|s| s.id.clone())
            .collect();
        filters.insert("service".to_string(), ids);
    }
    let tasks = match filters.get("service") {
        // No service of the stack: no task of it either.
        Some(ids) if ids.is_empty() => Vec::new(),
        _ => {
            engine
                .bounded(
                    "list tasks",
                    "",
                    d.list_tasks(Some(ListTasksOptions { filters: Some(filters) })),
                )
                .await?
        }
    };
    Ok(Observed {
        node_id: swarm.node_id.unwrap_or_default(),
        nodes,
        services,
        networks,
        configs,
        secrets,
        tasks,
    })
}

impl Engine {
    /// Every service, read as the engine's JSON and put into the model's
    /// names before it is typed (bollard's own list call loses
    /// `ContainerSpec.Healthcheck`: see `raw::fix_service_json`).
    pub async fn list_services(&self) -> Result<Vec<Service>, EngineError> {
        let what = "list services";
        let raw = self.get_json(what, "/services").await?;
        let Json::Array(items) = raw else {
            return Err(EngineError::Other {
                what: what.to_string(),
                detail: format!("expected a list of services, the engine answered {raw:.200}"),
            });
        };
        items
            .into_iter()
            .map(|mut item| {
                super::raw::fix_service_json(&mut item);
                let id = item.get("ID").and_then(Json::as_str).unwrap_or_default().to_string();
                serde_json::from_value(item).map_err(|e| EngineError::Other {
                    what: what.to_string(),
                    detail: format!("service {id}: the engine's JSON does not fit the model: {e}"),
                })
            })
            .collect()
    }

    /// Whether node `id` is the swarm leader now: one small call (a standby
    /// asks this every second instead of observing the whole swarm).
    pub async fn node_is_leader(&self, id: &str) -> Result<bool, EngineError> {
        let node = self.bounded("inspect node", id, self.docker.inspect_node(id)).await?;
        Ok(node.manager_status.and_then(|m| m.leader) == Some(true))
    }

    /// Whether the engine answers at all, within `deadline` (at most the per-call one).
    pub async fn ping(&self, deadline: std::time::Duration) -> Result<(), EngineError> {
        let deadline = deadline.min(self.timeout);
        match tokio::time::timeout(deadline, self.docker.ping()).await {
            Ok(r) => r.map(|_| ()).map_err(|e| self.err("reach the engine", "", e)),
            Err(_) => Err(EngineError::Timeout {
                what: "reach the engine".to_string(),
                name: String::new(),
                after: deadline,
            }),
        }
    }

    /// The engine's event stream, of the given object types; `since`: the
    /// engine's `seconds.nanoseconds` from which it replays what it still has.
    pub fn events(
        &self,
        types: &[&str],
        since: Option<String>,
    ) -> impl Stream<Item = Result<EventMessage, EngineError>> + '_ {
        let filters = HashMap::from([(
            "type".to_string(),
            types.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        )]);
        self.docker
            .events(Some(EventsOptions {
                filters: Some(filters),
                since,
                ..Default::default()
            }))
            .map(|r| r.map_err(|e| self.err("read events", "", e)))
    }

    /// Tasks of one service (by ID or name); `running`: only those whose
    /// desired state is running.
    pub async fn service_tasks(&self, service: &str, running: bool) -> Result<Vec<Task>, EngineError> {
        let mut filters = HashMap::from([("service".to_string(), vec![service.to_string()])]);
        if running {
            filters.insert("desired-state".to_string(), vec!["running".to_string()]);
        }
        self.bounded(
            "list tasks",
            service,
            self.docker
                .list_tasks(Some(ListTasksOptions { filters: Some(filters) })),
        )
        .await
    }

    /// Up to `limit` bytes of a task's output (stdout and stderr).
    pub async fn task_output(&self, task_id: &str, limit: usize) -> Result<String, EngineError> {
        let mut logs = self.docker.task_logs(
            task_id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let read = async {
            let mut text = String::new();
            while let Some(chunk) = logs.next().await {
                text.push_str(&chunk?.to_string());
                if text.len() > limit {
                    break;
                }
            }
            Ok(text)
        };
        self.bounded("read task log", task_id, read).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ServiceSpec;

    fn service(name: &str, labels: &[(&str, &str)]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn services_of_a_stack_by_label_or_name() {
        assert!(of_stack(&service("logging_kibana", &[]), "logging"));
        assert!(of_stack(
            &service("kibana", &[("com.docker.stack.namespace", "logging")]),
            "logging"
        ));
        assert!(of_stack(
            &service("kibana", &[("io.swarmlog.stack", "logging")]),
            "logging"
        ));
        assert!(!of_stack(&service("loggingx_kibana", &[]), "logging"));
        assert!(!of_stack(&service("logging", &[]), "logging"));
        assert!(!of_stack(
            &service("other_web", &[("com.docker.stack.namespace", "other")]),
            "logging"
        ));
        assert!(!of_stack(&Service::default(), "logging"));
    }
}
