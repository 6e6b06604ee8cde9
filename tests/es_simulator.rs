//! The Elasticsearch simulator of the stand-in image (tests/standin/es.rs),
//! run as plain processes on loopback: formation, bootstrapping once, the
//! cluster UUID kept in the data path, a foreign data path refused, health
//! from the shard table under the allocation settings, and the `_cat` and
//! settings APIs swarmlog reads; TLS as Elasticsearch, Kibana and Logstash
//! speak it (HTTPS, transport mutual TLS, the clients' trust), with the
//! fixed certificates of tests/standin/testdata. The sandbox swarm runs the
//! same binary as the Elasticsearch image.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

/// The stand-in, built once per test run as the sandbox builds it: its own
/// cargo package (tests/standin/Cargo.toml), static, into target/standin. A
/// failed build fails every test that needs it, with cargo's output.
fn standin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BIN.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target_dir = repo.join("target/standin");
        let out = common::standin_cargo(repo, &target_dir)
            .output()
            .map_err(|e| format!("running cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "building the stand-in (tests/standin/Cargo.toml) failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(target_dir.join("x86_64-unknown-linux-gnu/release/standin"))
    });
    match built {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

/// A free loopback port (bound, then released for the simulator to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One simulated node; killed when dropped (also when a test fails).
struct Node {
    name: String,
    http: u16,
    transport: u16,
    data: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    fn new(dir: &Path, name: &str) -> Node {
        Node {
            name: name.to_string(),
            http: free_port(),
            transport: free_port(),
            data: dir.join(name).join("data"),
            child: None,
            log: dir.join(format!("{name}.log")),
        }
    }

    /// Starts (or restarts) the process with these settings.
    fn start(&mut self, seeds: &[u16], initial_masters: &[&str], extra: &[(&str, &str)]) {
        self.stop();
        let seeds: Vec<String> = seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(standin());
        cmd.env_clear()
            .env("STANDIN_ROLE", "elasticsearch")
            .env("STANDIN_PORTS", "")
            .env("node.name", &self.name)
            .env("http.port", self.http.to_string())
            .env("transport.port", self.transport.to_string())
            .env("path.data", &self.data)
            .env("discovery.seed_hosts", seeds.join(","))
            .env("STANDIN_ES_RECOVERY", "0.3")
            .env("STANDIN_ES_NODE_LEFT_DELAY", "1")
            .stdout(Stdio::null())
            .stderr(log);
        if !initial_masters.is_empty() {
            cmd.env("cluster.initial_master_nodes", initial_masters.join(","));
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("the stand-in starts"));
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One HTTP/1.1 request to loopback, std only: (status, body as JSON, or
/// as a JSON string when it is not JSON).
fn call(method: &str, url: &str, body: Option<&str>) -> Option<(u16, Value)> {
    call_with(method, url, body, None).map(|(status, _, v)| (status, v))
}

/// A request with Basic credentials (`user`, `password`): (status, the
/// head's lines, body).
fn call_with(method: &str, url: &str, body: Option<&str>, auth: Option<(&str, &str)>) -> Option<(u16, String, Value)> {
    use base64::Engine as _;
    let rest = url.strip_prefix("http://")?;
    let (addr, path) = rest.split_at(rest.find('/')?);
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let body = body.unwrap_or("");
    let auth = auth
        .map(|(u, p)| {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        })
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, text) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        head.to_string(),
        serde_json::from_str(text).unwrap_or(Value::String(text.to_string())),
    ))
}

fn get(node: &Node, path: &str) -> Option<(u16, Value)> {
    call("GET", &node.url(path), None)
}

/// Waits up to `secs` for `check` to give a value; the message says what
/// was last seen and the nodes' logs.
fn wait<T>(what: &str, secs: u64, nodes: &[&Node], mut check: impl FnMut() -> Result<T, String>) -> T {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    while Instant::now() < until {
        match check() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs: Vec<String> = nodes
        .iter()
        .map(|n| format!("--- {}:\n{}", n.name, n.log_text()))
        .collect();
    panic!(
        "timed out after {secs}s waiting for {what}; last: {last}\n{}",
        logs.join("\n")
    );
}

fn health(node: &Node) -> Result<Value, String> {
    match get(node, "/_cluster/health") {
        Some((200, v)) => Ok(v),
        other => Err(format!("{}: {other:?}", node.name)),
    }
}

/// Every node reports `status` with `count` nodes, no shard moving.
fn wait_health(nodes: &[&Node], status: &str, count: u64) {
    for n in nodes {
        wait(
            &format!("{} to say {status} with {count} nodes", n.name),
            30,
            nodes,
            || {
                let h = health(n)?;
                let settled = h["relocating_shards"] == 0 && h["initializing_shards"] == 0;
                if h["status"] == status && h["number_of_nodes"] == count && settled {
                    Ok(())
                } else {
                    Err(h.to_string())
                }
            },
        );
    }
}

fn cluster_uuid(node: &Node) -> String {
    get(node, "/")
        .and_then(|(_, v)| v["cluster_uuid"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Three master-eligible data nodes, each seeding from the other two.
fn three(dir: &Path) -> [Node; 3] {
    let mut nodes = [Node::new(dir, "es-a"), Node::new(dir, "es-b"), Node::new(dir, "es-c")];
    let ports: Vec<u16> = nodes.iter().map(|n| n.transport).collect();
    for n in nodes.iter_mut() {
        n.start(&ports, &["es-a", "es-b", "es-c"], &[]);
    }
    nodes
}

fn tempdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("es-sim-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn three_nodes_bootstrap_once_then_a_fourth_joins_without_initial_masters() {
    let dir = tempdir("form");
    let nodes = three(&dir);
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_health(&refs, "green", 3);
    let uuid = cluster_uuid(&nodes[0]);
    assert!(uuid.len() > 10, "a cluster UUID: {uuid:?}");
    for n in &nodes {
        assert_eq!(cluster_uuid(n), uuid, "{} is in the same cluster", n.name);
    }
    let (_, cat) = get(&nodes[1], "/_cat/nodes?format=json&h=name,master,node.role").expect("_cat/nodes");
    let rows = cat.as_array().expect("an array");
    assert_eq!(rows.len(), 3);
    let masters: Vec<&Value> = rows.iter().filter(|r| r["master"] == "*").collect();
    assert_eq!(masters.len(), 1, "one elected master: {cat}");
    assert_eq!(masters[0]["name"], "es-a", "the lowest name among the voters");
    assert!(rows.iter().all(|r| r["node.role"] == "dm"));
    // A fresh node with no initial masters joins the cluster it discovers.
    let mut d = Node::new(&dir, "es-d");
    d.start(&[nodes[0].transport, nodes[1].transport], &[], &[]);
    let mut refs: Vec<&Node> = nodes.iter().collect();
    refs.push(&d);
    wait_health(&refs, "green", 4);
    assert_eq!(cluster_uuid(&d), uuid);
    let (_, alloc) = get(&d, "/_cat/allocation?format=json").expect("_cat/allocation");
    let alloc = alloc.as_array().expect("an array").clone();
    assert_eq!(alloc.len(), 4, "{alloc:?}");
    let shards: u64 = alloc
        .iter()
        .map(|r| r["shards"].as_str().unwrap_or("0").parse::<u64>().unwrap_or(0))
        .sum();
    assert_eq!(shards, 8, "4 primaries and 4 replicas: {alloc:?}");
}

#[test]
fn a_fresh_node_never_bootstraps_alone_and_a_foreign_data_path_is_refused() {
    let dir = tempdir("refuse");
    // No initial masters, nobody formed: it waits and says why.
    let mut lone = Node::new(&dir, "es-lone");
    let nobody = free_port();
    lone.start(&[nobody], &[], &[]);
    let problem = wait("the lone node's reason", 10, &[&lone], || {
        match get(&lone, "/_standin/problem") {
            Some((200, Value::String(p))) if !p.is_empty() => Ok(p),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(problem.contains("cluster.initial_master_nodes"), "{problem}");
    let (status, body) = get(&lone, "/_cluster/health").expect("an answer");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "master_not_discovered_exception");
    assert_eq!(cluster_uuid(&lone), "_na_");
    lone.stop();
    // A data path that belongs to another cluster (bootstrapped alone).
    let mut other = Node::new(&dir, "es-x");
    other.start(&[nobody], &[], &[("discovery.type", "single-node")]);
    wait_health(&[&other], "yellow", 1);
    let foreign = cluster_uuid(&other);
    let nodes = three(&dir);
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_health(&refs, "green", 3);
    let uuid = cluster_uuid(&nodes[0]);
    assert_ne!(foreign, uuid);
    // The same data path, now pointed at the cluster: it refuses, keeps its UUID.
    let ports: Vec<u16> = nodes.iter().map(|n| n.transport).collect();
    other.start(&ports, &[], &[]);
    let problem = wait("the foreign node's refusal", 10, &[&other], || {
        match get(&other, "/_standin/problem") {
            Some((200, Value::String(p))) if p.contains("another cluster") => Ok(p),
            other => Err(format!("{other:?}")),
        }
    });
    assert!(problem.contains(&foreign), "{problem}");
    assert_eq!(cluster_uuid(&other), foreign, "its data is kept as it is");
    wait_health(&refs, "green", 3);
    // A member restarted without initial masters keeps its cluster.
    let mut nodes = nodes;
    nodes[2].start(&ports, &[], &[]);
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_health(&refs, "green", 3);
    assert_eq!(cluster_uuid(&nodes[2]), uuid);
}

#[test]
fn allocation_settings_gate_recovery_and_exclusions_move_shards() {
    let dir = tempdir("alloc");
    let mut nodes = three(&dir);
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_health(&refs, "green", 3);
    // The rolling-restart procedure: primaries only, flush, restart a node.
    let (status, ack) = call(
        "PUT",
        &nodes[0].url("/_cluster/settings"),
        Some(r#"{"persistent":{"cluster.routing.allocation.enable":"primaries"}}"#),
    )
    .expect("PUT settings");
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["acknowledged"], true);
    let (_, flat) = get(&nodes[2], "/_cluster/settings?flat_settings=true").expect("settings");
    let (_, nested) = get(&nodes[1], "/_cluster/settings").expect("settings");
    assert_eq!(
        nested["persistent"]["cluster"]["routing"]["allocation"]["enable"],
        "primaries"
    );
    let _ = flat;
    wait("the setting on every node", 10, &[], || {
        let (_, s) = get(&nodes[2], "/_cluster/settings?flat_settings=true").ok_or("no answer")?;
        (s["persistent"]["cluster.routing.allocation.enable"] == "primaries")
            .then_some(())
            .ok_or(s.to_string())
    });
    let (status, flush) = call("POST", &nodes[0].url("/_flush"), None).expect("flush");
    assert_eq!(status, 200);
    assert_eq!(flush["_shards"]["failed"], 0);
    nodes[2].stop();
    let survivors: Vec<&Node> = nodes[..2].iter().collect();
    wait_health(&survivors, "yellow", 2);
    let ports: Vec<u16> = nodes.iter().map(|n| n.transport).collect();
    nodes[2].start(&ports, &[], &[]);
    let refs: Vec<&Node> = nodes.iter().collect();
    // Back, but replicas may not be allocated while only primaries are.
    wait_health(&refs, "yellow", 3);
    std::thread::sleep(Duration::from_secs(2));
    let h = health(&nodes[0]).expect("health");
    assert_eq!(h["status"], "yellow", "replicas stay unassigned under `primaries`: {h}");
    // Reset (null): the node's copies recover, green.
    let (status, _) = call(
        "PUT",
        &nodes[1].url("/_cluster/settings"),
        Some(r#"{"persistent":{"cluster":{"routing":{"allocation":{"enable":null}}}}}"#),
    )
    .expect("reset");
    assert_eq!(status, 200);
    wait_health(&refs, "green", 3);
    // Exclude a node by name: its shards move away, it stays in the cluster.
    call(
        "PUT",
        &nodes[0].url("/_cluster/settings"),
        Some(r#"{"persistent":{"cluster.routing.allocation.exclude._name":"es-c"}}"#),
    )
    .expect("exclude");
    wait("es-c to hold no shard", 20, &refs, || {
        let (_, a) = get(&nodes[0], "/_cat/allocation?format=json&h=node,shards").ok_or("no answer")?;
        let c = a
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["node"] == "es-c").cloned())
            .ok_or(a.to_string())?;
        (c["shards"] == "0").then_some(()).ok_or(a.to_string())
    });
    wait_health(&refs, "green", 3);
    // The request log holds what was asked, in order.
    let (_, log) = get(&nodes[0], "/_standin/requests").expect("requests");
    let log = log.as_str().unwrap_or_default().to_string();
    let puts: Vec<&str> = log.lines().filter(|l| l.contains(" PUT /_cluster/settings")).collect();
    assert_eq!(puts.len(), 2, "{log}");
    assert!(
        puts[0].contains("primaries") && puts[1].contains("exclude._name"),
        "{log}"
    );
    // The simulated disk.
    let (status, _) = call("PUT", &nodes[1].url("/_standin/disk"), Some(r#"{"percent": 91}"#)).expect("disk");
    assert_eq!(status, 200);
    wait("es-b at 91%", 10, &refs, || {
        let (_, a) = get(&nodes[0], "/_cat/allocation?format=json&h=node,disk.percent").ok_or("no answer")?;
        a.as_array()
            .and_then(|rows| rows.iter().find(|r| r["node"] == "es-b" && r["disk.percent"] == "91"))
            .map(|_| ())
            .ok_or(a.to_string())
    });
}

#[test]
fn two_of_three_masters_gone_means_no_master() {
    let dir = tempdir("quorum");
    let mut nodes = three(&dir);
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_health(&refs, "green", 3);
    nodes[1].stop();
    nodes[2].stop();
    wait("no master on es-a", 15, &[&nodes[0]], || {
        match get(&nodes[0], "/_cluster/health") {
            Some((503, v)) if v["error"]["type"] == "master_not_discovered_exception" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let ports: Vec<u16> = nodes.iter().map(|n| n.transport).collect();
    nodes[1].start(&ports, &[], &[]);
    let two: Vec<&Node> = nodes[..2].iter().collect();
    wait_health(&two, "yellow", 2);
}

/// swarmlog's own client reads the simulator into its own types (what
/// /status shows), writes the allocation setting and flushes; a node with no
/// master is an error the client names, an address nobody serves is
/// unreachable.
#[test]
fn the_operators_client_reads_and_steers_the_cluster() {
    use swarmlog::es::{client::Client, Color};
    let dir = tempdir("client");
    let nodes = three(&dir);
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_health(&refs, "green", 3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(Duration::from_secs(3));
    let base = format!("http://127.0.0.1:{}", nodes[1].http);
    rt.block_on(async {
        let s = client.read(&base).await.expect("a read");
        assert_eq!(s.health.status, Color::Green);
        assert_eq!(s.cluster_uuid.as_deref(), Some(cluster_uuid(&nodes[0]).as_str()));
        let names: Vec<&str> = s.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["es-a", "es-b", "es-c"]);
        assert!(s.nodes[0].elected_master && s.nodes.iter().all(|n| n.master_eligible));
        assert_eq!(s.nodes.iter().filter_map(|n| n.shards).sum::<u64>(), 8);
        assert!(s
            .nodes
            .iter()
            .all(|n| n.disk_percent.is_some() && n.disk_total_bytes.is_some()));
        assert_eq!(s.allocation_enable, None);

        client
            .put_persistent(&base, "cluster.routing.allocation.enable", Some("primaries"))
            .await
            .expect("setting acknowledged");
        client.flush(&base).await.expect("flush");
        let s = client.read(&base).await.expect("a read");
        assert_eq!(s.allocation_enable.as_deref(), Some("primaries"));
        client
            .put_persistent(&base, "cluster.routing.allocation.enable", None)
            .await
            .expect("reset acknowledged");
        let s = client.read(&base).await.expect("a read");
        assert_eq!(s.allocation_enable, None);

        // Nobody listens there: unreachable, quickly, named.
        let gone = format!("http://127.0.0.1:{}", free_port());
        match client.read_any(&[gone.clone(), base.clone()]).await {
            Ok(s) => assert_eq!(s.endpoint, base, "the second address answered"),
            Err(e) => panic!("{e:?}"),
        }
        let err = client.read(&gone).await.expect_err("nobody there");
        assert!(err.to_string().contains(&gone), "{err}");
    });
    let log: String = get(&nodes[1], "/_standin/requests")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    assert!(log.contains("PUT /_cluster/settings"), "{log}");
    assert!(log.contains("POST /_flush"), "{log}");

    // A lone fresh node: no master, the client says what Elasticsearch says.
    let mut lone = Node::new(&dir, "es-lone");
    lone.start(&[], &[], &[]);
    let base = format!("http://127.0.0.1:{}", lone.http);
    wait("the lone node answering /", 20, &[&lone], || match get(&lone, "/") {
        Some((200, _)) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    rt.block_on(async {
        let err = client.read(&base).await.expect_err("no master");
        assert!(err.to_string().contains("master_not_discovered_exception"), "{err}");
        assert_eq!(client.root(&base).await.expect("root").1, None, "no cluster UUID yet");
    });
}

/// The day `days` ago (UTC), as backing indices are dated: `yyyy.MM.dd`.
fn day_ago(days: u64) -> String {
    let t = std::time::SystemTime::now() - Duration::from_secs(days * 86_400);
    humantime::format_rfc3339(t).to_string()[..10].replace('-', ".")
}

fn call_ok(node: &Node, method: &str, path: &str, body: &str) -> Value {
    match call(method, &node.url(path), Some(body)) {
        Some((200, v)) => v,
        other => panic!("{method} {path} on {}: {other:?}", node.name),
    }
}

/// One node on its own (`discovery.type: single-node`), answering: yellow,
/// its replicas having nowhere to go.
fn single(dir: &Path, name: &str) -> Node {
    let mut n = Node::new(dir, name);
    n.start(&[], &[], &[("discovery.type", "single-node")]);
    wait_health(&[&n], "yellow", 1);
    n
}

#[test]
fn the_retention_policy_and_template_read_back_as_the_operator_wrote_them() {
    use swarmlog::es::client::Client;
    use swarmlog::es::retention::{self, Compare};
    let dir = tempdir("retention");
    let mut nodes = three(&dir);
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_health(&refs, "green", 3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(Duration::from_secs(5));
    let base = |n: &Node| format!("http://127.0.0.1:{}", n.http);
    let policy = retention::policy(Some(Duration::from_secs(14 * 86_400)));
    let template = retention::template();
    let policy_path = format!("/_ilm/policy/{}", retention::POLICY);
    let template_path = format!("/_index_template/{}", retention::TEMPLATE);
    rt.block_on(async {
        // Nothing yet: both missing (404), as the operator reads them.
        let s = client.read(&base(&nodes[0])).await.expect("a read");
        let read = s.retention;
        assert_eq!(read.policy, Ok(None));
        assert_eq!(read.template, Ok(None));
        assert_eq!(
            read.streams,
            Ok(Vec::new()),
            "a pattern matching nothing is an empty list"
        );
        assert_eq!(retention::compare_policy(None, &policy), Compare::Missing);

        client
            .put_acknowledged(&base(&nodes[0]), &policy_path, &policy)
            .await
            .expect("policy acknowledged");
        client
            .put_acknowledged(&base(&nodes[0]), &template_path, &template)
            .await
            .expect("template acknowledged");
        // Acknowledged means every node holds it: read from another node,
        // through the operator's own read and compare.
        for n in &nodes[1..] {
            let s = client.read(&base(n)).await.expect("a read");
            let p = s.retention.policy.expect("policy read");
            let t = s.retention.template.expect("template read");
            assert_eq!(retention::compare_policy(p.as_ref(), &policy), Compare::Same, "{p:?}");
            assert_eq!(
                retention::compare_template(t.as_ref(), &template),
                Compare::Same,
                "{t:?}"
            );
        }
    });
    // Elasticsearch's normalised form: the hot phase gets min_age 0ms, the
    // delete action delete_searchable_snapshot, the policy a version.
    let (_, got) = get(&nodes[2], &policy_path).expect("policy");
    let held = &got[retention::POLICY];
    assert_eq!(held["version"], 1, "{got}");
    assert_eq!(held["policy"]["phases"]["hot"]["min_age"], "0ms", "{got}");
    assert_eq!(held["policy"]["phases"]["delete"]["min_age"], "14d", "{got}");
    assert_eq!(
        held["policy"]["phases"]["delete"]["actions"]["delete"]["delete_searchable_snapshot"], true,
        "{got}"
    );
    assert_eq!(
        held["in_use_by"]["composable_templates"][0],
        retention::TEMPLATE,
        "{got}"
    );
    let (_, got) = get(&nodes[1], &template_path).expect("template");
    let t = &got["index_templates"][0]["index_template"];
    assert_eq!(
        t["template"]["settings"]["index"]["lifecycle"]["name"],
        retention::POLICY,
        "{got}"
    );
    assert_eq!(t["data_stream"]["hidden"], false, "{got}");

    // The same policy again is a no-op (no new version); a changed one is
    // version 2.
    call_ok(&nodes[0], "PUT", &policy_path, &policy.to_string());
    assert_eq!(
        get(&nodes[0], &policy_path).expect("policy").1[retention::POLICY]["version"],
        1
    );
    let seven = retention::policy(Some(Duration::from_secs(7 * 86_400)));
    call_ok(&nodes[1], "PUT", &policy_path, &seven.to_string());
    assert_eq!(
        get(&nodes[2], &policy_path).expect("policy").1[retention::POLICY]["version"],
        2
    );

    // Kept in the data path: every node restarted at once still holds both.
    let ports: Vec<u16> = nodes.iter().map(|n| n.transport).collect();
    for n in nodes.iter_mut() {
        n.stop();
    }
    for n in nodes.iter_mut() {
        n.start(&ports, &[], &[]);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_health(&refs, "green", 3);
    rt.block_on(async {
        let s = client.read(&base(&nodes[2])).await.expect("a read");
        let p = s.retention.policy.expect("policy read");
        assert_eq!(retention::compare_policy(p.as_ref(), &seven), Compare::Same, "{p:?}");
        assert!(matches!(
            retention::compare_policy(p.as_ref(), &policy),
            Compare::Differs(_)
        ));
        let t = s.retention.template.expect("template read");
        assert_eq!(retention::compare_template(t.as_ref(), &template), Compare::Same);
    });
}

#[test]
fn metadata_apis_refuse_what_elasticsearch_refuses() {
    let dir = tempdir("refuse");
    let n = single(&dir, "es-r");
    let put = |path: &str, body: &str| call("PUT", &n.url(path), Some(body)).expect("an answer");
    let error_type = |v: &Value| v["error"]["type"].as_str().unwrap_or_default().to_string();

    let (status, v) = get(&n, "/_ilm/policy/nope").expect("an answer");
    assert_eq!(
        (status, error_type(&v)),
        (404, "resource_not_found_exception".into()),
        "{v}"
    );
    let (status, v) = get(&n, "/_index_template/nope").expect("an answer");
    assert_eq!(
        (status, error_type(&v)),
        (404, "resource_not_found_exception".into()),
        "{v}"
    );
    let (status, v) = get(&n, "/_data_stream/nope").expect("an answer");
    assert_eq!(
        (status, error_type(&v)),
        (404, "index_not_found_exception".into()),
        "{v}"
    );

    let (status, v) = put("/_ilm/policy/p", r#"{"policy":{"phases":{"lukewarm":{"actions":{}}}}}"#);
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["reason"].as_str().unwrap_or_default().contains("lukewarm"),
        "{v}"
    );
    let (status, v) = put(
        "/_ilm/policy/p",
        r#"{"policy":{"phases":{"hot":{"actions":{"delete":{}}}}}}"#,
    );
    assert_eq!(status, 400, "delete is no hot action: {v}");
    let (status, v) = put("/_ilm/policy/p", "{not json");
    assert_eq!(
        (status, error_type(&v)),
        (400, "x_content_parse_exception".into()),
        "{v}"
    );

    let (status, v) = put(
        "/_index_template/a",
        r#"{"index_patterns":["logs-*"],"data_stream":{}}"#,
    );
    assert_eq!(status, 200, "{v}");
    // Same priority (0), overlapping patterns: refused, naming both.
    let (status, v) = put("/_index_template/b", r#"{"index_patterns":["logs-app-*"]}"#);
    assert_eq!(status, 400, "{v}");
    let reason = v["error"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("[b]") && reason.contains("a => [logs-*]") && reason.contains("same priority [0]"),
        "{v}"
    );
    let (status, v) = put(
        "/_index_template/b",
        r#"{"index_patterns":["logs-app-*"],"priority":5}"#,
    );
    assert_eq!(status, 200, "another priority is fine: {v}");
    let (status, v) = put("/_index_template/c", r#"{"index_patterns":["x-*"],"bogus":1}"#);
    assert_eq!(
        (status, error_type(&v)),
        (400, "x_content_parse_exception".into()),
        "{v}"
    );

    // A data stream needs a matching template with `data_stream`.
    let (status, v) = put("/_data_stream/metrics-x", "");
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("no matching index template"),
        "{v}"
    );
    let (status, v) = put("/_data_stream/logs-app-x", "");
    assert_eq!(status, 400, "b (priority 5) wins and has no data_stream: {v}");
    call_ok(&n, "PUT", "/_data_stream/logs-x", "");
    let (status, v) = put("/_data_stream/logs-x", "");
    assert_eq!(
        (status, error_type(&v)),
        (400, "resource_already_exists_exception".into()),
        "{v}"
    );
    let (status, v) = call("DELETE", &n.url("/_index_template/a"), None).expect("an answer");
    assert_eq!(status, 400, "a template in use by a data stream stays: {v}");
    let (status, v) = put("/_standin/not-an-api", "");
    assert_eq!(status, 400, "{v}");
}

#[test]
fn backing_indices_age_out_under_the_policy_and_the_operator_reads_them() {
    use swarmlog::es::client::Client;
    use swarmlog::es::retention;
    let dir = tempdir("ilm");
    let n = single(&dir, "es-ilm");
    let policy = retention::policy(Some(Duration::from_secs(30 * 86_400)));
    call_ok(&n, "PUT", "/_ilm/policy/swarmlog-logs", &policy.to_string());
    call_ok(
        &n,
        "PUT",
        "/_index_template/swarmlog-logs",
        &retention::template().to_string(),
    );
    call_ok(&n, "PUT", "/_data_stream/logs-swarm-default", "");
    let (_, v) = get(&n, "/_data_stream/logs-swarm-*").expect("data streams");
    let ds = &v["data_streams"][0];
    assert_eq!(ds["name"], "logs-swarm-default", "{v}");
    assert_eq!(ds["template"], "swarmlog-logs", "{v}");
    assert_eq!(ds["ilm_policy"], "swarmlog-logs", "{v}");
    // Named `.ds-<stream>-<yyyy.MM.dd>-<generation>`, dated today.
    let write_index = ds["indices"][0]["index_name"].as_str().unwrap_or_default().to_string();
    let today = [day_ago(0), day_ago(1)].map(|d| format!(".ds-logs-swarm-default-{d}-000001"));
    assert!(today.contains(&write_index), "{v}");
    assert_eq!(ds["indices"][0]["ilm_policy"], "swarmlog-logs", "{v}");

    // Two indices rolled over long ago: 60 days (rolled over 50 days ago,
    // when the next began: past the 30 days, deleted) and 50 days (rolled
    // over today, kept).
    let (old, older) = (day_ago(50), day_ago(60));
    for date in [&old, &older] {
        call_ok(
            &n,
            "POST",
            "/_standin/data_stream/logs-swarm-default/backing_index",
            &format!("{{\"date\":\"{date}\"}}"),
        );
    }
    let names = || -> Vec<String> {
        get(&n, "/_data_stream/logs-swarm-default")
            .map(|(_, v)| {
                v["data_streams"][0]["indices"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|i| i["index_name"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    };
    let kept = wait("ILM to delete the index past the delete phase", 20, &[&n], || {
        let names = names();
        if names.len() == 2 {
            Ok(names)
        } else {
            Err(format!("{names:?}"))
        }
    });
    assert_eq!(kept[0], format!(".ds-logs-swarm-default-{old}-000002"));
    assert_eq!(kept[1], write_index);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(Duration::from_secs(5));
    let s = rt
        .block_on(client.read(&format!("http://127.0.0.1:{}", n.http)))
        .expect("a read");
    let streams = s.retention.streams.expect("streams");
    assert_eq!(streams[0].indices, kept);
    assert_eq!(streams[0].ilm_policy.as_deref(), Some("swarmlog-logs"));
    assert_eq!(
        retention::backing_index_day(&kept[0]).as_deref(),
        Some(old.replace('.', "-").as_str())
    );
    // A policy in use by indices is not deleted.
    let (status, v) = call("DELETE", &n.url("/_ilm/policy/swarmlog-logs"), None).expect("an answer");
    assert_eq!(status, 400, "{v}");
}

#[test]
fn the_flood_stage_blocks_indices_until_the_disk_is_below_the_high_watermark() {
    use swarmlog::es::client::Client;
    use swarmlog::es::disk::{self, Level};
    let dir = tempdir("flood");
    let n = single(&dir, "es-flood");
    call_ok(
        &n,
        "PUT",
        "/_index_template/t",
        r#"{"index_patterns":["logs-swarm-*"],"data_stream":{}}"#,
    );
    call_ok(&n, "PUT", "/_data_stream/logs-swarm-default", "");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = Client::new(Duration::from_secs(5));
    let base = format!("http://127.0.0.1:{}", n.http);
    let read = || rt.block_on(client.read(&base)).expect("a read");
    let s = read();
    assert_eq!(
        s.watermarks,
        disk::Watermarks::default(),
        "include_defaults gives Elasticsearch's defaults"
    );
    assert_eq!(s.read_only, Ok(Vec::new()));
    let disk = |p: u32| call_ok(&n, "PUT", "/_standin/disk", &format!("{{\"percent\":{p}}}"));
    let blocked = |want: bool| {
        wait(&format!("read-only = {want}"), 15, &[&n], || {
            let s = rt.block_on(client.read(&base)).map_err(|e| e.to_string())?;
            let ro = s.read_only.clone().map_err(|e| e.to_string())?;
            if ro.is_empty() != want {
                Ok(s)
            } else {
                Err(format!("{ro:?}"))
            }
        })
    };
    disk(96);
    let s = blocked(true);
    let streams = s.retention.streams.clone().expect("streams");
    let index = streams[0].indices[0].clone();
    assert!(index.starts_with(".ds-logs-swarm-default-"), "{index}");
    // Every index with a shard on the node: the backing index and the
    // simulator's own shard table's index.
    let both = vec![index.clone(), "logs-standin".to_string()];
    assert_eq!(s.read_only, Ok(both.clone()));
    assert_eq!(s.nodes[0].disk_level(&s.watermarks), Some(Level::FloodStage));
    // Between high and flood: still blocked (released below high only).
    disk(91);
    std::thread::sleep(Duration::from_millis(1200));
    let s = read();
    assert_eq!(s.read_only, Ok(both), "released only below the high watermark");
    assert_eq!(s.nodes[0].disk_level(&s.watermarks), Some(Level::High));
    disk(50);
    let s = blocked(false);
    assert_eq!(s.nodes[0].disk_level(&s.watermarks), Some(Level::Ok));

    // Watermarks set by the user are what the operator reads (the
    // headrooms default to -1 then, as in Elasticsearch).
    call_ok(
        &n,
        "PUT",
        "/_cluster/settings",
        r#"{"persistent":{"cluster.routing.allocation.disk.watermark.high":"80%"}}"#,
    );
    let s = read();
    assert_eq!(s.watermarks.high.value, "80%");
    assert_eq!(s.watermarks.low.max_headroom.as_deref(), Some("-1"));
}

/// Every node answers its health with the 3 nodes, green, to `auth`.
fn all_up(nodes: &[Node], auth: Option<(&str, &str)>) -> Result<(), String> {
    for n in nodes {
        let (status, _, h) = call_with("GET", &n.url("/_cluster/health"), None, auth)
            .ok_or_else(|| format!("{}: no answer yet", n.name))?;
        if status != 200 || h["number_of_nodes"] != 3 || h["status"] != "green" {
            return Err(format!("{}: {status} {h}", n.name));
        }
    }
    Ok(())
}

#[test]
fn with_security_on_every_request_authenticates_and_the_native_realm_is_kept() {
    const BOOTSTRAP: &str = "bootstrap-secret";
    let dir = tempdir("security");
    let mut nodes = [
        Node::new(&dir, "es-a"),
        Node::new(&dir, "es-b"),
        Node::new(&dir, "es-c"),
    ];
    let ports: Vec<u16> = nodes.iter().map(|n| n.transport).collect();
    let secure = [("xpack.security.enabled", "true"), ("ELASTIC_PASSWORD", BOOTSTRAP)];
    for n in nodes.iter_mut() {
        n.start(&ports, &["es-a", "es-b", "es-c"], &secure);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    let elastic = Some(("elastic", BOOTSTRAP));
    let as_user = |n: &Node, auth: Option<(&str, &str)>, method: &str, path: &str, body: &str| {
        call_with(method, &n.url(path), Some(body), auth).expect("an answer")
    };
    wait("a green cluster on every node, as elastic", 30, &refs, || {
        all_up(&nodes, elastic)
    });

    // No credentials, wrong ones, a reserved user without a password: 401
    // with the challenge, as Elasticsearch answers.
    let (status, head, v) = as_user(&nodes[1], None, "GET", "/", "");
    assert_eq!(status, 401, "{v}");
    assert!(head.contains("WWW-Authenticate: Basic realm=\"security\""), "{head}");
    assert_eq!(v["error"]["type"], "security_exception", "{v}");
    assert!(v["error"]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("missing authentication credentials"));
    let (status, _, v) = as_user(&nodes[1], Some(("elastic", "wrong-one")), "GET", "/", "");
    assert_eq!(status, 401, "{v}");
    assert!(v["error"]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("unable to authenticate user [elastic]"));
    let (status, _, _) = as_user(&nodes[1], Some(("kibana_system", "anything")), "GET", "/", "");
    assert_eq!(status, 401, "kibana_system has no password yet");

    // kibana_system's password set on one node authenticates on another.
    let (status, _, v) = as_user(
        &nodes[0],
        elastic,
        "POST",
        "/_security/user/kibana_system/_password",
        r#"{"password":"kibana-secret"}"#,
    );
    assert_eq!(status, 200, "{v}");
    let (status, _, v) = as_user(
        &nodes[2],
        Some(("kibana_system", "kibana-secret")),
        "GET",
        "/_security/_authenticate",
        "",
    );
    assert_eq!((status, v["username"].as_str()), (200, Some("kibana_system")), "{v}");
    let (status, _, v) = as_user(
        &nodes[0],
        elastic,
        "POST",
        "/_security/user/kibana_system/_password",
        r#"{"password":"short"}"#,
    );
    assert_eq!(status, 400, "{v}");

    // A least-privilege role and user (Logstash's): it may read the
    // cluster's health and keep templates, not change settings or users.
    let role = r#"{"cluster":["monitor","manage_ilm","manage_index_templates"],"indices":[{"names":["logs-swarm-*"],"privileges":["create_doc","auto_configure"]}]}"#;
    let (status, _, v) = as_user(&nodes[0], elastic, "PUT", "/_security/role/swarm_writer", role);
    assert_eq!((status, &v["role"]["created"]), (200, &Value::Bool(true)), "{v}");
    let (status, _, v) = as_user(
        &nodes[0],
        elastic,
        "PUT",
        "/_security/user/swarm_logstash",
        r#"{"password":"logstash-secret","roles":["swarm_writer"]}"#,
    );
    assert_eq!((status, &v["created"]), (200, &Value::Bool(true)), "{v}");
    let logstash = Some(("swarm_logstash", "logstash-secret"));
    assert_eq!(as_user(&nodes[1], logstash, "GET", "/_cluster/health", "").0, 200);
    assert_eq!(
        as_user(
            &nodes[1],
            logstash,
            "PUT",
            "/_index_template/t",
            r#"{"index_patterns":["logs-swarm-*"],"data_stream":{}}"#
        )
        .0,
        200
    );
    let (status, _, v) = as_user(&nodes[1], logstash, "PUT", "/_cluster/settings", r#"{"persistent":{}}"#);
    assert_eq!(status, 403, "{v}");
    assert!(v["error"]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("unauthorized for user [swarm_logstash]"));
    assert_eq!(
        as_user(
            &nodes[1],
            logstash,
            "PUT",
            "/_security/user/x",
            r#"{"password":"xxxxxxx"}"#
        )
        .0,
        403
    );
    let (status, _, v) = as_user(&nodes[2], elastic, "GET", "/_security/user/kibana_system", "");
    assert_eq!(v["kibana_system"]["metadata"]["_reserved"], true, "{status} {v}");
    assert!(
        v.to_string().find("kibana-secret").is_none(),
        "a password is never returned: {v}"
    );

    // elastic's own password set: the bootstrap password no longer works.
    let (status, _, _) = as_user(
        &nodes[0],
        elastic,
        "POST",
        "/_security/user/elastic/_password",
        r#"{"password":"elastic-secret"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(as_user(&nodes[2], elastic, "GET", "/", "").0, 401);
    let elastic = Some(("elastic", "elastic-secret"));
    assert_eq!(as_user(&nodes[2], elastic, "GET", "/", "").0, 200);

    // Kept in the data path: all restarted, the realm is as it was.
    for n in nodes.iter_mut() {
        n.stop();
    }
    for n in nodes.iter_mut() {
        n.start(&ports, &[], &secure);
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait("the cluster back on every node, as elastic", 30, &refs, || {
        all_up(&nodes, elastic)
    });
    assert_eq!(
        as_user(&nodes[0], Some(("kibana_system", "kibana-secret")), "GET", "/", "").0,
        200
    );
    assert_eq!(as_user(&nodes[0], logstash, "GET", "/_cluster/health", "").0, 200);
    // The simulator's own controls stay open (tests steer it).
    assert_eq!(
        call("GET", &nodes[0].url("/_standin/requests"), None).map(|r| r.0),
        Some(200)
    );
}

// ----- TLS -----

const PASSWORD: &str = "bootstrap-secret";

/// The fixed test certificates (tests/standin/testdata/README.md).
fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standin/testdata")
}

fn fixture(name: &str) -> String {
    let path = testdata().join(name);
    assert!(path.is_file(), "missing test fixture {}", path.display());
    path.display().to_string()
}

/// Security on, HTTPS with `cert` (relative paths, resolved against
/// `ES_PATH_CONF` as Elasticsearch resolves them against its config dir).
fn https_settings(cert: &str) -> Vec<(String, String)> {
    [
        ("xpack.security.enabled", "true"),
        ("ELASTIC_PASSWORD", PASSWORD),
        ("ES_PATH_CONF", &testdata().display().to_string()),
        ("xpack.security.http.ssl.enabled", "true"),
        ("xpack.security.http.ssl.certificate", &format!("{cert}.crt")),
        ("xpack.security.http.ssl.key", &format!("{cert}.key")),
        ("xpack.security.http.ssl.certificate_authorities", "ca-a.crt"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn refs(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// `standin http ARGS...`: (exit code, stdout, stderr).
fn standin_http(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(standin())
        .arg("http")
        .args(args)
        .output()
        .expect("the stand-in runs as a client");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn https_url(node: &Node, host: &str, path: &str) -> String {
    format!("https://elastic:{PASSWORD}@{host}:{}{path}", node.http)
}

/// The JSON body of a `standin http` answer (the line after the status).
fn answer_json(stdout: &str) -> Value {
    let body = stdout.split_once('\n').map_or("", |(_, b)| b);
    serde_json::from_str(body.trim()).unwrap_or(Value::String(stdout.to_string()))
}

#[test]
fn https_on_the_http_port_with_the_configured_certificate() {
    let dir = tempdir("https");
    let mut node = Node::new(&dir, "es-a");
    let settings = https_settings("http");
    let mut extra = refs(&settings);
    extra.push(("discovery.type", "single-node"));
    node.start(&[], &[], &extra);
    let ca = fixture("ca-a.crt");
    let url = https_url(&node, "localhost", "/_cluster/health");
    let up = wait("the node to answer over HTTPS", 20, &[&node], || {
        match standin_http(&["--cacert", &ca, "GET", &url]) {
            (0, out, _) => Ok(out),
            (code, out, err) => Err(format!("{code}: {out} {err}")),
        }
    });
    assert!(up.starts_with("HTTP/1.1 200"), "{up}");
    assert_eq!(answer_json(&up)["number_of_nodes"], 1, "{up}");
    // By address too: the certificate names 127.0.0.1.
    let (code, out, err) = standin_http(&["--cacert", &ca, "GET", &https_url(&node, "127.0.0.1", "/")]);
    assert_eq!(code, 0, "{out} {err}");
    assert_eq!(answer_json(&out)["name"], "es-a", "{out}");

    // Another CA: the handshake fails, the refused certificate is named.
    let (code, out, err) = standin_http(&["--cacert", &fixture("ca-b.crt"), "GET", &url]);
    assert_eq!(code, 1, "{out} {err}");
    assert!(
        err.contains("CN=http") && err.contains("UnknownIssuer"),
        "the client names what it refused: {err}"
    );
    // -k: no verification; nothing said: a clear refusal, no request.
    let (code, out, err) = standin_http(&["-k", "GET", &url]);
    assert_eq!(code, 0, "{out} {err}");
    let (code, _, err) = standin_http(&["GET", &url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--cacert") && err.contains("-k"), "{err}");

    // Plain HTTP on the TLS port: no answer, the connection closed, the
    // node says why (Elasticsearch's words).
    assert_eq!(call("GET", &node.url("/"), None).map(|a| a.0), None);
    wait("the node to log the plaintext request", 5, &[&node], || {
        let log = node.log_text();
        if log.contains("received plaintext http traffic on an https channel, closing connection") {
            Ok(())
        } else {
            Err("not logged yet".into())
        }
    });

    // GET /_ssl/certificates: authenticated as any API, the shape of
    // Elasticsearch's answer, the paths as configured.
    let certs_url = https_url(&node, "localhost", "/_ssl/certificates");
    let (code, out, err) = standin_http(&["--cacert", &ca, "GET", &certs_url]);
    assert_eq!(code, 0, "{out} {err}");
    let certs = answer_json(&out);
    let list = certs.as_array().unwrap_or_else(|| panic!("an array: {out}"));
    assert_eq!(list.len(), 2, "the http certificate and the CA: {out}");
    let by_path = |p: &str| {
        list.iter()
            .find(|c| c["path"] == p)
            .unwrap_or_else(|| panic!("no {p} in {out}"))
    };
    let (http, ca_entry) = (by_path("http.crt"), by_path("ca-a.crt"));
    assert_eq!(
        (&http["format"], &http["alias"], &http["has_private_key"]),
        (&Value::from("PEM"), &Value::Null, &Value::Bool(true))
    );
    assert_eq!(http["subject_dn"], "CN=http, O=swarmlog test", "{http}");
    assert_eq!(http["issuer"], "CN=swarmlog test CA A, O=swarmlog test", "{http}");
    assert_eq!(ca_entry["has_private_key"], false, "{ca_entry}");
    assert_eq!(ca_entry["subject_dn"], "CN=swarmlog test CA A, O=swarmlog test");
    for c in list {
        let serial = c["serial_number"].as_str().unwrap_or_default();
        assert!(
            !serial.is_empty() && !serial.starts_with('0') && serial.chars().all(|ch| ch.is_ascii_hexdigit()),
            "serial in lower hex as Java writes it: {c}"
        );
        let expiry = c["expiry"].as_str().unwrap_or_default();
        assert!(
            expiry.len() == 24 && expiry.starts_with("21") && expiry.ends_with(".000Z"),
            "expiry as Elasticsearch writes it, 100 years ahead: {c}"
        );
    }
    let (code, out, _) = standin_http(&[
        "--cacert",
        &ca,
        "GET",
        &format!("https://localhost:{}/_ssl/certificates", node.http),
    ]);
    assert_eq!(
        (code, out.lines().next()),
        (1, Some("HTTP/1.1 401 Unauthorized")),
        "{out}"
    );

    // A certificate for another name: the client (full verification)
    // refuses it, -k takes it.
    let settings = https_settings("elsewhere");
    let mut extra = refs(&settings);
    extra.push(("discovery.type", "single-node"));
    node.start(&[], &[], &extra);
    wait(
        "the node with the other certificate",
        20,
        &[&node],
        || match standin_http(&["-k", "GET", &https_url(&node, "127.0.0.1", "/")]) {
            (0, _, _) => Ok(()),
            (code, out, err) => Err(format!("{code}: {out} {err}")),
        },
    );
    let (code, _, err) = standin_http(&["--cacert", &ca, "GET", &https_url(&node, "127.0.0.1", "/")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not valid for name"), "{err}");
}

/// Waits for `node` to exit; its status.
fn exit_status(node: &mut Node, secs: u64) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if let Some(status) = node.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_missing_or_bad_certificate_file_stops_the_node_at_start() {
    let dir = tempdir("badtls");
    std::fs::write(dir.join("not-pem.crt"), "just text\n").expect("write");
    let cases = [
        (
            "xpack.security.http.ssl.certificate",
            dir.join("missing.crt").display().to_string(),
            "missing.crt",
        ),
        (
            "xpack.security.http.ssl.certificate",
            dir.join("not-pem.crt").display().to_string(),
            "holds no certificate",
        ),
        (
            "xpack.security.http.ssl.key",
            fixture("http.crt"),
            "holds no private key",
        ),
    ];
    for (setting, value, says) in cases {
        let mut node = Node::new(&dir, "es-bad");
        let mut settings = https_settings("http");
        for (k, v) in settings.iter_mut() {
            if k == setting {
                *v = value.clone();
            }
        }
        let mut extra = refs(&settings);
        extra.push(("discovery.type", "single-node"));
        node.start(&[], &[], &extra);
        let status = exit_status(&mut node, 10);
        let log = node.log_text();
        assert!(
            status.is_some_and(|s| !s.success()),
            "{setting}={value}: the node keeps running ({status:?}):\n{log}"
        );
        assert!(
            log.contains(&format!("[{setting}]")) && log.contains(says),
            "{setting}={value}: the error names the setting and says {says:?}:\n{log}"
        );
        let _ = std::fs::remove_file(&node.log);
    }
}

/// A transport-TLS node: its certificate, the CAs it trusts, its mode.
fn transport_settings(cert: &str, cas: &str, mode: &str) -> Vec<(String, String)> {
    [
        ("xpack.security.enabled", "true"),
        ("ELASTIC_PASSWORD", PASSWORD),
        ("ES_PATH_CONF", &testdata().display().to_string()),
        ("xpack.security.transport.ssl.enabled", "true"),
        ("xpack.security.transport.ssl.certificate", &format!("{cert}.crt")),
        ("xpack.security.transport.ssl.key", &format!("{cert}.key")),
        ("xpack.security.transport.ssl.certificate_authorities", cas),
        ("xpack.security.transport.ssl.verification_mode", mode),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn transport_peers(node: &Node) -> Value {
    get(node, "/_standin/transport_peers")
        .filter(|(s, _)| *s == 200)
        .map(|(_, v)| v)
        .unwrap_or(Value::Null)
}

#[test]
fn transport_mutual_tls_forms_the_cluster_and_refuses_a_node_of_another_ca() {
    let dir = tempdir("transport-tls");
    let mut nodes = [
        Node::new(&dir, "es-a"),
        Node::new(&dir, "es-b"),
        Node::new(&dir, "es-c"),
    ];
    let ports: Vec<u16> = nodes.iter().map(|n| n.transport).collect();
    // es-a and es-b verify fully (their certificates name 127.0.0.1, what
    // the seed hosts say); es-c's certificate names only
    // elsewhere.invalid, which es-c's own `certificate` mode does not mind.
    let setups = [
        transport_settings("es-a", "ca-a.crt", "full"),
        transport_settings("es-b", "ca-a.crt", "full"),
        transport_settings("elsewhere", "ca-a.crt", "certificate"),
    ];
    for (n, settings) in nodes.iter_mut().zip(&setups) {
        n.start(&ports, &["es-a", "es-b", "es-c"], &refs(settings));
    }
    let refs_: Vec<&Node> = nodes.iter().collect();
    let elastic = Some(("elastic", PASSWORD));
    wait("a green cluster of 3 over transport TLS", 30, &refs_, || {
        all_up(&nodes, elastic)
    });

    // Who came in with which certificate (es-a's view).
    let peers = wait("es-a to list its peers' certificates", 10, &refs_, || {
        let v = transport_peers(&nodes[0]);
        let inbound = v["inbound"].as_array().cloned().unwrap_or_default();
        let cn = |name: &str| {
            inbound
                .iter()
                .find(|p| p["node"] == name)
                .map(|p| p["common_name"].clone())
        };
        if cn("es-b") == Some(Value::from("es-b")) && cn("es-c") == Some(Value::from("elsewhere")) {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert_eq!(
        (&peers["tls"], &peers["verification_mode"]),
        (&Value::Bool(true), &Value::from("full"))
    );
    for p in peers["inbound"].as_array().into_iter().flatten() {
        assert_eq!(p["issuer"], "CN=swarmlog test CA A, O=swarmlog test", "{p}");
        assert!(p["serial_number"].as_str().is_some_and(|s| !s.is_empty()), "{p}");
    }
    // es-a's own connections to es-c: full verification refuses a
    // certificate that does not name 127.0.0.1 (es-c still joined: it
    // connects to es-a, which checks no host name of a client).
    let to_c = format!("(127.0.0.1:{})", nodes[2].transport);
    let refusal = peers["refused"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["direction"] == "outbound" && r["address"].as_str().is_some_and(|a| a.ends_with(&to_c)))
        .cloned()
        .unwrap_or_else(|| panic!("es-a refused es-c's certificate by name: {peers}"));
    assert!(
        refusal["certificate"]
            .as_str()
            .is_some_and(|c| c.starts_with("CN=elsewhere serial ")),
        "{refusal}"
    );

    // A node whose certificate another CA signed (it trusts both CAs, so
    // it does present its certificate): refused by every node, named.
    let mut rogue = Node::new(&dir, "es-rogue");
    rogue.start(
        &ports,
        &[],
        &refs(&transport_settings("es-rogue", "ca-both.crt", "certificate")),
    );
    let mut all: Vec<&Node> = nodes.iter().collect();
    all.push(&rogue);
    for n in &nodes {
        wait(
            &format!("{} to refuse es-rogue's certificate", n.name),
            15,
            &all,
            || {
                let v = transport_peers(n);
                let named = v["refused"].as_array().into_iter().flatten().any(|r| {
                    r["direction"] == "inbound"
                        && r["certificate"]
                            .as_str()
                            .is_some_and(|c| c.starts_with("CN=es-rogue serial "))
                        && r["reason"].as_str().is_some_and(|e| e.contains("UnknownIssuer"))
                });
                if named {
                    Ok(())
                } else {
                    Err(v.to_string())
                }
            },
        );
        assert!(
            n.log_text().contains("refused transport connection from") && n.log_text().contains("CN=es-rogue"),
            "{} logs the refusal:\n{}",
            n.name,
            n.log_text()
        );
    }
    all_up(&nodes, elastic).unwrap_or_else(|e| panic!("the cluster is still its 3 nodes: {e}"));
    let (status, _, v) = call_with("GET", &rogue.url("/_cluster/health"), None, elastic).expect("rogue answers");
    assert_eq!(status, 503, "es-rogue joined nothing: {v}");

    // A client without a certificate at all: refused too.
    let (code, out, err) = standin_http(&[
        "-k",
        "POST",
        &format!("https://127.0.0.1:{}/_standin/state", nodes[0].transport),
        "",
    ]);
    assert_ne!(code, 0, "{out} {err}");
    wait("es-a to refuse a client without a certificate", 5, &refs_, || {
        let v = transport_peers(&nodes[0]);
        let refused = v["refused"].as_array().into_iter().flatten().any(|r| {
            r["direction"] == "inbound" && r["reason"].as_str().is_some_and(|e| e.contains("no certificates"))
        });
        if refused {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
}

/// A stand-in process that is no Elasticsearch (Kibana, Logstash); killed
/// when dropped.
struct Client {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Client {
    fn start(dir: &Path, name: &str, env: &[(&str, String)]) -> Client {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(standin());
        cmd.env_clear()
            .env("STANDIN_PORTS", port.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v.replace("{port}", &port.to_string()));
        }
        Client {
            child: cmd.spawn().expect("the stand-in starts"),
            port,
            log,
        }
    }

    /// `GET path` on its port, once it answers.
    fn get(&self, path: &str) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Some(answer) = call("GET", &url, None) {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no answer from {url}; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kibana_and_logstash_reach_elasticsearch_over_tls_with_the_ca_they_are_given() {
    let dir = tempdir("clients-tls");
    let mut es = Node::new(&dir, "es-a");
    let settings = https_settings("http");
    let mut extra = refs(&settings);
    extra.push(("discovery.type", "single-node"));
    es.start(&[], &[], &extra);
    let ca = fixture("ca-a.crt");
    wait("the node over HTTPS", 20, &[&es], || {
        match standin_http(&["--cacert", &ca, "GET", &https_url(&es, "localhost", "/_cluster/health")]) {
            (0, _, _) => Ok(()),
            (code, out, err) => Err(format!("{code}: {out} {err}")),
        }
    });
    let hosts = format!("https://localhost:{}", es.http);

    // Kibana: kibana.yml names the CA (a block list), the hosts come from
    // the image's variable.
    let yml = dir.join("kibana.yml");
    std::fs::write(
        &yml,
        format!(
            "elasticsearch.hosts: [\"http://elasticsearch:9200\"]\nelasticsearch.username: \"elastic\"\nelasticsearch.password: \"{PASSWORD}\"\nelasticsearch.ssl.certificateAuthorities:\n  - {ca}\n"
        ),
    )
    .expect("kibana.yml");
    let kibana_env = |extra: &[(&'static str, String)]| {
        let mut env: Vec<(&'static str, String)> = vec![
            ("STANDIN_KIBANA_PORT", "{port}".to_string()),
            ("STANDIN_KIBANA_YML", yml.display().to_string()),
            ("ELASTICSEARCH_HOSTS", hosts.clone()),
        ];
        env.extend(extra.iter().cloned());
        env
    };
    let kibana = Client::start(&dir, "kibana", &kibana_env(&[]));
    let (status, v) = kibana.get("/api/status");
    assert_eq!(
        (status, &v["status"]["overall"]["level"]),
        (200, &Value::from("available")),
        "{v}"
    );
    assert_eq!(v["standin_es"]["username"], "elastic", "{v}");
    drop(kibana);
    // The variable's CA (another one) wins: unavailable, the reason shown.
    let kibana = Client::start(
        &dir,
        "kibana-b",
        &kibana_env(&[("ELASTICSEARCH_SSL_CERTIFICATEAUTHORITIES", fixture("ca-b.crt"))]),
    );
    let (status, v) = kibana.get("/api/status");
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["status"]["overall"]["level"], "unavailable", "{v}");
    let summary = v["status"]["overall"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("UnknownIssuer") && summary.contains("CN=http"), "{v}");
    drop(kibana);

    // Logstash: the output's ssl settings (a list of CAs), the hostname
    // checked: 127.0.0.1 is named by the certificate too.
    let pipeline = dir.join("logstash.conf");
    let conf = |host: &str, cas: &str| {
        format!(
            "output {{\n  elasticsearch {{\n    hosts => [\"https://{host}:{}\"]\n    ssl_enabled => true\n    ssl_certificate_authorities => [\"{cas}\"]\n    user => \"elastic\"\n    password => \"{PASSWORD}\"\n  }}\n}}\n",
            es.http
        )
    };
    let logstash_env = vec![
        ("STANDIN_LOGSTASH_PORT", "{port}".to_string()),
        ("STANDIN_LOGSTASH_PIPELINE", pipeline.display().to_string()),
    ];
    std::fs::write(&pipeline, conf("127.0.0.1", &ca)).expect("pipeline");
    let logstash = Client::start(&dir, "logstash", &logstash_env);
    let (status, v) = logstash.get("/");
    assert_eq!((status, &v["status"]), (200, &Value::from("green")), "{v}");
    // Read on every request: another CA makes it red, with the reason.
    std::fs::write(&pipeline, conf("localhost", &fixture("ca-b.crt"))).expect("pipeline");
    let (_, v) = logstash.get("/");
    assert_eq!(v["status"], "red", "{v}");
    assert!(
        v["standin_es"].as_str().is_some_and(|e| e.contains("UnknownIssuer")),
        "{v}"
    );
}
