//! Plan, normalising (pure): comparable JSON of service specs and the
//! field-level difference between two of them.
//!
//! Services are compared as normalised JSON: the defaults the daemon fills in
//! (runtime, isolation, endpoint mode, one replica), object IDs in place of
//! names, and Go's zero values are taken out of both sides first.

use std::collections::{BTreeSet, HashMap};

use bollard::models::ServiceSpec;
use serde_json::Value as Json;

use super::Change;

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
pub(super) fn diff(path: &str, have: Option<&Json>, want: Option<&Json>, out: &mut Vec<Change>) {
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
