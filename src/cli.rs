//! Command line: settings from flags and `SWARMLOG_*` environment variables.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `swarmlog --version`: the version, the commit and the build date (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SWARMLOG_GIT_COMMIT"),
    ", built ",
    env!("SWARMLOG_BUILD_DATE"),
    ")"
);

/// swarmlog keeps a logging stack (Elasticsearch, Logstash, Kibana) running on
/// the Docker Swarm nodes labelled logger=true.
#[derive(Debug, Parser)]
#[command(name = "swarmlog", version = VERSION, about, long_about = None)]
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
    /// Show what apply would change in the swarm. Exit 0: no changes, 2: changes, 1: error.
    Plan(PlanArgs),
    /// Make the swarm hold the desired state, changing only what differs.
    Apply(ApplyArgs),
    /// Run the operator: watch events and nodes, reconcile continuously.
    Run(Box<RunArgs>),
    /// Print an operator's status; exit 0 only when the stack is Converged.
    Status(StatusArgs),
    /// Exit 0 when the operator at --url is alive (for HEALTHCHECK).
    Healthcheck(HealthcheckArgs),
    /// Check this host for Elasticsearch: print vm.max_map_count; exit 0 when
    /// at least --min-map-count, 2 when below, 1 when unreadable. The operator
    /// runs it as a one-off task on each logger node.
    Preflight(PreflightArgs),
    /// Elasticsearch cluster operations (topology cluster).
    #[command(subcommand)]
    Es(EsCommand),
    /// The root key and the Elasticsearch passwords derived from it
    /// (elasticsearch.security).
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// Print a shell completion script: `swarmlog completions bash > /etc/bash_completion.d/swarmlog`.
    Completions(CompletionsArgs),
    /// Print the man page swarmlog.1 (roff), or write one page per subcommand with --dir.
    Manpage(ManpageArgs),
}

/// `swarmlog es ...`
#[derive(Debug, Clone, Subcommand)]
pub enum EsCommand {
    /// Take a node's Elasticsearch out of the cluster for good: the operator
    /// moves its shards to the other nodes (allocation exclusion; a voting
    /// exclusion for a master-eligible node), waits until it holds none,
    /// then removes its service; its volume is kept. Marks the node with
    /// the label io.swarmlog.es.decommission, which also keeps a new
    /// Elasticsearch node from being made there; `--cancel` takes it away.
    Decommission(DecommissionArgs),
}

/// `swarmlog credentials ...`
#[derive(Debug, Clone, Subcommand)]
pub enum CredentialsCommand {
    /// Make the root key once, before the operator is deployed: the swarm
    /// secret swarmlog_root_key (32 random bytes) that manifests/operator.yml
    /// mounts into the operator. An existing one is kept (exit 0).
    Init(CredentialsInitArgs),
    /// Print a credential's password (default: elastic, the first login),
    /// derived from the root key as the operator derives it. Run it where
    /// the key is mounted: `docker exec <operator container> /swarmlog
    /// credentials show`.
    Show(CredentialsShowArgs),
    /// Rotate a credential (elastic, kibana or logstash): marks its secret
    /// with the next generation; the operator makes the new user (or sets
    /// elastic's new password), moves Kibana or Logstash onto it (no request
    /// refused on the way), then removes the old user and secret.
    Rotate(CredentialsRotateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CredentialsInitArgs {
    /// The secret's name (manifests/operator.yml: SWARMLOG_ROOT_KEY_SECRET).
    #[arg(long, default_value = crate::security::ROOT_KEY_SECRET)]
    pub name: String,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CredentialsShowArgs {
    /// The credential: elastic, kibana or logstash (or its user's name);
    /// `ca`: swarmlog's CA certificate (public), which a client of
    /// Elasticsearch trusts.
    #[arg(default_value = crate::security::ELASTIC)]
    pub user: String,
    /// Print the user's name before the password.
    #[arg(long)]
    pub user_too: bool,
    #[command(flatten)]
    pub chart: ChartArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CredentialsRotateArgs {
    /// The credential: elastic, kibana or logstash.
    pub credential: String,
    #[command(flatten)]
    pub chart: ChartArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DecommissionArgs {
    /// The node, by hostname or ID.
    pub node: String,
    /// Take the mark away: the node keeps (or gets back) its Elasticsearch node.
    #[arg(long)]
    pub cancel: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Shells `swarmlog completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, Args)]
pub struct ManpageArgs {
    /// Write swarmlog.1 and swarmlog-SUBCOMMAND.1 into this directory instead of printing swarmlog.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Into memory: clap_complete panics when its writer fails (a closed pipe).
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut cmd, "swarmlog", &mut out);
    out
}

/// The man page swarmlog.1 (roff).
pub fn manpage() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut out)?;
    Ok(out)
}

/// Writes swarmlog.1 and one page per subcommand (swarmlog-run.1, ...) into `dir`.
pub fn manpages_to(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), dir)?;
    // The same swarmlog.1 as `swarmlog manpage` prints.
    std::fs::write(dir.join("swarmlog.1"), manpage()?)
}

#[derive(Debug, Clone, Args)]
pub struct PreflightArgs {
    /// The minimum vm.max_map_count (Elasticsearch 8: 262144; 9: 1048576).
    #[arg(long, default_value_t = crate::preflight::DEFAULT_MIN)]
    pub min_map_count: u64,
    /// Where to read it (the host's value, also inside a container).
    #[arg(long, env = "SWARMLOG_PREFLIGHT_FILE", default_value = crate::preflight::SYSCTL_FILE)]
    pub file: String,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The operator's HTTP address.
    #[arg(long, env = "SWARMLOG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// `text` for people, `json` for scripts (the /status document).
    #[arg(long, short = 'o', value_enum, default_value_t = PlanFormat::Text)]
    pub output: PlanFormat,
    /// How long to wait for an answer.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The operator's HTTP address.
    #[arg(long, env = "SWARMLOG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// `healthz` (alive) or `readyz` (engine reachable, first observe done).
    #[arg(long, default_value = "healthz")]
    pub endpoint: String,
    #[arg(long, default_value = "3s", value_parser = duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub chart: ChartArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub safety: SafetyArgs,
    /// Full resync period, even without events (humantime).
    #[arg(long, env = "SWARMLOG_RESYNC", default_value = "5m", value_parser = duration)]
    pub resync: std::time::Duration,
    /// Quiet time that closes a batch of triggers.
    #[arg(long, env = "SWARMLOG_DEBOUNCE", default_value = "20ms", value_parser = duration_or_zero)]
    pub debounce: std::time::Duration,
    /// Longest a batch of triggers waits, however busy the events.
    #[arg(long, env = "SWARMLOG_DEBOUNCE_MAX", default_value = "1s", value_parser = duration)]
    pub debounce_max: std::time::Duration,
    /// How often the values and chart files are checked for changes.
    #[arg(long, env = "SWARMLOG_WATCH_INTERVAL", default_value = "2s", value_parser = duration)]
    pub watch_interval: std::time::Duration,
    /// Write even when not on the swarm leader (a single instance).
    #[arg(long, env = "SWARMLOG_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,
    /// Auto-label rule, `CONDITIONS:LABELS` such as `hostname=logger-*:logger=true`
    /// (conditions: hostname=GLOB, role=manager|worker, label.KEY=VALUE); repeatable,
    /// `;`-separated in the environment variable.
    #[arg(
        long = "auto-label",
        env = "SWARMLOG_AUTO_LABEL",
        value_delimiter = ';',
        value_name = "RULE"
    )]
    pub auto_label: Vec<String>,
    /// First retry delay after a failed reconcile (doubles, with jitter).
    #[arg(long, env = "SWARMLOG_RETRY_MIN", default_value = "1s", value_parser = duration)]
    pub retry_min: std::time::Duration,
    /// Longest retry delay.
    #[arg(long, env = "SWARMLOG_RETRY_MAX", default_value = "2m", value_parser = duration)]
    pub retry_max: std::time::Duration,
    /// Address of the HTTP API (/status, /healthz, /readyz, /metrics, /).
    #[arg(long, env = "SWARMLOG_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: std::net::SocketAddr,
    /// A file holding the bearer token for POST /reconcile (such as a Docker secret).
    #[arg(long, env = "SWARMLOG_RECONCILE_TOKEN_FILE")]
    pub reconcile_token_file: Option<PathBuf>,
    /// Allow POST /reconcile without a token (off by default).
    #[arg(long, env = "SWARMLOG_ALLOW_UNAUTHENTICATED_RECONCILE")]
    pub allow_unauthenticated_reconcile: bool,
    /// Longest one reconcile may take; one that overruns is cancelled,
    /// counted (errors by category `deadline`) and retried with backoff.
    /// `/healthz` fails once no reconcile has finished within this plus the resync.
    #[arg(long, env = "SWARMLOG_RECONCILE_TIMEOUT", default_value = "2m", value_parser = duration)]
    pub reconcile_timeout: std::time::Duration,
    /// On SIGTERM/SIGINT, how long a running reconcile may take to finish.
    #[arg(long, env = "SWARMLOG_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration_or_zero)]
    pub shutdown_timeout: std::time::Duration,
    /// Image of the Elasticsearch preflight job (this operator's own image;
    /// manifests/operator.yml sets it). Unset: the check is off and /status says so.
    #[arg(long, env = "SWARMLOG_PREFLIGHT_IMAGE")]
    pub preflight_image: Option<String>,
    /// How long one node's preflight job may take (the image may need a pull).
    #[arg(long, env = "SWARMLOG_PREFLIGHT_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub preflight_timeout: std::time::Duration,
    /// How soon a node that failed the preflight (or could not be checked) is
    /// checked again; a passed check stands until the node changes.
    #[arg(long, env = "SWARMLOG_PREFLIGHT_RECHECK", default_value = "1m", value_parser = duration)]
    pub preflight_recheck: std::time::Duration,
    /// Where Elasticsearch's HTTP API is reached (comma separated, tried in
    /// order). Default: its services' names on the network the operator
    /// shares with it (elasticsearch.operatorNetwork), port 9200.
    #[arg(long, env = "SWARMLOG_ES_URL", value_delimiter = ',')]
    pub es_url: Vec<String>,
    /// How often Elasticsearch's health is read (every second during a
    /// rolling change).
    #[arg(long, env = "SWARMLOG_ES_INTERVAL", default_value = "5s", value_parser = duration)]
    pub es_interval: std::time::Duration,
    /// Timeout of one call to Elasticsearch.
    #[arg(long, env = "SWARMLOG_ES_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub es_timeout: std::time::Duration,
}

/// Where the Docker engine is.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Engine address (unix:///path or tcp://host:port); default: DOCKER_HOST, else the local socket.
    #[arg(long, env = "SWARMLOG_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Timeout of one engine call (humantime: 30s, 2m).
    #[arg(long, env = "SWARMLOG_ENGINE_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub engine_timeout: std::time::Duration,
}

/// Safety options of plan and apply (all off by default).
#[derive(Debug, Clone, Args)]
pub struct SafetyArgs {
    /// Take over existing objects of the desired names that swarmlog does not own.
    #[arg(long)]
    pub adopt: bool,
    /// Allow removing every service the stack owns.
    #[arg(long)]
    pub allow_remove_all: bool,
    /// Allow moving a service with a volume (Elasticsearch) off the node that holds its data.
    #[arg(long)]
    pub allow_move: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub chart: ChartArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub safety: SafetyArgs,
    /// `text` for people, `json` for scripts.
    #[arg(long, short = 'o', value_enum, default_value_t = PlanFormat::Text)]
    pub output: PlanFormat,
    /// Show the values of environment keys that look secret (PASSWORD,
    /// SECRET, TOKEN, KEY, ...); hidden by default. Config and secret data
    /// are never shown.
    #[arg(long)]
    pub show_values: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub chart: ChartArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub safety: SafetyArgs,
    /// Wait until every task of the stack runs.
    #[arg(long)]
    pub wait: bool,
    /// Deadline of --wait (humantime: 90s, 5m).
    #[arg(long, env = "SWARMLOG_WAIT_TIMEOUT", default_value = "5m", value_parser = duration)]
    pub wait_timeout: std::time::Duration,
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
    /// The root key the Elasticsearch credentials are derived from (with
    /// `elasticsearch.security`). `render` and `validate` without it show
    /// placeholders; `plan`, `apply` and `run` read
    /// /run/secrets/swarmlog_root_key when it is not given.
    #[arg(long, env = "SWARMLOG_ROOT_KEY_FILE", value_name = "FILE")]
    pub root_key_file: Option<PathBuf>,
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

impl ChartArgs {
    /// What a render reads; `--set` parsed here, once, for every subcommand.
    pub fn inputs(&self) -> Result<crate::render::Inputs, crate::diag::Problems> {
        Ok(crate::render::Inputs {
            chart: self.chart.clone(),
            values: self.values.clone(),
            set: crate::render::parse_set(&self.set)?,
            stack: self.stack.clone(),
            root_key: self.root_key_file.clone(),
            generations: Default::default(),
            certificates: Vec::new(),
            now: None,
        })
    }

    /// [`Self::inputs`] with the root key always read (its default place
    /// when none is given): what plan, apply and run write needs it.
    pub fn keyed_inputs(&self) -> Result<crate::render::Inputs, crate::diag::Problems> {
        let mut inputs = self.inputs()?;
        inputs
            .root_key
            .get_or_insert_with(|| crate::security::DEFAULT_ROOT_KEY_FILE.into());
        Ok(inputs)
    }
}

impl SafetyArgs {
    pub fn options(&self) -> crate::plan::PlanOptions {
        crate::plan::PlanOptions {
            adopt: self.adopt,
            allow_remove_all: self.allow_remove_all,
            allow_move: self.allow_move,
        }
    }
}

impl RunArgs {
    /// The controller's settings from the command line; a bad rule or
    /// `--set` is an error naming it.
    pub fn settings(&self) -> Result<crate::controller::Settings, String> {
        let auto_label = self
            .auto_label
            .iter()
            .map(|r| crate::controller::nodes::parse_rule(r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(crate::controller::Settings {
            render: self.chart.keyed_inputs().map_err(|p| p.to_string())?,
            resync: self.resync,
            debounce: self.debounce,
            debounce_max: self.debounce_max,
            watch_interval: self.watch_interval,
            leader_gating: !self.no_leader_election,
            auto_label,
            plan: self.safety.options(),
            retry_min: self.retry_min,
            retry_max: self.retry_max,
            shutdown_timeout: self.shutdown_timeout,
            reconcile_timeout: self.reconcile_timeout,
            preflight: crate::controller::PreflightSettings {
                image: self.preflight_image.clone().filter(|i| !i.trim().is_empty()),
                timeout: self.preflight_timeout,
                recheck: self.preflight_recheck,
            },
            es: crate::controller::EsSettings {
                urls: self
                    .es_url
                    .iter()
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
                    .collect(),
                interval: self.es_interval,
                timeout: self.es_timeout,
            },
        })
    }

    /// The bearer token for `POST /reconcile`, read from its file.
    pub fn reconcile_token(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.reconcile_token_file else {
            return Ok(None);
        };
        match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
            Ok(_) => Err(format!("{}: the reconcile token file is empty", path.display())),
            Err(e) => Err(format!("{}: cannot read the reconcile token: {e}", path.display())),
        }
    }
}

/// Longest duration any setting takes: beyond it, a typo (`5y` for `5s`)
/// would overflow the clock instead of meaning anything.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

/// A humantime duration, zero allowed, at most [`MAX_DURATION`].
pub fn duration_or_zero(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration (such as 30s, 5m, 2h): {e}"))?;
    if d > MAX_DURATION {
        return Err(format!(
            "{text:?} is longer than {}, the most any setting takes",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(d)
}

/// A humantime duration above zero, at most [`MAX_DURATION`] (periods and
/// timeouts: zero would spin or never wait).
pub fn duration(text: &str) -> Result<std::time::Duration, String> {
    let d = duration_or_zero(text)?;
    if d.is_zero() {
        return Err(format!("{text:?}: must be more than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn durations_are_refused_at_parse() {
        assert_eq!(duration("5m"), Ok(std::time::Duration::from_secs(300)));
        assert!(duration("0").unwrap_err().contains("more than zero"));
        assert!(duration("0s").is_err());
        assert_eq!(duration_or_zero("0s"), Ok(std::time::Duration::ZERO));
        assert!(duration("500years").unwrap_err().contains("longer than"));
        assert!(duration("abc").unwrap_err().contains("not a duration"));
        for args in [
            ["swarmlog", "run", "--resync", "0"],
            ["swarmlog", "run", "--watch-interval", "0s"],
            ["swarmlog", "run", "--retry-max", "99999999999999s"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} was accepted");
        }
        assert!(Cli::try_parse_from(["swarmlog", "run", "--debounce", "0ms"]).is_ok());
    }
}
