//! Status step: the shared snapshot of where things stand, written by the
//! controller and read by the HTTP API and the logs.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::controller::leader::Role;
use crate::controller::nodes::{Degraded, LoggerNode};

/// Version of the `/status` schema.
pub const SCHEMA_VERSION: u32 = 1;
/// How many notable events are kept.
pub const MAX_EVENTS: usize = 50;

/// The stack's phase, from worst to best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Nothing observed yet.
    Pending,
    /// The engine cannot be reached or read.
    EngineUnavailable,
    /// The desired state does not render or validate (the last good one stays in force).
    Invalid,
    /// Something stands in the way: a blocked plan, a conflict, a degraded logger node.
    Degraded,
    /// Writes done, tasks not all running yet.
    Progressing,
    /// This instance is not on the leader: it observes only.
    Standby,
    /// Everything as desired.
    Converged,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EngineStatus {
    pub connected: bool,
    pub host: String,
    pub api_version: String,
    pub last_error: Option<String>,
    pub nodes: usize,
    pub event_stream_reconnects: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectStatus {
    pub kind: String,
    pub name: String,
    /// in-sync, created, updated, drifted, missing, conflict, error.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas_desired: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas_running: Option<u64>,
    pub last_change: Option<String>,
    pub why: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileStatus {
    pub count: u64,
    pub last_trigger: Option<String>,
    pub last_trigger_kind: Option<String>,
    pub started_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub outcome: Option<String>,
    pub consecutive_failures: u32,
    pub next_resync: Option<String>,
    pub writes: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: String,
    pub kind: String,
    pub message: String,
}

/// The whole snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub schema_version: u32,
    pub version: String,
    pub node_id: String,
    pub role: Role,
    pub started_at: String,
    pub stack: String,
    pub phase: Phase,
    pub engine: EngineStatus,
    pub logger_nodes: Vec<LoggerNode>,
    pub degraded_nodes: Vec<Degraded>,
    /// Problems of the desired state, when it does not render.
    pub invalid: Vec<String>,
    pub blocked: Vec<String>,
    pub objects: Vec<ObjectStatus>,
    pub reconcile: ReconcileStatus,
    pub companion: CompanionStatus,
    /// The Elasticsearch preflight (vm.max_map_count on the logger nodes).
    pub preflight: crate::controller::preflight::PreflightStatus,
    pub events: VecDeque<Event>,
}

/// The Let's Encrypt companion as last seen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompanionStatus {
    pub service: Option<String>,
    /// Groups its DOMAIN_* hold now.
    pub serving: Vec<Vec<String>>,
    /// Groups it should hold.
    pub desired: Vec<Vec<String>>,
    pub refused: Vec<crate::letsencrypt::Refused>,
    /// A change is waiting for the settle window.
    pub pending: bool,
    pub last_patch: Option<String>,
    pub patches: u64,
    pub error: Option<String>,
}

impl Status {
    pub fn new(stack: &str, started_at: String, role: Role) -> Status {
        Status {
            schema_version: SCHEMA_VERSION,
            version: env!("CARGO_PKG_VERSION").to_string(),
            node_id: String::new(),
            role,
            started_at,
            stack: stack.to_string(),
            phase: Phase::Pending,
            engine: EngineStatus::default(),
            logger_nodes: Vec::new(),
            degraded_nodes: Vec::new(),
            invalid: Vec::new(),
            blocked: Vec::new(),
            objects: Vec::new(),
            reconcile: ReconcileStatus::default(),
            companion: CompanionStatus::default(),
            preflight: Default::default(),
            events: VecDeque::new(),
        }
    }

    /// Records a notable event now.
    pub fn events_push(&mut self, kind: &str, message: impl Into<String>) {
        self.event(now(), kind, message);
    }

    /// Records a notable event (bounded).
    pub fn event(&mut self, at: String, kind: &str, message: impl Into<String>) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            at,
            kind: kind.to_string(),
            message: message.into(),
        });
    }
}

/// Current wall-clock time, RFC 3339 (edges only: never in pure logic).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_bounded() {
        let mut s = Status::new("logging", "t0".into(), Role::Single);
        for i in 0..(MAX_EVENTS + 10) {
            s.event(format!("t{i}"), "test", format!("e{i}"));
        }
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(s.events.front().map(|e| e.message.as_str()), Some("e10"));
    }
}
