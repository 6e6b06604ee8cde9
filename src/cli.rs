//! Command line: settings from flags and `SWARMLOG_*` environment variables.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// swarmlog keeps a logging stack (Elasticsearch, Logstash, Kibana) running on
/// the Docker Swarm nodes labelled logger=true.
#[derive(Debug, Parser)]
#[command(name = "swarmlog", version, about, long_about = None)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "SWARMLOG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, as in RUST_LOG (e.g. `info`, `swarmlog=debug`).
    #[arg(long, global = true, env = "SWARMLOG_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the stack file (or the engine specs) the chart and values render to.
    Render(RenderArgs),
    /// Check the chart and values offline; exit 0, or 1 listing every problem.
    Validate(ChartArgs),
}

/// Which chart, which values, which stack.
#[derive(Debug, Clone, Args)]
pub struct ChartArgs {
    /// A chart directory or a plain stack file (default: the built-in `logging` chart).
    #[arg(long, env = "SWARMLOG_CHART")]
    pub chart: Option<PathBuf>,
    /// A values file; repeatable, later files win (deep merge).
    #[arg(long = "values", short = 'f', env = "SWARMLOG_VALUES", value_delimiter = ',')]
    pub values: Vec<PathBuf>,
    /// Set one value, as `key.path=value` (after the values files); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Stack name (default: the values' `stack`, else `logging`).
    #[arg(long, env = "SWARMLOG_STACK")]
    pub stack: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub chart: ChartArgs,
    /// `yaml`: the compose stack file; `json`: the engine specs swarmlog writes.
    #[arg(long, short = 'o', value_enum, default_value_t = RenderFormat::Yaml)]
    pub output: RenderFormat,
    /// Write the stack file and the files it references into this directory,
    /// ready for `docker stack deploy -c DIR/docker-stack.yml`.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    Yaml,
    Json,
}
