//! Render step, desired state: the compose model converted to the engine specs
//! swarmlog will create, the way `docker stack deploy` converts them, plus
//! swarmlog's ownership labels, spec hashes and content-hashed config names.
//!
//! Pure: file contents come from a reader passed in; nothing here talks to Docker.
//! This module holds the types, labels and hashes and drives the conversion;
//! one submodule per concern converts a part:
//! `networks` (network objects and attachments), `files` (configs and
//! secrets), `service` (a service's spec, assembled from `mounts`,
//! `deploy` and `ports`).

mod deploy;
mod files;
mod mounts;
mod networks;
mod ports;
mod service;

use std::collections::{BTreeMap, HashMap};

use bollard::models::{ConfigSpec, NetworkCreateRequest, SecretSpec, ServiceSpec};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::diag::{Problem, Problems};
use crate::render::compose::load::Loaded;
use crate::render::compose::units;

/// Label docker stack deploy puts on everything of a stack.
pub const LABEL_NAMESPACE: &str = "com.docker.stack.namespace";
/// Label docker stack deploy puts on each service: its image as written.
pub const LABEL_IMAGE: &str = "com.docker.stack.image";
/// Label naming the swarmlog stack that owns an object.
pub const LABEL_STACK: &str = "io.swarmlog.stack";
/// Label holding the hash of the desired spec an object was written from.
pub const LABEL_SPEC_HASH: &str = "io.swarmlog.spec-hash";
/// Label listing (comma separated) the service label keys swarmlog sets, so
/// labels others add to an owned service are told apart and kept.
pub const LABEL_MANAGED: &str = "io.swarmlog.labels";
/// Label holding the compose key of a config or secret (its name carries a hash).
pub const LABEL_KEY: &str = "io.swarmlog.key";

/// Everything one stack wants to exist.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DesiredState {
    pub stack: String,
    pub networks: Vec<DesiredNetwork>,
    pub configs: Vec<DesiredConfig>,
    pub secrets: Vec<DesiredSecret>,
    pub services: Vec<DesiredService>,
    /// Objects the stack uses but does not create: they must exist.
    pub external: External,
    /// Named volumes the services mount (never removed by swarmlog).
    pub volumes: Vec<String>,
    /// The Let's Encrypt companion's settings (from the chart's values).
    pub letsencrypt: Companion,
    /// Services held back by the controller (name -> why): their create or
    /// update waits; they are never removed for it. Empty after rendering.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<String, String>,
    /// The passwords of the users swarmlog keeps (security on, with the
    /// root key): never serialised.
    #[serde(skip)]
    pub credentials: Option<crate::security::Credentials>,
    /// When Elasticsearch's certificates are renewed (a chart that mounts
    /// them): for the status.
    #[serde(skip)]
    pub tls_policy: Option<crate::tls::Policy>,
    /// Issues each cluster node's transport certificate under the stack's
    /// CA (a chart that mounts the `transport` placeholders, rendered with
    /// the root key): the plan knows the nodes. Never serialised.
    #[serde(skip)]
    pub tls_issuer: Option<crate::tls::Issuer>,
}

/// A config swarmlog makes beside the chart's (a cluster node's
/// certificate): labelled like `like` plus `labels`, named
/// `<base>_<hash8 of data>` as the chart's configs are.
pub fn made_config(like: &DesiredConfig, base: &str, data: &[u8], labels: HashMap<String, String>) -> DesiredConfig {
    let (spec, hash) = made_file(&like.key, like.spec.labels.as_ref(), base, data, labels);
    DesiredConfig {
        key: like.key.clone(),
        spec,
        hash,
    }
}

/// A secret swarmlog makes beside the chart's (a cluster node's key), as
/// [`made_config`].
pub fn made_secret(like: &DesiredSecret, base: &str, data: &[u8], labels: HashMap<String, String>) -> DesiredSecret {
    let (c, hash) = made_file(&like.key, like.spec.labels.as_ref(), base, data, labels);
    DesiredSecret {
        key: like.key.clone(),
        spec: SecretSpec {
            name: c.name,
            labels: c.labels,
            data: c.data,
            ..Default::default()
        },
        hash,
    }
}

fn made_file(
    key: &str,
    like: Option<&HashMap<String, String>>,
    base: &str,
    data: &[u8],
    labels: HashMap<String, String>,
) -> (ConfigSpec, String) {
    let mut all = like.cloned().unwrap_or_default();
    all.remove(LABEL_SPEC_HASH);
    all.remove(LABEL_KEY);
    all.extend(labels);
    let name = format!("{base}_{}", &hex(&Sha256::digest(data))[..8]);
    files::file_object_spec(key, name, all, data, None)
}

/// Service label asking the operator to check `vm.max_map_count` on the
/// nodes the service may run on before creating or updating it.
pub const LABEL_PREFLIGHT_MAP_COUNT: &str = "io.swarmlog.preflight.max-map-count";

impl DesiredState {
    /// The config holding swarmlog's certificate of `role`
    /// ([`crate::tls::CA`], [`crate::tls::HTTP`]), when the chart mounts one.
    pub fn tls_config(&self, role: &str) -> Option<&DesiredConfig> {
        self.configs.iter().find(|c| {
            c.spec
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::tls::LABEL_TLS))
                .is_some_and(|r| r == role)
        })
    }

    /// Services that carry the preflight label, with the minimum they need.
    pub fn preflight(&self) -> BTreeMap<String, u64> {
        self.services
            .iter()
            .filter_map(|s| {
                let min = s.spec.labels.as_ref()?.get(LABEL_PREFLIGHT_MAP_COUNT)?;
                let min = min.trim().parse::<u64>().ok().filter(|m| *m > 0)?;
                Some((s.spec.name.clone()?, min))
            })
            .collect()
    }
}

/// What swarmlog keeps of the Let's Encrypt companion.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Companion {
    pub enabled: bool,
    /// The companion's service name; empty: found by label, then by image.
    pub service: String,
    /// Image repository (no tag) that identifies the companion.
    pub image: String,
    /// Static domain groups, apex first.
    pub domains: Vec<Vec<String>>,
    /// How long a change must stay unchanged before the companion is patched.
    #[serde(with = "humantime_serde_ms")]
    pub settle: std::time::Duration,
}

impl Default for Companion {
    fn default() -> Self {
        Companion {
            enabled: false,
            service: String::new(),
            image: "hamburml/docker-flow-letsencrypt".to_string(),
            domains: Vec::new(),
            settle: std::time::Duration::from_secs(2),
        }
    }
}

/// Durations in JSON output as milliseconds.
mod humantime_serde_ms {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// Label marking a service whose `DOMAIN_*` environment the companion patcher owns.
pub const LABEL_COMPANION: &str = "io.swarmlog.companion";

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct External {
    pub networks: Vec<String>,
    pub configs: Vec<String>,
    pub secrets: Vec<String>,
    pub volumes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DesiredNetwork {
    /// The key in the stack file (`log_net`).
    pub key: String,
    pub spec: NetworkCreateRequest,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DesiredConfig {
    pub key: String,
    pub spec: ConfigSpec,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DesiredSecret {
    pub key: String,
    pub spec: SecretSpec,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DesiredService {
    /// The key in the stack file (`kibana`).
    pub key: String,
    pub spec: ServiceSpec,
    pub hash: String,
}

impl DesiredService {
    /// Global mode: one task on every node it may run on, each with that
    /// node's own copy of its volumes (never pinned to one node).
    pub fn is_global(&self) -> bool {
        self.spec.mode.as_ref().is_some_and(|m| m.global.is_some())
    }

    /// The named volumes it mounts (its data, when it has any).
    pub fn named_volumes(&self) -> Vec<String> {
        self.spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.mounts.as_ref())
            .into_iter()
            .flatten()
            .filter(|m| m.typ == Some(bollard::models::MountType::VOLUME))
            .filter_map(|m| m.source.clone())
            .collect()
    }
}

/// Reads a file named in the stack file (`configs.x.file`), relative to the
/// chart or stack file; returns its bytes or a message saying why not.
pub type FileReader<'a> = &'a dyn Fn(&str) -> Result<Vec<u8>, String>;

/// The labels swarmlog gives an object it makes (a certificate: when it was
/// issued, when it expires), by the path its reader was asked for.
pub type MadeLabels<'a> = &'a dyn Fn(&str) -> std::collections::HashMap<String, String>;

/// Hex SHA-256 of the canonical JSON (keys sorted) of a value, first 16 digits.
pub fn spec_hash<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_value(value)
        .map(canonical)
        .unwrap_or(serde_json::Value::Null);
    let digest = Sha256::digest(json.to_string().as_bytes());
    hex(&digest)[..16].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sorts object keys recursively, so hashes do not depend on map order.
pub fn canonical(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let sorted: BTreeMap<String, serde_json::Value> = m.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.into_iter().map(canonical).collect()),
        other => other,
    }
}

fn scope(stack: &str, name: &str) -> String {
    format!("{stack}_{name}")
}

fn stack_labels(stack: &str, labels: &BTreeMap<String, String>) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    out.insert(LABEL_NAMESPACE.to_string(), stack.to_string());
    out
}

fn owned_labels(stack: &str, labels: &BTreeMap<String, String>) -> HashMap<String, String> {
    let mut out = stack_labels(stack, labels);
    out.insert(LABEL_STACK.to_string(), stack.to_string());
    out
}

/// Checks a stack name as `docker stack deploy` does (it prefixes object names).
pub fn check_stack_name(stack: &str) -> Result<(), String> {
    let ok = !stack.is_empty()
        && stack.len() <= 63
        && stack.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && stack
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid stack name {stack:?}: use letters, digits, '_', '-' and '.', starting with a letter or digit, at most 63 characters"
        ))
    }
}

struct Ctx<'a> {
    stack: &'a str,
    loaded: &'a Loaded,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn problem(&mut self, path: &[&str], message: impl Into<String>) {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let pos = self.loaded.tree.locate(&path);
        self.problems
            .push(Problem::new(&self.loaded.file, message).at(pos).field(&path));
    }

    fn duration(&mut self, path: &[&str], value: &Option<String>) -> Option<i64> {
        let v = value.as_ref()?;
        match units::go_duration(v) {
            Ok(n) => Some(n),
            Err(e) => {
                self.problem(path, e);
                None
            }
        }
    }
}

/// The engine names of the stack's networks, configs and secrets, by compose key.
struct Names {
    networks: BTreeMap<String, String>,
    configs: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
}

/// Converts a loaded stack file to the desired state of stack `stack`.
pub fn convert(
    stack: &str,
    loaded: &Loaded,
    read_file: FileReader,
    made_labels: MadeLabels,
) -> Result<DesiredState, Problems> {
    let mut ctx = Ctx {
        stack,
        loaded,
        problems: Vec::new(),
    };
    check_stack(&mut ctx);
    let compose = &loaded.compose;
    let networks = networks::network_objects(&mut ctx);
    let (configs, external_configs) =
        files::file_objects(&mut ctx, "configs", &compose.configs, read_file, made_labels);
    let (secrets, external_secrets) =
        files::file_objects(&mut ctx, "secrets", &compose.secrets, read_file, made_labels);
    let names = Names {
        networks: networks.names,
        configs: files::object_names(stack, &compose.configs, &configs),
        secrets: files::object_names(stack, &compose.secrets, &secrets),
    };
    let services = services(&mut ctx, &names);

    if !ctx.problems.is_empty() {
        return Err(Problems(ctx.problems));
    }
    let mut external = External {
        networks: networks.external,
        configs: external_configs,
        secrets: external_secrets,
        volumes: services.external_volumes,
    };
    external.networks.sort();
    external.networks.dedup();
    external.volumes.sort();
    external.volumes.dedup();
    Ok(DesiredState {
        stack: stack.to_string(),
        networks: networks.desired,
        configs: files::config_objects(configs, &names.configs),
        secrets: files::secret_objects(secrets, &names.secrets),
        services: services.desired,
        external,
        volumes: services.volumes.into_iter().collect(),
        letsencrypt: Companion::default(),
        held: BTreeMap::new(),
        credentials: None,
        tls_policy: None,
        tls_issuer: None,
    })
}

/// The checks on the stack as a whole: its name, and that it has services.
fn check_stack(ctx: &mut Ctx) {
    if let Err(e) = check_stack_name(ctx.stack) {
        ctx.problems.push(Problem::new(&ctx.loaded.file, e));
    }
    if ctx.loaded.compose.services.is_empty() {
        ctx.problem(&["services"], "the stack has no services");
    }
}

/// The stack's services, with the volumes they mount.
struct Services {
    desired: Vec<DesiredService>,
    /// Named volumes the stack creates (by mounting them).
    volumes: std::collections::BTreeSet<String>,
    /// Volumes mounted but declared external.
    external_volumes: Vec<String>,
}

fn services(ctx: &mut Ctx, names: &Names) -> Services {
    let loaded = ctx.loaded;
    let mut out = Services {
        desired: Vec::new(),
        volumes: Default::default(),
        external_volumes: Vec::new(),
    };
    for (key, svc) in &loaded.compose.services {
        if let Some(rendered) = service::service_spec(ctx, key, svc, names) {
            out.volumes.extend(rendered.volumes);
            out.external_volumes.extend(rendered.external_volumes);
            out.desired.push(desired_service(key, rendered.spec));
        }
    }
    out
}

/// A service's spec with swarmlog's managed-labels list and spec hash in
/// place (for a spec made from a rendered one, such as an Elasticsearch
/// cluster's members).
pub fn rehash(key: &str, spec: ServiceSpec) -> DesiredService {
    desired_service(key, spec)
}

/// A service's spec with swarmlog's managed-labels list and spec hash in place.
fn desired_service(key: &str, mut spec: ServiceSpec) -> DesiredService {
    if let Some(l) = spec.labels.as_mut() {
        let mut keys: Vec<&String> = l.keys().filter(|k| !k.starts_with("io.swarmlog.")).collect();
        keys.sort();
        let managed = keys.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(",");
        l.insert(LABEL_MANAGED.to_string(), managed);
    }
    let hash = spec_hash(&spec);
    if let Some(l) = spec.labels.as_mut() {
        l.insert(LABEL_SPEC_HASH.to_string(), hash.clone());
    }
    DesiredService {
        key: key.to_string(),
        spec,
        hash,
    }
}
