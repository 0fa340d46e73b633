//! Which Envoy stat names belong to a dataplane inbound.
//!
//! Kuma names an inbound's stats in one of two ways, decided per dataplane:
//!
//! - legacy naming (the default in every 2.x release): listener stats under the
//!   listener address (`listener.10.42.0.13_6379.`), the inbound cluster after the
//!   workload port (`cluster.localhost_6379.`), network RBAC under the sanitized
//!   listener name (`inbound_10_42_0_13_6379.rbac.`);
//! - unified naming (opt-in from 2.12, the only one in Kuma 3): one name,
//!   `self_inbound_dp_<section>`, for listener, cluster and RBAC.
//!
//! Every name here is a whole stat name: a sidecar also has outbound listeners on
//! the same port and per-worker listener lines, and neither belongs to the inbound.

use crate::kuma::model::{DataplaneOverview, Inbound, Mesh};

/// The feature a dataplane advertises when it can use unified naming.
pub const UNIFIED_NAMING_FEATURE: &str = "feature-unified-resource-naming";

/// The process-wide gauge that tells how long Envoy has been running.
pub const SERVER_UPTIME: &str = "server.uptime";

/// How a sidecar names the stats of its inbounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    Legacy,
    Unified,
}

/// Where the RBAC filter of an inbound sits, which decides what its counters count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Network RBAC before tcp_proxy: RBAC counts connections.
    Tcp,
    /// HTTP RBAC inside the connection manager: RBAC counts requests, so only the
    /// listener counters can tell connections apart.
    Http,
}

impl Protocol {
    /// Maps `kuma.io/protocol` to where Kuma puts the RBAC filter.
    pub fn from_kuma(protocol: &str) -> Self {
        match protocol {
            "http" | "http2" | "grpc" => Protocol::Http,
            _ => Protocol::Tcp,
        }
    }
}

/// The full stat names strictly reads for one inbound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundStats {
    pub protocol: Protocol,
    pub downstream_cx_total: String,
    pub downstream_cx_active: String,
    pub ssl_handshake: String,
    /// Failed handshakes; each failure moves exactly one of these.
    pub ssl_failures: [String; 5],
    pub upstream_cx_total: String,
    pub rbac_allowed: String,
    pub rbac_denied: String,
}

/// The counters that count a failed TLS handshake, as suffixes of the listener scope.
const SSL_FAILURES: [&str; 5] = [
    "ssl.connection_error",
    "ssl.fail_verify_error",
    "ssl.fail_verify_no_cert",
    "ssl.fail_verify_san",
    "ssl.fail_verify_cert_hash",
];

impl InboundStats {
    /// Names from the three scopes an inbound's stats live in.
    fn new(protocol: Protocol, listener: &str, cluster: &str, rbac: &str) -> Self {
        Self {
            protocol,
            downstream_cx_total: format!("listener.{listener}.downstream_cx_total"),
            downstream_cx_active: format!("listener.{listener}.downstream_cx_active"),
            ssl_handshake: format!("listener.{listener}.ssl.handshake"),
            ssl_failures: SSL_FAILURES.map(|s| format!("listener.{listener}.{s}")),
            upstream_cx_total: format!("cluster.{cluster}.upstream_cx_total"),
            rbac_allowed: format!("{rbac}.rbac.allowed"),
            rbac_denied: format!("{rbac}.rbac.denied"),
        }
    }

    /// Every name this inbound needs, for building a parser query.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        [
            &self.downstream_cx_total,
            &self.downstream_cx_active,
            &self.ssl_handshake,
            &self.upstream_cx_total,
            &self.rbac_allowed,
            &self.rbac_denied,
        ]
        .into_iter()
        .chain(self.ssl_failures.iter())
        .map(String::as_str)
    }
}

/// Decides the naming of one dataplane from its overview item and its mesh: unified
/// only when the proxy advertises the feature and the mesh runs MeshServices in
/// `Exclusive` mode, as Kuma itself decides.
pub fn naming_of(dataplane: &DataplaneOverview, mesh: &Mesh) -> Naming {
    if dataplane.has_feature(UNIFIED_NAMING_FEATURE) && mesh.mesh_services_exclusive() {
        Naming::Unified
    } else {
        Naming::Legacy
    }
}

/// The three scopes an inbound's stats live in, from which [`InboundScopes::stats`]
/// spells out the names: a quarter of their size, for keeping many inbounds
/// between listing and reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundScopes {
    pub protocol: Protocol,
    listener: String,
    cluster: String,
    rbac: String,
}

impl InboundScopes {
    pub fn stats(&self) -> InboundStats {
        InboundStats::new(self.protocol, &self.listener, &self.cluster, &self.rbac)
    }
}

/// Resolves the stat names of one inbound of a dataplane.
pub fn inbound_stats(
    dataplane: &DataplaneOverview,
    inbound: &Inbound,
    naming: Naming,
) -> InboundStats {
    inbound_scopes(dataplane, inbound, naming).stats()
}

/// Resolves the scopes of one inbound of a dataplane.
pub fn inbound_scopes(
    dataplane: &DataplaneOverview,
    inbound: &Inbound,
    naming: Naming,
) -> InboundScopes {
    let protocol = Protocol::from_kuma(inbound.protocol());
    match naming {
        Naming::Legacy => legacy(dataplane, inbound, protocol),
        Naming::Unified => {
            let name = format!("self_inbound_dp_{}", unified_section(dataplane, inbound));
            InboundScopes {
                protocol,
                listener: name.clone(),
                cluster: name.clone(),
                rbac: name,
            }
        }
    }
}

fn legacy(dataplane: &DataplaneOverview, inbound: &Inbound, protocol: Protocol) -> InboundScopes {
    let address = inbound
        .address
        .as_deref()
        .unwrap_or(&dataplane.dataplane.networking.address);
    let workload_port = inbound.service_port.unwrap_or(inbound.port);

    let host = bracketed(address);
    let listener = format!("{host}_{}", inbound.port).replace(':', "_");
    let cluster = format!("localhost_{workload_port}");
    let rbac = sanitize(&format!("inbound:{host}:{}", inbound.port));
    InboundScopes {
        protocol,
        listener,
        cluster,
        rbac,
    }
}

/// An address as it stands before a port: IPv6 in brackets. Envoy names a listener's
/// stats after that form with `:` turned into `_` (`10.42.0.13_6379`,
/// `[fd00__5]_6379`); Kuma names the listener `inbound:<host>:<port>`.
fn bracketed(address: &str) -> String {
    if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

/// The section of a unified name. Kuma 2.12 used the workload port; 2.13 and later
/// use the inbound's port name when it has one, else the dataplane port. Only 2.13
/// and later put `kri` into resource meta, so its presence tells the two apart per
/// dataplane.
fn unified_section(dataplane: &DataplaneOverview, inbound: &Inbound) -> String {
    match (&dataplane.kri, inbound.name.as_deref()) {
        (Some(_), Some(name)) if !name.is_empty() => name.to_string(),
        (Some(_), _) => inbound.port.to_string(),
        (None, _) => inbound.service_port.unwrap_or(inbound.port).to_string(),
    }
}

/// Kuma's stat-prefix sanitizer: every character outside `[A-Za-z0-9_-]` becomes `_`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overview(json: serde_json::Value) -> DataplaneOverview {
        serde_json::from_value(json).expect("test overview is valid")
    }

    fn redis(kri: bool, features: &[&str]) -> DataplaneOverview {
        let mut item = serde_json::json!({
            "mesh": "default",
            "name": "redis-1.shop",
            "dataplane": {"networking": {"address": "10.42.0.13", "inbound": [{
                "port": 6379, "name": "redis",
                "tags": {"kuma.io/service": "redis_shop_svc_6379", "kuma.io/protocol": "tcp"}
            }]}},
            "dataplaneInsight": {"subscriptions": [{"connectTime": "2026-03-02T09:14:09Z"}],
                                 "metadata": {"features": features}}
        });
        if kri {
            item["kri"] = "kri_dp_default_zone-1_shop_redis-1_".into();
        }
        overview(item)
    }

    fn mesh(exclusive: bool) -> Mesh {
        let mode = if exclusive { "Exclusive" } else { "Disabled" };
        serde_json::from_value(
            serde_json::json!({"name": "default", "meshServices": {"mode": mode}}),
        )
        .expect("test mesh is valid")
    }

    #[test]
    fn legacy_names_follow_address_and_workload_port() {
        let dp = redis(true, &[]);
        let stats = inbound_stats(&dp, &dp.dataplane.networking.inbound[0], Naming::Legacy);

        assert_eq!(
            stats.downstream_cx_total,
            "listener.10.42.0.13_6379.downstream_cx_total"
        );
        assert_eq!(
            stats.ssl_handshake,
            "listener.10.42.0.13_6379.ssl.handshake"
        );
        assert_eq!(
            stats.upstream_cx_total,
            "cluster.localhost_6379.upstream_cx_total"
        );
        assert_eq!(stats.rbac_allowed, "inbound_10_42_0_13_6379.rbac.allowed");
        assert_eq!(
            stats.ssl_failures[2],
            "listener.10.42.0.13_6379.ssl.fail_verify_no_cert"
        );
        assert_eq!(stats.protocol, Protocol::Tcp);
    }

    #[test]
    fn legacy_cluster_uses_service_port_on_universal() {
        let mut dp = redis(false, &[]);
        dp.dataplane.networking.inbound[0].port = 16379;
        dp.dataplane.networking.inbound[0].service_port = Some(6379);
        let stats = inbound_stats(&dp, &dp.dataplane.networking.inbound[0], Naming::Legacy);

        assert_eq!(
            stats.upstream_cx_total,
            "cluster.localhost_6379.upstream_cx_total"
        );
        assert_eq!(
            stats.downstream_cx_total,
            "listener.10.42.0.13_16379.downstream_cx_total"
        );
        assert_eq!(stats.rbac_denied, "inbound_10_42_0_13_16379.rbac.denied");
    }

    #[test]
    fn legacy_ipv6_names() {
        let mut dp = redis(false, &[]);
        dp.dataplane.networking.address = "fd00::5".into();
        let stats = inbound_stats(&dp, &dp.dataplane.networking.inbound[0], Naming::Legacy);

        assert_eq!(
            stats.downstream_cx_total,
            "listener.[fd00__5]_6379.downstream_cx_total"
        );
        assert_eq!(stats.rbac_allowed, "inbound__fd00__5__6379.rbac.allowed");
    }

    #[test]
    fn unified_naming_needs_feature_and_exclusive_mesh() {
        let with = redis(true, &[UNIFIED_NAMING_FEATURE]);
        let without = redis(true, &["feature-bind-outbounds"]);

        assert_eq!(naming_of(&with, &mesh(true)), Naming::Unified);
        assert_eq!(naming_of(&with, &mesh(false)), Naming::Legacy);
        assert_eq!(naming_of(&without, &mesh(true)), Naming::Legacy);
    }

    #[test]
    fn unified_section_is_port_name_from_2_13_and_port_number_before() {
        let new = redis(true, &[UNIFIED_NAMING_FEATURE]);
        let old = redis(false, &[UNIFIED_NAMING_FEATURE]);
        let new_stats = inbound_stats(&new, &new.dataplane.networking.inbound[0], Naming::Unified);
        let old_stats = inbound_stats(&old, &old.dataplane.networking.inbound[0], Naming::Unified);

        assert_eq!(
            new_stats.downstream_cx_total,
            "listener.self_inbound_dp_redis.downstream_cx_total"
        );
        assert_eq!(
            new_stats.upstream_cx_total,
            "cluster.self_inbound_dp_redis.upstream_cx_total"
        );
        assert_eq!(new_stats.rbac_allowed, "self_inbound_dp_redis.rbac.allowed");
        assert_eq!(
            old_stats.ssl_handshake,
            "listener.self_inbound_dp_6379.ssl.handshake"
        );
    }

    #[test]
    fn http_protocols_use_the_listener_rule() {
        assert_eq!(Protocol::from_kuma("http"), Protocol::Http);
        assert_eq!(Protocol::from_kuma("grpc"), Protocol::Http);
        assert_eq!(Protocol::from_kuma("tcp"), Protocol::Tcp);
        assert_eq!(Protocol::from_kuma("kafka"), Protocol::Tcp);
    }

    #[test]
    fn names_lists_every_wanted_stat_once() {
        let dp = redis(true, &[]);
        let stats = inbound_stats(&dp, &dp.dataplane.networking.inbound[0], Naming::Legacy);
        let names: Vec<&str> = stats.names().collect();
        let unique: std::collections::HashSet<&str> = names.iter().copied().collect();

        assert_eq!(names.len(), 11);
        assert_eq!(unique.len(), 11);
    }
}
