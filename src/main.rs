//! The `swarmlog` binary: parses the command line and runs one subcommand.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use swarmlog::chart::{self, Chart, RenderOptions, Rendered};
use swarmlog::cli::{
    ApplyArgs, ChartArgs, Cli, Command, EngineArgs, HealthcheckArgs, LogFormat, PlanArgs, PlanFormat, PreflightArgs,
    RenderArgs, RenderFormat, RunArgs, SafetyArgs, StatusArgs,
};
use swarmlog::diag::{Problem, Problems};
use swarmlog::engine::{self, Engine};
use swarmlog::plan::PlanOptions;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format, &cli.log);
    let result = match &cli.command {
        Command::Render(args) => render(args),
        Command::Validate(args) => validate(args),
        Command::Plan(args) => with_runtime(|| plan(args)),
        Command::Apply(args) => with_runtime(|| apply(args)),
        Command::Run(args) => with_runtime(|| run(args)),
        Command::Status(args) => with_runtime(|| status(args)),
        Command::Healthcheck(args) => with_runtime(|| healthcheck(args)),
        Command::Preflight(args) => Ok(preflight(args)),
        Command::Completions(args) => print_bytes(&swarmlog::cli::completions(args.shell)),
        Command::Manpage(args) => manpage(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat, filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads the chart and renders it; every problem is printed, one per line.
fn load_and_render(args: &ChartArgs) -> Result<Rendered, Problems> {
    let chart = match &args.chart {
        Some(path) => Chart::load(path)?,
        None => Chart::embedded()?,
    };
    let mut problems = Vec::new();
    let mut values_files = Vec::new();
    for path in &args.values {
        match chart::read_input(path) {
            Ok(text) => values_files.push((path.display().to_string(), text)),
            Err(p) => problems.push(p),
        }
    }
    let mut set = Vec::new();
    for s in &args.set {
        match s.split_once('=') {
            Some((k, v)) => set.push((k.to_string(), v.to_string())),
            None => problems.push(Problem::new("--set", format!("{s:?} must be KEY=VALUE"))),
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    let rendered = chart.render(&RenderOptions {
        values_files,
        set,
        stack: args.stack.clone(),
        env: &env_lookup,
    })?;
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

fn render(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let rendered = match load_and_render(&args.chart) {
        Ok(r) => r,
        Err(p) => return Ok(report(&p)),
    };
    if let Some(dir) = &args.output_dir {
        write_eject(dir, &rendered)?;
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
        RenderFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rendered.desired).context("serialising the desired state")?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn write_eject(dir: &Path, rendered: &Rendered) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stack_file = dir.join("docker-stack.yml");
    std::fs::write(&stack_file, &rendered.compose_text).with_context(|| format!("writing {}", stack_file.display()))?;
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

fn validate(args: &ChartArgs) -> anyhow::Result<ExitCode> {
    match load_and_render(args) {
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

fn with_runtime<F, Fut>(f: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(f())
}

async fn connect(args: &EngineArgs) -> Result<Engine, ExitCode> {
    let env_host = std::env::var("DOCKER_HOST").ok();
    let host = engine::default_host(args.docker_host.as_deref(), env_host.as_deref());
    Engine::connect(&host, args.engine_timeout).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(e.exit_code())
    })
}

fn options(s: &SafetyArgs) -> PlanOptions {
    PlanOptions {
        adopt: s.adopt,
        allow_remove_all: s.allow_remove_all,
        allow_move: s.allow_move,
    }
}

/// Renders (offline, so bad input never reaches the engine), then connects.
async fn render_and_connect(chart: &ChartArgs, engine: &EngineArgs) -> Result<(Rendered, Engine), ExitCode> {
    let rendered = load_and_render(chart).map_err(|p| report(&p))?;
    let engine = connect(engine).await?;
    Ok((rendered, engine))
}

async fn plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let (rendered, engine) = match render_and_connect(&args.chart, &args.engine).await {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let observed = match swarmlog::observe::observe(&engine).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    let p = swarmlog::plan::plan(&rendered.desired, &observed, options(&args.safety));
    match args.output {
        PlanFormat::Text => print!("{}", swarmlog::report::plan_text(&p)),
        PlanFormat::Json => println!("{}", serde_json::to_string_pretty(&p).context("serialising the plan")?),
    }
    Ok(if !p.blockers.is_empty() || !p.conflicts.is_empty() {
        ExitCode::FAILURE
    } else if p.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn apply(args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let (rendered, engine) = match render_and_connect(&args.chart, &args.engine).await {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let result = swarmlog::apply::apply(&engine, &rendered.desired, options(&args.safety)).await;
    let writes: u64 = engine.writes().values().sum();
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

async fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, RwLock};
    use swarmlog::controller::{self, leader::Role, nodes, triggers::Backoff, Context, Settings};
    use swarmlog::status::Status;
    use tokio_util::sync::CancellationToken;

    let mut rules = Vec::new();
    for r in &args.auto_label {
        match nodes::parse_rule(r) {
            Ok(rule) => rules.push(rule),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    let mut set = Vec::new();
    for s in &args.chart.set {
        match s.split_once('=') {
            Some((k, v)) => set.push((k.to_string(), v.to_string())),
            None => {
                eprintln!("error: --set {s:?} must be KEY=VALUE");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    let settings = Settings {
        chart: args.chart.chart.clone(),
        values: args.chart.values.clone(),
        set,
        stack: args.chart.stack.clone(),
        resync: args.resync,
        debounce: args.debounce,
        debounce_max: args.debounce_max,
        watch_interval: args.watch_interval,
        leader_gating: !args.no_leader_election,
        auto_label: rules,
        plan: options(&args.safety),
        retry_min: args.retry_min,
        retry_max: args.retry_max,
        shutdown_timeout: args.shutdown_timeout,
        preflight: controller::PreflightSettings {
            image: args.preflight_image.clone().filter(|i| !i.trim().is_empty()),
            timeout: args.preflight_timeout,
            recheck: args.preflight_recheck,
        },
    };
    // A desired state that never rendered is worth saying at once (it keeps running).
    if let Err(problems) = controller::render(&settings) {
        for p in &problems {
            tracing::error!("{p}");
        }
    }
    let token = match &args.reconcile_token_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            Ok(_) => {
                eprintln!("error: {}: the reconcile token file is empty", path.display());
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => {
                eprintln!("error: {}: cannot read the reconcile token: {e}", path.display());
                return Ok(ExitCode::FAILURE);
            }
        },
        None => None,
    };
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;

    // The status and the HTTP API come first: an engine that is down is a
    // state to show, not a crash.
    let stack = settings.stack.clone().unwrap_or_else(|| "logging".to_string());
    let role = if settings.leader_gating {
        Role::Standby
    } else {
        Role::Single
    };
    let status = Arc::new(RwLock::new(Status::new(&stack, swarmlog::status::now(), role)));
    let metrics = Arc::new(swarmlog::metrics::Metrics::new());
    metrics.set_role(role);
    let alive = Arc::new(AtomicBool::new(true));
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
            alive: alive.clone(),
        },
        shutdown.clone(),
        args.shutdown_timeout,
    ));

    let env_host = std::env::var("DOCKER_HOST").ok();
    let host = engine::default_host(args.engine.docker_host.as_deref(), env_host.as_deref());
    if let Ok(mut st) = status.write() {
        st.engine.host = host.clone();
    }
    let mut backoff = Backoff::new(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(30),
    );
    let engine = loop {
        match Engine::connect(&host, args.engine.engine_timeout).await {
            Ok(e) => break Some(e),
            Err(e @ engine::EngineError::ApiTooOld { .. }) => {
                eprintln!("error: {e}");
                shutdown.cancel();
                let _ = http.await;
                return Ok(ExitCode::from(e.exit_code()));
            }
            Err(e) => {
                if let Ok(mut st) = status.write() {
                    st.engine.connected = false;
                    st.engine.last_error = Some(e.to_string());
                    st.phase = swarmlog::status::Phase::EngineUnavailable;
                }
                metrics.set_phase(swarmlog::status::Phase::EngineUnavailable);
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "waiting for the engine");
                tokio::select! {
                    _ = shutdown.cancelled() => break None,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    };
    if let Some(engine) = engine {
        tracing::info!(host = %engine.host, api = %engine.api_version, "connected to the engine");
        let ctx = Arc::new(Context::new(engine, settings, tx, status, metrics));
        controller::run(ctx, rx, shutdown.clone()).await;
    }
    alive.store(false, Ordering::Relaxed);
    shutdown.cancel();
    match http.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server error"),
        Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
    }
    Ok(ExitCode::SUCCESS)
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

/// A tiny HTTP/1.1 GET (the image has no curl): returns status code and body.
async fn http_get(url: &str, timeout: std::time::Duration) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to the operator at {addr}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .context("sending the request")?;
        let mut buf = Vec::new();
        stream
            .take(8 * 1024 * 1024)
            .read_to_end(&mut buf)
            .await
            .context("reading the answer")?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let (head, body) = text.split_once("\r\n\r\n").context("malformed HTTP answer")?;
        let code: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("malformed HTTP status line")?;
        let chunked = head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
        let body = if chunked { dechunk(body) } else { body.to_string() };
        anyhow::Ok((code, body))
    };
    tokio::time::timeout(timeout, work)
        .await
        .with_context(|| format!("no answer from {url} within {}", humantime::format_duration(timeout)))?
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

async fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let url = format!("{}/status", args.url.trim_end_matches('/'));
    let (code, body) = match http_get(&url, args.timeout).await {
        Ok(r) => r,
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

async fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let url = format!(
        "{}/{}",
        args.url.trim_end_matches('/'),
        args.endpoint.trim_start_matches('/')
    );
    match http_get(&url, args.timeout).await {
        Ok((200, _)) => Ok(ExitCode::SUCCESS),
        Ok((code, body)) => {
            eprintln!("unhealthy: {url} answered {code}: {}", body.trim());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("unhealthy: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `swarmlog manpage`: swarmlog.1 on stdout, or every page into a directory.
fn manpage(args: &swarmlog::cli::ManpageArgs) -> anyhow::Result<ExitCode> {
    match &args.dir {
        Some(dir) => {
            swarmlog::cli::manpages_to(dir).with_context(|| format!("writing man pages into {}", dir.display()))?;
            eprintln!("wrote the man pages into {}", dir.display());
        }
        None => return print_bytes(&swarmlog::cli::manpage().context("rendering the man page")?),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_bytes(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `swarmlog preflight`: the one-off check the operator runs on each logger node.
fn preflight(args: &PreflightArgs) -> ExitCode {
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
