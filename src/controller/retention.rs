//! Retention and disk, in the Elasticsearch step of a reconcile: the ILM
//! policy and the index template of the logs' data streams written when
//! what Elasticsearch holds differs (leader only; zero writes when it is
//! the same), and each node's disk use against the watermarks.

use super::Context;
use crate::clock::now;
use crate::es::disk::Level;
use crate::es::retention::{self, Compare};
use crate::es::Snapshot;
use crate::status::{DataStreamStatus, ElasticsearchStatus, RetentionStatus, Role};

/// The label of the Elasticsearch service (the chart's template) that
/// carries `elasticsearch.retention`.
pub const LABEL_RETENTION: &str = "io.swarmlog.es.retention";

/// Each node's watermark level into its row, and the problems: a node at
/// or above the high watermark (named, with its host and what to do), and
/// indices Elasticsearch made read-only.
pub fn disk(
    status: &mut ElasticsearchStatus,
    snapshot: Option<&Snapshot>,
    host_of: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let Some(snap) = snapshot else {
        return Vec::new();
    };
    let w = &snap.watermarks;
    status.watermarks = Some(w.clone());
    let mut problems = Vec::new();
    for row in status.nodes.iter_mut() {
        let Some(node) = snap.node(&row.name) else {
            continue;
        };
        let level = node.disk_level(w);
        row.disk_level = level;
        let Some(level @ (Level::High | Level::FloodStage)) = level else {
            continue;
        };
        let host = Some(row.hostname.clone())
            .filter(|h| !h.is_empty())
            .or_else(|| host_of(&row.name));
        let on = host.as_deref().map(|h| format!(" on {h}")).unwrap_or_default();
        let (mark, effect) = match level {
            Level::FloodStage => (
                &w.flood_stage.value,
                "every index with a shard on it is read-only: logging into them stops",
            ),
            _ => (
                &w.high.value,
                "Elasticsearch moves shards away from it, and at the flood stage its indices turn read-only",
            ),
        };
        problems.push(format!(
            "Elasticsearch node {}{on} uses {}% of its disk, above the {} watermark ({mark}): {effect}. Free space on its volume, shorten elasticsearch.retention, or add a logger node",
            row.name,
            node.disk_percent.map_or("?".into(), |p| format!("{p:.0}")),
            level.as_str(),
        ));
    }
    match &snap.read_only {
        Ok(list) => {
            status.read_only_indices = list.clone();
            if !list.is_empty() {
                let shown: Vec<&str> = list.iter().take(5).map(String::as_str).collect();
                problems.push(format!(
                    "{} index(es) read-only at the flood stage (index.blocks.read_only_allow_delete): {}{}; Elasticsearch lifts the block once the disk is below the high watermark",
                    list.len(),
                    shown.join(", "),
                    if list.len() > shown.len() { ", ..." } else { "" }
                ));
            }
        }
        Err(e) => tracing::debug!(error = %e, "elasticsearch: index blocks not read"),
    }
    problems
}

/// The retention step: status, and the writes that make Elasticsearch hold
/// swarmlog's policy and template (leader only).
pub async fn step(
    ctx: &Context,
    role: Role,
    label: Option<&str>,
    snapshot: Option<&Snapshot>,
    status: &mut ElasticsearchStatus,
) -> Vec<String> {
    let mut st = RetentionStatus {
        retention: label.map(str::to_string),
        policy: retention::POLICY.to_string(),
        template: retention::TEMPLATE.to_string(),
        policy_state: "unread".into(),
        template_state: "unread".into(),
        ..Default::default()
    };
    let mut problems = Vec::new();
    let Some(label) = label else {
        // Not the chart's stack: nothing is kept, nothing is said.
        status.retention = RetentionStatus::default();
        return problems;
    };
    let period = match retention::parse(label) {
        Ok(p) => p,
        Err(e) => {
            st.policy_state = "failed".into();
            st.detail = Some(format!("elasticsearch.retention: {e}"));
            problems.push(format!("elasticsearch.retention: {e}"));
            status.retention = st;
            return problems;
        }
    };
    let Some(snap) = snapshot else {
        status.retention = st;
        return problems;
    };
    if let Ok(streams) = &snap.retention.streams {
        st.data_streams = streams
            .iter()
            .map(|s| DataStreamStatus {
                name: s.name.clone(),
                indices: s.indices.len(),
                ilm_policy: s.ilm_policy.clone(),
            })
            .collect();
        let oldest = streams
            .iter()
            .filter_map(|s| s.indices.first())
            .filter_map(|i| retention::backing_index_day(i).map(|d| (d, i.clone())))
            .min();
        if let Some((day, index)) = oldest {
            st.oldest_day = Some(day);
            st.oldest_index = Some(index);
        }
    }
    let client = ctx.es.client(ctx.settings.es.timeout);
    let policy_body = retention::policy(period);
    let template_body = retention::template();
    let items = [
        (
            "ILM policy",
            retention::POLICY,
            &snap.retention.policy,
            retention::compare_policy(
                snap.retention.policy.as_ref().ok().and_then(Option::as_ref),
                &policy_body,
            ),
            format!("/_ilm/policy/{}", retention::POLICY),
            &policy_body,
        ),
        (
            "index template",
            retention::TEMPLATE,
            &snap.retention.template,
            retention::compare_template(
                snap.retention.template.as_ref().ok().and_then(Option::as_ref),
                &template_body,
            ),
            format!("/_index_template/{}", retention::TEMPLATE),
            &template_body,
        ),
    ];
    let mut details = Vec::new();
    for (i, (what, name, read, compare, path, body)) in items.into_iter().enumerate() {
        let state = match (read, compare) {
            (Err(e), _) => {
                details.push(format!("the {what} {name} could not be read: {e}"));
                "unread"
            }
            (Ok(_), Compare::Same) => "in-force",
            (Ok(_), Compare::NotOurs) => {
                let p = format!(
                    "the {what} {name} in Elasticsearch is not swarmlog's (no _meta.managed_by: swarmlog): retention is not applied; rename or delete it (DELETE {path}) and swarmlog writes its own"
                );
                details.push(p.clone());
                problems.push(p);
                "not-ours"
            }
            (Ok(_), c) if !role.writes() => {
                details.push(format!("the {what} {name}: {c:?} (the leader writes it)"));
                if matches!(c, Compare::Missing) {
                    "missing"
                } else {
                    "differs"
                }
            }
            (Ok(_), c) => match client.put_acknowledged(&snap.endpoint, &path, body).await {
                Ok(()) => {
                    let why = match &c {
                        Compare::Differs(d) => format!(" ({d})"),
                        _ => " (it had none)".to_string(),
                    };
                    let msg = match period {
                        Some(p) => format!(
                            "wrote the {what} {name}{why}: logs deleted {} after rollover",
                            retention::es_time(p)
                        ),
                        None => format!("wrote the {what} {name}{why}: logs kept forever"),
                    };
                    tracing::info!("elasticsearch: {msg}");
                    ctx.update_status(|s| s.event(now(), "elasticsearch", msg.clone()));
                    // Written: the view holds it until the next read, so the
                    // next reconcile does not write it again.
                    ctx.es.written(i == 0, (*body).clone());
                    "written"
                }
                Err(e) => {
                    let p = format!("writing the {what} {name} failed: {e}");
                    tracing::warn!("elasticsearch: {p}");
                    details.push(p.clone());
                    problems.push(p);
                    "failed"
                }
            },
        };
        if i == 0 {
            st.policy_state = state.into();
        } else {
            st.template_state = state.into();
        }
    }
    st.detail = (!details.is_empty()).then(|| details.join("; "));
    status.retention = st;
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::es::{Color, Health, Node, Snapshot};
    use crate::status::EsNode;

    fn view(disks: &[(&str, f64)], read_only: Vec<String>) -> Snapshot {
        Snapshot {
            endpoint: "http://es:9200".into(),
            cluster_name: "logging".into(),
            cluster_uuid: Some("u".into()),
            health: Health {
                status: Color::Green,
                number_of_nodes: 1,
                number_of_data_nodes: 1,
                relocating_shards: 0,
                initializing_shards: 0,
                unassigned_shards: 0,
            },
            nodes: disks
                .iter()
                .map(|(n, d)| Node {
                    name: n.to_string(),
                    master_eligible: true,
                    elected_master: true,
                    version: "8.15.3".into(),
                    uptime_secs: None,
                    shards: None,
                    disk_percent: Some(*d),
                    disk_used_bytes: None,
                    disk_total_bytes: Some(10 << 30),
                })
                .collect(),
            allocation_enable: None,
            exclude_name: None,
            watermarks: Default::default(),
            read_only: Ok(read_only),
            retention: Default::default(),
        }
    }

    #[test]
    fn a_disk_above_the_high_watermark_is_a_problem_naming_node_and_host() {
        let mut status = ElasticsearchStatus {
            nodes: ["a", "b", "c"]
                .iter()
                .map(|n| EsNode {
                    name: n.to_string(),
                    hostname: if *n == "a" { String::new() } else { format!("host-{n}") },
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let v = view(&[("a", 91.0), ("b", 86.0), ("c", 96.0)], Vec::new());
        let problems = disk(&mut status, Some(&v), &|_| Some("logger-1".into()));
        let levels: Vec<_> = status.nodes.iter().map(|n| n.disk_level).collect();
        assert_eq!(levels, [Some(Level::High), Some(Level::Low), Some(Level::FloodStage)]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("Elasticsearch node a on logger-1 uses 91% of its disk, above the high watermark (90%)"),
            "{}",
            problems[0]
        );
        assert!(
            problems[0].contains("shorten elasticsearch.retention"),
            "{}",
            problems[0]
        );
        assert!(problems[1].contains("c on host-c uses 96%") && problems[1].contains("flood-stage watermark (95%)"));
        // Below the high watermark: nothing to say.
        let mut quiet = status.clone();
        assert!(disk(
            &mut quiet,
            Some(&view(&[("a", 50.0), ("b", 89.0), ("c", 10.0)], Vec::new())),
            &|_| None
        )
        .is_empty());
        let ro = disk(
            &mut quiet,
            Some(&view(
                &[("a", 50.0)],
                vec![".ds-logs-swarm-default-2026.12.01-000001".into()],
            )),
            &|_| None,
        );
        assert_eq!(ro.len(), 1);
        assert!(ro[0].contains("1 index(es) read-only at the flood stage"), "{}", ro[0]);
        assert_eq!(quiet.read_only_indices.len(), 1);
    }
}
