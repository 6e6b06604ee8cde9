//! Desired state, input side: the swarm subset of the Compose Specification.
//!
//! These structs accept what `docker stack deploy` accepts (short and long
//! syntaxes); keys outside the converted subset are collected in `extra`
//! and refused by the loader with their file and line (nothing is silently
//! different from what `docker stack deploy` makes of the same file).

use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value as Json;

/// A whole stack file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ComposeFile {
    #[serde(default)]
    pub version: Option<Json>,
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    #[serde(default, deserialize_with = "map_of_optional")]
    pub networks: BTreeMap<String, NetworkDef>,
    #[serde(default, deserialize_with = "map_of_optional")]
    pub volumes: BTreeMap<String, VolumeDef>,
    #[serde(default, deserialize_with = "map_of_optional")]
    pub configs: BTreeMap<String, FileObjectDef>,
    #[serde(default, deserialize_with = "map_of_optional")]
    pub secrets: BTreeMap<String, FileObjectDef>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Json>,
}

/// One service.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Service {
    pub image: Option<String>,
    #[serde(default, deserialize_with = "command")]
    pub command: Option<Vec<String>>,
    #[serde(default, deserialize_with = "command")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, deserialize_with = "env_map")]
    pub environment: BTreeMap<String, Option<String>>,
    #[serde(default, deserialize_with = "label_map")]
    pub labels: BTreeMap<String, String>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_grace_period: Option<String>,
    pub tty: Option<bool>,
    pub stdin_open: Option<bool>,
    pub read_only: Option<bool>,
    pub init: Option<bool>,
    #[serde(default)]
    pub deploy: Deploy,
    #[serde(default, deserialize_with = "service_networks")]
    pub networks: BTreeMap<String, ServiceNetwork>,
    #[serde(default)]
    pub volumes: Vec<ServiceVolume>,
    #[serde(default)]
    pub configs: Vec<FileRef>,
    #[serde(default)]
    pub secrets: Vec<FileRef>,
    #[serde(default)]
    pub ports: Vec<Port>,
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, deserialize_with = "string_list")]
    pub cap_add: Vec<String>,
    #[serde(default, deserialize_with = "string_list")]
    pub cap_drop: Vec<String>,
    #[serde(default, deserialize_with = "label_map")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "extra_hosts")]
    pub extra_hosts: Vec<String>,
    #[serde(default, deserialize_with = "string_list")]
    pub dns: Vec<String>,
    #[serde(default, deserialize_with = "string_list")]
    pub dns_search: Vec<String>,
    pub logging: Option<Logging>,
    #[serde(default)]
    pub ulimits: BTreeMap<String, Ulimit>,
    pub isolation: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Json>,
}

/// `logging:` of a service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    pub driver: Option<String>,
    #[serde(default, deserialize_with = "label_map")]
    pub options: BTreeMap<String, String>,
}

/// One of `ulimits:`: `nproc: 65535` or `nofile: {soft: 20000, hard: 40000}`.
#[derive(Debug, Clone, Default)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Json::deserialize(d)? {
            Json::Number(n) => {
                let v = n
                    .as_i64()
                    .ok_or_else(|| de::Error::custom(format!("ulimit {n} is not a whole number")))?;
                Ok(Ulimit { soft: v, hard: v })
            }
            Json::Object(m) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Long {
                    soft: i64,
                    hard: i64,
                }
                let l: Long = serde_json::from_value(Json::Object(m)).map_err(de::Error::custom)?;
                Ok(Ulimit {
                    soft: l.soft,
                    hard: l.hard,
                })
            }
            other => Err(de::Error::custom(format!(
                "expected a number or a mapping with soft and hard, not {}",
                json_kind(&other)
            ))),
        }
    }
}

/// `deploy:` of a service.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Deploy {
    pub mode: Option<String>,
    pub replicas: Option<u64>,
    #[serde(default, deserialize_with = "label_map")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub placement: Placement,
    #[serde(default)]
    pub resources: Resources,
    pub restart_policy: Option<RestartPolicy>,
    pub update_config: Option<UpdateConfig>,
    pub rollback_config: Option<UpdateConfig>,
    pub endpoint_mode: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Json>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Placement {
    #[serde(default)]
    pub constraints: Vec<String>,
    #[serde(default)]
    pub preferences: Vec<Preference>,
    pub max_replicas_per_node: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    pub spread: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resources {
    pub limits: Option<ResourceAmounts>,
    pub reservations: Option<ResourceAmounts>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResourceAmounts {
    #[serde(default, deserialize_with = "string_or_number")]
    pub cpus: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub memory: Option<String>,
    pub pids: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RestartPolicy {
    pub condition: Option<String>,
    pub delay: Option<String>,
    pub max_attempts: Option<u64>,
    pub window: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpdateConfig {
    pub parallelism: Option<u64>,
    pub delay: Option<String>,
    pub failure_action: Option<String>,
    pub monitor: Option<String>,
    pub max_failure_ratio: Option<f64>,
    pub order: Option<String>,
}

/// A service's attachment to a network.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceNetwork {
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
}

/// A mount, from `source:target[:ro]` or the long form.
#[derive(Debug, Clone, Default)]
pub struct ServiceVolume {
    pub kind: String,
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    pub nocopy: bool,
    /// `bind.propagation` of the long form.
    pub propagation: Option<String>,
    /// `tmpfs.size` of the long form (bytes, or with a unit).
    pub tmpfs_size: Option<String>,
}

/// A config or secret reference, from `name` or the long form.
#[derive(Debug, Clone, Default)]
pub struct FileRef {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<u32>,
}

/// A published port, from `published:target[/proto]` or the long form.
#[derive(Debug, Clone, Default)]
pub struct Port {
    pub target: u16,
    pub published: Option<u16>,
    pub protocol: String,
    pub mode: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Healthcheck {
    #[serde(default, deserialize_with = "health_test")]
    pub test: Option<Vec<String>>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u64>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    #[serde(default)]
    pub disable: bool,
}

/// A top-level network.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetworkDef {
    pub name: Option<String>,
    pub driver: Option<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "external")]
    pub external: bool,
    pub internal: Option<bool>,
    pub attachable: Option<bool>,
    #[serde(default, deserialize_with = "label_map")]
    pub labels: BTreeMap<String, String>,
}

/// A top-level volume.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VolumeDef {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "external")]
    pub external: bool,
    #[serde(default, deserialize_with = "label_map")]
    pub labels: BTreeMap<String, String>,
}

/// A top-level config or secret.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileObjectDef {
    pub name: Option<String>,
    pub file: Option<String>,
    #[serde(default, deserialize_with = "external")]
    pub external: bool,
    #[serde(default, deserialize_with = "label_map")]
    pub labels: BTreeMap<String, String>,
    pub template_driver: Option<String>,
}

fn map_of_optional<'de, D, T>(d: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    let m: Option<BTreeMap<String, Option<T>>> = Option::deserialize(d)?;
    Ok(m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// A scalar as compose prints it: strings as they are, numbers and booleans as text.
fn scalar_text<E: de::Error>(v: &Json, what: &str) -> Result<String, E> {
    match v {
        Json::String(s) => Ok(s.clone()),
        Json::Number(n) => Ok(n.to_string()),
        Json::Bool(b) => Ok(b.to_string()),
        other => Err(E::custom(format!(
            "{what} must be a string, number or boolean, not {}",
            json_kind(other)
        ))),
    }
}

pub(crate) fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Json>::deserialize(d)? {
        None | Some(Json::Null) => Ok(None),
        Some(v) => scalar_text(&v, "value").map(Some),
    }
}

fn env_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Option<String>>, D::Error> {
    let mut out = BTreeMap::new();
    match Option::<Json>::deserialize(d)? {
        None | Some(Json::Null) => {}
        Some(Json::Object(m)) => {
            for (k, v) in m {
                let v = match v {
                    Json::Null => None,
                    v => Some(scalar_text(&v, &format!("variable {k}"))?),
                };
                out.insert(k, v);
            }
        }
        Some(Json::Array(items)) => {
            for item in items {
                let s = scalar_text::<D::Error>(&item, "an entry")?;
                match s.split_once('=') {
                    Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                    None => out.insert(s, None),
                };
            }
        }
        Some(other) => {
            return Err(de::Error::custom(format!(
                "expected a mapping or a list of KEY=VALUE, not {}",
                json_kind(&other)
            )))
        }
    }
    Ok(out)
}

fn label_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(env_map(d)?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

fn command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match Option::<Json>::deserialize(d)? {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => shell_words(&s).map(Some).map_err(de::Error::custom),
        Some(Json::Array(items)) => items
            .iter()
            .map(|i| scalar_text(i, "an argument"))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(de::Error::custom(format!(
            "expected a string or a list of strings, not {}",
            json_kind(&other)
        ))),
    }
}

/// A string or a list of strings (`dns: 10.0.0.53`, `cap_add: [NET_ADMIN]`).
fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Option::<Json>::deserialize(d)? {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::String(s)) => Ok(vec![s]),
        Some(Json::Array(items)) => items.iter().map(|i| scalar_text(i, "an entry")).collect(),
        Some(other) => Err(de::Error::custom(format!(
            "expected a string or a list of strings, not {}",
            json_kind(&other)
        ))),
    }
}

/// `extra_hosts:` as `host:ip` entries, from a list or a mapping.
fn extra_hosts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Option::<Json>::deserialize(d)? {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Object(m)) => m
            .into_iter()
            .map(|(k, v)| Ok(format!("{k}:{}", scalar_text::<D::Error>(&v, "an address")?)))
            .collect(),
        Some(Json::Array(items)) => items.iter().map(|i| scalar_text(i, "an entry")).collect(),
        Some(other) => Err(de::Error::custom(format!(
            "expected a list of host:ip or a mapping, not {}",
            json_kind(&other)
        ))),
    }
}

fn health_test<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match Option::<Json>::deserialize(d)? {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(vec!["CMD-SHELL".to_string(), s])),
        Some(Json::Array(items)) => items
            .iter()
            .map(|i| scalar_text(i, "a test argument"))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(de::Error::custom(format!(
            "expected a string or a list of strings, not {}",
            json_kind(&other)
        ))),
    }
}

fn external<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Option::<Json>::deserialize(d)? {
        None | Some(Json::Null) => Ok(false),
        Some(Json::Bool(b)) => Ok(b),
        // The legacy form `external: {name: x}` means external.
        Some(Json::Object(_)) => Ok(true),
        Some(other) => Err(de::Error::custom(format!(
            "expected true or false, not {}",
            json_kind(&other)
        ))),
    }
}

fn service_networks<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, ServiceNetwork>, D::Error> {
    match Option::<Json>::deserialize(d)? {
        None | Some(Json::Null) => Ok(BTreeMap::new()),
        Some(Json::Array(items)) => items
            .iter()
            .map(|i| scalar_text(i, "a network name").map(|n| (n, ServiceNetwork::default())))
            .collect(),
        Some(Json::Object(m)) => m
            .into_iter()
            .map(|(k, v)| {
                let net = match v {
                    Json::Null => ServiceNetwork::default(),
                    v => serde_json::from_value(v).map_err(de::Error::custom)?,
                };
                Ok((k, net))
            })
            .collect(),
        Some(other) => Err(de::Error::custom(format!(
            "expected a list or a mapping of networks, not {}",
            json_kind(&other)
        ))),
    }
}

/// Splits a command string the way a POSIX shell splits words (quotes and
/// backslashes), as compose does for `command: "a 'b c'"`.
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated single quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unterminated double quote in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated double quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

impl<'de> Deserialize<'de> for ServiceVolume {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Json::deserialize(d)? {
            Json::String(s) => parse_short_volume(&s).map_err(de::Error::custom),
            Json::Object(m) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Long {
                    #[serde(rename = "type")]
                    kind: String,
                    source: Option<String>,
                    target: String,
                    #[serde(default)]
                    read_only: bool,
                    volume: Option<LongVolume>,
                    bind: Option<LongBind>,
                    tmpfs: Option<LongTmpfs>,
                }
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct LongBind {
                    propagation: Option<String>,
                }
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct LongTmpfs {
                    #[serde(default, deserialize_with = "string_or_number")]
                    size: Option<String>,
                }
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct LongVolume {
                    #[serde(default)]
                    nocopy: bool,
                }
                let l: Long = serde_json::from_value(Json::Object(m)).map_err(de::Error::custom)?;
                Ok(ServiceVolume {
                    kind: l.kind,
                    source: l.source,
                    target: l.target,
                    read_only: l.read_only,
                    nocopy: l.volume.map(|v| v.nocopy).unwrap_or(false),
                    propagation: l.bind.and_then(|b| b.propagation),
                    tmpfs_size: l.tmpfs.and_then(|t| t.size),
                })
            }
            other => Err(de::Error::custom(format!(
                "expected \"source:target[:ro]\" or a mapping, not {}",
                json_kind(&other)
            ))),
        }
    }
}

fn parse_short_volume(s: &str) -> Result<ServiceVolume, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [t] => (None, *t, None),
        [s, t] => (Some(*s), *t, None),
        [s, t, o] => (Some(*s), *t, Some(*o)),
        _ => return Err(format!("invalid volume {s:?}: expected source:target[:mode]")),
    };
    if target.is_empty() {
        return Err(format!("invalid volume {s:?}: the target path is empty"));
    }
    let mut read_only = false;
    let mut nocopy = false;
    for o in opts.into_iter().flat_map(|o| o.split(',')) {
        match o {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "nocopy" => nocopy = true,
            other => {
                return Err(format!(
                    "invalid volume option {other:?} in {s:?} (expected ro, rw or nocopy)"
                ))
            }
        }
    }
    let kind = match source {
        None => "volume",
        Some(src) if src.starts_with('/') || src.starts_with('.') || src.starts_with('~') => "bind",
        Some(_) => "volume",
    };
    Ok(ServiceVolume {
        kind: kind.to_string(),
        source: source.map(str::to_string),
        target: target.to_string(),
        read_only,
        nocopy,
        propagation: None,
        tmpfs_size: None,
    })
}

impl<'de> Deserialize<'de> for FileRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Json::deserialize(d)? {
            Json::String(s) => Ok(FileRef {
                source: s,
                ..FileRef::default()
            }),
            Json::Object(m) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Long {
                    source: String,
                    target: Option<String>,
                    #[serde(default, deserialize_with = "string_or_number")]
                    uid: Option<String>,
                    #[serde(default, deserialize_with = "string_or_number")]
                    gid: Option<String>,
                    #[serde(default, deserialize_with = "file_mode")]
                    mode: Option<u32>,
                }
                let l: Long = serde_json::from_value(Json::Object(m)).map_err(de::Error::custom)?;
                Ok(FileRef {
                    source: l.source,
                    target: l.target,
                    uid: l.uid,
                    gid: l.gid,
                    mode: l.mode,
                })
            }
            other => Err(de::Error::custom(format!(
                "expected a name or a mapping with source and target, not {}",
                json_kind(&other)
            ))),
        }
    }
}

/// A file mode. YAML 1.1 reads `0440` as octal already; a quoted string is
/// read as octal too. Anything that is not octal is refused.
fn file_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let mode = match Option::<Json>::deserialize(d)? {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| de::Error::custom(format!("field `mode`: file mode {n} is not a valid mode")))?,
        Some(Json::String(s)) => {
            let digits = s.strip_prefix("0o").unwrap_or(&s);
            u32::from_str_radix(digits, 8).map_err(|_| {
                de::Error::custom(format!(
                    "field `mode`: file mode {s:?} is not an octal number (like 0440)"
                ))
            })?
        }
        Some(other) => {
            return Err(de::Error::custom(format!(
                "field `mode`: file mode must be an octal number, not {}",
                json_kind(&other)
            )))
        }
    };
    if mode > 0o7777 {
        return Err(de::Error::custom(format!(
            "field `mode`: file mode {mode:o} (octal) is larger than 7777"
        )));
    }
    Ok(Some(mode))
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Json::deserialize(d)? {
            Json::Number(n) => {
                let target = n
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| de::Error::custom(format!("port {n} is out of range")))?;
                Ok(Port {
                    target,
                    published: None,
                    protocol: "tcp".into(),
                    mode: "ingress".into(),
                })
            }
            Json::String(s) => parse_short_port(&s).map_err(de::Error::custom),
            Json::Object(m) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Long {
                    target: u16,
                    published: Option<u16>,
                    protocol: Option<String>,
                    mode: Option<String>,
                }
                let l: Long = serde_json::from_value(Json::Object(m)).map_err(de::Error::custom)?;
                Ok(Port {
                    target: l.target,
                    published: l.published,
                    protocol: l.protocol.unwrap_or_else(|| "tcp".into()),
                    mode: l.mode.unwrap_or_else(|| "ingress".into()),
                })
            }
            other => Err(de::Error::custom(format!(
                "expected \"published:target\" or a mapping, not {}",
                json_kind(&other)
            ))),
        }
    }
}

fn parse_short_port(s: &str) -> Result<Port, String> {
    let (ports, protocol) = match s.split_once('/') {
        Some((p, proto)) => (p, proto.to_string()),
        None => (s, "tcp".to_string()),
    };
    let num = |p: &str| p.parse::<u16>().map_err(|_| format!("invalid port {p:?} in {s:?}"));
    let (published, target) = match ports.split(':').collect::<Vec<_>>().as_slice() {
        [t] => (None, num(t)?),
        [p, t] => (Some(num(p)?), num(t)?),
        _ => {
            return Err(format!(
                "invalid port {s:?}: expected [published:]target[/protocol] (host IPs and ranges are not supported in swarm mode)"
            ))
        }
    };
    Ok(Port {
        target,
        published,
        protocol,
        mode: "ingress".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> ComposeFile {
        serde_json::from_value(crate::render::yaml::parse("t.yml", yaml).unwrap().to_json()).unwrap()
    }

    #[test]
    fn short_and_long_forms() {
        let f = load(
            "services:\n  a:\n    image: x\n    command: run --flag 'two words'\n    environment: [A=1, B]\n    labels: {x: 1}\n    networks: [n]\n    volumes: ['data:/d:ro', /host:/h]\n    configs: [c, {source: d, target: /etc/d, mode: 0440}]\n    ports: ['80:8080', {target: 9, published: 10, mode: host}]\nnetworks:\n  n:\nconfigs:\n  c: {file: ./c}\n  d: {file: ./d}\nvolumes:\n  data:\n",
        );
        let a = &f.services["a"];
        assert_eq!(a.command.as_deref().unwrap(), ["run", "--flag", "two words"]);
        assert_eq!(a.environment["A"].as_deref(), Some("1"));
        assert_eq!(a.environment["B"], None);
        assert_eq!(a.labels["x"], "1");
        assert!(a.networks.contains_key("n"));
        assert_eq!(a.volumes[0].kind, "volume");
        assert!(a.volumes[0].read_only);
        assert_eq!(a.volumes[1].kind, "bind");
        assert_eq!(a.configs[1].mode, Some(0o440));
        assert_eq!(a.ports[0].published, Some(80));
        assert_eq!(a.ports[0].target, 8080);
        assert_eq!(a.ports[1].mode, "host");
        assert!(f.networks.contains_key("n"));
        assert!(f.volumes.contains_key("data"));
    }

    #[test]
    fn string_modes_are_octal() {
        let f = load("services:\n  a:\n    image: x\n    configs: [{source: c, mode: '0400'}]\n");
        assert_eq!(f.services["a"].configs[0].mode, Some(0o400));
        let bad = crate::render::yaml::parse(
            "t.yml",
            "services:\n  a:\n    image: x\n    configs: [{source: c, mode: 0948}]\n",
        )
        .unwrap();
        let err = serde_json::from_value::<ComposeFile>(bad.to_json())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an octal number"), "{err}");
    }

    #[test]
    fn shell_splitting() {
        assert_eq!(
            shell_words(r#"a "b c" d\ e 'f"g'"#).unwrap(),
            ["a", "b c", "d e", "f\"g"]
        );
        assert!(shell_words("a 'b").is_err());
        assert_eq!(shell_words("").unwrap(), Vec::<String>::new());
    }
}
