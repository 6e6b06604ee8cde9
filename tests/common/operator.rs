//! The operator deployed as users run it (manifests/operator.yml, its
//! image built from Dockerfile.prebuilt) on a sandbox swarm, read from
//! inside the sandbox's own namespaces, and what the Elasticsearch
//! simulators logged in their volumes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Sandbox;

/// A node's fact from scripts/sandbox's record (`NODE_ADDR`, ...).
pub fn node_fact(sb: &Sandbox, host: &str, key: &str) -> Result<String, String> {
    let file = super::repo()
        .join("target/sandbox")
        .join(&sb.name)
        .join("nodes")
        .join(format!("{host}.env"));
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
        .ok_or_else(|| format!("{}: no {key}", file.display()))
}

/// Builds the operator's image `image` on the sandbox's manager from the
/// static release binary (Dockerfile.prebuilt), which must be built first.
pub fn build_image(sb: &Sandbox, image: &str) -> Result<(), String> {
    let bin = super::repo().join("target/x86_64-unknown-linux-gnu/release/swarmlog");
    if !bin.exists() {
        return Err(format!(
            "{} is missing: build it first (scripts/test does): RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --locked --target x86_64-unknown-linux-gnu",
            bin.display()
        ));
    }
    super::sh(&format!(
        "DOCKER_HOST={} DOCKER_BUILDKIT=0 docker build -q -f Dockerfile.prebuilt -t {image} .",
        sb.host
    ))?;
    Ok(())
}

/// The deployed operator (stack `swarmlog`) with the values `values`. Its
/// host-mode port is on manager-1's address, which only the sandbox's own
/// namespaces reach: it is read from inside manager-1's namespace.
pub struct Deployed<'a> {
    sb: &'a Sandbox,
    pub addr: String,
    pub netns: String,
    /// Removes the stack when dropped (a redeploy of the same stack does not).
    pub owner: bool,
}

/// The operator's root key (`swarmlog credentials init`, as the README
/// says), before manifests/operator.yml is deployed: it mounts the key. An
/// existing one is kept.
pub fn make_root_key(sb: &Sandbox) -> Result<(), String> {
    super::sh(&format!(
        "{} credentials init --docker-host {}",
        env!("CARGO_BIN_EXE_swarmlog"),
        sb.host
    ))
    .map(|_| ())
}

impl<'a> Deployed<'a> {
    pub fn deploy(sb: &'a Sandbox, image: &str, config: &str, values: &str) -> Result<Deployed<'a>, String> {
        let dir = super::temp_dir("operator-values");
        let file = dir.join(format!("{config}.yaml"));
        std::fs::write(&file, values).map_err(|e| e.to_string())?;
        sb.docker(&["config", "create", config, &file.display().to_string()])?;
        make_root_key(sb)?;
        let socks = super::repo().join(format!("target/sandbox/{}/{{{{.Node.Hostname}}}}.sock", sb.name));
        super::sh(&format!(
            "DOCKER_HOST={} SWARMLOG_IMAGE={image} SWARMLOG_VALUES_CONFIG={config} SWARMLOG_DOCKER_SOCK='{}' docker stack deploy --resolve-image never -d -c manifests/operator.yml swarmlog",
            sb.host,
            socks.display()
        ))?;
        Ok(Deployed {
            sb,
            addr: format!("{}:8080", node_fact(sb, "manager-1", "NODE_ADDR")?),
            netns: sb.netns("manager-1")?,
            owner: true,
        })
    }

    pub fn status(&self) -> Result<Value, String> {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .args(["curl", "-sS", "-f", "-m", "5"])
            .arg(format!("http://{}/status", self.addr))
            .output()
            .map_err(|e| format!("nsenter curl: {e}"))?;
        if !out.status.success() {
            return Err(format!("GET /status: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("/status: {e}"))
    }

    /// The operator's log (it writes to stderr, which `docker service logs`
    /// passes on as stderr).
    pub fn logs(&self) -> String {
        super::sh(&format!(
            "DOCKER_HOST={} docker service logs --raw --tail 150 swarmlog_operator 2>&1",
            self.sb.host
        ))
        .unwrap_or_else(|e| e)
    }
}

impl Drop for Deployed<'_> {
    /// Removes the operator and waits until its container is gone: one that
    /// is still stopping could re-create what the suite's reset removes.
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        let _ = self.sb.docker(&["stack", "rm", "swarmlog"]);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            match self.sb.docker(&[
                "ps",
                "-q",
                "--filter",
                "label=com.docker.swarm.service.name=swarmlog_operator",
            ]) {
                Ok(out) if out.trim().is_empty() => return,
                Err(_) => return,
                Ok(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }
}

/// The writes every simulator logged in its volume (which outlives
/// restarts), merged by time: (millis, node, "METHOD path body").
pub fn es_writes(sb: &Sandbox, hosts: &[&str], volume: &str) -> Vec<(u64, String, String)> {
    let mut all = Vec::new();
    for h in hosts {
        let path: PathBuf = super::repo()
            .join("target/sandbox")
            .join(&sb.name)
            .join(h)
            .join("data/volumes")
            .join(volume)
            .join("_data/standin-requests.log");
        for line in std::fs::read_to_string(&path).unwrap_or_default().lines() {
            if let Some((ms, rest)) = line.split_once(' ') {
                if let Ok(ms) = ms.parse::<u64>() {
                    all.push((ms, h.to_string(), rest.to_string()));
                }
            }
        }
    }
    all.sort();
    all
}

/// Swaps the operator's values config for `config` (and any further
/// `docker service update` arguments): one update, one restart.
pub fn swap_values(sb: &Sandbox, old: &str, config: &str, text: &str, more: &[&str]) -> Result<(), String> {
    let dir = super::temp_dir("operator-values");
    let file = dir.join(format!("{config}.yaml"));
    std::fs::write(&file, text).map_err(|e| e.to_string())?;
    sb.docker(&["config", "create", config, &file.display().to_string()])?;
    let add = format!("source={config},target=/etc/swarmlog/values.yaml,mode=0444");
    let mut args = vec![
        "service",
        "update",
        "--detach",
        "--config-rm",
        old,
        "--config-add",
        &add,
    ];
    args.extend_from_slice(more);
    args.push("swarmlog_operator");
    sb.docker(&args).map(|_| ())
}

/// A request from a container on `network` (the stand-in's client): the
/// status line and body, whatever the status.
pub fn call_on(sb: &Sandbox, network: &str, method: &str, url: &str) -> String {
    call_on_host(&sb.host, network, method, url)
}

/// [`call_on`] through the engine at `host` (for a thread of its own).
pub fn call_on_host(host: &str, network: &str, method: &str, url: &str) -> String {
    let args = [
        "run",
        "--rm",
        "--network",
        network,
        "swarmlog/standin:latest",
        "http",
        method,
        url,
    ];
    match super::run_docker(host, &args) {
        Ok(out) | Err(out) => out,
    }
}

/// `/status`'s certificate rows as (role, state, not_after).
pub fn certificate_rows(st: &Value) -> Vec<(String, String, String)> {
    st["elasticsearch"]["security"]["certificates"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                    (f("role"), f("state"), f("not_after"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The operator's container on manager-1 (where the root key is mounted).
pub fn operator_container(sb: &Sandbox) -> Result<String, String> {
    let out = sb.docker(&[
        "ps",
        "-q",
        "-f",
        "label=com.docker.swarm.service.name=swarmlog_operator",
    ])?;
    Ok(out.lines().next().unwrap_or_default().trim().to_string())
}

/// The CA certificate of `stack` (its config's data, which is public), in a
/// file for the test's clients: what Kibana and Logstash trust.
pub fn ca_file(sb: &Sandbox, stack: &str) -> Result<std::path::PathBuf, String> {
    let names = sb.docker(&["config", "ls", "--format", "{{.Name}}"])?;
    let prefix = format!("{stack}_es_ca_");
    let found: Vec<&str> = names.lines().filter(|n| n.starts_with(&prefix)).collect();
    let [name] = found[..] else {
        return Err(format!("expected one config {prefix}<hash>: {names}"));
    };
    let pem = config_data(sb, name)?;
    let file = super::temp_dir("ca").join(format!("{stack}-ca.crt"));
    std::fs::write(&file, pem).map_err(|e| format!("writing {}: {e}", file.display()))?;
    Ok(file)
}

/// A config's data (configs are public: the engine gives it back).
pub fn config_data(sb: &Sandbox, name: &str) -> Result<String, String> {
    use base64::Engine as _;
    let data = sb.docker(&["config", "inspect", "--format", "{{json .Spec.Data}}", name])?;
    let b64: String = serde_json::from_str(data.trim()).map_err(|e| format!("{name}'s data {data:?}: {e}"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("{name}'s data: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("{name}'s data: {e}"))
}

/// [`call_on`] over HTTPS, trusting only the CA in `ca` and checking the
/// URL's host name against the certificate (as Kibana and Logstash do).
pub fn call_tls(sb: &Sandbox, network: &str, method: &str, url: &str, ca: &std::path::Path) -> String {
    let mount = format!("{}:/ca.crt:ro", ca.display());
    let args = [
        "run",
        "--rm",
        "--network",
        network,
        "-v",
        &mount,
        "swarmlog/standin:latest",
        "http",
        "--cacert",
        "/ca.crt",
        method,
        url,
    ];
    match super::run_docker(&sb.host, &args) {
        Ok(out) | Err(out) => out,
    }
}

/// Security's rows (elastic, the role, Kibana's and Logstash's users), each
/// in force, and no user of an earlier generation left.
pub fn all_in_force(sec: &Value) -> bool {
    sec["enabled"] == true
        && sec["users"]
            .as_array()
            .is_some_and(|u| u.len() == 4 && u.iter().all(|u| u["state"] == "in-force"))
}
