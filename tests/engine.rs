//! Table tests of the verdict rules, one behaviour each.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use strictly::engine::{
    Counters, Engine, InboundKey, Sample, ServiceReport, Settings, Unavailable, Verdict,
};

const HOUR: u64 = 3600;

fn settings() -> Settings {
    Settings {
        window: Duration::from_secs(24 * HOUR),
        min_mtls_connections: 1,
        stale_after: Duration::from_secs(90),
        forget_after: Duration::from_secs(60),
    }
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn key(dataplane: &str) -> InboundKey {
    InboundKey {
        mesh: "default".into(),
        dataplane: dataplane.into(),
        port: 6379,
    }
}

/// A reading with `plaintext`, `mtls` and `failed` connections since Envoy started.
fn sample(plaintext: u64, mtls: u64, failed: u64, uptime: u64) -> Sample {
    Sample {
        counters: Counters {
            all: plaintext + mtls + failed,
            mtls,
            failed,
            active: 0,
            upstream_cx: plaintext + mtls + failed,
            rbac_allowed: mtls,
            rbac_denied: 0,
        },
        uptime: Some(Duration::from_secs(uptime)),
        tcp: true,
        mtls_enabled: true,
    }
}

fn only(engine: &mut Engine, now: SystemTime) -> ServiceReport {
    let mut reports = engine.report(now);
    assert_eq!(reports.len(), 1, "expected one service inbound");
    reports.remove(0)
}

#[test]
fn an_envoy_clean_for_longer_than_the_window_is_ready_at_first_sight() {
    let mut engine = Engine::new(settings());
    engine.observe(&key("redis-0"), "redis", sample(0, 40, 0, 25 * HOUR), at(0));

    let report = only(&mut engine, at(0));
    assert_eq!(report.verdict, Verdict::Ready, "{}", report.reason);
    assert_eq!(report.clean, Duration::from_secs(25 * HOUR));
    assert_eq!(report.totals.mtls, 40);
}

#[test]
fn a_young_clean_envoy_needs_the_rest_of_the_window() {
    let mut engine = Engine::new(settings());
    engine.observe(&key("redis-0"), "redis", sample(0, 5, 0, 2 * HOUR), at(0));
    assert_eq!(only(&mut engine, at(0)).verdict, Verdict::InsufficientData);

    engine.observe(
        &key("redis-0"),
        "redis",
        sample(0, 9, 0, 2 * HOUR + 22 * HOUR - 30),
        at(22 * HOUR - 30),
    );
    let report = only(&mut engine, at(22 * HOUR - 30));
    assert_eq!(
        report.verdict,
        Verdict::InsufficientData,
        "{}",
        report.reason
    );

    engine.observe(
        &key("redis-0"),
        "redis",
        sample(0, 9, 0, 24 * HOUR),
        at(22 * HOUR),
    );
    let report = only(&mut engine, at(22 * HOUR));
    assert_eq!(report.verdict, Verdict::Ready, "{}", report.reason);
}

#[test]
fn plaintext_before_the_first_poll_counts_as_seen_at_it() {
    let mut engine = Engine::new(settings());
    engine.observe(
        &key("redis-0"),
        "redis",
        sample(3, 10, 0, 100 * HOUR),
        at(0),
    );

    let report = only(&mut engine, at(0));
    assert_eq!(report.verdict, Verdict::Plaintext);
    assert_eq!(report.last_plaintext, Some(at(0)));
    assert_eq!(report.totals.plaintext, 3);

    engine.observe(
        &key("redis-0"),
        "redis",
        sample(3, 50, 0, 124 * HOUR),
        at(24 * HOUR),
    );
    assert_eq!(only(&mut engine, at(24 * HOUR)).verdict, Verdict::Ready);
}

#[test]
fn a_plaintext_delta_holds_the_verdict_for_a_whole_window() {
    let mut engine = Engine::new(settings());
    let k = key("redis-0");
    engine.observe(&k, "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    engine.observe(&k, "redis", sample(1, 12, 0, 30 * HOUR + 30), at(30));

    let report = only(&mut engine, at(30));
    assert_eq!(report.verdict, Verdict::Plaintext);
    assert!(
        report.reason.contains("plaintext connection seen"),
        "{}",
        report.reason
    );

    engine.observe(
        &k,
        "redis",
        sample(1, 20, 0, 54 * HOUR + 29),
        at(24 * HOUR + 29),
    );
    assert_eq!(
        only(&mut engine, at(24 * HOUR + 29)).verdict,
        Verdict::Plaintext
    );
    engine.observe(
        &k,
        "redis",
        sample(1, 21, 0, 54 * HOUR + 30),
        at(24 * HOUR + 30),
    );
    assert_eq!(
        only(&mut engine, at(24 * HOUR + 30)).verdict,
        Verdict::Ready
    );
}

#[test]
fn a_handshake_in_flight_at_one_poll_is_not_plaintext() {
    let mut engine = Engine::new(settings());
    let k = key("redis-0");
    engine.observe(&k, "redis", sample(0, 10, 0, 30 * HOUR), at(0));

    // Envoy counted the connection when it accepted it; its handshake was not
    // done yet when this poll read the counters.
    let mut in_flight = sample(0, 10, 0, 30 * HOUR + 30);
    in_flight.counters.all += 1;
    in_flight.counters.active = 1;
    engine.observe(&k, "redis", in_flight, at(30));
    let pending = only(&mut engine, at(30));
    assert_eq!(pending.verdict, Verdict::Ready, "{}", pending.reason);
    assert_eq!(pending.possible_open_plaintext, 1);

    engine.observe(&k, "redis", sample(0, 11, 0, 30 * HOUR + 60), at(60));
    let report = only(&mut engine, at(60));
    assert_eq!(report.verdict, Verdict::Ready, "{}", report.reason);
    assert_eq!((report.totals.connections, report.totals.mtls), (11, 11));
    assert_eq!(report.totals.plaintext, 0);
    assert_eq!(report.possible_open_plaintext, 0);
}

#[test]
fn a_slow_handshake_across_quick_polls_is_not_plaintext() {
    let mut engine = Engine::new(settings());
    let k = key("redis-0");
    engine.observe(&k, "redis", sample(0, 10, 0, 30 * HOUR), at(0));

    // Polls a second apart; the handshake takes three of them.
    for secs in 1..=3 {
        let mut in_flight = sample(0, 10, 0, 30 * HOUR + secs);
        in_flight.counters.all += 1;
        in_flight.counters.active = 1;
        engine.observe(&k, "redis", in_flight, at(secs));
    }
    engine.observe(&k, "redis", sample(0, 11, 0, 30 * HOUR + 4), at(4));
    engine.observe(&k, "redis", sample(0, 11, 0, 30 * HOUR + 9), at(9));

    let report = only(&mut engine, at(9));
    assert_eq!(report.verdict, Verdict::Ready, "{}", report.reason);
    assert_eq!(report.totals.plaintext, 0);
}

#[test]
fn an_open_unexplained_connection_still_there_at_the_next_poll_is_plaintext() {
    let mut engine = Engine::new(settings());
    let k = key("redis-0");
    engine.observe(&k, "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    for secs in [30, 60] {
        let mut open = sample(1, 10, 0, 30 * HOUR + secs);
        open.counters.active = 1;
        engine.observe(&k, "redis", open, at(secs));
    }

    let report = only(&mut engine, at(60));
    assert_eq!(report.verdict, Verdict::Plaintext, "{}", report.reason);
    assert_eq!(report.last_plaintext, Some(at(60)));
    assert_eq!(report.totals.plaintext, 1);
}

#[test]
fn open_connections_at_first_sight_wait_to_be_told_apart() {
    let mut engine = Engine::new(settings());
    let k = key("redis-0");
    let mut first = sample(0, 10, 0, 30 * HOUR);
    first.counters.all += 2;
    first.counters.active = 2;
    engine.observe(&k, "redis", first, at(0));
    let waiting = only(&mut engine, at(0));
    assert_eq!(waiting.verdict, Verdict::InsufficientData);
    assert!(waiting.reason.contains("later tells"), "{}", waiting.reason);

    engine.observe(&k, "redis", sample(0, 12, 0, 30 * HOUR + 30), at(30));
    let report = only(&mut engine, at(30));
    assert_eq!(report.verdict, Verdict::Ready, "{}", report.reason);
    assert_eq!(report.totals.plaintext, 0);
}

#[test]
fn failed_handshakes_are_not_plaintext() {
    let mut engine = Engine::new(settings());
    let k = key("redis-0");
    engine.observe(&k, "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    engine.observe(&k, "redis", sample(0, 12, 5, 30 * HOUR + 30), at(30));

    let report = only(&mut engine, at(30));
    assert_eq!(report.verdict, Verdict::Ready, "{}", report.reason);
    assert_eq!(report.totals.failed, 5);
    assert_eq!(report.totals.plaintext, 0);
}

#[test]
fn a_restart_restarts_the_clean_span_without_inventing_plaintext() {
    let mut engine = Engine::new(settings());
    let k = key("redis-0");
    engine.observe(&k, "redis", sample(0, 1000, 0, 30 * HOUR), at(0));
    engine.observe(&k, "redis", sample(0, 4, 0, 20), at(30));

    let report = only(&mut engine, at(30));
    assert_eq!(
        report.verdict,
        Verdict::InsufficientData,
        "{}",
        report.reason
    );
    assert_eq!(
        report.totals.mtls, 1004,
        "the new process's counters add on"
    );
    assert_eq!(report.totals.plaintext, 0);
    assert_eq!(report.clean, Duration::from_secs(20));
}

#[test]
fn missing_counters_read_as_zero_and_never_as_ready() {
    let mut engine = Engine::new(settings());
    let empty = Sample {
        counters: Counters::default(),
        uptime: Some(Duration::from_secs(48 * HOUR)),
        tcp: true,
        mtls_enabled: true,
    };
    engine.observe(&key("redis-0"), "redis", empty, at(0));

    let report = only(&mut engine, at(0));
    assert_eq!(report.verdict, Verdict::InsufficientData);
    assert!(
        report.reason.contains("0 of 1 required mTLS"),
        "{}",
        report.reason
    );
}

#[test]
fn min_mtls_connections_counts_inside_the_window_only() {
    let mut s = settings();
    s.min_mtls_connections = 10;
    let mut engine = Engine::new(s);
    let k = key("redis-0");
    engine.observe(&k, "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    assert_eq!(only(&mut engine, at(0)).verdict, Verdict::Ready);

    engine.observe(&k, "redis", sample(0, 11, 0, 60 * HOUR), at(30 * HOUR));
    let report = only(&mut engine, at(30 * HOUR));
    assert_eq!(
        report.verdict,
        Verdict::InsufficientData,
        "{}",
        report.reason
    );
}

#[test]
fn stale_data_is_unknown() {
    let mut engine = Engine::new(settings());
    engine.observe(&key("redis-0"), "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    assert_eq!(only(&mut engine, at(90)).verdict, Verdict::Ready);

    let report = only(&mut engine, at(91));
    assert_eq!(report.verdict, Verdict::Unknown);
    assert_eq!(report.replicas_reporting, 0);
    assert!(
        report.reason.contains("no successful poll"),
        "{}",
        report.reason
    );
}

#[test]
fn offline_or_failing_dataplanes_are_unknown_until_they_answer_again() {
    let mut engine = Engine::new(settings());
    let k = key("redis-0");
    engine.observe(&k, "redis", sample(0, 10, 0, 30 * HOUR), at(0));

    engine.unavailable(&k, "redis", Unavailable::Offline, at(30));
    let report = only(&mut engine, at(30));
    assert_eq!(report.verdict, Verdict::Unknown);
    assert!(report.reason.contains("offline"), "{}", report.reason);

    engine.unavailable(
        &k,
        "redis",
        Unavailable::StatsFailed("HTTP 500".into()),
        at(60),
    );
    assert!(only(&mut engine, at(60)).reason.contains("HTTP 500"));

    engine.observe(&k, "redis", sample(0, 12, 0, 30 * HOUR + 90), at(90));
    assert_eq!(only(&mut engine, at(90)).verdict, Verdict::Ready);
}

#[test]
fn a_dataplane_never_polled_successfully_is_unknown() {
    let mut engine = Engine::new(settings());
    engine.unavailable(
        &key("redis-0"),
        "redis",
        Unavailable::StatsFailed("timeout".into()),
        at(0),
    );
    assert_eq!(only(&mut engine, at(0)).verdict, Verdict::Unknown);
}

#[test]
fn replicas_aggregate_with_the_most_cautious_verdict_first() {
    let mut engine = Engine::new(settings());
    engine.observe(&key("redis-0"), "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    engine.observe(&key("redis-1"), "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    assert_eq!(only(&mut engine, at(0)).verdict, Verdict::Ready);

    engine.observe(&key("redis-2"), "redis", sample(0, 10, 0, HOUR), at(0));
    let report = only(&mut engine, at(0));
    assert_eq!(report.verdict, Verdict::InsufficientData);
    assert!(
        report.reason.starts_with("1 of 3 replicas"),
        "{}",
        report.reason
    );

    engine.observe(
        &key("redis-1"),
        "redis",
        sample(1, 10, 0, 30 * HOUR + 30),
        at(30),
    );
    assert_eq!(only(&mut engine, at(30)).verdict, Verdict::Plaintext);

    engine.unavailable(&key("redis-0"), "redis", Unavailable::Offline, at(30));
    let report = only(&mut engine, at(30));
    assert_eq!(report.verdict, Verdict::Unknown);
    assert_eq!(report.replicas.len(), 3);
    assert_eq!(report.replicas_reporting, 2);
}

#[test]
fn mtls_evidence_is_summed_across_replicas() {
    let mut s = settings();
    s.min_mtls_connections = 15;
    let mut engine = Engine::new(s);
    engine.observe(&key("redis-0"), "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    assert_eq!(only(&mut engine, at(0)).verdict, Verdict::InsufficientData);

    engine.observe(&key("redis-1"), "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    let report = only(&mut engine, at(0));
    assert_eq!(report.verdict, Verdict::Ready, "{}", report.reason);
    assert_eq!(report.replicas[0].status.verdict, Verdict::InsufficientData);
}

#[test]
fn possible_open_plaintext_is_bounded_by_active_connections() {
    let mut engine = Engine::new(settings());
    let k = key("redis-0");
    let mut s = sample(0, 10, 0, 30 * HOUR);
    engine.observe(&k, "redis", s, at(0));

    s = sample(5, 10, 0, 30 * HOUR + 30);
    s.counters.active = 3;
    engine.observe(&k, "redis", s, at(30));
    let report = only(&mut engine, at(30));
    assert_eq!(report.possible_open_plaintext, 3);
    assert!(
        report.reason.contains("up to 3 plaintext connection(s)"),
        "{}",
        report.reason
    );

    s = sample(6, 10, 0, 30 * HOUR + 60);
    s.counters.active = 9;
    engine.observe(&k, "redis", s, at(60));
    assert_eq!(only(&mut engine, at(60)).possible_open_plaintext, 6);

    s = sample(6, 11, 0, 30 * HOUR + 90);
    s.counters.active = 0;
    engine.observe(&k, "redis", s, at(90));
    assert_eq!(only(&mut engine, at(90)).possible_open_plaintext, 0);

    s = sample(7, 11, 0, 30 * HOUR + 120);
    s.counters.active = 4;
    engine.observe(&k, "redis", s, at(120));
    assert_eq!(only(&mut engine, at(120)).possible_open_plaintext, 1);
}

#[test]
fn a_gone_replica_keeps_its_plaintext_and_its_counts_in_the_service() {
    let mut engine = Engine::new(settings());
    let listed: HashSet<String> = ["default".to_string()].into();
    engine.observe(&key("redis-0"), "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    engine.observe(&key("redis-1"), "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    engine.observe(
        &key("redis-1"),
        "redis",
        sample(2, 10, 0, 30 * HOUR + 30),
        at(30),
    );
    engine.sweep(&listed, at(30));

    engine.observe(
        &key("redis-0"),
        "redis",
        sample(0, 11, 0, 30 * HOUR + 100),
        at(100),
    );
    engine.sweep(&listed, at(100));
    assert_eq!(
        only(&mut engine, at(100)).replicas.len(),
        2,
        "one missed listing is not enough"
    );

    engine.observe(
        &key("redis-0"),
        "redis",
        sample(0, 11, 0, 30 * HOUR + 130),
        at(130),
    );
    engine.sweep(&listed, at(130));
    let report = only(&mut engine, at(130));
    assert_eq!(
        report.replicas.len(),
        1,
        "redis-1 missed two listings over 100 s"
    );
    assert_eq!(report.verdict, Verdict::Plaintext, "{}", report.reason);
    assert!(report.reason.contains("gone"), "{}", report.reason);
    assert_eq!(report.totals.connections, 23);
    assert_eq!(report.totals.plaintext, 2);
}

#[test]
fn a_forgotten_replica_leaves_what_it_could_not_tell_apart_as_plaintext() {
    let mut engine = Engine::new(settings());
    let listed: HashSet<String> = ["default".to_string()].into();
    engine.observe(&key("redis-0"), "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    let mut open = sample(1, 10, 0, 30 * HOUR);
    open.counters.active = 1;
    engine.observe(&key("redis-1"), "redis", open, at(0));

    for secs in [30, 100, 130] {
        engine.observe(
            &key("redis-0"),
            "redis",
            sample(0, 11, 0, 30 * HOUR + secs),
            at(secs),
        );
        engine.sweep(&listed, at(secs));
    }
    let report = only(&mut engine, at(130));
    assert_eq!(report.replicas.len(), 1);
    assert_eq!(report.verdict, Verdict::Plaintext, "{}", report.reason);
    assert_eq!(report.totals.plaintext, 1);
}

#[test]
fn a_long_cycle_never_forgets_what_it_listed_itself() {
    let mut engine = Engine::new(settings());
    let listed: HashSet<String> = ["default".to_string()].into();
    engine.observe(&key("redis-0"), "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    engine.sweep(&listed, at(600));

    assert_eq!(only(&mut engine, at(600)).replicas.len(), 1);
}

#[test]
fn sweeping_spares_meshes_whose_listing_failed() {
    let mut engine = Engine::new(settings());
    engine.observe(&key("redis-0"), "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    engine.sweep(&HashSet::new(), at(1000));

    let report = only(&mut engine, at(1000));
    assert_eq!(report.verdict, Verdict::Unknown);
}

#[test]
fn a_mesh_without_mtls_says_so() {
    let mut engine = Engine::new(settings());
    let mut s = sample(4, 0, 0, 30 * HOUR);
    s.mtls_enabled = false;
    engine.observe(&key("redis-0"), "redis", s, at(0));

    let report = only(&mut engine, at(0));
    assert_eq!(report.verdict, Verdict::Plaintext);
    assert!(
        report.reason.contains("mTLS looks disabled"),
        "{}",
        report.reason
    );
}

#[test]
fn changes_are_reported_once_each() {
    let mut engine = Engine::new(settings());
    let k = key("redis-0");
    engine.observe(&k, "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    let reports = engine.report(at(0));
    let changes = engine.changes(&reports);
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].from, changes[0].to), (None, Verdict::Ready));
    assert!(engine.changes(&reports).is_empty());

    engine.observe(&k, "redis", sample(1, 10, 0, 30 * HOUR + 30), at(30));
    let reports = engine.report(at(30));
    let changes = engine.changes(&reports);
    assert_eq!(
        (changes[0].from, changes[0].to),
        (Some(Verdict::Ready), Verdict::Plaintext)
    );
}

#[test]
fn services_are_keyed_by_port_too() {
    let mut engine = Engine::new(settings());
    let mut admin = key("redis-0");
    admin.port = 6380;
    engine.observe(&key("redis-0"), "redis", sample(0, 10, 0, 30 * HOUR), at(0));
    engine.observe(&admin, "redis", sample(1, 10, 0, 30 * HOUR), at(0));

    let reports = engine.report(at(0));
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].verdict, Verdict::Ready);
    assert_eq!(reports[1].verdict, Verdict::Plaintext);
}
