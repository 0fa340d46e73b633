//! The poll loop: list dataplanes, read their stats, feed the engine, publish.
//!
//! One cycle runs at a time: a slow control plane stretches the cycle, it never piles
//! up requests. Within a cycle the client keeps at most `--concurrency` requests in
//! flight, and a dataplane the listing shows offline is not asked for stats at all.
//!
//! The listing asks the control plane for no more than the selection needs: only
//! the selected meshes, and with `--service` only dataplanes tagged with one of
//! the services. A daemon with `--shard` still lists every dataplane, since the
//! API cannot filter by hash, and reads the stats of its own share only.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::engine::{Counters, Engine, InboundKey, Sample, Unavailable, human};
use crate::envoy::stats::{StatQuery, StatReader, StatValues};
use crate::exporter::metrics::SelfMetrics;
use crate::exporter::{Published, Snapshot};
use crate::kuma::client::{KumaClient, KumaError};
use crate::kuma::model::{DataplaneOverview, Mesh};
use crate::naming::{self, InboundScopes, InboundStats, Protocol};
use crate::shard::Shard;

/// Stats present in every Envoy dump; a body with neither is not Envoy stats.
const SERVER_LIVE: &str = "server.live";

/// Which meshes and services to look at; empty means all.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub meshes: Vec<String>,
    pub services: Vec<String>,
}

impl Selection {
    fn mesh(&self, name: &str) -> bool {
        self.meshes.is_empty() || self.meshes.iter().any(|m| m == name)
    }

    fn service(&self, name: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|s| s == name)
    }

    /// Whether a dataplane has an inbound of a selected service; exact, unlike
    /// the control plane's tag filter.
    fn serves_any(&self, dataplane: &DataplaneOverview) -> bool {
        self.services.is_empty()
            || dataplane
                .dataplane
                .networking
                .inbound
                .iter()
                .filter_map(|i| i.service())
                .any(|s| self.service(s))
    }
}

/// One dataplane to read, with the stat scopes of its selected inbounds. A big
/// mesh holds one per sidecar for a whole cycle, so it keeps no more than the
/// read needs.
#[derive(Debug)]
struct Target {
    mesh: String,
    name: String,
    online: bool,
    /// The mesh has an mTLS backend or the sidecar holds a certificate.
    mtls_enabled: bool,
    inbounds: Vec<TargetInbound>,
}

#[derive(Debug)]
struct TargetInbound {
    port: u16,
    service: String,
    scopes: InboundScopes,
}

impl Target {
    fn key(&self, inbound: &TargetInbound) -> InboundKey {
        InboundKey {
            mesh: self.mesh.clone(),
            dataplane: self.name.clone(),
            port: inbound.port,
        }
    }
}

/// What the listing step found.
#[derive(Debug, Default)]
struct Listing {
    targets: Vec<Target>,
    /// Meshes whose dataplane listing succeeded: only they may be swept.
    complete_meshes: HashSet<String>,
    sidecars_per_mesh: BTreeMap<String, i64>,
    up: bool,
}

/// How far a cycle got, for a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    Listing { mesh: &'a str },
    Reading { done: usize, total: usize },
}

type ProgressFn = Box<dyn Fn(Progress<'_>) + Send + Sync>;

impl Listing {
    /// Takes in the sidecars of a mesh whose listing succeeded; their number is
    /// what `strictly_dataplanes` shows, and those with a selected inbound are read.
    fn add_mesh(&mut self, mesh: &str, targets: Vec<Target>) {
        self.complete_meshes.insert(mesh.to_string());
        self.sidecars_per_mesh.insert(
            mesh.to_string(),
            i64::try_from(targets.len()).unwrap_or(i64::MAX),
        );
        self.targets
            .extend(targets.into_iter().filter(|t| !t.inbounds.is_empty()));
    }
}

/// The poll loop's state: the client, the engine and where results go.
pub struct Poller {
    client: KumaClient,
    engine: Engine,
    selection: Selection,
    shard: Shard,
    metrics: SelfMetrics,
    published: Published,
    exported_meshes: HashSet<String>,
    progress: Option<ProgressFn>,
}

impl Poller {
    pub fn new(
        client: KumaClient,
        engine: Engine,
        selection: Selection,
        metrics: SelfMetrics,
        published: Published,
    ) -> Self {
        Self {
            client,
            engine,
            selection,
            shard: Shard::ALL,
            metrics,
            published,
            exported_meshes: HashSet::new(),
            progress: None,
        }
    }

    /// Reports how far each cycle got, as it goes.
    pub fn with_progress(
        mut self,
        progress: impl Fn(Progress<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    fn report_progress(&self, progress: Progress<'_>) {
        if let Some(report) = &self.progress {
            report(progress);
        }
    }

    /// Limits the poller to one shard of the dataplanes.
    pub fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = shard;
        self.metrics.shard_index.set(i64::from(shard.index()));
        self.metrics.shard_count.set(i64::from(shard.count()));
        self
    }

    /// Runs one cycle per `interval` until `shutdown` completes. A cycle in flight
    /// when it does gets `grace` to finish, so the last verdicts are published.
    pub async fn run(
        mut self,
        interval: Duration,
        grace: Duration,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let started = tokio::time::Instant::now();
            let cycle = self.cycle();
            tokio::pin!(cycle);
            tokio::select! {
                () = &mut cycle => {}
                () = &mut shutdown => {
                    info!(grace = %humantime::format_duration(grace), "finishing the poll cycle in flight");
                    if tokio::time::timeout(grace, cycle).await.is_err() {
                        warn!("the poll cycle did not finish within the grace period; stopping anyway");
                    }
                    return;
                }
            }

            let next = started + jittered(interval);
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = &mut shutdown => return,
            }
        }
    }

    /// Lists, reads, judges and publishes once.
    pub async fn cycle(&mut self) {
        let started = Instant::now();
        let mut listing = self.list().await;
        debug!(
            dataplanes = listing.targets.len(),
            meshes = listing.complete_meshes.len(),
            "listed dataplanes"
        );

        let targets = std::mem::take(&mut listing.targets);
        let read = targets.len();
        self.read_all(targets).await;

        let now = SystemTime::now();
        self.engine.sweep(&listing.complete_meshes, now);
        let reports = self.engine.report(now);
        for change in self.engine.changes(&reports) {
            info!(
                mesh = %change.key.mesh,
                kuma_service = %change.key.service,
                port = change.key.port,
                from = change.from.map_or("none", |v| v.as_str()),
                to = %change.to,
                reason = %change.reason,
                "verdict changed"
            );
        }

        self.export_dataplanes(&listing);
        self.metrics.up.set(i64::from(listing.up));
        let elapsed = started.elapsed();
        self.metrics.poll_duration.observe(elapsed.as_secs_f64());
        debug!(
            dataplanes = read,
            elapsed_ms = elapsed.as_millis() as u64,
            "poll cycle done"
        );
        self.warn_if_slow(elapsed, read);
        self.published.publish(Snapshot {
            at: now,
            reports,
            up: listing.up,
        });
    }

    /// A sidecar read early in a cycle is as old as the cycle when the cycle
    /// ends. Once cycles take half of `--stale-after`, a slower control plane
    /// turns verdicts `unknown` for no fault of the sidecars; say so while there
    /// is still room.
    fn warn_if_slow(&self, elapsed: Duration, dataplanes: usize) {
        let stale_after = self.engine.settings().stale_after;
        if elapsed > stale_after / 2 {
            warn!(
                elapsed = %human(elapsed),
                stale_after = %human(stale_after),
                dataplanes,
                "the poll cycle took over half of --stale-after; raise --concurrency, split the \
                 dataplanes with --shard or lengthen --stale-after before verdicts go unknown"
            );
        }
    }

    async fn list(&self) -> Listing {
        let mut listing = Listing::default();
        let meshes = match self.client.meshes().await {
            Ok(meshes) => meshes,
            Err(err) => {
                warn!(error = %err, "listing meshes failed");
                self.metrics.poll_error(err.reason());
                return listing;
            }
        };
        for wanted in &self.selection.meshes {
            if !meshes.iter().any(|m| &m.name == wanted) {
                warn!(mesh = %wanted, "selected mesh does not exist in the control plane");
            }
        }

        listing.up = true;
        for mesh in meshes.iter().filter(|m| self.selection.mesh(&m.name)) {
            self.report_progress(Progress::Listing { mesh: &mesh.name });
            match self.list_mesh(mesh).await {
                Ok(targets) => listing.add_mesh(&mesh.name, targets),
                Err(err) => {
                    warn!(mesh = %mesh.name, error = %err, "listing dataplanes failed");
                    self.metrics.poll_error(err.reason());
                    listing.up = false;
                }
            }
        }
        // A mesh that was deleted is complete too: its inbounds must go.
        let listed: HashSet<&str> = meshes.iter().map(|m| m.name.as_str()).collect();
        listing.complete_meshes.extend(
            self.exported_meshes
                .iter()
                .filter(|m| !listed.contains(m.as_str()))
                .cloned(),
        );
        listing
    }

    /// The sidecars of a mesh this daemon reads: those of its shard that serve a
    /// selected service. Each page of the listing is turned into targets as it
    /// arrives, so the full overviews of a big mesh are never all in memory. With
    /// `--service` the control plane narrows the list, one listing per service;
    /// a sidecar with inbounds of two selected services comes back twice and is
    /// kept once.
    async fn list_mesh(&self, mesh: &Mesh) -> Result<Vec<Target>, KumaError> {
        let mut targets = Vec::new();
        let mut seen = HashSet::new();
        let mut take = |page: Vec<DataplaneOverview>| {
            let selected = page
                .iter()
                .filter(|d| d.is_sidecar() && self.shard.owns(&mesh.name, &d.name))
                .filter(|d| self.selection.serves_any(d));
            for dataplane in selected {
                if self.selection.services.len() < 2 || seen.insert(dataplane.name.clone()) {
                    targets.push(self.target(mesh, dataplane));
                }
            }
        };

        if self.selection.services.is_empty() {
            self.client
                .dataplane_pages(&mesh.name, None, &mut take)
                .await?;
        }
        let services: BTreeSet<&String> = self.selection.services.iter().collect();
        for service in services {
            self.client
                .dataplane_pages(&mesh.name, Some(service), &mut take)
                .await?;
        }
        Ok(targets)
    }

    fn target(&self, mesh: &Mesh, dataplane: &DataplaneOverview) -> Target {
        let naming = naming::naming_of(dataplane, mesh);
        let inbounds = dataplane
            .dataplane
            .networking
            .inbound
            .iter()
            .filter(|i| i.state.as_deref() != Some("Ignored"))
            .filter_map(|inbound| {
                let service = inbound.service()?;
                self.selection.service(service).then(|| TargetInbound {
                    port: inbound.port,
                    service: service.to_string(),
                    scopes: naming::inbound_scopes(dataplane, inbound, naming),
                })
            })
            .collect();
        Target {
            mesh: mesh.name.clone(),
            name: dataplane.name.clone(),
            online: dataplane.is_online(),
            mtls_enabled: mesh.mtls_enabled() || dataplane.has_certificate(),
            inbounds,
        }
    }

    /// Reads the stats of every target that can have an answer. `--concurrency`
    /// workers take targets from one queue, each parsing a body as it arrives,
    /// so what a read holds (its query, its buffers) exists for a handful of
    /// targets at a time, not for every sidecar of a big mesh, and a worker goes
    /// on to the next target without waiting for this task. An offline sidecar
    /// cannot answer, and one without mTLS has no counter that could change the
    /// verdict, so neither costs the control plane a request.
    async fn read_all(&mut self, targets: Vec<Target>) {
        let mut readable = Vec::with_capacity(targets.len());
        for target in targets {
            if !target.online {
                self.unavailable(&target, Unavailable::Offline, SystemTime::now());
            } else if !target.mtls_enabled {
                self.unavailable(&target, Unavailable::MtlsDisabled, SystemTime::now());
            } else {
                readable.push(target);
            }
        }

        let total = readable.len();
        let (mut reads, mut workers) = self.spawn_readers(readable);
        let mut done = 0;
        while let Some((target, result, at)) = reads.recv().await {
            done += 1;
            self.report_progress(Progress::Reading { done, total });
            self.take_in(&target, result, at);
        }
        while let Some(joined) = workers.join_next().await {
            if let Err(err) = joined {
                warn!(error = %err, "a stats worker failed");
            }
        }
    }

    /// Starts `--concurrency` workers (fewer for a short queue) that take
    /// targets from one queue and send back what they read.
    fn spawn_readers(&self, readable: Vec<Target>) -> (mpsc::Receiver<Read>, JoinSet<()>) {
        let count = self.client.concurrency().min(readable.len());
        let queue = Arc::new(Mutex::new(readable.into_iter()));
        let (finished, reads) = mpsc::channel(count.max(1));
        let mut workers = JoinSet::new();
        for _ in 0..count {
            workers.spawn(read_worker(
                self.client.clone(),
                queue.clone(),
                finished.clone(),
            ));
        }
        (reads, workers)
    }

    /// Marks every inbound of `target` as without data at `at`, for `why`.
    fn unavailable(&mut self, target: &Target, why: Unavailable, at: SystemTime) {
        for inbound in &target.inbounds {
            self.engine
                .unavailable(&target.key(inbound), &inbound.service, why.clone(), at);
        }
    }

    fn take_in(&mut self, target: &Target, result: Result<Vec<Sample>, ReadError>, at: SystemTime) {
        let samples = match result {
            Ok(samples) => samples,
            Err(err) => {
                warn!(mesh = %target.mesh, dataplane = %target.name, error = %err.message, "reading stats failed");
                self.metrics.poll_error(err.reason);
                self.unavailable(target, Unavailable::StatsFailed(err.message), at);
                return;
            }
        };

        for (inbound, sample) in target.inbounds.iter().zip(samples) {
            let observed = self
                .engine
                .observe(&target.key(inbound), &inbound.service, sample, at);
            if observed.restarted {
                info!(mesh = %target.mesh, dataplane = %target.name, port = inbound.port, "Envoy restarted; counters were reset");
            }
            if let Some((listener_rule, cluster_rule)) = observed.disagreement {
                debug!(
                    mesh = %target.mesh,
                    dataplane = %target.name,
                    port = inbound.port,
                    listener_rule,
                    cluster_rule = %cluster_rule,
                    "listener and cluster rules disagree on plaintext; trusting the listener rule"
                );
            }
        }
    }

    /// Sets `strictly_dataplanes` per mesh; a mesh whose listing failed keeps its
    /// last value, a mesh that was deleted loses its series.
    fn export_dataplanes(&mut self, listing: &Listing) {
        for (mesh, count) in &listing.sidecars_per_mesh {
            self.metrics
                .dataplanes
                .get_or_create(&[("mesh", mesh.clone())])
                .set(*count);
            self.exported_meshes.insert(mesh.clone());
        }
        let deleted: Vec<String> = listing
            .complete_meshes
            .iter()
            .filter(|m| !listing.sidecars_per_mesh.contains_key(*m))
            .cloned()
            .collect();
        for mesh in deleted {
            self.metrics.dataplanes.remove(&[("mesh", mesh.clone())]);
            self.exported_meshes.remove(&mesh);
        }
    }
}

/// A finished stats read: the target, its samples or why there are none, and when.
type Read = (Target, Result<Vec<Sample>, ReadError>, SystemTime);

/// A failed stats read, with the reason it is counted under.
#[derive(Debug)]
struct ReadError {
    reason: crate::kuma::error::ErrorReason,
    message: String,
}

/// Reads targets from `queue` until it is empty, sending each result to `done`.
async fn read_worker(client: KumaClient, queue: Arc<Mutex<Queue>>, done: mpsc::Sender<Read>) {
    loop {
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
        let Some(target) = next else {
            return;
        };
        let result = read_target(&client, &target).await;
        if done
            .send((target, result, SystemTime::now()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The targets still to read.
type Queue = std::vec::IntoIter<Target>;

/// Reads one sidecar's stats as the body arrives, without keeping it.
async fn read_target(client: &KumaClient, target: &Target) -> Result<Vec<Sample>, ReadError> {
    let stats: Vec<InboundStats> = target.inbounds.iter().map(|i| i.scopes.stats()).collect();
    let names = stats
        .iter()
        .flat_map(InboundStats::names)
        .chain([naming::SERVER_UPTIME, SERVER_LIVE]);
    let query = StatQuery::new(names);
    let mut reader = StatReader::new(&query);

    client
        .stats_with(&target.mesh, &target.name, |piece| reader.feed(piece))
        .await
        .map_err(|err| ReadError {
            reason: err.reason(),
            message: err.to_string(),
        })?;
    samples_from(&reader.finish(), &query, target, &stats)
}

/// Turns the values read from one stats body into a sample per inbound.
fn samples_from(
    values: &StatValues,
    query: &StatQuery,
    target: &Target,
    stats: &[InboundStats],
) -> Result<Vec<Sample>, ReadError> {
    let uptime = lookup(values, query, naming::SERVER_UPTIME);
    if uptime.is_none() && lookup(values, query, SERVER_LIVE).is_none() {
        return Err(ReadError {
            reason: crate::kuma::error::ErrorReason::Parse,
            message: "the answer does not look like Envoy stats (no server.uptime or server.live)"
                .to_string(),
        });
    }

    let samples = stats
        .iter()
        .map(|names| Sample {
            counters: counters(values, query, names),
            uptime: uptime.map(Duration::from_secs),
            tcp: names.protocol == Protocol::Tcp,
            mtls_enabled: target.mtls_enabled,
        })
        .collect();
    Ok(samples)
}

fn counters(values: &StatValues, query: &StatQuery, names: &InboundStats) -> Counters {
    let get = |name: &str| lookup(values, query, name).unwrap_or(0);
    Counters {
        all: get(&names.downstream_cx_total),
        mtls: get(&names.ssl_handshake),
        failed: names
            .ssl_failures
            .iter()
            .map(|n| get(n))
            .fold(0, u64::saturating_add),
        active: get(&names.downstream_cx_active),
        upstream_cx: get(&names.upstream_cx_total),
        rbac_allowed: get(&names.rbac_allowed),
        rbac_denied: get(&names.rbac_denied),
    }
}

fn lookup(values: &StatValues, query: &StatQuery, name: &str) -> Option<u64> {
    query.slot(name).and_then(|slot| values.get(slot))
}

/// The interval give or take 5%, so many daemons (or shards) started together do
/// not poll the control plane in lockstep.
fn jittered(interval: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    let spread = interval.as_secs_f64() * 0.05;
    let offset = (random as f64 / u64::MAX as f64 * 2.0 - 1.0) * spread;
    Duration::from_secs_f64((interval.as_secs_f64() + offset).max(0.0))
}
