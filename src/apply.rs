//! Apply step (I/O): carries out a plan against the engine. Every update
//! sends the version read just before; a conflict (a name that now exists, a
//! version that moved, an object that vanished) re-observes and re-plans,
//! a bounded number of times.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ServiceSpec;
use futures::future::join_all;

use crate::engine::{observe_stack, Engine, EngineError, Observed, Scope, WriteKind};
use crate::plan::converge::Memory;
use crate::plan::{plan, Action, ObjectKind, ObjectRef, Plan, PlanOptions};
use crate::render::desired::DesiredState;

/// How many observe-plan-apply rounds one apply may take.
pub const MAX_ROUNDS: u32 = 5;

/// Why an apply stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("nothing was written: {}", .0.join("; "))]
    Blocked(Vec<String>),
    #[error("this instance is no longer on the swarm leader; it stopped writing")]
    NotLeader,
    #[error("the swarm did not converge after {rounds} rounds; still to do: {remaining}")]
    NotConverged { rounds: u32, remaining: String },
}

impl ApplyError {
    pub fn category(&self) -> &'static str {
        match self {
            ApplyError::Engine(e) => e.category(),
            ApplyError::Blocked(_) => "blocked",
            ApplyError::NotLeader => "not_leader",
            ApplyError::NotConverged { .. } => "not_converged",
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Created,
    Updated,
    Removed,
}

/// One write that succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub verb: Verb,
    pub object: ObjectRef,
    /// The line logs and events show (`updated service x (drifted: ...)`).
    pub line: String,
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl Written {
    fn of(a: &Action) -> Written {
        let verb = match a.verb() {
            "create" => Verb::Created,
            "update" => Verb::Updated,
            _ => Verb::Removed,
        };
        Written {
            verb,
            object: ObjectRef::new(a.kind(), a.name()),
            line: describe(a),
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every write that succeeded, in order.
    pub done: Vec<Written>,
    /// Rounds that wrote something (1 when nothing conflicted, 0 when converged already).
    pub rounds: u32,
    /// The last plan computed: empty once converged.
    pub last_plan: Plan,
    /// The swarm as last observed.
    pub observed: Observed,
}

/// Observes, plans and applies until the swarm holds `desired`.
/// Refuses before any write while the plan has blockers or conflicts.
pub async fn apply(engine: &Engine, desired: &DesiredState, opts: PlanOptions) -> Result<Report, ApplyError> {
    let scope = Scope::of(desired);
    let observed = observe_stack(engine, &scope).await?;
    // An Elasticsearch cluster: its members, their restarts left to the operator.
    let desired = crate::plan::roll::offline(desired, &observed, opts);
    apply_from(
        engine,
        &desired,
        &scope,
        opts,
        Some(observed),
        &|_| true,
        &mut Memory::default(),
    )
    .await
}

/// Whether a plan removes a config or a secret: the engine refuses while a
/// service uses it, and services outside the stack may.
fn removes_files(p: &Plan) -> bool {
    p.actions
        .iter()
        .any(|a| matches!(a, Action::RemoveConfig { .. } | Action::RemoveSecret { .. }))
}

/// Before a plan that removes configs or secrets is shown or run on a
/// scoped observation, every service is read (removals are rare; a
/// foreign service using the stack's file keeps it). True when it read.
pub async fn complete_for_removals(engine: &Engine, observed: &mut Observed, p: &Plan) -> Result<bool, EngineError> {
    if observed.services_complete || !removes_files(p) {
        return Ok(false);
    }
    observed.services = engine.list_services().await?;
    observed.services_complete = true;
    observed.services_scanned = true;
    Ok(true)
}

/// The plan, with updates that would repeat a write that did not stick held back.
fn plan_held_back(desired: &DesiredState, observed: &Observed, opts: PlanOptions, memory: &Memory) -> Plan {
    let mut p = plan(desired, observed, opts);
    let hash_of = |name: &str| {
        desired
            .services
            .iter()
            .find(|s| s.spec.name.as_deref() == Some(name))
            .map(|s| s.hash.clone())
    };
    memory.hold_back(&mut p, &hash_of);
    p
}

/// Remembers the updates a round made, for [`Memory::hold_back`].
fn remember(memory: &mut Memory, desired: &DesiredState, p: &Plan, done: &[Written]) {
    for a in &p.actions {
        if let Action::UpdateService { name, changes, .. } = a {
            let written = done
                .iter()
                .any(|w| w.verb == Verb::Updated && w.object.kind == ObjectKind::Service && &w.object.name == name);
            let hash = desired
                .services
                .iter()
                .find(|s| s.spec.name.as_deref() == Some(name.as_str()));
            if let (true, Some(d)) = (written, hash) {
                memory.after_write(name, &d.hash, changes);
            }
        }
    }
}

/// [`apply`], starting from an observation already made, and asking `may_write`
/// before every round of writes (the controller's leader check).
pub async fn apply_from(
    engine: &Engine,
    desired: &DesiredState,
    scope: &Scope,
    opts: PlanOptions,
    first: Option<Observed>,
    may_write: &(dyn Fn(&Observed) -> bool + Send + Sync),
    memory: &mut Memory,
) -> Result<Report, ApplyError> {
    let mut report = Report::default();
    let mut first = first;
    for round in 1..=MAX_ROUNDS {
        let mut observed = match first.take() {
            Some(o) => o,
            None => observe_stack(engine, scope).await?,
        };
        let mut p = plan_held_back(desired, &observed, opts, memory);
        if complete_for_removals(engine, &mut observed, &p).await? {
            p = plan_held_back(desired, &observed, opts, memory);
        }
        report.observed = observed;
        let refusals = p.refusals();
        if !refusals.is_empty() {
            report.last_plan = p;
            return Err(ApplyError::Blocked(refusals));
        }
        if p.is_empty() {
            report.last_plan = p;
            return Ok(report);
        }
        if !may_write(&report.observed) {
            report.last_plan = p;
            return Err(ApplyError::NotLeader);
        }
        report.rounds = round;
        let before = report.done.len();
        let result = execute(engine, &p, &report.observed, &mut report.done).await;
        remember(memory, desired, &p, &report.done[before..]);
        match result {
            Ok(()) => {}
            Err(e) if e.is_conflict() => {
                tracing::info!(error = %e, round, "conflict while applying; observing again");
            }
            Err(e) => return Err(e.into()),
        }
        report.last_plan = p;
    }
    // One more look: converged now?
    let mut observed = observe_stack(engine, scope).await?;
    let mut p = plan_held_back(desired, &observed, opts, memory);
    if complete_for_removals(engine, &mut observed, &p).await? {
        p = plan_held_back(desired, &observed, opts, memory);
    }
    if p.is_empty() {
        report.last_plan = p;
        report.observed = observed;
        return Ok(report);
    }
    let remaining = p
        .actions
        .iter()
        .map(|a| format!("{} {} {}", a.verb(), a.kind(), a.name()))
        .collect::<Vec<_>>()
        .join(", ");
    Err(ApplyError::NotConverged {
        rounds: MAX_ROUNDS,
        remaining,
    })
}

/// Runs the actions phase by phase; the actions of one phase run concurrently.
async fn execute(engine: &Engine, p: &Plan, observed: &Observed, done: &mut Vec<Written>) -> Result<(), EngineError> {
    // Names to IDs of configs and secrets, for service specs.
    let mut config_ids: HashMap<String, String> = observed
        .configs
        .iter()
        .filter_map(|c| Some((c.spec.as_ref()?.name.clone()?, c.id.clone()?)))
        .collect();
    let mut secret_ids: HashMap<String, String> = observed
        .secrets
        .iter()
        .filter_map(|c| Some((c.spec.as_ref()?.name.clone()?, c.id.clone()?)))
        .collect();
    let mut phase_start = 0;
    while phase_start < p.actions.len() {
        let phase = p.actions[phase_start].phase();
        let end = p.actions[phase_start..]
            .iter()
            .position(|a| a.phase() != phase)
            .map(|i| phase_start + i)
            .unwrap_or(p.actions.len());
        let batch = &p.actions[phase_start..end];
        let results = join_all(batch.iter().map(|a| run(engine, a, &config_ids, &secret_ids))).await;
        let mut first_err = None;
        for (a, r) in batch.iter().zip(results) {
            match r {
                Ok(Created::Config(id)) => {
                    config_ids.insert(a.name().to_string(), id);
                    done.push(Written::of(a));
                }
                Ok(Created::Secret(id)) => {
                    secret_ids.insert(a.name().to_string(), id);
                    done.push(Written::of(a));
                }
                Ok(Created::Other) => done.push(Written::of(a)),
                Err(e) => {
                    tracing::warn!(action = a.verb(), kind = a.kind().as_str(), name = a.name(), error = %e, "write failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        phase_start = end;
    }
    Ok(())
}

fn describe(a: &Action) -> String {
    match a {
        Action::UpdateService {
            name, reason, changes, ..
        } => {
            let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).take(6).collect();
            let more = if changes.len() > 6 { ", ..." } else { "" };
            format!(
                "updated service {name} ({}: {}{more})",
                serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                fields.join(", ")
            )
        }
        Action::RemoveNetwork {
            name, duplicate: true, ..
        } => format!("removed duplicate network {name}"),
        a => format!(
            "{} {} {}",
            match a.verb() {
                "create" => "created",
                "remove" => "removed",
                v => v,
            },
            a.kind(),
            a.name()
        ),
    }
}

enum Created {
    Config(String),
    Secret(String),
    Other,
}

/// Fills in config and secret IDs by name.
fn resolve_ids(
    spec: &ServiceSpec,
    configs: &HashMap<String, String>,
    secrets: &HashMap<String, String>,
) -> ServiceSpec {
    let mut spec = spec.clone();
    if let Some(c) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut()) {
        for r in c.configs.iter_mut().flatten() {
            r.config_id = r.config_name.as_ref().and_then(|n| configs.get(n).cloned());
        }
        for r in c.secrets.iter_mut().flatten() {
            r.secret_id = r.secret_name.as_ref().and_then(|n| secrets.get(n).cloned());
        }
    }
    spec
}

async fn run(
    engine: &Engine,
    a: &Action,
    configs: &HashMap<String, String>,
    secrets: &HashMap<String, String>,
) -> Result<Created, EngineError> {
    match a {
        Action::CreateNetwork { name, spec } => {
            engine.create_network(name, spec.clone()).await?;
            Ok(Created::Other)
        }
        Action::CreateConfig { name, spec } => Ok(Created::Config(engine.create_config(name, spec.clone()).await?)),
        Action::CreateSecret { name, spec } => Ok(Created::Secret(engine.create_secret(name, spec.clone()).await?)),
        Action::CreateService { name, spec } => {
            let spec = resolve_ids(spec, configs, secrets);
            engine.create_service(name, spec, WriteKind::ServiceCreate).await?;
            Ok(Created::Other)
        }
        Action::UpdateService {
            name,
            id,
            version,
            spec,
            ..
        } => {
            let spec = resolve_ids(spec, configs, secrets);
            engine
                .update_service(name, id, *version, spec, WriteKind::ServiceUpdate)
                .await?;
            Ok(Created::Other)
        }
        Action::RemoveService { name, id } => {
            engine.remove_service(name, id, WriteKind::ServiceRemove).await?;
            Ok(Created::Other)
        }
        Action::RemoveConfig { name, id } => {
            engine.remove_config(name, id).await?;
            Ok(Created::Other)
        }
        Action::RemoveSecret { name, id } => {
            engine.remove_secret(name, id).await?;
            Ok(Created::Other)
        }
        Action::RemoveNetwork { name, id, .. } => {
            engine.remove_network(name, id).await?;
            Ok(Created::Other)
        }
    }
}

/// Per service: tasks running vs wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub service: String,
    pub running: usize,
    pub wanted: usize,
}

/// Reads how many tasks of each desired service run, against how many should.
pub async fn progress(engine: &Engine, desired: &DesiredState) -> Result<Vec<Progress>, EngineError> {
    let observed = observe_stack(engine, &Scope::of(desired)).await?;
    let mut out = Vec::new();
    for d in &desired.services {
        let name = d.spec.name.clone().unwrap_or_default();
        let Some(svc) = observed
            .services
            .iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name.as_str()))
        else {
            out.push(Progress {
                service: name,
                running: 0,
                wanted: 1,
            });
            continue;
        };
        let id = svc.id.clone().unwrap_or_default();
        let tasks = engine.service_tasks(&id, true).await?;
        let running = tasks
            .iter()
            .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(bollard::models::TaskState::RUNNING))
            .count();
        let mode = svc.spec.as_ref().and_then(|s| s.mode.clone()).unwrap_or_default();
        let wanted = match (mode.replicated, mode.global) {
            (Some(r), _) => usize::try_from(r.replicas.unwrap_or(1)).unwrap_or(0),
            (None, Some(_)) => tasks.len().max(1),
            _ => 1,
        };
        out.push(Progress {
            service: name,
            running,
            wanted,
        });
    }
    Ok(out)
}

/// Waits until every task of the stack runs, or the deadline passes.
pub async fn wait_running(engine: &Engine, desired: &DesiredState, timeout: Duration) -> Result<Vec<Progress>, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let p = progress(engine, desired).await.map_err(|e| e.to_string())?;
        let pending: Vec<String> = p
            .iter()
            .filter(|s| s.running < s.wanted)
            .map(|s| format!("{} {}/{}", s.service, s.running, s.wanted))
            .collect();
        if pending.is_empty() {
            return Ok(p);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "not every task runs after {}: {}",
                humantime::format_duration(timeout),
                pending.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
