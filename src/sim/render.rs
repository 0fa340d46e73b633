//! Envoy `/stats` text of a simulated sidecar, rendered from its traffic model.
//!
//! The text has the shape of a real sidecar's: text readouts first, then counters
//! and gauges sorted by name, then histograms; the inbound's stats sit among
//! other listeners and clusters, including an outbound listener on the same port
//! and per-worker lines, which a reader must tell apart from the inbound's own.
//!
//! Names are built here the way Kuma and Envoy build them, written out on their
//! own rather than taken from [`crate::naming`], so the daemon's name resolution
//! is checked against an independent rendering (and both against real fixtures).
//!
//! How each counter follows from the traffic model (Envoy behaviour measured on
//! a permissive inbound):
//!
//! - `listener.<L>.downstream_cx_total`: every connection;
//! - `listener.<L>.ssl.handshake`: mesh mTLS, denied and silent ones included;
//! - `listener.<L>.ssl.*` failures: one counter per failed handshake, by kind;
//! - `cluster.<C>.upstream_cx_total`: every connection, as tcp_proxy connects
//!   upstream as soon as one is accepted;
//! - `<R>.rbac.allowed` / `.denied`: mTLS connections that sent data; on HTTP
//!   inbounds `http.<prefix>.rbac.*` instead, counting requests.
//!
//! A mesh without mTLS has no TLS or RBAC lines at all.

use std::fmt::Write as _;

use super::traffic::InboundTraffic;
use super::world::{MtlsMode, SimDataplane, SimInbound, SimMesh, fnv1a};
use crate::naming::{Naming, SERVER_UPTIME, UNIFIED_NAMING_FEATURE, sanitize};

/// Renders a sidecar's `/stats` text. `used_only` leaves out counters that are 0
/// and stats never written, as Envoy's `usedonly` (Kuma's default) does.
pub fn render_stats(
    dataplane: &SimDataplane,
    mesh: Option<&SimMesh>,
    uptime_secs: u64,
    used_only: bool,
) -> String {
    let setup = Setup {
        mtls: mesh.and_then(|m| m.mtls),
        naming: naming_of(dataplane, mesh),
    };
    let mut lines = Lines::default();

    for inbound in &dataplane.inbounds {
        inbound_lines(&mut lines, dataplane, inbound, setup);
    }
    outbound_lines(&mut lines, dataplane, setup);
    admin_lines(&mut lines, dataplane, setup);
    process_lines(&mut lines, dataplane, setup, uptime_secs);

    lines.render(used_only)
}

/// Unified names only when the proxy asks for them and its mesh runs
/// MeshServices in `Exclusive` mode; Kuma decides the same way.
pub(crate) fn naming_of(dataplane: &SimDataplane, mesh: Option<&SimMesh>) -> Naming {
    let exclusive = mesh.is_some_and(|m| m.mesh_services_exclusive);
    if exclusive && dataplane.has_feature(UNIFIED_NAMING_FEATURE) {
        Naming::Unified
    } else {
        Naming::Legacy
    }
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    mtls: Option<MtlsMode>,
    naming: Naming,
}

/// The scopes one inbound's stats live in.
struct InboundNames {
    listener: String,
    cluster: String,
    /// Network RBAC stat prefix.
    rbac: String,
    /// Stat prefix of tcp_proxy or the HTTP connection manager.
    filter: String,
}

fn inbound_names(dataplane: &SimDataplane, inbound: &SimInbound, naming: Naming) -> InboundNames {
    match naming {
        Naming::Legacy => legacy_names(&dataplane.address, inbound),
        Naming::Unified => {
            let name = format!("self_inbound_dp_{}", unified_section(dataplane, inbound));
            InboundNames {
                listener: name.clone(),
                cluster: name.clone(),
                rbac: name.clone(),
                filter: name,
            }
        }
    }
}

/// Legacy names: Kuma names the inbound cluster `localhost:<workload port>` with
/// `localhost_<port>` as its stat name, and gives network RBAC the sanitized
/// listener name `inbound:<ip>:<port>`.
fn legacy_names(address: &str, inbound: &SimInbound) -> InboundNames {
    let cluster = format!("localhost_{}", inbound.workload_port());

    InboundNames {
        listener: address_stat_name(address, inbound.port),
        rbac: sanitize(&format!("inbound:{}:{}", host(address), inbound.port)),
        filter: cluster.clone(),
        cluster,
    }
}

/// Envoy names the stats of a listener without a stat prefix after its bound
/// address, `ip:port`, with `:` made safe for a stat name.
fn address_stat_name(address: &str, port: u16) -> String {
    format!("{}:{port}", host(address)).replace(':', "_")
}

/// An address as it stands before a port: IPv6 in brackets.
fn host(address: &str) -> String {
    if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

/// Kuma 2.12 used the workload port as section; 2.13 and later the inbound's
/// name when it has one, else the dataplane port.
fn unified_section(dataplane: &SimDataplane, inbound: &SimInbound) -> String {
    match inbound.name.as_deref() {
        Some(name) if dataplane.kri && !name.is_empty() => name.to_string(),
        _ if dataplane.kri => inbound.port.to_string(),
        _ => inbound.workload_port().to_string(),
    }
}

/// Everything about one inbound: listener, cluster, filter and RBAC.
fn inbound_lines(lines: &mut Lines, dataplane: &SimDataplane, inbound: &SimInbound, setup: Setup) {
    let names = inbound_names(dataplane, inbound, setup.naming);
    let traffic = &inbound.traffic;
    let http = matches!(inbound.protocol(), "http" | "http2" | "grpc");

    listener_lines(lines, &names.listener, traffic);
    if let Some(mode) = setup.mtls {
        tls_lines(lines, &names.listener, traffic, mode);
    }

    if http {
        http_lines(lines, &names, inbound, setup.mtls.is_some());
    } else {
        tcp_lines(lines, &names, traffic, setup.mtls.is_some());
    }
}

/// Listener counters, whatever the chain; per-worker lines split the totals
/// between Envoy's two workers.
fn listener_lines(lines: &mut Lines, listener: &str, traffic: &InboundTraffic) {
    let total = traffic.total();
    let active = traffic.active;
    let scope = format!("listener.{listener}");

    lines.counter(format!("{scope}.downstream_cx_total"), total);
    lines.gauge(format!("{scope}.downstream_cx_active"), active, total > 0);
    lines.counter(
        format!("{scope}.downstream_cx_destroy"),
        total.saturating_sub(active),
    );
    lines.counter(format!("{scope}.downstream_cx_overflow"), 0);
    lines.counter(format!("{scope}.no_filter_chain_match"), 0);

    for (worker, share) in [(0, total.div_ceil(2)), (1, total / 2)] {
        lines.counter(
            format!("{scope}.worker_{worker}.downstream_cx_total"),
            share,
        );
    }
    for (worker, share) in [(0, active.div_ceil(2)), (1, active / 2)] {
        lines.gauge(
            format!("{scope}.worker_{worker}.downstream_cx_active"),
            share,
            total > 0,
        );
    }
    lines.histogram(format!("{scope}.downstream_cx_length_ms"), total > 0);
}

/// TLS counters of the chain Envoy terminates. Under Strict there is no
/// plaintext chain: a plaintext client fails the handshake outright, a TLS
/// client from outside the mesh for lack of a client certificate.
fn tls_lines(lines: &mut Lines, listener: &str, traffic: &InboundTraffic, mode: MtlsMode) {
    let (refused_plaintext, refused_foreign) = match mode {
        MtlsMode::Permissive => (0, 0),
        MtlsMode::Strict => (traffic.plaintext, traffic.foreign_tls),
    };
    let ssl = format!("listener.{listener}.ssl");

    lines.counter(format!("{ssl}.handshake"), traffic.mtls);
    lines.counter(
        format!("{ssl}.connection_error"),
        traffic.failed_garbage + refused_plaintext,
    );
    lines.counter(format!("{ssl}.fail_verify_error"), traffic.failed_untrusted);
    lines.counter(
        format!("{ssl}.fail_verify_no_cert"),
        traffic.failed_no_cert + refused_foreign,
    );
    lines.counter(format!("{ssl}.fail_verify_san"), traffic.failed_san);
    lines.counter(format!("{ssl}.fail_verify_cert_hash"), 0);
    lines.counter(format!("{ssl}.no_certificate"), 0);
    lines.counter(format!("{ssl}.session_reused"), 0);
    lines.counter(format!("{ssl}.versions.TLSv1.3"), traffic.mtls);
    lines.counter(
        format!("{ssl}.ciphers.TLS_AES_128_GCM_SHA256"),
        traffic.mtls,
    );
    lines.counter(format!("{ssl}.curves.X25519"), traffic.mtls);
}

/// A TCP inbound: tcp_proxy connects upstream for every accepted connection, and
/// network RBAC decides on the first byte of each mTLS connection.
fn tcp_lines(lines: &mut Lines, names: &InboundNames, traffic: &InboundTraffic, mtls: bool) {
    let total = traffic.total();
    cluster_lines(lines, &names.cluster, total, traffic.active);

    let tcp = format!("tcp.{}", names.filter);
    lines.counter(format!("{tcp}.downstream_cx_total"), total);
    lines.counter(format!("{tcp}.downstream_cx_rx_bytes_total"), total * 1_490);
    lines.counter(
        format!("{tcp}.downstream_cx_tx_bytes_total"),
        total * 32_420,
    );
    lines.counter(format!("{tcp}.idle_timeout"), 0);

    if mtls {
        rbac_lines(
            lines,
            &names.rbac,
            traffic.rbac_allowed(),
            traffic.rbac_denied(),
        );
    }
}

/// An HTTP inbound: the connection manager opens upstream connections only for
/// requests, and its RBAC filter counts requests. A denied connection makes one
/// request, which is refused.
fn http_lines(lines: &mut Lines, names: &InboundNames, inbound: &SimInbound, mtls: bool) {
    let traffic = &inbound.traffic;
    let served = traffic.breaks_under_strict() + traffic.rbac_allowed();
    let requests = served * inbound.requests_per_connection + traffic.rbac_denied();
    cluster_lines(lines, &names.cluster, served, traffic.active);
    lines.counter(
        format!("cluster.{}.upstream_rq_total", names.cluster),
        requests,
    );

    let http = format!("http.{}", names.filter);
    lines.counter(format!("{http}.downstream_cx_total"), traffic.total());
    lines.counter(format!("{http}.downstream_rq_total"), requests);
    lines.counter(
        format!("{http}.downstream_rq_2xx"),
        requests - traffic.rbac_denied(),
    );
    lines.counter(format!("{http}.downstream_rq_4xx"), traffic.rbac_denied());

    if mtls {
        let allowed = traffic.rbac_allowed() * inbound.requests_per_connection;
        rbac_lines(lines, &http, allowed, traffic.rbac_denied());
    }
}

fn cluster_lines(lines: &mut Lines, cluster: &str, connections: u64, active: u64) {
    let scope = format!("cluster.{cluster}");
    lines.counter(format!("{scope}.upstream_cx_total"), connections);
    lines.gauge(
        format!("{scope}.upstream_cx_active"),
        active,
        connections > 0,
    );
    lines.counter(
        format!("{scope}.upstream_cx_destroy"),
        connections.saturating_sub(active),
    );
    lines.counter(format!("{scope}.upstream_cx_connect_fail"), 0);
    lines.gauge(format!("{scope}.membership_healthy"), 1, true);
    lines.gauge(format!("{scope}.membership_total"), 1, true);
    lines.histogram(format!("{scope}.upstream_cx_connect_ms"), connections > 0);
}

/// RBAC counters; shadow rules are not modelled, so their counters stay 0.
fn rbac_lines(lines: &mut Lines, prefix: &str, allowed: u64, denied: u64) {
    lines.counter(format!("{prefix}.rbac.allowed"), allowed);
    lines.counter(format!("{prefix}.rbac.denied"), denied);
    lines.counter(format!("{prefix}.rbac.shadow_allowed"), 0);
    lines.counter(format!("{prefix}.rbac.shadow_denied"), 0);
}

/// The app's own calls out: an outbound listener on the ClusterIP of its first
/// inbound's service, same port, other address; and the passthrough listeners
/// of transparent proxying.
fn outbound_lines(lines: &mut Lines, dataplane: &SimDataplane, setup: Setup) {
    if let Some(inbound) = dataplane.inbounds.first() {
        let cluster = outbound_cluster(dataplane, inbound, setup.naming);
        let listener = format!(
            "listener.{}_{}",
            cluster_ip(inbound.service()),
            inbound.port
        );
        let count = dataplane.outbound_connections;

        lines.readout(format!("cluster.{cluster}.version_text"), VERSION_TEXT);
        lines.counter(format!("{listener}.downstream_cx_total"), count);
        lines.gauge(format!("{listener}.downstream_cx_active"), 0, count > 0);
        lines.counter(format!("cluster.{cluster}.upstream_cx_total"), count);
        lines.gauge(format!("cluster.{cluster}.membership_healthy"), 1, true);
    }

    let (outbound, inbound, inbound_cluster) = match setup.naming {
        Naming::Legacy => ("0.0.0.0_15001", "0.0.0.0_15006", "inbound_passthrough_ipv4"),
        Naming::Unified => (
            "self_transparentproxy_passthrough_outbound_ipv4",
            "self_transparentproxy_passthrough_inbound_ipv4",
            "self_transparentproxy_passthrough_inbound_ipv4",
        ),
    };
    lines.counter(format!("listener.{outbound}.downstream_cx_total"), 0);
    lines.counter(
        format!("listener.{inbound}.downstream_cx_total"),
        PASSTHROUGH,
    );
    lines.counter(
        format!("cluster.{inbound_cluster}.upstream_cx_total"),
        PASSTHROUGH,
    );
}

/// Connections that reached the inbound passthrough: probes and the like.
const PASSTHROUGH: u64 = 3;

fn outbound_cluster(dataplane: &SimDataplane, inbound: &SimInbound, naming: Naming) -> String {
    match naming {
        Naming::Legacy => inbound.service().to_string(),
        Naming::Unified => {
            let namespace = dataplane
                .name
                .rsplit_once('.')
                .map_or("default", |(_, ns)| ns);
            let app = inbound.service().split('_').next().unwrap_or_default();
            let section = inbound
                .name
                .clone()
                .unwrap_or_else(|| inbound.port.to_string());
            format!(
                "kri_msvc_{}_zone-1_{namespace}_{app}_{section}",
                dataplane.mesh
            )
        }
    }
}

/// A ClusterIP in 10.96.0.0/16, Kubernetes' default service range, derived
/// from the service name.
fn cluster_ip(service: &str) -> String {
    let hash = fnv1a(service.as_bytes());
    format!("10.96.{}.{}", (hash >> 8) & 0xff, (hash & 0xff).max(1))
}

/// Traffic of the control plane itself: the xDS stream and the `/stats` calls,
/// which arrive over mTLS on the admin listener at the pod IP, port 9901.
fn admin_lines(lines: &mut Lines, dataplane: &SimDataplane, setup: Setup) {
    let (ads, admin) = match setup.naming {
        Naming::Legacy => ("ads_cluster", "kuma_envoy_admin"),
        Naming::Unified => ("system_ads", "system_envoy_admin"),
    };
    let requests = dataplane.admin_requests;
    let listener = address_stat_name(&dataplane.address, ADMIN_PORT);

    lines.counter(format!("cluster.{ads}.upstream_cx_total"), 1);
    lines.gauge(format!("cluster.{ads}.upstream_cx_active"), 1, true);
    lines.counter(format!("cluster.{ads}.ssl.handshake"), 1);
    lines.counter(format!("cluster.{admin}.upstream_rq_total"), requests);
    lines.counter(format!("http.{admin}.downstream_rq_total"), requests);
    lines.counter(format!("listener.{listener}.downstream_cx_total"), requests);
    lines.counter(format!("listener.{listener}.ssl.handshake"), requests);
    lines.counter("http.admin.downstream_rq_total".into(), requests);
    lines.counter("listener.admin.downstream_cx_total".into(), requests);
}

/// Process-wide stats: uptime, memory, xDS state, and the TLS inspector, whose
/// counters are shared by every listener.
fn process_lines(lines: &mut Lines, dataplane: &SimDataplane, setup: Setup, uptime_secs: u64) {
    let inbounds = &dataplane.inbounds;
    let clusters = inbounds.len() as u64 + 4;
    let open: u64 = inbounds.iter().map(|i| i.traffic.active).sum();

    lines.readout("cluster_manager.cds.version_text".into(), VERSION_TEXT);
    lines.readout("control_plane.identifier".into(), CONTROL_PLANE_ID);
    lines.readout("listener_manager.lds.version_text".into(), VERSION_TEXT);
    lines.gauge("cluster_manager.active_clusters".into(), clusters, true);
    lines.counter("cluster_manager.cds.update_success".into(), 6);
    lines.gauge("control_plane.connected_state".into(), 1, true);
    lines.counter("listener_manager.lds.update_success".into(), 6);
    lines.gauge(
        "listener_manager.total_listeners_active".into(),
        clusters,
        true,
    );

    lines.gauge(SERVER_UPTIME.into(), uptime_secs, true);
    lines.gauge("server.live".into(), 1, true);
    lines.gauge("server.state".into(), 0, true);
    lines.gauge("server.concurrency".into(), 2, true);
    lines.gauge("server.hot_restart_epoch".into(), 0, true);
    lines.gauge("server.memory_allocated".into(), 11_408_376, true);
    lines.gauge("server.memory_heap_size".into(), 20_971_520, true);
    lines.gauge("server.total_connections".into(), open + 1, true);
    lines.gauge("server.version".into(), 9_618_271, true);
    lines.histogram("server.initialization_time_ms".into(), true);

    tls_inspector_lines(lines, dataplane, setup);
}

/// Only a permissive inbound has a TLS inspector, which sorts TLS from plaintext;
/// the admin listener always has one.
fn tls_inspector_lines(lines: &mut Lines, dataplane: &SimDataplane, setup: Setup) {
    let mut tls = dataplane.admin_requests;
    let mut plaintext = 0;
    if setup.mtls == Some(MtlsMode::Permissive) {
        for inbound in &dataplane.inbounds {
            let traffic = &inbound.traffic;
            tls += traffic.foreign_tls + traffic.mtls + traffic.failed();
            plaintext += traffic.plaintext;
        }
    }

    lines.counter("tls_inspector.tls_found".into(), tls);
    lines.counter("tls_inspector.alpn_found".into(), tls);
    lines.counter("tls_inspector.tls_not_found".into(), plaintext);
    lines.counter("tls_inspector.client_hello_too_large".into(), 0);
}

/// Where Kuma exposes a sidecar's Envoy admin to the control plane.
const ADMIN_PORT: u16 = 9901;

const VERSION_TEXT: &str = "a3d7c0e1-52f4-4f8e-9b16-7e0c2d4a9f35";
const CONTROL_PLANE_ID: &str = "kuma-control-plane-sim-4e1a";

/// What a histogram with samples prints; the values do not matter to strictly.
const QUANTILES: &str = "P0(nan,1) P25(nan,4.1) P50(nan,870) P75(nan,3150) P90(nan,15400) \
                         P95(nan,30800) P99(nan,61300) P99.5(nan,121500) P99.9(nan,241000) \
                         P100(nan,3610000)";

/// Stat lines collected in any order and written in Envoy's.
#[derive(Default)]
struct Lines {
    readouts: Vec<(String, &'static str)>,
    values: Vec<(String, u64, bool)>,
    histograms: Vec<(String, bool)>,
}

impl Lines {
    /// A counter is "used" once it moved, so with `usedonly` a 0 is left out.
    fn counter(&mut self, name: String, value: u64) {
        self.values.push((name, value, value > 0));
    }

    /// A gauge is "used" once it was set, which may be to 0.
    fn gauge(&mut self, name: String, value: u64, used: bool) {
        self.values.push((name, value, used));
    }

    fn readout(&mut self, name: String, text: &'static str) {
        self.readouts.push((name, text));
    }

    fn histogram(&mut self, name: String, used: bool) {
        self.histograms.push((name, used));
    }

    fn render(mut self, used_only: bool) -> String {
        self.readouts.sort();
        self.values.sort();
        self.histograms.sort();
        let mut text = String::with_capacity(64 * (self.values.len() + 16));

        for (name, value) in &self.readouts {
            let _ = writeln!(text, "{name}: \"{value}\"");
        }
        for (name, value, used) in &self.values {
            if *used || !used_only {
                let _ = writeln!(text, "{name}: {value}");
            }
        }
        for (name, used) in &self.histograms {
            match (used, used_only) {
                (true, _) => {
                    let _ = writeln!(text, "{name}: {QUANTILES}");
                }
                (false, false) => {
                    let _ = writeln!(text, "{name}: No recorded values");
                }
                (false, true) => {}
            }
        }
        text
    }
}

#[cfg(test)]
mod tests;
