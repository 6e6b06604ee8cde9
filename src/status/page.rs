//! Status step, for people: one server-rendered page, no scripts and no
//! external assets (it must work in an air-gapped swarm).

use std::fmt::Write as _;

use crate::status::{Phase, Status};

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn colour(p: Phase) -> &'static str {
    match p {
        Phase::Converged => "#1a7f37",
        Phase::Progressing | Phase::Standby | Phase::Pending => "#9a6700",
        _ => "#cf222e",
    }
}

fn state_colour(s: &str) -> &'static str {
    match s {
        "in-sync" => "#1a7f37",
        "missing" | "drifted" | "changed" | "removing" => "#9a6700",
        _ => "#cf222e",
    }
}

/// The page.
pub fn render(s: &Status) -> String {
    let mut h = String::new();
    let phase = crate::status::Phase::as_str(s.phase);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>swarmlog: {stack} {phase}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1f2328;max-width:70em}}
h1{{font-size:1.4em;margin:0 0 .3em}} h2{{font-size:1.1em;margin:1.4em 0 .4em}}
.phase{{display:inline-block;padding:.3em .8em;border-radius:.4em;color:#fff;font-weight:600;font-size:1.3em}}
table{{border-collapse:collapse;width:100%}} th,td{{text-align:left;padding:.25em .6em;border-bottom:1px solid #d0d7de;vertical-align:top}}
th{{background:#f6f8fa}} .dot{{display:inline-block;width:.7em;height:.7em;border-radius:50%;margin-right:.4em}}
.muted{{color:#656d76}} .bad{{color:#cf222e}} code{{font-size:.95em}}
</style></head><body>
<h1>swarmlog &middot; stack <code>{stack}</code></h1>
<p><span class="phase" id="phase" style="background:{c}">{phase}</span>
<span class="muted">&nbsp;role <b>{role}</b> on node <code>{node}</code> &middot; version {version} &middot; started {started}</span></p>
"#,
        stack = esc(&s.stack),
        phase = phase,
        c = colour(s.phase),
        role = s.role.as_str(),
        node = esc(&s.node_id),
        version = esc(&s.version),
        started = esc(&s.started_at),
    );
    let mut problems: Vec<String> = Vec::new();
    if !s.engine.connected {
        problems.push(format!(
            "Engine unavailable: {}",
            s.engine.last_error.as_deref().unwrap_or("not connected yet")
        ));
    }
    problems.extend(s.invalid.iter().map(|p| format!("Invalid desired state: {p}")));
    problems.extend(s.blocked.iter().map(|b| format!("Blocked: {b}")));
    problems.extend(
        s.degraded_nodes
            .iter()
            .map(|d| format!("Node {}: {}", d.hostname, d.reason)),
    );
    if !problems.is_empty() {
        h.push_str("<h2>Needs attention</h2><ul>");
        for p in &problems {
            let _ = write!(h, "<li>{}</li>", esc(p));
        }
        h.push_str("</ul>");
    }

    h.push_str("<h2>Objects</h2><table><tr><th>kind</th><th>name</th><th>state</th><th>replicas</th><th>why</th><th>last change</th></tr>");
    for o in &s.objects {
        let replicas = match (o.replicas_running, o.replicas_desired) {
            (Some(r), Some(d)) => format!("{r}/{d}"),
            _ => String::new(),
        };
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td><code>{}</code></td><td><span class="dot" style="background:{}"></span>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(o.kind.as_str()),
            esc(&o.name),
            state_colour(o.state.as_str()),
            esc(o.state.as_str()),
            replicas,
            esc(o.why.as_deref().unwrap_or("")),
            esc(o.last_change.as_deref().unwrap_or("")),
        );
    }
    if s.objects.is_empty() {
        h.push_str(r#"<tr><td colspan="6" class="muted">nothing observed yet</td></tr>"#);
    }
    h.push_str("</table>");

    let _ = write!(
        h,
        "<h2>Logger nodes</h2><p class=\"muted\">{} node(s) in the swarm; engine {} (API {}), {} event stream reconnect(s)</p>",
        s.engine.nodes,
        esc(&s.engine.host),
        esc(&s.engine.api_version),
        s.engine.event_stream_reconnects
    );
    h.push_str("<table><tr><th>hostname</th><th>state</th><th>availability</th><th>labels</th></tr>");
    for n in &s.logger_nodes {
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&n.hostname),
            esc(n.state.as_str()),
            esc(&n.availability),
            esc(&labels.join(", "))
        );
    }
    if s.logger_nodes.is_empty() {
        h.push_str(r#"<tr><td colspan="4" class="muted">no logger node</td></tr>"#);
    }
    h.push_str("</table>");

    let pf = &s.preflight;
    let _ = write!(
        h,
        "<h2>Elasticsearch preflight</h2><p>{}{}</p>",
        esc(pf.state.as_str()),
        pf.min_map_count
            .map(|m| format!("; vm.max_map_count of at least {m} on every logger node"))
            .unwrap_or_default()
    );
    if !pf.nodes.is_empty() {
        h.push_str("<table><tr><th>hostname</th><th>state</th><th>value</th><th>checked</th><th>message</th></tr>");
        for n in &pf.nodes {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&n.hostname),
                esc(n.state.as_str()),
                n.value.map(|v| v.to_string()).unwrap_or_default(),
                esc(n.checked_at.as_deref().unwrap_or("")),
                esc(&n.message)
            );
        }
        h.push_str("</table>");
    }

    es_section(&mut h, &s.elasticsearch);
    shipping_section(&mut h, &s.shipping);

    let c = &s.companion;
    h.push_str("<h2>Let's Encrypt companion</h2>");
    let _ = write!(
        h,
        "<p>service <code>{}</code>; last patch {}; {} patch(es){}</p><table><tr><th>serving</th><th>desired</th></tr><tr><td>",
        esc(c.service.as_deref().unwrap_or("none found")),
        esc(c.last_patch.as_deref().unwrap_or("never")),
        c.patches,
        if c.pending { "; a change is settling" } else { "" }
    );
    for g in &c.serving {
        let _ = write!(h, "<code>{}</code><br>", esc(&g.join(" ")));
    }
    h.push_str("</td><td>");
    for g in &c.desired {
        let _ = write!(h, "<code>{}</code><br>", esc(&g.join(" ")));
    }
    h.push_str("</td></tr></table>");
    if !c.refused.is_empty() {
        h.push_str("<p>Refused names:</p><ul>");
        for r in &c.refused {
            let _ = write!(
                h,
                "<li><code>{}</code> from {} {}: {}</li>",
                esc(&r.name),
                esc(&r.source.service),
                esc(&r.source.label),
                esc(&r.reason)
            );
        }
        h.push_str("</ul>");
    }

    let r = &s.reconcile;
    let _ = write!(
        h,
        "<h2>Reconcile</h2><p>{} reconcile(s); last: {} ({}), started {}, took {} ms, outcome <b>{}</b>; {} consecutive failure(s); next resync {}</p>",
        r.count,
        esc(r.last_trigger.as_deref().unwrap_or("none")),
        esc(r.last_trigger_kind.as_deref().unwrap_or("")),
        esc(r.started_at.as_deref().unwrap_or("")),
        r.duration_ms.unwrap_or(0),
        esc(r.outcome.as_deref().unwrap_or("none")),
        r.consecutive_failures,
        esc(r.next_resync.as_deref().unwrap_or("")),
    );

    h.push_str("<h2>Recent events</h2><table><tr><th>at</th><th>kind</th><th>event</th></tr>");
    for e in s.events.iter().rev() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.at),
            esc(&e.kind),
            esc(&e.message)
        );
    }
    if s.events.is_empty() {
        h.push_str(r#"<tr><td colspan="3" class="muted">none yet</td></tr>"#);
    }
    h.push_str("</table><p class=\"muted\">JSON at <a href=\"/status\">/status</a>, metrics at <a href=\"/metrics\">/metrics</a>. This page refreshes every 10 s.</p></body></html>\n");
    h
}

/// Elasticsearch as the operator reads it: health, nodes, disk, the roll.
fn es_section(h: &mut String, es: &crate::status::ElasticsearchStatus) {
    let Some(topology) = &es.topology else {
        return;
    };
    let _ = write!(
        h,
        "<h2>Elasticsearch</h2><p>topology {}; {}; health <b>{}</b>; {} of {} node(s) joined{}{}</p>",
        esc(topology),
        esc(es.state.as_str()),
        esc(es.health_detail.as_deref().unwrap_or("unknown")),
        es.nodes_joined,
        es.nodes_expected,
        es.survives
            .as_deref()
            .map(|v| format!("; survives {}", esc(v)))
            .unwrap_or_default(),
        es.error
            .as_deref()
            .map(|e| format!("<br><span class=\"muted\">{}</span>", esc(e)))
            .unwrap_or_default()
    );
    if let Some(r) = &es.roll {
        let _ = write!(
            h,
            "<p>rolling change: {} <code>{}</code>{}; still to come: {}</p>",
            esc(&r.step),
            esc(r.member.as_deref().unwrap_or("-")),
            r.waiting_for
                .as_deref()
                .map(|w| format!(", waiting for {}", esc(w)))
                .unwrap_or_default(),
            esc(&r.pending.join(", "))
        );
    }
    for p in &es.problems {
        let _ = write!(h, "<p class=\"bad\">{}</p>", esc(p));
    }
    if es.nodes.is_empty() {
        return;
    }
    h.push_str("<table><tr><th>node</th><th>host</th><th>joined</th><th>master</th><th>version</th><th>shards</th><th>disk</th><th>problem</th></tr>");
    for n in &es.nodes {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&n.name),
            esc(&n.hostname),
            if n.joined { "yes" } else { "no" },
            if n.elected_master {
                "elected"
            } else if n.master_eligible {
                "eligible"
            } else {
                "-"
            },
            esc(n.version.as_deref().unwrap_or("")),
            n.shards.map(|v| v.to_string()).unwrap_or_default(),
            n.disk_percent
                .map(|v| match n.disk_level {
                    Some(l) if l != crate::es::disk::Level::Ok => format!("{v:.0}% ({} watermark)", l.as_str()),
                    _ => format!("{v:.0}%"),
                })
                .unwrap_or_default(),
            esc(n.problem.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</table>");
    let r = &es.retention;
    if let Some(period) = &r.retention {
        let _ = write!(
            h,
            "<p>retention <b>{}</b>: policy <code>{}</code> {}, template <code>{}</code> {}{}{}</p>",
            esc(if period.trim() == "0" { "forever" } else { period }),
            esc(&r.policy),
            esc(&r.policy_state),
            esc(&r.template),
            esc(&r.template_state),
            r.oldest_index
                .as_deref()
                .map(|i| format!("; oldest index kept <code>{}</code>", esc(i)))
                .unwrap_or_default(),
            r.detail
                .as_deref()
                .map(|d| format!("<br><span class=\"muted\">{}</span>", esc(d)))
                .unwrap_or_default()
        );
    }
}

/// The shipper on the swarm's nodes.
fn shipping_section(h: &mut String, s: &crate::status::ShippingStatus) {
    if !s.enabled {
        return;
    }
    let _ = write!(
        h,
        "<h2>Shipping</h2><p><code>{}</code> runs on {} of {} node(s){}</p>",
        esc(s.service.as_deref().unwrap_or("")),
        s.running,
        s.nodes,
        if s.missing.is_empty() {
            String::new()
        } else {
            format!("; none on {}", esc(&s.missing.join(", ")))
        }
    );
    for p in &s.problems {
        let _ = write!(h, "<p class=\"bad\">{}</p>", esc(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::leader::Role;

    #[test]
    fn escapes_everything_it_shows() {
        let mut s = Status::new("<script>", "t".into(), Role::Leader);
        s.event("t".into(), "x", "<img src=x onerror=alert(1)>");
        let page = render(&s);
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<img"));
        assert!(page.contains("&lt;img"));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no external assets"
        );
    }

    #[test]
    fn shipping_and_retention_are_shown() {
        let mut s = Status::new("logging", "t".into(), Role::Leader);
        assert!(
            !render(&s).contains("<h2>Shipping</h2>"),
            "no section with the shipper off"
        );
        s.shipping = crate::status::ShippingStatus {
            enabled: true,
            service: Some("logging_shipper".into()),
            nodes: 3,
            running: 2,
            missing: vec!["worker-2".into()],
            problems: vec!["the shipper (logging_shipper) fails on worker-2: <no such file>".into()],
        };
        s.elasticsearch.topology = Some("single".into());
        s.elasticsearch.nodes = vec![crate::status::EsNode {
            name: "es1".into(),
            disk_percent: Some(96.0),
            disk_level: Some(crate::es::disk::Level::FloodStage),
            ..Default::default()
        }];
        s.elasticsearch.retention.retention = Some("0".into());
        s.elasticsearch.retention.policy = "swarmlog-logs".into();
        s.elasticsearch.retention.policy_state = "not-ours".into();
        let page = render(&s);
        for want in [
            "<h2>Shipping</h2><p><code>logging_shipper</code> runs on 2 of 3 node(s); none on worker-2</p>",
            "fails on worker-2: &lt;no such file&gt;",
            "96% (flood-stage watermark)",
            "retention <b>forever</b>: policy <code>swarmlog-logs</code> not-ours",
        ] {
            assert!(page.contains(want), "{want:?} not in the page");
        }
    }

    #[test]
    fn elasticsearch_shows_health_nodes_roll_and_problems() {
        let mut s = Status::new("logging", "t".into(), Role::Leader);
        assert!(
            !render(&s).contains("<h2>Elasticsearch</h2>"),
            "no section without Elasticsearch"
        );
        s.elasticsearch = crate::status::ElasticsearchStatus {
            topology: Some("cluster".into()),
            state: crate::status::EsState::Ok,
            health_detail: Some("yellow (1 unassigned shards)".into()),
            nodes_expected: 2,
            nodes_joined: 1,
            nodes: vec![crate::status::EsNode {
                name: "logging_es_<b>".into(),
                hostname: "logger-2".into(),
                created: true,
                disk_percent: Some(91.4),
                problem: Some("runs but is not in the cluster".into()),
                ..Default::default()
            }],
            roll: Some(crate::plan::roll::RollStatus {
                member: Some("logging_es_logger-1".into()),
                step: "restart".into(),
                waiting_for: Some("logging_es_logger-1 to rejoin the cluster".into()),
                pending: vec!["logging_es_logger-2".into()],
            }),
            problems: vec!["logging_es_<b> runs but is not in the cluster".into()],
            ..Default::default()
        };
        let page = render(&s);
        for wanted in [
            "<h2>Elasticsearch</h2>",
            "yellow (1 unassigned shards)",
            "1 of 2 node(s) joined",
            "logging_es_&lt;b&gt;",
            "91%",
            "waiting for logging_es_logger-1 to rejoin the cluster",
            "class=\"bad\"",
        ] {
            assert!(page.contains(wanted), "{wanted} not on the page:\n{page}");
        }
        assert!(!page.contains("logging_es_<b>"));
    }
}
