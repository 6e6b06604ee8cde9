//! Render step, desired state: deploy — a service's resources, restart
//! policy, update and rollback config, mode, placement and labels.

use std::collections::HashMap;

use bollard::models::{
    Limit, ResourceObject, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, TaskSpecPlacement,
    TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};

use super::{owned_labels, Ctx, LABEL_IMAGE, LABEL_PREFLIGHT_MAP_COUNT};
use crate::render::compose::model::{Deploy, ResourceAmounts, UpdateConfig};
use crate::render::compose::units;

/// Checks `deploy.placement.constraints`; each bad one is a problem.
pub(super) fn check_constraints(ctx: &mut Ctx, key: &str, deploy: &Deploy) {
    for (i, c) in deploy.placement.constraints.iter().enumerate() {
        if let Err(e) = units::constraint(c) {
            ctx.problem(
                &["services", key, "deploy", "placement", "constraints", &i.to_string()],
                e,
            );
        }
    }
}

/// `deploy.resources`: limits and reservations.
pub(super) fn resources(ctx: &mut Ctx, key: &str, deploy: &Deploy) -> TaskSpecResources {
    let mut r = TaskSpecResources::default();
    if let Some(l) = &deploy.resources.limits {
        let (nano_cpus, memory_bytes) = amounts(ctx, key, "limits", l);
        r.limits = Some(Limit {
            nano_cpus,
            memory_bytes,
            pids: l.pids.filter(|p| *p != 0),
        });
    }
    if let Some(l) = &deploy.resources.reservations {
        let (nano_cpus, memory_bytes) = amounts(ctx, key, "reservations", l);
        r.reservations = Some(ResourceObject {
            nano_cpus,
            memory_bytes,
            generic_resources: None,
        });
    }
    r
}

/// CPUs (in nano CPUs) and memory (in bytes) of `limits` or `reservations`
/// (`which`); zero is unset.
fn amounts(ctx: &mut Ctx, key: &str, which: &str, a: &ResourceAmounts) -> (Option<i64>, Option<i64>) {
    let cpus = a.cpus.as_ref().and_then(|c| match units::nano_cpus(c) {
        Ok(n) => Some(n),
        Err(e) => {
            ctx.problem(&["services", key, "deploy", "resources", which, "cpus"], e);
            None
        }
    });
    let mem = a.memory.as_ref().and_then(|m| match units::ram_bytes(m) {
        Ok(n) => Some(n),
        Err(e) => {
            ctx.problem(&["services", key, "deploy", "resources", which, "memory"], e);
            None
        }
    });
    (cpus.filter(|c| *c != 0), mem.filter(|m| *m != 0))
}

/// `deploy.restart_policy`, if set.
pub(super) fn restart_policy(ctx: &mut Ctx, key: &str, deploy: &Deploy) -> Option<TaskSpecRestartPolicy> {
    let rp = deploy.restart_policy.as_ref()?;
    let condition = match rp.condition.as_deref() {
        None => None,
        Some("none") => Some(TaskSpecRestartPolicyConditionEnum::NONE),
        Some("on-failure") => Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
        Some("any") => Some(TaskSpecRestartPolicyConditionEnum::ANY),
        Some(other) => {
            ctx.problem(
                &["services", key, "deploy", "restart_policy", "condition"],
                format!("invalid restart condition {other:?} (expected none, on-failure or any)"),
            );
            None
        }
    };
    Some(TaskSpecRestartPolicy {
        condition,
        delay: ctx.duration(&["services", key, "deploy", "restart_policy", "delay"], &rp.delay),
        max_attempts: rp.max_attempts.map(|m| m as i64),
        window: ctx.duration(&["services", key, "deploy", "restart_policy", "window"], &rp.window),
    })
}

/// `deploy.update_config`, if set.
pub(super) fn update_config(ctx: &mut Ctx, key: &str, deploy: &Deploy) -> Option<ServiceSpecUpdateConfig> {
    let u = convert_update(ctx, key, "update_config", deploy.update_config.as_ref()?);
    Some(ServiceSpecUpdateConfig {
        parallelism: Some(u.parallelism),
        delay: u.delay,
        failure_action: u.failure_action.as_deref().map(|f| match f {
            "continue" => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            "rollback" => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
            _ => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
        }),
        monitor: u.monitor,
        max_failure_ratio: u.max_failure_ratio,
        order: u.order.as_deref().map(|o| match o {
            "start-first" => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
            _ => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
        }),
    })
}

/// `deploy.rollback_config`, if set.
pub(super) fn rollback_config(ctx: &mut Ctx, key: &str, deploy: &Deploy) -> Option<ServiceSpecRollbackConfig> {
    let u = convert_update(ctx, key, "rollback_config", deploy.rollback_config.as_ref()?);
    Some(ServiceSpecRollbackConfig {
        parallelism: Some(u.parallelism),
        delay: u.delay,
        failure_action: u.failure_action.as_deref().map(|f| match f {
            "continue" => ServiceSpecRollbackConfigFailureActionEnum::CONTINUE,
            _ => ServiceSpecRollbackConfigFailureActionEnum::PAUSE,
        }),
        monitor: u.monitor,
        max_failure_ratio: u.max_failure_ratio,
        order: u.order.as_deref().map(|o| match o {
            "start-first" => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
            _ => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
        }),
    })
}

/// The fields update and rollback configs share, checked.
struct Update {
    parallelism: i64,
    delay: Option<i64>,
    failure_action: Option<String>,
    monitor: Option<i64>,
    max_failure_ratio: Option<f64>,
    order: Option<String>,
}

fn convert_update(ctx: &mut Ctx, key: &str, which: &str, u: &UpdateConfig) -> Update {
    let base = ["services", key, "deploy", which];
    let with = |f: &'static str| {
        let mut p = base.to_vec();
        p.push(f);
        p
    };
    if let Some(f) = u.failure_action.as_deref() {
        let allowed: &[&str] = if which == "update_config" {
            &["pause", "continue", "rollback"]
        } else {
            &["pause", "continue"]
        };
        if !allowed.contains(&f) {
            ctx.problem(
                &with("failure_action"),
                format!("invalid failure_action {f:?} (expected one of {})", allowed.join(", ")),
            );
        }
    }
    if let Some(o) = u.order.as_deref() {
        if o != "start-first" && o != "stop-first" {
            ctx.problem(
                &with("order"),
                format!("invalid order {o:?} (expected stop-first or start-first)"),
            );
        }
    }
    Update {
        parallelism: u.parallelism.unwrap_or(1) as i64,
        delay: ctx.duration(&with("delay"), &u.delay).filter(|d| *d != 0),
        failure_action: u.failure_action.clone(),
        monitor: ctx.duration(&with("monitor"), &u.monitor).filter(|d| *d != 0),
        max_failure_ratio: u.max_failure_ratio.filter(|r| *r != 0.0),
        order: u.order.clone(),
    }
}

/// `deploy.mode` with `deploy.replicas`.
pub(super) fn mode(ctx: &mut Ctx, key: &str, deploy: &Deploy) -> ServiceSpecMode {
    match deploy.mode.as_deref() {
        None | Some("replicated") => ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: deploy.replicas.map(|r| r as i64),
            }),
            ..Default::default()
        },
        Some("global") => {
            if deploy.replicas.is_some() {
                ctx.problem(
                    &["services", key, "deploy", "replicas"],
                    "replicas cannot be set in global mode",
                );
            }
            ServiceSpecMode {
                global: Some(HashMap::new()),
                ..Default::default()
            }
        }
        Some(other) => {
            ctx.problem(
                &["services", key, "deploy", "mode"],
                format!("invalid mode {other:?} (expected replicated or global)"),
            );
            ServiceSpecMode::default()
        }
    }
}

/// `deploy.placement` (constraints are checked by `check_constraints`).
pub(super) fn placement(deploy: &Deploy) -> TaskSpecPlacement {
    let placement = &deploy.placement;
    TaskSpecPlacement {
        constraints: (!placement.constraints.is_empty()).then(|| placement.constraints.clone()),
        preferences: (!placement.preferences.is_empty()).then(|| {
            placement
                .preferences
                .iter()
                .map(|p| TaskSpecPlacementPreferences {
                    spread: Some(TaskSpecPlacementSpread {
                        spread_descriptor: Some(p.spread.clone()),
                    }),
                })
                .collect()
        }),
        max_replicas: placement.max_replicas_per_node.map(|m| m as i64).filter(|m| *m != 0),
        ..Default::default()
    }
}

/// Checks swarmlog's own service labels in `deploy.labels`.
pub(super) fn check_labels(ctx: &mut Ctx, key: &str, deploy: &Deploy) {
    if let Some(v) = deploy.labels.get(LABEL_PREFLIGHT_MAP_COUNT) {
        if v.trim().parse::<u64>().is_err() {
            ctx.problem(
                &["services", key, "deploy", "labels", LABEL_PREFLIGHT_MAP_COUNT],
                format!("must be a whole number (the minimum vm.max_map_count; 0 turns the check off), not {v:?}"),
            );
        }
    }
}

/// The service's labels: `deploy.labels` plus the stack's and the image's.
pub(super) fn labels(stack: &str, deploy: &Deploy, image: &str) -> HashMap<String, String> {
    let mut labels = owned_labels(stack, &deploy.labels);
    labels.insert(LABEL_IMAGE.to_string(), image.to_string());
    labels
}
