//! The `strictly` binary: parse the command line, start logging, run the command.

use std::process::ExitCode;

use clap::Parser;
use strictly::cli::{Cli, Command, InvalidFlag, RunArgs};
use strictly::daemon::{self, Daemon};
use strictly::{check, demo, telemetry};
use tracing::{error, info};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            if let Err(err) = args.validate() {
                return usage(&err);
            }
            telemetry::init(args.log_format);
            runtime().block_on(run(args))
        }
        Command::Check(args) => {
            if let Err(err) = args.validate() {
                return usage(&err);
            }
            // Only trouble is logged: the report itself goes to stdout.
            telemetry::init_quiet();
            ExitCode::from(runtime().block_on(check::run(&args)))
        }
        Command::Demo(args) => {
            if let Err(err) = args.validate() {
                return usage(&err);
            }
            telemetry::init(args.log_format);
            runtime().block_on(demo(args))
        }
    }
}

/// A bad flag: said on stderr, exit status 2, before anything binds.
fn usage(err: &InvalidFlag) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(2)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime can be built on any supported platform")
}

async fn run(args: RunArgs) -> ExitCode {
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

async fn demo(args: strictly::cli::DemoArgs) -> ExitCode {
    match demo::run(&args, daemon::stop_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!(error = %err, "the demo could not run");
            ExitCode::FAILURE
        }
    }
}
