//! What the benchmarks, the `sim` example and the poller tests share: a simulated
//! fleet whose stats answers have a real size, a poller against it, medians, and
//! the command line.

#![allow(dead_code, reason = "each benchmark uses its own part of this module")]

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use strictly::engine::{Engine, Settings};
use strictly::exporter::{Published, metrics};
use strictly::kuma::client::{ClientConfig, KumaClient, KumaError, MAX_BODY_BYTES};
use strictly::poller::{Poller, Selection};
use strictly::shard::Shard;
use strictly::sim::{InboundTraffic, SimInbound, SimMesh, World, fleet};

/// A real Envoy's `usedonly` stats with 600 outbound clusters.
const USEDONLY_FIXTURE: &str = "tests/fixtures/stats-600-clusters-usedonly.txt";

/// A file of the repository, wherever the program runs from.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The outbound-cluster lines of a real sidecar with 600 upstream services, as
/// Kuma's default `usedonly` returns them: 220 KB that bring every simulated
/// stats answer to the size current Kuma control planes relay. None of them
/// names a stat the simulated sidecars write.
pub fn padding() -> std::io::Result<Bytes> {
    let text = std::fs::read_to_string(repo_path(USEDONLY_FIXTURE))?;
    let mut lines = String::with_capacity(text.len());
    for line in text.lines().filter(|l| l.starts_with("cluster.svc-")) {
        lines.push_str(line);
        lines.push('\n');
    }
    Ok(Bytes::from(lines))
}

/// `dataplanes` sidecars in the permissive mesh `default`, with `inbounds` (1 or
/// more) TCP inbounds each that have seen only mTLS, every stats answer padded.
pub fn world(dataplanes: usize, inbounds: u16, padding: Bytes) -> World {
    let mut world = World::new();
    world.add_mesh(SimMesh::permissive("default"));
    world.pad_stats(padding);
    let traffic = InboundTraffic {
        mtls: 12,
        ..InboundTraffic::default()
    };
    world.add_dataplanes(fleet("default", dataplanes).into_iter().enumerate().map(
        |(i, mut dataplane)| {
            for port in (1..inbounds).map(|n| 9000 + n) {
                let service = format!("fleet-{}_shop_svc_{port}", i / 4);
                let inbound = SimInbound::tcp(port, &service).with_traffic(traffic);
                dataplane = dataplane.inbound(inbound);
            }
            dataplane
        },
    ));
    world
}

/// Makes every sidecar of a simulated control plane answer its stats `latency`
/// late: the round trip a real control plane adds when it fetches a sidecar's
/// stats over mTLS on the caller's behalf.
pub fn delay_stats(world: &mut World, latency: Duration) {
    for dataplane in world.dataplanes_mut() {
        dataplane.stats_delay = latency;
    }
}

/// How a measured poller reaches the control plane.
pub fn client_config(url: &str, concurrency: usize, timeout: Duration) -> ClientConfig {
    ClientConfig {
        base_url: url.to_string(),
        token_file: None,
        ca_file: None,
        request_timeout: timeout,
        concurrency,
        max_body_bytes: MAX_BODY_BYTES,
    }
}

/// A poller with an hour's window for `selection` and `shard`, and where it
/// publishes.
pub fn poller(
    config: ClientConfig,
    selection: Selection,
    shard: Shard,
) -> Result<(Poller, Published), KumaError> {
    let hour = Duration::from_secs(3600);
    let engine = Engine::new(Settings {
        window: hour,
        min_mtls_connections: 1,
        stale_after: hour,
        forget_after: hour,
    });
    let published = Published::default();
    let (_, self_metrics) = metrics::registry(published.clone(), false);
    let client = KumaClient::new(config)?;
    let poller = Poller::new(client, engine, selection, self_metrics, published.clone());
    Ok((poller.with_shard(shard), published))
}

/// The median of some timings.
pub fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// The value of `--name VALUE` on the command line (cargo adds `--bench` of its
/// own to every bench program, so positional arguments are not used).
pub fn option(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

/// Bytes per second in a short human form.
pub fn rate(bytes: usize, time: Duration) -> String {
    let per_second = bytes as f64 / time.as_secs_f64();
    if per_second >= 1e9 {
        format!("{:.2} GB/s", per_second / 1e9)
    } else {
        format!("{:.0} MB/s", per_second / 1e6)
    }
}

/// CPU time this process has used so far, user and system, from
/// `/proc/self/stat` (Linux; zero elsewhere). Its resolution is a clock tick,
/// 10 ms on usual kernels, so it is read around many cycles, not one.
pub fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // The command name may hold spaces; the fields after it never do.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 1000 / CLOCK_TICKS_PER_SECOND)
}

/// `sysconf(_SC_CLK_TCK)` on every Linux platform strictly ships for.
const CLOCK_TICKS_PER_SECOND: u64 = 100;
