//! Debian's Prometheus scraping a real operator on a sandbox swarm of its
//! own. Prometheus runs as a process with a config and a data directory the
//! test writes under target/, and is stopped by its pid.
//!
//! 1. An operator process on loopback, Prometheus on a free loopback port:
//!    manifests/monitoring/alerts.yml loads as it is, and once more with
//!    every `for` at 0s, so the alerts can be seen firing within a test (the
//!    stack blocked, the engine gone, reconciles failing) and resolving; every
//!    dashboard query returns data. The operator reaches the engine through a
//!    socket forwarder of the test's own, so "the engine goes away" is the
//!    test closing it (every connection and the socket), not a daemon stop.
//!    Elasticsearch is the stand-in's simulator as a process on loopback,
//!    given to the operator with --es-url (a process on the host cannot
//!    reach the overlay network the deployed operator reads it on).
//! 2. The operator's image deployed with manifests/operator.yml, and
//!    Prometheus on manager-1 (in its network namespace, as if installed on
//!    that manager) with the README's scrape config as a user copies it: it
//!    finds the operator through the Docker API and scrapes it.

mod common;
mod monitoring_kit;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{wait_for, Operator, Sandbox};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

/// Names nobody else uses on this machine (other suites run their own sandboxes).
const SANDBOX: &str = "itprom";
const STACK: &str = "itprom";
/// The node label the stack is placed by: no node has it at first (blocked).
const SELECTOR: &str = "promsel";

type TestFn = fn(&Sandbox, &tokio::runtime::Runtime) -> Result<(), String>;

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let tests: Vec<(&str, TestFn)> = vec![
        (
            "prometheus_scrapes_the_operator_and_its_alerts_fire",
            prometheus_scrapes_the_operator,
        ),
        (
            "readme_scrape_config_finds_the_deployed_operator",
            readme_scrape_config_finds_the_deployed_operator,
        ),
    ];
    if args.list {
        let trials = tests.iter().map(|(name, _)| Trial::test(*name, || Ok(()))).collect();
        libtest_mimic::run(&args, trials).exit();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    // A sandbox that cannot start fails the test (never skips it).
    // --iptables: the operator's stack file publishes its port in host mode.
    let sandbox = Sandbox::up(SANDBOX, &["--workers", "1", "--iptables"]).and_then(|s| {
        s.docker(&["network", "create", "--driver", "overlay", "--attachable", "main"])?;
        Ok(s)
    });
    let sandbox = std::sync::Arc::new(sandbox);
    let runtime = std::sync::Arc::new(runtime);
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            let sb = sandbox.clone();
            let rt = runtime.clone();
            Trial::test(name, move || match sb.as_ref() {
                Ok(s) => f(s, &rt).map_err(Failed::from),
                Err(e) => Err(Failed::from(format!("the sandbox swarm did not start: {e}"))),
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(sandbox);
    conclusion.exit();
}

/// A free port on loopback (the kernel's choice; released just before use).
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A plain HTTP/1.0 request on loopback (no chunked answers): status and body.
fn http(addr: &str, method: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed HTTP answer")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status code")?;
    Ok((code, body.to_string()))
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The last `n` lines of a text.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Debian's Prometheus as a child process; SIGTERM by its pid when dropped.
struct Prometheus {
    child: Option<Child>,
    addr: String,
    log: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, config: &str) -> Result<Prometheus, String> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        Prometheus::start_in(dir, config, None, addr)
    }

    /// In the network namespace `netns` (nsenter execs prometheus itself,
    /// so the pid is Prometheus'), listening on `addr` there.
    fn start_in(dir: &Path, config: &str, netns: Option<&str>, addr: String) -> Result<Prometheus, String> {
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).map_err(|e| format!("{}: {e}", config_file.display()))?;
        let log = dir.join("prometheus.log");
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/var/run/netns/{ns}")).arg("prometheus");
                c
            }
            None => Command::new("prometheus"),
        };
        let child = cmd
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| {
                format!("cannot start prometheus ({e}): install Debian's prometheus package (scripts/prereqs does)")
            })?;
        Ok(Prometheus {
            child: Some(child),
            addr,
            log,
        })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET an API path; the `data` of a `success` answer.
    fn api(&self, path: &str) -> Result<Value, String> {
        let (code, body) = http(&self.addr, "GET", path)?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{path}: {code} {e}: {body}"))?;
        if code != 200 || v["status"] != "success" {
            return Err(format!("{path}: {code} {body}"));
        }
        Ok(v["data"].clone())
    }

    /// An instant query: its result vector.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until `expr` returns at least one sample.
    async fn wait_query(&self, what: &str, expr: &str, timeout: Duration) -> Result<Vec<Value>, String> {
        let start = Instant::now();
        let r = wait_for(what, timeout, || async {
            let r = self.query(expr)?;
            Ok((!r.is_empty()).then_some(r))
        })
        .await?;
        eprintln!("{what}: {:?}", start.elapsed());
        Ok(r)
    }

    /// Alerts in `state` (firing, pending) named `name` whose labels include `labels`.
    fn alerts(&self, name: &str, state: &str, labels: &[(&str, &str)]) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/alerts")?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == name && a["state"] == state)
            .filter(|a| labels.iter().all(|(k, v)| a["labels"][*k] == *v))
            .cloned()
            .collect())
    }

    async fn wait_alert(&self, name: &str, state: &str, labels: &[(&str, &str)]) -> Result<Value, String> {
        let what = format!("alert {name} {labels:?} {state}");
        let start = Instant::now();
        let a = wait_for(&what, Duration::from_secs(60), || async {
            Ok(self.alerts(name, state, labels)?.into_iter().next())
        })
        .await?;
        eprintln!("{what}: {:?}", start.elapsed());
        Ok(a)
    }

    fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        loop {
            if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("prometheus (pid {pid}) did not stop within 20 s of SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("{e}");
        }
    }
}

/// The address the operator bound (it logs `listen=ADDR` once serving).
async fn operator_addr(op: &Operator) -> Result<String, String> {
    wait_for("the operator's HTTP API", Duration::from_secs(30), || async {
        Ok(op.log_text().lines().find(|l| l.contains("HTTP API up")).and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("listen="))
                .map(str::to_string)
        }))
    })
    .await
}

/// alerts.yml with every `for` at 0s, in a group of its own.
fn immediate_rules(text: &str) -> Result<String, String> {
    let mut fors = 0;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let trimmed = l.trim_start();
            if trimmed.starts_with("for: ") {
                fors += 1;
                format!("{}for: 0s", &l[..l.len() - trimmed.len()])
            } else if trimmed == "- name: swarmlog" {
                l.replace("swarmlog", "swarmlog-immediate")
            } else {
                l.to_string()
            }
        })
        .collect();
    if fors < 5 || !out.iter().any(|l| l.contains("swarmlog-immediate")) {
        return Err("alerts.yml no longer has the shape this test rewrites (group swarmlog, `for:` lines)".into());
    }
    Ok(out.join("\n") + "\n")
}

/// A unix socket forwarding every connection to the engine's socket; cut
/// (listener and connections closed, socket file removed) when dropped.
struct Forwarder {
    path: PathBuf,
    cut: tokio_util::sync::CancellationToken,
}

impl Forwarder {
    fn start(rt: &tokio::runtime::Runtime, path: &Path, engine: &str) -> Result<Forwarder, String> {
        let _ = std::fs::remove_file(path);
        let listener = {
            let _guard = rt.enter();
            tokio::net::UnixListener::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))?
        };
        let cut = tokio_util::sync::CancellationToken::new();
        let engine = engine.to_string();
        let token = cut.clone();
        rt.spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    c = listener.accept() => match c {
                        Ok(c) => c,
                        Err(_) => return,
                    },
                };
                let engine = engine.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut upstream) = tokio::net::UnixStream::connect(&engine).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    }
                });
            }
        });
        Ok(Forwarder {
            path: path.to_path_buf(),
            cut,
        })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cut.cancel();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The stand-in run as one Elasticsearch node on loopback; killed when dropped.
struct EsNode {
    child: Child,
    url: String,
}

impl EsNode {
    fn start(dir: &Path) -> Result<EsNode, String> {
        // The stand-in's own package, built as the sandbox builds it.
        let target_dir = common::repo().join("target/standin");
        let out = common::standin_cargo(&common::repo(), &target_dir)
            .output()
            .map_err(|e| format!("cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "building the stand-in (tests/standin/Cargo.toml) failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let bin = target_dir.join("x86_64-unknown-linux-gnu/release/standin");
        let port = free_port()?;
        let transport = free_port()?;
        let log = std::fs::File::create(dir.join("es.log")).map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .env_clear()
            .env("STANDIN_ROLE", "elasticsearch")
            .env("STANDIN_PORTS", "")
            .env("node.name", "itprom-es")
            .env("discovery.type", "single-node")
            .env("http.port", port.to_string())
            .env("transport.port", transport.to_string())
            .env("path.data", dir.join("es-data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting the Elasticsearch simulator: {e}"))?;
        Ok(EsNode {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for EsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_scrapes_the_operator(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let dir = common::temp_dir("prometheus");
    let es = EsNode::start(&dir)?;
    let es_url = format!("--es-url={}", es.url);
    let alerts_text = std::fs::read_to_string(monitoring_kit::dir().join("alerts.yml")).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("alerts.yml"), &alerts_text).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("alerts-immediate.yml"), immediate_rules(&alerts_text)?).map_err(|e| e.to_string())?;
    let set = format!("--set=nodeSelector.label={SELECTOR}");
    let engine = sb.host.trim_start_matches("unix://").to_string();
    let socket = dir.join("engine.sock");
    let mut forwarder = Some(Forwarder::start(rt, &socket, &engine)?);
    let op = Operator::start_on(
        &format!("unix://{}", socket.display()),
        "itprom-operator",
        &[
            "--stack",
            STACK,
            &set,
            // Its Elasticsearch is a simulator process started here with
            // security off; security has its own trials (tests/shipping.rs).
            "--set=elasticsearch.security=false",
            "--resync",
            "10m",
            "--allow-unauthenticated-reconcile",
            &es_url,
            "--es-interval",
            "1s",
        ],
    )?;
    let mut prom: Option<Prometheus> = None;
    let result = rt.block_on(async {
        let target = operator_addr(&op).await?;
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - alerts.yml\n  - alerts-immediate.yml\n\
             scrape_configs:\n  - job_name: swarmlog\n    static_configs:\n      - targets: ['{target}']\n"
        );
        let p = prom.insert(Prometheus::start(&dir, &config)?);
        wait_for("Prometheus ready", Duration::from_secs(60), || async {
            Ok(http(&p.addr, "GET", "/-/ready")
                .ok()
                .filter(|(c, _)| *c == 200)
                .map(|_| ()))
        })
        .await?;

        // The scrape is healthy and the operator's series are there.
        p.wait_query("up == 1", r#"up{job="swarmlog"} == 1"#, Duration::from_secs(30))
            .await?;
        let names = p
            .wait_query(
                "the operator's series",
                r#"count by (__name__) ({job="swarmlog", __name__=~"swarmlog_.+"})"#,
                Duration::from_secs(30),
            )
            .await?;
        let names: Vec<String> = names
            .iter()
            .filter_map(|s| s["metric"]["__name__"].as_str().map(str::to_string))
            .collect();
        for wanted in [
            "swarmlog_phase",
            "swarmlog_role",
            "swarmlog_nodes",
            "swarmlog_logger_nodes",
            "swarmlog_degraded_nodes",
            "swarmlog_reconciles_total",
            "swarmlog_reconcile_duration_seconds_bucket",
            "swarmlog_reconcile_consecutive_failures",
            "swarmlog_triggers_total",
            "swarmlog_event_stream_reconnects_total",
            "swarmlog_preflight_nodes",
            "swarmlog_companion_patches_total",
            "swarmlog_companion_refused_domains",
            "swarmlog_build_info",
            "swarmlog_elasticsearch_state",
            "swarmlog_elasticsearch_health",
            "swarmlog_elasticsearch_nodes_expected",
            "swarmlog_elasticsearch_nodes_joined",
            "swarmlog_elasticsearch_rolling",
        ] {
            if !names.iter().any(|n| n == wanted) {
                return Err(format!("Prometheus has no {wanted}; it has {names:?}"));
            }
        }
        // Elasticsearch (the simulator, one node) read by the operator.
        p.wait_query(
            "Elasticsearch read",
            r#"swarmlog_elasticsearch_state{state="ok"} == 1"#,
            Duration::from_secs(30),
        )
        .await?;
        p.wait_query(
            "Elasticsearch disk use per node",
            r#"swarmlog_elasticsearch_disk_used_ratio{node="itprom-es"} >= 0"#,
            Duration::from_secs(30),
        )
        .await?;
        p.wait_query(
            "this operator is the leader",
            r#"swarmlog_role{role="leader"} == 1"#,
            Duration::from_secs(30),
        )
        .await?;

        // Every rule loads and evaluates without error, both copies.
        let groups = wait_for("the rules evaluated", Duration::from_secs(30), || async {
            let data = p.api("/api/v1/rules")?;
            let groups = data["groups"].as_array().cloned().unwrap_or_default();
            let rules: Vec<&Value> = groups
                .iter()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            let evaluated = rules.iter().all(|r| r["health"] == "ok");
            Ok((groups.len() == 2 && evaluated).then_some(groups))
        })
        .await?;
        let loaded = groups
            .iter()
            .map(|g| g["rules"].as_array().map_or(0, Vec::len))
            .sum::<usize>();
        let in_file = alerts_text.matches("- alert: ").count();
        if in_file < 10 || loaded != 2 * in_file {
            return Err(format!(
                "{loaded} rules loaded, expected {} (twice {in_file})",
                2 * in_file
            ));
        }

        // Blocked (no node has the selector's label): Degraded, and the alert
        // fires at once in the immediate copy, pending in the real one.
        p.wait_query(
            "phase Degraded",
            r#"swarmlog_phase{phase="Degraded"} == 1"#,
            Duration::from_secs(30),
        )
        .await?;
        let alert = p
            .wait_alert("SwarmlogStackNotConverged", "firing", &[("phase", "Degraded")])
            .await?;
        let runbook = alert["annotations"]["runbook"].as_str().unwrap_or_default();
        if runbook != "README.md#troubleshooting: 'phase `Degraded`'" {
            return Err(format!("the alert's runbook: {runbook:?}"));
        }
        p.wait_alert("SwarmlogStackNotConverged", "pending", &[("phase", "Degraded")])
            .await?;

        // Healed: converged, the alert resolves.
        sb.docker(&["node", "update", "--label-add", &format!("{SELECTOR}=true"), "logger-1"])?;
        p.wait_query(
            "phase Converged",
            r#"swarmlog_phase{phase="Converged"} == 1"#,
            Duration::from_secs(120),
        )
        .await?;
        wait_for("the alert resolved", Duration::from_secs(30), || async {
            Ok(p.alerts("SwarmlogStackNotConverged", "firing", &[])?
                .is_empty()
                .then_some(()))
        })
        .await?;
        p.wait_query(
            "service creations counted",
            r#"swarmlog_writes_total{kind="service_create"} >= 3"#,
            Duration::from_secs(30),
        )
        .await?;

        // The engine goes away: the phase says so at once, and reconciles
        // (one asked for by hand, then the retries) fail in a row.
        drop(forwarder.take());
        let down = async {
            p.wait_query(
                "phase EngineUnavailable",
                r#"swarmlog_phase{phase="EngineUnavailable"} == 1"#,
                Duration::from_secs(60),
            )
            .await?;
            p.wait_alert("SwarmlogStackNotConverged", "firing", &[("phase", "EngineUnavailable")])
                .await?;
            let (code, body) = http(&target, "POST", "/reconcile")?;
            if code != 202 {
                return Err(format!("POST /reconcile: {code} {body}"));
            }
            p.wait_alert("SwarmlogReconcileFailing", "firing", &[]).await?;
            p.wait_query(
                "errors counted by category",
                r#"swarmlog_errors_total{category="unreachable"} >= 1"#,
                Duration::from_secs(30),
            )
            .await
        }
        .await;
        // The engine comes back whatever happened above.
        forwarder = Some(Forwarder::start(rt, &socket, &engine)?);
        down?;
        p.wait_query(
            "the event stream reconnected",
            "swarmlog_event_stream_reconnects_total >= 1",
            Duration::from_secs(90),
        )
        .await?;
        p.wait_query(
            "Converged again, no failure in a row",
            r#"swarmlog_phase{phase="Converged"} == 1 and on () swarmlog_reconcile_consecutive_failures == 0"#,
            Duration::from_secs(90),
        )
        .await?;

        // Every dashboard query returns data from this operator.
        let d = monitoring_kit::load()?;
        let queries = monitoring_kit::queries(&d);
        for (panel, expr) in &queries {
            let r = p.query(expr).map_err(|e| format!("panel {panel:?}: {e}"))?;
            if r.is_empty() {
                return Err(format!("panel {panel:?}: `{expr}` returns nothing"));
            }
        }
        eprintln!("all {} dashboard queries return data", queries.len());
        Ok(())
    });
    let prom_log = prom.as_ref().map(Prometheus::log_text).unwrap_or_default();
    drop(prom);
    let op_log = op.log_text();
    drop(op);
    drop(forwarder);
    drop(es);
    result.map_err(|e| {
        format!(
            "{e}\n--- prometheus log (tail) ---\n{}\n--- operator log (tail) ---\n{}",
            tail(&prom_log, 20),
            tail(&op_log, 20)
        )
    })
}

/// The static binary scripts/test builds before the tests (the image wraps it).
fn static_binary() -> Result<PathBuf, String> {
    let p = common::repo().join("target/x86_64-unknown-linux-gnu/release/swarmlog");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: build it first (scripts/test does): RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --locked --target x86_64-unknown-linux-gnu",
            p.display()
        ))
    }
}

/// An instant query with promtool, from inside the network namespace `netns`.
fn query_in(netns: &str, addr: &str, expr: &str) -> Result<Vec<Value>, String> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{netns}"))
        .args([
            "promtool",
            "query",
            "instant",
            "-o",
            "json",
            &format!("http://{addr}"),
            expr,
        ])
        .output()
        .map_err(|e| format!("cannot run nsenter promtool: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "promtool query {expr}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("promtool query {expr}: {e}: {}", String::from_utf8_lossy(&out.stdout)))?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn readme_scrape_config_finds_the_deployed_operator(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    static_binary()?;
    let image = "swarmlog:itprom";
    let env = format!("DOCKER_HOST={}", sb.host);
    common::sh(&format!(
        "{env} DOCKER_BUILDKIT=0 docker build -q -f Dockerfile.prebuilt -t {image} ."
    ))?;
    let dir = common::temp_dir("prometheus-sd");
    // A stack of its own; the preflight off (the host's vm.max_map_count is
    // not this test's business).
    let values = dir.join("values.yaml");
    std::fs::write(
        &values,
        "stack: itpromsd\nelasticsearch:\n  preflight:\n    maxMapCount: 0\n",
    )
    .map_err(|e| e.to_string())?;
    sb.docker(&["config", "create", "swarmlog_values_v1", &values.display().to_string()])?;
    common::operator::make_root_key(sb)?;
    let socks = common::repo().join(format!("target/sandbox/{}/{{{{.Node.Hostname}}}}.sock", sb.name));
    common::sh(&format!(
        "{env} SWARMLOG_IMAGE={image} SWARMLOG_DOCKER_SOCK='{}' docker stack deploy --resolve-image never -d -c manifests/operator.yml swarmlog",
        socks.display()
    ))?;
    let result = rt.block_on(async {
        wait_for("the operator task running", Duration::from_secs(60), || async {
            let ps = sb.docker(&[
                "service",
                "ps",
                "--format",
                "{{.Node}} {{.CurrentState}}",
                "swarmlog_operator",
            ])?;
            Ok(ps.lines().any(|l| l.starts_with("manager-1 Running")).then_some(()))
        })
        .await?;

        // The README's block as it is, but for the paths of this machine:
        // manager-1's socket, the rule file next to the config.
        let readme = monitoring_kit::readme_scrape_config();
        for wanted in ["unix:///var/run/docker.sock", "/etc/prometheus/swarmlog-alerts.yml"] {
            if !readme.contains(wanted) {
                return Err(format!("the README's scrape config no longer has {wanted}:\n{readme}"));
            }
        }
        let config = format!(
            "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n  evaluation_interval: 2s\n{}",
            readme
                .replace(
                    "unix:///var/run/docker.sock",
                    &format!("unix://{}", sb.sock("manager-1")?)
                )
                .replace("/etc/prometheus/swarmlog-alerts.yml", "swarmlog-alerts.yml")
        );
        std::fs::copy(
            monitoring_kit::dir().join("alerts.yml"),
            dir.join("swarmlog-alerts.yml"),
        )
        .map_err(|e| e.to_string())?;
        let netns = sb.netns("manager-1")?;
        // Its own loopback: any port is free there.
        let addr = "127.0.0.1:9090";
        let prom = Prometheus::start_in(&dir, &config, Some(&netns), addr.to_string())?;
        let found = async {
            let up = wait_for(
                "the operator discovered and scraped",
                Duration::from_secs(90),
                || async {
                    let r = query_in(&netns, addr, r#"up{job="swarmlog"} == 1"#)?;
                    Ok((!r.is_empty()).then_some(r))
                },
            )
            .await?;
            let instances: Vec<&str> = up.iter().filter_map(|s| s["metric"]["instance"].as_str()).collect();
            if instances != ["manager-1"] {
                return Err(format!(
                    "expected one target, instance manager-1 (the node's hostname): {up:?}"
                ));
            }
            // One target only: the task's targets on its overlay network are dropped.
            let all = query_in(&netns, addr, r#"up{job="swarmlog"}"#)?;
            if all.len() != 1 {
                return Err(format!("expected exactly one swarmlog target: {all:?}"));
            }
            wait_for("the deployed operator's role", Duration::from_secs(60), || async {
                let r = query_in(
                    &netns,
                    addr,
                    r#"swarmlog_role{job="swarmlog", instance="manager-1", role="leader"} == 1"#,
                )?;
                Ok((!r.is_empty()).then_some(()))
            })
            .await
        }
        .await;
        let log = prom.log_text();
        drop(prom);
        found.map_err(|e| format!("{e}\n--- prometheus log (tail) ---\n{}", tail(&log, 20)))
    });
    let removed = sb.docker(&["stack", "rm", "swarmlog"]).map(|_| ());
    result.and(removed)
}
