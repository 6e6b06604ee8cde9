//! Status step, for machines: Prometheus metrics. Every label has a small,
//! fixed set of values (static categories), never free text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::WriteKind;
use crate::status::{Phase, PreflightNodeState, Role, Status};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabel {
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    pub role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabel {
    pub certificate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    pub version: String,
    pub commit: String,
}

/// Every role, for the one-hot role gauge.
pub const ROLES: [Role; 3] = [Role::Leader, Role::Standby, Role::Single];

/// Every state of a logger node's preflight row.
pub const PREFLIGHT_STATES: [PreflightNodeState; 4] = PreflightNodeState::ALL;

/// Every phase, for the one-hot phase gauge.
pub const PHASES: [Phase; 7] = Phase::ALL;

pub fn phase_name(p: Phase) -> &'static str {
    p.as_str()
}

/// The operator's metrics and their registry.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<OutcomeLabel, Counter>,
    pub reconcile_duration: Histogram,
    pub errors: Family<CategoryLabel, Counter>,
    pub writes: Family<KindLabel, Counter>,
    pub triggers: Family<KindLabel, Counter>,
    pub event_stream_reconnects: Counter,
    pub phase: Family<PhaseLabel, Gauge>,
    pub nodes: Gauge,
    pub logger_nodes: Gauge,
    pub degraded_nodes: Gauge,
    /// Objects whose last update did not stick (state `not-converging`).
    pub not_converging: Gauge,
    pub companion_patches: Counter,
    /// Engine writes already counted, by kind (the engine keeps totals).
    counted_writes: std::sync::Mutex<std::collections::BTreeMap<WriteKind, u64>>,
    pub role: Family<RoleLabel, Gauge>,
    pub consecutive_failures: Gauge,
    pub preflight_nodes: Family<StateLabel, Gauge>,
    pub companion_refused: Gauge,
    pub build_info: Family<BuildLabel, Gauge>,
    /// Elasticsearch: how the reads go, one-hot by state.
    pub es_state: Family<StateLabel, Gauge>,
    /// Elasticsearch: cluster health, one-hot by colour (all 0 when unknown).
    pub es_health: Family<StateLabel, Gauge>,
    pub es_nodes_expected: Gauge,
    pub es_nodes_joined: Gauge,
    /// Disk use per Elasticsearch node (0..1), nodes of the cluster only.
    pub es_disk_used: Family<NodeLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub es_rolling: Gauge,
    pub es_disk_level: Family<NodeLabel, Gauge>,
    pub es_read_only: Gauge,
    pub es_retention_in_force: Gauge,
    pub shipper_nodes: Gauge,
    pub shipper_running: Gauge,
    /// Each certificate Elasticsearch mounts: the end of its validity, and
    /// when swarmlog renews it (Unix seconds).
    pub cert_not_after: Family<CertificateLabel, Gauge>,
    pub cert_renew_at: Family<CertificateLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("swarmlog");
        let m = Metrics {
            reconciles: Family::default(),
            reconcile_duration: Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            errors: Family::default(),
            writes: Family::default(),
            triggers: Family::default(),
            event_stream_reconnects: Counter::default(),
            phase: Family::default(),
            nodes: Gauge::default(),
            logger_nodes: Gauge::default(),
            degraded_nodes: Gauge::default(),
            not_converging: Gauge::default(),
            companion_patches: Counter::default(),
            counted_writes: Default::default(),
            role: Family::default(),
            consecutive_failures: Gauge::default(),
            preflight_nodes: Family::default(),
            companion_refused: Gauge::default(),
            build_info: Family::default(),
            es_state: Family::default(),
            es_health: Family::default(),
            es_nodes_expected: Gauge::default(),
            es_nodes_joined: Gauge::default(),
            es_disk_used: Family::default(),
            es_rolling: Gauge::default(),
            es_disk_level: Family::default(),
            es_read_only: Gauge::default(),
            cert_not_after: Family::default(),
            cert_renew_at: Family::default(),
            es_retention_in_force: Gauge::default(),
            shipper_nodes: Gauge::default(),
            shipper_running: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reconciles",
            "Reconciles by outcome: in-sync, applied, standby, blocked, invalid, error",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciles, in seconds",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "errors",
            "Failed reconciles by error category (unreachable, no_quorum, ...)",
            m.errors.clone(),
        );
        registry.register("writes", "Engine write calls by kind", m.writes.clone());
        registry.register("triggers", "Reconcile triggers by kind", m.triggers.clone());
        registry.register(
            "event_stream_reconnects",
            "Reconnects of the engine event stream",
            m.event_stream_reconnects.clone(),
        );
        registry.register("phase", "The stack's phase (1 for the current one)", m.phase.clone());
        registry.register("nodes", "Nodes in the swarm", m.nodes.clone());
        registry.register(
            "logger_nodes",
            "Nodes matching the node selector",
            m.logger_nodes.clone(),
        );
        registry.register(
            "degraded_nodes",
            "Logger nodes that are down, drained or unlabelled",
            m.degraded_nodes.clone(),
        );
        registry.register(
            "not_converging_objects",
            "Objects whose last update did not stick (state not-converging): not written again until the desired or the live spec changes",
            m.not_converging.clone(),
        );
        registry.register(
            "companion_patches",
            "Patches of the Let's Encrypt companion",
            m.companion_patches.clone(),
        );
        registry.register(
            "role",
            "This instance's role: leader (writes), standby (observes) or single (leader election off); 1 for the current one",
            m.role.clone(),
        );
        registry.register(
            "reconcile_consecutive_failures",
            "Reconciles that failed in a row (0 after a success)",
            m.consecutive_failures.clone(),
        );
        registry.register(
            "preflight_nodes",
            "Logger nodes by the state of their Elasticsearch preflight (vm.max_map_count): ok, low, unknown, pending",
            m.preflight_nodes.clone(),
        );
        registry.register(
            "companion_refused_domains",
            "Domain names refused for the Let's Encrypt companion (not plain DNS hostnames)",
            m.companion_refused.clone(),
        );
        registry.register(
            "build_info",
            "The operator's version and commit (always 1)",
            m.build_info.clone(),
        );
        registry.register(
            "elasticsearch_state",
            "How the operator's reads of Elasticsearch go (1 for the current one): none, pending, ok, no-master, unreachable, no-path",
            m.es_state.clone(),
        );
        registry.register(
            "elasticsearch_health",
            "Elasticsearch cluster health (1 for the current colour; all 0 while unknown)",
            m.es_health.clone(),
        );
        registry.register(
            "elasticsearch_nodes_expected",
            "Elasticsearch nodes that should be in the cluster (their services exist)",
            m.es_nodes_expected.clone(),
        );
        registry.register(
            "elasticsearch_nodes_joined",
            "Of the expected Elasticsearch nodes, those in the cluster",
            m.es_nodes_joined.clone(),
        );
        registry.register(
            "elasticsearch_disk_used_ratio",
            "Disk use of each Elasticsearch node's data path (0 to 1), from _cat/allocation",
            m.es_disk_used.clone(),
        );
        registry.register(
            "elasticsearch_rolling",
            "1 while a rolling change of the Elasticsearch cluster is under way or waiting",
            m.es_rolling.clone(),
        );
        registry.register(
            "elasticsearch_disk_watermark_level",
            "The disk watermark each Elasticsearch node has reached: 0 below low, 1 low, 2 high (shards move away), 3 flood stage (its indices turn read-only)",
            m.es_disk_level.clone(),
        );
        registry.register(
            "elasticsearch_read_only_indices",
            "Indices Elasticsearch made read-only at the flood stage (index.blocks.read_only_allow_delete)",
            m.es_read_only.clone(),
        );
        registry.register(
            "elasticsearch_retention_in_force",
            "1 when Elasticsearch holds swarmlog's ILM policy and index template (elasticsearch.retention), else 0",
            m.es_retention_in_force.clone(),
        );
        registry.register(
            "elasticsearch_certificate_not_after_seconds",
            "The end of the validity of each certificate swarmlog issued that Elasticsearch mounts (Unix seconds; label certificate: ca or http)",
            m.cert_not_after.clone(),
        );
        registry.register(
            "elasticsearch_certificate_renew_at_seconds",
            "When swarmlog issues the next one (Unix seconds): not_after minus the values' rotateBefore",
            m.cert_renew_at.clone(),
        );
        registry.register(
            "shipper_nodes",
            "Nodes of the swarm where the shipper should run (ready and active; 0 with the shipper off)",
            m.shipper_nodes.clone(),
        );
        registry.register(
            "shipper_nodes_running",
            "Of those, nodes with a running shipper",
            m.shipper_running.clone(),
        );
        m.build_info
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION").into(),
                commit: env!("SWARMLOG_GIT_COMMIT").into(),
            })
            .set(1);
        // Every gauge has a sample from the start, each label at a fixed value.
        m.set_phase(Phase::Pending);
        m.set_role(Role::Standby);
        for state in PREFLIGHT_STATES {
            m.preflight_nodes
                .get_or_create(&StateLabel {
                    state: state.as_str().into(),
                })
                .set(0);
        }
        m.set_es(crate::status::EsState::None, None);
        Metrics { registry, ..m }
    }

    /// The one-hot Elasticsearch gauges.
    fn set_es(&self, state: crate::status::EsState, health: Option<crate::es::Color>) {
        for s in crate::status::EsState::ALL {
            self.es_state
                .get_or_create(&StateLabel {
                    state: s.as_str().into(),
                })
                .set(i64::from(s == state));
        }
        for c in crate::es::Color::ALL {
            self.es_health
                .get_or_create(&StateLabel {
                    state: c.as_str().into(),
                })
                .set(i64::from(Some(c) == health));
        }
    }

    pub fn set_role(&self, role: Role) {
        for r in ROLES {
            self.role
                .get_or_create(&RoleLabel {
                    role: r.as_str().into(),
                })
                .set(i64::from(r == role));
        }
    }

    /// Brings the gauges that mirror the status up to date.
    pub fn observe_status(&self, st: &Status) {
        self.set_phase(st.phase);
        self.set_role(st.role);
        self.nodes.set(st.engine.nodes as i64);
        self.logger_nodes.set(st.logger_nodes.len() as i64);
        self.degraded_nodes.set(st.degraded_nodes.len() as i64);
        self.not_converging.set(
            st.objects
                .iter()
                .filter(|o| o.state == crate::status::ObjectState::NotConverging)
                .count() as i64,
        );
        self.consecutive_failures
            .set(i64::from(st.reconcile.consecutive_failures));
        for state in PREFLIGHT_STATES {
            let n = st.preflight.nodes.iter().filter(|r| r.state == state).count();
            self.preflight_nodes
                .get_or_create(&StateLabel {
                    state: state.as_str().into(),
                })
                .set(n as i64);
        }
        self.companion_refused.set(st.companion.refused.len() as i64);
        let es = &st.elasticsearch;
        self.set_es(es.state, es.health);
        self.es_nodes_expected.set(es.nodes_expected as i64);
        self.es_nodes_joined.set(es.nodes_joined as i64);
        self.es_rolling.set(i64::from(es.roll.is_some()));
        self.es_read_only.set(es.read_only_indices.len() as i64);
        let in_force = |s: &str| s == "in-force" || s == "written";
        self.es_retention_in_force.set(i64::from(
            in_force(&es.retention.policy_state) && in_force(&es.retention.template_state),
        ));
        self.shipper_nodes.set(st.shipping.nodes as i64);
        self.shipper_running.set(st.shipping.running as i64);
        // Only the nodes of this read: one that left has no stale series.
        self.es_disk_level.clear();
        for n in &es.nodes {
            if let Some(l) = n.disk_level {
                self.es_disk_level
                    .get_or_create(&NodeLabel { node: n.name.clone() })
                    .set(i64::from(l.number()));
            }
        }
        self.cert_not_after.clear();
        self.cert_renew_at.clear();
        for c in &es.security.certificates {
            let label = CertificateLabel {
                certificate: c.role.clone(),
            };
            let unix = |t: &str| {
                humantime::parse_rfc3339(t)
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64)
            };
            if let (Some(end), Some(renew)) = (unix(&c.not_after), unix(&c.renew_at)) {
                self.cert_not_after.get_or_create(&label).set(end);
                self.cert_renew_at.get_or_create(&label).set(renew);
            }
        }
        self.es_disk_used.clear();
        for n in &es.nodes {
            if let Some(p) = n.disk_percent {
                self.es_disk_used
                    .get_or_create(&NodeLabel { node: n.name.clone() })
                    .set(p / 100.0);
            }
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        for p in PHASES {
            self.phase
                .get_or_create(&PhaseLabel {
                    phase: phase_name(p).into(),
                })
                .set(i64::from(p == phase));
        }
    }

    pub fn count(family: &Family<KindLabel, Counter>, kind: &str) {
        family.get_or_create(&KindLabel { kind: kind.to_string() }).inc();
    }

    /// One reconcile: its triggers, outcome, error category (failures only),
    /// duration, and the engine's write totals (counted as deltas).
    pub fn record_reconcile<'a>(
        &self,
        triggers: impl Iterator<Item = &'a str>,
        outcome: &str,
        error_category: Option<&str>,
        elapsed: std::time::Duration,
        writes: &std::collections::BTreeMap<WriteKind, u64>,
    ) {
        self.reconciles
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
        self.reconcile_duration.observe(elapsed.as_secs_f64());
        for t in triggers {
            Metrics::count(&self.triggers, t);
        }
        if let Some(category) = error_category {
            self.errors
                .get_or_create(&CategoryLabel {
                    category: category.to_string(),
                })
                .inc();
        }
        let Ok(mut counted) = self.counted_writes.lock() else {
            return;
        };
        for (kind, n) in writes {
            let before = counted.insert(*kind, *n).unwrap_or(0);
            if *n > before {
                Metrics::count_by(&self.writes, kind.as_str(), n - before);
                if *kind == WriteKind::CompanionUpdate {
                    self.companion_patches.inc_by(n - before);
                }
            }
        }
    }

    fn count_by(family: &Family<KindLabel, Counter>, kind: &str, n: u64) {
        family.get_or_create(&KindLabel { kind: kind.to_string() }).inc_by(n);
    }

    /// The Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_with_fixed_labels() {
        let m = Metrics::new();
        m.reconciles
            .get_or_create(&OutcomeLabel {
                outcome: "applied".into(),
            })
            .inc();
        Metrics::count(&m.writes, "service_create");
        m.set_phase(Phase::Converged);
        let text = m.encode();
        assert!(
            text.contains("swarmlog_reconciles_total{outcome=\"applied\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("swarmlog_writes_total{kind=\"service_create\"} 1"),
            "{text}"
        );
        assert!(text.contains("swarmlog_phase{phase=\"Converged\"} 1"), "{text}");
        assert!(text.contains("swarmlog_phase{phase=\"Pending\"} 0"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    /// Names of the metric families in an exposition, with their HELP text.
    fn families(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# HELP "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, h)| (n.to_string(), h.to_string()))
            .collect()
    }

    #[test]
    fn every_gauge_has_help_and_a_sample_from_the_start() {
        let m = Metrics::new();
        let text = m.encode();
        let fams = families(&text);
        // Label families of counters appear with their first sample (the
        // first reconcile, write, trigger, error), and so does the disk use
        // and the watermark level per Elasticsearch node (with its first
        // read), and the certificates' dates (with security on); everything
        // else is
        // there from the start.
        assert_eq!(fams.len(), 22, "{fams:?}");
        for (name, help) in &fams {
            assert!(help.len() > 10, "{name} has no real help text: {help:?}");
            let sampled = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .any(|l| l.starts_with(name.as_str()));
            assert!(sampled, "{name} has no sample:\n{text}");
        }
        assert!(text.contains("swarmlog_event_stream_reconnects_total 0"), "{text}");
        assert!(text.contains("swarmlog_role{role=\"standby\"} 1"), "{text}");
        assert!(text.contains("swarmlog_role{role=\"leader\"} 0"), "{text}");
        assert!(text.contains("swarmlog_preflight_nodes{state=\"low\"} 0"), "{text}");
        assert!(
            text.contains(&format!(
                "swarmlog_build_info{{version=\"{}\",commit=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION"),
                env!("SWARMLOG_GIT_COMMIT")
            )),
            "{text}"
        );
    }

    #[test]
    fn gauges_follow_the_status() {
        use crate::status::{Degraded, PreflightNode, PreflightNodeState};
        let m = Metrics::new();
        let mut st = Status::new("logging", "t0".into(), Role::Standby);
        st.role = Role::Leader;
        st.phase = Phase::Degraded;
        st.engine.nodes = 3;
        st.reconcile.consecutive_failures = 4;
        st.degraded_nodes.push(Degraded {
            hostname: "logger-2".into(),
            reason: "down".into(),
        });
        let row = |state: PreflightNodeState| PreflightNode {
            hostname: format!("h-{}", state.as_str()),
            node_id: "n".into(),
            state,
            value: None,
            checked_at: None,
            message: String::new(),
        };
        st.preflight.nodes = vec![
            row(PreflightNodeState::Ok),
            row(PreflightNodeState::Low),
            row(PreflightNodeState::Low),
            row(PreflightNodeState::Pending),
        ];
        st.companion.refused.push(crate::letsencrypt::Refused {
            name: "$(x)".into(),
            reason: "not a hostname".into(),
            source: crate::letsencrypt::Source {
                service: "web".into(),
                label: "com.df.serviceDomain".into(),
            },
        });
        m.observe_status(&st);
        let text = m.encode();
        for line in [
            "swarmlog_role{role=\"leader\"} 1",
            "swarmlog_role{role=\"standby\"} 0",
            "swarmlog_phase{phase=\"Degraded\"} 1",
            "swarmlog_phase{phase=\"Pending\"} 0",
            "swarmlog_nodes 3",
            "swarmlog_degraded_nodes 1",
            "swarmlog_reconcile_consecutive_failures 4",
            "swarmlog_preflight_nodes{state=\"low\"} 2",
            "swarmlog_preflight_nodes{state=\"ok\"} 1",
            "swarmlog_preflight_nodes{state=\"unknown\"} 0",
            "swarmlog_preflight_nodes{state=\"pending\"} 1",
            "swarmlog_companion_refused_domains 1",
        ] {
            assert!(text.contains(line), "no `{line}` in:\n{text}");
        }
        // The certificates' dates, as Unix seconds; a row gone, its series too.
        st.elasticsearch.security.certificates = vec![crate::status::CertificateStatus {
            role: "http".into(),
            not_after: "2027-01-01T00:00:00Z".into(),
            renew_at: "2026-12-02T00:00:00Z".into(),
            state: "ok".into(),
            detail: None,
        }];
        m.observe_status(&st);
        let text = m.encode();
        assert!(
            text.contains("swarmlog_elasticsearch_certificate_not_after_seconds{certificate=\"http\"} 1798761600"),
            "{text}"
        );
        assert!(
            text.contains("swarmlog_elasticsearch_certificate_renew_at_seconds{certificate=\"http\"} 1796169600"),
            "{text}"
        );
        st.elasticsearch.security.certificates.clear();
        m.observe_status(&st);
        assert!(!m.encode().contains("certificate=\"http\""));
        let text = m.encode();
        // Label values stay within their fixed set: one series per state.
        assert_eq!(
            text.matches("swarmlog_preflight_nodes{").count(),
            PREFLIGHT_STATES.len(),
            "{text}"
        );
    }
}
