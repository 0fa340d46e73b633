//! A script of phases that drives the simulated world over time: "plaintext for
//! 20 s, then mTLS only". Tests, the demo and benchmarks all play scripts the same
//! way.
//!
//! Each phase applies its changes when it starts (a dataplane appears, a sidecar
//! restarts, a long-lived connection closes), then adds traffic at steady rates
//! until its time is up. Rates are connections per second of scripted time; the
//! player's speed stretches or shrinks the whole script.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::server::SimHandle;
use super::traffic::ConnectionKind;
use super::world::{SimDataplane, World};

/// How often the player adds traffic: often enough that a poll every second sees
/// steady movement.
const TICK: Duration = Duration::from_millis(100);

/// One inbound of one dataplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub mesh: String,
    pub dataplane: String,
    pub port: u16,
}

impl Target {
    pub fn new(mesh: &str, dataplane: &str, port: u16) -> Self {
        Self {
            mesh: mesh.to_string(),
            dataplane: dataplane.to_string(),
            port,
        }
    }
}

/// Connections of one kind arriving at an inbound at a steady rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub to: Target,
    pub kind: ConnectionKind,
    pub per_second: f64,
}

/// A change to the world at the start of a phase.
#[derive(Debug, Clone)]
pub enum Change {
    Add(Box<SimDataplane>),
    Remove {
        mesh: String,
        dataplane: String,
    },
    Restart {
        mesh: String,
        dataplane: String,
    },
    Online {
        mesh: String,
        dataplane: String,
        online: bool,
    },
    /// Sets the connections open right now on an inbound.
    Active {
        to: Target,
        active: u64,
    },
}

/// One stretch of the script.
#[derive(Debug, Clone)]
pub struct Phase {
    /// One line for people, said when the phase starts.
    pub story: String,
    /// `None` for a last phase that runs until the player is stopped.
    pub lasts: Option<Duration>,
    pub changes: Vec<Change>,
    pub flows: Vec<Flow>,
}

impl Phase {
    pub fn new(story: &str, lasts: Option<Duration>) -> Self {
        Self {
            story: story.to_string(),
            lasts,
            changes: Vec::new(),
            flows: Vec::new(),
        }
    }

    pub fn change(mut self, change: Change) -> Self {
        self.changes.push(change);
        self
    }

    pub fn flow(mut self, to: Target, kind: ConnectionKind, per_second: f64) -> Self {
        self.flows.push(Flow {
            to,
            kind,
            per_second,
        });
        self
    }
}

/// Plays `phases` against the world behind `handle`, `speed` times faster than
/// scripted (2.0 halves every phase). Calls `on_phase` with each phase's number
/// and story as it starts. Returns only after a phase with a fixed length ends
/// the script; a last phase without one runs until the future is dropped.
pub async fn play(
    handle: &SimHandle,
    phases: &[Phase],
    speed: f64,
    mut on_phase: impl FnMut(usize, &Phase),
) {
    let speed = if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    };
    for (number, phase) in phases.iter().enumerate() {
        on_phase(number + 1, phase);
        handle.update(|world| phase.changes.iter().for_each(|c| apply(world, c)));
        run_flows(handle, phase, speed).await;
    }
}

async fn run_flows(handle: &SimHandle, phase: &Phase, speed: f64) {
    let ends = phase.lasts.map(|d| Instant::now() + d.div_f64(speed));
    let mut owed = vec![0.0_f64; phase.flows.len()];
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = Instant::now();

    loop {
        ticks.tick().await;
        let now = Instant::now();
        let scripted = now.duration_since(last).as_secs_f64() * speed;
        last = now;
        handle.update(|world| add_traffic(world, &phase.flows, &mut owed, scripted));
        if ends.is_some_and(|end| now >= end) {
            return;
        }
    }
}

/// Adds whole connections for `seconds` of scripted time, carrying the fractions
/// over so that slow rates still add up.
fn add_traffic(world: &mut World, flows: &[Flow], owed: &mut [f64], seconds: f64) {
    for (flow, owed) in flows.iter().zip(owed.iter_mut()) {
        *owed += flow.per_second * seconds;
        // Tenths summed in floating point fall just short of whole numbers.
        let whole = (*owed + 1e-9).floor();
        *owed = (*owed - whole).max(0.0);
        if whole >= 1.0 {
            let to = &flow.to;
            if let Some(inbound) = world
                .dataplane_mut(&to.mesh, &to.dataplane)
                .and_then(|d| d.inbound_mut(to.port))
            {
                inbound.traffic.add(flow.kind, whole as u64);
            }
        }
    }
}

fn apply(world: &mut World, change: &Change) {
    match change {
        Change::Add(dataplane) => {
            // The script was written before the play started; the sidecar starts now.
            let mut dataplane = SimDataplane::clone(dataplane);
            dataplane.started = Instant::now();
            world.add_dataplane(dataplane);
        }
        Change::Remove { mesh, dataplane } => {
            world.remove_dataplane(mesh, dataplane);
        }
        Change::Restart { mesh, dataplane } => {
            if let Some(d) = world.dataplane_mut(mesh, dataplane) {
                d.restart();
            }
        }
        Change::Online {
            mesh,
            dataplane,
            online,
        } => {
            if let Some(d) = world.dataplane_mut(mesh, dataplane) {
                d.set_online(*online);
            }
        }
        Change::Active { to, active } => {
            if let Some(inbound) = world
                .dataplane_mut(&to.mesh, &to.dataplane)
                .and_then(|d| d.inbound_mut(to.port))
            {
                inbound.traffic.active = *active;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimControlPlane, SimInbound, SimMesh};

    fn redis() -> Target {
        Target::new("default", "redis-0.shop", 6379)
    }

    fn traffic(handle: &SimHandle) -> crate::sim::InboundTraffic {
        handle.read(|w| {
            w.dataplane("default", "redis-0.shop")
                .map(|d| d.inbounds[0].traffic)
                .unwrap_or_default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn phases_add_traffic_at_their_rates_and_apply_changes() {
        let mut world = World::new();
        world.add_mesh(SimMesh::permissive("default"));
        world.add_dataplane(
            SimDataplane::sidecar("default", "redis-0.shop", "10.42.0.13")
                .inbound(SimInbound::tcp(6379, "redis")),
        );
        let cp = SimControlPlane::start(world).await.expect("sim binds");
        let handle = cp.handle();

        let phases = [
            Phase::new("plaintext", Some(Duration::from_secs(10)))
                .change(Change::Active {
                    to: redis(),
                    active: 1,
                })
                .flow(redis(), ConnectionKind::Plaintext, 0.5),
            Phase::new("mtls", Some(Duration::from_secs(4)))
                .change(Change::Active {
                    to: redis(),
                    active: 0,
                })
                .flow(redis(), ConnectionKind::Mtls, 3.0),
        ];
        let mut stories = Vec::new();
        play(&handle, &phases, 2.0, |n, p| {
            stories.push(format!("{n} {}", p.story))
        })
        .await;

        let seen = traffic(&handle);
        assert_eq!(stories, ["1 plaintext", "2 mtls"]);
        assert_eq!(seen.plaintext, 5, "{seen:?}");
        assert_eq!(seen.mtls, 12, "{seen:?}");
        assert_eq!(seen.active, 0);
        cp.shutdown().await;
    }
}
