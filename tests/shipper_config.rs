//! The shipper's Filebeat configuration and Logstash's pipeline, checked
//! against Elastic's documented settings as far as a test can: real
//! Filebeat and Logstash cannot run here (no registry serves their images),
//! so every key of charts/logging/files/filebeat.yml must be one the
//! Filebeat 8 reference documents for where it stands, with a documented
//! value; and the chart must wire the two together (the shipper's output
//! names the port the pipeline's beats input listens on).
//!
//! The documented settings used (Filebeat reference 8.x):
//! - `filebeat.inputs[]` of `type: filestream` (the `log` and `container`
//!   input types are deprecated): `id` (required, unique), `paths`,
//!   `parsers` (each one of `container`, `multiline`, `ndjson`, `syslog`,
//!   `include_message`; `container`: `stream` all|stdout|stderr, `format`
//!   auto|docker|cri), `close.on_state_change.inactive`, `clean_removed`;
//! - `processors[]`, `add_docker_metadata`: `host`, `match_fields`,
//!   `match_pids`, `match_source`, `match_source_index`, `match_short_id`,
//!   `cleanup_timeout`, `labels.dedot`, `ssl`;
//! - exactly one `output.*`; `output.logstash.hosts` (`host:port` entries);
//! - `path.data`, `logging.level` (debug|info|warning|error),
//!   `logging.to_stderr`.
//!
//! Dotted keys are the same as nested ones in Filebeat's config format.

use std::collections::BTreeMap;

use serde_json::Value;
use swarmlog::render::chart::{Chart, RenderOptions};

const FILEBEAT: &str = include_str!("../charts/logging/files/filebeat.yml");
const PIPELINE: &str = include_str!("../charts/logging/files/logstash.conf");

/// Every leaf of a YAML document as `dotted.path -> value`; list items as `path[i]`.
fn leaves(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&p, v, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                leaves(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn filebeat() -> BTreeMap<String, Value> {
    let doc = swarmlog::render::yaml::parse("files/filebeat.yml", FILEBEAT)
        .expect("filebeat.yml is YAML")
        .to_json();
    let mut out = BTreeMap::new();
    leaves("", &doc, &mut out);
    out
}

/// `[i]` indices replaced by `[]`, so a path can be matched against the schema.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            c => out.push(c),
        }
    }
    out
}

/// A documented setting's path and the check of its value.
type Documented = (&'static str, fn(&Value) -> bool);

#[test]
fn every_filebeat_setting_is_a_documented_one_with_a_documented_value() {
    let documented: &[Documented] = &[
        ("filebeat.inputs[].type", |v| v == "filestream"),
        ("filebeat.inputs[].id", |v| v.as_str().is_some_and(|s| !s.is_empty())),
        ("filebeat.inputs[].paths[]", |v| {
            v.as_str().is_some_and(|s| s.starts_with('/'))
        }),
        ("filebeat.inputs[].parsers[].container.stream", |v| {
            ["all", "stdout", "stderr"].iter().any(|s| v == s)
        }),
        ("filebeat.inputs[].parsers[].container.format", |v| {
            ["auto", "docker", "cri"].iter().any(|s| v == s)
        }),
        ("filebeat.inputs[].close.on_state_change.inactive", |v| {
            v.as_str().is_some_and(|s| humantime::parse_duration(s).is_ok())
        }),
        ("filebeat.inputs[].clean_removed", Value::is_boolean),
        ("processors[].add_docker_metadata.host", |v| {
            v.as_str().is_some_and(|s| s.starts_with("unix://"))
        }),
        ("output.logstash.hosts[]", |v| v.as_str().is_some_and(|s| !s.is_empty())),
        ("path.data", |v| v.as_str().is_some_and(|s| s.starts_with('/'))),
        ("logging.level", |v| {
            ["debug", "info", "warning", "error"].iter().any(|s| v == s)
        }),
        ("logging.to_stderr", Value::is_boolean),
    ];
    let config = filebeat();
    assert!(!config.is_empty());
    for (path, value) in &config {
        let s = shape(path);
        let Some((_, ok)) = documented.iter().find(|(d, _)| *d == s) else {
            panic!("{path} is not a setting this test knows from Filebeat's reference (add it with its documented values if it is one)");
        };
        assert!(ok(value), "{path}: {value} is not a documented value");
    }
    // What the shipper needs: one filestream input over the engine's json-file
    // logs with the container parser, the engine's metadata, one output.
    assert_eq!(
        config.get("filebeat.inputs[0].paths[0]"),
        Some(&Value::from("/var/lib/docker/containers/*/*.log"))
    );
    assert_eq!(
        config.get("filebeat.inputs[0].parsers[0].container.format"),
        Some(&Value::from("docker"))
    );
    assert!(config
        .keys()
        .any(|k| k.starts_with("processors[0].add_docker_metadata")));
    let outputs: Vec<&String> = config.keys().filter(|k| k.starts_with("output.")).collect();
    assert!(
        outputs.iter().all(|k| k.starts_with("output.logstash.")),
        "one output only: {outputs:?}"
    );
    // filestream needs a unique id per input.
    let ids: Vec<&Value> = config
        .iter()
        .filter(|(k, _)| shape(k) == "filebeat.inputs[].id")
        .map(|(_, v)| v)
        .collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids.len(), unique.len());
}

fn render(values: &str) -> swarmlog::render::chart::Rendered {
    Chart::embedded()
        .expect("chart")
        .render(&RenderOptions {
            values_files: vec![("v.yaml".into(), values.into())],
            set: Vec::new(),
            stack: None,
            env: &|_| None,
            credential: &|_, _| Ok(b"test-password".to_vec()),
            generations: &|_| Default::default(),
            tls: &|_, _, _| Ok(None),
        })
        .expect("renders")
}

fn env_of(r: &swarmlog::render::chart::Rendered, service: &str) -> Vec<String> {
    r.desired
        .services
        .iter()
        .find(|s| s.spec.name.as_deref() == Some(service))
        .and_then(|s| s.spec.task_template.as_ref()?.container_spec.as_ref()?.env.clone())
        .unwrap_or_default()
}

#[test]
fn the_shippers_output_is_the_port_the_pipelines_beats_input_listens_on() {
    let r = render("shipper:\n  enabled: true\nlogstash:\n  beatsPort: 5100\n");
    assert!(env_of(&r, "logging_shipper").contains(&"SWARMLOG_LOGSTASH=logstash:5100".to_string()));
    assert!(env_of(&r, "logging_logstash").contains(&"SWARMLOG_BEATS_PORT=5100".to_string()));
    assert!(FILEBEAT.contains("hosts: [\"${SWARMLOG_LOGSTASH}\"]"));
    // Logstash expands ${VAR:default} in plugin settings.
    assert!(PIPELINE.contains("beats {\n    port => \"${SWARMLOG_BEATS_PORT:5044}\""));
    // The TCP input for applications stays.
    assert!(PIPELINE.contains("codec => json_lines"));
    // The output writes to the data stream the retention policy governs, and
    // only there (auto routing off).
    for want in [
        "data_stream => \"true\"",
        "data_stream_type => \"logs\"",
        "data_stream_dataset => \"swarm\"",
        "data_stream_namespace => \"default\"",
        "data_stream_auto_routing => \"false\"",
    ] {
        assert!(PIPELINE.contains(want), "{want} not in the pipeline");
    }
    assert!(glob_matches(
        swarmlog::es::retention::DATA_STREAMS,
        "logs-swarm-default"
    ));
}

fn glob_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((pre, post)) => name.starts_with(pre) && name[pre.len()..].ends_with(post),
        None => pattern == name,
    }
}

#[test]
fn the_shipper_is_global_root_read_only_and_keeps_its_registry() {
    let r = render("shipper:\n  enabled: true\n");
    let svc = r
        .desired
        .services
        .iter()
        .find(|s| s.spec.name.as_deref() == Some("logging_shipper"))
        .expect("a shipper service");
    let spec = serde_json::to_value(&svc.spec).expect("serialises");
    assert!(spec["Mode"]["Global"].is_object(), "global: {}", spec["Mode"]);
    // Every node, not only loggers.
    assert!(spec["TaskTemplate"]["Placement"]["Constraints"].is_null());
    assert_eq!(spec["TaskTemplate"]["ContainerSpec"]["User"], "0");
    let mounts = spec["TaskTemplate"]["ContainerSpec"]["Mounts"]
        .as_array()
        .expect("mounts");
    let by_target = |t: &str| mounts.iter().find(|m| m["Target"] == t).cloned().unwrap_or_default();
    assert_eq!(by_target("/var/lib/docker/containers")["ReadOnly"], true);
    assert_eq!(by_target("/var/run/docker.sock")["ReadOnly"], true);
    assert_eq!(by_target("/usr/share/filebeat/data")["Type"], "volume");
    assert_eq!(by_target("/usr/share/filebeat/data")["Source"], "logging_shipper_data");
    assert!(spec["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"]
        .as_i64()
        .is_some());
    let config = spec["TaskTemplate"]["ContainerSpec"]["Configs"][0]["ConfigName"]
        .as_str()
        .expect("a config");
    assert!(config.starts_with("logging_shipper_config_"), "{config}");
    // Content-hashed: another file, another name.
    let dir = std::env::temp_dir().join(format!("swarmlog-shipper-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let edited = dir.join("filebeat.yml");
    std::fs::write(&edited, FILEBEAT.replace("logging.level: info", "logging.level: debug")).expect("write");
    let r2 = render(&format!(
        "shipper:\n  enabled: true\n  configFile: {}\n",
        edited.display()
    ));
    let spec2 = serde_json::to_value(
        &r2.desired
            .services
            .iter()
            .find(|s| s.spec.name.as_deref() == Some("logging_shipper"))
            .expect("shipper")
            .spec,
    )
    .expect("serialises");
    let config2 = spec2["TaskTemplate"]["ContainerSpec"]["Configs"][0]["ConfigName"]
        .as_str()
        .expect("a config");
    assert_ne!(config, config2);
    let _ = std::fs::remove_dir_all(&dir);
    // Off by default: no shipper, no volume for it.
    let off = render("");
    assert!(!off
        .desired
        .services
        .iter()
        .any(|s| s.spec.name.as_deref() == Some("logging_shipper")));
    insta::assert_snapshot!("shipper_enabled_compose", r.compose_text);
}
