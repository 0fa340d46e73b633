//! From counters to verdicts: pure, with the time passed in.
//!
//! The engine keeps the history a single stats snapshot lacks, per dataplane inbound
//! (keyed by mesh, dataplane name and port, never by pod address), and aggregates
//! replicas into one verdict per service inbound (mesh, `kuma.io/service`, port).
//! Missing, stale or ambiguous data never reads as safe.

mod counters;
mod inbound;
mod service;
mod verdict;
mod window;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

pub use counters::{Counters, Delta, Sample, Totals};
pub use inbound::{InboundStatus, Observed, Unavailable, human, human_coarse};
pub use service::{ReplicaReport, ServiceReport, VerdictChange};
pub use verdict::Verdict;

use inbound::InboundState;

/// Listings in a row an inbound must be missing from before it is forgotten.
const MISSED_LISTINGS_TO_FORGET: u32 = 2;

/// The knobs of the verdict rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How long an inbound must be seen with no plaintext before it is ready.
    pub window: Duration,
    /// mTLS connections needed inside the window as evidence of real traffic.
    pub min_mtls_connections: u64,
    /// Data older than this makes a verdict unknown.
    pub stale_after: Duration,
    /// How long an inbound the control plane stopped listing is kept. Offset paging
    /// can skip an item when another is deleted between two pages, so one missing
    /// listing is not proof that a dataplane is gone.
    pub forget_after: Duration,
}

/// One dataplane inbound.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboundKey {
    pub mesh: String,
    pub dataplane: String,
    pub port: u16,
}

/// One service inbound: every replica's inbound on the same port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub mesh: String,
    pub service: String,
    pub port: u16,
}

impl InboundKey {
    fn service_key(&self, service: &str) -> ServiceKey {
        ServiceKey {
            mesh: self.mesh.clone(),
            service: service.to_string(),
            port: self.port,
        }
    }
}

/// All inbounds strictly knows and what it remembers about their services.
#[derive(Debug)]
pub struct Engine {
    settings: Settings,
    /// Boxed: a tree node has room for eleven entries and is often half full, so
    /// keeping the states themselves out of the nodes halves the memory of a big
    /// mesh.
    inbounds: BTreeMap<InboundKey, Box<InboundState>>,
    services: service::Services,
}

impl Engine {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            inbounds: BTreeMap::new(),
            services: service::Services::default(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Takes in a successful poll of one inbound of a dataplane.
    pub fn observe(
        &mut self,
        key: &InboundKey,
        service: &str,
        sample: Sample,
        now: SystemTime,
    ) -> Observed {
        let state = self.state(key, service, now);
        let observed = state.observe(sample, now);
        let service_key = key.service_key(service);
        self.services.record(&service_key, &observed.totals, now);
        observed
    }

    /// Takes in a poll of one inbound that produced no counters.
    pub fn unavailable(
        &mut self,
        key: &InboundKey,
        service: &str,
        why: Unavailable,
        now: SystemTime,
    ) {
        self.state(key, service, now).unavailable(why, now);
    }

    /// The state of an inbound, made new on first sight or when its service changed.
    fn state(&mut self, key: &InboundKey, service: &str, now: SystemTime) -> &mut InboundState {
        let settings = &self.settings;
        let state = self
            .inbounds
            .entry(key.clone())
            .or_insert_with(|| Box::new(InboundState::new(service, settings, now)));
        if state.service != service {
            **state = InboundState::new(service, settings, now);
        }
        state
    }

    /// Called once per poll cycle, after every listed inbound was observed: forgets
    /// inbounds of the given meshes that missed two listings in a row and were last
    /// listed more than `forget_after` ago. Counting listings as well as time keeps a
    /// long cycle from forgetting what it listed itself. Only meshes whose listing
    /// succeeded may be swept: a control plane that is down must turn verdicts
    /// unknown, not make them vanish.
    ///
    /// What a forgotten inbound's last poll could not tell from plaintext yet
    /// never will be told; its service counts it as plaintext, seen now.
    pub fn sweep(&mut self, listed_meshes: &HashSet<String>, now: SystemTime) {
        let forget_after = self.settings.forget_after;
        let services = &mut self.services;
        self.inbounds.retain(|key, state| {
            if !listed_meshes.contains(&key.mesh) {
                return true;
            }
            if std::mem::take(&mut state.listed_since_sweep) {
                return true;
            }
            state.missed_listings += 1;
            let keep = state.missed_listings < MISSED_LISTINGS_TO_FORGET
                || since(state.last_listed, now) <= forget_after;
            if !keep {
                let left_over = Totals {
                    plaintext: state.unconfirmed(),
                    ..Totals::default()
                };
                services.record(&key.service_key(&state.service), &left_over, now);
            }
            keep
        });
    }

    /// The report of every service inbound, with its replicas, at `now`.
    pub fn report(&mut self, now: SystemTime) -> Vec<ServiceReport> {
        let mut replicas: BTreeMap<ServiceKey, Vec<ReplicaReport>> = BTreeMap::new();
        for (key, state) in &mut self.inbounds {
            let status = state.status(&self.settings, now);
            replicas
                .entry(key.service_key(&state.service))
                .or_default()
                .push(ReplicaReport {
                    dataplane: key.dataplane.clone(),
                    status,
                });
        }
        replicas
            .into_iter()
            .map(|(key, replicas)| self.services.report(key, replicas, &self.settings, now))
            .collect()
    }

    /// Remembers each report's verdict and returns the service inbounds whose verdict
    /// changed since the previous call, for one log line each.
    pub fn changes(&mut self, reports: &[ServiceReport]) -> Vec<VerdictChange> {
        self.services.changes(reports)
    }

    /// Number of dataplanes known per mesh.
    pub fn dataplanes_per_mesh(&self) -> BTreeMap<String, usize> {
        let mut seen: BTreeMap<String, HashSet<&str>> = BTreeMap::new();
        for key in self.inbounds.keys() {
            seen.entry(key.mesh.clone())
                .or_default()
                .insert(key.dataplane.as_str());
        }
        seen.into_iter().map(|(m, d)| (m, d.len())).collect()
    }
}

/// Time from `earlier` to `now`, zero if the clock went back.
pub(crate) fn since(earlier: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(earlier).unwrap_or_default()
}
