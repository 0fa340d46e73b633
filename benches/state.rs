//! What the verdict engine keeps per inbound, and the size and render time of
//! `/metrics`, for a fleet of 10,000 dataplanes with two inbounds each.
//!
//! `cargo bench --bench state -- [--dataplanes N] [--inbounds K]`
//!
//! The engine is fed a day of polls of every inbound, one per mTLS bucket (so
//! each holds its last sample and a full window of mTLS buckets, as after a day
//! of steady traffic), four replicas per service.
//! Memory is the growth of the process's resident set while the engine fills,
//! so it includes the allocator's overhead; it is what a daemon pays. The render
//! time is the median of encoding the registry, as `/metrics` does, with and
//! without `--per-dataplane`.

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use strictly::engine::{Counters, Engine, InboundKey, Sample, Settings};
use strictly::exporter::{Published, Snapshot, metrics};
use support::{median, option};

/// Encodings timed per registry.
const RENDERS: usize = 15;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let dataplanes: usize = option("--dataplanes").map_or(Ok(10_000), |n| n.parse())?;
    let inbounds: u16 = option("--inbounds").map_or(Ok(2), |n| n.parse())?;
    let count = dataplanes * usize::from(inbounds);

    let before = resident_bytes();
    let mut engine = filled_engine(dataplanes, inbounds);
    let engine_bytes = resident_bytes().saturating_sub(before);
    let reports = engine.report(SystemTime::now());
    let with_reports = resident_bytes().saturating_sub(before);

    println!(
        "state and /metrics for {dataplanes} dataplanes x {inbounds} inbounds ({count} inbounds, {} service inbounds)",
        reports.len()
    );
    println!(
        "  engine state: {:.1} MB resident, {:.0} bytes per inbound; with one cycle's reports {:.1} MB, {:.0} bytes per inbound",
        engine_bytes as f64 / 1e6,
        engine_bytes as f64 / count as f64,
        with_reports as f64 / 1e6,
        with_reports as f64 / count as f64,
    );

    let published = Published::default();
    published.publish(Snapshot {
        at: SystemTime::now(),
        reports,
        up: true,
    });
    // Sized as `/metrics` sizes its buffer.
    let capacity = metrics::size_hint(published.latest().as_deref());
    for per_dataplane in [false, true] {
        let (registry, _) = metrics::registry(published.clone(), per_dataplane);
        let (size, time) = render(&registry, capacity)?;
        println!(
            "  /metrics {}: {:.2} MB, {} series lines, rendered in {:.1} ms (median of {RENDERS})",
            if per_dataplane {
                "with --per-dataplane"
            } else {
                "default"
            },
            size.0 as f64 / 1e6,
            size.1,
            time.as_secs_f64() * 1e3,
        );
    }
    Ok(())
}

/// Polls spread over the window: one per mTLS bucket and one more.
const POLLS: u32 = 33;

/// An engine that has seen every inbound poll over a day's window.
fn filled_engine(dataplanes: usize, inbounds: u16) -> Engine {
    let day = Duration::from_secs(24 * 3600);
    let mut engine = Engine::new(Settings {
        window: day,
        min_mtls_connections: 1,
        stale_after: day,
        forget_after: day,
    });
    let start = SystemTime::now() - day;
    let times = (0..POLLS).map(|n| start + day / (POLLS - 1) * n);
    for (poll, at) in times.enumerate() {
        for i in 0..dataplanes {
            for port in (0..inbounds).map(|n| 8080 + n) {
                let key = InboundKey {
                    mesh: "default".into(),
                    dataplane: format!("fleet-{i:05}.shop"),
                    port,
                };
                let service = format!("fleet-{}_shop_svc_{port}", i / 4);
                engine.observe(&key, &service, sample(poll as u64), at);
            }
        }
    }
    engine
}

fn sample(poll: u64) -> Sample {
    Sample {
        counters: Counters {
            all: 100 + 10 * poll,
            mtls: 100 + 10 * poll,
            upstream_cx: 100 + 10 * poll,
            rbac_allowed: 100 + 10 * poll,
            ..Counters::default()
        },
        uptime: Some(Duration::from_secs(48 * 3600 + 3600 * poll)),
        tcp: true,
        mtls_enabled: true,
    }
}

/// Bytes and series lines of one encoding, and the median time of one, into a
/// buffer of `capacity` bytes as `/metrics` sizes it.
fn render(
    registry: &Registry,
    capacity: usize,
) -> Result<((usize, usize), Duration), std::fmt::Error> {
    let mut times = Vec::new();
    let mut body = String::new();
    for _ in 0..RENDERS {
        body = String::with_capacity(capacity);
        let start = Instant::now();
        prometheus_text::encode(&mut body, black_box(registry))?;
        times.push(start.elapsed());
    }
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    Ok(((body.len(), series), median(times)))
}

/// The resident set of this process, from `/proc/self/statm` (Linux; zero
/// elsewhere).
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * PAGE_BYTES
}

/// The page size of every Linux platform strictly ships for.
const PAGE_BYTES: usize = 4096;
