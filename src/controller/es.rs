//! Elasticsearch in the controller: a poller reads the cluster's health in
//! the background (a reconcile never waits for Elasticsearch to answer) and
//! asks for a reconcile when what it read changes; the reconcile's step
//! expands a cluster topology into its members, decides the rolling change
//! (leader only), makes the calls the roll needs, and reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

use super::triggers::Trigger;
use super::Context;
use crate::clock::now;
use crate::engine::Observed;
use crate::es::client::{Client, ALLOCATION_ENABLE};
use crate::es::security::{Credentials, SecurityRead, ELASTIC};
use crate::es::{Color, Snapshot};
use crate::plan::cluster::{self, Cluster, Topology};
use crate::plan::roll::{self, EsCall};
use crate::plan::PlanOptions;
use crate::render::desired::{DesiredState, LABEL_SPEC_HASH};
use crate::status::{ElasticsearchStatus, EsNode, EsState, Role};

/// Elasticsearch's HTTP port on its services.
pub const HTTP_PORT: u16 = 9200;
/// How often the poller reads while a roll is under way.
const ROLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Where to read, as the last reconcile decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    /// Addresses of the cluster, tried in order.
    pub bases: Vec<String>,
    /// Members not in the cluster at the last read, and their own address:
    /// each is asked which cluster it belongs to.
    pub unjoined: Vec<(String, String)>,
}

/// What the poller read last.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    pub snapshot: Option<Snapshot>,
    /// Why there is no snapshot.
    pub error: Option<(EsState, String)>,
    pub at: Option<String>,
    /// When it was read (a read older than a few intervals is not used).
    pub read_at: Option<std::time::Instant>,
    /// The cluster UUID each unjoined member reports (`Ok(None)`: none yet).
    pub roots: BTreeMap<String, Result<Option<String>, String>>,
    /// The users swarmlog keeps, with security on.
    pub security: Option<SecurityRead>,
}

impl View {
    /// What a reconcile acts on: a change of it asks for one (disk use and
    /// the like do not).
    fn key(&self) -> String {
        match &self.snapshot {
            Some(s) => {
                format!(
                    "{}|{}|{:?}|{}|{:?}|{:?}|{:?}|{}|{:?}|{:?}|{:?}",
                    s.health.status.as_str(),
                    s.settled(),
                    s.cluster_uuid,
                    s.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(","),
                    s.allocation_enable,
                    s.exclude_name,
                    self.roots,
                    // A watermark crossed, an index blocked, the policy or the
                    // template changed (or gone): each is acted on or reported.
                    s.nodes
                        .iter()
                        .map(|n| n.disk_level(&s.watermarks).map_or("?", |l| l.as_str()))
                        .collect::<Vec<_>>()
                        .join(","),
                    s.read_only,
                    s.retention.policy,
                    s.retention.template,
                ) + &format!("|{:?}", self.security)
            }
            None => format!("{:?}", self.error.as_ref().map(|e| e.0)),
        }
    }
}

/// Shared by the reconcile and the poller.
#[derive(Default)]
pub struct Shared {
    targets: RwLock<Targets>,
    /// The passwords of the users swarmlog keeps (security on), from the
    /// desired state.
    auth: RwLock<Option<Credentials>>,
    /// The CA certificate swarmlog issued (security on): Elasticsearch is
    /// called over HTTPS, trusting it only.
    trust: RwLock<Option<String>>,
    /// The generation of `elastic`'s password that last logged in (0: none
    /// yet; the newest is tried first).
    elastic_generation: std::sync::atomic::AtomicU32,
    view: RwLock<View>,
    rolling: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Shared {
    pub fn view(&self) -> View {
        self.view.read().map(|v| v.clone()).unwrap_or_default()
    }

    /// A roll's call Elasticsearch acknowledged, into the last read.
    fn acknowledged(&self, call: EsCall) {
        if let Ok(mut v) = self.view.write() {
            if let Some(s) = v.snapshot.as_mut() {
                s.allocation_enable = match call {
                    EsCall::HoldReplicas => Some("primaries".to_string()),
                    EsCall::ReleaseReplicas => None,
                };
            }
        }
    }

    /// The retention policy (`policy`) or template swarmlog wrote, into the
    /// last read as Elasticsearch would answer for it.
    pub(super) fn written(&self, policy: bool, body: serde_json::Value) {
        use crate::es::retention::{POLICY, TEMPLATE};
        if let Ok(mut v) = self.view.write() {
            if let Some(s) = v.snapshot.as_mut() {
                if policy {
                    let mut held = serde_json::Map::new();
                    held.insert(POLICY.to_string(), body);
                    s.retention.policy = Ok(Some(serde_json::Value::Object(held)));
                } else {
                    s.retention.template = Ok(Some(serde_json::json!({
                        "index_templates": [{"name": TEMPLATE, "index_template": body}]
                    })));
                }
            }
        }
    }

    fn set_targets(&self, t: Targets) {
        let none = t.bases.is_empty();
        let changed = match self.targets.write() {
            Ok(mut w) if *w != t => {
                *w = t;
                true
            }
            _ => false,
        };
        if changed {
            // Nothing is read any more: no read from before may stand.
            if none {
                if let Ok(mut v) = self.view.write() {
                    *v = View::default();
                }
            }
            self.wake.notify_one();
        }
    }

    fn targets(&self) -> Targets {
        self.targets.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// The passwords the desired state gives (`None`: security off).
    fn set_auth(&self, c: Option<Credentials>) {
        let changed = match self.auth.write() {
            Ok(mut w) if *w != c => {
                *w = c;
                true
            }
            _ => false,
        };
        if changed {
            self.wake.notify_one();
        }
    }

    pub(super) fn auth(&self) -> Option<Credentials> {
        self.auth.read().ok().and_then(|a| a.clone())
    }

    fn set_trust(&self, ca: Option<String>) {
        let changed = match self.trust.write() {
            Ok(mut w) if *w != ca => {
                *w = ca;
                true
            }
            _ => false,
        };
        if changed {
            self.wake.notify_one();
        }
    }

    /// A client with no user, trusting swarmlog's CA (security on).
    pub(super) fn bare_client(&self, timeout: std::time::Duration) -> Client {
        let trust = self.trust.read().ok().and_then(|t| t.clone());
        Client::trusting(timeout, trust.as_deref())
    }

    /// The generation of `elastic`'s password in force (0: not known).
    pub(super) fn elastic_generation(&self) -> u32 {
        self.elastic_generation.load(Ordering::Relaxed)
    }

    pub(super) fn set_elastic_generation(&self, g: u32) {
        self.elastic_generation.store(g, Ordering::Relaxed);
    }

    /// A client calling as `elastic` (with the password in force, else the
    /// newest) when security is on.
    pub(super) fn client(&self, timeout: std::time::Duration) -> Client {
        let c = self.bare_client(timeout);
        match self.auth() {
            Some(creds) => {
                let g = self.elastic_generation() as usize;
                let password = match g {
                    0 => creds.elastic(),
                    g => creds.elastic.get(g - 1).map_or(creds.elastic(), String::as_str),
                };
                c.as_user(ELASTIC, password)
            }
            None => c,
        }
    }

    /// A user swarmlog wrote, into the last read as it now stands.
    pub(super) fn security_written(&self, f: impl FnOnce(&mut SecurityRead)) {
        if let Ok(mut v) = self.view.write() {
            if let Some(r) = v.security.as_mut() {
                f(r);
            }
        }
    }
}

/// The poller: reads the cluster every interval (every second during a
/// roll), until shutdown.
pub async fn watch(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut last_key: Option<String> = None;
    loop {
        let targets = ctx.es.targets();
        if !targets.bases.is_empty() {
            let mut client = ctx.es.client(ctx.settings.es.timeout);
            let mut view = read(&client, &targets).await;
            if let Some(creds) = ctx.es.auth() {
                // elastic refused: which of its passwords is in force (a
                // rotation under way, or a restart before it was recorded).
                let refused = view.error.as_ref().is_some_and(|e| e.1.contains("HTTP 401"));
                if refused || ctx.es.elastic_generation() == 0 {
                    if let Some(base) = targets.bases.first() {
                        let bare = ctx.es.bare_client(ctx.settings.es.timeout);
                        if let Ok(Some(g)) = crate::es::security::elastic_generation(&bare, base, &creds).await {
                            let known = ctx.es.elastic_generation();
                            ctx.es.set_elastic_generation(g);
                            if refused && known != g {
                                client = ctx.es.client(ctx.settings.es.timeout);
                                view = read(&client, &targets).await;
                            }
                        }
                    }
                }
                if let Some(s) = view.snapshot.as_ref() {
                    let g = Some(ctx.es.elastic_generation()).filter(|g| *g > 0);
                    view.security = Some(crate::es::security::read(&client, &s.endpoint, &creds, g).await);
                }
            }
            let key = view.key();
            if let Ok(mut w) = ctx.es.view.write() {
                *w = view;
            }
            if last_key.as_ref() != Some(&key) {
                tracing::debug!(read = %key, "elasticsearch read changed");
                last_key = Some(key);
                let _ = ctx.trigger.try_send(Trigger::Elasticsearch);
            }
        }
        let every = if ctx.es.rolling.load(Ordering::Relaxed) {
            ROLL_INTERVAL.min(ctx.settings.es.interval)
        } else {
            ctx.settings.es.interval
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            _ = ctx.es.wake.notified() => {}
        }
    }
}

async fn read(client: &Client, targets: &Targets) -> View {
    let mut view = View {
        at: Some(now()),
        read_at: Some(std::time::Instant::now()),
        ..Default::default()
    };
    match client.read_any(&targets.bases).await {
        Ok(s) => {
            for (name, base) in &targets.unjoined {
                if s.node(name).is_none() {
                    let r = client.root(base).await.map(|(_, uuid)| uuid).map_err(|e| e.to_string());
                    view.roots.insert(name.clone(), r);
                }
            }
            view.snapshot = Some(s);
        }
        Err(errors) => {
            let no_master = errors
                .iter()
                .any(|e| e.to_string().contains("master_not_discovered_exception"));
            let state = if no_master {
                EsState::NoMaster
            } else {
                EsState::Unreachable
            };
            let text = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            view.error = Some((state, text));
        }
    }
    view
}

/// The CA certificate of the desired state (a chart that mounts swarmlog's
/// certificates): Elasticsearch serves HTTPS with a certificate it signed.
fn trusted_ca(desired: &DesiredState) -> Option<String> {
    use base64::Engine as _;
    desired
        .tls_config(crate::tls::CA)
        .and_then(|c| c.spec.data.as_deref())
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .and_then(|d| String::from_utf8(d).ok())
        .filter(|pem| !pem.is_empty())
}

/// What the reconcile takes from this step.
pub struct Outcome {
    /// The desired state with a cluster expanded and the roll's decision in.
    pub desired: DesiredState,
    /// What makes the phase Degraded.
    pub problems: Vec<String>,
}

/// The Elasticsearch step of a reconcile.
pub async fn step(ctx: &Context, role: Role, desired: DesiredState, observed: &Observed, opts: PlanOptions) -> Outcome {
    ctx.es.set_auth(desired.credentials.clone());
    let ca = trusted_ca(&desired);
    let scheme = if ca.is_some() { "https" } else { "http" };
    ctx.es.set_trust(ca);
    let Some((template, topology)) = cluster::elasticsearch(&desired) else {
        ctx.es.set_targets(Targets::default());
        ctx.update_status(|st| st.elasticsearch = ElasticsearchStatus::default());
        return Outcome {
            desired,
            problems: Vec::new(),
        };
    };
    let template_name = template.spec.name.clone().unwrap_or_default();
    let retention_label = template
        .spec
        .labels
        .as_ref()
        .and_then(|l| l.get(super::retention::LABEL_RETENTION))
        .cloned();
    let own = if ctx.settings.es.urls.is_empty() {
        ctx.own_networks().await
    } else {
        None
    };
    let hint = no_path_hint(&desired, &template_name, &ctx.settings.es.urls, own.as_deref());
    let view = match ctx.es.view() {
        // Not read over a path the operator has, or too long ago: no read.
        _ if hint.is_some() => View::default(),
        v if v.read_at.is_some_and(|t| t.elapsed() > stale_after(&ctx.settings.es)) => View {
            error: Some((
                EsState::Unreachable,
                format!(
                    "the last read of Elasticsearch is {} s old",
                    v.read_at.map_or(0, |t| t.elapsed().as_secs())
                ),
            )),
            at: v.at,
            ..Default::default()
        },
        v => v,
    };
    let base = |name: &str| format!("{scheme}://{name}:{HTTP_PORT}");
    let mut status = ElasticsearchStatus {
        topology: Some(match topology {
            Topology::Single => "single".into(),
            Topology::Cluster => "cluster".into(),
        }),
        ..Default::default()
    };
    fill_from_view(&mut status, &view, hint.as_deref());
    // The members a rolling change holds for their turn (this reconcile's
    // decision; none on a standby or while the preflight holds them all).
    let mut roll_held: Vec<String> = Vec::new();
    let (desired, problems) = match topology {
        Topology::Single => {
            let bases = if ctx.settings.es.urls.is_empty() {
                vec![base(&template_name)]
            } else {
                ctx.settings.es.urls.clone()
            };
            status.endpoints = bases.clone();
            ctx.es.set_targets(reachable(
                Targets {
                    bases,
                    unjoined: Vec::new(),
                },
                &hint,
            ));
            let running = observed
                .services
                .iter()
                .any(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(template_name.as_str()));
            status.nodes_expected = usize::from(running);
            status.nodes_joined = view.snapshot.as_ref().map_or(0, |s| s.nodes.len().min(1));
            status.nodes = view
                .snapshot
                .iter()
                .flat_map(|s| s.nodes.iter())
                .map(|n| node_row(n.name.clone(), String::new(), true, Some(n)))
                .collect();
            let problems = red(&view).into_iter().collect();
            (desired, problems)
        }
        Topology::Cluster => {
            let uuid = view.snapshot.as_ref().and_then(|s| s.cluster_uuid.clone());
            let Some(c) = cluster::cluster(&desired, observed) else {
                return Outcome {
                    desired,
                    problems: Vec::new(),
                };
            };
            let mut expanded = cluster::expand(&desired, observed, uuid.as_deref());
            // The preflight holds Elasticsearch: every member waits with it.
            let preflight_hold = desired.held.get(&template_name).cloned();
            let existing: Vec<&cluster::Member> = c.members.iter().filter(|m| m.exists).collect();
            let bases = if ctx.settings.es.urls.is_empty() {
                existing.iter().map(|m| base(&m.name)).collect()
            } else {
                ctx.settings.es.urls.clone()
            };
            status.endpoints = bases.clone();
            // Asked by name on the overlay; with --es-url only the given
            // addresses are contacted.
            let unjoined = existing
                .iter()
                .filter(|_| ctx.settings.es.urls.is_empty())
                .filter(|m| view.snapshot.as_ref().is_some_and(|s| s.node(&m.name).is_none()))
                .map(|m| (m.name.clone(), base(&m.name)))
                .collect();
            ctx.es.set_targets(reachable(Targets { bases, unjoined }, &hint));
            let mut problems = members_status(&mut status, &c, &view, observed);
            problems.extend(red(&view));
            if let Some(why) = preflight_hold {
                for m in &c.members {
                    expanded.held.insert(m.name.clone(), why.clone());
                }
            } else if role.writes() {
                let snap = view.snapshot.as_ref().ok_or_else(|| {
                    view.error
                        .as_ref()
                        .map(|e| e.1.clone())
                        .unwrap_or_else(|| "not read yet".into())
                });
                let p0 = crate::plan::plan(&expanded, observed, opts);
                // A node being decommissioned is not rolled: it is leaving.
                let leaving: Vec<String> = c
                    .members
                    .iter()
                    .filter(|m| m.exists && m.decommission)
                    .map(|m| m.name.clone())
                    .collect();
                let mut pending = roll::restarting_updates(&p0, &c);
                pending.retain(|p| !leaving.contains(p));
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mut decision = roll::decide(
                    &c,
                    &expanded,
                    observed,
                    &pending,
                    snap.as_ref().map(|s| *s).map_err(String::as_str),
                    now,
                );
                // Replicas are held only for a restart apply will write: a
                // plan refused as a whole (a blocker, a conflict) writes
                // nothing, and the setting would stay.
                if decision.call == Some(EsCall::HoldReplicas) {
                    let mut tentative = expanded.clone();
                    apply_decision(&mut tentative, &decision);
                    let refusals = crate::plan::plan(&tentative, observed, opts).refusals();
                    if !refusals.is_empty() {
                        let why = format!(
                            "the plan is refused ({}): no node is taken out",
                            refusals.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
                        );
                        for name in &pending {
                            decision.specs.remove(name);
                            decision.held.insert(name.clone(), why.clone());
                        }
                        decision.call = None;
                        if let Some(r) = decision.status.as_mut() {
                            r.waiting_for = Some(why);
                        }
                    }
                }
                if let (Some(call), Ok(s)) = (decision.call, &snap) {
                    let result = es_call(ctx, &s.endpoint, call).await;
                    if result.is_ok() {
                        // Acknowledged: the view says so until the next read,
                        // so the next reconcile does not make the call again.
                        ctx.es.acknowledged(call);
                    }
                    if let Err(e) = result {
                        let why = format!("the rolling change's call to Elasticsearch failed: {e}");
                        tracing::warn!("{why}");
                        // Nothing restarts on a call that did not happen.
                        if call == EsCall::HoldReplicas {
                            for name in &pending {
                                decision.specs.remove(name);
                                decision.held.insert(name.clone(), why.clone());
                            }
                        }
                        if let Some(r) = decision.status.as_mut() {
                            r.waiting_for = Some(why);
                        }
                    }
                }
                ctx.es.rolling.store(decision.status.is_some(), Ordering::Relaxed);
                roll_held = decision.held.keys().cloned().collect();
                apply_decision(&mut expanded, &decision);
                status.roll = decision.status.clone();
                match &snap {
                    Ok(s) => decommission(ctx, &c, s, &mut expanded, &mut status).await,
                    // Leaving, and nothing can be checked: they wait as they are.
                    Err(why) => {
                        for name in &leaving {
                            expanded.held.insert(
                                name.clone(),
                                format!("decommissioning waits: Elasticsearch's health cannot be read ({why})"),
                            );
                        }
                    }
                }
            }
            (expanded, problems)
        }
    };
    let mut problems = problems;
    // Cluster members' rows have their host; the single node's name is its
    // container's, and its host is where the service's task runs.
    let host_of = |name: &str| service_host(observed, name).or_else(|| service_host(observed, &template_name));
    problems.extend(super::retention::disk(&mut status, view.snapshot.as_ref(), &host_of));
    problems.extend(
        super::retention::step(
            ctx,
            role,
            retention_label.as_deref(),
            view.snapshot.as_ref(),
            &mut status,
        )
        .await,
    );
    let mut desired = desired;
    problems.extend(
        super::security::step(
            ctx,
            role,
            super::security::Seen {
                endpoint: view.snapshot.as_ref().map(|s| s.endpoint.as_str()),
                read: view.security.as_ref(),
                no_path: hint.as_deref(),
                observed,
                roll_held: &roll_held,
            },
            &mut desired,
            &mut status.security,
        )
        .await,
    );
    status.problems = problems.clone();
    ctx.update_status(|st| {
        for p in &problems {
            if !st.elasticsearch.problems.contains(p) {
                st.event(now(), "elasticsearch", p.clone());
            }
        }
        if st.elasticsearch.health != status.health {
            if let Some(h) = status.health {
                st.event(now(), "elasticsearch", format!("cluster health is {}", h.as_str()));
            }
        }
        st.elasticsearch = status;
    });
    Outcome { desired, problems }
}

/// How old a read may be and still count: a few polls.
fn stale_after(s: &super::EsSettings) -> std::time::Duration {
    (s.interval * 3 + s.timeout * 2).max(std::time::Duration::from_secs(30))
}

/// Why the operator cannot reach Elasticsearch: no address given, and no
/// network that both its own container (`own`; none: not in a container)
/// and Elasticsearch are on. Names are only ever resolved on such a network.
fn no_path_hint(desired: &DesiredState, template: &str, urls: &[String], own: Option<&[String]>) -> Option<String> {
    if !urls.is_empty() {
        return None;
    }
    let Some(own) = own else {
        return Some(
            "the operator does not run in a container on a network with Elasticsearch (deploy it with manifests/operator.yml and set elasticsearch.operatorNetwork), and no --es-url is given".to_string(),
        );
    };
    let es = desired
        .services
        .iter()
        .find(|s| s.spec.name.as_deref() == Some(template))?;
    let nets: Vec<String> = es
        .spec
        .task_template
        .as_ref()?
        .networks
        .iter()
        .flatten()
        .filter_map(|n| n.target.clone())
        .collect();
    let shared = nets.iter().any(|n| own.contains(n));
    (!shared).then(|| {
        format!(
            "Elasticsearch is on no network the operator's container joins ({}): set elasticsearch.operatorNetwork (manifests/operator.yml creates swarmlog_es), or --es-url",
            own.join(", ")
        )
    })
}

/// Where to read: nowhere without a network path (a name that only the
/// overlay's DNS knows would be asked of the host's resolver instead).
fn reachable(t: Targets, hint: &Option<String>) -> Targets {
    if hint.is_some() {
        Targets::default()
    } else {
        t
    }
}

fn fill_from_view(status: &mut ElasticsearchStatus, view: &View, hint: Option<&str>) {
    status.checked_at = view.at.clone();
    if let Some(h) = hint {
        status.state = EsState::NoPath;
        status.error = Some(h.to_string());
        return;
    }
    match (&view.snapshot, &view.error) {
        (Some(s), _) => {
            status.state = EsState::Ok;
            status.cluster_name = Some(s.cluster_name.clone());
            status.cluster_uuid = s.cluster_uuid.clone();
            status.health = Some(s.health.status);
            status.health_detail = Some(s.health_words());
            status.allocation_enable = s.allocation_enable.clone();
            status.master_eligible = s.nodes.iter().filter(|n| n.master_eligible).count();
        }
        (None, Some((state, e))) => {
            status.state = *state;
            status.error = Some(e.clone());
        }
        (None, None) => status.state = EsState::Pending,
    }
}

fn red(view: &View) -> Option<String> {
    let s = view.snapshot.as_ref()?;
    (s.health.status == Color::Red).then(|| format!("Elasticsearch cluster health is {}", s.health_words()))
}

fn node_row(name: String, hostname: String, created: bool, n: Option<&crate::es::Node>) -> EsNode {
    EsNode {
        name,
        hostname,
        created,
        joined: n.is_some(),
        master_eligible: n.is_some_and(|n| n.master_eligible),
        elected_master: n.is_some_and(|n| n.elected_master),
        version: n.map(|n| n.version.clone()),
        shards: n.and_then(|n| n.shards),
        disk_percent: n.and_then(|n| n.disk_percent),
        disk_used_bytes: n.and_then(|n| n.disk_used_bytes),
        disk_total_bytes: n.and_then(|n| n.disk_total_bytes),
        disk_level: None,
        problem: None,
    }
}

/// The members' rows, and the problems among them: a member whose task
/// runs but which is not in the cluster, or which belongs to another.
fn members_status(status: &mut ElasticsearchStatus, c: &Cluster, view: &View, observed: &Observed) -> Vec<String> {
    let mut problems = Vec::new();
    let snap = view.snapshot.as_ref();
    let recorded = c
        .recorded_uuid
        .clone()
        .or_else(|| snap.and_then(|s| s.cluster_uuid.clone()));
    for m in &c.members {
        let n = snap.and_then(|s| s.node(&m.name));
        let mut row = node_row(m.name.clone(), m.hostname.clone(), m.exists, n);
        row.master_eligible = m.master;
        if m.exists && n.is_none() && snap.is_some() {
            let running = running(observed, &m.name);
            row.problem = match view.roots.get(&m.name) {
                Some(Ok(Some(other))) if recorded.as_deref().is_some_and(|r| r != other) => Some(format!(
                    "{} holds the data of another cluster (UUID {other}, this one is {}): it does not join; its volume is kept as it is (see the README, \"A node of another cluster\")",
                    m.name,
                    recorded.as_deref().unwrap_or_default()
                )),
                _ if !m.node_available => Some(format!("{} waits for its node {} (not available)", m.name, m.hostname)),
                _ if running => Some(format!("{} runs but is not in the cluster", m.name)),
                _ => None,
            };
            if let Some(p) = &row.problem {
                problems.push(p.clone());
            }
        }
        if m.exists && !m.node_selected {
            let note = format!(
                "{} is no longer a logger node: {} stays (decommission it to move its shards away and remove it)",
                m.hostname, m.name
            );
            row.problem = Some(row.problem.map_or(note.clone(), |p| format!("{p}; {note}")));
        }
        status.nodes.push(row);
    }
    status.nodes_expected = c.members.iter().filter(|m| m.exists).count();
    status.nodes_joined = status.nodes.iter().filter(|n| n.created && n.joined).count();
    status.master_eligible = c.masters().len();
    status.survives = Some(c.survives());
    problems
}

/// The hostname of the node where a task of the service runs.
fn service_host(observed: &Observed, service: &str) -> Option<String> {
    let id = observed
        .services
        .iter()
        .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(service))
        .and_then(|s| s.id.as_deref())?;
    let node = observed
        .tasks
        .iter()
        .filter(|t| t.service_id.as_deref() == Some(id))
        .find(|t| t.status.as_ref().and_then(|s| s.state) == Some(bollard::models::TaskState::RUNNING))
        .and_then(|t| t.node_id.as_deref())?;
    observed
        .nodes
        .iter()
        .find(|n| n.id.as_deref() == Some(node))
        .and_then(|n| n.description.as_ref()?.hostname.clone())
}

/// A task of the service runs.
fn running(observed: &Observed, service: &str) -> bool {
    let Some(id) = observed
        .services
        .iter()
        .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(service))
        .and_then(|s| s.id.as_deref())
    else {
        return false;
    };
    crate::status::derive::running_tasks(observed, id) > 0
}

async fn es_call(ctx: &Context, base: &str, call: EsCall) -> Result<(), crate::es::client::EsError> {
    let client = ctx.es.client(ctx.settings.es.timeout);
    match call {
        EsCall::HoldReplicas => {
            client
                .put_persistent(base, ALLOCATION_ENABLE, Some("primaries"))
                .await?;
            tracing::info!("elasticsearch: {ALLOCATION_ENABLE}=primaries (rolling change)");
            // A flush that fails only makes the restart's recovery longer.
            if let Err(e) = client.flush(base).await {
                tracing::warn!(error = %e, "elasticsearch: flush before the restart failed");
            }
            Ok(())
        }
        EsCall::ReleaseReplicas => {
            client.put_persistent(base, ALLOCATION_ENABLE, None).await?;
            tracing::info!("elasticsearch: {ALLOCATION_ENABLE} reset (node rejoined)");
            Ok(())
        }
    }
}

/// `swarmlog es decommission`: each member whose node carries the label has
/// its name in `cluster.routing.allocation.exclude._name` (and, when
/// master-eligible, a voting exclusion) until it holds no shard; then its
/// service leaves the desired state (removed; its volume kept). Names of
/// this stack's members in the exclusion list that are not leaving are
/// taken out again (the decommission was cancelled, or is done); names
/// others put there are kept.
async fn decommission(
    ctx: &Context,
    c: &Cluster,
    snap: &Snapshot,
    desired: &mut DesiredState,
    status: &mut ElasticsearchStatus,
) {
    let client = ctx.es.client(ctx.settings.es.timeout);
    let prefix = format!(
        "{}_es_",
        c.template.strip_suffix("_elasticsearch").unwrap_or(&c.template)
    );
    let leaving: Vec<&cluster::Member> = c.members.iter().filter(|m| m.exists && m.decommission).collect();
    let excluded: Vec<String> = snap
        .exclude_name
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    let mut wanted: Vec<String> = excluded
        .iter()
        .filter(|n| !n.starts_with(&prefix) || leaving.iter().any(|m| &m.name == *n))
        .cloned()
        .collect();
    let dropped = excluded.iter().any(|n| !wanted.contains(n));
    for m in &leaving {
        if !wanted.contains(&m.name) {
            if m.master {
                if let Err(e) = client.exclude_from_voting(&snap.endpoint, &m.name).await {
                    tracing::warn!(node = %m.name, error = %e, "elasticsearch: voting exclusion failed");
                    continue;
                }
            }
            wanted.push(m.name.clone());
        }
    }
    if wanted != excluded {
        if dropped {
            // Their nodes have left or stay: the quorum counts as before.
            // Elasticsearch clears every exclusion at once: the masters still
            // leaving get theirs back at once.
            if let Err(e) = client.clear_voting_exclusions(&snap.endpoint).await {
                tracing::warn!(error = %e, "elasticsearch: clearing voting exclusions failed");
            }
            for m in leaving.iter().filter(|m| m.master) {
                if let Err(e) = client.exclude_from_voting(&snap.endpoint, &m.name).await {
                    tracing::warn!(node = %m.name, error = %e, "elasticsearch: voting exclusion failed");
                }
            }
        }
        let value = (!wanted.is_empty()).then(|| wanted.join(","));
        match client
            .put_persistent(&snap.endpoint, crate::es::client::EXCLUDE_NAME, value.as_deref())
            .await
        {
            Ok(()) => {
                tracing::info!(exclude = ?value, "elasticsearch: {}", crate::es::client::EXCLUDE_NAME);
                if let Ok(mut v) = ctx.es.view.write() {
                    if let Some(s) = v.snapshot.as_mut() {
                        s.exclude_name = value.clone();
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "elasticsearch: setting the allocation exclusion failed");
                return;
            }
        }
    }
    for m in leaving {
        let node = snap.node(&m.name);
        let ready = match node {
            Some(n) => n.shards == Some(0) && wanted.contains(&m.name),
            // Out of the cluster: removable once every shard has a copy elsewhere.
            None => snap.health.status == Color::Green,
        };
        let row = status.nodes.iter_mut().find(|r| r.name == m.name);
        if ready {
            desired
                .services
                .retain(|s| s.spec.name.as_deref() != Some(m.name.as_str()));
            desired.held.remove(&m.name);
            ctx.update_status(|st| {
                st.event(
                    now(),
                    "elasticsearch",
                    format!(
                        "decommissioned {}: no shard left on it; its service is removed, its volume kept on {}",
                        m.name, m.hostname
                    ),
                )
            });
        } else {
            let left = node
                .and_then(|n| n.shards)
                .map_or("its shards".to_string(), |n| format!("{n} shard(s)"));
            let why = format!("decommissioning: waiting for {left} to move to other nodes");
            desired.held.insert(m.name.clone(), why.clone());
            if let Some(r) = row {
                r.problem = Some(why);
            }
        }
    }
}

/// The roll's holds and specs into the desired state.
fn apply_decision(desired: &mut DesiredState, d: &roll::Decision) {
    for (name, why) in &d.held {
        desired.held.insert(name.clone(), why.clone());
    }
    for s in desired.services.iter_mut() {
        let Some(spec) = s.spec.name.as_ref().and_then(|n| d.specs.get(n)) else {
            continue;
        };
        s.hash = spec
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SPEC_HASH))
            .cloned()
            .unwrap_or_default();
        s.spec = spec.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(values: &str) -> DesiredState {
        let chart = crate::render::chart::Chart::embedded().expect("chart");
        chart
            .render(&crate::render::chart::RenderOptions {
                values_files: vec![("v.yaml".into(), values.into())],
                set: Vec::new(),
                stack: None,
                env: &|_| None,
                credential: &|_, _| Ok(b"test-password".to_vec()),
                generations: &|_| Default::default(),
                tls: &|_, _, _| Ok(None),
            })
            .expect("renders")
            .desired
    }

    /// Without a shared network or an address nothing is read: the
    /// services' names would go to the host's resolver, not the overlay's.
    #[test]
    fn elasticsearch_is_read_only_over_a_path_the_operator_has() {
        let plain = desired("");
        let own = ["swarmlog_es".to_string(), "ingress".to_string()];
        let hint = no_path_hint(&plain, "logging_elasticsearch", &[], Some(&own));
        assert!(
            hint.as_deref().is_some_and(|h| h.contains("operatorNetwork")),
            "{hint:?}"
        );
        let t = Targets {
            bases: vec!["http://logging_elasticsearch:9200".into()],
            unjoined: Vec::new(),
        };
        assert_eq!(reachable(t.clone(), &hint), Targets::default());
        let shared = desired("elasticsearch:\n  operatorNetwork: swarmlog_es\n");
        assert_eq!(no_path_hint(&shared, "logging_elasticsearch", &[], Some(&own)), None);
        // A process outside any container: names would go to the host's resolver.
        assert!(no_path_hint(&shared, "logging_elasticsearch", &[], None).is_some());
        let other = ["bridge".to_string()];
        assert!(no_path_hint(&shared, "logging_elasticsearch", &[], Some(&other)).is_some());
        assert_eq!(reachable(t.clone(), &None), t);
        assert_eq!(
            no_path_hint(&plain, "logging_elasticsearch", &["http://127.0.0.1:9200".into()], None),
            None
        );
        let mut st = ElasticsearchStatus::default();
        fill_from_view(&mut st, &View::default(), hint.as_deref());
        assert_eq!(st.state, EsState::NoPath);
    }
}
