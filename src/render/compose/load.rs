//! Render step, stack files: text to a checked [`ComposeFile`], with every
//! problem located in the file it came from.

use crate::diag::{Problem, Problems};
use crate::render::compose::interpolate::interpolate_tree;
use crate::render::compose::model::ComposeFile;
use crate::render::yaml::{self, Node};

/// A parsed stack file and what was noticed while loading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub compose: ComposeFile,
    /// The parsed tree, kept to locate later problems.
    pub tree: Node,
    pub file: String,
    pub warnings: Vec<String>,
}

/// Parses and interpolates a stack file (as `docker stack deploy` does) and
/// reads it into the compose model.
pub fn load(file: &str, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, Problems> {
    let mut tree = yaml::parse(file, text).map_err(|e| Problem::new(file, e.to_string()))?;
    if matches!(tree.value, yaml::Value::Null) {
        return Err(Problem::new(file, "the stack file is empty").into());
    }
    if !matches!(tree.value, yaml::Value::Map(_)) {
        return Err(Problem::new(
            file,
            format!("expected a mapping at the top, found {}", tree.value.kind()),
        )
        .at(tree.pos)
        .into());
    }
    let mut unset = Vec::new();
    interpolate_tree(&mut tree, env, &mut unset)
        .map_err(|e| Problem::new(file, e.error.to_string()).at(e.node.pos).field(&e.path))?;
    let mut warnings: Vec<String> = Vec::new();
    unset.sort();
    unset.dedup();
    for name in unset {
        warnings.push(format!(
            "{file}: the variable {name} is not set; it was replaced by an empty string"
        ));
    }
    let json = tree.to_json();
    let compose: ComposeFile = serde_path_to_error::deserialize(&json).map_err(|e| {
        let mut path: Vec<String> = path_parts(e.path());
        let mut message = e.inner().to_string();
        // Deserializers of long forms name the inner field as "field `x`: ...".
        if let Some(rest) = message.strip_prefix("field `") {
            if let Some((field, msg)) = rest.split_once("`: ") {
                path.push(field.to_string());
                message = msg.to_string();
            }
        }
        Problem::new(file, message).at(tree.locate(&path)).field(&path)
    })?;
    let mut problems = Vec::new();
    for (name, svc) in &compose.services {
        for key in svc.extra.keys() {
            if key.starts_with("x-") {
                continue;
            }
            let path = vec!["services".to_string(), name.clone(), key.clone()];
            problems.push(Problem::new(file, refusal(key)).at(tree.locate(&path)).field(&path));
        }
        for key in svc.deploy.extra.keys() {
            if key.starts_with("x-") {
                continue;
            }
            let path = vec!["services".to_string(), name.clone(), "deploy".to_string(), key.clone()];
            problems.push(
                Problem::new(file, format!("deploy.{key} is not a key swarm services have (the compose file format's deploy keys are mode, replicas, labels, placement, resources, restart_policy, update_config, rollback_config and endpoint_mode)"))
                    .at(tree.locate(&path))
                    .field(&path),
            );
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    for key in compose.extra.keys() {
        if !key.starts_with("x-") && key != "name" {
            warnings.push(format!(
                "{file}: top-level key {key} is not supported by swarmlog and is ignored"
            ));
        }
    }
    Ok(Loaded {
        compose,
        tree,
        file: file.to_string(),
        warnings,
    })
}

/// Service keys swarm mode cannot do: `docker stack deploy` ignores them
/// (with a warning) or refuses them, so the service would differ from the file.
const SWARM_CANNOT: &[&str] = &[
    "build",
    "cgroupns_mode",
    "cgroup_parent",
    "container_name",
    "cpu_quota",
    "cpu_shares",
    "cpuset",
    "depends_on",
    "devices",
    "domainname",
    "expose",
    "extends",
    "external_links",
    "ipc",
    "links",
    "mac_address",
    "mem_limit",
    "memswap_limit",
    "network_mode",
    "pid",
    "privileged",
    "restart",
    "security_opt",
    "shm_size",
    "tmpfs",
    "userns_mode",
    "volume_driver",
    "volumes_from",
];

/// Why a service key outside the converted subset is refused.
fn refusal(key: &str) -> String {
    if SWARM_CANNOT.contains(&key) {
        format!(
            "`{key}` cannot be done by a swarm service (docker stack deploy would ignore it or refuse it): remove it"
        )
    } else {
        format!("`{key}` is not converted by swarmlog: remove it, or deploy this file with docker stack deploy")
    }
}

fn path_parts(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|seg| match seg {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn type_error_is_located() {
        let text = "services:\n  web:\n    image: x\n    deploy:\n      replicas: three\n";
        let err = load("s.yml", text, &no_env).unwrap_err();
        let p = &err.0[0];
        assert_eq!(p.field.as_deref(), Some("services.web.deploy.replicas"));
        assert_eq!(p.pos.map(|p| p.line), Some(5));
        assert_eq!(p.file, "s.yml");
    }

    #[test]
    fn interpolates_from_env() {
        let env = |n: &str| (n == "TAG").then(|| "1.2".to_string());
        let l = load(
            "s.yml",
            "services:\n  web:\n    image: \"x:${TAG}\"\n    user: $$HOME\n",
            &env,
        )
        .unwrap();
        assert_eq!(l.compose.services["web"].image.as_deref(), Some("x:1.2"));
        assert_eq!(l.compose.services["web"].user.as_deref(), Some("$HOME"));
    }

    #[test]
    fn required_variable_is_located() {
        let err = load("s.yml", "services:\n  web:\n    image: ${IMG:?set IMG}\n", &no_env).unwrap_err();
        assert_eq!(err.0[0].pos.map(|p| p.line), Some(3));
        assert!(err.0[0].message.contains("set IMG"));
    }

    #[test]
    fn keys_outside_the_subset_are_refused_at_their_line() {
        let l = load(
            "s.yml",
            "services:\n  web:\n    image: x\n    cap_add: [NET_ADMIN]\n    x-note: 1\n",
            &no_env,
        )
        .unwrap();
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let err = load(
            "s.yml",
            "services:\n  web:\n    image: x\n    privileged: true\n    env_file: a.env\n    deploy:\n      bogus: 1\n",
            &no_env,
        )
        .unwrap_err();
        let lines: Vec<_> = err
            .0
            .iter()
            .map(|p| (p.pos.map(|p| p.line), p.message.clone()))
            .collect();
        assert_eq!(err.0.len(), 3, "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|(l, m)| *l == Some(4) && m.contains("cannot be done by a swarm service")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|(l, m)| *l == Some(5) && m.contains("not converted by swarmlog")),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|(l, m)| *l == Some(7) && m.contains("deploy.bogus")),
            "{lines:?}"
        );
    }
}
