//! Status step (pure model): the shared snapshot of where things stand. The
//! controller writes it from values [`derive`] computes out of the
//! observation, the plan and what apply did; the HTTP API, the page and
//! `swarmlog status` read it. Every type `/status` shows is defined here.

pub mod derive;
pub mod liveness;
pub mod page;

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

pub use crate::clock::now;

/// Version of the `/status` schema.
pub const SCHEMA_VERSION: u32 = 1;
/// How many notable events are kept.
pub const MAX_EVENTS: usize = 50;

/// This instance's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// On the leader: writes.
    Leader,
    /// On another manager: observes only.
    Standby,
    /// Gating off (`--no-leader-election`): writes.
    Single,
}

impl Role {
    pub fn writes(self) -> bool {
        !matches!(self, Role::Standby)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby => "standby",
            Role::Single => "single",
        }
    }
}

/// A logger node and how it is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggerNode {
    pub id: String,
    pub hostname: String,
    pub state: String,
    pub availability: String,
    pub labels: BTreeMap<String, String>,
}

/// A node that should serve the stack and cannot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Degraded {
    pub hostname: String,
    pub reason: String,
}

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

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::EngineUnavailable,
        Phase::Invalid,
        Phase::Degraded,
        Phase::Progressing,
        Phase::Standby,
        Phase::Converged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::EngineUnavailable => "EngineUnavailable",
            Phase::Invalid => "Invalid",
            Phase::Degraded => "Degraded",
            Phase::Progressing => "Progressing",
            Phase::Standby => "Standby",
            Phase::Converged => "Converged",
        }
    }
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

/// Where one owned object stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectState {
    /// As desired.
    InSync,
    /// Created by the last reconcile.
    Created,
    /// Updated by the last reconcile.
    Updated,
    /// Not there yet.
    Missing,
    /// The desired state changed; an update is due.
    Changed,
    /// Someone changed it out of band; an update is due.
    Drifted,
    /// No longer wanted; removal is due.
    Removing,
    /// An object of the name exists that swarmlog does not own.
    Conflict,
    /// Its create or update waits for a precondition (the preflight).
    Held,
    /// Its last update did not stick (the engine keeps other values): not
    /// written again until the desired or the live spec changes.
    NotConverging,
}

impl ObjectState {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectState::InSync => "in-sync",
            ObjectState::Created => "created",
            ObjectState::Updated => "updated",
            ObjectState::Missing => "missing",
            ObjectState::Changed => "changed",
            ObjectState::Drifted => "drifted",
            ObjectState::Removing => "removing",
            ObjectState::Conflict => "conflict",
            ObjectState::Held => "held",
            ObjectState::NotConverging => "not-converging",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectStatus {
    pub kind: crate::plan::ObjectKind,
    pub name: String,
    pub state: ObjectState,
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
    /// Services whose update the engine paused on a failed task (their spec
    /// does not run): Degraded, with the engine's message.
    pub paused_updates: Vec<String>,
    pub objects: Vec<ObjectStatus>,
    pub reconcile: ReconcileStatus,
    pub companion: CompanionStatus,
    /// The Elasticsearch preflight (vm.max_map_count on the logger nodes).
    pub preflight: PreflightStatus,
    /// Elasticsearch as read from its own API.
    pub elasticsearch: ElasticsearchStatus,
    /// The shipper on the swarm's nodes.
    pub shipping: ShippingStatus,
    pub events: VecDeque<Event>,
}

/// How the operator's reads of Elasticsearch go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EsState {
    /// The stack has no Elasticsearch service (or nothing rendered yet).
    #[default]
    None,
    /// Not read yet.
    Pending,
    /// It answered.
    Ok,
    /// It answered without an elected master (not formed, or no quorum).
    NoMaster,
    /// No address answered.
    Unreachable,
    /// Not read: no network path is configured (elasticsearch.operatorNetwork
    /// or --es-url).
    NoPath,
}

impl EsState {
    pub const ALL: [EsState; 6] = [
        EsState::None,
        EsState::Pending,
        EsState::Ok,
        EsState::NoMaster,
        EsState::Unreachable,
        EsState::NoPath,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EsState::None => "none",
            EsState::Pending => "pending",
            EsState::Ok => "ok",
            EsState::NoMaster => "no-master",
            EsState::Unreachable => "unreachable",
            EsState::NoPath => "no-path",
        }
    }
}

/// Elasticsearch, as `/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ElasticsearchStatus {
    /// `single` or `cluster`; none without an Elasticsearch service.
    pub topology: Option<String>,
    pub state: EsState,
    /// The addresses the operator reads it at.
    pub endpoints: Vec<String>,
    pub error: Option<String>,
    pub checked_at: Option<String>,
    pub cluster_name: Option<String>,
    pub cluster_uuid: Option<String>,
    pub health: Option<crate::es::Color>,
    /// The health in words (`yellow (2 unassigned shards)`).
    pub health_detail: Option<String>,
    /// Nodes that should be in the cluster (members whose service exists).
    pub nodes_expected: usize,
    /// Of those, the ones in the cluster now.
    pub nodes_joined: usize,
    pub master_eligible: usize,
    /// What failure the masters survive, in words.
    pub survives: Option<String>,
    pub allocation_enable: Option<String>,
    pub nodes: Vec<EsNode>,
    /// A rolling change under way or waiting.
    pub roll: Option<crate::plan::roll::RollStatus>,
    /// The disk watermarks in force (none: not read).
    pub watermarks: Option<crate::es::disk::Watermarks>,
    /// Indices Elasticsearch made read-only at the flood stage
    /// (`index.blocks.read_only_allow_delete`).
    pub read_only_indices: Vec<String>,
    /// How long logs are kept, and whether Elasticsearch holds swarmlog's
    /// policy and template.
    pub retention: RetentionStatus,
    /// Security on or off, and the users swarmlog keeps.
    pub security: SecurityStatus,
    /// What makes the phase Degraded, in words (red, a node missing, a
    /// node of another cluster, a disk above the high watermark).
    pub problems: Vec<String>,
}

/// Elasticsearch's security as swarmlog keeps it. Never a password: the
/// users' names and states only.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SecurityStatus {
    /// `elasticsearch.security` of the desired state.
    pub enabled: bool,
    /// Each user swarmlog keeps: `in-force` (it authenticates with
    /// swarmlog's password and has its role), `written` (just now),
    /// `missing`, `differs`, `not-ours` (a user or role of that name
    /// without `metadata.managed_by: swarmlog`: left alone), `unread`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserStatus>,
    /// Why the users cannot be kept now (the operator has no path to
    /// Elasticsearch): said, as the health's `no-path` is, not Degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Each certificate swarmlog issued for Elasticsearch (`ca`, `http`):
    /// its end and renewal dates, never the material.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateStatus>,
}

/// A certificate Elasticsearch mounts (the one in use while a renewal rolls).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CertificateStatus {
    pub role: String,
    /// RFC 3339: the end of its validity.
    pub not_after: String,
    /// RFC 3339: when swarmlog issues the next one.
    pub renew_at: String,
    /// `ok`, `rolling` (a new one is being rolled out), `blocked` (due, and
    /// the renewal is held or late: Degraded), `expired` (Degraded).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UserStatus {
    pub name: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Retention as swarmlog keeps it in Elasticsearch.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RetentionStatus {
    /// `elasticsearch.retention` as given (`30d`; `0`: forever); none: the
    /// stack does not say (a stack file without the chart's label), and
    /// nothing is managed.
    pub retention: Option<String>,
    /// The ILM policy (`swarmlog-logs`) and its state: `in-force` (Elasticsearch holds
    /// swarmlog's), `written` (just now), `missing`, `differs`, `not-ours`,
    /// `unread`, `failed`.
    pub policy: String,
    pub policy_state: String,
    /// The index template (`swarmlog-logs`, for `logs-swarm-*`) and its state.
    pub template: String,
    pub template_state: String,
    /// Why a state is not `in-force`.
    pub detail: Option<String>,
    pub data_streams: Vec<DataStreamStatus>,
    /// The oldest backing index kept, and the day it was made.
    pub oldest_index: Option<String>,
    pub oldest_day: Option<String>,
}

/// One data stream Logstash writes to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DataStreamStatus {
    pub name: String,
    /// Backing indices kept.
    pub indices: usize,
    /// The ILM policy Elasticsearch applies to it.
    pub ilm_policy: Option<String>,
}

/// The shipper (Filebeat on every node), as the swarm runs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShippingStatus {
    /// `shipper.enabled`.
    pub enabled: bool,
    pub service: Option<String>,
    /// Nodes of the swarm that are ready and active (where a global service runs).
    pub nodes: usize,
    /// Of those, nodes with a running shipper.
    pub running: usize,
    /// Hostnames of the nodes without one.
    pub missing: Vec<String>,
    /// What makes the phase Degraded (a node where it fails).
    pub problems: Vec<String>,
}

/// One Elasticsearch node (a member of the cluster, or the single node).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EsNode {
    /// Its service, which is also its node name in a cluster.
    pub name: String,
    /// The swarm node it is bound to.
    pub hostname: String,
    /// Its service exists.
    pub created: bool,
    pub joined: bool,
    pub master_eligible: bool,
    pub elected_master: bool,
    pub version: Option<String>,
    pub shards: Option<u64>,
    pub disk_percent: Option<f64>,
    pub disk_used_bytes: Option<u64>,
    pub disk_total_bytes: Option<u64>,
    /// The disk watermark its disk use has reached.
    pub disk_level: Option<crate::es::disk::Level>,
    /// Why it is not as it should be (its node left, another cluster's data).
    pub problem: Option<String>,
}

/// The Let's Encrypt companion as last seen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompanionStatus {
    pub service: Option<String>,
    /// Groups its DOMAIN_* hold now.
    pub serving: Vec<Vec<String>>,
    /// Groups it should hold: the user's own `DOMAIN_*` and swarmlog's.
    pub desired: Vec<Vec<String>>,
    /// swarmlog's groups among them (remembered in the companion's
    /// `io.swarmlog.domains` label); every other group is the user's.
    pub owned: Vec<Vec<String>>,
    pub refused: Vec<crate::letsencrypt::Refused>,
    /// A change is waiting for the settle window.
    pub pending: bool,
    pub last_patch: Option<String>,
    pub patches: u64,
    pub error: Option<String>,
}

/// The preflight as a whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreflightState {
    /// Checks run on the logger nodes.
    On,
    /// A service asks for it, but no preflight image is set.
    Off,
    /// No service asks for it.
    #[default]
    NotNeeded,
    /// The leader's operator checks; this one does not.
    Standby,
}

impl PreflightState {
    pub fn as_str(self) -> &'static str {
        match self {
            PreflightState::On => "on",
            PreflightState::Off => "off",
            PreflightState::NotNeeded => "not-needed",
            PreflightState::Standby => "standby",
        }
    }
}

/// One logger node's check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreflightNodeState {
    Ok,
    Low,
    /// The check could not run (reported, tried again).
    Unknown,
    /// The first check is under way.
    Pending,
}

impl PreflightNodeState {
    pub const ALL: [PreflightNodeState; 4] = [
        PreflightNodeState::Ok,
        PreflightNodeState::Low,
        PreflightNodeState::Unknown,
        PreflightNodeState::Pending,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PreflightNodeState::Ok => "ok",
            PreflightNodeState::Low => "low",
            PreflightNodeState::Unknown => "unknown",
            PreflightNodeState::Pending => "pending",
        }
    }
}

/// The preflight as `/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PreflightStatus {
    pub state: PreflightState,
    pub image: Option<String>,
    pub min_map_count: Option<u64>,
    /// One row per logger node.
    pub nodes: Vec<PreflightNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreflightNode {
    pub hostname: String,
    pub node_id: String,
    pub state: PreflightNodeState,
    pub value: Option<u64>,
    pub checked_at: Option<String>,
    pub message: String,
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
            paused_updates: Vec::new(),
            objects: Vec::new(),
            reconcile: ReconcileStatus::default(),
            companion: CompanionStatus::default(),
            preflight: Default::default(),
            elasticsearch: Default::default(),
            shipping: Default::default(),
            events: VecDeque::new(),
        }
    }

    /// The engine cannot be reached: say so (once per distinct error).
    pub fn engine_unavailable(&mut self, at: String, msg: &str) {
        if self.engine.connected || self.engine.last_error.as_deref() != Some(msg) {
            self.event(at, "engine", format!("engine unavailable: {msg}"));
        }
        self.engine.connected = false;
        self.engine.last_error = Some(msg.to_string());
        self.phase = Phase::EngineUnavailable;
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
