//! Faults between `swarmlog run` and a real engine, injected by the tests'
//! engine proxy (tests/common/proxy.rs): an answer frozen half-way, an event
//! stream that goes silent without closing, an engine answering 500 for a
//! minute, the operator killed between a new config and the service update
//! that uses it, a standby's idle cost, and the manager's dockerd restarted
//! while a write is held. Each says what must hold.

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

/// The operator is SIGKILLed after it created the new pipeline config and
/// before the Logstash update that uses it reached the engine (held at the
/// proxy). A new operator converges: Logstash uses the new config, the old
/// one is collected, no config of the stack is left orphaned.
pub fn killed_between_config_and_update(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itkill";
    let dir = common::temp_dir("itkill-files");
    let values = dir.join("values.yaml");
    let pipeline = |name: &str, text: &str| -> Result<String, String> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        std::fs::write(&values, format!("logstash:\n  pipelineFile: {}\n", p.display()))
            .map_err(|e| format!("{}: {e}", values.display()))?;
        Ok(p.display().to_string())
    };
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
        let mut names: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with(&format!("{stack}_")))
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
        if used.trim() != after[0] {
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
/// uses, and every config of the stack.
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
    Ok((orphaned, configs))
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
    let pipeline = |name: &str, text: &str| -> Result<(), String> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        std::fs::write(&values, format!("logstash:\n  pipelineFile: {}\n", p.display()))
            .map_err(|e| format!("{}: {e}", values.display()))
    };
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
