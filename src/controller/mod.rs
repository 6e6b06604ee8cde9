//! The controller: `swarmlog run`. This module only schedules: triggers
//! (events, resync, files, manual) are batched, one reconcile runs at a
//! time ([`reconcile`] is the driver of its steps), and [`reconcile::error_policy`]
//! decides when a failed one runs again.

pub mod certificates;
pub mod companion;
pub mod es;
pub mod leader;
pub mod nodes;
pub mod preflight;
pub mod reconcile;
pub mod retention;
pub mod security;
pub mod shipping;
pub mod triggers;
pub mod watch;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::now;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::plan::PlanOptions;
use crate::render::desired::DesiredState;
use crate::status::{Role, Status};
use nodes::LabelRule;
use reconcile::{Done, Memory, Policy, ReconcileError};
use triggers::{Backoff, Trigger};

/// Settings of `swarmlog run`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Chart, values, `--set`, `--stack`.
    pub render: crate::render::Inputs,
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
    /// Longest one reconcile may take before it is cancelled.
    pub reconcile_timeout: Duration,
    pub preflight: PreflightSettings,
    pub es: EsSettings,
}

/// How the operator reaches Elasticsearch.
#[derive(Debug, Clone)]
pub struct EsSettings {
    /// Addresses given by the user; empty: its services' names.
    pub urls: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for EsSettings {
    fn default() -> Self {
        EsSettings {
            urls: Vec::new(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    }
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
    /// Progress of the loop, for `/healthz`.
    pub liveness: Arc<crate::status::liveness::Liveness>,
    /// Send a trigger (the HTTP API's `POST /reconcile` uses it).
    pub trigger: mpsc::Sender<Trigger>,
    /// The stack name of the last good render.
    stack: RwLock<String>,
    /// Names outside the stack's prefix whose events matter (external
    /// networks, configs and secrets, files named outside the prefix).
    watched: RwLock<Vec<String>>,
    /// Every service event matters (the companion and opt-ins can be anywhere).
    all_services: std::sync::atomic::AtomicBool,
    /// The files the last good render read, watched for edits.
    rendered_from: triggers::RenderedFrom,
    /// The engine's time (ns) up to which a finished observe has seen every
    /// change an event could announce (0: none yet).
    covered: std::sync::atomic::AtomicI64,
    /// When a relevant event last came that an observe had already read
    /// (dropped): the engine is busy, which the batching must know.
    covered_seen: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// What swarmlog last wrote per service (updates that do not stick are held).
    pub(crate) convergence: std::sync::Mutex<crate::plan::converge::Memory>,
    /// Elasticsearch as the poller reads it, and where it reads.
    pub es: es::Shared,
    /// The networks of the operator's own container (none: not in one),
    /// asked once: Elasticsearch is read by name only over one of them.
    own_networks: tokio::sync::OnceCell<Option<Vec<String>>>,
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
        liveness: Arc<crate::status::liveness::Liveness>,
    ) -> Context {
        let stack = settings.render.stack.clone().unwrap_or_else(|| "logging".to_string());
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
            liveness,
            trigger,
            stack: RwLock::new(stack),
            watched: RwLock::new(Vec::new()),
            all_services: std::sync::atomic::AtomicBool::new(true),
            rendered_from: Default::default(),
            covered: std::sync::atomic::AtomicI64::new(0),
            covered_seen: std::sync::Mutex::new(None),
            convergence: std::sync::Mutex::new(Default::default()),
            es: Default::default(),
            own_networks: tokio::sync::OnceCell::new(),
        }
    }

    /// The networks of the operator's own container, asked of the engine once.
    pub async fn own_networks(&self) -> Option<Vec<String>> {
        self.own_networks
            .get_or_init(|| self.engine.own_networks())
            .await
            .clone()
    }

    pub fn stack(&self) -> String {
        self.stack.read().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn watches_all_services(&self) -> bool {
        self.all_services.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An observe began at engine time `nanos` and read everything an event
    /// could concern.
    pub fn events_covered_until(&self, nanos: i64) {
        self.covered.fetch_max(nanos, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether an event at engine time `nanos` is older than what an
    /// observe has already seen (a replay after a renewal, or an event that
    /// arrived after the reconcile that read its change).
    pub fn event_covered(&self, nanos: i64) -> bool {
        nanos < self.covered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A relevant event came that an observe had already read (dropped).
    pub fn covered_event_seen(&self) {
        if let Ok(mut t) = self.covered_seen.lock() {
            *t = Some(tokio::time::Instant::now());
        }
    }

    /// When a relevant event last came that was dropped as already read.
    pub fn last_covered_event(&self) -> Option<tokio::time::Instant> {
        self.covered_seen.lock().ok().and_then(|t| *t)
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
        self.update_status(|s| s.engine_unavailable(now(), msg));
    }

    pub fn note_reconnect(&self) {
        self.metrics.event_stream_reconnects.inc();
        self.update_status(|s| {
            s.engine.event_stream_reconnects += 1;
            s.event(now(), "engine", "event stream reconnected");
        });
    }

    /// Renders the desired state from the settings (the same entry point as
    /// the CLI's). A running operator also refuses an empty values file, and,
    /// against the desired state in force, another stack name or a service
    /// with a volume gone ([`crate::render::continuity`]).
    fn render(&self, in_force: Option<&DesiredState>) -> Result<DesiredState, Vec<String>> {
        self.render_with(in_force, &[], &[])
    }

    /// [`Self::render`], the credentials at the generations the swarm's
    /// secrets record, and the certificates its configs hold reused.
    fn render_with(
        &self,
        in_force: Option<&DesiredState>,
        secrets: &[bollard::models::Secret],
        configs: &[bollard::models::Config],
    ) -> Result<DesiredState, Vec<String>> {
        let empty = crate::render::empty_values_files(&self.settings.render);
        if !empty.is_empty() {
            return Err(empty);
        }
        let mut inputs = self.settings.render.clone();
        inputs.generations = crate::security::generations_by_stack(secrets);
        inputs.certificates = crate::tls::Existing::from_configs(configs);
        let d = crate::render::render(&inputs, &crate::render::process_env)
            .map(|r| {
                self.note_rendered_from(&r);
                r.desired
            })
            .map_err(|p| p.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        match in_force.map(|f| crate::render::continuity(f, &d)) {
            Some(problems) if !problems.is_empty() => Err(problems),
            _ => Ok(d),
        }
    }

    /// The files this render read, as they are now. One that no longer
    /// holds what the render read (edited in between) is recorded as never
    /// seen, so the watcher triggers a render of the new content.
    fn note_rendered_from(&self, r: &crate::render::chart::Rendered) {
        let files = r
            .file_paths
            .iter()
            .map(|(written, path)| {
                let stat = triggers::stat(path);
                let read = r.files.iter().find(|(w, _)| w == written).map(|(_, d)| d);
                let same = read.is_some_and(|d| std::fs::read(path).is_ok_and(|now| &now == d));
                (path.clone(), if same { stat } else { triggers::UNSEEN })
            })
            .collect();
        if let Ok(mut w) = self.rendered_from.write() {
            *w = files;
        }
    }

    /// A new desired state is in force: what to watch follows it.
    fn desired_changed(&self, d: &DesiredState) {
        self.update_status(|st| st.stack = d.stack.clone());
        if let Ok(mut w) = self.stack.write() {
            *w = d.stack.clone();
        }
        if let Ok(mut w) = self.watched.write() {
            // External networks, and every name a scoped observe reads
            // outside the prefix: an event for them must reach the loop
            // (the hot path reads a kind again only when an event names it).
            let mut names = d.external.networks.clone();
            names.extend(crate::engine::Scope::of(d).names);
            *w = names;
        }
        self.all_services
            .store(d.letsencrypt.enabled, std::sync::atomic::Ordering::Relaxed);
    }

    /// Files whose change should trigger a reconcile.
    fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = self.settings.render.values.clone();
        files.extend(self.settings.render.chart.clone());
        files
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// When the loop looks again on its own.
#[derive(Default)]
struct Timers {
    retry_at: Option<tokio::time::Instant>,
    recheck_at: Option<tokio::time::Instant>,
    /// A standby's next leadership check.
    leader_check_at: Option<tokio::time::Instant>,
}

impl Timers {
    /// A reconcile ran to its end and asked to look again after `after`
    /// (or not at all): it saw everything, so an earlier reconcile's
    /// pending recheck is superseded, not kept.
    fn recheck(&mut self, after: Option<Duration>) {
        self.recheck_at = after.map(|a| tokio::time::Instant::now() + a);
    }
}

/// Runs the controller until `shutdown`; returns when the last reconcile is done.
pub async fn run(ctx: Arc<Context>, mut rx: mpsc::Receiver<Trigger>, shutdown: CancellationToken) {
    let s = &ctx.settings;
    tokio::spawn(watch::watch_events(ctx.clone(), ctx.trigger.clone(), shutdown.clone()));
    tokio::spawn(es::watch(ctx.clone(), shutdown.clone()));
    tokio::spawn(triggers::resync_ticker(s.resync, ctx.trigger.clone(), shutdown.clone()));
    tokio::spawn(triggers::watch_files(
        ctx.watched_files(),
        ctx.rendered_from.clone(),
        s.watch_interval,
        ctx.trigger.clone(),
        shutdown.clone(),
    ));
    let _ = ctx.trigger.send(Trigger::Startup).await;
    ctx.liveness.loop_started(Instant::now());

    let mut memory = Memory::default();
    let mut retry = Backoff::new(s.retry_min, s.retry_max);
    let mut timers = Timers::default();
    // When the last reconcile finished (the leading edge needs quiet since).
    let mut last_done = tokio::time::Instant::now();
    let busy = || ctx.last_covered_event();
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => break,
            b = triggers::next_batch(&mut rx, s.debounce, s.debounce_max, last_done, &busy) => match b {
                Some(b) => b,
                None => break,
            },
            _ = sleep_until(timers.retry_at) => {
                timers.retry_at = None;
                vec![Trigger::Retry]
            }
            _ = sleep_until(timers.recheck_at) => {
                timers.recheck_at = None;
                vec![Trigger::Recheck]
            }
            _ = sleep_until(timers.leader_check_at) => {
                timers.leader_check_at = None;
                // A hung engine holds this call up to its deadline: a
                // shutdown does not wait for it.
                let standby = tokio::select! {
                    s = still_standby(&ctx) => s,
                    _ = shutdown.cancelled() => break,
                };
                if standby {
                    timers.leader_check_at = Some(tokio::time::Instant::now() + reconcile::STANDBY_POLL);
                    continue;
                }
                vec![Trigger::Leadership]
            }
        };
        let started = Instant::now();
        ctx.liveness.reconcile_started(started);
        let described = triggers::describe(&batch);
        let span = tracing::info_span!("reconcile", trigger = %described);
        let _enter = span.enter();
        ctx.update_status(|st| {
            st.reconcile.last_trigger = Some(described.clone());
            st.reconcile.last_trigger_kind = Some(batch.first().map(Trigger::kind).unwrap_or("manual").to_string());
            st.reconcile.started_at = Some(now());
        });
        memory.outside = triggers::outside_stack(&batch, &ctx.stack());
        // Let a reconcile that is under way finish, within the shutdown deadline.
        let work = reconcile::reconcile(&ctx, &mut memory);
        tokio::pin!(work);
        let result = tokio::select! {
            r = &mut work => r,
            _ = shutdown.cancelled() => match tokio::time::timeout(s.shutdown_timeout, &mut work).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("shutdown deadline passed during a reconcile; stopping it");
                    break;
                }
            },
        };
        let elapsed = started.elapsed();
        ctx.liveness.reconcile_ended(Instant::now(), cut_short(&result));
        last_done = tokio::time::Instant::now();
        record(&ctx, &batch, &result, elapsed);
        schedule(&result, &mut retry, &mut timers, elapsed);
        if shutdown.is_cancelled() {
            break;
        }
    }
    tracing::info!("controller stopped");
}

/// A standby between full looks: whether this node is still not the
/// leader, by one small call. An error or an unknown node id says "look":
/// the full reconcile reports what is wrong.
async fn still_standby(ctx: &Context) -> bool {
    let id = ctx.snapshot().map(|s| s.node_id).unwrap_or_default();
    if id.is_empty() {
        return false;
    }
    match ctx.engine.node_is_leader(&id).await {
        Ok(leader) => !leader,
        Err(e) => {
            tracing::debug!(error = %e, "leadership check failed; observing");
            false
        }
    }
}

/// Why a reconcile was cut short by a deadline (its own, or an engine
/// call's): no progress, for `/healthz`.
fn cut_short(result: &Result<Done, ReconcileError>) -> Option<String> {
    match result {
        Err(e @ ReconcileError::Overran(_)) => Some(e.to_string()),
        Err(ReconcileError::Engine(e @ crate::engine::EngineError::Timeout { .. })) => Some(e.to_string()),
        _ => None,
    }
}

/// The outcome label of a reconcile.
fn label(result: &Result<Done, ReconcileError>) -> &'static str {
    match result {
        Ok(d) => d.label(),
        Err(e) => e.label(),
    }
}

/// When to look again after a reconcile, and the log line that says how it went.
fn schedule(result: &Result<Done, ReconcileError>, retry: &mut Backoff, timers: &mut Timers, elapsed: Duration) {
    let elapsed_ms = elapsed.as_millis() as u64;
    // Leadership checks are a standby's; whatever this reconcile found sets them again.
    timers.leader_check_at = None;
    match result {
        Ok(Done::Applied { written, recheck }) => {
            retry.reset();
            timers.recheck(*recheck);
            for w in written {
                tracing::info!("{w}");
            }
            tracing::info!(outcome = label(result), elapsed_ms, "reconciled");
        }
        // Leadership changes raise no event here: look again soon, so a new
        // leader's operator takes over right after the election.
        Ok(Done::Standby) => {
            retry.reset();
            timers.leader_check_at = Some(tokio::time::Instant::now() + reconcile::STANDBY_POLL);
            tracing::debug!(elapsed_ms, "standby");
        }
        Err(e) => match reconcile::error_policy(e) {
            Policy::Backoff => {
                let delay = retry.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "reconcile failed");
                timers.retry_at = Some(tokio::time::Instant::now() + delay);
            }
            Policy::WaitForChange => {
                retry.reset();
                tracing::info!(outcome = label(result), elapsed_ms, error = %e, "reconciled");
            }
            Policy::Poll(after) => {
                retry.reset();
                timers.leader_check_at = Some(tokio::time::Instant::now() + after);
                tracing::debug!(elapsed_ms, "standby");
            }
        },
    }
}

/// The reconcile's figures into the status and the metrics.
fn record(ctx: &Context, batch: &[Trigger], result: &Result<Done, ReconcileError>, elapsed: Duration) {
    let outcome = label(result);
    let writes = ctx.engine.writes();
    let failed = matches!(
        result,
        Err(ReconcileError::Engine(_) | ReconcileError::Apply(_) | ReconcileError::Overran(_))
    );
    ctx.update_status(|st| {
        st.reconcile.count += 1;
        st.reconcile.duration_ms = Some(elapsed.as_millis() as u64);
        st.reconcile.outcome = Some(outcome.to_string());
        st.reconcile.next_resync =
            Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now() + ctx.settings.resync).to_string());
        st.reconcile.writes = writes.iter().map(|(k, v)| (k.as_str().to_string(), *v)).collect();
        if failed {
            st.reconcile.consecutive_failures += 1;
        } else {
            st.reconcile.consecutive_failures = 0;
        }
    });
    let category = result.as_ref().err().filter(|_| failed).map(ReconcileError::category);
    ctx.metrics
        .record_reconcile(batch.iter().map(Trigger::kind), outcome, category, elapsed, &writes);
    if let Some(st) = ctx.snapshot() {
        ctx.metrics.observe_status(&st);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_reconcile_decides_whether_to_look_again() {
        let mut timers = Timers::default();
        let mut retry = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let applied = |recheck| {
            Ok(Done::Applied {
                written: Vec::new(),
                recheck,
            })
        };
        schedule(
            &applied(Some(Duration::from_secs(2))),
            &mut retry,
            &mut timers,
            Duration::ZERO,
        );
        assert!(timers.recheck_at.is_some(), "tasks starting: look again");
        // A later reconcile found everything in place: the pending recheck
        // is not run (it would look at nothing new, and wake a stray reconcile).
        schedule(&applied(None), &mut retry, &mut timers, Duration::ZERO);
        assert!(timers.recheck_at.is_none());
        // A failed reconcile keeps what was asked before.
        schedule(
            &applied(Some(Duration::from_secs(2))),
            &mut retry,
            &mut timers,
            Duration::ZERO,
        );
        let failed: Result<Done, ReconcileError> = Err(ReconcileError::Invalid(Vec::new()));
        schedule(&failed, &mut retry, &mut timers, Duration::ZERO);
        assert!(timers.recheck_at.is_some());
    }
}
