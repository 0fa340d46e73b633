//! `strictly demo` and `strictly check` as a newcomer meets them: the binary plays
//! the migration, the status page renders it in a real headless Chromium, and the
//! one-shot check gates on it with its exit codes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_strictly");
const MIGRATION_REDIS: &str = "redis_kuma-demo-migration_svc_6379";
/// Twice as fast as a person would watch it: the whole story in about 25 s.
const SPEED: &str = "2";
/// The demo's window at that speed, as its banner also says.
const WINDOW: &str = "7s 500ms";

/// The demo process; killed on drop so a failing test leaves nothing behind.
struct Demo {
    child: Child,
    status_page: String,
    kuma_url: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start() -> Self {
        let mut child = Command::new(BIN)
            .args(["demo", "--speed", SPEED, "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);

        let mut status_page = None;
        let mut kuma_url = None;
        for line in lines.by_ref() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["status", "page", url] => status_page = Some(url.to_string()),
                ["control", "plane", url, ..] => kuma_url = Some(url.to_string()),
                _ => {}
            }
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            status_page: status_page.expect("the banner names the status page"),
            kuma_url: kuma_url.expect("the banner names the control plane"),
        }
    }

    fn api(&self) -> String {
        format!("{}api/v1/inbounds", self.status_page)
    }

    /// Polls the API until the migration redis has `verdict`; returns how long it took.
    async fn wait_for(&self, verdict: &str, within: Duration) -> Duration {
        let started = Instant::now();
        while started.elapsed() < within {
            if migration_redis(&self.api()).await.as_deref() == Some(verdict) {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the migration redis did not become {verdict} within {within:?}");
    }

    fn check(&self, observe: &str, output: &str) -> (i32, String) {
        let output = Command::new(BIN)
            .args(["check", "--kuma-url", &self.kuma_url, "--window", WINDOW])
            .args(["--observe", observe, "--output", output])
            .env("NO_COLOR", "1")
            .output()
            .expect("check runs");
        let code = output.status.code().expect("check exits by itself");
        (code, String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

async fn migration_redis(api: &str) -> Option<String> {
    let body = reqwest::get(api).await.ok()?.text().await.ok()?;
    let json: Value = serde_json::from_str(&body).ok()?;
    json["inbounds"]
        .as_array()?
        .iter()
        .find(|i| i["kuma_service"] == MIGRATION_REDIS)
        .and_then(|i| i["verdict"].as_str().map(String::from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_redis_goes_plaintext_then_ready_and_check_gates_on_it() {
    let demo = tokio::task::spawn_blocking(Demo::start)
        .await
        .expect("demo starts");

    demo.wait_for("plaintext", Duration::from_secs(15)).await;
    let (code, table) = demo.check("0s", "table");
    assert_eq!(code, 1, "plaintext seen: {table}");
    assert!(
        table.contains(MIGRATION_REDIS) && table.contains("plaintext"),
        "{table}"
    );
    assert!(!table.contains('\u{1b}'), "NO_COLOR keeps the table plain");

    demo.wait_for("ready", Duration::from_secs(40)).await;
    let metrics = reqwest::get(format!("{}metrics", demo.status_page))
        .await
        .expect("metrics");
    let metrics = metrics.text().await.expect("body");
    let series = format!(
        "strictly_safe_to_strict{{mesh=\"default\",kuma_service=\"{MIGRATION_REDIS}\",port=\"6379\"}} 1"
    );
    assert!(metrics.contains(&series), "{metrics}");

    // One snapshot cannot date the plaintext that Envoy counted long ago, so it
    // stays a "no"; watching for a whole window clears it.
    let (code, _) = demo.check("0s", "json");
    assert_eq!(code, 1);
    let (code, json) = demo.check(WINDOW, "json");
    assert_eq!(code, 0, "{json}");
    let report: Value = serde_json::from_str(&json).expect("check --output json is JSON");
    let inbounds = report["inbounds"].as_array().expect("inbounds");
    assert_eq!(
        inbounds.len(),
        4,
        "two demo-apps and two redis; the gateway is skipped"
    );
    assert!(inbounds.iter().all(|i| i["verdict"] == "ready"), "{json}");
}

#[test]
fn check_exits_2_when_the_control_plane_cannot_be_read() {
    let output = Command::new(BIN)
        .args([
            "check",
            "--kuma-url",
            "http://127.0.0.1:9",
            "--request-timeout",
            "2s",
        ])
        .output()
        .expect("check runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("could not be read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_every_inbound_in_chromium() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is needed for this test; bash scripts/install-test-deps.sh installs it");
    let demo = tokio::task::spawn_blocking(Demo::start)
        .await
        .expect("demo starts");
    demo.wait_for("plaintext", Duration::from_secs(15)).await;

    let profile = std::env::temp_dir().join(format!("strictly-chromium-{}", std::process::id()));
    let mut command = Command::new(chromium);
    command
        .args(HEADLESS)
        .arg(format!("--user-data-dir={}", profile.display()));
    if let Ok(path) = std::env::var("STRICTLY_SCREENSHOT") {
        command.args(["--window-size=1200,720", &format!("--screenshot={path}")]);
    } else {
        command.arg("--dump-dom");
    }
    let output = command
        .arg(&demo.status_page)
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    if std::env::var("STRICTLY_SCREENSHOT").is_ok() {
        return;
    }

    let dom = String::from_utf8_lossy(&output.stdout);
    assert_eq!(dom.matches("<tr class=\"inbound\"").count(), 3, "{dom}");
    assert!(dom.contains("data-verdict=\"plaintext\""), "{dom}");
    assert!(dom.contains("data-verdict=\"ready\""), "{dom}");
    assert!(dom.contains(MIGRATION_REDIS), "{dom}");
    assert!(dom.contains("control plane reachable"), "{dom}");
}

/// Chromium flags for a closed network: headless, no sandbox as root, and none of
/// its background calls home.
const HEADLESS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=2000",
];
