//! What strictly shows the world: Prometheus metrics, a JSON API, a status page, and
//! the HTTP server for all of them.
//!
//! The poll loop publishes one [`Snapshot`] per cycle; every endpoint reads the latest
//! one, so a scrape never waits for a poll and never sees half a cycle.

pub mod api;
pub mod metrics;
pub mod page;
pub mod server;

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::engine::ServiceReport;

/// The state of the world after one poll cycle.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the cycle's reports were computed.
    pub at: SystemTime,
    pub reports: Vec<ServiceReport>,
    /// Whether the cycle could read the control plane.
    pub up: bool,
}

/// The latest snapshot, shared between the poll loop and the HTTP handlers.
#[derive(Debug, Clone, Default)]
pub struct Published {
    latest: Arc<RwLock<Option<Arc<Snapshot>>>>,
}

impl Published {
    pub fn publish(&self, snapshot: Snapshot) {
        let mut latest = self.latest.write().unwrap_or_else(|e| e.into_inner());
        *latest = Some(Arc::new(snapshot));
    }

    /// The latest snapshot, `None` until the first cycle completed.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
