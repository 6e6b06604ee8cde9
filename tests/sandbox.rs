//! scripts/sandbox itself: a node whose network was lost starts again
//! (issue 11), the same sandbox name in two checkouts coexists, a killed
//! run's sandbox is collected by `gc` and `up` copes with its leftovers, and
//! no script pipes into `grep -q` under pipefail.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// `scripts/sandbox ARGS` of the checkout at `root`.
fn sandbox_at(root: &Path, args: &[&str]) -> Output {
    match Command::new(root.join("scripts/sandbox"))
        .args(args)
        .current_dir(root)
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("cannot run {}/scripts/sandbox: {e}", root.display()),
    }
}

fn ok(o: &Output, what: &str) -> Result<String, String> {
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).to_string())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// A sandbox of one checkout, taken down (by name) when dropped.
struct Small {
    root: PathBuf,
    name: String,
}

impl Small {
    /// One manager, no workers, owned by this test process.
    fn up(root: &Path, name: &str) -> Result<Small, String> {
        let s = Small {
            root: root.to_path_buf(),
            name: name.to_string(),
        };
        let pid = std::process::id().to_string();
        ok(
            &sandbox_at(root, &["up", "--name", name, "--workers", "0", "--owner", &pid]),
            &format!("up {name} in {}", root.display()),
        )?;
        Ok(s)
    }

    fn cmd(&self, cmd: &str, args: &[&str]) -> Output {
        let mut all = vec![cmd, "--name", &self.name];
        all.extend_from_slice(args);
        sandbox_at(&self.root, &all)
    }

    fn state(&self) -> PathBuf {
        self.root.join("target/sandbox").join(&self.name)
    }

    /// A value of the node file of `host`.
    fn node_var(&self, host: &str, var: &str) -> Result<String, String> {
        let f = self.state().join("nodes").join(format!("{host}.env"));
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{var}=")))
            .map(str::to_string)
            .ok_or_else(|| format!("{} has no {var}", f.display()))
    }

    /// manager-1 answers `docker info`.
    fn answers(&self) -> bool {
        let sock = self.state().join("manager-1.sock");
        Command::new("docker")
            .args([
                "-H",
                &format!("unix://{}", sock.display()),
                "info",
                "--format",
                "{{.Swarm.LocalNodeState}}",
            ])
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "active")
    }
}

impl Drop for Small {
    fn drop(&mut self) {
        let o = self.cmd("down", &[]);
        if !o.status.success() {
            eprintln!("down {}: {}", self.name, String::from_utf8_lossy(&o.stderr));
        }
    }
}

fn links() -> String {
    Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default()
}

fn namespaces() -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .map(|rd| {
            rd.filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Issue 11: node-start of a node whose network is gone (its host-side veth
/// deleted) rebuilds it; before, it died with "NODE_PEER: unbound variable"
/// because the node file did not record it.
#[test]
fn node_start_rebuilds_a_lost_network() -> Result<(), String> {
    let sb = Small::up(&common::repo(), &common::run_name("sbnet"))?;
    ok(&sb.cmd("node-stop", &["manager-1"]), "node-stop manager-1")?;
    let veth = sb.node_var("manager-1", "NODE_VETH")?;
    let del = Command::new("ip")
        .args(["link", "delete", &veth])
        .output()
        .map_err(|e| e.to_string())?;
    ok(&del, &format!("ip link delete {veth}"))?;
    ok(
        &sb.cmd("node-start", &["manager-1"]),
        "node-start manager-1 with its network gone",
    )?;
    if !sb.answers() {
        return Err("manager-1 does not answer after node-start".into());
    }
    // And a plain restart keeps the network as it is.
    ok(&sb.cmd("node-stop", &["manager-1"]), "node-stop manager-1")?;
    ok(&sb.cmd("node-start", &["manager-1"]), "node-start manager-1")?;
    if !sb.answers() {
        return Err("manager-1 does not answer after a plain restart".into());
    }
    Ok(())
}

/// Issue 11's cause: `ip ... | grep -q` under pipefail fails now and then
/// (grep leaves at the first match, `ip` dies of SIGPIPE writing its next
/// line), so a healthy node looked broken. No script may pipe into `grep -q`
/// (capture the output, or let grep read everything).
#[test]
fn no_script_pipes_into_grep_q_under_pipefail() -> Result<(), String> {
    let mut found = Vec::new();
    for dir in ["scripts", "bench"] {
        let rd = std::fs::read_dir(common::repo().join(dir)).map_err(|e| e.to_string())?;
        for entry in rd.filter_map(|e| e.ok()) {
            let path = entry.path();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if !text.contains("pipefail") {
                continue;
            }
            for (i, line) in text.lines().enumerate() {
                let code = line.split(" #").next().unwrap_or_default();
                let piped_q = code.split('|').skip(1).any(|seg| {
                    let seg = seg.trim_start();
                    seg.starts_with("grep")
                        && seg
                            .split_whitespace()
                            .any(|w| w.starts_with('-') && !w.starts_with("--") && w.contains('q'))
                });
                if piped_q {
                    found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                }
            }
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("pipes into grep -q under pipefail:\n{}", found.join("\n")))
    }
}

/// A second checkout of the repository: the scripts and the stand-in, in a
/// directory of its own (its own checkout id).
fn second_checkout() -> Result<PathBuf, String> {
    let root = common::repo().join("target/c2");
    let _ = std::fs::remove_dir_all(root.join("scripts"));
    for d in ["scripts", "tests/standin"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
    }
    std::fs::copy(common::repo().join("scripts/sandbox"), root.join("scripts/sandbox"))
        .map_err(|e| format!("copy scripts/sandbox: {e}"))?;
    // The stand-in's every file (its modules too).
    let standin = common::repo().join("tests/standin");
    for entry in std::fs::read_dir(&standin).map_err(|e| format!("read {}: {e}", standin.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_file() {
            let to = root.join("tests/standin").join(path.file_name().unwrap_or_default());
            std::fs::copy(&path, &to).map_err(|e| format!("copy {}: {e}", path.display()))?;
        }
    }
    Ok(root)
}

/// Issue 16: fixed names meant two runs destroyed each other's sandbox. The
/// same name in two checkouts now gives two sandboxes that coexist: `up` and
/// `down` in one leave the other running.
#[test]
fn same_name_in_two_checkouts_coexists() -> Result<(), String> {
    // Short: the second checkout's socket paths are longer.
    let name = common::run_name("s2");
    let here = Small::up(&common::repo(), &name)?;
    let other_root = second_checkout()?;
    let other = Small::up(&other_root, &name)?;
    if !here.answers() {
        return Err("`up` of the same name in another checkout broke this checkout's sandbox".into());
    }
    if !other.answers() {
        return Err("the other checkout's sandbox does not answer".into());
    }
    let idx = |s: &Small| std::fs::read_to_string(s.state().join("sandbox.env")).unwrap_or_default();
    if idx(&here).lines().find(|l| l.starts_with("IDX=")) == idx(&other).lines().find(|l| l.starts_with("IDX=")) {
        return Err("both sandboxes have the same index".into());
    }
    drop(other);
    if !here.answers() {
        return Err("`down` in the other checkout broke this checkout's sandbox".into());
    }
    Ok(())
}

/// A run killed with SIGKILL (as CI does before it starts) leaves daemons
/// dead and namespaces, links, pid files and data roots behind: `gc`
/// collects a sandbox whose owner is gone, and `up` of a name whose daemons
/// were killed starts cleanly over the leftovers.
#[test]
fn killed_runs_are_collected_and_up_copes_with_leftovers() -> Result<(), String> {
    let root = common::repo();
    let name = common::run_name("sbgc");
    // The owner: a child process that is killed like a test run would be.
    let mut owner = Command::new("sleep").arg("600").spawn().map_err(|e| e.to_string())?;
    let pid = owner.id().to_string();
    let up = sandbox_at(&root, &["up", "--name", &name, "--workers", "0", "--owner", &pid]);
    let guard = Small {
        root: root.clone(),
        name: name.clone(),
    };
    ok(&up, "up with an owner")?;
    kill_sandbox_processes(&guard)?;
    let _ = owner.kill();
    let _ = owner.wait();
    // Leftovers now: state dir with stale pid files, namespace, links.
    let alias = format!("slg:{}:{name}", checkout_id(&guard)?);
    if !links().contains(&alias) {
        return Err("the killed sandbox left no link behind (nothing to test)".into());
    }
    ok(&sandbox_at(&root, &["gc"]), "gc")?;
    if guard.state().exists() {
        return Err(format!("gc left {}", guard.state().display()));
    }
    if links().contains(&alias) || namespaces().iter().any(|n| n.contains(&format!("-{name}-"))) {
        return Err(format!(
            "gc left links or namespaces of {name}:\n{}\n{:?}",
            links(),
            namespaces()
        ));
    }
    // Killed again, without an owner this time: `up` of the same name over
    // the leftovers.
    ok(&sandbox_at(&root, &["up", "--name", &name, "--workers", "0"]), "up")?;
    kill_sandbox_processes(&guard)?;
    ok(&sandbox_at(&root, &["gc"]), "gc")?;
    if !guard.state().exists() {
        return Err("gc removed a sandbox that has no owner".into());
    }
    ok(
        &sandbox_at(&root, &["up", "--name", &name, "--workers", "0"]),
        "up over a killed sandbox",
    )?;
    if !guard.answers() {
        return Err("manager-1 does not answer after up over leftovers".into());
    }
    drop(guard);
    if links().contains(&alias) || namespaces().iter().any(|n| n.contains(&format!("-{name}-"))) {
        return Err("down left links or namespaces behind".into());
    }
    Ok(())
}

fn checkout_id(s: &Small) -> Result<String, String> {
    let text = std::fs::read_to_string(s.state().join("sandbox.env")).map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix("CHECKOUT="))
        .map(str::to_string)
        .ok_or_else(|| "sandbox.env has no CHECKOUT".to_string())
}

/// SIGKILL every dockerd of the sandbox (found by the pid files it
/// recorded) and wait until they are gone: what CI does to a session's
/// processes.
fn kill_sandbox_processes(s: &Small) -> Result<(), String> {
    let nodes = s.state().join("nodes");
    let mut pids = Vec::new();
    for e in std::fs::read_dir(&nodes)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
    {
        if e.path().extension().is_some_and(|x| x == "pid") {
            let text = std::fs::read_to_string(e.path()).map_err(|e| e.to_string())?;
            pids.push(text.trim().to_string());
        }
    }
    if pids.is_empty() {
        return Err("no recorded dockerd pid".into());
    }
    for p in &pids {
        let _ = Command::new("kill").args(["-KILL", p]).status();
    }
    let start = std::time::Instant::now();
    while pids.iter().any(|p| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
    }) {
        if start.elapsed() > Duration::from_secs(20) {
            return Err(format!("dockerd pids {pids:?} still alive after SIGKILL"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
