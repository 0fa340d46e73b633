//! The command line: commands, flags, and the checks that run before anything binds.
//!
//! Every flag also reads `STRICTLY_<FLAG_IN_CAPS>`; durations take humantime forms
//! (`30s`, `5m`, `24h`). A bad value names its flag and exits with status 2.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::shard::Shard;

/// Tells, inbound by inbound, when a Kuma workload can switch from Permissive to
/// Strict mTLS without breaking anyone.
#[derive(Debug, Parser)]
#[command(
    name = "strictly",
    version,
    propagate_version = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: poll the control plane, export verdicts on /metrics and the API.
    Run(RunArgs),
    /// Judge once and exit: 0 all ready, 1 plaintext seen, 2 control plane unreadable,
    /// 3 inconclusive.
    Check(CheckArgs),
    /// Play Kuma's strict-mTLS migration guide against a simulated control plane and
    /// watch strictly judge it, on 127.0.0.1 only.
    Demo(DemoArgs),
}

/// How to reach the control plane and what to look at.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Control-plane API base URL (zone or global control plane).
    #[arg(
        long,
        env = "STRICTLY_KUMA_URL",
        default_value = "http://localhost:5681"
    )]
    pub kuma_url: String,

    /// File holding a user token, sent as `Authorization: Bearer`; re-read when it changes.
    #[arg(long, env = "STRICTLY_KUMA_TOKEN_FILE")]
    pub kuma_token_file: Option<PathBuf>,

    /// PEM CA bundle for an HTTPS API URL.
    #[arg(long, env = "STRICTLY_KUMA_CA_FILE")]
    pub kuma_ca_file: Option<PathBuf>,

    /// Limit to these meshes (repeatable, or comma-separated in the environment).
    #[arg(long = "mesh", env = "STRICTLY_MESH", value_delimiter = ',')]
    pub meshes: Vec<String>,

    /// Limit to these `kuma.io/service` values (repeatable, or comma-separated).
    #[arg(long = "service", env = "STRICTLY_SERVICE", value_delimiter = ',')]
    pub services: Vec<String>,

    /// Stats requests in flight at once; protects the control plane.
    #[arg(long, env = "STRICTLY_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,

    /// Timeout of each request to the control plane.
    #[arg(long, env = "STRICTLY_REQUEST_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub request_timeout: Duration,
}

/// The verdict rules.
#[derive(Debug, Clone, Args)]
pub struct VerdictArgs {
    /// How long an inbound must be seen with no plaintext before it is ready.
    #[arg(long, env = "STRICTLY_WINDOW", default_value = "24h", value_parser = duration)]
    pub window: Duration,

    /// mTLS connections needed inside the window as evidence of real traffic.
    #[arg(long, env = "STRICTLY_MIN_MTLS_CONNECTIONS", default_value_t = 1)]
    pub min_mtls_connections: u64,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(flatten)]
    pub verdict: VerdictArgs,

    /// Time between polls of the same dataplane.
    #[arg(long, env = "STRICTLY_POLL_INTERVAL", default_value = "30s", value_parser = duration)]
    pub poll_interval: Duration,

    /// Data older than this makes a verdict unknown [default: 3 × poll interval].
    #[arg(long, env = "STRICTLY_STALE_AFTER", value_parser = duration)]
    pub stale_after: Option<Duration>,

    /// Address of the metrics and API server.
    #[arg(long, env = "STRICTLY_LISTEN", default_value = "0.0.0.0:9714")]
    pub listen: SocketAddr,

    /// Log line format.
    #[arg(long, env = "STRICTLY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Also export per-dataplane series (higher cardinality).
    #[arg(long, env = "STRICTLY_PER_DATAPLANE")]
    pub per_dataplane: bool,

    /// Read only shard INDEX of COUNT of the dataplanes, split by a stable hash of
    /// mesh and name; run COUNT daemons, 0 to COUNT-1, to cover them all.
    #[arg(long, env = "STRICTLY_SHARD", default_value = "0/1", value_name = "INDEX/COUNT", value_parser = shard)]
    pub shard: Shard,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(flatten)]
    pub verdict: VerdictArgs,

    /// Watch this long between two snapshots; 0s judges one snapshot by Envoy's uptime.
    #[arg(long, env = "STRICTLY_OBSERVE", default_value = "0s", value_parser = duration)]
    pub observe: Duration,

    /// Report format.
    #[arg(long, env = "STRICTLY_OUTPUT", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people, coloured on a terminal unless NO_COLOR is set.
    Table,
    /// The same objects as `GET /api/v1/inbounds`.
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Play the migration this many times faster (0.5 is slower).
    #[arg(long, env = "STRICTLY_SPEED", default_value_t = 1.0)]
    pub speed: f64,

    /// Address of the daemon's metrics, API and status page.
    #[arg(long, env = "STRICTLY_LISTEN", default_value = "127.0.0.1:9714")]
    pub listen: SocketAddr,

    /// Log line format.
    #[arg(long, env = "STRICTLY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn shard(text: &str) -> Result<Shard, String> {
    text.parse()
        .map_err(|e: crate::shard::ShardError| e.to_string())
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (try forms like 30s, 5m, 24h)"))
}

/// A flag whose value parsed but makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for {flag}: {problem}")]
pub struct InvalidFlag {
    pub flag: &'static str,
    pub problem: String,
}

fn invalid(flag: &'static str, problem: impl Into<String>) -> InvalidFlag {
    InvalidFlag {
        flag,
        problem: problem.into(),
    }
}

impl ConnectionArgs {
    /// Checks what clap cannot: URL shape, readable files, sane limits.
    pub fn validate(&self) -> Result<(), InvalidFlag> {
        let url = self.kuma_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "--kuma-url",
                format!("{url:?} must start with http:// or https://"),
            ));
        }
        if url.len() <= "https://".len() {
            return Err(invalid("--kuma-url", format!("{url:?} has no host")));
        }
        if let Some(path) = &self.kuma_token_file {
            readable("--kuma-token-file", path)?;
        }
        if let Some(path) = &self.kuma_ca_file {
            readable("--kuma-ca-file", path)?;
        }
        if self.concurrency == 0 {
            return Err(invalid("--concurrency", "must be at least 1"));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("--request-timeout", "must be longer than 0s"));
        }
        Ok(())
    }
}

fn readable(flag: &'static str, path: &PathBuf) -> Result<(), InvalidFlag> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| invalid(flag, format!("cannot read {}: {e}", path.display())))
}

impl VerdictArgs {
    pub fn validate(&self) -> Result<(), InvalidFlag> {
        if self.window.is_zero() {
            return Err(invalid("--window", "must be longer than 0s"));
        }
        Ok(())
    }
}

impl CheckArgs {
    pub fn validate(&self) -> Result<(), InvalidFlag> {
        self.connection.validate()?;
        self.verdict.validate()
    }
}

impl DemoArgs {
    pub fn validate(&self) -> Result<(), InvalidFlag> {
        if !(self.speed.is_finite() && self.speed >= 0.01 && self.speed <= 1000.0) {
            return Err(invalid("--speed", "must be between 0.01 and 1000"));
        }
        Ok(())
    }
}

impl RunArgs {
    /// Checks every flag, before anything binds or connects.
    pub fn validate(&self) -> Result<(), InvalidFlag> {
        self.connection.validate()?;
        self.verdict.validate()?;
        if self.poll_interval.is_zero() {
            return Err(invalid("--poll-interval", "must be longer than 0s"));
        }
        if self.stale_after() < self.poll_interval {
            return Err(invalid(
                "--stale-after",
                "must be at least the poll interval, or every verdict would be unknown",
            ));
        }
        Ok(())
    }

    pub fn stale_after(&self) -> Duration {
        self.stale_after.unwrap_or(self.poll_interval * 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<RunArgs, String> {
        let argv = ["strictly", "run"].iter().chain(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Command::Run(run) = cli.command else {
            return Err("not the run command".to_string());
        };
        run.validate().map_err(|e| e.to_string())?;
        Ok(run)
    }

    #[test]
    fn defaults_follow_the_design() {
        let args = run(&[]).expect("defaults are valid");
        assert_eq!(args.connection.kuma_url, "http://localhost:5681");
        assert_eq!(args.poll_interval, Duration::from_secs(30));
        assert_eq!(args.stale_after(), Duration::from_secs(90));
        assert_eq!(args.verdict.window, Duration::from_secs(24 * 3600));
        assert_eq!(args.verdict.min_mtls_connections, 1);
        assert_eq!(args.connection.concurrency, 8);
        assert_eq!(args.connection.request_timeout, Duration::from_secs(10));
        assert_eq!(args.listen.to_string(), "0.0.0.0:9714");
        assert_eq!(args.log_format, LogFormat::Text);
        assert!(!args.per_dataplane);
        assert_eq!(args.shard, Shard::ALL);
    }

    #[test]
    fn repeatable_selection() {
        let args = run(&["--mesh", "a", "--mesh", "b", "--service", "redis"]).expect("valid");
        assert_eq!(args.connection.meshes, ["a", "b"]);
        assert_eq!(args.connection.services, ["redis"]);
    }

    #[test]
    fn bad_values_name_their_flag() {
        let cases: [(&[&str], &str); 11] = [
            (&["--poll-interval", "soon"], "--poll-interval"),
            (&["--poll-interval", "0s"], "--poll-interval"),
            (&["--window", "0s"], "--window"),
            (&["--kuma-url", "localhost:5681"], "--kuma-url"),
            (&["--concurrency", "0"], "--concurrency"),
            (
                &["--kuma-token-file", "/nonexistent/token"],
                "--kuma-token-file",
            ),
            (&["--stale-after", "10s"], "--stale-after"),
            (&["--listen", "nowhere"], "--listen"),
            (&["--shard", "2/2"], "--shard"),
            (&["--shard", "0/0"], "--shard"),
            (&["--shard", "1"], "--shard"),
        ];
        for (args, flag) in cases {
            let err = run(args).expect_err("must be refused");
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }
}
