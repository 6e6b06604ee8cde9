//! Elasticsearch as a cluster across the logger nodes, on a sandbox swarm of
//! its own (manager-1 and four workers): the operator's image deployed with
//! manifests/operator.yml (so it reads Elasticsearch over the overlay
//! network, as users run it), and the stand-in's Elasticsearch simulator
//! as every Elasticsearch node.
//!
//! Formation on three logger nodes, the cluster UUID recorded, a fourth
//! node labelled and joined, then an image change (to 8.16.1) rolled one
//! node at a time (the operator restarted while the first node is out): at most one node down
//! at any moment, the data-only node first, and the simulators' own logs
//! (kept in their volumes across restarts) show replica allocation held
//! before and released after each node. Decommission: shards moved away,
//! the service removed, the volume kept, cancelled again. A node whose
//! volume holds another cluster's data: reported, never joined or wiped.
//! A secured cluster: HTTPS and transport TLS with a certificate of each
//! node's own, renewed and rolled one node at a time while Kibana and
//! Logstash keep logging in, then a password rotated; and its CA renewed:
//! the successor trusted by every node before any node presents a
//! certificate it signed.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::operator::{
    all_in_force, ca_file, call_on_host, call_tls, certificate_rows, config_data, es_writes, swap_values, Deployed,
};
use common::{run_suite, wait_for, Sandbox, TestFn};
use serde_json::Value;

const SANDBOX: &str = "itcluster";
const IMAGE: &str = "swarmlog:itcluster";
const PROXY_NET: &str = "main";

fn main() {
    let tests: Vec<(&'static str, TestFn)> = vec![
        (
            "cluster_forms_grows_by_a_label_and_rolls_one_node_at_a_time",
            forms_grows_and_rolls,
        ),
        (
            "decommission_moves_shards_away_then_removes_the_node_and_keeps_its_volume",
            decommission,
        ),
        (
            "a_node_of_another_cluster_is_reported_never_joined_or_wiped",
            another_cluster,
        ),
        (
            "an_upgrade_waits_for_a_node_lost_mid_roll_and_ends_on_the_new_version",
            upgrade_with_a_node_lost,
        ),
        (
            "a_secured_cluster_talks_tls_node_to_node_and_renews_each_nodes_certificate_one_node_at_a_time",
            secured_cluster,
        ),
        (
            "a_secured_clusters_ca_is_trusted_everywhere_before_it_signs_and_no_handshake_is_refused",
            ca_renewal,
        ),
    ];
    // Host-mode published ports (the operator's) need dockerd's iptables.
    run_suite(SANDBOX, &["--workers", "4", "--iptables"], setup, tests);
}

fn setup(sb: &Sandbox) -> Result<(), String> {
    sb.docker(&["network", "create", "--driver", "overlay", "--attachable", PROXY_NET])?;
    common::operator::build_image(sb, IMAGE)
}

/// The cluster's members as services: name -> (spec labels, env).
type Members = BTreeMap<String, (BTreeMap<String, String>, Vec<String>)>;

fn members(sb: &Sandbox, template: &str) -> Result<Members, String> {
    let ids = sb.docker(&[
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("label=io.swarmlog.es.member-of={template}"),
    ])?;
    let mut out = BTreeMap::new();
    for id in ids.split_whitespace() {
        let text = sb.docker(&["service", "inspect", id])?;
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let spec = &v[0]["Spec"];
        let labels = spec["Labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let env = spec["TaskTemplate"]["ContainerSpec"]["Env"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        out.insert(spec["Name"].as_str().unwrap_or_default().to_string(), (labels, env));
    }
    Ok(out)
}

/// Members with no running task now.
fn members_down(sb: &Sandbox, names: &[String]) -> Result<Vec<String>, String> {
    let mut down = Vec::new();
    for n in names {
        let ps = sb.docker(&[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.CurrentState}}",
            n,
        ])?;
        if !ps.lines().any(|l| l.starts_with("Running")) {
            down.push(n.clone());
        }
    }
    Ok(down)
}

fn es(st: &Value) -> &Value {
    &st["elasticsearch"]
}

fn values(extra_env: &str) -> String {
    values_of("cl", extra_env)
}

/// Values of stack `stack`, placed by the node label `<stack>=true`.
fn values_of(stack: &str, extra_env: &str) -> String {
    format!(
        "stack: {stack}\n\
         nodeSelector:\n  label: {stack}\n  value: \"true\"\n\
         letsencrypt:\n  enabled: false\n\
         elasticsearch:\n  topology: cluster\n  security: false\n  operatorNetwork: swarmlog_es\n  stopGracePeriod: 5s\n  \
         preflight:\n    maxMapCount: 0\n  env:\n    STANDIN_ES_RECOVERY: \"0.5\"\n{extra_env}"
    )
}

fn forms_grows_and_rolls(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    for host in ["logger-1", "worker-1", "worker-2"] {
        sb.docker(&["node", "update", "--label-add", "cl=true", host])?;
    }
    let op = Deployed::deploy(sb, IMAGE, "swarmlog_values_cl1", &values(""))?;
    let result = rt.block_on(async {
        // Formation: three members, one cluster, green, its UUID recorded.
        let formed = wait_for(
            "a green cluster of 3 nodes in /status",
            Duration::from_secs(240),
            || async {
                let st = op.status()?;
                let e = es(&st);
                let ok =
                    e["state"] == "ok" && e["health"] == "green" && e["nodes_joined"] == 3 && e["nodes_expected"] == 3;
                if ok {
                    Ok(Some(st))
                } else {
                    Err(format!("phase {}, elasticsearch {}", st["phase"], e))
                }
            },
        )
        .await?;
        let uuid = es(&formed)["cluster_uuid"].as_str().unwrap_or_default().to_string();
        if uuid.len() < 8 {
            return Err(format!("no cluster UUID in /status: {}", es(&formed)));
        }
        if es(&formed)["master_eligible"] != 3 {
            return Err(format!("expected 3 master-eligible nodes: {}", es(&formed)));
        }
        let m = wait_for("the UUID recorded on every member", Duration::from_secs(60), || async {
            let m = members(sb, "cl_elasticsearch")?;
            let recorded = m
                .values()
                .all(|(l, _)| l.get("io.swarmlog.es.cluster-uuid") == Some(&uuid));
            Ok((m.len() == 3 && recorded).then_some(m))
        })
        .await?;
        let names: Vec<&String> = m.keys().collect();
        if names != ["cl_es_logger-1", "cl_es_worker-1", "cl_es_worker-2"] {
            return Err(format!("members: {names:?}"));
        }
        for (name, (labels, env)) in &m {
            let wanted = [
                format!("node.name={name}"),
                "discovery.seed_hosts=cl_es_logger-1,cl_es_worker-1,cl_es_worker-2".to_string(),
                format!("network.publish_host={name}"),
            ];
            for w in &wanted {
                if !env.contains(w) {
                    return Err(format!("{name} lacks {w}: {env:?}"));
                }
            }
            if labels.get("io.swarmlog.es.master").map(String::as_str) != Some("true") {
                return Err(format!("{name} should be master-eligible: {labels:?}"));
            }
        }
        wait_for("phase Converged", Duration::from_secs(60), || async {
            let st = op.status()?;
            Ok((st["phase"] == "Converged").then_some(()))
        })
        .await?;

        // Logstash and Kibana reach Elasticsearch as `elasticsearch` on the
        // stack's network: every member carries that alias, so the name
        // answers for the cluster (asked from a container on that network).
        let health = sb.docker(&[
            "run",
            "--rm",
            "--network",
            "cl_log_net",
            "swarmlog/standin:latest",
            "http",
            "GET",
            "http://elasticsearch:9200/_cluster/health",
        ])?;
        if !health.contains("\"number_of_nodes\":3") {
            return Err(format!("http://elasticsearch:9200 on cl_log_net: {health}"));
        }

        // Scale out: one label, and the node joins as a data node.
        let t0 = Instant::now();
        sb.docker(&["node", "update", "--label-add", "cl=true", "worker-3"])?;
        wait_for("the 4th node joined, green", Duration::from_secs(120), || async {
            let st = op.status()?;
            let e = es(&st);
            Ok((e["nodes_joined"] == 4 && e["nodes_expected"] == 4 && e["health"] == "green").then_some(()))
        })
        .await?;
        eprintln!(
            "BENCH scale-out: label to joined and green in /status in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        let m = members(sb, "cl_elasticsearch")?;
        let (labels, env) = m
            .get("cl_es_worker-3")
            .ok_or_else(|| format!("no cl_es_worker-3: {m:?}"))?;
        if env.iter().any(|e| e.starts_with("cluster.initial_master_nodes")) {
            return Err(format!(
                "a node joining a formed cluster got the bootstrap setting: {env:?}"
            ));
        }
        if !env.contains(&"node.roles=data,ingest".to_string())
            || labels.get("io.swarmlog.es.master").map(String::as_str) != Some("false")
        {
            return Err(format!("the 4th node should be data-only: {labels:?} {env:?}"));
        }
        let names: Vec<String> = m.keys().cloned().collect();

        // A change to Elasticsearch's spec: new values (the operator restarts
        // with them), rolled one node at a time.
        let rolled_start = Instant::now();
        // An image change (the 8.16.1 stand-in tag, which reports that
        // version) and a setting: rolled, and each node back on 8.16.1.
        let rolled_values = values("    ROLLED: \"2\"\n    STANDIN_ES_VERSION: \"8.16.1\"\n")
            + "  image: docker.elastic.co/elasticsearch/elasticsearch:8.16.1\n";
        let mut op2 = Deployed::deploy(sb, IMAGE, "swarmlog_values_cl2", &rolled_values)?;
        op2.owner = false;
        let mut max_down: Vec<String> = Vec::new();
        let mut first_down: Vec<String> = Vec::new();
        let mut last = String::new();
        let mut restarted_operator = false;
        // Per member: first and last time seen down (seconds into the roll).
        let mut outage: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let m = loop {
            if rolled_start.elapsed() > Duration::from_secs(420) {
                return Err(format!("the roll did not finish in 420 s; last: {last}"));
            }
            let down = members_down(sb, &names)?;
            let t = rolled_start.elapsed().as_secs_f64();
            for d in &down {
                let e = outage.entry(d.clone()).or_insert((t, t));
                e.1 = t;
            }
            for d in &down {
                if !first_down.contains(d) {
                    first_down.push(d.clone());
                }
            }
            if down.len() > max_down.len() {
                max_down = down.clone();
            }
            // The operator restarted while the first node is out: the roll
            // goes on from the marks and the cluster's setting.
            if !down.is_empty() && !restarted_operator {
                restarted_operator = true;
                sb.docker(&["service", "update", "--force", "--detach", "swarmlog_operator"])?;
                eprintln!(
                    "{:>6.1}s operator restarted mid-roll",
                    rolled_start.elapsed().as_secs_f64()
                );
            }
            if !down.is_empty() {
                let roll = op2.status().map(|st| es(&st)["roll"].to_string()).unwrap_or_else(|e| e);
                eprintln!(
                    "{:>6.1}s down: {down:?}; roll {roll}",
                    rolled_start.elapsed().as_secs_f64()
                );
            }
            if max_down.len() > 1 {
                return Err(format!(
                    "more than one Elasticsearch node was down at once: {max_down:?}"
                ));
            }
            // The status first: a roll it no longer shows has left no mark
            // on the services read after it.
            let st = op2.status();
            let m = members(sb, "cl_elasticsearch")?;
            let rolled = m.values().all(|(_, env)| env.contains(&"ROLLED=2".to_string()));
            match st {
                Ok(st) => {
                    let e = es(&st);
                    let on_new = e["nodes"]
                        .as_array()
                        .is_some_and(|n| n.len() == 4 && n.iter().all(|n| n["version"] == "8.16.1"));
                    let settled = e["roll"].is_null() && e["health"] == "green" && e["nodes_joined"] == 4 && on_new;
                    if rolled && settled && down.is_empty() {
                        break m;
                    }
                    last = format!("down {down:?}, rolled {rolled}, elasticsearch {e}");
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        eprintln!(
            "rolling change of 4 nodes: {:.1} s; restart order seen: {first_down:?}",
            rolled_start.elapsed().as_secs_f64()
        );
        // Each node's time out (its task not running, sampled every ~0.5 s),
        // and the time between one node back and the next one out: the
        // rejoin, the wait for green, the marks and calls, the poll interval.
        let mut prev_end: Option<f64> = None;
        for name in &first_down {
            if let Some((a, b)) = outage.get(name) {
                let gap = prev_end
                    .map(|p| format!(", {:.1} s after the previous node was back", a - p))
                    .unwrap_or_default();
                eprintln!("BENCH roll step {name}: out for {:.1} s{gap}", b - a);
                prev_end = Some(*b);
            }
        }
        if first_down.first().map(String::as_str) != Some("cl_es_worker-3") {
            return Err(format!("the data-only node goes first, masters last: {first_down:?}"));
        }
        for (name, (labels, env)) in &m {
            if env.iter().any(|e| e.starts_with("cluster.initial_master_nodes")) {
                return Err(format!(
                    "{name} still has the bootstrap setting after its restart: {env:?}"
                ));
            }
            if labels.contains_key("io.swarmlog.es.roll") {
                return Err(format!("{name} still carries the roll mark: {labels:?}"));
            }
        }
        // The simulators' own record: for each node, replicas held, a
        // flush, then released, before the next node is held.
        let writes = es_writes(
            sb,
            &["logger-1", "worker-1", "worker-2", "worker-3"],
            "cl_elasticsearch_index",
        );
        let steps: Vec<&str> = writes
            .iter()
            .filter_map(|(_, _, w)| {
                if w.starts_with("PUT /_cluster/settings") && w.contains("\"primaries\"") {
                    Some("hold")
                } else if w.starts_with("PUT /_cluster/settings") && w.contains("null") {
                    Some("release")
                } else if w.starts_with("POST /_flush") {
                    Some("flush")
                } else {
                    None
                }
            })
            .collect();
        // The calls are idempotent; the operator may repeat one when a read
        // from before its call comes in after it.
        let mut steps = steps;
        steps.dedup();
        let expected: Vec<&str> = ["hold", "flush", "release"].repeat(4);
        if steps != expected {
            return Err(format!(
                "the simulators' write log is not hold, flush, release per node: {steps:?}\n{writes:#?}"
            ));
        }
        drop(op2);
        Ok(())
    });
    result.map_err(|e| {
        let st = op.status().map(|st| {
            format!(
                "phase {}\nelasticsearch {}\nevents {}",
                st["phase"], st["elasticsearch"], st["events"]
            )
        });
        format!(
            "{e}\n--- the operator's /status ---\n{}\n--- operator log (tail) ---\n{}",
            st.unwrap_or_else(|e| e),
            op.logs()
        )
    })
}

/// Labels `hosts` with `<stack>=true`, deploys the operator with the
/// stack's values, and waits for a green cluster of that many nodes.
async fn formed<'a>(sb: &'a Sandbox, stack: &str, hosts: &[&str]) -> Result<(Deployed<'a>, Value), String> {
    for host in hosts {
        sb.docker(&["node", "update", "--label-add", &format!("{stack}=true"), host])?;
    }
    let op = Deployed::deploy(sb, IMAGE, &format!("swarmlog_values_{stack}"), &values_of(stack, ""))?;
    let n = hosts.len();
    let st = wait_for(
        &format!("a green cluster of {n} nodes"),
        Duration::from_secs(240),
        || async {
            let st = op.status()?;
            let e = es(&st);
            let ok = e["state"] == "ok" && e["health"] == "green" && e["nodes_joined"] == n && e["nodes_expected"] == n;
            if ok {
                Ok(Some(st))
            } else {
                Err(format!("phase {}, elasticsearch {}", st["phase"], e))
            }
        },
    )
    .await?;
    Ok((op, st))
}

fn swarmlog_cli(sb: &Sandbox, args: &[&str]) -> Result<String, String> {
    let out = sb.swarmlog(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("swarmlog {}: {text}", args.join(" ")))
    }
}

fn decommission(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    rt.block_on(async {
        let (op, _) = formed(sb, "dc", &["logger-1", "worker-1", "worker-2"]).await?;
        let result = async {
            let out = swarmlog_cli(sb, &["es", "decommission", "worker-2"])?;
            if !out.contains("marked") {
                return Err(format!("decommission said: {out}"));
            }
            // Its shards move away, then its service goes; two nodes stay, green.
            wait_for(
                "dc_es_worker-2 removed, 2 nodes green",
                Duration::from_secs(120),
                || async {
                    let st = op.status()?;
                    let e = es(&st);
                    let gone = members(sb, "dc_elasticsearch")?.len() == 2;
                    Ok(
                        (gone && e["nodes_joined"] == 2 && e["nodes_expected"] == 2 && e["health"] == "green")
                            .then_some(()),
                    )
                },
            )
            .await?;
            let vols = sb
                .script("sock", &["worker-2"])
                .and_then(|sock| common::run_docker(&format!("unix://{}", sock.trim()), &["volume", "ls", "-q"]))?;
            if !vols.lines().any(|v| v == "dc_elasticsearch_index") {
                return Err(format!("the decommissioned node's volume is gone: {vols}"));
            }
            // Still a logger node, still marked: no new Elasticsearch node there.
            tokio::time::sleep(Duration::from_secs(6)).await;
            let m = members(sb, "dc_elasticsearch")?;
            if m.contains_key("dc_es_worker-2") {
                return Err("a member was made again on the decommissioned node".into());
            }
            // Elasticsearch saw: exclusion (with the voting exclusion, it is a
            // master), and the exclusion taken out again afterwards.
            let writes = es_writes(sb, &["logger-1", "worker-1", "worker-2"], "dc_elasticsearch_index");
            let w: Vec<&str> = writes.iter().map(|(_, _, w)| w.as_str()).collect();
            let pos = |pred: &dyn Fn(&str) -> bool| w.iter().position(|x| pred(x));
            let voting = pos(&|x| x.starts_with("POST /_cluster/voting_config_exclusions?node_names=dc_es_worker-2"));
            let excluded = pos(&|x| x.contains("exclude._name") && x.contains("dc_es_worker-2"));
            let cleared = pos(&|x| x.contains("exclude._name\":null"));
            let unvoted = pos(&|x| x.starts_with("DELETE /_cluster/voting_config_exclusions"));
            match (voting, excluded, cleared, unvoted) {
                (Some(v), Some(e), Some(c), Some(u)) if v < e && e < c && u < c => {}
                other => {
                    return Err(format!(
                        "expected voting exclusion, allocation exclusion, then both cleared: {other:?}\n{w:#?}"
                    ))
                }
            }
            // Cancelled: the node gets its Elasticsearch node back, on its
            // kept volume (same cluster), and the cluster is 3 again.
            swarmlog_cli(sb, &["es", "decommission", "--cancel", "worker-2"])?;
            wait_for("worker-2 back in the cluster", Duration::from_secs(120), || async {
                let st = op.status()?;
                let e = es(&st);
                Ok((e["nodes_joined"] == 3 && e["health"] == "green").then_some(()))
            })
            .await
        }
        .await;
        result.map_err(|e| {
            format!(
                "{e}\n--- /status ---\n{}",
                op.status().map(|s| s.to_string()).unwrap_or_else(|e| e)
            )
        })
    })
}

fn another_cluster(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    rt.block_on(async {
        let (op, st) = formed(sb, "fc", &["logger-1", "worker-1", "worker-2"]).await?;
        let uuid = es(&st)["cluster_uuid"].as_str().unwrap_or_default().to_string();
        let result = async {
            // worker-3's volume holds another cluster's data.
            let sock = sb.script("sock", &["worker-3"])?;
            let w3 = format!("unix://{}", sock.trim());
            common::run_docker(&w3, &["volume", "create", "fc_elasticsearch_index"])?;
            let state = common::repo()
                .join("target/sandbox")
                .join(&sb.name)
                .join("worker-3/data/volumes/fc_elasticsearch_index/_data/standin-es-state");
            let foreign = "node_uuid=foreignnode0000000000001\ncluster_uuid=foreigncluster000000001\n";
            std::fs::write(&state, foreign).map_err(|e| format!("{}: {e}", state.display()))?;
            sb.docker(&["node", "update", "--label-add", "fc=true", "worker-3"])?;
            let st = wait_for("the foreign node reported", Duration::from_secs(120), || async {
                let st = op.status()?;
                let e = es(&st);
                let named = e["problems"].as_array().is_some_and(|p| {
                    p.iter()
                        .any(|p| p.as_str().is_some_and(|p| p.contains("foreigncluster000000001")))
                });
                Ok((named && st["phase"] == "Degraded").then_some(st))
            })
            .await?;
            let e = es(&st);
            if e["cluster_uuid"] != uuid.as_str() || e["nodes_joined"] != 3 {
                return Err(format!("the cluster changed: {e}"));
            }
            let row = e["nodes"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["name"] == "fc_es_worker-3").cloned())
                .unwrap_or_default();
            if row["joined"] != false || !row["problem"].as_str().unwrap_or_default().contains("another cluster") {
                return Err(format!("the foreign node's row: {row}"));
            }
            // Its data is as it was: nothing wiped, nothing bootstrapped.
            let kept = std::fs::read_to_string(&state).map_err(|e| e.to_string())?;
            if !kept.contains("cluster_uuid=foreigncluster000000001") {
                return Err(format!("the foreign node's state changed: {kept}"));
            }
            Ok(())
        }
        .await;
        result.map_err(|e| {
            format!(
                "{e}\n--- /status ---\n{}",
                op.status().map(|s| s.to_string()).unwrap_or_else(|e| e)
            )
        })
    })
}

fn upgrade_with_a_node_lost(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    rt.block_on(async {
        let (op, _) = formed(sb, "up", &["logger-1", "worker-1", "worker-2"]).await?;
        let names: Vec<String> = ["up_es_logger-1", "up_es_worker-1", "up_es_worker-2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let result = async {
            // The upgrade: the image of 8.16.1 (the simulator reports the
            // version it is told; the image names it in its tag).
            let values = values_of("up", "    STANDIN_ES_VERSION: \"8.16.1\"\n")
                + "  image: docker.elastic.co/elasticsearch/elasticsearch:8.16.1\n";
            let mut op2 = Deployed::deploy(sb, IMAGE, "swarmlog_values_up2", &values)?;
            op2.owner = false;
            // The first node out (logger-1: masters in name order): then
            // worker-2's whole node stops.
            let first = wait_for("the first node out", Duration::from_secs(120), || async {
                let down = members_down(sb, &names)?;
                Ok(down.first().cloned())
            })
            .await?;
            if first != "up_es_logger-1" {
                return Err(format!("expected up_es_logger-1 first, got {first}"));
            }
            sb.script("node-stop", &["worker-2"])?;
            let stopped = Instant::now();
            // 25 s without worker-2: no other node is taken out, and the roll
            // says what it waits for.
            let mut waits = String::new();
            while stopped.elapsed() < Duration::from_secs(25) {
                let down = members_down(sb, &names)?;
                if down.iter().any(|d| d == "up_es_worker-1") {
                    return Err(format!(
                        "the roll took another node out while worker-2 was lost: {down:?}"
                    ));
                }
                if let Ok(st) = op2.status() {
                    waits = es(&st)["roll"]["waiting_for"].to_string();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            // Two of three masters out (one restarting, one lost): no quorum
            // until one is back; the roll waits, whatever it names.
            if waits == "null" || waits.is_empty() {
                return Err(format!(
                    "with worker-2 lost the roll should say what it waits for: {waits}"
                ));
            }
            eprintln!("with worker-2 lost, the roll waits for: {waits}");
            sb.script("node-start", &["worker-2"])?;
            // Then it resumes and ends with every node on 8.16.1, one at a time.
            let back = Instant::now();
            let mut max_down = 0;
            loop {
                if back.elapsed() > Duration::from_secs(300) {
                    return Err(format!(
                        "the upgrade did not finish: {}",
                        op2.status().map(|s| es(&s).to_string()).unwrap_or_else(|e| e)
                    ));
                }
                let down = members_down(sb, &names)?;
                if let Ok(st) = op2.status() {
                    let e = es(&st);
                    let all_new = e["nodes"].as_array().is_some_and(|n| {
                        n.len() == 3 && n.iter().all(|n| n["joined"] == true && n["version"] == "8.16.1")
                    });
                    // worker-2 coming back is its node's doing; after it
                    // joined again, one node out at most.
                    let w2_joined = e["nodes"]
                        .as_array()
                        .is_some_and(|n| n.iter().any(|n| n["name"] == "up_es_worker-2" && n["joined"] == true));
                    if w2_joined {
                        max_down = max_down.max(down.len());
                    }
                    if all_new && e["roll"].is_null() && e["health"] == "green" && down.is_empty() {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            if max_down > 1 {
                return Err(format!("{max_down} nodes out at once after worker-2 came back"));
            }
            Ok(())
        }
        .await;
        result.map_err(|e| {
            format!(
                "{e}\n--- /status ---\n{}",
                op.status().map(|s| s.to_string()).unwrap_or_else(|e| e)
            )
        })
    })
}

/// Values of a secured cluster of stack `stack`, with `tls` (the values'
/// `elasticsearch.tls`, indented, or nothing: the defaults).
fn secured_values(stack: &str, tls: &str) -> String {
    format!(
        "stack: {stack}\n\
         nodeSelector:\n  label: {stack}\n  value: \"true\"\n\
         letsencrypt:\n  enabled: false\n\
         elasticsearch:\n  topology: cluster\n  security: true\n  operatorNetwork: swarmlog_es\n  stopGracePeriod: 5s\n  \
         preflight:\n    maxMapCount: 0\n  env:\n    STANDIN_ES_RECOVERY: \"0.5\"\n{tls}"
    )
}

/// The config whose name starts with `prefix` that the service `service`
/// mounts now.
fn mounted_config(sb: &Sandbox, service: &str, prefix: &str) -> Result<String, String> {
    let text = sb.docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Configs}}",
        service,
    ])?;
    let v: Value = serde_json::from_str(text.trim()).map_err(|e| format!("{service}'s configs {text:?}: {e}"))?;
    v.as_array()
        .and_then(|a| {
            a.iter()
                .filter_map(|c| c["ConfigName"].as_str())
                .find(|c| c.starts_with(prefix))
        })
        .map(str::to_string)
        .ok_or_else(|| format!("{service} mounts no config {prefix}...: {text}"))
}

/// Each member's own certificate config, as its service mounts it now.
fn node_certs(sb: &Sandbox, names: &[String]) -> Result<BTreeMap<String, String>, String> {
    names
        .iter()
        .map(|n| Ok((n.clone(), mounted_config(sb, n, &format!("{n}_cert_"))?)))
        .collect()
}

/// Each member's transport peers (`GET /_standin/transport_peers`), asked
/// over HTTPS by the member's name, trusting only the stack's CA: the
/// node's certificate is valid for its name.
fn transport_peers(sb: &Sandbox, stack: &str, names: &[String]) -> Result<BTreeMap<String, Value>, String> {
    let ca = ca_file(sb, stack)?;
    let mut out = BTreeMap::new();
    for n in names {
        let answer = call_tls(
            sb,
            &format!("{stack}_log_net"),
            "GET",
            &format!("https://{n}:9200/_standin/transport_peers"),
            &ca,
        );
        let body = answer.lines().skip(1).collect::<Vec<_>>().join("\n");
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{n}'s transport peers: {e}: {answer}"))?;
        out.insert(n.clone(), v);
    }
    Ok(out)
}

/// Every member talks transport TLS, verifying certificates against the
/// CA, and hears from each other member under that member's own
/// certificate (its common name); no handshake was ever refused.
fn tls_between_nodes(sb: &Sandbox, stack: &str, names: &[String]) -> Result<(), String> {
    for (n, v) in transport_peers(sb, stack, names)? {
        if v["tls"] != true || v["verification_mode"] != "certificate" {
            return Err(format!("{n} does not talk transport TLS as configured: {v}"));
        }
        let mut heard: Vec<String> = v["inbound"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| p["node"] == p["common_name"])
                    .filter_map(|p| p["common_name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        heard.sort();
        let others: Vec<String> = names.iter().filter(|o| **o != n).cloned().collect();
        if heard != others {
            return Err(format!(
                "{n} heard from {heard:?} under their own certificates, not {others:?}: {v}"
            ));
        }
        if v["refused"].as_array().is_none_or(|r| !r.is_empty()) {
            return Err(format!("{n} refused a transport handshake: {v}"));
        }
    }
    Ok(())
}

/// Kibana and Logstash asked in turn, from a thread of its own, until
/// `stop` (at most 600 asks): (what, logged in, refused answers, not
/// reached). Refused: Elasticsearch refused the credentials, or the TLS
/// handshake with it failed; not reached: the client had no answer at all
/// (a node or the client's own task restarting).
type Tally = Vec<(&'static str, u32, Vec<String>, u32)>;

fn poll_clients(host: String, network: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Tally {
    let targets = [
        ("Kibana", "http://tasks.kibana:5601/api/status", "\"available\""),
        ("Logstash", "http://tasks.logstash:9600/", "\"green\""),
    ];
    let mut tally: Tally = targets.iter().map(|(w, _, _)| (*w, 0, Vec::new(), 0)).collect();
    let mut asked = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && asked < 600 {
        for (i, (_, url, ok)) in targets.iter().enumerate() {
            let answer = call_on_host(&host, &network, "GET", url);
            asked += 1;
            let t = &mut tally[i];
            let refused = ["TLS handshake", "security_exception", "answered 401", "answered 403"];
            if answer.contains("HTTP/1.1 200") && answer.contains(ok) {
                t.1 += 1;
            } else if refused.iter().any(|r| answer.contains(r)) {
                t.2.push(answer);
            } else {
                t.3 += 1;
            }
        }
    }
    tally
}

/// Neither Kibana nor Logstash was ever refused, and each logged in often
/// enough to tell; what they saw, in words.
fn never_refused(tally: Tally) -> Result<String, String> {
    let mut report = Vec::new();
    for (what, good, refused, unreached) in tally {
        if let Some(r) = refused.first() {
            return Err(format!("{what} was refused {} times: {r}", refused.len()));
        }
        if good < 3 {
            return Err(format!(
                "{what} logged in only {good} times ({unreached} not reached): too few to tell"
            ));
        }
        report.push(format!(
            "{what} logged in {good} times, refused none ({unreached} not reached)"
        ));
    }
    Ok(report.join("; "))
}

fn secured_cluster(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let hosts = ["logger-1", "worker-1", "worker-2"];
    for host in hosts {
        sb.docker(&["node", "update", "--label-add", "sc=true", host])?;
    }
    // Valid for 4 minutes, renewed 3 minutes before: due a minute after
    // each is issued, so a renewal comes while the test watches.
    let short = "  tls:\n    certValidity: 4m\n    certRotateBefore: 3m\n";
    let op = Deployed::deploy(sb, IMAGE, "swarmlog_values_sc1", &secured_values("sc", short))?;
    sb.docker(&[
        "service",
        "update",
        "--detach",
        "--env-add",
        "SWARMLOG_RESYNC=10s",
        "swarmlog_operator",
    ])?;
    let names: Vec<String> = hosts.iter().map(|h| format!("sc_es_{h}")).collect();
    let result = rt.block_on(async {
        secured_and_green(&op, "sc", 3).await?;
        // Each node's certificate is its own, and no credential is in a
        // member's environment.
        let m = members(sb, "sc_elasticsearch")?;
        for (name, (_, env)) in &m {
            if let Some(e) = env.iter().find(|e| e.contains("PASSWORD=") || e.contains("password=")) {
                return Err(format!("{name} has a credential in its environment: {e}"));
            }
        }
        let first = node_certs(sb, &names)?;
        let distinct: std::collections::BTreeSet<&String> = first.values().collect();
        if distinct.len() != 3 {
            return Err(format!("the nodes share a certificate: {first:?}"));
        }
        wait_for("TLS between every two nodes", Duration::from_secs(60), || async {
            tls_between_nodes(sb, "sc", &names).map(Some)
        })
        .await?;

        // The renewals roll one node at a time while Kibana and Logstash
        // keep logging in.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = {
            let (stop, host) = (stop.clone(), sb.host.clone());
            std::thread::spawn(move || poll_clients(host, "sc_log_net".into(), stop))
        };
        let t0 = Instant::now();
        let mut max_down: Vec<String> = Vec::new();
        let mut swapped = false;
        let mut last = String::new();
        let rolled: Result<(), String> = loop {
            if t0.elapsed() > Duration::from_secs(600) {
                break Err(format!("the renewals did not settle in 600 s; last: {last}"));
            }
            let down = members_down(sb, &names)?;
            if down.len() > max_down.len() {
                max_down = down.clone();
            }
            if max_down.len() > 1 {
                break Err(format!(
                    "more than one Elasticsearch node was down at once: {max_down:?}"
                ));
            }
            let now = node_certs(sb, &names)?;
            let renewed_all = now.iter().all(|(n, c)| first.get(n) != Some(c));
            // Every node on a renewed certificate: back to the default
            // policy, under which the short-lived ones are due, so each is
            // renewed once more, for a year, and stays. The swap comes
            // while a node is out for its next short renewal (each is due a
            // minute after it is issued): that node changes again while
            // out, and the roll must wait for the process of its last
            // update, not take the one before for back.
            if renewed_all && !swapped && !down.is_empty() {
                swapped = true;
                eprintln!(
                    "{:>6.1}s every node renewed its certificate; back to the default policy while {down:?} is out",
                    t0.elapsed().as_secs_f64()
                );
                swap_values(
                    sb,
                    "swarmlog_values_sc1",
                    "swarmlog_values_sc2",
                    &secured_values("sc", ""),
                    &[],
                )?;
            }
            if !down.is_empty() {
                eprintln!("{:>6.1}s down: {down:?}", t0.elapsed().as_secs_f64());
            }
            match op.status() {
                Ok(st) => {
                    let e = es(&st);
                    let rows = certificate_rows(&st);
                    let year = |end: &str| {
                        humantime::parse_rfc3339(end)
                            .ok()
                            .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
                            .is_some_and(|left| left > Duration::from_secs(300 * 24 * 3600))
                    };
                    let nodes: Vec<_> = rows.iter().filter(|r| r.0.starts_with("node:")).collect();
                    let settled = swapped
                        && nodes.len() == 3
                        && nodes.iter().all(|r| r.1 == "ok" && year(&r.2))
                        && e["roll"].is_null()
                        && e["health"] == "green"
                        && e["nodes_joined"] == 3
                        && st["phase"] == "Converged"
                        && down.is_empty();
                    if settled {
                        break Ok(());
                    }
                    last = format!("down {down:?}, certificates {rows:?}, roll {}", e["roll"]);
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        // Asked a few more times after the roll.
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let tally = poller.join().map_err(|_| "the poller panicked".to_string())?;
        rolled?;
        let report = never_refused(tally)?;
        eprintln!(
            "BENCH tls: node certificates renewed twice and rolled in {:.1} s, at most {} node down; {report}",
            t0.elapsed().as_secs_f64(),
            max_down.len(),
        );
        let last_certs = node_certs(sb, &names)?;
        if last_certs.values().any(|c| first.values().any(|f| f == c)) {
            return Err(format!("a node still mounts its first certificate: {last_certs:?}"));
        }
        // After the rolls: still TLS between every two nodes, under the
        // renewed certificates, no handshake ever refused.
        wait_for(
            "TLS between every two nodes after the renewals",
            Duration::from_secs(60),
            || async { tls_between_nodes(sb, "sc", &names).map(Some) },
        )
        .await?;

        // A password of the cluster's users rotated: Kibana's, with no
        // restart of any node, Kibana and Logstash asked all through.
        let before = members(sb, "sc_elasticsearch")?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = {
            let (stop, host) = (stop.clone(), sb.host.clone());
            std::thread::spawn(move || poll_clients(host, "sc_log_net".into(), stop))
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        let out = common::swarmlog_with_host(Some(&sb.host), &["credentials", "rotate", "kibana", "--stack", "sc"]);
        if !out.status.success() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(format!(
                "credentials rotate kibana: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let rotated = wait_for("Kibana's next user in force", Duration::from_secs(240), || async {
            let st = op.status()?;
            let sec = &es(&st)["security"];
            let users: Vec<&str> = sec["users"]
                .as_array()
                .map(|u| u.iter().filter_map(|u| u["name"].as_str()).collect())
                .unwrap_or_default();
            if all_in_force(sec) && users.contains(&"swarmlog_kibana_2") && st["phase"] == "Converged" {
                Ok(Some(()))
            } else {
                Err(format!("phase {}, users {}", st["phase"], sec["users"]))
            }
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let tally = poller.join().map_err(|_| "the poller panicked".to_string())?;
        rotated?;
        eprintln!(
            "BENCH security: Kibana's password rotated on a cluster; {}",
            never_refused(tally)?
        );
        let after = members(sb, "sc_elasticsearch")?;
        if after != before {
            return Err(format!(
                "a node changed for a password rotation: {before:?} -> {after:?}"
            ));
        }
        // Kibana's new task (its old one may still answer for a moment).
        wait_for(
            "Kibana logged in as swarmlog_kibana_2",
            Duration::from_secs(60),
            || async {
                let answer = call_on_host(&sb.host, "sc_log_net", "GET", "http://tasks.kibana:5601/api/status");
                if answer.contains("swarmlog_kibana_2") {
                    Ok(Some(()))
                } else {
                    Err(answer)
                }
            },
        )
        .await?;

        // A restarted operator derives the same certificates and keys: it
        // makes no config or secret and changes no node.
        let objects = || -> Result<String, String> {
            let configs = sb.docker(&["config", "ls", "--format", "{{.Name}}"])?;
            let secrets = sb.docker(&["secret", "ls", "--format", "{{.Name}}"])?;
            let mut all: Vec<&str> = configs
                .lines()
                .chain(secrets.lines())
                .filter(|n| n.starts_with("sc_"))
                .collect();
            all.sort();
            Ok(all.join("\n"))
        };
        let before = (objects()?, members(sb, "sc_elasticsearch")?);
        let started = op.status()?["started_at"].clone();
        // Restarted by the update, then a resync every second.
        sb.docker(&[
            "service",
            "update",
            "--detach",
            "--env-add",
            "SWARMLOG_RESYNC=1s",
            "swarmlog_operator",
        ])?;
        wait_for(
            "ten reconciles of the restarted operator, Converged",
            Duration::from_secs(120),
            || async {
                let st = op.status()?;
                let n = st["reconcile"]["count"].as_u64().unwrap_or(0);
                if st["started_at"] != started && n >= 10 && st["phase"] == "Converged" {
                    Ok(Some(()))
                } else {
                    Err(format!(
                        "started {}, reconciles {n}, phase {}",
                        st["started_at"], st["phase"]
                    ))
                }
            },
        )
        .await?;
        let after = (objects()?, members(sb, "sc_elasticsearch")?);
        if after != before {
            return Err(format!(
                "the restarted operator changed the stack: {:?} -> {:?}",
                before.0, after.0
            ));
        }
        Ok(())
    });
    result.map_err(|e| {
        let st = op.status().map(|st| {
            format!(
                "phase {}\nelasticsearch {}\nevents {}",
                st["phase"], st["elasticsearch"], st["events"]
            )
        });
        format!(
            "{e}\n--- the operator's /status ---\n{}\n--- operator log (tail) ---\n{}",
            st.unwrap_or_else(|e| e),
            op.logs()
        )
    })
}

/// Waits for a green secured cluster of `n` nodes of `stack`, its users in
/// force and a certificate row per node.
async fn secured_and_green(op: &Deployed<'_>, stack: &str, n: usize) -> Result<Value, String> {
    wait_for(
        &format!("a green secured cluster of {n} nodes, its users in force"),
        Duration::from_secs(300),
        || async {
            let st = op.status()?;
            let e = es(&st);
            let rows = certificate_rows(&st);
            let ok = e["state"] == "ok"
                && e["health"] == "green"
                && e["nodes_joined"] == n
                && e["nodes_expected"] == n
                && all_in_force(&e["security"])
                && rows
                    .iter()
                    .filter(|r| r.0.starts_with(&format!("node:{stack}_es_")))
                    .count()
                    == n;
            if ok {
                Ok(Some(st))
            } else {
                Err(format!("phase {}, elasticsearch {e}", st["phase"]))
            }
        },
    )
    .await
}

/// The key id of the CA that signed each member's certificate (its
/// config's label).
fn node_issuers(sb: &Sandbox, names: &[String]) -> Result<BTreeMap<String, String>, String> {
    node_certs(sb, names)?
        .into_iter()
        .map(|(n, cert)| {
            let id = sb.docker(&[
                "config",
                "inspect",
                "--format",
                "{{index .Spec.Labels \"io.swarmlog.tls.issuer\"}}",
                &cert,
            ])?;
            Ok((n, id.trim().to_string()))
        })
        .collect()
}

/// How many CA certificates each member trusts (its mounted `ca.crt`).
fn node_trust(sb: &Sandbox, stack: &str, names: &[String]) -> Result<BTreeMap<String, usize>, String> {
    names
        .iter()
        .map(|n| {
            let ca = mounted_config(sb, n, &format!("{stack}_es_ca_"))?;
            Ok((n.clone(), config_data(sb, &ca)?.matches("BEGIN CERTIFICATE").count()))
        })
        .collect()
}

fn ca_renewal(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let hosts = ["logger-1", "worker-1", "worker-2"];
    for host in hosts {
        sb.docker(&["node", "update", "--label-add", "cr=true", host])?;
    }
    // The CA lives 10 minutes with a lead of 150 s: its successor is
    // trusted from 5 minutes before its end and signs from 150 s before;
    // the nodes' certificates end with the CA, so they are due at the
    // switch.
    let tls =
        "  tls:\n    caValidity: 10m\n    caRotateBefore: 150s\n    certValidity: 10m\n    certRotateBefore: 150s\n";
    let op = Deployed::deploy(sb, IMAGE, "swarmlog_values_cr1", &secured_values("cr", tls))?;
    sb.docker(&[
        "service",
        "update",
        "--detach",
        "--env-add",
        "SWARMLOG_RESYNC=10s",
        "swarmlog_operator",
    ])?;
    let names: Vec<String> = hosts.iter().map(|h| format!("cr_es_{h}")).collect();
    let result = rt.block_on(async {
        let st = secured_and_green(&op, "cr", 3).await?;
        let ca_end = certificate_rows(&st)
            .iter()
            .find(|r| r.0 == "ca")
            .and_then(|r| humantime::parse_rfc3339(&r.2).ok())
            .ok_or_else(|| format!("no CA row in /status: {}", es(&st)["security"]))?;
        let first = node_issuers(sb, &names)?;
        let old_ca = first.values().next().cloned().unwrap_or_default();
        if old_ca.is_empty() || first.values().any(|i| *i != old_ca) {
            return Err(format!("the nodes' certificates should share one issuer: {first:?}"));
        }
        wait_for("TLS between every two nodes", Duration::from_secs(60), || async {
            tls_between_nodes(sb, "cr", &names).map(Some)
        })
        .await?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = {
            let (stop, host) = (stop.clone(), sb.host.clone());
            std::thread::spawn(move || poll_clients(host, "cr_log_net".into(), stop))
        };
        let t0 = Instant::now();
        let mut max_down: Vec<String> = Vec::new();
        let mut published_at: Option<f64> = None;
        let mut first_switched_at: Option<f64> = None;
        let mut last = String::new();
        let switched: Result<(), String> = loop {
            if std::time::SystemTime::now() > ca_end || t0.elapsed() > Duration::from_secs(900) {
                break Err(format!(
                    "every node was not on the new CA before the old one ended; last: {last}"
                ));
            }
            let down = members_down(sb, &names)?;
            if down.len() > max_down.len() {
                max_down = down.clone();
            }
            if max_down.len() > 1 {
                break Err(format!("more than one Elasticsearch node was down at once: {max_down:?}"));
            }
            // A config a service named a moment ago may be gone by the time
            // it is read (the roll moved on): that sample is taken again.
            let sample = node_issuers(sb, &names).and_then(|i| Ok((i, node_trust(sb, "cr", &names)?)));
            let (issuers, trust) = match sample {
                Ok(s) => s,
                Err(e) if e.contains("not found") => continue,
                Err(e) => break Err(e),
            };
            let t = t0.elapsed().as_secs_f64();
            if published_at.is_none() && trust.values().all(|n| *n == 2) {
                published_at = Some(t);
                eprintln!("{t:>6.1}s every node trusts the CA and its successor");
            }
            if first_switched_at.is_none() && issuers.values().any(|i| *i != old_ca) {
                first_switched_at = Some(t);
                eprintln!("{t:>6.1}s a node presents a certificate of the new CA: {issuers:?}; trust {trust:?}");
                // The order the renewal promises: the successor trusted by
                // every node before any node presents a certificate it signed.
                if trust.values().any(|n| *n < 2) {
                    break Err(format!(
                        "a node presents a certificate of the new CA while another trusts only the old: issuers {issuers:?}, trust {trust:?}"
                    ));
                }
            }
            let all_new = issuers.values().all(|i| *i != old_ca && !i.is_empty());
            match op.status() {
                Ok(st) => {
                    let e = es(&st);
                    if all_new && e["roll"].is_null() && e["health"] == "green" && e["nodes_joined"] == 3 && down.is_empty() {
                        break Ok(());
                    }
                    last = format!("down {down:?}, issuers {issuers:?}, trust {trust:?}, roll {}", e["roll"]);
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let tally = poller.join().map_err(|_| "the poller panicked".to_string())?;
        switched?;
        let report = never_refused(tally)?;
        if published_at.is_none_or(|p| first_switched_at.is_some_and(|s| s < p)) {
            return Err(format!(
                "the successor was not trusted everywhere before it signed (published at {published_at:?}, first switch at {first_switched_at:?})"
            ));
        }
        eprintln!(
            "BENCH tls: CA renewed on 3 nodes in {:.1} s (trusted everywhere at {:.1} s, signing from {:.1} s), at most {} node down; {report}",
            t0.elapsed().as_secs_f64(),
            published_at.unwrap_or_default(),
            first_switched_at.unwrap_or_default(),
            max_down.len()
        );
        // Every node on the new CA's certificate, and no transport
        // handshake refused on any node all through.
        tls_between_nodes(sb, "cr", &names)
    });
    result.map_err(|e| {
        let st = op.status().map(|st| {
            format!(
                "phase {}\nelasticsearch {}\nevents {}",
                st["phase"], st["elasticsearch"], st["events"]
            )
        });
        format!(
            "{e}\n--- the operator's /status ---\n{}\n--- operator log (tail) ---\n{}",
            st.unwrap_or_else(|e| e),
            op.logs()
        )
    })
}
