//! Integration tests against a real Docker swarm in the sandbox (a private
//! manager and two workers in network namespaces), started by this binary.

mod common;
mod companion;
mod controller;
mod faults;
mod http;
mod promises;
mod reconcile;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::query_parameters::{ListConfigsOptions, ListNetworksOptions, ListServicesOptions, ListTasksOptions};
use bollard::Docker;
use common::{wait_for, Sandbox, TestFn};
use serde_json::Value as Json;

const SANDBOX: &str = "itswarm";
const PROXY_NET: &str = "main";

fn main() {
    let tests: Vec<(&'static str, TestFn)> = vec![
        (
            "sandbox_nodes_have_hostnames_and_labels",
            nodes_have_hostnames_and_labels,
        ),
        ("sandbox_standin_images_on_every_node", standin_images_on_every_node),
        (
            "rendered_stack_deploys_and_converges_on_logger_node",
            rendered_stack_converges,
        ),
        (
            "specs_match_docker_stack_deploy_field_for_field",
            specs_match_stack_deploy,
        ),
        (
            "apply_from_empty_then_zero_writes",
            reconcile::apply_from_empty_then_zero_writes,
        ),
        (
            "drift_is_planned_and_repaired",
            reconcile::drift_is_planned_and_repaired,
        ),
        (
            "pipeline_edit_and_kibana_change",
            reconcile::pipeline_edit_and_kibana_change,
        ),
        (
            "a_config_a_foreign_service_uses_is_kept",
            reconcile::a_config_a_foreign_service_uses_is_kept,
        ),
        (
            "bad_desired_state_removes_nothing",
            reconcile::bad_desired_state_removes_nothing,
        ),
        (
            "name_conflict_is_reported_untouched",
            reconcile::name_conflict_is_reported_untouched,
        ),
        ("racing_applies_converge", reconcile::racing_applies_converge),
        (
            "kitchen_sink_converges_and_observe_loses_nothing",
            reconcile::kitchen::kitchen_sink_converges_and_observe_loses_nothing,
        ),
        (
            "an_update_that_does_not_stick_is_not_repeated",
            reconcile::kitchen::an_update_that_does_not_stick_is_not_repeated,
        ),
        (
            "volume_survives_remove_all_and_rename",
            reconcile::volume_survives_remove_all_and_rename,
        ),
        (
            "preconditions_and_engine_errors",
            reconcile::preconditions_and_engine_errors,
        ),
        ("run_converges_and_heals", controller::run_converges_and_heals),
        (
            "run_labels_a_joining_node_and_uses_it",
            controller::node_join_is_labelled_and_used,
        ),
        (
            "run_survives_a_cut_event_stream",
            controller::event_stream_cut_reconnects,
        ),
        ("run_two_writers_converge", controller::two_writers_converge),
        ("fault_engine_frozen_mid_answer", faults::engine_frozen_mid_answer),
        (
            "fault_silent_event_stream_is_renewed",
            faults::silent_event_stream_is_renewed,
        ),
        ("fault_engine_500s_for_a_minute", faults::engine_500s_for_a_minute),
        (
            "fault_standby_idles_on_one_call_per_second",
            faults::standby_idles_on_one_call_per_second,
        ),
        (
            "fault_killed_between_config_and_update",
            faults::killed_between_config_and_update,
        ),
        ("fault_dockerd_restarted_mid_apply", faults::dockerd_restarted_mid_apply),
        ("http_flood_keeps_reconciling", faults::http_flood_keeps_reconciling),
        (
            "run_lost_logger_nodes_are_events_not_degraded",
            controller::lost_logger_nodes_are_events_not_degraded,
        ),
        (
            "run_invalid_values_keep_last_good",
            controller::invalid_values_keep_last_good,
        ),
        (
            "run_elasticsearch_stays_with_its_data",
            controller::elasticsearch_stays_with_its_data,
        ),
        (
            "run_half_written_values_change_nothing",
            controller::half_written_values_change_nothing,
        ),
        ("run_companion_follows_domains", companion::companion_follows_domains),
        (
            "run_companion_keeps_the_users_domains",
            companion::companion_keeps_the_users_domains,
        ),
        ("run_http_api_follows_the_stack", http::http_api_follows_the_stack),
        ("exit_codes_of_engine_errors", promises::exit_codes_of_engine_errors),
        ("run_reports_each_phase", promises::run_reports_each_phase),
        (
            "sigterm_during_a_reconcile_honours_shutdown_timeout",
            promises::sigterm_during_a_reconcile_honours_shutdown_timeout,
        ),
        (
            "safety_flags_and_preconditions",
            promises::safety_flags_and_preconditions,
        ),
        (
            "companion_found_by_label_or_image_or_created",
            promises::companion_found_by_label_or_image_or_created,
        ),
        (
            "companion_refuses_every_hostile_name",
            promises::companion_refuses_every_hostile_name,
        ),
    ];
    common::run_suite(SANDBOX, &["--workers", "2"], setup, tests);
}

/// docker-flow-proxy's network, which the chart expects to exist.
fn setup(sb: &Sandbox) -> Result<(), String> {
    sb.docker(&["network", "create", "--driver", "overlay", "--attachable", PROXY_NET])?;
    Ok(())
}

fn nodes_have_hostnames_and_labels(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    rt.block_on(async {
        let docker = sb.client().await?;
        let nodes = docker
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await
            .map_err(|e| e.to_string())?;
        let mut by_host: BTreeMap<String, HashMap<String, String>> = BTreeMap::new();
        for n in nodes {
            let host = n.description.and_then(|d| d.hostname).unwrap_or_default();
            let labels = n.spec.and_then(|s| s.labels).unwrap_or_default();
            by_host.insert(host, labels);
        }
        let hosts: Vec<&str> = by_host.keys().map(String::as_str).collect();
        if hosts != ["logger-1", "manager-1", "worker-1"] {
            return Err(format!("unexpected nodes: {hosts:?}"));
        }
        if by_host["logger-1"].get("logger").map(String::as_str) != Some("true") {
            return Err(format!(
                "logger-1 is not labelled logger=true: {:?}",
                by_host["logger-1"]
            ));
        }
        for other in ["manager-1", "worker-1"] {
            if by_host[other].contains_key("logger") {
                return Err(format!("{other} should not carry the logger label"));
            }
        }
        Ok(())
    })
}

fn standin_images_on_every_node(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let wanted = common::standin_images();
    if wanted.is_empty() {
        return Err("tests/standin/images.txt lists no image".into());
    }
    rt.block_on(async {
        for host in ["manager-1", "logger-1", "worker-1"] {
            let docker = common::client_for(&sb.sock(host)?).await?;
            let images = docker
                .list_images(None::<bollard::query_parameters::ListImagesOptions>)
                .await
                .map_err(|e| e.to_string())?;
            let tags: Vec<String> = images.into_iter().flat_map(|i| i.repo_tags).collect();
            for w in &wanted {
                if !tags.contains(w) {
                    return Err(format!("{host} lacks the stand-in image {w}; it has {tags:?}"));
                }
            }
        }
        Ok(())
    })
}

/// Every image of the default chart must have a stand-in, or the stack cannot run here.
fn check_chart_images_have_standins(json: &Json) -> Result<(), String> {
    let wanted = common::standin_images();
    for svc in json["services"].as_array().into_iter().flatten() {
        let image = svc["spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
            .as_str()
            .unwrap_or_default();
        if !wanted.iter().any(|w| w == image) {
            return Err(format!(
                "the chart's image {image} has no stand-in in tests/standin/images.txt"
            ));
        }
    }
    Ok(())
}

fn render_json(stack: &str) -> Result<Json, String> {
    let out = common::swarmlog_with_host(None, &["render", "-o", "json", "--stack", stack]);
    if !out.status.success() {
        return Err(format!("render failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("render -o json is not JSON: {e}"))
}

/// `docker stack deploy` of a file, as a user would (no registry lookups).
fn stack_deploy(sb: &Sandbox, file: &std::path::Path, stack: &str) -> Result<String, String> {
    sb.docker(&[
        "stack",
        "deploy",
        "--detach=true",
        "--resolve-image",
        "never",
        "-c",
        &file.display().to_string(),
        stack,
    ])
}

fn eject(stack: &str) -> Result<std::path::PathBuf, String> {
    let dir = common::temp_dir(stack);
    let out = common::swarmlog_with_host(
        None,
        &["render", "--stack", stack, "--output-dir", &dir.display().to_string()],
    );
    if !out.status.success() {
        return Err(format!(
            "render --output-dir failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(dir.join("docker-stack.yml"))
}

pub(crate) async fn stack_services(docker: &Docker, stack: &str) -> Result<Vec<bollard::models::Service>, String> {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![format!("com.docker.stack.namespace={stack}")]);
    docker
        .list_services(Some(ListServicesOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| e.to_string())
}

/// Waits until every service of the stack has all its tasks running; returns
/// the hostnames the running tasks are on.
pub(crate) async fn wait_running(docker: &Docker, stack: &str, services: usize) -> Result<Vec<String>, String> {
    wait_for(
        &format!("every task of stack {stack} running"),
        Duration::from_secs(120),
        || async {
            let svcs = stack_services(docker, stack).await?;
            if svcs.len() != services {
                return Ok(None);
            }
            let mut filters = HashMap::new();
            filters.insert("label".to_string(), vec![format!("com.docker.stack.namespace={stack}")]);
            filters.insert("desired-state".to_string(), vec!["running".to_string()]);
            let tasks = docker
                .list_tasks(Some(ListTasksOptions { filters: Some(filters) }))
                .await
                .map_err(|e| e.to_string())?;
            let running: Vec<_> = tasks
                .iter()
                .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(bollard::models::TaskState::RUNNING))
                .collect();
            if running.len() < services || running.len() != tasks.len() {
                return Ok(None);
            }
            let nodes = docker
                .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
                .await
                .map_err(|e| e.to_string())?;
            let host_of = |id: &str| {
                nodes
                    .iter()
                    .find(|n| n.id.as_deref() == Some(id))
                    .and_then(|n| n.description.as_ref()?.hostname.clone())
                    .unwrap_or_else(|| id.to_string())
            };
            Ok(Some(
                running
                    .iter()
                    .map(|t| host_of(t.node_id.as_deref().unwrap_or_default()))
                    .collect(),
            ))
        },
    )
    .await
}

pub(crate) async fn remove_stack(sb: &Sandbox, docker: &Docker, stack: &str) -> Result<(), String> {
    sb.docker(&["stack", "rm", stack])?;
    wait_for(&format!("stack {stack} removed"), Duration::from_secs(60), || async {
        let svcs = stack_services(docker, stack).await?;
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![format!("com.docker.stack.namespace={stack}")]);
        let nets = docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters.clone()),
            }))
            .await
            .map_err(|e| e.to_string())?;
        let configs = docker
            .list_configs(Some(ListConfigsOptions { filters: Some(filters) }))
            .await
            .map_err(|e| e.to_string())?;
        Ok((svcs.is_empty() && nets.is_empty() && configs.is_empty()).then_some(()))
    })
    .await
}

fn rendered_stack_converges(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itdeploy";
    check_chart_images_have_standins(&render_json(stack)?)?;
    let file = eject(stack)?;
    // The ejected file is accepted by the docker CLI as it is.
    sb.docker(&["stack", "config", "-c", &file.display().to_string()])?;
    stack_deploy(sb, &file, stack)?;
    rt.block_on(async {
        let docker = sb.client().await?;
        let hosts = wait_running(&docker, stack, 3).await?;
        if hosts.iter().any(|h| h != "logger-1") {
            return Err(format!("tasks ran outside the logger node: {hosts:?}"));
        }
        remove_stack(sb, &docker, stack).await
    })
}

/// Replaces what legitimately differs between two deployments of one file
/// (object IDs, swarmlog's own labels and hashed config names).
fn normalise_service(spec: &mut Json, net_names: &HashMap<String, String>) {
    // swarmlog's one intended difference: a service with a volume is pinned
    // to its data node (`node.id==` that the data-node label records). The
    // pin must be exactly that one constraint; everything else compares.
    let data_node = spec["Labels"]["io.swarmlog.data-node"].as_str().map(str::to_string);
    if let (Some(id), Some(cs)) = (
        data_node,
        spec["TaskTemplate"]["Placement"]["Constraints"].as_array_mut(),
    ) {
        cs.retain(|c| c.as_str() != Some(format!("node.id=={id}").as_str()));
    }
    if let Some(labels) = spec["Labels"].as_object_mut() {
        labels.retain(|k, _| !k.starts_with("io.swarmlog."));
    }
    if let Some(configs) = spec["TaskTemplate"]["ContainerSpec"]["Configs"].as_array_mut() {
        for c in configs {
            c["ConfigID"] = Json::String("<id>".into());
            if let Some(name) = c["ConfigName"].as_str() {
                c["ConfigName"] = Json::String(strip_hash(name));
            }
        }
    }
    // Credential secrets: swarmlog names them by content hash, as configs.
    if let Some(secrets) = spec["TaskTemplate"]["ContainerSpec"]["Secrets"].as_array_mut() {
        for c in secrets {
            c["SecretID"] = Json::String("<id>".into());
            if let Some(name) = c["SecretName"].as_str() {
                c["SecretName"] = Json::String(strip_hash(name));
            }
        }
    }
    if let Some(nets) = spec["TaskTemplate"]["Networks"].as_array_mut() {
        for n in nets {
            if let Some(id) = n["Target"].as_str() {
                let name = net_names.get(id).cloned().unwrap_or_else(|| id.to_string());
                n["Target"] = Json::String(name);
            }
        }
    }
}

fn strip_hash(name: &str) -> String {
    match name.rsplit_once('_') {
        Some((base, h)) if h.len() == 8 && h.chars().all(|c| c.is_ascii_hexdigit()) => base.to_string(),
        _ => name.to_string(),
    }
}

async fn snapshot(docker: &Docker, stack: &str) -> Result<BTreeMap<String, Json>, String> {
    let nets = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .map_err(|e| e.to_string())?;
    let net_names: HashMap<String, String> = nets
        .iter()
        .filter_map(|n| Some((n.id.clone()?, n.name.clone()?)))
        .collect();
    let mut out = BTreeMap::new();
    for s in stack_services(docker, stack).await? {
        let mut spec = serde_json::to_value(s.spec).map_err(|e| e.to_string())?;
        normalise_service(&mut spec, &net_names);
        out.insert(format!("service {}", spec["Name"].as_str().unwrap_or_default()), spec);
    }
    for n in nets {
        let Some(name) = n.name.clone().filter(|n| n.starts_with(&format!("{stack}_"))) else {
            continue;
        };
        // The VXLAN ID is allocated per network, like its ID.
        let mut options = n.options.clone().unwrap_or_default();
        options.remove("com.docker.network.driver.overlay.vxlanid_list");
        let mut labels = n.labels.clone().unwrap_or_default();
        labels.retain(|k, _| !k.starts_with("io.swarmlog."));
        out.insert(
            format!("network {name}"),
            serde_json::json!({
                "Driver": n.driver, "Scope": n.scope, "Internal": n.internal, "Attachable": n.attachable,
                "Ingress": n.ingress, "Options": options, "Labels": labels,
            }),
        );
    }
    let configs = docker
        .list_configs(None::<ListConfigsOptions>)
        .await
        .map_err(|e| e.to_string())?;
    for c in configs {
        let mut spec = serde_json::to_value(c.spec).map_err(|e| e.to_string())?;
        let Some(name) = spec["Name"]
            .as_str()
            .map(strip_hash)
            .filter(|n| n.starts_with(&format!("{stack}_")))
        else {
            continue;
        };
        spec["Name"] = Json::String(name.clone());
        if let Some(labels) = spec["Labels"].as_object_mut() {
            labels.retain(|k, _| !k.starts_with("io.swarmlog."));
        }
        out.insert(format!("config {name}"), spec);
    }
    Ok(out)
}

/// The objects `docker stack deploy` makes of the ejected file are, field for
/// field, the ones `swarmlog apply` makes (apply itself, not a helper).
fn specs_match_stack_deploy(sb: &Sandbox, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let stack = "itcompare";
    let file = eject(stack)?;
    rt.block_on(async {
        let docker = sb.client().await?;
        stack_deploy(sb, &file, stack)?;
        wait_running(&docker, stack, 3).await?;
        let by_stack_deploy = snapshot(&docker, stack).await?;
        remove_stack(sb, &docker, stack).await?;

        let o = sb.swarmlog(&["apply", "--stack", stack, "--wait", "--wait-timeout", "120s"]);
        if !o.status.success() {
            return Err(format!(
                "swarmlog apply failed: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        wait_running(&docker, stack, 3).await?;
        let by_swarmlog = snapshot(&docker, stack).await?;
        remove_stack(sb, &docker, stack).await?;

        if by_stack_deploy.keys().collect::<Vec<_>>() != by_swarmlog.keys().collect::<Vec<_>>() {
            return Err(format!(
                "different objects: docker stack deploy made {:?}, swarmlog made {:?}",
                by_stack_deploy.keys().collect::<Vec<_>>(),
                by_swarmlog.keys().collect::<Vec<_>>()
            ));
        }
        let mut diffs = Vec::new();
        for (k, a) in &by_stack_deploy {
            let b = &by_swarmlog[k];
            if a != b {
                diffs.push(format!(
                    "{k} differs:\n  docker stack deploy: {}\n  swarmlog:            {}",
                    swarmlog::render::desired::canonical(a.clone()),
                    swarmlog::render::desired::canonical(b.clone())
                ));
            }
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(diffs.join("\n"))
        }
    })
}
