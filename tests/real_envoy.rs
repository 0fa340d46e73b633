//! Measurements on a real Envoy 1.40 configured like a Kuma sidecar's inbound:
//! which counters each kind of connection moves. These are the facts strictly's
//! counting rests on, and `docs/how-strictly-counts.md` explains them.
//!
//! Each test starts its own inbound (Envoy plus the workload) and opens one
//! connection at a time on it, so every delta belongs to one connection. Run
//! with `--nocapture` to see the measured tables.
//!
//! Needs Envoy, redis, openssl and python3: `scripts/install-test-deps.sh`.

mod support;

use std::time::Duration;

use support::clients::{Connection, Reply};
use support::inbound::{Inbound, InboundKind};
use support::measure::{COLUMNS, Movement, markdown, measure};
use support::process::wait_until;
use support::stats::Stats;

/// One expected row: the connection, and the movements it may produce (most
/// connections have exactly one).
type Expected = (Connection, &'static [[i64; 12]]);

// Columns, as in `COLUMNS`:
//   cx  listener downstream_cx_total    up  cluster upstream_cx_total
//   hs  ssl.handshake                   ok  rbac.allowed
//   ce  ssl.connection_error            no  rbac.denied
//   fe  ssl.fail_verify_error           px  tcp downstream_cx_total
//   nc  ssl.fail_verify_no_cert         lf  listener_filter_remote_close
//   sa  ssl.fail_verify_san
//   ch  ssl.fail_verify_cert_hash

/// A connection that reached tcp_proxy and moved nothing else.
const REACHED_APP: [i64; 12] = [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0];
/// A connection that ended while tls_inspector was still waiting for bytes.
const CLOSED_IN_LISTENER_FILTER: [i64; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

// rustfmt would break each row over four lines; these read better as tables.
#[rustfmt::skip]
const PERMISSIVE: [Expected; 11] = [
    //                                       cx hs ce fe nc sa ch up ok no px lf
    (Connection::PlaintextPing,           &[REACHED_APP]),
    (Connection::MeshPing,                &[[1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0]]),
    // Network RBAC decides on its first read, and the client's FIN is one.
    (Connection::SilentMesh,              &[[1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0]]),
    (Connection::MeshWithoutCert,         &[[1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0]]),
    (Connection::MeshUntrustedCa,         &[[1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0]]),
    (Connection::MeshWrongSan,            &[[1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0]]),
    (Connection::TlsOutsideMesh,          &[REACHED_APP]),
    (Connection::GarbageAfterClientHello, &[[1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0]]),
    // The ClientHello and the FIN arrive together: depending on which one
    // tls_inspector sees first, the connection is dropped in the listener
    // filter or accepted and then abandoned mid-handshake.
    (Connection::ClientHelloThenHangUp,   &[REACHED_APP, CLOSED_IN_LISTENER_FILTER]),
    (Connection::HangUpAfterServerHello,  &[REACHED_APP]),
    (Connection::SilentPlaintext,         &[CLOSED_IN_LISTENER_FILTER]),
];

#[rustfmt::skip]
const STRICT: [Expected; 11] = [
    //                                       cx hs ce fe nc sa ch up ok no px lf
    (Connection::PlaintextPing,           &[[1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0]]),
    (Connection::MeshPing,                &[[1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0]]),
    (Connection::SilentMesh,              &[[1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0]]),
    (Connection::MeshWithoutCert,         &[[1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0]]),
    (Connection::MeshUntrustedCa,         &[[1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0]]),
    (Connection::MeshWrongSan,            &[[1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0]]),
    // One chain terminates every TLS connection; this client has no cert.
    (Connection::TlsOutsideMesh,          &[[1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0]]),
    (Connection::GarbageAfterClientHello, &[[1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0]]),
    // Without tls_inspector every connection is accepted at once.
    (Connection::ClientHelloThenHangUp,   &[REACHED_APP]),
    (Connection::HangUpAfterServerHello,  &[REACHED_APP]),
    (Connection::SilentPlaintext,         &[REACHED_APP]),
];

/// Opens every kind of connection, one at a time, and returns the rows.
fn measure_each(inbound: &Inbound) -> Vec<(Connection, Reply, Movement)> {
    Connection::ALL
        .iter()
        .map(|&connection| {
            let (reply, movement) = measure(inbound, connection)
                .unwrap_or_else(|error| panic!("{connection:?} could not be measured: {error:#}"));
            (connection, reply, movement)
        })
        .collect()
}

/// Prints the measured table, then fails with every row that differs.
fn assert_table(title: &str, rows: &[(Connection, Reply, Movement)], expected: &[Expected]) {
    let table: Vec<_> = rows.iter().map(|(c, _, m)| (*c, *m)).collect();
    println!("{title}\n{}", markdown(&table));

    let wrong: Vec<String> = rows
        .iter()
        .filter_map(|(connection, reply, movement)| {
            let allowed = expected
                .iter()
                .find(|(c, _)| c == connection)
                .map_or(&[][..], |(_, allowed)| *allowed);
            (!allowed.contains(&movement.0)).then(|| {
                format!(
                    "{connection:?} moved {:?}, expected one of {allowed:?} ({reply:?})",
                    movement.0
                )
            })
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{title}: columns {COLUMNS:?}\n{}",
        wrong.join("\n")
    );
}

/// Only the listed connections get an answer from the workload.
fn assert_answered(rows: &[(Connection, Reply, Movement)], answered: &[Connection]) {
    for (connection, reply, _) in rows {
        let expect_answer = answered.contains(connection);
        let got_answer = matches!(reply, Reply::Answer(text) if text == "PONG");
        assert_eq!(got_answer, expect_answer, "{connection:?} got {reply:?}");
    }
}

#[test]
fn permissive_tcp_inbound_moves_one_counter_set_per_kind_of_connection() {
    let inbound = Inbound::start(InboundKind::TcpPermissive).expect("inbound starts");
    let rows = measure_each(&inbound);

    assert_table("Permissive TCP inbound, legacy naming", &rows, &PERMISSIVE);
    assert_answered(&rows, &[Connection::PlaintextPing, Connection::MeshPing]);
}

#[test]
fn strict_tcp_inbound_fails_plaintext_with_a_connection_error() {
    let inbound = Inbound::start(InboundKind::TcpStrict).expect("inbound starts");
    let rows = measure_each(&inbound);

    assert_table("Strict TCP inbound, legacy naming", &rows, &STRICT);
    assert_answered(&rows, &[Connection::MeshPing]);
}

#[test]
fn unified_naming_moves_the_same_counters_under_one_name() {
    let inbound = Inbound::start(InboundKind::TcpPermissiveUnified).expect("inbound starts");
    let rows = measure_each(&inbound);

    assert_table("Permissive TCP inbound, unified naming", &rows, &PERMISSIVE);
    let stats = inbound.stats().expect("stats");
    let legacy: Vec<&str> = stats
        .names()
        .filter(|name| {
            name.starts_with(&format!("listener.127.0.0.1_{}.", inbound.listener_port))
                || name.starts_with(&format!("cluster.localhost_{}.", inbound.app_port))
                || name.starts_with("inbound_127_0_0_1_")
        })
        .collect();
    assert!(legacy.is_empty(), "legacy stat names left: {legacy:?}");
}

#[test]
fn rbac_denied_mesh_connection_completes_its_handshake() {
    let inbound = Inbound::start(InboundKind::TcpPermissiveDenied).expect("inbound starts");

    let (reply, movement) = measure(&inbound, Connection::MeshPing).expect("measured");

    println!("{}", markdown(&[(Connection::MeshPing, movement)]));
    //                      cx hs ce fe nc sa ch up ok no px lf
    assert_eq!(movement.0, [1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0]);
    assert!(matches!(reply, Reply::NoAnswer(_)), "denied, yet {reply:?}");
    assert_eq!((movement.plaintext(), movement.mtls()), (0, 1));
    assert_eq!(
        movement.guide_plaintext(),
        1,
        "the guide's rule counts it as plaintext"
    );
}

#[test]
fn a_handshake_in_flight_is_accepted_before_it_counts_as_mtls() {
    let inbound = Inbound::start(InboundKind::TcpPermissive).expect("inbound starts");
    let names = &inbound.names;
    let before = inbound.settle().expect("settled");

    let held = inbound
        .client()
        .hold_mesh_handshake()
        .expect("half a handshake");
    let during = wait_until(
        Duration::from_secs(5),
        "the connection to be accepted",
        || {
            let stats = inbound.stats()?;
            Ok((stats.get(&names.listener("downstream_cx_active")) == 1).then_some(stats))
        },
    )
    .expect("accepted");
    let in_flight = Movement::between(names, &before, &during);

    let reply = held.finish().expect("the handshake finishes");
    let after = inbound.settle().expect("settled");
    let done = Movement::between(names, &before, &after);

    println!(
        "{}",
        markdown(&[
            (Connection::MeshPing, in_flight),
            (Connection::MeshPing, done)
        ])
    );
    //                       cx hs ce fe nc sa ch up ok no px lf
    assert_eq!(in_flight.0, [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0]);
    assert_eq!(done.0, [1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0]);
    assert_eq!(reply, Reply::Answer("PONG".into()));
    assert_eq!(
        (in_flight.plaintext(), done.plaintext()),
        (1, 0),
        "read in flight, it looks like plaintext"
    );
}

/// What one kept-alive HTTP connection of three requests moves.
#[derive(Debug, PartialEq, Eq)]
struct HttpMovement {
    listener_cx: i64,
    handshakes: i64,
    requests: i64,
    rbac_allowed: i64,
    upstream_cx: i64,
    upstream_rq: i64,
}

fn http_connection(inbound: &Inbound, mesh: bool) -> HttpMovement {
    let names = &inbound.names;
    let before = inbound.settle().expect("settled");
    let statuses = inbound
        .client()
        .http_requests(mesh, 3)
        .expect("requests sent");
    let after = inbound.settle().expect("settled");

    assert_eq!(statuses, [200, 200, 200], "mesh: {mesh}");
    let delta = |name: String| after.delta(&before, &name);
    HttpMovement {
        listener_cx: delta(names.listener("downstream_cx_total")),
        handshakes: delta(names.listener("ssl.handshake")),
        requests: delta(names.proxy("downstream_rq_total")),
        rbac_allowed: delta(names.rbac("allowed")),
        upstream_cx: delta(names.cluster("upstream_cx_total")),
        upstream_rq: delta(names.cluster("upstream_rq_total")),
    }
}

#[test]
fn http_inbound_rbac_counts_requests_and_the_listener_counts_connections() {
    let inbound = Inbound::start(InboundKind::HttpPermissive).expect("inbound starts");

    // The first connection also opens Envoy's pooled connection to the app;
    // later ones reuse it, whichever chain they came through.
    let first_plaintext = http_connection(&inbound, false);
    let mesh = http_connection(&inbound, true);
    let plaintext = http_connection(&inbound, false);

    println!("first plaintext: {first_plaintext:?}\nmesh: {mesh:?}\nplaintext: {plaintext:?}");
    let expected = |handshakes, rbac_allowed, upstream_cx| HttpMovement {
        listener_cx: 1,
        handshakes,
        requests: 3,
        rbac_allowed,
        upstream_cx,
        upstream_rq: 3,
    };
    assert_eq!(first_plaintext, expected(0, 0, 1));
    assert_eq!(mesh, expected(1, 3, 0));
    assert_eq!(plaintext, expected(0, 0, 0));
    assert_eq!(
        mesh.upstream_cx - mesh.rbac_allowed,
        -3,
        "the guide's rule goes negative"
    );
}

#[test]
fn restart_resets_counters_and_uptime() {
    let mut inbound = Inbound::start(InboundKind::TcpPermissive).expect("inbound starts");
    let names = inbound.names.clone();
    let allowed = names.rbac("allowed");
    let total = names.listener("downstream_cx_total");

    // Never-written counters are left out of `?usedonly` but read 0 in full.
    let used_only = Stats::parse(&inbound.stats_text(true).expect("stats"));
    assert!(
        !used_only.contains(&allowed),
        "{allowed} listed before any mTLS"
    );
    assert!(inbound.stats().expect("stats").contains(&allowed));

    inbound.open(Connection::PlaintextPing).expect("plaintext");
    inbound.open(Connection::MeshPing).expect("mesh");
    let old = wait_for_uptime(&inbound, 2);
    assert_eq!((old.get(&total), old.get(&allowed)), (2, 1));

    inbound.restart_envoy().expect("Envoy restarts");
    let fresh = inbound.stats().expect("stats");
    assert_eq!(fresh.get(&total), 0);
    assert_eq!(fresh.get(&allowed), 0);
    assert!(fresh.get("server.uptime") < old.get("server.uptime"));

    inbound.open(Connection::MeshPing).expect("mesh");
    let later = wait_for_uptime(&inbound, 1);
    assert_eq!((later.get(&total), later.get(&allowed)), (1, 1));
}

/// `server.uptime` moves only when Envoy flushes stats (every second in the
/// templates), so waiting for it takes up to that long.
fn wait_for_uptime(inbound: &Inbound, seconds: u64) -> Stats {
    wait_until(Duration::from_secs(10), "server.uptime to grow", || {
        let stats = inbound.stats()?;
        Ok((stats.get("server.uptime") >= seconds).then_some(stats))
    })
    .expect("uptime grows")
}

#[test]
fn open_connections_show_in_the_active_gauges() {
    let inbound = Inbound::start(InboundKind::TcpPermissive).expect("inbound starts");
    let names = &inbound.names;
    let client = inbound.client();
    let gauges = |stats: &Stats| {
        (
            stats.get(&names.listener("downstream_cx_active")),
            stats.get(&names.listener("downstream_pre_cx_active")),
            stats.get(&names.listener("ssl.handshake")),
        )
    };

    let plaintext = client.hold_plaintext_ping().expect("plaintext connection");
    let mesh = client.hold_mesh().expect("mesh connection");
    let silent_mesh = client.hold_silent_mesh().expect("silent mesh connection");
    let silent = client.hold_plaintext().expect("silent connection");
    let held = wait_until(Duration::from_secs(5), "four open connections", || {
        let stats = inbound.stats()?;
        Ok((gauges(&stats) == (3, 1, 2)).then_some(stats))
    })
    .expect("three accepted connections, two of them mTLS, and one in the listener filter");

    // tcp_proxy connected all three to redis, but RBAC has decided only for
    // the mesh connection that sent data: the guide's difference reads 2 where
    // one connection is plaintext.
    assert_eq!(held.get(&names.cluster("upstream_cx_active")), 3);
    assert_eq!(held.get(&names.cluster("upstream_cx_total")), 3);
    assert_eq!(held.get(&names.rbac("allowed")), 1);

    drop((plaintext, mesh, silent_mesh, silent));
    let after = inbound.settle().expect("all closed");
    assert_eq!(gauges(&after), (0, 0, 2));
    assert_eq!(
        after.get(&names.rbac("allowed")),
        2,
        "the silent one, at its close"
    );
}

#[test]
fn silent_plaintext_connection_times_out_in_the_listener_filter() {
    let inbound = Inbound::start(InboundKind::TcpPermissive).expect("inbound starts");
    let names = &inbound.names;
    let timeouts = names.listener("downstream_pre_cx_timeout");

    // Kuma sets no listener_filters_timeout, so Envoy's 15 s default applies.
    let silent = inbound
        .client()
        .hold_plaintext()
        .expect("silent connection");
    let after = wait_until(
        Duration::from_secs(25),
        "the listener filter timeout",
        || {
            let stats = inbound.stats()?;
            Ok((stats.get(&timeouts) == 1).then_some(stats))
        },
    )
    .expect("tls_inspector gives up");
    drop(silent);

    assert_eq!(after.get(&names.listener("downstream_cx_total")), 0);
    assert_eq!(after.get(&names.listener("downstream_pre_cx_active")), 0);
    assert_eq!(after.get(&names.cluster("upstream_cx_total")), 0);
}
