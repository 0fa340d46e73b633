//! The history and verdict of one dataplane inbound.

use std::time::{Duration, SystemTime};

use super::counters::{Delta, Sample, Totals};
use super::verdict::Verdict;
use super::window::MtlsWindow;
use super::{Settings, since};

/// Why the latest poll of an inbound produced no counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// The control plane lists the dataplane as disconnected.
    Offline,
    /// The stats request failed; the text says how.
    StatsFailed(String),
    /// Neither the mesh nor the sidecar has mTLS, so the sidecar is not read: with
    /// no TLS on the inbound every connection is plaintext, and Strict would
    /// refuse them all.
    MtlsDisabled,
}

/// What one successful observation changed, for the caller to log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Connections counted by this observation (the baseline on first sight).
    pub totals: Totals,
    pub restarted: bool,
    /// The listener rule and the guide's cluster rule, when both apply and differ.
    pub disagreement: Option<(u64, i128)>,
}

/// Everything strictly remembers about one (mesh, dataplane, port).
#[derive(Debug, Clone)]
pub struct InboundState {
    pub(super) service: String,
    last: Option<(SystemTime, Sample)>,
    unavailable: Option<Unavailable>,
    /// Start of the span in which strictly can prove no plaintext was opened.
    clean_since: Option<SystemTime>,
    last_plaintext: Option<SystemTime>,
    mtls: MtlsWindow,
    totals: Totals,
    /// Of the current Envoy process's unexplained connections (neither mTLS nor
    /// failed), how many were counted as plaintext. The rest are open, and may
    /// be mesh handshakes still in flight: a later poll tells.
    counted: u64,
    /// A reading of the current process (when, unexplained connections) that a
    /// reading at least [`HANDSHAKE_LIMIT`] later confirms.
    anchor: Option<(SystemTime, u64)>,
    /// Plaintext opened since the last poll that saw no active connection.
    plaintext_since_idle: u64,
    /// When the control plane last listed this inbound.
    pub(super) last_listed: SystemTime,
    /// Whether it was listed since the previous sweep.
    pub(super) listed_since_sweep: bool,
    /// Sweeps in a row that found it not listed.
    pub(super) missed_listings: u32,
}

/// The state of an inbound at one moment, as reports show it.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundStatus {
    pub verdict: Verdict,
    pub reason: String,
    /// How long no plaintext was opened, as far as strictly can prove.
    pub clean: Duration,
    /// Whether `clean` covers the whole window.
    pub clean_for_window: bool,
    pub last_plaintext: Option<SystemTime>,
    pub mtls_in_window: u64,
    pub totals: Totals,
    pub possible_open_plaintext: u64,
    /// Whether the latest data is fresh and came from a successful poll.
    pub reporting: bool,
}

impl InboundState {
    pub fn new(service: &str, settings: &Settings, now: SystemTime) -> Self {
        Self {
            service: service.to_string(),
            last: None,
            unavailable: None,
            clean_since: None,
            last_plaintext: None,
            mtls: MtlsWindow::new(settings.window),
            totals: Totals::default(),
            counted: 0,
            anchor: None,
            plaintext_since_idle: 0,
            last_listed: now,
            listed_since_sweep: true,
            missed_listings: 0,
        }
    }

    /// Takes in a successful poll.
    pub fn observe(&mut self, sample: Sample, now: SystemTime) -> Observed {
        let observed = match self.last {
            None => self.first_sight(&sample, now),
            Some((prev_at, prev)) => self.next_sight(prev_at, &prev, &sample, now),
        };
        self.totals.add(&observed.totals);
        self.mtls.add(now, observed.totals.mtls);
        self.track_open_plaintext(&observed, &sample);

        self.last = Some((now, sample));
        self.unavailable = None;
        self.listed(now);
        observed
    }

    /// Takes in a poll that produced no counters.
    pub fn unavailable(&mut self, why: Unavailable, now: SystemTime) {
        self.unavailable = Some(why);
        self.listed(now);
    }

    fn listed(&mut self, now: SystemTime) {
        self.last_listed = now;
        self.listed_since_sweep = true;
        self.missed_listings = 0;
    }

    /// On first sight only Envoy's own totals are known. Plaintext among them cannot
    /// be dated, so it counts as seen now; without any, the inbound has been clean
    /// since Envoy started. Open connections that may be plaintext leave the clean
    /// span unknown until a later poll tells.
    fn first_sight(&mut self, sample: &Sample, now: SystemTime) -> Observed {
        let plaintext = self.count_new_process(sample, now).new;

        if plaintext > 0 {
            self.saw_plaintext(now);
        } else if unconfirmed(sample, self.counted) == 0 {
            self.clean_since = Some(envoy_start(sample, now));
        }
        Observed {
            totals: Totals {
                plaintext,
                ..Totals::since_start(&sample.counters)
            },
            ..Observed::default()
        }
    }

    fn next_sight(
        &mut self,
        prev_at: SystemTime,
        prev: &Sample,
        sample: &Sample,
        now: SystemTime,
    ) -> Observed {
        let delta = Delta::between(prev, sample, since(prev_at, now));
        let counted = if delta.restarted {
            self.restarted(prev, sample, prev_at, now)
        } else {
            self.count_plaintext(sample, now)
        };
        let plaintext = counted.new;

        let told_apart = counted.settled || unconfirmed(sample, self.counted) == 0;
        if plaintext > 0 {
            self.saw_plaintext(now);
        } else if self.clean_since.is_none() && told_apart {
            // What first sight could not tell apart was no plaintext.
            self.clean_since = Some(envoy_start(sample, now));
        }

        let disagreement = delta
            .cross_check
            .filter(|c| *c != i128::from(delta.totals.plaintext))
            .map(|c| (delta.totals.plaintext, c));
        Observed {
            totals: Totals {
                plaintext,
                ..delta.totals
            },
            restarted: delta.restarted,
            disagreement,
        }
    }

    /// Counts the plaintext the readings prove, and returns how much is new.
    ///
    /// Envoy counts a connection when it accepts it and its handshake only when
    /// that completes, so a reading can catch a mesh connection that neither mTLS
    /// nor a failed handshake explains yet; such a connection is open. Two things
    /// are plaintext for sure: unexplained connections beyond the open ones, and
    /// what stays unexplained from one reading to another taken at least
    /// [`HANDSHAKE_LIMIT`] later (a plaintext connection stays unexplained).
    fn count_plaintext(&mut self, sample: &Sample, now: SystemTime) -> Counted {
        let unexplained = sample.counters.unexplained();
        let closed = unexplained.saturating_sub(sample.counters.active);
        let (lasted, settled) = match self.anchor {
            Some((at, before)) if since(at, now) >= HANDSHAKE_LIMIT => {
                (before.min(unexplained), true)
            }
            _ => (0, false),
        };
        if settled || self.anchor.is_none() {
            self.anchor = Some((now, unexplained));
        }

        let counted = self.counted.max(closed).max(lasted);
        let new = counted - self.counted;
        self.counted = counted;
        Counted { new, settled }
    }

    /// Counts the first reading of an Envoy process, which has no history yet.
    fn count_new_process(&mut self, sample: &Sample, now: SystemTime) -> Counted {
        self.counted = 0;
        self.anchor = None;
        self.count_plaintext(sample, now)
    }

    /// A new Envoy process. What the old one left uncounted can no longer be told
    /// apart, so it counts as plaintext. The old process may also have accepted
    /// plaintext after the previous poll and died before this one; nobody can
    /// tell. The clean span restarts with the new process, which keeps such a lost
    /// connection out of it.
    fn restarted(
        &mut self,
        prev: &Sample,
        sample: &Sample,
        prev_at: SystemTime,
        now: SystemTime,
    ) -> Counted {
        let left_over = unconfirmed(prev, self.counted);

        let started = envoy_start(sample, now).max(prev_at);
        self.clean_since = self.clean_since.map(|c| c.max(started));
        let counted = self.count_new_process(sample, now);
        Counted {
            new: left_over + counted.new,
            ..counted
        }
    }

    /// Plaintext counted by a poll was opened at some moment since the previous poll;
    /// dating it at this poll is the latest possible moment, so the clean span never
    /// starts before it.
    fn saw_plaintext(&mut self, now: SystemTime) {
        self.last_plaintext = Some(now);
        self.clean_since = Some(now);
    }

    fn track_open_plaintext(&mut self, observed: &Observed, sample: &Sample) {
        if sample.counters.active == 0 {
            self.plaintext_since_idle = 0;
        } else if observed.restarted {
            // A restart closed every connection of the old process.
            self.plaintext_since_idle = observed.totals.plaintext;
        } else {
            self.plaintext_since_idle = self
                .plaintext_since_idle
                .saturating_add(observed.totals.plaintext);
        }
    }

    /// Open connections the latest poll left unexplained, beyond the plaintext
    /// counted: mesh handshakes in flight, or plaintext.
    pub(super) fn unconfirmed(&self) -> u64 {
        self.last
            .as_ref()
            .map_or(0, |(_, s)| unconfirmed(s, self.counted))
    }

    /// The verdict and everything a report shows, at `now`.
    pub fn status(&mut self, settings: &Settings, now: SystemTime) -> InboundStatus {
        let mtls_in_window = self.mtls.count(now, settings.window);
        let clean = self.clean_since.map(|c| since(c, now)).unwrap_or_default();
        let fresh = self
            .last
            .as_ref()
            .is_some_and(|(at, _)| since(*at, now) <= settings.stale_after);
        let active = self.last.as_ref().map_or(0, |(_, s)| s.counters.active);

        let mut status = InboundStatus {
            verdict: Verdict::Unknown,
            reason: String::new(),
            clean,
            clean_for_window: self.clean_since.is_some() && clean >= settings.window,
            last_plaintext: self.last_plaintext,
            mtls_in_window,
            totals: self.totals,
            possible_open_plaintext: self
                .plaintext_since_idle
                .saturating_add(self.unconfirmed())
                .min(active),
            reporting: fresh && self.unavailable.is_none(),
        };
        (status.verdict, status.reason) = self.judge(&status, fresh, settings, now);
        status
    }

    fn judge(
        &self,
        status: &InboundStatus,
        fresh: bool,
        settings: &Settings,
        now: SystemTime,
    ) -> (Verdict, String) {
        if let Some(why) = &self.unavailable {
            return unavailable_verdict(why);
        }
        let Some((last_at, sample)) = &self.last else {
            return (Verdict::Unknown, "not polled successfully yet".to_string());
        };
        if !fresh {
            let reason = format!(
                "no successful poll for {} (data goes stale after {})",
                human(since(*last_at, now)),
                human(settings.stale_after)
            );
            return (Verdict::Unknown, reason);
        }

        let mtls_note = if sample.mtls_enabled {
            ""
        } else {
            "; mTLS looks disabled in this mesh, so every connection is plaintext"
        };
        if let Some(at) = self
            .last_plaintext
            .filter(|at| since(*at, now) < settings.window)
        {
            let reason = format!(
                "plaintext connection seen {} ago; needs {} without any{}{}",
                human(since(at, now)),
                human(settings.window),
                open_note(status.possible_open_plaintext),
                mtls_note
            );
            return (Verdict::Plaintext, reason);
        }
        if self.clean_since.is_none() {
            let reason = format!(
                "{} open connection(s) from before the first poll may be plaintext; \
                 a poll {} later tells",
                self.unconfirmed(),
                human(HANDSHAKE_LIMIT)
            );
            return (Verdict::InsufficientData, reason);
        }
        if !status.clean_for_window {
            let reason = format!(
                "no plaintext for {} of the {} window{}",
                human(status.clean),
                human(settings.window),
                open_note(status.possible_open_plaintext)
            );
            return (Verdict::InsufficientData, reason);
        }
        if status.mtls_in_window < settings.min_mtls_connections {
            let reason = format!(
                "no plaintext for {}, but only {} of {} required mTLS connections in the window",
                human(settings.window),
                status.mtls_in_window,
                settings.min_mtls_connections
            );
            return (Verdict::InsufficientData, reason);
        }
        let reason = format!(
            "no plaintext for {} and {} mTLS connections in the window",
            human(settings.window),
            status.mtls_in_window
        );
        (Verdict::Ready, reason)
    }
}

/// Plaintext newly counted by one reading.
struct Counted {
    new: u64,
    /// Whether the reading was compared with one at least [`HANDSHAKE_LIMIT`]
    /// older, which tells every connection open back then apart.
    settled: bool,
}

/// Longer than a mesh handshake takes, even on a loaded node. A connection
/// still open and unexplained after this long is counted as plaintext; one
/// whose handshake really takes longer is counted so too, a false alarm.
pub const HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);

/// Unexplained connections of a reading beyond those counted as plaintext.
fn unconfirmed(sample: &Sample, counted: u64) -> u64 {
    sample.counters.unexplained().saturating_sub(counted)
}

/// When Envoy started, by its uptime; `server.uptime` lags by up to one stats flush,
/// so this errs late, which only shortens the clean span.
fn envoy_start(sample: &Sample, now: SystemTime) -> SystemTime {
    sample
        .uptime
        .and_then(|u| now.checked_sub(u))
        .unwrap_or(now)
}

fn unavailable_verdict(why: &Unavailable) -> (Verdict, String) {
    let unknown = |reason: String| (Verdict::Unknown, reason);
    match why {
        Unavailable::Offline => {
            unknown("the control plane lists this dataplane as offline".to_string())
        }
        Unavailable::StatsFailed(err) => unknown(format!("stats could not be read: {err}")),
        Unavailable::MtlsDisabled => (
            Verdict::Plaintext,
            "mTLS looks disabled in this mesh and the sidecar has no certificate, so every \
             connection is plaintext; its stats are read once mTLS is enabled"
                .to_string(),
        ),
    }
}

fn open_note(possible_open: u64) -> String {
    if possible_open == 0 {
        String::new()
    } else {
        format!("; up to {possible_open} plaintext connection(s) may still be open")
    }
}

/// A span for a table cell: minutes once it passes an hour (`3days 4h 12m`), where
/// seconds are noise.
pub fn human_coarse(d: Duration) -> String {
    if d < Duration::from_secs(3600) {
        return human(d);
    }
    humantime::format_duration(Duration::from_secs(d.as_secs() / 60 * 60)).to_string()
}

/// A duration for people in humantime form (`1h 2m 3s`): whole seconds, or whole
/// milliseconds below ten seconds, where short test and demo windows live.
pub fn human(d: Duration) -> String {
    let rounded = if d < Duration::from_secs(10) {
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    } else {
        Duration::from_secs(d.as_secs())
    };
    humantime::format_duration(rounded).to_string()
}
