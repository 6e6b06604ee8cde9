//! The Elasticsearch preflight in the controller: which logger nodes need a
//! check, the checks themselves in the background (a reconcile never waits
//! for one), and which services wait for their results.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use bollard::models::Node;
use tokio::sync::mpsc;

use super::triggers::Trigger;
use super::Context;
use crate::clock::now;
use crate::engine::Observed;
use crate::preflight::{self, Cached, CheckState, NodeCheck, LABEL_PREFLIGHT};
use crate::render::desired::DesiredState;
use crate::status::{LoggerNode, PreflightNode, PreflightNodeState, PreflightState, PreflightStatus};

/// Node id, node version when started, the check, when it ended.
type Finished = (String, u64, NodeCheck, Instant);

/// Results of earlier checks and the checks under way.
pub struct Preflight {
    cache: BTreeMap<String, Cached>,
    in_flight: BTreeSet<String>,
    tx: mpsc::UnboundedSender<Finished>,
    rx: mpsc::UnboundedReceiver<Finished>,
}

impl Default for Preflight {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Preflight {
            cache: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            tx,
            rx,
        }
    }
}

/// What a reconcile takes from the preflight.
pub struct Outcome {
    /// Services to hold (name -> why).
    pub held: BTreeMap<String, String>,
    /// Logger nodes below the minimum: degraded, with the fix.
    pub low: Vec<(String, String)>,
    pub status: PreflightStatus,
}

fn node_version(nodes: &[Node], id: &str) -> u64 {
    nodes
        .iter()
        .find(|n| n.id.as_deref() == Some(id))
        .and_then(|n| n.version.as_ref()?.index)
        .unwrap_or(0)
}

/// Which services wait, from each logger node's row. A node below the
/// minimum holds them; so does a node never checked yet (Elasticsearch
/// could be placed there and fail). A check that could not run holds
/// nothing: it is reported, and tried again.
pub fn holds(services: &BTreeMap<String, u64>, rows: &[PreflightNode]) -> BTreeMap<String, String> {
    let mut held = BTreeMap::new();
    for (service, min) in services {
        let mut why = Vec::new();
        for r in rows {
            match r.state {
                PreflightNodeState::Low if r.value.is_none_or(|v| v < *min) => why.push(r.message.clone()),
                PreflightNodeState::Pending => {
                    why.push(format!("waiting for the vm.max_map_count check of {}", r.hostname))
                }
                _ => {}
            }
        }
        if !why.is_empty() {
            held.insert(service.clone(), why.join("; "));
        }
    }
    held
}

fn row(n: &LoggerNode, c: Option<&Cached>) -> PreflightNode {
    match c {
        Some(c) => PreflightNode {
            hostname: n.hostname.clone(),
            node_id: n.id.clone(),
            state: match c.check.state {
                CheckState::Ok => PreflightNodeState::Ok,
                CheckState::Low => PreflightNodeState::Low,
                CheckState::Unknown => PreflightNodeState::Unknown,
            },
            value: c.check.value,
            checked_at: Some(c.check.checked_at.clone()),
            message: c.check.message.clone(),
        },
        None => PreflightNode {
            hostname: n.hostname.clone(),
            node_id: n.id.clone(),
            state: PreflightNodeState::Pending,
            value: None,
            checked_at: None,
            message: format!("vm.max_map_count on {} is being checked", n.hostname),
        },
    }
}

impl Preflight {
    /// Takes in the checks that finished since the last reconcile.
    fn take_finished(&mut self, ctx: &Context) {
        while let Ok((id, version, check, at)) = self.rx.try_recv() {
            self.in_flight.remove(&id);
            tracing::info!(node = %check.hostname, state = ?check.state, value = ?check.value, "preflight: {}", check.message);
            ctx.update_status(|st| {
                let changed = st
                    .preflight
                    .nodes
                    .iter()
                    .find(|r| r.node_id == id)
                    .map(|r| r.message.as_str())
                    != Some(check.message.as_str());
                if changed {
                    st.event(now(), "preflight", check.message.clone());
                }
            });
            self.cache.insert(
                id,
                Cached {
                    check,
                    node_version: version,
                    at,
                },
            );
        }
    }

    /// Removes jobs of this stack that no check of ours is waiting for
    /// (left by an operator that stopped mid-check).
    fn remove_leftovers(&self, ctx: &Arc<Context>, stack: &str, observed: &Observed) {
        let ours: BTreeSet<String> = self.in_flight.iter().map(|id| preflight::job_name(stack, id)).collect();
        for s in &observed.services {
            let Some(spec) = s.spec.as_ref() else { continue };
            let leftover = spec
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_PREFLIGHT))
                .map(String::as_str)
                == Some(stack)
                && spec.name.as_ref().is_some_and(|n| !ours.contains(n));
            if let (true, Some(name)) = (leftover, spec.name.clone()) {
                let ctx = ctx.clone();
                tokio::spawn(async move { preflight::remove_job(&ctx.engine, &name).await });
            }
        }
    }

    /// Starts one node's check in the background; its result arrives as a
    /// trigger and is taken in by the next reconcile.
    fn start_check(&mut self, ctx: &Arc<Context>, n: &LoggerNode, version: u64, image: &str, stack: &str, min: u64) {
        let settings = &ctx.settings.preflight;
        self.in_flight.insert(n.id.clone());
        let (ctx, tx, image, stack) = (ctx.clone(), self.tx.clone(), image.to_string(), stack.to_string());
        let (id, host, timeout, recheck) = (n.id.clone(), n.hostname.clone(), settings.timeout, settings.recheck);
        tokio::spawn(async move {
            let check = match preflight::check_node(&ctx.engine, &stack, &image, &id, &host, min, timeout).await {
                Ok(c) => c,
                Err(e) => NodeCheck::unknown(&id, &host, min, &e.to_string()),
            };
            let again = check.state != CheckState::Ok;
            let _ = tx.send((id, version, check, Instant::now()));
            let _ = ctx.trigger.try_send(Trigger::Preflight);
            // Nothing else may happen on its own: ask for the next
            // look once a failed node is due again.
            if again {
                tokio::time::sleep(recheck).await;
                let _ = ctx.trigger.try_send(Trigger::Preflight);
            }
        });
    }
    /// Leader only: takes in finished checks, starts the ones due, removes
    /// jobs left behind, and says what waits.
    pub fn step(
        &mut self,
        ctx: &Arc<Context>,
        desired: &DesiredState,
        observed: &Observed,
        loggers: &[LoggerNode],
    ) -> Outcome {
        self.take_finished(ctx);
        let services = desired.preflight();
        let settings = &ctx.settings.preflight;
        let mut status = PreflightStatus {
            image: settings.image.clone(),
            ..Default::default()
        };
        let (Some(image), Some(min)) = (settings.image.clone(), services.values().max().copied()) else {
            status.state = if services.is_empty() {
                PreflightState::NotNeeded
            } else {
                PreflightState::Off
            };
            return Outcome {
                held: BTreeMap::new(),
                low: Vec::new(),
                status,
            };
        };
        status.state = PreflightState::On;
        status.min_map_count = Some(min);
        let stack = desired.stack.clone();
        let now = Instant::now();
        self.remove_leftovers(ctx, &stack, observed);
        let mut rows = Vec::new();
        for n in loggers
            .iter()
            .filter(|n| n.state == "ready" && n.availability == "active")
        {
            let version = node_version(&observed.nodes, &n.id);
            let cached = self.cache.get(&n.id).filter(|c| c.check.min == min);
            let due = preflight::due(cached, version, min, now, settings.recheck);
            rows.push(row(n, cached));
            if due && !self.in_flight.contains(&n.id) {
                self.start_check(ctx, n, version, &image, &stack, min);
            }
        }
        let held = holds(&services, &rows);
        let low = rows
            .iter()
            .filter(|r| r.state == PreflightNodeState::Low)
            .map(|r| (r.hostname.clone(), r.message.clone()))
            .collect();
        status.nodes = rows;
        Outcome { held, low, status }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(host: &str, state: PreflightNodeState, value: Option<u64>) -> PreflightNode {
        PreflightNode {
            hostname: host.to_string(),
            node_id: format!("id-{host}"),
            state,
            value,
            checked_at: None,
            message: format!("{host} is {}", state.as_str()),
        }
    }

    #[test]
    fn what_waits_for_the_preflight() {
        let es = BTreeMap::from([("logging_elasticsearch".to_string(), 262_144)]);
        assert!(holds(&es, &[r("logger-1", PreflightNodeState::Ok, Some(262_144))]).is_empty());
        assert!(
            holds(&es, &[r("logger-1", PreflightNodeState::Unknown, None)]).is_empty(),
            "a check that could not run holds nothing"
        );
        let held = holds(
            &es,
            &[
                r("logger-1", PreflightNodeState::Ok, Some(300_000)),
                r("logger-2", PreflightNodeState::Low, Some(65_530)),
            ],
        );
        assert_eq!(
            held.get("logging_elasticsearch").map(String::as_str),
            Some("logger-2 is low")
        );
        let held = holds(&es, &[r("logger-1", PreflightNodeState::Pending, None)]);
        assert!(held["logging_elasticsearch"].contains("waiting for the vm.max_map_count check of logger-1"));
        assert!(holds(&BTreeMap::new(), &[r("logger-1", PreflightNodeState::Low, Some(1))]).is_empty());
        // Checked against a higher minimum, still enough for this service.
        let held = holds(&es, &[r("logger-1", PreflightNodeState::Low, Some(300_000))]);
        assert!(held.is_empty());
    }
}
