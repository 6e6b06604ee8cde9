//! The controller: `swarmlog run`. Triggers (events, resync, files, manual)
//! schedule level-triggered reconciles, one at a time: render the desired
//! state, observe everything, label nodes, plan and apply, record status.

pub mod companion;
pub mod leader;
pub mod nodes;
pub mod preflight;
pub mod triggers;
pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bollard::models::NodeSpec;
use bollard::query_parameters::UpdateNodeOptions;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::apply::{self, ApplyError};
use crate::chart::{self, Chart, RenderOptions};
use crate::desired::DesiredState;
use crate::engine::{Engine, EngineError};
use crate::metrics::{CategoryLabel, KindLabel, Metrics, OutcomeLabel};
use crate::observe::{observe, Observed};
use crate::plan::{self, Action, PlanOptions, Reason};
use crate::status::{now, ObjectStatus, Phase, Status};
use leader::Role;
use nodes::LabelRule;
use triggers::{Backoff, Trigger};

/// Settings of `swarmlog run`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub chart: Option<PathBuf>,
    pub values: Vec<PathBuf>,
    pub set: Vec<(String, String)>,
    pub stack: Option<String>,
    pub resync: Duration,
    pub debounce: Duration,
    pub debounce_max: Duration,
    pub watch_interval: Duration,
    pub leader_gating: bool,
    pub auto_label: Vec<LabelRule>,
    pub plan: PlanOptions,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub shutdown_timeout: Duration,
    pub preflight: PreflightSettings,
}

/// The Elasticsearch preflight's settings.
#[derive(Debug, Clone, Default)]
pub struct PreflightSettings {
    /// The image of the check job (the operator's own); `None`: off.
    pub image: Option<String>,
    pub timeout: Duration,
    pub recheck: Duration,
}

/// Shared by the controller, its watchers and the HTTP API.
pub struct Context {
    pub engine: Engine,
    pub settings: Settings,
    pub status: Arc<RwLock<Status>>,
    pub metrics: Arc<Metrics>,
    /// Send a trigger (the HTTP API's `POST /reconcile` uses it).
    pub trigger: mpsc::Sender<Trigger>,
    /// The stack name of the last good render.
    stack: RwLock<String>,
    /// Names outside the stack's prefix whose events matter (external networks).
    watched: RwLock<Vec<String>>,
    /// Every service event matters (the companion and opt-ins can be anywhere).
    all_services: std::sync::atomic::AtomicBool,
}

impl Context {
    /// `status` and `metrics` are shared with the HTTP API, which may run
    /// before the engine answers.
    pub fn new(
        engine: Engine,
        settings: Settings,
        trigger: mpsc::Sender<Trigger>,
        status: Arc<RwLock<Status>>,
        metrics: Arc<Metrics>,
    ) -> Context {
        let stack = settings.stack.clone().unwrap_or_else(|| "logging".to_string());
        if let Ok(mut st) = status.write() {
            st.engine.host = engine.host.clone();
            st.engine.api_version = engine.api_version.clone();
            st.role = if settings.leader_gating {
                Role::Standby
            } else {
                Role::Single
            };
        }
        Context {
            engine,
            settings,
            status,
            metrics,
            trigger,
            stack: RwLock::new(stack),
            watched: RwLock::new(Vec::new()),
            all_services: std::sync::atomic::AtomicBool::new(true),
        }
    }

    pub fn stack(&self) -> String {
        self.stack.read().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn watches_all_services(&self) -> bool {
        self.all_services.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn watched_names(&self) -> Vec<String> {
        self.watched.read().map(|w| w.clone()).unwrap_or_default()
    }

    pub fn update_status(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.write() {
            f(&mut s);
        }
    }

    pub fn snapshot(&self) -> Option<Status> {
        self.status.read().ok().map(|s| s.clone())
    }

    pub fn set_engine_error(&self, msg: &str) {
        self.update_status(|s| {
            if s.engine.connected || s.engine.last_error.as_deref() != Some(msg) {
                s.event(now(), "engine", format!("engine unavailable: {msg}"));
            }
            s.engine.connected = false;
            s.engine.last_error = Some(msg.to_string());
            s.phase = Phase::EngineUnavailable;
        });
    }

    pub fn note_reconnect(&self) {
        self.metrics.event_stream_reconnects.inc();
        self.update_status(|s| {
            s.engine.event_stream_reconnects += 1;
            s.event(now(), "engine", "event stream reconnected");
        });
    }

    /// Files whose change should trigger a reconcile.
    fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = self.settings.values.clone();
        files.extend(self.settings.chart.clone());
        files
    }
}

/// Renders the desired state from the settings' chart and values.
pub fn render(settings: &Settings) -> Result<DesiredState, Vec<String>> {
    let chart = match &settings.chart {
        Some(p) => Chart::load(p),
        None => Chart::embedded(),
    }
    .map_err(|p| p.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let mut values_files = Vec::new();
    for p in &settings.values {
        values_files.push((
            p.display().to_string(),
            chart::read_input(p).map_err(|p| vec![p.to_string()])?,
        ));
    }
    let env = |n: &str| std::env::var(n).ok();
    chart
        .render(&RenderOptions {
            values_files,
            set: settings.set.clone(),
            stack: settings.stack.clone(),
            env: &env,
        })
        .map(|r| r.desired)
        .map_err(|p| p.0.iter().map(ToString::to_string).collect())
}

/// How one reconcile ended.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing left to write; look again after `recheck` (tasks starting,
    /// a companion change settling).
    Converged {
        writes: Vec<String>,
        recheck: Option<Duration>,
    },
    Standby,
    Blocked(Vec<String>),
    Invalid,
    /// Message, static category, retry?
    Failed(String, &'static str, bool),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Converged { writes, .. } if writes.is_empty() => "in-sync",
            Outcome::Converged { .. } => "applied",
            Outcome::Standby => "standby",
            Outcome::Blocked(_) => "blocked",
            Outcome::Invalid => "invalid",
            Outcome::Failed(..) => "error",
        }
    }
}

/// How soon to look again while tasks are starting.
const RECHECK: Duration = Duration::from_secs(2);
/// How often a standby checks whether it now runs on the leader.
const STANDBY_POLL: Duration = Duration::from_secs(1);

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs the controller until `shutdown`; returns when the last reconcile is done.
pub async fn run(ctx: Arc<Context>, mut rx: mpsc::Receiver<Trigger>, shutdown: CancellationToken) {
    let s = &ctx.settings;
    tokio::spawn(watch::watch_events(ctx.clone(), ctx.trigger.clone(), shutdown.clone()));
    tokio::spawn(triggers::resync_ticker(s.resync, ctx.trigger.clone(), shutdown.clone()));
    tokio::spawn(triggers::watch_files(
        ctx.watched_files(),
        s.watch_interval,
        ctx.trigger.clone(),
        shutdown.clone(),
    ));
    let _ = ctx.trigger.send(Trigger::Startup).await;

    let mut last_good: Option<DesiredState> = None;
    let mut known_loggers: BTreeMap<String, String> = BTreeMap::new();
    let mut companion_state = companion::State::default();
    let mut preflight_state = preflight::Preflight::default();
    let mut last_writes: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut retry = Backoff::new(s.retry_min, s.retry_max);
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut recheck_at: Option<tokio::time::Instant> = None;
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => break,
            b = triggers::next_batch(&mut rx, s.debounce, s.debounce_max) => match b {
                Some(b) => b,
                None => break,
            },
            _ = sleep_until(retry_at) => {
                retry_at = None;
                vec![Trigger::Retry]
            }
            _ = sleep_until(recheck_at) => {
                recheck_at = None;
                vec![Trigger::Recheck]
            }
        };
        let started = Instant::now();
        let describe: Vec<String> = batch
            .iter()
            .map(|t| match t {
                Trigger::Event { what } => what.clone(),
                other => other.kind().to_string(),
            })
            .collect();
        let kind = batch.first().map(Trigger::kind).unwrap_or("manual");
        let span = tracing::info_span!("reconcile", trigger = %describe.join(", "));
        let _enter = span.enter();
        ctx.update_status(|st| {
            st.reconcile.last_trigger = Some(describe.join(", "));
            st.reconcile.last_trigger_kind = Some(kind.to_string());
            st.reconcile.started_at = Some(now());
        });
        // Let a reconcile that is under way finish, within the shutdown deadline.
        let work = reconcile(
            &ctx,
            &mut last_good,
            &mut known_loggers,
            &mut companion_state,
            &mut preflight_state,
        );
        tokio::pin!(work);
        let outcome = tokio::select! {
            o = &mut work => o,
            _ = shutdown.cancelled() => {
                match tokio::time::timeout(s.shutdown_timeout, &mut work).await {
                    Ok(o) => o,
                    Err(_) => {
                        tracing::warn!("shutdown deadline passed during a reconcile; stopping it");
                        break;
                    }
                }
            }
        };
        let elapsed = started.elapsed();
        let label = outcome.label();
        let failed = matches!(outcome, Outcome::Failed(..));
        ctx.update_status(|st| {
            st.reconcile.count += 1;
            st.reconcile.duration_ms = Some(elapsed.as_millis() as u64);
            st.reconcile.outcome = Some(label.to_string());
            st.reconcile.next_resync =
                Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now() + s.resync).to_string());
            st.reconcile.writes = ctx
                .engine
                .writes()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            if failed {
                st.reconcile.consecutive_failures += 1;
            } else {
                st.reconcile.consecutive_failures = 0;
            }
        });
        record_metrics(&ctx, &batch, &outcome, elapsed, &mut last_writes);
        match &outcome {
            Outcome::Failed(msg, _, retryable) => {
                let delay = retry.next_delay();
                tracing::warn!(error = %msg, retry_in = ?delay, "reconcile failed");
                if *retryable {
                    retry_at = Some(tokio::time::Instant::now() + delay);
                }
            }
            Outcome::Converged { writes, recheck } => {
                retry.reset();
                if let Some(after) = recheck {
                    let at = tokio::time::Instant::now() + *after;
                    recheck_at = Some(recheck_at.map_or(at, |r| r.min(at)));
                }
                for w in writes {
                    tracing::info!("{w}");
                }
                tracing::info!(outcome = label, elapsed_ms = elapsed.as_millis() as u64, "reconciled");
            }
            Outcome::Standby => {
                // Leadership changes raise no event here: look again soon, so a
                // new leader's operator takes over right after the election.
                retry.reset();
                let at = tokio::time::Instant::now() + STANDBY_POLL;
                recheck_at = Some(recheck_at.map_or(at, |r| r.min(at)));
                tracing::debug!(elapsed_ms = elapsed.as_millis() as u64, "standby");
            }
            other => {
                retry.reset();
                tracing::info!(
                    outcome = other.label(),
                    elapsed_ms = elapsed.as_millis() as u64,
                    "reconciled"
                );
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    tracing::info!("controller stopped");
}

/// Brings the metrics up to date after a reconcile.
fn record_metrics(
    ctx: &Context,
    batch: &[Trigger],
    outcome: &Outcome,
    elapsed: Duration,
    last_writes: &mut BTreeMap<&'static str, u64>,
) {
    let m = &ctx.metrics;
    m.reconciles
        .get_or_create(&OutcomeLabel {
            outcome: outcome.label().to_string(),
        })
        .inc();
    m.reconcile_duration.observe(elapsed.as_secs_f64());
    for t in batch {
        Metrics::count(&m.triggers, t.kind());
    }
    if let Outcome::Failed(_, category, _) = outcome {
        m.errors
            .get_or_create(&CategoryLabel {
                category: category.to_string(),
            })
            .inc();
    }
    for (kind, n) in ctx.engine.writes() {
        let before = last_writes.insert(kind, n).unwrap_or(0);
        if n > before {
            m.writes
                .get_or_create(&KindLabel { kind: kind.to_string() })
                .inc_by(n - before);
            if kind == "companion_update" {
                m.companion_patches.inc_by(n - before);
            }
        }
    }
    if let Some(st) = ctx.snapshot() {
        m.observe_status(&st);
    }
}

/// One level-triggered reconcile.
async fn reconcile(
    ctx: &Arc<Context>,
    last_good: &mut Option<DesiredState>,
    known_loggers: &mut BTreeMap<String, String>,
    companion_state: &mut companion::State,
    preflight_state: &mut preflight::Preflight,
) -> Outcome {
    let s = &ctx.settings;
    // 1. Observe, and label nodes first: a joining node waits for nothing else.
    let mut observed = match observe(&ctx.engine).await {
        Ok(o) => o,
        Err(e) => {
            ctx.set_engine_error(&e.to_string());
            return Outcome::Failed(e.to_string(), e.category(), true);
        }
    };
    let role = leader::role(&observed.node_id, &observed.nodes, s.leader_gating);
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

    // Auto-labels (leader only).
    if role.writes() && !s.auto_label.is_empty() {
        match label_nodes(ctx, &observed).await {
            Ok(true) => match observe(&ctx.engine).await {
                Ok(o) => observed = o,
                Err(e) => return Outcome::Failed(e.to_string(), e.category(), true),
            },
            Ok(false) => {}
            Err(e) if e.is_conflict() => {
                let _ = ctx.trigger.try_send(Trigger::Retry);
            }
            Err(e) => return Outcome::Failed(e.to_string(), e.category(), true),
        }
    }
    // 2. Desired state: a bad render keeps the last good one in force.
    match render(s) {
        Ok(d) => {
            if last_good.as_ref() != Some(&d) {
                ctx.update_status(|st| {
                    if !st.invalid.is_empty() {
                        st.event(now(), "desired", "desired state valid again");
                    }
                    st.invalid.clear();
                    st.stack = d.stack.clone();
                });
                if let Ok(mut w) = ctx.stack.write() {
                    *w = d.stack.clone();
                }
                if let Ok(mut w) = ctx.watched.write() {
                    *w = d.external.networks.clone();
                }
                ctx.all_services
                    .store(d.letsencrypt.enabled, std::sync::atomic::Ordering::Relaxed);
            }
            *last_good = Some(d);
        }
        Err(problems) => {
            tracing::warn!(problems = %problems.join("; "), "desired state is invalid; keeping the last good one");
            ctx.update_status(|st| {
                if st.invalid != problems {
                    st.event(
                        now(),
                        "desired",
                        format!("desired state invalid: {}", problems.join("; ")),
                    );
                }
                st.invalid = problems.clone();
                st.phase = Phase::Invalid;
            });
            if last_good.is_none() {
                return Outcome::Invalid;
            }
        }
    }
    let Some(rendered) = last_good.as_ref() else {
        return Outcome::Invalid;
    };

    let (label, value) = selector(rendered);
    let inherited = known_loggers.clone();
    let (loggers, mut degraded) = nodes::logger_nodes(&observed.nodes, &label, &value, &inherited);
    for l in &loggers {
        known_loggers.insert(l.id.clone(), l.hostname.clone());
    }

    // 3. Elasticsearch preflight (leader only: it runs jobs): services wait
    // while a logger node is below the minimum or not checked yet.
    let held_desired;
    let desired = if role.writes() {
        let pf = preflight_state.step(ctx, rendered, &observed, &loggers);
        for (hostname, reason) in pf.low {
            degraded.push(nodes::Degraded { hostname, reason });
        }
        ctx.update_status(|st| st.preflight = pf.status);
        if pf.held.is_empty() {
            rendered
        } else {
            let mut d = rendered.clone();
            d.held = pf.held;
            held_desired = d;
            &held_desired
        }
    } else {
        ctx.update_status(|st| {
            st.preflight = preflight::PreflightStatus {
                state: "standby".to_string(),
                image: s.preflight.image.clone(),
                ..Default::default()
            }
        });
        rendered
    };

    // 4. Plan (always, for status) and apply (when this instance writes).
    let p = plan::plan(desired, &observed, s.plan);
    let objects = object_states(desired, &observed, &p);
    ctx.update_status(|st| {
        for d in &degraded {
            if !st.degraded_nodes.contains(d) {
                st.event(now(), "node", format!("{} degraded: {}", d.hostname, d.reason));
            }
        }
        st.logger_nodes = loggers.clone();
        st.degraded_nodes = degraded.clone();
        st.objects = objects;
    });
    if !role.writes() {
        // Standby still reports what the companion should serve.
        let _ = companion::step(ctx, desired, &observed, false, companion_state).await;
        ctx.update_status(|st| st.phase = Phase::Standby);
        return Outcome::Standby;
    }
    let gating = s.leader_gating;
    let gate = move |o: &Observed| leader::role(&o.node_id, &o.nodes, gating).writes();
    let result = apply::apply_from(&ctx.engine, desired, s.plan, Some(observed), &gate).await;
    match result {
        Ok(report) => {
            let writes = report.done.clone();
            let running = tasks_running(&report.observed, desired);
            ctx.update_status(|st| {
                for w in &writes {
                    st.event(now(), "write", w.clone());
                }
                st.blocked.clear();
                if !writes.is_empty() {
                    for o in st.objects.iter_mut() {
                        let done = match o.state.as_str() {
                            "missing" => "created",
                            "drifted" | "changed" => "updated",
                            _ => continue,
                        };
                        o.state = done.to_string();
                        o.last_change = Some(now());
                    }
                }
                st.phase = if !st.invalid.is_empty() {
                    Phase::Invalid
                } else if !st.degraded_nodes.is_empty() {
                    Phase::Degraded
                } else if !writes.is_empty() || !running {
                    Phase::Progressing
                } else {
                    Phase::Converged
                };
            });
            let mut recheck = (!running || !writes.is_empty()).then_some(RECHECK);
            match companion::step(ctx, desired, &report.observed, true, companion_state).await {
                Ok(Some(wait)) => recheck = Some(recheck.map_or(wait, |r| r.min(wait))),
                Ok(None) => {}
                // The companion moved while we read it: read again at once.
                Err(e) if e.is_conflict() => recheck = Some(Duration::ZERO),
                Err(e) => return Outcome::Failed(e.to_string(), e.category(), true),
            }
            Outcome::Converged { writes, recheck }
        }
        Err(ApplyError::Blocked(reasons)) => {
            ctx.update_status(|st| {
                if st.blocked != reasons {
                    st.event(now(), "blocked", reasons.join("; "));
                }
                st.blocked = reasons.clone();
                st.phase = Phase::Degraded;
            });
            Outcome::Blocked(reasons)
        }
        Err(ApplyError::NotLeader) => {
            ctx.update_status(|st| st.phase = Phase::Standby);
            Outcome::Standby
        }
        Err(ApplyError::Engine(e)) => {
            let retry = !matches!(e, EngineError::ApiTooOld { .. });
            if matches!(e, EngineError::Unreachable { .. }) {
                ctx.set_engine_error(&e.to_string());
            }
            ctx.update_status(|st| st.event(now(), "error", e.to_string()));
            Outcome::Failed(e.to_string(), e.category(), retry)
        }
        Err(e) => {
            ctx.update_status(|st| st.event(now(), "error", e.to_string()));
            Outcome::Failed(e.to_string(), e.category(), true)
        }
    }
}

/// The node selector of the desired state: the `node.labels.X == Y` its
/// services share (the chart's `nodeSelector`).
pub fn selector(desired: &DesiredState) -> (String, String) {
    desired
        .services
        .iter()
        .flat_map(|s| plan::constraints_of(&s.spec))
        .find_map(|c| {
            let (k, v) = c.split_once("==")?;
            Some((k.trim().strip_prefix("node.labels.")?.to_string(), v.trim().to_string()))
        })
        .unwrap_or_else(|| ("logger".to_string(), "true".to_string()))
}

fn running_of(observed: &Observed, service_id: &str) -> u64 {
    observed
        .tasks
        .iter()
        .filter(|t| t.service_id.as_deref() == Some(service_id))
        .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(bollard::models::TaskState::RUNNING))
        .count() as u64
}

fn tasks_running(observed: &Observed, desired: &DesiredState) -> bool {
    desired.services.iter().all(|d| {
        let Some(svc) = observed
            .services
            .iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == d.spec.name.as_deref())
        else {
            return false;
        };
        let wanted = svc
            .spec
            .as_ref()
            .and_then(|s| s.mode.as_ref())
            .and_then(|m| m.replicated.as_ref())
            .map(|r| r.replicas.unwrap_or(1) as u64);
        let running = running_of(observed, svc.id.as_deref().unwrap_or_default());
        match wanted {
            Some(w) => running >= w,
            None => running >= 1,
        }
    })
}

/// Per owned object: its state as the plan sees it.
fn object_states(desired: &DesiredState, observed: &Observed, p: &plan::Plan) -> Vec<ObjectStatus> {
    let mut out = Vec::new();
    let action_of = |name: &str| p.actions.iter().find(|a| a.name() == name);
    let conflict = |name: &str| p.conflicts.iter().any(|c| c.contains(&format!(" {name} ")));
    let mut push = |kind: &str, name: String, replicas: Option<(u64, u64)>| {
        let held = p.held.iter().find(|h| h.starts_with(&format!("service {name} ")));
        let (state, why) = if conflict(&name) {
            ("conflict", Some("exists and is not owned by swarmlog".to_string()))
        } else if let Some(h) = held {
            ("held", Some(h.clone()))
        } else {
            match action_of(&name) {
                None => ("in-sync", None),
                Some(Action::UpdateService { reason, changes, .. }) => (
                    if *reason == Reason::Drifted {
                        "drifted"
                    } else {
                        "changed"
                    },
                    Some(changes.iter().map(|c| c.field.clone()).collect::<Vec<_>>().join(", ")),
                ),
                Some(a) if a.verb() == "create" => ("missing", None),
                Some(_) => ("removing", None),
            }
        };
        out.push(ObjectStatus {
            kind: kind.to_string(),
            name,
            state: state.to_string(),
            replicas_desired: replicas.map(|r| r.0),
            replicas_running: replicas.map(|r| r.1),
            last_change: None,
            why,
        });
    };
    for n in &desired.networks {
        push("network", n.spec.name.clone(), None);
    }
    for c in &desired.configs {
        push("config", c.spec.name.clone().unwrap_or_default(), None);
    }
    for d in &desired.services {
        let name = d.spec.name.clone().unwrap_or_default();
        let wanted = d
            .spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .map(|r| r.replicas.unwrap_or(1) as u64);
        let svc = observed
            .services
            .iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name.as_str()));
        let running = svc
            .map(|s| running_of(observed, s.id.as_deref().unwrap_or_default()))
            .unwrap_or(0);
        push("service", name, Some((wanted.unwrap_or(running.max(1)), running)));
    }
    out
}

/// Adds the labels the auto-label rules ask for (never removing any),
/// version-checked. Returns whether any node was changed.
async fn label_nodes(ctx: &Context, observed: &Observed) -> Result<bool, EngineError> {
    let changes = nodes::label_changes(&ctx.settings.auto_label, &observed.nodes);
    let mut changed = false;
    for c in changes {
        for (k, theirs, ours) in &c.kept {
            tracing::warn!(node = %c.hostname, label = %k, set = %theirs, rule = %ours, "node label set by hand differs from the auto-label rule; kept");
        }
        if c.add.is_empty() {
            continue;
        }
        let Some(node) = observed
            .nodes
            .iter()
            .find(|n| n.id.as_deref() == Some(c.node_id.as_str()))
        else {
            continue;
        };
        let mut spec: NodeSpec = node.spec.clone().unwrap_or_default();
        let labels = spec.labels.get_or_insert_with(Default::default);
        for (k, v) in &c.add {
            labels.insert(k.clone(), v.clone());
        }
        let version = i64::try_from(c.version).unwrap_or(i64::MAX);
        ctx.engine.count_write("node_update");
        ctx.engine
            .docker
            .update_node(&c.node_id, spec, UpdateNodeOptions { version })
            .await
            .map_err(|e| ctx.engine.err("label node", &c.hostname, e))?;
        let added: Vec<String> = c.add.iter().map(|(k, v)| format!("{k}={v}")).collect();
        tracing::info!(node = %c.hostname, labels = %added.join(","), "labelled node");
        ctx.update_status(|st| {
            st.event(
                now(),
                "node",
                format!("labelled {} with {}", c.hostname, added.join(",")),
            )
        });
        changed = true;
    }
    Ok(changed)
}
