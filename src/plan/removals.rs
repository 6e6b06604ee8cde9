//! Plan, removals (pure): only what the stack owns and no longer wants.
//! A plan that would remove every service of the stack is refused; configs
//! and secrets still used by a service that stays as it is (another
//! stack's, or a held one of ours) and those a service's spec to be written
//! names (a cluster node the roll marks before its restart keeps its old
//! files) are kept; volumes are never touched.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{Service, ServiceSpec};

use super::files::{observed_configs, observed_secrets, FileObject};
use super::{Action, Blocker, Inputs, Plan, Wanted};
use crate::render::desired::{DesiredService, LABEL_COMPANION, LABEL_SPEC_HASH};

pub(super) fn plan(
    inputs: &Inputs,
    desired: &[DesiredService],
    held: &BTreeMap<String, String>,
    wanted: &Wanted,
    p: &mut Plan,
) {
    let o = inputs.observed;
    services(inputs, held, wanted, p);
    // Services that keep running with the files they use now.
    let staying: Vec<&Service> = o
        .services
        .iter()
        .filter(|s| {
            let spec = s.spec.as_ref();
            let is_held = spec.and_then(|s| s.name.as_ref()).is_some_and(|n| held.contains_key(n));
            is_held || !inputs.owns(spec.and_then(|s| s.labels.as_ref()))
        })
        .collect();
    let (mut used_configs, mut used_secrets) = files_in_use(staying.iter().filter_map(|s| s.spec.as_ref()));
    // What the specs to be written name: the desired ones, and those the
    // roll puts in their place (its label-only writes keep a node's files).
    let (configs, secrets) = files_in_use(desired.iter().map(|d| &d.spec));
    used_configs.extend(configs);
    used_secrets.extend(secrets);
    for f in observed_configs(&o.configs) {
        if removable(inputs, &f, &wanted.configs, &used_configs) {
            p.actions.push(Action::RemoveConfig {
                name: f.name.to_string(),
                id: f.id.to_string(),
            });
        }
    }
    for f in observed_secrets(&o.secrets) {
        if removable(inputs, &f, &wanted.secrets, &used_secrets) {
            p.actions.push(Action::RemoveSecret {
                name: f.name.to_string(),
                id: f.id.to_string(),
            });
        }
    }
    for n in &o.networks {
        let name = n.name.clone().unwrap_or_default();
        let id = n.id.clone().unwrap_or_default();
        if inputs.owns(n.labels.as_ref())
            && !wanted.networks.contains(&name)
            && !wanted.duplicate_networks.contains(&id)
        {
            p.actions.push(Action::RemoveNetwork {
                name,
                id,
                duplicate: false,
            });
        }
    }
}

/// A companion the user labelled for this stack (no spec hash: swarmlog did
/// not create it) is found by that label, not owned.
fn user_companion(labels: Option<&HashMap<String, String>>) -> bool {
    labels.is_some_and(|l| l.contains_key(LABEL_COMPANION) && !l.contains_key(LABEL_SPEC_HASH))
}

fn services(inputs: &Inputs, held: &BTreeMap<String, String>, wanted: &Wanted, p: &mut Plan) {
    let owned: Vec<&Service> = inputs
        .observed
        .services
        .iter()
        .filter(|s| {
            let labels = s.spec.as_ref().and_then(|s| s.labels.as_ref());
            inputs.owns(labels) && !user_companion(labels)
        })
        .collect();
    let mut removed = 0;
    for s in &owned {
        let name = s.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default();
        if let (false, Some(why)) = (wanted.services.contains(&name), held.get(&name)) {
            // Held and no longer desired: kept as it is, said why.
            p.held.push(super::Held {
                service: name,
                fields: Vec::new(),
                why: why.clone(),
            });
        } else if !wanted.services.contains(&name) {
            removed += 1;
            p.actions.push(Action::RemoveService {
                name,
                id: s.id.clone().unwrap_or_default(),
            });
        }
    }
    if removed > 0 && removed == owned.len() && !inputs.opts.allow_remove_all {
        p.blockers.push(Blocker::RemovesAll {
            stack: inputs.stack.to_string(),
            count: removed,
        });
    }
}

fn removable(inputs: &Inputs, f: &FileObject, wanted: &BTreeSet<String>, used: &BTreeSet<String>) -> bool {
    inputs.owns(f.labels) && !wanted.contains(f.name) && !used.contains(f.name)
}

/// Names of the configs and of the secrets the given services use.
fn files_in_use<'a>(specs: impl Iterator<Item = &'a ServiceSpec>) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut configs = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for c in specs.filter_map(|s| s.task_template.as_ref()?.container_spec.as_ref()) {
        configs.extend(c.configs.iter().flatten().filter_map(|r| r.config_name.clone()));
        secrets.extend(c.secrets.iter().flatten().filter_map(|r| r.secret_name.clone()));
    }
    (configs, secrets)
}
