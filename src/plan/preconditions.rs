//! Plan, preconditions (pure): what the stack uses but does not create must
//! exist, and every placement must match a node.

use std::collections::BTreeSet;

use bollard::models::Node;

use super::placement::{constraints_of, node_matches, node_ready};
use super::{Blocker, Inputs, ObjectKind, ObjectRef, Plan};
use crate::render::desired::{DesiredService, External};

pub(super) fn plan(inputs: &Inputs, external: &External, services: &[DesiredService], p: &mut Plan) {
    let o = inputs.observed;
    let networks: BTreeSet<&str> = o.networks.iter().filter_map(|n| n.name.as_deref()).collect();
    let configs: BTreeSet<&str> = o
        .configs
        .iter()
        .filter_map(|c| c.spec.as_ref()?.name.as_deref())
        .collect();
    let secrets: BTreeSet<&str> = o
        .secrets
        .iter()
        .filter_map(|c| c.spec.as_ref()?.name.as_deref())
        .collect();
    let External {
        networks: ext_networks,
        configs: ext_configs,
        secrets: ext_secrets,
        // Named volumes are created by the engine on first use.
        volumes: _,
    } = external;
    for (kind, wanted, have) in [
        (ObjectKind::Network, ext_networks, &networks),
        (ObjectKind::Config, ext_configs, &configs),
        (ObjectKind::Secret, ext_secrets, &secrets),
    ] {
        for name in wanted.iter().filter(|n| !have.contains(n.as_str())) {
            p.blockers
                .push(Blocker::MissingExternal(ObjectRef::new(kind, name.clone())));
        }
    }
    security_by_default(inputs, services, p);
    cluster_security_switch(inputs, services, p);
    for svc in services {
        let constraints = constraints_of(&svc.spec);
        if constraints.is_empty() {
            continue;
        }
        let matching: Vec<&Node> = o.nodes.iter().filter(|n| node_matches(n, &constraints)).collect();
        let name = svc.spec.name.clone().unwrap_or_default();
        // A service that exists, bound to one node by its own spec (an
        // Elasticsearch cluster's member), waits for that node: the rest of
        // the stack goes on.
        let bound = constraints.iter().any(|c| c.replace(' ', "").starts_with("node.id=="));
        let exists = o
            .services
            .iter()
            .any(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name.as_str()));
        if matching.is_empty() && bound && exists {
            p.warnings
                .push(format!("{name} waits for its node, which has left the swarm"));
        } else if matching.is_empty() {
            p.blockers.push(Blocker::NoPlacement {
                service: name,
                constraints,
            });
        } else if !matching.iter().any(|n| node_ready(n)) {
            p.warnings.push(format!("every node that may run {name} is down"));
        }
    }
}

/// Label on Elasticsearch: `on`, `off`, or either with `-default` when the
/// values do not say and the chart's default decides.
pub const LABEL_ES_SECURITY: &str = "io.swarmlog.es.security";

/// `xpack.security.enabled` in a service spec's environment.
fn security_env(spec: &bollard::models::ServiceSpec) -> Option<bool> {
    let env = spec.task_template.as_ref()?.container_spec.as_ref()?.env.as_ref()?;
    env.iter()
        .find_map(|v| match v.strip_prefix("xpack.security.enabled=")? {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
}

/// A running cluster's security is never switched by a rolling change: an
/// owned member that runs with it one way and is wanted the other way
/// blocks the plan.
fn cluster_security_switch(inputs: &Inputs, services: &[DesiredService], p: &mut Plan) {
    for svc in services {
        let member = svc
            .spec
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(crate::plan::cluster::LABEL_ES_MEMBER_OF));
        let Some(wanted) = security_env(&svc.spec).filter(|_| member) else {
            continue;
        };
        let name = svc.spec.name.clone().unwrap_or_default();
        let running = inputs.observed.services.iter().find_map(|s| {
            let spec = s.spec.as_ref()?;
            let owned = spec
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::render::desired::LABEL_STACK))
                .is_some_and(|st| st == inputs.stack);
            (spec.name.as_deref() == Some(name.as_str()) && owned).then(|| security_env(spec))?
        });
        if running.is_some_and(|r| r != wanted) {
            p.blockers.push(Blocker::ClusterSecuritySwitch {
                service: name,
                on: wanted,
            });
        }
    }
}

/// A default never switches a running Elasticsearch's security on: an owned
/// Elasticsearch that runs with `xpack.security.enabled=false` and is
/// wanted `on-default` blocks the plan.
fn security_by_default(inputs: &Inputs, services: &[DesiredService], p: &mut Plan) {
    for svc in services {
        let wanted = svc.spec.labels.as_ref().and_then(|l| l.get(LABEL_ES_SECURITY));
        if wanted.map(String::as_str) != Some("on-default") {
            continue;
        }
        let name = svc.spec.name.clone().unwrap_or_default();
        let running_off = inputs.observed.services.iter().any(|s| {
            let Some(spec) = s.spec.as_ref() else { return false };
            let owned = spec
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::render::desired::LABEL_STACK))
                .is_some_and(|st| st == inputs.stack);
            let env = spec
                .task_template
                .as_ref()
                .and_then(|t| t.container_spec.as_ref())
                .and_then(|c| c.env.as_ref());
            spec.name.as_deref() == Some(name.as_str())
                && owned
                && env.is_some_and(|e| e.iter().any(|v| v == "xpack.security.enabled=false"))
        });
        if running_off {
            p.blockers.push(Blocker::SecurityByDefault { service: name });
        }
    }
}
