//! Promises of the README that had no test: the exit codes of engine
//! errors, each phase of `/status` from a real run, the safety flags and
//! preconditions against the real engine, finding or creating the
//! companion, and SIGTERM during a running reconcile. Engine faults are
//! injected by the tests' engine proxy (tests/common/proxy.rs) in front of
//! the sandbox's real engine.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::common::proxy::{describe, Call, EngineProxy, Fault, Rule};
use crate::common::{self, wait_for, Operator, Sandbox};
use crate::reconcile::proxy_of;

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn expect(o: &Output, code: i32, what: &str, says: &str) -> Result<(), String> {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if o.status.code() != Some(code) || !all.contains(says) {
        return Err(format!("{what}: expected exit {code} saying {says:?}, got {}", text(o)));
    }
    if all.contains("panicked") {
        return Err(format!("{what}: panicked: {}", text(o)));
    }
    Ok(())
}

fn rule(method: &str, prefix: &str, fault: Fault) -> Rule {
    Rule {
        method: Some(method.to_string()),
        path_prefix: prefix.to_string(),
        fault,
        times: None,
    }
}

/// Exit codes 4 (permission denied), 5 (API too old), 8 (no quorum) and 9
/// (another engine error) of plan, and 3 of `swarmlog status` without an
/// operator. 4 is real (a user without access to the socket); 5, 8 and 9
/// are the engine's answers injected by the proxy, with the engine's own
/// wording for 8.
pub fn exit_codes_of_engine_errors(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let sock = sb.host.trim_start_matches("unix://").to_string();
    let o = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            env!("CARGO_BIN_EXE_swarmlog"),
            "plan",
            // What is checked is the engine's refusal: no root key to read.
            "--set",
            "elasticsearch.security=false",
        ])
        .env("DOCKER_HOST", &sb.host)
        .current_dir(common::repo())
        .output()
        .map_err(|e| format!("setpriv: {e}"))?;
    expect(&o, 4, &format!("plan as nobody against {sock}"), "permission")?;

    let engine = proxy_of(sb, rt, "itexit")?;
    let plan = || common::swarmlog_with_host(Some(&engine.host()), &["plan", "--stack", "itexit"]);
    engine.inject(rule(
        "GET",
        "/version",
        Fault::Json(
            200,
            r#"{"Version":"1.13.1","ApiVersion":"1.26","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}"#.into(),
        ),
    ));
    expect(&plan(), 5, "plan against an engine of API 1.26", "1.26")?;
    engine.clear_faults();

    engine.inject(rule(
        "GET",
        "/nodes",
        Fault::Error(
            503,
            "rpc error: code = Unknown desc = The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.".into(),
        ),
    ));
    expect(&plan(), 8, "plan against a swarm without quorum", "quorum")?;
    engine.clear_faults();

    engine.inject(rule(
        "GET",
        "/services",
        Fault::Error(500, "rpc error: code = Internal desc = injected by the test".into()),
    ));
    let o = plan();
    expect(&o, 9, "plan meeting another engine error", "injected by the test")?;
    if String::from_utf8_lossy(&o.stderr).lines().count() > 2 {
        return Err(format!("more than one sentence for an engine error: {}", text(&o)));
    }
    engine.clear_faults();
    expect(&plan(), 2, "plan once the engine answers again", "to create")?;

    // Nothing listens on loopback port 1.
    let o = common::swarmlog_with_host(None, &["status", "--url", "http://127.0.0.1:1"]);
    if o.status.code() != Some(3) {
        return Err(format!("swarmlog status without an operator: {}", text(&o)));
    }
    Ok(())
}

/// `swarmlog status --url` of an operator: its exit code and phase.
fn status_cli(op: &Operator) -> Result<(Option<i32>, String), String> {
    let o = common::swarmlog_with_host(None, &["status", "--url", &format!("http://{}", op.addr()?)]);
    Ok((o.status.code(), String::from_utf8_lossy(&o.stdout).to_string()))
}

async fn phase(op: &Operator, want: &str, timeout: Duration) -> Result<Json, String> {
    wait_for(&format!("phase {want}"), timeout, || async {
        let st = op.status()?;
        if st["phase"] == want {
            Ok(Some(st))
        } else {
            Err(format!(
                "phase {}, engine {}, invalid {}, blocked {}",
                st["phase"], st["engine"], st["invalid"], st["blocked"]
            ))
        }
    })
    .await
}

/// Each phase from a real run: Pending (the engine does not answer yet),
/// Converged, EngineUnavailable (the engine answers errors), Degraded (an
/// update paused on a task that cannot start), Invalid (values broken);
/// `swarmlog status` exits 0 only when Converged.
pub fn run_reports_each_phase(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itphase";
    let dir = common::temp_dir(stack);
    let values = dir.join("values.yaml");
    let v = values.display().to_string();
    std::fs::write(&values, "kibana:\n  domain: a.example.org\n").map_err(|e| e.to_string())?;
    let args = [
        "--stack",
        stack,
        "--resync",
        "10m",
        "--values",
        &v,
        "--watch-interval",
        "200ms",
        "--allow-unauthenticated-reconcile",
    ];
    let upstream = sb.host.trim_start_matches("unix://").to_string();
    let engine = EngineProxy::start(rt, std::path::Path::new(&upstream), &dir.join("engine.sock"))?;
    // Nothing from the engine yet: Pending, and not ready.
    engine.freeze(true);
    let op = Operator::start_on(&engine.host(), stack, &args)?;
    let st = op.status()?;
    let (ready, _) = op.get("/readyz")?;
    if st["phase"] != "Pending" || ready == 200 {
        return Err(format!(
            "before the engine answered: phase {}, /readyz {ready}",
            st["phase"]
        ));
    }
    engine.freeze(false);
    rt.block_on(async {
        phase(&op, "Converged", Duration::from_secs(90)).await?;
        let (code, out) = status_cli(&op)?;
        if code != Some(0) {
            return Err(format!("swarmlog status of a converged stack exited {code:?}: {out}"));
        }
        // The engine answers errors: EngineUnavailable with the reason.
        engine.inject(rule(
            "GET",
            "/services",
            Fault::Error(500, "rpc error: code = Internal desc = injected by the test".into()),
        ));
        op.reconcile_now()?;
        let st = phase(&op, "EngineUnavailable", Duration::from_secs(30)).await?;
        if !st["engine"]["last_error"].to_string().contains("injected by the test") {
            return Err(format!("the engine's error is not shown: {}", st["engine"]));
        }
        let (code, _) = status_cli(&op)?;
        if code != Some(1) {
            return Err(format!("swarmlog status while the engine fails exited {code:?}"));
        }
        engine.clear_faults();
        op.reconcile_now()?;
        phase(&op, "Converged", Duration::from_secs(60)).await?;
        // Kibana's new image cannot start anywhere. Its start-first update
        // keeps the old task running: Progressing while the engine updates,
        // then Degraded once it pauses the update on the failed task, with
        // the engine's message (never Converged on the old task).
        std::fs::write(
            &values,
            "kibana:\n  domain: a.example.org\n  image: swarmlog/absent:1\n",
        )
        .map_err(|e| e.to_string())?;
        let mut seen = Vec::new();
        let st = wait_for("Kibana's update paused, Degraded", Duration::from_secs(90), || {
            let st = op.status();
            if let Ok(st) = &st {
                let p = st["phase"].as_str().unwrap_or_default().to_string();
                if seen.last() != Some(&p) {
                    seen.push(p);
                }
            }
            async move {
                let st = st?;
                let paused = st["paused_updates"].to_string();
                if st["phase"] == "Degraded" && paused.contains("itphase_kibana") {
                    Ok(Some(st))
                } else {
                    Err(format!("phase {}, paused_updates {paused}", st["phase"]))
                }
            }
        })
        .await?;
        // From the edit on: Converged (before the edit is read), then
        // Progressing and/or Degraded, and never Converged again.
        let after_edit: Vec<&String> = seen.iter().skip_while(|p| *p == "Converged").collect();
        if after_edit.iter().any(|p| *p == "Converged") {
            return Err(format!("the phase went back to Converged on the old task: {seen:?}"));
        }
        eprintln!("phases after the image edit: {seen:?}; {}", st["paused_updates"]);
        let (code, out) = status_cli(&op)?;
        if code != Some(1) || !out.contains("Degraded") {
            return Err(format!("swarmlog status while Degraded exited {code:?}: {out}"));
        }
        // Broken values: Invalid, naming the file.
        std::fs::write(&values, "kibana:\n  domian: b.example.org\n").map_err(|e| e.to_string())?;
        let st = phase(&op, "Invalid", Duration::from_secs(30)).await?;
        if !st["invalid"].to_string().contains("domian") {
            return Err(format!("the invalid values are not explained: {}", st["invalid"]));
        }
        std::fs::write(&values, "kibana:\n  domain: a.example.org\n").map_err(|e| e.to_string())?;
        phase(&op, "Converged", Duration::from_secs(90)).await?;
        Ok(())
    })
}

/// SIGTERM while a reconcile is in the middle of a write: the operator
/// lets it finish within --shutdown-timeout (the write completes, exit 0),
/// and stops it at the deadline when it does not finish (exit 0, long
/// before the 120 s engine timeout would end the write).
pub fn sigterm_during_a_reconcile_honours_shutdown_timeout(
    sb: &Sandbox,
    rt: &tokio::runtime::Runtime,
) -> Result<(), String> {
    let stack = "itterm";
    let kibana = format!("{stack}_kibana");
    let o = sb.swarmlog(&["apply", "--stack", stack]);
    if !o.status.success() {
        return Err(format!("apply: {}", text(&o)));
    }
    for (timeout, release) in [("30s", true), ("1s", false)] {
        let name = format!("{stack}-{}", if release { "finish" } else { "deadline" });
        let mut op = Operator::start_counted(
            rt,
            &sb.host,
            &name,
            &[
                "--stack",
                stack,
                "--resync",
                "10m",
                "--shutdown-timeout",
                timeout,
                "--engine-timeout",
                "120s",
            ],
        )?;
        // Kept apart (it outlives nothing: dropped after the operator).
        let engine = op.proxy.take().ok_or("no engine proxy")?;
        rt.block_on(wait_for(
            "the operator's first reconcile",
            Duration::from_secs(60),
            || async {
                let st = op.status()?;
                if st["reconcile"]["count"].as_u64().unwrap_or(0) > 0 {
                    Ok(Some(()))
                } else {
                    Err(format!("reconcile {}", st["reconcile"]))
                }
            },
        ))?;
        engine.inject(Rule {
            method: Some("POST".into()),
            path_prefix: "/services/".into(),
            fault: Fault::Hold,
            times: Some(1),
        });
        sb.docker(&[
            "service",
            "update",
            "-d",
            "--no-resolve-image",
            "--env-add",
            &format!("TERM_{timeout}=1"),
            &kibana,
        ])?;
        rt.block_on(wait_for(
            "the repair's write held at the engine",
            Duration::from_secs(30),
            || async {
                let held: Vec<Call> = engine.pending().into_iter().filter(Call::is_write).collect();
                if held.is_empty() {
                    Err(format!(
                        "writes so far: {}",
                        describe(&engine.calls().into_iter().filter(Call::is_write).collect::<Vec<_>>())
                    ))
                } else {
                    Ok(Some(()))
                }
            },
        ))?;
        let pid = op.pid().ok_or("no pid")?.to_string();
        let t0 = Instant::now();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| e.to_string())?;
        rt.block_on(wait_for(
            "the operator to log SIGTERM",
            Duration::from_secs(10),
            || async { Ok(op.log_text().contains("SIGTERM").then_some(())) },
        ))?;
        if release {
            engine.open_gate();
        }
        let code = loop {
            if let Some(code) = op.try_exit()? {
                break code;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "still running 60 s after SIGTERM (timeout {timeout}):\n{}",
                    op.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let took = t0.elapsed();
        let log = op.log_text();
        let write_done = engine
            .calls()
            .iter()
            .any(|c| c.is_write() && c.path.ends_with("/update") && c.status == Some(200));
        let cut = log.contains("shutdown deadline passed during a reconcile");
        if code != Some(0) {
            return Err(format!("exit {code:?} after SIGTERM (timeout {timeout}):\n{log}"));
        }
        if release && (!write_done || cut) {
            return Err(format!(
                "with --shutdown-timeout 30s the running reconcile did not finish its write (done {write_done}, cut {cut}):\n{log}"
            ));
        }
        if !release && (write_done || !cut || took > Duration::from_secs(30)) {
            return Err(format!(
                "with --shutdown-timeout 1s and a write that never ends: exited after {took:?}, write done {write_done}, deadline logged {cut}:\n{log}"
            ));
        }
        eprintln!("SIGTERM with --shutdown-timeout {timeout}: exited after {took:?}, write done {write_done}");
        drop(op);
        drop(engine);
    }
    Ok(())
}

/// --adopt, --allow-move and missing external configs and secrets, against
/// the engine.
pub fn safety_flags_and_preconditions(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    // --adopt: a service of the desired name that swarmlog does not own.
    let stack = "itadopt";
    sb.docker(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        "itadopt_kibana",
        "swarmlog/standin:latest",
    ])?;
    expect(
        &sb.swarmlog(&["apply", "--stack", stack]),
        1,
        "apply over an unowned service",
        "pass --adopt",
    )?;
    let o = sb.swarmlog(&["apply", "--stack", stack, "--adopt"]);
    expect(&o, 0, "apply --adopt", "")?;
    expect(&sb.swarmlog(&["plan", "--stack", stack]), 0, "plan after adopting", "")?;
    let owner = sb.docker(&[
        "service",
        "inspect",
        "--format",
        "{{index .Spec.Labels \"io.swarmlog.stack\"}}",
        "itadopt_kibana",
    ])?;
    if owner.trim() != stack {
        return Err(format!("the adopted service is not owned: label {owner:?}"));
    }

    // --allow-move: Elasticsearch's node-local volume stays where it is
    // unless allowed.
    let stack = "itmove";
    let o = sb.swarmlog(&["apply", "--stack", stack, "--wait", "--wait-timeout", "120s"]);
    expect(&o, 0, "apply", "")?;
    sb.docker(&["node", "update", "--label-add", "movehere=true", "worker-1"])?;
    let es = format!("{stack}_elasticsearch");
    let version = || sb.docker(&["service", "inspect", "--format", "{{.Version.Index}}", &es]);
    let before = version()?;
    let moved = ["--stack", stack, "--set", "nodeSelector.label=movehere"];
    let mut args = vec!["apply"];
    args.extend_from_slice(&moved);
    expect(
        &sb.swarmlog(&args),
        1,
        "apply moving Elasticsearch",
        "pass --allow-move",
    )?;
    if version()? != before {
        return Err("a refused move changed Elasticsearch".into());
    }
    args.push("--allow-move");
    expect(&sb.swarmlog(&args), 0, "apply --allow-move", "")?;
    let constraints = sb.docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.TaskTemplate.Placement.Constraints}}",
        &es,
    ])?;
    if !constraints.contains("movehere") {
        return Err(format!("--allow-move did not move Elasticsearch: {constraints}"));
    }

    // External config and secret that do not exist: named by plan, refused
    // by apply before any write; there: applied.
    let stack = "itext";
    let dir = common::temp_dir(stack);
    let file = dir.join("stack.yml");
    std::fs::write(
        &file,
        "services:\n  web:\n    image: swarmlog/standin:latest\n    configs: [cfg]\n    secrets: [sec]\nconfigs:\n  cfg:\n    external: true\n    name: itext_cfg\nsecrets:\n  sec:\n    external: true\n    name: itext_sec\n",
    )
    .map_err(|e| e.to_string())?;
    let chart = file.display().to_string();
    let engine = proxy_of(sb, rt, stack)?;
    let o = common::swarmlog_with_host(Some(&engine.host()), &["plan", "--stack", stack, "--chart", &chart]);
    expect(
        &o,
        1,
        "plan with a missing external config",
        "external config itext_cfg does not exist",
    )?;
    expect(
        &o,
        1,
        "plan with a missing external secret",
        "external secret itext_sec does not exist",
    )?;
    let o = common::swarmlog_with_host(Some(&engine.host()), &["apply", "--stack", stack, "--chart", &chart]);
    expect(&o, 1, "apply with missing external objects", "does not exist")?;
    let w: Vec<Call> = engine.calls().into_iter().filter(Call::is_write).collect();
    if !w.is_empty() {
        return Err(format!("a refused apply wrote:\n{}", describe(&w)));
    }
    let data = dir.join("data");
    std::fs::write(&data, "x").map_err(|e| e.to_string())?;
    sb.docker(&["config", "create", "itext_cfg", &data.display().to_string()])?;
    sb.docker(&["secret", "create", "itext_sec", &data.display().to_string()])?;
    let o = common::swarmlog_with_host(Some(&engine.host()), &["apply", "--stack", stack, "--chart", &chart]);
    expect(&o, 0, "apply once they exist", "")?;
    Ok(())
}

fn env_of(sb: &Sandbox, service: &str) -> Result<String, String> {
    sb.docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
        service,
    ])
}

/// The companion is found by the label of this stack, else by its image
/// (exactly one), and created with `letsencrypt.create`.
pub fn companion_found_by_label_or_image_or_created(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let le = |name: &str, labels: &[&str]| -> Result<(), String> {
        let mut args = vec![
            "service",
            "create",
            "-d",
            "--no-resolve-image",
            "--replicas",
            "0",
            "--name",
            name,
        ];
        for l in labels {
            args.extend(["--label", l]);
        }
        args.extend(["-e", "DOMAIN_1=('example.com')", "hamburml/docker-flow-letsencrypt:v1"]);
        sb.docker(&args).map(|_| ())
    };
    let run = |stack: &str, extra: &str| -> Result<Operator, String> {
        let dir = common::temp_dir(stack);
        let values = dir.join("values.yaml");
        std::fs::write(
            &values,
            format!("kibana:\n  domain: {stack}.example.org\nletsencrypt:\n  settle: 200ms\n{extra}"),
        )
        .map_err(|e| e.to_string())?;
        Operator::start(
            sb,
            stack,
            &[
                "--stack",
                stack,
                "--resync",
                "10m",
                "--values",
                &values.display().to_string(),
            ],
        )
    };
    let serves = |op: &Operator, service: &str, domain: &str| -> Result<(), String> {
        let result = rt.block_on(wait_for(
            &format!("{service} serving {domain}"),
            Duration::from_secs(60),
            || async {
                let env = env_of(sb, service)?;
                if env.contains(domain) {
                    Ok(Some(()))
                } else {
                    Err(format!("env {env}"))
                }
            },
        ));
        result.map_err(|e| {
            let st = op
                .status()
                .map(|s| format!("companion {}, objects {}", s["companion"], s["objects"]))
                .unwrap_or_else(|e| e);
            format!("{e}\noperator: {st}\nlog:\n{}", op.log_text())
        })
    };
    // By image: the one service of the companion's image (any tag).
    le("other_le", &[])?;
    let op = run("itbyimage", "")?;
    serves(&op, "other_le", "itbyimage.example.org")?;
    drop(op);
    // Two of that image: the one labelled for this stack; the other untouched.
    le("second_le", &[])?;
    le(
        "itbylabel_le",
        &["io.swarmlog.companion=true", "io.swarmlog.stack=itbylabel"],
    )?;
    let second = env_of(sb, "second_le")?;
    let op = run("itbylabel", "")?;
    serves(&op, "itbylabel_le", "itbylabel.example.org")?;
    if env_of(sb, "second_le")? != second || env_of(sb, "other_le")?.contains("itbylabel") {
        return Err("a companion of another label or none was patched".into());
    }
    drop(op);
    // Two of that image and no label: none is patched, the reason is shown.
    let op = run("itambiguous", "")?;
    rt.block_on(wait_for("the ambiguity reported", Duration::from_secs(60), || async {
        let st = op.status()?;
        let err = st["companion"]["error"].to_string();
        if err.contains("services run") {
            Ok(Some(()))
        } else {
            Err(format!("companion {}", st["companion"]))
        }
    }))?;
    for s in ["other_le", "second_le", "itbylabel_le"] {
        if env_of(sb, s)?.contains("itambiguous") {
            return Err(format!("{s} was patched although the companion is ambiguous"));
        }
    }
    drop(op);
    sb.docker(&["service", "rm", "other_le", "second_le", "itbylabel_le"])?;
    // None there: created, owned by the stack, serving Kibana's domain.
    let op = run("itcreate", "  create: true\n  email: ops@example.com\n")?;
    serves(&op, "itcreate_letsencrypt", "itcreate.example.org")?;
    let owner = sb.docker(&[
        "service",
        "inspect",
        "--format",
        "{{index .Spec.Labels \"io.swarmlog.stack\"}}",
        "itcreate_letsencrypt",
    ])?;
    if owner.trim() != "itcreate" {
        return Err(format!("the created companion is not owned by the stack: {owner:?}"));
    }
    drop(op);
    Ok(())
}

/// Every hostile `com.df.serviceDomain` is refused, each one named (the
/// unit corpus in src/letsencrypt.rs lets one through unnamed); the
/// companion keeps its environment.
pub fn companion_refuses_every_hostile_name(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    const CORPUS: [&str; 15] = [
        "a.com'; rm -rf / #",
        "a.com' 'b.com",
        "$(reboot).example.com",
        "`id`.example.com",
        "a.com;id",
        "a.com\nDOMAIN_2=x",
        "a .com",
        "a.com\"",
        "a.com)",
        "${IFS}.com",
        "a.com&&id",
        "a.com|id",
        "a.com>x",
        "\\x41.com",
        "ä.com",
    ];
    let stack = "ithostile";
    let companion = "ithostile_le";
    sb.docker(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--replicas",
        "0",
        "--name",
        companion,
        "-e",
        "DOMAIN_1=('example.com')",
        "hamburml/docker-flow-letsencrypt:latest",
    ])?;
    rt.block_on(async {
        let docker = sb.client().await?;
        for (i, bad) in CORPUS.iter().enumerate() {
            let spec = bollard::models::ServiceSpec {
                name: Some(format!("ithostile_{i}")),
                labels: Some(std::collections::HashMap::from([
                    ("io.swarmlog.letsencrypt".to_string(), "true".to_string()),
                    ("com.df.serviceDomain".to_string(), bad.to_string()),
                ])),
                task_template: Some(bollard::models::TaskSpec {
                    container_spec: Some(bollard::models::TaskSpecContainerSpec {
                        image: Some("swarmlog/standin:latest".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                mode: Some(bollard::models::ServiceSpecMode {
                    replicated: Some(bollard::models::ServiceSpecModeReplicated { replicas: Some(0) }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            docker
                .create_service(spec, None)
                .await
                .map_err(|e| format!("create a service with serviceDomain {bad:?}: {e}"))?;
        }
        let before = env_of(sb, companion)?;
        let dir = common::temp_dir(stack);
        let values = dir.join("values.yaml");
        std::fs::write(
            &values,
            format!("kibana:\n  domain: ok.example.org\nletsencrypt:\n  service: {companion}\n  settle: 200ms\n"),
        )
        .map_err(|e| e.to_string())?;
        let op = Operator::start(
            sb,
            stack,
            &[
                "--stack",
                stack,
                "--resync",
                "10m",
                "--values",
                &values.display().to_string(),
            ],
        )?;
        // Kibana's own, valid domain is served: the operator has looked.
        wait_for(
            "the companion serving Kibana's domain",
            Duration::from_secs(60),
            || async {
                let env = env_of(sb, companion)?;
                if env.contains("ok.example.org") {
                    Ok(Some(()))
                } else {
                    Err(format!("env {env}"))
                }
            },
        )
        .await?;
        let st = op.status()?;
        let refused = st["companion"]["refused"].as_array().cloned().unwrap_or_default();
        let missing: Vec<String> = CORPUS
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                !refused
                    .iter()
                    .any(|r| r["source"]["service"] == format!("ithostile_{i}"))
            })
            .map(|(i, bad)| format!("ithostile_{i} {bad:?}"))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "not refused (or not named): {}\nrefused: {}",
                missing.join(", "),
                st["companion"]["refused"]
            ));
        }
        let env = env_of(sb, companion)?;
        for bad in CORPUS {
            let core = bad.split(['.', ' ']).next().unwrap_or_default();
            if core.len() > 2 && env.contains(core) && !before.contains(core) {
                return Err(format!("the companion's environment took {bad:?}: {env}"));
            }
        }
        drop(op);
        Ok(())
    })
}
