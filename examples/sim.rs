//! A simulated control plane that serves a fleet until it is killed, for
//! measuring a real `strictly run` (or a shell script) from another process.
//!
//! `cargo run --release --example sim -- [--dataplanes N] [--inbounds K]
//! [--latency-ms MS]`
//!
//! Serves N sidecars (default 10,000) in the permissive mesh `default`, each with
//! K TCP inbounds (default 2) that have seen only mTLS, their stats answers padded
//! to the size current Kuma relays for a sidecar with 600 outbound clusters, and
//! MS milliseconds late (default 0). It
//! listens on a free port of 127.0.0.1 and prints the API's URL as its first
//! line; SIGINT stops it cleanly, SIGTERM at once.

#[path = "../benches/support/mod.rs"]
mod support;

use strictly::sim::SimControlPlane;
use support::option;

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dataplanes: usize = option("--dataplanes").map_or(Ok(10_000), |n| n.parse())?;
    let inbounds: u16 = option("--inbounds").map_or(Ok(2), |n| n.parse())?;

    let latency: u64 = option("--latency-ms").map_or(Ok(0), |l| l.parse())?;

    let mut world = support::world(dataplanes, inbounds, support::padding()?);
    support::delay_stats(&mut world, std::time::Duration::from_millis(latency));
    let cp = SimControlPlane::start(world).await?;
    println!("{}", cp.url());

    tokio::signal::ctrl_c().await?;
    cp.shutdown().await;
    Ok(())
}
