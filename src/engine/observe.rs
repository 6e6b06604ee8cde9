//! Observe step (I/O): the live swarm in a constant number of list calls,
//! whatever the number of services, and the few other reads the operator
//! makes (events, one service's tasks, a task's log).

use std::collections::HashMap;

use bollard::models::{Config, EventMessage, Network, Node, Secret, Service, Task};
use bollard::query_parameters::{
    EventsOptions, ListConfigsOptions, ListNetworksOptions, ListNodesOptions, ListSecretsOptions, ListTasksOptions,
    LogsOptions,
};
use futures::{Stream, StreamExt};

use super::{Engine, EngineError};

/// Everything a plan is computed from.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// This engine's node id in the swarm.
    pub node_id: String,
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    /// `services` holds every service of the swarm (not only those of a [`Scope`]).
    pub services_complete: bool,
    /// Every service was read (and those a [`Scope`] keeps were kept): what
    /// runs the companion's image is all there.
    pub services_scanned: bool,
    pub networks: Vec<Network>,
    pub configs: Vec<Config>,
    pub secrets: Vec<Secret>,
    /// Tasks whose desired state is running.
    pub tasks: Vec<Task>,
    /// The engine's clock when the observe began (nanoseconds since the
    /// epoch, from `/info`), if this observe read everything an event of
    /// the stack can concern: an event older than this needs no reconcile.
    pub covers_events_until: Option<i64>,
}

/// Kinds of object whose last observation may be reused (services, nodes
/// and tasks are always read: they change without an event of their own,
/// or decide who writes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kinds {
    pub networks: bool,
    pub configs: bool,
    pub secrets: bool,
}

impl Kinds {
    /// Every kind.
    pub const ALL: Kinds = Kinds {
        networks: true,
        configs: true,
        secrets: true,
    };

    /// Adds the kind an engine event of type `kind` concerns.
    pub fn add(&mut self, kind: &str) {
        match kind {
            "network" => self.networks = true,
            "config" => self.configs = true,
            "secret" => self.secrets = true,
            _ => {}
        }
    }
}

/// The networks, configs and secrets of an earlier observation of a scope:
/// an informer's cache, refreshed by kind when an event names the kind.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    pub scope: Scope,
    pub networks: Vec<Network>,
    pub configs: Vec<Config>,
    pub secrets: Vec<Secret>,
}

impl Cache {
    /// Takes the cached kinds out of an observation of `scope` (at the end
    /// of a reconcile, when nothing reads them any more).
    pub fn take(scope: Scope, observed: &mut Observed) -> Cache {
        Cache {
            scope,
            networks: std::mem::take(&mut observed.networks),
            configs: std::mem::take(&mut observed.configs),
            secrets: std::mem::take(&mut observed.secrets),
        }
    }
}

/// A [`Cache`] and the kinds of it that no longer hold (an event named
/// them since it was read); the others are taken from it.
#[derive(Debug, Clone, Copy)]
pub struct Reuse<'a> {
    pub cache: &'a Cache,
    pub stale: Kinds,
}

/// What one observe reads. The whole swarm is large (at 1,000 nodes and
/// 5,000 services, every service and task is tens of megabytes); the plan of
/// one stack needs only its own objects, the companion and the services that
/// opt in to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The stack: its services, configs and secrets by the `<stack>_` name
    /// prefix and by swarmlog's stack label.
    pub stack: String,
    /// More names (prefixes, at the engine) of services, configs and secrets:
    /// desired files named outside the prefix, external ones, the companion.
    pub names: Vec<String>,
    /// Services outside the stack read by ID (those the events named).
    pub ids: Vec<String>,
    /// The companion is on: services with its label or the opt-in label are read too.
    pub companion: bool,
    /// Read every service (the companion is looked for by its image), and
    /// keep those of the stack, of `names`, with the companion's labels, or
    /// running `image`.
    pub all_services: bool,
    /// The companion's image repository (no tag), while it is looked for by image.
    pub image: String,
    /// This engine's node ID as a recent observe read it: `/info` is not
    /// read again (it is most of an observe's time: about 9 ms against 1
    /// ms for a list). A node that is no longer a manager fails the lists.
    pub node_id: Option<String>,
}

impl Scope {
    /// What the plan of `desired` reads: its stack, the file names outside
    /// the stack's prefix, and what the companion needs (every service
    /// while it is found by image only).
    pub fn of(desired: &crate::render::desired::DesiredState) -> Scope {
        let prefix = format!("{}_", desired.stack);
        let mut names: Vec<String> = desired
            .configs
            .iter()
            .filter_map(|c| c.spec.name.clone())
            .chain(desired.secrets.iter().filter_map(|s| s.spec.name.clone()))
            .chain(desired.external.configs.iter().cloned())
            .chain(desired.external.secrets.iter().cloned())
            .filter(|n| !n.starts_with(&prefix))
            .collect();
        let le = &desired.letsencrypt;
        if le.enabled && !le.service.is_empty() {
            names.push(le.service.clone());
        }
        names.sort();
        names.dedup();
        Scope {
            stack: desired.stack.clone(),
            names,
            ids: Vec::new(),
            companion: le.enabled,
            all_services: le.enabled && le.service.is_empty(),
            image: if le.enabled && le.service.is_empty() {
                le.image.clone()
            } else {
                String::new()
            },
            node_id: None,
        }
    }

    /// Whether `other` reads the same objects (the task hint aside).
    pub fn same_objects(&self, other: &Scope) -> bool {
        (&self.stack, &self.names, self.companion, self.all_services, &self.image)
            == (
                &other.stack,
                &other.names,
                other.companion,
                other.all_services,
                &other.image,
            )
    }

    /// Whether a service of a read of every service is kept.
    fn keeps(&self, s: &Service) -> bool {
        let labels = s.spec.as_ref().and_then(|s| s.labels.as_ref());
        let name = s.spec.as_ref().and_then(|s| s.name.as_deref()).unwrap_or_default();
        of_stack(s, &self.stack)
            || self.names.iter().any(|n| name.starts_with(n.as_str()))
            || (self.companion
                && labels.is_some_and(|l| {
                    l.contains_key(crate::render::desired::LABEL_COMPANION)
                        || l.get(crate::letsencrypt::LABEL_OPT_IN).map(String::as_str) == Some("true")
                }))
            || (!self.image.is_empty() && runs_image(s, &self.image))
    }
}

/// Reads the whole swarm, every service, config, secret and running task.
/// Fails with a clear error when the engine is not a swarm manager.
pub async fn observe(engine: &Engine) -> Result<Observed, EngineError> {
    observe_scoped(engine, None, None).await
}

/// Reads the swarm as the plan of one stack needs it ([`Scope`]): every
/// node and network, the services, configs and secrets of the scope, and the
/// running tasks of the stack's services only.
pub async fn observe_stack(engine: &Engine, scope: &Scope) -> Result<Observed, EngineError> {
    observe_scoped(engine, Some(scope), None).await
}

/// [`observe_stack`] that takes the networks, configs and secrets no event
/// named from an earlier observation of the same scope (the hot path: a
/// heal reads three lists instead of nine).
pub async fn observe_stack_reusing(engine: &Engine, scope: &Scope, reuse: Reuse<'_>) -> Result<Observed, EngineError> {
    observe_scoped(engine, Some(scope), Some(reuse)).await
}

/// Whether a service belongs to `stack`: by the stack label swarmlog and
/// `docker stack deploy` set, or by its name.
pub fn of_stack(service: &Service, stack: &str) -> bool {
    let Some(spec) = service.spec.as_ref() else {
        return false;
    };
    let labelled = spec.labels.as_ref().is_some_and(|l| {
        l.get(crate::render::desired::LABEL_NAMESPACE).map(String::as_str) == Some(stack)
            || l.get(crate::render::desired::LABEL_STACK).map(String::as_str) == Some(stack)
    });
    labelled
        || spec
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix(stack))
            .is_some_and(|rest| rest.starts_with('_'))
}

/// The engine's RFC 3339 time (`2026-12-01T00:40:20.123456789Z`, or with
/// an offset such as `+01:00`: the engine writes its local zone) as
/// nanoseconds since the epoch.
pub fn engine_nanos(text: &str) -> Option<i64> {
    let (local, offset_secs) = match text.strip_suffix('Z') {
        Some(_) => (text.to_string(), 0i64),
        None => {
            let at = text.len().checked_sub(6)?;
            let (local, off) = (text.get(..at)?, text.get(at..)?);
            let sign = match off.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = off.get(1..)?.split_once(':')?;
            let secs = sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60);
            (format!("{local}Z"), secs)
        }
    };
    let t = humantime::parse_rfc3339(&local).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    let nanos = i64::try_from(d.as_nanos()).ok()?;
    nanos.checked_sub(offset_secs.checked_mul(1_000_000_000)?)
}

/// Whether a service runs image repository `repo` (any tag or digest).
pub fn runs_image(s: &Service, repo: &str) -> bool {
    let image = s
        .spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.as_deref())
        .unwrap_or_default();
    let name = image.split('@').next().unwrap_or_default();
    let name = match name.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => name,
    };
    name == repo
}

/// Engine list filters: `key` -> values (one value each for `label`, whose
/// values the engine ANDs; `name` values are ORed prefixes).
type Filters = Vec<(&'static str, Vec<String>)>;

/// The filtered lists that together read the objects of a scope (the
/// engine ORs the values of one key and ANDs keys, so one list per kind of
/// match). `None`: one list of everything.
fn list_filters(scope: Option<&Scope>, services: bool) -> Option<Vec<Filters>> {
    let scope = scope?;
    if services && scope.all_services {
        return None;
    }
    // (`docker stack deploy`'s namespace label comes with the `<stack>_` name.)
    let mut names = vec![format!("{}_", scope.stack)];
    names.extend(scope.names.iter().cloned());
    let mut lists = vec![
        vec![("name", names)],
        vec![(
            "label",
            vec![format!("{}={}", crate::render::desired::LABEL_STACK, scope.stack)],
        )],
    ];
    if services && !scope.ids.is_empty() {
        lists.push(vec![("id", scope.ids.clone())]);
    }
    if services && scope.companion {
        lists.push(vec![(
            "label",
            vec![crate::render::desired::LABEL_COMPANION.to_string()],
        )]);
        lists.push(vec![(
            "label",
            vec![format!("{}=true", crate::letsencrypt::LABEL_OPT_IN)],
        )]);
    }
    Some(lists)
}

/// `filters=` of the Engine API: JSON, percent-encoded.
fn filters_query(filters: &Filters) -> String {
    let map: std::collections::BTreeMap<&str, &Vec<String>> = filters.iter().map(|(k, v)| (*k, v)).collect();
    let json = serde_json::to_string(&map).unwrap_or_default();
    let mut out = String::from("?filters=");
    for b in json.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn as_map(filters: &Filters) -> HashMap<String, Vec<String>> {
    filters.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// Runs `list` once per filter list, all at once (`None`: once, unfiltered).
async fn each_list<T, F, Fut>(lists: Option<Vec<Filters>>, list: F) -> Result<Vec<Vec<T>>, EngineError>
where
    F: Fn(Option<HashMap<String, Vec<String>>>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, EngineError>>,
{
    match lists {
        None => Ok(vec![list(None).await?]),
        Some(lists) => futures::future::try_join_all(lists.iter().map(|f| list(Some(as_map(f))))).await,
    }
}

/// The union of several lists, each object once (by ID), in the order seen.
fn union<T>(lists: Vec<Vec<T>>, id: impl Fn(&T) -> Option<&str>) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for item in lists.into_iter().flatten() {
        let key = id(&item).unwrap_or_default().to_string();
        if key.is_empty() || seen.insert(key) {
            out.push(item);
        }
    }
    out
}

impl Engine {
    /// Services: every one (none to scope them), those of the scope's filter
    /// lists, or those the scope keeps of every one.
    async fn scoped_services(&self, scope: Option<&Scope>) -> Result<Vec<Service>, EngineError> {
        let Some(lists) = list_filters(scope, true) else {
            return match scope {
                Some(scope) => self.list_services_where("", &|s| scope.keeps(s)).await,
                None => self.list_services().await,
            };
        };
        let queries: Vec<String> = lists.iter().map(filters_query).collect();
        let found =
            futures::future::try_join_all(queries.iter().map(|q| self.list_services_where(q, &|_| true))).await?;
        Ok(union(found, |s: &Service| s.id.as_deref()))
    }

    async fn scoped_configs(&self, lists: Option<Vec<Filters>>) -> Result<Vec<Config>, EngineError> {
        let d = &self.docker;
        let found = each_list(lists, |filters| {
            self.bounded("list configs", "", d.list_configs(Some(ListConfigsOptions { filters })))
        })
        .await?;
        Ok(union(found, |c: &Config| c.id.as_deref()))
    }

    async fn scoped_secrets(&self, lists: Option<Vec<Filters>>) -> Result<Vec<Secret>, EngineError> {
        let d = &self.docker;
        let found = each_list(lists, |filters| {
            self.bounded("list secrets", "", d.list_secrets(Some(ListSecretsOptions { filters })))
        })
        .await?;
        Ok(union(found, |c: &Secret| c.id.as_deref()))
    }

    /// Running tasks; of the services whose names start with `prefix` only,
    /// when given (the engine matches a task's `<service>.<slot>` name).
    async fn running_tasks(&self, prefix: Option<&str>) -> Result<Vec<Task>, EngineError> {
        let mut filters = HashMap::from([("desired-state".to_string(), vec!["running".to_string()])]);
        if let Some(prefix) = prefix {
            filters.insert("name".to_string(), vec![prefix.to_string()]);
        }
        self.bounded(
            "list tasks",
            "",
            self.docker
                .list_tasks(Some(ListTasksOptions { filters: Some(filters) })),
        )
        .await
    }
}

async fn observe_scoped(
    engine: &Engine,
    scope: Option<&Scope>,
    reuse: Option<Reuse<'_>>,
) -> Result<Observed, EngineError> {
    let d = &engine.docker;
    let kept = |stale: fn(&Kinds) -> bool| reuse.filter(|r| !stale(&r.stale)).map(|r| r.cache);
    let prefix = scope.map(|s| format!("{}_", s.stack));
    let known_node = scope.and_then(|s| s.node_id.clone()).filter(|id| !id.is_empty());
    let info = async {
        match &known_node {
            Some(_) => Ok(None),
            None => engine.bounded("read engine info", "", d.info()).await.map(Some),
        }
    };
    let networks = async {
        match kept(|k| k.networks) {
            Some(last) => Ok(last.networks.clone()),
            None => {
                engine
                    .bounded("list networks", "", d.list_networks(None::<ListNetworksOptions>))
                    .await
            }
        }
    };
    let configs = async {
        match kept(|k| k.configs) {
            Some(last) => Ok(last.configs.clone()),
            None => engine.scoped_configs(list_filters(scope, false)).await,
        }
    };
    let secrets = async {
        match kept(|k| k.secrets) {
            Some(last) => Ok(last.secrets.clone()),
            None => engine.scoped_secrets(list_filters(scope, false)).await,
        }
    };
    // One round trip: the engine's state, the lists and the stack's tasks, all at once.
    let began = std::time::Instant::now();
    let (info, lists) = tokio::join!(info, async {
        tokio::try_join!(
            engine.bounded("list nodes", "", d.list_nodes(None::<ListNodesOptions>)),
            engine.scoped_services(scope),
            networks,
            configs,
            secrets,
            engine.running_tasks(prefix.as_deref()),
        )
    },);
    // The engine may have answered a list before `/info`: what the lists
    // cover begins up to the whole round trip before the time `/info` read.
    let round_trip = i64::try_from(began.elapsed().as_nanos()).unwrap_or(i64::MAX);
    // The engine's own state first: a worker or a node out of the swarm
    // fails every list too, with a less helpful message.
    let (node_id, engine_time) = match info? {
        None => (known_node.unwrap_or_default(), None),
        Some(info) => {
            let engine_time = info
                .system_time
                .as_deref()
                .and_then(engine_nanos)
                .map(|t| t.saturating_sub(round_trip));
            let swarm = info.swarm.unwrap_or_default();
            let state = swarm.local_node_state.map(|s| s.to_string()).unwrap_or_default();
            if state != "active" {
                return Err(EngineError::NotSwarm);
            }
            if swarm.control_available != Some(true) {
                return Err(EngineError::NotManager);
            }
            (swarm.node_id.unwrap_or_default(), engine_time)
        }
    };
    let (nodes, services, networks, configs, secrets, mut tasks) = lists?;
    if let Some(scope) = scope {
        // The tasks of the stack's services (a service outside the stack
        // whose name starts alike, `logging_x` of no stack, is one of them).
        let ids: std::collections::HashSet<&str> = services
            .iter()
            .filter(|s| of_stack(s, &scope.stack))
            .filter_map(|s| s.id.as_deref())
            .collect();
        tasks.retain(|t| t.service_id.as_deref().is_some_and(|id| ids.contains(id)));
    }
    // A scoped read covers every event that matters unless the companion is
    // looked for by image among services it did not read.
    let covers = reuse.is_none() && scope.is_none_or(|s| s.all_services || s.image.is_empty());
    Ok(Observed {
        node_id,
        nodes,
        covers_events_until: engine_time.filter(|_| covers),
        services_complete: scope.is_none(),
        services_scanned: scope.is_none_or(|s| s.all_services),
        services,
        networks,
        configs,
        secrets,
        tasks,
    })
}

impl Engine {
    /// Every service, read as the engine's JSON and put into the model's
    /// names before it is typed (bollard's own list call loses
    /// `ContainerSpec.Healthcheck`: see `raw::fix_service_json`).
    pub async fn list_services(&self) -> Result<Vec<Service>, EngineError> {
        self.list_services_where("", &|_| true).await
    }

    /// [`Engine::list_services`] with a query (`?filters=...`), keeping
    /// those `keep` says (the others are dropped as they are read).
    async fn list_services_where(
        &self,
        query: &str,
        keep: &(dyn Fn(&Service) -> bool + Sync),
    ) -> Result<Vec<Service>, EngineError> {
        let what = "list services";
        let body = self.get_bytes(what, &format!("/services{query}")).await?;
        super::raw::services_from_json(&body, keep).map_err(|detail| EngineError::Other {
            what: what.to_string(),
            detail,
        })
    }

    /// The networks (by name) of the container this process runs in, when
    /// it runs in one on this engine's node (a task's hostname is its
    /// container's ID). `None` anywhere else, a host process for one.
    pub async fn own_networks(&self) -> Option<Vec<String>> {
        let host = std::fs::read_to_string("/etc/hostname").ok()?.trim().to_string();
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let c = self
            .bounded(
                "inspect container",
                &host,
                self.docker
                    .inspect_container(&host, None::<bollard::query_parameters::InspectContainerOptions>),
            )
            .await
            .ok()?;
        Some(c.network_settings?.networks?.into_keys().collect())
    }

    /// Every node of the swarm.
    /// Every secret (the credentials' generations are in their labels; the
    /// engine never returns a secret's data).
    pub async fn list_secrets(&self) -> Result<Vec<Secret>, EngineError> {
        self.scoped_secrets(None).await
    }

    /// The certificates swarmlog issued (configs with its TLS label, data
    /// included: they are reused), of every stack.
    pub async fn list_certificates(&self) -> Result<Vec<Config>, EngineError> {
        self.scoped_configs(Some(vec![vec![("label", vec![crate::tls::LABEL_TLS.to_string()])]]))
            .await
    }

    /// Labels a secret (only a secret's labels may change; `version` as read).
    pub async fn label_secret(
        &self,
        secret: &Secret,
        labels: std::collections::HashMap<String, String>,
    ) -> Result<(), EngineError> {
        let id = secret.id.clone().unwrap_or_default();
        let name = secret.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default();
        let mut spec = secret.spec.clone().unwrap_or_default();
        spec.labels = Some(labels);
        let version = secret.version.as_ref().and_then(|v| v.index).unwrap_or_default() as i64;
        self.bounded(
            "update secret",
            &name,
            self.docker
                .update_secret(&id, spec, bollard::query_parameters::UpdateSecretOptions { version }),
        )
        .await
    }

    pub async fn list_nodes(&self) -> Result<Vec<bollard::models::Node>, EngineError> {
        self.bounded("list nodes", "", self.docker.list_nodes(None::<ListNodesOptions>))
            .await
    }

    /// Whether node `id` is the swarm leader now: one small call (a standby
    /// asks this every second instead of observing the whole swarm).
    pub async fn node_is_leader(&self, id: &str) -> Result<bool, EngineError> {
        let node = self.bounded("inspect node", id, self.docker.inspect_node(id)).await?;
        Ok(node.manager_status.and_then(|m| m.leader) == Some(true))
    }

    /// Whether the engine answers at all, within `deadline` (at most the per-call one).
    pub async fn ping(&self, deadline: std::time::Duration) -> Result<(), EngineError> {
        let deadline = deadline.min(self.timeout);
        match tokio::time::timeout(deadline, self.docker.ping()).await {
            Ok(r) => r.map(|_| ()).map_err(|e| self.err("reach the engine", "", e)),
            Err(_) => Err(EngineError::Timeout {
                what: "reach the engine".to_string(),
                name: String::new(),
                after: deadline,
            }),
        }
    }

    /// The engine's event stream, of the given object types; `since`: the
    /// engine's `seconds.nanoseconds` from which it replays what it still has.
    pub fn events(
        &self,
        types: &[&str],
        since: Option<String>,
    ) -> impl Stream<Item = Result<EventMessage, EngineError>> + '_ {
        let filters = HashMap::from([(
            "type".to_string(),
            types.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        )]);
        self.docker
            .events(Some(EventsOptions {
                filters: Some(filters),
                since,
                ..Default::default()
            }))
            .map(|r| r.map_err(|e| self.err("read events", "", e)))
    }

    /// Tasks of one service (by ID or name); `running`: only those whose
    /// desired state is running.
    pub async fn service_tasks(&self, service: &str, running: bool) -> Result<Vec<Task>, EngineError> {
        let mut filters = HashMap::from([("service".to_string(), vec![service.to_string()])]);
        if running {
            filters.insert("desired-state".to_string(), vec!["running".to_string()]);
        }
        self.bounded(
            "list tasks",
            service,
            self.docker
                .list_tasks(Some(ListTasksOptions { filters: Some(filters) })),
        )
        .await
    }

    /// Up to `limit` bytes of a task's output (stdout and stderr).
    pub async fn task_output(&self, task_id: &str, limit: usize) -> Result<String, EngineError> {
        let mut logs = self.docker.task_logs(
            task_id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let read = async {
            let mut text = String::new();
            while let Some(chunk) = logs.next().await {
                text.push_str(&chunk?.to_string());
                if text.len() > limit {
                    break;
                }
            }
            Ok(text)
        };
        self.bounded("read task log", task_id, read).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ServiceSpec;

    fn service(name: &str, labels: &[(&str, &str)]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn desired(values: &str) -> crate::render::desired::DesiredState {
        crate::render::test_desired(values)
    }

    #[test]
    fn the_scope_of_a_stack() {
        // The default chart: the companion on, found by image: every service.
        let s = Scope::of(&desired(""));
        assert_eq!(s.stack, "logging");
        assert!(s.names.is_empty(), "{:?}", s.names);
        assert!(s.companion && s.all_services);
        // A companion named in values is read by that name.
        let s = Scope::of(&desired("letsencrypt:\n  service: proxy_le\n"));
        assert_eq!(s.names, vec!["proxy_le".to_string()]);
        assert!(s.companion && !s.all_services);
        // Off: the stack only.
        let s = Scope::of(&desired("letsencrypt:\n  enabled: false\n"));
        assert!(!s.companion && !s.all_services && s.names.is_empty());
    }

    #[test]
    fn lists_of_a_scope() {
        assert_eq!(list_filters(None, true), None);
        let scope = Scope {
            stack: "logging".into(),
            names: vec!["proxy_le".into()],
            ids: Vec::new(),
            companion: true,
            all_services: false,
            image: String::new(),
            node_id: None,
        };
        let services = list_filters(Some(&scope), true).unwrap();
        assert_eq!(
            services,
            vec![
                vec![("name", vec!["logging_".to_string(), "proxy_le".to_string()])],
                vec![("label", vec!["io.swarmlog.stack=logging".to_string()])],
                vec![("label", vec!["io.swarmlog.companion".to_string()])],
                vec![("label", vec!["io.swarmlog.letsencrypt=true".to_string()])],
            ]
        );
        // Files: by name and swarmlog's label only.
        assert_eq!(list_filters(Some(&scope), false).unwrap().len(), 2);
        // Every service while the companion is looked for by image; files still scoped.
        let all = Scope {
            all_services: true,
            ..scope.clone()
        };
        assert_eq!(list_filters(Some(&all), true), None);
        assert_eq!(list_filters(Some(&all), false).unwrap().len(), 2);
        let off = Scope {
            companion: false,
            ..scope.clone()
        };
        assert_eq!(list_filters(Some(&off), true).unwrap().len(), 2);
        let by_id = Scope {
            ids: vec!["abc".into()],
            ..off
        };
        assert_eq!(
            list_filters(Some(&by_id), true).unwrap()[2],
            vec![("id", vec!["abc".to_string()])]
        );
    }

    #[test]
    fn a_read_of_every_service_keeps_what_the_scope_needs() {
        let scope = Scope {
            stack: "logging".into(),
            names: vec!["proxy_le".into()],
            ids: Vec::new(),
            companion: true,
            all_services: true,
            image: "hamburml/docker-flow-letsencrypt".into(),
            node_id: None,
        };
        let running = |name: &str, image: &str| {
            let mut s = service(name, &[]);
            if let Some(spec) = s.spec.as_mut() {
                spec.task_template = Some(bollard::models::TaskSpec {
                    container_spec: Some(bollard::models::TaskSpecContainerSpec {
                        image: Some(image.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            s
        };
        assert!(scope.keeps(&service("logging_kibana", &[])));
        assert!(scope.keeps(&service("proxy_le", &[])));
        assert!(scope.keeps(&service("web", &[("io.swarmlog.letsencrypt", "true")])));
        assert!(scope.keeps(&service("le", &[("io.swarmlog.companion", "true")])));
        assert!(scope.keeps(&running("le2", "hamburml/docker-flow-letsencrypt:1.2@sha256:ab")));
        assert!(!scope.keeps(&running("web", "nginx:1")));
        assert!(!scope.keeps(&service("web", &[("io.swarmlog.letsencrypt", "false")])));
        let off = Scope {
            companion: false,
            image: String::new(),
            ..scope
        };
        assert!(!off.keeps(&service("web", &[("io.swarmlog.letsencrypt", "true")])));
        assert!(!off.keeps(&running("le2", "hamburml/docker-flow-letsencrypt:1.2")));
    }

    #[test]
    fn engine_times_in_any_zone() {
        let utc = engine_nanos("2026-12-01T00:40:20.123456789Z").unwrap();
        assert_eq!(utc % 1_000_000_000, 123_456_789);
        assert_eq!(engine_nanos("2026-12-01T01:40:20.123456789+01:00"), Some(utc));
        assert_eq!(engine_nanos("2026-11-30T23:10:20.123456789-01:30"), Some(utc));
        assert_eq!(engine_nanos("2026-12-01T00:40:20Z"), Some(utc - 123_456_789));
        assert_eq!(engine_nanos("yesterday"), None);
        assert_eq!(engine_nanos(""), None);
    }

    #[test]
    fn filters_are_json_percent_encoded() {
        let q = filters_query(&vec![("label", vec!["a.b=c d&e".to_string()])]);
        assert_eq!(q, "?filters=%7B%22label%22%3A%5B%22a.b%3Dc%20d%26e%22%5D%7D");
    }

    #[test]
    fn lists_are_joined_once_each() {
        let a = service("a", &[]);
        let with_id = |id: &str, mut s: Service| {
            s.id = Some(id.into());
            s
        };
        let lists = vec![
            vec![with_id("1", a.clone()), with_id("2", a.clone())],
            vec![with_id("2", a.clone()), with_id("3", a.clone())],
        ];
        let ids: Vec<String> = union(lists, |s: &Service| s.id.as_deref())
            .into_iter()
            .filter_map(|s| s.id)
            .collect();
        assert_eq!(ids, ["1", "2", "3"]);
    }

    #[test]
    fn services_of_a_stack_by_label_or_name() {
        assert!(of_stack(&service("logging_kibana", &[]), "logging"));
        assert!(of_stack(
            &service("kibana", &[("com.docker.stack.namespace", "logging")]),
            "logging"
        ));
        assert!(of_stack(
            &service("kibana", &[("io.swarmlog.stack", "logging")]),
            "logging"
        ));
        assert!(!of_stack(&service("loggingx_kibana", &[]), "logging"));
        assert!(!of_stack(&service("logging", &[]), "logging"));
        assert!(!of_stack(
            &service("other_web", &[("com.docker.stack.namespace", "other")]),
            "logging"
        ));
        assert!(!of_stack(&Service::default(), "logging"));
    }
}
