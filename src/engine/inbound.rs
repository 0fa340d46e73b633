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
    /// since Envoy started.
    fn first_sight(&mut self, sample: &Sample, now: SystemTime) -> Observed {
        let totals = Totals::since_start(&sample.counters);
        let started = envoy_start(sample, now);

        if totals.plaintext > 0 {
            self.saw_plaintext(now);
        } else {
            self.clean_since = Some(started);
        }
        Observed {
            totals,
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

        // The old process may have accepted plaintext after the previous poll and
        // died before this one; nobody can tell. The clean span restarts with the new
        // process, which keeps a lost plaintext connection out of it.
        if delta.restarted {
            let started = envoy_start(sample, now).max(prev_at);
            self.clean_since = self.clean_since.map(|c| c.max(started));
        }
        if delta.totals.plaintext > 0 {
            self.saw_plaintext(now);
        }

        let disagreement = delta
            .cross_check
            .filter(|c| *c != i128::from(delta.totals.plaintext))
            .map(|c| (delta.totals.plaintext, c));
        Observed {
            totals: delta.totals,
            restarted: delta.restarted,
            disagreement,
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
            possible_open_plaintext: self.plaintext_since_idle.min(active),
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
        format!("; up to {possible_open} plaintext connections may still be open")
    }
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
