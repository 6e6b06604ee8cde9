//! Elasticsearch preflight: `vm.max_map_count` on the nodes that may run it.
//!
//! Elasticsearch refuses to start when the kernel's `vm.max_map_count` is
//! below 262144 (9.x asks for 1048576), and a swarm then restarts it forever.
//! The setting is per host and not namespaced, so a container reads the
//! host's value from `/proc/sys/vm/max_map_count`. The operator runs a
//! one-off job of its own image (`swarmlog preflight`) on each logger node,
//! reads how it ended, removes the job, and holds Elasticsearch's create and
//! update while a node is below the minimum.
//!
//! The job answers in its exit code ([`EXIT_LOW`] below the minimum) and in
//! one line of output (`vm.max_map_count=N`), read from the task's log when
//! the engine can serve it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{
    HealthConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicatedJob, TaskSpec, TaskSpecContainerSpec,
    TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use serde::Serialize;

use crate::engine::{Engine, EngineError, WriteKind};

/// Where the kernel exposes the setting (the host's, also inside a container).
pub const SYSCTL_FILE: &str = "/proc/sys/vm/max_map_count";
/// Elasticsearch 8's minimum.
pub const DEFAULT_MIN: u64 = 262_144;
/// Exit code of `swarmlog preflight` when the value is below the minimum.
pub const EXIT_LOW: u8 = 2;
/// Label on a preflight job: the stack whose operator started it.
pub const LABEL_PREFLIGHT: &str = "io.swarmlog.preflight";

/// Reads and parses the setting.
pub fn read_max_map_count(path: &str) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    text.trim()
        .parse::<u64>()
        .map_err(|_| format!("{path} holds {:?}, not a number", text.trim()))
}

/// The line the job prints, and how the operator finds it in the log.
pub fn output_line(value: u64) -> String {
    format!("vm.max_map_count={value}")
}

pub fn parse_output(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("vm.max_map_count=")?.trim().parse().ok())
}

/// How one node's check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckState {
    /// At or above the minimum.
    Ok,
    /// Below the minimum: Elasticsearch would not start there.
    Low,
    /// The job could not tell (image missing, node down, timeout).
    Unknown,
}

/// One logger node's preflight, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeCheck {
    pub node_id: String,
    pub hostname: String,
    pub state: CheckState,
    /// The value read, when the job's output could be read.
    pub value: Option<u64>,
    pub min: u64,
    pub checked_at: String,
    /// One sentence: what was found and, when low, the command that fixes it.
    pub message: String,
}

impl NodeCheck {
    /// A check that could not be made, with why.
    pub fn unknown(node_id: &str, hostname: &str, min: u64, detail: &str) -> Self {
        NodeCheck::new(node_id, hostname, min, CheckState::Unknown, None, detail)
    }

    pub fn new(node_id: &str, hostname: &str, min: u64, state: CheckState, value: Option<u64>, detail: &str) -> Self {
        let message = match state {
            CheckState::Ok => format!(
                "vm.max_map_count on {hostname} is {} (minimum {min})",
                value.map_or_else(|| "at or above the minimum".to_string(), |v| v.to_string())
            ),
            CheckState::Low => format!(
                "vm.max_map_count on {hostname} is {}below {min}: Elasticsearch will not start there; on that host run `sysctl -w vm.max_map_count={min}` and keep it with `echo vm.max_map_count={min} > /etc/sysctl.d/99-elasticsearch.conf`",
                value.map_or_else(String::new, |v| format!("{v}, "))
            ),
            CheckState::Unknown => format!("vm.max_map_count on {hostname} could not be checked: {detail}"),
        };
        NodeCheck {
            node_id: node_id.to_string(),
            hostname: hostname.to_string(),
            state,
            value,
            min,
            checked_at: crate::clock::now(),
            message,
        }
    }
}

/// What the operator remembers of a node's last check.
#[derive(Debug, Clone)]
pub struct Cached {
    pub check: NodeCheck,
    /// The node object's version when checked: it changes when the node
    /// restarts or is relabelled, which asks for a new check.
    pub node_version: u64,
    pub at: Instant,
}

/// Whether a node needs a (new) check: never checked, changed since, a
/// different minimum, or a failed or unknown result older than `recheck`.
/// A passed check stands until the node changes, so a converged swarm sees
/// no preflight writes.
pub fn due(cached: Option<&Cached>, node_version: u64, min: u64, now: Instant, recheck: Duration) -> bool {
    match cached {
        None => true,
        Some(c) if c.node_version != node_version || c.check.min != min => true,
        Some(c) if c.check.state == CheckState::Ok => false,
        Some(c) => now.saturating_duration_since(c.at) >= recheck,
    }
}

/// The name of a node's preflight job (service names are at most 63 characters).
pub fn job_name(stack: &str, node_id: &str) -> String {
    let id: String = node_id.chars().take(12).collect();
    let name = format!("{stack}_preflight_{id}");
    if name.len() <= 63 {
        return name;
    }
    // Service names end at 63 characters: keep a prefix of the stack and
    // the node id, and a hash of both so two long stacks never share one.
    let hash = crate::render::desired::spec_hash(&(stack, node_id));
    let prefix: String = stack.chars().take(63 - "_pf_".len() - 12 - 1 - 8).collect();
    format!("{prefix}_pf_{id}_{}", &hash[..8])
}

/// The one-off job: one task, on that node only, never restarted.
pub fn job_spec(stack: &str, image: &str, node_id: &str, min: u64) -> ServiceSpec {
    ServiceSpec {
        name: Some(job_name(stack, node_id)),
        labels: Some(HashMap::from([(LABEL_PREFLIGHT.to_string(), stack.to_string())])),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.to_string()),
                args: Some(vec![
                    "preflight".to_string(),
                    "--min-map-count".to_string(),
                    min.to_string(),
                ]),
                // The image's own health check is for the operator, not this job.
                health_check: Some(HealthConfig {
                    test: Some(vec!["NONE".to_string()]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(vec![format!("node.id=={node_id}")]),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(bollard::models::Limit {
                    memory_bytes: Some(32 * 1024 * 1024),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How a finished task reads: state, exit code, error text.
pub fn verdict(
    state: TaskState,
    exit_code: Option<i64>,
    err: Option<&str>,
    value: Option<u64>,
) -> (CheckState, String) {
    match state {
        TaskState::COMPLETE => (CheckState::Ok, String::new()),
        TaskState::FAILED if exit_code == Some(i64::from(EXIT_LOW)) => (CheckState::Low, String::new()),
        _ => {
            let mut detail = format!("the check task ended {state}");
            if let Some(code) = exit_code.filter(|c| *c != 0) {
                detail.push_str(&format!(" with exit code {code}"));
            }
            if let Some(e) = err.filter(|e| !e.is_empty()) {
                detail.push_str(&format!(": {e}"));
            }
            if value.is_some() {
                detail.push_str(" (its output was read)");
            }
            (CheckState::Unknown, detail)
        }
    }
}

fn finished(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::COMPLETE
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::SHUTDOWN
            | TaskState::ORPHANED
            | TaskState::REMOVE
    )
}

/// Runs the check on one node and removes the job, whatever happened.
/// Engine errors creating the job are returned; everything after it ends up
/// in the check (Unknown with the reason).
pub async fn check_node(
    engine: &Engine,
    stack: &str,
    image: &str,
    node_id: &str,
    hostname: &str,
    min: u64,
    timeout: Duration,
) -> Result<NodeCheck, EngineError> {
    let name = job_name(stack, node_id);
    // A job left behind by an operator that stopped mid-check.
    remove_job(engine, &name).await;
    engine
        .create_service(&name, job_spec(stack, image, node_id, min), WriteKind::PreflightJob)
        .await?;
    let result = wait_job(engine, &name, timeout).await;
    remove_job(engine, &name).await;
    Ok(match result {
        Ok((state, code, err, value)) => {
            let (s, detail) = verdict(state, code, err.as_deref(), value);
            NodeCheck::new(node_id, hostname, min, s, value, &detail)
        }
        Err(detail) => NodeCheck::new(node_id, hostname, min, CheckState::Unknown, None, &detail),
    })
}

type Finished = (TaskState, Option<i64>, Option<String>, Option<u64>);

async fn wait_job(engine: &Engine, name: &str, timeout: Duration) -> Result<Finished, String> {
    let started = Instant::now();
    let mut last = String::from("no task yet");
    loop {
        let tasks = engine.service_tasks(name, false).await.map_err(|e| e.to_string())?;
        for t in &tasks {
            let Some(status) = t.status.as_ref() else { continue };
            let Some(state) = status.state else { continue };
            last = format!(
                "task {state}{}",
                status
                    .err
                    .as_deref()
                    .filter(|e| !e.is_empty())
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            if finished(state) {
                let code = status.container_status.as_ref().and_then(|c| c.exit_code);
                let value = match t.id.as_deref() {
                    Some(id) => task_output(engine, id).await,
                    None => None,
                };
                return Ok((state, code, status.err.clone(), value));
            }
        }
        if started.elapsed() >= timeout {
            return Err(format!(
                "no result within {} ({last})",
                humantime::format_duration(timeout)
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value the job printed, when the engine serves the task's log.
async fn task_output(engine: &Engine, task_id: &str) -> Option<u64> {
    let read = engine.task_output(task_id, 4096);
    match tokio::time::timeout(Duration::from_secs(5), read).await {
        Ok(Ok(text)) => parse_output(&text),
        Ok(Err(e)) => {
            tracing::debug!(task = %task_id, error = %e, "preflight output unreadable; the exit code decides");
            None
        }
        Err(_) => None,
    }
}

/// Removes a job service if it exists (a missing one is fine).
pub async fn remove_job(engine: &Engine, name: &str) {
    match engine.remove_service(name, name, WriteKind::PreflightJobRemove).await {
        Ok(()) | Err(EngineError::NotFound { .. }) => {}
        Err(e) => tracing::warn!(job = %name, error = %e, "could not remove a preflight job"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit_and_never_collide() {
        let id = "abcdefghijkl0123456789";
        assert_eq!(job_name("logging", id), "logging_preflight_abcdefghijkl");
        let a = "s".repeat(60);
        let b = format!("{}x", "s".repeat(59));
        let (na, nb) = (job_name(&a, id), job_name(&b, id));
        assert!(na.len() <= 63 && nb.len() <= 63, "{na} {nb}");
        assert_ne!(na, nb, "two long stacks share a job name");
        assert_ne!(job_name(&a, "node-one-000"), job_name(&a, "node-two-000"));
    }

    fn cached(state: CheckState, version: u64, at: Instant) -> Cached {
        Cached {
            check: NodeCheck::new("n1", "logger-1", DEFAULT_MIN, state, Some(1), ""),
            node_version: version,
            at,
        }
    }

    #[test]
    fn reads_and_parses_the_setting() {
        let dir = std::env::temp_dir().join(format!("swarmlog-preflight-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("max_map_count");
        std::fs::write(&f, "65530\n").unwrap();
        assert_eq!(read_max_map_count(f.to_str().unwrap()), Ok(65530));
        std::fs::write(&f, "lots\n").unwrap();
        let e = read_max_map_count(f.to_str().unwrap()).unwrap_err();
        assert!(e.contains("not a number"), "{e}");
        let e = read_max_map_count(dir.join("missing").to_str().unwrap()).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn output_round_trip() {
        assert_eq!(parse_output(&format!("noise\n{}\n", output_line(262144))), Some(262144));
        assert_eq!(parse_output("vm.max_map_count=abc"), None);
        assert_eq!(parse_output(""), None);
    }

    #[test]
    fn when_a_node_is_checked_again() {
        let t0 = Instant::now();
        let r = Duration::from_secs(60);
        assert!(due(None, 1, DEFAULT_MIN, t0, r));
        let ok = cached(CheckState::Ok, 5, t0);
        assert!(!due(Some(&ok), 5, DEFAULT_MIN, t0 + Duration::from_secs(86_400), r));
        assert!(due(Some(&ok), 6, DEFAULT_MIN, t0, r), "the node changed");
        assert!(due(Some(&ok), 5, 1_048_576, t0, r), "the minimum changed");
        let low = cached(CheckState::Low, 5, t0);
        assert!(!due(Some(&low), 5, DEFAULT_MIN, t0 + Duration::from_secs(59), r));
        assert!(due(Some(&low), 5, DEFAULT_MIN, t0 + r, r));
        let unknown = cached(CheckState::Unknown, 5, t0);
        assert!(due(Some(&unknown), 5, DEFAULT_MIN, t0 + r, r));
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            verdict(TaskState::COMPLETE, Some(0), None, Some(300_000)).0,
            CheckState::Ok
        );
        assert_eq!(
            verdict(
                TaskState::FAILED,
                Some(i64::from(EXIT_LOW)),
                Some("task: non-zero exit (2)"),
                Some(65530)
            )
            .0,
            CheckState::Low
        );
        let (s, d) = verdict(TaskState::FAILED, Some(1), Some("task: non-zero exit (1)"), None);
        assert_eq!(s, CheckState::Unknown);
        assert!(d.contains("exit code 1") && d.contains("non-zero exit"), "{d}");
        let (s, d) = verdict(TaskState::REJECTED, None, Some("No such image: swarmlog:1"), None);
        assert_eq!(s, CheckState::Unknown);
        assert!(d.contains("No such image"), "{d}");
    }

    #[test]
    fn messages_name_the_node_and_the_fix() {
        let low = NodeCheck::new("n1", "logger-1", DEFAULT_MIN, CheckState::Low, Some(65530), "");
        assert!(
            low.message.contains("logger-1") && low.message.contains("65530"),
            "{}",
            low.message
        );
        assert!(
            low.message.contains("sysctl -w vm.max_map_count=262144"),
            "{}",
            low.message
        );
        let unknown = NodeCheck::new("n1", "logger-1", DEFAULT_MIN, CheckState::Unknown, None, "timed out");
        assert!(unknown.message.ends_with("timed out"), "{}", unknown.message);
    }

    #[test]
    fn job_is_one_task_on_that_node() {
        let spec = job_spec("logging", "swarmlog:1", "abcdefghijklmnopqrstuvwxyz", 262144);
        assert_eq!(spec.name.as_deref(), Some("logging_preflight_abcdefghijkl"));
        let t = spec.task_template.as_ref().unwrap();
        assert_eq!(
            t.placement.as_ref().unwrap().constraints.as_ref().unwrap(),
            &vec!["node.id==abcdefghijklmnopqrstuvwxyz".to_string()]
        );
        assert_eq!(
            t.restart_policy.as_ref().unwrap().condition,
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        assert_eq!(
            spec.mode
                .as_ref()
                .unwrap()
                .replicated_job
                .as_ref()
                .unwrap()
                .total_completions,
            Some(1)
        );
        assert!(job_name(&"s".repeat(80), "id").len() <= 63);
        assert_eq!(
            spec.labels.unwrap().get(LABEL_PREFLIGHT).map(String::as_str),
            Some("logging")
        );
    }
}
