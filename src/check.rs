//! `strictly check`: judge once, print a report, exit with a code a CI job or a
//! GitOps gate can act on.
//!
//! Exit codes, as Kuma users know them from migration preflight tools:
//! 0 every selected inbound is ready; 1 some inbound saw plaintext; 2 the control
//! plane could not be read; 3 inconclusive (no plaintext seen, but something is
//! `insufficient_data` or `unknown`, or nothing matched the selection).
//!
//! With `--observe 0s` the verdict rests on one snapshot and Envoy's uptime: a
//! sidecar whose Envoy ever counted plaintext stays `plaintext`, since nobody can
//! tell when that was. `--observe` as long as `--window` watches for that long and
//! can clear it.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::cli::{CheckArgs, Output};
use crate::daemon::{client_config, selection};
use crate::engine::{Engine, ServiceReport, Settings, Verdict, human, human_coarse};
use crate::exporter::{Published, Snapshot, api, metrics, page};
use crate::kuma::client::KumaClient;
use crate::poller::{Poller, Progress};

pub const EXIT_READY: u8 = 0;
pub const EXIT_PLAINTEXT: u8 = 1;
pub const EXIT_UNREADABLE: u8 = 2;
pub const EXIT_INCONCLUSIVE: u8 = 3;

/// Runs the check and returns the exit code.
pub async fn run(args: &CheckArgs) -> u8 {
    let client = match KumaClient::new(client_config(&args.connection)) {
        Ok(client) => client,
        Err(err) => {
            say_error(&err);
            return EXIT_UNREADABLE;
        }
    };
    let published = Published::default();
    let mut poller = poller(args, client, published.clone());

    poller.cycle().await;
    if !args.observe.is_zero() {
        progress_line(&format!("observing for {}", human(args.observe)));
        tokio::time::sleep(args.observe).await;
        poller.cycle().await;
    }
    clear_progress();

    let Some(snapshot) = published.latest() else {
        return EXIT_UNREADABLE;
    };
    print(&snapshot, args.output);
    exit_code(&snapshot)
}

fn poller(args: &CheckArgs, client: KumaClient, published: Published) -> Poller {
    let settings = Settings {
        window: args.verdict.window,
        min_mtls_connections: args.verdict.min_mtls_connections,
        // Both snapshots must stay fresh until the report is printed.
        stale_after: args.observe + args.connection.request_timeout * 2 + Duration::from_secs(60),
        forget_after: Duration::MAX,
    };
    let selection = selection(&args.connection);
    let (_registry, self_metrics) = metrics::registry(published.clone(), false);
    let poller = Poller::new(
        client,
        Engine::new(settings),
        selection,
        self_metrics,
        published,
    );
    if std::io::stderr().is_terminal() {
        poller.with_progress(show_progress)
    } else {
        poller
    }
}

/// The exit code for a snapshot: unreadable first, then plaintext, then anything
/// short of every inbound ready.
pub fn exit_code(snapshot: &Snapshot) -> u8 {
    let verdicts = || snapshot.reports.iter().map(|r| r.verdict);
    if !snapshot.up {
        EXIT_UNREADABLE
    } else if verdicts().any(|v| v == Verdict::Plaintext) {
        EXIT_PLAINTEXT
    } else if snapshot.reports.is_empty() || verdicts().any(|v| v != Verdict::Ready) {
        EXIT_INCONCLUSIVE
    } else {
        EXIT_READY
    }
}

fn show_progress(progress: Progress<'_>) {
    match progress {
        Progress::Listing { mesh } => progress_line(&format!("listing dataplanes of mesh {mesh}")),
        Progress::Reading { done, total } if done % 50 == 0 || done == total => {
            progress_line(&format!("reading stats {done}/{total}"));
        }
        Progress::Reading { .. } => {}
    }
}

/// Rewrites one line on a terminal's stderr; elsewhere says nothing.
fn progress_line(text: &str) {
    let mut stderr = std::io::stderr();
    if stderr.is_terminal() {
        let _ = write!(stderr, "\r\x1b[2K{text}");
        let _ = stderr.flush();
    }
}

const CONTROL_PLANE_UNREADABLE: &str =
    "the control plane could not be read; see the log lines above";

/// An error for the person at the terminal; lost, not a panic, when stderr is
/// closed.
fn say_error(err: &dyn std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "error: {err}");
}

fn clear_progress() {
    progress_line("");
}

fn print(snapshot: &Snapshot, output: Output) {
    if !snapshot.up && snapshot.reports.is_empty() {
        say_error(&CONTROL_PLANE_UNREADABLE);
        return;
    }
    let text = match output {
        Output::Json => serde_json::to_string_pretty(&api::inbounds(Some(snapshot)))
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")),
        Output::Table => table(snapshot, use_colour()),
    };
    // A reader that went away (`strictly check | head`) is no reason to panic.
    let _ = writeln!(std::io::stdout(), "{text}");
    if !snapshot.up {
        say_error(&CONTROL_PLANE_UNREADABLE);
    }
}

fn use_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

const HEADERS: [&str; 8] = [
    "MESH",
    "SERVICE",
    "PORT",
    "VERDICT",
    "CLEAN",
    "PLAINTEXT",
    "REPLICAS",
    "REASON",
];

/// The report as aligned columns, one row per service inbound, and a summary.
pub fn table(snapshot: &Snapshot, colour: bool) -> String {
    let rows: Vec<[String; 8]> = snapshot.reports.iter().map(row).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let mut out = line(&HEADERS.map(String::from), &widths, None);
    for (row, report) in rows.iter().zip(&snapshot.reports) {
        out.push_str(&line(row, &widths, colour.then_some(report.verdict)));
    }
    out.push_str(&summary(&snapshot.reports));
    out
}

fn row(report: &ServiceReport) -> [String; 8] {
    let clean = if report.verdict == Verdict::Unknown {
        "-".to_string()
    } else {
        human_coarse(report.clean)
    };
    [
        report.key.mesh.clone(),
        report.key.service.clone(),
        report.key.port.to_string(),
        report.verdict.as_str().to_string(),
        clean,
        report.totals.plaintext.to_string(),
        format!("{}/{}", report.replicas_reporting, report.replicas.len()),
        report.reason.clone(),
    ]
}

/// One line; the verdict cell is coloured when `verdict` is given. The last column
/// is not padded, so long reasons do not leave trailing spaces.
fn line(cells: &[String; 8], widths: &[usize; 8], verdict: Option<Verdict>) -> String {
    let mut out = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i == cells.len() - 1 {
            out.push_str(cell);
            break;
        }
        let padded = format!("{cell:<width$}  ");
        match (i, verdict) {
            (3, Some(v)) => out.push_str(&format!("{}{padded}\x1b[0m", colour_of(v))),
            _ => out.push_str(&padded),
        }
    }
    out.push('\n');
    out
}

fn colour_of(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Ready => "\x1b[32m",
        Verdict::Plaintext => "\x1b[31m",
        Verdict::InsufficientData => "\x1b[33m",
        Verdict::Unknown => "\x1b[90m",
    }
}

fn summary(reports: &[ServiceReport]) -> String {
    if reports.is_empty() {
        return "no inbounds matched the selection\n".to_string();
    }
    format!("{}\n", page::tally(reports))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::engine::{ServiceKey, Totals};

    fn report(service: &str, verdict: Verdict) -> ServiceReport {
        ServiceReport {
            key: ServiceKey {
                mesh: "default".into(),
                service: service.into(),
                port: 6379,
            },
            verdict,
            reason: format!("{verdict} because"),
            clean: Duration::from_secs(90),
            last_plaintext: None,
            totals: Totals::default(),
            possible_open_plaintext: 0,
            replicas: Vec::new(),
            replicas_reporting: 0,
        }
    }

    fn snapshot(up: bool, verdicts: &[Verdict]) -> Snapshot {
        Snapshot {
            at: SystemTime::UNIX_EPOCH,
            up,
            reports: verdicts
                .iter()
                .enumerate()
                .map(|(i, v)| report(&format!("svc-{i}"), *v))
                .collect(),
        }
    }

    #[test]
    fn exit_codes_follow_the_most_serious_finding() {
        use Verdict::*;
        assert_eq!(exit_code(&snapshot(true, &[Ready, Ready])), EXIT_READY);
        assert_eq!(
            exit_code(&snapshot(true, &[Ready, Unknown, Plaintext])),
            EXIT_PLAINTEXT
        );
        assert_eq!(
            exit_code(&snapshot(true, &[Ready, InsufficientData])),
            EXIT_INCONCLUSIVE
        );
        assert_eq!(exit_code(&snapshot(true, &[Unknown])), EXIT_INCONCLUSIVE);
        assert_eq!(exit_code(&snapshot(true, &[])), EXIT_INCONCLUSIVE);
        assert_eq!(exit_code(&snapshot(false, &[Ready])), EXIT_UNREADABLE);
    }

    #[test]
    fn the_table_aligns_columns_and_colours_only_when_asked() {
        let s = snapshot(true, &[Verdict::Ready, Verdict::Plaintext]);
        let plain = table(&s, false);
        let lines: Vec<&str> = plain.lines().collect();

        assert!(
            lines[0].starts_with("MESH     SERVICE  PORT  VERDICT    CLEAN"),
            "{plain}"
        );
        assert_eq!(lines[1].find("ready"), lines[0].find("VERDICT"));
        assert_eq!(lines[2].find("plaintext"), lines[0].find("VERDICT"));
        assert_eq!(lines[3], "2 inbounds: 1 ready, 1 plaintext");
        assert!(!plain.contains('\u{1b}'));
        assert!(table(&s, true).contains("\u{1b}[31mplaintext"));
    }
}
