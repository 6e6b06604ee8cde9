//! Render step, charts: a chart (templates + values) or a plain stack file,
//! rendered to compose text and then to the desired state.
//!
//! The default `logging` chart is embedded in the binary, so `swarmlog render`
//! needs no files at all.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::diag::{Problem, Problems};
use crate::render::compose::load;
use crate::render::desired::{self, DesiredState};
use crate::render::values;
use crate::render::yaml;

/// The compose template of a chart, under `templates/`.
pub const MAIN_TEMPLATE: &str = "stack.yml.j2";
/// The key of Elasticsearch's service in the chart (its name on the stack's
/// network, and in its HTTP certificate).
pub const ES_SERVICE: &str = "elasticsearch";
/// Largest file a chart may hold (templates, values, config files).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

const EMBEDDED: &[(&str, &str)] = &[
    ("Chart.yaml", include_str!("../../charts/logging/Chart.yaml")),
    ("values.yaml", include_str!("../../charts/logging/values.yaml")),
    (
        "templates/stack.yml.j2",
        include_str!("../../charts/logging/templates/stack.yml.j2"),
    ),
    (
        "files/logstash.conf",
        include_str!("../../charts/logging/files/logstash.conf"),
    ),
    (
        "files/filebeat.yml",
        include_str!("../../charts/logging/files/filebeat.yml"),
    ),
    (
        "files/logstash-secure.conf",
        include_str!("../../charts/logging/files/logstash-secure.conf"),
    ),
    (
        "files/kibana.yml",
        include_str!("../../charts/logging/files/kibana.yml"),
    ),
];

/// Where a chart's files come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The `logging` chart built into the binary.
    Embedded,
    /// A chart directory (`Chart.yaml`, `values.yaml`, `templates/`, `files/`).
    Dir(PathBuf),
    /// A plain stack file, used as it is (no templating, compose interpolation only).
    StackFile(PathBuf),
}

/// A loaded chart.
#[derive(Debug, Clone)]
pub struct Chart {
    pub name: String,
    pub version: String,
    pub source: Source,
    /// The defaults (`values.yaml`), which are also the values schema.
    pub defaults: Json,
    /// Templates by name relative to `templates/`, or the stack file's text.
    pub templates: Vec<(String, String)>,
}

/// What a chart renders to.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub stack: String,
    /// Name of the compose text in messages (the template or the stack file).
    pub compose_name: String,
    /// The compose file, as `docker stack deploy` would read it.
    pub compose_text: String,
    pub desired: DesiredState,
    /// Files the compose text references (config and secret files), by the
    /// path written in it, for ejecting to a directory.
    pub files: Vec<(String, Vec<u8>)>,
    /// Where those files are on disk, by the path written (none for the
    /// built-in chart's own): a running operator watches them, so an edit
    /// rolls what uses them.
    pub file_paths: Vec<(String, PathBuf)>,
    pub warnings: Vec<String>,
}

/// The values with every `$` in a string doubled (`$$`), which compose
/// interpolation turns back into one: values reach the services as written.
pub fn literal_dollars(values: &Json) -> Json {
    match values {
        Json::String(s) => Json::String(s.replace('$', "$$")),
        Json::Array(a) => Json::Array(a.iter().map(literal_dollars).collect()),
        Json::Object(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), literal_dollars(v))).collect()),
        other => other.clone(),
    }
}

/// Inputs of a render beside the chart.
pub struct RenderOptions<'a> {
    /// Values files, in order (later wins): (name for messages, text).
    pub values_files: Vec<(String, String)>,
    /// `--set key.path=value` pairs, applied after the files.
    pub set: Vec<(String, String)>,
    /// `--stack`, overriding the values' `stack`.
    pub stack: Option<String>,
    /// Environment for compose interpolation.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The content of a credential secret: (stack, Elasticsearch user) to
    /// its password (see [`crate::security`]).
    pub credential: CredentialReader<'a>,
    /// The generation of each credential of a stack (none given: 1), for
    /// the template (`generations.kibana`).
    pub generations: &'a dyn Fn(&str) -> std::collections::BTreeMap<String, u32>,
    /// Elasticsearch's certificates (see [`crate::tls`]).
    pub tls: TlsMaker<'a>,
}

/// (stack, Elasticsearch user) to the password in that user's secret.
pub type CredentialReader<'a> = &'a dyn Fn(&str, &str) -> Result<Vec<u8>, String>;

/// (stack, the HTTP certificate's names, policy) to Elasticsearch's
/// certificates; `Ok(None)`: an offline render (no root key), whose
/// certificates and keys are empty placeholders.
pub type TlsMaker<'a> = &'a dyn Fn(&str, &[String], &crate::tls::Policy) -> Result<Option<crate::tls::Bundle>, String>;

/// The longest validity or lead a value may give.
const MAX_TLS_DURATION: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);

/// The values' `elasticsearch.tls` durations, each `<n><unit>` (`8760h`).
fn tls_policy(file: &str, values: &Json) -> Result<crate::tls::Policy, Problems> {
    let mut policy = crate::tls::Policy::default();
    let mut problems = Vec::new();
    let tls = values.pointer("/elasticsearch/tls");
    let fields: [(&str, &mut std::time::Duration); 4] = [
        ("certValidity", &mut policy.cert_validity),
        ("certRotateBefore", &mut policy.cert_rotate_before),
        ("caValidity", &mut policy.ca_validity),
        ("caRotateBefore", &mut policy.ca_rotate_before),
    ];
    for (name, slot) in fields {
        let field = ["elasticsearch".to_string(), "tls".to_string(), name.to_string()];
        match tls.and_then(|t| t.get(name)) {
            None | Some(Json::Null) => {}
            Some(Json::String(text)) => match humantime::parse_duration(text) {
                Ok(d) if d > MAX_TLS_DURATION => {
                    problems.push(Problem::new(file, format!("{name} {text:?} is longer than 100 years")).field(&field))
                }
                Ok(d) if !d.is_zero() => *slot = d,
                Ok(_) => problems.push(Problem::new(file, format!("{name} must be longer than 0")).field(&field)),
                Err(e) => problems.push(
                    Problem::new(file, format!("{name} {text:?} is not a duration such as 8760h: {e}")).field(&field),
                ),
            },
            Some(other) => problems.push(
                Problem::new(
                    file,
                    format!("{name} must be a duration such as \"8760h\", not {other}"),
                )
                .field(&field),
            ),
        }
    }
    if problems.is_empty() {
        policy.checked().map_err(|e| {
            Problems(vec![
                Problem::new(file, e).field(&["elasticsearch".to_string(), "tls".to_string()])
            ])
        })
    } else {
        Err(Problems(problems))
    }
}

fn read_limited(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} is {} bytes, larger than the limit of {MAX_FILE_BYTES} bytes",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Reads a values or other input file with the size limit.
pub fn read_input(path: &Path) -> Result<String, Problem> {
    read_limited(path).map_err(|e| Problem::new(path.display().to_string(), e))
}

impl Chart {
    /// The chart built into the binary.
    pub fn embedded() -> Result<Chart, Problems> {
        let get = |name: &str| EMBEDDED.iter().find(|(n, _)| *n == name).map(|(_, t)| t.to_string());
        let meta = get("Chart.yaml").unwrap_or_default();
        let values = get("values.yaml").unwrap_or_default();
        let templates = EMBEDDED
            .iter()
            .filter_map(|(n, t)| n.strip_prefix("templates/").map(|n| (n.to_string(), t.to_string())))
            .collect();
        Chart::from_parts(Source::Embedded, "embedded:logging", &meta, &values, templates)
    }

    /// A chart directory, or a single stack file.
    pub fn load(path: &Path) -> Result<Chart, Problems> {
        let meta = std::fs::metadata(path)
            .map_err(|e| Problem::new(path.display().to_string(), format!("cannot open the chart: {e}")))?;
        if meta.is_file() {
            let text = read_input(path)?;
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("stack").to_string();
            return Ok(Chart {
                name,
                version: String::new(),
                source: Source::StackFile(path.to_path_buf()),
                defaults: Json::Object(Default::default()),
                templates: vec![(path.display().to_string(), text)],
            });
        }
        let chart_yaml = path.join("Chart.yaml");
        let meta_text = read_input(&chart_yaml).map_err(|mut p| {
            p.message = format!("{} (a chart directory needs Chart.yaml)", p.message);
            p
        })?;
        let values_path = path.join("values.yaml");
        let values_text = if values_path.exists() {
            read_input(&values_path)?
        } else {
            String::new()
        };
        let tdir = path.join("templates");
        let mut templates = Vec::new();
        let entries = std::fs::read_dir(&tdir)
            .map_err(|e| Problem::new(tdir.display().to_string(), format!("cannot list the templates: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| Problem::new(tdir.display().to_string(), e.to_string()))?;
            let p = entry.path();
            if p.extension().and_then(|e| e.to_str()) == Some("j2") {
                let name = entry.file_name().to_string_lossy().to_string();
                templates.push((name, read_input(&p)?));
            }
        }
        templates.sort();
        Chart::from_parts(
            Source::Dir(path.to_path_buf()),
            &path.display().to_string(),
            &meta_text,
            &values_text,
            templates,
        )
    }

    fn from_parts(
        source: Source,
        origin: &str,
        meta: &str,
        values_text: &str,
        templates: Vec<(String, String)>,
    ) -> Result<Chart, Problems> {
        let meta_file = format!("{origin}/Chart.yaml");
        let meta_node = yaml::parse(&meta_file, meta).map_err(|e| Problem::new(&meta_file, e.to_string()))?;
        let field = |k: &str| match meta_node.get(k).map(|n| &n.value) {
            Some(yaml::Value::String(s)) => Ok(s.clone()),
            _ => Err(Problem::new(&meta_file, format!("`{k}` must be set to a string")).at(meta_node.pos)),
        };
        let name = field("name")?;
        let version = field("version")?;
        let values_file = format!("{origin}/values.yaml");
        let defaults = yaml::parse(&values_file, values_text)
            .map_err(|e| Problem::new(&values_file, e.to_string()))?
            .to_json();
        let defaults = match defaults {
            Json::Null => Json::Object(Default::default()),
            Json::Object(m) => Json::Object(m),
            _ => return Err(Problem::new(&values_file, "the defaults must be a mapping").into()),
        };
        if !templates.iter().any(|(n, _)| n == MAIN_TEMPLATE) {
            return Err(Problem::new(origin, format!("the chart has no templates/{MAIN_TEMPLATE}")).into());
        }
        Ok(Chart {
            name,
            version,
            source,
            defaults,
            templates,
        })
    }

    /// Where a file the stack file references is on disk: absolute as it is,
    /// else relative to the chart (or the stack file's directory); `None`
    /// for the built-in chart's own files.
    pub fn file_path(&self, path: &str) -> Option<PathBuf> {
        let rel = path.strip_prefix("./").unwrap_or(path);
        if Path::new(path).is_absolute() {
            return Some(PathBuf::from(path));
        }
        match &self.source {
            Source::Embedded => None,
            Source::Dir(dir) => Some(dir.join(rel)),
            Source::StackFile(file) => Some(file.parent().unwrap_or(Path::new(".")).join(rel)),
        }
    }

    /// Reads a file the stack file references, relative to the chart (or the
    /// stack file's directory); absolute paths are read as they are.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, String> {
        let rel = path.strip_prefix("./").unwrap_or(path);
        let on_disk = |p: PathBuf| -> Result<Vec<u8>, String> {
            let meta = std::fs::metadata(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            if meta.len() > MAX_FILE_BYTES {
                return Err(format!(
                    "{} is larger than the limit of {MAX_FILE_BYTES} bytes",
                    p.display()
                ));
            }
            std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        if Path::new(path).is_absolute() {
            return on_disk(PathBuf::from(path));
        }
        match &self.source {
            Source::Embedded => EMBEDDED
                .iter()
                .find(|(n, _)| *n == rel)
                .map(|(_, t)| t.as_bytes().to_vec())
                .ok_or_else(|| format!("the built-in chart has no file {path:?}")),
            Source::Dir(dir) => on_disk(dir.join(rel)),
            Source::StackFile(file) => on_disk(file.parent().unwrap_or(Path::new(".")).join(rel)),
        }
    }

    /// Merged values: defaults, then each values file, then `--set`.
    pub fn values(&self, opts: &RenderOptions) -> Result<Json, Problems> {
        self.values_and_given(opts).map(|(merged, _)| merged)
    }

    /// The values, and what the values files and `--set` give (without the
    /// chart's defaults).
    fn values_and_given(&self, opts: &RenderOptions) -> Result<(Json, Json), Problems> {
        let mut problems = Vec::new();
        let mut merged = self.defaults.clone();
        let mut given = Json::Object(Default::default());
        if matches!(self.source, Source::StackFile(_)) && (!opts.values_files.is_empty() || !opts.set.is_empty()) {
            return Err(Problem::new(
                self.templates.first().map(|t| t.0.as_str()).unwrap_or("stack file"),
                "values (--values, --set) apply to charts only; a plain stack file takes its variables from the environment",
            )
            .into());
        }
        for (name, text) in &opts.values_files {
            match yaml::parse(name, text) {
                Ok(node) => {
                    if !matches!(node.value, yaml::Value::Map(_) | yaml::Value::Null) {
                        problems.push(
                            Problem::new(
                                name,
                                format!("a values file must be a mapping, found {}", node.value.kind()),
                            )
                            .at(node.pos),
                        );
                        continue;
                    }
                    let before = problems.len();
                    values::check(name, &node, &self.defaults, &mut problems);
                    if problems.len() == before {
                        values::merge(&mut merged, &node.to_json());
                        values::merge(&mut given, &node.to_json());
                    }
                }
                Err(e) => problems.push(Problem::new(name, e.to_string())),
            }
        }
        for (path, value) in &opts.set {
            let parsed = yaml::parse("--set", value)
                .map(|n| n.to_json())
                .unwrap_or_else(|_| Json::String(value.clone()));
            let mut over = Json::Object(Default::default());
            if let Err(e) = values::set_path(&mut over, path, parsed) {
                problems.push(Problem::new("--set", e));
                continue;
            }
            let text = serde_json::to_string(&over).unwrap_or_default();
            match yaml::parse("--set", &text) {
                Ok(node) => {
                    let before = problems.len();
                    values::check(&format!("--set {path}"), &node, &self.defaults, &mut problems);
                    // Positions in the generated text would mean nothing.
                    for p in &mut problems[before..] {
                        p.pos = None;
                    }
                    if problems.len() == before {
                        values::merge(&mut merged, &over);
                        values::merge(&mut given, &over);
                    }
                }
                Err(e) => problems.push(Problem::new("--set", e.to_string())),
            }
        }
        if problems.is_empty() {
            Ok((merged, given))
        } else {
            Err(Problems(problems))
        }
    }

    /// Renders the chart with its values into compose text and the desired state.
    pub fn render(&self, opts: &RenderOptions) -> Result<Rendered, Problems> {
        let (values, given) = self.values_and_given(opts)?;
        let security_given = given.pointer("/elasticsearch/security").is_some();
        let stack = opts
            .stack
            .clone()
            .or_else(|| values.get("stack").and_then(Json::as_str).map(str::to_string))
            .unwrap_or_else(|| "logging".to_string());
        let (compose_name, compose_text) = match &self.source {
            Source::StackFile(p) => (p.display().to_string(), self.templates[0].1.clone()),
            _ => {
                let name = self.template_path(MAIN_TEMPLATE);
                // Values are literal: the rendered file is read as compose,
                // which interpolates `$`, so every `$` of a value goes in as
                // `$$` (also what an ejected file needs for `docker stack deploy`).
                (
                    format!("{name} (rendered)"),
                    self.render_template(
                        &stack,
                        &literal_dollars(&values),
                        security_given,
                        &(opts.generations)(&stack),
                    )?,
                )
            }
        };
        let loaded = load::load(&compose_name, &compose_text, opts.env)?;
        self.check_elasticsearch(&values)?;
        let values_file = format!("{} values", self.name);
        // Made once per render, and only when the chart mounts a certificate.
        let bundle = std::cell::OnceCell::<Result<Option<crate::tls::Bundle>, String>>::new();
        let tls = || {
            bundle
                .get_or_init(|| {
                    let policy = tls_policy(&values_file, &values).map_err(|p| p.to_string())?;
                    (opts.tls)(&stack, &crate::tls::http_names(&stack, ES_SERVICE), &policy)
                })
                .clone()
        };
        let read = |p: &str| {
            if let Some(user) = p.strip_prefix(crate::security::CREDENTIAL_PATH) {
                return (opts.credential)(&stack, user);
            }
            match p.strip_prefix(crate::tls::TLS_PATH) {
                // A cluster node's own, put in its place by the plan (which
                // knows the nodes): the chart's is a placeholder.
                Some(crate::tls::NODE | crate::tls::NODE_KEY) => tls().map(|_| Vec::new()),
                Some(role) => match tls()? {
                    None => Ok(Vec::new()),
                    Some(b) => b
                        .get(role)
                        .map(|pem| pem.data.clone().into_bytes())
                        .ok_or_else(|| format!("no certificate has the role {role:?}")),
                },
                None => self.read_file(p),
            }
        };
        let made_labels = |p: &str| {
            p.strip_prefix(crate::tls::TLS_PATH)
                .and_then(|role| {
                    tls()
                        .ok()
                        .flatten()
                        .and_then(|b| b.get(role).map(|pem| pem.labels.clone()))
                })
                .unwrap_or_default()
        };
        let mut desired = desired::convert(&stack, &loaded, &read, &made_labels)?;
        if let Some(made) = bundle.get() {
            desired.tls_policy = tls_policy(&values_file, &values).ok();
            let per_node = desired.configs.iter().any(|c| {
                c.spec
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(crate::tls::LABEL_TLS))
                    .is_some_and(|r| r == crate::tls::NODE)
            });
            if per_node {
                desired.tls_issuer = made.as_ref().ok().and_then(|b| b.as_ref()).map(|b| b.issuer.clone());
            }
        }
        desired.letsencrypt = self.companion(&values)?;
        let mut files = Vec::new();
        let mut file_paths = Vec::new();
        for def in loaded.compose.configs.values().chain(loaded.compose.secrets.values()) {
            if let (Some(f), false) = (&def.file, def.external) {
                file_paths.extend(self.file_path(f).map(|p| (f.clone(), p)));
                if let Ok(data) = self.read_file(f) {
                    files.push((f.clone(), data));
                }
            }
        }
        Ok(Rendered {
            stack,
            compose_name,
            compose_text,
            desired,
            files,
            file_paths,
            warnings: loaded.warnings,
        })
    }

    /// The companion settings from the values' `letsencrypt` section (off
    /// for charts without one, such as plain stack files).
    fn companion(&self, values: &Json) -> Result<desired::Companion, Problems> {
        let file = format!("{} values", self.name);
        let Some(le) = values.get("letsencrypt") else {
            return Ok(desired::Companion::default());
        };
        let mut c = desired::Companion::default();
        let mut problems = Vec::new();
        let field = |k: &str| ["letsencrypt".to_string(), k.to_string()];
        c.enabled = le.get("enabled").and_then(Json::as_bool).unwrap_or(false);
        c.service = le.get("service").and_then(Json::as_str).unwrap_or_default().to_string();
        if let Some(img) = le.get("image").and_then(Json::as_str) {
            c.image = img.to_string();
        }
        if let Some(settle) = le.get("settle") {
            let text = match settle {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            match humantime::parse_duration(&text) {
                Ok(d) => c.settle = d,
                Err(e) => problems.push(
                    Problem::new(&file, format!("invalid duration {text:?}: {e} (such as 2s or 500ms)"))
                        .field(&field("settle")),
                ),
            }
        }
        for (i, g) in le
            .get("domains")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            match g {
                Json::Array(names) if names.iter().all(Json::is_string) && !names.is_empty() => c
                    .domains
                    .push(names.iter().filter_map(Json::as_str).map(str::to_string).collect()),
                Json::String(one) => c.domains.push(vec![one.clone()]),
                _ => {
                    problems.push(
                        Problem::new(&file, "each group must be a list of names (the apex first) or one name")
                            .field(&["letsencrypt".into(), "domains".into(), i.to_string()]),
                    )
                }
            }
        }
        let create = le.get("create").and_then(Json::as_bool).unwrap_or(false);
        let email = le.get("email").and_then(Json::as_str).unwrap_or_default();
        if create && email.trim().is_empty() {
            problems.push(
                Problem::new(
                    &file,
                    "an e-mail address is required to create the companion (Let's Encrypt needs one)",
                )
                .field(&field("email")),
            );
        }
        if problems.is_empty() {
            Ok(c)
        } else {
            Err(Problems(problems))
        }
    }

    /// The values' `elasticsearch.topology` and `masterNodes`, which the
    /// template only copies into labels.
    fn check_elasticsearch(&self, values: &Json) -> Result<(), Problems> {
        let file = format!("{} values", self.name);
        let Some(es) = values.get("elasticsearch") else {
            return Ok(());
        };
        let mut problems = Vec::new();
        let field = |k: &str| ["elasticsearch".to_string(), k.to_string()];
        if let Some(t) = es.get("topology").and_then(Json::as_str) {
            if t != "single" && t != "cluster" {
                problems.push(
                    Problem::new(&file, format!("unknown topology {t:?}: single or cluster")).field(&field("topology")),
                );
            }
        }
        if let Some(m) = es.get("endpointMode").and_then(Json::as_str) {
            if m != "vip" && m != "dnsrr" {
                problems.push(
                    Problem::new(&file, format!("unknown endpointMode {m:?}: vip or dnsrr"))
                        .field(&field("endpointMode")),
                );
            }
        }
        if let Err(Problems(p)) = tls_policy(&file, values) {
            problems.extend(p);
        }
        if let Some(m) = es.get("masterNodes") {
            if m.as_u64().is_none_or(|m| m < 1) {
                problems.push(
                    Problem::new(
                        &file,
                        format!("masterNodes must be a whole number of at least 1, not {m}"),
                    )
                    .field(&field("masterNodes")),
                );
            }
        }
        if let Some(r) = es.get("retention") {
            let text = match r {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let Err(e) = crate::es::retention::parse(&text) {
                problems.push(Problem::new(&file, e).field(&field("retention")));
            }
        }
        self.check_shipper(values, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Problems(problems))
        }
    }

    /// With the shipper on, the pipeline must have a `beats` input: the
    /// shippers would otherwise send into nothing.
    fn check_shipper(&self, values: &Json, problems: &mut Vec<Problem>) {
        let enabled = values.pointer("/shipper/enabled").and_then(Json::as_bool) == Some(true);
        let Some(pipeline) = values.pointer("/logstash/pipelineFile").and_then(Json::as_str) else {
            return;
        };
        if !enabled {
            return;
        }
        // A missing file is reported where the stack names it.
        let Ok(data) = self.read_file(pipeline) else {
            return;
        };
        let text = String::from_utf8_lossy(&data);
        let has_beats = text.lines().map(|l| l.split('#').next().unwrap_or_default()).any(|l| {
            l.trim_start().starts_with("beats") && l.trim_start()["beats".len()..].trim_start().starts_with('{')
        });
        if !has_beats {
            problems.push(
                Problem::new(
                    format!("{} values", self.name),
                    format!(
                        "the shipper sends to Logstash's beats input, and the pipeline {pipeline} has none: add `beats {{ port => \"${{SWARMLOG_BEATS_PORT:5044}}\" }}` to its input (as files/logstash.conf of the chart does)"
                    ),
                )
                .field(&["shipper".to_string(), "enabled".to_string()]),
            );
        }
    }

    fn template_path(&self, name: &str) -> String {
        match &self.source {
            Source::Embedded => format!("embedded:logging/templates/{name}"),
            Source::Dir(d) => d.join("templates").join(name).display().to_string(),
            Source::StackFile(p) => p.display().to_string(),
        }
    }

    /// `security_given`: the values (not the chart's default) set
    /// `elasticsearch.security`.
    fn render_template(
        &self,
        stack: &str,
        values: &Json,
        security_given: bool,
        generations: &std::collections::BTreeMap<String, u32>,
    ) -> Result<String, Problems> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        // minijinja looks through `.j2` to `.yml` and would JSON-escape every
        // output; templates quote what needs quoting with `tojson` instead.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        for (name, text) in &self.templates {
            env.add_template_owned(name.clone(), text.clone())
                .map_err(|e| self.template_problem(&e))?;
        }
        let template = env.get_template(MAIN_TEMPLATE).map_err(|e| self.template_problem(&e))?;
        let ctx = serde_json::json!({
            "values": values,
            "stack": stack,
            "chart": {"name": self.name, "version": self.version},
            "security_given": security_given,
            "generations": crate::security::CREDENTIALS
                .iter()
                .map(|c| (c.to_string(), generations.get(*c).copied().unwrap_or(1).max(1)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        });
        template.render(ctx).map_err(|e| self.template_problem(&e))
    }

    fn template_problem(&self, e: &minijinja::Error) -> Problems {
        let file = self.template_path(e.name().unwrap_or(MAIN_TEMPLATE));
        let mut message = e.kind().to_string();
        if let Some(detail) = e.detail() {
            message = format!("{message}: {detail}");
        }
        if e.kind() == minijinja::ErrorKind::UndefinedError {
            message
                .push_str(" (a value the template uses is not set: check the values file and the chart's values.yaml)");
        }
        let mut p = Problem::new(file, message);
        if let Some(line) = e.line() {
            let column = e
                .range()
                .and_then(|r| {
                    let text = self.templates.iter().find(|(n, _)| Some(n.as_str()) == e.name())?;
                    let before = text.1.get(..r.start)?;
                    Some(before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1)
                })
                .unwrap_or(1);
            p = p.at(yaml::Pos {
                line: line as u64,
                column: column as u64,
            });
        }
        p.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn opts(values: &[&str]) -> RenderOptions<'static> {
        RenderOptions {
            values_files: values
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("v{i}.yaml"), t.to_string()))
                .collect(),
            set: Vec::new(),
            stack: None,
            env: &no_env,
            credential: &|_, _| Ok(b"test-password".to_vec()),
            generations: &|_| Default::default(),
            tls: &|_, _, _| Ok(None),
        }
    }

    #[test]
    fn embedded_chart_renders() {
        let chart = Chart::embedded().unwrap();
        let r = chart.render(&opts(&[])).unwrap();
        assert_eq!(r.stack, "logging");
        let names: Vec<_> = r
            .desired
            .services
            .iter()
            .map(|s| s.spec.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["logging_elasticsearch", "logging_kibana", "logging_logstash"]);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn values_are_literal() {
        let chart = Chart::embedded().unwrap();
        let env = |_: &str| Some("FROM-THE-ENVIRONMENT".to_string());
        let mut o =
            opts(&["elasticsearch:\n  env:\n    ELASTIC_PASSWORD: \"Pa$word1\"\n    OTHER: \"abc$1x ${HOME} $$\"\n"]);
        o.env = &env;
        let r = chart.render(&o).expect("a value with $ renders");
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let es = r.desired.services.iter().find(|s| s.key == "elasticsearch").unwrap();
        let env = es
            .spec
            .task_template
            .as_ref()
            .unwrap()
            .container_spec
            .as_ref()
            .unwrap()
            .env
            .clone()
            .unwrap();
        assert!(env.contains(&"ELASTIC_PASSWORD=Pa$word1".to_string()), "{env:?}");
        assert!(env.contains(&"OTHER=abc$1x ${HOME} $$".to_string()), "{env:?}");
        // The ejected stack file says `$$`, which docker stack deploy reads as `$`.
        assert!(r.compose_text.contains("Pa$$word1"), "{}", r.compose_text);
    }

    #[test]
    fn later_values_win_and_change_the_output() {
        let chart = Chart::embedded().unwrap();
        let r = chart
            .render(&opts(&[
                "kibana:\n  domain: a.example.org\n  replicas: 2\n",
                "kibana:\n  domain: b.example.org\n",
            ]))
            .unwrap();
        let kibana = r.desired.services.iter().find(|s| s.key == "kibana").unwrap();
        let labels = kibana.spec.labels.as_ref().unwrap();
        assert_eq!(labels["com.df.serviceDomain"], "b.example.org");
        let replicas = kibana.spec.mode.as_ref().unwrap().replicated.as_ref().unwrap().replicas;
        assert_eq!(replicas, Some(2));
    }

    #[test]
    fn values_problems_name_file_line_and_field() {
        let chart = Chart::embedded().unwrap();
        let err = chart.render(&opts(&["kibana:\n  domian: x\n"])).unwrap_err();
        assert_eq!(err.0[0].to_string().split(": ").next(), Some("v0.yaml:2:3"));
        assert!(err.to_string().contains("did you mean `domain`"), "{err}");
    }

    #[test]
    fn bad_constraint_from_values_is_reported() {
        let chart = Chart::embedded().unwrap();
        let err = chart.render(&opts(&["nodeSelector:\n  value: \"a b\"\n"])).unwrap_err();
        assert!(err.to_string().contains("constraints"), "{err}");
    }
}
