//! The state a simulated control plane serves: meshes, dataplanes, their
//! sidecars' traffic, and the faults a test wants to see.
//!
//! Everything is plain data a test or a script changes between requests through
//! [`super::SimHandle::update`]; the server only reads it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;

use super::traffic::InboundTraffic;
use crate::naming::UNIFIED_NAMING_FEATURE;

/// How a mesh runs mTLS, as its builtin CA backend says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsMode {
    Permissive,
    Strict,
}

/// A mesh as `GET /meshes` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMesh {
    pub name: String,
    /// `None` for a mesh without mTLS: sidecars then have no TLS or RBAC at all.
    pub mtls: Option<MtlsMode>,
    /// `meshServices.mode: Exclusive`, one of the two conditions for unified names.
    pub mesh_services_exclusive: bool,
}

impl SimMesh {
    /// A mesh with the builtin CA `ca-1` in Permissive mode, the starting point of
    /// every migration.
    pub fn permissive(name: &str) -> Self {
        Self::with_mtls(name, Some(MtlsMode::Permissive))
    }

    /// A mesh with the builtin CA `ca-1` in Strict mode.
    pub fn strict(name: &str) -> Self {
        Self::with_mtls(name, Some(MtlsMode::Strict))
    }

    /// A mesh without mTLS, as Kuma creates `default`.
    pub fn without_mtls(name: &str) -> Self {
        Self::with_mtls(name, None)
    }

    /// Turns on `meshServices.mode: Exclusive`.
    pub fn exclusive_mesh_services(mut self) -> Self {
        self.mesh_services_exclusive = true;
        self
    }

    fn with_mtls(name: &str, mtls: Option<MtlsMode>) -> Self {
        Self {
            name: name.to_string(),
            mtls,
            mesh_services_exclusive: false,
        }
    }
}

/// One inbound of a sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimInbound {
    pub port: u16,
    /// Workload port when it differs from `port` (universal deployments).
    pub service_port: Option<u16>,
    /// Kubernetes container port name.
    pub name: Option<String>,
    /// Tags, `kuma.io/service` and `kuma.io/protocol` among them.
    pub tags: BTreeMap<String, String>,
    /// `false` renders `state: NotReady` and an empty `health`.
    pub ready: bool,
    pub traffic: InboundTraffic,
    /// Requests each allowed connection makes on an HTTP inbound, whose RBAC
    /// counts requests rather than connections.
    pub requests_per_connection: u64,
}

impl SimInbound {
    /// A TCP inbound of service `service`.
    pub fn tcp(port: u16, service: &str) -> Self {
        Self::new(port, service, "tcp")
    }

    /// An HTTP inbound of service `service`.
    pub fn http(port: u16, service: &str) -> Self {
        Self::new(port, service, "http")
    }

    /// An inbound with any `kuma.io/protocol` value (`grpc`, `kafka`, …).
    pub fn new(port: u16, service: &str, protocol: &str) -> Self {
        let tags = BTreeMap::from([
            ("kuma.io/protocol".to_string(), protocol.to_string()),
            ("kuma.io/service".to_string(), service.to_string()),
        ]);
        Self {
            port,
            service_port: None,
            name: None,
            tags,
            ready: true,
            traffic: InboundTraffic::default(),
            requests_per_connection: 3,
        }
    }

    /// Gives the inbound a container port name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// Sets a workload port different from the inbound port.
    pub fn service_port(mut self, port: u16) -> Self {
        self.service_port = Some(port);
        self
    }

    /// Starts the inbound with this traffic already counted.
    pub fn with_traffic(mut self, traffic: InboundTraffic) -> Self {
        self.traffic = traffic;
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_string(), value.to_string());
        self
    }

    /// The `kuma.io/service` tag.
    pub fn service(&self) -> &str {
        self.tags.get("kuma.io/service").map_or("", String::as_str)
    }

    /// The `kuma.io/protocol` tag, `tcp` when absent as in Kuma.
    pub fn protocol(&self) -> &str {
        self.tags
            .get("kuma.io/protocol")
            .map_or("tcp", String::as_str)
    }

    /// The workload port the inbound cluster is named after.
    pub fn workload_port(&self) -> u16 {
        self.service_port.unwrap_or(self.port)
    }
}

/// What kind of proxy a dataplane is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Sidecar,
    BuiltinGateway,
    DelegatedGateway,
}

/// How the control plane answers a request, when not the way Kuma normally would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// What Kuma would answer: for stats, the text rendered from the counters.
    Normal,
    /// An error status with Kuma's `/std-errors` body.
    Error {
        status: u16,
        title: String,
        detail: String,
    },
    /// `200` with this exact body.
    Fixed {
        content_type: &'static str,
        body: Bytes,
    },
    /// `200` with bytes that are neither stats text nor JSON.
    Garbage,
    /// `200` with a body of this many bytes of filler, streamed without a
    /// `Content-Length`, never held in memory whole.
    Oversized { bytes: u64 },
    /// What a real Envoy's admin API at `admin_url` (`http://127.0.0.1:9901`)
    /// answers to `/stats`, asked the way Kuma asks it; Kuma's admin failure
    /// when that Envoy cannot be reached or does not answer `200`.
    Proxy { admin_url: String },
}

impl Reply {
    /// Kuma's answer when a sidecar cannot be reached or Envoy fails.
    pub fn admin_failure() -> Self {
        Self::error(
            500,
            "Could not execute admin operation",
            "Internal Server Error",
        )
    }

    /// An error with Kuma's body.
    pub fn error(status: u16, title: &str, detail: &str) -> Self {
        Self::Error {
            status,
            title: title.to_string(),
            detail: detail.to_string(),
        }
    }

    /// `200 text/plain` with this body.
    pub fn text(body: &str) -> Self {
        Self::Fixed {
            content_type: "text/plain",
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    /// `200 application/json` with this body, valid JSON or not.
    pub fn json(body: &str) -> Self {
        Self::Fixed {
            content_type: "application/json",
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    /// Stats read from the real Envoy whose admin API is at `admin_url`.
    pub fn proxy(admin_url: &str) -> Self {
        Self::Proxy {
            admin_url: admin_url.trim_end_matches('/').to_string(),
        }
    }
}

/// One xDS stream of the proxy to the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub id: String,
    pub connected: SystemTime,
    pub disconnected: Option<SystemTime>,
}

/// A dataplane and its sidecar.
#[derive(Debug, Clone)]
pub struct SimDataplane {
    pub mesh: String,
    /// On Kubernetes `<pod>.<namespace>`.
    pub name: String,
    /// The pod IP.
    pub address: String,
    pub kind: ProxyKind,
    pub inbounds: Vec<SimInbound>,
    pub labels: BTreeMap<String, String>,
    /// Features the proxy advertises in its metadata.
    pub features: Vec<String>,
    /// Kuma 2.13+ behaviour: `kri` in the JSON, and port names as sections of
    /// unified stat names. `false` gives 2.12's port-number sections.
    pub kri: bool,
    /// How `/stats` is answered while the sidecar is online; an offline sidecar
    /// always gets Kuma's admin failure.
    pub stats_reply: Reply,
    /// Wait before answering `/stats`: a slow sidecar.
    pub stats_delay: Duration,
    /// Connections the app made through an outbound listener on the same port as
    /// its first inbound: noise a stat-name matcher must not pick up.
    pub outbound_connections: u64,
    pub(crate) created: SystemTime,
    pub(crate) online: bool,
    pub(crate) started: Instant,
    /// How long Envoy had been running when `started` was taken.
    pub(crate) uptime_at_start: Duration,
    pub(crate) subscriptions: Vec<Subscription>,
    /// xDS streams opened so far, for fresh subscription ids.
    streams: usize,
    /// `/stats` requests the sidecar served: they show as admin listener traffic.
    pub(crate) admin_requests: u64,
}

impl SimDataplane {
    /// A Kubernetes-style sidecar `name` (`<pod>.<namespace>`) with pod IP
    /// `address`, online, just started, with no inbounds yet.
    pub fn sidecar(mesh: &str, name: &str, address: &str) -> Self {
        let mut dataplane = Self::proxy(mesh, name, address, ProxyKind::Sidecar);
        dataplane.connect();
        dataplane
    }

    /// A gateway, which strictly skips: no inbounds, `networking.gateway` set.
    pub fn gateway(mesh: &str, name: &str, address: &str, kind: ProxyKind) -> Self {
        let mut dataplane = Self::proxy(mesh, name, address, kind);
        let proxy_type = if kind == ProxyKind::Sidecar {
            "sidecar"
        } else {
            "gateway"
        };
        dataplane
            .labels
            .insert("kuma.io/proxy-type".into(), proxy_type.into());
        dataplane.connect();
        dataplane
    }

    /// Adds an inbound.
    pub fn inbound(mut self, inbound: SimInbound) -> Self {
        self.inbounds.push(inbound);
        self
    }

    /// Advertises unified resource naming; the names change only in a mesh with
    /// `meshServices.mode: Exclusive`, as in Kuma.
    pub fn unified_naming(mut self) -> Self {
        self.features.push(UNIFIED_NAMING_FEATURE.to_string());
        self
    }

    /// Makes the dataplane look like a Kuma 2.12 one: no `kri`, port numbers as
    /// unified sections.
    pub fn without_kri(mut self) -> Self {
        self.kri = false;
        self
    }

    /// Starts Envoy as if it had been running this long already.
    pub fn with_uptime(mut self, uptime: Duration) -> Self {
        self.uptime_at_start = uptime;
        self
    }

    /// The inbound on `port`.
    pub fn inbound_mut(&mut self, port: u16) -> Option<&mut SimInbound> {
        self.inbounds.iter_mut().find(|i| i.port == port)
    }

    /// Whether the proxy holds an open xDS stream.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Connects or disconnects the proxy. Envoy keeps running across a control
    /// plane disconnect, so counters and uptime stay.
    pub fn set_online(&mut self, online: bool) {
        if online && !self.online {
            self.connect();
        } else if !online && self.online {
            self.disconnect();
        }
    }

    /// Restarts the sidecar: a new Envoy with zero counters and zero uptime,
    /// and a new xDS stream.
    pub fn restart(&mut self) {
        for inbound in &mut self.inbounds {
            inbound.traffic = InboundTraffic::default();
        }
        self.admin_requests = 0;
        self.uptime_at_start = Duration::ZERO;
        self.started = Instant::now();
        self.disconnect();
        self.connect();
    }

    /// How long Envoy has been running at `now`.
    pub fn uptime(&self, now: Instant) -> Duration {
        self.uptime_at_start + now.saturating_duration_since(self.started)
    }

    /// Kuma's `tag=` filter: whether one inbound, or the gateway, carries every
    /// given tag with the given value as a substring of its own.
    pub(crate) fn matches_tags_fuzzy(&self, wanted: &BTreeMap<String, String>) -> bool {
        let matches = |tags: &BTreeMap<String, String>| {
            wanted
                .iter()
                .all(|(key, value)| tags.get(key).is_some_and(|v| v.contains(value.as_str())))
        };
        match self.kind {
            ProxyKind::Sidecar => self.inbounds.iter().any(|i| matches(&i.tags)),
            ProxyKind::BuiltinGateway | ProxyKind::DelegatedGateway => {
                matches(&BTreeMap::from([(
                    "kuma.io/service".to_string(),
                    self.gateway_service().to_string(),
                )]))
            }
        }
    }

    /// The service a gateway's tags name: its `app` label, else its name.
    pub(crate) fn gateway_service(&self) -> &str {
        self.labels
            .get("app")
            .map_or(self.name.as_str(), String::as_str)
    }

    /// Whether the proxy advertises a feature.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }

    fn proxy(mesh: &str, name: &str, address: &str, kind: ProxyKind) -> Self {
        Self {
            mesh: mesh.to_string(),
            name: name.to_string(),
            address: address.to_string(),
            kind,
            inbounds: Vec::new(),
            labels: kubernetes_labels(mesh, name),
            features: vec!["feature-transparent-proxy-in-dataplane-metadata".into()],
            kri: true,
            stats_reply: Reply::Normal,
            stats_delay: Duration::ZERO,
            outbound_connections: 11,
            created: SystemTime::now(),
            online: false,
            started: Instant::now(),
            uptime_at_start: Duration::ZERO,
            subscriptions: Vec::new(),
            streams: 0,
            admin_requests: 0,
        }
    }

    /// Opens an xDS stream. Kuma keeps the last two streams of a proxy by default.
    fn connect(&mut self) {
        let id = subscription_id(&self.name, self.streams);
        self.streams += 1;
        self.subscriptions.push(Subscription {
            id,
            connected: SystemTime::now(),
            disconnected: None,
        });
        if self.subscriptions.len() > SUBSCRIPTIONS_KEPT {
            self.subscriptions.remove(0);
        }
        self.online = true;
    }

    fn disconnect(&mut self) {
        if let Some(last) = self.subscriptions.last_mut() {
            last.disconnected.get_or_insert_with(SystemTime::now);
        }
        self.online = false;
    }
}

/// Kuma's default `subscriptionLimit`.
const SUBSCRIPTIONS_KEPT: usize = 2;

/// The labels a zone control plane on Kubernetes puts on a dataplane.
fn kubernetes_labels(mesh: &str, name: &str) -> BTreeMap<String, String> {
    let (pod, namespace) = name.rsplit_once('.').unwrap_or((name, "default"));
    let app = pod.split('-').next().unwrap_or(pod);
    [
        ("app", app),
        ("k8s.kuma.io/namespace", namespace),
        ("kuma.io/display-name", pod),
        ("kuma.io/env", "kubernetes"),
        ("kuma.io/mesh", mesh),
        ("kuma.io/origin", "zone"),
        ("kuma.io/proxy-type", "sidecar"),
        ("kuma.io/zone", "zone-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A stable UUID-shaped id, so two runs serve the same JSON.
fn subscription_id(name: &str, index: usize) -> String {
    let hash = fnv1a(name.as_bytes()) ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        hash >> 32,
        (hash >> 16) & 0xffff,
        hash & 0xfff,
        (hash >> 12) & 0xfff,
        hash & 0xffff_ffff_ffff
    )
}

/// FNV-1a: a tiny stable hash for ids and fake addresses.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Everything the simulated control plane knows.
#[derive(Clone, Default)]
pub struct World {
    meshes: BTreeMap<String, SimMesh>,
    /// Per mesh, sorted by name: Kuma pages through (mesh, name) order.
    dataplanes: BTreeMap<String, BTreeMap<String, SimDataplane>>,
    pub(crate) token: Option<String>,
    pub(crate) next_host: Option<String>,
    pub(crate) overrides: HashMap<String, Reply>,
    /// Stat lines served before every sidecar's own; empty by default.
    pub(crate) stats_padding: Bytes,
}

impl World {
    /// An empty world: no mesh, no dataplane, no token required.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a mesh.
    pub fn add_mesh(&mut self, mesh: SimMesh) -> &mut Self {
        self.meshes.insert(mesh.name.clone(), mesh);
        self
    }

    /// Adds or replaces a dataplane. Its mesh is not checked: a dataplane of an
    /// unknown mesh is served as one of a mesh without mTLS.
    pub fn add_dataplane(&mut self, dataplane: SimDataplane) -> &mut Self {
        self.dataplanes
            .entry(dataplane.mesh.clone())
            .or_default()
            .insert(dataplane.name.clone(), dataplane);
        self
    }

    /// Adds many dataplanes, as [`fleet`] builds them.
    pub fn add_dataplanes(
        &mut self,
        dataplanes: impl IntoIterator<Item = SimDataplane>,
    ) -> &mut Self {
        for dataplane in dataplanes {
            self.add_dataplane(dataplane);
        }
        self
    }

    /// Removes a dataplane, as Kubernetes does when its pod is deleted.
    pub fn remove_dataplane(&mut self, mesh: &str, name: &str) -> Option<SimDataplane> {
        self.dataplanes.get_mut(mesh)?.remove(name)
    }

    /// The mesh called `name`.
    pub fn mesh(&self, name: &str) -> Option<&SimMesh> {
        self.meshes.get(name)
    }

    /// The mesh called `name`, to change its mTLS or naming settings.
    pub fn mesh_mut(&mut self, name: &str) -> Option<&mut SimMesh> {
        self.meshes.get_mut(name)
    }

    /// Every mesh, sorted by name.
    pub fn meshes(&self) -> impl Iterator<Item = &SimMesh> {
        self.meshes.values()
    }

    /// One dataplane.
    pub fn dataplane(&self, mesh: &str, name: &str) -> Option<&SimDataplane> {
        self.dataplanes.get(mesh)?.get(name)
    }

    /// One dataplane, to change its traffic, state or answers.
    pub fn dataplane_mut(&mut self, mesh: &str, name: &str) -> Option<&mut SimDataplane> {
        self.dataplanes.get_mut(mesh)?.get_mut(name)
    }

    /// The dataplanes of a mesh, sorted by name.
    pub fn dataplanes(&self, mesh: &str) -> impl Iterator<Item = &SimDataplane> {
        self.dataplanes
            .get(mesh)
            .into_iter()
            .flat_map(|d| d.values())
    }

    /// Every dataplane of every mesh, for changes that apply to all of them.
    pub fn dataplanes_mut(&mut self) -> impl Iterator<Item = &mut SimDataplane> {
        self.dataplanes.values_mut().flat_map(|d| d.values_mut())
    }

    /// Requires `Authorization: Bearer <token>` on every request but `GET /`.
    pub fn require_token(&mut self, token: Option<&str>) -> &mut Self {
        self.token = token.map(str::to_string);
        self
    }

    /// Builds `next` links with this host instead of the request's `Host` header,
    /// as a control plane behind a port-forward or proxy does.
    pub fn lie_about_host(&mut self, host: Option<&str>) -> &mut Self {
        self.next_host = host.map(str::to_string);
        self
    }

    /// Serves these stat lines ahead of every sidecar's rendered `/stats`: the
    /// outbound clusters a big sidecar carries, so that load measurements move
    /// bodies of a real size. They must end in a newline and must not name a
    /// stat the rendering writes, as the first line of a name wins.
    pub fn pad_stats(&mut self, lines: impl Into<Bytes>) -> &mut Self {
        self.stats_padding = lines.into();
        self
    }

    /// Answers every request for this exact path (query ignored) this way;
    /// [`Reply::Normal`] removes the override.
    pub fn override_path(&mut self, path: &str, reply: Reply) -> &mut Self {
        if reply == Reply::Normal {
            self.overrides.remove(path);
        } else {
            self.overrides.insert(path.to_string(), reply);
        }
        self
    }
}

/// A summary: a world of 10,000 dataplanes is too much to print, and a required
/// token is a secret even in a simulation.
impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dataplanes: usize = self.dataplanes.values().map(BTreeMap::len).sum();
        f.debug_struct("World")
            .field("meshes", &self.meshes.keys().collect::<Vec<_>>())
            .field("dataplanes", &dataplanes)
            .field("token_required", &self.token.is_some())
            .field("next_host", &self.next_host)
            .field("overrides", &self.overrides.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `count` sidecars in `mesh` for load tests, named `fleet-00000.shop` and so on,
/// four replicas per service, each with one TCP inbound on 8080 that has seen
/// only mesh mTLS. Addresses are distinct pod IPs from 10.42.0.2 on.
pub fn fleet(mesh: &str, count: usize) -> Vec<SimDataplane> {
    (0..count).map(|i| fleet_member(mesh, i)).collect()
}

fn fleet_member(mesh: &str, index: usize) -> SimDataplane {
    let address = format!(
        "10.{}.{}.{}",
        42 + index / 62_500,
        index / 250 % 250,
        index % 250 + 2
    );
    let service = format!("fleet-{}_shop_svc_8080", index / 4);
    let traffic = InboundTraffic {
        mtls: 10 + (index % 7) as u64,
        ..InboundTraffic::default()
    };

    let name = format!("fleet-{index:05}.shop");
    SimDataplane::sidecar(mesh, &name, &address)
        .inbound(
            SimInbound::tcp(8080, &service)
                .named("app")
                .with_traffic(traffic),
        )
        .with_uptime(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_resets_counters_uptime_and_stream() {
        let traffic = InboundTraffic {
            plaintext: 4,
            mtls: 9,
            ..InboundTraffic::default()
        };
        let mut dataplane = SimDataplane::sidecar("default", "redis-1.shop", "10.42.0.13")
            .inbound(SimInbound::tcp(6379, "redis").with_traffic(traffic))
            .with_uptime(Duration::from_secs(90_000));
        dataplane.restart();

        assert_eq!(dataplane.inbounds[0].traffic, InboundTraffic::default());
        assert!(dataplane.uptime(Instant::now()) < Duration::from_secs(5));
        assert_eq!(dataplane.subscriptions.len(), 2);
        assert!(dataplane.subscriptions[0].disconnected.is_some());
        assert!(dataplane.is_online());
    }

    #[test]
    fn offline_keeps_counters_and_closes_the_stream() {
        let mut dataplane = SimDataplane::sidecar("default", "redis-1.shop", "10.42.0.13")
            .inbound(SimInbound::tcp(6379, "redis"));
        dataplane.inbound_mut(6379).expect("inbound").traffic.mtls = 3;
        dataplane.set_online(false);

        assert!(!dataplane.is_online());
        assert!(dataplane.subscriptions[0].disconnected.is_some());
        assert_eq!(dataplane.inbounds[0].traffic.mtls, 3);
    }

    #[test]
    fn fleet_members_have_distinct_names_and_addresses() {
        let fleet = fleet("default", 1000);
        let names: std::collections::HashSet<_> = fleet.iter().map(|d| &d.name).collect();
        let addresses: std::collections::HashSet<_> = fleet.iter().map(|d| &d.address).collect();

        assert_eq!(names.len(), 1000);
        assert_eq!(addresses.len(), 1000);
    }

    #[test]
    fn labels_follow_the_pod_and_namespace() {
        let dataplane =
            SimDataplane::sidecar("default", "redis-6d8f7b9c4-k2xlp.shop", "10.42.0.13");

        assert_eq!(dataplane.labels["app"], "redis");
        assert_eq!(dataplane.labels["k8s.kuma.io/namespace"], "shop");
        assert_eq!(
            dataplane.labels["kuma.io/display-name"],
            "redis-6d8f7b9c4-k2xlp"
        );
    }
}
