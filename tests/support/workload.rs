//! The applications behind a sidecar: redis-server for TCP inbounds, and
//! Python's http.server speaking HTTP/1.1 (so Envoy keeps its upstream
//! connections alive) for HTTP inbounds.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use super::process::{Process, program, wait_until};

/// The file the HTTP workload serves.
pub const HTTP_PATH: &str = "/hello.txt";

const STARTUP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    Redis,
    Http,
}

#[derive(Debug)]
pub struct Workload {
    pub app: App,
    pub port: u16,
    process: Process,
}

impl App {
    /// The program that runs this app.
    pub fn program(self) -> &'static str {
        match self {
            App::Redis => "redis-server",
            App::Http => "python3",
        }
    }
}

impl Workload {
    /// Starts `app` on 127.0.0.1:`port`, logging into `dir`, and waits until it
    /// accepts connections.
    pub fn start(app: App, port: u16, dir: &Path) -> Result<Workload> {
        let command = match app {
            App::Redis => redis_command(port)?,
            App::Http => http_command(port, dir)?,
        };
        let log = dir.join(format!("{app:?}.log").to_lowercase());
        let mut process = Process::spawn(&format!("{app:?}"), command, &log)?;
        wait_for_port(&mut process, port)?;
        Ok(Workload { app, port, process })
    }
}

fn redis_command(port: u16) -> Result<Command> {
    let mut command = Command::new(program(App::Redis.program())?);
    // No persistence: nothing is written next to the tests.
    command.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
    command.args(["--save", "", "--appendonly", "no", "--protected-mode", "no"]);
    Ok(command)
}

fn http_command(port: u16, dir: &Path) -> Result<Command> {
    let root = dir.join("www");
    fs::create_dir_all(&root)?;
    fs::write(
        root.join(HTTP_PATH.trim_start_matches('/')),
        "hello from the workload\n",
    )?;

    let mut command = Command::new(program(App::Http.program())?);
    command.args([
        "-m",
        "http.server",
        "--bind",
        "127.0.0.1",
        "--protocol",
        "HTTP/1.1",
    ]);
    command.arg("--directory").arg(&root).arg(port.to_string());
    Ok(command)
}

/// Connecting straight to the workload is invisible to Envoy, so this probe
/// does not disturb any counter.
fn wait_for_port(process: &mut Process, port: u16) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(
        STARTUP,
        &format!("{} on port {port}", process.name()),
        || {
            if let Some(status) = process.exited() {
                bail!(
                    "{} exited with {status} before listening on {port}",
                    process.name()
                );
            }
            Ok(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok())
        },
    )
    .map(drop)
}
