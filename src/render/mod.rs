//! Render step (pure but for reading the chart and values files): a chart
//! and its values, or a plain stack file, to the desired state. One entry
//! point, [`render`], serves the CLI and the controller alike.
//!
//! chart (templates + values) -> yaml -> compose model -> desired state.

pub mod chart;
pub mod compose;
pub mod desired;
pub mod values;
pub mod yaml;

use std::path::PathBuf;

use crate::diag::{Problem, Problems};
pub use chart::Rendered;
use chart::{Chart, RenderOptions};

/// What a render reads: the same for `render`, `plan`, `apply` and `run`.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// A chart directory or a plain stack file; `None`: the built-in chart.
    pub chart: Option<PathBuf>,
    /// Values files, in order (later wins).
    pub values: Vec<PathBuf>,
    /// `--set key.path=value` pairs, applied after the files.
    pub set: Vec<(String, String)>,
    /// `--stack`, overriding the values' `stack`.
    pub stack: Option<String>,
    /// The root key the credentials are derived from (`None`: an offline
    /// render, whose credential secrets are empty placeholders; plan, apply
    /// and run always give one).
    pub root_key: Option<PathBuf>,
    /// The generation of each credential, by stack (from the swarm's
    /// secrets; none: 1).
    pub generations: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u32>>,
    /// The certificates swarmlog issued earlier (the swarm's configs): reused
    /// while they are good.
    pub certificates: Vec<crate::tls::Existing>,
    /// The time certificates are issued at and checked against (`None`: now).
    pub now: Option<std::time::SystemTime>,
}

/// Parses `--set KEY=VALUE` arguments.
pub fn parse_set(args: &[String]) -> Result<Vec<(String, String)>, Problems> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for s in args {
        match s.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
            None => problems.push(Problem::new("--set", format!("{s:?} must be KEY=VALUE"))),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Problems(problems))
    }
}

/// Loads the chart and values and renders them. `env` serves compose
/// interpolation (`${VAR}`) of plain stack files. Every problem is returned,
/// each naming its file, line and field.
pub fn render(inputs: &Inputs, env: &dyn Fn(&str) -> Option<String>) -> Result<Rendered, Problems> {
    let chart = match &inputs.chart {
        Some(path) => Chart::load(path)?,
        None => Chart::embedded()?,
    };
    let mut problems = Vec::new();
    let mut values_files = Vec::new();
    for path in &inputs.values {
        match chart::read_input(path) {
            Ok(text) => values_files.push((path.display().to_string(), text)),
            Err(p) => problems.push(p),
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    // The key is read only when the chart asks for a credential, so a
    // render with security off never needs it.
    let key = std::cell::OnceCell::<Result<crate::security::RootKey, String>>::new();
    let read_key = || {
        inputs
            .root_key
            .as_ref()
            .map(|path| key.get_or_init(|| crate::security::RootKey::read(path)).clone())
    };
    let none = std::collections::BTreeMap::new();
    let gens = |stack: &str| inputs.generations.get(stack).unwrap_or(&none);
    let credential = |stack: &str, logical: &str| -> Result<Vec<u8>, String> {
        // Elasticsearch's secret is its bootstrap password: always the first
        // generation (a rotation of elastic goes through the API, with no
        // restart of Elasticsearch).
        let generation = match logical {
            crate::security::ELASTIC => 1,
            l => gens(stack).get(l).copied().unwrap_or(1),
        };
        match read_key() {
            None => Ok(Vec::new()),
            Some(k) => Ok(k?.password(stack, logical, generation).into_bytes()),
        }
    };
    let tls = |stack: &str, names: &[String], policy: &crate::tls::Policy| match read_key() {
        None => Ok(None),
        Some(k) => crate::tls::bundle(
            &k?,
            stack,
            names,
            &inputs.certificates,
            inputs.now.unwrap_or_else(std::time::SystemTime::now),
            policy,
        )
        .map(Some),
    };
    let mut rendered = chart.render(&RenderOptions {
        values_files,
        set: inputs.set.clone(),
        stack: inputs.stack.clone(),
        env,
        credential: &credential,
        generations: &|stack| gens(stack).clone(),
        tls: &tls,
    })?;
    let has_credentials = rendered.desired.secrets.iter().any(|s| {
        s.spec
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(crate::security::LABEL_CREDENTIAL))
    });
    if has_credentials {
        if let Some(Ok(k)) = read_key() {
            let stack = rendered.stack.clone();
            rendered.desired.credentials = Some(crate::security::Credentials::derive(&k, &stack, gens(&stack)));
        }
    }
    Ok(rendered)
}

/// The process environment, for [`render`]'s interpolation (edges only).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// What a running operator refuses in a new desired state, against the one
/// in force: another stack name (the stack is fixed when the operator
/// starts), or a service that mounts a named volume gone from it (a values
/// file read half-written must not take Elasticsearch away). Empty: fine.
pub fn continuity(in_force: &desired::DesiredState, next: &desired::DesiredState) -> Vec<String> {
    let mut problems = Vec::new();
    if next.stack != in_force.stack {
        problems.push(format!(
            "the values now render stack {:?}, but this operator runs stack {:?} (the stack is fixed at start: restart the operator to change it)",
            next.stack, in_force.stack
        ));
    }
    for s in &in_force.services {
        let volumes = s.named_volumes();
        if volumes.is_empty() || next.services.iter().any(|n| n.spec.name == s.spec.name) {
            continue;
        }
        problems.push(format!(
            "service {} (volume {}) is no longer in the desired state; refusing to remove it while running (a values file read while being written?). To remove it on purpose, restart the operator with the new values",
            s.spec.name.as_deref().unwrap_or_default(),
            volumes.join(", ")
        ));
    }
    problems
}

/// Values files that hold nothing (or only comments): in a running
/// operator, most likely a file caught while being rewritten.
pub fn empty_values_files(inputs: &Inputs) -> Vec<String> {
    inputs
        .values
        .iter()
        .filter(|p| {
            std::fs::read_to_string(p).is_ok_and(|t| {
                t.lines()
                    .map(str::trim)
                    .all(|l| l.is_empty() || l.starts_with('#') || l == "---")
            })
        })
        .map(|p| {
            format!(
                "{}: the values file is empty (being rewritten?); the desired state in force stays",
                p.display()
            )
        })
        .collect()
}

/// The embedded chart rendered with `values` (a values file's text), for unit tests.
#[cfg(test)]
pub(crate) fn test_desired(values: &str) -> desired::DesiredState {
    let chart = chart::Chart::embedded().expect("chart");
    chart
        .render(&RenderOptions {
            values_files: vec![("v.yaml".into(), values.into())],
            set: Vec::new(),
            stack: None,
            env: &|_| None,
            credential: &|_, _| Ok(b"test-password".to_vec()),
            generations: &|_| Default::default(),
            tls: &test_tls,
        })
        .expect("renders")
        .desired
}

/// Certificates as the operator issues them, from a fixed test root key.
#[cfg(test)]
pub(crate) fn test_tls(
    stack: &str,
    names: &[String],
    policy: &crate::tls::Policy,
) -> Result<Option<crate::tls::Bundle>, String> {
    let key = crate::security::RootKey::from_bytes(b"a test root key of 32 bytes .....")?;
    crate::tls::bundle(&key, stack, names, &[], std::time::SystemTime::now(), policy).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(values: &str) -> desired::DesiredState {
        test_desired(values)
    }

    /// The engine's view of the configs a render made (what the next
    /// render finds in the swarm).
    fn as_engine_configs(d: &desired::DesiredState) -> Vec<bollard::models::Config> {
        d.configs
            .iter()
            .map(|c| bollard::models::Config {
                id: Some(c.key.clone()),
                spec: Some(c.spec.clone()),
                ..Default::default()
            })
            .collect()
    }

    fn env_of(d: &desired::DesiredState, key: &str) -> Vec<String> {
        let s = d.services.iter().find(|s| s.key == key).expect("the service");
        let task = s
            .spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .expect("a container");
        task.env.clone().unwrap_or_default()
    }

    fn mounts_of(d: &desired::DesiredState, key: &str) -> Vec<(String, String)> {
        let s = d.services.iter().find(|s| s.key == key).expect("the service");
        let task = s
            .spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .expect("a container");
        let configs = task.configs.iter().flatten().map(|c| {
            (
                c.config_name.clone().unwrap_or_default(),
                c.file.as_ref().and_then(|f| f.name.clone()).unwrap_or_default(),
            )
        });
        let secrets = task.secrets.iter().flatten().map(|c| {
            (
                c.secret_name.clone().unwrap_or_default(),
                c.file.as_ref().and_then(|f| f.name.clone()).unwrap_or_default(),
            )
        });
        configs.chain(secrets).collect()
    }

    fn data_of(spec_data: Option<&str>) -> String {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(spec_data.unwrap_or_default())
            .expect("base64");
        String::from_utf8(bytes).expect("text")
    }

    #[test]
    fn security_serves_https_with_certificates_reused_on_the_next_render() {
        let dir = std::env::temp_dir().join(format!("swarmlog-tls-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let key = dir.join("root-key");
        std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").expect("the key");
        let mut inputs = Inputs {
            root_key: Some(key),
            now: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000)),
            ..Inputs::default()
        };
        let first = render(&inputs, &|_| None).expect("renders").desired;
        // Elasticsearch: HTTPS with its certificate, key and CA under its
        // config directory; the key only in a secret.
        let es = env_of(&first, "elasticsearch");
        for setting in [
            "xpack.security.http.ssl.enabled=true",
            "xpack.security.http.ssl.certificate=certs/http.crt",
            "xpack.security.http.ssl.key=certs/http.key",
            "xpack.security.http.ssl.certificate_authorities=certs/ca.crt",
        ] {
            assert!(es.contains(&setting.to_string()), "{setting} not in {es:?}");
        }
        let name = |key: &str| {
            first
                .configs
                .iter()
                .map(|c| (&c.key, &c.spec.name))
                .chain(first.secrets.iter().map(|c| (&c.key, &c.spec.name)))
                .find(|(k, _)| k.as_str() == key)
                .and_then(|(_, n)| n.clone())
                .expect("the object")
        };
        let es_mounts = mounts_of(&first, "elasticsearch");
        for (object, path) in [
            ("es_ca", "/usr/share/elasticsearch/config/certs/ca.crt"),
            ("es_http_crt", "/usr/share/elasticsearch/config/certs/http.crt"),
            ("es_http_key", "/usr/share/elasticsearch/config/certs/http.key"),
        ] {
            assert!(
                es_mounts.contains(&(name(object), path.to_string())),
                "{object} at {path}: {es_mounts:?}"
            );
        }
        assert!(mounts_of(&first, "kibana").contains(&(name("es_ca"), "/usr/share/kibana/config/certs/ca.crt".into())));
        assert!(
            mounts_of(&first, "logstash").contains(&(name("es_ca"), "/usr/share/logstash/config/certs/ca.crt".into()))
        );
        assert!(env_of(&first, "kibana").contains(&"ELASTICSEARCH_HOSTS=https://elasticsearch:9200".to_string()));
        let config = |key: &str| {
            data_of(
                first
                    .configs
                    .iter()
                    .find(|c| c.key == key)
                    .and_then(|c| c.spec.data.as_deref()),
            )
        };
        assert!(config("kibana_config")
            .contains("elasticsearch.ssl.certificateAuthorities: [\"/usr/share/kibana/config/certs/ca.crt\"]"));
        assert!(config("logstash_pipeline")
            .contains("ssl_certificate_authorities => [\"/usr/share/logstash/config/certs/ca.crt\"]"));
        assert!(config("es_ca").starts_with("-----BEGIN CERTIFICATE-----"));
        let key_pem = data_of(
            first
                .secrets
                .iter()
                .find(|s| s.key == "es_http_key")
                .and_then(|s| s.spec.data.as_deref()),
        );
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(first
            .configs
            .iter()
            .all(|c| !data_of(c.spec.data.as_deref()).contains("PRIVATE KEY")));
        // The next render (a restart, another leader, the CLI's plan) finds
        // the certificates in the swarm and makes exactly the same state.
        inputs.certificates = crate::tls::Existing::from_configs(&as_engine_configs(&first));
        inputs.now = inputs.now.map(|t| t + std::time::Duration::from_secs(3600));
        let again = render(&inputs, &|_| None).expect("renders").desired;
        assert_eq!(again, first);
        // Without the certificates, new ones (new names, new content).
        inputs.certificates.clear();
        let fresh = render(&inputs, &|_| None).expect("renders").desired;
        assert_ne!(fresh.configs, first.configs);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn security_off_mounts_no_certificate() {
        let d = desired("elasticsearch:\n  security: false\n");
        for c in d
            .configs
            .iter()
            .map(|c| &c.spec.labels)
            .chain(d.secrets.iter().map(|s| &s.spec.labels))
        {
            assert!(
                c.as_ref().is_none_or(|l| !l.contains_key(crate::tls::LABEL_TLS)),
                "{c:?}"
            );
        }
        assert!(env_of(&d, "kibana").contains(&"ELASTICSEARCH_HOSTS=http://elasticsearch:9200".to_string()));
    }

    #[test]
    fn a_bad_tls_duration_is_named() {
        let chart = chart::Chart::embedded().expect("chart");
        let err = chart
            .render(&RenderOptions {
                values_files: vec![(
                    "v.yaml".into(),
                    "elasticsearch:\n  tls:\n    certValidity: soon\n".into(),
                )],
                set: Vec::new(),
                stack: None,
                env: &|_| None,
                credential: &|_, _| Ok(Vec::new()),
                generations: &|_| Default::default(),
                tls: &test_tls,
            })
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("elasticsearch.tls.certValidity") && err.contains("\"soon\""),
            "{err}"
        );
    }

    #[test]
    fn a_running_stack_keeps_its_name_and_its_volumes() {
        let prod = desired("stack: prod\n");
        assert!(continuity(&prod, &prod).is_empty());
        let other = desired("");
        let problems = continuity(&prod, &other);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("\"logging\"") && p.contains("\"prod\"")),
            "{problems:?}"
        );
        let mut no_es = prod.clone();
        no_es.services.retain(|s| s.key != "elasticsearch");
        let problems = continuity(&prod, &no_es);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("prod_elasticsearch") && problems[0].contains("prod_elasticsearch_index"));
        // Services without a volume may go.
        let mut no_kibana = prod.clone();
        no_kibana.services.retain(|s| s.key != "kibana");
        assert!(continuity(&prod, &no_kibana).is_empty());
    }

    #[test]
    fn empty_values_files_are_named() {
        let dir = std::env::temp_dir().join(format!("swarmlog-empty-values-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (empty, full) = (dir.join("empty.yaml"), dir.join("full.yaml"));
        std::fs::write(&empty, "# nothing yet\n\n---\n").unwrap();
        std::fs::write(&full, "stack: prod\n").unwrap();
        let inputs = Inputs {
            values: vec![empty.clone(), full],
            ..Inputs::default()
        };
        let found = empty_values_files(&inputs);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with(&empty.display().to_string()));
    }
}
