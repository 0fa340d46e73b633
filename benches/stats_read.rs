//! Throughput of the `/stats` parser on realistic dumps of three sizes, beside
//! `grep -F` looking for the same stat names and `wc -l` counting the lines.
//!
//! `cargo bench --bench stats_read` builds the dumps from the fixtures and writes
//! them under `target/bench/`:
//!
//! - about 10 KB: the guide's redis sidecar (`stats-permissive.txt`);
//! - about 300 KB: a sidecar with 600 outbound clusters as Kuma's default
//!   `usedonly` returns it, with text readouts, recorded histograms and the redis
//!   inbound;
//! - about 5 MB: the same sidecar with every stat, as control planes before May
//!   2026 return it, grown to 730 clusters.
//!
//! strictly reads one dump per request, so its time is taken per dump. `grep` and
//! `wc` are processes, whose start would swamp a 10 KB file, so all three are
//! also timed on the dump repeated to about 64 MB; those are the figures the
//! ratios use. strictly reads the big file as it reads an answer, in the pieces
//! it arrives in (64 KiB here), so that each piece is searched while it is in
//! the processor's cache. The query is what strictly asks of the redis inbound:
//! twelve names and two process gauges, one of which
//! (`ssl.fail_verify_cert_hash`) is absent, so every read scans the whole dump,
//! as it does under `usedonly`.
//!
//! `--seconds N` sets how long each strictly figure is measured (default 3).

mod support;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strictly::envoy::stats::{StatQuery, StatReader, read};
use support::{median, option, rate, repo_path};

const SMALL: &str = "tests/fixtures/stats-permissive.txt";
const USEDONLY: &str = "tests/fixtures/stats-600-clusters-usedonly.txt";
const FULL: &str = "tests/fixtures/stats-600-clusters.txt";

/// The redis inbound 10.42.0.13:6379 of the small dump, as strictly names it.
const NAMES: [&str; 14] = [
    "listener.10.42.0.13_6379.downstream_cx_total",
    "listener.10.42.0.13_6379.downstream_cx_active",
    "listener.10.42.0.13_6379.ssl.handshake",
    "cluster.localhost_6379.upstream_cx_total",
    "inbound_10_42_0_13_6379.rbac.allowed",
    "inbound_10_42_0_13_6379.rbac.denied",
    "listener.10.42.0.13_6379.ssl.connection_error",
    "listener.10.42.0.13_6379.ssl.fail_verify_error",
    "listener.10.42.0.13_6379.ssl.fail_verify_no_cert",
    "listener.10.42.0.13_6379.ssl.fail_verify_san",
    "listener.10.42.0.13_6379.ssl.fail_verify_cert_hash",
    "server.uptime",
    "server.live",
    // Not an inbound name: keeps the query at the size of a two-inbound sidecar.
    "listener.10.42.0.13_9901.downstream_cx_total",
];

/// Size the big file for `grep` and `wc` is repeated to.
const REPEATED_BYTES: usize = 64 << 20;

/// Pieces strictly reads the big file in, as an HTTP body arrives.
const PIECE_BYTES: usize = 64 << 10;

/// Runs of each outside command; the median is taken.
const COMMAND_RUNS: usize = 5;

/// What a histogram with samples prints.
const QUANTILES: &str = "P0(nan,0) P25(nan,1.0255) P50(nan,2.05) P75(nan,3.075) \
                         P90(nan,4.09) P95(nan,6.1) P99(nan,9.95) P99.5(nan,12.2) \
                         P99.9(nan,25.3) P100(nan,31)";

fn main() -> std::io::Result<()> {
    let budget = option("--seconds")
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(3), Duration::from_secs);
    let dir = repo_path("target/bench");
    std::fs::create_dir_all(&dir)?;
    let names = dir.join("names.txt");
    std::fs::write(&names, NAMES.join("\n") + "\n")?;

    println!("parser throughput (median; grep -F and wc -l on the dump repeated to 64 MB)");
    for (label, dump) in dumps()? {
        let measured = measure(&dir, &label, &dump, &names, budget)?;
        measured.print(&label, dump.len());
    }
    Ok(())
}

/// The three dumps, smallest first.
fn dumps() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let small = std::fs::read_to_string(repo_path(SMALL))?;
    let usedonly = std::fs::read_to_string(repo_path(USEDONLY))?;
    let full = std::fs::read_to_string(repo_path(FULL))?;

    let medium = sidecar(&small, &usedonly, 0);
    let large = sidecar(&small, &full, 130);
    Ok(vec![
        ("10 KB".into(), small.into_bytes()),
        ("300 KB".into(), medium.into_bytes()),
        ("5 MB".into(), large.into_bytes()),
    ])
}

/// A sidecar with the outbound clusters of `outbound` (plus `clones` more made by
/// renaming the first ones) and the redis inbound of `small`, in Envoy's order:
/// text readouts, counters and gauges, histograms, each sorted by name. A version
/// readout is added for every cluster, and every third histogram has samples.
fn sidecar(small: &str, outbound: &str, clones: usize) -> String {
    let mut groups: [BTreeMap<String, String>; 3] = Default::default();
    for line in small.lines().chain(outbound.lines()) {
        add(&mut groups, line);
    }
    for line in cloned_clusters(outbound, clones) {
        add(&mut groups, &line);
    }

    let clusters: Vec<String> = groups[1]
        .keys()
        .filter_map(|name| name.strip_prefix("cluster.svc-")?.split_once('.'))
        .map(|(cluster, _)| format!("cluster.svc-{cluster}.version_text"))
        .collect();
    for name in clusters {
        let line = format!("{name}: \"a3d7c0e1-52f4-4f8e-9b16-7e0c2d4a9f35\"");
        add(&mut groups, &line);
    }
    for (i, value) in groups[2].values_mut().enumerate() {
        if i % 3 == 0 && value.ends_with("No recorded values") {
            let name = value.split(": ").next().unwrap_or_default().to_string();
            *value = format!("{name}: {QUANTILES}");
        }
    }

    let mut text = String::new();
    for line in groups.iter().flat_map(BTreeMap::values) {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Files a line under readouts, values or histograms; the first line of a name wins.
fn add(groups: &mut [BTreeMap<String, String>; 3], line: &str) {
    let Some((name, value)) = line.split_once(": ") else {
        return;
    };
    let group = if value.starts_with('"') {
        0
    } else if value.starts_with("P0(") || value == "No recorded values" {
        2
    } else {
        1
    };
    groups[group]
        .entry(name.to_string())
        .or_insert_with(|| line.to_string());
}

/// The lines of the first `count` outbound clusters again, under new names.
fn cloned_clusters(outbound: &str, count: usize) -> Vec<String> {
    (0..count)
        .flat_map(|n| {
            let from = format!("cluster.svc-{n:03}_");
            let to = format!("cluster.svc-{:03}_", 600 + n);
            outbound
                .lines()
                .filter(|l| l.starts_with(&from))
                .map(|l| l.replacen(&from, &to, 1))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One row of the table.
struct Measured {
    found: usize,
    per_dump: Duration,
    repeated_bytes: usize,
    strictly: Duration,
    grep: Duration,
    wc: Duration,
}

impl Measured {
    fn print(&self, label: &str, size: usize) {
        let bytes = self.repeated_bytes;
        println!(
            "{label:>7} ({size} B, {}/{} names): strictly {:.1} µs per dump = {} | \
             64 MB: strictly {}  grep -F {}  wc -l {} | strictly/grep {:.1}x  strictly/wc {:.2}",
            self.found,
            NAMES.len(),
            self.per_dump.as_secs_f64() * 1e6,
            rate(size, self.per_dump),
            rate(bytes, self.strictly),
            rate(bytes, self.grep),
            rate(bytes, self.wc),
            self.grep.as_secs_f64() / self.strictly.as_secs_f64(),
            self.wc.as_secs_f64() / self.strictly.as_secs_f64(),
        );
    }
}

fn measure(
    dir: &Path,
    label: &str,
    dump: &[u8],
    names: &Path,
    budget: Duration,
) -> std::io::Result<Measured> {
    let query = StatQuery::new(NAMES);
    let values = read(dump, &query);
    let found = (0..query.len())
        .filter(|&s| values.get(s).is_some())
        .count();

    let file_name = label.replace(' ', "");
    std::fs::write(dir.join(format!("stats-{file_name}.txt")), dump)?;
    let repeated = dump.repeat(REPEATED_BYTES.div_ceil(dump.len()));
    let repeated_path = dir.join(format!("stats-{file_name}-x64MB.txt"));
    std::fs::write(&repeated_path, &repeated)?;
    let grep_out = dir.join(format!("grep-{file_name}.out"));

    Ok(Measured {
        found,
        per_dump: time_reads(dump, &query, budget, dump.len()),
        repeated_bytes: repeated.len(),
        strictly: time_reads(&repeated, &query, budget, PIECE_BYTES),
        grep: time_command(
            "grep",
            &["-F", "-f"],
            &[names, &repeated_path],
            Some(&grep_out),
        )?,
        wc: time_command("wc", &["-l"], &[&repeated_path], None)?,
    })
}

/// The median time of one read in pieces of `piece` bytes, over `budget` (at
/// least five reads).
fn time_reads(body: &[u8], query: &StatQuery, budget: Duration, piece: usize) -> Duration {
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || times.len() < 5 {
        let one = Instant::now();
        let mut reader = StatReader::new(query);
        for piece in black_box(body).chunks(piece) {
            reader.feed(piece);
        }
        black_box(reader.finish());
        times.push(one.elapsed());
    }
    median(times)
}

/// The median wall time of a command, its output sent to `out` or discarded.
/// grep's goes to a file: with its output on /dev/null GNU grep stops at the
/// first match.
fn time_command(
    program: &str,
    flags: &[&str],
    files: &[&Path],
    out: Option<&PathBuf>,
) -> std::io::Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..COMMAND_RUNS {
        let stdout = match out {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::null(),
        };
        let start = Instant::now();
        let status = Command::new(program)
            .args(flags)
            .args(files)
            .env("LC_ALL", "C")
            .stdout(stdout)
            .status()?;
        times.push(start.elapsed());
        if !status.success() {
            return Err(std::io::Error::other(format!("{program} failed: {status}")));
        }
    }
    Ok(median(times))
}
