//! `strictly run` end to end against the simulated control plane: over a thousand
//! dataplanes across pages, both namings, and every kind of bad answer. Assertions
//! go through the daemon's own HTTP endpoints, as a user's tools would see them.

mod support;

use std::time::Duration;

use strictly::sim::{
    ConnectionKind, InboundTraffic, ProxyKind, Reply, SimControlPlane, SimDataplane, SimInbound,
    SimMesh, World, fleet,
};
use support::daemon::{Running, find, sample};

/// More than one page of 1000, the largest page Kuma serves.
const FLEET: usize = 1010;
const DAY: Duration = Duration::from_secs(24 * 3600);

fn mtls_only(n: u64) -> InboundTraffic {
    InboundTraffic {
        mtls: n,
        ..InboundTraffic::default()
    }
}

fn sidecar(
    mesh: &str,
    name: &str,
    ip: &str,
    service: &str,
    traffic: InboundTraffic,
) -> SimDataplane {
    SimDataplane::sidecar(mesh, name, ip)
        .inbound(
            SimInbound::tcp(6379, service)
                .named("redis")
                .with_traffic(traffic),
        )
        .with_uptime(2 * DAY)
}

/// The world of the main test: a big healthy fleet, the guide's redis seeing
/// plaintext, a unified-naming mesh, and one dataplane for each kind of trouble.
fn world() -> World {
    let mut world = World::new();
    world
        .add_mesh(SimMesh::permissive("default"))
        .add_mesh(SimMesh::permissive("unified").exclusive_mesh_services())
        .add_mesh(SimMesh::without_mtls("plain"));
    world.add_dataplanes(fleet("default", FLEET));

    let plaintext = InboundTraffic {
        plaintext: 3,
        mtls: 40,
        ..InboundTraffic::default()
    };
    world.add_dataplane(sidecar(
        "default",
        "redis-0.kuma-demo",
        "10.9.0.1",
        "redis_kuma-demo_svc_6379",
        plaintext,
    ));
    world.add_dataplane(
        sidecar(
            "unified",
            "redis-0.migration",
            "10.9.1.1",
            "redis_migration_svc_6379",
            mtls_only(25),
        )
        .unified_naming(),
    );
    world.add_dataplane(sidecar(
        "plain",
        "redis-0.plain",
        "10.9.2.1",
        "redis_plain_svc_6379",
        InboundTraffic {
            plaintext: 9,
            ..InboundTraffic::default()
        },
    ));

    let troubles = [
        ("failing-500", Reply::admin_failure()),
        (
            "gone-404",
            Reply::error(404, "Could not get dataplane resource", "Not found"),
        ),
        ("garbage", Reply::Garbage),
        (
            "oversized",
            Reply::Oversized {
                bytes: 40 * 1024 * 1024,
            },
        ),
        ("wrong-json", Reply::json("{\"items\": [")),
    ];
    for (i, (name, reply)) in troubles.into_iter().enumerate() {
        let mut dp = sidecar(
            "default",
            &format!("{name}.trouble"),
            &format!("10.9.3.{i}"),
            &format!("{name}_trouble_svc_6379"),
            mtls_only(5),
        );
        dp.stats_reply = reply;
        world.add_dataplane(dp);
    }
    let mut slow = sidecar(
        "default",
        "slow.trouble",
        "10.9.4.1",
        "slow_trouble_svc_6379",
        mtls_only(5),
    );
    slow.stats_delay = Duration::from_secs(3);
    world.add_dataplane(slow);
    let mut offline = sidecar(
        "default",
        "offline.trouble",
        "10.9.4.2",
        "offline_trouble_svc_6379",
        mtls_only(5),
    );
    offline.set_online(false);
    world.add_dataplane(offline);
    world.add_dataplane(SimDataplane::gateway(
        "default",
        "edge-gateway.kuma-demo",
        "10.9.5.1",
        ProxyKind::BuiltinGateway,
    ));
    world
}

/// Replica `n` of the `redis` service in mesh `default`.
fn redis_replica(n: u8, traffic: InboundTraffic) -> SimDataplane {
    let name = format!("redis-{n}.shop");
    sidecar(
        "default",
        &name,
        &format!("10.9.0.{}", n + 1),
        "redis",
        traffic,
    )
}

/// A simulated control plane with one permissive mesh, `default`, holding these
/// dataplanes.
async fn one_mesh(dataplanes: Vec<SimDataplane>) -> SimControlPlane {
    let mut world = World::new();
    world.add_mesh(SimMesh::permissive("default"));
    world.add_dataplanes(dataplanes);
    SimControlPlane::start(world).await.expect("sim binds")
}

/// Short polls, a window no test here waits out, and data that stays fresh
/// through a slow cycle on a loaded machine (tests about staleness set their own).
const FLAGS: [&str; 10] = [
    "--poll-interval",
    "250ms",
    "--window",
    "1h",
    "--request-timeout",
    "500ms",
    "--concurrency",
    "16",
    "--stale-after",
    "20s",
];

/// A daemon running in this process against `url`, stopped when the guard drops.
async fn start_daemon(url: &str, extra: &[&str]) -> Running {
    let flags: Vec<&str> = FLAGS.iter().chain(extra).copied().collect();
    Running::start(url, &flags).await
}

fn labels(mesh: &str, service: &str) -> String {
    format!("{{mesh=\"{mesh}\",kuma_service=\"{service}\",port=\"6379\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_for_a_thousand_dataplanes_and_every_kind_of_trouble() {
    let cp = SimControlPlane::start(world()).await.expect("sim binds");
    // A cycle over a thousand dataplanes, a slow sidecar and an oversized body
    // takes seconds on a busy machine: time enough to list, and data that stays
    // fresh across such a cycle. The slow sidecar still times out.
    let patient = ["--request-timeout", "2s", "--stale-after", "10s"];
    let daemon = start_daemon(&cp.url(), &patient).await;
    assert_eq!(daemon.get("/healthz").await.0, 200);
    daemon.cycles(2).await;
    assert_eq!(daemon.get("/readyz").await.0, 200);

    let inbounds = daemon.inbounds().await;
    let fleet_services = FLEET.div_ceil(4);
    assert_eq!(
        inbounds.len(),
        fleet_services + 3 + 7,
        "gateway skipped, all else reported"
    );

    let fleet_member = find(&inbounds, "fleet-0_shop_svc_8080");
    assert_eq!(
        fleet_member["verdict"], "ready",
        "{}",
        fleet_member["reason"]
    );
    assert_eq!(fleet_member["replicas"].as_array().map(Vec::len), Some(4));

    let legacy = find(&inbounds, "redis_kuma-demo_svc_6379");
    assert_eq!(legacy["verdict"], "plaintext");
    assert_eq!(legacy["plaintext_connections"], 3);
    assert_eq!(legacy["mtls_connections"], 40);

    let unified = find(&inbounds, "redis_migration_svc_6379");
    assert_eq!(unified["verdict"], "ready", "{}", unified["reason"]);
    assert_eq!(unified["mtls_connections"], 25, "unified names were read");

    let plain = find(&inbounds, "redis_plain_svc_6379");
    assert_eq!(plain["verdict"], "plaintext");
    assert!(
        plain["reason"]
            .as_str()
            .is_some_and(|r| r.contains("mTLS looks disabled"))
    );

    for (service, words) in [
        ("failing-500_trouble_svc_6379", "500"),
        ("gone-404_trouble_svc_6379", "404"),
        ("garbage_trouble_svc_6379", "Envoy stats"),
        ("oversized_trouble_svc_6379", "bytes"),
        ("wrong-json_trouble_svc_6379", "Envoy stats"),
        ("slow_trouble_svc_6379", "time"),
        ("offline_trouble_svc_6379", "offline"),
    ] {
        let inbound = find(&inbounds, service);
        let reason = inbound["reason"].as_str().unwrap_or_default();
        assert_eq!(inbound["verdict"], "unknown", "{service}: {reason}");
        assert!(reason.contains(words), "{service}: {reason}");
    }

    let (status, metrics) = daemon.get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(sample(&metrics, "strictly_up"), Some(1.0));
    assert_eq!(
        sample(
            &metrics,
            &format!(
                "strictly_safe_to_strict{}",
                labels("unified", "redis_migration_svc_6379")
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            &format!(
                "strictly_safe_to_strict{}",
                labels("default", "redis_kuma-demo_svc_6379")
            )
        ),
        Some(0.0)
    );
    let verdict =
        labels("default", "redis_kuma-demo_svc_6379").replace('}', ",verdict=\"plaintext\"}");
    assert_eq!(
        sample(&metrics, &format!("strictly_verdict{verdict}")),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "strictly_dataplanes{mesh=\"default\"}"),
        Some((FLEET + 1 + 7) as f64)
    );
    for reason in ["http_5xx", "http_4xx", "parse", "timeout"] {
        let errors = sample(
            &metrics,
            &format!("strictly_poll_errors_total{{reason=\"{reason}\"}}"),
        );
        assert!(errors.is_some_and(|e| e >= 1.0), "{reason}: {errors:?}");
    }
    assert_eq!(
        sample(&metrics, "strictly_poll_errors_total{reason=\"connect\"}"),
        Some(0.0)
    );

    if let Ok(path) = std::env::var("STRICTLY_WRITE_METRICS_SAMPLE") {
        std::fs::write(&path, &metrics).expect("metrics sample path is writable");
    }
    daemon.stop().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_arriving_later_turns_ready_into_plaintext_and_counts_exactly() {
    let cp = one_mesh(vec![
        redis_replica(0, mtls_only(10)),
        redis_replica(1, mtls_only(10)),
    ])
    .await;
    let daemon = start_daemon(&cp.url(), &["--per-dataplane"]).await;
    daemon.cycles(2).await;

    let redis = labels("default", "redis");
    let (_, before) = daemon.get("/metrics").await;
    assert_eq!(
        sample(&before, &format!("strictly_safe_to_strict{redis}")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &before,
            &format!("strictly_plaintext_connections_total{redis}")
        ),
        Some(0.0)
    );

    cp.handle().update(|w| {
        let inbound = w
            .dataplane_mut("default", "redis-1.shop")
            .and_then(|d| d.inbound_mut(6379))
            .expect("inbound");
        inbound.traffic.add(ConnectionKind::Plaintext, 2);
        inbound.traffic.add(ConnectionKind::ForeignTls, 1);
        inbound.traffic.add(ConnectionKind::FailedNoCert, 4);
        inbound.traffic.add(ConnectionKind::MtlsDenied, 5);
    });
    daemon.cycles(2).await;

    let (_, after) = daemon.get("/metrics").await;
    assert_eq!(
        sample(&after, &format!("strictly_safe_to_strict{redis}")),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &after,
            &format!("strictly_plaintext_connections_total{redis}")
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &after,
            &format!("strictly_tls_failed_connections_total{redis}")
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(&after, &format!("strictly_mtls_connections_total{redis}")),
        Some(25.0)
    );
    assert_eq!(
        sample(&after, &format!("strictly_replicas{redis}")),
        Some(2.0)
    );
    let replica = redis.replace('}', ",dataplane=\"redis-0.shop\"}");
    assert_eq!(
        sample(&after, &format!("strictly_safe_to_strict{replica}")),
        Some(1.0),
        "the clean replica stays ready"
    );
    daemon.stop().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sidecar_neither_invents_plaintext_nor_lowers_counters() {
    let cp = one_mesh(vec![redis_replica(0, mtls_only(100))]).await;
    let daemon = start_daemon(&cp.url(), &[]).await;
    daemon.cycles(2).await;

    cp.handle().update(|w| {
        let dp = w
            .dataplane_mut("default", "redis-0.shop")
            .expect("dataplane");
        dp.restart();
        dp.inbound_mut(6379)
            .expect("inbound")
            .traffic
            .add(ConnectionKind::Mtls, 7);
    });
    daemon.cycles(2).await;

    let inbounds = daemon.inbounds().await;
    let redis = find(&inbounds, "redis");
    assert_eq!(redis["mtls_connections"], 107);
    assert_eq!(redis["plaintext_connections"], 0);
    assert_eq!(redis["verdict"], "insufficient_data", "{}", redis["reason"]);
    daemon.stop().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_that_is_down_leaves_the_daemon_up_and_unknown() {
    let cp = one_mesh(vec![redis_replica(0, mtls_only(10))]).await;
    let url = cp.url();
    let daemon = start_daemon(&url, &["--stale-after", "500ms"]).await;
    daemon.cycles(1).await;
    assert_eq!(find(&daemon.inbounds().await, "redis")["verdict"], "ready");

    cp.shutdown().await;
    daemon.cycles(3).await;

    let (_, metrics) = daemon.get("/metrics").await;
    assert_eq!(sample(&metrics, "strictly_up"), Some(0.0));
    assert!(
        sample(&metrics, "strictly_poll_errors_total{reason=\"connect\"}")
            .is_some_and(|e| e >= 1.0)
    );
    let redis = find(&daemon.inbounds().await, "redis").clone();
    assert_eq!(redis["verdict"], "unknown", "{}", redis["reason"]);
    assert_eq!(daemon.get("/healthz").await.0, 200);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_listing_is_counted_and_keeps_verdicts_until_they_go_stale() {
    let cp = one_mesh(vec![redis_replica(0, mtls_only(10))]).await;
    let daemon = start_daemon(&cp.url(), &["--stale-after", "1s"]).await;
    daemon.cycles(1).await;

    cp.handle().update(|w| {
        w.override_path(
            "/meshes/default/dataplanes/_overview",
            Reply::json("{\"total\": 1, \"items\": [{\"mesh\": 3}]"),
        );
    });
    daemon.cycles(2).await;
    let (_, metrics) = daemon.get("/metrics").await;
    assert_eq!(sample(&metrics, "strictly_up"), Some(0.0));
    assert!(
        sample(&metrics, "strictly_poll_errors_total{reason=\"parse\"}").is_some_and(|e| e >= 1.0)
    );
    assert_eq!(
        find(&daemon.inbounds().await, "redis")["replicas"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "not forgotten"
    );

    tokio::time::sleep(Duration::from_millis(1200)).await;
    daemon.cycles(1).await;
    assert_eq!(
        find(&daemon.inbounds().await, "redis")["verdict"],
        "unknown"
    );
    daemon.stop().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selection_flags_limit_meshes_and_services() {
    let mut world = World::new();
    world
        .add_mesh(SimMesh::permissive("default"))
        .add_mesh(SimMesh::permissive("other"));
    world.add_dataplane(redis_replica(0, mtls_only(10)));
    world.add_dataplane(sidecar(
        "default",
        "web-0.shop",
        "10.9.0.2",
        "web",
        mtls_only(10),
    ));
    world.add_dataplane(sidecar(
        "other",
        "redis-0.else",
        "10.9.0.3",
        "redis",
        mtls_only(10),
    ));
    let cp = SimControlPlane::start(world).await.expect("sim binds");
    let daemon = start_daemon(&cp.url(), &["--mesh", "default", "--service", "redis"]).await;
    daemon.cycles(1).await;

    let inbounds = daemon.inbounds().await;
    assert_eq!(inbounds.len(), 1);
    assert_eq!(inbounds[0]["mesh"], "default");
    assert_eq!(inbounds[0]["kuma_service"], "redis");
    daemon.stop().await;
    cp.shutdown().await;
}

#[tokio::test]
async fn readyz_waits_for_the_first_cycle() {
    // A control plane that accepts connections but never answers keeps the first
    // cycle in flight until the request timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    let daemon = start_daemon(&url, &["--request-timeout", "3s"]).await;

    let (status, body) = daemon.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let (_, json) = daemon.get("/api/v1/inbounds").await;
    assert!(json.contains("\"inbounds\":[]"), "{json}");
    drop(silent);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_daemons_export_only_their_share() {
    let cp = one_mesh(fleet("default", 40)).await;
    let shards = [
        start_daemon(&cp.url(), &["--shard", "0/2", "--per-dataplane"]).await,
        start_daemon(&cp.url(), &["--shard", "1/2", "--per-dataplane"]).await,
    ];

    let mut seen = std::collections::BTreeSet::new();
    let mut dataplanes = 0.0;
    for (index, daemon) in (0u32..).zip(&shards) {
        daemon.cycles(1).await;
        let (_, metrics) = daemon.get("/metrics").await;
        assert_eq!(sample(&metrics, "strictly_shard"), Some(index.into()));
        assert_eq!(sample(&metrics, "strictly_shards"), Some(2.0));
        dataplanes += sample(&metrics, "strictly_dataplanes{mesh=\"default\"}").unwrap_or(0.0);

        let exported: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("strictly_safe_to_strict{"))
            .filter_map(|l| l.split("dataplane=\"").nth(1)?.split('"').next())
            .collect();
        assert!(!exported.is_empty(), "shard {index} exports nothing");
        for name in exported {
            assert_eq!(
                strictly::shard::shard_of("default", name, 2),
                index,
                "{name}"
            );
            assert!(seen.insert(name.to_string()), "{name} exported twice");
        }
    }
    assert_eq!(seen.len(), 40, "the shards together cover the fleet");
    assert_eq!(
        dataplanes, 40.0,
        "strictly_dataplanes adds up across shards"
    );
    for daemon in shards {
        daemon.stop().await;
    }
    cp.shutdown().await;
}
