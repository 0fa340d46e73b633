//! Throughput of the `/stats` parser on a large dump.
//!
//! `cargo bench --bench stats_read -- [FILE] [COPIES]` reads FILE (by default the
//! 600-cluster `usedonly` fixture) repeated COPIES times (by default 1) and reports
//! the median time of one read and its throughput. The query is what strictly asks
//! for one legacy-named inbound of that dump; most of its names are absent, so every
//! read scans the whole body, which is the slow case.

use std::hint::black_box;
use std::time::{Duration, Instant};

use strictly::envoy::stats::{StatQuery, read};

const DEFAULT_FILE: &str = "tests/fixtures/stats-600-clusters-usedonly.txt";

/// Names of the inbound 127.0.0.1:16399 of the fixture, plus the uptime gauge.
const NAMES: [&str; 12] = [
    "listener.127.0.0.1_16399.downstream_cx_total",
    "listener.127.0.0.1_16399.downstream_cx_active",
    "listener.127.0.0.1_16399.ssl.handshake",
    "listener.127.0.0.1_16399.ssl.connection_error",
    "listener.127.0.0.1_16399.ssl.fail_verify_error",
    "listener.127.0.0.1_16399.ssl.fail_verify_no_cert",
    "listener.127.0.0.1_16399.ssl.fail_verify_san",
    "listener.127.0.0.1_16399.ssl.fail_verify_cert_hash",
    "cluster.localhost_16399.upstream_cx_total",
    "inbound_127_0_0_1_16399.rbac.allowed",
    "inbound_127_0_0_1_16399.rbac.denied",
    "server.uptime",
];

/// How long to keep reading before taking the median.
const BUDGET: Duration = Duration::from_secs(3);

fn main() -> std::io::Result<()> {
    // cargo passes `--bench` to every bench program; it is not one of ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let file = args.first().map_or(DEFAULT_FILE, String::as_str);
    let copies = args.get(1).and_then(|c| c.parse().ok()).unwrap_or(1);

    let body = std::fs::read(file)?.repeat(copies);
    let query = StatQuery::new(NAMES);
    let found = read(&body, &query);
    let found = (0..query.len()).filter(|&s| found.get(s).is_some()).count();

    let median = median_read_time(&body, &query);
    let megabytes = body.len() as f64 / 1e6;
    println!(
        "{file} x{copies}: {megabytes:.1} MB, {found}/{} names found, {:.3} ms per read, {:.0} MB/s",
        query.len(),
        median.as_secs_f64() * 1e3,
        megabytes / median.as_secs_f64(),
    );
    Ok(())
}

fn median_read_time(body: &[u8], query: &StatQuery) -> Duration {
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < BUDGET || times.len() < 5 {
        let one = Instant::now();
        black_box(read(black_box(body), query));
        times.push(one.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}
