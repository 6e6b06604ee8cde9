//! The Let's Encrypt companion against the sandbox swarm: a stand-in
//! companion created the classic way follows Kibana's domain and opted-in
//! services, once per change, with nothing else of it changed. Patches are
//! counted at the engine (the operator talks through an engine proxy), and
//! "no more patches" is judged once the operator reports nothing pending
//! and serves what it wants, never after a sleep.

use std::time::Duration;

use serde_json::Value as Json;

use crate::common::proxy::{describe, Call};
use crate::common::{self, wait_for, Operator, Sandbox};

const COMPANION: &str = "itle_proxy_le";

fn values(kibana_domain: &str, settle: &str) -> String {
    format!(
        "kibana:\n  domain: {kibana_domain}\nletsencrypt:\n  service: {COMPANION}\n  settle: {settle}\n  domains:\n    - [example.com, www.example.com]\n"
    )
}

async fn companion(docker: &bollard::Docker) -> Result<bollard::models::Service, String> {
    docker.inspect_service(COMPANION, None).await.map_err(|e| e.to_string())
}

async fn companion_spec(docker: &bollard::Docker) -> Result<Json, String> {
    serde_json::to_value(companion(docker).await?.spec).map_err(|e| e.to_string())
}

fn env(spec: &Json) -> Vec<String> {
    spec["TaskTemplate"]["ContainerSpec"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect()
}

/// swarmlog's label on the companion: the groups it wrote.
const LABEL_OWNED: &str = "io.swarmlog.domains";

/// The spec without its environment and swarmlog's own label, and the
/// environment without DOMAIN_*: what patching may never change.
fn untouched_part(spec: &Json) -> (Json, Vec<String>) {
    let mut s = spec.clone();
    s["TaskTemplate"]["ContainerSpec"]["Env"] = Json::Null;
    if let Some(l) = s["Labels"].as_object_mut() {
        l.remove(LABEL_OWNED);
    }
    let others = env(spec).into_iter().filter(|e| !e.starts_with("DOMAIN_")).collect();
    (s, others)
}

/// Writes at the engine that touch the companion (by its name or ID).
fn companion_writes(op: &Operator, id: &str, mark: usize) -> Result<Vec<Call>, String> {
    Ok(op
        .engine()?
        .since(mark)
        .into_iter()
        .filter(|c| c.is_write() && (c.path.contains(COMPANION) || c.path.contains(id)))
        .collect())
}

/// The patches among them (`POST /services/<companion>/update`).
fn patches(op: &Operator, id: &str, mark: usize) -> Result<usize, String> {
    Ok(companion_writes(op, id, mark)?
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/update"))
        .count())
}

/// Groups as a sorted list of sorted lists (order does not matter).
fn groups(v: &Json) -> Vec<Vec<String>> {
    let mut g: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let mut names: Vec<String> = g
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect();
            names.sort();
            names
        })
        .collect();
    g.sort();
    g
}

/// Asks the operator for a reconcile and waits until one more has run and
/// it reports no companion change pending, serving what it wants: no patch
/// is on its way. Returns its status.
async fn quiet(op: &Operator) -> Result<Json, String> {
    let count = reconciles(op)?;
    op.reconcile_now()?;
    wait_for(
        "the operator settled (nothing pending, serving what it wants)",
        Duration::from_secs(30),
        || async {
            let st = op.status()?;
            let c = &st["companion"];
            let n = st["reconcile"]["count"].as_u64().unwrap_or(0);
            if n > count && c["pending"] == false && groups(&c["desired"]) == groups(&c["serving"]) {
                Ok(Some(st))
            } else {
                Err(format!("reconciles {n} (from {count}), companion {c}"))
            }
        },
    )
    .await
}

fn reconciles(op: &Operator) -> Result<u64, String> {
    Ok(op.status()?["reconcile"]["count"].as_u64().unwrap_or(0))
}

async fn wait_env(docker: &bollard::Docker, what: &str, want: &[&str], not: &[&str]) -> Result<Vec<String>, String> {
    wait_for(what, Duration::from_secs(30), || async {
        let e = env(&companion_spec(docker).await?);
        let ok = want.iter().all(|w| e.iter().any(|x| x == w)) && not.iter().all(|n| !e.iter().any(|x| x.contains(n)));
        if ok {
            Ok(Some(e))
        } else {
            Err(format!("companion env {e:?}"))
        }
    })
    .await
}

pub fn companion_follows_domains(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itle";
    let dir = common::temp_dir(stack);
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).map_err(|e| e.to_string())?;
    let vfile = dir.join("values.yaml");
    std::fs::write(&vfile, values("a.example.org", "500ms")).map_err(|e| e.to_string())?;
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
        // quiet() asks for a reconcile when it wants one.
        "--allow-unauthenticated-reconcile",
    ];
    rt.block_on(async {
        let docker = sb.client().await?;
        let original = untouched_part(&companion_spec(&docker).await?);
        let id = companion(&docker).await?.id.unwrap_or_default();
        let op = Operator::start_counted(rt, &sb.host, "itle-op", &args)?;
        // Kibana's domain joins the static group.
        wait_env(
            &docker,
            "the companion serving Kibana's domain",
            // The user's group (equal to the static one) stays first, not doubled.
            &[
                "DOMAIN_1=('example.com' 'www.example.com')",
                "DOMAIN_2=('a.example.org')",
                "DOMAIN_COUNT=2",
            ],
            &[],
        )
        .await?;
        quiet(&op).await?;
        if untouched_part(&companion_spec(&docker).await?) != original {
            return Err("patching changed more than DOMAIN_*".into());
        }
        if patches(&op, &id, 0)? != 1 {
            return Err(format!(
                "{} patches for one change:\n{}",
                patches(&op, &id, 0)?,
                describe(&companion_writes(&op, &id, 0)?)
            ));
        }
        // Kibana's domain changes in values.
        std::fs::write(&vfile, values("b.example.org", "500ms")).map_err(|e| e.to_string())?;
        wait_env(
            &docker,
            "the companion following the new domain",
            &["DOMAIN_2=('b.example.org')"],
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
            &[
                "DOMAIN_2=('app.example.net')",
                "DOMAIN_3=('b.example.org')",
                "DOMAIN_COUNT=3",
            ],
            &[],
        )
        .await?;
        // Settled: one patch per change so far, and nothing else written to it.
        quiet(&op).await?;
        let w = companion_writes(&op, &id, 0)?;
        if patches(&op, &id, 0)? != 3 || w.len() != 3 {
            return Err(format!("writes to the companion for three changes:\n{}", describe(&w)));
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
        wait_for("the refusal in /status", Duration::from_secs(20), || async {
            let st = op.status()?;
            let refused = &st["companion"]["refused"];
            let named = refused
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["source"]["service"] == "itle_evil");
            if named {
                Ok(Some(()))
            } else {
                Err(format!("refused: {refused}"))
            }
        })
        .await?;
        quiet(&op).await?;
        if env(&companion_spec(&docker).await?) != env(&before) || patches(&op, &id, 0)? != 3 {
            return Err(format!(
                "the injection changed the companion:\n{}",
                describe(&companion_writes(&op, &id, 0)?)
            ));
        }
        // A burst of domain edits within the settle window: one patch, with
        // the last domain. Each edit is made once the operator has seen the
        // one before (it wants that domain), so it sees all four; the window
        // (10 s) is far longer than the burst.
        std::fs::write(&vfile, values("b.example.org", "10s")).map_err(|e| e.to_string())?;
        quiet(&op).await?;
        let burst_mark = op.engine()?.mark();
        for d in ["c1", "c2", "c3", "c4"] {
            let domain = format!("{d}.example.org");
            std::fs::write(&vfile, values(&domain, "10s")).map_err(|e| e.to_string())?;
            wait_for(
                &format!("the operator wanting {domain}"),
                Duration::from_secs(10),
                || async {
                    let st = op.status()?;
                    let c = &st["companion"];
                    if c["desired"].to_string().contains(&domain) && c["pending"] == true {
                        Ok(Some(()))
                    } else {
                        Err(format!("companion {c}"))
                    }
                },
            )
            .await?;
        }
        wait_env(
            &docker,
            "the companion serving the burst's last domain",
            &["DOMAIN_2=('app.example.net')", "DOMAIN_3=('c4.example.org')"],
            &["b.example.org"],
        )
        .await?;
        quiet(&op).await?;
        let burst = companion_writes(&op, &id, burst_mark)?;
        if burst.len() != 1 {
            return Err(format!(
                "a burst of four edits gave these companion writes (want one patch):\n{}",
                describe(&burst)
            ));
        }
        // A restart of the operator does not touch the companion: the new
        // operator reconciles, has nothing pending and serves what it wants.
        drop(op);
        let before = companion(&docker).await?;
        let op = Operator::start_counted(rt, &sb.host, "itle-op2", &args)?;
        quiet(&op).await?;
        let after = companion(&docker).await?;
        let w = companion_writes(&op, &id, 0)?;
        if !w.is_empty() || before.spec != after.spec {
            return Err(format!("a restart patched the companion:\n{}", describe(&w)));
        }
        drop(op);
        Ok(())
    })
}

const SEED: &str = "itseed_proxy_le";

/// Values with the defaults but Kibana's domain (no static groups).
fn seed_values(kibana_domain: &str) -> String {
    format!("kibana:\n  domain: {kibana_domain}\nletsencrypt:\n  service: {SEED}\n  settle: 500ms\n")
}

/// The companion's spec (as JSON) and its ID.
async fn seed_spec(docker: &bollard::Docker) -> Result<(Json, String), String> {
    let s = docker.inspect_service(SEED, None).await.map_err(|e| e.to_string())?;
    let id = s.id.clone().unwrap_or_default();
    Ok((serde_json::to_value(s.spec).map_err(|e| e.to_string())?, id))
}

/// Waits until the companion's env has every `want` entry and no entry
/// containing a `not` text; returns its spec.
async fn seed_env(docker: &bollard::Docker, what: &str, want: &[&str], not: &[&str]) -> Result<Json, String> {
    wait_for(what, Duration::from_secs(30), || async {
        let (spec, _) = seed_spec(docker).await?;
        let e = env(&spec);
        let ok = want.iter().all(|w| e.iter().any(|x| x == w)) && not.iter().all(|n| !e.iter().any(|x| x.contains(n)));
        if ok {
            Ok(Some(spec))
        } else {
            Err(format!("companion env {e:?}, labels {}", spec["Labels"]))
        }
    })
    .await
}

/// Patches of the companion counted at the engine.
fn seed_patches(op: &Operator, id: &str) -> Result<Vec<Call>, String> {
    Ok(op
        .engine()?
        .since(0)
        .into_iter()
        .filter(|c| c.is_write() && (c.path.contains(SEED) || c.path.contains(id)))
        .collect())
}

/// Issue 11 item 4, the seed's scenario: a companion made the classic way
/// for the frontend (`DOMAIN_1` for customdomain.com) gets Kibana's group
/// and keeps its own; a change of Kibana's domain replaces only swarmlog's
/// group; a group the user adds by hand later stays. One patch per change
/// at the engine, and nothing outside `DOMAIN_*` and swarmlog's own label
/// changes. Before the fix the companion ended up with Kibana's group only.
pub fn companion_keeps_the_users_domains(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itseed";
    let dir = common::temp_dir(stack);
    let vfile = dir.join("values.yaml");
    std::fs::write(&vfile, seed_values("kibana.example.org")).map_err(|e| e.to_string())?;
    let users = "DOMAIN_1=('customdomain.com' 'www.customdomain.com')";
    sb.docker(&[
        "service",
        "create",
        "-d",
        "--no-resolve-image",
        "--name",
        SEED,
        "--replicas",
        "0",
        "--label",
        "com.example.team=ops",
        "-e",
        "CERTBOT_EMAIL=ops@example.com",
        "-e",
        users,
        "-e",
        "PROXY_ADDRESS=proxy",
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
        "--allow-unauthenticated-reconcile",
    ];
    rt.block_on(async {
        let docker = sb.client().await?;
        let (first, id) = seed_spec(&docker).await?;
        let original = untouched_part(&first);
        let op = Operator::start_counted(rt, &sb.host, "itseed-op", &args)?;
        // Kibana's group is added; the user's stays, byte for byte, first.
        let spec = seed_env(
            &docker,
            "the companion serving the user's group and Kibana's",
            &[users, "DOMAIN_2=('kibana.example.org')", "DOMAIN_COUNT=2"],
            &[],
        )
        .await?;
        if spec["Labels"][LABEL_OWNED] != r#"[["kibana.example.org"]]"# {
            return Err(format!("{LABEL_OWNED} is not Kibana's group: {}", spec["Labels"]));
        }
        let st = quiet(&op).await?;
        let (spec, _) = seed_spec(&docker).await?;
        if untouched_part(&spec) != original {
            return Err(format!(
                "patching changed more than DOMAIN_* and {LABEL_OWNED}:\nbefore {:?}\nafter  {:?}",
                original,
                untouched_part(&spec)
            ));
        }
        let want = vec![
            vec!["customdomain.com".to_string(), "www.customdomain.com".to_string()],
            vec!["kibana.example.org".to_string()],
        ];
        if groups(&st["companion"]["serving"]) != want || groups(&st["companion"]["owned"]) != want[1..] {
            return Err(format!("/status companion: {}", st["companion"]));
        }
        let w = seed_patches(&op, &id)?;
        if w.len() != 1 {
            return Err(format!("writes to the companion for one change:\n{}", describe(&w)));
        }
        // Kibana's domain changes: only swarmlog's group is replaced.
        std::fs::write(&vfile, seed_values("logs.example.org")).map_err(|e| e.to_string())?;
        seed_env(
            &docker,
            "the companion following Kibana's new domain",
            &[users, "DOMAIN_2=('logs.example.org')", "DOMAIN_COUNT=2"],
            &["kibana.example.org"],
        )
        .await?;
        quiet(&op).await?;
        let w = seed_patches(&op, &id)?;
        if w.len() != 2 {
            return Err(format!("writes to the companion for two changes:\n{}", describe(&w)));
        }
        // The user adds a group by hand (not through the operator's engine).
        let by_hand = "DOMAIN_3=('shop.example.net' 'www.shop.example.net')";
        sb.docker(&["service", "update", "-d", "--env-add", by_hand, SEED])?;
        let (edited, _) = seed_spec(&docker).await?;
        let original = untouched_part(&edited);
        quiet(&op).await?;
        let (spec, _) = seed_spec(&docker).await?;
        if env(&spec) != env(&edited) || seed_patches(&op, &id)?.len() != 2 {
            return Err(format!(
                "the user's hand-added group was touched: env {:?} (was {:?})\n{}",
                env(&spec),
                env(&edited),
                describe(&seed_patches(&op, &id)?)
            ));
        }
        // Another change of Kibana's domain: both of the user's groups stay.
        std::fs::write(&vfile, seed_values("kibana2.example.org")).map_err(|e| e.to_string())?;
        seed_env(
            &docker,
            "the companion following Kibana's third domain, keeping both user groups",
            &[users, by_hand, "DOMAIN_2=('kibana2.example.org')", "DOMAIN_COUNT=3"],
            &["logs.example.org"],
        )
        .await?;
        quiet(&op).await?;
        let (spec, _) = seed_spec(&docker).await?;
        if untouched_part(&spec) != original {
            return Err("patching changed more than DOMAIN_* and swarmlog's label".into());
        }
        let w = seed_patches(&op, &id)?;
        if w.len() != 3 {
            return Err(format!("writes to the companion for three changes:\n{}", describe(&w)));
        }
        drop(op);
        Ok(())
    })
}
