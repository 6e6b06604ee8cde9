//! Plan step (pure): the desired state against the observed swarm, as an
//! ordered list of actions. A converged swarm plans nothing.
//!
//! Services are compared as normalised JSON: the defaults the daemon fills in
//! (runtime, isolation, endpoint mode, one replica), object IDs in place of
//! names, and Go's zero values are taken out of both sides first. Labels that
//! others added to an owned service are foreign: never drift, and kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{ConfigSpec, NetworkCreateRequest, Node, SecretSpec, ServiceSpec};
use serde::Serialize;
use serde_json::Value as Json;

use crate::desired::{DesiredState, LABEL_COMPANION, LABEL_MANAGED, LABEL_SPEC_HASH, LABEL_STACK};
use crate::observe::Observed;

/// Choices that loosen the safety rules; all off by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// Take over objects of the same name that swarmlog does not own.
    pub adopt: bool,
    /// Allow a plan that removes every service the stack owns.
    pub allow_remove_all: bool,
    /// Allow moving a service with a volume away from the node holding it.
    pub allow_move: bool,
}

/// Why a service is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The desired state changed (values, chart).
    Changed,
    /// Someone changed the service out of band.
    Drifted,
    /// An unowned service of the same name is taken over (`--adopt`).
    Adopted,
}

/// One changed field of an update.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub field: String,
    pub from: Option<Json>,
    pub to: Option<Json>,
}

/// One write.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    CreateNetwork {
        name: String,
        spec: NetworkCreateRequest,
    },
    CreateConfig {
        name: String,
        spec: ConfigSpec,
    },
    CreateSecret {
        name: String,
        spec: SecretSpec,
    },
    CreateService {
        name: String,
        spec: ServiceSpec,
    },
    UpdateService {
        name: String,
        id: String,
        version: u64,
        reason: Reason,
        changes: Vec<Change>,
        spec: ServiceSpec,
    },
    RemoveService {
        name: String,
        id: String,
    },
    RemoveConfig {
        name: String,
        id: String,
    },
    RemoveSecret {
        name: String,
        id: String,
    },
    RemoveNetwork {
        name: String,
        id: String,
        /// A second network of a name the stack already has (removed first).
        duplicate: bool,
    },
}

impl Action {
    /// `create`, `update` or `remove`.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::CreateNetwork { .. }
            | Action::CreateConfig { .. }
            | Action::CreateSecret { .. }
            | Action::CreateService { .. } => "create",
            Action::UpdateService { .. } => "update",
            _ => "remove",
        }
    }

    /// `network`, `config`, `secret` or `service`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::CreateNetwork { .. } | Action::RemoveNetwork { .. } => "network",
            Action::CreateConfig { .. } | Action::RemoveConfig { .. } => "config",
            Action::CreateSecret { .. } | Action::RemoveSecret { .. } => "secret",
            _ => "service",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Action::CreateNetwork { name, .. }
            | Action::CreateConfig { name, .. }
            | Action::CreateSecret { name, .. }
            | Action::CreateService { name, .. }
            | Action::UpdateService { name, .. }
            | Action::RemoveService { name, .. }
            | Action::RemoveConfig { name, .. }
            | Action::RemoveSecret { name, .. }
            | Action::RemoveNetwork { name, .. } => name,
        }
    }

    /// Apply order: creates of networks, configs, secrets; service creates
    /// and updates; then removals of services, configs, secrets, networks.
    pub fn phase(&self) -> u8 {
        match self {
            Action::RemoveNetwork { duplicate: true, .. } => 0,
            Action::CreateNetwork { .. } => 0,
            Action::CreateConfig { .. } | Action::CreateSecret { .. } => 1,
            Action::CreateService { .. } | Action::UpdateService { .. } => 2,
            Action::RemoveService { .. } => 3,
            Action::RemoveConfig { .. } | Action::RemoveSecret { .. } => 4,
            Action::RemoveNetwork { duplicate: false, .. } => 5,
        }
    }
}

/// What the swarm needs, and what stands in the way.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub stack: String,
    pub actions: Vec<Action>,
    /// Objects of a desired name that swarmlog does not own: left untouched.
    pub conflicts: Vec<String>,
    /// Missing preconditions and refused changes: apply writes nothing while any stands.
    pub blockers: Vec<String>,
    pub warnings: Vec<String>,
    /// Services whose create or update waits for a failed precondition (the
    /// Elasticsearch preflight): not written, never removed; others go on.
    pub held: Vec<String>,
    /// Objects already as desired: `kind name`.
    pub in_sync: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn count(&self, verb: &str) -> usize {
        self.actions.iter().filter(|a| a.verb() == verb).count()
    }
}

fn owned_by(labels: Option<&HashMap<String, String>>, stack: &str) -> bool {
    labels.and_then(|l| l.get(LABEL_STACK)).map(String::as_str) == Some(stack)
}

/// Computes the plan. Pure: the same inputs give the same plan.
pub fn plan(desired: &DesiredState, observed: &Observed, opts: PlanOptions) -> Plan {
    let stack = desired.stack.as_str();
    let mut p = Plan {
        stack: stack.to_string(),
        ..Plan::default()
    };

    // Preconditions: what the stack uses but does not create must exist.
    let network_names: BTreeSet<&str> = observed.networks.iter().filter_map(|n| n.name.as_deref()).collect();
    for name in &desired.external.networks {
        if !network_names.contains(name.as_str()) {
            p.blockers.push(format!(
                "external network {name} does not exist (create it: docker network create --driver overlay --attachable {name})"
            ));
        }
    }
    let config_names: BTreeSet<&str> = observed
        .configs
        .iter()
        .filter_map(|c| c.spec.as_ref()?.name.as_deref())
        .collect();
    for name in &desired.external.configs {
        if !config_names.contains(name.as_str()) {
            p.blockers.push(format!("external config {name} does not exist"));
        }
    }
    let secret_names: BTreeSet<&str> = observed
        .secrets
        .iter()
        .filter_map(|c| c.spec.as_ref()?.name.as_deref())
        .collect();
    for name in &desired.external.secrets {
        if !secret_names.contains(name.as_str()) {
            p.blockers.push(format!(
                "external secret {name} does not exist (create it: docker secret create {name} FILE)"
            ));
        }
    }
    for svc in &desired.services {
        let constraints = constraints_of(&svc.spec);
        if constraints.is_empty() {
            continue;
        }
        let matching: Vec<&Node> = observed
            .nodes
            .iter()
            .filter(|n| node_matches(n, &constraints))
            .collect();
        let name = svc.spec.name.clone().unwrap_or_default();
        if matching.is_empty() {
            p.blockers.push(format!(
                "no node satisfies the placement of {name} ({}){}",
                constraints.join(", "),
                label_hint(&constraints)
            ));
        } else if !matching.iter().any(|n| node_ready(n)) {
            p.warnings.push(format!("every node that may run {name} is down"));
        }
    }

    // Networks.
    let mut net_by_name: HashMap<&str, &bollard::models::Network> = HashMap::new();
    for n in &observed.networks {
        if let Some(name) = n.name.as_deref() {
            // Swarm-scoped first: a local network of the same name is not ours.
            if n.scope.as_deref() == Some("swarm") || !net_by_name.contains_key(name) {
                net_by_name.insert(name, n);
            }
        }
    }
    let net_id_to_name: HashMap<String, String> = observed
        .networks
        .iter()
        .filter_map(|n| Some((n.id.clone()?, n.name.clone()?)))
        .collect();
    // Engines before API 1.44 accept two networks of one name when two
    // writers race; keep the oldest (then smallest ID) and remove the others
    // first, or services cannot resolve the name.
    let mut duplicates: BTreeSet<String> = BTreeSet::new();
    let mut by_name: BTreeMap<&str, Vec<&bollard::models::Network>> = BTreeMap::new();
    for n in observed.networks.iter().filter(|n| owned_by(n.labels.as_ref(), stack)) {
        if let Some(name) = n.name.as_deref() {
            by_name.entry(name).or_default().push(n);
        }
    }
    for (name, mut nets) in by_name {
        if nets.len() < 2 {
            continue;
        }
        nets.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
        for extra in &nets[1..] {
            let id = extra.id.clone().unwrap_or_default();
            duplicates.insert(id.clone());
            p.actions.push(Action::RemoveNetwork {
                name: name.to_string(),
                id,
                duplicate: true,
            });
        }
        net_by_name.insert(name, nets[0]);
    }
    let mut wanted_networks = BTreeSet::new();
    for n in &desired.networks {
        wanted_networks.insert(n.spec.name.clone());
        match net_by_name.get(n.spec.name.as_str()) {
            None => p.actions.push(Action::CreateNetwork {
                name: n.spec.name.clone(),
                spec: n.spec.clone(),
            }),
            Some(existing) if !owned_by(existing.labels.as_ref(), stack) => {
                if opts.adopt {
                    p.warnings.push(format!(
                        "network {} is not owned by swarmlog; adopted as it is (networks cannot be relabelled)",
                        n.spec.name
                    ));
                } else {
                    p.conflicts.push(format!(
                        "network {} exists and is not owned by stack {stack}; left untouched (pass --adopt to use it)",
                        n.spec.name
                    ));
                }
            }
            Some(existing) => {
                let hash = existing.labels.as_ref().and_then(|l| l.get(LABEL_SPEC_HASH));
                if hash != Some(&n.hash) {
                    p.warnings.push(format!(
                        "network {} differs from the desired one; networks cannot be changed in place (remove the stack's services and the network to re-create it)",
                        n.spec.name
                    ));
                }
                p.in_sync.push(format!("network {}", n.spec.name));
            }
        }
    }

    // Configs and secrets: immutable, named by content.
    let owned_configs: HashMap<String, bool> = observed
        .configs
        .iter()
        .filter_map(|c| {
            let spec = c.spec.as_ref()?;
            Some((spec.name.clone()?, owned_by(spec.labels.as_ref(), stack)))
        })
        .collect();
    let owned_secrets: HashMap<String, bool> = observed
        .secrets
        .iter()
        .filter_map(|c| {
            let spec = c.spec.as_ref()?;
            Some((spec.name.clone()?, owned_by(spec.labels.as_ref(), stack)))
        })
        .collect();
    let wanted_configs = plan_file_objects(
        "config",
        desired
            .configs
            .iter()
            .map(|c| (c.spec.name.clone().unwrap_or_default(), c.spec.clone())),
        &owned_configs,
        |name, spec| Action::CreateConfig { name, spec },
        stack,
        opts.adopt,
        &mut p,
    );
    let wanted_secrets = plan_file_objects(
        "secret",
        desired
            .secrets
            .iter()
            .map(|c| (c.spec.name.clone().unwrap_or_default(), c.spec.clone())),
        &owned_secrets,
        |name, spec| Action::CreateSecret { name, spec },
        stack,
        opts.adopt,
        &mut p,
    );

    // Services.
    let mut wanted_services = BTreeSet::new();
    for d in &desired.services {
        let name = d.spec.name.clone().unwrap_or_default();
        wanted_services.insert(name.clone());
        let Some(o) = observed
            .services
            .iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name.as_str()))
        else {
            if let Some(why) = desired.held.get(&name) {
                p.held.push(format!("service {name} not created: {why}"));
                continue;
            }
            p.actions.push(Action::CreateService {
                name,
                spec: d.spec.clone(),
            });
            continue;
        };
        let ospec = o.spec.clone().unwrap_or_default();
        let owned = owned_by(ospec.labels.as_ref(), stack);
        if !owned && !opts.adopt {
            p.conflicts.push(format!(
                "service {name} exists and is not owned by stack {stack}; left untouched (pass --adopt to take it over)"
            ));
            continue;
        }
        let mut spec = with_foreign_labels(&d.spec, &ospec);
        if d.spec.labels.as_ref().is_some_and(|l| l.contains_key(LABEL_COMPANION)) {
            keep_companion_domains(&mut spec, &ospec);
        }
        let want = normalise_service(&spec, &net_id_to_name);
        let have = normalise_service(&ospec, &net_id_to_name);
        if want == have {
            p.in_sync.push(format!("service {name}"));
            continue;
        }
        let mut changes = Vec::new();
        diff("", Some(&have), Some(&want), &mut changes);
        if let Some(why) = desired.held.get(&name) {
            let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
            p.held
                .push(format!("service {name} not updated ({}): {why}", fields.join(", ")));
            continue;
        }
        let reason = if !owned {
            Reason::Adopted
        } else if ospec.labels.as_ref().and_then(|l| l.get(LABEL_SPEC_HASH)) == Some(&d.hash) {
            Reason::Drifted
        } else {
            Reason::Changed
        };
        if let Some(b) = relocation_blocker(&name, &d.spec, o, observed, opts) {
            p.blockers.push(b);
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

    // Removals: only what this stack owns and no longer wants. A companion
    // the user labelled for this stack (no spec hash: swarmlog did not
    // create it) is found by that label, not owned.
    let user_companion = |l: Option<&HashMap<String, String>>| {
        l.is_some_and(|l| l.contains_key(LABEL_COMPANION) && !l.contains_key(LABEL_SPEC_HASH))
    };
    let owned_services: Vec<&bollard::models::Service> = observed
        .services
        .iter()
        .map(|s| (s, s.spec.as_ref().and_then(|s| s.labels.as_ref())))
        .filter(|(_, l)| owned_by(*l, stack) && !user_companion(*l))
        .map(|(s, _)| s)
        .collect();
    let mut removed = 0;
    for s in &owned_services {
        let name = s.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default();
        if !wanted_services.contains(&name) {
            removed += 1;
            p.actions.push(Action::RemoveService {
                name,
                id: s.id.clone().unwrap_or_default(),
            });
        }
    }
    if removed > 0 && removed == owned_services.len() && !opts.allow_remove_all {
        p.blockers.push(format!(
            "this plan removes every service of stack {stack} ({removed}); refusing (an empty or truncated values file?). Pass --allow-remove-all if that is what you want"
        ));
    }
    // Configs still referenced by a service that stays (another stack's, say) are kept;
    // the stack's own services will reference only the wanted configs.
    let referenced: BTreeSet<String> = observed
        .services
        .iter()
        // Services of others stay as they are, with the configs they use.
        .filter(|s| {
            let spec = s.spec.as_ref();
            // A held service keeps the configs it runs with until it is updated.
            let held = spec
                .and_then(|s| s.name.as_ref())
                .is_some_and(|n| desired.held.contains_key(n));
            held || !owned_by(spec.and_then(|s| s.labels.as_ref()), stack)
        })
        .flat_map(|s| {
            s.spec
                .as_ref()
                .and_then(|s| s.task_template.as_ref())
                .and_then(|t| t.container_spec.as_ref())
                .and_then(|c| c.configs.clone())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| c.config_name)
        })
        .collect();
    for c in &observed.configs {
        let spec = c.spec.as_ref();
        let name = spec.and_then(|s| s.name.clone()).unwrap_or_default();
        if owned_by(spec.and_then(|s| s.labels.as_ref()), stack)
            && !wanted_configs.contains(&name)
            && !referenced.contains(&name)
        {
            p.actions.push(Action::RemoveConfig {
                name,
                id: c.id.clone().unwrap_or_default(),
            });
        }
    }
    for c in &observed.secrets {
        let spec = c.spec.as_ref();
        let name = spec.and_then(|s| s.name.clone()).unwrap_or_default();
        if owned_by(spec.and_then(|s| s.labels.as_ref()), stack) && !wanted_secrets.contains(&name) {
            p.actions.push(Action::RemoveSecret {
                name,
                id: c.id.clone().unwrap_or_default(),
            });
        }
    }
    for n in &observed.networks {
        let name = n.name.clone().unwrap_or_default();
        let id = n.id.clone().unwrap_or_default();
        if owned_by(n.labels.as_ref(), stack) && !wanted_networks.contains(&name) && !duplicates.contains(&id) {
            p.actions.push(Action::RemoveNetwork {
                name,
                id,
                duplicate: false,
            });
        }
    }
    p.actions
        .sort_by(|a, b| a.phase().cmp(&b.phase()).then_with(|| a.name().cmp(b.name())));
    p.conflicts.sort();
    p.blockers.sort();
    p.in_sync.sort();
    p
}

/// Creates the configs (or secrets) that do not exist; one of the same name
/// that the stack does not own is a conflict. `existing`: name -> owned.
/// Returns the wanted names.
fn plan_file_objects<S>(
    kind: &str,
    wanted: impl Iterator<Item = (String, S)>,
    existing: &HashMap<String, bool>,
    create: impl Fn(String, S) -> Action,
    stack: &str,
    adopt: bool,
    p: &mut Plan,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (name, spec) in wanted {
        names.insert(name.clone());
        match existing.get(&name) {
            None => p.actions.push(create(name, spec)),
            Some(false) if !adopt => p.conflicts.push(format!(
                "{kind} {name} exists and is not owned by stack {stack}; left untouched (pass --adopt to use it)"
            )),
            Some(_) => p.in_sync.push(format!("{kind} {name}")),
        }
    }
    names
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

/// The companion's `DOMAIN_*` variables belong to its patcher: carried over.
fn keep_companion_domains(spec: &mut ServiceSpec, observed: &ServiceSpec) {
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

/// Comparable JSON of a service spec (see the module docs).
pub fn normalise_service(spec: &ServiceSpec, net_names: &HashMap<String, String>) -> Json {
    let mut v = serde_json::to_value(spec).unwrap_or(Json::Null);
    if let Some(tt) = v.get_mut("TaskTemplate") {
        if let Some(nets) = tt.get_mut("Networks").and_then(Json::as_array_mut) {
            for n in nets.iter_mut() {
                if let Some(t) = n.get("Target").and_then(Json::as_str) {
                    let name = net_names.get(t).cloned().unwrap_or_else(|| t.to_string());
                    n["Target"] = Json::String(name);
                }
            }
            nets.sort_by(|a, b| a["Target"].as_str().cmp(&b["Target"].as_str()));
        }
        if tt.get("Runtime").and_then(Json::as_str) == Some("container") {
            tt["Runtime"] = Json::Null;
        }
        if let Some(c) = tt.get_mut("ContainerSpec") {
            if c.get("Isolation").and_then(Json::as_str) == Some("default") {
                c["Isolation"] = Json::Null;
            }
            for (list, id) in [("Configs", "ConfigID"), ("Secrets", "SecretID")] {
                if let Some(items) = c.get_mut(list).and_then(Json::as_array_mut) {
                    for i in items {
                        if let Some(o) = i.as_object_mut() {
                            o.remove(id);
                        }
                    }
                }
            }
        }
    }
    // Enums stored as protobuf zero values come back filled in.
    for cfg in ["UpdateConfig", "RollbackConfig"] {
        if let Some(u) = v.get_mut(cfg).and_then(Json::as_object_mut) {
            u.entry("FailureAction").or_insert(Json::Null);
            if u["FailureAction"].is_null() {
                u["FailureAction"] = Json::String("pause".into());
            }
            u.entry("Order").or_insert(Json::Null);
            if u["Order"].is_null() {
                u["Order"] = Json::String("stop-first".into());
            }
        }
    }
    if let Some(r) = v
        .get_mut("TaskTemplate")
        .and_then(|t| t.get_mut("RestartPolicy"))
        .and_then(Json::as_object_mut)
    {
        r.entry("Condition").or_insert(Json::Null);
        if r["Condition"].is_null() {
            r["Condition"] = Json::String("any".into());
        }
    }
    if let Some(e) = v.get_mut("EndpointSpec") {
        if e.get("Mode").and_then(Json::as_str) == Some("vip") {
            e["Mode"] = Json::Null;
        }
    }
    // One replica when none is given; zero is meaningful here, so mark it.
    if let Some(r) = v.get_mut("Mode").and_then(|m| m.get_mut("Replicated")) {
        let n = r.get("Replicas").and_then(Json::as_i64).unwrap_or(1);
        r["Replicas"] = Json::String(format!("replicas={n}"));
    }
    prune(&mut v);
    v
}

/// Drops Go's zero values (null, false, 0, "", {}, []) recursively: the
/// engine omits them, so they mean "unset" on both sides.
fn prune(v: &mut Json) {
    match v {
        Json::Object(m) => {
            for (_, x) in m.iter_mut() {
                prune(x);
            }
            m.retain(|_, x| !is_zero(x));
        }
        Json::Array(a) => {
            for x in a.iter_mut() {
                prune(x);
            }
        }
        _ => {}
    }
}

fn is_zero(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Bool(b) => !b,
        Json::Number(n) => n.as_f64() == Some(0.0),
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(m) => m.is_empty(),
    }
}

/// Field-level differences between two normalised specs.
fn diff(path: &str, have: Option<&Json>, want: Option<&Json>, out: &mut Vec<Change>) {
    match (have, want) {
        (Some(Json::Object(a)), Some(Json::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(&p, a.get(k), b.get(k), out);
            }
        }
        (a, b) if a != b => out.push(Change {
            field: path.to_string(),
            from: a.cloned(),
            to: b.cloned(),
        }),
        _ => {}
    }
}

/// The placement constraints of a spec.
pub fn constraints_of(spec: &ServiceSpec) -> Vec<String> {
    spec.task_template
        .as_ref()
        .and_then(|t| t.placement.as_ref())
        .and_then(|p| p.constraints.clone())
        .unwrap_or_default()
}

fn node_ready(n: &Node) -> bool {
    n.status.as_ref().and_then(|s| s.state) == Some(bollard::models::NodeState::READY)
}

/// Whether a node satisfies every constraint (`node.labels.x == y`, `node.role != manager`, ...).
pub fn node_matches(node: &Node, constraints: &[String]) -> bool {
    constraints.iter().all(|c| constraint_matches(node, c))
}

fn constraint_matches(node: &Node, c: &str) -> bool {
    let (key, value, equal) = if let Some((k, v)) = c.split_once("==") {
        (k.trim(), v.trim(), true)
    } else if let Some((k, v)) = c.split_once("!=") {
        (k.trim(), v.trim(), false)
    } else {
        return false;
    };
    let spec = node.spec.as_ref();
    let desc = node.description.as_ref();
    let actual: Option<String> = match key {
        "node.id" => node.id.clone(),
        "node.hostname" => desc.and_then(|d| d.hostname.clone()),
        "node.role" => spec.and_then(|s| s.role).map(|r| r.to_string()),
        "node.platform.os" => desc.and_then(|d| d.platform.as_ref()?.os.clone()),
        "node.platform.arch" => desc.and_then(|d| d.platform.as_ref()?.architecture.clone()),
        k if k.starts_with("node.labels.") => {
            spec.and_then(|s| s.labels.as_ref()?.get(&k["node.labels.".len()..]).cloned())
        }
        k if k.starts_with("engine.labels.") => desc.and_then(|d| {
            d.engine
                .as_ref()?
                .labels
                .as_ref()?
                .get(&k["engine.labels.".len()..])
                .cloned()
        }),
        _ => None,
    };
    // Swarm compares case-insensitively; a missing value never equals.
    let same = actual.is_some_and(|a| a.eq_ignore_ascii_case(value));
    same == equal
}

fn label_hint(constraints: &[String]) -> String {
    constraints
        .iter()
        .find_map(|c| {
            let (k, v) = c.split_once("==")?;
            let label = k.trim().strip_prefix("node.labels.")?;
            Some(format!(
                "; label a node: docker node update --label-add {label}={} NODE",
                v.trim()
            ))
        })
        .unwrap_or_default()
}

/// A service with a volume may not move off the node that holds its data.
fn relocation_blocker(
    name: &str,
    desired: &ServiceSpec,
    observed: &bollard::models::Service,
    obs: &Observed,
    opts: PlanOptions,
) -> Option<String> {
    if opts.allow_move {
        return None;
    }
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
    for t in obs.tasks.iter().filter(|t| t.service_id.as_deref() == Some(sid)) {
        let Some(node) = t.node_id.as_deref().and_then(|id| nodes.get(id)) else {
            continue;
        };
        if !node_matches(node, &constraints) {
            let host = node
                .description
                .as_ref()
                .and_then(|d| d.hostname.clone())
                .unwrap_or_default();
            return Some(format!(
                "updating {name} would move it off node {host}, which holds its volume {} (a node-local volume: moving means an empty one); pass --allow-move to accept",
                volumes.join(", ")
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests;
