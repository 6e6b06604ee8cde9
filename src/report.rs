//! Plan output for people: a diff in the manner of `terraform plan`.

use std::fmt::Write as _;

use serde_json::Value as Json;

use crate::plan::{Action, Plan};

fn short(v: &Option<Json>) -> String {
    match v {
        None => "(unset)".to_string(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 100 {
                let cut: String = s.chars().take(97).collect();
                format!("{cut}...")
            } else {
                s
            }
        }
    }
}

/// The plan as text.
pub fn plan_text(p: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Stack {}:", p.stack);
    if p.actions.is_empty() {
        let _ = writeln!(out, "  no changes: {} objects are as desired.", p.in_sync.len());
    }
    for a in &p.actions {
        let (sign, note) = match a {
            Action::UpdateService { reason, .. } => (
                "~",
                format!(
                    " ({})",
                    serde_json::to_value(reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
            ),
            Action::RemoveNetwork { duplicate: true, .. } => ("-", " (duplicate)".to_string()),
            _ if a.verb() == "create" => ("+", String::new()),
            _ => ("-", String::new()),
        };
        let _ = writeln!(out, "  {sign} {:<8} {}{note}", a.kind(), a.name());
        if let Action::UpdateService { changes, .. } = a {
            for c in changes {
                let _ = writeln!(out, "        {}: {} -> {}", c.field, short(&c.from), short(&c.to));
            }
        }
    }
    for c in &p.conflicts {
        let _ = writeln!(out, "  ! conflict: {c}");
    }
    for b in &p.blockers {
        let _ = writeln!(out, "  ! blocked: {b}");
    }
    for h in &p.held {
        let _ = writeln!(out, "  ! held: {h}");
    }
    for w in &p.warnings {
        let _ = writeln!(out, "  ! warning: {w}");
    }
    let _ = writeln!(
        out,
        "\nPlan: {} to create, {} to update, {} to remove.",
        p.count("create"),
        p.count("update"),
        p.count("remove")
    );
    if !p.blockers.is_empty() || !p.conflicts.is_empty() {
        let _ = writeln!(
            out,
            "apply would refuse this plan and write nothing until the problems above are solved."
        );
    }
    out
}

/// A `/status` document as a short summary for people.
pub fn status_text(s: &Json) -> String {
    let str_of = |v: &Json| v.as_str().unwrap_or("").to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Stack {}: {} (role {}, swarmlog {})",
        str_of(&s["stack"]),
        str_of(&s["phase"]),
        str_of(&s["role"]),
        str_of(&s["version"])
    );
    let e = &s["engine"];
    let _ = writeln!(
        out,
        "Engine: {} (API {}), {} node(s){}",
        if e["connected"] == true {
            "connected"
        } else {
            "NOT connected"
        },
        str_of(&e["api_version"]),
        e["nodes"],
        e["last_error"]
            .as_str()
            .map(|m| format!(", last error: {m}"))
            .unwrap_or_default()
    );
    for p in s["invalid"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(s["blocked"].as_array().into_iter().flatten())
    {
        let _ = writeln!(out, "  ! {}", str_of(p));
    }
    for d in s["degraded_nodes"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  ! node {}: {}", str_of(&d["hostname"]), str_of(&d["reason"]));
    }
    for o in s["objects"].as_array().into_iter().flatten() {
        let replicas = match (o["replicas_running"].as_u64(), o["replicas_desired"].as_u64()) {
            (Some(r), Some(d)) => format!(" {r}/{d}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {:<8} {:<40} {}{}",
            str_of(&o["kind"]),
            str_of(&o["name"]),
            str_of(&o["state"]),
            replicas
        );
    }
    let loggers: Vec<String> = s["logger_nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| format!("{} ({})", str_of(&n["hostname"]), str_of(&n["state"])))
        .collect();
    let _ = writeln!(
        out,
        "Logger nodes: {}",
        if loggers.is_empty() {
            "none".to_string()
        } else {
            loggers.join(", ")
        }
    );
    let pf = &s["preflight"];
    let checks: Vec<String> = pf["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            format!(
                "{} {}{}",
                str_of(&n["hostname"]),
                str_of(&n["state"]),
                n["value"].as_u64().map(|v| format!(" ({v})")).unwrap_or_default()
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "Elasticsearch preflight: {}{}",
        str_of(&pf["state"]),
        if checks.is_empty() {
            String::new()
        } else {
            format!(", vm.max_map_count: {}", checks.join(", "))
        }
    );
    let es = &s["elasticsearch"];
    if !es["topology"].is_null() {
        let _ = writeln!(
            out,
            "Elasticsearch: {} ({}), health {}, {} of {} node(s) joined{}",
            str_of(&es["topology"]),
            str_of(&es["state"]),
            es["health_detail"].as_str().unwrap_or("unknown"),
            es["nodes_joined"],
            es["nodes_expected"],
            es["error"].as_str().map(|e| format!("; {e}")).unwrap_or_default()
        );
        for n in es["nodes"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {} on {}: {}{}{}{}",
                str_of(&n["name"]),
                str_of(&n["hostname"]),
                if n["joined"].as_bool() == Some(true) {
                    "joined"
                } else {
                    "not joined"
                },
                if n["elected_master"].as_bool() == Some(true) {
                    ", elected master"
                } else if n["master_eligible"].as_bool() == Some(true) {
                    ", master-eligible"
                } else {
                    ""
                },
                n["disk_percent"]
                    .as_f64()
                    .map(|d| match n["disk_level"].as_str() {
                        Some(l) if l != "ok" => format!(", disk {d:.0}% ({l} watermark)"),
                        _ => format!(", disk {d:.0}%"),
                    })
                    .unwrap_or_default(),
                n["problem"].as_str().map(|p| format!(" ({p})")).unwrap_or_default()
            );
        }
        let roll = &es["roll"];
        if !roll.is_null() {
            let _ = writeln!(
                out,
                "  rolling change: {} {}{}",
                str_of(&roll["step"]),
                roll["member"].as_str().unwrap_or("-"),
                roll["waiting_for"]
                    .as_str()
                    .map(|w| format!(", waiting for {w}"))
                    .unwrap_or_default()
            );
        }
    }
    let ret = &es["retention"];
    if let Some(period) = ret["retention"].as_str() {
        let kept = if period.trim() == "0" {
            "kept forever".to_string()
        } else {
            format!("deleted {period} after rollover")
        };
        let streams: Vec<String> = ret["data_streams"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| format!("{} ({} index(es))", str_of(&d["name"]), d["indices"]))
            .collect();
        let _ = writeln!(
            out,
            "Retention: logs {kept}; policy {} {}, template {} {}{}{}",
            str_of(&ret["policy"]),
            str_of(&ret["policy_state"]),
            str_of(&ret["template"]),
            str_of(&ret["template_state"]),
            ret["oldest_index"]
                .as_str()
                .map(|i| format!(
                    "; oldest index kept {i} ({})",
                    ret["oldest_day"].as_str().unwrap_or("day unknown")
                ))
                .unwrap_or_default(),
            if streams.is_empty() {
                String::new()
            } else {
                format!("; data streams {}", streams.join(", "))
            }
        );
        if let Some(d) = ret["detail"].as_str() {
            let _ = writeln!(out, "  {d}");
        }
    }
    if let Some(ro) = es["read_only_indices"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(
            out,
            "Read-only indices (flood stage): {}",
            ro.iter().map(str_of).collect::<Vec<_>>().join(", ")
        );
    }
    let sh = &s["shipping"];
    if sh["enabled"].as_bool() == Some(true) {
        let missing: Vec<String> = sh["missing"].as_array().into_iter().flatten().map(str_of).collect();
        let _ = writeln!(
            out,
            "Shipping: {} on {} of {} node(s){}",
            str_of(&sh["service"]),
            sh["running"],
            sh["nodes"],
            if missing.is_empty() {
                String::new()
            } else {
                format!("; none running on {}", missing.join(", "))
            }
        );
        for p in sh["problems"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  {}", str_of(p));
        }
    } else if !s["shipping"].is_null() {
        let _ = writeln!(out, "Shipping: off (shipper.enabled: false)");
    }
    let r = &s["reconcile"];
    let _ = writeln!(
        out,
        "Last reconcile: {} ({}), {} ms, {}; {} in all",
        str_of(&r["last_trigger"]),
        str_of(&r["outcome"]),
        r["duration_ms"],
        str_of(&r["started_at"]),
        r["count"]
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::leader::Role;
    use crate::status::{DataStreamStatus, EsNode, EsState, RetentionStatus, ShippingStatus, Status};

    /// Shipping and retention at a glance, as `swarmlog status` prints them
    /// from the operator's /status document.
    #[test]
    fn status_text_shows_shipping_retention_and_disk() {
        let mut s = Status::new("logging", "t".into(), Role::Leader);
        s.elasticsearch.topology = Some("single".into());
        s.elasticsearch.state = EsState::Ok;
        s.elasticsearch.nodes = vec![EsNode {
            name: "es1".into(),
            hostname: "logger-1".into(),
            joined: true,
            disk_percent: Some(91.0),
            disk_level: Some(crate::es::disk::Level::High),
            ..Default::default()
        }];
        s.elasticsearch.retention = RetentionStatus {
            retention: Some("14d".into()),
            policy: "swarmlog-logs".into(),
            policy_state: "in-force".into(),
            template: "swarmlog-logs".into(),
            template_state: "written".into(),
            data_streams: vec![DataStreamStatus {
                name: "logs-swarm-default".into(),
                indices: 2,
                ilm_policy: Some("swarmlog-logs".into()),
            }],
            oldest_index: Some(".ds-logs-swarm-default-2026.11.10-000001".into()),
            oldest_day: Some("2026-11-10".into()),
            ..Default::default()
        };
        s.elasticsearch.read_only_indices = vec![".ds-logs-swarm-default-2026.11.10-000001".into()];
        s.shipping = ShippingStatus {
            enabled: true,
            service: Some("logging_shipper".into()),
            nodes: 4,
            running: 3,
            missing: vec!["worker-3".into()],
            problems: Vec::new(),
        };
        let json = serde_json::to_value(&s).expect("status serialises");
        let text = status_text(&json);
        for want in [
            "es1 on logger-1: joined, disk 91% (high watermark)",
            "Retention: logs deleted 14d after rollover; policy swarmlog-logs in-force, template swarmlog-logs written; oldest index kept .ds-logs-swarm-default-2026.11.10-000001 (2026-11-10); data streams logs-swarm-default (2 index(es))",
            "Read-only indices (flood stage): .ds-logs-swarm-default-2026.11.10-000001",
            "Shipping: logging_shipper on 3 of 4 node(s); none running on worker-3",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
        s.shipping = ShippingStatus::default();
        let text = status_text(&serde_json::to_value(&s).expect("status serialises"));
        assert!(text.contains("Shipping: off"), "{text}");
    }
}
