//! A simulated Kuma control plane, for tests, the demo and load measurements.
//!
//! It serves the part of Kuma's HTTP API strictly reads, on 127.0.0.1, with
//! Kuma's shapes and Kuma's errors:
//!
//! - `GET /`: which product and version answers (never needs a token);
//! - `GET /meshes`, `GET /meshes/{mesh}`;
//! - `GET /meshes/{mesh}/dataplanes/_overview?size=&offset=`: dataplanes with
//!   their insight, paged (default 100, at most 1000), with a `next` link built
//!   from the request's `Host` header;
//! - `GET /meshes/{mesh}/dataplanes/{name}/_overview`: one of them;
//! - `GET /meshes/{mesh}/dataplanes/{name}/stats?usedonly=`: the sidecar's Envoy
//!   stats text (`usedonly` on by default), rendered from a traffic model or,
//!   with [`Reply::Proxy`], relayed from a real Envoy's admin API.
//!
//! The [`World`] holds meshes, dataplanes and each inbound's [`InboundTraffic`];
//! a [`SimHandle`] changes it while the server runs (traffic, restarts,
//! disconnects, slow or failing sidecars) and reads how much work was done.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use strictly::sim::{InboundTraffic, SimControlPlane, SimDataplane, SimInbound, SimMesh, World};
//!
//! let mut world = World::new();
//! world.add_mesh(SimMesh::permissive("default"));
//! world.add_dataplane(
//!     SimDataplane::sidecar("default", "redis-0.shop", "10.42.0.13")
//!         .inbound(SimInbound::tcp(6379, "redis_shop_svc_6379").named("redis")),
//! );
//! let cp = SimControlPlane::start(world).await?;
//!
//! // A client outside the mesh connects in plaintext.
//! cp.handle().update(|w| {
//!     if let Some(inbound) = w.dataplane_mut("default", "redis-0.shop").and_then(|d| d.inbound_mut(6379)) {
//!         inbound.traffic.plaintext += 1;
//!     }
//! });
//! cp.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod api;
mod body;
mod json;
mod load;
mod relay;
mod render;
pub mod script;
mod server;
mod traffic;
mod world;

pub use json::KUMA_VERSION;
pub use load::Load;
pub use render::render_stats;
pub use server::{SimControlPlane, SimHandle};
pub use traffic::{ConnectionKind, InboundTraffic};
pub use world::{MtlsMode, ProxyKind, Reply, SimDataplane, SimInbound, SimMesh, World, fleet};
