//! Kuma's API routes, answered from a [`World`]: what each request gets, decided
//! without touching a socket.
//!
//! The errors are Kuma's own: its `/std-errors` JSON with the titles and details
//! its API server uses, and go-restful's plain 404 for a path it has no route for.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use reqwest::Url;
use serde_json::Value;
use tokio::time::Instant;

use super::body::Payload;
use super::json;
use super::render::render_stats;
use super::world::{Reply, World};

/// Kuma's page size when the request sets none, and the most it allows.
const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;

/// Bytes that are neither stats text nor JSON: a compressed header, a proxy's
/// HTML page, invalid UTF-8 and a cut-off JSON object.
const GARBAGE: &[u8] =
    b"\x1f\x8b\x08\x00<html><body>502 Bad Gateway</body></html>\n\xff\xfe: :\n{\"items\": [";

/// The parts of an HTTP request the routes look at.
#[derive(Debug, Clone)]
pub(crate) struct ApiRequest {
    pub method: Method,
    /// The path as sent, still percent-encoded.
    pub path: String,
    /// Decoded query pairs in their order.
    pub query: Vec<(String, String)>,
    pub host: Option<String>,
    pub authorization: Option<String>,
}

impl ApiRequest {
    /// Reads the parts the routes need from a request's head.
    pub(crate) fn from_parts(
        method: Method,
        uri: &hyper::Uri,
        host: Option<&str>,
        authorization: Option<&str>,
    ) -> Self {
        Self {
            method,
            path: uri.path().to_string(),
            query: uri.query().map(parse_query).unwrap_or_default(),
            host: host.map(str::to_string),
            authorization: authorization.map(str::to_string),
        }
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What to send back, and how long to wait first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub payload: Payload,
    pub delay: Duration,
    /// A real Envoy's stats URL: its answer becomes the payload. The server
    /// fetches it after the world is unlocked, since a sidecar can be slow.
    pub relay_from: Option<String>,
}

impl Answer {
    fn json(status: StatusCode, body: &Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            payload: Payload::Full(Bytes::from(body.to_string())),
            delay: Duration::ZERO,
            relay_from: None,
        }
    }

    fn text(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            content_type: "text/plain",
            payload: Payload::Full(body.into()),
            delay: Duration::ZERO,
            relay_from: None,
        }
    }

    /// Kuma's error body with this status.
    fn kuma_error(status: u16, title: &str, detail: &str) -> Self {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::json(code, &json::error(status, title, detail))
    }

    /// go-restful's answer when no route matches the path.
    fn no_route() -> Self {
        Self::text(StatusCode::NOT_FOUND, "404: Page Not Found")
    }

    /// A configured reply. `Normal` has no meaning of its own here: the callers
    /// answer it themselves, so it falls back to the no-route answer. A relayed
    /// answer asks Envoy with the request's `usedonly`.
    pub(crate) fn from_reply(reply: &Reply, request: &ApiRequest) -> Self {
        match reply {
            Reply::Normal => Self::no_route(),
            Reply::Error {
                status,
                title,
                detail,
            } => Self::kuma_error(*status, title, detail),
            Reply::Fixed { content_type, body } => Self {
                content_type,
                ..Self::text(StatusCode::OK, body.clone())
            },
            Reply::Garbage => Self::text(StatusCode::OK, Bytes::from_static(GARBAGE)),
            Reply::Oversized { bytes } => Self {
                payload: Payload::Filler(*bytes),
                ..Self::text(StatusCode::OK, Bytes::new())
            },
            Reply::Proxy { admin_url } => Self {
                relay_from: Some(envoy_stats_url(admin_url, used_only(request))),
                ..Self::text(StatusCode::OK, Bytes::new())
            },
        }
    }

    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Whether a path asks for a sidecar's stats, which the load counters track.
pub(crate) fn is_stats(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(segments.as_slice(), ["meshes", _, "dataplanes", _, "stats"])
}

/// Answers one request. `now` gives the sidecars' uptime.
pub(crate) fn answer(world: &mut World, request: &ApiRequest, now: Instant) -> Answer {
    if request.method != Method::GET {
        return Answer::text(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed");
    }
    if !authorized(world, request) {
        return Answer::kuma_error(401, "Invalid authentication data", "Unauthenticated");
    }
    if let Some(reply) = world.overrides.get(&request.path) {
        return Answer::from_reply(reply, request);
    }

    let Some(segments) = decode_path(&request.path) else {
        return Answer::no_route();
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        [] => Answer::json(StatusCode::OK, &json::index()),
        ["meshes"] => list_meshes(world, request),
        ["meshes", mesh] => get_mesh(world, mesh),
        ["meshes", mesh, "dataplanes", "_overview"] => list_overviews(world, request, mesh),
        ["meshes", mesh, "dataplanes", name, "_overview"] => get_overview(world, mesh, name),
        ["meshes", mesh, "dataplanes", name, operation] => {
            admin(world, request, mesh, name, operation, now)
        }
        _ => Answer::no_route(),
    }
}

/// A token, when required, must come as `Bearer`; `GET /` never needs one.
///
/// Kuma itself lets a request without any token through as anonymous and only
/// its access rules may refuse it, with a 403; the simulation refuses it with
/// the 401 of a wrong token, the answer a hardened control plane gives strictly
/// whichever way the token went missing.
fn authorized(world: &World, request: &ApiRequest) -> bool {
    let Some(token) = &world.token else {
        return true;
    };
    let expected = format!("Bearer {token}");
    request.path == "/" || request.authorization.as_deref() == Some(expected.as_str())
}

fn list_meshes(world: &World, request: &ApiRequest) -> Answer {
    let meshes: Vec<_> = world.meshes().collect();
    paged(world, request, meshes.len(), |range| {
        meshes[range].iter().map(|m| json::mesh(m)).collect()
    })
}

fn get_mesh(world: &World, name: &str) -> Answer {
    match world.mesh(name) {
        Some(mesh) => Answer::json(StatusCode::OK, &json::mesh(mesh)),
        None => Answer::kuma_error(404, "Could not retrieve a resource", "Not found"),
    }
}

/// Dataplanes of a known mesh, by name; an unknown mesh is a 404 as in Kuma.
fn list_overviews(world: &World, request: &ApiRequest, mesh: &str) -> Answer {
    let Some(mesh_info) = world.mesh(mesh) else {
        return Answer::kuma_error(404, "Failed to retrieve Mesh", "Not found");
    };
    let tags = tag_filter(request);
    let dataplanes: Vec<_> = world
        .dataplanes(mesh)
        .filter(|d| d.matches_tags_fuzzy(&tags))
        .collect();
    paged(world, request, dataplanes.len(), |range| {
        dataplanes[range]
            .iter()
            .map(|d| json::overview(d, Some(mesh_info)))
            .collect()
    })
}

/// The `tag=key:value` parameters as Kuma reads them: split at the first `:`,
/// a parameter without one ignored, a repeated key keeping its last value.
fn tag_filter(request: &ApiRequest) -> BTreeMap<String, String> {
    request
        .query
        .iter()
        .filter(|(key, _)| key == "tag")
        .filter_map(|(_, value)| value.split_once(':'))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn get_overview(world: &World, mesh: &str, name: &str) -> Answer {
    match world.dataplane(mesh, name) {
        Some(dataplane) => {
            Answer::json(StatusCode::OK, &json::overview(dataplane, world.mesh(mesh)))
        }
        None => Answer::kuma_error(404, "Could not retrieve a resource", "Not found"),
    }
}

/// The Envoy admin passthrough. Only `stats` is served, from the traffic model
/// or relayed from a real Envoy; `xds` and `clusters` get the answer of an
/// unknown operation.
fn admin(
    world: &mut World,
    request: &ApiRequest,
    mesh: &str,
    name: &str,
    operation: &str,
    now: Instant,
) -> Answer {
    if operation != "stats" {
        return Answer::kuma_error(404, "Could not execute admin operation", "Not found");
    }
    let mesh_info = world.mesh(mesh).cloned();
    let padding = world.stats_padding.clone();
    let Some(dataplane) = world.dataplane_mut(mesh, name) else {
        return Answer::kuma_error(404, "Could not get dataplane resource", "Not found");
    };

    // An offline proxy's admin listener cannot be reached.
    let delay = dataplane.stats_delay;
    if !dataplane.is_online() {
        return Answer::from_reply(&Reply::admin_failure(), request).delayed(delay);
    }

    dataplane.admin_requests += 1;
    let answer = match &dataplane.stats_reply {
        Reply::Normal => {
            let uptime = dataplane.uptime(now).as_secs();
            let text = render_stats(dataplane, mesh_info.as_ref(), uptime, used_only(request));
            Answer {
                payload: Payload::Parts(vec![padding, Bytes::from(text)]),
                ..Answer::text(StatusCode::OK, Bytes::new())
            }
        }
        reply => Answer::from_reply(reply, request),
    };
    answer.delayed(delay)
}

/// What Kuma asks a sidecar's Envoy for: `GET /stats?usedonly` by default,
/// plain `GET /stats` when the caller turned `usedonly` off.
fn envoy_stats_url(admin_url: &str, used_only: bool) -> String {
    let query = if used_only { "?usedonly" } else { "" };
    format!("{admin_url}/stats{query}")
}

/// Kuma asks Envoy for used stats only unless `usedonly` parses as false, with
/// Go's boolean syntax; a value that does not parse keeps the default.
fn used_only(request: &ApiRequest) -> bool {
    let off = ["0", "f", "F", "false", "FALSE", "False"];
    !request.param("usedonly").is_some_and(|v| off.contains(&v))
}

/// One page of a list. `items` renders the slice of the sorted list asked for.
fn paged(
    world: &World,
    request: &ApiRequest,
    total: usize,
    items: impl FnOnce(std::ops::Range<usize>) -> Vec<Value>,
) -> Answer {
    let size = match page_size(request) {
        Ok(size) => size,
        Err(reason) => return invalid_page_size(&reason),
    };
    let Ok(offset) = request
        .param("offset")
        .filter(|o| !o.is_empty())
        .map_or(Ok(0), str::parse)
    else {
        return Answer::kuma_error(400, "Could not retrieve resources", "invalid offset");
    };

    let start = offset.min(total);
    let end = start.saturating_add(size).min(total);
    let next = (end < total).then(|| next_link(world, request, end));
    Answer::json(StatusCode::OK, &json::page(total, items(start..end), next))
}

fn page_size(request: &ApiRequest) -> Result<usize, String> {
    let Some(raw) = request.param("size").filter(|s| !s.is_empty()) else {
        return Ok(DEFAULT_PAGE_SIZE);
    };
    let size: i64 = raw.parse().map_err(|_| "invalid format".to_string())?;
    if size <= 0 {
        return Err("must be greater than 0".into());
    }
    if size > MAX_PAGE_SIZE as i64 {
        return Err(format!(
            "invalid page size of {size}. Maximum page size is {MAX_PAGE_SIZE}"
        ));
    }
    Ok(size as usize)
}

fn invalid_page_size(reason: &str) -> Answer {
    let body = json::parameter_error(
        400,
        "Could not retrieve resources",
        "Invalid page size",
        "size",
        reason,
    );
    Answer::json(StatusCode::BAD_REQUEST, &body)
}

/// The `next` link as Kuma builds it: the request's `Host`, its path, and its
/// query with `offset` replaced, keys sorted. A world may lie about the host.
fn next_link(world: &World, request: &ApiRequest, offset: usize) -> String {
    let host = world
        .next_host
        .as_deref()
        .or(request.host.as_deref())
        .unwrap_or("127.0.0.1");
    let mut pairs: Vec<(String, String)> = request
        .query
        .iter()
        .filter(|(k, _)| k != "offset")
        .cloned()
        .collect();
    pairs.push(("offset".into(), offset.to_string()));
    pairs.sort();

    format!("http://{host}{}?{}", request.path, encode_query(&pairs))
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    match Url::parse(&format!("http://sim/?{query}")) {
        Ok(url) => url.query_pairs().into_owned().collect(),
        Err(_) => Vec::new(),
    }
}

fn encode_query(pairs: &[(String, String)]) -> String {
    let mut url = Url::parse("http://sim/").expect("a constant URL parses");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_string()
}

/// Splits a path into percent-decoded segments; `None` when a segment does not
/// decode to UTF-8 or the path has an empty segment (`//`, a trailing `/`).
fn decode_path(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    rest.split('/').map(decode_segment).collect()
}

fn decode_segment(segment: &str) -> Option<String> {
    if segment.is_empty() {
        return None;
    }
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{ProxyKind, SimDataplane, SimInbound, SimMesh};

    fn get(path_and_query: &str) -> ApiRequest {
        let uri: hyper::Uri = path_and_query.parse().expect("test URI parses");
        ApiRequest::from_parts(Method::GET, &uri, Some("127.0.0.1:5681"), None)
    }

    fn body(answer: &Answer) -> Value {
        match &answer.payload {
            Payload::Full(bytes) => serde_json::from_slice(bytes).expect("JSON answer"),
            Payload::Parts(_) | Payload::Filler(_) => panic!("not a JSON answer"),
        }
    }

    fn names(answer: &Answer) -> Vec<String> {
        let page = body(answer);
        let items = page["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .filter_map(|i| i["name"].as_str().map(str::to_string))
            .collect()
    }

    fn world(dataplanes: usize) -> World {
        let mut world = World::new();
        world.add_mesh(SimMesh::permissive("default"));
        for i in 0..dataplanes {
            let name = format!("dp-{i:03}.shop");
            world.add_dataplane(
                SimDataplane::sidecar("default", &name, "10.42.0.2")
                    .inbound(SimInbound::tcp(8080, "app")),
            );
        }
        world
    }

    #[test]
    fn pages_default_to_100_and_link_the_next_with_sorted_keys() {
        let mut world = world(250);
        let answer = answer(
            &mut world,
            &get("/meshes/default/dataplanes/_overview"),
            Instant::now(),
        );
        let page = body(&answer);

        assert_eq!(page["total"], 250);
        assert_eq!(page["items"].as_array().map(Vec::len), Some(100));
        assert_eq!(page["items"][0]["name"], "dp-000.shop");
        assert_eq!(
            page["next"],
            "http://127.0.0.1:5681/meshes/default/dataplanes/_overview?offset=100"
        );
    }

    #[test]
    fn last_page_has_no_next() {
        let mut world = world(250);
        let request = get("/meshes/default/dataplanes/_overview?size=100&offset=200");
        let page = body(&answer(&mut world, &request, Instant::now()));

        assert_eq!(page["items"].as_array().map(Vec::len), Some(50));
        assert_eq!(page["next"], Value::Null);
    }

    #[test]
    fn next_link_keeps_other_parameters_and_may_lie_about_the_host() {
        let mut world = world(3);
        world.lie_about_host(Some("kuma-control-plane.kuma-system:5681"));
        let request = get("/meshes/default/dataplanes/_overview?size=2&name=dp");
        let page = body(&answer(&mut world, &request, Instant::now()));

        assert_eq!(
            page["next"],
            "http://kuma-control-plane.kuma-system:5681/meshes/default/dataplanes/_overview\
             ?name=dp&offset=2&size=2"
        );
    }

    #[test]
    fn invalid_page_sizes_get_kuma_errors() {
        let mut world = world(1);
        for size in ["abc", "0", "-1", "1001"] {
            let request = get(&format!("/meshes?size={size}"));
            let answer = answer(&mut world, &request, Instant::now());
            let error = body(&answer);

            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "size={size}");
            assert_eq!(error["type"], "/std-errors");
            assert_eq!(error["title"], "Could not retrieve resources");
            assert_eq!(error["detail"], "Invalid page size");
            assert_eq!(error["invalid_parameters"][0]["field"], "size");
        }
    }

    #[test]
    fn unknown_things_get_kuma_404s() {
        let mut world = world(1);
        let cases = [
            ("/meshes/nope", "Could not retrieve a resource"),
            (
                "/meshes/nope/dataplanes/_overview",
                "Failed to retrieve Mesh",
            ),
            (
                "/meshes/default/dataplanes/nope/stats",
                "Could not get dataplane resource",
            ),
            (
                "/meshes/default/dataplanes/dp-000.shop/xds",
                "Could not execute admin operation",
            ),
        ];
        for (path, title) in cases {
            let answer = answer(&mut world, &get(path), Instant::now());

            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(body(&answer)["title"], title, "{path}");
            assert_eq!(body(&answer)["detail"], "Not found", "{path}");
        }
        assert_eq!(
            answer(&mut world, &get("/nowhere"), Instant::now()),
            Answer::no_route()
        );
    }

    #[test]
    fn token_is_required_everywhere_but_the_index() {
        let mut world = world(1);
        world.require_token(Some("t0ken"));
        let uri: hyper::Uri = "/meshes".parse().expect("test URI parses");
        let with = ApiRequest::from_parts(Method::GET, &uri, None, Some("Bearer t0ken"));
        let wrong = ApiRequest::from_parts(Method::GET, &uri, None, Some("Bearer other"));

        assert_eq!(
            answer(&mut world, &with, Instant::now()).status,
            StatusCode::OK
        );
        assert_eq!(
            answer(&mut world, &wrong, Instant::now()).status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            answer(&mut world, &get("/meshes"), Instant::now()).status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            answer(&mut world, &get("/"), Instant::now()).status,
            StatusCode::OK
        );
    }

    #[test]
    fn names_are_percent_decoded() {
        let mut world = world(0);
        world.add_dataplane(SimDataplane::sidecar("default", "odd name/x", "10.42.0.9"));
        let request = get("/meshes/default/dataplanes/odd%20name%2Fx/stats");
        let answer = answer(&mut world, &request, Instant::now());

        assert_eq!(answer.status, StatusCode::OK);
        assert!(is_stats(&request.path));
    }

    #[test]
    fn offline_sidecar_stats_fail_like_kuma() {
        let mut world = world(1);
        if let Some(dataplane) = world.dataplane_mut("default", "dp-000.shop") {
            dataplane.set_online(false);
        }
        let request = get("/meshes/default/dataplanes/dp-000.shop/stats");
        let answer = answer(&mut world, &request, Instant::now());

        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body(&answer)["title"], "Could not execute admin operation");
        assert_eq!(body(&answer)["detail"], "Internal Server Error");
    }

    #[test]
    fn a_proxied_sidecar_is_relayed_with_the_request_usedonly() {
        let mut world = world(1);
        if let Some(dataplane) = world.dataplane_mut("default", "dp-000.shop") {
            dataplane.stats_reply = Reply::proxy("http://127.0.0.1:9901/");
        }
        let path = "/meshes/default/dataplanes/dp-000.shop/stats";
        let mut relayed = |query: &str| {
            answer(&mut world, &get(&format!("{path}{query}")), Instant::now()).relay_from
        };

        assert_eq!(
            relayed("").as_deref(),
            Some("http://127.0.0.1:9901/stats?usedonly")
        );
        assert_eq!(
            relayed("?usedonly=false").as_deref(),
            Some("http://127.0.0.1:9901/stats")
        );
        assert_eq!(
            relayed("?usedonly=true").as_deref(),
            Some("http://127.0.0.1:9901/stats?usedonly")
        );
    }

    #[test]
    fn an_offline_proxied_sidecar_is_not_asked() {
        let mut world = world(1);
        if let Some(dataplane) = world.dataplane_mut("default", "dp-000.shop") {
            dataplane.stats_reply = Reply::proxy("http://127.0.0.1:9901");
            dataplane.set_online(false);
        }
        let request = get("/meshes/default/dataplanes/dp-000.shop/stats");
        let answer = answer(&mut world, &request, Instant::now());

        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer.relay_from, None);
    }

    #[test]
    fn tag_filter_matches_substrings_on_one_inbound_or_the_gateway() {
        let mut world = world(0);
        let sidecar = |name: &str, inbounds: &[(&str, &str)]| {
            inbounds.iter().enumerate().fold(
                SimDataplane::sidecar("default", name, "10.42.0.2"),
                |dp, (i, (service, version))| {
                    let inbound = SimInbound::tcp(8080 + i as u16, service).tag("version", version);
                    dp.inbound(inbound)
                },
            )
        };
        world.add_dataplane(sidecar("redis-0.shop", &[("redis_shop_svc_6379", "v1")]));
        world.add_dataplane(sidecar("cache-0.shop", &[("redis-cache", "v2")]));
        world.add_dataplane(sidecar(
            "web-0.shop",
            &[("web", "v1"), ("redis-admin", "v2")],
        ));
        world.add_dataplane(SimDataplane::gateway(
            "default",
            "edge-gw.shop",
            "10.42.0.3",
            ProxyKind::DelegatedGateway,
        ));
        let mut list = |query: &str| {
            let path = format!("/meshes/default/dataplanes/_overview?{query}");
            names(&answer(&mut world, &get(&path), Instant::now()))
        };

        assert_eq!(list("tag=kuma.io/service:redis").len(), 3);
        assert_eq!(
            list("tag=kuma.io/service:redis-"),
            ["cache-0.shop", "web-0.shop"]
        );
        assert_eq!(
            list("tag=kuma.io/service:redis&tag=version:v1"),
            ["redis-0.shop"],
            "both tags on the same inbound"
        );
        assert_eq!(list("tag=kuma.io/service:edg"), ["edge-gw.shop"]);
        assert_eq!(list("tag=kuma.io/service").len(), 4, "no colon: ignored");
        assert_eq!(list("tag=kuma.io/service:nothing&size=1").len(), 0);
    }

    #[test]
    fn usedonly_follows_go_boolean_syntax() {
        for (query, expected) in [
            ("", true),
            ("?usedonly=false", false),
            ("?usedonly=0", false),
            ("?usedonly=nope", true),
        ] {
            assert_eq!(used_only(&get(&format!("/x{query}"))), expected, "{query}");
        }
    }
}
