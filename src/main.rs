//! The `swarmlog` binary: parses the command line and runs one subcommand.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use swarmlog::chart::{self, Chart, RenderOptions, Rendered};
use swarmlog::cli::{
    ApplyArgs, ChartArgs, Cli, Command, EngineArgs, LogFormat, PlanArgs, PlanFormat, RenderArgs, RenderFormat, RunArgs,
    SafetyArgs,
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

async fn plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let rendered = match load_and_render(&args.chart) {
        Ok(r) => r,
        Err(p) => return Ok(report(&p)),
    };
    let engine = match connect(&args.engine).await {
        Ok(e) => e,
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
    let rendered = match load_and_render(&args.chart) {
        Ok(r) => r,
        Err(p) => return Ok(report(&p)),
    };
    let engine = match connect(&args.engine).await {
        Ok(e) => e,
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
    use std::sync::Arc;
    use swarmlog::controller::{self, nodes, triggers::Backoff, Context, Settings};
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
    };
    // A desired state that never rendered is worth saying at once (it keeps running).
    if let Err(problems) = controller::render(&settings) {
        for p in &problems {
            tracing::error!("{p}");
        }
    }
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;

    // The engine being down at start is a state to wait out, not a crash.
    let env_host = std::env::var("DOCKER_HOST").ok();
    let host = engine::default_host(args.engine.docker_host.as_deref(), env_host.as_deref());
    let mut backoff = Backoff::new(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(30),
    );
    let engine = loop {
        match Engine::connect(&host, args.engine.engine_timeout).await {
            Ok(e) => break e,
            Err(e @ engine::EngineError::ApiTooOld { .. }) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(e.exit_code()));
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "waiting for the engine");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(ExitCode::SUCCESS),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    };
    tracing::info!(host = %engine.host, api = %engine.api_version, "connected to the engine");
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let ctx = Arc::new(Context::new(engine, settings, tx));
    controller::run(ctx, rx, shutdown).await;
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
