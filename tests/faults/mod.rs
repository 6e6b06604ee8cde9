//! Faults between `swarmlog run` and a real engine, injected by the tests'
//! engine proxy (tests/common/proxy.rs): an answer frozen half-way, an event
//! stream that goes silent without closing, an engine answering 500 for a
//! minute, the operator killed between a new config and the service update
//! that uses it, a standby's idle cost, the manager's dockerd restarted while
//! a write is held, and the HTTP API flooded while drifts are repaired. Each
//! says what must hold.

use std::time::{Duration, Instant};

use crate::common::proxy::{describe, Call, Fault, Rule};
use crate::common::{self, wait_for, Operator, Sandbox};
use crate::controller::{converged_within as converged, remove, writes};

/// An answer that stops half-way (headers and 64 bytes of `GET /services`,
/// then nothing on an open connection): every reconcile fails at the
/// per-call deadline, the phase says why, `/healthz` turns red within
/// (reconcile deadline + resync + debounce-max), and all of it clears when
/// the engine answers again.
pub fn engine_frozen_mid_answer(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itfrz";
    let args = [
        "--stack",
        stack,
        "--engine-timeout",
        "1s",
        "--reconcile-timeout",
        "4s",
        "--resync",
        "2s",
        "--debounce-max",
        "1s",
    ];
    let op = Operator::start_counted(rt, &sb.host, "itfrz", &args)?;
    rt.block_on(async {
        converged(sb, stack, &[], "the operator to converge", Duration::from_secs(90)).await?;
        let proxy = op.engine()?;
        proxy.inject(Rule {
            method: Some("GET".into()),
            path_prefix: "/services".into(),
            fault: Fault::StallBody(64),
            times: None,
        });
        let frozen_at = Instant::now();
        let st = wait_for("the phase to name the frozen answer", Duration::from_secs(30), || async {
            let st = op.status()?;
            let err = st["engine"]["last_error"].as_str().unwrap_or_default().to_string();
            if st["phase"] == "EngineUnavailable" && err.contains("no complete answer from the engine within 1s") {
                Ok(Some(st))
            } else {
                Err(format!("phase {} last error {err:?}", st["phase"]))
            }
        })
        .await?;
        eprintln!(
            "frozen answer: phase EngineUnavailable after {:?}: {}",
            frozen_at.elapsed(),
            st["engine"]["last_error"]
        );
        // Bound: 4 s + 2 s + 1 s = 7 s without a finished reconcile.
        let why = wait_for("/healthz to turn red", Duration::from_secs(60), || async {
            let (code, body) = op.get("/healthz")?;
            if code == 503 {
                Ok(Some(body))
            } else {
                Err(format!("/healthz {code} {body}"))
            }
        })
        .await?;
        let red_after = frozen_at.elapsed();
        if !why.contains("reconciles end at their deadline") || !why.contains("no complete answer") {
            return Err(format!("/healthz says: {why}"));
        }
        // The bound counts from the last reconcile that finished, which
        // ended at most one resync (2 s) plus one reconcile before the
        // fault: never red sooner than 4 s after it (the first failures,
        // 1 to 2 s in, leave it green).
        if red_after < Duration::from_secs(4) {
            return Err(format!(
                "/healthz red after {red_after:?}: sooner than its 7 s bound allows (the last finished reconcile ended at most about 3 s before the fault)"
            ));
        }
        let (code, ready) = op.get("/readyz")?;
        if code != 503 || !ready.contains("no reconcile finished") {
            return Err(format!("/readyz {code} {ready}"));
        }
        let timeouts = op.metric("swarmlog_errors_total{category=\"timeout\"}")?;
        if timeouts < 1.0 {
            return Err(format!("errors_total{{category=\"timeout\"}} is {timeouts}"));
        }
        let stalled = proxy.calls().iter().filter(|c| c.path == "/services").count();
        eprintln!("frozen answer: /healthz red after {red_after:?} ({why:?}); {stalled} stalled lists, {timeouts} timeouts counted");
        // The engine answers again: healthy, converged, nothing else changed.
        proxy.clear_faults();
        wait_for("/healthz green again", Duration::from_secs(60), || async {
            match op.get("/healthz")? {
                (200, _) => Ok(Some(())),
                (code, body) => Err(format!("/healthz {code} {body}")),
            }
        })
        .await?;
        wait_for("phase Converged again", Duration::from_secs(60), || async {
            let st = op.status()?;
            if st["phase"] == "Converged" {
                Ok(Some(()))
            } else {
                Err(format!("phase {}", st["phase"]))
            }
        })
        .await?;
        converged(sb, stack, &[], "still converged", Duration::from_secs(30)).await
    })?;
    drop(op);
    rt.block_on(remove(sb, stack))
}

/// The event stream goes silent without closing (a half-open connection):
/// a service removed meanwhile is re-created from the renewed subscription
/// (which replays from the last event seen) within the 30 s bound, long
/// before the 10-minute resync, and without a reconnect (nothing failed).
pub fn silent_event_stream_is_renewed(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itmute";
    let op = Operator::start_counted(rt, &sb.host, "itmute", &["--stack", stack, "--resync", "10m"])?;
    rt.block_on(async {
        converged(sb, stack, &[], "the operator to converge", Duration::from_secs(90)).await?;
        let proxy = op.engine()?;
        // Settled: the reconciles of the convergence are over.
        wait_for("phase Converged", Duration::from_secs(60), || async {
            Ok((op.status()?["phase"] == "Converged").then_some(()))
        })
        .await?;
        let mark = proxy.mark();
        proxy.mute_open_streams();
        let removed_at = Instant::now();
        sb.docker(&["service", "rm", &format!("{stack}_kibana")])?;
        converged(
            sb,
            stack,
            &[],
            "the removed service re-created through the renewed subscription",
            Duration::from_secs(60),
        )
        .await?;
        let healed = removed_at.elapsed();
        let since = proxy.since(mark);
        let renewed: Vec<&Call> = since
            .iter()
            .filter(|c| c.path == "/events" && c.query.contains("since="))
            .collect();
        if renewed.is_empty() {
            return Err(format!(
                "no subscription with since= after the mute:\n{}",
                describe(&since)
            ));
        }
        if !writes(&since).iter().any(|c| c.path == "/services/create") {
            return Err(format!("no re-creation at the engine:\n{}", describe(&writes(&since))));
        }
        if healed > Duration::from_secs(30) {
            return Err(format!("repaired after {healed:?}, beyond the 30 s bound"));
        }
        let reconnects = op.metric("swarmlog_event_stream_reconnects_total")?;
        if reconnects != 0.0 {
            return Err(format!("{reconnects} reconnects counted for a renewal"));
        }
        eprintln!("silent stream: the removal was repaired after {healed:?} (renewal every 20 s)");
        Ok(())
    })?;
    drop(op);
    rt.block_on(remove(sb, stack))
}

/// The engine answers 500 to everything for a minute: no write, no tight
/// loop (calls bounded by the backoffs), the phase says so, `/healthz` stays
/// green (the loop works; the engine does not), and a drift made during the
/// outage is repaired once it ends.
pub fn engine_500s_for_a_minute(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "it500";
    let op = Operator::start_counted(rt, &sb.host, "it500", &["--stack", stack, "--resync", "10m"])?;
    rt.block_on(async {
        converged(sb, stack, &[], "the operator to converge", Duration::from_secs(90)).await?;
        let proxy = op.engine()?;
        let mark = proxy.mark();
        proxy.inject(Rule {
            method: None,
            path_prefix: "/".into(),
            fault: Fault::Error(500, "injected: the engine fails".into()),
            times: None,
        });
        proxy.cut();
        let start = Instant::now();
        wait_for("phase EngineUnavailable", Duration::from_secs(30), || async {
            let st = op.status()?;
            if st["phase"] == "EngineUnavailable" {
                Ok(Some(()))
            } else {
                Err(format!("phase {}", st["phase"]))
            }
        })
        .await?;
        sb.docker(&[
            "service",
            "update",
            "-d",
            "--no-resolve-image",
            "--env-add",
            "OUTAGE=1",
            &format!("{stack}_kibana"),
        ])?;
        // The outage lasts a minute; health is polled through it.
        let mut health = Vec::new();
        while start.elapsed() < Duration::from_secs(60) {
            health.push(op.get("/healthz")?.0);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let during = proxy.since(mark);
        proxy.clear_faults();
        let w = writes(&during)
            .into_iter()
            .filter(|c| c.status != Some(500))
            .collect::<Vec<_>>();
        if !w.is_empty() {
            return Err(format!(
                "writes reached the engine during the outage:\n{}",
                describe(&w)
            ));
        }
        if during.len() > 200 {
            return Err(format!("{} calls in a minute of 500s: no backoff?", during.len()));
        }
        if health.iter().any(|c| *c != 200) {
            return Err(format!("/healthz during the outage: {health:?}"));
        }
        let recovered = Instant::now();
        converged(
            sb,
            stack,
            &[],
            "the drift repaired after the outage",
            Duration::from_secs(120),
        )
        .await?;
        eprintln!(
            "500s for a minute: {} calls during it, healthy throughout; repaired {:?} after it ended",
            during.len(),
            recovered.elapsed()
        );
        Ok(())
    })?;
    drop(op);
    rt.block_on(remove(sb, stack))
}

/// Says every manager, in a node list or a node, is not the leader.
fn no_leader(v: &mut serde_json::Value) {
    let mut one = |n: &mut serde_json::Value| {
        if let Some(m) = n.get_mut("ManagerStatus").and_then(|m| m.as_object_mut()) {
            m.insert("Leader".into(), serde_json::Value::Bool(false));
        }
    };
    match v {
        serde_json::Value::Array(items) => items.iter_mut().for_each(&mut one),
        other => one(other),
    }
}

/// A standby (the proxy says its node is not the leader) costs the engine
/// at most one small call a second while nothing happens: its leadership
/// check every 1.2 s, plus the event subscription renewed every 20 s; no
/// full observe.
pub fn standby_idles_on_one_call_per_second(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itstb";
    // The rewrite is in place before the operator's first call.
    let rewrite = Rule {
        method: Some("GET".into()),
        path_prefix: "/nodes".into(),
        fault: Fault::Rewrite(no_leader),
        times: None,
    };
    let op = Operator::start_counted_with(
        rt,
        &sb.host,
        "itstb",
        &["--stack", stack, "--resync", "10m"],
        vec![rewrite],
    )?;
    rt.block_on(async {
        wait_for("the operator to be a standby", Duration::from_secs(30), || async {
            let st = op.status()?;
            if st["role"] == "standby" && st["phase"] == "Standby" {
                Ok(Some(()))
            } else {
                Err(format!("role {} phase {}", st["role"], st["phase"]))
            }
        })
        .await?;
        let proxy = op.engine()?;
        // Events observe the swarm (the stacks of earlier tests going away
        // make some): measure once 5 s have passed without a full list.
        let full_lists = |calls: &[Call]| calls.iter().filter(|c| c.path == "/services" || c.path == "/nodes").count();
        let quiet_from = Instant::now();
        loop {
            let m = proxy.mark();
            tokio::time::sleep(Duration::from_secs(5)).await;
            if full_lists(&proxy.since(m)) == 0 {
                break;
            }
            if quiet_from.elapsed() > Duration::from_secs(60) {
                return Err("the swarm's events did not settle within 60 s".to_string());
            }
        }
        let mark = proxy.mark();
        let window = Duration::from_secs(30);
        tokio::time::sleep(window).await;
        let calls = proxy.since(mark);
        let checks = calls.iter().filter(|c| c.path.starts_with("/nodes/")).count();
        let full = full_lists(&calls);
        let per_sec = calls.len() as f64 / window.as_secs_f64();
        eprintln!(
            "standby idle: {} calls in {window:?} ({per_sec:.2}/s): {checks} leadership checks, {full} full-observe lists",
            calls.len()
        );
        if !writes(&calls).is_empty() {
            return Err(format!("a standby wrote:\n{}", describe(&writes(&calls))));
        }
        if checks < 15 {
            return Err(format!("only {checks} leadership checks in {window:?}:\n{}", describe(&calls)));
        }
        if full > 0 || per_sec > 1.0 {
            return Err(format!(
                "an idle standby made {} calls in {window:?}, {full} of them full lists:\n{}",
                calls.len(),
                describe(&calls)
            ));
        }
        // It becomes the leader (the rewrite goes): it takes over within
        // about a second and converges the stack.
        proxy.clear_faults();
        let t = Instant::now();
        converged(sb, stack, &[], "the former standby to converge as leader", Duration::from_secs(90)).await?;
        let st = op.status()?;
        if st["role"] != "leader" {
            return Err(format!("role {} after the take-over", st["role"]));
        }
        eprintln!("standby -> leader: converged {:?} after the rewrite ended", t.elapsed());
        Ok(())
    })?;
    drop(op);
    rt.block_on(remove(sb, stack))
}

/// Writes the Logstash pipeline `name` in `dir` with `text` and points the
/// values file at it (a running operator re-renders on the change).
fn write_pipeline(dir: &std::path::Path, values: &std::path::Path, name: &str, text: &str) -> Result<(), String> {
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    std::fs::write(values, format!("logstash:\n  pipelineFile: {}\n", p.display()))
        .map_err(|e| format!("{}: {e}", values.display()))
}

/// The operator is SIGKILLed after it created the new pipeline config and
/// before the Logstash update that uses it reached the engine (held at the
/// proxy). A new operator converges: Logstash uses the new config, the old
/// one is collected, no config of the stack is left orphaned.
pub fn killed_between_config_and_update(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itkill";
    let dir = common::temp_dir("itkill-files");
    let values = dir.join("values.yaml");
    let pipeline = |name: &str, text: &str| write_pipeline(&dir, &values, name, text);
    pipeline(
        "one.conf",
        "input { tcp { port => 9000 codec => json_lines } }\noutput { stdout {} }\n",
    )?;
    let v = values.display().to_string();
    let args = [
        "--stack",
        stack,
        "--resync",
        "10m",
        "--values",
        &v,
        "--watch-interval",
        "1s",
    ];
    let mut op = Operator::start_counted(rt, &sb.host, "itkill-a", &args)?;
    let configs = |sb: &Sandbox| -> Result<Vec<String>, String> {
        let out = sb.docker(&["config", "ls", "--format", "{{.Name}}"])?;
        // The pipeline's configs (Kibana's stays as it is).
        let mut names: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with(&format!("{stack}_")) && l.contains("_logstash_pipeline_"))
            .map(str::to_string)
            .collect();
        names.sort();
        Ok(names)
    };
    rt.block_on(async {
        converged(
            sb,
            stack,
            &["--values", &v],
            "the first operator to converge",
            Duration::from_secs(90),
        )
        .await?;
        let before = configs(sb)?;
        let proxy = op.engine()?;
        proxy.inject(Rule {
            method: Some("POST".into()),
            path_prefix: "/services/".into(),
            fault: Fault::Hold,
            times: None,
        });
        pipeline(
            "two.conf",
            "input { tcp { port => 9000 codec => json_lines } }\noutput { stdout { codec => rubydebug } }\n",
        )?;
        wait_for(
            "the Logstash update held after the new config",
            Duration::from_secs(60),
            || async {
                let held = proxy.pending();
                let created = proxy
                    .calls()
                    .iter()
                    .any(|c| c.path == "/configs/create" && c.status == Some(201));
                Ok((created && held.iter().any(|c| c.path.ends_with("/update"))).then_some(()))
            },
        )
        .await?;
        let between = configs(sb)?;
        if between.len() != before.len() + 1 {
            return Err(format!("configs before {before:?}, while held {between:?}"));
        }
        Ok(())
    })?;
    op.kill()?;
    // Its proxy goes with it: the held update never reaches the engine.
    drop(op);
    let op = Operator::start_counted(rt, &sb.host, "itkill-b", &args)?;
    rt.block_on(async {
        converged(
            sb,
            stack,
            &["--values", &v],
            "the restarted operator to converge",
            Duration::from_secs(90),
        )
        .await?;
        let after = wait_for("the old config collected", Duration::from_secs(60), || async {
            let names = configs(sb)?;
            if names.len() == 1 {
                Ok(Some(names))
            } else {
                Err(format!("configs of the stack: {names:?}"))
            }
        })
        .await?;
        let used = sb.docker(&[
            "service",
            "inspect",
            "--format",
            "{{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigName}} {{end}}",
            &format!("{stack}_logstash"),
        ])?;
        // Its pipeline (it mounts swarmlog's CA too).
        let pipelines: Vec<&str> = used
            .split_whitespace()
            .filter(|c| c.contains("_logstash_pipeline_"))
            .collect();
        if pipelines != [after[0].as_str()] {
            return Err(format!("Logstash uses {used:?}, the stack has {after:?}"));
        }
        eprintln!("killed between config and update: converged on {}", after[0]);
        Ok::<(), String>(())
    })?;
    drop(op);
    rt.block_on(remove(sb, stack))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The stack's configs and secrets (by name) that no service of the stack
/// uses, and the stack's pipeline configs.
async fn orphans(docker: &bollard::Docker, stack: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let prefix = format!("{stack}_");
    let services = crate::stack_services(docker, stack).await?;
    let mut used = std::collections::BTreeSet::new();
    for s in &services {
        let c = s
            .spec
            .as_ref()
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.container_spec.as_ref());
        for r in c.and_then(|c| c.configs.as_ref()).into_iter().flatten() {
            used.extend(r.config_name.clone());
        }
        for r in c.and_then(|c| c.secrets.as_ref()).into_iter().flatten() {
            used.extend(r.secret_name.clone());
        }
    }
    let configs: Vec<String> = docker
        .list_configs(None::<bollard::query_parameters::ListConfigsOptions>)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|c| c.spec?.name)
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let secrets: Vec<String> = docker
        .list_secrets(None::<bollard::query_parameters::ListSecretsOptions>)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|s| s.spec?.name)
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let orphaned = configs
        .iter()
        .chain(&secrets)
        .filter(|n| !used.contains(*n))
        .cloned()
        .collect();
    // The pipeline's configs (the stack has Kibana's too, with security on).
    let pipelines = configs
        .into_iter()
        .filter(|n| n.contains("_logstash_pipeline_"))
        .collect();
    Ok((orphaned, pipelines))
}

/// Names that occur more than once among the stack's services and networks.
async fn duplicates(docker: &bollard::Docker, stack: &str) -> Result<Vec<String>, String> {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for s in crate::stack_services(docker, stack).await? {
        let name = s.spec.and_then(|s| s.name).unwrap_or_default();
        *seen.entry(format!("service {name}")).or_default() += 1;
    }
    for n in docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .map_err(|e| e.to_string())?
    {
        if let Some(name) = n.name.filter(|n| n.starts_with(&format!("{stack}_"))) {
            *seen.entry(format!("network {name}")).or_default() += 1;
        }
    }
    Ok(seen
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, n)| format!("{k} x{n}"))
        .collect())
}

/// The manager's dockerd restarts while an apply is in flight. A pipeline
/// edit makes the operator create the new config (it reaches the engine)
/// and update Logstash to use it: that update is held at the proxy. Kibana
/// is removed meanwhile, manager-1's dockerd is stopped and started again
/// (same data root), and the held update is let through to the restarted
/// engine. Must hold: the event stream reconnects; the stack converges
/// (Kibana back, Logstash on the new config); no service or network twice;
/// no config or secret of the stack left unused (the old config collected);
/// the phase Converged again; Elasticsearch kept its service and its volume
/// with the data in it.
pub fn dockerd_restarted_mid_apply(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itrst";
    let dir = common::temp_dir("itrst-files");
    let values = dir.join("values.yaml");
    let pipeline = |name: &str, text: &str| write_pipeline(&dir, &values, name, text);
    pipeline(
        "one.conf",
        "input { tcp { port => 9000 codec => json_lines } }\noutput { stdout {} }\n",
    )?;
    let v = values.display().to_string();
    let args = [
        "--stack",
        stack,
        "--resync",
        "10m",
        "--values",
        &v,
        "--watch-interval",
        "1s",
    ];
    let extra = ["--values", v.as_str()];
    let op = Operator::start_counted(rt, &sb.host, "itrst", &args)?;
    let result = rt.block_on(async {
        converged(sb, stack, &extra, "the operator to converge", Duration::from_secs(90)).await?;
        let proxy = op.engine()?;
        let docker = sb.client().await?;
        let es = format!("{stack}_elasticsearch");
        let logstash = format!("{stack}_logstash");
        let kibana = format!("{stack}_kibana");
        let service_id = |name: String| {
            let docker = docker.clone();
            async move {
                docker
                    .inspect_service(&name, None)
                    .await
                    .map_err(|e| format!("service {name}: {e}"))?
                    .id
                    .ok_or_else(|| format!("service {name} has no ID"))
            }
        };
        let es_id = service_id(es.clone()).await?;
        let logstash_id = service_id(logstash.clone()).await?;
        // Elasticsearch's data: a marker written into its volume on logger-1.
        let logger = common::client_for(&sb.sock("logger-1")?).await?;
        let volume = format!("{stack}_elasticsearch_index");
        let mountpoint = wait_for("the Elasticsearch volume on logger-1", Duration::from_secs(60), || async {
            match logger.inspect_volume(&volume).await {
                Ok(v) => Ok(Some(v.mountpoint)),
                Err(e) => Err(format!("volume {volume}: {e}")),
            }
        })
        .await?;
        let marker = std::path::PathBuf::from(mountpoint).join("swarmlog-restart-marker");
        std::fs::write(&marker, "index data").map_err(|e| format!("write {}: {e}", marker.display()))?;
        let (_, configs_before) = orphans(&docker, stack).await?;

        // The apply in flight: every service create or update is held.
        let mark = proxy.mark();
        proxy.inject(Rule {
            method: Some("POST".into()),
            path_prefix: "/services/".into(),
            fault: Fault::Hold,
            times: None,
        });
        pipeline(
            "two.conf",
            "input { tcp { port => 9000 codec => json_lines } }\noutput { stdout { codec => rubydebug } }\n",
        )?;
        let update = format!("/services/{logstash_id}/update");
        let held = wait_for(
            "the new config created and the Logstash update held",
            Duration::from_secs(60),
            || async {
                let since = proxy.since(mark);
                let created = since
                    .iter()
                    .any(|c| c.path == "/configs/create" && c.status == Some(201));
                let held = proxy.pending().into_iter().find(|c| c.path == update);
                match (created, held) {
                    (true, Some(h)) => Ok(Some(h)),
                    _ => Err(format!("config created: {created}; calls since the mark:\n{}", describe(&since))),
                }
            },
        )
        .await?;
        sb.docker(&["service", "rm", &kibana])?;

        // manager-1's dockerd restarts (same data root) with the update held.
        let t_stop = Instant::now();
        sb.script("node-stop", &["manager-1"])?;
        let stopped = t_stop.elapsed();
        sb.script("node-start", &["manager-1"])?;
        wait_for("the restarted manager to lead its swarm", Duration::from_secs(90), || async {
            sb.docker(&["node", "ls", "-q"]).map(|_| Some(()))
        })
        .await?;
        let restarted = t_stop.elapsed();
        if proxy.pending().iter().all(|c| c.path != update) {
            return Err("the Logstash update was not held across the restart".to_string());
        }
        let released = Instant::now();
        proxy.clear_faults();
        let answered = wait_for(
            "the held update answered by the restarted engine",
            Duration::from_secs(60),
            || async {
                let c = proxy
                    .since(mark)
                    .into_iter()
                    .find(|c| c.path == update && c.at == held.at);
                Ok(c.filter(|c| c.status.is_some()))
            },
        )
        .await?;
        eprintln!(
            "dockerd restart mid-apply: held the Logstash update {:?} in all; dockerd stopped in {stopped:?}, \
             leading again {restarted:?} after the stop began; the released update: {answered}",
            released.duration_since(held.at),
        );
        converged(
            sb,
            stack,
            &extra,
            "the stack converged after the restart",
            Duration::from_secs(120),
        )
        .await?;
        let healed = released.elapsed();
        wait_for("phase Converged", Duration::from_secs(60), || async {
            let st = op.status()?;
            if st["phase"] == "Converged" {
                Ok(Some(()))
            } else {
                Err(format!("phase {}, last error {}", st["phase"], st["engine"]["last_error"]))
            }
        })
        .await?;
        let configs_after = wait_for(
            "no config or secret of the stack left unused",
            Duration::from_secs(60),
            || async {
                let (orphaned, configs) = orphans(&docker, stack).await?;
                if orphaned.is_empty() {
                    Ok(Some(configs))
                } else {
                    Err(format!("unused: {orphaned:?} (configs of the stack: {configs:?})"))
                }
            },
        )
        .await?;
        if configs_after.len() != 1 || configs_before.contains(&configs_after[0]) {
            return Err(format!(
                "configs of the stack before {configs_before:?}, after {configs_after:?}: want one, the new pipeline's"
            ));
        }
        let dups = duplicates(&docker, stack).await?;
        if !dups.is_empty() {
            return Err(format!("duplicates after the restart: {dups:?}"));
        }
        let services = crate::stack_services(&docker, stack).await?;
        if services.len() != 3 {
            let names: Vec<_> = services.iter().filter_map(|s| s.spec.as_ref()?.name.clone()).collect();
            return Err(format!("services of the stack after the restart: {names:?}"));
        }
        if service_id(es.clone()).await? != es_id {
            return Err(format!("{es} was re-created (its ID changed)"));
        }
        match std::fs::read_to_string(&marker) {
            Ok(t) if t == "index data" => {}
            other => return Err(format!("the data in {volume} after the restart: {other:?}")),
        }
        let kibana_creates: Vec<Call> = writes(&proxy.since(mark))
            .into_iter()
            .filter(|c| c.path == "/services/create" && c.name.as_deref() == Some(kibana.as_str()))
            .collect();
        if kibana_creates.iter().filter(|c| c.status == Some(201)).count() != 1 {
            return Err(format!("Kibana's creates:\n{}", describe(&kibana_creates)));
        }
        let reconnects = op.metric("swarmlog_event_stream_reconnects_total")?;
        let resubscribed = proxy.since(mark).iter().filter(|c| c.path == "/events").count();
        if reconnects < 1.0 || resubscribed == 0 {
            return Err(format!(
                "{reconnects} reconnects counted, {resubscribed} subscriptions since the fault"
            ));
        }
        eprintln!(
            "dockerd restart mid-apply: converged {healed:?} after the release; {reconnects} reconnect(s); configs {configs_before:?} -> {configs_after:?}; writes since the fault:\n{}",
            describe(&writes(&proxy.since(mark)))
        );
        Ok(())
    });
    let result = result.map_err(|e| format!("{e}\n{}", op.evidence(40)));
    drop(op);
    let removed = rt.block_on(remove(sb, stack));
    let _ = std::fs::remove_dir_all(&dir);
    result.and(removed)
}

/// The pages the HTTP flood asks for, in turn.
const FLOOD_PATHS: [&str; 5] = ["/status", "/metrics", "/healthz", "/readyz", "/"];

/// What an HTTP flood saw.
#[derive(Debug, Default)]
struct Flood {
    /// Answers by (path, status code).
    answers: std::collections::BTreeMap<(String, u16), u64>,
    /// Requests that got no answer (connect, send, read or a 10 s timeout).
    errors: u64,
    first_errors: Vec<String>,
    /// The bodies of the first answers that were not 2xx (what they said).
    first_not_ok: Vec<String>,
    started: Option<Instant>,
    ended: Option<Instant>,
}

impl Flood {
    fn answered(&self) -> u64 {
        self.answers.values().sum()
    }

    /// Answers that are not 2xx (the stack is converged and the engine
    /// answers: even `/readyz` has no reason for a 503).
    fn unexpected(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter(|((_, code), _)| !(200..300).contains(code))
            .map(|((path, code), n)| format!("{path} -> {code}: {n}"))
            .collect()
    }
}

/// One request on a kept-alive connection (opened when there is none).
async fn flood_request(
    addr: &str,
    sender: &mut Option<hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>>,
    path: &str,
) -> Result<(u16, bytes::Bytes), String> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (s, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        *sender = Some(s);
    }
    let Some(s) = sender.as_mut() else {
        return Err("no connection".to_string());
    };
    s.ready().await.map_err(|e| format!("connection: {e}"))?;
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr)
        .body(http_body_util::Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = s.send_request(req).await.map_err(|e| format!("GET {path}: {e}"))?;
    let code = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map_err(|e| format!("GET {path}: reading the body: {e}"))?;
    Ok((code, body.to_bytes()))
}

/// `clients` loopback clients, each on a kept-alive connection, ask for the
/// API's pages in turn, one request after the other, until `stop` once
/// `min` has passed, and never longer than `max` (it ends by itself).
async fn flood(
    addr: String,
    clients: usize,
    min: Duration,
    max: Duration,
    stop: tokio_util::sync::CancellationToken,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Flood {
    let out = std::sync::Arc::new(std::sync::Mutex::new(Flood::default()));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (addr, stop, count, out) = (addr.clone(), stop.clone(), count.clone(), out.clone());
            tokio::spawn(async move {
                let mut sender = None;
                let mut n = i;
                loop {
                    let elapsed = start.elapsed();
                    if elapsed >= max || (elapsed >= min && stop.is_cancelled()) {
                        break;
                    }
                    let path = FLOOD_PATHS[n % FLOOD_PATHS.len()];
                    n += 1;
                    let r = match tokio::time::timeout(Duration::from_secs(10), flood_request(&addr, &mut sender, path))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(format!("GET {path}: no answer within 10 s")),
                    };
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                    match r {
                        Ok((code, body)) => {
                            *o.answers.entry((path.to_string(), code)).or_default() += 1;
                            if !(200..300).contains(&code) && o.first_not_ok.len() < 5 {
                                let said = String::from_utf8_lossy(&body).trim().to_string();
                                o.first_not_ok.push(format!("{path} {code}: {said}"));
                            }
                        }
                        Err(e) => {
                            sender = None;
                            o.errors += 1;
                            if o.first_errors.len() < 5 {
                                o.first_errors.push(e);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut panicked = 0;
    for t in futures::future::join_all(tasks).await {
        if t.is_err() {
            panicked += 1;
        }
    }
    let mut o = std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner()));
    if panicked > 0 {
        o.errors += panicked;
        o.first_errors.push(format!("{panicked} flood clients panicked"));
    }
    o.started = Some(start);
    o.ended = Some(Instant::now());
    o
}

/// `(sum, count, count at or under 2.5 s)` of the reconcile duration histogram.
fn reconcile_histogram(op: &Operator) -> Result<(f64, f64, f64), String> {
    Ok((
        op.metric("swarmlog_reconcile_duration_seconds_sum")?,
        op.metric("swarmlog_reconcile_duration_seconds_count")?,
        op.metric("swarmlog_reconcile_duration_seconds_bucket{le=\"2.5\"}")?,
    ))
}

/// A bounded HTTP flood on the operator's API (24 loopback clients on kept
/// connections, at least 15 s, at most 45 s, on a runtime of their own)
/// while Kibana is removed three times: every removal is repaired within
/// 10 s (a create counted at the engine); every request is answered, and
/// with 2xx (a service removed between two reads once made `/readyz` 503);
/// every reconcile finished
/// during the flood took at most 2.5 s (the reconcile duration histogram,
/// and the durations `/status` reported, sampled every 100 ms).
pub fn http_flood_keeps_reconciling(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    const CLIENTS: usize = 24;
    const MIN: Duration = Duration::from_secs(15);
    const MAX: Duration = Duration::from_secs(45);
    const REPAIR_BOUND: Duration = Duration::from_secs(10);
    const RECONCILE_BOUND_MS: u64 = 2500;
    let stack = "itflood";
    let op = Operator::start_counted(rt, &sb.host, "itflood", &["--stack", stack, "--resync", "3s"])?;
    let result = (|| {
        rt.block_on(converged(
            sb,
            stack,
            &[],
            "the operator to converge",
            Duration::from_secs(90),
        ))?;
        let addr = op.addr()?;
        let proxy = op.engine()?;
        let kibana = format!("{stack}_kibana");
        let stop = tokio_util::sync::CancellationToken::new();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let before = reconcile_histogram(&op)?;
        let flood_mark = proxy.mark();
        let first_count = op.status()?["reconcile"]["count"].as_u64().unwrap_or(0);
        let flooding = {
            let (addr, stop, count) = (addr.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || -> Result<Flood, String> {
                let frt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| format!("the flood's runtime: {e}"))?;
                Ok(frt.block_on(flood(addr, CLIENTS, MIN, MAX, stop, count)))
            })
        };
        // The reconciles /status reports while the flood runs: count -> (ms, outcome).
        let samples = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        let sampled = tokio_util::sync::CancellationToken::new();
        let sampler = {
            let (addr, stop, samples) = (addr.clone(), sampled.clone(), samples.clone());
            rt.spawn(async move {
                let url = format!("http://{addr}/status");
                while !stop.is_cancelled() {
                    if let Ok(a) = swarmlog::client::get(&url, Duration::from_secs(10)).await {
                        if let Ok(st) = serde_json::from_str::<serde_json::Value>(&a.body) {
                            let r = &st["reconcile"];
                            if let (Some(n), Some(ms)) = (r["count"].as_u64(), r["duration_ms"].as_u64()) {
                                let outcome = r["outcome"].as_str().unwrap_or_default().to_string();
                                samples
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .insert(n, (ms, outcome));
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let drifts = rt.block_on(async {
            wait_for("the flood under way", Duration::from_secs(30), || async {
                let n = count.load(std::sync::atomic::Ordering::Relaxed);
                if n >= 500 {
                    Ok(Some(()))
                } else {
                    Err(format!("{n} requests so far"))
                }
            })
            .await?;
            let docker = sb.client().await?;
            let mut repairs = Vec::new();
            for i in 1..=3 {
                let mark = proxy.mark();
                sb.docker(&["service", "rm", &kibana])?;
                let t0 = Instant::now();
                wait_for(
                    &format!("Kibana re-created after removal {i}"),
                    Duration::from_secs(30),
                    || async {
                        match docker.inspect_service(&kibana, None).await {
                            Ok(_) => Ok(Some(())),
                            Err(e) => Err(e.to_string()),
                        }
                    },
                )
                .await?;
                let took = t0.elapsed();
                // The engine has the service before its answer to the
                // create has passed the proxy: wait for that answer.
                wait_for(
                    &format!("removal {i}: the create answered 201 through the proxy"),
                    Duration::from_secs(10),
                    || async {
                        let created = writes(&proxy.since(mark))
                            .into_iter()
                            .any(|c| c.path == "/services/create" && c.status == Some(201));
                        if created {
                            Ok(Some(()))
                        } else {
                            Err(format!("no create answered yet:\n{}", describe(&proxy.since(mark))))
                        }
                    },
                )
                .await?;
                repairs.push(took);
                converged(
                    sb,
                    stack,
                    &[],
                    "converged before the next removal",
                    Duration::from_secs(60),
                )
                .await?;
            }
            Ok::<_, String>((repairs, Instant::now()))
        });
        stop.cancel();
        let flood = flooding.join().map_err(|_| "the flood's thread panicked".to_string());
        sampled.cancel();
        let _ = rt.block_on(sampler);
        let flood = flood??;
        let (repairs, drifts_done) = drifts?;
        let after = reconcile_histogram(&op)?;
        let (started, ended) = match (flood.started, flood.ended) {
            (Some(s), Some(e)) => (s, e),
            _ => return Err("the flood recorded no start or end".to_string()),
        };
        let secs = ended.duration_since(started).as_secs_f64();
        let samples: Vec<(u64, (u64, String))> = samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(n, _)| **n > first_count)
            .map(|(n, v)| (*n, v.clone()))
            .collect();
        let ms: Vec<u64> = samples.iter().map(|(_, (ms, _))| *ms).collect();
        let reconciles = after.1 - before.1;
        let mean_ms = if reconciles > 0.0 {
            (after.0 - before.0) / reconciles * 1000.0
        } else {
            0.0
        };
        let over = reconciles - (after.2 - before.2);
        eprintln!(
            "http flood: {CLIENTS} clients, {} requests in {secs:.1} s ({:.0} requests/s), {} errors; answers {:?}; the first not 2xx: {:?}",
            flood.answered(),
            flood.answered() as f64 / secs,
            flood.errors,
            flood.answers,
            flood.first_not_ok
        );
        let before_ms = if before.1 > 0.0 {
            before.0 / before.1 * 1000.0
        } else {
            0.0
        };
        eprintln!(
            "http flood: Kibana removals repaired after {repairs:?}; {reconciles} reconciles during it, mean {mean_ms:.1} ms, \
             {over} over 2.5 s (before it, start-up and convergence: mean {before_ms:.1} ms over {}); \
             sampled from /status (ms): {ms:?}, max {:?}",
            before.1,
            ms.iter().max()
        );
        let refused: Vec<Call> = proxy
            .since(flood_mark)
            .into_iter()
            .filter(|c| c.status.is_some_and(|s| s >= 400))
            .collect();
        eprintln!(
            "http flood: engine calls answered with an error meanwhile (the operator's calls, at the proxy):\n{}",
            describe(&refused)
        );
        if flood.errors > 0 {
            return Err(format!(
                "{} requests got no answer, the first: {:?}",
                flood.errors, flood.first_errors
            ));
        }
        let unexpected = flood.unexpected();
        if !unexpected.is_empty() {
            return Err(format!(
                "answers other than 2xx: {unexpected:?}; the first said {:?}",
                flood.first_not_ok
            ));
        }
        if flood.answered() < 1000 {
            return Err(format!("only {} requests in {secs:.1} s: no flood", flood.answered()));
        }
        if drifts_done > ended {
            return Err(format!(
                "the removals outlasted the flood (it stopped at its {MAX:?} cap, {:?} before they were done)",
                drifts_done.duration_since(ended)
            ));
        }
        if let Some(slow) = repairs.iter().find(|d| **d > REPAIR_BOUND) {
            return Err(format!(
                "a removal repaired after {slow:?} (bound {REPAIR_BOUND:?}): {repairs:?}"
            ));
        }
        if samples.len() < 3 {
            return Err(format!(
                "only {} reconciles seen in /status during the flood: {samples:?}",
                samples.len()
            ));
        }
        if over > 0.0 || ms.iter().any(|m| *m > RECONCILE_BOUND_MS) {
            return Err(format!(
                "reconciles over {RECONCILE_BOUND_MS} ms during the flood: {over} by the histogram; sampled {samples:?}"
            ));
        }
        Ok(())
    })();
    let result = result.map_err(|e| format!("{e}\n{}", op.evidence(40)));
    drop(op);
    let removed = rt.block_on(remove(sb, stack));
    result.and(removed)
}
