//! The fake swarm's state: objects cloned from the shapes recorded from a
//! real engine (`shapes/*.json`: dockerd 20.10.24, API 1.41, recorded by
//! `record-shapes` on the sandbox swarm), the filters as the engine applies
//! them, and the writes swarmlog makes. Generated objects are kept only as
//! their serialized JSON (50,000 tasks as `serde_json::Value`s would take
//! gigabytes); an object swarmlog writes is parsed back, changed, and
//! serialized again.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde_json::{json, Value as Json};

/// The recorded shapes, one representative object each.
pub struct Shapes {
    pub info: Json,
    pub version: Json,
    node_manager: Json,
    node_worker: Json,
    service: Json,
    task: Json,
    config: Json,
    secret: Json,
    network_overlay: Json,
    network_ingress: Json,
    /// One event of each (Type, Action) seen.
    events: Vec<Json>,
}

fn parse(name: &str, text: &str) -> Result<Json, String> {
    serde_json::from_str(text).map_err(|e| format!("shape {name}: {e}"))
}

impl Shapes {
    pub fn load() -> Result<Shapes, String> {
        let events = match parse("events.json", include_str!("shapes/events.json"))? {
            Json::Array(v) => v,
            other => return Err(format!("shape events.json: expected a list, found {other:.80}")),
        };
        Ok(Shapes {
            info: parse("info.json", include_str!("shapes/info.json"))?,
            version: parse("version.json", include_str!("shapes/version.json"))?,
            node_manager: parse("node_manager.json", include_str!("shapes/node_manager.json"))?,
            node_worker: parse("node_worker.json", include_str!("shapes/node_worker.json"))?,
            service: parse("service.json", include_str!("shapes/service.json"))?,
            task: parse("task.json", include_str!("shapes/task.json"))?,
            config: parse("config.json", include_str!("shapes/config.json"))?,
            secret: parse("secret.json", include_str!("shapes/secret.json"))?,
            network_overlay: parse("network_overlay.json", include_str!("shapes/network_overlay.json"))?,
            network_ingress: parse("network_ingress.json", include_str!("shapes/network_ingress.json"))?,
            events,
        })
    }

    /// An event of `typ`/`action` in the recorded shape.
    pub fn event(&self, typ: &str, action: &str, id: &str, name: &str, time_nano: u128) -> Json {
        let mut e = self
            .events
            .iter()
            .find(|e| e["Type"] == typ && e["Action"] == action)
            .or_else(|| self.events.iter().find(|e| e["Type"] == typ))
            .cloned()
            .unwrap_or_else(|| json!({"scope": "swarm"}));
        e["Type"] = json!(typ);
        e["Action"] = json!(action);
        e["Actor"] = json!({"ID": id, "Attributes": {"name": name}});
        e["time"] = json!((time_nano / 1_000_000_000) as u64);
        e["timeNano"] = json!(time_nano as u64);
        e
    }
}

/// The sizes and role of the fake swarm.
#[derive(Debug, Clone)]
pub struct Spec {
    pub nodes: usize,
    pub services: usize,
    pub tasks: usize,
    /// Whether this engine's node (manager-1) is the Raft leader.
    pub leader: bool,
}

/// One listed object: what the filters look at, and its JSON.
#[derive(Clone)]
pub struct Obj {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub index: u64,
    pub bytes: Bytes,
}

impl Obj {
    fn new(id: &str, name: &str, labels: &Json, index: u64, value: &Json) -> Obj {
        Obj {
            id: id.to_string(),
            name: name.to_string(),
            labels: labels_of(labels),
            index,
            bytes: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    pub fn value(&self) -> Result<Json, String> {
        serde_json::from_slice(&self.bytes).map_err(|e| format!("object {}: {e}", self.id))
    }
}

/// One task: what the filters look at, and its JSON.
#[derive(Clone)]
pub struct TaskObj {
    pub id: String,
    pub service_id: String,
    pub node_id: String,
    pub desired: &'static str,
    pub running: bool,
    pub bytes: Bytes,
}

fn labels_of(v: &Json) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A write's failure, as the engine answers it.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

fn err(status: u16, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

/// An event to publish: type, action, actor ID, name.
pub type Emitted = (&'static str, &'static str, String, String);

pub struct Swarm {
    pub shapes: Shapes,
    pub self_id: String,
    pub nodes: Vec<Obj>,
    /// Node ID -> (role, hostname) for placement.
    node_roles: HashMap<String, (String, String)>,
    pub services: Vec<Obj>,
    pub tasks: Vec<TaskObj>,
    pub networks: Vec<Obj>,
    pub configs: Vec<Obj>,
    pub secrets: Vec<Obj>,
    next_index: u64,
    next_id: u64,
}

/// A 25-character ID like the engine's, unique per `n`.
fn make_id(kind: char, n: u64) -> String {
    format!("{kind}{n:024x}")
}

fn timestamp() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// A JSON filter map of the engine (`{"k":["v"]}` or the old `{"k":{"v":true}}`).
pub type Filters = HashMap<String, Vec<String>>;

pub fn parse_filters(raw: Option<&str>) -> Result<Filters, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(Filters::new());
    };
    let v: Json = serde_json::from_str(raw).map_err(|e| err(400, format!("invalid filter '{raw}': {e}")))?;
    let mut out = Filters::new();
    for (k, v) in v.as_object().into_iter().flatten() {
        let vals = match v {
            Json::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            Json::Object(m) => m.keys().cloned().collect(),
            _ => return Err(err(400, format!("invalid filter '{raw}'"))),
        };
        out.insert(k.clone(), vals);
    }
    Ok(out)
}

/// The engine's `label` filter: `key` (present) or `key=value`, all must match.
pub fn labels_match(labels: &BTreeMap<String, String>, wanted: Option<&Vec<String>>) -> bool {
    wanted.into_iter().flatten().all(|w| match w.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => labels.contains_key(w.as_str()),
    })
}

/// Any of the values is a prefix of `s` (the engine's `name` and `id` filters
/// on services, configs and secrets are prefix filters); no values: true.
fn any_prefix(s: &str, wanted: Option<&Vec<String>>) -> bool {
    match wanted {
        None => true,
        Some(w) => w.iter().any(|p| s.starts_with(p.as_str())),
    }
}

impl Swarm {
    /// Generates the swarm: `nodes` nodes (manager-1..3, then worker-N; the
    /// first three workers labelled logger=true), the external network
    /// `main`, `services` services `other_svc_N` in stacks of 50 (a network,
    /// configs and a secret per stack), `tasks` running tasks spread over them
    /// and over the nodes.
    pub fn generate(spec: &Spec) -> Result<Swarm, String> {
        let shapes = Shapes::load()?;
        let managers = spec.nodes.clamp(1, 3);
        if !spec.leader && managers < 2 {
            return Err("a standby needs at least 2 nodes (another manager is the leader)".into());
        }
        let mut s = Swarm {
            shapes,
            self_id: String::new(),
            nodes: Vec::with_capacity(spec.nodes),
            node_roles: HashMap::new(),
            services: Vec::with_capacity(spec.services),
            tasks: Vec::with_capacity(spec.tasks),
            networks: Vec::new(),
            configs: Vec::new(),
            secrets: Vec::new(),
            next_index: 100,
            next_id: 1,
        };
        for i in 0..spec.nodes.max(1) {
            let manager = i < managers;
            let hostname = if manager {
                format!("manager-{}", i + 1)
            } else {
                format!("worker-{}", i - managers + 1)
            };
            let logger = !manager && i - managers < 3 || spec.nodes <= managers && i == 0;
            let leader = if spec.leader { i == 0 } else { i == 1 };
            s.add_node(&hostname, manager, leader, logger);
        }
        s.self_id = s.nodes[0].id.clone();
        let ingress = s.new_id('n');
        let mut v = s.shapes.network_ingress.clone();
        v["Id"] = json!(ingress);
        s.networks.push(Obj::new(&ingress, "ingress", &v["Labels"], 0, &v));
        s.add_network("main", &json!({}));
        let stacks = spec.services.div_ceil(50);
        let mut stack_objs = Vec::new();
        for k in 0..stacks {
            let labels = json!({"com.docker.stack.namespace": format!("other_{k}")});
            let net = s.add_network(&format!("other_{k}_net"), &labels);
            let cfg = s.add_file(false, &format!("other_{k}_pipeline"), &labels);
            let sec = s.add_file(true, &format!("other_{k}_token"), &labels);
            stack_objs.push((net, cfg, sec));
        }
        let node_ids: Vec<String> = s.nodes.iter().map(|n| n.id.clone()).collect();
        let mut task_no = 0usize;
        for i in 0..spec.services {
            let k = i / 50;
            let (net, cfg, sec) = &stack_objs[k];
            let replicas = spec.tasks / spec.services.max(1) + usize::from(i < spec.tasks % spec.services.max(1));
            let id = s.new_id('s');
            let name = format!("other_svc_{i}");
            let mut v = s.shapes.service.clone();
            let index = s.bump();
            v["ID"] = json!(id);
            v["Version"] = json!({"Index": index});
            let labels = json!({"com.docker.stack.namespace": format!("other_{k}"), "app": name});
            let sp = &mut v["Spec"];
            sp["Name"] = json!(name);
            sp["Labels"] = labels.clone();
            sp["Mode"] = json!({"Replicated": {"Replicas": replicas}});
            let tt = &mut sp["TaskTemplate"];
            tt["ContainerSpec"]["Labels"] = json!({"com.docker.stack.namespace": format!("other_{k}")});
            tt["ContainerSpec"]["Configs"][0]["ConfigID"] = json!(cfg.0);
            tt["ContainerSpec"]["Configs"][0]["ConfigName"] = json!(cfg.1);
            tt["ContainerSpec"]["Secrets"][0]["SecretID"] = json!(sec.0);
            tt["ContainerSpec"]["Secrets"][0]["SecretName"] = json!(sec.1);
            tt["ContainerSpec"]["Mounts"][0]["Source"] = json!(format!("other_{i}_data"));
            tt["Networks"] = json!([{"Target": net.0, "Aliases": [format!("svc_{i}")]}]);
            if let Some(ps) = v.get_mut("PreviousSpec") {
                ps["Name"] = json!(name);
            }
            if let Some(vips) = v["Endpoint"]["VirtualIPs"].as_array_mut() {
                for (j, vip) in vips.iter_mut().enumerate() {
                    if j > 0 {
                        vip["NetworkID"] = json!(net.0);
                    }
                }
            }
            let template = v["Spec"]["TaskTemplate"].clone();
            s.services.push(Obj::new(&id, &name, &labels, index, &v));
            for slot in 1..=replicas {
                let node = &node_ids[task_no % node_ids.len()];
                task_no += 1;
                s.add_task(&id, &template, slot, Some(node), &net.0);
            }
        }
        Ok(s)
    }

    fn new_id(&mut self, kind: char) -> String {
        self.next_id += 1;
        make_id(kind, self.next_id)
    }

    fn bump(&mut self) -> u64 {
        self.next_index += 1;
        self.next_index
    }

    fn add_node(&mut self, hostname: &str, manager: bool, leader: bool, logger: bool) {
        let id = self.new_id('d');
        let index = self.bump();
        let n = self.nodes.len();
        let addr = format!("10.{}.{}.{}", 1 + n / 65536, (n / 256) % 256, n % 256);
        let mut v = if manager {
            self.shapes.node_manager.clone()
        } else {
            self.shapes.node_worker.clone()
        };
        v["ID"] = json!(id);
        v["Version"] = json!({"Index": index});
        v["Description"]["Hostname"] = json!(hostname);
        v["Status"]["Addr"] = json!(addr);
        let labels = if logger { json!({"logger": "true"}) } else { json!({}) };
        v["Spec"]["Labels"] = labels.clone();
        v["Spec"]["Role"] = json!(if manager { "manager" } else { "worker" });
        if manager {
            v["ManagerStatus"] = json!({"Leader": leader, "Reachability": "reachable", "Addr": format!("{addr}:2377")});
        } else if let Some(o) = v.as_object_mut() {
            o.remove("ManagerStatus");
        }
        let role = if manager { "manager" } else { "worker" };
        self.node_roles
            .insert(id.clone(), (role.to_string(), hostname.to_string()));
        self.nodes.push(Obj::new(&id, hostname, &labels, index, &v));
    }

    fn network_json(&mut self, id: &str, name: &str, labels: &Json, body: Option<&Json>) -> Json {
        let mut v = self.shapes.network_overlay.clone();
        v["Id"] = json!(id);
        v["Name"] = json!(name);
        v["Labels"] = labels.clone();
        v["Created"] = json!(timestamp());
        if let Some(b) = body {
            for key in ["Driver", "Attachable", "Internal", "Options"] {
                if let Some(x) = b.get(key) {
                    v[key] = x.clone();
                }
            }
        }
        v
    }

    /// Adds an overlay network; returns (ID, name).
    fn add_network(&mut self, name: &str, labels: &Json) -> (String, String) {
        let id = self.new_id('n');
        let v = self.network_json(&id, name, labels, None);
        self.networks.push(Obj::new(&id, name, labels, 0, &v));
        (id, name.to_string())
    }

    /// Adds a config (or a secret); returns (ID, name).
    fn add_file(&mut self, secret: bool, name: &str, labels: &Json) -> (String, String) {
        let id = self.new_id(if secret { 'x' } else { 'c' });
        let index = self.bump();
        let mut v = if secret {
            self.shapes.secret.clone()
        } else {
            self.shapes.config.clone()
        };
        v["ID"] = json!(id);
        v["Version"] = json!({"Index": index});
        v["Spec"]["Name"] = json!(name);
        v["Spec"]["Labels"] = labels.clone();
        let obj = Obj::new(&id, name, labels, index, &v);
        if secret {
            self.secrets.push(obj);
        } else {
            self.configs.push(obj);
        }
        (id, name.to_string())
    }

    /// A task of a service from its task template; `node: None` is pending (no node fits).
    fn add_task(&mut self, service_id: &str, template: &Json, slot: usize, node: Option<&str>, net: &str) {
        let id = self.new_id('t');
        let index = self.bump();
        let mut v = self.shapes.task.clone();
        v["ID"] = json!(id);
        v["Version"] = json!({"Index": index});
        v["ServiceID"] = json!(service_id);
        v["Slot"] = json!(slot);
        v["Spec"] = template.clone();
        v["DesiredState"] = json!("running");
        let running = node.is_some();
        match node {
            Some(n) => {
                v["NodeID"] = json!(n);
                v["Status"]["State"] = json!("running");
                v["Status"]["Message"] = json!("started");
                v["Status"]["ContainerStatus"]["ContainerID"] = json!(format!("{:064x}", self.next_id));
            }
            None => {
                if let Some(o) = v.as_object_mut() {
                    o.remove("NodeID");
                }
                v["Status"] = json!({"State": "pending", "Message": "pending task scheduling",
                    "Err": "no suitable node", "Timestamp": timestamp()});
            }
        }
        if let Some(atts) = v["NetworksAttachments"].as_array_mut() {
            if let Some(last) = atts.last_mut() {
                last["Network"]["ID"] = json!(net);
            }
        }
        self.tasks.push(TaskObj {
            id,
            service_id: service_id.to_string(),
            node_id: node.unwrap_or_default().to_string(),
            desired: "running",
            running,
            bytes: Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
        });
    }

    /// Nodes a service's placement constraints allow (`node.labels.K`,
    /// `node.role`, `node.id`, `node.hostname` with `==` or `!=`).
    fn eligible(&self, spec: &Json) -> Vec<String> {
        let constraints: Vec<String> = spec["TaskTemplate"]["Placement"]["Constraints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect();
        self.nodes
            .iter()
            .filter(|n| {
                let (role, host) = self.node_roles.get(&n.id).cloned().unwrap_or_default();
                constraints.iter().all(|c| {
                    let (key, want, eq) = match (c.split_once("!="), c.split_once("==")) {
                        (Some((k, v)), _) => (k.trim(), v.trim(), false),
                        (None, Some((k, v))) => (k.trim(), v.trim(), true),
                        _ => return true,
                    };
                    let have = match key {
                        "node.role" => Some(role.clone()),
                        "node.id" => Some(n.id.clone()),
                        "node.hostname" => Some(host.clone()),
                        k => k.strip_prefix("node.labels.").and_then(|l| n.labels.get(l).cloned()),
                    };
                    (have.as_deref() == Some(want)) == eq
                })
            })
            .map(|n| n.id.clone())
            .collect()
    }

    /// Replaces a service's tasks by those its spec asks for.
    fn schedule(&mut self, service_id: &str, spec: &Json) {
        self.tasks.retain(|t| t.service_id != service_id);
        let nodes = self.eligible(spec);
        let net = spec["TaskTemplate"]["Networks"][0]["Target"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let template = spec["TaskTemplate"].clone();
        let mode = &spec["Mode"];
        if mode.get("Global").is_some() {
            for (slot, n) in nodes.iter().enumerate() {
                self.add_task(service_id, &template, slot + 1, Some(n), &net);
            }
            return;
        }
        let replicas = mode["Replicated"]["Replicas"]
            .as_u64()
            .or_else(|| mode["ReplicatedJob"]["TotalCompletions"].as_u64())
            .unwrap_or(1) as usize;
        for slot in 1..=replicas {
            let node = (!nodes.is_empty()).then(|| nodes[(slot - 1) % nodes.len()].clone());
            self.add_task(service_id, &template, slot, node.as_deref(), &net);
        }
    }

    // ---- reads ----

    pub fn find_service(&self, key: &str) -> Option<&Obj> {
        self.services
            .iter()
            .find(|s| s.id == key || s.name == key)
            .or_else(|| self.services.iter().find(|s| s.id.starts_with(key)))
    }

    pub fn list_objs<'a>(objs: &'a [Obj], f: &Filters) -> Vec<&'a Obj> {
        objs.iter()
            .filter(|o| {
                any_prefix(&o.id, f.get("id"))
                    && any_prefix(&o.name, f.get("name"))
                    && labels_match(&o.labels, f.get("label"))
            })
            .collect()
    }

    /// Networks: `name` and `id` are substring filters on the engine.
    pub fn list_networks(&self, f: &Filters) -> Vec<&Obj> {
        let any = |s: &str, w: Option<&Vec<String>>| w.is_none_or(|w| w.iter().any(|p| s.contains(p.as_str())));
        self.networks
            .iter()
            .filter(|o| {
                any(&o.id, f.get("id")) && any(&o.name, f.get("name")) && labels_match(&o.labels, f.get("label"))
            })
            .collect()
    }

    pub fn list_nodes(&self, f: &Filters) -> Vec<&Obj> {
        self.nodes
            .iter()
            .filter(|n| {
                any_prefix(&n.id, f.get("id"))
                    && f.get("name").is_none_or(|w| w.contains(&n.name))
                    && f.get("role").is_none_or(|w| {
                        w.iter()
                            .any(|r| self.node_roles.get(&n.id).is_some_and(|(role, _)| role == r))
                    })
                    && labels_match(&n.labels, f.get("node.label"))
            })
            .collect()
    }

    /// Tasks: `service` by ID, name or ID prefix (one that names no service
    /// is a 404, as on the engine); `name` a prefix of the task's
    /// `<service>.<slot>` name; `node` by ID or hostname; `desired-state`; `id`.
    pub fn list_tasks(&self, f: &Filters) -> Result<Vec<&TaskObj>, ApiError> {
        let services: Option<Vec<String>> = match f.get("service") {
            None => None,
            Some(w) => Some(
                w.iter()
                    .map(|k| {
                        self.find_service(k)
                            .map(|s| s.id.clone())
                            .ok_or_else(|| err(404, format!("service {k} not found")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        let names: HashMap<&str, &str> = match f.get("name") {
            None => HashMap::new(),
            Some(_) => self.services.iter().map(|s| (s.id.as_str(), s.name.as_str())).collect(),
        };
        let nodes: Option<Vec<String>> = f.get("node").map(|w| {
            w.iter()
                .filter_map(|k| {
                    self.nodes
                        .iter()
                        .find(|n| n.id == *k || n.name == *k)
                        .map(|n| n.id.clone())
                })
                .collect()
        });
        Ok(self
            .tasks
            .iter()
            .filter(|t| {
                services.as_ref().is_none_or(|s| s.contains(&t.service_id))
                    && nodes.as_ref().is_none_or(|n| n.contains(&t.node_id))
                    && f.get("desired-state").is_none_or(|d| d.iter().any(|d| d == t.desired))
                    && any_prefix(&t.id, f.get("id"))
                    && (f.get("name").is_none()
                        || any_prefix(
                            &format!("{}.1", names.get(t.service_id.as_str()).copied().unwrap_or_default()),
                            f.get("name"),
                        ))
            })
            .collect())
    }

    /// (running, desired) tasks by service ID, for `?status=true`.
    pub fn service_status(&self) -> HashMap<&str, (u64, u64)> {
        let mut m: HashMap<&str, (u64, u64)> = HashMap::new();
        for t in &self.tasks {
            let e = m.entry(t.service_id.as_str()).or_default();
            e.1 += 1;
            if t.running {
                e.0 += 1;
            }
        }
        m
    }

    // ---- writes ----

    fn name_of(body: &Json) -> Result<String, ApiError> {
        body["Name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                err(
                    400,
                    "rpc error: code = InvalidArgument desc = name must be valid as a DNS name component",
                )
            })
    }

    pub fn create_service(&mut self, spec: Json) -> Result<(Json, Emitted), ApiError> {
        let name = Swarm::name_of(&spec)?;
        if self.services.iter().any(|s| s.name == name) {
            return Err(err(
                409,
                format!("rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {name} already exists"),
            ));
        }
        let id = self.new_id('s');
        let index = self.bump();
        let now = timestamp();
        let endpoint = spec
            .get("EndpointSpec")
            .cloned()
            .unwrap_or_else(|| json!({"Mode": "vip"}));
        let v = json!({"ID": id, "Version": {"Index": index}, "CreatedAt": now, "UpdatedAt": now,
            "Spec": spec, "Endpoint": {"Spec": endpoint}});
        self.services
            .push(Obj::new(&id, &name, &v["Spec"]["Labels"], index, &v));
        self.schedule(&id, &v["Spec"]);
        Ok((json!({"ID": id}), ("service", "create", id, name)))
    }

    pub fn update_service(&mut self, key: &str, version: Option<u64>, spec: Json) -> Result<Emitted, ApiError> {
        let pos = self.service_pos(key)?;
        let cur = &self.services[pos];
        if version != Some(cur.index) {
            return Err(err(500, "rpc error: code = Unknown desc = update out of sequence"));
        }
        let mut v = cur.value().map_err(|e| err(500, e))?;
        let (id, name) = (cur.id.clone(), cur.name.clone());
        let reschedule = v["Spec"]["TaskTemplate"] != spec["TaskTemplate"] || v["Spec"]["Mode"] != spec["Mode"];
        let index = self.bump();
        v["PreviousSpec"] = v["Spec"].take();
        v["Spec"] = spec;
        v["Version"] = json!({"Index": index});
        v["UpdatedAt"] = json!(timestamp());
        if let Some(ep) = v["Spec"].get("EndpointSpec").cloned() {
            v["Endpoint"]["Spec"] = ep;
        }
        let new_name = v["Spec"]["Name"].as_str().unwrap_or(&name).to_string();
        self.services[pos] = Obj::new(&id, &new_name, &v["Spec"]["Labels"], index, &v);
        if reschedule {
            self.schedule(&id, &v["Spec"]);
        }
        Ok(("service", "update", id, new_name))
    }

    fn service_pos(&self, key: &str) -> Result<usize, ApiError> {
        let id = self
            .find_service(key)
            .map(|s| s.id.clone())
            .ok_or_else(|| err(404, format!("service {key} not found")))?;
        self.services
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| err(404, format!("service {key} not found")))
    }

    pub fn remove_service(&mut self, key: &str) -> Result<Emitted, ApiError> {
        let pos = self.service_pos(key)?;
        let s = self.services.remove(pos);
        self.tasks.retain(|t| t.service_id != s.id);
        Ok(("service", "remove", s.id, s.name))
    }

    pub fn create_network(&mut self, body: Json) -> Result<(Json, Emitted), ApiError> {
        let name = Swarm::name_of(&body)?;
        if self.networks.iter().any(|n| n.name == name) {
            return Err(err(409, format!("network with name {name} already exists")));
        }
        let id = self.new_id('n');
        let labels = body.get("Labels").cloned().unwrap_or_else(|| json!({}));
        let v = self.network_json(&id, &name, &labels, Some(&body));
        self.networks.push(Obj::new(&id, &name, &labels, 0, &v));
        Ok((json!({"Id": id, "Warning": ""}), ("network", "create", id, name)))
    }

    /// Creates a config or a secret (a secret's data is never listed).
    pub fn create_file(&mut self, secret: bool, mut body: Json) -> Result<(Json, Emitted), ApiError> {
        let name = Swarm::name_of(&body)?;
        let kind = if secret { "secret" } else { "config" };
        let list = if secret { &self.secrets } else { &self.configs };
        if list.iter().any(|c| c.name == name) {
            return Err(err(
                409,
                format!("rpc error: code = AlreadyExists desc = {kind} {name} already exists"),
            ));
        }
        if secret {
            if let Some(o) = body.as_object_mut() {
                o.remove("Data");
            }
        }
        let id = self.new_id(if secret { 'x' } else { 'c' });
        let index = self.bump();
        let now = timestamp();
        let v = json!({"ID": id, "Version": {"Index": index}, "CreatedAt": now, "UpdatedAt": now, "Spec": body});
        let obj = Obj::new(&id, &name, &v["Spec"]["Labels"], index, &v);
        if secret {
            self.secrets.push(obj);
        } else {
            self.configs.push(obj);
        }
        let event = if secret { "secret" } else { "config" };
        Ok((json!({"ID": id}), (event, "create", id, name)))
    }

    /// Removes a network, config or secret by ID or name.
    pub fn remove(&mut self, kind: &'static str, key: &str) -> Result<Emitted, ApiError> {
        let list = match kind {
            "network" => &mut self.networks,
            "config" => &mut self.configs,
            _ => &mut self.secrets,
        };
        let pos = list
            .iter()
            .position(|o| o.id == key || o.name == key)
            .ok_or_else(|| err(404, format!("{kind} {key} not found")))?;
        let o = list.remove(pos);
        let action = if kind == "network" { "destroy" } else { "remove" };
        Ok((kind, action, o.id, o.name))
    }

    pub fn update_node(&mut self, key: &str, version: Option<u64>, spec: Json) -> Result<Emitted, ApiError> {
        let pos = self
            .nodes
            .iter()
            .position(|n| n.id == key || n.name == key)
            .ok_or_else(|| err(404, format!("node {key} not found")))?;
        let cur = &self.nodes[pos];
        if version != Some(cur.index) {
            return Err(err(500, "rpc error: code = Unknown desc = update out of sequence"));
        }
        let mut v = cur.value().map_err(|e| err(500, e))?;
        let (id, name) = (cur.id.clone(), cur.name.clone());
        let index = self.bump();
        v["Spec"] = spec;
        v["Version"] = json!({"Index": index});
        v["UpdatedAt"] = json!(timestamp());
        self.nodes[pos] = Obj::new(&id, &name, &v["Spec"]["Labels"], index, &v);
        Ok(("node", "update", id, name))
    }

    /// `/info`, with this node's ID and the swarm's counts.
    pub fn info(&self) -> Json {
        let mut v = self.shapes.info.clone();
        v["Name"] = json!("manager-1");
        v["Swarm"]["NodeID"] = json!(self.self_id);
        // The engine's clock now, as a real engine reports it.
        v["SystemTime"] = json!(humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string());
        v["Swarm"]["LocalNodeState"] = json!("active");
        v["Swarm"]["ControlAvailable"] = json!(true);
        v["Swarm"]["Nodes"] = json!(self.nodes.len());
        v["Swarm"]["Managers"] = json!(self.node_roles.values().filter(|(r, _)| r == "manager").count());
        v
    }
}
