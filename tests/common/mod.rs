//! Test harness shared by the integration suites: a private sandbox swarm
//! started by `scripts/sandbox` (never the user's daemon), a client for it,
//! and waiting with deadlines.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListNetworksOptions, ListNodesOptions, ListServicesOptions};
use bollard::Docker;

/// Root of the repository.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub mod operator;
pub mod proxy;

/// A running sandbox swarm; torn down on drop.
pub struct Sandbox {
    /// Unique per run: the suite's base name and this process's id, so two
    /// runs (of this or another checkout) never touch each other's sandbox.
    pub name: String,
    /// `unix:///...` of manager-1.
    pub host: String,
    /// The swarm as the suite set it up; every test starts from it.
    baseline: std::sync::Mutex<Option<Baseline>>,
}

/// What the swarm holds before any test: its nodes (by ID, with hostname,
/// labels and availability) and its networks.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub nodes: Vec<(String, String, HashMap<String, String>)>,
    pub networks: BTreeSet<String>,
}

fn sandbox_cmd(args: &[&str]) -> Result<Output, String> {
    Command::new(repo().join("scripts/sandbox"))
        .args(args)
        .current_dir(repo())
        .output()
        .map_err(|e| format!("cannot run scripts/sandbox: {e}"))
}

/// The sandbox name of this run: `<base>_<pid>` (at most 20 characters).
pub fn run_name(base: &str) -> String {
    let mut name = format!("{base}_{}", std::process::id());
    name.truncate(20);
    name
}

impl Sandbox {
    /// Removes what killed runs of this checkout left behind (`scripts/sandbox
    /// gc`), then starts the sandbox of this run, owned by this process.
    pub fn up(base: &str, extra: &[&str]) -> Result<Sandbox, String> {
        let gc = sandbox_cmd(&["gc"])?;
        if !gc.status.success() {
            return Err(format!(
                "scripts/sandbox gc failed ({}):\n{}",
                gc.status,
                String::from_utf8_lossy(&gc.stderr)
            ));
        }
        let name = run_name(base);
        let pid = std::process::id().to_string();
        let mut args = vec!["up", "--name", &name, "--owner", &pid];
        args.extend_from_slice(extra);
        let out = sandbox_cmd(&args)?;
        let mut sb = Sandbox {
            name: name.clone(),
            host: String::new(),
            baseline: std::sync::Mutex::new(None),
        };
        if !out.status.success() {
            // Dropping it takes down whatever half of it was built.
            drop(sb);
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
        sb.host = host;
        Ok(sb)
    }

    /// Runs a `scripts/sandbox` command on this sandbox: `cmd --name NAME args...`.
    pub fn script(&self, cmd: &str, args: &[&str]) -> Result<String, String> {
        let mut all = vec![cmd, "--name", &self.name];
        all.extend_from_slice(args);
        let out = sandbox_cmd(&all)?;
        if !out.status.success() {
            return Err(format!(
                "scripts/sandbox {}: {}{}",
                all.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// The socket path of a node's daemon, by hostname.
    pub fn sock(&self, host: &str) -> Result<String, String> {
        Ok(self.script("sock", &[host])?.trim().to_string())
    }

    /// The network namespace of a node, by hostname, as scripts/sandbox
    /// recorded it in the node's facts file.
    pub fn netns(&self, host: &str) -> Result<String, String> {
        let file = repo()
            .join("target/sandbox")
            .join(&self.name)
            .join("nodes")
            .join(format!("{host}.env"));
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        text.lines()
            .find_map(|l| l.strip_prefix("NODE_NETNS="))
            .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{}: no NODE_NETNS", file.display()))
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

    /// A client of a manager that answers (manager-1 first).
    async fn any_manager(&self) -> Result<Docker, String> {
        let mut errors = Vec::new();
        for m in ["manager-1", "manager-2", "manager-3"] {
            let Ok(sock) = self.sock(m) else { continue };
            match client_for(&sock).await {
                Ok(d) => match d.list_nodes(None::<ListNodesOptions>).await {
                    Ok(_) => return Ok(d),
                    Err(e) => errors.push(format!("{m}: {e}")),
                },
                Err(e) => errors.push(e),
            }
        }
        Err(format!("no manager answers: {}", errors.join("; ")))
    }

    /// Records the swarm as it is now as the state every test starts from.
    pub async fn record_baseline(&self) -> Result<Baseline, String> {
        let docker = self.client().await?;
        let nodes = docker
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|n| {
                let host = n.description.and_then(|d| d.hostname).unwrap_or_default();
                let labels = n.spec.and_then(|s| s.labels).unwrap_or_default();
                (n.id.unwrap_or_default(), host, labels)
            })
            .collect();
        let networks = docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|n| n.name)
            .collect();
        let b = Baseline { nodes, networks };
        *self.baseline.lock().unwrap_or_else(|e| e.into_inner()) = Some(b.clone());
        Ok(b)
    }

    fn baseline(&self) -> Result<Baseline, String> {
        self.baseline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| "no baseline recorded".to_string())
    }

    /// Checks the sandbox before a test: every node of the baseline answers
    /// and is Ready. A stopped daemon is started again; what cannot be
    /// recovered is the error (with the reason), so the test fails on it
    /// instead of timing out against a dead node.
    pub async fn ensure_healthy(&self) -> Result<Vec<String>, String> {
        let base = self.baseline()?;
        let mut recovered = Vec::new();
        for (_, host, _) in &base.nodes {
            let sock = self.sock(host)?;
            let answers = match client_for(&sock).await {
                Ok(d) => tokio::time::timeout(Duration::from_secs(5), d.info())
                    .await
                    .is_ok_and(|r| r.is_ok()),
                Err(_) => false,
            };
            if !answers {
                self.script("node-start", &[host])
                    .map_err(|e| format!("node {host} is down and could not be started again: {e}"))?;
                recovered.push(format!("started the daemon of {host} again"));
            }
        }
        let ids: Vec<&str> = base.nodes.iter().map(|(id, _, _)| id.as_str()).collect();
        wait_for("every node of the sandbox Ready", Duration::from_secs(90), || async {
            let docker = self.any_manager().await?;
            let nodes = docker
                .list_nodes(None::<ListNodesOptions>)
                .await
                .map_err(|e| e.to_string())?;
            let mut not_ready = Vec::new();
            for id in &ids {
                let n = nodes.iter().find(|n| n.id.as_deref() == Some(*id));
                let state = n.and_then(|n| n.status.as_ref()?.state);
                if state != Some(bollard::models::NodeState::READY) {
                    let host = n
                        .and_then(|n| n.description.as_ref()?.hostname.clone())
                        .unwrap_or_default();
                    not_ready.push(format!("{host} ({id}): {state:?}"));
                }
            }
            if not_ready.is_empty() {
                Ok(Some(()))
            } else {
                Err(format!("not Ready: {}", not_ready.join(", ")))
            }
        })
        .await?;
        Ok(recovered)
    }

    /// Puts the swarm back to the baseline after a test, whatever the test
    /// left (a test that failed half-way leaves its objects): every service,
    /// config and secret goes, networks and nodes the baseline does not have
    /// go (extra nodes' daemons too), node labels are the baseline's again.
    pub async fn reset(&self) -> Result<Vec<String>, String> {
        let base = self.baseline()?;
        let docker = self.any_manager().await?;
        let mut done = Vec::new();
        // Services are listed again on every round: an operator's container
        // outlives its service for its stop grace period and, while it still
        // leads, re-creates what was just removed. Networks go once no
        // service or task uses them any more.
        let removed = std::sync::Mutex::new(Vec::new());
        wait_for(
            "the test's services and networks removed",
            Duration::from_secs(120),
            || async {
                let note = |line: String| removed.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                let services = docker
                    .list_services(None::<ListServicesOptions>)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut left = Vec::new();
                for s in &services {
                    let name = s.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or_default();
                    match docker.delete_service(s.id.as_deref().unwrap_or_default()).await {
                        Ok(()) => note(format!("removed service {name}")),
                        Err(e) => left.push(format!("service {name}: {e}")),
                    }
                }
                let nets = docker
                    .list_networks(None::<ListNetworksOptions>)
                    .await
                    .map_err(|e| e.to_string())?;
                for n in nets {
                    let Some(name) = n.name.clone() else { continue };
                    // Local networks (docker_gwbridge, bridge, ...) belong to the nodes.
                    if base.networks.contains(&name) || n.scope.as_deref() != Some("swarm") {
                        continue;
                    }
                    match docker.remove_network(n.id.as_deref().unwrap_or(&name)).await {
                        Ok(()) => note(format!("removed network {name}")),
                        Err(e) => left.push(format!("{name}: {e}")),
                    }
                }
                if left.is_empty() && services.is_empty() {
                    Ok(Some(()))
                } else if left.is_empty() {
                    Err(format!("removed {} service(s); looking again", services.len()))
                } else {
                    Err(left.join("; "))
                }
            },
        )
        .await?;
        done.extend(removed.into_inner().unwrap_or_else(|e| e.into_inner()));
        for c in docker
            .list_configs(None::<bollard::query_parameters::ListConfigsOptions>)
            .await
            .map_err(|e| e.to_string())?
        {
            let name = c.spec.and_then(|s| s.name).unwrap_or_default();
            docker
                .delete_config(c.id.as_deref().unwrap_or_default())
                .await
                .map_err(|e| format!("remove config {name}: {e}"))?;
            done.push(format!("removed config {name}"));
        }
        for s in docker
            .list_secrets(None::<bollard::query_parameters::ListSecretsOptions>)
            .await
            .map_err(|e| e.to_string())?
        {
            let name = s.spec.and_then(|s| s.name).unwrap_or_default();
            docker
                .delete_secret(s.id.as_deref().unwrap_or_default())
                .await
                .map_err(|e| format!("remove secret {name}: {e}"))?;
            done.push(format!("removed secret {name}"));
        }
        let nodes = docker
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(|e| e.to_string())?;
        let known: Vec<String> = known_hosts(&self.name);
        for n in &nodes {
            let id = n.id.clone().unwrap_or_default();
            let host = n
                .description
                .as_ref()
                .and_then(|d| d.hostname.clone())
                .unwrap_or_default();
            match base.nodes.iter().find(|(bid, _, _)| *bid == id) {
                None => {
                    docker
                        .delete_node(&id, Some(bollard::query_parameters::DeleteNodeOptions { force: true }))
                        .await
                        .map_err(|e| format!("remove node {host} ({id}): {e}"))?;
                    done.push(format!("removed node {host} ({id}) from the swarm"));
                }
                Some((_, _, labels)) => {
                    let mut spec = n.spec.clone().unwrap_or_default();
                    let active = spec.availability == Some(bollard::models::NodeSpecAvailabilityEnum::ACTIVE);
                    if spec.labels.as_ref() != Some(labels) || !active {
                        spec.labels = Some(labels.clone());
                        spec.availability = Some(bollard::models::NodeSpecAvailabilityEnum::ACTIVE);
                        let version = n.version.as_ref().and_then(|v| v.index).unwrap_or_default() as i64;
                        docker
                            .update_node(&id, spec, bollard::query_parameters::UpdateNodeOptions { version })
                            .await
                            .map_err(|e| format!("restore the labels of {host}: {e}"))?;
                        done.push(format!("restored labels and availability of {host}"));
                    }
                }
            }
        }
        // Daemons of nodes a test added.
        for host in known {
            if !base.nodes.iter().any(|(_, h, _)| *h == host) {
                self.script("rm-node", &[&host])?;
                done.push(format!("removed the daemon of {host}"));
            }
        }
        Ok(done)
    }
}

/// Host names of the nodes `scripts/sandbox` knows in sandbox `name`.
fn known_hosts(name: &str) -> Vec<String> {
    let dir = repo().join("target/sandbox").join(name).join("nodes");
    let mut hosts: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".env").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    hosts.sort();
    hosts
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

/// One test of a suite against the shared sandbox.
pub type TestFn = fn(&Sandbox, &tokio::runtime::Runtime) -> Result<(), String>;

/// Runs the tests of a suite one at a time on one sandbox of this run:
/// before each test the sandbox is checked (and recovered, or the test
/// fails with the reason); after each test, passed or not, the swarm is put
/// back to the baseline, so one failure does not take the rest down.
/// `setup` runs once after `up` (before the baseline is recorded). A sandbox
/// that cannot start fails every test (never skips them).
pub fn run_suite(
    base: &str,
    up_args: &[&str],
    setup: fn(&Sandbox) -> Result<(), String>,
    tests: Vec<(&'static str, TestFn)>,
) -> ! {
    let mut args = libtest_mimic::Arguments::from_args();
    // Tests share one swarm: run them one at a time.
    args.test_threads = Some(1);
    let selected = |name: &str| match &args.filter {
        None => true,
        Some(f) if args.exact => name == f,
        Some(f) => name.contains(f.as_str()),
    };
    let wanted = tests
        .iter()
        .any(|(n, _)| selected(n) && !args.skip.iter().any(|s| n.contains(s.as_str())));
    if args.list || !wanted {
        let trials = tests
            .iter()
            .map(|(name, _)| libtest_mimic::Trial::test(*name, || Ok(())))
            .collect();
        libtest_mimic::run(&args, trials).exit();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => std::sync::Arc::new(r),
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let sandbox = Sandbox::up(base, up_args).and_then(|s| {
        setup(&s)?;
        runtime.block_on(s.record_baseline())?;
        Ok(s)
    });
    let sandbox = std::sync::Arc::new(sandbox);
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            let sandbox = sandbox.clone();
            let rt = runtime.clone();
            libtest_mimic::Trial::test(name, move || {
                let sb = match sandbox.as_ref() {
                    Ok(s) => s,
                    Err(e) => return Err(format!("the sandbox swarm did not start: {e}").into()),
                };
                match rt.block_on(sb.ensure_healthy()) {
                    Ok(recovered) if !recovered.is_empty() => {
                        eprintln!("{name}: sandbox recovered before the test: {}", recovered.join("; "))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(format!("the sandbox is not healthy before the test: {e}").into()),
                }
                let result = f(sb, &rt);
                let reset = rt.block_on(sb.reset());
                match (result, reset) {
                    (Ok(()), Ok(_)) => Ok(()),
                    (Ok(()), Err(e)) => Err(format!("the test passed, but putting the swarm back failed: {e}").into()),
                    (Err(e), Ok(done)) => {
                        let cleaned = if done.is_empty() {
                            String::new()
                        } else {
                            format!("\n(cleaned up after it: {})", done.join("; "))
                        };
                        Err(format!("{e}{cleaned}").into())
                    }
                    (Err(e), Err(r)) => Err(format!("{e}\n(and putting the swarm back failed: {r})").into()),
                }
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(sandbox);
    conclusion.exit();
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

/// Runs the docker CLI against `host`. An update the engine refuses as
/// "update out of sequence" (the object changed between the CLI's read and
/// its write: the operator labelled the node, the swarm bumped its version)
/// is run again, as a person would, up to 5 times; the CLI does not retry.
pub fn run_docker(host: &str, args: &[&str]) -> Result<String, String> {
    let mut attempt = 1;
    let out = loop {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", host)
            .output()
            .map_err(|e| format!("cannot run docker: {e}"))?;
        let raced = !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("update out of sequence");
        if !raced || attempt == 5 {
            break out;
        }
        attempt += 1;
        std::thread::sleep(Duration::from_millis(100 * attempt));
    };
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

/// The root key the tests' operators derive credentials from (the chart's
/// default has Elasticsearch's security on): a file of the test build's
/// own, made once. Never a real secret.
pub fn test_root_key() -> PathBuf {
    let path = repo().join("target/test-root-key");
    if !path.exists() {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        // Written whole, then renamed: a concurrent test never reads half.
        let _ = std::fs::write(&tmp, "swarmlog-tests-root-key-not-a-secret-0123456789\n")
            .and_then(|_| std::fs::rename(&tmp, &path));
    }
    path
}

/// Runs the swarmlog binary built for these tests.
pub fn swarmlog_with_host(host: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmlog"));
    cmd.args(args).current_dir(repo());
    cmd.env("SWARMLOG_ROOT_KEY_FILE", test_root_key());
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
/// `Ok(None)` and `Err(reason)` both mean "not yet"; a check should say why
/// with `Err`, because the timeout reports the last reason it was given.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let start = Instant::now();
    let mut last: Option<(String, Duration)> = None;
    let mut checks = 0u32;
    loop {
        checks += 1;
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = Some((e, start.elapsed())),
        }
        if start.elapsed() > timeout {
            let why = match last {
                Some((e, at)) => format!("last error (at {at:.1?}): {e}"),
                None => format!("the condition stayed false in all {checks} checks (none reported an error)"),
            };
            return Err(format!("timed out after {timeout:?} waiting for {what}; {why}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fresh temporary directory under target/, its own for every call (a
/// second call with the same name must not wipe the first one's files).
pub fn temp_dir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = repo()
        .join("target")
        .join("test-tmp")
        .join(format!("{name}-{}-{n}", std::process::id()));
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
    /// The engine proxy it talks through, when started with one: every
    /// request it makes is counted there.
    pub proxy: Option<proxy::EngineProxy>,
    addr: std::sync::OnceLock<String>,
}

impl Operator {
    pub fn start(sb: &Sandbox, name: &str, args: &[&str]) -> Result<Operator, String> {
        Operator::start_on(&sb.host, name, args)
    }

    /// Against the engine at `host` (`unix:///...`).
    pub fn start_on(host: &str, name: &str, args: &[&str]) -> Result<Operator, String> {
        let dir = temp_dir(name);
        Operator::spawn(host, &dir, args, None)
    }

    /// Against the engine at `host` (`unix:///...`) through an engine proxy
    /// of its own, which counts every request (see [`proxy::EngineProxy`]).
    pub fn start_counted(
        rt: &tokio::runtime::Runtime,
        host: &str,
        name: &str,
        args: &[&str],
    ) -> Result<Operator, String> {
        Operator::start_counted_with(rt, host, name, args, Vec::new())
    }

    /// As [`Operator::start_counted`], with fault rules in place before the
    /// operator's first call.
    pub fn start_counted_with(
        rt: &tokio::runtime::Runtime,
        host: &str,
        name: &str,
        args: &[&str],
        rules: Vec<proxy::Rule>,
    ) -> Result<Operator, String> {
        let dir = temp_dir(name);
        let upstream = PathBuf::from(host.trim_start_matches("unix://"));
        let proxy = proxy::EngineProxy::start(rt, &upstream, &dir.join("engine.sock"))?;
        for rule in rules {
            proxy.inject(rule);
        }
        Operator::spawn(&proxy.host(), &dir, args, Some(proxy))
    }

    fn spawn(
        host: &str,
        dir: &std::path::Path,
        args: &[&str],
        proxy: Option<proxy::EngineProxy>,
    ) -> Result<Operator, String> {
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
            .env("SWARMLOG_ROOT_KEY_FILE", test_root_key())
            .env("SWARMLOG_LOG", "info")
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start swarmlog run: {e}"))?;
        Ok(Operator {
            child: Some(child),
            log,
            proxy,
            addr: std::sync::OnceLock::new(),
        })
    }

    /// The operator's log, for messages (an unreadable log says so).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log.display()))
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// What a failure message shows of it: the last `n` requests its engine
    /// proxy saw (when it has one) and the last `n` lines of its log.
    pub fn evidence(&self, n: usize) -> String {
        let calls = match &self.proxy {
            Some(p) => {
                let all = p.calls();
                let tail = &all[all.len().saturating_sub(n)..];
                format!(
                    "its last {} of {} engine calls:\n{}",
                    tail.len(),
                    all.len(),
                    proxy::describe(tail)
                )
            }
            None => "(no engine proxy)".to_string(),
        };
        format!("{calls}\nits last {n} log lines:\n{}", self.log_tail(n))
    }

    /// The engine proxy; an error when the operator was started without one.
    pub fn engine(&self) -> Result<&proxy::EngineProxy, String> {
        self.proxy
            .as_ref()
            .ok_or_else(|| "this operator was started without an engine proxy".to_string())
    }

    /// The address its HTTP API is bound to (from its log line
    /// `HTTP API up ... listen=ADDR`), waiting up to 30 s for it.
    pub fn addr(&self) -> Result<String, String> {
        if let Some(a) = self.addr.get() {
            return Ok(a.clone());
        }
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).map_err(|e| format!("read {}: {e}", self.log.display()))?;
            let found = text
                .lines()
                .filter(|l| l.contains("HTTP API up"))
                .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("listen=")))
                .map(|a| a.trim_matches('"').to_string());
            if let Some(a) = found {
                let _ = self.addr.set(a.clone());
                return Ok(a);
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!("the operator logged no bound address in 30 s:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET `path` of its HTTP API: (status code, body).
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(&self.addr()?, path)
    }

    /// Asks for a reconcile now (`POST /reconcile`; the operator must run
    /// with `--allow-unauthenticated-reconcile`).
    pub fn reconcile_now(&self) -> Result<(), String> {
        let (code, body) = http_request(&self.addr()?, "POST", "/reconcile")?;
        if code / 100 == 2 {
            Ok(())
        } else {
            Err(format!("POST /reconcile: {code} {body}"))
        }
    }

    /// Its `/status` document.
    pub fn status(&self) -> Result<serde_json::Value, String> {
        let (code, body) = self.get("/status")?;
        if code != 200 {
            return Err(format!("GET /status: {code} {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("/status is not JSON ({e}): {body}"))
    }

    /// The value of one sample of its `/metrics` (name with labels as
    /// printed, e.g. `swarmlog_writes_total{kind="service_update"}`), 0 when
    /// absent.
    pub fn metric(&self, sample: &str) -> Result<f64, String> {
        let (code, body) = self.get("/metrics")?;
        if code != 200 {
            return Err(format!("GET /metrics: {code} {body}"));
        }
        Ok(body
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .filter(|(name, _)| *name == sample)
            .filter_map(|(_, v)| v.parse::<f64>().ok())
            .sum())
    }

    /// The pid of the process (for signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit code, if it has exited.
    pub fn try_exit(&mut self) -> Result<Option<Option<i32>>, String> {
        match self.child.as_mut() {
            None => Ok(None),
            Some(c) => Ok(c.try_wait().map_err(|e| e.to_string())?.map(|s| s.code())),
        }
    }

    /// SIGKILL (no chance to finish anything), and waits for the process.
    pub fn kill(&mut self) -> Result<(), String> {
        if let Some(mut child) = self.child.take() {
            child.kill().map_err(|e| format!("SIGKILL swarmlog run: {e}"))?;
            child.wait().map_err(|e| format!("wait for swarmlog run: {e}"))?;
        }
        Ok(())
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

/// A plain HTTP/1.1 GET on loopback: (status code, body).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    http_request(addr, "GET", path)
}

/// A request without a body on loopback: (status code, body), through the
/// operator's own client (`swarmlog::client`). Runs on a thread of its own,
/// so it may be called from inside a runtime too.
pub fn http_request(addr: &str, method: &str, path: &str) -> Result<(u16, String), String> {
    let url = format!("http://{addr}{path}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("a runtime for {url}: {e}"))?;
            rt.block_on(swarmlog::client::request(method, &url, &[], Duration::from_secs(5)))
                .map(|a| (a.code, a.body))
                .map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| format!("the request to {url} panicked"))?
    })
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

/// Runs `cmd` with bash in the repository; its output, or an error with both streams.
pub fn sh(cmd: &str) -> Result<String, String> {
    let out = Command::new("bash")
        .args(["-c", cmd])
        .current_dir(repo())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{cmd}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// `cargo build` of the stand-in's package as the sandbox runs it: without
/// the variables cargo set for this test (ring's build script watches some
/// of them, so a build with them would rebuild ring after every build
/// without them, and back).
pub fn standin_cargo(repo: &std::path::Path, target_dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args(["build", "--release", "--locked", "--manifest-path"])
        .arg(repo.join("tests/standin/Cargo.toml"))
        .args(["--target", "x86_64-unknown-linux-gnu", "--target-dir"])
        .arg(target_dir);
    let set_for_us = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_ENCODED_RUSTFLAGS",
        "OUT_DIR",
    ];
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if set_for_us.iter().any(|p| k.starts_with(p)) {
            cmd.env_remove(&*k);
        }
    }
    cmd.env("RUSTFLAGS", "-C target-feature=+crt-static");
    cmd
}
