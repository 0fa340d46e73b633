//! The `strictly` binary as an operator runs it: flags from the environment, exit
//! codes, signals, and `/metrics` that Prometheus' own linter accepts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use strictly::sim::{InboundTraffic, SimControlPlane, SimDataplane, SimInbound, SimMesh, World};

const BIN: &str = env!("CARGO_BIN_EXE_strictly");

/// Kills the child on drop, so a failing test leaves no process behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn world() -> World {
    let traffic = InboundTraffic {
        plaintext: 1,
        mtls: 12,
        ..InboundTraffic::default()
    };
    let mut world = World::new();
    world.add_mesh(SimMesh::permissive("default"));
    world.add_dataplane(
        SimDataplane::sidecar("default", "redis-0.shop", "10.42.0.13")
            .inbound(SimInbound::tcp(6379, "redis_shop_svc_6379").with_traffic(traffic)),
    );
    world
}

/// Starts the binary configured only through the environment; returns it with the
/// address it logged.
fn start(kuma_url: &str) -> (Guard, String) {
    let (guard, listen, _) = start_with(kuma_url, &[]);
    (guard, listen)
}

/// Starts the binary with these variables besides the usual ones; returns it,
/// the address it logged, and its later log lines as they come.
fn start_with(kuma_url: &str, env: &[(&str, &str)]) -> (Guard, String, mpsc::Receiver<String>) {
    let child = Command::new(BIN)
        .arg("run")
        .env("STRICTLY_KUMA_URL", kuma_url)
        .env("STRICTLY_LISTEN", "127.0.0.1:0")
        .env("STRICTLY_POLL_INTERVAL", "200ms")
        .env("STRICTLY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut guard = Guard(child);
    let stderr = guard.0.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    let listen = lines
        .by_ref()
        .find_map(|line| {
            let json: serde_json::Value = serde_json::from_str(&line).ok()?;
            (json["message"] == "strictly started")
                .then(|| json["listen"].as_str().map(String::from))?
        })
        .expect("a JSON start-up line with the listen address");
    // Keep reading, as a log collector would: a closed stderr is not what is tested.
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines {
            let _ = sender.send(line);
        }
    });
    (guard, listen, receiver)
}

async fn get(url: &str) -> Option<String> {
    let response = reqwest::get(url).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

async fn wait_for_metrics(base: &str) -> String {
    let url = format!("http://{base}/metrics");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(metrics) = get(&url).await
            && metrics.contains("strictly_safe_to_strict{")
        {
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no verdict on /metrics within 15 s: {:?}", get(&url).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_flags_from_the_environment_and_stops_cleanly_on_sigterm() {
    let cp = SimControlPlane::start(world()).await.expect("sim binds");
    let url = cp.url();
    let (mut guard, listen) = tokio::task::spawn_blocking(move || start(&url))
        .await
        .expect("start");

    let metrics = wait_for_metrics(&listen).await;
    assert!(metrics.contains("strictly_plaintext_connections_total{mesh=\"default\",kuma_service=\"redis_shop_svc_6379\",port=\"6379\"} 1"), "{metrics}");

    let pid = guard.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || {
        let status = guard.0.wait();
        (status, guard)
    })
    .await
    .expect("wait")
    .0
    .expect("exit status");
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
    cp.shutdown().await;
}

#[test]
fn a_bad_flag_exits_2_naming_the_flag_before_binding() {
    let cases: [(&str, &str, &str); 4] = [
        ("STRICTLY_POLL_INTERVAL", "often", "--poll-interval"),
        ("STRICTLY_KUMA_URL", "ftp://kuma", "--kuma-url"),
        ("STRICTLY_CONCURRENCY", "0", "--concurrency"),
        ("STRICTLY_SHARD", "3/3", "--shard"),
    ];
    for (var, value, flag) in cases {
        let output = Command::new(BIN)
            .arg("run")
            .env("STRICTLY_LISTEN", "127.0.0.1:0")
            .env(var, value)
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{var}={value}: {stderr}");
        assert!(stderr.contains(flag), "{var}={value}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool() {
    let promtool = which("promtool").expect(
        "promtool is needed to lint /metrics; bash scripts/install-test-deps.sh installs it",
    );
    let cp = SimControlPlane::start(world()).await.expect("sim binds");
    let url = cp.url();
    let (guard, listen) = tokio::task::spawn_blocking(move || start(&url))
        .await
        .expect("start");
    let metrics = wait_for_metrics(&listen).await;
    drop(guard);

    let mut lint = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    std::io::Write::write_all(&mut lint.stdin.take().expect("stdin"), metrics.as_bytes())
        .expect("write");
    let output = lint.wait_with_output().expect("promtool ends");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    cp.shutdown().await;
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|path| path.is_file())
}

/// `strictly demo | head -1`, or a log collector that goes away: the demo and
/// its daemon keep running when nobody reads their output, and still stop
/// cleanly.
#[test]
fn keeps_running_when_nobody_reads_its_output() {
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--speed", "20"])
        // Debug lines are written every poll, so writes follow the close.
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    drop(child.stdout.take());
    drop(child.stderr.take());
    let mut guard = Guard(child);

    std::thread::sleep(Duration::from_secs(3));
    let early = guard.0.try_wait().expect("try_wait");
    assert_eq!(
        early, None,
        "strictly stopped with nobody reading its output"
    );

    let pid = guard.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("kill runs").success());
    let status = guard.0.wait().expect("exit status");
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
}

/// A cycle that takes over half of `--stale-after` is a verdict about to go
/// `unknown` for no fault of the sidecars: the daemon says so, and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warns_when_a_poll_cycle_nears_stale_after() {
    let mut slow = world();
    for dataplane in slow.dataplanes_mut() {
        dataplane.stats_delay = Duration::from_millis(700);
    }
    let cp = SimControlPlane::start(slow).await.expect("sim binds");
    let url = cp.url();
    let (guard, _, logs) =
        tokio::task::spawn_blocking(move || start_with(&url, &[("STRICTLY_STALE_AFTER", "1s")]))
            .await
            .expect("start");

    let warning = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let line = logs.recv_timeout(left).ok()?;
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let message = json["message"].as_str().unwrap_or_default();
            if message.contains("over half of --stale-after") {
                return Some(json);
            }
        }
        None
    })
    .await
    .expect("log reader")
    .expect("a warning within 15 s");
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["stale_after"], "1s");
    assert_eq!(warning["dataplanes"], 1);
    drop(guard);
    cp.shutdown().await;
}
