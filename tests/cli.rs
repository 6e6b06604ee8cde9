//! The binary against a corpus of good and bad inputs: every bad input gets a
//! located error and exit code 1 (never a panic, 101); good inputs render.

mod common;

use std::process::Output;

fn run(args: &[&str]) -> Output {
    common::swarmlog_with_host(None, args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// (values or stack file, is it a stack file, substrings the error must contain)
const BAD: &[(&str, bool, &[&str])] = &[
    ("syntax.yaml", false, &["bad/syntax.yaml", "line 2"]),
    (
        "unknown_key.yaml",
        false,
        &["bad/unknown_key.yaml:2:3", "kibana.replcas", "did you mean `replicas`"],
    ),
    (
        "wrong_type.yaml",
        false,
        &[
            "bad/wrong_type.yaml:2:13",
            "elasticsearch.replicas",
            "expected an integer",
        ],
    ),
    (
        "missing_config_file.yaml",
        false,
        &["configs.logstash_pipeline.file", "files/missing.conf"],
    ),
    (
        "bad_duration.yaml",
        false,
        &[
            "services.elasticsearch.stop_grace_period",
            "invalid duration",
            "(rendered)",
        ],
    ),
    ("alias_bomb.yaml", false, &["bad/alias_bomb.yaml"]),
    (
        "not_a_mapping.yaml",
        false,
        &["bad/not_a_mapping.yaml:1:1", "must be a mapping"],
    ),
    ("duplicate_key.yaml", false, &["bad/duplicate_key.yaml", "duplicate"]),
    (
        "stack_constraint.yml",
        true,
        &[
            "bad/stack_constraint.yml:7:13",
            "services.web.deploy.placement.constraints.0",
            "==",
        ],
    ),
    (
        "stack_duplicate_service.yml",
        true,
        &["bad/stack_duplicate_service.yml", "duplicate"],
    ),
    (
        "stack_bad_octal.yml",
        true,
        &[
            "bad/stack_bad_octal.yml:7:15",
            "services.web.configs.0.mode",
            "not an octal number",
        ],
    ),
    (
        "stack_missing_file.yml",
        true,
        &[
            "bad/stack_missing_file.yml:7:11",
            "configs.c.file",
            "does-not-exist.txt",
        ],
    ),
    (
        "stack_required_var.yml",
        true,
        &[
            "bad/stack_required_var.yml:3:12",
            "services.web.image",
            "set IMAGE to the image to run",
        ],
    ),
    (
        "stack_bad_duration.yml",
        true,
        &["bad/stack_bad_duration.yml:4:24", "services.web.stop_grace_period"],
    ),
    (
        "stack_bad_preflight.yml",
        true,
        &[
            "bad/stack_bad_preflight.yml:6:",
            "services.search.deploy.labels.io.swarmlog.preflight.max-map-count",
            "must be a whole number",
        ],
    ),
    (
        "stack_undefined_network.yml",
        true,
        &[
            "bad/stack_undefined_network.yml:4:16",
            "services.web.networks.nowhere",
            "not defined",
        ],
    ),
    ("stack_empty.yml", true, &["bad/stack_empty.yml", "empty"]),
];

#[test]
fn bad_inputs_fail_with_located_errors() {
    let mut failures = Vec::new();
    for (file, is_stack, expected) in BAD {
        let path = format!("tests/fixtures/bad/{file}");
        for cmd in ["validate", "render"] {
            let out = if *is_stack {
                run(&[cmd, "--chart", &path])
            } else {
                run(&[cmd, "--values", &path])
            };
            let err = stderr(&out);
            if out.status.code() != Some(1) {
                failures.push(format!(
                    "{cmd} {file}: exit code {:?} (want 1)\n{err}",
                    out.status.code()
                ));
            }
            if !out.stdout.is_empty() {
                failures.push(format!("{cmd} {file}: printed output despite the error"));
            }
            for e in expected.iter() {
                if !err.contains(e) {
                    failures.push(format!("{cmd} {file}: error lacks {e:?}:\n{err}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_problem_is_listed() {
    let dir = common::temp_dir("many-problems");
    let values = dir.join("v.yaml");
    std::fs::write(&values, "kibana:\n  replcas: 2\n  domain: [x]\nlogstsh: {}\n").unwrap();
    let out = run(&["validate", "--values", &values.display().to_string()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("v.yaml:2:3"), "{err}");
    assert!(err.contains("v.yaml:3:11"), "{err}");
    assert!(err.contains("v.yaml:4:1"), "{err}");
    assert!(err.contains("did you mean `logstash`"), "{err}");
    assert!(err.contains("3 problems found"), "{err}");
}

#[test]
fn oversized_values_file_is_refused() {
    let dir = common::temp_dir("oversized");
    let values = dir.join("big.yaml");
    std::fs::write(&values, format!("stack: {}\n", "x".repeat(5 * 1024 * 1024))).unwrap();
    let out = run(&["validate", "--values", &values.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("larger than the limit"), "{}", stderr(&out));
}

#[test]
fn missing_values_file_is_reported() {
    let out = run(&["render", "--values", "tests/fixtures/nope.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("tests/fixtures/nope.yaml"), "{}", stderr(&out));
}

#[test]
fn a_changed_value_shows_in_the_output() {
    let plain = run(&["render"]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let changed = run(&["render", "--set", "kibana.domain=logs.example.org"]);
    assert!(changed.status.success(), "{}", stderr(&changed));
    let text = String::from_utf8_lossy(&changed.stdout);
    assert!(text.contains("com.df.serviceDomain: \"logs.example.org\""), "{text}");
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("logs.example.org"));
}

#[test]
fn values_from_the_environment_and_stack_flag() {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_swarmlog"));
    let out = cmd
        .args(["render", "-o", "json"])
        .env("SWARMLOG_STACK", "envstack")
        .current_dir(common::repo())
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["stack"], "envstack");
    assert_eq!(json["services"][0]["spec"]["Name"], "envstack_elasticsearch");
}

#[test]
fn plain_stack_file_is_interpolated_like_stack_deploy() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmlog"))
        .args([
            "render",
            "-o",
            "json",
            "--chart",
            "tests/fixtures/good/stack.yml",
            "--stack",
            "web",
        ])
        .env("TAG", "1.27")
        .env_remove("HOME_DIR")
        .current_dir(common::repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &json["services"][0]["spec"]["TaskTemplate"]["ContainerSpec"];
    assert_eq!(c["Image"], "nginx:1.27");
    assert_eq!(
        c["Env"],
        serde_json::json!(["GREETING=${NOT_INTERPOLATED}", "HOME_DIR=/srv"])
    );
    assert_eq!(c["Configs"][0]["File"]["Mode"], 0o440);
    let config_name = json["configs"][0]["spec"]["Name"].as_str().unwrap();
    assert!(
        config_name.starts_with("web_site_") && config_name.len() == "web_site_".len() + 8,
        "{config_name}"
    );
}

#[test]
fn an_eject_with_credentials_needs_the_root_key_and_render_never_prints_one() {
    let dir = common::temp_dir("eject-nokey");
    let bare = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_swarmlog"))
            .args(args)
            .env_remove("SWARMLOG_ROOT_KEY_FILE")
            .current_dir(common::repo())
            .output()
            .unwrap()
    };
    let out = bare(&["render", "--output-dir", &dir.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--root-key-file"), "{}", stderr(&out));
    assert!(!dir.join("docker-stack.yml").exists());
    // With the key: the passwords go to no output (Kibana's, as the eject
    // writes it for docker stack deploy).
    let key = common::test_root_key();
    let key = key.display().to_string();
    let out = bare(&[
        "render",
        "--output-dir",
        &dir.display().to_string(),
        "--root-key-file",
        &key,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let password = std::fs::read_to_string(dir.join("secrets/kibana_password")).unwrap();
    assert_eq!(password.len(), 43);
    for args in [
        vec!["render", "--root-key-file", &key],
        vec!["render", "-o", "json", "--root-key-file", &key],
        vec!["validate", "--root-key-file", &key],
    ] {
        let out = bare(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(!all.contains(&password), "{args:?} printed a password");
    }
    // A secured cluster: each node's certificate is the operator's to make.
    let cluster_dir = common::temp_dir("eject-cluster");
    let out = bare(&[
        "render",
        "--output-dir",
        &cluster_dir.display().to_string(),
        "--root-key-file",
        &key,
        "--set",
        "elasticsearch.topology=cluster",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("a certificate of their own"), "{}", stderr(&out));
    assert!(!cluster_dir.join("docker-stack.yml").exists());
}

#[test]
fn values_do_not_apply_to_a_plain_stack_file() {
    let out = run(&["render", "--chart", "tests/fixtures/good/stack.yml", "--set", "a=b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("apply to charts only"), "{}", stderr(&out));
}

#[test]
fn output_dir_ejects_a_deployable_directory() {
    let dir = common::temp_dir("eject");
    let out = run(&["render", "--output-dir", &dir.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stack = std::fs::read_to_string(dir.join("docker-stack.yml")).unwrap();
    assert!(stack.contains("logstash_pipeline"));
    // Security is on by default: the secured pipeline, and each credential
    // in a file of the directory that only its owner reads.
    let conf = std::fs::read_to_string(dir.join("files/logstash-secure.conf")).unwrap();
    assert!(conf.contains("port => 9000"));
    assert!(stack.contains("file: secrets/kibana_password"), "{stack}");
    for key in ["elastic_password", "kibana_password", "logstash_password"] {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(dir.join("secrets").join(key)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{key}");
        assert_eq!(meta.len(), 43, "{key}");
    }
    // The certificates (configs) and the HTTP key (a secret), as the
    // operator would make them.
    assert!(stack.contains("file: certs/es_ca"), "{stack}");
    // With the certificate's record, so the operator can reuse what
    // `docker stack deploy` makes from the directory.
    assert!(stack.contains("io.swarmlog.tls.not-after: \""), "{stack}");
    assert!(stack.contains("io.swarmlog.tls.key-id: \""), "{stack}");
    assert!(stack.contains("file: secrets/es_http_key"), "{stack}");
    for (file, begins) in [
        ("certs/es_ca", "-----BEGIN CERTIFICATE-----"),
        ("certs/es_http_crt", "-----BEGIN CERTIFICATE-----"),
        ("secrets/es_http_key", "-----BEGIN PRIVATE KEY-----"),
    ] {
        use std::os::unix::fs::PermissionsExt as _;
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.starts_with(begins), "{file}: {text}");
        let meta = std::fs::metadata(dir.join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
    }
    // The ejected directory is itself a valid plain stack file for swarmlog.
    let again = run(&[
        "validate",
        "--chart",
        &dir.join("docker-stack.yml").display().to_string(),
    ]);
    assert!(again.status.success(), "{}", stderr(&again));
    // Rendered from the directory, the certificate's config carries its
    // record: what the operator reads to reuse it.
    let json = run(&[
        "render",
        "-o",
        "json",
        "--chart",
        &dir.join("docker-stack.yml").display().to_string(),
    ]);
    assert!(json.status.success(), "{}", stderr(&json));
    let d: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let http = d["configs"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["key"] == "es_http_crt"))
        .unwrap_or_else(|| panic!("no es_http_crt config: {d}"));
    for label in [
        "io.swarmlog.tls",
        "io.swarmlog.tls.issued",
        "io.swarmlog.tls.not-after",
        "io.swarmlog.tls.key-id",
    ] {
        assert!(http["spec"]["Labels"][label].is_string(), "{label} missing: {http}");
    }
}

#[test]
fn the_example_values_file_validates() {
    let out = run(&["validate", "--values", "manifests/values.example.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn undefined_template_variable_is_located() {
    let out = run(&["validate", "--chart", "tests/fixtures/badchart"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("tests/fixtures/badchart/templates/stack.yml.j2:4:"),
        "{err}"
    );
    assert!(err.contains("undefined"), "{err}");
}

#[test]
fn preflight_exit_codes_and_output() {
    let dir = common::temp_dir("preflight");
    let file = dir.join("max_map_count");
    let path = file.display().to_string();
    std::fs::write(&file, "65530\n").unwrap();
    let low = run(&["preflight", "--file", &path]);
    assert_eq!(low.status.code(), Some(2), "{}", stderr(&low));
    assert_eq!(String::from_utf8_lossy(&low.stdout), "vm.max_map_count=65530\n");
    assert!(
        stderr(&low).contains("sysctl -w vm.max_map_count=262144"),
        "{}",
        stderr(&low)
    );
    let nine = run(&["preflight", "--file", &path, "--min-map-count", "1048576"]);
    assert_eq!(nine.status.code(), Some(2));
    std::fs::write(&file, "262144\n").unwrap();
    let ok = run(&["preflight", "--file", &path]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "vm.max_map_count=262144\n");
    std::fs::write(&file, "many\n").unwrap();
    let bad = run(&["preflight", "--file", &path]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("not a number"), "{}", stderr(&bad));
    assert!(bad.stdout.is_empty());
}
