//! Plan, services (pure): create the missing ones, update the ones whose
//! normalised spec differs (changed, drifted or adopted), hold the ones
//! waiting for a precondition. Labels that others added to an owned service
//! are foreign: never drift, and kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{Node, Service, ServiceSpec};

use super::normalise::{diff, normalise_service};
use super::pinning::pinned;
use super::placement::{constraints_of, node_matches};
use super::{Action, Blocker, Conflict, Held, Inputs, ObjectKind, ObjectRef, Plan, Reason, Wanted};
use crate::engine::Observed;
use crate::render::desired::{DesiredService, LABEL_COMPANION, LABEL_MANAGED, LABEL_SPEC_HASH};

pub(super) fn plan(
    inputs: &Inputs,
    desired: &[DesiredService],
    held: &BTreeMap<String, String>,
    net_names: &HashMap<String, String>,
    wanted: &mut Wanted,
    p: &mut Plan,
) {
    for d in desired {
        let name = d.spec.name.clone().unwrap_or_default();
        wanted.services.insert(name.clone());
        let observed = inputs
            .observed
            .services
            .iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name.as_str()));
        match observed {
            None => match (held.get(&name), pinned(inputs, d, None)) {
                (Some(why), _) => p.held.push(Held {
                    service: name,
                    fields: Vec::new(),
                    why: why.clone(),
                }),
                (None, Ok(spec)) => p.actions.push(Action::CreateService { name, spec }),
                (None, Err(b)) => p.blockers.push(b),
            },
            Some(o) => plan_existing(inputs, d, name, o, held, net_names, p),
        }
    }
}

fn plan_existing(
    inputs: &Inputs,
    d: &DesiredService,
    name: String,
    o: &Service,
    held: &BTreeMap<String, String>,
    net_names: &HashMap<String, String>,
    p: &mut Plan,
) {
    let ospec = o.spec.clone().unwrap_or_default();
    let owned = inputs.owns(ospec.labels.as_ref());
    if !owned && !inputs.opts.adopt {
        p.conflicts.push(Conflict {
            object: ObjectRef::new(ObjectKind::Service, name),
            stack: inputs.stack.to_string(),
        });
        return;
    }
    let desired_spec = match pinned(inputs, d, Some(o)) {
        Ok(spec) => spec,
        Err(b) => {
            p.blockers.push(b);
            return;
        }
    };
    let mut spec = with_foreign_labels(&desired_spec, &ospec);
    if d.spec.labels.as_ref().is_some_and(|l| l.contains_key(LABEL_COMPANION)) {
        keep_companion_domains(&mut spec, &ospec);
    }
    let want = normalise_service(&spec, net_names);
    let have = normalise_service(&ospec, net_names);
    if want == have {
        p.in_sync.push(ObjectRef::new(ObjectKind::Service, name));
        return;
    }
    let mut changes = Vec::new();
    diff("", Some(&have), Some(&want), &mut changes);
    if let Some(why) = held.get(&name) {
        p.held.push(Held {
            service: name,
            fields: changes.into_iter().map(|c| c.field).collect(),
            why: why.clone(),
        });
        return;
    }
    let reason = if !owned {
        Reason::Adopted
    } else if ospec.labels.as_ref().and_then(|l| l.get(LABEL_SPEC_HASH)) == Some(&d.hash) {
        Reason::Drifted
    } else {
        Reason::Changed
    };
    if !inputs.opts.allow_move {
        if let Some(b) = relocation_blocker(&name, &desired_spec, o, inputs.observed) {
            p.blockers.push(b);
        }
    }
    p.actions.push(Action::UpdateService {
        name,
        id: o.id.clone().unwrap_or_default(),
        version: o.version.as_ref().and_then(|v| v.index).unwrap_or(0),
        reason,
        changes,
        spec,
    });
}

/// The desired spec plus the labels others put on the observed service.
fn with_foreign_labels(desired: &ServiceSpec, observed: &ServiceSpec) -> ServiceSpec {
    let mut spec = desired.clone();
    let Some(olabels) = observed.labels.as_ref() else {
        return spec;
    };
    let previously: BTreeSet<&str> = olabels
        .get(LABEL_MANAGED)
        .map(|m| m.split(',').filter(|k| !k.is_empty()).collect())
        .unwrap_or_default();
    let labels = spec.labels.get_or_insert_with(HashMap::new);
    for (k, v) in olabels {
        let ours = k.starts_with("io.swarmlog.") || previously.contains(k.as_str()) || labels.contains_key(k);
        if !ours {
            labels.insert(k.clone(), v.clone());
        }
    }
    spec
}

/// The companion's `DOMAIN_*` variables and the label that says which of
/// them are swarmlog's belong to its patcher: carried over.
fn keep_companion_domains(spec: &mut ServiceSpec, observed: &ServiceSpec) {
    let owned = crate::letsencrypt::LABEL_OWNED;
    if let Some(v) = observed.labels.as_ref().and_then(|l| l.get(owned)) {
        spec.labels
            .get_or_insert_with(HashMap::new)
            .insert(owned.to_string(), v.clone());
    }
    let observed_env = observed
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    if let Some(c) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()) {
        let env = crate::letsencrypt::keep_domain_vars(&c.env.clone().unwrap_or_default(), &observed_env);
        c.env = (!env.is_empty()).then_some(env);
    }
}

/// A service with a volume may not move off the node that holds its data.
fn relocation_blocker(name: &str, desired: &ServiceSpec, observed: &Service, obs: &Observed) -> Option<Blocker> {
    let volumes: Vec<String> = desired
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.mounts.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.typ == Some(bollard::models::MountType::VOLUME))
        .filter_map(|m| m.source)
        .collect();
    if volumes.is_empty() {
        return None;
    }
    let constraints = constraints_of(desired);
    let sid = observed.id.as_deref()?;
    let nodes: BTreeMap<&str, &Node> = obs.nodes.iter().filter_map(|n| Some((n.id.as_deref()?, n))).collect();
    obs.tasks
        .iter()
        .filter(|t| t.service_id.as_deref() == Some(sid))
        .filter_map(|t| t.node_id.as_deref().and_then(|id| nodes.get(id)))
        .find(|node| !node_matches(node, &constraints))
        .map(|node| Blocker::WouldMove {
            service: name.to_string(),
            host: node
                .description
                .as_ref()
                .and_then(|d| d.hostname.clone())
                .unwrap_or_default(),
            volumes,
        })
}
