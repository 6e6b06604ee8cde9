//! Status step, for machines: Prometheus metrics. Every label has a small,
//! fixed set of values (static categories), never free text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::WriteKind;
use crate::status::{Phase, Status};

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
    pub companion_patches: Counter,
    /// Engine writes already counted, by kind (the engine keeps totals).
    counted_writes: std::sync::Mutex<std::collections::BTreeMap<WriteKind, u64>>,
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
            companion_patches: Counter::default(),
            counted_writes: Default::default(),
            registry: Registry::default(),
        };
        registry.register("reconciles", "Reconciles by outcome", m.reconciles.clone());
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciles",
            m.reconcile_duration.clone(),
        );
        registry.register("errors", "Errors by category", m.errors.clone());
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
            "companion_patches",
            "Patches of the Let's Encrypt companion",
            m.companion_patches.clone(),
        );
        for p in PHASES {
            m.phase
                .get_or_create(&PhaseLabel {
                    phase: phase_name(p).into(),
                })
                .set(0);
        }
        m.phase
            .get_or_create(&PhaseLabel {
                phase: "Pending".into(),
            })
            .set(1);
        Metrics { registry, ..m }
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

    /// The gauges that mirror the status.
    pub fn record_status(&self, st: &Status) {
        self.set_phase(st.phase);
        self.nodes.set(st.engine.nodes as i64);
        self.logger_nodes.set(st.logger_nodes.len() as i64);
        self.degraded_nodes.set(st.degraded_nodes.len() as i64);
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
}
