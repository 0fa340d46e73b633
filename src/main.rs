//! The `strictly` binary: parse the command line, start logging, run the command.

use std::process::ExitCode;

use clap::Parser;
use strictly::cli::{Cli, Command};
use strictly::daemon::{self, Daemon};
use strictly::telemetry;
use tracing::{error, info};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            if let Err(err) = args.validate() {
                eprintln!("error: {err}");
                return ExitCode::from(2);
            }
            telemetry::init(args.log_format);
            runtime().block_on(run(args))
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built on any supported platform")
}

async fn run(args: strictly::cli::RunArgs) -> ExitCode {
    let daemon = match Daemon::bind(&args).await {
        Ok(daemon) => daemon,
        Err(err) => {
            error!(error = %err, "strictly could not start");
            return ExitCode::FAILURE;
        }
    };
    let addr = daemon
        .local_addr()
        .map_or_else(|_| args.listen.to_string(), |a| a.to_string());
    info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %addr,
        kuma_url = %args.connection.kuma_url,
        poll_interval = %humantime::format_duration(args.poll_interval),
        window = %humantime::format_duration(args.verdict.window),
        "strictly started"
    );
    daemon.run(daemon::stop_signal()).await;
    info!("strictly stopped");
    ExitCode::SUCCESS
}
