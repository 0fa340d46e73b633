//! strictly end to end on real parts: a real Envoy 1.40 configured like a Kuma
//! sidecar's inbound, a real workload behind it, real plaintext and mTLS
//! clients, the simulated control plane relaying that Envoy's `/stats` as Kuma
//! does, strictly running in this process, and a real Prometheus scraping it.
//!
//! Each test is one scenario on one inbound. strictly polls every 300 ms and
//! judges over a 3 s window, so `ready` is reached inside a test; everything
//! the tests assert comes from strictly's own `/api/v1/inbounds` and
//! `/metrics`, or from Prometheus' query API.
//!
//! Needs Envoy, redis, openssl, python3, prometheus and promtool:
//! `scripts/install-test-deps.sh`.

mod support;

use std::time::Duration;

use serde_json::Value;
use strictly::kuma::client::{ClientConfig, KumaClient, MAX_BODY_BYTES};
use strictly::naming::{self, InboundStats, Protocol};
use strictly::sim::{MtlsMode, Reply, SimControlPlane, SimDataplane, SimInbound, SimMesh, World};
use support::clients::{Connection, Reply as Answered};
use support::daemon::{Running, sample};
use support::inbound::{Inbound, InboundKind};
use support::prometheus::{Point, Prometheus, promtool_check_metrics};
use support::stats::Stats;
use support::traffic::MeshTraffic;

const MESH: &str = "default";
const DATAPLANE: &str = "redis-0.kuma-demo";

/// The verdict window: short enough to wait out, long enough for several polls.
const WINDOW: &str = "3s";

/// Short polls, a window a test can wait out, and one mTLS connection as
/// enough evidence.
const FLAGS: [&str; 8] = [
    "--poll-interval",
    "300ms",
    "--window",
    WINDOW,
    "--min-mtls-connections",
    "1",
    "--request-timeout",
    "2s",
];

/// How long a verdict that needs the window to pass may take to show: the
/// window, a few polls, and room for a loaded machine.
const VERDICT_WAIT: Duration = Duration::from_secs(15);

/// How long counts may take to show: a poll or two.
const COUNT_WAIT: Duration = Duration::from_secs(10);

/// The four connection counts strictly reports for an inbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    connections: u64,
    mtls: u64,
    plaintext: u64,
    failed: u64,
}

impl Counts {
    fn of(inbound: &Value) -> Counts {
        let count = |field: &str| inbound[field].as_u64().unwrap_or(u64::MAX);
        Counts {
            connections: count("connections"),
            mtls: count("mtls_connections"),
            plaintext: count("plaintext_connections"),
            failed: count("tls_failed_connections"),
        }
    }

    fn mtls_only(mtls: u64) -> Counts {
        Counts {
            connections: mtls,
            mtls,
            plaintext: 0,
            failed: 0,
        }
    }
}

/// One real inbound watched by strictly through the simulated control plane.
struct Pipeline {
    inbound: Inbound,
    cp: SimControlPlane,
    daemon: Running,
    service: &'static str,
}

impl Pipeline {
    async fn start(kind: InboundKind) -> Pipeline {
        let inbound = blocking(|| Inbound::start(kind)).expect("the inbound starts");
        let cp = SimControlPlane::start(world(&inbound))
            .await
            .expect("the simulated control plane binds");
        assert_strictly_reads_the_harness_names(&cp, &inbound).await;

        let daemon = Running::start(&cp.url(), &FLAGS).await;
        Pipeline {
            service: service_of(kind),
            inbound,
            cp,
            daemon,
        }
    }

    /// Opens connections one at a time; each is counted by Envoy before the next.
    fn open(&self, kinds: &[Connection]) -> Vec<Answered> {
        kinds
            .iter()
            .map(|&kind| {
                blocking(|| self.inbound.open(kind))
                    .unwrap_or_else(|error| panic!("{kind:?} could not be opened: {error:#}"))
            })
            .collect()
    }

    fn settle(&self) {
        blocking(|| self.inbound.settle()).expect("the inbound's connections close");
    }

    /// The inbound as strictly reports it once it satisfies `wanted`.
    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        self.daemon
            .wait_for_inbound(self.service, timeout, what, wanted)
            .await
    }

    async fn wait_for_verdict(&self, verdict: &str) -> Value {
        self.wait_for(&format!("verdict {verdict}"), VERDICT_WAIT, |i| {
            i["verdict"] == verdict
        })
        .await
    }

    /// Waits until strictly reports exactly `expected`, then checks that two
    /// more polls change nothing, on the API and on `/metrics` alike.
    async fn expect_counts(&self, expected: Counts) -> Value {
        let what = format!("counts {expected:?}");
        self.wait_for(&what, COUNT_WAIT, |i| Counts::of(i) == expected)
            .await;
        self.daemon.cycles(2).await;

        let inbound = self.daemon.inbound(self.service).await.expect("reported");
        assert_eq!(Counts::of(&inbound), expected, "{inbound:#}");
        assert_eq!(self.exported_counts().await, expected);
        inbound
    }

    async fn exported_counts(&self) -> Counts {
        let metrics = self.daemon.metrics().await;
        let value = |metric: &str| {
            let series = self.series(metric);
            sample(&metrics, &series).unwrap_or_else(|| panic!("no {series}")) as u64
        };
        Counts {
            connections: value("strictly_connections_total"),
            mtls: value("strictly_mtls_connections_total"),
            plaintext: value("strictly_plaintext_connections_total"),
            failed: value("strictly_tls_failed_connections_total"),
        }
    }

    /// A series of this inbound, labels as strictly writes them.
    fn series(&self, metric: &str) -> String {
        format!(
            "{metric}{{mesh=\"{MESH}\",kuma_service=\"{}\",port=\"{}\"}}",
            self.service, self.inbound.listener_port
        )
    }

    /// Mesh traffic until `ready` shows; returns the traffic, still running.
    async fn ready_under_mesh_traffic(&self) -> MeshTraffic {
        let traffic = MeshTraffic::start(self.inbound.client());
        let ready = self.wait_for_verdict("ready").await;
        assert_eq!(ready["plaintext_connections"], 0, "{ready:#}");
        traffic
    }

    /// Stops the traffic and checks strictly counted each of its connections.
    async fn stop_and_count(&self, traffic: MeshTraffic, before: Counts) -> Counts {
        let made = blocking(|| traffic.stop()).expect("every mesh connection was answered");
        self.settle();
        let expected = Counts {
            connections: before.connections + made,
            mtls: before.mtls + made,
            ..before
        };
        self.expect_counts(expected).await;
        expected
    }

    /// Envoy comes back as a new process with a new admin address; the control
    /// plane sees a new xDS stream from it and relays its stats from then on.
    fn sidecar_restarted(&self) {
        let admin_url = self.inbound.admin_url();
        self.cp.handle().update(|w| {
            let dataplane = w.dataplane_mut(MESH, DATAPLANE).expect("the dataplane");
            dataplane.restart();
            dataplane.stats_reply = Reply::proxy(&admin_url);
        });
    }

    async fn shutdown(self) {
        self.daemon.stop().await;
        self.cp.shutdown().await;
    }
}

/// The harness is synchronous; the tests run on a multi-threaded runtime, where
/// the daemon and the control plane go on while this thread blocks.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

fn service_of(kind: InboundKind) -> &'static str {
    match kind {
        InboundKind::HttpPermissive => "web",
        _ => "redis",
    }
}

/// The control plane's view of the real inbound, as a universal dataplane
/// describes it: address 127.0.0.1, inbound port = Envoy's listener port,
/// `servicePort` = the workload's port. The unified-naming inbound advertises
/// the feature in a mesh with `meshServices.mode: Exclusive`, and its port
/// name `redis` is the section of its stat names.
fn world(inbound: &Inbound) -> World {
    let unified = inbound.kind == InboundKind::TcpPermissiveUnified;
    let mut mesh = SimMesh::permissive(MESH);
    if unified {
        mesh = mesh.exclusive_mesh_services();
    }

    let (protocol, port_name) = match inbound.kind {
        InboundKind::HttpPermissive => ("http", "http"),
        _ => ("tcp", "redis"),
    };
    let port = SimInbound::new(inbound.listener_port, service_of(inbound.kind), protocol)
        .named(port_name)
        .service_port(inbound.app_port);
    let mut dataplane = SimDataplane::sidecar(MESH, DATAPLANE, "127.0.0.1").inbound(port);
    if unified {
        dataplane = dataplane.unified_naming();
    }
    dataplane.stats_reply = Reply::proxy(&inbound.admin_url());

    let mut world = World::new();
    world.add_mesh(mesh).add_dataplane(dataplane);
    world
}

/// strictly resolves, from the control plane's answers, exactly the names the
/// real Envoy writes; and they are there in the Envoy's full `/stats`.
async fn assert_strictly_reads_the_harness_names(cp: &SimControlPlane, inbound: &Inbound) {
    let client = kuma_client(&cp.url());
    let resolved = resolved_names(&client).await;
    let names = &inbound.names;

    assert_eq!(
        resolved.downstream_cx_total,
        names.listener("downstream_cx_total")
    );
    assert_eq!(
        resolved.downstream_cx_active,
        names.listener("downstream_cx_active")
    );
    assert_eq!(resolved.ssl_handshake, names.listener("ssl.handshake"));
    assert_eq!(resolved.ssl_failures, names.ssl_failures());
    assert_eq!(
        resolved.upstream_cx_total,
        names.cluster("upstream_cx_total")
    );
    let full = relayed_stats(cp, "?usedonly=false").await;
    let http = inbound.kind == InboundKind::HttpPermissive;
    if http {
        // The RBAC sits inside the HTTP connection manager and counts requests;
        // there is no network RBAC, so what strictly would cross-check reads 0.
        assert_eq!(resolved.protocol, Protocol::Http);
        assert!(!full.contains(&resolved.rbac_allowed));
    } else {
        assert_eq!(resolved.protocol, Protocol::Tcp);
        assert_eq!(resolved.rbac_allowed, names.rbac("allowed"));
        assert_eq!(resolved.rbac_denied, names.rbac("denied"));
    }

    let read = resolved.names().filter(|n| !(http && n.contains(".rbac.")));
    for name in read {
        assert!(
            full.contains(name),
            "{name} is not in the real Envoy's stats"
        );
    }
}

fn kuma_client(url: &str) -> KumaClient {
    KumaClient::new(ClientConfig {
        base_url: url.to_string(),
        token_file: None,
        ca_file: None,
        request_timeout: Duration::from_secs(5),
        concurrency: 2,
        max_body_bytes: MAX_BODY_BYTES,
    })
    .expect("a client for the simulated control plane")
}

/// The names strictly's own code resolves for the one inbound listed.
async fn resolved_names(client: &KumaClient) -> InboundStats {
    let meshes = client.meshes().await.expect("meshes");
    let mesh = meshes.iter().find(|m| m.name == MESH).expect("the mesh");
    let dataplanes = client.dataplanes(MESH).await.expect("dataplanes");
    let dataplane = dataplanes.first().expect("one dataplane");
    let inbound = dataplane
        .dataplane
        .networking
        .inbound
        .first()
        .expect("one inbound");
    naming::inbound_stats(dataplane, inbound, naming::naming_of(dataplane, mesh))
}

/// The real Envoy's stats as the control plane relays them.
async fn relayed_stats(cp: &SimControlPlane, query: &str) -> Stats {
    let url = format!(
        "{}/meshes/{MESH}/dataplanes/{DATAPLANE}/stats{query}",
        cp.url()
    );
    let response = reqwest::get(url).await.expect("the control plane answers");
    assert_eq!(response.status(), 200);
    Stats::parse(&response.text().await.expect("stats text"))
}

/// The values a series took, each run of equal values once.
fn changes(points: &[Point]) -> Vec<f64> {
    let mut values: Vec<f64> = points.iter().map(|(_, v)| *v).collect();
    values.dedup();
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_stats_are_the_real_envoys_and_usedonly_leaves_out_unwritten_ones() {
    let p = Pipeline::start(InboundKind::TcpPermissive).await;
    let cert_hash = p.inbound.names.listener("ssl.fail_verify_cert_hash");
    let total = p.inbound.names.listener("downstream_cx_total");
    p.open(&[Connection::MeshPing]);

    let used = relayed_stats(&p.cp, "").await;
    let full = relayed_stats(&p.cp, "?usedonly=false").await;
    let direct = blocking(|| p.inbound.stats()).expect("Envoy's own stats");

    assert!(
        full.contains(&cert_hash),
        "{cert_hash} is in the full stats"
    );
    assert!(!used.contains(&cert_hash), "{cert_hash} was never written");
    assert_eq!(
        (used.get(&total), full.get(&total), direct.get(&total)),
        (1, 1, 1)
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_mtls_becomes_ready_failed_handshakes_do_not_count_and_one_plaintext_does() {
    let p = Pipeline::start(InboundKind::TcpPermissive).await;
    let prometheus = blocking(|| Prometheus::start(p.daemon.address())).expect("Prometheus starts");
    let safe = p.series("strictly_safe_to_strict");
    let plaintext_total = p.series("strictly_plaintext_connections_total");
    blocking(|| prometheus.wait_for(&safe, |v| v == 0.0)).expect("scraped before any traffic");

    // Mesh clients only: the verdict turns ready once the window has passed.
    let traffic = p.ready_under_mesh_traffic().await;
    blocking(|| prometheus.wait_for(&safe, |v| v == 1.0)).expect("Prometheus sees ready");

    // Handshakes Envoy refuses are already broken; Strict changes nothing.
    let refused = [
        Connection::MeshWithoutCert,
        Connection::MeshUntrustedCa,
        Connection::MeshWrongSan,
    ];
    for kind in refused {
        let answered = blocking(|| p.inbound.client().open(kind)).expect("connects");
        assert!(
            matches!(answered, Answered::NoAnswer(_)),
            "{kind:?}: {answered:?}"
        );
    }
    let failed = p
        .wait_for("3 failed handshakes", COUNT_WAIT, |i| {
            i["tls_failed_connections"] == 3
        })
        .await;
    assert_eq!(failed["plaintext_connections"], 0, "{failed:#}");
    assert_eq!(failed["verdict"], "ready", "{failed:#}");

    let before = Counts {
        connections: 3,
        failed: 3,
        ..Counts::mtls_only(0)
    };
    let counted = p.stop_and_count(traffic, before).await;
    assert_eq!(counted.connections, counted.mtls + 3);

    // One plaintext client among them.
    let answered = p.open(&[Connection::PlaintextPing]);
    assert_eq!(answered, [Answered::Answer("PONG".into())]);
    let after = p
        .expect_counts(Counts {
            connections: counted.connections + 1,
            plaintext: 1,
            ..counted
        })
        .await;
    assert_eq!(after["verdict"], "plaintext", "{after:#}");
    let metrics = p.daemon.metrics().await;
    assert_eq!(sample(&metrics, &safe), Some(0.0));
    let verdict = p
        .series("strictly_verdict")
        .replace('}', ",verdict=\"plaintext\"}");
    assert_eq!(sample(&metrics, &verdict), Some(1.0));

    // What Prometheus stored: 0, then 1 under mesh traffic only, then 0 again;
    // and exactly one plaintext connection.
    blocking(|| prometheus.wait_for(&plaintext_total, |v| v == 1.0)).expect("scraped");
    blocking(|| prometheus.wait_for(&safe, |v| v == 0.0)).expect("scraped");
    let span = Duration::from_secs(120);
    let safe_points = blocking(|| prometheus.range(&safe, span)).expect("range query");
    assert_eq!(changes(&safe_points), [0.0, 1.0, 0.0], "{safe_points:?}");
    let plaintext_points = blocking(|| prometheus.range(&plaintext_total, span)).expect("range");
    assert_eq!(
        changes(&plaintext_points),
        [0.0, 1.0],
        "{plaintext_points:?}"
    );

    promtool_check_metrics(&metrics).expect("the real-Envoy-fed /metrics lints clean");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_in_flight_while_strictly_polls_is_mtls_not_plaintext() {
    let p = Pipeline::start(InboundKind::TcpPermissive).await;
    p.open(&[Connection::MeshPing]);
    p.expect_counts(Counts::mtls_only(1)).await;

    let held = blocking(|| p.inbound.client().hold_mesh_handshake()).expect("half a handshake");
    // strictly sees an open connection that may be plaintext, and counts it as
    // possibly open plaintext only.
    let seen = p
        .wait_for("the handshake in flight", COUNT_WAIT, |i| {
            i["possible_open_plaintext"] == 1
        })
        .await;
    assert_ne!(seen["verdict"], "plaintext", "{seen:#}");
    let accepted = Counts {
        connections: 2,
        ..Counts::mtls_only(1)
    };
    assert_eq!(Counts::of(&seen), accepted, "{seen:#}");

    // A slow handshake, across several polls, is still no plaintext.
    p.daemon.cycles(3).await;
    let slow = p.daemon.inbound(p.service).await.expect("reported");
    assert_eq!(Counts::of(&slow), accepted, "{slow:#}");
    assert_eq!(slow["possible_open_plaintext"], 1, "{slow:#}");

    let answered = blocking(|| held.finish()).expect("the handshake finishes");
    assert_eq!(answered, Answered::Answer("PONG".into()));
    let done = p.expect_counts(Counts::mtls_only(2)).await;
    assert_eq!(done["last_plaintext"], Value::Null, "{done:#}");
    assert_eq!(done["possible_open_plaintext"], 0, "{done:#}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_denials_are_mtls_and_tls_from_outside_the_mesh_is_plaintext() {
    let p = Pipeline::start(InboundKind::TcpPermissiveDenied).await;

    let denied = p.open(&[Connection::MeshPing; 3]);
    assert!(
        denied.iter().all(|a| matches!(a, Answered::NoAnswer(_))),
        "{denied:?}"
    );
    let after_denied = p.expect_counts(Counts::mtls_only(3)).await;
    assert_ne!(after_denied["verdict"], "plaintext", "{after_denied:#}");

    p.open(&[Connection::TlsOutsideMesh]);
    let after_foreign = p
        .expect_counts(Counts {
            connections: 4,
            plaintext: 1,
            ..Counts::mtls_only(3)
        })
        .await;
    assert_eq!(after_foreign["verdict"], "plaintext", "{after_foreign:#}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envoy_restart_loses_nothing_invents_nothing_and_restarts_the_clean_span() {
    let mut p = Pipeline::start(InboundKind::TcpPermissive).await;
    let traffic = p.ready_under_mesh_traffic().await;
    let before = p.stop_and_count(traffic, Counts::mtls_only(0)).await;
    let watch = p.daemon.watch(p.service);

    // While Envoy is down, Kuma answers 500 and strictly cannot know.
    blocking(|| p.inbound.stop_envoy());
    let down = p.wait_for_verdict("unknown").await;
    assert!(
        down["reason"].as_str().is_some_and(|r| r.contains("500")),
        "{down:#}"
    );

    blocking(|| p.inbound.restart_envoy()).expect("Envoy starts again");
    p.sidecar_restarted();
    p.open(&[Connection::MeshPing]);
    let fresh = p
        .wait_for("the new Envoy's first connection", COUNT_WAIT, |i| {
            i["mtls_connections"] == before.mtls + 1
        })
        .await;
    assert_ne!(fresh["verdict"], "ready", "{fresh:#}");
    let window = humantime::parse_duration(WINDOW).expect("a duration");
    let clean = fresh["clean_seconds"].as_u64();
    assert!(clean.is_some_and(|c| c < window.as_secs()), "{fresh:#}");

    let traffic = p.ready_under_mesh_traffic().await;
    let after = p
        .stop_and_count(traffic, Counts::mtls_only(before.mtls + 1))
        .await;
    assert_eq!(after.plaintext, 0);

    let seen = watch.stop().await;
    assert_counts_never_went_down(&seen);
    p.shutdown().await;
}

/// Every count in every report is at least what the report before showed, and
/// no plaintext was ever reported.
fn assert_counts_never_went_down(seen: &[Value]) {
    let counts: Vec<Counts> = seen.iter().map(Counts::of).collect();
    assert!(counts.len() > 10, "the watch read {} reports", counts.len());
    for pair in counts.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            b.connections >= a.connections && b.mtls >= a.mtls && b.failed >= a.failed,
            "a count went down: {a:?} then {b:?}"
        );
    }
    assert!(counts.iter().all(|c| c.plaintext == 0), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_keep_alive_counts_connections_not_requests() {
    let p = Pipeline::start(InboundKind::HttpPermissive).await;
    let client = p.inbound.client();

    for mesh in [false, true, false] {
        let statuses = blocking(|| client.http_requests(mesh, 3)).expect("requests sent");
        assert_eq!(statuses, [200, 200, 200], "mesh: {mesh}");
    }
    p.settle();

    let http = p
        .expect_counts(Counts {
            connections: 3,
            mtls: 1,
            plaintext: 2,
            failed: 0,
        })
        .await;
    assert_eq!(http["verdict"], "plaintext", "{http:#}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_switching_to_strict_a_plaintext_client_is_a_failed_handshake() {
    let mut p = Pipeline::start(InboundKind::TcpPermissive).await;
    let traffic = p.ready_under_mesh_traffic().await;
    let permissive = p.stop_and_count(traffic, Counts::mtls_only(0)).await;

    blocking(|| p.inbound.restart_as(InboundKind::TcpStrict)).expect("Envoy restarts strict");
    p.cp.handle().update(|w| {
        w.mesh_mut(MESH).expect("the mesh").mtls = Some(MtlsMode::Strict);
    });
    p.sidecar_restarted();

    let refused = p.open(&[Connection::PlaintextPing]);
    assert!(matches!(refused[0], Answered::NoAnswer(_)), "{refused:?}");
    let strict = Counts {
        connections: permissive.connections + 1,
        failed: 1,
        ..permissive
    };
    let after_switch = p.expect_counts(strict).await;
    assert_ne!(after_switch["verdict"], "plaintext", "{after_switch:#}");

    // The mesh goes on, and the inbound is ready again with the refusal counted.
    let traffic = p.ready_under_mesh_traffic().await;
    let end = p.stop_and_count(traffic, strict).await;
    assert_eq!((end.plaintext, end.failed), (0, 1));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unified_naming_counts_the_same_under_self_inbound_dp_redis() {
    let p = Pipeline::start(InboundKind::TcpPermissiveUnified).await;
    assert_eq!(p.inbound.names.listener, "self_inbound_dp_redis");

    p.open(&[
        Connection::MeshPing,
        Connection::MeshPing,
        Connection::MeshPing,
        Connection::MeshWithoutCert,
        Connection::PlaintextPing,
    ]);
    let unified = p
        .expect_counts(Counts {
            connections: 5,
            mtls: 3,
            plaintext: 1,
            failed: 1,
        })
        .await;
    assert_eq!(unified["verdict"], "plaintext", "{unified:#}");
    p.shutdown().await;
}
