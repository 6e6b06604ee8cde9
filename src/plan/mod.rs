//! Plan step (pure): the desired state against the observed swarm, as an
//! ordered list of typed actions, plus what stands in the way (conflicts,
//! blockers, held services), each naming its object. A converged swarm
//! plans nothing. One sub-step per file: preconditions, networks, files
//! (configs and secrets), services, removals; normalise and placement are
//! the comparisons they share.

pub mod cluster;
pub mod converge;
mod files;
mod networks;
pub mod normalise;
pub mod pinning;
pub mod placement;
mod preconditions;
pub mod redact;
mod removals;
pub mod roll;
mod services;

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use bollard::models::{ConfigSpec, NetworkCreateRequest, SecretSpec, ServiceSpec};
use serde::Serialize;
use serde_json::Value as Json;

use crate::engine::Observed;
use crate::render::desired::{DesiredState, LABEL_STACK};

pub use normalise::normalise_service;
pub use placement::{constraints_of, node_matches, selector};

/// The kinds of object a stack is made of (volumes are never acted on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Network,
    Config,
    Secret,
    Service,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Network => "network",
            ObjectKind::Config => "config",
            ObjectKind::Secret => "secret",
            ObjectKind::Service => "service",
        }
    }
}

impl fmt::Display for ObjectKind {
    /// Honours width and alignment (`{:<8}` in the plan's table).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One object, by kind and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: ObjectKind, name: impl Into<String>) -> ObjectRef {
        ObjectRef {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// An object of a desired name that the stack does not own: left untouched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    pub object: ObjectRef,
    pub stack: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let then = match self.object.kind {
            ObjectKind::Service => "take it over",
            _ => "use it",
        };
        write!(
            f,
            "{} exists and is not owned by stack {}; left untouched (pass --adopt to {then})",
            self.object, self.stack
        )
    }
}

/// A missing precondition or a refused change: apply writes nothing while any stands.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Blocker {
    /// An external network, config or secret the stack uses does not exist.
    MissingExternal(ObjectRef),
    /// No node satisfies a service's placement constraints.
    NoPlacement { service: String, constraints: Vec<String> },
    /// An update would move a service off the node that holds its volume.
    WouldMove {
        service: String,
        host: String,
        volumes: Vec<String>,
    },
    /// The plan removes every service the stack owns.
    RemovesAll { stack: String, count: usize },
    /// A running Elasticsearch has security off and only the chart's
    /// default says on: a default never switches it on.
    SecurityByDefault { service: String },
    /// A node of a running Elasticsearch cluster would switch its security
    /// (and so its transport TLS) on or off: that takes every node at once.
    ClusterSecuritySwitch { service: String, on: bool },
}

impl Blocker {
    /// The object it is about, when it is about one.
    pub fn object(&self) -> Option<ObjectRef> {
        match self {
            Blocker::MissingExternal(o) => Some(o.clone()),
            Blocker::NoPlacement { service, .. }
            | Blocker::WouldMove { service, .. }
            | Blocker::SecurityByDefault { service }
            | Blocker::ClusterSecuritySwitch { service, .. } => {
                Some(ObjectRef::new(ObjectKind::Service, service.clone()))
            }
            Blocker::RemovesAll { .. } => None,
        }
    }
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::MissingExternal(ObjectRef { kind, name }) => match kind {
                ObjectKind::Network => write!(
                    f,
                    "external network {name} does not exist (create it: docker network create --driver overlay --attachable {name})"
                ),
                ObjectKind::Secret => write!(
                    f,
                    "external secret {name} does not exist (create it: docker secret create {name} FILE)"
                ),
                kind => write!(f, "external {kind} {name} does not exist"),
            },
            Blocker::NoPlacement { service, constraints } => write!(
                f,
                "no node satisfies the placement of {service} ({}){}",
                constraints.join(", "),
                placement::label_hint(constraints)
            ),
            Blocker::WouldMove { service, host, volumes } => write!(
                f,
                "updating {service} would move it off node {host}, which holds its volume {} (a node-local volume: moving means an empty one); pass --allow-move to accept",
                volumes.join(", ")
            ),
            Blocker::RemovesAll { stack, count } => write!(
                f,
                "this plan removes every service of stack {stack} ({count}); refusing (an empty or truncated values file?). Pass --allow-remove-all if that is what you want"
            ),
            Blocker::SecurityByDefault { service } => write!(
                f,
                "{service} runs with security off, and only the chart's default turns it on: switching it on restarts Elasticsearch, so the values must say so. Set elasticsearch.security: true (swarmlog makes the secrets, restarts Elasticsearch once and updates Kibana and Logstash; README, \"Security\"), or false to keep it off"
            ),
            Blocker::ClusterSecuritySwitch { service, on } => write!(
                f,
                "{service} is a node of a running Elasticsearch cluster with security {}: switching it {} changes TLS between the nodes, and nodes with and without it form no cluster, so every node would restart at once; swarmlog changes a cluster one node at a time and does not do this. Keep elasticsearch.security {} (README, \"Security\", a cluster)",
                if *on { "off" } else { "on" },
                if *on { "on" } else { "off" },
                if *on { "false" } else { "true" },
            ),
        }
    }
}

/// A service whose write waits for a failed precondition (the Elasticsearch
/// preflight): not written, never removed; the others go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub service: String,
    /// The fields an update would change; empty: the create waits.
    pub fields: Vec<String>,
    pub why: String,
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fields.is_empty() {
            write!(f, "service {} not created: {}", self.service, self.why)
        } else {
            write!(
                f,
                "service {} not updated ({}): {}",
                self.service,
                self.fields.join(", "),
                self.why
            )
        }
    }
}

/// `plan -o json` shows these as the sentences their `Display` gives.
macro_rules! serialize_as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
serialize_as_text!(ObjectRef, Conflict, Blocker, Held);

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

    pub fn kind(&self) -> ObjectKind {
        match self {
            Action::CreateNetwork { .. } | Action::RemoveNetwork { .. } => ObjectKind::Network,
            Action::CreateConfig { .. } | Action::RemoveConfig { .. } => ObjectKind::Config,
            Action::CreateSecret { .. } | Action::RemoveSecret { .. } => ObjectKind::Secret,
            Action::CreateService { .. } | Action::UpdateService { .. } | Action::RemoveService { .. } => {
                ObjectKind::Service
            }
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
    pub conflicts: Vec<Conflict>,
    /// Missing preconditions and refused changes: apply writes nothing while any stands.
    pub blockers: Vec<Blocker>,
    pub warnings: Vec<String>,
    /// Services whose create or update waits for a failed precondition.
    pub held: Vec<Held>,
    /// Services whose last update did not stick: not written again.
    pub not_converging: Vec<converge::NotConverging>,
    /// Objects already as desired.
    pub in_sync: Vec<ObjectRef>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn count(&self, verb: &str) -> usize {
        self.actions.iter().filter(|a| a.verb() == verb).count()
    }

    /// Blockers and conflicts, as sentences: apply refuses while any stands.
    pub fn refusals(&self) -> Vec<String> {
        let mut out: Vec<String> = self.blockers.iter().map(ToString::to_string).collect();
        out.extend(self.conflicts.iter().map(ToString::to_string));
        out
    }

    fn sort(&mut self) {
        self.actions
            .sort_by(|a, b| a.phase().cmp(&b.phase()).then_with(|| a.name().cmp(b.name())));
        self.conflicts.sort_by_key(|c| c.to_string());
        self.blockers.sort_by_key(|b| b.to_string());
        self.in_sync.sort();
    }
}

/// What every sub-step reads.
struct Inputs<'a> {
    stack: &'a str,
    observed: &'a Observed,
    opts: PlanOptions,
}

impl Inputs<'_> {
    fn owns(&self, labels: Option<&HashMap<String, String>>) -> bool {
        owned_by(labels, self.stack)
    }
}

fn owned_by(labels: Option<&HashMap<String, String>>, stack: &str) -> bool {
    labels.and_then(|l| l.get(LABEL_STACK)).map(String::as_str) == Some(stack)
}

/// Names the plan keeps, per kind: what removals must leave alone.
#[derive(Debug, Default)]
struct Wanted {
    networks: BTreeSet<String>,
    /// IDs of duplicate networks already planned for removal.
    duplicate_networks: BTreeSet<String>,
    configs: BTreeSet<String>,
    secrets: BTreeSet<String>,
    services: BTreeSet<String>,
}

/// Computes the plan. Pure: the same inputs give the same plan.
pub fn plan(desired: &DesiredState, observed: &Observed, opts: PlanOptions) -> Plan {
    // Every part of the desired state, named: a new one cannot be skipped unseen.
    let DesiredState {
        stack,
        networks,
        configs,
        secrets,
        services,
        external,
        // Never acted on: swarmlog does not create or remove volumes.
        volumes: _,
        // The companion's DOMAIN_* are the controller's companion step.
        letsencrypt: _,
        held,
        // Elasticsearch's users are the controller's security step.
        credentials: _,
        // Certificates are configs and secrets (above); this is for the status.
        tls_policy: _,
        // Used by the cluster's expansion, before the plan.
        tls_issuer: _,
    } = desired;
    let inputs = Inputs { stack, observed, opts };
    let mut p = Plan {
        stack: stack.clone(),
        ..Plan::default()
    };
    preconditions::plan(&inputs, external, services, &mut p);
    let mut wanted = Wanted::default();
    let net_names = networks::plan(&inputs, networks, &mut wanted, &mut p);
    files::plan(&inputs, configs, secrets, &mut wanted, &mut p);
    services::plan(&inputs, services, held, &net_names, &mut wanted, &mut p);
    removals::plan(&inputs, services, held, &wanted, &mut p);
    p.sort();
    p
}

#[cfg(test)]
mod tests;
/// The plan tests' swarm builders, for other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::{node, observed_from};
}

#[cfg(test)]
mod display_tests {
    use super::ObjectKind;

    #[test]
    fn kinds_pad_like_strings() {
        assert_eq!(format!("{:<8}|", ObjectKind::Network), "network |");
        assert_eq!(format!("{:>8}|", ObjectKind::Service), " service|");
    }
}
