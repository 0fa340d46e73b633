//! The rendering checked three ways: against real sidecars' stat names (the
//! fixtures), against the counter rules, and against the daemon's own name
//! resolution fed with the JSON the simulation serves.

use std::collections::HashSet;

use super::*;
use crate::kuma::model::{DataplaneOverview, Mesh};
use crate::naming::{self, Protocol};
use crate::sim::json;

const LEGACY_FIXTURE: &str = include_str!("../../../tests/fixtures/stats-permissive.txt");
const UNIFIED_FIXTURE: &str =
    include_str!("../../../tests/fixtures/stats-permissive-new-naming.txt");

/// The value of one stat, whole name matched.
fn value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter_map(|line| line.split_once(": "))
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
}

fn names(text: &str) -> HashSet<&str> {
    text.lines()
        .filter_map(|line| line.split_once(": ").map(|(n, _)| n))
        .collect()
}

/// Every connection kind at once, with distinct counts so a mix-up shows.
fn mixed() -> InboundTraffic {
    InboundTraffic {
        plaintext: 5,
        foreign_tls: 2,
        mtls: 10,
        mtls_denied: 2,
        mtls_silent: 1,
        failed_no_cert: 1,
        failed_untrusted: 3,
        failed_san: 4,
        failed_garbage: 6,
        active: 3,
    }
}

/// The redis sidecar of the fixtures: pod IP 10.42.0.13, port 6379 named `redis`.
fn redis(traffic: InboundTraffic) -> SimDataplane {
    SimDataplane::sidecar("default", "redis-6d8f7b9c4-k2xlp.shop", "10.42.0.13").inbound(
        SimInbound::tcp(6379, "redis_shop_svc_6379")
            .named("redis")
            .with_traffic(traffic),
    )
}

/// Every stat, as after a few `/stats` polls of the control plane.
fn render(dataplane: &SimDataplane, mesh: &SimMesh) -> String {
    let mut dataplane = dataplane.clone();
    dataplane.admin_requests = 342;
    render_stats(&dataplane, Some(mesh), 8803, false)
}

#[test]
fn legacy_names_are_those_of_a_real_sidecar() {
    let text = render(&redis(mixed()), &SimMesh::permissive("default"));
    let wanted = [
        "listener.10.42.0.13_6379.downstream_cx_total",
        "listener.10.42.0.13_6379.downstream_cx_active",
        "listener.10.42.0.13_6379.ssl.handshake",
        "listener.10.42.0.13_6379.ssl.connection_error",
        "listener.10.42.0.13_6379.ssl.fail_verify_no_cert",
        "listener.10.42.0.13_6379.ssl.fail_verify_error",
        "listener.10.42.0.13_6379.ssl.fail_verify_san",
        "listener.10.42.0.13_6379.worker_0.downstream_cx_total",
        "cluster.localhost_6379.upstream_cx_total",
        "inbound_10_42_0_13_6379.rbac.allowed",
        "inbound_10_42_0_13_6379.rbac.denied",
        "tcp.localhost_6379.downstream_cx_total",
        "listener.0.0.0.0_15006.downstream_cx_total",
        "cluster.inbound_passthrough_ipv4.upstream_cx_total",
        "server.uptime",
    ];

    let fixture = names(LEGACY_FIXTURE);
    let simulated = names(&text);
    for name in wanted {
        assert!(fixture.contains(name), "fixture lacks {name}");
        assert!(simulated.contains(name), "simulation lacks {name}");
    }
}

#[test]
fn unified_names_are_those_of_a_real_sidecar() {
    let dataplane = redis(mixed()).unified_naming();
    let mesh = SimMesh::permissive("default").exclusive_mesh_services();
    let text = render(&dataplane, &mesh);
    let wanted = [
        "listener.self_inbound_dp_redis.downstream_cx_total",
        "listener.self_inbound_dp_redis.ssl.handshake",
        "listener.self_inbound_dp_redis.worker_1.downstream_cx_total",
        "cluster.self_inbound_dp_redis.upstream_cx_total",
        "self_inbound_dp_redis.rbac.allowed",
        "tcp.self_inbound_dp_redis.downstream_cx_total",
        "cluster.system_envoy_admin.upstream_rq_total",
        "listener.self_transparentproxy_passthrough_inbound_ipv4.downstream_cx_total",
    ];

    let fixture = names(UNIFIED_FIXTURE);
    let simulated = names(&text);
    for name in wanted {
        assert!(fixture.contains(name), "fixture lacks {name}");
        assert!(simulated.contains(name), "simulation lacks {name}");
    }
    assert!(!text.contains("inbound_10_42_0_13_6379"));
}

#[test]
fn unified_names_need_an_exclusive_mesh() {
    let dataplane = redis(mixed()).unified_naming();
    let text = render(&dataplane, &SimMesh::permissive("default"));

    assert!(text.contains("listener.10.42.0.13_6379.downstream_cx_total"));
    assert!(!text.contains("self_inbound_dp"));
}

#[test]
fn unified_section_is_the_port_before_kuma_2_13() {
    let dataplane = redis(mixed()).unified_naming().without_kri();
    let mesh = SimMesh::permissive("default").exclusive_mesh_services();
    let text = render(&dataplane, &mesh);

    assert_eq!(
        value(&text, "listener.self_inbound_dp_6379.downstream_cx_total"),
        Some(31)
    );
}

#[test]
fn counters_follow_envoy_rules() {
    let text = render(&redis(mixed()), &SimMesh::permissive("default"));
    let listener = "listener.10.42.0.13_6379";
    let get = |name: &str| value(&text, name).unwrap_or_else(|| panic!("{name} missing"));

    // 5 plaintext + 2 foreign + 10 mTLS + 14 failed handshakes.
    assert_eq!(get(&format!("{listener}.downstream_cx_total")), 31);
    assert_eq!(get(&format!("{listener}.ssl.handshake")), 10);
    assert_eq!(get(&format!("{listener}.ssl.fail_verify_no_cert")), 1);
    assert_eq!(get(&format!("{listener}.ssl.fail_verify_error")), 3);
    assert_eq!(get(&format!("{listener}.ssl.fail_verify_san")), 4);
    assert_eq!(get(&format!("{listener}.ssl.connection_error")), 6);
    assert_eq!(get(&format!("{listener}.downstream_cx_active")), 3);
    assert_eq!(get(&format!("{listener}.worker_0.downstream_cx_total")), 16);
    assert_eq!(get(&format!("{listener}.worker_1.downstream_cx_total")), 15);
    assert_eq!(get("cluster.localhost_6379.upstream_cx_total"), 31);
    assert_eq!(get("inbound_10_42_0_13_6379.rbac.allowed"), 7);
    assert_eq!(get("inbound_10_42_0_13_6379.rbac.denied"), 2);
    assert_eq!(get("server.uptime"), 8803);

    // The daemon's listener rule finds exactly the connections Strict would break.
    let failed = 1 + 3 + 4 + 6;
    assert_eq!(31 - 10 - failed, mixed().breaks_under_strict());
    // The guide's cluster rule also counts the silent mTLS connection.
    assert_eq!(31 - (7 + 2) - failed, mixed().breaks_under_strict() + 1);
}

#[test]
fn outbound_listener_on_the_same_port_is_not_the_inbound() {
    let text = render(&redis(mixed()), &SimMesh::permissive("default"));
    let outbound: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("listener.10.96.") && l.contains("_6379.downstream_cx_total"))
        .collect();

    assert_eq!(outbound.len(), 1, "{outbound:?}");
    assert!(outbound[0].ends_with(": 11"));
}

#[test]
fn used_only_leaves_out_what_never_moved() {
    let quiet = InboundTraffic {
        mtls: 4,
        ..InboundTraffic::default()
    };
    let mesh = SimMesh::permissive("default");
    let used = render_stats(&redis(quiet), Some(&mesh), 60, true);
    let all = render_stats(&redis(quiet), Some(&mesh), 60, false);

    assert_eq!(
        value(&used, "inbound_10_42_0_13_6379.rbac.allowed"),
        Some(4)
    );
    assert_eq!(value(&used, "inbound_10_42_0_13_6379.rbac.denied"), None);
    assert_eq!(
        value(&used, "listener.10.42.0.13_6379.ssl.fail_verify_san"),
        None
    );
    assert_eq!(
        value(&used, "server.state"),
        Some(0),
        "gauges that were set stay"
    );
    assert_eq!(value(&all, "inbound_10_42_0_13_6379.rbac.denied"), Some(0));
    assert_eq!(
        value(&all, "listener.10.42.0.13_6379.ssl.fail_verify_san"),
        Some(0)
    );
}

#[test]
fn a_mesh_without_mtls_has_no_tls_or_rbac_lines() {
    let text = render(&redis(mixed()), &SimMesh::without_mtls("default"));
    let inbound: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("10.42.0.13_6379") || l.contains("localhost_6379"))
        .collect();

    assert!(!inbound.is_empty());
    assert!(
        inbound
            .iter()
            .all(|l| !l.contains(".ssl.") && !l.contains(".rbac."))
    );
    assert!(!text.contains("inbound_10_42_0_13_6379"));
    assert_eq!(
        value(&text, "listener.10.42.0.13_6379.downstream_cx_total"),
        Some(31)
    );
}

#[test]
fn http_inbounds_count_requests_in_the_connection_manager() {
    let traffic = InboundTraffic {
        plaintext: 2,
        mtls: 5,
        mtls_denied: 1,
        ..InboundTraffic::default()
    };
    let dataplane = SimDataplane::sidecar("default", "demo-app-1.shop", "10.42.0.21")
        .inbound(SimInbound::http(5000, "demo-app_shop_svc_5000").with_traffic(traffic));
    let text = render(&dataplane, &SimMesh::permissive("default"));

    // 4 allowed connections, 3 requests each.
    assert_eq!(value(&text, "http.localhost_5000.rbac.allowed"), Some(12));
    assert_eq!(value(&text, "http.localhost_5000.rbac.denied"), Some(1));
    assert_eq!(
        value(&text, "listener.10.42.0.21_5000.ssl.handshake"),
        Some(5)
    );
    assert_eq!(
        value(&text, "listener.10.42.0.21_5000.downstream_cx_total"),
        Some(7)
    );
    assert!(!text.contains("inbound_10_42_0_21_5000.rbac"));
}

#[test]
fn strict_turns_plaintext_into_failed_handshakes() {
    let text = render(&redis(mixed()), &SimMesh::strict("default"));
    let listener = "listener.10.42.0.13_6379";
    let get = |name: &str| value(&text, &format!("{listener}.{name}")).unwrap_or(0);
    let failed: u64 = [
        "ssl.connection_error",
        "ssl.fail_verify_error",
        "ssl.fail_verify_no_cert",
        "ssl.fail_verify_san",
        "ssl.fail_verify_cert_hash",
    ]
    .iter()
    .map(|name| get(name))
    .sum();

    assert_eq!(
        get("downstream_cx_total") - get("ssl.handshake") - failed,
        0
    );
    assert_eq!(get("ssl.connection_error"), 6 + 5);
    assert_eq!(get("ssl.fail_verify_no_cert"), 1 + 2);
}

#[test]
fn layout_is_readouts_then_sorted_values_then_histograms() {
    let text = render(&redis(mixed()), &SimMesh::permissive("default"));
    let lines: Vec<&str> = text.lines().collect();
    let readouts = lines.iter().take_while(|l| l.ends_with('"')).count();
    let histograms = lines
        .iter()
        .rev()
        .take_while(|l| l.contains("P0(") || l.ends_with("No recorded values"))
        .count();
    let values: Vec<&str> = lines[readouts..lines.len() - histograms]
        .iter()
        .map(|l| l.split_once(": ").map_or(*l, |(n, _)| n))
        .collect();

    assert!(readouts >= 3);
    assert!(histograms >= 3);
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "values sorted and unique"
    );
    assert!(lines.iter().all(|l| l.contains(": ")));
}

/// The simulation and the daemon resolve names independently; fed the same
/// JSON they must agree, for every shape of dataplane.
#[test]
fn daemon_naming_finds_every_counter_in_the_simulated_text() {
    let cases = [
        (redis(mixed()), SimMesh::permissive("default")),
        (
            redis(mixed()).unified_naming(),
            SimMesh::permissive("default").exclusive_mesh_services(),
        ),
        (
            redis(mixed()).unified_naming().without_kri(),
            SimMesh::permissive("default").exclusive_mesh_services(),
        ),
        (
            SimDataplane::sidecar("default", "redis-v6.shop", "fd00::5")
                .inbound(SimInbound::tcp(6379, "redis").with_traffic(mixed())),
            SimMesh::permissive("default"),
        ),
        (
            SimDataplane::sidecar("default", "universal-1", "192.168.0.1").inbound(
                SimInbound::tcp(16379, "redis")
                    .service_port(6379)
                    .with_traffic(mixed()),
            ),
            SimMesh::permissive("default"),
        ),
        (
            SimDataplane::sidecar("default", "web-1.shop", "10.42.0.30").inbound(
                SimInbound::http(8080, "web")
                    .named("http")
                    .with_traffic(mixed()),
            ),
            SimMesh::permissive("default").exclusive_mesh_services(),
        ),
    ];

    for (dataplane, mesh) in cases {
        let text = render(&dataplane, &mesh);
        let seen: DataplaneOverview =
            serde_json::from_value(json::overview(&dataplane, Some(&mesh))).expect("overview JSON");
        let seen_mesh: Mesh = serde_json::from_value(json::mesh(&mesh)).expect("mesh JSON");
        let naming = naming::naming_of(&seen, &seen_mesh);
        let stats = naming::inbound_stats(&seen, &seen.dataplane.networking.inbound[0], naming);
        let traffic = dataplane.inbounds[0].traffic;
        let case = &dataplane.name;

        assert_eq!(
            value(&text, &stats.downstream_cx_total),
            Some(traffic.total()),
            "{case}"
        );
        assert_eq!(
            value(&text, &stats.ssl_handshake),
            Some(traffic.mtls),
            "{case}"
        );
        let failed: Option<u64> = stats.ssl_failures.iter().map(|n| value(&text, n)).sum();
        assert_eq!(failed, Some(traffic.failed()), "{case}");
        assert_eq!(
            value(&text, &stats.downstream_cx_active),
            Some(traffic.active),
            "{case}"
        );
        if stats.protocol == Protocol::Tcp {
            assert_eq!(
                value(&text, &stats.upstream_cx_total),
                Some(traffic.total()),
                "{case}"
            );
            assert_eq!(
                value(&text, &stats.rbac_allowed),
                Some(traffic.rbac_allowed()),
                "{case}"
            );
            assert_eq!(
                value(&text, &stats.rbac_denied),
                Some(traffic.rbac_denied()),
                "{case}"
            );
        }
    }
}

#[test]
fn uptime_and_counters_restart_with_the_sidecar() {
    let mut dataplane = redis(mixed()).with_uptime(std::time::Duration::from_secs(90_000));
    dataplane.restart();
    let uptime = dataplane.uptime(tokio::time::Instant::now()).as_secs();
    let text = render_stats(
        &dataplane,
        Some(&SimMesh::permissive("default")),
        uptime,
        true,
    );

    assert!(value(&text, "server.uptime").is_some_and(|u| u < 5));
    assert_eq!(
        value(&text, "listener.10.42.0.13_6379.downstream_cx_total"),
        None
    );
}
