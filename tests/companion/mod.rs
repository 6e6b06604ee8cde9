//! The Let's Encrypt companion against the sandbox swarm: a stand-in
//! companion created the classic way follows Kibana's domain and opted-in
//! services, once per change, with nothing else of it changed.

use std::time::Duration;

use serde_json::Value as Json;

use crate::common::{self, wait_for, Sandbox};
use crate::controller::Operator;

const COMPANION: &str = "itle_proxy_le";

fn values(kibana_domain: &str) -> String {
    format!(
        "kibana:\n  domain: {kibana_domain}\nletsencrypt:\n  service: {COMPANION}\n  settle: 500ms\n  domains:\n    - [example.com, www.example.com]\n"
    )
}

async fn companion_spec(docker: &bollard::Docker) -> Result<Json, String> {
    let s = docker
        .inspect_service(COMPANION, None)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::to_value(s.spec).map_err(|e| e.to_string())
}

fn env(spec: &Json) -> Vec<String> {
    spec["TaskTemplate"]["ContainerSpec"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect()
}

/// The spec without its environment, and the environment without DOMAIN_*.
fn untouched_part(spec: &Json) -> (Json, Vec<String>) {
    let mut s = spec.clone();
    s["TaskTemplate"]["ContainerSpec"]["Env"] = Json::Null;
    let others = env(spec).into_iter().filter(|e| !e.starts_with("DOMAIN_")).collect();
    (s, others)
}

fn patches(op: &Operator) -> usize {
    op.log_text()
        .lines()
        .filter(|l| l.contains("patched companion"))
        .count()
}

async fn wait_env(docker: &bollard::Docker, what: &str, want: &[&str], not: &[&str]) -> Result<Vec<String>, String> {
    wait_for(what, Duration::from_secs(30), || async {
        let e = env(&companion_spec(docker).await?);
        let ok = want.iter().all(|w| e.iter().any(|x| x == w)) && not.iter().all(|n| !e.iter().any(|x| x.contains(n)));
        Ok(ok.then_some(e))
    })
    .await
}

pub fn companion_follows_domains(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itle";
    let dir = common::temp_dir(stack);
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).map_err(|e| e.to_string())?;
    let vfile = dir.join("values.yaml");
    std::fs::write(&vfile, values("a.example.org")).map_err(|e| e.to_string())?;
    let mount = format!("type=bind,source={},target=/etc/letsencrypt", certs.display());
    sb.docker(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        COMPANION,
        "--mount",
        &mount,
        "--constraint",
        "node.role==manager",
        "--network",
        "main",
        "--label",
        "com.example.team=ops",
        "-e",
        "CERTBOT_EMAIL=ops@example.com",
        "-e",
        "PROXY_ADDRESS=proxy",
        "-e",
        "DOMAIN_1=('example.com' 'www.example.com')",
        "-e",
        "DOMAIN_COUNT=1",
        "hamburml/docker-flow-letsencrypt:latest",
    ])?;
    let v = vfile.display().to_string();
    let args = [
        "--stack",
        stack,
        "--resync",
        "10m",
        "--values",
        v.as_str(),
        "--watch-interval",
        "200ms",
    ];
    let result = rt.block_on(async {
        let docker = sb.client().await?;
        let original = untouched_part(&companion_spec(&docker).await?);
        let op = Operator::start(sb, "itle-op", &args)?;
        // Kibana's domain joins the static group.
        wait_env(
            &docker,
            "the companion serving Kibana's domain",
            &[
                "DOMAIN_1=('a.example.org')",
                "DOMAIN_2=('example.com' 'www.example.com')",
                "DOMAIN_COUNT=2",
            ],
            &[],
        )
        .await?;
        if untouched_part(&companion_spec(&docker).await?) != original {
            return Err("patching changed more than DOMAIN_*".into());
        }
        if patches(&op) != 1 {
            return Err(format!("{} patches for one change:\n{}", patches(&op), op.log_text()));
        }
        // Kibana's domain changes in values.
        std::fs::write(&vfile, values("b.example.org")).map_err(|e| e.to_string())?;
        wait_env(
            &docker,
            "the companion following the new domain",
            &["DOMAIN_1=('b.example.org')"],
            &["a.example.org"],
        )
        .await?;
        // A service of another stack opts in.
        sb.docker(&[
            "service",
            "create",
            "-d",
            "--no-resolve-image",
            "--replicas",
            "0",
            "--name",
            "itle_app",
            "--label",
            "io.swarmlog.letsencrypt=true",
            "--label",
            "com.df.serviceDomain=app.example.net",
            "swarmlog/standin:latest",
        ])?;
        wait_env(
            &docker,
            "the opted-in service's domain",
            &["DOMAIN_1=('app.example.net')", "DOMAIN_COUNT=3"],
            &[],
        )
        .await?;
        // Settle, then: one patch per change so far.
        tokio::time::sleep(Duration::from_secs(1)).await;
        if patches(&op) != 3 {
            return Err(format!(
                "{} patches for three changes:\n{}",
                patches(&op),
                op.log_text()
            ));
        }
        if untouched_part(&companion_spec(&docker).await?) != original {
            return Err("patching changed more than DOMAIN_*".into());
        }
        // An injection attempt is refused; the companion stays as it is.
        let before = companion_spec(&docker).await?;
        sb.docker(&[
            "service",
            "create",
            "-d",
            "--no-resolve-image",
            "--replicas",
            "0",
            "--name",
            "itle_evil",
            "--label",
            "io.swarmlog.letsencrypt=true",
            "--label",
            "com.df.serviceDomain=x.example.com'; id #",
            "swarmlog/standin:latest",
        ])?;
        wait_for("the refusal in the log", Duration::from_secs(20), || async {
            Ok(op
                .log_text()
                .lines()
                .any(|l| l.contains("domain refused") && l.contains("itle_evil"))
                .then_some(()))
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if env(&companion_spec(&docker).await?) != env(&before) || patches(&op) != 3 {
            return Err(format!("the injection changed the companion:\n{}", op.log_text()));
        }
        // A restart of the operator does not touch the companion.
        drop(op);
        let before = docker
            .inspect_service(COMPANION, None)
            .await
            .map_err(|e| e.to_string())?;
        let op = Operator::start(sb, "itle-op2", &args)?;
        wait_for(
            "the restarted operator to reconcile",
            Duration::from_secs(30),
            || async { Ok(op.log_text().contains("reconciled").then_some(())) },
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = docker
            .inspect_service(COMPANION, None)
            .await
            .map_err(|e| e.to_string())?;
        if patches(&op) != 0 || before.spec != after.spec {
            return Err(format!("a restart patched the companion:\n{}", op.log_text()));
        }
        drop(op);
        Ok(())
    });
    let _ = sb.docker(&["service", "rm", COMPANION, "itle_app", "itle_evil"]);
    result?;
    rt.block_on(async {
        let docker = sb.client().await?;
        crate::remove_stack(sb, &docker, stack).await
    })
}
