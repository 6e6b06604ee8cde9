//! Render step, desired state: service — a service's spec, assembled from one
//! conversion per concern (mounts, configs and secrets, deploy, ports,
//! networks) plus the container's own fields.

use bollard::models::{
    EndpointSpec, HealthConfig, Mount, ResourcesUlimits, ServiceSpec, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecConfigs, TaskSpecContainerSpecDnsConfig, TaskSpecContainerSpecIsolationEnum,
    TaskSpecContainerSpecPrivileges, TaskSpecContainerSpecSecrets, TaskSpecLogDriver,
};

use super::{deploy, files, mounts, networks, ports, scope, stack_labels, Ctx, Names};
use crate::render::compose::model::Service;

/// A service's spec and the named volumes it mounts.
pub(super) struct RenderedService {
    pub spec: ServiceSpec,
    /// Named volumes the stack creates.
    pub volumes: Vec<String>,
    /// Named volumes declared external.
    pub external_volumes: Vec<String>,
}

/// Converts service `key`; `None` when it has problems (all are recorded).
pub(super) fn service_spec(ctx: &mut Ctx, key: &str, svc: &Service, names: &Names) -> Option<RenderedService> {
    let stack = ctx.stack;
    let deploy = &svc.deploy;
    let before = ctx.problems.len();
    let image = image(ctx, key, svc);
    let mounts = mounts::mounts(ctx, key, svc);
    let configs = files::config_refs(ctx, key, svc, &names.configs);
    let secrets = files::secret_refs(ctx, key, svc, &names.secrets);
    let health_check = health_check(ctx, key, svc);
    deploy::check_constraints(ctx, key, deploy);
    let resources = deploy::resources(ctx, key, deploy);
    let restart_policy = deploy::restart_policy(ctx, key, deploy);
    let update_config = deploy::update_config(ctx, key, deploy);
    let rollback_config = deploy::rollback_config(ctx, key, deploy);
    let mode = deploy::mode(ctx, key, deploy);
    let endpoint_mode = ports::endpoint_mode(ctx, key, deploy);
    let ports = ports::ports(ctx, key, svc);
    let networks = networks::attachments(stack, key, svc, &names.networks);
    let stop_grace_period = ctx.duration(&["services", key, "stop_grace_period"], &svc.stop_grace_period);
    let isolation = isolation(ctx, key, svc);
    let hosts = extra_hosts(ctx, key, svc);
    deploy::check_labels(ctx, key, deploy);
    if ctx.problems.len() > before {
        return None;
    }
    let container = Container {
        image: image.clone(),
        mounts: mounts.mounts,
        configs,
        secrets,
        health_check,
        stop_grace_period,
        isolation,
        hosts,
    };
    let spec = ServiceSpec {
        name: Some(scope(stack, key)),
        labels: Some(deploy::labels(stack, deploy, &image)),
        task_template: Some(TaskSpec {
            container_spec: Some(container_spec(stack, svc, container)),
            resources: Some(resources),
            restart_policy,
            placement: Some(deploy::placement(deploy)),
            networks: Some(networks),
            log_driver: svc.logging.as_ref().map(|l| TaskSpecLogDriver {
                name: l.driver.clone(),
                options: (!l.options.is_empty())
                    .then(|| l.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            }),
            ..Default::default()
        }),
        mode: Some(mode),
        update_config,
        rollback_config,
        endpoint_spec: Some(EndpointSpec {
            mode: endpoint_mode,
            ports: (!ports.is_empty()).then_some(ports),
        }),
        ..Default::default()
    };
    Some(RenderedService {
        spec,
        volumes: mounts.volumes,
        external_volumes: mounts.external,
    })
}

/// The service's image; a missing one is a problem.
fn image(ctx: &mut Ctx, key: &str, svc: &Service) -> String {
    match svc.image.as_deref().map(str::trim) {
        Some(i) if !i.is_empty() => i.to_string(),
        _ => {
            ctx.problem(&["services", key], "a service needs an image");
            String::new()
        }
    }
}

/// Environment, as `KEY=VALUE` strings sorted like docker sorts them.
fn environment(svc: &Service) -> Vec<String> {
    let mut env: Vec<String> = svc
        .environment
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect();
    env.sort();
    env
}

/// `healthcheck:`, if set; zero durations and retries are unset.
fn health_check(ctx: &mut Ctx, key: &str, svc: &Service) -> Option<HealthConfig> {
    let h = svc.healthcheck.as_ref()?;
    if h.disable {
        return Some(HealthConfig {
            test: Some(vec!["NONE".to_string()]),
            ..Default::default()
        });
    }
    let d = |ctx: &mut Ctx, f: &str, v: &Option<String>| {
        ctx.duration(&["services", key, "healthcheck", f], v)
            .filter(|n| *n != 0)
    };
    Some(HealthConfig {
        test: h.test.clone(),
        interval: d(ctx, "interval", &h.interval),
        timeout: d(ctx, "timeout", &h.timeout),
        retries: h.retries.map(|r| r as i64).filter(|r| *r != 0),
        start_period: d(ctx, "start_period", &h.start_period),
        start_interval: d(ctx, "start_interval", &h.start_interval),
    })
}

/// The converted parts of the container spec.
struct Container {
    image: String,
    mounts: Vec<Mount>,
    configs: Vec<TaskSpecContainerSpecConfigs>,
    secrets: Vec<TaskSpecContainerSpecSecrets>,
    health_check: Option<HealthConfig>,
    stop_grace_period: Option<i64>,
    isolation: Option<TaskSpecContainerSpecIsolationEnum>,
    hosts: Vec<String>,
}

/// `isolation:` (`default`, `process`, `hyperv`).
fn isolation(ctx: &mut Ctx, key: &str, svc: &Service) -> Option<TaskSpecContainerSpecIsolationEnum> {
    match svc.isolation.as_deref()? {
        "default" => Some(TaskSpecContainerSpecIsolationEnum::DEFAULT),
        "process" => Some(TaskSpecContainerSpecIsolationEnum::PROCESS),
        "hyperv" => Some(TaskSpecContainerSpecIsolationEnum::HYPERV),
        other => {
            ctx.problem(
                &["services", key, "isolation"],
                format!("invalid isolation {other:?} (expected default, process or hyperv)"),
            );
            None
        }
    }
}

/// `extra_hosts:` (`host:ip`) in the engine's notation, `ip host`, as
/// `docker stack deploy` writes them.
fn extra_hosts(ctx: &mut Ctx, key: &str, svc: &Service) -> Vec<String> {
    let mut out = Vec::new();
    for (i, h) in svc.extra_hosts.iter().enumerate() {
        match h.split_once(':') {
            Some((host, ip)) if !host.is_empty() && !ip.is_empty() => out.push(format!("{ip} {host}")),
            _ => ctx.problem(
                &["services", key, "extra_hosts", &i.to_string()],
                format!("invalid extra host {h:?} (expected host:ip)"),
            ),
        }
    }
    out
}

/// A capability as `docker stack deploy` writes it: upper case, `CAP_` prefixed
/// (`ALL` stays as it is).
fn capability(c: &str) -> String {
    let c = c.trim().to_ascii_uppercase();
    if c == "ALL" || c.starts_with("CAP_") {
        c
    } else {
        format!("CAP_{c}")
    }
}

/// The container spec: the converted parts plus the service's plain fields.
fn container_spec(stack: &str, svc: &Service, c: Container) -> TaskSpecContainerSpec {
    let env = environment(svc);
    TaskSpecContainerSpec {
        image: Some(c.image),
        labels: Some(stack_labels(stack, &svc.labels)),
        command: svc.entrypoint.clone(),
        args: svc.command.clone(),
        hostname: svc.hostname.clone(),
        env: (!env.is_empty()).then_some(env),
        dir: svc.working_dir.clone(),
        user: svc.user.clone(),
        privileges: Some(TaskSpecContainerSpecPrivileges::default()),
        tty: svc.tty.filter(|t| *t),
        open_stdin: svc.stdin_open.filter(|t| *t),
        read_only: svc.read_only.filter(|t| *t),
        mounts: (!c.mounts.is_empty()).then_some(c.mounts),
        stop_signal: svc.stop_signal.clone(),
        stop_grace_period: c.stop_grace_period,
        health_check: c.health_check,
        secrets: (!c.secrets.is_empty()).then_some(c.secrets),
        configs: (!c.configs.is_empty()).then_some(c.configs),
        init: svc.init,
        isolation: c.isolation,
        hosts: (!c.hosts.is_empty()).then_some(c.hosts),
        dns_config: (!svc.dns.is_empty() || !svc.dns_search.is_empty()).then(|| TaskSpecContainerSpecDnsConfig {
            nameservers: (!svc.dns.is_empty()).then(|| svc.dns.clone()),
            search: (!svc.dns_search.is_empty()).then(|| svc.dns_search.clone()),
            options: None,
        }),
        sysctls: (!svc.sysctls.is_empty()).then(|| svc.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        capability_add: (!svc.cap_add.is_empty()).then(|| svc.cap_add.iter().map(|c| capability(c)).collect()),
        capability_drop: (!svc.cap_drop.is_empty()).then(|| svc.cap_drop.iter().map(|c| capability(c)).collect()),
        // Sorted by name (the map's order), as docker stack deploy sends them.
        ulimits: (!svc.ulimits.is_empty()).then(|| {
            svc.ulimits
                .iter()
                .map(|(name, u)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        ..Default::default()
    }
}
