//! One Envoy process and its admin API.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::http1;
use super::process::{Process, envoy_binary, log_tail, wait_until};
use super::stats::Stats;

/// Envoy 1.40 starts in well under a second here; the margin is for a loaded CI
/// machine.
const STARTUP: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct Envoy {
    process: Process,
    admin: SocketAddr,
    log: PathBuf,
}

impl Envoy {
    /// Starts Envoy on `config`, keeping its files in `dir`, and returns once
    /// the admin API says the server is live (static listeners are bound by
    /// then).
    pub fn start(config: &Path, dir: &Path) -> Result<Envoy> {
        let address_file = dir.join("admin-address");
        let log = dir.join("envoy.log");
        let _ = fs::remove_file(&address_file);

        let command = envoy_command(config, &address_file, &log)?;
        let mut process = Process::spawn("envoy", command, &dir.join("envoy.out"))?;
        let admin = wait_for_admin(&mut process, &address_file, &log)?;
        let envoy = Envoy {
            process,
            admin,
            log,
        };
        envoy.wait_until_live()?;
        Ok(envoy)
    }

    pub fn admin_address(&self) -> SocketAddr {
        self.admin
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Kills Envoy at once, as a crash or an evicted pod would end it.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// GETs an admin path such as `/stats?usedonly`, failing on a non-200.
    pub fn admin_get(&self, path: &str) -> Result<String> {
        let response = http1::get(self.admin, path)?;
        if response.status != 200 {
            bail!(
                "admin {path} answered {}: {}",
                response.status,
                response.text()
            );
        }
        Ok(response.text())
    }

    /// The `/stats` text, all stats or only those ever written.
    pub fn stats_text(&self, used_only: bool) -> Result<String> {
        self.admin_get(if used_only {
            "/stats?usedonly"
        } else {
            "/stats"
        })
    }

    pub fn stats(&self) -> Result<Stats> {
        Ok(Stats::parse(&self.stats_text(false)?))
    }

    /// The port a listener is bound to, from `/listeners?format=json`.
    pub fn listener_port(&self, name: &str) -> Result<Option<u16>> {
        let body = self.admin_get("/listeners?format=json")?;
        let json: Value = serde_json::from_str(&body).context("/listeners is not JSON")?;
        let statuses = json["listener_statuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(statuses
            .iter()
            .find(|status| status["name"] == name)
            .and_then(|status| status["local_address"]["socket_address"]["port_value"].as_u64())
            .and_then(|port| u16::try_from(port).ok()))
    }

    /// The end of Envoy's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    fn wait_until_live(&self) -> Result<()> {
        wait_until(STARTUP, "Envoy to become live", || {
            Ok(http1::get(self.admin, "/ready")
                .ok()
                .filter(|response| response.status == 200))
        })
        .with_context(|| self.log_tail())
        .map(drop)
    }
}

/// Hot restart is off: Envoy then creates no shared memory (which it leaves in
/// /dev/shm even after a clean exit) and no domain sockets, so Envoys started
/// side by side cannot collide. Each still gets its own base id, which keeps
/// them apart from any Envoy started by hand on the same machine.
fn envoy_command(config: &Path, address_file: &Path, log: &Path) -> Result<Command> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base_id = std::process::id() % 100_000 * 1000 + NEXT.fetch_add(1, Ordering::Relaxed);

    let mut command = Command::new(envoy_binary()?);
    command.arg("--config-path").arg(config);
    command.arg("--admin-address-path").arg(address_file);
    command.arg("--log-path").arg(log);
    command.args(["--base-id", &base_id.to_string(), "--disable-hot-restart"]);
    // One worker thread is enough for a test and kind to a 2-core machine; the
    // listener totals read here do not depend on the number of workers.
    command.args(["--concurrency", "1", "--log-level", "info"]);
    Ok(command)
}

fn wait_for_admin(process: &mut Process, address_file: &Path, log: &Path) -> Result<SocketAddr> {
    wait_until(STARTUP, "Envoy's admin address", || {
        if let Some(status) = process.exited() {
            bail!("envoy exited with {status}:\n{}", log_tail(log));
        }
        let text = fs::read_to_string(address_file).unwrap_or_default();
        Ok(text.trim().parse().ok())
    })
}
