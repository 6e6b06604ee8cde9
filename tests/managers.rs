//! A real swarm of three managers and two workers (all daemons in network
//! namespaces): leader gating with one operator process per manager, then
//! the operator's image deployed with manifests/operator.yml end to end
//! (preflight, node join, leader failover, upgrade, uninstall).
//!
//! Writes are counted at the engine: every operator talks to its manager
//! through an engine proxy of the test (tests/common/proxy.rs), so a write
//! of any kind (services, networks, configs, node labels, companion patches,
//! preflight jobs) is seen, whoever logs it or not.
//!
//! The host is never changed: the Elasticsearch preflight of a node reads a
//! file of that node's copy of the operator image (SWARMLOG_PREFLIGHT_FILE),
//! so every node has its own value.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{describe, Call, EngineProxy, Fault, Rule};
use common::{wait_for, Operator, Sandbox, TestFn};

const SANDBOX: &str = "itmgr";
const STACK: &str = "itgate";
const MANAGERS: [&str; 3] = ["manager-1", "manager-2", "manager-3"];

fn main() {
    let tests: Vec<(&'static str, TestFn)> = vec![
        ("leader_gating_and_failover", leader_gating_and_failover),
        (
            "quorum_lost_no_writes_then_recovers",
            quorum_lost_no_writes_then_recovers,
        ),
        ("operator_image_on_every_manager", operator_image_on_every_manager),
        (
            "preflight_minimum_between_two_values",
            preflight_minimum_between_two_values,
        ),
        // Last: it demotes a manager (and promotes it again, also on failure).
        ("leadership_moves_during_apply", leadership_moves_during_apply),
    ];
    common::run_suite(SANDBOX, &["--managers", "3", "--workers", "2"], setup, tests);
}

fn setup(sb: &Sandbox) -> Result<(), String> {
    sb.docker(&["network", "create", "--driver", "overlay", "--attachable", "main"])?;
    Ok(())
}

/// `role/phase` from an operator's /status.
fn role_of(op: &Operator) -> Result<String, String> {
    let s = op.status()?;
    Ok(format!(
        "{}/{}",
        s["role"].as_str().unwrap_or("?"),
        s["phase"].as_str().unwrap_or("?")
    ))
}

/// Two of three managers down: the swarm has no quorum. The operator on the
/// one left attempts no write (counted at its engine), its phase says why,
/// and once the managers are back the operators converge the stack again.
fn quorum_lost_no_writes_then_recovers(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    const STACK_Q: &str = "itquo";
    let mut ops = Vec::new();
    for m in MANAGERS {
        let sock = format!("unix://{}", sb.sock(m)?);
        ops.push(Operator::start_counted(
            rt,
            &sock,
            &format!("itquo-{m}"),
            &["--stack", STACK_Q, "--resync", "5s"],
        )?);
    }
    let settled = |what: &'static str| {
        let ops = &ops;
        async move {
            wait_for(what, Duration::from_secs(120), || async {
                let roles: Vec<String> = ops
                    .iter()
                    .map(|o| role_of(o).unwrap_or_else(|e| format!("({e})")))
                    .collect();
                let leaders = roles.iter().filter(|r| r.as_str() == "leader/Converged").count();
                let standbys = roles.iter().filter(|r| r.as_str() == "standby/Standby").count();
                let plan = sb.swarmlog(&["plan", "--stack", STACK_Q]);
                if leaders == 1 && standbys == 2 && plan.status.code() == Some(0) {
                    Ok(Some(roles))
                } else {
                    Err(format!("roles {roles:?}; plan exit {:?}", plan.status.code()))
                }
            })
            .await
        }
    };
    rt.block_on(async {
        let roles = settled("one leader converged and two standbys").await?;
        let leader = roles.iter().position(|r| r.starts_with("leader/")).ok_or("no leader")?;
        let survivor = (0..3).find(|i| *i != leader).ok_or("no standby")?;
        let down: Vec<&str> = (0..3).filter(|i| *i != survivor).map(|i| MANAGERS[i]).collect();
        let mark = ops[survivor].engine()?.mark();
        for m in &down {
            sb.script("node-stop", &[m])?;
        }
        let t0 = Instant::now();
        let why = wait_for(
            "the survivor to report the lost quorum",
            Duration::from_secs(90),
            || async {
                let st = ops[survivor].status()?;
                let err = st["engine"]["last_error"].as_str().unwrap_or_default().to_string();
                if st["phase"] == "EngineUnavailable" && err.contains("no quorum") {
                    Ok(Some(err))
                } else {
                    Err(format!("phase {} last error {err:?}", st["phase"]))
                }
            },
        )
        .await?;
        eprintln!(
            "quorum lost: {} said so {:?} after two managers stopped: {why}",
            MANAGERS[survivor],
            t0.elapsed()
        );
        // It keeps trying (resync 5 s, backoff) and still writes nothing.
        let seen = ops[survivor].engine()?.mark();
        wait_for("the survivor to try again", Duration::from_secs(60), || async {
            let calls = ops[survivor].engine()?.since(seen);
            Ok(calls
                .iter()
                .any(|c| c.path == "/nodes" || c.path.starts_with("/nodes/"))
                .then_some(()))
        })
        .await?;
        let w = writes(&ops[survivor].engine()?.since(mark));
        if !w.is_empty() {
            return Err(format!("writes attempted without quorum:\n{}", describe(&w)));
        }
        for m in &down {
            sb.script("node-start", &[m])?;
        }
        let t1 = Instant::now();
        settled("the operators after the quorum came back").await?;
        eprintln!(
            "quorum back: one leader converged, two standbys {:?} after the managers started",
            t1.elapsed()
        );
        Ok(())
    })?;
    drop(ops);
    sb.docker(&["stack", "rm", STACK_Q])?;
    Ok(())
}

/// The last n lines of a text.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The writes among calls.
fn writes(calls: &[Call]) -> Vec<Call> {
    calls.iter().filter(|c| c.is_write()).cloned().collect()
}

/// How many full observes (`GET /nodes`) are among calls.
fn observes(calls: &[Call]) -> usize {
    calls.iter().filter(|c| c.method == "GET" && c.path == "/nodes").count()
}

/// How many times an operator looked at where it stands: full observes,
/// and a standby's leadership checks (`GET /nodes/{id}`), after which it
/// would observe and write if it were the leader.
fn looks(calls: &[Call]) -> usize {
    calls
        .iter()
        .filter(|c| c.method == "GET" && (c.path == "/nodes" || c.path.starts_with("/nodes/")))
        .count()
}

/// Waits until the operator behind `proxy` has looked at the swarm `n` more
/// times since `mark` (its own engine calls say so): whatever it would do
/// on seeing the swarm as it is now, it has had the chance to.
async fn observed_again(proxy: &EngineProxy, mark: usize, n: usize, who: &str) -> Result<(), String> {
    wait_for(
        &format!("{who} to observe the swarm {n} more times"),
        Duration::from_secs(60),
        || async {
            let seen = looks(&proxy.since(mark));
            if seen >= n {
                Ok(Some(()))
            } else {
                Err(format!("{seen} looks since the mark"))
            }
        },
    )
    .await
}

fn leader_gating_and_failover(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let mut ops = Vec::new();
    for m in MANAGERS {
        let sock = format!("unix://{}", sb.sock(m)?);
        ops.push(Operator::start_counted(
            rt,
            &sock,
            &format!("itgate-{m}"),
            &["--stack", STACK, "--resync", "10m"],
        )?);
    }
    rt.block_on(async {
        // Exactly one leader, the others standby; the stack converges.
        let roles = wait_for("one leader and two standbys, converged", Duration::from_secs(60), || async {
            let roles: Vec<String> = ops.iter().map(|o| role_of(o).unwrap_or_else(|e| format!("({e})"))).collect();
            let leaders = roles.iter().filter(|r| r.starts_with("leader/")).count();
            // A standby counts once it has observed the swarm (phase
            // Standby): an operator that has not reached its engine yet
            // also says role standby, with phase Pending or EngineUnavailable.
            let standbys = roles.iter().filter(|r| r.as_str() == "standby/Standby").count();
            let plan = sb.swarmlog(&["plan", "--stack", STACK]);
            if leaders == 1 && standbys == 2 && plan.status.code() == Some(0) {
                Ok(Some(roles))
            } else {
                Err(format!(
                    "roles {roles:?}; plan exit {:?}: {}",
                    plan.status.code(),
                    String::from_utf8_lossy(&plan.stdout).trim()
                ))
            }
        })
        .await?;
        let leader = roles.iter().position(|r| r.starts_with("leader/")).ok_or("no leader")?;
        let standbys: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        // At the engine: the leader wrote the stack, the standbys nothing,
        // though they observed the swarm all along.
        let led = writes(&ops[leader].engine()?.calls());
        if led.iter().filter(|c| c.path == "/services/create").count() < 3 {
            return Err(format!("the leader's writes at the engine lack the stack's services:\n{}", describe(&led)));
        }
        for &i in &standbys {
            let calls = ops[i].engine()?.calls();
            let w = writes(&calls);
            if !w.is_empty() || observes(&calls) == 0 {
                let tail: Vec<Call> = calls.iter().rev().take(20).rev().cloned().collect();
                return Err(format!(
                    "standby {} made {} writes (and {} observes) at the engine:\n{}\nits last {} calls:\n{}\nits log:\n{}",
                    MANAGERS[i],
                    w.len(),
                    observes(&calls),
                    describe(&w),
                    tail.len(),
                    describe(&tail),
                    last_lines(&ops[i].log_text(), 40)
                ));
            }
        }
        let marks: Vec<usize> = ops.iter().map(|o| o.engine().map(EngineProxy::mark)).collect::<Result<_, _>>()?;
        // Fail the leader's daemon: a new leader's operator takes over.
        let t0 = Instant::now();
        sb.script("node-stop", &[MANAGERS[leader]])?;
        let survivor = format!("unix://{}", sb.sock(MANAGERS[standbys[0]])?);
        let elected = wait_for("the swarm to elect a new leader", Duration::from_secs(90), || async {
            let out = common::run_docker(&survivor, &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"])?;
            if out.lines().any(|l| l.ends_with(" Leader") && !l.starts_with(MANAGERS[leader])) {
                Ok(Some(t0.elapsed()))
            } else {
                Err(format!("node ls: {}", out.replace('\n', "; ")))
            }
        })
        .await?;
        let new_leader = wait_for("a new leader's operator", Duration::from_secs(90), || async {
            let roles: Vec<String> = ops.iter().map(|o| role_of(o).unwrap_or_else(|e| format!("({e})"))).collect();
            match standbys.iter().copied().find(|i| roles[*i].starts_with("leader/")) {
                Some(i) => Ok(Some(i)),
                None => Err(format!("roles {roles:?}")),
            }
        })
        .await?;
        // A figure, not a target: bench/takeover measures it.
        eprintln!(
            "takeover: swarm elected a new leader {elected:?} after the leader's daemon stopped; the operator on {} reported leader after {:?}",
            MANAGERS[new_leader],
            t0.elapsed()
        );
        // A drift made after the failover is repaired by the new leader.
        let host = format!("unix://{}", sb.sock(MANAGERS[new_leader])?);
        common::run_docker(&host, &["service", "update", "-d", "--no-resolve-image", "--env-add", "FAILOVER=1", &format!("{STACK}_kibana")])?;
        wait_for("the drift repaired by the new leader", Duration::from_secs(60), || async {
            let o = common::swarmlog_with_host(Some(&host), &["plan", "--stack", STACK]);
            match o.status.code() {
                Some(0) => Ok(Some(())),
                code => Err(format!("plan exit {code:?}: {}", String::from_utf8_lossy(&o.stdout).trim())),
            }
        })
        .await?;
        let repaired = writes(&ops[new_leader].engine()?.since(marks[new_leader]));
        if !repaired.iter().any(|c| c.path.ends_with("/update") && c.path.starts_with("/services/")) {
            return Err(format!("the new leader's writes show no service update:\n{}", describe(&repaired)));
        }
        // The old leader comes back as a standby and writes nothing, while it
        // observes the swarm several times.
        sb.script("node-start", &[MANAGERS[leader]])?;
        let back = ops[leader].engine()?.mark();
        wait_for("the old leader's operator back as standby", Duration::from_secs(90), || async {
            let r = role_of(&ops[leader])?;
            if r.starts_with("standby/") {
                Ok(Some(()))
            } else {
                Err(format!("role {r}"))
            }
        })
        .await?;
        observed_again(ops[leader].engine()?, back, 3, "the old leader").await?;
        // Over the whole window: the old leader wrote only before it failed,
        // the third manager never, the new leader only after the failover.
        let third = standbys.iter().copied().find(|i| *i != new_leader).ok_or("no third manager")?;
        let checks = [
            (leader, marks[leader], "the old leader after it failed"),
            (third, 0, "the manager that stayed standby"),
        ];
        for (i, from, who) in checks {
            let w = writes(&ops[i].engine()?.since(from));
            if !w.is_empty() {
                return Err(format!("{who} ({}) wrote at the engine:\n{}", MANAGERS[i], describe(&w)));
            }
        }
        let early = writes(&ops[new_leader].engine()?.calls()[..marks[new_leader]]);
        if !early.is_empty() {
            return Err(format!("the new leader wrote while it was standby:\n{}", describe(&early)));
        }
        Ok::<(), String>(())
    })?;
    for (i, op) in ops.iter_mut().enumerate() {
        let code = op.stop(Duration::from_secs(15))?;
        if code != Some(0) {
            return Err(format!("operator on {} exited {code:?}", MANAGERS[i]));
        }
    }
    Ok(())
}

/// The static binary scripts/test builds before the tests.
fn static_binary() -> Result<std::path::PathBuf, String> {
    let p = common::repo().join("target/x86_64-unknown-linux-gnu/release/swarmlog");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: build it first (scripts/test does): RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --target x86_64-unknown-linux-gnu",
            p.display()
        ))
    }
}

/// Copies an image from manager-1 to other nodes (each has its own store).
fn load_image(sb: &Sandbox, image: &str, nodes: &[&str]) -> Result<(), String> {
    for node in nodes {
        let sock = sb.sock(node)?;
        common::sh(&format!(
            "DOCKER_HOST={} docker save {image} | docker -H unix://{sock} load -q",
            sb.host
        ))?;
    }
    Ok(())
}

/// The operator container's `/status` on one node (read inside it with
/// `docker exec ... swarmlog status -o json`).
fn container_status(sb: &Sandbox, node: &str) -> Result<serde_json::Value, String> {
    let host = format!("unix://{}", sb.sock(node)?);
    let id = common::run_docker(
        &host,
        &[
            "ps",
            "-q",
            "--filter",
            "label=com.docker.swarm.service.name=swarmlog_operator",
        ],
    )?;
    let id = id
        .lines()
        .next()
        .ok_or_else(|| format!("no operator container on {node}"))?
        .to_string();
    let out = common::run_docker(&host, &["exec", &id, "/swarmlog", "status", "-o", "json"]).or_else(|e| {
        // status exits 1 when not Converged but still prints the document.
        e.split_once("failed: ").map(|(_, rest)| rest.to_string()).ok_or(e)
    })?;
    let start = out.find('{').ok_or_else(|| format!("no JSON from {node}: {out}"))?;
    let end = out.rfind('}').ok_or_else(|| format!("no JSON from {node}: {out}"))?;
    serde_json::from_str(&out[start..=end]).map_err(|e| format!("{e}: {out}"))
}

/// `role phase` of the operator container on one node.
fn container_role(sb: &Sandbox, node: &str) -> Result<String, String> {
    let json = container_status(sb, node)?;
    Ok(format!(
        "{} {}",
        json["role"].as_str().unwrap_or(""),
        json["phase"].as_str().unwrap_or("")
    ))
}

/// How many operator tasks of exactly `image` are running.
fn running_operators(sb: &Sandbox, image: &str) -> Result<usize, String> {
    let out = sb.docker(&[
        "service",
        "ps",
        "swarmlog_operator",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Image}} {{.CurrentState}}",
    ])?;
    Ok(out
        .lines()
        .filter(|l| {
            l.split_once(' ')
                .is_some_and(|(i, state)| i == image && state.starts_with("Running"))
        })
        .count())
}

/// A node's row of the preflight in a `/status` document (null if none).
fn preflight_row(status: &serde_json::Value, hostname: &str) -> serde_json::Value {
    status["preflight"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["hostname"] == hostname)
        .cloned()
        .unwrap_or_default()
}

/// The manager whose operator container reports `leader`.
async fn container_leader(sb: &Sandbox, among: &[&'static str], timeout: Duration) -> Result<&'static str, String> {
    wait_for("an operator container reporting leader", timeout, || async {
        Ok(among
            .iter()
            .copied()
            .find(|m| container_role(sb, m).is_ok_and(|r| r.starts_with("leader "))))
    })
    .await
}

/// The operator image on `nodes` under `tag`, made so that `swarmlog
/// preflight` reads `value` from a file of the image (SWARMLOG_PREFLIGHT_FILE)
/// instead of the host's vm.max_map_count: each node gets its own value and
/// the host is never changed. Built on worker-1 (which runs no task of the
/// test) from `swarmlog:e2e-base`; returns the saved tar.
fn preflight_image(sb: &Sandbox, dir: &std::path::Path, tag: &str, value: u64) -> Result<std::path::PathBuf, String> {
    let w1 = sb.sock("worker-1")?;
    let ctx = dir.join(format!("preflight-{value}"));
    std::fs::create_dir_all(&ctx).map_err(|e| e.to_string())?;
    std::fs::write(ctx.join("max_map_count"), format!("{value}\n")).map_err(|e| e.to_string())?;
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM swarmlog:e2e-base\nCOPY max_map_count /max_map_count\nENV SWARMLOG_PREFLIGHT_FILE=/max_map_count\n",
    )
    .map_err(|e| e.to_string())?;
    common::sh(&format!(
        "DOCKER_BUILDKIT=0 docker -H unix://{w1} build -q -t {tag} {}",
        ctx.display()
    ))?;
    let tar = dir.join(format!("preflight-{value}-{}.tar", tag.replace([':', '/'], "-")));
    common::sh(&format!("docker -H unix://{w1} save -o {} {tag}", tar.display()))?;
    Ok(tar)
}

/// Loads an image tar on nodes.
fn load_tar(sb: &Sandbox, tar: &std::path::Path, nodes: &[&str]) -> Result<(), String> {
    for node in nodes {
        common::sh(&format!(
            "docker -H unix://{} load -q -i {}",
            sb.sock(node)?,
            tar.display()
        ))?;
    }
    Ok(())
}

/// Builds swarmlog:e2e from the static binary on manager-1 and puts it on
/// the other managers, and its base for preflight images on worker-1.
fn build_e2e_image(sb: &Sandbox) -> Result<u64, String> {
    static_binary()?;
    let env = format!("DOCKER_HOST={}", sb.host);
    common::sh(&format!(
        "{env} DOCKER_BUILDKIT=0 docker build -q -f Dockerfile.prebuilt -t swarmlog:e2e ."
    ))?;
    let size: u64 = common::sh(&format!(
        "{env} docker image inspect --format '{{{{.Size}}}}' swarmlog:e2e"
    ))?
    .trim()
    .parse()
    .map_err(|e| format!("image size: {e}"))?;
    load_image(sb, "swarmlog:e2e", &["manager-2", "manager-3", "worker-1"])?;
    common::sh(&format!(
        "docker -H unix://{} tag swarmlog:e2e swarmlog:e2e-base",
        sb.sock("worker-1")?
    ))?;
    Ok(size)
}

/// Writes of the calls other than the preflight jobs' (creating and
/// removing a one-off job is the preflight's way of looking).
fn stack_writes(calls: &[Call]) -> Vec<Call> {
    calls
        .iter()
        .filter(|c| c.is_write())
        .filter(|c| !c.path.contains("_preflight_") && !c.name.as_deref().is_some_and(|n| n.contains("_preflight_")))
        .cloned()
        .collect()
}

/// The image from the Dockerfile, deployed with manifests/operator.yml: one
/// task per manager, one leader; the stack converges after the
/// Elasticsearch preflight; a joining node is labelled and one with a low
/// vm.max_map_count is reported; the leader's daemon stops and the operator
/// on the new leader takes over; an upgrade of the operator restarts none of
/// the stack; uninstalling keeps the volume. Each operator container talks
/// to its manager through an engine proxy of the test (the socket mounted
/// into it is the proxy's), so its writes are counted at the engine.
fn operator_image_on_every_manager(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let size = build_e2e_image(sb)?;
    eprintln!("image swarmlog:e2e: {size} bytes");
    if size >= 25_000_000 {
        return Err(format!("the image is {size} bytes (target: under 25 MB)"));
    }
    let env = format!("DOCKER_HOST={}", sb.host);
    let dir = common::temp_dir("e2e");
    // Each logger node its own vm.max_map_count: logger-1 passes with a
    // value of its own, the joining logger-5 is low.
    const LOGGER_1: u64 = 300_007;
    const LOW: u64 = 65_530;
    load_tar(sb, &preflight_image(sb, &dir, "swarmlog:e2e", LOGGER_1)?, &["logger-1"])?;
    let low_tar = preflight_image(sb, &dir, "swarmlog:e2e", LOW)?;
    let values = dir.join("values.yaml");
    let values_arg = values.display().to_string();
    // Logstash on every logger node: a node that joins gets one.
    // Security off: the test plans from this host, whose root key is not
    // the operator's (tests/shipping.rs tests security end to end).
    std::fs::write(
        &values,
        "stack: ite2e\nlogstash:\n  mode: global\nelasticsearch:\n  security: false\n",
    )
    .map_err(|e| e.to_string())?;
    sb.docker(&["config", "create", "swarmlog_values_v1", &values.display().to_string()])?;
    common::operator::make_root_key(sb)?;
    let mut proxies = std::collections::BTreeMap::new();
    for m in MANAGERS {
        let p = EngineProxy::start(
            rt,
            std::path::Path::new(&sb.sock(m)?),
            &dir.join(format!("{m}.engine.sock")),
        )?;
        proxies.insert(m, p);
    }
    let socks = dir.join("{{.Node.Hostname}}.engine.sock");
    let deploy = |image: &str| {
        common::sh(&format!(
            "{env} SWARMLOG_IMAGE={image} SWARMLOG_PREFLIGHT_RECHECK=2s SWARMLOG_DOCKER_SOCK='{}' docker stack deploy --resolve-image never -d -c manifests/operator.yml swarmlog",
            socks.display()
        ))
    };
    let deployed = Instant::now();
    deploy("swarmlog:e2e")?;
    rt.block_on(async {
        let docker = sb.client().await?;
        wait_for("three operator tasks running", Duration::from_secs(60), || async {
            Ok((running_operators(sb, "swarmlog:e2e")? == 3).then_some(()))
        })
        .await?;
        let roles = wait_for("one leader, two standbys", Duration::from_secs(60), || async {
            let roles: Vec<String> = MANAGERS.iter().map(|m| container_role(sb, m).unwrap_or_else(|e| e)).collect();
            let leaders = roles.iter().filter(|r| r.starts_with("leader ")).count();
            let standbys = roles.iter().filter(|r| r.starts_with("standby ")).count();
            if leaders == 1 && standbys == 2 && roles.iter().any(|r| r == "leader Converged") {
                Ok(Some(roles))
            } else {
                Err(format!("roles {roles:?}"))
            }
        })
        .await?;
        let hosts = crate_wait_running(&docker, "ite2e").await?;
        eprintln!(
            "operator roles: {roles:?}; stack deploy of the operator to the logging stack running: {:?}",
            deployed.elapsed()
        );
        if hosts.iter().any(|h| h != "logger-1") {
            return Err(format!("stack tasks outside the logger node: {hosts:?}"));
        }
        // The preflight passed on logger-1 before Elasticsearch was created,
        // with logger-1's own value: the job ran there.
        let leader = container_leader(sb, &MANAGERS, Duration::from_secs(10)).await?;
        let st = container_status(sb, leader)?;
        let checks = &st["preflight"]["nodes"];
        if st["preflight"]["state"] != "on"
            || checks.as_array().map(Vec::len) != Some(1)
            || checks[0]["hostname"] != "logger-1"
            || checks[0]["state"] != "ok"
            || checks[0]["value"].as_u64() != Some(LOGGER_1)
        {
            return Err(format!("the preflight of logger-1 (its value is {LOGGER_1}): {}", st["preflight"]));
        }
        if sb.docker(&["service", "ls", "-q", "--filter", "label=io.swarmlog.preflight"])?.trim() != "" {
            return Err("a preflight job was left behind".into());
        }
        // At the engine: the leader wrote, the standbys did not.
        for m in MANAGERS {
            let w = writes(&proxies[m].calls());
            let creates = w.iter().filter(|c| c.path == "/services/create").count();
            if m == leader && creates < 3 {
                return Err(format!("the leader's writes lack the stack's services:\n{}", describe(&w)));
            }
            if m != leader && !w.is_empty() {
                return Err(format!("standby {m} wrote at the engine:\n{}", describe(&w)));
            }
        }

        // A worker named like the auto-label rule joins; its
        // vm.max_map_count is low: labelled, and reported by the preflight.
        let joiner = "logger-5";
        let joined = sb.script("add-worker", &["--load", &low_tar.display().to_string(), joiner]);
        let reported = async {
            joined?;
            let joined_at = Instant::now();
            wait_for(
                "the joining node labelled by the operator container",
                Duration::from_secs(30),
                || async {
                    let n = docker.inspect_node(joiner).await.map_err(|e| e.to_string())?;
                    let l = n.spec.and_then(|s| s.labels).unwrap_or_default();
                    Ok((l.get("logger").map(String::as_str) == Some("true")).then_some(()))
                },
            )
            .await?;
            // The stack uses it as the values say: a Logstash task runs there.
            let joiner_id = docker
                .inspect_node(joiner)
                .await
                .map_err(|e| e.to_string())?
                .id
                .unwrap_or_default();
            wait_for("a Logstash task running on the joined node", Duration::from_secs(60), || async {
                Ok(common::task_running_on(&docker, "ite2e_logstash", &joiner_id)
                    .await?
                    .then_some(()))
            })
            .await?;
            let st = wait_for("logger-5 reported low by the preflight", Duration::from_secs(60), || async {
                let st = container_status(sb, leader)?;
                let row = preflight_row(&st, joiner);
                if row["state"] == "low" {
                    Ok(Some(st))
                } else {
                    Err(format!("logger-5's row: {row}"))
                }
            })
            .await?;
            let row = preflight_row(&st, joiner);
            let msg = row["message"].as_str().unwrap_or_default();
            if row["value"] != LOW || !msg.contains("sysctl -w vm.max_map_count=262144") {
                return Err(format!("the low node's report (its value is {LOW}): {row}"));
            }
            if preflight_row(&st, "logger-1")["value"] != LOGGER_1 {
                return Err(format!("logger-1's row changed: {}", st["preflight"]));
            }
            let degraded = st["degraded_nodes"].as_array().into_iter().flatten().any(|d| d["hostname"] == joiner);
            if st["phase"] != "Degraded" || !degraded {
                return Err(format!(
                    "phase {} degraded {} (want Degraded, naming {joiner})",
                    st["phase"], st["degraded_nodes"]
                ));
            }
            eprintln!(
                "preflight: reported {:?} after add-worker returned: {msg}",
                joined_at.elapsed()
            );
            // Elasticsearch drifts meanwhile: its repair waits for the fix,
            // and nothing updates it over and over.
            let leader_host = format!("unix://{}", sb.sock(leader)?);
            common::run_docker(
                &leader_host,
                &["service", "update", "-d", "--no-resolve-image", "--env-add", "PREFLIGHT=1", "ite2e_elasticsearch"],
            )?;
            wait_for("Elasticsearch's repair held", Duration::from_secs(30), || async {
                let st = container_status(sb, leader)?;
                let held = st["objects"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|o| o["name"] == "ite2e_elasticsearch" && o["state"] == "held")
                    .cloned();
                Ok(held.filter(|o| o["why"].as_str().is_some_and(|w| w.contains(joiner))))
            })
            .await?;
            settled(&docker, "ite2e").await?;
            let held_mark = proxies[leader].mark();
            let held_from = stack_versions(&docker, "ite2e").await?;
            // The leader looks again (preflight rechecks every 2 s) and
            // still writes nothing to the stack.
            observed_again(&proxies[leader], held_mark, 3, "the leader").await?;
            let held_writes = stack_writes(&proxies[leader].since(held_mark));
            let held_to = stack_versions(&docker, "ite2e").await?;
            if !held_writes.is_empty() || held_from != held_to {
                return Err(format!(
                    "the stack changed while Elasticsearch was held:\n{}\n{held_from:?}\n{held_to:?}",
                    describe(&held_writes)
                ));
            }
            // Fixed on the node: the next check clears it, and the held
            // repair goes through (Converged means nothing left to do).
            load_tar(sb, &preflight_image(sb, &dir, "swarmlog:e2e", 262_144)?, &[joiner])?;
            wait_for("logger-5 ok after the fix", Duration::from_secs(60), || async {
                let st = container_status(sb, leader)?;
                let ok = preflight_row(&st, joiner)["state"] == "ok";
                if ok && st["phase"] == "Converged" {
                    return Ok(Some(()));
                }
                Err(format!(
                    "phase {}, degraded {}, preflight {}, events {}",
                    st["phase"], st["degraded_nodes"], st["preflight"], st["events"]
                ))
            })
            .await
        }
        .await;
        let _ = sb.docker(&["node", "rm", "--force", joiner]);
        let _ = sb.script("rm-node", &[joiner]);
        reported?;

        // The leader's daemon stops: the operator on the new leader takes over.
        let old = container_leader(sb, &MANAGERS, Duration::from_secs(10)).await?;
        let survivors: Vec<&'static str> = MANAGERS.iter().copied().filter(|m| *m != old).collect();
        let marks: std::collections::BTreeMap<&str, usize> = proxies.iter().map(|(m, p)| (*m, p.mark())).collect();
        let t0 = Instant::now();
        sb.script("node-stop", &[old])?;
        let survivor = format!("unix://{}", sb.sock(survivors[0])?);
        let elected = wait_for("the swarm to elect a new leader", Duration::from_secs(90), || async {
            let out = common::run_docker(&survivor, &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"])?;
            if out.lines().any(|l| l.ends_with(" Leader") && !l.starts_with(old)) {
                Ok(Some(t0.elapsed()))
            } else {
                Err(format!("node ls: {}", out.replace('\n', "; ")))
            }
        })
        .await?;
        let new = container_leader(sb, &survivors, Duration::from_secs(90)).await?;
        // A figure, not a target: bench/takeover measures it.
        eprintln!(
            "container takeover: swarm elected a new leader {elected:?} after {old}'s daemon stopped; the operator container on {new} reported leader after {:?} (polled with docker exec)",
            t0.elapsed()
        );
        let host = format!("unix://{}", sb.sock(new)?);
        common::run_docker(&host, &["service", "update", "-d", "--no-resolve-image", "--env-add", "FAILOVER=1", "ite2e_kibana"])?;
        wait_for("the drift repaired by the new leader's container", Duration::from_secs(60), || async {
            let o = common::swarmlog_with_host(Some(&host), &["plan", "--values", &values_arg]);
            match o.status.code() {
                Some(0) => Ok(Some(())),
                code => Err(format!("plan exit {code:?}: {}", String::from_utf8_lossy(&o.stdout).trim())),
            }
        })
        .await?;
        let repaired = stack_writes(&proxies[new].since(marks[new]));
        if !repaired.iter().any(|c| c.path.starts_with("/services/") && c.path.ends_with("/update")) {
            return Err(format!("the new leader's writes show no service update:\n{}", describe(&repaired)));
        }
        // The old leader comes back as a standby and writes nothing, while
        // it observes the swarm again and again.
        sb.script("node-start", &[old])?;
        let back_mark = proxies[old].mark();
        wait_for("the old leader's operator container back as standby", Duration::from_secs(90), || async {
            let s = container_status(sb, old)?;
            if s["role"] == "standby" {
                Ok(Some(()))
            } else {
                Err(format!("role {}", s["role"]))
            }
        })
        .await?;
        observed_again(&proxies[old], back_mark, 3, "the old leader's container").await?;
        let third = survivors.iter().copied().find(|m| *m != new).ok_or("no third manager")?;
        for (m, from, who) in [(old, marks[old], "the old leader after it failed"), (third, 0, "the manager that stayed standby")] {
            let w = writes(&proxies[m].since(from));
            if !w.is_empty() {
                return Err(format!("{who} ({m}) wrote at the engine:\n{}", describe(&w)));
            }
        }
        let early = writes(&proxies[new].calls()[..marks[new]]);
        if !early.is_empty() {
            return Err(format!("{new} wrote while it was standby:\n{}", describe(&early)));
        }

        // Upgrade the operator: the logging stack does not restart.
        let on_leader = common::client_for(&sb.sock(new)?).await?;
        settled(&on_leader, "ite2e").await?;
        let before = stack_versions(&on_leader, "ite2e").await?;
        let upgrade_marks: std::collections::BTreeMap<&str, usize> =
            proxies.iter().map(|(m, p)| (*m, p.mark())).collect();
        common::sh(&format!("{env} docker tag swarmlog:e2e swarmlog:e2e-next"))?;
        load_image(sb, "swarmlog:e2e-next", &["manager-2", "manager-3"])?;
        load_tar(sb, &preflight_image(sb, &dir, "swarmlog:e2e-next", LOGGER_1)?, &["logger-1"])?;
        deploy("swarmlog:e2e-next")?;
        wait_for("the upgraded operators running", Duration::from_secs(90), || async {
            Ok((running_operators(sb, "swarmlog:e2e-next")? == 3).then_some(()))
        })
        .await?;
        // The upgraded leader (a new process) has reconciled the swarm as it
        // is, checked logger-1, and found nothing to do.
        wait_for("the upgraded leader converged", Duration::from_secs(90), || async {
            let leader = container_leader(sb, &MANAGERS, Duration::from_secs(5)).await?;
            let st = container_status(sb, leader)?;
            let done = st["phase"] == "Converged"
                && st["reconcile"]["count"].as_u64().unwrap_or(0) > 0
                && preflight_row(&st, "logger-1")["state"] == "ok";
            if done {
                Ok(Some(()))
            } else {
                Err(format!("{leader}: phase {}, reconcile {}, preflight {}", st["phase"], st["reconcile"], st["preflight"]))
            }
        })
        .await?;
        let after = stack_versions(&on_leader, "ite2e").await?;
        let upgrade_writes: Vec<Call> = proxies
            .iter()
            .flat_map(|(m, p)| stack_writes(&p.since(upgrade_marks[m])))
            .collect();
        if before != after || !upgrade_writes.is_empty() {
            return Err(format!(
                "the operator's upgrade changed the stack:\n{}\n{before:?}\n{after:?}",
                describe(&upgrade_writes)
            ));
        }
        // Uninstall: both stacks go, the volume stays.
        sb.docker(&["stack", "rm", "swarmlog"])?;
        wait_for("the operator removed", Duration::from_secs(60), || async {
            Ok(sb
                .docker(&["service", "inspect", "swarmlog_operator"])
                .is_err()
                .then_some(()))
        })
        .await?;
        // `docker stack rm` removes services and networks at once; a network
        // still in use by a service being removed fails: run it again.
        wait_for("the stack removed", Duration::from_secs(60), || async {
            Ok(sb
                .docker(&["stack", "rm", "ite2e"])
                .ok()
                .filter(|_| {
                    sb.docker(&[
                        "network",
                        "ls",
                        "-q",
                        "--filter",
                        "label=com.docker.stack.namespace=ite2e",
                    ])
                    .is_ok_and(|o| o.trim().is_empty())
                })
                .map(|_| ()))
        })
        .await?;
        let logger = common::client_for(&sb.sock("logger-1")?).await?;
        logger
            .inspect_volume("ite2e_elasticsearch_index")
            .await
            .map_err(|e| format!("the Elasticsearch volume is gone after uninstall: {e}"))?;
        Ok(())
    })
}

/// `unix://` of the manager that is the swarm's leader now.
fn leader_host(sb: &Sandbox) -> Result<String, String> {
    let out = sb.docker(&["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"])?;
    let host = out
        .lines()
        .find_map(|l| l.strip_suffix(" Leader"))
        .ok_or_else(|| format!("no leader in node ls: {out}"))?;
    Ok(format!("unix://{}", sb.sock(host)?))
}

/// The minimum decides: logger-1's value (300,007) passes Elasticsearch 8's
/// minimum (the e2e test above) and fails 9's (1,048,576), set in values.
fn preflight_minimum_between_two_values(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    const VALUE: u64 = 300_007;
    build_e2e_image(sb)?;
    let dir = common::temp_dir("pfmin");
    load_tar(sb, &preflight_image(sb, &dir, "swarmlog:e2e", VALUE)?, &["logger-1"])?;
    let stack = "itpfmin";
    let run = |min: u64| -> Result<serde_json::Value, String> {
        let set = format!("elasticsearch.preflight.maxMapCount={min}");
        // On the leader's socket (an earlier test may have moved the
        // leadership away from manager-1): only the leader's operator checks.
        let op = Operator::start_on(
            &leader_host(sb)?,
            &format!("{stack}-{min}"),
            &[
                "--stack",
                stack,
                "--resync",
                "10m",
                "--set",
                &set,
                "--preflight-image",
                "swarmlog:e2e",
            ],
        )?;
        rt.block_on(wait_for(
            &format!("logger-1 checked against {min}"),
            Duration::from_secs(60),
            || async {
                let st = op.status()?;
                let row = preflight_row(&st, "logger-1");
                if st["preflight"]["min_map_count"] == min && (row["state"] == "ok" || row["state"] == "low") {
                    Ok(Some(st))
                } else {
                    Err(format!("preflight {}", st["preflight"]))
                }
            },
        ))
    };
    let eight = run(262_144)?;
    let row = preflight_row(&eight, "logger-1");
    if row["state"] != "ok" || row["value"] != VALUE {
        return Err(format!(
            "with Elasticsearch 8's minimum logger-1 ({VALUE}) should pass: {row}"
        ));
    }
    let nine = run(1_048_576)?;
    let row = preflight_row(&nine, "logger-1");
    let msg = row["message"].as_str().unwrap_or_default();
    if row["state"] != "low" || row["value"] != VALUE || !msg.contains("sysctl -w vm.max_map_count=1048576") {
        return Err(format!(
            "with Elasticsearch 9's minimum logger-1 ({VALUE}) should be low: {row}"
        ));
    }
    let held = nine["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|o| o["name"] == format!("{stack}_elasticsearch") && o["state"] == "held");
    if !held {
        return Err(format!(
            "Elasticsearch is not held below the minimum: {}",
            nine["objects"]
        ));
    }
    Ok(())
}

/// Waits until no rolling update of the stack is under way: the swarm
/// itself writes the service when one completes.
async fn settled(docker: &bollard::Docker, stack: &str) -> Result<(), String> {
    wait_for(
        "the stack's rolling updates to complete",
        Duration::from_secs(60),
        || async {
            let mut f = std::collections::HashMap::new();
            f.insert("label".to_string(), vec![format!("com.docker.stack.namespace={stack}")]);
            let services = docker
                .list_services(Some(bollard::query_parameters::ListServicesOptions {
                    filters: Some(f),
                    ..Default::default()
                }))
                .await
                .map_err(|e| e.to_string())?;
            let busy = services.iter().any(|s| {
                s.update_status.as_ref().and_then(|u| u.state).is_some_and(|st| {
                    matches!(
                        st,
                        bollard::models::ServiceUpdateStatusStateEnum::UPDATING
                            | bollard::models::ServiceUpdateStatusStateEnum::ROLLBACK_STARTED
                    )
                })
            });
            Ok((!busy).then_some(()))
        },
    )
    .await
}

/// Version index and task IDs of a stack's services.
async fn stack_versions(docker: &bollard::Docker, stack: &str) -> Result<Vec<String>, String> {
    let mut f = std::collections::HashMap::new();
    f.insert("label".to_string(), vec![format!("com.docker.stack.namespace={stack}")]);
    let services = docker
        .list_services(Some(bollard::query_parameters::ListServicesOptions {
            filters: Some(f.clone()),
            ..Default::default()
        }))
        .await
        .map_err(|e| e.to_string())?;
    let mut out: Vec<String> = services
        .iter()
        .map(|s| {
            format!(
                "{:?} {:?}",
                s.spec.as_ref().and_then(|s| s.name.clone()),
                s.version.as_ref().and_then(|v| v.index)
            )
        })
        .collect();
    f.insert("desired-state".to_string(), vec!["running".to_string()]);
    for t in docker
        .list_tasks(Some(bollard::query_parameters::ListTasksOptions { filters: Some(f) }))
        .await
        .map_err(|e| e.to_string())?
    {
        out.push(format!("task {:?}", t.id));
    }
    out.sort();
    Ok(out)
}

/// Hostnames of the running tasks of a stack, once all three services run.
async fn crate_wait_running(docker: &bollard::Docker, stack: &str) -> Result<Vec<String>, String> {
    wait_for("the stack running", Duration::from_secs(90), || async {
        let tasks = stack_versions(docker, stack).await?;
        if tasks.iter().filter(|t| t.starts_with("task ")).count() < 3 {
            return Ok(None);
        }
        let mut f = std::collections::HashMap::new();
        f.insert("label".to_string(), vec![format!("com.docker.stack.namespace={stack}")]);
        f.insert("desired-state".to_string(), vec!["running".to_string()]);
        let tasks = docker
            .list_tasks(Some(bollard::query_parameters::ListTasksOptions { filters: Some(f) }))
            .await
            .map_err(|e| e.to_string())?;
        if !tasks
            .iter()
            .all(|t| t.status.as_ref().and_then(|s| s.state) == Some(bollard::models::TaskState::RUNNING))
        {
            return Ok(None);
        }
        let nodes = docker
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(
            tasks
                .iter()
                .map(|t| {
                    nodes
                        .iter()
                        .find(|n| n.id == t.node_id)
                        .and_then(|n| n.description.as_ref()?.hostname.clone())
                        .unwrap_or_default()
                })
                .collect(),
        ))
    })
    .await
}

/// `Hostname ManagerStatus` lines of `docker node ls` on `host`.
fn manager_statuses(host: &str) -> Result<Vec<(String, String)>, String> {
    let out = common::run_docker(host, &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"])?;
    Ok(out
        .lines()
        .map(|l| match l.split_once(' ') {
            Some((h, m)) => (h.to_string(), m.trim().to_string()),
            None => (l.trim().to_string(), String::new()),
        })
        .collect())
}

/// Whatever a test left: every manager of the sandbox is a manager again
/// (promoted from one that is), Leader or Reachable.
fn restore_managers(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    let mut from = None;
    for m in MANAGERS {
        let host = format!("unix://{}", sb.sock(m)?);
        if manager_statuses(&host).is_ok() {
            from = Some(host);
            break;
        }
    }
    let from = from.ok_or("no manager answers `docker node ls`")?;
    for m in MANAGERS {
        let role = common::run_docker(&from, &["node", "inspect", "--format", "{{.Spec.Role}}", m])?;
        if role.trim() != "manager" {
            common::run_docker(&from, &["node", "promote", m])?;
            done.push(format!("promoted {m} again"));
        }
    }
    rt.block_on(wait_for(
        "every manager Leader or Reachable",
        Duration::from_secs(90),
        || async {
            let st = manager_statuses(&from)?;
            let ok = MANAGERS
                .iter()
                .all(|m| st.iter().any(|(h, s)| h == m && (s == "Leader" || s == "Reachable")));
            if ok {
                Ok(Some(()))
            } else {
                Err(format!("node ls: {st:?}"))
            }
        },
    ))?;
    Ok(done)
}

/// Milliseconds of `at` relative to `t0` (negative: before it).
fn rel_ms(at: Instant, t0: Instant) -> i64 {
    if at >= t0 {
        at.duration_since(t0).as_millis() as i64
    } else {
        -(t0.duration_since(at).as_millis() as i64)
    }
}

/// Every write the operators' proxies saw from `from[i]` on, in time
/// order, with its time relative to `t0`: (ms, manager, call).
fn write_timeline(ops: &[Operator], from: &[usize], t0: Instant) -> Result<Vec<(i64, &'static str, Call)>, String> {
    let mut all = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        for c in writes(&op.engine()?.since(from.get(i).copied().unwrap_or(0))) {
            all.push((rel_ms(c.at, t0), MANAGERS[i], c));
        }
    }
    all.sort_by_key(|(ms, _, _)| *ms);
    Ok(all)
}

/// The timeline, one write a line; `held`: a write that arrived at its
/// proxy at that instant and was let through to the engine `ms` after `t0`.
fn describe_timeline(t: &[(i64, &'static str, Call)], held: Option<(Instant, i64)>) -> String {
    if t.is_empty() {
        return "  (no writes)".to_string();
    }
    t.iter()
        .map(|(ms, m, c)| {
            let note = match held {
                Some((at, out)) if c.at == at => format!(" [held at the proxy, let through at {out:+} ms]"),
                _ => String::new(),
            };
            format!("  {ms:>+7} ms {m}: {c}{note}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The object a write is about: the `Name` its body carries, else its path.
fn object_of(c: &Call) -> String {
    c.name.clone().unwrap_or_else(|| c.path.clone())
}

/// Leadership moves while the leader's operator has a write in flight: the
/// re-creation of a removed Kibana is held at its engine proxy, its node is
/// demoted (from another manager) so another manager leads, and the held
/// write is let through once the demotion is done. Writes are counted at
/// the three proxies, with their times. The window is from the demote on:
/// within it, the old leader changes nothing (its held write and any later
/// one are refused by its engine, now a worker's), the third manager's
/// operator writes nothing at all, and the new leader's operator writes only
/// after the demote and converges the stack; so no object is written with
/// success by two operators in it. The stack ends converged with exactly
/// one of each service, one leader and two standbys once the node is a
/// manager again. The node is promoted again also when the test fails.
fn leadership_moves_during_apply(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    const STACK_M: &str = "itmove";
    let kibana = format!("{STACK_M}_kibana");
    let mut ops = Vec::new();
    for m in MANAGERS {
        let sock = format!("unix://{}", sb.sock(m)?);
        ops.push(Operator::start_counted(
            rt,
            &sock,
            &format!("itmove-{m}"),
            &["--stack", STACK_M, "--resync", "10m"],
        )?);
    }
    // Set once known, for the failure message.
    // (proxy marks, the demote, the held write: arrival, let through in ms).
    type Window = (Vec<usize>, Instant, Option<(Instant, i64)>);
    let window: std::sync::Mutex<Option<Window>> = std::sync::Mutex::new(None);
    let roles_now = |ops: &[Operator]| -> Vec<String> {
        ops.iter()
            .map(|o| role_of(o).unwrap_or_else(|e| format!("({e})")))
            .collect()
    };
    let result = rt.block_on(async {
        let settled = |host: String, what: &'static str| {
            let ops = &ops;
            async move {
                wait_for(what, Duration::from_secs(120), || async {
                    let roles = roles_now(ops);
                    let leaders = roles.iter().filter(|r| r.as_str() == "leader/Converged").count();
                    let standbys = roles.iter().filter(|r| r.as_str() == "standby/Standby").count();
                    let plan = common::swarmlog_with_host(Some(&host), &["plan", "--stack", STACK_M]);
                    if leaders == 1 && standbys == 2 && plan.status.code() == Some(0) {
                        Ok(Some(roles))
                    } else {
                        Err(format!(
                            "roles {roles:?}; plan exit {:?}: {}",
                            plan.status.code(),
                            String::from_utf8_lossy(&plan.stdout).trim()
                        ))
                    }
                })
                .await
            }
        };
        let roles = settled(sb.host.clone(), "one leader converged and two standbys").await?;
        let leader = roles.iter().position(|r| r.starts_with("leader/")).ok_or("no leader")?;
        let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let from = format!("unix://{}", sb.sock(MANAGERS[others[0]])?);
        let old_host = format!("unix://{}", sb.sock(MANAGERS[leader])?);
        let marks: Vec<usize> = ops.iter().map(|o| o.engine().map(EngineProxy::mark)).collect::<Result<_, _>>()?;
        let old = ops[leader].engine()?;
        old.inject(Rule {
            method: Some("POST".into()),
            path_prefix: "/services/".into(),
            fault: Fault::Hold,
            times: None,
        });
        common::run_docker(&from, &["service", "rm", &kibana])?;
        let held = wait_for("the leader's re-creation of Kibana held", Duration::from_secs(30), || async {
            let pending = old.pending();
            match pending.iter().find(|c| c.path == "/services/create") {
                Some(c) => Ok(Some(c.clone())),
                None => Err(format!("pending at {}: {}", MANAGERS[leader], describe(&pending))),
            }
        })
        .await?;

        // Leadership moves: the leader's node is demoted.
        let t_demote = Instant::now();
        *window.lock().unwrap_or_else(|e| e.into_inner()) = Some((marks.clone(), t_demote, None));
        common::run_docker(&from, &["node", "demote", MANAGERS[leader]])?;
        let moved = wait_for("the demotion done and another manager leading", Duration::from_secs(90), || async {
            let st = manager_statuses(&from)?;
            let demoted = st.iter().any(|(h, s)| h == MANAGERS[leader] && s.is_empty());
            let elsewhere = st.iter().any(|(h, s)| h != MANAGERS[leader] && s == "Leader");
            let control = common::run_docker(&old_host, &["info", "--format", "{{.Swarm.ControlAvailable}}"])?;
            if demoted && elsewhere && control.trim() == "false" {
                Ok(Some(t_demote.elapsed()))
            } else {
                Err(format!("node ls {st:?}; the old leader's daemon: control available {}", control.trim()))
            }
        })
        .await?;
        let new = wait_for("another manager's operator leading", Duration::from_secs(60), || async {
            let roles = roles_now(&ops);
            match others.iter().copied().find(|i| roles[*i].starts_with("leader/")) {
                Some(i) => Ok(Some(i)),
                None => Err(format!("roles {roles:?}")),
            }
        })
        .await?;
        let took_over = t_demote.elapsed();
        let new_host = format!("unix://{}", sb.sock(MANAGERS[new])?);
        wait_for("the new leader's operator converging the stack", Duration::from_secs(60), || async {
            let o = common::swarmlog_with_host(Some(&new_host), &["plan", "--stack", STACK_M]);
            match o.status.code() {
                Some(0) => Ok(Some(())),
                code => Err(format!("plan exit {code:?}: {}", String::from_utf8_lossy(&o.stdout).trim())),
            }
        })
        .await?;
        let converged = t_demote.elapsed();

        // The held write goes on, to the engine of a node that is now a worker.
        let released = Instant::now();
        old.clear_faults();
        if let Some(w) = window.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            w.2 = Some((held.at, rel_ms(released, t_demote)));
        }
        let answer = wait_for("the held write answered", Duration::from_secs(30), || async {
            let c = old.calls().into_iter().find(|c| c.at == held.at && c.path == held.path);
            Ok(c.filter(|c| c.status.is_some()))
        })
        .await?;
        // The old leader has had the chance to act on the answer: two more
        // reconciles (they fail on a worker's engine, and back off).
        let count = |op: &Operator| op.status().map(|s| s["reconcile"]["count"].as_u64().unwrap_or(0));
        let before = count(&ops[leader])?;
        wait_for("the old leader to reconcile twice more", Duration::from_secs(60), || async {
            let now = count(&ops[leader])?;
            if now >= before + 2 {
                Ok(Some(()))
            } else {
                Err(format!("{} reconciles since the refusal", now - before))
            }
        })
        .await?;
        // A worker's operator leads nothing: one operator says leader.
        let roles = roles_now(&ops);
        if roles.iter().filter(|r| r.starts_with("leader/")).count() != 1 {
            return Err(format!("after the demote, not exactly one operator reports role leader: {roles:?}"));
        }
        eprintln!(
            "leadership moved: demoted {} (done {moved:?} after the demote), the operator on {} leading {took_over:?} and converged {converged:?} after it; \
             the held write released {:?} after it: {answer}; roles then {:?}",
            MANAGERS[leader],
            MANAGERS[new],
            released.duration_since(t_demote),
            roles_now(&ops)
        );

        // The node is a manager again: one leader, two standbys, converged.
        common::run_docker(&from, &["node", "promote", MANAGERS[leader]])?;
        let roles = settled(new_host.clone(), "one leader and two standbys after the promotion").await?;
        let third = others.iter().copied().find(|i| *i != new).ok_or("no third manager")?;

        // Counted at the engine, from the fault on.
        let timeline = write_timeline(&ops, &marks, t_demote)?;
        let held_note = Some((held.at, rel_ms(released, t_demote)));
        let ok = |c: &Call| c.status.is_some_and(|s| (200..300).contains(&s));
        let old_changed: Vec<Call> = writes(&old.since(marks[leader])).into_iter().filter(ok).collect();
        if !old_changed.is_empty() || answer.status.is_none_or(|s| s < 400) {
            return Err(format!(
                "the old leader ({}) changed the swarm from the fault on:\n{}\nall writes:\n{}",
                MANAGERS[leader],
                describe(&old_changed),
                describe_timeline(&timeline, held_note)
            ));
        }
        let third_writes = writes(&ops[third].engine()?.calls());
        if !third_writes.is_empty() {
            return Err(format!("the third manager ({}) wrote:\n{}", MANAGERS[third], describe(&third_writes)));
        }
        let early = writes(&ops[new].engine()?.calls()[..marks[new]]);
        let new_writes = writes(&ops[new].engine()?.since(marks[new]));
        if !early.is_empty() || new_writes.iter().any(|c| c.at < t_demote) {
            return Err(format!(
                "the new leader ({}) wrote before the demote:\n{}",
                MANAGERS[new],
                describe_timeline(&timeline, held_note)
            ));
        }
        if !new_writes
            .iter()
            .any(|c| c.path == "/services/create" && c.name.as_deref() == Some(kibana.as_str()) && ok(c))
        {
            return Err(format!(
                "the new leader did not re-create Kibana:\n{}",
                describe_timeline(&timeline, held_note)
            ));
        }
        let mut writers = std::collections::BTreeMap::<String, std::collections::BTreeSet<&str>>::new();
        for (_, m, c) in timeline.iter().filter(|(_, _, c)| ok(c)) {
            writers.entry(object_of(c)).or_default().insert(*m);
        }
        let shared: Vec<String> = writers
            .iter()
            .filter(|(_, w)| w.len() > 1)
            .map(|(o, w)| format!("{o}: {w:?}"))
            .collect();
        if !shared.is_empty() {
            return Err(format!(
                "objects written by two operators in the window: {shared:?}\n{}",
                describe_timeline(&timeline, held_note)
            ));
        }
        let docker = common::client_for(&sb.sock(MANAGERS[new])?).await?;
        let mut f = std::collections::HashMap::new();
        f.insert("label".to_string(), vec![format!("com.docker.stack.namespace={STACK_M}")]);
        let mut names: Vec<String> = docker
            .list_services(Some(bollard::query_parameters::ListServicesOptions {
                filters: Some(f),
                ..Default::default()
            }))
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|s| s.spec?.name)
            .collect();
        names.sort();
        let want: Vec<String> = ["elasticsearch", "kibana", "logstash"]
            .iter()
            .map(|s| format!("{STACK_M}_{s}"))
            .collect();
        if names != want {
            return Err(format!("services of the stack at the end: {names:?}, want {want:?}"));
        }
        eprintln!(
            "leadership moved: roles at the end {roles:?}; writes from the fault on (ms from the demote):\n{}",
            describe_timeline(&timeline, held_note)
        );
        Ok::<(), String>(())
    });
    let restored = restore_managers(sb, rt);
    let result = result.map_err(|e| {
        let timeline = window
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .and_then(|(marks, t0, held)| {
                write_timeline(&ops, &marks, t0)
                    .ok()
                    .map(|t| describe_timeline(&t, held))
            })
            .unwrap_or_else(|| "  (before the fault)".to_string());
        let each: Vec<String> = ops
            .iter()
            .enumerate()
            .map(|(i, o)| format!("--- operator on {}:\n{}", MANAGERS[i], o.evidence(25)))
            .collect();
        format!(
            "{e}\nwrites from the fault on (ms from the demote):\n{timeline}\n{}",
            each.join("\n")
        )
    });
    for (i, op) in ops.iter_mut().enumerate() {
        let code = op.stop(Duration::from_secs(15))?;
        if result.is_ok() && code != Some(0) {
            return Err(format!("operator on {} exited {code:?}", MANAGERS[i]));
        }
    }
    match (result, restored) {
        (Err(e), Ok(done)) => Err(format!("{e}\n(restored: {done:?})")),
        (Err(e), Err(r)) => Err(format!("{e}\n(and restoring the managers failed: {r})")),
        (Ok(()), Err(r)) => Err(format!("restoring the managers failed: {r}")),
        (Ok(()), Ok(_)) => {
            sb.docker(&["stack", "rm", STACK_M])?;
            Ok(())
        }
    }
}
