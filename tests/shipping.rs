//! Shipping and retention on a sandbox swarm of its own (manager-1,
//! logger-1, worker-1; worker-2 joins in a trial): the operator's image
//! deployed with manifests/operator.yml, the stand-in as Filebeat and as
//! Elasticsearch (its simulator).
//!
//! - The shipper runs on every node; a node that joins without the
//!   engine's socket where the values say is named with the shipper's
//!   error there, and gets its shipper once the socket is there, with no
//!   action; a change of its config (the values pointing at a file of
//!   the user's, then an edit of that file) rolls it onto the new config on
//!   every node.
//! - The ILM policy and the index template reach Elasticsearch exactly
//!   once across ten resyncs and an operator restart (the simulator's own
//!   write log, kept in its volume, is the witness); a new retention writes
//!   the policy once more and the template not again; a disk at 91% makes
//!   the phase Degraded naming the node; the oldest index and the indices
//!   blocked at the flood stage are shown; a disk back at 50% converges.
//!
//! - With elasticsearch.security: the credential secrets exist, no password
//!   is in any service's spec, /status, the operator's log, `plan` or
//!   `render -o json`; Elasticsearch refuses an unauthenticated request;
//!   Kibana and Logstash (the stand-in reading their kibana.yml and
//!   pipeline, filled in by the engine from the secrets) authenticate;
//!   Kibana's pages redirect to its login; an operator restart makes no
//!   secret and writes nothing to Elasticsearch.
//!   Elasticsearch serves HTTPS only, with the certificate swarmlog issued:
//!   a client that trusts swarmlog's CA (the config's data) and checks the
//!   name gets answers, plain HTTP none; `_ssl/certificates` says the same
//!   end of validity as `/status`; a restart makes no config either.
//! - Switching security on for a running single node (the values' one
//!   explicit step): Elasticsearch restarts once and keeps its data (the
//!   same cluster UUID), Kibana and Logstash are updated and log in.
//! - A certificate renewal (values with a short validity): the HTTP
//!   certificate is issued again when due, Elasticsearch restarts onto it,
//!   Kibana and Logstash (the CA unchanged) run on and log in; back at the
//!   default policy it is renewed once more and then stays.
//!
//! Real Filebeat and Logstash cannot run here (no registry serves their
//! images): tests/shipper_config.rs checks their configuration against
//! Elastic's documented settings.

mod common;

use std::time::{Duration, Instant};

use common::operator::{
    all_in_force, ca_file, call_on, call_on_host, call_tls, certificate_rows, es_writes, operator_container,
    swap_values, Deployed,
};
use common::{run_suite, wait_for, Sandbox, TestFn};
use serde_json::Value;

const SANDBOX: &str = "itship";
const IMAGE: &str = "swarmlog:itship";
const PROXY_NET: &str = "main";

fn main() {
    let tests: Vec<(&'static str, TestFn)> = vec![
        (
            "retention_is_written_once_across_resyncs_and_a_restart_and_the_disk_is_watched",
            retention_and_disk,
        ),
        (
            "the_shipper_runs_on_every_node_a_joining_one_included_and_rolls_on_a_config_change",
            shipper_everywhere,
        ),
        (
            "security_on_every_credential_in_a_secret_kibana_and_logstash_log_in_a_restart_writes_nothing",
            security,
        ),
        (
            "security_switched_on_for_a_running_single_node_restarts_it_once_and_keeps_its_data",
            security_migration,
        ),
        (
            "a_due_certificate_is_issued_again_and_elasticsearch_restarts_onto_it",
            certificate_renewal,
        ),
    ];
    // Host-mode published ports (the operator's) need dockerd's iptables.
    run_suite(SANDBOX, &["--workers", "2", "--iptables"], setup, tests);
}

fn setup(sb: &Sandbox) -> Result<(), String> {
    sb.docker(&["network", "create", "--driver", "overlay", "--attachable", PROXY_NET])?;
    common::operator::build_image(sb, IMAGE)
}

/// Values of stack `stack` (placed by the node label `<stack>=true`), the
/// shipper on, security off (the trials call Elasticsearch's API without
/// credentials; the security trials below have it on), its host paths those of the sandbox's nodes (each node's
/// data root and socket, by the node's hostname: swarm expands the
/// template per node).
fn values(sb: &Sandbox, stack: &str, retention: &str, extra: &str) -> String {
    let root = common::repo().join("target/sandbox").join(&sb.name);
    values_with_sockets(sb, stack, retention, &root, extra)
}

/// The same, the engine sockets looked for in `sockets` (`<host>.sock`).
fn values_with_sockets(sb: &Sandbox, stack: &str, retention: &str, sockets: &std::path::Path, extra: &str) -> String {
    let root = common::repo().join("target/sandbox").join(&sb.name);
    format!(
        "stack: {stack}\n\
         nodeSelector:\n  label: {stack}\n  value: \"true\"\n\
         letsencrypt:\n  enabled: false\n\
         elasticsearch:\n  security: false\n  operatorNetwork: swarmlog_es\n  stopGracePeriod: 5s\n  retention: {retention}\n  \
         preflight:\n    maxMapCount: 0\n\
         shipper:\n  enabled: true\n  \
         containersPath: \"{}/{{{{.Node.Hostname}}}}/data/containers\"\n  \
         dockerSocket: \"{}/{{{{.Node.Hostname}}}}.sock\"\n{extra}",
        root.display(),
        sockets.display()
    )
}

/// One request from a container on the operator's overlay network (the
/// stand-in's client mode): Elasticsearch is reached by name there only.
fn es_call(sb: &Sandbox, method: &str, url: &str, body: &str) -> Result<String, String> {
    sb.docker(&[
        "run",
        "--rm",
        "--network",
        "swarmlog_es",
        "swarmlog/standin:latest",
        "http",
        method,
        url,
        body,
    ])
}

fn explain(e: String, op: &Deployed) -> String {
    let st = op
        .status()
        .map(|st| {
            format!(
                "phase {}\nshipping {}\nelasticsearch {}\nevents {}",
                st["phase"], st["shipping"], st["elasticsearch"], st["events"]
            )
        })
        .unwrap_or_else(|e| e);
    format!(
        "{e}\n--- the operator's /status ---\n{st}\n--- operator log (tail) ---\n{}",
        op.logs()
    )
}

fn count(writes: &[(u64, String, String)], prefix: &str) -> usize {
    writes.iter().filter(|(_, _, w)| w.starts_with(prefix)).count()
}

fn retention_and_disk(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    const STACK: &str = "ret";
    sb.docker(&["node", "update", "--label-add", "ret=true", "logger-1"])?;
    let op = Deployed::deploy(sb, IMAGE, "swarmlog_values_ret1", &values(sb, STACK, "30d", ""))?;
    // The sandbox has no IP virtual server: a service's virtual IP does not
    // route, its tasks' addresses do (`tasks.<service>`). A resync every
    // second, so ten of them take seconds.
    sb.docker(&[
        "service",
        "update",
        "--detach",
        "--env-add",
        "SWARMLOG_ES_URL=http://tasks.ret_elasticsearch:9200",
        "--env-add",
        "SWARMLOG_RESYNC=1s",
        "swarmlog_operator",
    ])?;
    let writes = || es_writes(sb, &["logger-1"], "ret_elasticsearch_index");
    let policy_puts = |w: &[(u64, String, String)]| count(w, "PUT /_ilm/policy/swarmlog-logs");
    let template_puts = |w: &[(u64, String, String)]| count(w, "PUT /_index_template/swarmlog-logs");
    let result = rt.block_on(async {
        let in_force = |want_retention: &'static str| {
            let op = &op;
            async move {
                let st = op.status()?;
                let r = &st["elasticsearch"]["retention"];
                let ok = r["policy_state"] == "in-force"
                    && r["template_state"] == "in-force"
                    && r["retention"] == want_retention
                    && st["phase"] == "Converged";
                if ok {
                    Ok(Some(st))
                } else {
                    Err(format!("phase {}, retention {r}", st["phase"]))
                }
            }
        };
        let t0 = Instant::now();
        let st = wait_for(
            "the policy and template in force, Converged",
            Duration::from_secs(180),
            || in_force("30d"),
        )
        .await?;
        eprintln!(
            "BENCH retention: deploy to policy and template in force in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        let w = writes();
        if (policy_puts(&w), template_puts(&w)) != (1, 1) {
            return Err(format!("expected one PUT each of the policy and the template: {w:#?}"));
        }
        // Ten resyncs: nothing written.
        let from = st["reconcile"]["count"].as_u64().unwrap_or(0);
        let first_start = st["started_at"].clone();
        wait_for("ten more reconciles", Duration::from_secs(60), || async {
            let st = op.status()?;
            let n = st["reconcile"]["count"].as_u64().unwrap_or(0);
            Ok((n >= from + 10).then_some(()))
        })
        .await?;
        // An operator restart: it reads, finds them in force, writes nothing.
        sb.docker(&["service", "update", "--detach", "--force", "swarmlog_operator"])?;
        let restarted = wait_for(
            "the restarted operator, ten reconciles in",
            Duration::from_secs(120),
            || async {
                let st = op.status()?;
                let n = st["reconcile"]["count"].as_u64().unwrap_or(0);
                let r = &st["elasticsearch"]["retention"];
                let new = st["started_at"] != first_start;
                let ok = new && n >= 10 && r["policy_state"] == "in-force" && r["template_state"] == "in-force";
                if ok {
                    Ok(Some(st))
                } else {
                    Err(format!("new instance {new}, reconciles {n}, retention {r}"))
                }
            },
        )
        .await?;
        let w = writes();
        if (policy_puts(&w), template_puts(&w)) != (1, 1) {
            return Err(format!(
                "ten resyncs and a restart wrote again (reconciles after the restart: {}): {w:#?}",
                restarted["reconcile"]["count"]
            ));
        }

        // A new retention: the policy written once more, the template not.
        swap_values(
            sb,
            "swarmlog_values_ret1",
            "swarmlog_values_ret2",
            &values(sb, STACK, "7d", ""),
            &[],
        )?;
        wait_for("the 7d policy in force", Duration::from_secs(120), || in_force("7d")).await?;
        let w = writes();
        if (policy_puts(&w), template_puts(&w)) != (2, 1) {
            return Err(format!(
                "a new retention should write the policy once more and the template not: {w:#?}"
            ));
        }
        let last_policy = w
            .iter()
            .rev()
            .find(|(_, _, x)| x.starts_with("PUT /_ilm/policy/swarmlog-logs"))
            .map(|(_, _, x)| x.clone())
            .unwrap_or_default();
        if !last_policy.contains("\"min_age\":\"7d\"") {
            return Err(format!("the second policy does not delete after 7d: {last_policy}"));
        }

        // The disk at 91%: above the high watermark, Degraded, the node named.
        let es = "http://tasks.ret_elasticsearch:9200";
        es_call(sb, "PUT", &format!("{es}/_standin/disk"), r#"{"percent":91}"#)?;
        wait_for("Degraded, naming logger-1's disk", Duration::from_secs(60), || async {
            let st = op.status()?;
            let named = st["elasticsearch"]["problems"].as_array().is_some_and(|p| {
                p.iter().any(|p| {
                    p.as_str()
                        .is_some_and(|p| p.contains("on logger-1 uses 91% of its disk") && p.contains("high watermark"))
                })
            });
            let level = st["elasticsearch"]["nodes"][0]["disk_level"].clone();
            if st["phase"] == "Degraded" && named && level == "high" {
                Ok(Some(()))
            } else {
                Err(format!("phase {}, elasticsearch {}", st["phase"], st["elasticsearch"]))
            }
        })
        .await?;

        // A data stream (as Logstash's first write makes one): its backing
        // index is the oldest kept.
        es_call(sb, "PUT", &format!("{es}/_data_stream/logs-swarm-default"), "")?;
        wait_for("the oldest index shown", Duration::from_secs(60), || async {
            let st = op.status()?;
            let r = &st["elasticsearch"]["retention"];
            let oldest = r["oldest_index"].as_str().unwrap_or_default();
            let stream = &r["data_streams"][0];
            let ok = oldest.starts_with(".ds-logs-swarm-default-")
                && stream["name"] == "logs-swarm-default"
                && stream["ilm_policy"] == "swarmlog-logs";
            Ok(ok.then_some(())).and_then(|o| o.map(Some).ok_or_else(|| format!("retention {r}")))
        })
        .await?;

        // The flood stage: the index turned read-only is reported.
        es_call(sb, "PUT", &format!("{es}/_standin/disk"), r#"{"percent":96}"#)?;
        wait_for("the read-only index reported", Duration::from_secs(60), || async {
            let st = op.status()?;
            let e = &st["elasticsearch"];
            let ro = e["read_only_indices"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|i| i.as_str().is_some_and(|i| i.starts_with(".ds-logs-swarm-default-")))
            });
            let said = e["problems"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p.as_str().is_some_and(|p| p.contains("read-only"))));
            if ro && said && st["phase"] == "Degraded" {
                Ok(Some(()))
            } else {
                Err(format!("phase {}, elasticsearch {e}", st["phase"]))
            }
        })
        .await?;

        // Room again: the block lifted, Converged, and still no write more.
        es_call(sb, "PUT", &format!("{es}/_standin/disk"), r#"{"percent":50}"#)?;
        wait_for("Converged with the disk at 50%", Duration::from_secs(60), || async {
            let st = op.status()?;
            let e = &st["elasticsearch"];
            let clear = e["read_only_indices"].as_array().is_none_or(|a| a.is_empty());
            if clear && st["phase"] == "Converged" {
                Ok(Some(()))
            } else {
                Err(format!("phase {}, elasticsearch {e}", st["phase"]))
            }
        })
        .await?;
        let w = writes();
        if (policy_puts(&w), template_puts(&w)) != (2, 1) {
            return Err(format!("written again after the disk steps: {w:#?}"));
        }
        Ok::<(), String>(())
    });
    result.map_err(|e| explain(e, &op))
}

/// The shipper's service config, and each running task: (node ID, state,
/// the config it runs with).
type Tasks = (String, Vec<(String, String, String)>);

fn shipper_tasks(sb: &Sandbox, service: &str) -> Result<Tasks, String> {
    let config_of = |spec: &Value| {
        spec["ContainerSpec"]["Configs"][0]["ConfigName"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let text = sb.docker(&["service", "inspect", service])?;
    let svc: Value = serde_json::from_str(&text).map_err(|e| format!("service inspect: {e}"))?;
    let wanted = config_of(&svc[0]["Spec"]["TaskTemplate"]);
    let ids = sb.docker(&["service", "ps", "-q", "--filter", "desired-state=running", service])?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Ok((wanted, Vec::new()));
    }
    let mut args = vec!["inspect", "--type", "task"];
    args.extend(ids);
    let text = sb.docker(&args)?;
    let tasks: Value = serde_json::from_str(&text).map_err(|e| format!("task inspect: {e}"))?;
    let rows = tasks
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    (
                        t["NodeID"].as_str().unwrap_or_default().to_string(),
                        t["Status"]["State"].as_str().unwrap_or_default().to_string(),
                        config_of(&t["Spec"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((wanted, rows))
}

/// Every one of `nodes` nodes runs a shipper task with the service's config,
/// and that config is not `old`: the config's name.
fn rolled(sb: &Sandbox, service: &str, nodes: usize, old: &str) -> Result<Option<String>, String> {
    let (wanted, rows) = shipper_tasks(sb, service)?;
    let mut on: Vec<&String> = rows
        .iter()
        .filter(|(_, state, config)| state == "running" && *config == wanted)
        .map(|(node, _, _)| node)
        .collect();
    on.sort();
    on.dedup();
    if wanted != old && !wanted.is_empty() && on.len() == nodes && rows.len() == nodes {
        Ok(Some(wanted))
    } else {
        Err(format!("service config {wanted:?} (was {old:?}); tasks {rows:?}"))
    }
}

fn config_text(sb: &Sandbox, name: &str) -> Result<String, String> {
    use base64::Engine as _;
    let text = sb.docker(&["config", "inspect", name])?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("config inspect: {e}"))?;
    let data = v[0]["Spec"]["Data"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("config {name}: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("config {name}: {e}"))
}

fn shipper_everywhere(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    const STACK: &str = "shp";
    const SERVICE: &str = "shp_shipper";
    sb.docker(&["node", "update", "--label-add", "shp=true", "logger-1"])?;
    // The stack with the shipper, ejected, is what `docker stack deploy`
    // accepts as it is.
    let dir = common::temp_dir("shipper-eject");
    let values_file = dir.join("values.yaml");
    std::fs::write(&values_file, values(sb, STACK, "30d", "")).map_err(|e| e.to_string())?;
    let out_dir = dir.join("out");
    let out = common::swarmlog_with_host(
        None,
        &[
            "render",
            "--values",
            &values_file.display().to_string(),
            "--output-dir",
            &out_dir.display().to_string(),
        ],
    );
    if !out.status.success() {
        return Err(format!("render --output-dir: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let config = sb.docker(&[
        "stack",
        "config",
        "-c",
        &out_dir.join("docker-stack.yml").display().to_string(),
    ])?;
    if !config.contains("shipper:") || !config.contains("filebeat") {
        return Err(format!("docker stack config lost the shipper:\n{config}"));
    }
    // The engines' sockets as links in a directory of their own, so a node
    // can be left without one (a bind source that does not exist there).
    let root = common::repo().join("target/sandbox").join(&sb.name);
    let sockets = common::temp_dir("shipper-sockets");
    let link = |host: &str| {
        std::os::unix::fs::symlink(root.join(format!("{host}.sock")), sockets.join(format!("{host}.sock")))
            .map_err(|e| format!("link {host}.sock: {e}"))
    };
    for host in ["manager-1", "logger-1", "worker-1"] {
        link(host)?;
    }
    let shp = |extra: &str| values_with_sockets(sb, STACK, "30d", &sockets, extra);
    let op = Deployed::deploy(sb, IMAGE, "swarmlog_values_shp1", &shp(""))?;
    let result = rt.block_on(async {
        let shipping = |nodes: usize| {
            let op = &op;
            async move {
                let st = op.status()?;
                let s = &st["shipping"];
                let ok = s["enabled"] == true
                    && s["service"] == SERVICE
                    && s["nodes"] == nodes
                    && s["running"] == nodes
                    && s["missing"].as_array().is_some_and(|m| m.is_empty());
                Ok(ok.then_some(())).and_then(|o| o.map(Some).ok_or_else(|| format!("shipping {s}")))
            }
        };
        let t0 = Instant::now();
        wait_for("a shipper running on each of 3 nodes", Duration::from_secs(180), || {
            shipping(3)
        })
        .await?;
        eprintln!(
            "BENCH shipper: deploy to a shipper on 3 nodes in /status in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        let first = wait_for(
            "every node's shipper on the chart's config",
            Duration::from_secs(60),
            || async { rolled(sb, SERVICE, 3, "") },
        )
        .await?;
        if !config_text(sb, &first)?.contains("type: filestream") {
            return Err(format!("{first} is not the chart's filebeat.yml"));
        }

        // A node joins without the engine socket where the values say: its
        // shipper fails there, and the status says where and why.
        sb.script("add-worker", &["worker-2"])?;
        wait_for(
            "the shipper's failure on worker-2 named",
            Duration::from_secs(180),
            || async {
                let st = op.status()?;
                let s = &st["shipping"];
                let named = s["problems"].as_array().is_some_and(|p| {
                    p.iter().any(|p| {
                        p.as_str()
                            .is_some_and(|p| p.contains("on worker-2") && p.contains("does not exist"))
                    })
                });
                let missing = s["missing"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|h| h == "worker-2"));
                if named && missing && st["phase"] == "Degraded" {
                    Ok(Some(()))
                } else {
                    Err(format!("phase {}, shipping {s}", st["phase"]))
                }
            },
        )
        .await?;
        // Its socket there: the shipper comes with no action on swarmlog's side.
        let t0 = Instant::now();
        link("worker-2")?;
        wait_for("a shipper on the joined node too", Duration::from_secs(180), || {
            shipping(4)
        })
        .await?;
        eprintln!(
            "BENCH shipper: bind source fixed to a shipper on the new node in /status in {:.1} s",
            t0.elapsed().as_secs_f64()
        );

        // The user's own config file (bind-mounted into the operator), named
        // by the values: every node's shipper rolls onto it.
        let dir = common::temp_dir("shipper-files");
        let file = dir.join("filebeat.yml");
        let chart = std::fs::read_to_string(common::repo().join("charts/logging/files/filebeat.yml"))
            .map_err(|e| format!("the chart's filebeat.yml: {e}"))?;
        let mine = chart.replace("logging.level: info", "logging.level: warning");
        if mine == chart {
            return Err("the chart's filebeat.yml has no `logging.level: info` to change".into());
        }
        std::fs::write(&file, &mine).map_err(|e| format!("{}: {e}", file.display()))?;
        let mount = format!("type=bind,source={},target=/etc/swarmlog/files,readonly", dir.display());
        swap_values(
            sb,
            "swarmlog_values_shp1",
            "swarmlog_values_shp2",
            &shp("  configFile: /etc/swarmlog/files/filebeat.yml\n"),
            &["--mount-add", &mount],
        )?;
        let t0 = Instant::now();
        let second = wait_for(
            "every node's shipper on the user's config",
            Duration::from_secs(180),
            || async { rolled(sb, SERVICE, 4, &first) },
        )
        .await?;
        eprintln!(
            "BENCH shipper: values swapped to 4 shippers rolled in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        if config_text(sb, &second)? != mine {
            return Err(format!("{second} does not hold the user's file"));
        }

        // An edit of that file (written whole, then renamed, as editors do):
        // the operator notices it and rolls the shipper again.
        let edited = mine.replace("logging.level: warning", "logging.level: error");
        let tmp = dir.join(".filebeat.yml.tmp");
        std::fs::write(&tmp, &edited).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &file).map_err(|e| format!("{}: {e}", file.display()))?;
        let t0 = Instant::now();
        let third = wait_for(
            "every node's shipper on the edited file",
            Duration::from_secs(120),
            || async { rolled(sb, SERVICE, 4, &second) },
        )
        .await?;
        eprintln!(
            "BENCH shipper: file edited to 4 shippers rolled in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        if config_text(sb, &third)? != edited {
            return Err(format!("{third} does not hold the edited file"));
        }
        wait_for("4 shippers running in /status", Duration::from_secs(60), || shipping(4)).await?;
        Ok::<(), String>(())
    });
    result.map_err(|e| explain(e, &op))
}

/// The names of the configs of `stack`, sorted.
fn stack_configs(sb: &Sandbox, stack: &str) -> Result<Vec<String>, String> {
    let out = sb.docker(&["config", "ls", "--format", "{{.Name}}"])?;
    let mut l: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with(&format!("{stack}_")))
        .map(str::to_string)
        .collect();
    l.sort();
    Ok(l)
}

/// Elasticsearch over HTTPS: plain HTTP gets no answer, a request without
/// credentials 401, and `_ssl/certificates` (as elastic) names the HTTP
/// certificate with the end of validity `/status` shows.
fn https_only(sb: &Sandbox, stack: &str, elastic: &str, st: &Value) -> Result<(), String> {
    let ca = ca_file(sb, stack)?;
    let host = format!("{stack}_elasticsearch:9200");
    let plain = call_on(sb, "swarmlog_es", "GET", &format!("http://{host}/_cluster/health"));
    if plain.contains("HTTP/1.1") {
        return Err(format!("Elasticsearch answered plain HTTP: {plain}"));
    }
    let anon = call_tls(
        sb,
        "swarmlog_es",
        "GET",
        &format!("https://{host}/_cluster/health"),
        &ca,
    );
    if !anon.contains("401") || !anon.contains("security_exception") {
        return Err(format!("an unauthenticated request over HTTPS was not refused: {anon}"));
    }
    let certs = call_tls(
        sb,
        "swarmlog_es",
        "GET",
        &format!("https://elastic:{elastic}@{host}/_ssl/certificates"),
        &ca,
    );
    let body = certs.lines().skip(1).collect::<Vec<_>>().join("\n");
    let listed: Value = serde_json::from_str(&body).map_err(|e| format!("_ssl/certificates: {e}: {certs}"))?;
    let http = listed
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|c| c["path"].as_str().is_some_and(|p| p.ends_with("http.crt")))
        })
        .ok_or_else(|| format!("_ssl/certificates lists no http.crt: {certs}"))?;
    let rows = certificate_rows(st);
    let status_end = rows
        .iter()
        .find(|r| r.0 == "http")
        .map(|r| r.2.clone())
        .ok_or_else(|| format!("/status has no http certificate: {rows:?}"))?;
    let es_end = http["expiry"].as_str().unwrap_or_default();
    // Elasticsearch says 2027-12-07T07:42:09.000Z; the status 2027-12-07T07:42:09Z.
    if es_end.get(..19) != status_end.get(..19) {
        return Err(format!(
            "Elasticsearch's certificate ends {es_end}, /status says {status_end}"
        ));
    }
    Ok(())
}

fn security(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    sb.docker(&["node", "update", "--label-add", "sec=true", "logger-1"])?;
    let op = Deployed::deploy(sb, IMAGE, "swarmlog_values_sec1", &secure_values("sec", true))?;
    sb.docker(&[
        "service",
        "update",
        "--detach",
        "--env-add",
        "SWARMLOG_RESYNC=1s",
        "swarmlog_operator",
    ])?;
    let secrets = || -> Result<Vec<String>, String> {
        let out = sb.docker(&["secret", "ls", "--format", "{{.ID}} {{.Name}}"])?;
        let mut l: Vec<String> = out
            .lines()
            .filter(|l| l.contains(" sec_"))
            .map(str::to_string)
            .collect();
        l.sort();
        Ok(l)
    };
    let security_writes = || {
        let w = es_writes(sb, &["logger-1"], "sec_elasticsearch_index");
        (
            count(&w, "PUT /_security/user/swarmlog_kibana_1 "),
            count(&w, "PUT /_security/role/swarmlog_logstash_writer"),
            count(&w, "PUT /_security/user/swarmlog_logstash_1 "),
        )
    };
    let result = rt.block_on(async {
        let t0 = Instant::now();
        let in_force = || async {
            let st = op.status()?;
            let sec = &st["elasticsearch"]["security"];
            let users_ok = all_in_force(sec);
            if sec["enabled"] == true && users_ok && st["phase"] == "Converged" {
                Ok(Some(st))
            } else {
                Err(format!("phase {}, security {sec}", st["phase"]))
            }
        };
        let st = wait_for("security in force, Converged", Duration::from_secs(180), in_force).await?;
        eprintln!(
            "BENCH security: deploy to every user in force in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        let made = secrets()?;
        for key in ["elastic_password", "kibana_password", "logstash_password"] {
            if !made.iter().any(|l| l.contains(&format!(" sec_{key}_"))) {
                return Err(format!("no secret sec_{key}_<hash>: {made:?}"));
            }
        }
        if security_writes() != (1, 1, 1) {
            return Err(format!(
                "expected one write each (Kibana's user, the role, Logstash's user): {:?}",
                security_writes()
            ));
        }

        // The passwords, as the README says to get them: from the operator's
        // own container, where the root key is mounted.
        let container = operator_container(sb)?;
        let mut passwords = Vec::new();
        for user in ["elastic", "kibana", "logstash"] {
            let p = sb.docker(&["exec", &container, "/swarmlog", "credentials", "show", user])?;
            let p = p.trim().to_string();
            if p.len() != 43 {
                return Err(format!("credentials show {user}: {p:?}"));
            }
            passwords.push((user, p));
        }
        // Nowhere to be read: service specs, /status, the log, plan, render.
        let ids = sb.docker(&["service", "ls", "-q"])?;
        let mut args = vec!["service", "inspect"];
        args.extend(ids.lines());
        let specs = sb.docker(&args)?;
        let plan = match sb.docker(&["exec", &container, "/swarmlog", "plan"]) {
            Ok(o) | Err(o) => o,
        };
        let render = sb.docker(&["exec", &container, "/swarmlog", "render", "-o", "json"])?;
        if !render.contains("sec_kibana_password_") {
            return Err(format!(
                "render -o json in the operator's container names no credential secret: {render}"
            ));
        }
        let places = [
            ("service specs", specs),
            ("/status", st.to_string()),
            ("the operator's log", op.logs()),
            ("plan", plan),
            ("render -o json", render),
        ];
        for (user, p) in &passwords {
            for (place, text) in &places {
                if text.contains(p.as_str()) {
                    return Err(format!("{user}'s password is in {place}"));
                }
            }
        }

        // HTTPS only, with swarmlog's certificate; nothing without credentials.
        let rows: Vec<(String, String)> = certificate_rows(&st).into_iter().map(|r| (r.0, r.1)).collect();
        if rows
            != [
                ("ca".to_string(), "ok".to_string()),
                ("http".to_string(), "ok".to_string()),
            ]
        {
            return Err(format!("/status's certificates: {rows:?}"));
        }
        let elastic = &passwords[0].1;
        https_only(sb, "sec", elastic, &st)?;
        // The CA as the README says to get it: the swarm's, unchanged.
        let shown = sb.docker(&["exec", &container, "/swarmlog", "credentials", "show", "ca"])?;
        let held = std::fs::read_to_string(ca_file(sb, "sec")?).map_err(|e| e.to_string())?;
        if shown.trim() != held.trim() || !shown.starts_with("-----BEGIN CERTIFICATE-----") {
            return Err(format!(
                "credentials show ca printed {shown:?}, the swarm holds {held:?}"
            ));
        }
        // Kibana and Logstash log in with what the engine filled in.
        answers(
            sb,
            "sec_log_net",
            "Kibana logged in",
            "http://tasks.kibana:5601/api/status",
            &["HTTP/1.1 200", "\"available\"", "\"swarmlog_kibana_1\""],
        )
        .await?;
        answers(
            sb,
            "sec_log_net",
            "Kibana's page behind its login",
            "http://tasks.kibana:5601/app/discover",
            &["HTTP/1.1 302"],
        )
        .await?;
        answers(
            sb,
            "sec_log_net",
            "Logstash logged in",
            "http://tasks.logstash:9600/",
            &["\"green\"", "\"swarmlog_logstash_1\""],
        )
        .await?;

        // An operator restart: no secret or config made, nothing written.
        let before = secrets()?;
        let configs_before = stack_configs(sb, "sec")?;
        let first_start = st["started_at"].clone();
        sb.docker(&["service", "update", "--detach", "--force", "swarmlog_operator"])?;
        wait_for(
            "the restarted operator, ten reconciles in, security in force",
            Duration::from_secs(120),
            || async {
                let st = op.status()?;
                let n = st["reconcile"]["count"].as_u64().unwrap_or(0);
                let new = st["started_at"] != first_start;
                let users = &st["elasticsearch"]["security"]["users"];
                let ok = new && n >= 10 && all_in_force(&st["elasticsearch"]["security"]);
                if ok {
                    Ok(Some(()))
                } else {
                    Err(format!("new instance {new}, reconciles {n}, users {users}"))
                }
            },
        )
        .await?;
        let after = secrets()?;
        if after != before {
            return Err(format!("the restart changed the secrets: {before:?} -> {after:?}"));
        }
        let configs_after = stack_configs(sb, "sec")?;
        if configs_after != configs_before {
            return Err(format!(
                "the restart changed the configs (a certificate issued again?): {configs_before:?} -> {configs_after:?}"
            ));
        }
        if security_writes() != (1, 1, 1) {
            return Err(format!("the restart wrote to Elasticsearch: {:?}", security_writes()));
        }
        rotation(sb, &op).await
    });
    result.map_err(|e| explain(e, &op))
}

/// Values of a secured (or not) single node of stack `stack`.
fn secure_values(stack: &str, security: bool) -> String {
    format!(
        "stack: {stack}\n\
         nodeSelector:\n  label: {stack}\n  value: \"true\"\n\
         letsencrypt:\n  enabled: false\n\
         elasticsearch:\n  security: {security}\n  endpointMode: dnsrr\n  operatorNetwork: swarmlog_es\n  \
         stopGracePeriod: 5s\n  preflight:\n    maxMapCount: 0\n"
    )
}

/// The desired states of a service's tasks, newest first.
fn task_states(sb: &Sandbox, service: &str) -> Result<Vec<String>, String> {
    let out = sb.docker(&["service", "ps", service, "--format", "{{.DesiredState}}"])?;
    Ok(out
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

fn security_migration(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    sb.docker(&["node", "update", "--label-add", "mig=true", "logger-1"])?;
    let op = Deployed::deploy(sb, IMAGE, "swarmlog_values_mig1", &secure_values("mig", false))?;
    let result = rt.block_on(async {
        let st = wait_for(
            "security off, Elasticsearch read, Converged",
            Duration::from_secs(180),
            || async {
                let st = op.status()?;
                let es = &st["elasticsearch"];
                if st["phase"] == "Converged" && es["state"] == "ok" && es["cluster_uuid"].is_string() {
                    Ok(Some(st))
                } else {
                    Err(format!("phase {}, elasticsearch {es}", st["phase"]))
                }
            },
        )
        .await?;
        if st["elasticsearch"]["security"]["enabled"] != false
            || !sb.docker(&["secret", "ls", "-q", "-f", "name=mig_"])?.trim().is_empty()
        {
            return Err(format!(
                "security off made something: {}",
                st["elasticsearch"]["security"]
            ));
        }
        let uuid = st["elasticsearch"]["cluster_uuid"].clone();
        let before = task_states(sb, "mig_elasticsearch")?;
        if before.len() != 1 {
            return Err(format!("Elasticsearch's tasks before the switch: {before:?}"));
        }

        // The one explicit step: the values say security: true.
        let t0 = Instant::now();
        swap_values(
            sb,
            "swarmlog_values_mig1",
            "swarmlog_values_mig2",
            &secure_values("mig", true),
            &[],
        )?;
        let st = wait_for(
            "security on, users in force, Converged",
            Duration::from_secs(240),
            || async {
                let st = op.status()?;
                let sec = &st["elasticsearch"]["security"];
                let users_ok = all_in_force(sec);
                if sec["enabled"] == true
                    && users_ok
                    && st["phase"] == "Converged"
                    && st["elasticsearch"]["state"] == "ok"
                {
                    Ok(Some(st))
                } else {
                    Err(format!(
                        "phase {}, security {sec}, health {}",
                        st["phase"], st["elasticsearch"]["health"]
                    ))
                }
            },
        )
        .await?;
        eprintln!(
            "BENCH security: switched on to every user in force in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        if st["elasticsearch"]["cluster_uuid"] != uuid {
            return Err(format!(
                "Elasticsearch lost its data: cluster UUID {uuid} became {}",
                st["elasticsearch"]["cluster_uuid"]
            ));
        }
        let after = task_states(sb, "mig_elasticsearch")?;
        if after.iter().filter(|s| s.as_str() == "Running").count() != 1 || after.len() != 2 {
            return Err(format!("Elasticsearch should have restarted once: its tasks {after:?}"));
        }
        for svc in ["mig_kibana", "mig_logstash"] {
            let t = task_states(sb, svc)?;
            if t.len() < 2 {
                return Err(format!("{svc} was not updated: its tasks {t:?}"));
            }
        }
        // Kibana and Logstash roll start-first: asked until the new task answers.
        answers(
            sb,
            "mig_log_net",
            "Kibana logged in",
            "http://tasks.kibana:5601/api/status",
            &["\"available\"", "\"swarmlog_kibana_1\""],
        )
        .await?;
        answers(
            sb,
            "mig_log_net",
            "Logstash logged in",
            "http://tasks.logstash:9600/",
            &["\"green\"", "\"swarmlog_logstash_1\""],
        )
        .await?;
        let ca = ca_file(sb, "mig")?;
        let anon = call_tls(
            sb,
            "swarmlog_es",
            "GET",
            "https://mig_elasticsearch:9200/_cluster/health",
            &ca,
        );
        if !anon.contains("401") {
            return Err(format!("an unauthenticated request was not refused: {anon}"));
        }
        Ok(())
    });
    result.map_err(|e| explain(e, &op))
}

/// The HTTP certificate config of `stack` (one expected).
fn http_cert(sb: &Sandbox, stack: &str) -> Result<String, String> {
    let all = stack_configs(sb, stack)?;
    let found: Vec<&String> = all
        .iter()
        .filter(|n| n.starts_with(&format!("{stack}_es_http_crt_")))
        .collect();
    match found[..] {
        [one] => Ok(one.clone()),
        _ => Err(format!("expected one HTTP certificate config: {all:?}")),
    }
}

fn certificate_renewal(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    sb.docker(&["node", "update", "--label-add", "ren=true", "logger-1"])?;
    // Valid for 4 minutes, renewed 3 minutes before: due a minute after it
    // is issued.
    let short = format!(
        "{}  tls:\n    certValidity: 4m\n    certRotateBefore: 3m\n",
        secure_values("ren", true)
    );
    let op = Deployed::deploy(sb, IMAGE, "swarmlog_values_ren1", &short)?;
    // A resync every 10 s: the renewal is not left to the 5-minute default.
    sb.docker(&[
        "service",
        "update",
        "--detach",
        "--env-add",
        "SWARMLOG_RESYNC=10s",
        "swarmlog_operator",
    ])?;
    let result = rt.block_on(async {
        wait_for(
            "the first certificate in use, Converged",
            Duration::from_secs(240),
            || async {
                let st = op.status()?;
                let sec = &st["elasticsearch"]["security"];
                let rows = certificate_rows(&st);
                let ok = all_in_force(sec)
                    && st["phase"] == "Converged"
                    && st["elasticsearch"]["state"] == "ok"
                    && rows.len() == 2
                    && rows.iter().all(|r| r.1 == "ok");
                if ok {
                    Ok(Some(()))
                } else {
                    Err(format!(
                        "phase {}, certificates {rows:?}, users {}",
                        st["phase"], sec["users"]
                    ))
                }
            },
        )
        .await?;
        let first = http_cert(sb, "ren")?;
        let es_before = task_states(sb, "ren_elasticsearch")?;
        let kibana_before = task_states(sb, "ren_kibana")?;
        let logstash_before = task_states(sb, "ren_logstash")?;
        // Due a minute after its issue: a resync then issues the next one,
        // and swarm updates Elasticsearch onto it.
        let t0 = Instant::now();
        let second = wait_for("the next HTTP certificate", Duration::from_secs(420), || async {
            let now = http_cert(sb, "ren");
            match now {
                Ok(n) if n != first => Ok(Some(n)),
                Ok(n) => Err(format!("still {n}")),
                Err(e) => Err(e),
            }
        })
        .await?;
        eprintln!(
            "BENCH tls: the HTTP certificate renewed {:.1} s after the test saw it in use (due 60 s after its issue)",
            t0.elapsed().as_secs_f64()
        );
        // Back to the default policy: the short-lived certificate is due
        // under it, so it is renewed once more, for a year, and stays.
        swap_values(
            sb,
            "swarmlog_values_ren1",
            "swarmlog_values_ren2",
            &secure_values("ren", true),
            &[],
        )?;
        let st = wait_for("a certificate for a year", Duration::from_secs(300), || async {
            let st = op.status()?;
            let rows = certificate_rows(&st);
            let http = rows.iter().find(|r| r.0 == "http").cloned().unwrap_or_default();
            let year = humantime::parse_rfc3339(&http.2)
                .ok()
                .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
                .is_some_and(|left| left > Duration::from_secs(300 * 24 * 3600));
            let done = year
                && http.1 == "ok"
                && st["phase"] == "Converged"
                && st["elasticsearch"]["state"] == "ok"
                && all_in_force(&st["elasticsearch"]["security"]);
            if done {
                Ok(Some(st))
            } else {
                Err(format!("phase {}, certificates {rows:?}", st["phase"]))
            }
        })
        .await?;
        let last = http_cert(sb, "ren")?;
        // Every renewal restarted Elasticsearch (stop-first, one task at a
        // time); Kibana and Logstash trust the same CA and ran on.
        let es_after = task_states(sb, "ren_elasticsearch")?;
        if es_after.len() <= es_before.len() || es_after.iter().filter(|s| *s == "Running").count() != 1 {
            return Err(format!("Elasticsearch's tasks {es_before:?} -> {es_after:?}"));
        }
        for (svc, before) in [("ren_kibana", &kibana_before), ("ren_logstash", &logstash_before)] {
            let after = task_states(sb, svc)?;
            if &after != before {
                return Err(format!(
                    "{svc} restarted for a certificate renewal: {before:?} -> {after:?}"
                ));
            }
        }
        for (what, url, user) in [
            ("Kibana", "http://tasks.kibana:5601/api/status", "swarmlog_kibana_1"),
            ("Logstash", "http://tasks.logstash:9600/", "swarmlog_logstash_1"),
        ] {
            answers(
                sb,
                "ren_log_net",
                &format!("{what} logged in over TLS"),
                url,
                &[&format!("\"{user}\"")],
            )
            .await?;
        }
        // The older certificates' configs are gone; it stays after ten resyncs.
        let configs = stack_configs(sb, "ren")?;
        for old in [&first, &second].into_iter().filter(|o| **o != last) {
            if configs.contains(old) {
                return Err(format!("the earlier certificate {old} is left: {configs:?}"));
            }
        }
        let count = st["reconcile"]["count"].as_u64().unwrap_or(0);
        sb.docker(&[
            "service",
            "update",
            "--detach",
            "--env-add",
            "SWARMLOG_RESYNC=1s",
            "swarmlog_operator",
        ])?;
        wait_for(
            "ten reconciles of the restarted operator",
            Duration::from_secs(120),
            || async {
                let st = op.status()?;
                let n = st["reconcile"]["count"].as_u64().unwrap_or(0);
                if n >= 10 && st["phase"] == "Converged" {
                    Ok(Some(()))
                } else {
                    Err(format!(
                        "reconciles {n} (before the restart {count}), phase {}",
                        st["phase"]
                    ))
                }
            },
        )
        .await?;
        let still = http_cert(sb, "ren")?;
        if still != last {
            return Err(format!("the certificate changed again: {last} -> {still}"));
        }
        let elastic = sb.docker(&[
            "exec",
            &operator_container(sb)?,
            "/swarmlog",
            "credentials",
            "show",
            "elastic",
        ])?;
        https_only(sb, "ren", elastic.trim(), &op.status()?)
    });
    result.map_err(|e| explain(e, &op))
}

/// `swarmlog credentials rotate` of Kibana's and Logstash's credentials,
/// then of elastic's, on the secured stack `sec`. Kibana and Logstash are
/// asked all along whether Elasticsearch takes their credentials: not one
/// refusal. The earlier users and secrets go once nothing runs with them;
/// Elasticsearch is not restarted.
async fn rotation(sb: &Sandbox, op: &Deployed<'_>) -> Result<(), String> {
    let rotate = |what: &str| {
        let out = common::swarmlog_with_host(Some(&sb.host), &["credentials", "rotate", what, "--stack", "sec"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "credentials rotate {what}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let es_tasks = task_states(sb, "sec_elasticsearch")?;
    // Kibana and Logstash asked, each in a loop of its own, all along.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // One thread, asking each in turn: two clients attaching to one overlay
    // at once race in the engine (and can leave an attachment behind).
    let targets = [
        ("Kibana", "http://tasks.kibana:5601/api/status", "\"available\""),
        ("Logstash", "http://tasks.logstash:9600/", "\"green\""),
    ];
    let poller = {
        let (stop, host) = (stop.clone(), sb.host.clone());
        std::thread::spawn(move || {
            let mut tally: Vec<(&str, u32, u32, Vec<String>)> =
                targets.iter().map(|(w, _, _)| (*w, 0, 0, Vec::new())).collect();
            // Bounded: stopped by the flag, or after 600 asks.
            let mut asked = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && asked < 600 {
                for (i, (_, url, ok)) in targets.iter().enumerate() {
                    let answer = call_on_host(&host, "sec_log_net", "GET", url);
                    asked += 1;
                    let t = &mut tally[i];
                    if answer.contains("HTTP/1.1 200") && answer.contains(ok) {
                        t.1 += 1;
                    } else if answer.contains("HTTP/1.1 503") || answer.contains("\"red\"") {
                        // Elasticsearch refused the credentials Kibana or
                        // Logstash holds.
                        t.3.push(answer);
                    } else {
                        // No answer from Kibana or Logstash at all: the task
                        // asked had just stopped (start-first: the new one
                        // runs), or the engine could not attach the client
                        // to the network; nothing reached Elasticsearch.
                        t.2 += 1;
                    }
                }
            }
            tally
        })
    };
    let t0 = Instant::now();
    let rotated = rotate_and_wait(sb, op, &rotate).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut report = Vec::new();
    let tally = poller.join().map_err(|_| "the poller panicked".to_string())?;
    for (what, good, unreached, refused) in tally {
        if let Some(r) = refused.first() {
            return Err(format!(
                "{what} was refused {} times during the rotation: {r}",
                refused.len()
            ));
        }
        if good < 3 {
            return Err(format!(
                "{what} answered only {good} times during the rotation ({unreached} not reached): too few to tell"
            ));
        }
        report.push(format!(
            "{what} logged in {good} times, refused none ({unreached} not reached)"
        ));
    }
    rotated?;
    eprintln!(
        "BENCH security: kibana and logstash rotated in {:.1} s; {}",
        t0.elapsed().as_secs_f64(),
        report.join("; ")
    );
    finish_rotation(sb, op, &rotate, es_tasks).await
}

/// Asks for Kibana's and Logstash's next credentials, waits until their new
/// users are in force and Kibana runs one task.
async fn rotate_and_wait(
    sb: &Sandbox,
    op: &Deployed<'_>,
    rotate: &dyn Fn(&str) -> Result<(), String>,
) -> Result<(), String> {
    // The pollers have asked at least once before anything moves.
    tokio::time::sleep(Duration::from_secs(3)).await;
    rotate("kibana")?;
    rotate("logstash")?;
    let done = |st: &Value| {
        let sec = &st["elasticsearch"]["security"];
        let names: Vec<&str> = sec["users"]
            .as_array()
            .map(|u| u.iter().filter_map(|u| u["name"].as_str()).collect())
            .unwrap_or_default();
        all_in_force(sec)
            && names.contains(&"swarmlog_kibana_2")
            && names.contains(&"swarmlog_logstash_2")
            && st["phase"] == "Converged"
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let st = op.status()?;
        let kibana_moved = task_states(sb, "sec_kibana")?
            .iter()
            .filter(|s| *s == "Running")
            .count()
            == 1;
        if done(&st) && kibana_moved {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the rotation did not finish in 240 s: security {}",
                st["elasticsearch"]["security"]
            ));
        }
    }
    // Asked a few more times after the roll (the old tasks are gone).
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

/// After the roll: the earlier users and secrets go; Kibana and Logstash log
/// in as the new users; then elastic's rotation.
async fn finish_rotation(
    sb: &Sandbox,
    op: &Deployed<'_>,
    rotate: &dyn Fn(&str) -> Result<(), String>,
    es_tasks: Vec<String>,
) -> Result<(), String> {
    // Once nothing runs with them: the earlier users and secrets are gone.
    wait_for(
        "the earlier users removed, their secrets too",
        Duration::from_secs(60),
        || async {
            let w = es_writes(sb, &["logger-1"], "sec_elasticsearch_index");
            let removed = count(&w, "DELETE /_security/user/swarmlog_kibana_1 ") == 1
                && count(&w, "DELETE /_security/user/swarmlog_logstash_1 ") == 1;
            let names = sb.docker(&["secret", "ls", "--format", "{{.Name}} {{.Labels}}"])?;
            let old = names
                .lines()
                .filter(|l| l.starts_with("sec_kibana_password_") || l.starts_with("sec_logstash_password_"))
                .filter(|l| l.contains("io.swarmlog.generation=1"))
                .count();
            if removed && old == 0 {
                Ok(Some(()))
            } else {
                Err(format!("removed users {removed}, earlier secrets left {old}"))
            }
        },
    )
    .await?;
    for (what, url, user) in [
        ("Kibana", "http://tasks.kibana:5601/api/status", "swarmlog_kibana_2"),
        ("Logstash", "http://tasks.logstash:9600/", "swarmlog_logstash_2"),
    ] {
        answers(
            sb,
            "sec_log_net",
            &format!("{what} logged in as {user}"),
            url,
            &[&format!("\"{user}\"")],
        )
        .await?;
    }

    // elastic: a new password through the API; Elasticsearch runs on.
    let container = operator_container(sb)?;
    let old_elastic = sb.docker(&["exec", &container, "/swarmlog", "credentials", "show", "elastic"])?;
    rotate("elastic")?;
    wait_for("elastic at generation 2", Duration::from_secs(120), || async {
        let st = op.status()?;
        let sec = &st["elasticsearch"]["security"];
        let e = sec["users"]
            .as_array()
            .and_then(|u| u.iter().find(|u| u["name"] == "elastic"))
            .cloned()
            .unwrap_or_default();
        if all_in_force(sec) && e["detail"] == "generation 2" && st["phase"] == "Converged" {
            Ok(Some(()))
        } else {
            Err(format!("elastic {e}"))
        }
    })
    .await?;
    let new_elastic = sb.docker(&["exec", &container, "/swarmlog", "credentials", "show", "elastic"])?;
    if new_elastic.trim() == old_elastic.trim() || new_elastic.trim().len() != 43 {
        return Err("credentials show elastic did not change with the rotation".into());
    }
    let w = es_writes(sb, &["logger-1"], "sec_elasticsearch_index");
    if count(&w, "POST /_security/user/elastic/_password") != 1 {
        return Err(format!("elastic's password should be set once: {w:#?}"));
    }
    let es_after = task_states(sb, "sec_elasticsearch")?;
    if es_after != es_tasks {
        return Err(format!(
            "Elasticsearch restarted for a rotation: {es_tasks:?} -> {es_after:?}"
        ));
    }
    Ok(())
}

/// Asks `url` from a container on `network` until the answer holds every
/// string of `want` (a client the engine could not attach, or a task of a
/// rolling service that just stopped, is asked again), for up to 60 s.
async fn answers(sb: &Sandbox, network: &str, what: &str, url: &str, want: &[&str]) -> Result<String, String> {
    wait_for(what, Duration::from_secs(60), || async {
        let answer = call_on(sb, network, "GET", url);
        if want.iter().all(|w| answer.contains(w)) {
            Ok(Some(answer))
        } else {
            Err(answer)
        }
    })
    .await
}
