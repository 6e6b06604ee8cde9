//! `swarmlog run` against the sandbox swarm: convergence, healing, node
//! joins, a cut event stream, two writers, invalid values.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::proxy::{describe, Call, Fault, Rule};
pub use crate::common::Operator;
use crate::common::{self, wait_for, Sandbox};

async fn converged(sb: &Sandbox, stack: &str, extra: &[&str], what: &str) -> Result<(), String> {
    converged_within(sb, stack, extra, what, Duration::from_secs(90)).await
}

/// `swarmlog plan` against the sandbox exits 0 (nothing left to do) within `within`.
pub(crate) async fn converged_within(
    sb: &Sandbox,
    stack: &str,
    extra: &[&str],
    what: &str,
    within: Duration,
) -> Result<(), String> {
    wait_for(what, within, || async {
        let mut args = vec!["plan", "--stack", stack];
        args.extend_from_slice(extra);
        let o = sb.swarmlog(&args);
        match o.status.code() {
            Some(0) => Ok(Some(())),
            code => Err(format!(
                "plan exit {code:?}: {}{}",
                String::from_utf8_lossy(&o.stdout).trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
        }
    })
    .await
}

/// Asks the operator for `n` reconciles, one after the other, and waits
/// for each to finish.
async fn reconciles(op: &Operator, n: u64) -> Result<(), String> {
    for _ in 0..n {
        let before = op.status()?["reconcile"]["count"].as_u64().unwrap_or(0);
        op.reconcile_now()?;
        wait_for("a requested reconcile", Duration::from_secs(30), || async {
            let st = op.status()?;
            let now = st["reconcile"]["count"].as_u64().unwrap_or(0);
            if now > before {
                Ok(Some(()))
            } else {
                Err(format!("reconcile {}", st["reconcile"]))
            }
        })
        .await?;
    }
    Ok(())
}

/// Writes among calls.
pub(crate) fn writes(calls: &[Call]) -> Vec<Call> {
    calls.iter().filter(|c| c.is_write()).cloned().collect()
}

pub(crate) async fn remove(sb: &Sandbox, stack: &str) -> Result<(), String> {
    let docker = sb.client().await?;
    crate::remove_stack(sb, &docker, stack).await
}

/// From empty to converged; reconciles of the converged swarm write
/// nothing at the engine; every drift healed with no manual step (with
/// writes); SIGTERM exits 0.
pub fn run_converges_and_heals(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itrun";
    let mut op = Operator::start_counted(
        rt,
        &sb.host,
        stack,
        &["--stack", stack, "--resync", "10m", "--allow-unauthenticated-reconcile"],
    )?;
    rt.block_on(async {
        converged(sb, stack, &[], "the operator to converge the stack").await?;
        let docker = sb.client().await?;
        crate::wait_running(&docker, stack, 3).await?;
        // Zero writes when converged, counted at the engine over five
        // reconciles: no POST or DELETE at all, nodes included.
        let engine = op.engine()?;
        let mark = engine.mark();
        reconciles(&op, 5).await?;
        let calls = engine.since(mark);
        if !writes(&calls).is_empty() || !calls.iter().any(|c| c.path == "/services") {
            return Err(format!(
                "reconciles of a converged swarm wrote:\n{}",
                describe(&writes(&calls))
            ));
        }
        let kibana = format!("{stack}_kibana");
        // Removed service: re-created.
        let t0 = Instant::now();
        sb.docker(&["service", "rm", &kibana])?;
        wait_for("kibana re-created", Duration::from_secs(30), || async {
            Ok(docker.inspect_service(&kibana, None).await.ok().map(|_| ()))
        })
        .await?;
        eprintln!(
            "heal: removed service re-created after {:?} (CLI round trips included)",
            t0.elapsed()
        );
        for drift in [
            vec![
                "service",
                "update",
                "-d",
                "--no-resolve-image",
                "--env-add",
                "FOO=bar",
                kibana.as_str(),
            ],
            vec![
                "service",
                "update",
                "-d",
                "--no-resolve-image",
                "--replicas",
                "3",
                kibana.as_str(),
            ],
        ] {
            let mark = engine.mark();
            sb.docker(&drift)?;
            let t0 = Instant::now();
            converged(sb, stack, &[], &format!("drift {drift:?} repaired")).await?;
            let repair = writes(&engine.since(mark));
            if !repair
                .iter()
                .any(|c| c.path.starts_with("/services/") && c.path.ends_with("/update"))
            {
                return Err(format!(
                    "no service update at the engine for {drift:?}:\n{}",
                    describe(&repair)
                ));
            }
            eprintln!("heal: {:?} repaired within {:?}", &drift[4..6], t0.elapsed());
        }
        // On events alone the operator reads networks, configs and secrets
        // again only when an event names their kind: a stray config and a
        // stray network of the stack appearing are seen and removed (the
        // resync is 10 minutes away).
        let stray = format!("{stack}_stray");
        let owner = format!("io.swarmlog.stack={stack}");
        let data = std::env::temp_dir().join(format!("{stray}-{}", std::process::id()));
        std::fs::write(&data, "stray\n").map_err(|e| e.to_string())?;
        let data_path = data.to_string_lossy().to_string();
        sb.docker(&["config", "create", "--label", &owner, &stray, &data_path])?;
        let _ = std::fs::remove_file(&data);
        sb.docker(&["network", "create", "--driver", "overlay", "--label", &owner, &stray])?;
        let t0 = Instant::now();
        wait_for(
            "the stray config and network removed",
            Duration::from_secs(30),
            || async {
                let config = sb.docker(&["config", "inspect", &stray]).is_ok();
                let network = sb.docker(&["network", "inspect", &stray]).is_ok();
                Ok((!config && !network).then_some(()))
            },
        )
        .await?;
        eprintln!("heal: a stray config and network removed within {:?}", t0.elapsed());
        Ok::<(), String>(())
    })?;
    let code = op.stop(Duration::from_secs(15))?;
    if code != Some(0) {
        return Err(format!("swarmlog run exited {code:?} on SIGTERM:\n{}", op.log_text()));
    }
    let log = op.log_text();
    if log.contains("panicked") {
        return Err(format!("the operator panicked:\n{log}"));
    }
    rt.block_on(remove(sb, stack))
}

/// A worker named like the rule joins: it is labelled and gets a task of a
/// global-mode service.
pub fn node_join_is_labelled_and_used(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itjoin";
    let host = "logger-9";
    let mut op = Operator::start(
        sb,
        stack,
        &[
            "--stack",
            stack,
            "--resync",
            "10m",
            "--set",
            "logstash.mode=global",
            "--auto-label",
            "hostname=logger-*:logger=true",
        ],
    )?;
    let result = rt.block_on(async {
        converged(
            sb,
            stack,
            &["--set", "logstash.mode=global"],
            "the operator to converge",
        )
        .await?;
        let t0 = Instant::now();
        let out = Command::new(common::repo().join("scripts/sandbox"))
            .args(["add-worker", "--name", &sb.name, host])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("add-worker failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let docker = sb.client().await?;
        wait_for("the new node labelled logger=true", Duration::from_secs(30), || async {
            let n = docker.inspect_node(host).await.map_err(|e| e.to_string())?;
            let l = n.spec.and_then(|s| s.labels).unwrap_or_default();
            Ok((l.get("logger").map(String::as_str) == Some("true")).then_some(()))
        })
        .await?;
        eprintln!("join: {host} labelled {:?} after add-worker began", t0.elapsed());
        let node_id = docker
            .inspect_node(host)
            .await
            .map_err(|e| e.to_string())?
            .id
            .unwrap_or_default();
        wait_for(
            "a Logstash task running on the new node",
            Duration::from_secs(60),
            || async {
                Ok(common::task_running_on(&docker, &format!("{stack}_logstash"), &node_id)
                    .await?
                    .then_some(()))
            },
        )
        .await?;
        Ok(())
    });
    let _ = op.stop(Duration::from_secs(15));
    // Leave the swarm as it was: the extra node out, the stack removed.
    let _ = sb.docker(&["node", "rm", "--force", host]);
    let _ = Command::new(common::repo().join("scripts/sandbox"))
        .args(["node-stop", "--name", &sb.name, host])
        .output();
    result?;
    rt.block_on(remove(sb, stack))
}

/// The manager's daemon restarts (same data root): the operator reconnects,
/// re-lists, and repairs a drift made right after the restart.
pub fn event_stream_cut_reconnects(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itcut";
    let op = Operator::start(sb, stack, &["--stack", stack, "--resync", "10m"])?;
    rt.block_on(async {
        converged(sb, stack, &[], "the operator to converge").await?;
        for cmd in ["node-stop", "node-start"] {
            let out = Command::new(common::repo().join("scripts/sandbox"))
                .args([cmd, "--name", &sb.name, "manager-1"])
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "{cmd} manager-1 failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        // The swarm needs a moment to have its leader back.
        wait_for("the manager to answer", Duration::from_secs(60), || async {
            Ok(sb.docker(&["node", "ls"]).ok().map(|_| ()))
        })
        .await?;
        let kibana = format!("{stack}_kibana");
        wait_for("a drift made after the restart", Duration::from_secs(30), || async {
            Ok(sb
                .docker(&[
                    "service",
                    "update",
                    "-d",
                    "--no-resolve-image",
                    "--env-add",
                    "CUT=1",
                    &kibana,
                ])
                .ok()
                .map(|_| ()))
        })
        .await?;
        converged(sb, stack, &[], "the drift repaired after the reconnect").await?;
        let log = op.log_text();
        if !log.contains("event stream reconnected") {
            return Err(format!("no reconnect in the operator's log:\n{log}"));
        }
        Ok(())
    })?;
    drop(op);
    rt.block_on(remove(sb, stack))
}

/// Two operators with gating off: converged, no duplicate network. Then a
/// barrier at the engine makes both re-create a removed service at the same
/// time: one gets the conflict, observes again and re-plans; converged with
/// no duplicates.
pub fn two_writers_converge(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "ittwo";
    let args = ["--stack", stack, "--resync", "10m", "--no-leader-election"];
    let mut a = Operator::start_counted(rt, &sb.host, "ittwo-a", &args)?;
    let mut b = Operator::start_counted(rt, &sb.host, "ittwo-b", &args)?;
    let networks = |docker: bollard::Docker| async move {
        Ok::<usize, String>(
            docker
                .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|n| n.name.as_deref() == Some("ittwo_log_net"))
                .count(),
        )
    };
    rt.block_on(async {
        converged(sb, stack, &[], "two operators to converge").await?;
        let docker = sb.client().await?;
        let n = networks(docker.clone()).await?;
        if n != 1 {
            return Err(format!("{n} networks named ittwo_log_net after two writers converged"));
        }
        let (pa, pb) = (a.engine()?, b.engine()?);
        let marks = (pa.mark(), pb.mark());
        for p in [pa, pb] {
            p.inject(Rule {
                method: Some("POST".into()),
                path_prefix: "/services/create".into(),
                fault: Fault::Hold,
                times: Some(1),
            });
        }
        sb.docker(&[
            "service",
            "rm",
            &format!("{stack}_kibana"),
            &format!("{stack}_logstash"),
        ])?;
        wait_for(
            "both operators holding a service create",
            Duration::from_secs(30),
            || async {
                let held: Vec<bool> = [pa, pb]
                    .iter()
                    .map(|p| p.pending().iter().any(|c| c.path == "/services/create"))
                    .collect();
                if held.iter().all(|h| *h) {
                    Ok(Some(()))
                } else {
                    Err(format!("holding a create: {held:?}"))
                }
            },
        )
        .await?;
        pa.open_gate();
        pb.open_gate();
        converged(sb, stack, &[], "two operators to heal").await?;
        let mut conflicts = Vec::new();
        for (p, mark, who) in [(pa, marks.0, "a"), (pb, marks.1, "b")] {
            let calls = p.since(mark);
            let (c, replanned) = crate::reconcile::conflict_and_replan(&calls);
            if !c.is_empty() && !replanned {
                return Err(format!(
                    "operator {who} did not look again after its conflict:\n{}",
                    describe(&calls)
                ));
            }
            conflicts.extend(c);
        }
        if conflicts.is_empty() {
            return Err(format!(
                "no conflict at the engine, so the two writers did not collide:\na:\n{}\nb:\n{}",
                describe(&writes(&pa.since(marks.0))),
                describe(&writes(&pb.since(marks.1)))
            ));
        }
        eprintln!("two writers: conflicts at the engine: {}", describe(&conflicts));
        let services = crate::stack_services(&docker, stack).await?;
        let n = networks(docker.clone()).await?;
        if services.len() != 3 || n != 1 {
            return Err(format!(
                "{} services and {n} networks after two writers",
                services.len()
            ));
        }
        Ok::<(), String>(())
    })?;
    for (name, op) in [("a", &mut a), ("b", &mut b)] {
        let code = op.stop(Duration::from_secs(15))?;
        if code != Some(0) {
            return Err(format!("operator {name} exited {code:?}:\n{}", op.log_text()));
        }
    }
    rt.block_on(remove(sb, stack))
}

/// A values file that turns invalid keeps the last good state in force;
/// fixed (with a change), the change is applied.
pub fn invalid_values_keep_last_good(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itinvalid";
    let dir = common::temp_dir(stack);
    let values = dir.join("values.yaml");
    std::fs::write(&values, "kibana:\n  domain: a.example.org\n").map_err(|e| e.to_string())?;
    let v = values.display().to_string();
    let op = Operator::start(
        sb,
        "itinvalid-op",
        &[
            "--stack",
            stack,
            "--resync",
            "10m",
            "--values",
            &v,
            "--watch-interval",
            "200ms",
        ],
    )?;
    rt.block_on(async {
        converged(sb, stack, &["--values", &v], "the operator to converge").await?;
        std::fs::write(&values, "kibana:\n  domian: b.example.org\n").map_err(|e| e.to_string())?;
        wait_for(
            "the operator to report the invalid values",
            Duration::from_secs(20),
            || async { Ok(op.log_text().contains("desired state is invalid").then_some(())) },
        )
        .await?;
        // Drift is still repaired, towards the last good state.
        sb.docker(&[
            "service",
            "update",
            "-d",
            "--no-resolve-image",
            "--env-add",
            "X=1",
            &format!("{stack}_kibana"),
        ])?;
        let good = dir.join("good.yaml");
        std::fs::write(&good, "kibana:\n  domain: a.example.org\n").map_err(|e| e.to_string())?;
        converged(
            sb,
            stack,
            &["--values", &good.display().to_string()],
            "drift repaired under invalid values",
        )
        .await?;
        // Fixed with a change: applied.
        std::fs::write(&values, "kibana:\n  domain: c.example.org\n").map_err(|e| e.to_string())?;
        converged(sb, stack, &["--values", &v], "the fixed values applied").await?;
        Ok::<(), String>(())
    })?;
    drop(op);
    rt.block_on(remove(sb, stack))
}

/// Issue: a values file read while being rewritten (empty, or another stack
/// name, or without Elasticsearch) made `run` create a second stack with an
/// empty volume. Now each is invalid: the state in force stays, reported.
pub fn half_written_values_change_nothing(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itpartial";
    let dir = common::temp_dir(stack);
    let values = dir.join("values.yaml");
    let good = format!("stack: {stack}\n");
    std::fs::write(&values, &good).map_err(|e| e.to_string())?;
    let v = values.display().to_string();
    let op = Operator::start(
        sb,
        "itpartial-op",
        &["--resync", "10m", "--values", &v, "--watch-interval", "200ms"],
    )?;
    let result = rt.block_on(async {
        converged(sb, stack, &["--values", &v], "the operator to converge").await?;
        let docker = sb.client().await?;
        let before = stack_services(&docker).await?;
        for (content, says) in [
            ("", "the values file is empty"),
            ("# being written\n", "the values file is empty"),
            // Renders the default stack name: a second stack, refused.
            ("kibana:\n  replicas: 1\n", "fixed at start"),
        ] {
            std::fs::write(&values, content).map_err(|e| e.to_string())?;
            op.reconcile_now().ok();
            wait_for(
                &format!("the operator to refuse {content:?}"),
                Duration::from_secs(20),
                || async {
                    let st = op.status()?;
                    let invalid = st["invalid"].to_string();
                    Ok((st["phase"] == "Invalid" && invalid.contains(says)).then_some(()))
                },
            )
            .await?;
            let after = stack_services(&docker).await?;
            if after != before {
                return Err(format!(
                    "services changed under {content:?}: before {before:?}, after {after:?}"
                ));
            }
        }
        // Written whole again: valid, nothing to do.
        std::fs::write(&values, &good).map_err(|e| e.to_string())?;
        converged(sb, stack, &["--values", &v], "valid values again").await
    });
    drop(op);
    rt.block_on(remove(sb, stack))?;
    result
}

/// Every service of a stack namespace in the swarm, by name (with its spec version).
async fn stack_services(docker: &bollard::Docker) -> Result<Vec<(String, u64)>, String> {
    let mut out: Vec<(String, u64)> = docker
        .list_services(None::<bollard::query_parameters::ListServicesOptions>)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|s| {
            let name = s.spec.as_ref()?.name.clone()?;
            let labelled = s
                .spec
                .as_ref()?
                .labels
                .as_ref()?
                .contains_key("com.docker.stack.namespace");
            labelled.then(|| (name, s.version.and_then(|v| v.index).unwrap_or(0)))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Issue: with two logger nodes, swarm restarted Elasticsearch on the other
/// one (drain, node down), on an empty volume. Now it is pinned to the node
/// holding its data: drained, it waits (Degraded, the node named) and runs
/// nowhere else; back, it runs again on its data.
pub fn elasticsearch_stays_with_its_data(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itpin";
    let op = Operator::start(sb, "itpin-op", &["--stack", stack, "--resync", "10m"])?;
    let result = rt.block_on(async {
        converged(sb, stack, &[], "the operator to converge").await?;
        let docker = sb.client().await?;
        let es = format!("{stack}_elasticsearch");
        let node_id = |host: &str| {
            let host = host.to_string();
            let docker = docker.clone();
            async move {
                let nodes = docker
                    .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
                    .await
                    .map_err(|e| e.to_string())?;
                nodes
                    .into_iter()
                    .find(|n| n.description.as_ref().and_then(|d| d.hostname.as_deref()) == Some(host.as_str()))
                    .and_then(|n| n.id)
                    .ok_or_else(|| format!("no node {host}"))
            }
        };
        let (data, other) = (node_id("logger-1").await?, node_id("worker-1").await?);
        wait_for("Elasticsearch running on logger-1", Duration::from_secs(60), || async {
            Ok(common::task_running_on(&docker, &es, &data).await?.then_some(()))
        })
        .await?;
        // Its data, written into its volume on logger-1.
        let logger = common::client_for(&sb.sock("logger-1")?).await?;
        let volume = format!("{stack}_elasticsearch_index");
        let v = logger
            .inspect_volume(&volume)
            .await
            .map_err(|e| format!("volume {volume}: {e}"))?;
        let marker = std::path::PathBuf::from(&v.mountpoint).join("swarmlog-pin-marker");
        std::fs::write(&marker, "index data").map_err(|e| format!("write {}: {e}", marker.display()))?;
        // A second logger node, then the data node drained.
        sb.docker(&["node", "update", "--label-add", "logger=true", "worker-1"])?;
        sb.docker(&["node", "update", "--availability", "drain", "logger-1"])?;
        wait_for("the data node reported", Duration::from_secs(60), || async {
            let st = op.status()?;
            let named = st["degraded_nodes"].as_array().is_some_and(|d| {
                d.iter()
                    .any(|n| n["hostname"] == "logger-1" && n["reason"].to_string().contains(&es))
            });
            Ok((st["phase"] == "Degraded" && named).then_some(()))
        })
        .await?;
        let spec = docker
            .inspect_service(&es, None)
            .await
            .map_err(|e| e.to_string())?
            .spec
            .unwrap_or_default();
        let constraints = spec
            .task_template
            .and_then(|t| t.placement)
            .and_then(|p| p.constraints)
            .unwrap_or_default();
        if !constraints.contains(&format!("node.id=={data}")) {
            return Err(format!("Elasticsearch is not pinned to its data node: {constraints:?}"));
        }
        if common::task_running_on(&docker, &es, &other).await? {
            return Err("Elasticsearch runs on worker-1, away from its data".into());
        }
        // Back: it runs on its data again.
        sb.docker(&["node", "update", "--availability", "active", "logger-1"])?;
        wait_for("Elasticsearch back on logger-1", Duration::from_secs(90), || async {
            Ok(common::task_running_on(&docker, &es, &data).await?.then_some(()))
        })
        .await?;
        match std::fs::read_to_string(&marker) {
            Ok(t) if t == "index data" => {}
            other => return Err(format!("the data in the volume: {other:?}")),
        }
        if common::task_running_on(&docker, &es, &other).await? {
            return Err("Elasticsearch also runs on worker-1".into());
        }
        wait_for("phase Converged again", Duration::from_secs(60), || async {
            op.reconcile_now().ok();
            Ok((op.status()?["phase"] == "Converged").then_some(()))
        })
        .await
    });
    sb.docker(&["node", "update", "--availability", "active", "logger-1"])
        .ok();
    sb.docker(&["node", "update", "--label-rm", "logger", "worker-1"]).ok();
    drop(op);
    rt.block_on(remove(sb, stack))?;
    result
}

/// The hostname of the node running a task of `service`, if one runs.
async fn node_of_task(docker: &bollard::Docker, service: &str) -> Result<Option<String>, String> {
    let mut filters = std::collections::HashMap::new();
    filters.insert("service".to_string(), vec![service.to_string()]);
    filters.insert("desired-state".to_string(), vec!["running".to_string()]);
    let tasks = docker
        .list_tasks(Some(bollard::query_parameters::ListTasksOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|e| format!("list tasks of {service}: {e}"))?;
    let running = tasks
        .into_iter()
        .find(|t| t.status.as_ref().and_then(|s| s.state) == Some(bollard::models::TaskState::RUNNING));
    let Some(node) = running.and_then(|t| t.node_id) else {
        return Ok(None);
    };
    let n = docker.inspect_node(&node).await.map_err(|e| e.to_string())?;
    Ok(n.description.and_then(|d| d.hostname))
}

/// Issue 11 item 9: a logger node unlabelled on purpose (holding no volume
/// task) and a logger worker removed from the swarm are reported as events;
/// the phase returns to Converged and neither is listed as degraded. Before
/// the fix both stayed degraded until the operator restarted.
pub fn lost_logger_nodes_are_events_not_degraded(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itlost";
    let extra = "logger-8";
    sb.docker(&["node", "update", "--label-add", "logger=true", "worker-1"])?;
    let mut op = Operator::start(sb, stack, &["--stack", stack, "--resync", "10m"])?;
    let result = rt.block_on(async {
        let docker = sb.client().await?;
        let phase = |want: &'static str| {
            let op = &op;
            async move {
                wait_for(&format!("phase {want}"), Duration::from_secs(120), || async {
                    let st = op.status()?;
                    if st["phase"] == want {
                        Ok(Some(st))
                    } else {
                        Err(format!(
                            "phase {}, degraded {}, objects {}",
                            st["phase"], st["degraded_nodes"], st["objects"]
                        ))
                    }
                })
                .await
            }
        };
        phase("Converged").await?;
        // A third logger node joins, and is known to the operator.
        sb.script("add-worker", &[extra])?;
        sb.docker(&["node", "update", "--label-add", "logger=true", extra])?;
        wait_for(
            "the operator listing the new logger node",
            Duration::from_secs(30),
            || async {
                let st = op.status()?;
                let listed = st["logger_nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|n| n["hostname"] == extra);
                Ok(listed.then_some(()))
            },
        )
        .await?;
        phase("Converged").await?;
        let es = format!("{stack}_elasticsearch");
        let data_host = node_of_task(&docker, &es)
            .await?
            .ok_or_else(|| format!("no running task of {es}"))?;
        if data_host == extra {
            return Err(format!("{es} moved to the node that joined last"));
        }
        let unlabelled = if data_host == "logger-1" {
            "worker-1"
        } else {
            "logger-1"
        };
        // On purpose: one node loses its label, the other leaves the swarm.
        sb.docker(&["node", "update", "--label-rm", "logger", unlabelled])?;
        sb.script("node-stop", &[extra])?;
        sb.docker(&["node", "rm", "--force", extra])?;
        let st = wait_for(
            "both reported as events, neither degraded, phase Converged",
            Duration::from_secs(120),
            || async {
                let st = op.status()?;
                let events: Vec<String> = st["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["message"].as_str().map(str::to_string))
                    .collect();
                let reported = |h: &str| {
                    events
                        .iter()
                        .any(|m| m.starts_with(&format!("{h} is no longer a logger node")))
                };
                let degraded = st["degraded_nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|d| d["hostname"] == unlabelled || d["hostname"] == extra);
                if reported(unlabelled) && reported(extra) && !degraded && st["phase"] == "Converged" {
                    Ok(Some(st))
                } else {
                    Err(format!(
                        "phase {}, degraded {}, events {events:?}",
                        st["phase"], st["degraded_nodes"]
                    ))
                }
            },
        )
        .await?;
        // Elasticsearch stayed on its node.
        if node_of_task(&docker, &es).await?.as_deref() != Some(data_host.as_str()) {
            return Err(format!("{es} left {data_host}: {}", st["objects"]));
        }
        Ok(())
    });
    let _ = op.stop(Duration::from_secs(15));
    result?;
    rt.block_on(remove(sb, stack))
}
