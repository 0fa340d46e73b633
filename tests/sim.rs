//! The simulated control plane over HTTP, as any client sees it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use strictly::sim::{
    ConnectionKind, InboundTraffic, Reply, SimControlPlane, SimDataplane, SimInbound, SimMesh,
    World,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const REDIS: &str = "redis-0.shop";

async fn start() -> SimControlPlane {
    let traffic = InboundTraffic {
        mtls: 5,
        ..InboundTraffic::default()
    };
    let mut world = World::new();
    world
        .add_mesh(SimMesh::permissive("default"))
        .add_dataplane(
            SimDataplane::sidecar("default", REDIS, "10.42.0.13")
                .inbound(SimInbound::tcp(6379, "redis_shop_svc_6379").with_traffic(traffic))
                .with_uptime(Duration::from_secs(86_400)),
        );
    SimControlPlane::start(world)
        .await
        .expect("the simulated control plane binds 127.0.0.1")
}

async fn get(cp: &SimControlPlane, path: &str) -> reqwest::Response {
    reqwest::get(format!("{}{path}", cp.url()))
        .await
        .expect("the simulated control plane answers")
}

async fn json(response: reqwest::Response) -> Value {
    let body = response.bytes().await.expect("body");
    serde_json::from_slice(&body).expect("JSON body")
}

async fn stats(cp: &SimControlPlane) -> String {
    let response = get(cp, &format!("/meshes/default/dataplanes/{REDIS}/stats")).await;
    response.text().await.expect("stats text")
}

fn value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter_map(|line| line.split_once(": "))
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test]
async fn answers_with_kuma_content_types() {
    let cp = start().await;

    let stats = get(&cp, &format!("/meshes/default/dataplanes/{REDIS}/stats")).await;
    assert_eq!(stats.headers()[CONTENT_TYPE], "text/plain");

    let error = get(&cp, "/meshes/default/dataplanes/nope/stats").await;
    assert_eq!(error.status(), StatusCode::NOT_FOUND);
    assert_eq!(error.headers()[CONTENT_TYPE], "application/json");
    let body = json(error).await;
    assert_eq!(body["type"], "/std-errors");
    assert_eq!(body["status"], 404);
    assert_eq!(body["details"], "Not found");

    let index = json(get(&cp, "/").await).await;
    assert_eq!(index["product"], "Kuma");
    cp.shutdown().await;
}

#[tokio::test]
async fn next_link_is_built_from_the_host_header() {
    let cp = start().await;
    let page = json(get(&cp, "/meshes?size=1").await).await;

    assert_eq!(page["total"], 1);
    assert_eq!(page["next"], Value::Null);

    cp.handle().update(|w| {
        w.add_mesh(SimMesh::strict("other"));
    });
    let page = json(get(&cp, "/meshes?size=1").await).await;
    assert_eq!(
        page["next"],
        format!("http://{}/meshes?offset=1&size=1", cp.addr())
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn world_changes_show_in_the_next_answer() {
    let cp = start().await;
    let before = stats(&cp).await;
    assert_eq!(
        value(&before, "listener.10.42.0.13_6379.downstream_cx_total"),
        Some(5)
    );
    assert!(value(&before, "server.uptime").is_some_and(|u| u >= 86_400));

    cp.handle().update(|w| {
        let inbound = w
            .dataplane_mut("default", REDIS)
            .and_then(|d| d.inbound_mut(6379))
            .expect("redis inbound");
        inbound.traffic.add(ConnectionKind::Plaintext, 2);
    });
    let after = stats(&cp).await;
    assert_eq!(
        value(&after, "listener.10.42.0.13_6379.downstream_cx_total"),
        Some(7)
    );
    assert_eq!(
        value(&after, "listener.10.42.0.13_6379.ssl.handshake"),
        Some(5)
    );

    cp.handle()
        .update(|w| w.dataplane_mut("default", REDIS).map(|d| d.restart()));
    let restarted = stats(&cp).await;
    assert_eq!(
        value(&restarted, "listener.10.42.0.13_6379.downstream_cx_total"),
        None
    );
    assert!(value(&restarted, "server.uptime").is_some_and(|u| u < 5));
    // Each poll reaches the sidecar's admin listener; a restart starts over.
    assert_eq!(
        value(&restarted, "listener.10.42.0.13_9901.ssl.handshake"),
        Some(1)
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn usedonly_false_shows_zeros() {
    let cp = start().await;
    let path = format!("/meshes/default/dataplanes/{REDIS}/stats?usedonly=false");
    let text = get(&cp, &path).await.text().await.expect("stats text");

    assert_eq!(value(&text, "inbound_10_42_0_13_6379.rbac.denied"), Some(0));
    assert_eq!(
        value(&text, "inbound_10_42_0_13_6379.rbac.allowed"),
        Some(5)
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn removed_dataplanes_disappear() {
    let cp = start().await;
    cp.handle().update(|w| w.remove_dataplane("default", REDIS));

    let page = json(get(&cp, "/meshes/default/dataplanes/_overview").await).await;
    assert_eq!(page["total"], 0);
    let gone = get(&cp, &format!("/meshes/default/dataplanes/{REDIS}/stats")).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    cp.shutdown().await;
}

#[tokio::test]
async fn only_get_is_served() {
    let cp = start().await;
    let response = reqwest::Client::new()
        .post(format!("{}/meshes", cp.url()))
        .send()
        .await
        .expect("answer");

    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(cp.handle().load().requests, 1);
    cp.shutdown().await;
}

/// A stand-in for an Envoy admin API on port 0: it answers every request with
/// one status and body, and keeps the request lines it got.
struct FakeAdmin {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAdmin {
    async fn start(status: &'static str, body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = vec![0; 4096];
                let n = stream.read(&mut head).await.unwrap_or(0);
                let line = String::from_utf8_lossy(&head[..n]);
                let line = line.lines().next().unwrap_or_default().to_string();
                seen.lock().expect("not poisoned").push(line);
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        Self {
            url,
            requests,
            task,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("not poisoned").clone()
    }
}

impl Drop for FakeAdmin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proxying_to(admin_url: &str) -> SimControlPlane {
    let cp = start().await;
    proxy_stats(&cp, admin_url);
    cp
}

fn proxy_stats(cp: &SimControlPlane, admin_url: &str) {
    cp.handle().update(|w| {
        if let Some(dataplane) = w.dataplane_mut("default", REDIS) {
            dataplane.stats_reply = Reply::proxy(admin_url);
        }
    });
}

#[tokio::test]
async fn proxied_stats_ask_envoy_for_usedonly_unless_turned_off() {
    let admin = FakeAdmin::start("200 OK", "server.live: 1\nserver.uptime: 7\n").await;
    let cp = proxying_to(&admin.url).await;

    let relayed = get(&cp, &format!("/meshes/default/dataplanes/{REDIS}/stats")).await;
    assert_eq!(relayed.status(), StatusCode::OK);
    assert_eq!(relayed.headers()[CONTENT_TYPE], "text/plain");
    assert_eq!(
        relayed.text().await.expect("text"),
        "server.live: 1\nserver.uptime: 7\n"
    );
    let path = format!("/meshes/default/dataplanes/{REDIS}/stats?usedonly=false");
    assert_eq!(get(&cp, &path).await.status(), StatusCode::OK);

    assert_eq!(
        admin.requests(),
        ["GET /stats?usedonly HTTP/1.1", "GET /stats HTTP/1.1"]
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn proxied_stats_fail_like_kuma_when_envoy_fails_or_is_gone() {
    let failing = FakeAdmin::start("503 Service Unavailable", "no").await;
    // A port that was free a moment ago: nothing answers there.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let gone_url = format!("http://{}", gone.local_addr().expect("addr"));
    drop(gone);
    let cp = proxying_to(&failing.url).await;
    let stats_path = format!("/meshes/default/dataplanes/{REDIS}/stats");

    for admin_url in [&failing.url, &gone_url] {
        proxy_stats(&cp, admin_url);
        let answer = get(&cp, &stats_path).await;

        assert_eq!(
            answer.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{admin_url}"
        );
        let body = json(answer).await;
        assert_eq!(body["title"], "Could not execute admin operation");
        assert_eq!(body["detail"], "Internal Server Error");
    }
    cp.shutdown().await;
}
