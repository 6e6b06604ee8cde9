//! The `swarmlog` binary: parses the command line and runs one subcommand.

mod commands;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use commands::{
    apply, credentials, es, healthcheck, manpage, plan, preflight, print_bytes, render, run, status, validate,
};
use swarmlog::cli::{Cli, Command, LogFormat};

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
        Command::Es(cmd) => with_runtime(|| es(cmd)),
        Command::Credentials(cmd) => with_runtime(|| credentials(cmd)),
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
