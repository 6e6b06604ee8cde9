//! Render step, last part: the compose model converted to the engine specs
//! swarmlog will create, the way `docker stack deploy` converts them, plus
//! swarmlog's ownership labels, spec hashes and content-hashed config names.
//!
//! Pure: file contents come from a reader passed in; nothing here talks to Docker.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine as _;
use bollard::models::{
    ConfigSpec, EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec,
    EndpointSpecModeEnum, HealthConfig, Limit, Mount, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
    NetworkAttachmentConfig, NetworkCreateRequest, ResourceObject, SecretSpec, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecConfigs,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1, TaskSpecContainerSpecPrivileges,
    TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecPlacementPreferences, TaskSpecPlacementSpread,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::diag::{Problem, Problems};
use crate::render::compose::load::Loaded;
use crate::render::compose::model::{FileObjectDef, FileRef, Service, UpdateConfig};
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
}

/// Service label asking the operator to check `vm.max_map_count` on the
/// nodes the service may run on before creating or updating it.
pub const LABEL_PREFLIGHT_MAP_COUNT: &str = "io.swarmlog.preflight.max-map-count";

impl DesiredState {
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

/// Reads a file named in the stack file (`configs.x.file`), relative to the
/// chart or stack file; returns its bytes or a message saying why not.
pub type FileReader<'a> = &'a dyn Fn(&str) -> Result<Vec<u8>, String>;

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

/// Converts a loaded stack file to the desired state of stack `stack`.
pub fn convert(stack: &str, loaded: &Loaded, read_file: FileReader) -> Result<DesiredState, Problems> {
    let mut ctx = Ctx {
        stack,
        loaded,
        problems: Vec::new(),
    };
    if let Err(e) = check_stack_name(stack) {
        ctx.problems.push(Problem::new(&loaded.file, e));
    }
    let compose = &loaded.compose;
    if compose.services.is_empty() {
        ctx.problem(&["services"], "the stack has no services");
    }

    let mut external = External::default();
    // Networks: only those some service uses are created, as docker stack deploy does.
    let mut used_networks = BTreeSet::new();
    for (name, svc) in &compose.services {
        if svc.networks.is_empty() {
            used_networks.insert("default".to_string());
        }
        for net in svc.networks.keys() {
            if net != "default" && !compose.networks.contains_key(net) {
                ctx.problem(
                    &["services", name, "networks", net],
                    format!("network {net:?} is not defined under the top-level networks"),
                );
            }
            used_networks.insert(net.clone());
        }
    }
    let mut networks = Vec::new();
    let mut network_names: BTreeMap<String, String> = BTreeMap::new();
    for key in &used_networks {
        let def = compose.networks.get(key).cloned().unwrap_or_default();
        if def.external {
            let name = def.name.clone().unwrap_or_else(|| key.clone());
            network_names.insert(key.clone(), name.clone());
            external.networks.push(name);
            continue;
        }
        let name = def.name.clone().unwrap_or_else(|| scope(stack, key));
        network_names.insert(key.clone(), name.clone());
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
        networks.push(DesiredNetwork {
            key: key.clone(),
            spec,
            hash,
        });
    }

    let configs = file_objects(&mut ctx, "configs", &compose.configs, read_file, &mut external.configs);
    let secrets = file_objects(&mut ctx, "secrets", &compose.secrets, read_file, &mut external.secrets);
    let config_names: BTreeMap<String, String> = compose
        .configs
        .iter()
        .map(|(k, d)| {
            (
                k.clone(),
                object_name(stack, k, d, configs.iter().find(|c| &c.0 == k).map(|c| c.1.as_str())),
            )
        })
        .collect();
    let secret_names: BTreeMap<String, String> = compose
        .secrets
        .iter()
        .map(|(k, d)| {
            (
                k.clone(),
                object_name(stack, k, d, secrets.iter().find(|c| &c.0 == k).map(|c| c.1.as_str())),
            )
        })
        .collect();

    let mut volumes = BTreeSet::new();
    let mut services = Vec::new();
    for (key, svc) in &compose.services {
        if let Some(spec) = service_spec(
            &mut ctx,
            key,
            svc,
            &network_names,
            &config_names,
            &secret_names,
            &mut volumes,
            &mut external.volumes,
        ) {
            let mut spec = spec;
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
            services.push(DesiredService {
                key: key.clone(),
                spec,
                hash,
            });
        }
    }

    if !ctx.problems.is_empty() {
        return Err(Problems(ctx.problems));
    }
    external.networks.sort();
    external.networks.dedup();
    external.volumes.sort();
    external.volumes.dedup();
    let configs = configs
        .into_iter()
        .map(|(key, _, data, labels, templating)| {
            let name = config_names.get(&key).cloned().unwrap_or_default();
            let (spec, hash) = file_object_spec(&key, name, labels, &data, templating);
            DesiredConfig { key, spec, hash }
        })
        .collect();
    let secrets = secrets
        .into_iter()
        .map(|(key, _, data, labels, templating)| {
            let name = secret_names.get(&key).cloned().unwrap_or_default();
            let (c, hash) = file_object_spec(&key, name, labels, &data, templating);
            let spec = SecretSpec {
                name: c.name,
                labels: c.labels,
                data: c.data,
                templating: c.templating,
                ..Default::default()
            };
            DesiredSecret { key, spec, hash }
        })
        .collect();
    Ok(DesiredState {
        stack: stack.to_string(),
        networks,
        configs,
        secrets,
        services,
        external,
        volumes: volumes.into_iter().collect(),
        letsencrypt: Companion::default(),
        held: BTreeMap::new(),
    })
}

/// The spec of a config or secret (they share their fields), with its hash
/// and swarmlog's labels in place.
fn file_object_spec(
    key: &str,
    name: String,
    labels: HashMap<String, String>,
    data: &[u8],
    templating: Option<String>,
) -> (ConfigSpec, String) {
    let mut spec = ConfigSpec {
        name: Some(name),
        labels: Some(labels),
        data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
        templating: templating.map(|t| bollard::models::Driver { name: t, options: None }),
    };
    let hash = spec_hash(&spec);
    if let Some(l) = spec.labels.as_mut() {
        l.insert(LABEL_SPEC_HASH.to_string(), hash.clone());
        l.insert(LABEL_KEY.to_string(), key.to_string());
    }
    (spec, hash)
}

/// Contents of a config or secret: (key, content hash, data, labels, template driver).
type FileObject = (String, String, Vec<u8>, HashMap<String, String>, Option<String>);

fn file_objects(
    ctx: &mut Ctx,
    section: &str,
    defs: &BTreeMap<String, FileObjectDef>,
    read_file: FileReader,
    external: &mut Vec<String>,
) -> Vec<FileObject> {
    let mut out = Vec::new();
    for (key, def) in defs {
        if def.external {
            external.push(def.name.clone().unwrap_or_else(|| key.clone()));
            continue;
        }
        let Some(file) = &def.file else {
            ctx.problem(
                &[section, key],
                format!("{section}.{key} needs `file:` (or `external: true`)"),
            );
            continue;
        };
        match read_file(file) {
            Ok(data) => {
                let content = hex(&Sha256::digest(&data))[..8].to_string();
                out.push((
                    key.clone(),
                    content,
                    data,
                    owned_labels(ctx.stack, &def.labels),
                    def.template_driver.clone(),
                ));
            }
            Err(e) => ctx.problem(&[section, key, "file"], e),
        }
    }
    external.sort();
    out
}

/// `<stack>_<key>_<hash8>`: configs are immutable, so a new content is a new name.
fn object_name(stack: &str, key: &str, def: &FileObjectDef, content_hash: Option<&str>) -> String {
    if def.external {
        return def.name.clone().unwrap_or_else(|| key.to_string());
    }
    let base = def.name.clone().unwrap_or_else(|| scope(stack, key));
    match content_hash {
        Some(h) => format!("{base}_{h}"),
        None => base,
    }
}

#[allow(clippy::too_many_arguments)]
fn service_spec(
    ctx: &mut Ctx,
    key: &str,
    svc: &Service,
    network_names: &BTreeMap<String, String>,
    config_names: &BTreeMap<String, String>,
    secret_names: &BTreeMap<String, String>,
    volumes: &mut BTreeSet<String>,
    external_volumes: &mut Vec<String>,
) -> Option<ServiceSpec> {
    let stack = ctx.stack;
    let compose = &ctx.loaded.compose;
    let before = ctx.problems.len();
    let image = match svc.image.as_deref().map(str::trim) {
        Some(i) if !i.is_empty() => i.to_string(),
        _ => {
            ctx.problem(&["services", key], "a service needs an image");
            String::new()
        }
    };

    // Environment, as `KEY=VALUE` strings sorted like docker sorts them.
    let mut env: Vec<String> = svc
        .environment
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect();
    env.sort();

    // Mounts.
    let mut mounts = Vec::new();
    for (i, v) in svc.volumes.iter().enumerate() {
        let idx = i.to_string();
        let path = ["services", key, "volumes", idx.as_str()];
        match v.kind.as_str() {
            "volume" => {
                let Some(source) = &v.source else {
                    mounts.push(Mount {
                        target: Some(v.target.clone()),
                        typ: Some(MountType::VOLUME),
                        read_only: v.read_only.then_some(true),
                        ..Default::default()
                    });
                    continue;
                };
                let Some(def) = compose.volumes.get(source) else {
                    ctx.problem(
                        &path,
                        format!("volume {source:?} is not defined under the top-level volumes"),
                    );
                    continue;
                };
                let name = def.name.clone().unwrap_or_else(|| scope(stack, source));
                let mut opts = MountVolumeOptions {
                    no_copy: v.nocopy.then_some(true),
                    ..Default::default()
                };
                if def.external {
                    external_volumes.push(name.clone());
                } else {
                    volumes.insert(name.clone());
                    opts.labels = Some(stack_labels(stack, &def.labels));
                    if def.driver.is_some() || def.driver_opts.is_some() {
                        opts.driver_config = Some(MountVolumeOptionsDriverConfig {
                            name: def.driver.clone(),
                            options: def
                                .driver_opts
                                .as_ref()
                                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                        });
                    }
                }
                mounts.push(Mount {
                    target: Some(v.target.clone()),
                    source: Some(name),
                    typ: Some(MountType::VOLUME),
                    read_only: v.read_only.then_some(true),
                    volume_options: Some(opts),
                    ..Default::default()
                });
            }
            "bind" => {
                let source = v.source.clone().unwrap_or_default();
                if !source.starts_with('/') {
                    ctx.problem(
                        &path,
                        format!("bind mount source {source:?} must be an absolute path on the node"),
                    );
                    continue;
                }
                mounts.push(Mount {
                    target: Some(v.target.clone()),
                    source: Some(source),
                    typ: Some(MountType::BIND),
                    read_only: v.read_only.then_some(true),
                    ..Default::default()
                });
            }
            "tmpfs" => mounts.push(Mount {
                target: Some(v.target.clone()),
                typ: Some(MountType::TMPFS),
                read_only: v.read_only.then_some(true),
                ..Default::default()
            }),
            other => ctx.problem(
                &path,
                format!("unsupported mount type {other:?} (expected volume, bind or tmpfs)"),
            ),
        }
    }

    let configs: Vec<TaskSpecContainerSpecConfigs> = svc
        .configs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let Some(name) = config_names.get(&r.source) else {
                ctx.problem(
                    &["services", key, "configs", &i.to_string()],
                    format!("config {:?} is not defined under the top-level configs", r.source),
                );
                return None;
            };
            let (target, uid, gid, mode) = file_target(r);
            Some(TaskSpecContainerSpecConfigs {
                file: Some(TaskSpecContainerSpecFile1 {
                    name: Some(target),
                    uid: Some(uid),
                    gid: Some(gid),
                    mode: Some(mode),
                }),
                config_name: Some(name.clone()),
                ..Default::default()
            })
        })
        .collect();
    let secrets: Vec<TaskSpecContainerSpecSecrets> = svc
        .secrets
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let Some(name) = secret_names.get(&r.source) else {
                ctx.problem(
                    &["services", key, "secrets", &i.to_string()],
                    format!("secret {:?} is not defined under the top-level secrets", r.source),
                );
                return None;
            };
            let (target, uid, gid, mode) = file_target(r);
            Some(TaskSpecContainerSpecSecrets {
                file: Some(TaskSpecContainerSpecFile {
                    name: Some(target),
                    uid: Some(uid),
                    gid: Some(gid),
                    mode: Some(mode),
                }),
                secret_name: Some(name.clone()),
                ..Default::default()
            })
        })
        .collect();

    let health_check = svc.healthcheck.as_ref().map(|h| {
        if h.disable {
            return HealthConfig {
                test: Some(vec!["NONE".to_string()]),
                ..Default::default()
            };
        }
        let p = |f: &str| ["services", key, "healthcheck", f].map(str::to_string);
        let d = |ctx: &mut Ctx, f: &str, v: &Option<String>| {
            let path = p(f);
            let refs: Vec<&str> = path.iter().map(String::as_str).collect();
            ctx.duration(&refs, v).filter(|n| *n != 0)
        };
        HealthConfig {
            test: h.test.clone(),
            interval: d(ctx, "interval", &h.interval),
            timeout: d(ctx, "timeout", &h.timeout),
            retries: h.retries.map(|r| r as i64).filter(|r| *r != 0),
            start_period: d(ctx, "start_period", &h.start_period),
            start_interval: d(ctx, "start_interval", &h.start_interval),
        }
    });

    let deploy = &svc.deploy;
    for (i, c) in deploy.placement.constraints.iter().enumerate() {
        if let Err(e) = units::constraint(c) {
            ctx.problem(
                &["services", key, "deploy", "placement", "constraints", &i.to_string()],
                e,
            );
        }
    }
    let resources = {
        let mut r = TaskSpecResources::default();
        let amounts = |ctx: &mut Ctx, which: &str, a: &crate::render::compose::model::ResourceAmounts| {
            let cpus = a.cpus.as_ref().and_then(|c| match units::nano_cpus(c) {
                Ok(n) => Some(n),
                Err(e) => {
                    ctx.problem(&["services", key, "deploy", "resources", which, "cpus"], e);
                    None
                }
            });
            let mem = a.memory.as_ref().and_then(|m| match units::ram_bytes(m) {
                Ok(n) => Some(n),
                Err(e) => {
                    ctx.problem(&["services", key, "deploy", "resources", which, "memory"], e);
                    None
                }
            });
            (cpus.filter(|c| *c != 0), mem.filter(|m| *m != 0))
        };
        if let Some(l) = &deploy.resources.limits {
            let (nano_cpus, memory_bytes) = amounts(ctx, "limits", l);
            r.limits = Some(Limit {
                nano_cpus,
                memory_bytes,
                pids: l.pids.filter(|p| *p != 0),
            });
        }
        if let Some(l) = &deploy.resources.reservations {
            let (nano_cpus, memory_bytes) = amounts(ctx, "reservations", l);
            r.reservations = Some(ResourceObject {
                nano_cpus,
                memory_bytes,
                generic_resources: None,
            });
        }
        r
    };
    let restart_policy = deploy.restart_policy.as_ref().map(|rp| {
        let condition = match rp.condition.as_deref() {
            None => None,
            Some("none") => Some(TaskSpecRestartPolicyConditionEnum::NONE),
            Some("on-failure") => Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
            Some("any") => Some(TaskSpecRestartPolicyConditionEnum::ANY),
            Some(other) => {
                ctx.problem(
                    &["services", key, "deploy", "restart_policy", "condition"],
                    format!("invalid restart condition {other:?} (expected none, on-failure or any)"),
                );
                None
            }
        };
        TaskSpecRestartPolicy {
            condition,
            delay: ctx.duration(&["services", key, "deploy", "restart_policy", "delay"], &rp.delay),
            max_attempts: rp.max_attempts.map(|m| m as i64),
            window: ctx.duration(&["services", key, "deploy", "restart_policy", "window"], &rp.window),
        }
    });
    let update_config = deploy
        .update_config
        .as_ref()
        .map(|u| convert_update(ctx, key, "update_config", u))
        .map(|u| ServiceSpecUpdateConfig {
            parallelism: Some(u.parallelism),
            delay: u.delay,
            failure_action: u.failure_action.as_deref().map(|f| match f {
                "continue" => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
                "rollback" => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
                _ => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
            }),
            monitor: u.monitor,
            max_failure_ratio: u.max_failure_ratio,
            order: u.order.as_deref().map(|o| match o {
                "start-first" => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
                _ => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
            }),
        });
    let rollback_config = deploy
        .rollback_config
        .as_ref()
        .map(|u| convert_update(ctx, key, "rollback_config", u))
        .map(|u| ServiceSpecRollbackConfig {
            parallelism: Some(u.parallelism),
            delay: u.delay,
            failure_action: u.failure_action.as_deref().map(|f| match f {
                "continue" => ServiceSpecRollbackConfigFailureActionEnum::CONTINUE,
                _ => ServiceSpecRollbackConfigFailureActionEnum::PAUSE,
            }),
            monitor: u.monitor,
            max_failure_ratio: u.max_failure_ratio,
            order: u.order.as_deref().map(|o| match o {
                "start-first" => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
                _ => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
            }),
        });
    let mode = match deploy.mode.as_deref() {
        None | Some("replicated") => ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: deploy.replicas.map(|r| r as i64),
            }),
            ..Default::default()
        },
        Some("global") => {
            if deploy.replicas.is_some() {
                ctx.problem(
                    &["services", key, "deploy", "replicas"],
                    "replicas cannot be set in global mode",
                );
            }
            ServiceSpecMode {
                global: Some(HashMap::new()),
                ..Default::default()
            }
        }
        Some(other) => {
            ctx.problem(
                &["services", key, "deploy", "mode"],
                format!("invalid mode {other:?} (expected replicated or global)"),
            );
            ServiceSpecMode::default()
        }
    };
    let endpoint_mode = match deploy.endpoint_mode.as_deref().map(str::to_lowercase).as_deref() {
        None | Some("") => None,
        Some("vip") => Some(EndpointSpecModeEnum::VIP),
        Some("dnsrr") => Some(EndpointSpecModeEnum::DNSRR),
        Some(other) => {
            ctx.problem(
                &["services", key, "deploy", "endpoint_mode"],
                format!("invalid endpoint mode {other:?} (expected vip or dnsrr)"),
            );
            None
        }
    };
    let mut ports: Vec<EndpointPortConfig> = Vec::new();
    for (i, p) in svc.ports.iter().enumerate() {
        let protocol = match p.protocol.as_str() {
            "tcp" => EndpointPortConfigProtocolEnum::TCP,
            "udp" => EndpointPortConfigProtocolEnum::UDP,
            "sctp" => EndpointPortConfigProtocolEnum::SCTP,
            other => {
                ctx.problem(
                    &["services", key, "ports", &i.to_string()],
                    format!("invalid protocol {other:?}"),
                );
                continue;
            }
        };
        let publish_mode = match p.mode.as_str() {
            "ingress" => EndpointPortConfigPublishModeEnum::INGRESS,
            "host" => EndpointPortConfigPublishModeEnum::HOST,
            other => {
                ctx.problem(
                    &["services", key, "ports", &i.to_string()],
                    format!("invalid publish mode {other:?} (expected ingress or host)"),
                );
                continue;
            }
        };
        ports.push(EndpointPortConfig {
            protocol: Some(protocol),
            target_port: Some(i64::from(p.target)),
            published_port: p.published.map(i64::from),
            publish_mode: Some(publish_mode),
            ..Default::default()
        });
    }
    ports.sort_by_key(|p| p.published_port.unwrap_or(0));

    let mut nets: Vec<NetworkAttachmentConfig> = Vec::new();
    let attachments: Vec<(String, Vec<String>, BTreeMap<String, String>)> = if svc.networks.is_empty() {
        vec![("default".to_string(), Vec::new(), BTreeMap::new())]
    } else {
        svc.networks
            .iter()
            .map(|(k, n)| (k.clone(), n.aliases.clone(), n.driver_opts.clone()))
            .collect()
    };
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

    let stop_grace_period = ctx.duration(&["services", key, "stop_grace_period"], &svc.stop_grace_period);
    if let Some(v) = deploy.labels.get(LABEL_PREFLIGHT_MAP_COUNT) {
        if v.trim().parse::<u64>().is_err() {
            ctx.problem(
                &["services", key, "deploy", "labels", LABEL_PREFLIGHT_MAP_COUNT],
                format!("must be a whole number (the minimum vm.max_map_count; 0 turns the check off), not {v:?}"),
            );
        }
    }
    if ctx.problems.len() > before {
        return None;
    }
    let mut labels = owned_labels(stack, &deploy.labels);
    labels.insert(LABEL_IMAGE.to_string(), image.clone());
    Some(ServiceSpec {
        name: Some(scope(stack, key)),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image),
                labels: Some(stack_labels(stack, &svc.labels)),
                command: svc.entrypoint.clone(),
                args: svc.command.clone(),
                hostname: svc.hostname.clone(),
                env: (!env.is_empty()).then_some(env),
                dir: svc.working_dir.clone(),
                user: svc.user.clone(),
                privileges: Some(TaskSpecContainerSpecPrivileges::default()),
                tty: svc.tty.filter(|t| *t),
                open_stdin: svc.stdin_open.filter(|t| *t),
                read_only: svc.read_only.filter(|t| *t),
                mounts: (!mounts.is_empty()).then_some(mounts),
                stop_signal: svc.stop_signal.clone(),
                stop_grace_period,
                health_check,
                secrets: (!secrets.is_empty()).then_some(secrets),
                configs: (!configs.is_empty()).then_some(configs),
                init: svc.init,
                ..Default::default()
            }),
            resources: Some(resources),
            restart_policy,
            placement: Some(TaskSpecPlacement {
                constraints: (!deploy.placement.constraints.is_empty()).then(|| deploy.placement.constraints.clone()),
                preferences: (!deploy.placement.preferences.is_empty()).then(|| {
                    deploy
                        .placement
                        .preferences
                        .iter()
                        .map(|p| TaskSpecPlacementPreferences {
                            spread: Some(TaskSpecPlacementSpread {
                                spread_descriptor: Some(p.spread.clone()),
                            }),
                        })
                        .collect()
                }),
                max_replicas: deploy
                    .placement
                    .max_replicas_per_node
                    .map(|m| m as i64)
                    .filter(|m| *m != 0),
                ..Default::default()
            }),
            networks: Some(nets),
            ..Default::default()
        }),
        mode: Some(mode),
        update_config,
        rollback_config,
        endpoint_spec: Some(EndpointSpec {
            mode: endpoint_mode,
            ports: (!ports.is_empty()).then_some(ports),
        }),
        ..Default::default()
    })
}

fn file_target(r: &FileRef) -> (String, String, String, u32) {
    (
        r.target.clone().unwrap_or_else(|| r.source.clone()),
        r.uid.clone().unwrap_or_else(|| "0".to_string()),
        r.gid.clone().unwrap_or_else(|| "0".to_string()),
        r.mode.unwrap_or(0o444),
    )
}

struct Update {
    parallelism: i64,
    delay: Option<i64>,
    failure_action: Option<String>,
    monitor: Option<i64>,
    max_failure_ratio: Option<f64>,
    order: Option<String>,
}

fn convert_update(ctx: &mut Ctx, key: &str, which: &str, u: &UpdateConfig) -> Update {
    let base = ["services", key, "deploy", which];
    let with = |f: &'static str| {
        let mut p = base.to_vec();
        p.push(f);
        p
    };
    if let Some(f) = u.failure_action.as_deref() {
        let allowed: &[&str] = if which == "update_config" {
            &["pause", "continue", "rollback"]
        } else {
            &["pause", "continue"]
        };
        if !allowed.contains(&f) {
            ctx.problem(
                &with("failure_action"),
                format!("invalid failure_action {f:?} (expected one of {})", allowed.join(", ")),
            );
        }
    }
    if let Some(o) = u.order.as_deref() {
        if o != "start-first" && o != "stop-first" {
            ctx.problem(
                &with("order"),
                format!("invalid order {o:?} (expected stop-first or start-first)"),
            );
        }
    }
    Update {
        parallelism: u.parallelism.unwrap_or(1) as i64,
        delay: ctx.duration(&with("delay"), &u.delay).filter(|d| *d != 0),
        failure_action: u.failure_action.clone(),
        monitor: ctx.duration(&with("monitor"), &u.monitor).filter(|d| *d != 0),
        max_failure_ratio: u.max_failure_ratio.filter(|r| *r != 0.0),
        order: u.order.clone(),
    }
}
