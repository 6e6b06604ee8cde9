//! The HTTP API of a running operator against the sandbox swarm: every
//! endpoint answers while it reconciles; the phase and object states follow
//! a blocked stack and its healing.

use std::time::Duration;

use crate::common::{wait_for, Sandbox};
use crate::controller::Operator;

pub fn http_api_follows_the_stack(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "ithttp";
    let sel = "--set=nodeSelector.label=httpsel";
    // On a free port: the address comes from the operator's log.
    let op = Operator::start(sb, stack, &["--stack", stack, sel, "--resync", "10m"])?;
    let listen = op.addr()?;
    let get = |path: &str| op.get(path);
    let status = || op.status();
    let result = rt.block_on(async {
        // Blocked: no node carries the selector's label.
        let s = wait_for("phase Degraded (blocked)", Duration::from_secs(30), || async {
            let s = status().ok();
            Ok(s.filter(|s| s["phase"] == "Degraded"))
        })
        .await?;
        if !s["blocked"].to_string().contains("no node satisfies") {
            return Err(format!("the block is not explained: {}", s["blocked"]));
        }
        if !s["objects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|o| o["state"] == "missing")
        {
            return Err(format!("no object is shown missing: {}", s["objects"]));
        }
        // Every endpoint answers.
        for path in ["/healthz", "/readyz", "/metrics", "/"] {
            let (code, body) = get(path)?;
            if code != 200 {
                return Err(format!("{path}: {code} {body}"));
            }
        }
        let (code, page) = get("/")?;
        if code != 200 || !page.contains("Degraded") {
            return Err(format!("the page does not show the phase: {code}"));
        }
        let (code, _) = get("/nope")?;
        if code != 404 {
            return Err(format!("unknown path answered {code}"));
        }
        // Heal: label a node; the stack converges and the phase follows.
        sb.docker(&["node", "update", "--label-add", "httpsel=true", "logger-1"])?;
        let s = wait_for("phase Converged", Duration::from_secs(60), || async {
            Ok(status().ok().filter(|s| s["phase"] == "Converged"))
        })
        .await?;
        let states: Vec<String> = s["objects"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| o["state"].to_string())
            .collect();
        if states.iter().any(|st| st != "\"in-sync\"") {
            return Err(format!("objects not in sync once converged: {states:?}"));
        }
        chromium_renders_the_page(&listen)?;
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmlog"))
            .args(["status", "--url", &format!("http://{listen}")])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.code() != Some(0) || !String::from_utf8_lossy(&out.stdout).contains("Converged") {
            return Err(format!("swarmlog status on a converged stack: {:?}", out));
        }
        Ok(())
    });
    drop(op);
    let _ = sb.docker(&["node", "update", "--label-rm", "httpsel", "logger-1"]);
    result?;
    rt.block_on(async {
        let docker = sb.client().await?;
        crate::remove_stack(sb, &docker, stack).await
    })
}

/// The page in headless Chromium: it loads, shows the phase, asks for
/// nothing else (no scripts, styles or images from anywhere), and a
/// screenshot is kept in target/test-artifacts/status-page.png.
fn chromium_renders_the_page(listen: &str) -> Result<(), String> {
    let dir = crate::common::repo().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let profile = crate::common::temp_dir("chromium-profile");
    let shot = dir.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,1400",
    ];
    let run = |extra: &[String]| {
        std::process::Command::new("chromium")
            .args(flags)
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(format!("http://{listen}/"))
            .output()
            .map_err(|e| format!("cannot run chromium (scripts/prereqs installs it): {e}"))
    };
    let dom = run(&["--dump-dom".to_string()])?;
    let html = String::from_utf8_lossy(&dom.stdout).to_string();
    if !html.contains("id=\"phase\"") || !html.contains("Converged") {
        return Err(format!(
            "chromium's DOM lacks the phase:\n{}",
            String::from_utf8_lossy(&dom.stderr)
        ));
    }
    for asked in ["<script", "<link", "<img", "src=", "url("] {
        if html.contains(asked) {
            return Err(format!("the page asks for another resource ({asked})"));
        }
    }
    let out = run(&[format!("--screenshot={}", shot.display())])?;
    let png =
        std::fs::read(&shot).map_err(|e| format!("no screenshot ({e}): {}", String::from_utf8_lossy(&out.stderr)))?;
    if !png.starts_with(b"\x89PNG") || png.len() < 5000 {
        return Err(format!("the screenshot is not a PNG of the page ({} bytes)", png.len()));
    }
    Ok(())
}
