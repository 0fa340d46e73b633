//! One verdict per service inbound, across the replicas behind it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::counters::Totals;
use super::inbound::{InboundStatus, human};
use super::verdict::Verdict;
use super::{ServiceKey, Settings, since};

/// One replica's part of a service report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaReport {
    pub dataplane: String,
    pub status: InboundStatus,
}

/// The verdict of one service inbound and the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceReport {
    pub key: ServiceKey,
    pub verdict: Verdict,
    pub reason: String,
    pub clean: Duration,
    pub last_plaintext: Option<SystemTime>,
    /// Connections counted since strictly started; they never go down, even when a
    /// replica goes away.
    pub totals: Totals,
    pub possible_open_plaintext: u64,
    pub replicas: Vec<ReplicaReport>,
    pub replicas_reporting: usize,
}

/// A service inbound whose verdict changed between two reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictChange {
    pub key: ServiceKey,
    pub from: Option<super::Verdict>,
    pub to: super::Verdict,
    pub reason: String,
}

/// What outlives replicas: the counters already exported and the last plaintext,
/// because the client that sent it likely still talks to the other replicas.
///
/// It is kept for every service inbound ever seen, even after its last replica went
/// away, so its counters go on from where they were if it comes back. That is about
/// a hundred bytes per service inbound.
#[derive(Debug, Default)]
pub(super) struct Services {
    memory: BTreeMap<ServiceKey, ServiceMemory>,
}

#[derive(Debug, Default)]
struct ServiceMemory {
    totals: Totals,
    last_plaintext: Option<SystemTime>,
    last_verdict: Option<Verdict>,
}

impl Services {
    pub(super) fn record(&mut self, key: &ServiceKey, counted: &Totals, now: SystemTime) {
        let memory = self.memory.entry(key.clone()).or_default();
        memory.totals.add(counted);
        if counted.plaintext > 0 {
            memory.last_plaintext = Some(now);
        }
    }

    pub(super) fn report(
        &mut self,
        key: ServiceKey,
        replicas: Vec<ReplicaReport>,
        settings: &Settings,
        now: SystemTime,
    ) -> ServiceReport {
        let memory = self.memory.entry(key.clone()).or_default();
        let (verdict, reason) = judge(&replicas, memory.last_plaintext, settings, now);
        let clean = replicas
            .iter()
            .map(|r| r.status.clean)
            .chain(memory.last_plaintext.map(|at| since(at, now)))
            .min()
            .unwrap_or_default();

        ServiceReport {
            key,
            verdict,
            reason,
            clean,
            last_plaintext: memory.last_plaintext,
            totals: memory.totals,
            possible_open_plaintext: replicas
                .iter()
                .map(|r| r.status.possible_open_plaintext)
                .fold(0, u64::saturating_add),
            replicas_reporting: replicas.iter().filter(|r| r.status.reporting).count(),
            replicas,
        }
    }

    /// Remembers each report's verdict and returns those that changed.
    pub(super) fn changes(&mut self, reports: &[ServiceReport]) -> Vec<VerdictChange> {
        let mut changes = Vec::new();
        for report in reports {
            let memory = self.memory.entry(report.key.clone()).or_default();
            if memory.last_verdict != Some(report.verdict) {
                changes.push(VerdictChange {
                    key: report.key.clone(),
                    from: memory.last_verdict,
                    to: report.verdict,
                    reason: report.reason.clone(),
                });
                memory.last_verdict = Some(report.verdict);
            }
        }
        changes
    }
}

/// The service rule: unknown if any replica is unknown, else plaintext if any replica
/// (or one that is gone) saw plaintext in the window, else insufficient data if any
/// replica was clean for less than the window or all together saw too little mTLS,
/// else ready.
fn judge(
    replicas: &[ReplicaReport],
    last_plaintext: Option<SystemTime>,
    settings: &Settings,
    now: SystemTime,
) -> (Verdict, String) {
    let total = replicas.len();
    if let Some(r) = replicas
        .iter()
        .find(|r| r.status.verdict == Verdict::Unknown)
    {
        let unknown = count(replicas, |s| s.verdict == Verdict::Unknown);
        return (Verdict::Unknown, about(unknown, total, "unknown", r));
    }
    if let Some(r) = replicas
        .iter()
        .find(|r| r.status.verdict == Verdict::Plaintext)
    {
        let plaintext = count(replicas, |s| s.verdict == Verdict::Plaintext);
        return (
            Verdict::Plaintext,
            about(plaintext, total, "saw plaintext", r),
        );
    }
    if let Some(at) = last_plaintext.filter(|at| since(*at, now) < settings.window) {
        let reason = format!(
            "a replica that is gone saw plaintext {} ago; needs {} without any",
            human(since(at, now)),
            human(settings.window)
        );
        return (Verdict::Plaintext, reason);
    }
    if let Some(r) = replicas.iter().find(|r| !r.status.clean_for_window) {
        let young = count(replicas, |s| !s.clean_for_window);
        return (
            Verdict::InsufficientData,
            about(young, total, "not clean for the window yet", r),
        );
    }

    let mtls: u64 = replicas.iter().map(|r| r.status.mtls_in_window).sum();
    if mtls < settings.min_mtls_connections {
        let reason = format!(
            "no plaintext for {}, but only {mtls} of {} required mTLS connections in the window",
            human(settings.window),
            settings.min_mtls_connections
        );
        return (Verdict::InsufficientData, reason);
    }
    let reason = format!(
        "no plaintext for {} on {total} replica(s) and {mtls} mTLS connections in the window",
        human(settings.window)
    );
    (Verdict::Ready, reason)
}

fn count(replicas: &[ReplicaReport], pred: impl Fn(&InboundStatus) -> bool) -> usize {
    replicas.iter().filter(|r| pred(&r.status)).count()
}

/// "1 of 3 replicas unknown; redis-0.shop: stats could not be read: …"
fn about(n: usize, total: usize, what: &str, example: &ReplicaReport) -> String {
    if total == 1 {
        return example.status.reason.clone();
    }
    format!(
        "{n} of {total} replicas {what}; {}: {}",
        example.dataplane, example.status.reason
    )
}
