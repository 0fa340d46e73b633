//! `strictly run` in this process, read through its own HTTP endpoints as a
//! user's tools would read them.

use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use strictly::cli::{Cli, Command};
use strictly::daemon::Daemon;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How often a wait looks at the daemon again.
const LOOK_AGAIN: Duration = Duration::from_millis(50);

/// A daemon running in this process, stopped when the guard drops.
pub struct Running {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Starts `strictly run` against the control plane at `url`, listening on
    /// 127.0.0.1 and a port of its own, with `flags` after the required ones.
    pub async fn start(url: &str, flags: &[&str]) -> Self {
        let mut argv = vec![
            "strictly",
            "run",
            "--kuma-url",
            url,
            "--listen",
            "127.0.0.1:0",
        ];
        argv.extend_from_slice(flags);
        let Command::Run(args) = Cli::try_parse_from(argv).expect("test flags parse").command
        else {
            panic!("the test flags name the run command");
        };
        args.validate().expect("test flags are valid");

        let daemon = Daemon::bind(&args).await.expect("daemon binds 127.0.0.1:0");
        let base = format!("http://{}", daemon.local_addr().expect("bound address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(daemon.run(async {
            let _ = stopped.await;
        }));
        Self {
            base,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The address Prometheus scrapes, `127.0.0.1:<port>`.
    pub fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{path}", self.base))
            .await
            .expect("daemon answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.1
    }

    pub async fn inbounds(&self) -> Vec<Value> {
        inbounds_at(&self.base).await
    }

    /// Reads one service's inbound in the background, every time the daemon
    /// may have published, until [`Watch::stop`]: what a dashboard saw while the
    /// test was busy elsewhere.
    pub fn watch(&self, service: &str) -> Watch {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (base, service) = (self.base.clone(), service.to_string());
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            while stopped.try_recv().is_err() {
                let inbounds = inbounds_at(&base).await;
                seen.extend(
                    inbounds
                        .into_iter()
                        .filter(|i| i["kuma_service"] == service),
                );
                tokio::time::sleep(LOOK_AGAIN).await;
            }
            seen
        });
        Watch { stop, task }
    }

    /// Waits until the daemon has completed `cycles` more poll cycles.
    pub async fn cycles(&self, cycles: u64) {
        let start = self.cycle_count().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.cycle_count().await >= start + cycles {
                return;
            }
            tokio::time::sleep(LOOK_AGAIN).await;
        }
        panic!("the daemon did not complete {cycles} poll cycles in 30 s");
    }

    /// Waits up to `timeout` until the service's inbound satisfies `wanted`,
    /// and returns it; fails with `what` and the last answer otherwise.
    pub async fn wait_for_inbound(
        &self,
        service: &str,
        timeout: Duration,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Some(inbound) = self.inbound(service).await {
                if wanted(&inbound) {
                    return inbound;
                }
                last = inbound;
            }
            tokio::time::sleep(LOOK_AGAIN).await;
        }
        panic!("{service}: waited {timeout:?} for {what}; last seen: {last:#}");
    }

    /// The service's inbound, if the daemon reports it.
    pub async fn inbound(&self, service: &str) -> Option<Value> {
        self.inbounds()
            .await
            .into_iter()
            .find(|i| i["kuma_service"] == service)
    }

    async fn cycle_count(&self) -> u64 {
        sample(
            &self.metrics().await,
            "strictly_poll_duration_seconds_count",
        )
        .map_or(0, |v| v as u64)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the daemon stops within 10 s")
                .expect("the daemon task does not panic");
        }
    }
}

/// A background reader of one service's inbound, from [`Running::watch`].
pub struct Watch {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Value>>,
}

impl Watch {
    /// Everything read, oldest first.
    pub async fn stop(self) -> Vec<Value> {
        let _ = self.stop.send(());
        self.task.await.expect("the watch does not panic")
    }
}

async fn inbounds_at(base: &str) -> Vec<Value> {
    let response = reqwest::get(format!("{base}/api/v1/inbounds"))
        .await
        .expect("daemon answers");
    let body = response.text().await.expect("body");
    let json: Value = serde_json::from_str(&body).expect("API answers JSON");
    json["inbounds"].as_array().expect("inbounds array").clone()
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The value of the first sample whose line starts with `series` followed by a
/// space (exact series, labels included as written by the exporter).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The inbound of `service` in an API answer.
pub fn find<'a>(inbounds: &'a [Value], service: &str) -> &'a Value {
    inbounds
        .iter()
        .find(|i| i["kuma_service"] == service)
        .unwrap_or_else(|| panic!("{service} is reported"))
}
