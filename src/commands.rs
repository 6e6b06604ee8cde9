//! The subcommands' bodies: each reads its arguments, calls the library
//! (render, engine, plan, apply, controller, client) and returns the exit
//! code. `main.rs` only parses the command line and dispatches here.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use swarmlog::cli::{
    ApplyArgs, ChartArgs, EngineArgs, HealthcheckArgs, PlanArgs, PlanFormat, PreflightArgs, RenderArgs, RenderFormat,
    RunArgs, StatusArgs,
};
use swarmlog::diag::Problems;
use swarmlog::engine::{self, Engine};
use swarmlog::render::Rendered;

/// Loads the chart and renders it; every problem is returned, one per line.
/// `keyed`: the credentials are derived from the root key (plan, apply),
/// not shown as placeholders (render, validate without `--root-key-file`).
fn load_and_render(args: &ChartArgs, keyed: bool) -> Result<Rendered, Problems> {
    let inputs = if keyed { args.keyed_inputs()? } else { args.inputs()? };
    let rendered = swarmlog::render::render(&inputs, &swarmlog::render::process_env)?;
    for w in &rendered.warnings {
        tracing::warn!("{w}");
    }
    Ok(rendered)
}

fn report(problems: &Problems) -> ExitCode {
    for p in &problems.0 {
        eprintln!("error: {p}");
    }
    eprintln!(
        "{} problem{} found; nothing was changed.",
        problems.0.len(),
        if problems.0.len() == 1 { "" } else { "s" }
    );
    ExitCode::FAILURE
}

pub(crate) fn render(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let rendered = match load_and_render(&args.chart, false) {
        Ok(r) => r,
        Err(p) => return Ok(report(&p)),
    };
    if let Some(dir) = &args.output_dir {
        write_eject(dir, &rendered, args.chart.root_key_file.is_some())?;
        eprintln!(
            "wrote {}; deploy it with: docker stack deploy -c {} {}",
            dir.join("docker-stack.yml").display(),
            dir.join("docker-stack.yml").display(),
            rendered.stack
        );
        return Ok(ExitCode::SUCCESS);
    }
    match args.output {
        RenderFormat::Yaml => print!("{}", rendered.compose_text),
        RenderFormat::Json => {
            // A secret's data never leaves the process (as in `plan`).
            let mut shown = rendered.desired.clone();
            for s in &mut shown.secrets {
                s.spec.data = None;
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&shown).context("serialising the desired state")?
            )
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_eject(dir: &Path, rendered: &Rendered, keyed: bool) -> anyhow::Result<()> {
    let (text, credentials) = eject_credentials(rendered, keyed)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stack_file = dir.join("docker-stack.yml");
    std::fs::write(&stack_file, &text).with_context(|| format!("writing {}", stack_file.display()))?;
    for (rel, data) in credentials {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let target = dir.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        // A password or a key: readable by its owner only (a certificate too,
        // though it is public: one rule for everything swarmlog made).
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&target)
            .and_then(|mut f| f.write_all(&data))
            .with_context(|| format!("writing {}", target.display()))?;
    }
    for (path, data) in &rendered.files {
        if Path::new(path).is_absolute() {
            continue;
        }
        let rel = path.strip_prefix("./").unwrap_or(path);
        if rel.split('/').any(|part| part == "..") {
            anyhow::bail!("refusing to write {path:?} outside {}", dir.display());
        }
        let target = dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, data).with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

/// The stack file to eject, with each credential secret and certificate read
/// from a file of the directory (`secrets/<key>` for passwords and keys,
/// `certs/<key>` for certificates, written 0600): `docker stack deploy` makes
/// the secrets and configs the operator would. Refused without the root key
/// (there is no password to write).
/// The stack file's text, and the files (path in the directory, content) it reads.
type Ejected = (String, Vec<(String, Vec<u8>)>);

fn eject_credentials(rendered: &Rendered, keyed: bool) -> anyhow::Result<Ejected> {
    use swarmlog::render::yaml;
    let made = |labels: &Option<std::collections::HashMap<String, String>>| {
        labels.as_ref().is_some_and(|l| {
            l.contains_key(swarmlog::security::LABEL_CREDENTIAL) || l.contains_key(swarmlog::tls::LABEL_TLS)
        })
    };
    // (section, key, data, directory): the passwords and keys under
    // secrets/, the certificates (public) under certs/.
    type Object<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        &'a str,
        &'a Option<std::collections::HashMap<String, String>>,
    );
    let objects: Vec<Object> = rendered
        .desired
        .secrets
        .iter()
        .filter(|s| made(&s.spec.labels))
        .map(|s| {
            (
                "secrets",
                s.key.as_str(),
                s.spec.data.as_deref(),
                "secrets",
                &s.spec.labels,
            )
        })
        .chain(
            rendered
                .desired
                .configs
                .iter()
                .filter(|c| made(&c.spec.labels))
                .map(|c| {
                    (
                        "configs",
                        c.key.as_str(),
                        c.spec.data.as_deref(),
                        "certs",
                        &c.spec.labels,
                    )
                }),
        )
        .collect();
    if objects.is_empty() {
        return Ok((rendered.compose_text.clone(), Vec::new()));
    }
    let per_node = objects.iter().any(|o| {
        o.4.as_ref()
            .and_then(|l| l.get(swarmlog::tls::LABEL_TLS))
            .is_some_and(|r| r == swarmlog::tls::NODE)
    });
    if per_node {
        anyhow::bail!(
            "a secured cluster's nodes each have a certificate of their own, which swarmlog issues when it makes each node's service from the swarm's logger nodes: a stack file cannot hold them. Eject with elasticsearch.topology=single, or run the operator (swarmlog run)"
        );
    }
    if !keyed {
        anyhow::bail!(
            "the stack holds credentials and certificates swarmlog derives from its root key ({}): give --root-key-file to write them into the directory (mode 0600), or set elasticsearch.security=false",
            objects.iter().map(|o| o.1).collect::<Vec<_>>().join(", ")
        );
    }
    let tree = yaml::parse(&rendered.compose_name, &rendered.compose_text)
        .map_err(|e| anyhow::anyhow!("reading the rendered stack file back: {e}"))?;
    let mut lines: Vec<String> = rendered.compose_text.lines().map(str::to_string).collect();
    let mut inserts = Vec::new();
    let mut files = Vec::new();
    for (section, key, data, dir, labels) in objects {
        // A certificate's record (issued, end, keys) goes with it, so the
        // stack deployed from the directory is one the operator can reuse.
        let mut record: Vec<(&String, &String)> = labels
            .iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(&format!("{}.", swarmlog::tls::LABEL_TLS)))
            .collect();
        record.sort();
        if !record.is_empty() {
            let at = match tree
                .get(section)
                .and_then(|d| d.get(key))
                .and_then(|d| d.get("labels"))
                .map(|n| &n.value)
            {
                Some(yaml::Value::Map(entries)) => entries.first().map(|(k, _)| k.pos),
                _ => None,
            };
            let Some(at) = at else {
                anyhow::bail!(
                    "{section}.{key}.labels of {} is not a block mapping: cannot add the certificate's labels for the eject",
                    rendered.compose_name
                );
            };
            let indent = " ".repeat(at.column.saturating_sub(1) as usize);
            for (k, v) in record {
                inserts.push((
                    at.line as usize,
                    format!("{indent}{k}: {}", serde_json::Value::String(v.clone())),
                ));
            }
        }
        let first = match tree.get(section).and_then(|d| d.get(key)).map(|n| &n.value) {
            Some(yaml::Value::Map(entries)) => entries.first().map(|(k, _)| k.pos),
            _ => None,
        };
        let Some(pos) = first else {
            anyhow::bail!(
                "{section}.{key} of {} is not a block mapping: cannot add its `file:` for the eject",
                rendered.compose_name
            );
        };
        let data = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data.unwrap_or_default())
            .with_context(|| format!("decoding {section}.{key}"))?;
        let rel = format!("{dir}/{key}");
        let indent = " ".repeat(pos.column.saturating_sub(1) as usize);
        inserts.push((pos.line as usize, format!("{indent}file: {rel}")));
        files.push((rel, data));
    }
    // From the bottom up, so earlier line numbers stay right.
    inserts.sort();
    for (line, text) in inserts.into_iter().rev() {
        let at = line.saturating_sub(1).min(lines.len());
        lines.insert(at, text);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    Ok((text, files))
}

pub(crate) fn validate(args: &ChartArgs) -> anyhow::Result<ExitCode> {
    match load_and_render(args, false) {
        Ok(r) => {
            println!(
                "ok: stack {} renders to {} services, {} networks, {} configs",
                r.stack,
                r.desired.services.len(),
                r.desired.networks.len(),
                r.desired.configs.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(p) => Ok(report(&p)),
    }
}

async fn connect(args: &EngineArgs) -> Result<Engine, ExitCode> {
    let env_host = std::env::var("DOCKER_HOST").ok();
    let host = engine::default_host(args.docker_host.as_deref(), env_host.as_deref());
    Engine::connect(&host, args.engine_timeout).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(e.exit_code())
    })
}

/// Renders (offline, so bad input never reaches the engine), then connects.
async fn render_and_connect(chart: &ChartArgs, engine: &EngineArgs) -> Result<(Rendered, Engine), ExitCode> {
    let rendered = load_and_render(chart, true).map_err(|p| report(&p))?;
    let engine = connect(engine).await?;
    let made_by_swarmlog = rendered.desired.tls_policy.is_some()
        || rendered.desired.secrets.iter().any(|s| {
            s.spec
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(swarmlog::tls::LABEL_TLS))
        });
    if rendered.desired.credentials.is_none() && !made_by_swarmlog {
        return Ok((rendered, engine));
    }
    // The credentials' generations are in the swarm (a rotation), and so
    // are the certificates issued earlier: render again with those, as the
    // operator does.
    let secrets = engine.list_secrets().await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(e.exit_code())
    })?;
    let mut inputs = chart.keyed_inputs().map_err(|p| report(&p))?;
    inputs.generations = swarmlog::security::generations_by_stack(&secrets);
    // The certificates issued earlier, reused as the operator does.
    let configs = engine.list_certificates().await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(e.exit_code())
    })?;
    inputs.certificates = swarmlog::tls::Existing::from_configs(&configs);
    let rendered = swarmlog::render::render(&inputs, &swarmlog::render::process_env).map_err(|p| report(&p))?;
    Ok((rendered, engine))
}

pub(crate) async fn plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let (rendered, engine) = match render_and_connect(&args.chart, &args.engine).await {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let scope = swarmlog::engine::Scope::of(&rendered.desired);
    let observed = async {
        let mut observed = swarmlog::engine::observe_stack(&engine, &scope).await?;
        let desired = swarmlog::plan::roll::offline(&rendered.desired, &observed, args.safety.options());
        let p = swarmlog::plan::plan(&desired, &observed, args.safety.options());
        swarmlog::apply::complete_for_removals(&engine, &mut observed, &p).await?;
        Ok::<_, swarmlog::engine::EngineError>((observed, desired))
    };
    let (observed, desired) = match observed.await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    let p = swarmlog::plan::plan(&desired, &observed, args.safety.options());
    let shown = swarmlog::plan::redact::redacted(&p, args.show_values);
    match args.output {
        PlanFormat::Text => print!("{}", swarmlog::report::plan_text(&shown)),
        PlanFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&shown).context("serialising the plan")?
        ),
    }
    Ok(if !p.refusals().is_empty() {
        ExitCode::FAILURE
    } else if p.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

pub(crate) async fn apply(args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let (rendered, engine) = match render_and_connect(&args.chart, &args.engine).await {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let result = swarmlog::apply::apply(&engine, &rendered.desired, args.safety.options()).await;
    let writes = engine.total_writes();
    match result {
        Ok(r) => {
            for line in &r.done {
                println!("{line}");
            }
            if r.done.is_empty() {
                println!(
                    "Stack {}: no changes; {} objects are as desired.",
                    rendered.stack,
                    r.last_plan.in_sync.len()
                );
            } else {
                println!(
                    "Stack {}: {} write{} in {} round{}.",
                    rendered.stack,
                    writes,
                    if writes == 1 { "" } else { "s" },
                    r.rounds,
                    if r.rounds == 1 { "" } else { "s" }
                );
            }
            if !r.last_plan.not_converging.is_empty() {
                for n in &r.last_plan.not_converging {
                    eprintln!("error: {n}");
                }
                return Ok(ExitCode::FAILURE);
            }
        }
        Err(swarmlog::apply::ApplyError::Engine(e)) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    }
    if args.wait {
        match swarmlog::apply::wait_running(&engine, &rendered.desired, args.wait_timeout).await {
            Ok(p) => {
                let summary: Vec<String> = p
                    .iter()
                    .map(|s| format!("{} {}/{}", s.service, s.running, s.wanted))
                    .collect();
                println!("All tasks running: {}", summary.join(", "));
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    use std::sync::{Arc, RwLock};
    use swarmlog::controller::{self, Context};
    use swarmlog::status::{Role, Status};
    use tokio_util::sync::CancellationToken;

    let settings = match args.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    // A desired state that never rendered is worth saying at once (it keeps running).
    if let Err(problems) = swarmlog::render::render(&settings.render, &swarmlog::render::process_env) {
        for p in &problems.0 {
            tracing::error!("{p}");
        }
    }
    let token = match args.reconcile_token() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;

    // The status and the HTTP API come first: an engine that is down is a
    // state to show, not a crash.
    let stack = settings.render.stack.clone().unwrap_or_else(|| "logging".to_string());
    let role = if settings.leader_gating {
        Role::Standby
    } else {
        Role::Single
    };
    let status = Arc::new(RwLock::new(Status::new(&stack, swarmlog::clock::now(), role)));
    let metrics = Arc::new(swarmlog::metrics::Metrics::new());
    metrics.set_role(role);
    // A healthy loop finishes a reconcile at least this often (the resync
    // ticker makes sure something is always waiting).
    let liveness = Arc::new(swarmlog::status::liveness::Liveness::new(
        settings.reconcile_timeout + settings.resync + settings.debounce_max,
    ));
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| args.listen.to_string());
    tracing::info!(listen = %bound, "HTTP API up: /status /healthz /readyz /metrics /");
    let http = tokio::spawn(swarmlog::http::serve(
        listener,
        swarmlog::http::HttpState {
            status: status.clone(),
            metrics: metrics.clone(),
            trigger: tx.clone(),
            token,
            open_reconcile: args.allow_unauthenticated_reconcile,
            liveness: liveness.clone(),
        },
        shutdown.clone(),
        args.shutdown_timeout,
    ));

    let engine = match connect_until_up(&args.engine, &status, &metrics, &shutdown).await {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("error: {e}");
            shutdown.cancel();
            let _ = http.await;
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    if let Some(engine) = engine {
        tracing::info!(host = %engine.host, api = %engine.api_version, "connected to the engine");
        let ctx = Arc::new(Context::new(engine, settings, tx, status, metrics, liveness.clone()));
        controller::run(ctx, rx, shutdown.clone()).await;
    }
    liveness.stopped();
    shutdown.cancel();
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server error"),
        Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Connects to the engine, retrying with backoff while it is down (the
/// status says so); `None` on shutdown. An engine too old is an error.
async fn connect_until_up(
    args: &EngineArgs,
    status: &std::sync::RwLock<swarmlog::status::Status>,
    metrics: &swarmlog::metrics::Metrics,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<Option<Engine>, engine::EngineError> {
    let env_host = std::env::var("DOCKER_HOST").ok();
    let host = engine::default_host(args.docker_host.as_deref(), env_host.as_deref());
    if let Ok(mut st) = status.write() {
        st.engine.host = host.clone();
    }
    let mut backoff = swarmlog::controller::triggers::Backoff::new(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(30),
    );
    loop {
        match Engine::connect(&host, args.engine_timeout).await {
            Ok(e) => return Ok(Some(e)),
            Err(e @ engine::EngineError::ApiTooOld { .. }) => return Err(e),
            Err(e) => {
                if let Ok(mut st) = status.write() {
                    st.engine_unavailable(swarmlog::clock::now(), &e.to_string());
                }
                metrics.set_phase(swarmlog::status::Phase::EngineUnavailable);
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "waiting for the engine");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// SIGTERM and SIGINT cancel `token` (the binary is PID 1 in its image).
fn spawn_signal_handler(token: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        token.cancel();
    });
    Ok(())
}

pub(crate) async fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/status", args.url.trim_end_matches('/'));
    let (code, body) = match swarmlog::client::get(&url, args.timeout).await {
        Ok(a) => (a.code, a.body),
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(3));
        }
    };
    if code != 200 {
        eprintln!("error: {url} answered {code}: {body}");
        return Ok(ExitCode::from(3));
    }
    let json: serde_json::Value = serde_json::from_str(&body).with_context(|| format!("{url} did not answer JSON"))?;
    match args.output {
        PlanFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json).context("printing the status")?
        ),
        PlanFormat::Text => print!("{}", swarmlog::report::status_text(&json)),
    }
    Ok(if json["phase"] == "Converged" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) async fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let url = format!(
        "{}/{}",
        args.url.trim_end_matches('/'),
        args.endpoint.trim_start_matches('/')
    );
    match swarmlog::client::get(&url, args.timeout).await {
        Ok(a) if a.code == 200 => Ok(ExitCode::SUCCESS),
        Ok(a) => {
            eprintln!("unhealthy: {url} answered {}: {}", a.code, a.body.trim());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("unhealthy: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `swarmlog manpage`: swarmlog.1 on stdout, or every page into a directory.
pub(crate) fn manpage(args: &swarmlog::cli::ManpageArgs) -> anyhow::Result<ExitCode> {
    match &args.dir {
        Some(dir) => {
            swarmlog::cli::manpages_to(dir).with_context(|| format!("writing man pages into {}", dir.display()))?;
            eprintln!("wrote the man pages into {}", dir.display());
        }
        None => return print_bytes(&swarmlog::cli::manpage().context("rendering the man page")?),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_bytes(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `swarmlog preflight`: the one-off check the operator runs on each logger node.
pub(crate) fn preflight(args: &PreflightArgs) -> ExitCode {
    use swarmlog::preflight;
    match preflight::read_max_map_count(&args.file) {
        Ok(value) => {
            println!("{}", preflight::output_line(value));
            if value >= args.min_map_count {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "vm.max_map_count is {value}, below {}: Elasticsearch will not start on this host; run `sysctl -w vm.max_map_count={}`",
                    args.min_map_count, args.min_map_count
                );
                ExitCode::from(preflight::EXIT_LOW)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `swarmlog es ...`
pub(crate) async fn credentials(cmd: &swarmlog::cli::CredentialsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        swarmlog::cli::CredentialsCommand::Init(args) => credentials_init(args).await,
        swarmlog::cli::CredentialsCommand::Show(args) => credentials_show(args).await,
        swarmlog::cli::CredentialsCommand::Rotate(args) => credentials_rotate(args).await,
    }
}

/// Prints swarmlog's CA certificate of the stack (public: what a client of
/// Elasticsearch trusts), as the swarm holds it.
async fn ca_show(rendered: &Rendered, engine: &Engine) -> anyhow::Result<ExitCode> {
    use base64::Engine as _;
    let Some(ca) = rendered.desired.tls_config(swarmlog::tls::CA) else {
        eprintln!(
            "error: stack {} has no CA: elasticsearch.security is off (or the chart mounts no certificate)",
            rendered.stack
        );
        return Ok(ExitCode::FAILURE);
    };
    let name = ca.spec.name.clone().unwrap_or_default();
    let issued = match engine.list_certificates().await {
        Ok(configs) => configs
            .iter()
            .any(|c| c.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name.as_str())),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    if !issued {
        eprintln!(
            "error: the swarm holds no CA of stack {} yet: the operator issues it on its first reconcile",
            rendered.stack
        );
        return Ok(ExitCode::FAILURE);
    }
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca.spec.data.as_deref().unwrap_or_default())
        .context("decoding the CA certificate")?;
    print!("{}", String::from_utf8_lossy(&pem));
    Ok(ExitCode::SUCCESS)
}

/// Makes the root key's secret; one that exists is kept.
async fn credentials_init(args: &swarmlog::cli::CredentialsInitArgs) -> anyhow::Result<ExitCode> {
    let engine = match connect(&args.engine).await {
        Ok(e) => e,
        Err(code) => return Ok(code),
    };
    let key = swarmlog::security::new_root_key().map_err(anyhow::Error::msg)?;
    let spec = bollard::models::SecretSpec {
        name: Some(args.name.clone()),
        labels: Some(std::collections::HashMap::from([(
            swarmlog::security::LABEL_ROOT_KEY.to_string(),
            "true".to_string(),
        )])),
        data: Some(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key)),
        ..Default::default()
    };
    match engine.create_secret(&args.name, spec).await {
        Ok(_) => {
            println!(
                "made the root key: the swarm secret {} (mounted into the operator by manifests/operator.yml)",
                args.name
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(engine::EngineError::Conflict { .. }) => {
            println!(
                "the swarm secret {} exists: kept (a new key would change every password)",
                args.name
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

/// Prints a credential's user and password, derived as the operator derives
/// them, at the generations the swarm's secrets record.
async fn credentials_show(args: &swarmlog::cli::CredentialsShowArgs) -> anyhow::Result<ExitCode> {
    let (rendered, engine) = match render_and_connect(&args.chart, &args.engine).await {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if args.user == swarmlog::tls::CA {
        return ca_show(&rendered, &engine).await;
    }
    let Some(creds) = rendered.desired.credentials.as_ref() else {
        eprintln!(
            "error: stack {} has no credentials: elasticsearch.security is off (or the root key was not read)",
            rendered.stack
        );
        return Ok(ExitCode::FAILURE);
    };
    let logical = logical_name(&args.user);
    let (user, password) = match logical {
        Some(swarmlog::security::ELASTIC) => ("elastic".to_string(), creds.elastic().to_string()),
        Some(l) => match creds.user(l) {
            Some(u) => (u.name.clone(), u.password.clone()),
            None => return Ok(unknown_credential(&args.user)),
        },
        None => return Ok(unknown_credential(&args.user)),
    };
    if args.user_too {
        println!("{user} {password}");
    } else {
        println!("{password}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `elastic`, `kibana`, `logstash`, or one of their Elasticsearch users.
fn logical_name(given: &str) -> Option<&'static str> {
    use swarmlog::security::{parse_username, ELASTIC, KIBANA, LOGSTASH};
    match given {
        ELASTIC => Some(ELASTIC),
        KIBANA | "kibana_system" => Some(KIBANA),
        LOGSTASH => Some(LOGSTASH),
        other => parse_username(other).map(|(l, _)| l),
    }
}

fn unknown_credential(given: &str) -> ExitCode {
    eprintln!("error: no credential {given:?}: elastic, kibana or logstash");
    ExitCode::FAILURE
}

/// Asks the operator for a credential's next generation: the label
/// `io.swarmlog.rotate` on its current secret. The operator makes the new
/// user (or sets elastic's password), moves Kibana or Logstash onto it, and
/// removes the old one once nothing runs with it.
async fn credentials_rotate(args: &swarmlog::cli::CredentialsRotateArgs) -> anyhow::Result<ExitCode> {
    use swarmlog::security::{LABEL_CREDENTIAL, LABEL_GENERATION, LABEL_ROTATE};
    let Some(logical) = logical_name(&args.credential) else {
        return Ok(unknown_credential(&args.credential));
    };
    let rendered = match load_and_render(&args.chart, false) {
        Ok(r) => r,
        Err(p) => return Ok(report(&p)),
    };
    let engine = match connect(&args.engine).await {
        Ok(e) => e,
        Err(code) => return Ok(code),
    };
    let secrets = match engine.list_secrets().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    let stack = rendered.stack.as_str();
    let current = swarmlog::security::generations(stack, &secrets)
        .get(logical)
        .copied()
        .unwrap_or(1);
    // The secret to mark: the credential's, of the generation in its label
    // (elastic's stays at 1: its bootstrap password).
    let label = |s: &bollard::models::Secret, k: &str| {
        s.spec
            .as_ref()
            .and_then(|s| s.labels.as_ref())
            .and_then(|l| l.get(k).cloned())
    };
    let mut mine: Vec<&bollard::models::Secret> = secrets
        .iter()
        .filter(|s| label(s, swarmlog::render::desired::LABEL_STACK).as_deref() == Some(stack))
        .filter(|s| label(s, LABEL_CREDENTIAL).as_deref() == Some(logical))
        .collect();
    mine.sort_by_key(|s| label(s, LABEL_GENERATION).and_then(|g| g.parse::<u32>().ok()));
    let Some(secret) = mine.last() else {
        eprintln!(
            "error: stack {stack} has no secret of the credential {logical} yet (is elasticsearch.security on, and has the operator made it?)"
        );
        return Ok(ExitCode::FAILURE);
    };
    let next = current + 1;
    let mut labels = secret.spec.as_ref().and_then(|s| s.labels.clone()).unwrap_or_default();
    labels.insert(LABEL_ROTATE.to_string(), next.to_string());
    match engine.label_secret(secret, labels).await {
        Ok(()) => {
            println!(
                "asked for generation {next} of {logical} (stack {stack}); the operator rotates it: `swarmlog status` shows its users"
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

pub(crate) async fn es(cmd: &swarmlog::cli::EsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        swarmlog::cli::EsCommand::Decommission(args) => decommission(args).await,
    }
}

/// Marks (or unmarks) a node for the operator to decommission its
/// Elasticsearch node: the node label is all this writes.
async fn decommission(args: &swarmlog::cli::DecommissionArgs) -> anyhow::Result<ExitCode> {
    use swarmlog::plan::cluster::LABEL_ES_DECOMMISSION;
    let engine = match connect(&args.engine).await {
        Ok(e) => e,
        Err(code) => return Ok(code),
    };
    let nodes = match engine.list_nodes().await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    let host = |n: &bollard::models::Node| swarmlog::plan::placement::hostname(n);
    let found: Vec<&bollard::models::Node> = nodes
        .iter()
        .filter(|n| n.id.as_deref() == Some(args.node.as_str()) || host(n) == args.node)
        .collect();
    let node = match found.as_slice() {
        [one] => *one,
        [] => {
            eprintln!(
                "error: no node {:?} in the swarm (nodes: {})",
                args.node,
                nodes.iter().map(host).collect::<Vec<_>>().join(", ")
            );
            return Ok(ExitCode::FAILURE);
        }
        _ => {
            eprintln!("error: several nodes are called {:?}: give its ID", args.node);
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut spec = node.spec.clone().unwrap_or_default();
    let labels = spec.labels.get_or_insert_with(Default::default);
    let marked = labels.contains_key(LABEL_ES_DECOMMISSION);
    if marked != args.cancel {
        println!(
            "node {}: {}",
            host(node),
            if args.cancel {
                "not marked; nothing to cancel"
            } else {
                "already marked for decommission"
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.cancel {
        labels.remove(LABEL_ES_DECOMMISSION);
    } else {
        labels.insert(LABEL_ES_DECOMMISSION.to_string(), "true".to_string());
    }
    let version = node.version.as_ref().and_then(|v| v.index).unwrap_or(0);
    let id = node.id.clone().unwrap_or_default();
    if let Err(e) = engine.update_node(&host(node), &id, version, spec).await {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(e.exit_code()));
    }
    if args.cancel {
        println!(
            "node {}: decommission cancelled; the operator takes its name out of the allocation exclusion (and makes its Elasticsearch node again if it was removed and the node is a logger node)",
            host(node)
        );
    } else {
        println!(
            "node {}: marked ({LABEL_ES_DECOMMISSION}=true). The operator moves its shards to the other nodes, then removes its Elasticsearch service (its volume stays). Follow it with `swarmlog status`: the node's row says how many shards are left.",
            host(node)
        );
    }
    Ok(ExitCode::SUCCESS)
}
