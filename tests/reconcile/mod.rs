//! plan and apply against the sandbox swarm: from empty, idempotence with
//! zero writes, drift repair, pipeline edits, safety rules, races.

use std::collections::{BTreeMap, HashMap};
use std::process::Output;

use bollard::query_parameters::{ListConfigsOptions, ListNetworksOptions, ListServicesOptions, ListTasksOptions};
use bollard::Docker;

use crate::common::proxy::{describe, Call, EngineProxy, Fault, Rule};
use crate::common::{self, Sandbox};

pub mod kitchen;

fn out(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn expect_code(o: &Output, code: i32, what: &str) -> Result<(), String> {
    if o.status.code() == Some(code) {
        Ok(())
    } else {
        Err(format!("{what}: expected exit {code}, got {}", out(o)))
    }
}

/// `swarmlog <cmd> --stack <stack> <args>` against the sandbox.
fn sl(sb: &Sandbox, cmd: &str, stack: &str, args: &[&str]) -> Output {
    let mut all = vec![cmd, "--stack", stack];
    all.extend_from_slice(args);
    sb.swarmlog(&all)
}

/// Version index of every service, config and the creation stamp of every
/// network of a stack, plus the IDs of its running tasks.
#[derive(Debug, PartialEq, Eq)]
struct Versions {
    objects: BTreeMap<String, String>,
    tasks: Vec<String>,
}

async fn versions(docker: &Docker, stack: &str) -> Result<Versions, String> {
    let mut objects = BTreeMap::new();
    let filters = |k: &str, v: String| {
        let mut f = HashMap::new();
        f.insert(k.to_string(), vec![v]);
        f
    };
    let label = format!("io.swarmlog.stack={stack}");
    let services = docker
        .list_services(Some(ListServicesOptions {
            filters: Some(filters("label", label.clone())),
            ..Default::default()
        }))
        .await
        .map_err(|e| e.to_string())?;
    for s in &services {
        objects.insert(
            format!(
                "service {}",
                s.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default()
            ),
            format!("{:?}", s.version.as_ref().and_then(|v| v.index)),
        );
    }
    for c in docker
        .list_configs(Some(ListConfigsOptions {
            filters: Some(filters("label", label.clone())),
        }))
        .await
        .map_err(|e| e.to_string())?
    {
        objects.insert(
            format!(
                "config {}",
                c.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default()
            ),
            format!("{:?}", c.version.as_ref().and_then(|v| v.index)),
        );
    }
    for n in docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters("label", label.clone())),
        }))
        .await
        .map_err(|e| e.to_string())?
    {
        objects.insert(
            format!("network {}", n.name.clone().unwrap_or_default()),
            format!("{:?} {:?}", n.id, n.created),
        );
    }
    let mut tasks = Vec::new();
    for s in &services {
        let mut f = filters("service", s.id.clone().unwrap_or_default());
        f.insert("desired-state".into(), vec!["running".into()]);
        for t in docker
            .list_tasks(Some(ListTasksOptions { filters: Some(f) }))
            .await
            .map_err(|e| e.to_string())?
        {
            tasks.push(t.id.unwrap_or_default());
        }
    }
    tasks.sort();
    Ok(Versions { objects, tasks })
}

async fn service_version(docker: &Docker, name: &str) -> Result<Option<u64>, String> {
    match docker.inspect_service(name, None).await {
        Ok(s) => Ok(s.version.and_then(|v| v.index)),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

async fn remove_owned(sb: &Sandbox, docker: &Docker, stack: &str) -> Result<(), String> {
    crate::remove_stack(sb, docker, stack).await
}

/// An engine proxy in front of manager-1, for counting a command's requests.
pub(crate) fn proxy_of(sb: &Sandbox, rt: &tokio::runtime::Runtime, name: &str) -> Result<EngineProxy, String> {
    let dir = common::temp_dir(name);
    EngineProxy::start(
        rt,
        std::path::Path::new(sb.host.trim_start_matches("unix://")),
        &dir.join("engine.sock"),
    )
}

/// `swarmlog <cmd> --stack <stack> <args>` through an engine proxy.
fn sl_via(p: &EngineProxy, cmd: &str, stack: &str, args: &[&str]) -> Output {
    let mut all = vec![cmd, "--stack", stack];
    all.extend_from_slice(args);
    common::swarmlog_with_host(Some(&p.host()), &all)
}

/// From an empty swarm, apply creates everything; a second apply (and a
/// plan) of the converged swarm makes no write call at all, counted at the
/// engine.
pub fn apply_from_empty_then_zero_writes(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itapply";
    let engine = proxy_of(sb, rt, stack)?;
    let o = sl(sb, "plan", stack, &[]);
    expect_code(&o, 2, "plan of an empty swarm")?;
    let o = sl_via(&engine, "apply", stack, &["--wait", "--wait-timeout", "120s"]);
    expect_code(&o, 0, "apply")?;
    let first: Vec<Call> = engine.calls().into_iter().filter(Call::is_write).collect();
    let creates = |path: &str| first.iter().filter(|c| c.path == path).count();
    // Security is on by default: Kibana's config, the CA and the HTTP
    // certificate, three credential secrets and the certificate's key too.
    if creates("/networks/create") != 1
        || creates("/configs/create") != 4
        || creates("/secrets/create") != 4
        || creates("/services/create") != 3
    {
        return Err(format!("the first apply's writes at the engine:\n{}", describe(&first)));
    }
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    for want in [
        "created network itapply_log_net",
        "created config itapply_logstash_pipeline_",
        "created service itapply_elasticsearch",
        "All tasks running",
    ] {
        if !text.contains(want) {
            return Err(format!("apply output lacks {want:?}:\n{text}"));
        }
    }
    rt.block_on(async {
        let docker = sb.client().await?;
        let hosts = crate::wait_running(&docker, stack, 3).await?;
        if hosts.iter().any(|h| h != "logger-1") {
            return Err(format!("tasks outside the logger node: {hosts:?}"));
        }
        // The volume exists on the logger node (where Elasticsearch runs).
        let logger = common::client_for(&sb.sock("logger-1")?).await?;
        logger
            .inspect_volume(&format!("{stack}_elasticsearch_index"))
            .await
            .map_err(|e| format!("volume missing on logger-1: {e}"))?;
        let before = versions(&docker, stack).await?;
        if before.objects.len() != 8 {
            return Err(format!("expected 3 services, 4 configs, 1 network: {before:?}"));
        }
        let mark = engine.mark();
        let o = sl_via(&engine, "apply", stack, &[]);
        expect_code(&o, 0, "second apply")?;
        if !String::from_utf8_lossy(&o.stdout).contains("no changes") {
            return Err(format!("second apply was not a no-op: {}", out(&o)));
        }
        let o = sl_via(&engine, "plan", stack, &[]);
        expect_code(&o, 0, "plan of a converged swarm")?;
        // At the engine: reads, and not one write (nodes included).
        let calls = engine.since(mark);
        let writes: Vec<Call> = calls.iter().filter(|c| c.is_write()).cloned().collect();
        if !writes.is_empty() || !calls.iter().any(|c| c.method == "GET" && c.path == "/services") {
            return Err(format!(
                "a no-op apply and plan made these writes at the engine:\n{}\n(of {} requests)",
                describe(&writes),
                calls.len()
            ));
        }
        let after = versions(&docker, stack).await?;
        if before != after {
            return Err(format!(
                "a no-op apply changed something:\nbefore {before:?}\nafter  {after:?}"
            ));
        }
        remove_owned(sb, &docker, stack).await
    })
}

/// Every out-of-band change is shown by plan and repaired by apply; foreign
/// services and foreign labels stay as they were.
pub fn drift_is_planned_and_repaired(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itdrift";
    expect_code(&sl(sb, "apply", stack, &[]), 0, "apply")?;
    sb.docker(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        "itforeign",
        "--label",
        "owner=someone",
        "swarmlog/standin:latest",
    ])?;
    let kibana = format!("{stack}_kibana");
    let logstash = format!("{stack}_logstash");
    let es = format!("{stack}_elasticsearch");
    // (the drift, the field plan must name, the service it changes)
    let drifts: Vec<(Vec<String>, &str, &String)> = vec![
        (
            vec!["--env-add".into(), "FOO=bar".into(), kibana.clone()],
            "TaskTemplate.ContainerSpec.Env",
            &kibana,
        ),
        (
            vec!["--image".into(), "swarmlog/standin:latest".into(), logstash.clone()],
            "TaskTemplate.ContainerSpec.Image",
            &logstash,
        ),
        (
            vec!["--replicas".into(), "2".into(), kibana.clone()],
            "Mode.Replicated.Replicas",
            &kibana,
        ),
        (
            vec![
                "--constraint-rm".into(),
                "node.labels.logger == true".into(),
                es.clone(),
            ],
            "TaskTemplate.Placement",
            &es,
        ),
        (
            vec![
                "--label-rm".into(),
                "com.df.notify".into(),
                "--label-add".into(),
                "team=ops".into(),
                kibana.clone(),
            ],
            "Labels.com.df.notify",
            &kibana,
        ),
    ];
    rt.block_on(async {
        let docker = sb.client().await?;
        let foreign_before = service_version(&docker, "itforeign").await?;
        for (args, field, service) in &drifts {
            let before = live_spec(&docker, service).await?;
            let mut cmd = vec!["service", "update", "-d", "--no-resolve-image"];
            cmd.extend(args.iter().map(String::as_str));
            sb.docker(&cmd)?;
            let o = sl(sb, "plan", stack, &[]);
            expect_code(&o, 2, &format!("plan after drift {args:?}"))?;
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            if !text.contains(field) || !text.contains("(drifted)") {
                return Err(format!("plan does not name {field} as drifted:\n{text}"));
            }
            expect_code(&sl(sb, "apply", stack, &[]), 0, "apply repairing drift")?;
            expect_code(&sl(sb, "plan", stack, &[]), 0, "plan after repair")?;
            // Repaired means the live spec is what it was before the drift
            // (a label someone added is kept, by design), judged by the
            // engine's spec, not by swarmlog's own plan.
            let mut want = before;
            if args.contains(&"team=ops".to_string()) {
                want["Labels"]["team"] = serde_json::Value::String("ops".into());
            }
            let after = live_spec(&docker, service).await?;
            if after != want {
                return Err(format!(
                    "{service} after repairing {args:?} is not what it was:\n{}",
                    json_diff(&want, &after, "")
                ));
            }
        }
        // The label someone added stays.
        let k = docker.inspect_service(&kibana, None).await.map_err(|e| e.to_string())?;
        let labels = k.spec.and_then(|s| s.labels).unwrap_or_default();
        if labels.get("team").map(String::as_str) != Some("ops") {
            return Err(format!("the foreign label team=ops was not kept: {labels:?}"));
        }
        // A removed service and a removed network come back.
        sb.docker(&["service", "rm", &kibana, &logstash, &es])?;
        common::wait_for("the stack's tasks gone", std::time::Duration::from_secs(60), || async {
            Ok(sb
                .docker(&["network", "rm", &format!("{stack}_log_net")])
                .ok()
                .map(|_| ()))
        })
        .await?;
        let o = sl(sb, "plan", stack, &[]);
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        if !text.contains("+ network  itdrift_log_net") || !text.contains("+ service  itdrift_kibana") {
            return Err(format!("plan does not re-create what was removed:\n{text}"));
        }
        expect_code(
            &sl(sb, "apply", stack, &["--wait", "--wait-timeout", "120s"]),
            0,
            "apply re-creating",
        )?;
        expect_code(&sl(sb, "plan", stack, &[]), 0, "plan after re-creating")?;
        if service_version(&docker, "itforeign").await? != foreign_before {
            return Err("the foreign service was changed".into());
        }
        sb.docker(&["service", "rm", "itforeign"])?;
        remove_owned(sb, &docker, stack).await
    })
}

/// The live spec of a service, as the engine returns it.
async fn live_spec(docker: &Docker, name: &str) -> Result<serde_json::Value, String> {
    let s = docker
        .inspect_service(name, None)
        .await
        .map_err(|e| format!("inspect {name}: {e}"))?;
    serde_json::to_value(s.spec).map_err(|e| e.to_string())
}

/// The paths where two JSON values differ, with both sides.
fn json_diff(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> String {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .map(|k| {
                    json_diff(
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        &format!("{path}.{k}"),
                    )
                })
                .filter(|d| !d.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ if a == b => String::new(),
        _ => format!("  {path}: before the drift {a}, after the repair {b}"),
    }
}

/// Volumes are never removed: with `--allow-remove-all` (every service of
/// the stack removed) and with the stack renamed, the Elasticsearch volume
/// and a file written into it stay, and the re-created Elasticsearch gets it
/// back; no request to the engine touches a volume.
pub fn volume_survives_remove_all_and_rename(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itvol";
    let engine = proxy_of(sb, rt, stack)?;
    let wait = ["--wait", "--wait-timeout", "120s"];
    expect_code(&sl_via(&engine, "apply", stack, &wait), 0, "apply")?;
    let dir = common::temp_dir(stack);
    let other = dir.join("other.yml");
    std::fs::write(
        &other,
        "services:\n  web:\n    image: swarmlog/standin:latest\n    deploy:\n      replicas: 0\n",
    )
    .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let docker = sb.client().await?;
        let logger = common::client_for(&sb.sock("logger-1")?).await?;
        let volume = format!("{stack}_elasticsearch_index");
        let v = logger
            .inspect_volume(&volume)
            .await
            .map_err(|e| format!("volume {volume}: {e}"))?;
        let marker = std::path::PathBuf::from(&v.mountpoint).join("swarmlog-test-marker");
        std::fs::write(&marker, "index data").map_err(|e| format!("write {}: {e}", marker.display()))?;
        let still_there = |when: &str| -> Result<(), String> {
            match std::fs::read_to_string(&marker) {
                Ok(t) if t == "index data" => Ok(()),
                Ok(t) => Err(format!("{when}: the file in the volume holds {t:?}")),
                Err(e) => Err(format!("{when}: the file in the volume is gone: {e}")),
            }
        };
        // Every service of the stack removed: refused without the flag,
        // done with it.
        let o = sl_via(&engine, "apply", stack, &["--chart", &other.display().to_string()]);
        expect_code(&o, 1, "apply removing every service, without --allow-remove-all")?;
        let o = sl_via(
            &engine,
            "apply",
            stack,
            &["--chart", &other.display().to_string(), "--allow-remove-all"],
        );
        expect_code(&o, 0, "apply --allow-remove-all")?;
        if service_version(&docker, &format!("{stack}_elasticsearch"))
            .await?
            .is_some()
        {
            return Err(format!("--allow-remove-all left Elasticsearch: {}", out(&o)));
        }
        logger
            .inspect_volume(&volume)
            .await
            .map_err(|e| format!("after --allow-remove-all: {e}"))?;
        still_there("after --allow-remove-all")?;
        // The stack renamed: the new one gets its own volume, the old stays.
        expect_code(
            &sl_via(&engine, "apply", "itvol2", &wait),
            0,
            "apply of the renamed stack",
        )?;
        logger
            .inspect_volume(&volume)
            .await
            .map_err(|e| format!("after the rename: {e}"))?;
        still_there("after the rename")?;
        // Back under the old name: Elasticsearch mounts the same volume.
        // (It removes the stand-in stack's one service, so that is allowed too.)
        expect_code(
            &sl_via(&engine, "apply", stack, &[&wait[..], &["--allow-remove-all"]].concat()),
            0,
            "apply of the old name again",
        )?;
        still_there("after Elasticsearch came back")?;
        let es = docker
            .inspect_service(&format!("{stack}_elasticsearch"), None)
            .await
            .map_err(|e| e.to_string())?;
        let mounts = es
            .spec
            .and_then(|s| s.task_template?.container_spec?.mounts)
            .unwrap_or_default();
        if !mounts.iter().any(|m| m.source.as_deref() == Some(volume.as_str())) {
            return Err(format!(
                "the re-created Elasticsearch does not mount {volume}: {mounts:?}"
            ));
        }
        let touched: Vec<Call> = engine
            .calls()
            .into_iter()
            .filter(|c| c.path.starts_with("/volumes") && c.is_write())
            .collect();
        if !touched.is_empty() {
            return Err(format!("writes to volumes at the engine:\n{}", describe(&touched)));
        }
        remove_owned(sb, &docker, "itvol2").await?;
        remove_owned(sb, &docker, stack).await
    })
}

/// A pipeline edit creates a new config, rolls Logstash onto it and removes
/// the old one; a Kibana-only change leaves Elasticsearch and its volume alone.
pub fn pipeline_edit_and_kibana_change(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itpipe";
    let dir = common::temp_dir(stack);
    let pipeline = dir.join("pipeline.conf");
    let values = dir.join("values.yaml");
    std::fs::write(&pipeline, "input { tcp { port => 9000 } }\n").map_err(|e| e.to_string())?;
    std::fs::write(&values, format!("logstash:\n  pipelineFile: {}\n", pipeline.display()))
        .map_err(|e| e.to_string())?;
    let v = values.display().to_string();
    expect_code(
        &sl(
            sb,
            "apply",
            stack,
            &["--values", &v, "--wait", "--wait-timeout", "120s"],
        ),
        0,
        "apply",
    )?;
    rt.block_on(async {
        let docker = sb.client().await?;
        let before = versions(&docker, stack).await?;
        // The pipeline's config (Kibana's, with security on, stays).
        let old_config: Vec<String> = before
            .objects
            .keys()
            .filter(|k| k.starts_with("config ") && k.contains("_logstash_pipeline_"))
            .cloned()
            .collect();
        std::fs::write(&pipeline, "input { tcp { port => 9000 codec => json_lines } }\n").map_err(|e| e.to_string())?;
        let o = sl(sb, "apply", stack, &["--values", &v]);
        expect_code(&o, 0, "apply after the pipeline edit")?;
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let lines: Vec<&str> = text.lines().collect();
        let pos = |needle: &str| lines.iter().position(|l| l.contains(needle));
        match (
            pos("created config"),
            pos("updated service itpipe_logstash"),
            pos("removed config"),
        ) {
            (Some(a), Some(b), Some(c)) if a < b && b < c => {}
            _ => {
                return Err(format!(
                    "expected create config, update logstash, remove old config in order:\n{text}"
                ))
            }
        }
        let after = versions(&docker, stack).await?;
        for o in &old_config {
            if after.objects.contains_key(o) {
                return Err(format!("the old {o} was not removed"));
            }
        }
        let es = "service itpipe_elasticsearch".to_string();
        if before.objects.get(&es) != after.objects.get(&es) {
            return Err("a pipeline edit changed Elasticsearch".into());
        }
        // Kibana-only change: Elasticsearch's service and task stay as they are.
        let es_tasks = |v: &Versions| v.tasks.clone();
        let before = versions(&docker, stack).await?;
        let es_id = docker
            .inspect_service("itpipe_elasticsearch", None)
            .await
            .map_err(|e| e.to_string())?
            .id
            .unwrap_or_default();
        let es_task_before = running_task(&docker, &es_id).await?;
        expect_code(
            &sl(
                sb,
                "apply",
                stack,
                &["--values", &v, "--set", "kibana.domain=logs.example.org"],
            ),
            0,
            "kibana change",
        )?;
        let after = versions(&docker, stack).await?;
        if before.objects.get(&es) != after.objects.get(&es) {
            return Err("a Kibana change updated Elasticsearch".into());
        }
        if running_task(&docker, &es_id).await? != es_task_before {
            return Err(format!(
                "a Kibana change restarted Elasticsearch's task ({:?})",
                es_tasks(&after)
            ));
        }
        if before.objects.get("service itpipe_kibana") == after.objects.get("service itpipe_kibana") {
            return Err("Kibana was not updated".into());
        }
        remove_owned(sb, &docker, stack).await?;
        // The volume outlives the stack.
        let logger = common::client_for(&sb.sock("logger-1")?).await?;
        logger
            .inspect_volume(&format!("{stack}_elasticsearch_index"))
            .await
            .map_err(|e| format!("the volume is gone after removing the stack: {e}"))?;
        Ok(())
    })
}

/// The observe step reads only the stack's services (and the companion's);
/// a service outside the stack that uses one of the stack's configs is
/// found before any config is removed: the old config stays while it is
/// used, and goes once it is not.
pub fn a_config_a_foreign_service_uses_is_kept(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itfuse";
    let dir = common::temp_dir(stack);
    let pipeline = dir.join("pipeline.conf");
    let values = dir.join("values.yaml");
    std::fs::write(&pipeline, "input { tcp { port => 9000 } }\n").map_err(|e| e.to_string())?;
    // The companion off: with it on and no companion named, every service
    // is read anyway (it is looked for by image).
    std::fs::write(
        &values,
        format!(
            "logstash:\n  pipelineFile: {}\nletsencrypt:\n  enabled: false\n",
            pipeline.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let v = values.display().to_string();
    expect_code(&sl(sb, "apply", stack, &["--values", &v]), 0, "apply")?;
    rt.block_on(async {
        let docker = sb.client().await?;
        let configs = |v: &Versions| -> Vec<String> {
            v.objects
                .keys()
                .filter_map(|k| k.strip_prefix("config "))
                .filter(|k| k.contains("_logstash_pipeline_"))
                .map(str::to_string)
                .collect()
        };
        let old = configs(&versions(&docker, stack).await?);
        let [old] = old.as_slice() else {
            return Err(format!("expected one pipeline config of the stack, found {old:?}"));
        };
        let user = "itfuseuser";
        sb.docker(&[
            "service",
            "create",
            "-d",
            "--no-resolve-image",
            "--name",
            user,
            "--config",
            &format!("source={old},target=/pipeline.conf"),
            "swarmlog/standin:latest",
        ])?;
        std::fs::write(&pipeline, "input { tcp { port => 9000 codec => json_lines } }\n").map_err(|e| e.to_string())?;
        let o = sl(sb, "apply", stack, &["--values", &v]);
        expect_code(&o, 0, "apply after the pipeline edit, the old config in use elsewhere")?;
        let now = configs(&versions(&docker, stack).await?);
        if !now.contains(old) || now.len() != 2 {
            return Err(format!(
                "the config {old} used by {user} must stay beside the new one; configs now {now:?}:\n{}",
                out(&o)
            ));
        }
        expect_code(
            &sl(sb, "plan", stack, &["--values", &v]),
            0,
            "plan while the old config is used",
        )?;
        sb.docker(&["service", "rm", user])?;
        let o = sl(sb, "plan", stack, &["--values", &v]);
        expect_code(&o, 2, "plan once nothing uses the old config")?;
        if !out(&o).contains(old.as_str()) {
            return Err(format!("the plan does not remove {old}:\n{}", out(&o)));
        }
        expect_code(&sl(sb, "apply", stack, &["--values", &v]), 0, "apply removing it")?;
        let now = configs(&versions(&docker, stack).await?);
        if now.contains(old) || now.len() != 1 {
            return Err(format!("{old} should be gone now; configs {now:?}"));
        }
        remove_owned(sb, &docker, stack).await
    })
}

async fn running_task(docker: &Docker, service_id: &str) -> Result<Vec<String>, String> {
    let mut f = HashMap::new();
    f.insert("service".to_string(), vec![service_id.to_string()]);
    f.insert("desired-state".to_string(), vec!["running".to_string()]);
    let mut ids: Vec<String> = docker
        .list_tasks(Some(ListTasksOptions { filters: Some(f) }))
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|t| t.id)
        .collect();
    ids.sort();
    Ok(ids)
}

/// Broken, empty or truncated desired state removes nothing.
pub fn bad_desired_state_removes_nothing(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itsafe";
    // Waits for the tasks: the engine itself updates a new service once
    // (its endpoint allocated, a new version) before its tasks are
    // scheduled; a snapshot taken earlier sees that as a change.
    expect_code(
        &sl(sb, "apply", stack, &["--wait", "--wait-timeout", "120s"]),
        0,
        "apply",
    )?;
    let dir = common::temp_dir(stack);
    let broken = dir.join("broken.yaml");
    std::fs::write(&broken, "kibana:\n  domain: [unclosed\n").map_err(|e| e.to_string())?;
    let truncated = dir.join("truncated.yml");
    std::fs::write(&truncated, "services:\n  web:\n    image: swarmlog/standin:latest\n").map_err(|e| e.to_string())?;
    let empty = dir.join("empty.yml");
    std::fs::write(&empty, "").map_err(|e| e.to_string())?;
    rt.block_on(async {
        let docker = sb.client().await?;
        let before = versions(&docker, stack).await?;
        let o = sl(sb, "apply", stack, &["--values", &broken.display().to_string()]);
        expect_code(&o, 1, "apply with a broken values file")?;
        if !String::from_utf8_lossy(&o.stderr).contains("broken.yaml") {
            return Err(format!("the error does not name the file: {}", out(&o)));
        }
        let o = sl(sb, "apply", stack, &["--chart", &empty.display().to_string()]);
        expect_code(&o, 1, "apply with an empty stack file")?;
        let o = sl(sb, "apply", stack, &["--chart", &truncated.display().to_string()]);
        expect_code(&o, 1, "apply with a truncated stack file")?;
        if !String::from_utf8_lossy(&o.stderr).contains("removes every service") {
            return Err(format!("the refusal is not explained: {}", out(&o)));
        }
        let after = versions(&docker, stack).await?;
        if before != after {
            return Err(format!("a refused apply changed something:\n{before:?}\n{after:?}"));
        }
        remove_owned(sb, &docker, stack).await
    })
}

/// A service of the desired name that swarmlog does not own is reported and left alone.
pub fn name_conflict_is_reported_untouched(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itconflict";
    sb.docker(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        "itconflict_kibana",
        "swarmlog/standin:latest",
    ])?;
    rt.block_on(async {
        let docker = sb.client().await?;
        let before = service_version(&docker, "itconflict_kibana").await?;
        let o = sl(sb, "plan", stack, &[]);
        expect_code(&o, 1, "plan with a conflict")?;
        let o = sl(sb, "apply", stack, &[]);
        expect_code(&o, 1, "apply with a conflict")?;
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        if !err.contains("itconflict_kibana exists and is not owned") {
            return Err(format!("the conflict is not reported: {}", out(&o)));
        }
        if service_version(&docker, "itconflict_kibana").await? != before {
            return Err("the unowned service was changed".into());
        }
        if service_version(&docker, "itconflict_elasticsearch").await?.is_some() {
            return Err("apply wrote despite the conflict".into());
        }
        sb.docker(&["service", "rm", "itconflict_kibana"])?;
        Ok(())
    })
}

/// Kills a child process when dropped (a test that fails half-way).
struct Racer(Option<std::process::Child>);

impl Racer {
    fn wait(mut self) -> Result<Output, String> {
        let child = self.0.take().ok_or("no child")?;
        child.wait_with_output().map_err(|e| e.to_string())
    }
}

impl Drop for Racer {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The conflicts among calls, and whether the client observed the swarm
/// again after the first one (re-planned instead of failing).
pub(crate) fn conflict_and_replan(calls: &[Call]) -> (Vec<Call>, bool) {
    let conflicts: Vec<Call> = calls.iter().filter(|c| c.is_conflict()).cloned().collect();
    let replanned = calls.iter().position(Call::is_conflict).is_some_and(|i| {
        calls[i + 1..]
            .iter()
            .any(|c| c.method == "GET" && (c.path == "/services" || c.path == "/networks"))
    });
    (conflicts, replanned)
}

/// Two applies racing each other: both observe the empty swarm, and a
/// barrier at the engine holds each one's first write until both want to
/// write, so they do collide. One loses (a conflict at the engine), looks
/// again and re-plans; both end with exit 0, one network, three services.
pub fn racing_applies_converge(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itrace";
    let proxies = [proxy_of(sb, rt, "itrace-a")?, proxy_of(sb, rt, "itrace-b")?];
    for p in &proxies {
        p.inject(Rule {
            method: Some("POST".into()),
            path_prefix: "/".into(),
            fault: Fault::Hold,
            times: Some(1),
        });
    }
    let spawn = |p: &EngineProxy| {
        std::process::Command::new(env!("CARGO_BIN_EXE_swarmlog"))
            .args(["apply", "--stack", stack])
            .env("DOCKER_HOST", p.host())
            .env("SWARMLOG_ROOT_KEY_FILE", common::test_root_key())
            .current_dir(common::repo())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map(|c| Racer(Some(c)))
            .map_err(|e| e.to_string())
    };
    let a = spawn(&proxies[0])?;
    let b = spawn(&proxies[1])?;
    rt.block_on(common::wait_for(
        "both racers holding their first write",
        std::time::Duration::from_secs(30),
        || async {
            let held: Vec<bool> = proxies.iter().map(|p| p.pending().iter().any(Call::is_write)).collect();
            if held.iter().all(|h| *h) {
                Ok(Some(()))
            } else {
                Err(format!("holding a write: {held:?}"))
            }
        },
    ))?;
    for p in &proxies {
        p.open_gate();
    }
    let a = a.wait()?;
    let b = b.wait()?;
    expect_code(&a, 0, "first racer")?;
    expect_code(&b, 0, "second racer")?;
    expect_code(&sl(sb, "plan", stack, &[]), 0, "plan after the race")?;
    let mut conflicts = Vec::new();
    for (p, who) in proxies.iter().zip(["a", "b"]) {
        let calls = p.calls();
        let (c, replanned) = conflict_and_replan(&calls);
        if !c.is_empty() && !replanned {
            return Err(format!(
                "racer {who} did not look again after its conflict:\n{}",
                describe(&calls)
            ));
        }
        conflicts.extend(c);
    }
    if conflicts.is_empty() {
        return Err(format!(
            "no conflict at the engine, so the race was not run:\na:\n{}\nb:\n{}",
            describe(&proxies[0].calls()),
            describe(&proxies[1].calls())
        ));
    }
    eprintln!("race: conflicts at the engine: {}", describe(&conflicts));
    rt.block_on(async {
        let docker = sb.client().await?;
        let v = versions(&docker, stack).await?;
        let services = v.objects.keys().filter(|k| k.starts_with("service ")).count();
        let nets = docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|n| n.name.as_deref() == Some("itrace_log_net"))
            .count();
        let configs = v.objects.keys().filter(|k| k.starts_with("config ")).count();
        // The pipeline's, Kibana's, the CA and the HTTP certificate (security
        // on by default; both racers issued the same certificates).
        if services != 3 || nets != 1 || configs != 4 {
            return Err(format!(
                "after the race: {services} services, {configs} configs, {nets} networks named itrace_log_net: {v:?}"
            ));
        }
        remove_owned(sb, &docker, stack).await
    })
}

/// Missing preconditions are reported by plan and refused by apply before any
/// write; engine errors get one sentence and a distinct exit code.
pub fn preconditions_and_engine_errors(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itpre";
    let o = sl(sb, "plan", stack, &["--set", "networks.proxy.name=nonexistent"]);
    expect_code(&o, 1, "plan with a missing external network")?;
    if !String::from_utf8_lossy(&o.stdout).contains("external network nonexistent does not exist") {
        return Err(format!("plan does not name the missing network: {}", out(&o)));
    }
    let o = sl(sb, "apply", stack, &["--set", "networks.proxy.name=nonexistent"]);
    expect_code(&o, 1, "apply with a missing external network")?;
    let o = sl(sb, "apply", stack, &["--set", "nodeSelector.label=nolabel"]);
    expect_code(&o, 1, "apply with a selector that matches no node")?;
    if !String::from_utf8_lossy(&o.stderr).contains("no node satisfies") {
        return Err(format!("apply does not explain the selector: {}", out(&o)));
    }
    rt.block_on(async {
        let docker = sb.client().await?;
        let v = versions(&docker, stack).await?;
        if !v.objects.is_empty() {
            return Err(format!("a refused apply created {v:?}"));
        }
        Ok::<(), String>(())
    })?;
    // Engine down: exit 3, one sentence, no backtrace.
    let o = common::swarmlog_with_host(Some("unix:///nonexistent/docker.sock"), &["plan"]);
    expect_code(&o, 3, "plan against no engine")?;
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    if !err.contains("cannot reach the Docker engine") || err.contains("panicked") || err.lines().count() > 2 {
        return Err(format!("unclear engine-down error: {err}"));
    }
    // A daemon that left the swarm: exit 6.
    let out_add = std::process::Command::new(common::repo().join("scripts/sandbox"))
        .args(["add-worker", "--name", &sb.name, "solo-1"])
        .output()
        .map_err(|e| e.to_string())?;
    expect_code(&out_add, 0, "add-worker solo-1")?;
    let solo = format!("unix://{}", sb.sock("solo-1")?);
    common::run_docker(&solo, &["swarm", "leave", "--force"])?;
    let o = common::swarmlog_with_host(Some(&solo), &["plan"]);
    expect_code(&o, 6, "plan against a daemon outside any swarm")?;
    if !String::from_utf8_lossy(&o.stderr).contains("not part of a swarm") {
        return Err(format!("unclear no-swarm error: {}", out(&o)));
    }
    rt.block_on(common::wait_for(
        "solo-1 removed from the node list",
        std::time::Duration::from_secs(60),
        || async { Ok(sb.docker(&["node", "rm", "--force", "solo-1"]).ok().map(|_| ())) },
    ))?;
    // A worker is not a manager: exit 7.
    let worker = format!("unix://{}", sb.sock("worker-1")?);
    let o = common::swarmlog_with_host(Some(&worker), &["plan"]);
    expect_code(&o, 7, "plan against a worker")?;
    if !String::from_utf8_lossy(&o.stderr).contains("not a swarm manager") {
        return Err(format!("unclear not-a-manager error: {}", out(&o)));
    }
    Ok(())
}
