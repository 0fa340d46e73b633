//! The JSON shapes of the Kuma API answers strictly reads.
//!
//! Only the fields strictly needs are declared; everything else is ignored, so a
//! newer control plane that adds fields keeps working. Kuma omits zero values
//! (`jsonpb` defaults), so nearly every field is optional or defaults to empty.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One page of a list endpoint: `{"total", "items", "next"}`.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    /// Number of matches across all pages.
    #[serde(default)]
    pub total: Option<u64>,
    pub items: Vec<T>,
    /// Absolute URL of the next page, built by the control plane from the request's
    /// `Host` header, so its host may be wrong behind a port-forward.
    #[serde(default)]
    pub next: Option<String>,
}

/// A `Mesh` resource, as `GET /meshes` lists it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Mesh {
    pub name: String,
    #[serde(default)]
    pub mtls: Option<MeshMtls>,
    #[serde(default, rename = "meshServices")]
    pub mesh_services: Option<MeshServices>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MeshMtls {
    #[serde(default, rename = "enabledBackend")]
    pub enabled_backend: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MeshServices {
    #[serde(default)]
    pub mode: Option<String>,
}

impl Mesh {
    /// Whether the mesh has an mTLS backend enabled. Without one, sidecars have no
    /// TLS or RBAC on their inbounds and every connection is plaintext.
    pub fn mtls_enabled(&self) -> bool {
        self.mtls
            .as_ref()
            .and_then(|m| m.enabled_backend.as_deref())
            .is_some_and(|b| !b.is_empty())
    }

    /// Whether `meshServices.mode` is `Exclusive`, one of the two conditions for
    /// unified stat naming.
    pub fn mesh_services_exclusive(&self) -> bool {
        self.mesh_services
            .as_ref()
            .and_then(|m| m.mode.as_deref())
            .is_some_and(|m| m == "Exclusive")
    }
}

/// One item of `GET /meshes/{mesh}/dataplanes/_overview`.
#[derive(Debug, Clone, Deserialize)]
pub struct DataplaneOverview {
    pub mesh: String,
    pub name: String,
    /// Present from Kuma 2.13 on; its presence also tells that unified names use the
    /// inbound's port name as section.
    #[serde(default)]
    pub kri: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub dataplane: Dataplane,
    /// Omitted when the proxy never connected.
    #[serde(default, rename = "dataplaneInsight")]
    pub insight: Option<DataplaneInsight>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Dataplane {
    pub networking: Networking,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Networking {
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub inbound: Vec<Inbound>,
    /// Set on builtin and delegated gateways, which strictly skips.
    #[serde(default)]
    pub gateway: Option<serde_json::Value>,
    /// Set on zone proxies registered as dataplanes, which strictly skips.
    #[serde(default)]
    pub listeners: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Inbound {
    pub port: u16,
    /// Workload port on universal deployments; the inbound cluster is named after it.
    #[serde(default, rename = "servicePort")]
    pub service_port: Option<u16>,
    /// Inbound-specific address; the dataplane address applies when absent.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The Kubernetes container port name, when the port has one.
    #[serde(default)]
    pub name: Option<String>,
    /// `NotReady` or `Ignored`; `Ready` is the omitted default.
    #[serde(default)]
    pub state: Option<String>,
    /// Kuma 2.14+ only; older versions carry the protocol in the `kuma.io/protocol` tag.
    #[serde(default)]
    pub protocol: Option<String>,
}

impl Inbound {
    /// The `kuma.io/service` tag, the service an inbound belongs to.
    pub fn service(&self) -> Option<&str> {
        self.tags.get("kuma.io/service").map(String::as_str)
    }

    /// The protocol as Kuma configures the listener: the field when present, else the
    /// tag, else `tcp`.
    pub fn protocol(&self) -> &str {
        self.protocol
            .as_deref()
            .or_else(|| self.tags.get("kuma.io/protocol").map(String::as_str))
            .unwrap_or("tcp")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DataplaneInsight {
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    #[serde(default)]
    pub metadata: Option<InsightMetadata>,
    /// Present while the proxy holds mesh certificates: through the mesh's CA
    /// backend or, from Kuma 2.12, a MeshIdentity even in a mesh without mTLS.
    #[serde(default, rename = "mTLS")]
    pub mtls: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Subscription {
    #[serde(default, rename = "connectTime")]
    pub connect_time: Option<String>,
    #[serde(default, rename = "disconnectTime")]
    pub disconnect_time: Option<String>,
}

/// The Envoy node metadata the proxy sent (Kuma 2.11+).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InsightMetadata {
    #[serde(default)]
    pub features: Vec<String>,
}

impl DataplaneOverview {
    /// Online as Kuma defines it: some subscription connected and not disconnected.
    pub fn is_online(&self) -> bool {
        self.insight.as_ref().is_some_and(|i| {
            i.subscriptions
                .iter()
                .any(|s| s.connect_time.is_some() && s.disconnect_time.is_none())
        })
    }

    /// Whether the proxy holds mesh certificates, so its inbounds can do mTLS.
    pub fn has_certificate(&self) -> bool {
        self.insight.as_ref().is_some_and(|i| i.mtls.is_some())
    }

    /// Whether the proxy advertises the unified resource naming feature.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.insight
            .as_ref()
            .and_then(|i| i.metadata.as_ref())
            .is_some_and(|m| m.features.iter().any(|f| f == feature))
    }

    /// Gateways and zone proxies have no sidecar inbound that could go strict.
    pub fn is_sidecar(&self) -> bool {
        let proxy_type = self.labels.get("kuma.io/proxy-type").map(String::as_str);
        self.dataplane.networking.gateway.is_none()
            && self.dataplane.networking.listeners.is_empty()
            && matches!(proxy_type, None | Some("sidecar") | Some("dataplane"))
    }
}

/// Kuma's error body (`/std-errors`); only the parts worth a log line.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub detail: String,
}
