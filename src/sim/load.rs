//! How much work a simulated control plane did: what a load test measures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A snapshot of the load counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Requests of any kind.
    pub requests: u64,
    /// `/stats` requests, found or not.
    pub stats_requests: u64,
    /// Response body bytes produced, streamed ones as far as they got.
    pub bytes_served: u64,
    /// Most `/stats` requests handled at the same moment.
    pub max_stats_in_flight: usize,
}

/// The live counters behind [`Load`], shared by every connection.
#[derive(Debug, Default)]
pub(crate) struct LoadCounters {
    requests: AtomicU64,
    stats_requests: AtomicU64,
    bytes_served: AtomicU64,
    stats_in_flight: AtomicUsize,
    max_stats_in_flight: AtomicUsize,
}

impl LoadCounters {
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn served(&self, bytes: usize) {
        self.bytes_served.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts a `/stats` request as in flight until the guard is dropped.
    pub(crate) fn stats_request(self: &Arc<Self>) -> InFlight {
        self.stats_requests.fetch_add(1, Ordering::Relaxed);
        let now = self.stats_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_stats_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }

    pub(crate) fn snapshot(&self) -> Load {
        Load {
            requests: self.requests.load(Ordering::Relaxed),
            stats_requests: self.stats_requests.load(Ordering::Relaxed),
            bytes_served: self.bytes_served.load(Ordering::Relaxed),
            max_stats_in_flight: self.max_stats_in_flight.load(Ordering::SeqCst),
        }
    }

    /// Starts a new measurement; requests in flight now still count towards the
    /// maximum.
    pub(crate) fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.stats_requests.store(0, Ordering::Relaxed);
        self.bytes_served.store(0, Ordering::Relaxed);
        let now = self.stats_in_flight.load(Ordering::SeqCst);
        self.max_stats_in_flight.store(now, Ordering::SeqCst);
    }
}

/// A `/stats` request being handled.
pub(crate) struct InFlight(Arc<LoadCounters>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stats_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
