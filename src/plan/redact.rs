//! Plan, for output (pure): what `swarmlog plan` may show. Environment
//! changes are listed by key; values of keys that look secret are masked
//! (unless asked for); config and secret data never leave the process.

use serde_json::Value as Json;

use super::{Action, Change, Plan};

/// What stands in place of a hidden value.
pub const MASK: &str = "(hidden)";

/// Field of a service's environment in a change.
const ENV_FIELD: &str = "TaskTemplate.ContainerSpec.Env";

/// Whether an environment key looks like it holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "PASS",
        "SECRET",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "AUTH",
        "PRIVATE",
        "CERT",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// The plan as it may be shown: env changes by key, secret-looking values
/// masked unless `show_values`, config and secret data removed.
pub fn redacted(p: &Plan, show_values: bool) -> Plan {
    let mut out = p.clone();
    for a in &mut out.actions {
        match a {
            Action::CreateConfig { spec, .. } => spec.data = None,
            Action::CreateSecret { spec, .. } => spec.data = None,
            Action::CreateService { spec, .. } => mask_spec_env(spec, show_values),
            Action::UpdateService { spec, changes, .. } => {
                mask_spec_env(spec, show_values);
                *changes = changes
                    .drain(..)
                    .flat_map(|c| {
                        if c.field == ENV_FIELD {
                            env_changes(&c, show_values)
                        } else {
                            vec![c]
                        }
                    })
                    .collect();
            }
            _ => {}
        }
    }
    out
}

fn shown(key: &str, value: &str, show_values: bool) -> String {
    if show_values || !is_secret_key(key) {
        value.to_string()
    } else {
        MASK.to_string()
    }
}

fn mask_spec_env(spec: &mut bollard::models::ServiceSpec, show_values: bool) {
    let Some(env) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
        .and_then(|c| c.env.as_mut())
    else {
        return;
    };
    for e in env.iter_mut() {
        if let Some((k, v)) = e.split_once('=') {
            *e = format!("{k}={}", shown(k, v, show_values));
        }
    }
}

/// `KEY=VALUE` entries of a JSON list, by key.
fn entries(v: &Option<Json>) -> Vec<(String, String)> {
    v.as_ref()
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (e.to_string(), String::new()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One change per environment key that differs.
fn env_changes(c: &Change, show_values: bool) -> Vec<Change> {
    let (from, to) = (entries(&c.from), entries(&c.to));
    let mut keys: Vec<&String> = from.iter().chain(to.iter()).map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    let find = |list: &[(String, String)], k: &str| list.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (find(&from, k), find(&to, k));
            (a != b).then(|| Change {
                field: format!("{ENV_FIELD}[{k}]"),
                from: a.map(|v| Json::String(shown(k, &v, show_values))),
                to: b.map(|v| Json::String(shown(k, &v, show_values))),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ConfigSpec, ServiceSpec};

    fn update(from: &[&str], to: &[&str]) -> Plan {
        Plan {
            actions: vec![Action::UpdateService {
                name: "s".into(),
                id: "i".into(),
                version: 1,
                reason: super::super::Reason::Changed,
                changes: vec![Change {
                    field: ENV_FIELD.into(),
                    from: Some(serde_json::json!(from)),
                    to: Some(serde_json::json!(to)),
                }],
                spec: ServiceSpec::default(),
            }],
            ..Plan::default()
        }
    }

    #[test]
    fn env_by_key_with_secrets_masked() {
        let p = update(
            &["A=1", "ELASTIC_PASSWORD=old", "GONE=x"],
            &["A=2", "ELASTIC_PASSWORD=new", "api_token=t"],
        );
        let Action::UpdateService { changes, .. } = &redacted(&p, false).actions[0] else {
            panic!()
        };
        let shown: Vec<String> = changes
            .iter()
            .map(|c| format!("{} {:?} {:?}", c.field, c.from, c.to))
            .collect();
        assert_eq!(
            shown,
            [
                r#"TaskTemplate.ContainerSpec.Env[A] Some(String("1")) Some(String("2"))"#,
                r#"TaskTemplate.ContainerSpec.Env[ELASTIC_PASSWORD] Some(String("(hidden)")) Some(String("(hidden)"))"#,
                r#"TaskTemplate.ContainerSpec.Env[GONE] Some(String("x")) None"#,
                r#"TaskTemplate.ContainerSpec.Env[api_token] None Some(String("(hidden)"))"#,
            ]
        );
        let text = serde_json::to_string(&redacted(&p, false)).unwrap();
        assert!(!text.contains("old") && !text.contains("\"new\""), "{text}");
        let Action::UpdateService { changes, .. } = &redacted(&p, true).actions[1 - 1] else {
            panic!()
        };
        assert!(changes.iter().any(|c| c.to == Some(Json::String("new".into()))));
    }

    #[test]
    fn config_data_never_shown() {
        let p = Plan {
            actions: vec![Action::CreateConfig {
                name: "c".into(),
                spec: ConfigSpec {
                    data: Some("c2VjcmV0".into()),
                    ..Default::default()
                },
            }],
            ..Plan::default()
        };
        let text = serde_json::to_string(&redacted(&p, true)).unwrap();
        assert!(!text.contains("c2VjcmV0"), "{text}");
    }
}
