//! Test harness shared by the integration suites: a private sandbox swarm
//! started by `scripts/sandbox` (never the user's daemon), a client for it,
//! and waiting with deadlines.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;

/// Root of the repository.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running sandbox swarm; torn down on drop.
pub struct Sandbox {
    pub name: String,
    /// `unix:///...` of manager-1.
    pub host: String,
}

fn sandbox_cmd(args: &[&str]) -> Result<Output, String> {
    Command::new(repo().join("scripts/sandbox"))
        .args(args)
        .current_dir(repo())
        .output()
        .map_err(|e| format!("cannot run scripts/sandbox: {e}"))
}

impl Sandbox {
    /// Starts (or restarts from scratch) the sandbox `name`.
    pub fn up(name: &str, extra: &[&str]) -> Result<Sandbox, String> {
        let mut args = vec!["up", "--name", name];
        args.extend_from_slice(extra);
        let out = sandbox_cmd(&args)?;
        if !out.status.success() {
            return Err(format!(
                "scripts/sandbox up failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let host = stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("export DOCKER_HOST="))
            .next_back()
            .ok_or_else(|| format!("scripts/sandbox up printed no DOCKER_HOST line:\n{stdout}"))?
            .trim_matches('"')
            .to_string();
        Ok(Sandbox {
            name: name.to_string(),
            host,
        })
    }

    /// The socket path of a node's daemon, by hostname.
    pub fn sock(&self, host: &str) -> Result<String, String> {
        let out = sandbox_cmd(&["sock", "--name", &self.name, host])?;
        if !out.status.success() {
            return Err(format!(
                "no socket for {host}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A client of manager-1, API version negotiated.
    pub async fn client(&self) -> Result<Docker, String> {
        client_for(self.host.trim_start_matches("unix://")).await
    }

    /// Runs the docker CLI against manager-1.
    pub fn docker(&self, args: &[&str]) -> Result<String, String> {
        run_docker(&self.host, args)
    }

    /// Runs `swarmlog` (the binary under test) against manager-1.
    pub fn swarmlog(&self, args: &[&str]) -> Output {
        swarmlog_with_host(Some(&self.host), args)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::env::var_os("SWARMLOG_KEEP_SANDBOX").is_some() {
            eprintln!("keeping sandbox {} (SWARMLOG_KEEP_SANDBOX is set)", self.name);
            return;
        }
        match sandbox_cmd(&["down", "--name", &self.name]) {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("sandbox down failed: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("{e}"),
        }
    }
}

/// A client for one daemon socket, API version negotiated.
pub async fn client_for(sock: &str) -> Result<Docker, String> {
    let docker = Docker::connect_with_unix(sock, 30, bollard::API_DEFAULT_VERSION)
        .map_err(|e| format!("connect {sock}: {e}"))?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| format!("negotiate API version with {sock}: {e}"))
}

pub fn run_docker(host: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "docker {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Runs the swarmlog binary built for these tests.
pub fn swarmlog_with_host(host: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmlog"));
    cmd.args(args).current_dir(repo());
    cmd.env_remove("DOCKER_HOST");
    if let Some(h) = host {
        cmd.env("DOCKER_HOST", h);
    }
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run swarmlog: {e}"),
    }
}

/// Polls `check` until it returns `Ok(Some(_))` or the deadline passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let start = Instant::now();
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "timed out after {timeout:?} waiting for {what}; last error: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fresh temporary directory under target/.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = repo()
        .join("target")
        .join("test-tmp")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir
}

/// Image references the sandbox builds stand-ins for.
pub fn standin_images() -> Vec<String> {
    let path = repo().join("tests/standin/images.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// A running operator; stopped with SIGTERM (by its pid) when dropped.
pub struct Operator {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(sb: &Sandbox, name: &str, args: &[&str]) -> Result<Operator, String> {
        Operator::start_on(&sb.host, name, args)
    }

    /// Against the engine at `host` (`unix:///...`).
    pub fn start_on(host: &str, name: &str, args: &[&str]) -> Result<Operator, String> {
        let dir = temp_dir(name);
        let log = dir.join("operator.log");
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmlog"));
        cmd.arg("run").args(args);
        // Several operators run at once: each on a free loopback port.
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let child = cmd
            .env("DOCKER_HOST", host)
            .env("SWARMLOG_LOG", "info")
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start swarmlog run: {e}"))?;
        Ok(Operator {
            child: Some(child),
            log,
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code (within `timeout`).
    pub fn stop(&mut self, timeout: Duration) -> Result<Option<i32>, String> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status.code());
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("swarmlog run did not stop within {timeout:?} of SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(15));
    }
}

/// Whether a task of `service` runs on the node `node_id`.
pub async fn task_running_on(docker: &Docker, service: &str, node_id: &str) -> Result<bool, String> {
    let mut f = std::collections::HashMap::new();
    f.insert("service".to_string(), vec![service.to_string()]);
    f.insert("node".to_string(), vec![node_id.to_string()]);
    let tasks = docker
        .list_tasks(Some(bollard::query_parameters::ListTasksOptions { filters: Some(f) }))
        .await
        .map_err(|e| e.to_string())?;
    Ok(tasks
        .iter()
        .any(|t| t.status.as_ref().and_then(|s| s.state) == Some(bollard::models::TaskState::RUNNING)))
}
