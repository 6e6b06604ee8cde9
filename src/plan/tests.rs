use super::*;
use crate::render::chart::{Chart, RenderOptions};
use crate::render::desired::LABEL_MANAGED;
use bollard::models::Node;
use bollard::models::{
    Config, Network, NodeDescription, NodeSpec, NodeSpecRoleEnum, NodeState, NodeStatus, ObjectVersion, Service, Task,
};
use proptest::prelude::*;

fn no_env(_: &str) -> Option<String> {
    None
}

pub(super) fn desired_with(values: &str) -> DesiredState {
    let chart = Chart::embedded().expect("chart");
    chart
        .render(&RenderOptions {
            values_files: vec![("v.yaml".into(), values.into())],
            set: Vec::new(),
            stack: None,
            env: &no_env,
            credential: &|_, _| Ok(b"test-password".to_vec()),
            generations: &|_| Default::default(),
            tls: &|_, _, _| Ok(None),
        })
        .expect("renders")
        .desired
}

fn desired() -> DesiredState {
    desired_with("")
}

pub(crate) fn node(id: &str, host: &str, labels: &[(&str, &str)]) -> Node {
    Node {
        id: Some(id.into()),
        spec: Some(NodeSpec {
            role: Some(NodeSpecRoleEnum::WORKER),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        }),
        description: Some(NodeDescription {
            hostname: Some(host.into()),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            state: Some(NodeState::READY),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The swarm as the daemon would show it after creating `d`: IDs for
/// network names, defaults filled in.
pub(crate) fn observed_from(d: &DesiredState) -> Observed {
    let mut networks: Vec<Network> = d
        .networks
        .iter()
        .map(|n| Network {
            id: Some(format!("id-{}", n.spec.name)),
            name: Some(n.spec.name.clone()),
            scope: Some("swarm".into()),
            labels: n.spec.labels.clone(),
            ..Default::default()
        })
        .collect();
    networks.push(Network {
        id: Some("id-main".into()),
        name: Some("main".into()),
        scope: Some("swarm".into()),
        ..Default::default()
    });
    let configs = d
        .configs
        .iter()
        .map(|c| Config {
            id: Some(format!("id-{}", c.spec.name.clone().unwrap_or_default())),
            spec: Some(c.spec.clone()),
            ..Default::default()
        })
        .collect();
    // The engine never returns a secret's data.
    let secrets = d
        .secrets
        .iter()
        .map(|c| bollard::models::Secret {
            id: Some(format!("id-{}", c.spec.name.clone().unwrap_or_default())),
            spec: Some(bollard::models::SecretSpec {
                data: None,
                ..c.spec.clone()
            }),
            ..Default::default()
        })
        .collect();
    let services = d
        .services
        .iter()
        .map(|s| {
            let mut spec = s.spec.clone();
            let tt = spec.task_template.get_or_insert_with(Default::default);
            tt.runtime = Some("container".into());
            tt.force_update = Some(0);
            for n in tt.networks.iter_mut().flatten() {
                n.target = n.target.as_ref().map(|t| format!("id-{t}"));
            }
            let c = tt.container_spec.get_or_insert_with(Default::default);
            c.isolation = Some(bollard::models::TaskSpecContainerSpecIsolationEnum::DEFAULT);
            for cfg in c.configs.iter_mut().flatten() {
                cfg.config_id = Some(format!("id-{}", cfg.config_name.clone().unwrap_or_default()));
            }
            for sec in c.secrets.iter_mut().flatten() {
                sec.secret_id = Some(format!("id-{}", sec.secret_name.clone().unwrap_or_default()));
            }
            let e = spec.endpoint_spec.get_or_insert_with(Default::default);
            e.mode = Some(bollard::models::EndpointSpecModeEnum::VIP);
            Service {
                id: Some(format!("id-{}", s.spec.name.clone().unwrap_or_default())),
                version: Some(ObjectVersion { index: Some(10) }),
                spec: Some(spec),
                ..Default::default()
            }
        })
        .collect();
    Observed {
        node_id: "n1".into(),
        nodes: vec![
            node("n1", "manager-1", &[]),
            node("n2", "logger-1", &[("logger", "true")]),
        ],
        services,
        services_complete: true,
        services_scanned: true,
        networks,
        configs,
        secrets,
        tasks: Vec::new(),
        covers_events_until: None,
    }
}

fn service_mut<'a>(o: &'a mut Observed, name: &str) -> &'a mut ServiceSpec {
    o.services
        .iter_mut()
        .find(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name))
        .and_then(|s| s.spec.as_mut())
        .expect("service exists")
}

#[test]
fn empty_swarm_creates_everything_in_order() {
    let d = desired();
    let mut o = observed_from(&d);
    o.services.clear();
    o.configs.clear();
    o.secrets.clear();
    o.networks.retain(|n| n.name.as_deref() == Some("main"));
    let p = plan(&d, &o, PlanOptions::default());
    let got: Vec<String> = p
        .actions
        .iter()
        .map(|a| format!("{} {} {}", a.verb(), a.kind(), a.name()))
        .collect();
    let name = |n: Option<String>| n.unwrap_or_default();
    let mut want = vec!["create network logging_log_net".to_string()];
    let mut files: Vec<String> = d
        .configs
        .iter()
        .map(|c| format!("create config {}", name(c.spec.name.clone())))
        .chain(
            d.secrets
                .iter()
                .map(|c| format!("create secret {}", name(c.spec.name.clone()))),
        )
        .collect();
    // Configs and secrets are one phase, in name order.
    files.sort_by_key(|f| f.rsplit(' ').next().map(str::to_string));
    want.extend(files);
    want.extend(
        [
            "create service logging_elasticsearch",
            "create service logging_kibana",
            "create service logging_logstash",
        ]
        .map(String::from),
    );
    assert_eq!(
        d.secrets.len(),
        4,
        "security is on by default: three credential secrets and the HTTP certificate's key"
    );
    assert_eq!(got, want);
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
}

#[test]
fn converged_swarm_plans_nothing() {
    let d = desired();
    let p = plan(&d, &observed_from(&d), PlanOptions::default());
    assert!(p.is_empty(), "{:#?}", p.actions);
    // A network, four configs (Kibana's, the pipeline, the CA and the HTTP
    // certificate), four secrets (three passwords and a key), three services.
    assert_eq!(p.in_sync.len(), 12, "{:?}", p.in_sync);
}

#[test]
fn env_drift_is_repaired_and_named() {
    let d = desired();
    let mut o = observed_from(&d);
    let env = service_mut(&mut o, "logging_kibana")
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
        .and_then(|c| c.env.as_mut())
        .expect("env");
    env.push("EXTRA=1".into());
    let p = plan(&d, &o, PlanOptions::default());
    assert_eq!(p.actions.len(), 1);
    let Action::UpdateService {
        reason,
        changes,
        version,
        ..
    } = &p.actions[0]
    else {
        panic!("expected an update: {:?}", p.actions[0]);
    };
    assert_eq!(*reason, Reason::Drifted);
    assert_eq!(*version, 10);
    assert_eq!(changes[0].field, "TaskTemplate.ContainerSpec.Env");
}

#[test]
fn replicas_image_constraint_and_label_drift() {
    let d = desired();
    for mutate in [
        (|s: &mut ServiceSpec| {
            s.mode = Some(bollard::models::ServiceSpecMode {
                replicated: Some(bollard::models::ServiceSpecModeReplicated { replicas: Some(3) }),
                ..Default::default()
            })
        }) as fn(&mut ServiceSpec),
        |s| s.task_template.as_mut().unwrap().container_spec.as_mut().unwrap().image = Some("other:1".into()),
        |s| s.task_template.as_mut().unwrap().placement = None,
        |s| {
            s.labels.as_mut().unwrap().remove("com.df.notify");
        },
        |s| {
            s.labels.as_mut().unwrap().remove("io.swarmlog.spec-hash");
        },
    ] {
        let mut o = observed_from(&d);
        mutate(service_mut(&mut o, "logging_kibana"));
        let p = plan(&d, &o, PlanOptions::default());
        assert_eq!(p.count("update"), 1, "{:#?}", p.actions);
    }
}

#[test]
fn zero_replicas_is_not_the_default() {
    let d = desired();
    let mut o = observed_from(&d);
    service_mut(&mut o, "logging_kibana").mode = Some(bollard::models::ServiceSpecMode {
        replicated: Some(bollard::models::ServiceSpecModeReplicated { replicas: Some(0) }),
        ..Default::default()
    });
    assert_eq!(plan(&d, &o, PlanOptions::default()).count("update"), 1);
}

#[test]
fn foreign_labels_are_kept_and_not_drift() {
    let d = desired();
    let mut o = observed_from(&d);
    service_mut(&mut o, "logging_kibana")
        .labels
        .as_mut()
        .unwrap()
        .insert("team".into(), "ops".into());
    assert!(plan(&d, &o, PlanOptions::default()).is_empty());
    // And kept on an update for another reason.
    service_mut(&mut o, "logging_kibana")
        .task_template
        .as_mut()
        .unwrap()
        .container_spec
        .as_mut()
        .unwrap()
        .image = Some("x:1".into());
    let p = plan(&d, &o, PlanOptions::default());
    let Action::UpdateService { spec, .. } = &p.actions[0] else {
        panic!()
    };
    assert_eq!(
        spec.labels.as_ref().unwrap().get("team").map(String::as_str),
        Some("ops")
    );
}

#[test]
fn a_label_swarmlog_no_longer_sets_is_removed() {
    let d = desired_with("");
    let mut o = observed_from(&d);
    // The running service has a label from an older desired state.
    let labels = service_mut(&mut o, "logging_kibana").labels.as_mut().unwrap();
    labels.insert("com.df.old".into(), "x".into());
    let managed = labels.get(LABEL_MANAGED).cloned().unwrap_or_default();
    labels.insert(LABEL_MANAGED.into(), format!("{managed},com.df.old"));
    let p = plan(&d, &o, PlanOptions::default());
    let Action::UpdateService { spec, .. } = &p.actions[0] else {
        panic!("{:?}", p.actions)
    };
    assert!(!spec.labels.as_ref().unwrap().contains_key("com.df.old"));
}

#[test]
fn changed_values_are_an_update_not_drift() {
    let old = desired();
    let new = desired_with("kibana:\n  domain: logs.example.org\n");
    let p = plan(&new, &observed_from(&old), PlanOptions::default());
    assert_eq!(p.actions.len(), 1);
    let Action::UpdateService {
        reason, changes, name, ..
    } = &p.actions[0]
    else {
        panic!()
    };
    assert_eq!(name, "logging_kibana");
    assert_eq!(*reason, Reason::Changed);
    assert!(
        changes.iter().any(|c| c.field == "Labels.com.df.serviceDomain"),
        "{changes:?}"
    );
}

#[test]
fn pipeline_edit_creates_new_config_updates_logstash_then_removes_old() {
    let old = desired();
    let dir = std::env::temp_dir().join(format!("swarmlog-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.conf");
    std::fs::write(&file, "input { tcp { port => 9000 } }\n").unwrap();
    let new = desired_with(&format!("logstash:\n  pipelineFile: {}\n", file.display()));
    let p = plan(&new, &observed_from(&old), PlanOptions::default());
    let got: Vec<String> = p.actions.iter().map(|a| format!("{} {}", a.verb(), a.kind())).collect();
    assert_eq!(got, ["create config", "update service", "remove config"]);
    assert_eq!(p.actions[1].name(), "logging_logstash");
}

/// A spec to be written that still names an old file (the roll's
/// label-only mark of a cluster node keeps the node's files until its
/// restart) keeps that file: the engine would refuse the removal, and the
/// reconcile fail, while the node still mounts it.
#[test]
fn a_file_the_spec_to_be_written_names_is_not_removed() {
    let old = desired();
    let dir = std::env::temp_dir().join(format!("swarmlog-plan-keep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.conf");
    std::fs::write(&file, "input { tcp { port => 9000 } }\n").unwrap();
    let mut new = desired_with(&format!("logstash:\n  pipelineFile: {}\n", file.display()));
    let observed = observed_from(&old);
    // Logstash's spec as it runs now, with a label of the new state only.
    let running = observed
        .services
        .iter()
        .find_map(|s| s.spec.clone().filter(|s| s.name.as_deref() == Some("logging_logstash")))
        .unwrap();
    let mut marked = running.clone();
    marked
        .labels
        .get_or_insert_with(Default::default)
        .insert("io.swarmlog.test".into(), "1".into());
    for s in new
        .services
        .iter_mut()
        .filter(|s| s.spec.name.as_deref() == Some("logging_logstash"))
    {
        s.spec = marked.clone();
    }
    let p = plan(&new, &observed, PlanOptions::default());
    let got: Vec<String> = p.actions.iter().map(|a| format!("{} {}", a.verb(), a.kind())).collect();
    assert_eq!(got, ["create config", "update service"], "{:#?}", p.actions);
    // Once the spec names the new file only, the old one goes.
    let p = plan(
        &desired_with(&format!("logstash:\n  pipelineFile: {}\n", file.display())),
        &observed,
        PlanOptions::default(),
    );
    assert_eq!(p.count("remove"), 1, "{:#?}", p.actions);
}

#[test]
fn unowned_service_is_a_conflict_unless_adopted() {
    let d = desired();
    let mut o = observed_from(&d);
    service_mut(&mut o, "logging_kibana").labels = Some(HashMap::new());
    let p = plan(&d, &o, PlanOptions::default());
    assert!(p.actions.is_empty());
    assert_eq!(p.conflicts.len(), 1);
    assert_eq!(
        p.conflicts[0].object,
        ObjectRef::new(ObjectKind::Service, "logging_kibana")
    );
    let p = plan(
        &d,
        &o,
        PlanOptions {
            adopt: true,
            ..Default::default()
        },
    );
    let Action::UpdateService { reason, .. } = &p.actions[0] else {
        panic!()
    };
    assert_eq!(*reason, Reason::Adopted);
}

#[test]
fn removing_every_owned_service_is_refused() {
    let d = desired();
    let o = observed_from(&d);
    let other = desired_with("stack: other\n");
    // Stack "logging" as observed, desired with a renamed stack: nothing of "other" exists,
    // so the plan for "other" creates; but a desired state with different names for
    // "logging" removes all of it:
    let mut renamed = d.clone();
    for s in &mut renamed.services {
        s.spec.name = Some(format!("{}-x", s.spec.name.clone().unwrap()));
    }
    let p = plan(&renamed, &o, PlanOptions::default());
    assert_eq!(p.count("remove"), 3);
    assert!(
        p.blockers
            .iter()
            .any(|b| matches!(b, Blocker::RemovesAll { count: 3, .. })
                && b.to_string().contains("removes every service")),
        "{:?}",
        p.blockers
    );
    let p = plan(
        &renamed,
        &o,
        PlanOptions {
            allow_remove_all: true,
            ..Default::default()
        },
    );
    assert!(p.blockers.is_empty());
    // Another stack's objects are never touched.
    let p = plan(&other, &o, PlanOptions::default());
    assert_eq!(p.count("remove"), 0);
}

#[test]
fn missing_preconditions_block() {
    let d = desired();
    let mut o = observed_from(&d);
    o.networks.retain(|n| n.name.as_deref() != Some("main"));
    o.nodes.retain(|n| n.id.as_deref() != Some("n2"));
    let p = plan(&d, &o, PlanOptions::default());
    assert!(
        p.blockers.iter().any(
            |b| *b == Blocker::MissingExternal(ObjectRef::new(ObjectKind::Network, "main"))
                && b.to_string().contains("external network main")
        ),
        "{:?}",
        p.blockers
    );
    assert!(
        p.blockers.iter().any(|b| matches!(b, Blocker::NoPlacement { .. })
            && b.to_string().contains("no node satisfies")
            && b.to_string().contains("--label-add logger=true")),
        "{:?}",
        p.blockers
    );
}

#[test]
fn elasticsearch_is_not_moved_off_its_volume() {
    let d = desired_with("nodeSelector:\n  label: storage\n");
    let old = desired();
    let mut o = observed_from(&old);
    o.nodes.push(node("n3", "storage-1", &[("storage", "true")]));
    o.tasks.push(Task {
        service_id: Some("id-logging_elasticsearch".into()),
        node_id: Some("n2".into()),
        ..Default::default()
    });
    let p = plan(&d, &o, PlanOptions::default());
    assert!(
        p.blockers
            .iter()
            .any(|b| matches!(b, Blocker::WouldMove { service, host, .. }
                if service == "logging_elasticsearch" && host == "logger-1")),
        "{:?}",
        p.blockers
    );
    let p = plan(
        &d,
        &o,
        PlanOptions {
            allow_move: true,
            ..Default::default()
        },
    );
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
}

#[test]
fn constraint_evaluation() {
    let n = node("n2", "logger-1", &[("logger", "true")]);
    assert!(node_matches(&n, &["node.labels.logger == true".into()]));
    assert!(node_matches(
        &n,
        &["node.labels.logger==TRUE".into(), "node.role != manager".into()]
    ));
    assert!(!node_matches(&n, &["node.labels.other == true".into()]));
    assert!(node_matches(&n, &["node.labels.other != true".into()]));
    assert!(node_matches(&n, &["node.hostname == logger-1".into()]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the values, a swarm that holds exactly the desired state plans
    /// nothing, and plans are deterministic. (That volumes survive is shown
    /// against the engine: tests/reconcile, volume_survives_remove_all_and_rename.)
    #[test]
    fn desired_against_itself_is_empty(
        replicas in 0u32..5,
        domain in "[a-z]{1,10}\\.example\\.org",
        label in "[a-z]{1,8}",
        env in proptest::collection::btree_map("[A-Z]{1,6}", "[a-z0-9]{0,6}", 0..4),
    ) {
        let mut values = format!("kibana:\n  replicas: {replicas}\n  domain: {domain}\n  env:\n");
        for (k, v) in &env {
            values.push_str(&format!("    {k}: \"{v}\"\n"));
        }
        if env.is_empty() {
            values = values.replace("  env:\n", "");
        }
        values.push_str(&format!("nodeSelector:\n  label: {label}\n"));
        let d = desired_with(&values);
        let mut o = observed_from(&d);
        o.nodes.push(node("n9", "x", &[(label.as_str(), "true")]));
        let p1 = plan(&d, &o, PlanOptions::default());
        prop_assert!(p1.is_empty(), "{:#?}", p1.actions);
        let from_old = plan(&d, &observed_from(&desired()), PlanOptions::default());
        let again = plan(&d, &observed_from(&desired()), PlanOptions::default());
        prop_assert_eq!(&from_old, &again);
    }
}

#[test]
fn duplicate_networks_from_a_race_are_removed_first() {
    let d = desired();
    let mut o = observed_from(&d);
    let mut dup = o.networks[0].clone();
    dup.id = Some("zz-dup".into());
    dup.created = Some("2030-01-01T00:00:00Z".into());
    o.networks[0].created = Some("2029-01-01T00:00:00Z".into());
    o.networks.push(dup);
    let p = plan(&d, &o, PlanOptions::default());
    assert_eq!(p.actions.len(), 1, "{:#?}", p.actions);
    assert!(matches!(&p.actions[0], Action::RemoveNetwork { id, duplicate: true, .. } if id == "zz-dup"));
    assert_eq!(p.actions[0].phase(), 0);
}

#[test]
fn held_services_are_neither_written_nor_removed() {
    let why = "vm.max_map_count on logger-2 is 65530, below 262144".to_string();
    let mut d = desired();
    assert_eq!(
        d.preflight().get("logging_elasticsearch"),
        Some(&262_144),
        "the chart asks for the preflight on Elasticsearch only: {:?}",
        d.preflight()
    );
    d.held.insert("logging_elasticsearch".into(), why.clone());
    // Missing: everything else is created, Elasticsearch is not.
    let mut empty = observed_from(&d);
    empty.services.clear();
    let p = plan(&d, &empty, PlanOptions::default());
    let created: Vec<&str> = p.actions.iter().map(Action::name).collect();
    assert_eq!(created, ["logging_kibana", "logging_logstash"]);
    assert_eq!(
        p.held.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [format!("service logging_elasticsearch not created: {why}")]
    );
    assert!(p.blockers.is_empty(), "a hold is not a blocker: {:?}", p.blockers);
    // Changed: not updated, and the change is named.
    let changed = desired_with("elasticsearch:\n  javaOpts: -Xms1g -Xmx1g\n");
    let mut held = changed.clone();
    held.held.insert("logging_elasticsearch".into(), why.clone());
    let p = plan(&held, &observed_from(&d), PlanOptions::default());
    assert!(p.is_empty(), "{:#?}", p.actions);
    assert_eq!(p.held.len(), 1);
    let h = &p.held[0];
    assert!(
        h.service == "logging_elasticsearch"
            && h.fields.iter().any(|f| f == "TaskTemplate.ContainerSpec.Env")
            && h.why == why
            && h.to_string().contains("not updated ("),
        "{h}"
    );
    // Without the hold, the same change is an update.
    let p = plan(&changed, &observed_from(&d), PlanOptions::default());
    assert_eq!(p.count("update"), 1);
    // In sync: nothing held, nothing to do.
    let p = plan(&held, &observed_from(&changed), PlanOptions::default());
    assert!(p.is_empty() && p.held.is_empty(), "{:#?}", p);
}

#[test]
fn preflight_zero_turns_the_check_off() {
    let chart = Chart::embedded().expect("chart");
    let rendered = chart
        .render(&RenderOptions {
            values_files: vec![(
                "v.yaml".into(),
                "elasticsearch:\n  preflight:\n    maxMapCount: 0\n".into(),
            )],
            set: Vec::new(),
            stack: None,
            env: &no_env,
            credential: &|_, _| Ok(b"test-password".to_vec()),
            generations: &|_| Default::default(),
            tls: &|_, _, _| Ok(None),
        })
        .expect("renders");
    assert!(rendered.desired.preflight().is_empty(), "0 turns the check off");
}

fn active(mut n: Node) -> Node {
    if let Some(s) = n.spec.as_mut() {
        s.availability = Some(bollard::models::NodeSpecAvailabilityEnum::ACTIVE);
    }
    n
}

fn es_spec(p: &Plan) -> Option<&ServiceSpec> {
    p.actions.iter().find_map(|a| match a {
        Action::CreateService { name, spec } | Action::UpdateService { name, spec, .. }
            if name == "logging_elasticsearch" =>
        {
            Some(spec)
        }
        _ => None,
    })
}

fn pinned_to(spec: &ServiceSpec) -> (Option<String>, Vec<String>) {
    let label = spec
        .labels
        .as_ref()
        .and_then(|l| l.get(super::pinning::LABEL_DATA_NODE))
        .cloned();
    let pins = constraints_of(spec)
        .into_iter()
        .filter(|c| c.starts_with("node.id=="))
        .collect();
    (label, pins)
}

#[test]
fn elasticsearch_is_pinned_to_its_data_node() {
    let d = desired();
    let mut o = observed_from(&d);
    o.nodes = vec![
        active(node("n1", "manager-1", &[])),
        active(node("n3", "logger-2", &[("logger", "true")])),
        active(node("n2", "logger-1", &[("logger", "true")])),
    ];
    // First create: the first allowed node by hostname; Kibana is not pinned.
    let mut empty = o.clone();
    empty.services.clear();
    let p = plan(&d, &empty, PlanOptions::default());
    assert_eq!(
        pinned_to(es_spec(&p).expect("created")),
        (Some("n2".into()), vec!["node.id==n2".to_string()])
    );
    let kibana = p.actions.iter().find(|a| a.name() == "logging_kibana").unwrap();
    let Action::CreateService { spec, .. } = kibana else {
        panic!()
    };
    assert_eq!(pinned_to(spec), (None, vec![]));
    // Running on logger-2 without the label (an older operator): pinned there.
    o.tasks.push(Task {
        service_id: Some("id-logging_elasticsearch".into()),
        node_id: Some("n3".into()),
        ..Default::default()
    });
    let p = plan(&d, &o, PlanOptions::default());
    assert_eq!(
        pinned_to(es_spec(&p).expect("pinned by an update")),
        (Some("n3".into()), vec!["node.id==n3".to_string()])
    );
    // Pinned and recorded: nothing to do, also while its node is drained or down.
    let pinned_spec = es_spec(&p).unwrap().clone();
    *service_mut(&mut o, "logging_elasticsearch") = pinned_spec;
    o.tasks.clear();
    for n in o.nodes.iter_mut().filter(|n| n.id.as_deref() == Some("n3")) {
        n.spec.as_mut().unwrap().availability = Some(bollard::models::NodeSpecAvailabilityEnum::DRAIN);
        n.status.as_mut().unwrap().state = Some(NodeState::DOWN);
    }
    let p = plan(&d, &o, PlanOptions::default());
    assert!(p.is_empty() && p.blockers.is_empty(), "{:#?}", p);
    // Its data node loses the label: moving is refused unless asked for.
    for n in o.nodes.iter_mut().filter(|n| n.id.as_deref() == Some("n3")) {
        n.spec.as_mut().unwrap().labels = Some(HashMap::new());
    }
    let p = plan(&d, &o, PlanOptions::default());
    assert!(
        p.blockers
            .iter()
            .any(|b| matches!(b, Blocker::WouldMove { service, host, .. }
            if service == "logging_elasticsearch" && host == "logger-2")),
        "{:?}",
        p.blockers
    );
    let p = plan(
        &d,
        &o,
        PlanOptions {
            allow_move: true,
            ..Default::default()
        },
    );
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
    assert_eq!(pinned_to(es_spec(&p).expect("moved")).0, Some("n2".into()));
}

#[test]
fn the_global_shipper_is_never_pinned_to_one_node() {
    let d = desired_with("shipper:\n  enabled: true\n");
    let mut empty = observed_from(&d);
    empty.services.clear();
    empty.nodes = vec![
        active(node("n1", "manager-1", &[])),
        active(node("n2", "logger-1", &[("logger", "true")])),
    ];
    let p = plan(&d, &empty, PlanOptions::default());
    let shipper = p
        .actions
        .iter()
        .find_map(|a| match a {
            Action::CreateService { name, spec } if name == "logging_shipper" => Some(spec),
            _ => None,
        })
        .expect("the shipper is created");
    // It mounts a named volume (its registry), yet runs on every node.
    let d_shipper = d
        .services
        .iter()
        .find(|s| s.spec.name.as_deref() == Some("logging_shipper"))
        .expect("desired shipper");
    assert!(d_shipper.is_global() && !d_shipper.named_volumes().is_empty());
    assert_eq!(pinned_to(shipper), (None, vec![]));
    assert!(super::pinning::waiting_on_data_nodes(&d, &empty).is_empty());
    // Elasticsearch, beside it, still is.
    assert_eq!(pinned_to(es_spec(&p).expect("created")).0, Some("n2".into()));
}

#[test]
fn a_running_clusters_security_is_never_switched_one_node_at_a_time() {
    use crate::plan::cluster::expand;
    let cluster = |security: bool| {
        desired_with(&format!(
            "elasticsearch:\n  topology: cluster\n  security: {security}\n  preflight:\n    maxMapCount: 0\n"
        ))
    };
    let mut nodes = Vec::new();
    for (id, host) in [("n1", "logger-1"), ("n2", "logger-2"), ("n3", "logger-3")] {
        let mut n = node(id, host, &[("logger", "true")]);
        if let Some(s) = n.spec.as_mut() {
            s.availability = Some(bollard::models::NodeSpecAvailabilityEnum::ACTIVE);
        }
        nodes.push(n);
    }
    let mut o = observed_from(&DesiredState {
        services: Vec::new(),
        ..cluster(false)
    });
    o.nodes = nodes.clone();
    // A cluster formed with security off.
    let mut running = observed_from(&expand(&cluster(false), &o, Some("u1")));
    running.nodes = nodes;
    let switched = |security: bool| {
        plan(
            &expand(&cluster(security), &running, Some("u1")),
            &running,
            PlanOptions::default(),
        )
    };
    let p = switched(true);
    let names: Vec<String> = p
        .blockers
        .iter()
        .filter_map(|b| match b {
            Blocker::ClusterSecuritySwitch { service, on: true } => Some(service.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        ["logging_es_logger-1", "logging_es_logger-2", "logging_es_logger-3"]
    );
    assert!(
        p.refusals()
            .iter()
            .any(|r| r.contains("every node would restart at once")),
        "{:?}",
        p.refusals()
    );
    // As it runs: no blocker.
    assert!(switched(false).blockers.is_empty(), "{:?}", switched(false).blockers);
}

#[test]
fn a_default_never_switches_a_running_elasticsearchs_security_on() {
    let off = observed_from(&desired_with("elasticsearch:\n  security: false\n"));
    // The chart's default (on) against an Elasticsearch that runs with it off.
    let p = plan(&desired(), &off, PlanOptions::default());
    assert!(
        p.blockers
            .iter()
            .any(|b| matches!(b, Blocker::SecurityByDefault { service } if service == "logging_elasticsearch")),
        "{:?}",
        p.blockers
    );
    assert!(p.refusals().iter().any(|r| r.contains("elasticsearch.security: true")));
    // Said in the values: the switch is planned (Elasticsearch updated once).
    let p = plan(
        &desired_with("elasticsearch:\n  security: true\n"),
        &off,
        PlanOptions::default(),
    );
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
    assert!(p
        .actions
        .iter()
        .any(|a| a.verb() == "update" && a.name() == "logging_elasticsearch"));
    // A new install: nothing runs, the default applies.
    let mut empty = off.clone();
    empty.services.clear();
    let p = plan(&desired(), &empty, PlanOptions::default());
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
}
