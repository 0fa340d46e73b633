//! A real Prometheus scraping strictly, and `promtool` linting its output: the
//! same programs an operator runs (Debian's `prometheus` package brings both).

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use reqwest::Url;
use serde_json::Value;

use super::http1;
use super::process::{Process, ScratchDir, free_port, log_tail, program, wait_until};

/// Prometheus 2.42 is ready in a second or two; the margin is for a loaded machine.
const STARTUP: Duration = Duration::from_secs(30);

/// A port can be taken by someone else between picking it and binding it.
const START_ATTEMPTS: usize = 3;

/// Prometheus on 127.0.0.1, scraping one target every second. Killed, and its
/// storage removed, when the handle drops.
#[derive(Debug)]
pub struct Prometheus {
    addr: SocketAddr,
    process: Process,
    // Last, so that it is removed after the process that writes into it stops.
    dir: ScratchDir,
}

/// One sample of a range query: (unix seconds, value).
pub type Point = (f64, f64);

impl Prometheus {
    /// Starts Prometheus scraping `target` (`127.0.0.1:<port>`) at `/metrics`
    /// every second, and returns once it says it is ready.
    pub fn start(target: &str) -> Result<Prometheus> {
        let binary = program("prometheus")?;
        let dir = ScratchDir::new("prometheus")?;
        let config = dir.path().join("prometheus.yml");
        fs::write(&config, scrape_config(target))?;
        let log = dir.path().join("prometheus.log");

        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let command = command(&binary, &config, dir.path(), addr);
            let mut process = Process::spawn("prometheus", command, &log)?;
            match wait_until_ready(&mut process, addr) {
                Ok(()) => return Ok(Prometheus { addr, process, dir }),
                Err(error) => failures.push(format!("{error:#}\n{}", log_tail(&log))),
            }
        }
        bail!("cannot start Prometheus:\n{}", failures.join("\n---\n"))
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// An instant query's vector as (labels, value) pairs.
    pub fn query(&self, promql: &str) -> Result<Vec<(Value, f64)>> {
        let data = self.api("/api/v1/query", &[("query", promql)])?;
        data["result"]
            .as_array()
            .context("no result vector")?
            .iter()
            .map(|series| Ok((series["metric"].clone(), number(&series["value"])?)))
            .collect()
    }

    /// The one series a range query over the last `span` returns, sampled every
    /// second; empty when Prometheus has none.
    pub fn range(&self, promql: &str, span: Duration) -> Result<Vec<Point>> {
        let end = unix_now();
        let start = (end - span.as_secs_f64()).to_string();
        let end = end.to_string();
        let params = [
            ("query", promql),
            ("start", &start),
            ("end", &end),
            ("step", "1"),
        ];
        let data = self.api("/api/v1/query_range", &params)?;
        let series = data["result"].as_array().context("no result matrix")?;
        ensure!(
            series.len() <= 1,
            "{promql} matches {} series",
            series.len()
        );
        let Some(values) = series.first().map(|s| &s["values"]) else {
            return Ok(Vec::new());
        };
        values
            .as_array()
            .context("no values")?
            .iter()
            .map(|point| Ok((point[0].as_f64().context("no timestamp")?, number(point)?)))
            .collect()
    }

    /// Waits until the instant query's single value satisfies `wanted`.
    pub fn wait_for(&self, promql: &str, wanted: impl Fn(f64) -> bool) -> Result<f64> {
        wait_until(
            Duration::from_secs(15),
            &format!("Prometheus: {promql}"),
            || {
                let value = self.query(promql)?.first().map(|(_, v)| *v);
                Ok(value.filter(|v| wanted(*v)))
            },
        )
    }

    fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value> {
        let mut url = Url::parse(&format!("http://{}{path}", self.addr))?;
        url.query_pairs_mut().extend_pairs(params);
        let path_and_query = format!("{}?{}", url.path(), url.query().unwrap_or_default());

        let response = http1::get(self.addr, &path_and_query)?;
        let body: Value = serde_json::from_slice(&response.body)
            .with_context(|| format!("{path} did not answer JSON: {}", response.text()))?;
        ensure!(
            response.status == 200 && body["status"] == "success",
            "{path} {params:?} answered {}: {body}",
            response.status
        );
        Ok(body["data"].clone())
    }
}

/// Lints a `/metrics` text with `promtool check metrics`, as a CI job would.
pub fn promtool_check_metrics(metrics: &str) -> Result<()> {
    let mut lint = Command::new(program("promtool")?)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start promtool")?;
    lint.stdin
        .take()
        .context("promtool has no stdin")?
        .write_all(metrics.as_bytes())?;
    let output = lint.wait_with_output()?;
    ensure!(
        output.status.success(),
        "promtool check metrics failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn scrape_config(target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: strictly\n    static_configs:\n      \
         - targets: ['{target}']\n"
    )
}

fn command(binary: &Path, config: &Path, dir: &Path, addr: SocketAddr) -> Command {
    let mut command = Command::new(binary);
    command.arg(format!("--config.file={}", config.display()));
    command.arg(format!(
        "--storage.tsdb.path={}",
        dir.join("data").display()
    ));
    command.arg(format!("--web.listen-address={addr}"));
    command.arg("--log.level=warn");
    command
}

fn wait_until_ready(process: &mut Process, addr: SocketAddr) -> Result<()> {
    wait_until(STARTUP, "Prometheus to become ready", || {
        if let Some(status) = process.exited() {
            bail!("prometheus exited with {status}");
        }
        Ok(http1::get(addr, "/-/ready")
            .ok()
            .filter(|response| response.status == 200))
    })
    .map(drop)
}

/// Prometheus sends sample values as strings: `[<time>, "<value>"]`.
fn number(point: &Value) -> Result<f64> {
    point[1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("not a sample: {point}"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
