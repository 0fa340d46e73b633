//! Raw Envoy readings of one inbound and the reset-aware deltas between two of them.

use std::time::Duration;

/// How far `server.uptime` may fall behind the wall clock without meaning a restart.
/// Envoy updates it when it flushes stats, every 5 s by default; twice that leaves
/// room for rounding and for a late poll.
pub const UPTIME_SLACK: Duration = Duration::from_secs(10);

/// What one poll read for one inbound. A counter Envoy did not report is 0: current
/// control planes ask Envoy for `usedonly` stats, which leave out counters that were
/// never incremented.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `listener.<L>.downstream_cx_total`: every connection the inbound accepted.
    pub all: u64,
    /// `listener.<L>.ssl.handshake`: mesh mTLS connections Envoy terminated.
    pub mtls: u64,
    /// Sum of `listener.<L>.ssl.connection_error` and the four `ssl.fail_verify_*`
    /// counters: each failed handshake moves exactly one of them.
    pub failed: u64,
    /// `listener.<L>.downstream_cx_active`, a gauge.
    pub active: u64,
    /// `cluster.<C>.upstream_cx_total`, for the cross-check.
    pub upstream_cx: u64,
    /// `<R>.rbac.allowed`, for the cross-check (TCP inbounds only).
    pub rbac_allowed: u64,
    /// `<R>.rbac.denied`, for the cross-check (TCP inbounds only).
    pub rbac_denied: u64,
}

impl Counters {
    /// Connections that are neither mesh mTLS nor failed handshakes: plaintext,
    /// and also mesh connections whose handshake was still in flight when Envoy
    /// was read, since Envoy counts a connection when it accepts it and its
    /// handshake only when that completes, a few milliseconds later.
    pub fn unexplained(&self) -> u64 {
        plaintext(self.all, self.mtls, self.failed)
    }
}

/// One poll's readings of an inbound with the age of its Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub counters: Counters,
    /// `server.uptime`; it only moves when Envoy flushes stats, so it can lag.
    pub uptime: Option<Duration>,
    /// Whether the inbound's RBAC counts connections, so the cross-check applies.
    pub tcp: bool,
    /// Whether the mesh has mTLS enabled at all.
    pub mtls_enabled: bool,
}

/// Connection counts by kind, over some span of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub connections: u64,
    pub mtls: u64,
    pub plaintext: u64,
    pub failed: u64,
}

impl Totals {
    /// The counts since Envoy started, as one reading shows them.
    pub fn since_start(c: &Counters) -> Self {
        Self {
            connections: c.all,
            mtls: c.mtls,
            plaintext: plaintext(c.all, c.mtls, c.failed),
            failed: c.failed,
        }
    }

    pub fn add(&mut self, other: &Totals) {
        self.connections = self.connections.saturating_add(other.connections);
        self.mtls = self.mtls.saturating_add(other.mtls);
        self.plaintext = self.plaintext.saturating_add(other.plaintext);
        self.failed = self.failed.saturating_add(other.failed);
    }
}

/// Connections that would break under Strict: whatever was neither terminated mesh
/// mTLS nor a failed handshake. A client that sends a ClientHello and hangs up moves
/// no TLS counter, so it counts here: a false alarm, never a false "safe".
fn plaintext(all: u64, mtls: u64, failed: u64) -> u64 {
    all.saturating_sub(mtls).saturating_sub(failed)
}

/// The movement between two readings of the same inbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    /// Plaintext here is what the two readings alone suggest, handshakes in
    /// flight included; the inbound's history decides what counts.
    pub totals: Totals,
    /// Envoy restarted between the two readings (a counter or the uptime went down).
    pub restarted: bool,
    /// The guide's cluster-minus-RBAC rule, for TCP inbounds with mTLS on.
    pub cross_check: Option<i128>,
}

impl Delta {
    /// Reset-aware delta between readings taken `elapsed` apart: after a restart the
    /// new reading itself is the delta, as Prometheus `rate()` treats a counter reset.
    pub fn between(prev: &Sample, next: &Sample, elapsed: Duration) -> Self {
        let restarted = restarted(prev, next, elapsed);
        let base = if restarted {
            Counters::default()
        } else {
            prev.counters
        };
        let d = |f: fn(&Counters) -> u64| f(&next.counters).saturating_sub(f(&base));

        let (all, mtls, failed) = (d(|c| c.all), d(|c| c.mtls), d(|c| c.failed));
        let totals = Totals {
            connections: all,
            mtls,
            plaintext: plaintext(all, mtls, failed),
            failed,
        };
        let cross_check = (next.tcp && next.mtls_enabled).then(|| {
            i128::from(d(|c| c.upstream_cx))
                - i128::from(d(|c| c.rbac_allowed))
                - i128::from(d(|c| c.rbac_denied))
                - i128::from(failed)
        });
        Self {
            totals,
            restarted,
            cross_check,
        }
    }
}

/// A counter that went down means a new Envoy process, and so does an uptime that
/// grew less than the time between the readings: the process started after the
/// previous reading, even when its counters already outgrew the old ones.
fn restarted(prev: &Sample, next: &Sample, elapsed: Duration) -> bool {
    let (p, n) = (&prev.counters, &next.counters);
    let counter_went_down = n.all < p.all
        || n.mtls < p.mtls
        || n.failed < p.failed
        || n.upstream_cx < p.upstream_cx
        || n.rbac_allowed < p.rbac_allowed
        || n.rbac_denied < p.rbac_denied;
    let uptime_fell_behind = match (prev.uptime, next.uptime) {
        (Some(before), Some(now)) => now < before || now + UPTIME_SLACK < before + elapsed,
        _ => false,
    };
    counter_went_down || uptime_fell_behind
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECS_30: Duration = Duration::from_secs(30);

    fn sample(all: u64, mtls: u64, failed: u64, uptime: u64) -> Sample {
        Sample {
            counters: Counters {
                all,
                mtls,
                failed,
                upstream_cx: all,
                rbac_allowed: mtls,
                ..Counters::default()
            },
            uptime: Some(Duration::from_secs(uptime)),
            tcp: true,
            mtls_enabled: true,
        }
    }

    #[test]
    fn delta_splits_connections_by_kind() {
        let d = Delta::between(&sample(10, 6, 1, 100), &sample(20, 12, 2, 130), SECS_30);
        assert_eq!(
            d.totals,
            Totals {
                connections: 10,
                mtls: 6,
                plaintext: 3,
                failed: 1
            }
        );
        assert!(!d.restarted);
        assert_eq!(d.cross_check, Some(3));
    }

    #[test]
    fn a_counter_going_down_is_a_restart_and_the_new_value_is_the_delta() {
        let d = Delta::between(&sample(1000, 900, 0, 5000), &sample(7, 5, 0, 20), SECS_30);
        assert!(d.restarted);
        assert_eq!(d.totals.connections, 7);
        assert_eq!(d.totals.plaintext, 2);
    }

    #[test]
    fn uptime_going_down_is_a_restart_even_when_counters_grew() {
        let d = Delta::between(&sample(5, 5, 0, 5000), &sample(9, 9, 0, 10), SECS_30);
        assert!(d.restarted);
        assert_eq!(d.totals.connections, 9);
    }

    #[test]
    fn uptime_that_grew_less_than_the_clock_is_a_restart() {
        // 100 s after a reading at uptime 20, a process only 60 s old is a new one,
        // although its counters are past the old ones.
        let d = Delta::between(
            &sample(5, 5, 0, 20),
            &sample(9, 9, 0, 60),
            Duration::from_secs(100),
        );
        assert!(d.restarted);
        assert_eq!(d.totals.connections, 9);

        let lagging = Delta::between(
            &sample(5, 5, 0, 20),
            &sample(9, 9, 0, 115),
            Duration::from_secs(100),
        );
        assert!(!lagging.restarted, "a flush behind is not a restart");
    }

    #[test]
    fn plaintext_is_clamped_at_zero() {
        let d = Delta::between(
            &sample(10, 0, 0, 1),
            &sample(11, 3, 0, 2),
            Duration::from_secs(1),
        );
        assert_eq!(d.totals.plaintext, 0);
    }

    #[test]
    fn no_cross_check_for_http_or_without_mtls() {
        let mut next = sample(20, 12, 2, 130);
        next.tcp = false;
        assert_eq!(
            Delta::between(&sample(10, 6, 1, 100), &next, SECS_30).cross_check,
            None
        );
        next.tcp = true;
        next.mtls_enabled = false;
        assert_eq!(
            Delta::between(&sample(10, 6, 1, 100), &next, SECS_30).cross_check,
            None
        );
    }
}
