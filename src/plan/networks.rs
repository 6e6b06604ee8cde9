//! Plan, networks (pure): create the missing ones, remove duplicates left
//! by racing writers, report foreign ones and changed specs (networks are
//! immutable).

use std::collections::{BTreeMap, HashMap};

use bollard::models::Network;

use super::{Action, Conflict, Inputs, ObjectKind, ObjectRef, Plan, Wanted};
use crate::render::desired::{DesiredNetwork, LABEL_SPEC_HASH};

/// Plans the stack's networks; returns network ID -> name, for comparing
/// services (the engine stores IDs where the spec had names).
pub(super) fn plan(
    inputs: &Inputs,
    desired: &[DesiredNetwork],
    wanted: &mut Wanted,
    p: &mut Plan,
) -> HashMap<String, String> {
    let observed = &inputs.observed.networks;
    let mut by_name: HashMap<&str, &Network> = HashMap::new();
    for n in observed {
        if let Some(name) = n.name.as_deref() {
            // Swarm-scoped first: a local network of the same name is not ours.
            if n.scope.as_deref() == Some("swarm") || !by_name.contains_key(name) {
                by_name.insert(name, n);
            }
        }
    }
    for (name, keep) in remove_duplicates(inputs, wanted, p) {
        by_name.insert(name, keep);
    }
    for n in desired {
        let name = &n.spec.name;
        wanted.networks.insert(name.clone());
        match by_name.get(name.as_str()) {
            None => p.actions.push(Action::CreateNetwork {
                name: name.clone(),
                spec: n.spec.clone(),
            }),
            Some(existing) if !inputs.owns(existing.labels.as_ref()) => {
                if inputs.opts.adopt {
                    p.warnings.push(format!(
                        "network {name} is not owned by swarmlog; adopted as it is (networks cannot be relabelled)"
                    ));
                } else {
                    p.conflicts.push(Conflict {
                        object: ObjectRef::new(ObjectKind::Network, name.clone()),
                        stack: inputs.stack.to_string(),
                    });
                }
            }
            Some(existing) => {
                let hash = existing.labels.as_ref().and_then(|l| l.get(LABEL_SPEC_HASH));
                if hash != Some(&n.hash) {
                    p.warnings.push(format!(
                        "network {name} differs from the desired one; networks cannot be changed in place (remove the stack's services and the network to re-create it)"
                    ));
                }
                p.in_sync.push(ObjectRef::new(ObjectKind::Network, name.clone()));
            }
        }
    }
    observed
        .iter()
        .filter_map(|n| Some((n.id.clone()?, n.name.clone()?)))
        .collect()
}

/// Engines before API 1.44 accept two networks of one name when two writers
/// race; keep the oldest (then smallest ID) and remove the others first, or
/// services cannot resolve the name. Returns the one kept, per name.
fn remove_duplicates<'a>(inputs: &Inputs<'a>, wanted: &mut Wanted, p: &mut Plan) -> Vec<(&'a str, &'a Network)> {
    let mut by_name: BTreeMap<&str, Vec<&Network>> = BTreeMap::new();
    for n in inputs
        .observed
        .networks
        .iter()
        .filter(|n| inputs.owns(n.labels.as_ref()))
    {
        if let Some(name) = n.name.as_deref() {
            by_name.entry(name).or_default().push(n);
        }
    }
    let mut kept = Vec::new();
    for (name, mut nets) in by_name {
        if nets.len() < 2 {
            continue;
        }
        nets.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        for extra in &nets[1..] {
            let id = extra.id.clone().unwrap_or_default();
            wanted.duplicate_networks.insert(id.clone());
            p.actions.push(Action::RemoveNetwork {
                name: name.to_string(),
                id,
                duplicate: true,
            });
        }
        kept.push((name, nets[0]));
    }
    kept
}
