//! Controller, reconcile (the driver): one level-triggered pass, as named
//! steps, each a function with its inputs and outputs:
//!
//! observe -> role -> nodes -> render -> loggers -> preflight ->
//! elasticsearch -> plan -> apply -> companion -> status.
//!
//! Nothing depends on which trigger ran it. Errors come back as one
//! [`ReconcileError`]; [`error_policy`] decides what the loop does next.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{companion, leader, nodes, preflight, Context};
use crate::apply::{self, ApplyError, Written};
use crate::clock::now;
use crate::engine::{observe, observe_stack, observe_stack_reusing, Cache, EngineError, Observed, Reuse, Scope};
use crate::plan::{self, Plan};
use crate::render::desired::DesiredState;
use crate::status::derive::{self, Facts};
use crate::status::{Degraded, LoggerNode, PreflightState, PreflightStatus, Role};

/// How soon to look again while tasks are starting.
const RECHECK: Duration = Duration::from_secs(2);
/// How often a standby checks whether it now runs on the leader (one small
/// call; with the event subscription's renewal, under one call a second).
pub const STANDBY_POLL: Duration = Duration::from_millis(1200);

/// How often an instance whose node is not a manager looks again.
pub const NOT_MANAGER_POLL: Duration = Duration::from_secs(5);

/// What the controller keeps from one reconcile to the next.
#[derive(Default)]
pub struct Memory {
    /// The last desired state that rendered: in force while the files are invalid.
    pub last_good: Option<DesiredState>,
    /// Logger nodes seen so far (id -> hostname), to notice one that left
    /// or lost its label; forgotten once that is reported and does not matter.
    pub known_loggers: BTreeMap<String, String>,
    /// Services with a volume -> the node their task ran on last (their data).
    pub data_nodes: BTreeMap<String, String>,
    pub companion: companion::State,
    pub preflight: preflight::Preflight,
    /// This engine's node ID, as the last observe read it.
    pub node_id: Option<String>,
    /// What this reconcile's triggers may have changed outside the stack
    /// (set by the loop from the batch): where a companion found by image
    /// only is looked for.
    pub outside: super::triggers::Outside,
    /// The networks, configs and secrets the last reconcile ended with (none
    /// after a failed one): on the hot path, the kinds no event named are
    /// taken from here.
    pub cache: Option<Cache>,
}

impl Memory {
    /// What this reconcile observes of a swarm that has `desired`: the
    /// stack's objects; while the companion is found by image, every
    /// service after a trigger that may stand for anything (or when the
    /// last answer may be stale), else the one found last time by name and
    /// the services the batch's events name by ID. On events and rechecks
    /// alone, the node ID of the last observe instead of `/info`.
    pub fn scope(&self, desired: &DesiredState) -> Scope {
        let mut scope = Scope::of(desired);
        if scope.all_services && !self.outside.every && !self.companion.rescan {
            scope.all_services = false;
            scope.names.extend(self.companion.found_by_image().map(str::to_string));
            scope.names.sort();
            scope.names.dedup();
            scope.ids = self.outside.services.clone();
        }
        if self.outside.quick {
            scope.node_id = self.node_id.clone();
        }
        scope
    }

    /// What of `cache` an observe of `scope` may take: on the hot path
    /// (events and rechecks only, so the stream lost nothing), from the
    /// last reconcile's end of the same objects, the kinds no event named.
    fn reuse<'a>(&self, cache: Option<&'a Cache>, scope: &Scope) -> Option<Reuse<'a>> {
        let cache = cache.filter(|c| self.outside.quick && c.scope.same_objects(scope))?;
        Some(Reuse {
            cache,
            stale: self.outside.named,
        })
    }
}

/// A reconcile that ran to its end.
#[derive(Debug)]
pub enum Done {
    /// Nothing left to write; look again after `recheck` (tasks starting,
    /// a companion change settling).
    Applied {
        written: Vec<Written>,
        recheck: Option<Duration>,
    },
    /// Not on the leader: observed and reported only.
    Standby,
}

impl Done {
    pub fn label(&self) -> &'static str {
        match self {
            Done::Applied { written, .. } if written.is_empty() => "in-sync",
            Done::Applied { .. } => "applied",
            Done::Standby => "standby",
        }
    }
}

/// Why a reconcile stopped short.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The desired state never rendered: nothing to reconcile toward.
    #[error("the desired state is invalid: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("nothing was written: {}", .0.join("; "))]
    Blocked(Vec<String>),
    #[error("this instance is no longer on the swarm leader; it stopped writing")]
    NotLeader,
    #[error(transparent)]
    Apply(ApplyError),
    /// The whole reconcile overran its deadline and was cancelled.
    #[error("the reconcile did not finish within {}; it was cancelled (the engine answers too slowly)", humantime::format_duration(*.0))]
    Overran(Duration),
}

impl From<ApplyError> for ReconcileError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Engine(e) => ReconcileError::Engine(e),
            ApplyError::Blocked(r) => ReconcileError::Blocked(r),
            ApplyError::NotLeader => ReconcileError::NotLeader,
            other => ReconcileError::Apply(other),
        }
    }
}

impl ReconcileError {
    /// A static category, for metrics and status.
    pub fn category(&self) -> &'static str {
        match self {
            ReconcileError::Engine(e) => e.category(),
            ReconcileError::Invalid(_) => "invalid",
            ReconcileError::Blocked(_) => "blocked",
            ReconcileError::NotLeader => "not_leader",
            ReconcileError::Apply(e) => e.category(),
            ReconcileError::Overran(_) => "deadline",
        }
    }

    /// The outcome label of a reconcile that ended with this error.
    pub fn label(&self) -> &'static str {
        match self {
            ReconcileError::Invalid(_) => "invalid",
            ReconcileError::Blocked(_) => "blocked",
            ReconcileError::NotLeader => "standby",
            ReconcileError::Engine(_) | ReconcileError::Apply(_) | ReconcileError::Overran(_) => "error",
        }
    }
}

/// What the loop does after a failed reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Try again after the next backoff delay.
    Backoff,
    /// Nothing changes on its own: wait for a trigger (a file change, an event).
    WaitForChange,
    /// Leadership moved: look again soon, as a standby does.
    Poll(Duration),
}

/// Invalid input and refusals wait for a change; engine trouble retries
/// with backoff (but an engine too old never gets younger).
pub fn error_policy(e: &ReconcileError) -> Policy {
    match e {
        ReconcileError::Invalid(_) | ReconcileError::Blocked(_) => Policy::WaitForChange,
        ReconcileError::NotLeader => Policy::Poll(STANDBY_POLL),
        ReconcileError::Engine(EngineError::ApiTooOld { .. }) => Policy::WaitForChange,
        // Demoted (or not yet promoted): look again as a standby does, so a
        // promotion is noticed within seconds, not after a backoff of minutes.
        ReconcileError::Engine(EngineError::NotManager) => Policy::Poll(NOT_MANAGER_POLL),
        ReconcileError::Engine(_) | ReconcileError::Apply(_) | ReconcileError::Overran(_) => Policy::Backoff,
    }
}

/// One level-triggered reconcile: the steps, then the status from what they found.
pub async fn reconcile(ctx: &Arc<Context>, mem: &mut Memory) -> Result<Done, ReconcileError> {
    let mut facts = Facts::default();
    let mut timer = StepTimer::start();
    let deadline = ctx.settings.reconcile_timeout;
    // Cancelling mid-way is safe: every step is level-triggered, the next
    // reconcile observes what was written.
    let result = match tokio::time::timeout(deadline, steps(ctx, mem, &mut facts, &mut timer)).await {
        Ok(r) => r,
        Err(_) => Err(ReconcileError::Overran(deadline)),
    };
    status_step(ctx, &facts, &result);
    timer.mark("status");
    tracing::debug!(steps = %timer, "reconcile steps");
    result
}

/// How long each step of one reconcile took, for the debug log (where a
/// slow reconcile spends its time).
struct StepTimer {
    last: std::time::Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl StepTimer {
    fn start() -> StepTimer {
        StepTimer {
            last: std::time::Instant::now(),
            steps: Vec::new(),
        }
    }

    /// The step `name` ended now.
    fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.steps.push((name, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for StepTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (name, d)) in self.steps.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{name}={:.1}ms", d.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

async fn steps(
    ctx: &Arc<Context>,
    mem: &mut Memory,
    facts: &mut Facts,
    timer: &mut StepTimer,
) -> Result<Done, ReconcileError> {
    // The scope of the state in force; before the first good render, of a
    // look at the files (no render at all: the whole swarm, as it may be).
    let scope = match &mem.last_good {
        Some(d) => Some(mem.scope(d)),
        None => ctx.render(None).ok().map(|d| mem.scope(&d)),
    };
    timer.mark("scope");
    // Taken: a reconcile that fails leaves no cache behind.
    let cache = mem.cache.take();
    let reuse = scope.as_ref().and_then(|s| mem.reuse(cache.as_ref(), s));
    let observed = match (&scope, reuse) {
        (Some(scope), Some(reuse)) => observe_stack_reusing(&ctx.engine, scope, reuse).await?,
        _ => observe_step(ctx, scope.as_ref()).await?,
    };
    timer.mark("observe");
    mem.node_id = Some(observed.node_id.clone()).filter(|id| !id.is_empty());
    facts.engine_reachable = true;
    let role = role_step(ctx, &observed);
    let observed = nodes_step(ctx, role, observed, scope.as_ref()).await?;
    timer.mark("nodes");
    let desired = render_step(ctx, &mut mem.last_good, facts, &observed)?;
    timer.mark("render");
    // Files changed since the scope was set: look at what the new state names.
    let observed = match mem.scope(&desired) {
        now if scope.as_ref().is_some_and(|s| !s.same_objects(&now)) => observe_step(ctx, Some(&now)).await?,
        _ => observed,
    };
    let (loggers, mut degraded, gone) = loggers_step(&desired, &observed, &mut mem.known_loggers, &mut mem.data_nodes);
    let (desired, low) = preflight_step(ctx, role, desired, &observed, &loggers, &mut mem.preflight);
    // A cluster topology becomes its members here, with the roll's decision.
    let es = super::es::step(ctx, role, desired, &observed, ctx.settings.plan).await;
    let desired = es.desired;
    data_nodes_step(&desired, &observed, &mut degraded);
    degraded.extend(low);
    let (shipping, shipping_problems) = shipping_step(ctx, &desired, &observed).await;
    facts.degraded = !degraded.is_empty() || !es.problems.is_empty() || !shipping_problems.is_empty();
    ctx.update_status(|st| {
        for p in &shipping_problems {
            if !st.shipping.problems.contains(p) {
                st.event(now(), "shipper", p.clone());
            }
        }
        st.shipping = shipping;
    });
    timer.mark("loggers");
    let plan = plan::plan(&desired, &observed, ctx.settings.plan);
    report_plan(ctx, &desired, &observed, &plan, &loggers, &degraded, &gone);
    timer.mark("plan");
    let scope = mem.scope(&desired);
    if !role.writes() {
        facts.standby = true;
        // A standby still reports what the companion should serve.
        companion_step(
            ctx,
            &desired,
            &observed,
            &mem.outside.services,
            false,
            &mut mem.companion,
        )
        .await?;
        let mut observed = observed;
        mem.cache = Some(Cache::take(scope, &mut observed));
        return Ok(Done::Standby);
    }
    let mut report = apply_step(ctx, &desired, &scope, observed).await.map_err(|e| {
        facts.blocked = matches!(e, ApplyError::Blocked(_));
        ReconcileError::from(e)
    })?;
    timer.mark("apply");
    report_written(ctx, &report.done);
    report_not_converging(ctx, &report.last_plan.not_converging);
    facts.degraded |= !report.last_plan.not_converging.is_empty();
    facts.wrote = !report.done.is_empty();
    facts.tasks_running = derive::tasks_running(&report.observed, &desired);
    let paused = derive::paused_updates(&report.observed, &desired);
    facts.degraded |= !paused.is_empty();
    ctx.update_status(|st| {
        for p in &paused {
            if !st.paused_updates.contains(p) {
                st.event(now(), "update", p.clone());
            }
        }
        st.paused_updates = paused;
    });
    let mut recheck = (facts.wrote || !facts.tasks_running).then_some(RECHECK);
    if let Some(wait) = companion_step(
        ctx,
        &desired,
        &report.observed,
        &mem.outside.services,
        true,
        &mut mem.companion,
    )
    .await?
    {
        recheck = Some(recheck.map_or(wait, |r| r.min(wait)));
    }
    timer.mark("companion");
    mem.cache = Some(Cache::take(scope, &mut report.observed));
    Ok(Done::Applied {
        written: report.done,
        recheck,
    })
}

/// observe: the swarm, in a constant number of calls: what the scope of the
/// stack names (the whole swarm only while no file has ever rendered).
async fn observe_step(ctx: &Context, scope: Option<&Scope>) -> Result<Observed, ReconcileError> {
    let observed = match scope {
        Some(scope) => observe_stack(&ctx.engine, scope).await?,
        None => observe(&ctx.engine).await?,
    };
    if let Some(t) = observed.covers_events_until {
        ctx.events_covered_until(t);
    }
    Ok(observed)
}

/// role: leader, standby or single, from the node list.
fn role_step(ctx: &Context, observed: &Observed) -> Role {
    let role = leader::role(&observed.node_id, &observed.nodes, ctx.settings.leader_gating);
    ctx.update_status(|st| {
        if st.role != role {
            st.event(now(), "leader", format!("role is now {}", role.as_str()));
        }
        st.role = role;
        st.node_id = observed.node_id.clone();
        st.engine.connected = true;
        st.engine.last_error = None;
        st.engine.nodes = observed.nodes.len();
    });
    role
}

/// nodes: the auto-label rules' labels (leader only), before anything else
/// so a joining node waits for nothing. Re-observes when a node changed.
async fn nodes_step(
    ctx: &Context,
    role: Role,
    observed: Observed,
    scope: Option<&Scope>,
) -> Result<Observed, ReconcileError> {
    if !role.writes() || ctx.settings.auto_label.is_empty() {
        return Ok(observed);
    }
    match nodes::label(ctx, &observed).await {
        Ok(true) => observe_step(ctx, scope).await,
        Ok(false) => Ok(observed),
        // A node moved while we read it: go on, and look again at once.
        Err(e) if e.is_conflict() => {
            let _ = ctx.trigger.try_send(super::triggers::Trigger::Retry);
            Ok(observed)
        }
        Err(e) => Err(e.into()),
    }
}

/// render: the desired state; a bad render keeps the last good one in force.
fn render_step(
    ctx: &Context,
    last_good: &mut Option<DesiredState>,
    facts: &mut Facts,
    observed: &Observed,
) -> Result<DesiredState, ReconcileError> {
    match ctx.render_with(last_good.as_ref(), &observed.secrets, &observed.configs) {
        Ok(d) => {
            if last_good.as_ref() != Some(&d) {
                ctx.desired_changed(&d);
            }
            *last_good = Some(d);
        }
        Err(problems) => {
            facts.invalid = true;
            tracing::warn!(problems = %problems.join("; "), "desired state is invalid; keeping the last good one");
            ctx.update_status(|st| {
                if st.invalid != problems {
                    let msg = format!("desired state invalid: {}", problems.join("; "));
                    st.event(now(), "desired", msg);
                }
                st.invalid = problems.clone();
            });
            if last_good.is_none() {
                return Err(ReconcileError::Invalid(problems));
            }
        }
    }
    facts.has_desired = last_good.is_some();
    last_good.clone().ok_or(ReconcileError::Invalid(Vec::new()))
}

/// loggers: the nodes matching the stack's selector, the degraded ones, and
/// the known ones that left or lost their label without it mattering
/// (reported once, then forgotten).
fn loggers_step(
    desired: &DesiredState,
    observed: &Observed,
    known: &mut BTreeMap<String, String>,
    data: &mut BTreeMap<String, String>,
) -> (Vec<LoggerNode>, Vec<Degraded>, Vec<Degraded>) {
    let (label, value) = plan::selector(desired);
    let stakes = nodes::Stakes {
        data_nodes: nodes::data_nodes(desired, observed, data),
        unplaced: nodes::unplaced(desired, observed),
    };
    let found = nodes::logger_nodes(&observed.nodes, &label, &value, known, &stakes);
    for l in &found.nodes {
        known.insert(l.id.clone(), l.hostname.clone());
    }
    let mut gone = Vec::new();
    for (id, d) in found.gone {
        known.remove(&id);
        gone.push(d);
    }
    (found.nodes, found.degraded, gone)
}

/// data nodes: a pinned service (Elasticsearch) whose node is down, drained
/// or gone waits for it; the node is degraded, its reason naming the service.
fn data_nodes_step(desired: &DesiredState, observed: &Observed, degraded: &mut Vec<Degraded>) {
    for w in plan::pinning::waiting_on_data_nodes(desired, observed) {
        match degraded.iter_mut().find(|d| d.hostname == w.hostname) {
            Some(d) => d.reason = w.why,
            None => degraded.push(Degraded {
                hostname: w.hostname,
                reason: w.why,
            }),
        }
    }
}

/// preflight: services that wait for a logger node's `vm.max_map_count`
/// (leader only: it runs jobs). Returns the desired state with those held,
/// and the nodes found low.
fn preflight_step(
    ctx: &Arc<Context>,
    role: Role,
    mut desired: DesiredState,
    observed: &Observed,
    loggers: &[LoggerNode],
    state: &mut preflight::Preflight,
) -> (DesiredState, Vec<Degraded>) {
    if !role.writes() {
        ctx.update_status(|st| {
            st.preflight = PreflightStatus {
                state: PreflightState::Standby,
                image: ctx.settings.preflight.image.clone(),
                ..Default::default()
            }
        });
        return (desired, Vec::new());
    }
    let pf = state.step(ctx, &desired, observed, loggers);
    ctx.update_status(|st| st.preflight = pf.status);
    desired.held = pf.held;
    let low = pf
        .low
        .into_iter()
        .map(|(hostname, reason)| Degraded { hostname, reason })
        .collect();
    (desired, low)
}

/// apply: the plan, version-checked, with the leader asked before every round.
async fn apply_step(
    ctx: &Context,
    desired: &DesiredState,
    scope: &Scope,
    observed: Observed,
) -> Result<apply::Report, ApplyError> {
    let gating = ctx.settings.leader_gating;
    let gate = move |o: &Observed| leader::role(&o.node_id, &o.nodes, gating).writes();
    // The memory outlives the reconcile: an update that did not stick is not
    // written again on the next one either (no update loops).
    let mut memory = ctx.convergence.lock().map(|m| m.clone()).unwrap_or_default();
    let result = apply::apply_from(
        &ctx.engine,
        desired,
        scope,
        ctx.settings.plan,
        Some(observed),
        &gate,
        &mut memory,
    )
    .await;
    if let Ok(mut m) = ctx.convergence.lock() {
        *m = memory;
    }
    result
}

/// shipping: where the shipper runs. The observe lists running tasks only;
/// where a node has none, the shipper's tasks are read whole (swarm shuts a
/// failed task down and starts another), so the status can say why: one
/// read, only while some node lacks a shipper.
async fn shipping_step(
    ctx: &Context,
    desired: &DesiredState,
    observed: &Observed,
) -> (crate::status::ShippingStatus, Vec<String>) {
    let first = super::shipping::status(desired, observed);
    let Some(service) = first.0.service.clone().filter(|_| !first.0.missing.is_empty()) else {
        return first;
    };
    match ctx.engine.service_tasks(&service, false).await {
        Ok(all) => super::shipping::status_with(desired, observed, Some(&all)),
        Err(e) => {
            tracing::debug!("reading the tasks of {service}: {e}");
            first
        }
    }
}

/// companion: the Let's Encrypt companion's domains. Returns when to look
/// again (a change settling); a companion that moved while read is read again at once.
async fn companion_step(
    ctx: &Context,
    desired: &DesiredState,
    observed: &Observed,
    named: &[String],
    writes: bool,
    state: &mut companion::State,
) -> Result<Option<Duration>, ReconcileError> {
    match companion::step(ctx, desired, observed, named, writes, state).await {
        Ok(wait) => Ok(wait),
        Err(e) if e.is_conflict() => Ok(Some(Duration::ZERO)),
        Err(e) => Err(e.into()),
    }
}

/// Objects (as planned), logger nodes and degraded nodes into the status.
fn report_plan(
    ctx: &Context,
    desired: &DesiredState,
    observed: &Observed,
    plan: &Plan,
    loggers: &[LoggerNode],
    degraded: &[Degraded],
    gone: &[Degraded],
) {
    let objects = derive::objects(desired, observed, plan);
    ctx.update_status(|st| {
        for d in gone {
            tracing::info!(node = %d.hostname, reason = %d.reason, "no longer a logger node");
            st.event(
                now(),
                "node",
                format!("{} is no longer a logger node: {}", d.hostname, d.reason),
            );
        }
        for d in degraded {
            if !st.degraded_nodes.contains(d) {
                st.event(now(), "node", format!("{} degraded: {}", d.hostname, d.reason));
            }
        }
        st.logger_nodes = loggers.to_vec();
        st.degraded_nodes = degraded.to_vec();
        st.objects = objects;
    });
}

/// Services whose update did not stick, into the objects' states and the events.
fn report_not_converging(ctx: &Context, stuck: &[plan::converge::NotConverging]) {
    if stuck.is_empty() {
        return;
    }
    ctx.update_status(|st| {
        for n in stuck {
            let why = n.to_string();
            let mut newly = false;
            if let Some(o) = st
                .objects
                .iter_mut()
                .find(|o| o.kind == plan::ObjectKind::Service && o.name == n.service)
            {
                newly = o.state != crate::status::ObjectState::NotConverging;
                o.state = crate::status::ObjectState::NotConverging;
                o.why = Some(why.clone());
            }
            if newly {
                tracing::warn!(service = %n.service, fields = %n.fields.join(", "), "{why}");
                st.event(now(), "not-converging", why);
            }
        }
    });
}

/// What apply wrote, into the objects' states and the events.
fn report_written(ctx: &Context, written: &[Written]) {
    let at = now();
    ctx.update_status(|st| {
        derive::mark_written(&mut st.objects, written, &at);
        for w in written {
            st.event(at.clone(), "write", w.to_string());
        }
    });
}

/// status: the phase from the facts, and what the error says.
fn status_step(ctx: &Context, facts: &Facts, result: &Result<Done, ReconcileError>) {
    ctx.update_status(|st| {
        if !facts.invalid {
            if !st.invalid.is_empty() {
                st.event(now(), "desired", "desired state valid again");
            }
            st.invalid.clear();
        }
        match result {
            Ok(Done::Applied { .. }) => st.blocked.clear(),
            Ok(Done::Standby) => {}
            Err(ReconcileError::Blocked(reasons)) => {
                if &st.blocked != reasons {
                    st.event(now(), "blocked", reasons.join("; "));
                }
                st.blocked = reasons.clone();
            }
            Err(ReconcileError::Engine(e))
                if !facts.engine_reachable
                    || matches!(e, EngineError::Unreachable { .. } | EngineError::Timeout { .. }) =>
            {
                // A node demoted to worker (or out of the swarm) leads nothing:
                // never report a role it lost.
                if matches!(e, EngineError::NotManager | EngineError::NotSwarm) && st.role == Role::Leader {
                    st.event(
                        now(),
                        "leader",
                        "role is now standby (this node is no longer a manager)",
                    );
                    st.role = Role::Standby;
                }
                st.engine_unavailable(now(), &e.to_string());
                return;
            }
            Err(e @ ReconcileError::Overran(_)) => {
                st.engine_unavailable(now(), &e.to_string());
                return;
            }
            Err(ReconcileError::Invalid(_)) | Err(ReconcileError::NotLeader) => {}
            // Other failures leave the phase as it was; the error is an event.
            Err(e) => {
                st.event(now(), "error", e.to_string());
                return;
            }
        }
        let facts = Facts {
            standby: facts.standby || matches!(result, Err(ReconcileError::NotLeader)),
            ..*facts
        };
        st.phase = derive::phase(&facts);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demoted_node_looks_again_within_seconds() {
        assert_eq!(
            error_policy(&ReconcileError::Engine(EngineError::NotManager)),
            Policy::Poll(NOT_MANAGER_POLL)
        );
        assert_eq!(
            error_policy(&ReconcileError::Engine(EngineError::NotSwarm)),
            Policy::Backoff
        );
        assert_eq!(error_policy(&ReconcileError::NotLeader), Policy::Poll(STANDBY_POLL));
    }

    #[test]
    fn every_service_is_read_only_when_the_companion_may_have_moved() {
        let desired = crate::render::test_desired("");
        let mut mem = Memory {
            outside: super::super::triggers::Outside {
                every: true,
                ..Default::default()
            },
            node_id: Some("n1".into()),
            ..Default::default()
        };
        // Found by image, and anything may have changed: every service.
        let s = mem.scope(&desired);
        assert!(s.all_services);
        assert_eq!(s.node_id, None, "a full look reads /info");
        assert_eq!(s.image, "hamburml/docker-flow-letsencrypt");
        // Services outside the stack changed: the one found last time and those, by name.
        mem.outside.every = false;
        mem.outside.quick = true;
        mem.outside.services = vec!["id-web".into()];
        mem.companion.by_image = companion::ImageScan::Found("proxy_le".into());
        let s = mem.scope(&desired);
        assert!(!s.all_services);
        assert_eq!(s.names, ["proxy_le"]);
        assert_eq!(s.ids, ["id-web"]);
        assert_eq!(s.node_id.as_deref(), Some("n1"), "events only: /info is not read again");
        // Nothing outside the stack changed, never found: the stack (and the labelled ones) only.
        mem.outside.services.clear();
        mem.companion.by_image = companion::ImageScan::Missing;
        let s = mem.scope(&desired);
        assert!(!s.all_services && s.names.is_empty());
    }

    #[test]
    fn the_hot_path_reuses_only_kinds_no_event_named_of_the_same_scope() {
        let desired = crate::render::test_desired("");
        let scope = Scope::of(&desired);
        let cache = Cache {
            scope: scope.clone(),
            ..Default::default()
        };
        let mut mem = Memory::default();
        // A full look (startup, resync, a reconnect: events may be lost) reads everything.
        mem.outside.every = true;
        assert!(mem.reuse(Some(&cache), &scope).is_none());
        // Events only: the cache, less the kinds the events named.
        mem.outside = super::super::triggers::Outside {
            quick: true,
            ..Default::default()
        };
        mem.outside.named.add("config");
        let reuse = mem.reuse(Some(&cache), &scope).map(|r| r.stale);
        assert_eq!(
            reuse,
            Some(crate::engine::Kinds {
                configs: true,
                ..Default::default()
            })
        );
        // Another set of objects (the files named a new config): no reuse.
        let mut other = scope.clone();
        other.names.push("proxy_cfg".into());
        assert!(mem.reuse(Some(&cache), &other).is_none());
        // After a failed reconcile there is no cache.
        assert!(mem.reuse(None, &scope).is_none());
    }
}
