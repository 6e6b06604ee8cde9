//! Render step, desired state: networks — the network objects the stack
//! creates (only those some service uses, as `docker stack deploy` does) and
//! each service's network attachments.

use std::collections::{BTreeMap, BTreeSet};

use bollard::models::{NetworkAttachmentConfig, NetworkCreateRequest};

use super::{owned_labels, scope, spec_hash, Ctx, DesiredNetwork, LABEL_SPEC_HASH};
use crate::render::compose::model::{NetworkDef, Service};

/// The stack's networks: those it creates, the engine name of each compose
/// key, and the external ones it uses.
pub(super) struct Networks {
    pub desired: Vec<DesiredNetwork>,
    pub names: BTreeMap<String, String>,
    pub external: Vec<String>,
}

/// The networks the services use, converted; unknown ones are problems.
pub(super) fn network_objects(ctx: &mut Ctx) -> Networks {
    let used = used_networks(ctx);
    let compose = &ctx.loaded.compose;
    let mut out = Networks {
        desired: Vec::new(),
        names: BTreeMap::new(),
        external: Vec::new(),
    };
    for key in &used {
        let def = compose.networks.get(key).cloned().unwrap_or_default();
        if def.external {
            let name = def.name.clone().unwrap_or_else(|| key.clone());
            out.names.insert(key.clone(), name.clone());
            out.external.push(name);
            continue;
        }
        let network = network_object(ctx.stack, key, &def);
        out.names.insert(key.clone(), network.spec.name.clone());
        out.desired.push(network);
    }
    out
}

/// The compose keys of the networks some service uses (`default` for a
/// service that names none).
fn used_networks(ctx: &mut Ctx) -> BTreeSet<String> {
    let compose = &ctx.loaded.compose;
    let mut used = BTreeSet::new();
    for (name, svc) in &compose.services {
        if svc.networks.is_empty() {
            used.insert("default".to_string());
        }
        for net in svc.networks.keys() {
            if net != "default" && !compose.networks.contains_key(net) {
                ctx.problem(
                    &["services", name, "networks", net],
                    format!("network {net:?} is not defined under the top-level networks"),
                );
            }
            used.insert(net.clone());
        }
    }
    used
}

/// One network the stack creates, with its labels and spec hash.
fn network_object(stack: &str, key: &str, def: &NetworkDef) -> DesiredNetwork {
    let name = def.name.clone().unwrap_or_else(|| scope(stack, key));
    let mut spec = NetworkCreateRequest {
        name,
        driver: Some(def.driver.clone().unwrap_or_else(|| "overlay".to_string())),
        internal: def.internal.filter(|i| *i),
        attachable: def.attachable.filter(|a| *a),
        options: (!def.driver_opts.is_empty())
            .then(|| def.driver_opts.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        labels: Some(owned_labels(stack, &def.labels)),
        ..Default::default()
    };
    let hash = spec_hash(&spec);
    if let Some(l) = spec.labels.as_mut() {
        l.insert(LABEL_SPEC_HASH.to_string(), hash.clone());
    }
    DesiredNetwork {
        key: key.to_string(),
        spec,
        hash,
    }
}

/// A service's network attachments, sorted by network name; the service key
/// is always one of its aliases.
pub(super) fn attachments(
    stack: &str,
    key: &str,
    svc: &Service,
    network_names: &BTreeMap<String, String>,
) -> Vec<NetworkAttachmentConfig> {
    let attachments: Vec<(String, Vec<String>, BTreeMap<String, String>)> = if svc.networks.is_empty() {
        vec![("default".to_string(), Vec::new(), BTreeMap::new())]
    } else {
        svc.networks
            .iter()
            .map(|(k, n)| (k.clone(), n.aliases.clone(), n.driver_opts.clone()))
            .collect()
    };
    let mut nets: Vec<NetworkAttachmentConfig> = Vec::new();
    for (net, aliases, driver_opts) in attachments {
        let target = network_names.get(&net).cloned().unwrap_or_else(|| scope(stack, &net));
        let mut aliases = aliases;
        aliases.push(key.to_string());
        nets.push(NetworkAttachmentConfig {
            target: Some(target),
            aliases: Some(aliases),
            driver_opts: (!driver_opts.is_empty()).then(|| driver_opts.into_iter().collect()),
        });
    }
    nets.sort_by(|a, b| a.target.cmp(&b.target));
    nets
}
