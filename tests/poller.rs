//! One poll cycle against the simulated control plane, and what it costs the
//! control plane: which requests go out, for which selection and which shard.

#[path = "../benches/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use strictly::exporter::Published;
use strictly::poller::{Poller, Selection};
use strictly::shard::{Shard, shard_of};
use strictly::sim::{
    InboundTraffic, Load, ProxyKind, SimControlPlane, SimDataplane, SimInbound, SimMesh, World,
    fleet,
};

/// A poller against `url` for `selection` and `shard`, and where it publishes.
fn poller(url: &str, selection: Selection, shard: Shard) -> (Poller, Published) {
    let config = support::client_config(url, 8, Duration::from_secs(5));
    support::poller(config, selection, shard).expect("test config is valid")
}

/// Runs one cycle and returns the control plane's load and the dataplanes reported,
/// as `mesh/name`.
async fn one_cycle(
    cp: &SimControlPlane,
    selection: Selection,
    shard: Shard,
) -> (Load, BTreeSet<String>) {
    let (mut poller, published) = poller(&cp.url(), selection, shard);
    cp.handle().reset_load();
    poller.cycle().await;
    let load = cp.handle().load();

    let snapshot = published.latest().expect("a cycle publishes");
    let reported = snapshot
        .reports
        .iter()
        .flat_map(|r| {
            let mesh = &r.key.mesh;
            r.replicas
                .iter()
                .map(move |d| format!("{mesh}/{}", d.dataplane))
        })
        .collect();
    (load, reported)
}

fn mesh_of(name: &str, dataplanes: Vec<SimDataplane>) -> World {
    let mut world = World::new();
    world.add_mesh(SimMesh::permissive(name));
    world.add_dataplanes(dataplanes);
    world
}

/// Fleets in two permissive meshes, `default` and `other`.
async fn two_meshes(default: usize, other: usize) -> SimControlPlane {
    let mut world = mesh_of("default", fleet("default", default));
    world.add_mesh(SimMesh::permissive("other"));
    world.add_dataplanes(fleet("other", other));
    SimControlPlane::start(world).await.expect("sim binds")
}

fn sidecar(name: &str, service: &str) -> SimDataplane {
    let traffic = InboundTraffic {
        mtls: 3,
        ..InboundTraffic::default()
    };
    SimDataplane::sidecar("default", name, "10.9.0.1")
        .inbound(SimInbound::tcp(6379, service).with_traffic(traffic))
}

#[tokio::test]
async fn stats_are_asked_only_of_online_sidecars_with_mtls() {
    let mut world = mesh_of("default", fleet("default", 1010));
    world.add_mesh(SimMesh::without_mtls("plain"));
    world.add_dataplanes(fleet("plain", 3));
    let mut offline = sidecar("offline-0.shop", "offline");
    offline.set_online(false);
    world.add_dataplane(offline);
    world.add_dataplane(SimDataplane::gateway(
        "default",
        "edge-0.shop",
        "10.9.0.2",
        ProxyKind::BuiltinGateway,
    ));
    let cp = SimControlPlane::start(world).await.expect("sim binds");

    let (load, reported) = one_cycle(&cp, Selection::default(), Shard::ALL).await;

    assert_eq!(load.stats_requests, 1010);
    assert_eq!(load.requests, 1 + 2 + 1 + 1010, "meshes, pages, stats");
    assert_eq!(reported.len(), 1010 + 3 + 1, "every sidecar is reported");
    cp.shutdown().await;
}

#[tokio::test]
async fn a_mesh_without_mtls_reads_as_plaintext_without_a_request() {
    let mut world = World::new();
    world.add_mesh(SimMesh::without_mtls("plain"));
    world.add_dataplanes(fleet("plain", 2));
    let cp = SimControlPlane::start(world).await.expect("sim binds");
    let (mut poller, published) = poller(&cp.url(), Selection::default(), Shard::ALL);

    poller.cycle().await;

    let snapshot = published.latest().expect("a cycle publishes");
    assert_eq!(cp.handle().load().stats_requests, 0);
    let report = &snapshot.reports[0];
    assert_eq!(report.verdict.as_str(), "plaintext");
    assert!(
        report.reason.contains("mTLS looks disabled"),
        "{}",
        report.reason
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn a_service_selection_is_narrowed_by_the_control_plane_and_matched_exactly() {
    let mut dataplanes = vec![
        sidecar("redis-0.shop", "redis"),
        sidecar("redis-1.shop", "redis"),
        sidecar("cache-0.shop", "redis-cache"),
        sidecar("web-0.shop", "web"),
    ];
    dataplanes.extend(fleet("default", 500));
    let cp = SimControlPlane::start(mesh_of("default", dataplanes))
        .await
        .expect("sim binds");
    let (_, everything) = one_cycle(&cp, Selection::default(), Shard::ALL).await;
    let full_listing = cp.handle().load();

    let selection = Selection {
        meshes: Vec::new(),
        services: vec!["redis".into(), "web".into(), "redis".into()],
    };
    let (load, reported) = one_cycle(&cp, selection, Shard::ALL).await;

    let expected = [
        "default/redis-0.shop",
        "default/redis-1.shop",
        "default/web-0.shop",
    ];
    assert_eq!(reported, expected.map(String::from).into());
    assert_eq!(
        load.stats_requests, 3,
        "not the substring match redis-cache"
    );
    assert_eq!(
        load.requests,
        1 + 2 + 3,
        "meshes, one listing per service, stats"
    );
    assert_eq!(everything.len(), 504);
    assert!(load.bytes_served * 50 < full_listing.bytes_served);
    cp.shutdown().await;
}

#[tokio::test]
async fn a_mesh_selection_lists_only_those_meshes() {
    let cp = two_meshes(20, 30).await;
    let selection = Selection {
        meshes: vec!["other".into()],
        services: Vec::new(),
    };

    let (load, reported) = one_cycle(&cp, selection, Shard::ALL).await;

    assert_eq!(reported.len(), 30);
    assert_eq!(load.requests, 1 + 1 + 30);
    cp.shutdown().await;
}

#[tokio::test]
async fn shards_split_the_dataplanes_and_the_stats_requests_exactly() {
    let cp = two_meshes(300, 100).await;
    let (_, all) = one_cycle(&cp, Selection::default(), Shard::ALL).await;

    for count in [2, 3, 5] {
        let mut union = BTreeSet::new();
        let mut stats_requests = 0;
        for index in 0..count {
            let shard = Shard::new(index, count).expect("valid shard");
            let (load, reported) = one_cycle(&cp, Selection::default(), shard).await;
            stats_requests += load.stats_requests;

            assert!(!reported.is_empty(), "shard {shard} is empty");
            assert!(union.is_disjoint(&reported), "shard {shard} overlaps");
            union.extend(reported);
        }
        assert_eq!(union, all, "{count} shards cover every dataplane");
        assert_eq!(stats_requests, 400, "{count} shards read each sidecar once");
    }
    cp.shutdown().await;
}

#[test]
fn shards_are_balanced_on_a_large_fleet() {
    let names: Vec<String> = fleet("default", 10_000)
        .into_iter()
        .map(|d| d.name)
        .collect();
    for count in 2..=8u32 {
        let mut sizes = vec![0usize; count as usize];
        for name in &names {
            sizes[shard_of("default", name, count) as usize] += 1;
        }
        let fair = names.len() / count as usize;
        for size in sizes {
            assert!(
                size.abs_diff(fair) * 10 < fair,
                "{count} shards: {size} vs {fair}"
            );
        }
    }
}

proptest! {
    /// Every dataplane belongs to exactly one shard of a set, whatever the names.
    #[test]
    fn every_dataplane_is_in_exactly_one_shard(
        dataplanes in prop::collection::vec(("\\PC{0,12}", "\\PC{0,40}"), 1..50),
        count in 1u32..40,
    ) {
        for (mesh, name) in &dataplanes {
            let owners = (0..count)
                .filter(|&index| Shard::new(index, count).is_ok_and(|s| s.owns(mesh, name)))
                .count();
            prop_assert_eq!(owners, 1, "{:?}/{:?} with {} shards", mesh, name, count);
        }
    }
}
