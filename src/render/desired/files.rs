//! Render step, desired state: configs and secrets — the config and secret
//! objects (content-hashed names, since they are immutable) and the
//! references a service makes to them.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use bollard::models::{
    ConfigSpec, SecretSpec, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1,
    TaskSpecContainerSpecSecrets,
};
use sha2::{Digest, Sha256};

use super::{
    hex, owned_labels, scope, spec_hash, Ctx, DesiredConfig, DesiredSecret, FileReader, MadeLabels, LABEL_KEY,
    LABEL_SPEC_HASH,
};
use crate::render::compose::model::{FileObjectDef, FileRef, Service};

/// Contents of a config or secret: (key, content hash, data, labels, template driver).
pub(super) type FileObject = (String, String, Vec<u8>, HashMap<String, String>, Option<String>);

/// Reads the configs (or secrets: `section`) the stack creates; returns them
/// and the sorted names of the external ones.
pub(super) fn file_objects(
    ctx: &mut Ctx,
    section: &str,
    defs: &BTreeMap<String, FileObjectDef>,
    read_file: FileReader,
    made_labels: MadeLabels,
) -> (Vec<FileObject>, Vec<String>) {
    let mut out = Vec::new();
    let mut external = Vec::new();
    for (key, def) in defs {
        if def.external {
            external.push(def.name.clone().unwrap_or_else(|| key.clone()));
            continue;
        }
        let credential = def.labels.get(crate::security::LABEL_CREDENTIAL);
        if credential.is_some() && section != "secrets" {
            ctx.problem(
                &[section, key, "labels", crate::security::LABEL_CREDENTIAL],
                "a credential is a secret: a config's data can be read back by anyone with the engine's API",
            );
            continue;
        }
        let tls = def.labels.get(crate::tls::LABEL_TLS);
        if let Some(role) = tls {
            let is_key = [crate::tls::HTTP_KEY, crate::tls::NODE_KEY].contains(&role.as_str());
            let known = is_key || [crate::tls::CA, crate::tls::HTTP, crate::tls::NODE].contains(&role.as_str());
            let why = if !known {
                Some(format!(
                    "unknown role {role:?}: {}, {}, {} (configs) or {}, {} (secrets)",
                    crate::tls::CA,
                    crate::tls::HTTP,
                    crate::tls::NODE,
                    crate::tls::HTTP_KEY,
                    crate::tls::NODE_KEY
                ))
            } else if is_key && section != "secrets" {
                Some(
                    "a private key is a secret: a config's data can be read back by anyone with the engine's API"
                        .into(),
                )
            } else if !is_key && section != "configs" {
                Some("a certificate is a config (public; swarmlog reads it back to renew it before it expires)".into())
            } else {
                None
            };
            if let Some(why) = why {
                ctx.problem(&[section, key, "labels", crate::tls::LABEL_TLS], why);
                continue;
            }
        }
        // A credential or certificate without `file:` is made by swarmlog;
        // with one (an ejected stack file), the file holds it.
        let file = match (&def.file, credential, tls) {
            (None, Some(user), _) => Some(format!("{}{user}", crate::security::CREDENTIAL_PATH)),
            (None, None, Some(role)) => Some(format!("{}{role}", crate::tls::TLS_PATH)),
            (f, _, _) => f.clone(),
        };
        let Some(file) = &file else {
            ctx.problem(
                &[section, key],
                format!("{section}.{key} needs `file:` (or `external: true`)"),
            );
            continue;
        };
        match read_file(file) {
            Ok(data) => {
                let content = hex(&Sha256::digest(&data))[..8].to_string();
                let mut labels = owned_labels(ctx.stack, &def.labels);
                labels.extend(made_labels(file));
                out.push((key.clone(), content, data, labels, def.template_driver.clone()));
            }
            Err(e) => ctx.problem(&[section, key, "file"], e),
        }
    }
    external.sort();
    (out, external)
}

/// The engine name of each config (or secret) by compose key.
pub(super) fn object_names(
    stack: &str,
    defs: &BTreeMap<String, FileObjectDef>,
    objects: &[FileObject],
) -> BTreeMap<String, String> {
    defs.iter()
        .map(|(k, d)| {
            (
                k.clone(),
                object_name(stack, k, d, objects.iter().find(|c| &c.0 == k).map(|c| c.1.as_str())),
            )
        })
        .collect()
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

/// The config objects the stack creates.
pub(super) fn config_objects(objects: Vec<FileObject>, names: &BTreeMap<String, String>) -> Vec<DesiredConfig> {
    objects
        .into_iter()
        .map(|(key, _, data, labels, templating)| {
            let name = names.get(&key).cloned().unwrap_or_default();
            let (spec, hash) = file_object_spec(&key, name, labels, &data, templating);
            DesiredConfig { key, spec, hash }
        })
        .collect()
}

/// The secret objects the stack creates.
pub(super) fn secret_objects(objects: Vec<FileObject>, names: &BTreeMap<String, String>) -> Vec<DesiredSecret> {
    objects
        .into_iter()
        .map(|(key, _, data, labels, templating)| {
            let name = names.get(&key).cloned().unwrap_or_default();
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
        .collect()
}

/// The spec of a config or secret (they share their fields), with its hash
/// and swarmlog's labels in place.
pub(super) fn file_object_spec(
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

/// A service's config references; an unknown config is a problem.
pub(super) fn config_refs(
    ctx: &mut Ctx,
    key: &str,
    svc: &Service,
    config_names: &BTreeMap<String, String>,
) -> Vec<TaskSpecContainerSpecConfigs> {
    let mut refs = svc
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
        .collect::<Vec<_>>();
    // By name, as `docker stack deploy` orders them (so the order of the
    // compose file never makes a difference to the spec).
    refs.sort_by(|a, b| a.config_name.cmp(&b.config_name));
    refs
}

/// A service's secret references; an unknown secret is a problem.
pub(super) fn secret_refs(
    ctx: &mut Ctx,
    key: &str,
    svc: &Service,
    secret_names: &BTreeMap<String, String>,
) -> Vec<TaskSpecContainerSpecSecrets> {
    let mut refs = svc
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
        .collect::<Vec<_>>();
    refs.sort_by(|a, b| a.secret_name.cmp(&b.secret_name));
    refs
}

/// Where a config or secret lands in the container: (path, uid, gid, mode).
fn file_target(r: &FileRef) -> (String, String, String, u32) {
    (
        r.target.clone().unwrap_or_else(|| r.source.clone()),
        r.uid.clone().unwrap_or_else(|| "0".to_string()),
        r.gid.clone().unwrap_or_else(|| "0".to_string()),
        r.mode.unwrap_or(0o444),
    )
}
