//! The JSON a simulated control plane answers with, shaped like Kuma 2.13's.
//!
//! Kuma renders resources with protobuf's JSON mapping: camelCase names, zero
//! values left out, 64-bit counters as strings. The same rules apply here, so a
//! reader that copes with these answers copes with a real control plane's.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::world::{MtlsMode, ProxyKind, SimDataplane, SimInbound, SimMesh, Subscription};

/// The Kuma version the simulated control plane and its proxies report.
pub const KUMA_VERSION: &str = "2.13.4";

const ENVOY_VERSION: &str = "1.36.8";
const CONTROL_PLANE_INSTANCE: &str = "kuma-control-plane-sim-4e1a";

/// How long the builtin CA's certificates live; Kuma's default is a day.
const CERTIFICATE_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// `GET /`: which product and version answers.
pub(crate) fn index() -> Value {
    json!({
        "hostname": "kuma-control-plane-sim",
        "product": "Kuma",
        "version": KUMA_VERSION,
        "instanceId": CONTROL_PLANE_INSTANCE,
        "clusterId": "5f6c1e2a-8d3b-4a7e-b9c0-2d4e6f8a1b3c",
        "gui": "The gui is available at /gui",
    })
}

/// Kuma's error body (`/std-errors`); `details` is the deprecated copy of
/// `detail` Kuma still sends.
pub(crate) fn error(status: u16, title: &str, detail: &str) -> Value {
    json!({
        "type": "/std-errors",
        "status": status,
        "title": title,
        "detail": detail,
        "details": detail,
    })
}

/// An error about one query parameter, as Kuma reports a bad page size.
pub(crate) fn parameter_error(
    status: u16,
    title: &str,
    detail: &str,
    field: &str,
    reason: &str,
) -> Value {
    let mut body = error(status, title, detail);
    body["invalid_parameters"] = json!([{"field": field, "reason": reason}]);
    body["causes"] = json!([{"field": field, "message": reason}]);
    body
}

/// One page of a list answer.
pub(crate) fn page(total: usize, items: Vec<Value>, next: Option<String>) -> Value {
    json!({"total": total, "items": items, "next": next})
}

/// A `Mesh`. A Strict backend's `mode` is left out: it is the enum's zero value.
pub(crate) fn mesh(mesh: &SimMesh) -> Value {
    let mut item = json!({
        "type": "Mesh",
        "name": mesh.name,
        "creationTime": "2026-02-27T15:58:02Z",
        "modificationTime": "2026-02-27T15:58:02Z",
        "kri": format!("kri_m____{}_", mesh.name),
    });
    if let Some(mode) = mesh.mtls {
        let mut backend = json!({"name": "ca-1", "type": "builtin"});
        if mode == MtlsMode::Permissive {
            backend["mode"] = "PERMISSIVE".into();
        }
        item["mtls"] = json!({"enabledBackend": "ca-1", "backends": [backend]});
    }
    if mesh.mesh_services_exclusive {
        item["meshServices"] = json!({"mode": "Exclusive"});
    }
    item
}

/// One `_overview` item: the dataplane with its insight. The insight is left
/// out until the proxy first connected, as in Kuma.
pub(crate) fn overview(dataplane: &SimDataplane, mesh: Option<&SimMesh>) -> Value {
    let created = rfc3339(dataplane.created);
    let mut item = json!({
        "type": "DataplaneOverview",
        "mesh": dataplane.mesh,
        "name": dataplane.name,
        "creationTime": created,
        "modificationTime": created,
        "dataplane": {"networking": networking(dataplane)},
    });
    if !dataplane.labels.is_empty() {
        item["labels"] = json!(dataplane.labels);
    }
    if dataplane.kri {
        item["kri"] = kri(dataplane).into();
    }
    if !dataplane.subscriptions.is_empty() {
        item["dataplaneInsight"] = insight(dataplane, mesh);
    }
    item
}

/// `kri_dp_<mesh>_<zone>_<namespace>_<name>_`, from the Kubernetes labels.
fn kri(dataplane: &SimDataplane) -> String {
    let label = |key: &str| dataplane.labels.get(key).map_or("", String::as_str);
    format!(
        "kri_dp_{}_{}_{}_{}_",
        dataplane.mesh,
        label("kuma.io/zone"),
        label("k8s.kuma.io/namespace"),
        label("kuma.io/display-name"),
    )
}

fn networking(dataplane: &SimDataplane) -> Value {
    let mut networking = json!({"address": dataplane.address});
    match dataplane.kind {
        ProxyKind::Sidecar => {
            let inbounds: Vec<Value> = dataplane.inbounds.iter().map(inbound).collect();
            networking["inbound"] = inbounds.into();
        }
        ProxyKind::BuiltinGateway | ProxyKind::DelegatedGateway => {
            networking["gateway"] = gateway(dataplane);
        }
    }
    networking
}

/// A gateway's tags; `DELEGATED` is the enum's zero value, so only a builtin
/// gateway names its type.
fn gateway(dataplane: &SimDataplane) -> Value {
    let mut gateway = json!({"tags": {"kuma.io/service": dataplane.gateway_service()}});
    if dataplane.kind == ProxyKind::BuiltinGateway {
        gateway["type"] = "BUILTIN".into();
    }
    gateway
}

/// An inbound; a ready one has `health.ready` and no `state`, as Kuma omits the
/// default `Ready`.
fn inbound(inbound: &SimInbound) -> Value {
    let mut item = json!({"port": inbound.port, "tags": inbound.tags});
    if let Some(port) = inbound.service_port {
        item["servicePort"] = port.into();
    }
    if inbound.ready {
        item["health"] = json!({"ready": true});
    } else {
        item["health"] = json!({});
        item["state"] = "NotReady".into();
    }
    if let Some(name) = &inbound.name {
        item["name"] = name.as_str().into();
    }
    item
}

fn insight(dataplane: &SimDataplane, mesh: Option<&SimMesh>) -> Value {
    let subscriptions: Vec<Value> = dataplane.subscriptions.iter().map(subscription).collect();
    let proxy_type = match dataplane.kind {
        ProxyKind::Sidecar => "dataplane",
        ProxyKind::BuiltinGateway | ProxyKind::DelegatedGateway => "gateway",
    };
    let mut insight = json!({
        "subscriptions": subscriptions,
        "metadata": {
            "dataplane.admin.port": "9901",
            "dataplane.proxyType": proxy_type,
            "features": dataplane.features,
        },
    });

    // Kuma clears the mTLS block when the mesh has no mTLS.
    let connected = dataplane.subscriptions.last().map(|s| s.connected);
    if let (Some(_), Some(connected)) = (mesh.and_then(|m| m.mtls), connected) {
        insight["mTLS"] = json!({
            "certificateExpirationTime": rfc3339(connected + CERTIFICATE_LIFETIME),
            "lastCertificateRegeneration": rfc3339_nanos(connected),
            "certificateRegenerations": 1,
            "issuedBackend": "ca-1",
            "supportedBackends": ["ca-1"],
        });
    }
    insight
}

fn subscription(subscription: &Subscription) -> Value {
    let responses = json!({"responsesSent": "7", "responsesAcknowledged": "7"});
    let mut item = json!({
        "id": subscription.id,
        "controlPlaneInstanceId": CONTROL_PLANE_INSTANCE,
        "connectTime": rfc3339_nanos(subscription.connected),
        "status": {
            "lastUpdateTime": rfc3339_nanos(subscription.connected),
            "total": {"responsesSent": "28", "responsesAcknowledged": "28"},
            "cds": responses,
            "eds": responses,
            "lds": responses,
            "rds": responses,
        },
        "version": {
            "kumaDp": {
                "version": KUMA_VERSION,
                "gitTag": format!("v{KUMA_VERSION}"),
                "gitCommit": "3f0e9a7c1b52d4e68a09f2c7d1e4b6a8c5d03e91",
                "buildDate": "2026-02-11T10:32:07Z",
                "kumaCpCompatible": true,
            },
            "envoy": {
                "version": ENVOY_VERSION,
                "build": format!("c4a1f7e2d9b03856e1f0a7d4c2b9e8f6a3d5c710/{ENVOY_VERSION}/Clean/RELEASE/BoringSSL"),
                "kumaDpCompatible": true,
            },
        },
        "generation": 4,
    });
    if let Some(disconnected) = subscription.disconnected {
        item["disconnectTime"] = rfc3339_nanos(disconnected).into();
    }
    item
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn rfc3339_nanos(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}
