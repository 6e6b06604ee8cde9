//! Render step, values: user values files checked against the chart's
//! defaults (which are the schema) and deep-merged over them.
//!
//! The schema rule: a key must exist in the defaults; a value must have the
//! type of its default (scalars may stand for strings). An empty mapping or a
//! null in the defaults accepts anything (free-form maps such as extra env).

use serde_json::{Map, Value as Json};

use crate::diag::{did_you_mean, Problem};
use crate::render::yaml::{Node, Value};

/// Checks `user` (from `file`) against `defaults`, collecting every problem.
pub fn check(file: &str, user: &Node, defaults: &Json, problems: &mut Vec<Problem>) {
    let mut path = Vec::new();
    check_node(file, user, defaults, &mut path, problems);
}

fn check_node(file: &str, node: &Node, default: &Json, path: &mut Vec<String>, problems: &mut Vec<Problem>) {
    let mismatch = |expected: &str| {
        Problem::new(file, format!("expected {expected}, found {}", node.value.kind()))
            .at(node.pos)
            .field(path)
    };
    match (default, &node.value) {
        (Json::Null, _) => {}
        // A null in a user file means "keep the default".
        (_, Value::Null) => {}
        (Json::Object(d), Value::Map(entries)) => {
            if d.is_empty() {
                return;
            }
            for (k, v) in entries {
                path.push(k.name.clone());
                match d.get(&k.name) {
                    Some(dv) => check_node(file, v, dv, path, problems),
                    None => {
                        let hint = did_you_mean(&k.name, d.keys().map(String::as_str))
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        let known: Vec<&str> = d.keys().map(String::as_str).collect();
                        problems.push(
                            Problem::new(
                                file,
                                format!("unknown key `{}`{hint}; known keys here: {}", k.name, known.join(", ")),
                            )
                            .at(k.pos)
                            .field(path),
                        );
                    }
                }
                path.pop();
            }
        }
        (Json::Object(_), _) => problems.push(mismatch("a mapping")),
        (Json::Array(_), Value::Seq(_)) => {}
        (Json::Array(_), _) => problems.push(mismatch("a list")),
        (Json::Bool(_), Value::Bool(_)) => {}
        (Json::Bool(_), _) => problems.push(mismatch("true or false")),
        (Json::Number(n), Value::Int(_)) if n.is_i64() || n.is_u64() => {}
        (Json::Number(n), Value::Int(_) | Value::Float(_)) if n.is_f64() => {}
        (Json::Number(n), _) if n.is_f64() => problems.push(mismatch("a number")),
        (Json::Number(_), _) => problems.push(mismatch("an integer")),
        (Json::String(_), Value::String(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_)) => {}
        (Json::String(_), _) => problems.push(mismatch("a string")),
    }
}

/// Deep-merges `over` into `base`: mappings merge key by key, anything else
/// replaces. Scalars given where the default is a string become strings; a
/// null in `over` keeps the base value.
pub fn merge(base: &mut Json, over: &Json) {
    match (base, over) {
        (_, Json::Null) => {}
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b @ Json::String(_), Json::Number(n)) => *b = Json::String(n.to_string()),
        (b @ Json::String(_), Json::Bool(x)) => *b = Json::String(x.to_string()),
        (b, o) => *b = o.clone(),
    }
}

/// Sets `path` (dotted) to a string value, creating mappings on the way, for `--set`.
pub fn set_path(root: &mut Json, path: &str, value: Json) -> Result<(), String> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("invalid key path {path:?}"));
    }
    let mut cur = root;
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = Json::Object(Map::new());
        }
        let Json::Object(map) = cur else {
            return Err(format!("{path}: not a mapping"));
        };
        if i + 1 == parts.len() {
            map.insert((*part).to_string(), value);
            return Ok(());
        }
        cur = map
            .entry((*part).to_string())
            .or_insert_with(|| Json::Object(Map::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> Json {
        json!({"stack": "logging", "kibana": {"replicas": 1, "domain": "a", "env": {}}, "extra": null, "list": []})
    }

    fn problems(text: &str) -> Vec<Problem> {
        let node = crate::render::yaml::parse("v.yaml", text).unwrap();
        let mut p = Vec::new();
        check("v.yaml", &node, &defaults(), &mut p);
        p
    }

    #[test]
    fn unknown_key_with_suggestion() {
        let p = problems("kibana:\n  replcas: 2\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field.as_deref(), Some("kibana.replcas"));
        assert_eq!(p[0].pos.map(|p| (p.line, p.column)), Some((2, 3)));
        assert!(p[0].message.contains("did you mean `replicas`"), "{}", p[0].message);
    }

    #[test]
    fn wrong_types() {
        let p = problems("kibana:\n  replicas: three\n  domain: [x]\nlist: 3\n");
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].message.contains("expected an integer"));
        assert!(p[1].message.contains("expected a string"));
        assert!(p[2].message.contains("expected a list"));
    }

    #[test]
    fn free_form_and_nulls_accept_anything() {
        assert!(problems("kibana:\n  env: {A: 1, B: x}\nextra: {any: [1]}\nstack:\n").is_empty());
    }

    #[test]
    fn merge_is_deep_and_later_wins() {
        let mut base = defaults();
        merge(&mut base, &json!({"kibana": {"replicas": 2}, "stack": 5}));
        merge(&mut base, &json!({"kibana": {"domain": "b"}}));
        assert_eq!(base["kibana"], json!({"replicas": 2, "domain": "b", "env": {}}));
        assert_eq!(base["stack"], json!("5"));
    }

    #[test]
    fn set_path_creates_maps() {
        let mut v = json!({"a": {"b": 1}});
        set_path(&mut v, "a.c.d", json!("x")).unwrap();
        assert_eq!(v, json!({"a": {"b": 1, "c": {"d": "x"}}}));
        assert!(set_path(&mut v, "a..b", json!(1)).is_err());
    }
}
