//! The Kuma API client against the simulated control plane on a free port.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use strictly::kuma::client::{ClientConfig, ErrorReason, KumaClient, KumaError, MAX_BODY_BYTES};
use strictly::sim::{
    InboundTraffic, ProxyKind, Reply, SimControlPlane, SimDataplane, SimInbound, SimMesh, World,
    fleet,
};

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.sIgNaTuRe";

fn config(url: &str) -> ClientConfig {
    ClientConfig {
        base_url: url.to_string(),
        token_file: None,
        ca_file: None,
        request_timeout: Duration::from_secs(5),
        concurrency: 4,
        max_body_bytes: MAX_BODY_BYTES,
    }
}

fn client(url: &str) -> KumaClient {
    KumaClient::new(config(url)).expect("test config is valid")
}

/// The guide's redis sidecar, with a second mesh beside it.
fn redis_world() -> World {
    let traffic = InboundTraffic {
        plaintext: 3,
        mtls: 8,
        ..InboundTraffic::default()
    };
    let mut world = World::new();
    world
        .add_mesh(SimMesh::permissive("default"))
        .add_mesh(SimMesh::without_mtls("legacy").exclusive_mesh_services())
        .add_dataplane(
            SimDataplane::sidecar("default", "redis-6d8f7b9c4-k2xlp.shop", "10.42.0.13").inbound(
                SimInbound::tcp(6379, "redis_shop_svc_6379")
                    .named("redis")
                    .with_traffic(traffic),
            ),
        );
    world
}

async fn start(world: World) -> SimControlPlane {
    SimControlPlane::start(world)
        .await
        .expect("the simulated control plane binds 127.0.0.1")
}

/// A file in the system temp directory, unique to this test process.
fn temp_file(name: &str, content: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("strictly-{}-{name}", std::process::id()));
    std::fs::write(&path, content).expect("temp dir is writable");
    path
}

#[tokio::test]
async fn reads_meshes_with_their_mtls_and_naming_settings() {
    let cp = start(redis_world()).await;
    let meshes = client(&cp.url()).meshes().await.expect("meshes");

    let names: Vec<&str> = meshes.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["default", "legacy"]);
    assert!(meshes[0].mtls_enabled());
    assert!(!meshes[0].mesh_services_exclusive());
    assert!(!meshes[1].mtls_enabled());
    assert!(meshes[1].mesh_services_exclusive());
    cp.shutdown().await;
}

#[tokio::test]
async fn reads_every_page_even_when_next_names_another_host() {
    let mut world = World::new();
    world
        .add_mesh(SimMesh::permissive("default"))
        .add_dataplanes(fleet("default", 2_345))
        .add_dataplane(SimDataplane::gateway(
            "default",
            "edge-gateway-5c9d8.shop",
            "10.42.9.9",
            ProxyKind::BuiltinGateway,
        ))
        // A port-forward: the control plane sees a Host the client cannot reach.
        .lie_about_host(Some("kuma-control-plane.kuma-system.svc:5681"));
    let cp = start(world).await;

    let dataplanes = client(&cp.url())
        .dataplanes("default")
        .await
        .expect("every page");

    assert_eq!(dataplanes.len(), 2_346);
    assert!(dataplanes.windows(2).all(|w| w[0].name < w[1].name));
    assert_eq!(dataplanes.iter().filter(|d| !d.is_sidecar()).count(), 1);
    assert!(
        dataplanes
            .iter()
            .filter(|d| d.is_sidecar())
            .all(|d| d.is_online())
    );
    assert_eq!(cp.handle().load().requests, 3, "pages of 1000");
    cp.shutdown().await;
}

#[tokio::test]
async fn overview_items_parse_into_the_model() {
    let cp = start(redis_world()).await;
    let dataplanes = client(&cp.url())
        .dataplanes("default")
        .await
        .expect("overview");
    let redis = &dataplanes[0];
    let inbound = &redis.dataplane.networking.inbound[0];

    assert_eq!(redis.name, "redis-6d8f7b9c4-k2xlp.shop");
    assert_eq!(redis.dataplane.networking.address, "10.42.0.13");
    assert_eq!(inbound.port, 6379);
    assert_eq!(inbound.name.as_deref(), Some("redis"));
    assert_eq!(inbound.service(), Some("redis_shop_svc_6379"));
    assert_eq!(inbound.protocol(), "tcp");
    assert!(redis.kri.is_some());
    assert!(redis.is_online() && redis.is_sidecar());
    cp.shutdown().await;
}

#[tokio::test]
async fn reads_a_sidecars_stats_text() {
    let cp = start(redis_world()).await;
    let body = client(&cp.url())
        .stats("default", "redis-6d8f7b9c4-k2xlp.shop")
        .await
        .expect("stats");
    let text = std::str::from_utf8(&body).expect("stats text is UTF-8");

    assert!(text.contains("listener.10.42.0.13_6379.downstream_cx_total: 11\n"));
    assert!(text.contains("listener.10.42.0.13_6379.ssl.handshake: 8\n"));
    assert!(text.contains("inbound_10_42_0_13_6379.rbac.allowed: 8\n"));
    assert!(text.contains("server.uptime: "));
    assert_eq!(cp.handle().load().stats_requests, 1);
    cp.shutdown().await;
}

#[tokio::test]
async fn names_are_percent_encoded_on_the_way() {
    let mut world = redis_world();
    world.add_dataplane(
        SimDataplane::sidecar("default", "odd name/with%?#.shop", "10.42.0.77").inbound(
            SimInbound::tcp(8080, "odd").with_traffic(InboundTraffic {
                mtls: 1,
                ..InboundTraffic::default()
            }),
        ),
    );
    let cp = start(world).await;

    let body = client(&cp.url())
        .stats("default", "odd name/with%?#.shop")
        .await
        .expect("the sim decodes what the client encodes");
    assert!(String::from_utf8_lossy(&body).contains("listener.10.42.0.77_8080."));
    cp.shutdown().await;
}

#[tokio::test]
async fn kuma_error_bodies_become_errors_with_title_and_detail() {
    let world = redis_world();
    let cp = start(world).await;
    cp.handle().update(|w| {
        if let Some(dataplane) = w.dataplane_mut("default", "redis-6d8f7b9c4-k2xlp.shop") {
            dataplane.stats_reply = Reply::admin_failure();
        }
    });
    let client = client(&cp.url());

    let failed = client
        .stats("default", "redis-6d8f7b9c4-k2xlp.shop")
        .await
        .expect_err("500");
    assert_eq!(failed.reason(), ErrorReason::Http5xx);
    assert_eq!(failed.status().map(|s| s.as_u16()), Some(500));
    let text = failed.to_string();
    assert!(
        text.contains("/meshes/default/dataplanes/redis-6d8f7b9c4-k2xlp.shop/stats"),
        "{text}"
    );
    assert!(text.contains("HTTP 500"), "{text}");
    assert!(
        text.contains("Could not execute admin operation: Internal Server Error"),
        "{text}"
    );

    let gone = client
        .stats("default", "deleted-pod.shop")
        .await
        .expect_err("404");
    assert_eq!(gone.reason(), ErrorReason::Http4xx);
    assert!(
        gone.to_string()
            .contains("Could not get dataplane resource: Not found"),
        "{gone}"
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn an_offline_sidecar_fails_like_an_unreachable_one() {
    let cp = start(redis_world()).await;
    cp.handle().update(|w| {
        if let Some(dataplane) = w.dataplane_mut("default", "redis-6d8f7b9c4-k2xlp.shop") {
            dataplane.set_online(false);
        }
    });
    let client = client(&cp.url());

    let dataplanes = client.dataplanes("default").await.expect("overview");
    assert!(!dataplanes[0].is_online());
    let error = client
        .stats("default", "redis-6d8f7b9c4-k2xlp.shop")
        .await
        .expect_err("offline");
    assert_eq!(error.reason(), ErrorReason::Http5xx);
    cp.shutdown().await;
}

#[tokio::test]
async fn a_slow_sidecar_hits_the_timeout() {
    let cp = start(redis_world()).await;
    cp.handle().update(|w| {
        if let Some(dataplane) = w.dataplane_mut("default", "redis-6d8f7b9c4-k2xlp.shop") {
            dataplane.stats_delay = Duration::from_secs(5);
        }
    });
    let mut config = config(&cp.url());
    config.request_timeout = Duration::from_millis(200);
    let client = KumaClient::new(config).expect("valid config");

    let started = Instant::now();
    let error = client
        .stats("default", "redis-6d8f7b9c4-k2xlp.shop")
        .await
        .expect_err("timeout");

    assert_eq!(error.reason(), ErrorReason::Timeout, "{error}");
    assert!(matches!(error, KumaError::Timeout { .. }));
    assert!(
        error.to_string().contains("timed out after 200ms"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    cp.shutdown().await;
}

#[tokio::test]
async fn garbage_json_is_a_parse_error() {
    let mut world = redis_world();
    world.override_path("/meshes", Reply::Garbage);
    world.override_path(
        "/meshes/default/dataplanes/_overview",
        Reply::json(r#"{"total": 1, "items": [{"name": 42}], "next": null}"#),
    );
    let cp = start(world).await;
    let client = client(&cp.url());

    let garbage = client.meshes().await.expect_err("garbage");
    assert_eq!(garbage.reason(), ErrorReason::Parse);
    assert!(
        garbage
            .to_string()
            .starts_with("GET /meshes?size=1000: unexpected JSON"),
        "{garbage}"
    );

    let wrong_shape = client.dataplanes("default").await.expect_err("wrong shape");
    assert_eq!(wrong_shape.reason(), ErrorReason::Parse);
    assert!(
        wrong_shape.to_string().contains("invalid type"),
        "{wrong_shape}"
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn a_next_link_that_never_moves_on_is_an_error() {
    let mut world = redis_world();
    world.override_path(
        "/meshes",
        Reply::json(
            r#"{"total": 9, "items": [{"name": "default"}],
                "next": "http://elsewhere:5681/meshes?offset=1&size=1000"}"#,
        ),
    );
    let cp = start(world).await;

    let error = client(&cp.url()).meshes().await.expect_err("loop");

    assert_eq!(error.reason(), ErrorReason::Parse);
    assert!(error.to_string().contains("already read"), "{error}");
    assert_eq!(cp.handle().load().requests, 2);
    cp.shutdown().await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_while_it_streams() {
    const LIMIT: usize = 1024 * 1024;
    const SENT: u64 = 256 * 1024 * 1024;
    let cp = start(redis_world()).await;
    cp.handle().update(|w| {
        if let Some(dataplane) = w.dataplane_mut("default", "redis-6d8f7b9c4-k2xlp.shop") {
            dataplane.stats_reply = Reply::Oversized { bytes: SENT };
        }
    });
    let mut config = config(&cp.url());
    config.max_body_bytes = LIMIT;
    let client = KumaClient::new(config).expect("valid config");

    let error = client
        .stats("default", "redis-6d8f7b9c4-k2xlp.shop")
        .await
        .expect_err("too large");

    assert_eq!(error.reason(), ErrorReason::Parse);
    assert!(
        error
            .to_string()
            .ends_with("body over 1048576 bytes refused"),
        "{error}"
    );
    // The client hung up early: the server produced a small part of the body,
    // socket buffers included.
    let served = cp.handle().load().bytes_served;
    assert!(served < SENT / 8, "{served} bytes were produced");
    cp.shutdown().await;
}

#[tokio::test]
async fn an_announced_oversized_body_is_refused_before_reading() {
    let mut world = redis_world();
    world.override_path("/meshes", Reply::json(&" ".repeat(4096)));
    let cp = start(world).await;
    let mut config = config(&cp.url());
    config.max_body_bytes = 1024;

    let error = KumaClient::new(config)
        .expect("valid config")
        .meshes()
        .await
        .expect_err("too large");

    assert!(
        matches!(error, KumaError::BodyTooLarge { limit: 1024, .. }),
        "{error}"
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn the_token_is_sent_re_read_and_never_shown() {
    let mut world = redis_world();
    world.require_token(Some(TOKEN));
    let cp = start(world).await;
    let token_file = temp_file("token", &format!("{TOKEN}\n"));
    let mut config = config(&cp.url());
    config.token_file = Some(token_file.clone());
    let client = KumaClient::new(config).expect("valid config");

    // Sent as Bearer, trailing newline trimmed.
    client.meshes().await.expect("authorised");

    // Rotated: the control plane now wants the new token, and the old one fails.
    let rotated = format!("{TOKEN}-rotated");
    cp.handle().update(|w| {
        w.require_token(Some(&rotated));
    });
    let refused = client
        .stats("default", "redis-6d8f7b9c4-k2xlp.shop")
        .await
        .expect_err("old token");
    assert_eq!(refused.reason(), ErrorReason::Http4xx);
    assert!(
        refused.to_string().contains("Invalid authentication data"),
        "{refused}"
    );

    // The file is looked at again at most once a second.
    std::fs::write(&token_file, &rotated).expect("temp dir is writable");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.meshes().await.expect("the new token was read");

    for shown in [
        refused.to_string(),
        format!("{refused:?}"),
        format!("{client:?}"),
    ] {
        assert!(!shown.contains(TOKEN), "token leaked: {shown}");
    }
    std::fs::remove_file(&token_file).expect("temp file exists");
    cp.shutdown().await;
}

#[tokio::test]
async fn a_missing_token_gets_401() {
    let mut world = redis_world();
    world.require_token(Some(TOKEN));
    let cp = start(world).await;

    let error = client(&cp.url()).meshes().await.expect_err("no token");

    assert_eq!(error.reason(), ErrorReason::Http4xx);
    assert_eq!(error.status().map(|s| s.as_u16()), Some(401));
    assert!(
        error
            .to_string()
            .contains("Invalid authentication data: Unauthenticated"),
        "{error}"
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_token_file_fails_the_request_clearly() {
    let cp = start(redis_world()).await;
    let mut missing_config = config(&cp.url());
    missing_config.token_file = Some(PathBuf::from("/nonexistent/strictly/token"));
    let client = KumaClient::new(missing_config).expect("the token is read per request");

    let missing = client.meshes().await.expect_err("no file");
    assert_eq!(missing.reason(), ErrorReason::Http4xx);
    assert!(
        missing.to_string().contains("/nonexistent/strictly/token"),
        "{missing}"
    );

    let empty_file = temp_file("empty-token", "  \n");
    let mut empty_config = config(&cp.url());
    empty_config.token_file = Some(empty_file.clone());
    let empty = KumaClient::new(empty_config)
        .expect("valid config")
        .meshes()
        .await
        .expect_err("empty");
    assert!(matches!(empty, KumaError::TokenInvalid { .. }), "{empty}");
    assert_eq!(
        cp.handle().load().requests,
        0,
        "nothing was sent without a token"
    );
    std::fs::remove_file(&empty_file).expect("temp file exists");
    cp.shutdown().await;
}

#[tokio::test]
async fn requests_in_flight_never_exceed_the_limit() {
    let mut world = World::new();
    world.add_mesh(SimMesh::permissive("default"));
    world.add_dataplanes(fleet("default", 12).into_iter().map(|mut d| {
        d.stats_delay = Duration::from_millis(100);
        d
    }));
    let cp = start(world).await;
    let mut config = config(&cp.url());
    config.concurrency = 3;
    let client = KumaClient::new(config).expect("valid config");

    let started = Instant::now();
    let mut polls = tokio::task::JoinSet::new();
    for i in 0..12 {
        let client = client.clone();
        polls.spawn(async move { client.stats("default", &format!("fleet-{i:05}.shop")).await });
    }
    while let Some(result) = polls.join_next().await {
        result.expect("poll task").expect("stats");
    }

    let load = cp.handle().load();
    assert_eq!(load.stats_requests, 12);
    assert_eq!(load.max_stats_in_flight, 3);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "four rounds of 100 ms"
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("bound address");
    drop(listener);

    let error = client(&format!("http://{addr}"))
        .meshes()
        .await
        .expect_err("closed");

    assert_eq!(error.reason(), ErrorReason::Connect, "{error}");
    assert!(error.to_string().contains("cannot connect"), "{error}");
}

#[tokio::test]
async fn shutdown_frees_the_port() {
    let cp = start(redis_world()).await;
    let url = cp.url();
    client(&url).meshes().await.expect("running");
    cp.shutdown().await;

    let error = client(&url).meshes().await.expect_err("stopped");
    assert_eq!(error.reason(), ErrorReason::Connect, "{error}");
}

#[test]
fn a_bad_ca_file_fails_construction_clearly() {
    let mut missing = config("https://127.0.0.1:5682");
    missing.ca_file = Some(PathBuf::from("/nonexistent/ca.crt"));
    let error = KumaClient::new(missing).expect_err("missing CA");
    assert!(
        error
            .to_string()
            .contains("cannot read CA file /nonexistent/ca.crt"),
        "{error}"
    );

    let not_pem = temp_file("not-a-ca.crt", "this is not a certificate\n");
    let mut garbage = config("https://127.0.0.1:5682");
    garbage.ca_file = Some(not_pem.clone());
    let error = KumaClient::new(garbage).expect_err("no certificate");
    assert!(matches!(error, KumaError::CaInvalid { .. }), "{error}");
    assert!(error.to_string().contains("not-a-ca.crt"), "{error}");
    std::fs::remove_file(&not_pem).expect("temp file exists");
}
