//! The `/stats` parser against real and hand-written dumps, malformed input, and
//! generated bodies.

use std::collections::BTreeMap;

use proptest::prelude::*;
use strictly::envoy::stats::{StatQuery, StatReader, read};

/// Reads `names` out of `body` and returns each name with what was found for it.
fn values<'a>(body: &[u8], names: &[&'a str]) -> Vec<(&'a str, Option<u64>)> {
    let query = StatQuery::new(names);
    let found = read(body, &query);
    names
        .iter()
        .map(|&name| (name, query.slot(name).and_then(|s| found.get(s))))
        .collect()
}

/// Reads a single name.
fn value(body: &[u8], name: &str) -> Option<u64> {
    values(body, &[name])[0].1
}

fn fixture(path: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

#[test]
fn reads_a_legacy_named_inbound() {
    let body = fixture("stats-permissive.txt");
    let names = [
        "listener.10.42.0.13_6379.downstream_cx_total",
        "listener.10.42.0.13_6379.downstream_cx_active",
        "listener.10.42.0.13_6379.ssl.handshake",
        "listener.10.42.0.13_6379.ssl.connection_error",
        "listener.10.42.0.13_6379.ssl.fail_verify_no_cert",
        "listener.10.42.0.13_6379.ssl.fail_verify_cert_hash",
        "cluster.localhost_6379.upstream_cx_total",
        "inbound_10_42_0_13_6379.rbac.allowed",
        "inbound_10_42_0_13_6379.rbac.denied",
        "server.uptime",
    ];

    assert_eq!(
        values(&body, &names),
        [
            (names[0], Some(1487)),
            (names[1], Some(6)),
            (names[2], Some(1209)),
            (names[3], Some(2)),
            (names[4], Some(0)),
            (names[5], None),
            (names[6], Some(1487)),
            (names[7], Some(1204)),
            (names[8], Some(3)),
            (names[9], Some(8803)),
        ]
    );
}

#[test]
fn reads_a_unified_named_inbound() {
    let body = fixture("stats-permissive-new-naming.txt");
    let names = [
        "listener.self_inbound_dp_redis.downstream_cx_total",
        "listener.self_inbound_dp_redis.downstream_cx_active",
        "listener.self_inbound_dp_redis.ssl.handshake",
        "listener.self_inbound_dp_redis.ssl.connection_error",
        "cluster.self_inbound_dp_redis.upstream_cx_total",
        "self_inbound_dp_redis.rbac.allowed",
        "server.uptime",
    ];

    assert_eq!(
        values(&body, &names),
        [
            (names[0], Some(912)),
            (names[1], Some(4)),
            (names[2], Some(830)),
            (names[3], None),
            (names[4], Some(912)),
            (names[5], Some(830)),
            (names[6], Some(5412)),
        ]
    );
}

#[test]
fn tells_the_inbound_listener_from_worker_and_outbound_lines_in_a_real_capture() {
    let body = fixture("kuma-real/gui-capture-redis-kuma-demo.stats.txt");
    let names = [
        "listener.10.1.254.70_6379.downstream_cx_total",
        "listener.10.1.254.70_6379.worker_0.downstream_cx_total",
        "listener.10.152.183.101_6379.downstream_cx_total",
        "cluster.localhost_6379.upstream_cx_total",
        "tls_inspector.tls_not_found",
        "server.uptime",
        // No mTLS in that mesh: no TLS or RBAC counters on the inbound.
        "listener.10.1.254.70_6379.ssl.handshake",
        "inbound_10_1_254_70_6379.rbac.allowed",
        // Histograms, one empty and one with values.
        "listener.10.1.254.70_6379.connections_accepted_per_socket_event",
        "listener.10.1.254.70_6379.downstream_cx_length_ms",
    ];

    assert_eq!(
        values(&body, &names),
        [
            (names[0], Some(4953)),
            (names[1], Some(2686)),
            (names[2], Some(0)),
            (names[3], Some(4953)),
            (names[4], Some(24013)),
            (names[5], Some(101206)),
            (names[6], None),
            (names[7], None),
            (names[8], None),
            (names[9], None),
        ]
    );
}

#[test]
fn reads_a_real_usedonly_dump() {
    let body = fixture("stats-600-clusters-usedonly.txt");
    let names = [
        "cluster_manager.active_clusters",
        "cluster.svc-599_ns-4_svc_8049.membership_total",
        "thread_local_cluster_manager.worker_0.clusters_inflated",
        "server.uptime",
    ];

    assert_eq!(
        values(&body, &names),
        [
            (names[0], Some(600)),
            (names[1], Some(1)),
            (names[2], Some(600)),
            (names[3], Some(0)),
        ]
    );
}

#[test]
fn skips_histograms_and_text_readouts_next_to_wanted_names() {
    let body = b"a.version_text: \"12\"\n\
        a.total: 7\n\
        a.length_ms: P0(nan,1) P25(nan,2) P100(nan,12)\n\
        a.empty_ms: No recorded values\n\
        b.total: 9\n";

    assert_eq!(value(body, "a.total"), Some(7));
    assert_eq!(value(body, "b.total"), Some(9));
    assert_eq!(value(body, "a.version_text"), None);
    assert_eq!(value(body, "a.length_ms"), None);
    assert_eq!(value(body, "a.empty_ms"), None);
}

#[test]
fn reads_crlf_line_endings() {
    let body = b"a: 1\r\nb: 2\r\n";
    assert_eq!(values(body, &["a", "b"]), [("a", Some(1)), ("b", Some(2))]);
}

#[test]
fn survives_junk_and_bytes_that_are_not_utf8() {
    let body = b"\xff\xfe garbage\n\
        no separator here 12\n\
        :\n\
        \n\
        a:5\n\
        a\xff: 3\n\
        \xc3(: 4\n\
        a: 5\n";

    assert_eq!(value(body, "a"), Some(5));
    assert_eq!(value(body, "no separator here"), None);
}

#[test]
fn ignores_a_last_line_cut_before_its_newline() {
    assert_eq!(value(b"a: 1\nb: 14", "b"), None);
    assert_eq!(value(b"a: 1\nb: 14", "a"), Some(1));
    assert_eq!(value(b"b: 14", "b"), None);
}

#[test]
fn matches_whole_names_only() {
    let body = b"a.total: 1\na.total_extra: 2\nx.a.total: 3\n";
    assert_eq!(
        values(body, &["a.total", "a.total_extra", "a.tot", "a.total_"]),
        [
            ("a.total", Some(1)),
            ("a.total_extra", Some(2)),
            ("a.tot", None),
            ("a.total_", None)
        ]
    );
}

#[test]
fn allows_spaces_around_a_value() {
    let body = b"a: 5   \nb:  6\t\r\nc: 7 x\n";
    assert_eq!(
        values(body, &["a", "b", "c"]),
        [("a", Some(5)), ("b", Some(6)), ("c", None)]
    );
}

#[test]
fn reads_values_that_are_not_u64_as_absent() {
    let body = b"neg: -1\n\
        float: 1.5\n\
        exp: 1e3\n\
        plus: +3\n\
        text: \"3\"\n\
        empty: \n\
        max: 18446744073709551615\n\
        over: 18446744073709551616\n";
    let names = [
        "neg", "float", "exp", "plus", "text", "empty", "max", "over",
    ];

    let found: Vec<_> = values(body, &names).into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        found,
        [None, None, None, None, None, None, Some(u64::MAX), None]
    );
}

#[test]
fn splits_at_the_first_colon_space() {
    let body = b"cluster.x.ssl.certificate.spiffe://mesh/redis.expiration: 17\n\
        a: b: 3\n";

    assert_eq!(
        value(
            body,
            "cluster.x.ssl.certificate.spiffe://mesh/redis.expiration"
        ),
        Some(17)
    );
    // The name is `a` with the value `b: 3`, which is no integer.
    assert_eq!(value(body, "a"), None);
    assert_eq!(value(body, "a: b"), None);
}

#[test]
fn takes_the_first_integer_of_a_repeated_name() {
    let body = b"a: P0(nan,1) P100(nan,2)\n\
        a: 99999999999999999999\n\
        a: 4\n\
        a: 5\n";
    assert_eq!(value(body, "a"), Some(4));
}

#[test]
fn handles_empty_queries_and_bodies() {
    let empty = StatQuery::new(Vec::<String>::new());
    assert!(empty.is_empty());
    assert_eq!(read(b"a: 1\n", &empty).get(0), None);

    assert_eq!(value(b"", "a"), None);
    assert_eq!(value(b"\n\n", ""), None);
}

#[test]
fn gives_duplicate_query_names_one_slot() {
    let query = StatQuery::new(["a", "b", "a"]);
    assert_eq!(query.len(), 2);
    assert_eq!(query.slot("a"), Some(0));
    assert_eq!(query.slot("b"), Some(1));
    assert_eq!(query.slot("c"), None);

    let found = read(b"b: 2\na: 1\n", &query);
    assert_eq!(
        (found.get(0), found.get(1), found.get(2)),
        (Some(1), Some(2), None)
    );
}

/// A dump of several megabytes, built from the 600-cluster fixture with every copy
/// renamed, so that nothing but the lines appended at the end carries a wanted name.
#[test]
fn finds_names_at_the_end_of_a_multi_megabyte_dump() {
    let fixture = fixture("stats-600-clusters-usedonly.txt");
    let mut body = Vec::new();
    for copy in 0..20 {
        for line in fixture.split_inclusive(|&b| b == b'\n') {
            body.extend_from_slice(format!("copy{copy}.").as_bytes());
            body.extend_from_slice(line);
        }
    }
    body.extend_from_slice(
        b"listener.10.42.0.13_6379.worker_0.downstream_cx_total: 1\n\
        listener.10.42.0.130_6379.downstream_cx_total: 2\n\
        listener.10.42.0.13_6379.downstream_cx_total: 3000000000000\n\
        cluster.localhost_6379.upstream_cx_total: 42\n",
    );
    assert!(body.len() > 4_000_000, "{} bytes", body.len());

    let names = [
        "listener.10.42.0.13_6379.downstream_cx_total",
        "cluster.localhost_6379.upstream_cx_total",
        "cluster_manager.active_clusters",
        "copy19.cluster_manager.active_clusters",
    ];
    assert_eq!(
        values(&body, &names),
        [
            (names[0], Some(3_000_000_000_000)),
            (names[1], Some(42)),
            (names[2], None),
            (names[3], Some(600)),
        ]
    );
}

/// What a line holds for a name, read the plain way: split at the first `": "`, trim,
/// parse. The parser must agree with this on any input.
fn plain_read(body: &[u8], name: &str) -> Option<u64> {
    let complete = &body[..body.iter().rposition(|&b| b == b'\n')?];
    complete.split(|&b| b == b'\n').find_map(|line| {
        let at = line.windows(2).position(|w| w == b": ")?;
        if &line[..at] != name.as_bytes() {
            return None;
        }
        let value = std::str::from_utf8(&line[at + 2..]).ok()?;
        let value = value.trim_end_matches([' ', '\t', '\r']);
        let value = value.trim_start_matches([' ', '\t']);
        if value.bytes().all(|b| b.is_ascii_digit()) {
            value.parse().ok()
        } else {
            None
        }
    })
}

/// Lines built from the pieces a `/stats` line is made of, with stray bytes between
/// them, so that near-misses of the probed names are common.
fn stats_like_body() -> impl Strategy<Value = Vec<u8>> {
    body_of(vec!["a", "ab", ":", " ", ": ", "\r", "\u{e9}"])
}

/// The same with the long pieces real names are made of, which a reader looks
/// for by searching rather than line by line.
fn sidecar_like_body() -> impl Strategy<Value = Vec<u8>> {
    body_of(vec![
        "listener.10.42.0.13_6379",
        "listener.10.42.0.1",
        "cluster.localhost_6379",
        ".x",
        "x",
        ":",
        " ",
        ": ",
        "\n",
        "\u{e9}",
    ])
}

/// Lines whose names are made of up to three `pieces`.
fn body_of(pieces: Vec<&'static str>) -> impl Strategy<Value = Vec<u8>> {
    let name = prop::collection::vec(prop::sample::select(pieces), 0..3);
    let separator = prop::sample::select(vec![": ", ":", ": : ", ":\t", ":  ", ": \t"]);
    let value = prop::sample::select(vec![
        "7",
        "07",
        " 7",
        "7 ",
        "7\t\r",
        "-7",
        "7.5",
        "x7",
        "a: 7",
        "18446744073709551615",
        "18446744073709551616",
        "\"7\"",
        "No recorded values",
        "",
    ]);
    let end = prop::sample::select(vec!["\n", "\r\n", "\n", ""]);
    let line = (name, separator, value, end)
        .prop_map(|(name, sep, value, end)| format!("{}{sep}{value}{end}", name.concat()));
    let stray = prop::collection::vec(any::<u8>(), 0..3);

    prop::collection::vec((line, stray), 0..16).prop_map(|parts| {
        let mut body = Vec::new();
        for (line, stray) in parts {
            body.extend_from_slice(line.as_bytes());
            body.extend_from_slice(&stray);
        }
        body
    })
}

const PROBED: [&str; 8] = ["a", "ab", "a:", "a ", "a: a", "", "ab: 7", "a\r"];

/// Names long enough for the reader to search for their beginnings.
const PROBED_LONG: [&str; 6] = [
    "listener.10.42.0.13_6379",
    "listener.10.42.0.13_6379.x",
    "listener.10.42.0.13_6379x",
    "cluster.localhost_6379",
    "cluster.localhost_6379.x",
    "cluster.localhost_6379:",
];

/// A stat name as Envoy could print it: never holding `": "`.
fn stat_name() -> impl Strategy<Value = String> {
    "[a-z0-9_./:-]{1,40}"
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let query = StatQuery::new(PROBED);
        let _ = read(&body, &query);
    }

    #[test]
    fn returns_exactly_the_values_written(
        stats in prop::collection::btree_map(stat_name(), any::<u64>(), 0..40),
        absent in prop::collection::vec(stat_name(), 0..5),
        crlf in any::<bool>(),
    ) {
        let end = if crlf { "\r\n" } else { "\n" };
        let mut body = String::from("control_plane.identifier: \"cp-1\"\n");
        for (name, value) in &stats {
            body.push_str(&format!("{name}: {value}{end}"));
        }
        for name in stats.keys() {
            body.push_str(&format!("{name}.histogram: P0(nan,1) P100(nan,3){end}"));
        }

        let wanted: Vec<&String> = stats.keys().chain(&absent).collect();
        let query = StatQuery::new(&wanted);
        let found = read(body.as_bytes(), &query);
        for name in wanted {
            let slot = query.slot(name).expect("wanted names are in the query");
            let expected: Option<&u64> = stats.get(name);
            prop_assert_eq!(found.get(slot), expected.copied(), "name {:?}", name);
        }
    }
}

proptest! {
    // Many cases: the near-misses that matter need several pieces in a row.
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn agrees_with_a_plain_first_colon_split(body in stats_like_body()) {
        agrees_with_plain_read(&body, &PROBED)?;
    }

    #[test]
    fn searching_agrees_with_a_plain_first_colon_split(body in sidecar_like_body()) {
        agrees_with_plain_read(&body, &PROBED_LONG)?;
    }
}

fn agrees_with_plain_read(body: &[u8], names: &[&str]) -> Result<(), TestCaseError> {
    let query = StatQuery::new(names);
    let found = read(body, &query);
    for &name in names {
        let slot = query.slot(name).expect("probed names are in the query");
        prop_assert_eq!(found.get(slot), plain_read(body, name), "name {:?}", name);
    }
    Ok(())
}

#[test]
fn plain_read_is_a_fair_reference() {
    let body = b"a: 1\nb: x\nc:  2 \r\nd: 3";
    let expected = BTreeMap::from([("a", Some(1)), ("b", None), ("c", Some(2)), ("d", None)]);
    for (name, value) in expected {
        assert_eq!(plain_read(body, name), value, "{name}");
    }
}

proptest! {
    /// A body read piece by piece, split anywhere, gives what the whole gives.
    #[test]
    fn reads_the_same_in_pieces(
        body in prop_oneof![stats_like_body(), sidecar_like_body()],
        long in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let query = if long { StatQuery::new(PROBED_LONG) } else { StatQuery::new(PROBED) };
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
        cuts.sort_unstable();

        let mut reader = StatReader::new(&query);
        let mut start = 0;
        for cut in cuts.into_iter().chain([body.len()]) {
            reader.feed(&body[start..cut]);
            start = cut;
        }
        prop_assert_eq!(reader.finish(), read(&body, &query));
    }
}

#[test]
fn reads_a_real_dump_in_pieces_of_every_size() {
    let body = fixture("stats-permissive.txt");
    let names = [
        "listener.10.42.0.13_6379.downstream_cx_total",
        "server.uptime",
    ];
    let query = StatQuery::new(names);
    let whole = read(&body, &query);
    for size in [1, 2, 7, 64, 4096] {
        let mut reader = StatReader::new(&query);
        for piece in body.chunks(size) {
            reader.feed(piece);
        }
        assert_eq!(reader.finish(), whole, "pieces of {size}");
    }
}
