//! A fake Docker Engine at swarm scale, for benchmarks only (`bench/scale`):
//! it answers the Engine API paths swarmlog uses with a generated swarm
//! (1,000 nodes, 5,000 services, 50,000 tasks by default) whose JSON is
//! cloned from shapes recorded from a real engine (`shapes/`, dockerd
//! 20.10.24, API 1.41, see `record-shapes`), stores what swarmlog writes, and
//! emits an event firehose. It never stands in for the real engine in the
//! tests of behaviour: those run against the sandbox swarm.
//!
//! `fake_engine serve --listen 127.0.0.1:PORT [--nodes N] [--services N]
//! [--tasks N] [--leader|--standby] [--events-per-sec N] [--stack NAME]`
//! serves until killed; `GET /_fake/stats` gives the request and byte counts
//! (by `METHOD /path`, IDs as `{id}`), `POST /_fake/firehose?per_sec=N`
//! sets the firehose's rate.
//! Run without `serve` (as `cargo test` does) it runs its self-test.

mod server;
mod swarm;

use std::net::SocketAddr;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value as Json;

use server::App;
use swarm::{Spec, Swarm};

/// `fake_engine serve ...`
#[derive(Debug, Parser)]
#[command(name = "fake_engine serve")]
struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:2375")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    #[arg(long, default_value_t = 5000)]
    services: usize,
    #[arg(long, default_value_t = 50000)]
    tasks: usize,
    /// This engine's node (manager-1) is the Raft leader (the default).
    #[arg(long, conflicts_with = "standby")]
    leader: bool,
    /// Another manager (manager-2) is the leader.
    #[arg(long)]
    standby: bool,
    /// `service update` events a second for the services `other_svc_N`
    /// (changed later with `POST /_fake/firehose?per_sec=N`).
    #[arg(long, default_value_t = 0)]
    events_per_sec: u64,
    /// The stack swarmlog manages: no generated object is named `<stack>_...`.
    #[arg(long, default_value = "logging")]
    stack: String,
}

/// A running fake engine: its address and state.
struct Fake {
    addr: SocketAddr,
    app: Arc<App>,
}

/// Generates the swarm and serves it on `listen` (port 0: a free one).
async fn start(spec: &Spec, listen: SocketAddr, events_per_sec: u64, stack: &str) -> Result<Fake, String> {
    if stack.starts_with("other") {
        return Err(format!(
            "--stack {stack}: the generated objects are named other_*; pick another stack name"
        ));
    }
    let swarm = Swarm::generate(spec)?;
    let app = App::new(swarm);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("local address: {e}"))?;
    let router = server::router(app.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("fake engine: serve: {e}");
        }
    });
    app.rate.store(events_per_sec, std::sync::atomic::Ordering::Relaxed);
    tokio::spawn(server::firehose(app.clone()));
    Ok(Fake { addr, app })
}

fn serve(args: &[String]) -> ExitCode {
    let a = match ServeArgs::try_parse_from(std::iter::once("serve".to_string()).chain(args.iter().cloned())) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let spec = Spec {
        nodes: a.nodes,
        services: a.services,
        tasks: a.tasks,
        leader: !a.standby,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fake engine: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let started = Instant::now();
        match start(&spec, a.listen, a.events_per_sec, &a.stack).await {
            Ok(fake) => {
                // The bench waits for this line.
                println!(
                    "fake engine listening on {} ({} nodes, {} services, {} tasks, {}, {} events/s; generated in {} ms)",
                    fake.addr,
                    spec.nodes,
                    spec.services,
                    spec.tasks,
                    if spec.leader { "leader" } else { "standby" },
                    a.events_per_sec,
                    started.elapsed().as_millis()
                );
                let _ = tokio::signal::ctrl_c().await;
                let _ = fake.app;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fake engine: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return serve(&args[1..]);
    }
    selftest::run()
}

/// The self-test, run by `cargo test`: a small fake swarm in this process,
/// the built swarmlog against it.
mod selftest {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type Test = fn(&tokio::runtime::Runtime) -> Result<(), String>;

    pub fn run() -> ExitCode {
        let args = libtest_mimic::Arguments::from_args();
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => Arc::new(rt),
            Err(e) => {
                eprintln!("tokio runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let tests: Vec<(&str, Test)> = vec![
            ("lists_honour_the_engines_filters", lists_honour_the_engines_filters),
            ("plan_creates_the_stack_on_an_empty_fake_swarm", plan_creates_the_stack),
            ("apply_converges_and_a_second_apply_writes_nothing", apply_converges),
            ("standby_sees_another_leader", standby_sees_another_leader),
            ("run_is_leader_or_standby_as_the_fake_says", run_roles),
            ("event_stream_filters_and_firehose", event_stream_and_firehose),
        ];
        let trials = tests
            .into_iter()
            .map(|(name, f)| {
                let rt = rt.clone();
                libtest_mimic::Trial::test(name, move || f(&rt).map_err(Into::into))
            })
            .collect();
        libtest_mimic::run(&args, trials).exit_code()
    }

    const SMALL: Spec = Spec {
        nodes: 6,
        services: 120,
        tasks: 300,
        leader: true,
    };

    fn fake(rt: &tokio::runtime::Runtime, spec: &Spec, events_per_sec: u64) -> Result<Fake, String> {
        let any: SocketAddr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
        rt.block_on(start(spec, any, events_per_sec, "logging"))
    }

    /// One GET over a fresh connection; the status and the body.
    async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
            .await
            .map_err(|_| format!("GET {path}: no answer within 10 s"))?
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or(format!("GET {path}: no header end"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(format!("GET {path}: bad status line {head:.80}"))?;
        Ok((status, body.to_string()))
    }

    fn get_json(rt: &tokio::runtime::Runtime, addr: SocketAddr, path: &str) -> Result<Json, String> {
        let (status, body) = rt.block_on(get(addr, path))?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body:.200}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: not JSON: {e}: {body:.200}"))
    }

    fn names(v: &Json, key: &[&str]) -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| {
                let mut x = o;
                for k in key {
                    x = &x[*k];
                }
                x.as_str().map(str::to_string)
            })
            .collect()
    }

    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    fn lists_honour_the_engines_filters(rt: &tokio::runtime::Runtime) -> Result<(), String> {
        let f = fake(rt, &SMALL, 0)?;
        let all = get_json(rt, f.addr, "/v1.41/services")?;
        if all.as_array().map(Vec::len) != Some(120) {
            return Err(format!("expected 120 services, got {:.200}", all));
        }
        // `name` is a prefix filter on the engine: other_svc_1, other_svc_10..19, other_svc_100..119.
        let by_name = get_json(
            rt,
            f.addr,
            &format!("/services?filters={}", enc(r#"{"name":["other_svc_1"]}"#)),
        )?;
        let n = names(&by_name, &["Spec", "Name"]);
        if n.len() != 31 || !n.iter().all(|x| x.starts_with("other_svc_1")) {
            return Err(format!("name filter: {n:?}"));
        }
        let by_label = get_json(
            rt,
            f.addr,
            &format!(
                "/v1.41/services?filters={}",
                enc(r#"{"label":["com.docker.stack.namespace=other_2"]}"#)
            ),
        )?;
        if names(&by_label, &["Spec", "Name"]).len() != 20 {
            return Err(format!("label filter: {:?}", names(&by_label, &["Spec", "Name"])));
        }
        let svc = &all[7];
        let id = svc["ID"].as_str().ok_or("a service without ID")?;
        let by_id = get_json(
            rt,
            f.addr,
            &format!("/services?filters={}", enc(&format!(r#"{{"id":["{id}"]}}"#))),
        )?;
        if names(&by_id, &["ID"]) != [id.to_string()] {
            return Err(format!("id filter: {:?}", names(&by_id, &["ID"])));
        }
        let tasks = get_json(
            rt,
            f.addr,
            &format!(
                "/tasks?filters={}",
                enc(r#"{"service":["other_svc_7"],"desired-state":["running"]}"#)
            ),
        )?;
        if names(&tasks, &["ServiceID"]) != vec![id.to_string(); 3] {
            return Err(format!("task filter: {:?}", names(&tasks, &["ServiceID"])));
        }
        // By the task's `<service>.<slot>` name, a prefix: other_svc_7 and
        // nothing else (other_svc_70.. do not start with `other_svc_7.`).
        let by_name = get_json(
            rt,
            f.addr,
            &format!("/tasks?filters={}", enc(r#"{"name":["other_svc_7."]}"#)),
        )?;
        if names(&by_name, &["ServiceID"]) != vec![id.to_string(); 3] {
            return Err(format!("task name filter: {:?}", names(&by_name, &["ServiceID"])));
        }
        // A service filter naming no service is a 404, as on the engine.
        let (status, body) = rt.block_on(get(
            f.addr,
            &format!("/tasks?filters={}", enc(r#"{"service":["nosuch"]}"#)),
        ))?;
        if status != 404 {
            return Err(format!("unknown service in a task filter: {status} {body:.200}"));
        }
        let with_status = get_json(rt, f.addr, "/services?status=true")?;
        if with_status[7]["ServiceStatus"]["RunningTasks"] != 3 {
            return Err(format!("status=true: {:.300}", with_status[7]));
        }
        let stats = f.app.stats_json();
        if stats["paths"]["GET /services"]["requests"] != 5 || stats["paths"]["GET /tasks"]["requests"] != 3 {
            return Err(format!("stats: {stats}"));
        }
        Ok(())
    }

    /// A root key for the operators run against the fake (the chart's
    /// default has Elasticsearch's security on). Never a real secret.
    fn test_root_key() -> Result<std::path::PathBuf, String> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fake-engine-root-key");
        if !path.exists() {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, "fake-engine-root-key-not-a-secret-0123456789\n")
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        Ok(path)
    }

    /// Runs the built swarmlog with `args` against the fake; exit code, stdout, stderr.
    fn swarmlog(addr: SocketAddr, args: &[&str]) -> Result<(i32, String, String), String> {
        let bin = env!("CARGO_BIN_EXE_swarmlog");
        let mut child = Command::new(bin)
            .args(args)
            .env("DOCKER_HOST", format!("tcp://{addr}"))
            .env("SWARMLOG_ROOT_KEY_FILE", test_root_key()?)
            .env_remove("SWARMLOG_DOCKER_HOST")
            .env_remove("SWARMLOG_STACK")
            .env_remove("SWARMLOG_VALUES")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {bin}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("swarmlog {args:?} did not end within 60 s"));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("wait for swarmlog: {e}")),
            }
        }
        let out = child.wait_with_output().map_err(|e| format!("swarmlog output: {e}"))?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    fn requests(stats: &Json, key: &str) -> u64 {
        stats["paths"][key]["requests"].as_u64().unwrap_or(0)
    }

    fn writes(stats: &Json) -> u64 {
        stats["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("POST ") || k.starts_with("DELETE ") || k.starts_with("PUT "))
            .map(|(_, v)| v["requests"].as_u64().unwrap_or(0))
            .sum()
    }

    fn plan_creates_the_stack(rt: &tokio::runtime::Runtime) -> Result<(), String> {
        let f = fake(rt, &SMALL, 0)?;
        let (code, out, err) = swarmlog(f.addr, &["plan", "--stack", "logging"])?;
        if code != 2 {
            return Err(format!("plan exited {code} (2: changes expected)\n{out}\n{err}"));
        }
        for svc in ["logging_elasticsearch", "logging_logstash", "logging_kibana"] {
            if !out
                .lines()
                .any(|l| l.trim_start().starts_with("+ service") && l.ends_with(svc))
            {
                return Err(format!("the plan does not create {svc}:\n{out}"));
            }
        }
        let stats = f.app.stats_json();
        // One list each; configs and secrets twice (by the stack's name
        // prefix and by swarmlog's label); every service once (the
        // companion is looked for by its image in the default values).
        for (key, n) in [
            ("GET /info", 1),
            ("GET /nodes", 1),
            ("GET /services", 1),
            ("GET /networks", 1),
            // One more each, read before the render (security is on by
            // default): the credentials' generations (the secrets' labels
            // are the record), and the certificates issued earlier (configs
            // with swarmlog's TLS label), to be reused.
            ("GET /configs", 3),
            ("GET /secrets", 3),
            ("GET /tasks", 1),
        ] {
            if requests(&stats, key) != n {
                return Err(format!("one plan should make {n} {key}: {stats}"));
            }
        }
        // The swarm's 300 tasks belong to other stacks: the stack has no
        // service yet, so the tasks read (by the stack's name) are none.
        if stats["paths"]["GET /tasks"]["bytes"].as_u64() != Some(2) {
            return Err(format!("a plan of a stack without services read tasks: {stats}"));
        }
        if writes(&stats) != 0 {
            return Err(format!("plan wrote: {stats}"));
        }
        // Once the stack exists, one plan reads its tasks only.
        let (code, out, err) = swarmlog(f.addr, &["apply", "--stack", "logging"])?;
        if code != 0 {
            return Err(format!("apply exited {code}\n{out}\n{err}"));
        }
        let before = f.app.stats_json();
        let (code, out, err) = swarmlog(f.addr, &["plan", "--stack", "logging"])?;
        if code != 0 {
            return Err(format!("plan after apply exited {code}\n{out}\n{err}"));
        }
        let after = f.app.stats_json();
        let task_calls = requests(&after, "GET /tasks") - requests(&before, "GET /tasks");
        let task_bytes = after["paths"]["GET /tasks"]["bytes"].as_u64().unwrap_or(0)
            - before["paths"]["GET /tasks"]["bytes"].as_u64().unwrap_or(0);
        // The stack's 3 services have at most a few tasks; the other 300 are
        // about 2.4 KB each.
        if task_calls != 1 || task_bytes > 30 * 1000 {
            return Err(format!(
                "one plan of the stack read {task_calls} task lists, {task_bytes} bytes: {after}"
            ));
        }
        Ok(())
    }

    fn apply_converges(rt: &tokio::runtime::Runtime) -> Result<(), String> {
        let f = fake(rt, &SMALL, 0)?;
        let (code, out, err) = swarmlog(f.addr, &["apply", "--stack", "logging"])?;
        if code != 0 {
            return Err(format!("apply exited {code}\n{out}\n{err}"));
        }
        let first = f.app.stats_json();
        let created = requests(&first, "POST /services/create");
        if created < 3
            || requests(&first, "POST /networks/create") == 0
            || requests(&first, "POST /configs/create") == 0
        {
            return Err(format!("apply should create services, a network and a config: {first}"));
        }
        let (code, out, err) = swarmlog(f.addr, &["plan", "--stack", "logging"])?;
        if code != 0 {
            return Err(format!(
                "plan after apply exited {code} (0: converged expected)\n{out}\n{err}"
            ));
        }
        let (code, out, err) = swarmlog(f.addr, &["apply", "--stack", "logging"])?;
        let second = f.app.stats_json();
        if code != 0 || writes(&second) != writes(&first) {
            return Err(format!(
                "a second apply should write nothing: exit {code}, writes {} then {}\n{out}\n{err}",
                writes(&first),
                writes(&second)
            ));
        }
        let services = get_json(
            rt,
            f.addr,
            "/services?filters=%7B%22label%22%3A%5B%22com.docker.stack.namespace%3Dlogging%22%5D%7D",
        )?;
        if names(&services, &["Spec", "Name"]).len() as u64 != created {
            return Err(format!(
                "label filter on the stack: {:?}",
                names(&services, &["Spec", "Name"])
            ));
        }
        Ok(())
    }

    fn standby_sees_another_leader(rt: &tokio::runtime::Runtime) -> Result<(), String> {
        let spec = Spec { leader: false, ..SMALL };
        let f = fake(rt, &spec, 0)?;
        let info = get_json(rt, f.addr, "/info")?;
        let me = info["Swarm"]["NodeID"].as_str().ok_or("no Swarm.NodeID")?.to_string();
        let node = get_json(rt, f.addr, &format!("/v1.41/nodes/{me}"))?;
        if node["ManagerStatus"]["Leader"] != false {
            return Err(format!("self should not be the leader: {:.300}", node["ManagerStatus"]));
        }
        let nodes = get_json(rt, f.addr, "/nodes")?;
        let leaders: Vec<String> = nodes
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["ManagerStatus"]["Leader"] == true)
            .filter_map(|n| n["Description"]["Hostname"].as_str().map(str::to_string))
            .collect();
        if leaders != ["manager-2"] {
            return Err(format!("leaders: {leaders:?}"));
        }
        Ok(())
    }

    /// A child process killed when dropped (a failed check leaves none behind).
    struct Killed(std::process::Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// `swarmlog run` against a leader fake becomes leader and creates the
    /// stack; against a standby fake it reports standby and writes nothing.
    fn run_roles(rt: &tokio::runtime::Runtime) -> Result<(), String> {
        for (leader, want) in [(true, "leader"), (false, "standby")] {
            let f = fake(rt, &Spec { leader, ..SMALL }, 0)?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("a free port: {e}"))?
                .port();
            let api: SocketAddr = ([127, 0, 0, 1], port).into();
            let child = Command::new(env!("CARGO_BIN_EXE_swarmlog"))
                .args([
                    "run",
                    "--stack",
                    "logging",
                    "--resync",
                    "1h",
                    "--listen",
                    &api.to_string(),
                ])
                .env("DOCKER_HOST", format!("tcp://{}", f.addr))
                .env("SWARMLOG_ROOT_KEY_FILE", test_root_key()?)
                .env_remove("SWARMLOG_DOCKER_HOST")
                .env_remove("SWARMLOG_VALUES")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("start swarmlog run: {e}"))?;
            let _guard = Killed(child);
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut last = String::from("no answer yet");
            loop {
                if let Ok((200, body)) = rt.block_on(get(api, "/status")) {
                    let st: Json = serde_json::from_str(&body).map_err(|e| format!("/status: {e}"))?;
                    let done = st["reconcile"]["count"].as_u64().unwrap_or(0) >= 1;
                    if done && st["role"] == want {
                        break;
                    }
                    last = format!("role {} after {} reconciles", st["role"], st["reconcile"]["count"]);
                }
                if Instant::now() > deadline {
                    return Err(format!("swarmlog run on a {want} fake: {last} within 60 s"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let w = writes(&f.app.stats_json());
            if leader && w == 0 || !leader && w != 0 {
                return Err(format!("swarmlog run as {want} made {w} writes"));
            }
        }
        Ok(())
    }

    fn event_stream_and_firehose(rt: &tokio::runtime::Runtime) -> Result<(), String> {
        let f = fake(rt, &SMALL, 500)?;
        let filters = enc(r#"{"type":["service"],"event":["update"]}"#);
        let path = format!("/v1.41/events?filters={filters}");
        let addr = f.addr;
        // Read until 50 update events of other_svc_N arrived, within 10 s.
        let got = rt.block_on(async move {
            let mut s = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let req = format!("GET {path} HTTP/1.1\r\nHost: docker\r\n\r\n");
            s.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
            let mut text = String::new();
            let mut buf = vec![0u8; 1 << 16];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while text.matches("\"Action\":\"update\"").count() < 50 {
                let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
                    .await
                    .map_err(|_| format!("fewer than 50 events within 10 s: {text:.500}"))?
                    .map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err(format!("the event stream closed: {text:.500}"));
                }
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            Ok::<String, String>(text)
        })?;
        if !got.contains("transfer-encoding: chunked") || !got.contains("\"name\":\"other_svc_") {
            return Err(format!("expected a chunked stream of other_svc_N events: {got:.500}"));
        }
        // `until` in the past: the recorded events, then the stream ends.
        let since = enc("1");
        let (status, body) = rt.block_on(get(
            f.addr,
            &format!("/events?since={since}&until=2&filters={}", enc(r#"{"type":["node"]}"#)),
        ))?;
        if status != 200 || body.contains("other_svc_") {
            return Err(format!("since/until: {status} {body:.300}"));
        }
        Ok(())
    }
}
