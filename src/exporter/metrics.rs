//! The Prometheus metrics: one registry, passed explicitly.
//!
//! Per-inbound series are encoded at scrape time from the latest snapshot, so a
//! service inbound that went away simply stops being exported; strictly's own health
//! metrics are ordinary registered metrics updated by the poll loop.

use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::Published;
use crate::engine::{InboundStatus, ServiceReport, Totals, Verdict};
use crate::kuma::error::ErrorReason;

/// strictly's own health, updated by the poll loop.
#[derive(Debug, Clone)]
pub struct SelfMetrics {
    pub up: Gauge,
    pub poll_duration: Histogram,
    pub poll_errors: Family<[(&'static str, &'static str); 1], Counter>,
    pub dataplanes: Family<[(&'static str, String); 1], Gauge>,
    pub shard_index: Gauge,
    pub shard_count: Gauge,
}

impl SelfMetrics {
    pub fn poll_error(&self, reason: ErrorReason) {
        self.poll_errors
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }
}

/// Builds the registry with every metric strictly exports.
pub fn registry(published: Published, per_dataplane: bool) -> (Registry, SelfMetrics) {
    let mut registry = Registry::default();
    let metrics = SelfMetrics {
        up: Gauge::default(),
        // 50 ms to about 100 s: a cycle spans one listing and many stats requests.
        poll_duration: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
        poll_errors: Family::default(),
        dataplanes: Family::default(),
        shard_index: Gauge::default(),
        shard_count: Gauge::default(),
    };
    metrics.shard_count.set(1);

    registry.register(
        "strictly_up",
        "Whether the last poll cycle could read the control plane (1) or not (0)",
        metrics.up.clone(),
    );
    registry.register_with_unit(
        "strictly_poll_duration",
        "Duration of a poll cycle",
        Unit::Seconds,
        metrics.poll_duration.clone(),
    );
    registry.register(
        "strictly_poll_errors",
        "Failed requests to the control plane, by reason",
        metrics.poll_errors.clone(),
    );
    for reason in ErrorReason::ALL {
        // Export every reason from the start, so a first failure shows as an increase.
        metrics
            .poll_errors
            .get_or_create(&[("reason", reason.as_str())])
            .inc_by(0);
    }
    registry.register(
        "strictly_dataplanes",
        "Sidecar dataplanes this daemon reads per mesh (its shard, its services)",
        metrics.dataplanes.clone(),
    );
    // What a query that joins several shards needs to tell that all of them report.
    registry.register(
        "strictly_shard",
        "The shard of the dataplanes this daemon reads, from 0",
        metrics.shard_index.clone(),
    );
    registry.register(
        "strictly_shards",
        "How many shards the dataplanes are split into",
        metrics.shard_count.clone(),
    );
    let build_info: Family<[(&'static str, &'static str); 1], Gauge> = Family::default();
    build_info
        .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
        .set(1);
    registry.register(
        "strictly_build_info",
        "Build information, always 1",
        build_info,
    );

    registry.register_collector(Box::new(InboundCollector {
        published,
        per_dataplane,
    }));
    (registry, metrics)
}

/// Bytes `/metrics` takes at most, give or take, for this snapshot: about 2 KiB
/// per service inbound and per replica (fourteen series of some 130 bytes at
/// most, with ordinary names), whether or not replicas are exported, plus room
/// for strictly's own metrics. Allocated but unwritten memory costs nothing
/// resident, so erring high is cheap, and erring low only costs a copy.
pub fn size_hint(snapshot: Option<&super::Snapshot>) -> usize {
    const OWN_METRICS: usize = 16 * 1024;
    const PER_INBOUND: usize = 2 * 1024;
    let inbounds = snapshot.map_or(0, |s| {
        s.reports
            .iter()
            .map(|r| 1 + r.replicas.len())
            .sum::<usize>()
    });
    OWN_METRICS + inbounds * PER_INBOUND
}

/// Encodes the per-inbound series from the latest snapshot at scrape time.
#[derive(Debug)]
struct InboundCollector {
    published: Published,
    per_dataplane: bool,
}

/// One exported inbound: a service inbound, or one replica's with `--per-dataplane`.
struct Series {
    labels: Vec<(&'static str, String)>,
    verdict: Verdict,
    totals: Totals,
    last_plaintext: Option<SystemTime>,
    clean_seconds: f64,
    possible_open: u64,
    replicas: Option<(usize, usize)>,
}

impl Collector for InboundCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(snapshot) = self.published.latest() else {
            return Ok(());
        };
        let series: Vec<Series> = snapshot
            .reports
            .iter()
            .flat_map(|r| self.series(r))
            .collect();

        gauge(
            &mut encoder,
            &series,
            "strictly_safe_to_strict",
            "1 only when the inbound's verdict is ready: it can switch to Strict mTLS now",
            |s| i64::from(s.verdict == Verdict::Ready),
        )?;
        verdicts(&mut encoder, &series)?;
        counter(
            &mut encoder,
            &series,
            "strictly_connections",
            "Inbound connections seen by strictly, corrected for Envoy restarts",
            |s| s.totals.connections,
        )?;
        counter(
            &mut encoder,
            &series,
            "strictly_mtls_connections",
            "Inbound connections that were mesh mTLS (Envoy terminated the TLS)",
            |s| s.totals.mtls,
        )?;
        counter(
            &mut encoder,
            &series,
            "strictly_plaintext_connections",
            "Inbound connections that would break under Strict: plaintext, or TLS from outside the mesh",
            |s| s.totals.plaintext,
        )?;
        counter(
            &mut encoder,
            &series,
            "strictly_tls_failed_connections",
            "Inbound TLS handshakes that failed (already broken today)",
            |s| s.totals.failed,
        )?;
        gauge(
            &mut encoder,
            &series,
            "strictly_last_plaintext_timestamp_seconds",
            "Unix time strictly last saw a plaintext connection opened; 0 if never",
            |s| s.last_plaintext.map_or(0.0, unix_seconds),
        )?;
        gauge(
            &mut encoder,
            &series,
            "strictly_clean_seconds",
            "How long strictly can prove no plaintext connection was opened",
            |s| s.clean_seconds,
        )?;
        gauge(
            &mut encoder,
            &series,
            "strictly_possible_open_plaintext_connections",
            "Upper bound of plaintext connections that may still be open (long-lived)",
            |s| clamp_i64(s.possible_open),
        )?;
        replicas(&mut encoder, &series)
    }
}

impl InboundCollector {
    fn series(&self, report: &ServiceReport) -> Vec<Series> {
        let labels = vec![
            ("mesh", report.key.mesh.clone()),
            ("kuma_service", report.key.service.clone()),
            ("port", report.key.port.to_string()),
        ];
        let mut all = vec![Series {
            labels: labels.clone(),
            verdict: report.verdict,
            totals: report.totals,
            last_plaintext: report.last_plaintext,
            clean_seconds: report.clean.as_secs_f64(),
            possible_open: report.possible_open_plaintext,
            replicas: Some((report.replicas.len(), report.replicas_reporting)),
        }];
        if self.per_dataplane {
            all.extend(report.replicas.iter().map(|replica| {
                let mut labels = labels.clone();
                labels.push(("dataplane", replica.dataplane.clone()));
                replica_series(labels, &replica.status)
            }));
        }
        all
    }
}

fn replica_series(labels: Vec<(&'static str, String)>, status: &InboundStatus) -> Series {
    Series {
        labels,
        verdict: status.verdict,
        totals: status.totals,
        last_plaintext: status.last_plaintext,
        clean_seconds: status.clean.as_secs_f64(),
        possible_open: status.possible_open_plaintext,
        replicas: None,
    }
}

/// One family of per-inbound series; `metric` turns a series into its value.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    series: &[Series],
    (name, help, kind): (&str, &str, MetricType),
    metric: impl Fn(&Series) -> M,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for s in series {
        metric(s).encode(family.encode_family(&s.labels)?)?;
    }
    Ok(())
}

fn gauge<N>(
    encoder: &mut DescriptorEncoder,
    series: &[Series],
    name: &str,
    help: &str,
    value: impl Fn(&Series) -> N,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<N>: EncodeMetric,
{
    let kind = (name, help, MetricType::Gauge);
    family(encoder, series, kind, |s| ConstGauge::new(value(s)))
}

fn counter(
    encoder: &mut DescriptorEncoder,
    series: &[Series],
    name: &str,
    help: &str,
    value: impl Fn(&Series) -> u64,
) -> Result<(), std::fmt::Error> {
    let kind = (name, help, MetricType::Counter);
    family(encoder, series, kind, |s| ConstCounter::new(value(s)))
}

/// The verdict as a state set: one series per possible verdict, 1 for the current.
fn verdicts(encoder: &mut DescriptorEncoder, series: &[Series]) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "strictly_verdict",
        "The inbound's verdict: 1 for the current one, 0 for the others",
        None,
        MetricType::Gauge,
    )?;
    for s in series {
        for verdict in Verdict::ALL {
            let mut labels = s.labels.clone();
            labels.push(("verdict", verdict.as_str().to_string()));
            let value = i64::from(s.verdict == verdict);
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

fn replicas(encoder: &mut DescriptorEncoder, series: &[Series]) -> Result<(), std::fmt::Error> {
    let services: Vec<_> = series
        .iter()
        .filter_map(|s| s.replicas.map(|r| (s, r)))
        .collect();

    let mut family = encoder.encode_descriptor(
        "strictly_replicas",
        "Dataplanes behind the service inbound",
        None,
        MetricType::Gauge,
    )?;
    for (s, (all, _)) in &services {
        ConstGauge::new(clamp_i64(*all as u64)).encode(family.encode_family(&s.labels)?)?;
    }
    let mut family = encoder.encode_descriptor(
        "strictly_replicas_reporting",
        "Dataplanes behind the service inbound with fresh data",
        None,
        MetricType::Gauge,
    )?;
    for (s, (_, reporting)) in &services {
        ConstGauge::new(clamp_i64(*reporting as u64)).encode(family.encode_family(&s.labels)?)?;
    }
    Ok(())
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
