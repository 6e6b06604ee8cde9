//! Every compose key swarmlog converts, short and long syntax, applied to the
//! sandbox: it converges (plan 0, a second apply writes nothing at the
//! engine), and observe loses no field of the engine's own JSON.

use std::collections::BTreeSet;

use serde_json::Value as Json;

use super::{expect_code, out, proxy_of, sl_via};
use crate::common::proxy::describe;
use crate::common::{self, Sandbox};

/// Two services between them set every key swarmlog converts, each key in
/// its short syntax in one and its long syntax in the other.
const KITCHEN_SINK: &str = r#"
version: "3.8"
services:
  es:
    image: docker.elastic.co/elasticsearch/elasticsearch:8.15.3
    command: run --flag 'two words'
    entrypoint: /standin
    environment: [A=1, B=two]
    labels: {c.label: x}
    hostname: es-host
    user: "1000"
    working_dir: /tmp
    stop_signal: SIGINT
    stop_grace_period: 5s
    tty: true
    stdin_open: true
    read_only: true
    init: true
    healthcheck:
      test: /standin health
      interval: 30s
      timeout: 5s
      retries: 3
      start_period: 10s
    cap_add: [IPC_LOCK]
    cap_drop: [net_raw]
    sysctls: [net.core.somaxconn=1024]
    extra_hosts: ["somehost:10.0.0.1"]
    dns: 10.0.0.53
    dns_search: example.com
    logging: {driver: json-file, options: {max-size: 10m}}
    ulimits:
      nproc: 65535
      nofile: {soft: 20000, hard: 40000}
      memlock: {soft: -1, hard: -1}
    isolation: default
    networks: [net]
    volumes: ['data:/d:ro', /tmp:/h, {type: tmpfs, target: /t, tmpfs: {size: 1m}}]
    configs: [c]
    secrets: [s]
    ports: ['19200:9200']
    deploy:
      mode: replicated
      replicas: 1
      labels: [d.label=y]
      endpoint_mode: vip
      placement:
        constraints: [node.labels.logger == true]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 2
      resources:
        limits: {cpus: '0.5', memory: 256M, pids: 100}
        reservations: {cpus: 0.1, memory: 64M}
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 1m}
      update_config: {parallelism: 1, delay: 1s, failure_action: rollback, monitor: 5s, max_failure_ratio: 0.5, order: stop-first}
      rollback_config: {parallelism: 2, delay: 1s, failure_action: continue, monitor: 5s, max_failure_ratio: 0.1, order: start-first}
  kb:
    image: docker.elastic.co/kibana/kibana:8.15.3
    command: [run, --flag]
    entrypoint: [/standin]
    environment: {A: "1", B: two}
    labels: [c.label=x]
    healthcheck:
      test: [CMD, /standin, health]
      interval: 30s
    cap_add: [CAP_NET_ADMIN]
    cap_drop: [ALL]
    sysctls: {net.core.somaxconn: 1024}
    extra_hosts: {somehost: 10.0.0.1}
    dns: [10.0.0.53, 10.0.0.54]
    dns_search: [example.com, example.org]
    logging: {driver: json-file}
    networks:
      net: {aliases: [kibana]}
    volumes:
      - {type: volume, source: data, target: /d, read_only: true, volume: {nocopy: true}}
      - {type: bind, source: /tmp, target: /h, bind: {propagation: rslave}}
      - {type: tmpfs, target: /t}
    configs: [{source: c, target: /etc/c, uid: "1", gid: "2", mode: 0440}]
    secrets: [{source: s, target: s2, mode: 0400}]
    ports: [{target: 5601, published: 15601, protocol: tcp, mode: host}]
    deploy:
      mode: global
      labels: {d.label: y}
      endpoint_mode: dnsrr
      placement:
        constraints: [node.labels.logger == true]
      restart_policy: {condition: any}
networks:
  net: {driver: overlay, attachable: true}
volumes:
  data:
configs:
  c: {file: ./c.txt}
secrets:
  s: {file: ./s.txt}
"#;

/// One step into a JSON value.
#[derive(Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Every path of `v` (objects by key, lists by index) with its scalar value.
fn leaves(v: &Json, path: Vec<Seg>, out: &mut Vec<(Vec<Seg>, Json)>) {
    match v {
        Json::Object(m) => {
            for (k, x) in m {
                let mut p = path.clone();
                p.push(Seg::Key(k.clone()));
                leaves(x, p, out);
            }
        }
        Json::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let mut p = path.clone();
                p.push(Seg::Index(i));
                leaves(x, p, out);
            }
        }
        other => out.push((path, other.clone())),
    }
}

/// The value at `path`; a key matches case-insensitively (the engine's
/// decoder is case-insensitive, so `Healthcheck` kept as `HealthCheck` is kept).
fn at<'a>(v: &'a Json, path: &[Seg]) -> Option<&'a Json> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Seg::Key(k) => cur.get(k).or_else(|| {
                cur.as_object()?
                    .iter()
                    .find(|(kk, _)| kk.eq_ignore_ascii_case(k))
                    .map(|(_, x)| x)
            })?,
            Seg::Index(i) => cur.get(*i)?,
        };
    }
    Some(cur)
}

fn show(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => format!(".{k}"),
            Seg::Index(i) => format!("[{i}]"),
        })
        .collect()
}

/// Fields of the engine's service JSON that swarmlog's observe loses:
/// present (not null) in the raw JSON, missing or different in the typed
/// value serialised back. Left aside: `PreviousSpec` (bollard's model has
/// none; swarmlog never reads it) and timestamps (typed as dates).
pub(crate) fn lost_fields(raw: &Json, typed: &Json) -> Vec<String> {
    let mut all = Vec::new();
    leaves(raw, Vec::new(), &mut all);
    all.into_iter()
        .filter(|(p, v)| {
            let top = match p.first() {
                Some(Seg::Key(k)) => k.as_str(),
                _ => "",
            };
            !v.is_null() && !matches!(top, "PreviousSpec" | "CreatedAt" | "UpdatedAt")
        })
        .filter(|(p, v)| {
            let last_is_time = matches!(p.last(), Some(Seg::Key(k)) if k.ends_with("At"));
            match at(typed, p) {
                None => true,
                Some(_) if last_is_time => false,
                Some(t) => t != v && (t.as_f64().is_none() || t.as_f64() != v.as_f64()),
            }
        })
        .map(|(p, v)| format!("{} = {v}", show(&p)))
        .collect()
}

async fn raw_services(sock: &str) -> Result<Vec<Json>, String> {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--unix-socket", sock, "http://docker/v1.41/services"])
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    if !out.status.success() {
        return Err(format!("curl: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("GET /services is not JSON: {e}"))
}

pub fn kitchen_sink_converges_and_observe_loses_nothing(
    sb: &Sandbox,
    rt: &tokio::runtime::Runtime,
) -> Result<(), String> {
    let stack = "itsink";
    let dir = common::temp_dir(stack);
    std::fs::write(dir.join("c.txt"), "c\n").map_err(|e| e.to_string())?;
    std::fs::write(dir.join("s.txt"), "s\n").map_err(|e| e.to_string())?;
    let file = dir.join("stack.yml");
    std::fs::write(&file, KITCHEN_SINK).map_err(|e| e.to_string())?;
    let chart = file.display().to_string();
    let engine = proxy_of(sb, rt, stack)?;
    let o = sl_via(&engine, "apply", stack, &["--chart", &chart]);
    expect_code(&o, 0, "apply of the kitchen sink")?;
    let o = sl_via(&engine, "plan", stack, &["--chart", &chart]);
    expect_code(&o, 0, "plan after applying the kitchen sink")?;
    let mark = engine.mark();
    let o = sl_via(&engine, "apply", stack, &["--chart", &chart]);
    expect_code(&o, 0, "second apply")?;
    let writes = engine.writes_since(mark);
    if !writes.is_empty() {
        return Err(format!(
            "the second apply of the kitchen sink wrote at the engine:\n{}\n{}",
            describe(&writes),
            out(&o)
        ));
    }
    rt.block_on(async {
        let raw = raw_services(sb.host.trim_start_matches("unix://")).await?;
        let swarm = swarmlog::engine::Engine::connect(&sb.host, std::time::Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        let observed = swarmlog::engine::observe(&swarm).await.map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        for r in &raw {
            let name = r["Spec"]["Name"].as_str().unwrap_or_default().to_string();
            if !name.starts_with(&format!("{stack}_")) {
                continue;
            }
            seen.insert(name.clone());
            let Some(t) = observed.services.iter().find(|s| s.id.as_deref() == r["ID"].as_str()) else {
                problems.push(format!("{name}: not observed at all"));
                continue;
            };
            let typed = serde_json::to_value(t).map_err(|e| e.to_string())?;
            for lost in lost_fields(r, &typed) {
                problems.push(format!("{name}: observe loses {lost}"));
            }
        }
        if seen.len() != 2 {
            problems.push(format!("expected the 2 services of {stack}, found {seen:?}"));
        }
        crate::remove_stack(sb, &sb.client().await?, stack).await?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    })
}

/// The engine (here: the proxy, rewriting every GET /services answer) keeps
/// a field differently from how swarmlog writes it. `swarmlog apply` writes
/// the service at most twice, then names the field as not converging and
/// exits 1 instead of writing it again on every round.
pub fn an_update_that_does_not_stick_is_not_repeated(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    use crate::common::proxy::{Fault, Rule};
    let stack = "itloop";
    let engine = proxy_of(sb, rt, stack)?;
    let o = sl_via(&engine, "apply", stack, &[]);
    expect_code(&o, 0, "first apply")?;
    fn rewrite(v: &mut Json) {
        for s in v.as_array_mut().into_iter().flatten() {
            if s["Spec"]["Name"].as_str() == Some("itloop_kibana") {
                s["Spec"]["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] = Json::from(1_234_000_000u64);
            }
        }
    }
    engine.inject(Rule {
        method: Some("GET".into()),
        path_prefix: "/services".into(),
        fault: Fault::Rewrite(rewrite),
        times: None,
    });
    let mark = engine.mark();
    let o = sl_via(&engine, "apply", stack, &[]);
    let writes = engine.writes_since(mark);
    engine.clear_faults();
    let updates = writes
        .iter()
        .filter(|c| c.path.starts_with("/services/") && c.path.ends_with("/update"))
        .count();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let result = if updates == 0 || updates > 2 || writes.len() != updates {
        Err(format!(
            "expected 1 or 2 updates of itloop_kibana, the engine got:\n{}\n{}",
            describe(&writes),
            out(&o)
        ))
    } else if o.status.code() != Some(1)
        || !stderr.contains("itloop_kibana does not converge")
        || !stderr.contains("TaskTemplate.ContainerSpec.StopGracePeriod")
    {
        Err(format!(
            "apply did not name the field that does not converge: {}",
            out(&o)
        ))
    } else {
        Ok(())
    };
    rt.block_on(async { crate::remove_stack(sb, &sb.client().await?, stack).await })?;
    result
}
