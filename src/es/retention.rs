//! Retention (pure): the ILM policy and the index template swarmlog keeps
//! in Elasticsearch for the data stream Logstash writes to, and whether
//! what Elasticsearch holds already says the same.
//!
//! Elasticsearch answers a GET with more than was PUT (a phase's `min_age:
//! 0ms`, `delete_searchable_snapshot: true`, a data stream's `hidden:
//! false`, settings as strings and nested): "the same" means every value
//! swarmlog sets is there unchanged, and the phases and actions are exactly
//! swarmlog's (one a person added is a difference, put back).

use std::time::Duration;

use serde_json::{json, Value as Json};

/// The policy's and the template's name.
pub const POLICY: &str = "swarmlog-logs";
pub const TEMPLATE: &str = "swarmlog-logs";
/// The data streams the template applies to; Logstash writes
/// `logs-swarm-default` (charts/logging/files/logstash.conf).
pub const DATA_STREAMS: &str = "logs-swarm-*";
/// Above Elasticsearch's built-in `logs` template (100), which matches
/// `logs-*-*` with a policy that never deletes.
pub const PRIORITY: u64 = 200;
/// `_meta.managed_by` of what swarmlog writes: anything else of the same
/// name is not swarmlog's and is never overwritten.
pub const MANAGED_BY: &str = "swarmlog";
/// Rollover: a new backing index every day (or sooner for a shorter
/// retention), or when a primary shard reaches this size.
pub const ROLLOVER_AGE: Duration = Duration::from_secs(86_400);
pub const ROLLOVER_SIZE: &str = "50gb";

/// `elasticsearch.retention`: `0` keeps forever (`None`); else a duration
/// of whole seconds (`14d`, `36h`, `2w`).
pub fn parse(text: &str) -> Result<Option<Duration>, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(None);
    }
    let d = humantime::parse_duration(t)
        .map_err(|e| format!("invalid retention {text:?}: {e} (a duration such as 14d, 36h or 2w; 0 keeps forever)"))?;
    if d.subsec_nanos() != 0 || d.as_secs() < 60 {
        return Err(format!(
            "invalid retention {text:?}: at least one minute, in whole seconds (0 keeps forever)"
        ));
    }
    Ok(Some(d))
}

/// A duration in Elasticsearch's time units, the largest that is exact
/// (`14d`, `36h`, `90m`, `45s`).
pub fn es_time(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s > 0 && s % secs == 0 {
            return format!("{}{unit}", s / secs);
        }
    }
    format!("{s}s")
}

/// The body of `PUT /_ilm/policy/swarmlog-logs`.
pub fn policy(retention: Option<Duration>) -> Json {
    let rollover_age = retention.map_or(ROLLOVER_AGE, |r| r.min(ROLLOVER_AGE));
    let mut phases = json!({
        "hot": {"actions": {"rollover": {
            "max_age": es_time(rollover_age),
            "max_primary_shard_size": ROLLOVER_SIZE,
        }}}
    });
    let description = match retention {
        Some(r) => {
            phases["delete"] = json!({"min_age": es_time(r), "actions": {"delete": {}}});
            format!(
                "Logs of the swarm, deleted {} after their index rolled over (elasticsearch.retention); kept by swarmlog",
                es_time(r)
            )
        }
        None => "Logs of the swarm, kept forever (elasticsearch.retention: 0); kept by swarmlog".to_string(),
    };
    json!({"policy": {
        "_meta": {"managed_by": MANAGED_BY, "description": description},
        "phases": phases,
    }})
}

/// The body of `PUT /_index_template/swarmlog-logs`: the data streams
/// `logs-swarm-*` under the policy, one replica where there is a second
/// node (a single node stays green).
pub fn template() -> Json {
    json!({
        "index_patterns": [DATA_STREAMS],
        "data_stream": {},
        "priority": PRIORITY,
        "composed_of": [],
        "template": {
            "settings": {"index": {
                "lifecycle": {"name": POLICY},
                "auto_expand_replicas": "0-1",
            }},
            "mappings": {"properties": {
                "@timestamp": {"type": "date"},
                "message": {"type": "match_only_text"},
            }},
        },
        "_meta": {
            "managed_by": MANAGED_BY,
            "description": "Data streams of the swarm's logs (Logstash's output); kept by swarmlog",
        },
    })
}

/// How what Elasticsearch holds compares with what swarmlog wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    Missing,
    Same,
    /// The first difference, as a path and the two values.
    Differs(String),
    /// It exists without `_meta.managed_by: swarmlog`: someone else's.
    NotOurs,
}

/// `GET /_ilm/policy/NAME`'s answer (`None`: 404) against `policy()`.
pub fn compare_policy(answer: Option<&Json>, desired: &Json) -> Compare {
    let Some(held) = answer.and_then(|a| a.get(POLICY)).and_then(|p| p.get("policy")) else {
        return Compare::Missing;
    };
    compare(held, &desired["policy"], "policy")
}

/// `GET /_index_template/NAME`'s answer (`None`: 404) against `template()`.
pub fn compare_template(answer: Option<&Json>, desired: &Json) -> Compare {
    let held = answer
        .and_then(|a| a.get("index_templates"))
        .and_then(Json::as_array)
        .and_then(|l| {
            l.iter()
                .find(|t| t.get("name").and_then(Json::as_str) == Some(TEMPLATE))
        })
        .and_then(|t| t.get("index_template"));
    let Some(held) = held else {
        return Compare::Missing;
    };
    compare(held, desired, "index_template")
}

fn compare(held: &Json, desired: &Json, what: &str) -> Compare {
    if held.pointer("/_meta/managed_by").and_then(Json::as_str) != Some(MANAGED_BY) {
        return Compare::NotOurs;
    }
    match covers(held, desired, what, false) {
        None => Compare::Same,
        Some(d) => Compare::Differs(d),
    }
}

/// The first place where `held` does not carry `want`: every key of an
/// object in `want` must be in `held` with a value that carries it (extra
/// keys are Elasticsearch's defaults), except under `phases` and `actions`,
/// whose keys must be exactly `want`'s. Arrays are equal element by
/// element; scalars equal as text (settings come back as strings).
fn covers(held: &Json, want: &Json, path: &str, exact_keys: bool) -> Option<String> {
    match (held, want) {
        (Json::Object(h), Json::Object(w)) => {
            if exact_keys {
                if let Some(extra) = h.keys().find(|k| !w.contains_key(*k)) {
                    return Some(format!("{path}.{extra} is not swarmlog's"));
                }
            }
            for (k, wv) in w {
                let p = format!("{path}.{k}");
                let Some(hv) = h.get(k) else {
                    return Some(format!("{p} is missing"));
                };
                if let Some(d) = covers(hv, wv, &p, k == "phases" || k == "actions") {
                    return Some(d);
                }
            }
            None
        }
        (Json::Array(h), Json::Array(w)) => {
            if h.len() != w.len() {
                return Some(format!("{path} is {held}, not {want}"));
            }
            h.iter()
                .zip(w)
                .enumerate()
                .find_map(|(i, (hv, wv))| covers(hv, wv, &format!("{path}[{i}]"), false))
        }
        (h, w) if scalar_text(h).is_some() && scalar_text(h) == scalar_text(w) => None,
        _ => Some(format!("{path} is {held}, not {want}")),
    }
}

fn scalar_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The creation day in a backing index's name, `.ds-<stream>-<yyyy.MM.dd>-<generation>`
/// (Elasticsearch's documented naming), as `yyyy-MM-dd`.
pub fn backing_index_day(index: &str) -> Option<String> {
    let mut parts = index.rsplitn(3, '-');
    let generation = parts.next()?;
    let day = parts.next()?;
    let ok = generation.len() == 6
        && generation.bytes().all(|b| b.is_ascii_digit())
        && day.len() == 10
        && day.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'.'
            } else {
                b.is_ascii_digit()
            }
        });
    ok.then(|| day.replace('.', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_values_are_read_literally() {
        assert_eq!(parse("0"), Ok(None));
        assert_eq!(parse("14d"), Ok(Some(Duration::from_secs(14 * 86_400))));
        assert_eq!(parse("36h"), Ok(Some(Duration::from_secs(36 * 3_600))));
        for bad in ["", "14", "fourteen days", "30s", "1.5s", "-1d"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(es_time(Duration::from_secs(14 * 86_400)), "14d");
        assert_eq!(es_time(Duration::from_secs(36 * 3_600)), "36h");
        assert_eq!(es_time(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(es_time(Duration::from_secs(61)), "61s");
        assert_eq!(es_time(Duration::from_secs(2 * 7 * 86_400)), "14d");
    }

    #[test]
    fn the_policy_deletes_after_the_retention_and_rolls_over_daily() {
        let p = policy(Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(p.pointer("/policy/phases/delete/min_age"), Some(&json!("14d")));
        assert_eq!(p.pointer("/policy/phases/delete/actions/delete"), Some(&json!({})));
        assert_eq!(
            p.pointer("/policy/phases/hot/actions/rollover/max_age"),
            Some(&json!("1d"))
        );
        // A retention shorter than a day rolls over as often as it deletes.
        let p = policy(Some(Duration::from_secs(6 * 3_600)));
        assert_eq!(
            p.pointer("/policy/phases/hot/actions/rollover/max_age"),
            Some(&json!("6h"))
        );
        let forever = policy(None);
        assert!(forever.pointer("/policy/phases/delete").is_none());
        assert_eq!(forever.pointer("/policy/_meta/managed_by"), Some(&json!("swarmlog")));
    }

    /// What Elasticsearch 8 answers to `GET /_ilm/policy/swarmlog-logs`
    /// after the PUT of `policy()`: min_age added, the delete action's
    /// default filled in, version and dates around it.
    fn es_policy_answer(delete_after: &str) -> Json {
        json!({POLICY: {
            "version": 3,
            "modified_date": "2026-12-01T10:00:00.000Z",
            "policy": {
                "phases": {
                    "hot": {"min_age": "0ms", "actions": {"rollover": {"max_age": "1d", "max_primary_shard_size": "50gb"}}},
                    "delete": {"min_age": delete_after, "actions": {"delete": {"delete_searchable_snapshot": true}}}
                },
                "_meta": {"managed_by": "swarmlog", "description": format!("Logs of the swarm, deleted {delete_after} after their index rolled over (elasticsearch.retention); kept by swarmlog")}
            },
            "in_use_by": {"indices": [], "data_streams": ["logs-swarm-default"], "composable_templates": [TEMPLATE]}
        }})
    }

    #[test]
    fn what_elasticsearch_answers_for_the_policy_is_the_same() {
        let want = policy(Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(compare_policy(Some(&es_policy_answer("14d")), &want), Compare::Same);
        assert_eq!(compare_policy(None, &want), Compare::Missing);
        // Another retention.
        assert!(matches!(
            compare_policy(Some(&es_policy_answer("30d")), &want),
            Compare::Differs(_)
        ));
        // A phase someone added is not swarmlog's.
        let mut added = es_policy_answer("14d");
        added[POLICY]["policy"]["phases"]["warm"] = json!({"min_age": "2d", "actions": {}});
        assert!(matches!(
            compare_policy(Some(&added), &want),
            Compare::Differs(d) if d.contains("phases.warm")
        ));
        // Keep-forever has no delete phase: the one held is a difference.
        assert!(matches!(
            compare_policy(Some(&es_policy_answer("14d")), &policy(None)),
            Compare::Differs(_)
        ));
        // Someone else's policy of that name.
        let mut other = es_policy_answer("14d");
        other[POLICY]["policy"]["_meta"] = json!({"owner": "ops"});
        assert_eq!(compare_policy(Some(&other), &want), Compare::NotOurs);
    }

    #[test]
    fn what_elasticsearch_answers_for_the_template_is_the_same() {
        let answer = json!({"index_templates": [{"name": TEMPLATE, "index_template": {
            "index_patterns": ["logs-swarm-*"],
            "template": {
                "settings": {"index": {"lifecycle": {"name": POLICY}, "auto_expand_replicas": "0-1"}},
                "mappings": {"properties": {"@timestamp": {"type": "date"}, "message": {"type": "match_only_text"}}}
            },
            "composed_of": [],
            "priority": 200,
            "_meta": {"managed_by": "swarmlog", "description": "Data streams of the swarm's logs (Logstash's output); kept by swarmlog"},
            "data_stream": {"hidden": false, "allow_custom_routing": false}
        }}]});
        assert_eq!(compare_template(Some(&answer), &template()), Compare::Same);
        let mut moved = answer.clone();
        moved["index_templates"][0]["index_template"]["priority"] = json!(150);
        assert!(matches!(compare_template(Some(&moved), &template()), Compare::Differs(d) if d.contains("priority")));
        let mut unbound = answer.clone();
        unbound["index_templates"][0]["index_template"]["template"]["settings"] = json!({});
        assert!(matches!(
            compare_template(Some(&unbound), &template()),
            Compare::Differs(d) if d.contains("settings.index")
        ));
        assert_eq!(
            compare_template(Some(&json!({"index_templates": []})), &template()),
            Compare::Missing
        );
    }

    #[test]
    fn backing_index_names_give_their_day() {
        assert_eq!(
            backing_index_day(".ds-logs-swarm-default-2026.11.10-000001").as_deref(),
            Some("2026-11-10")
        );
        assert_eq!(backing_index_day("logs-swarm-default"), None);
        assert_eq!(backing_index_day(".ds-x-2026.1.10-000001"), None);
    }
}
