//! `GET /api/v1/inbounds`: the verdicts as JSON, one object per service inbound.

use std::time::SystemTime;

use serde::Serialize;

use super::Snapshot;
use crate::engine::{InboundStatus, ServiceReport, Totals};

#[derive(Debug, Serialize)]
pub struct InboundsResponse<'a> {
    /// When the reports were computed (RFC 3339), null before the first cycle.
    pub updated_at: Option<String>,
    /// Whether the last cycle could read the control plane.
    pub up: bool,
    pub inbounds: Vec<Inbound<'a>>,
}

#[derive(Debug, Serialize)]
pub struct Inbound<'a> {
    pub mesh: &'a str,
    pub kuma_service: &'a str,
    pub port: u16,
    pub verdict: &'static str,
    pub reason: &'a str,
    pub clean_seconds: u64,
    pub last_plaintext: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    pub possible_open_plaintext: u64,
    pub replicas: Vec<Replica<'a>>,
}

#[derive(Debug, Serialize)]
pub struct Replica<'a> {
    pub dataplane: &'a str,
    pub verdict: &'static str,
    pub reason: &'a str,
    pub clean_seconds: u64,
    pub last_plaintext: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    pub possible_open_plaintext: u64,
    /// Whether this replica's data is fresh.
    pub reporting: bool,
}

/// The four connection counts, corrected for Envoy restarts.
#[derive(Debug, Serialize)]
pub struct Counts {
    pub connections: u64,
    pub mtls_connections: u64,
    pub plaintext_connections: u64,
    pub tls_failed_connections: u64,
}

impl From<&Totals> for Counts {
    fn from(t: &Totals) -> Self {
        Self {
            connections: t.connections,
            mtls_connections: t.mtls,
            plaintext_connections: t.plaintext,
            tls_failed_connections: t.failed,
        }
    }
}

/// The API answer for a snapshot, or an empty list before the first cycle.
pub fn inbounds(snapshot: Option<&Snapshot>) -> InboundsResponse<'_> {
    let Some(snapshot) = snapshot else {
        return InboundsResponse {
            updated_at: None,
            up: false,
            inbounds: Vec::new(),
        };
    };
    InboundsResponse {
        updated_at: Some(rfc3339(snapshot.at)),
        up: snapshot.up,
        inbounds: snapshot.reports.iter().map(inbound).collect(),
    }
}

fn inbound(report: &ServiceReport) -> Inbound<'_> {
    Inbound {
        mesh: &report.key.mesh,
        kuma_service: &report.key.service,
        port: report.key.port,
        verdict: report.verdict.as_str(),
        reason: &report.reason,
        clean_seconds: report.clean.as_secs(),
        last_plaintext: report.last_plaintext.map(rfc3339),
        counts: Counts::from(&report.totals),
        possible_open_plaintext: report.possible_open_plaintext,
        replicas: report
            .replicas
            .iter()
            .map(|r| replica(&r.dataplane, &r.status))
            .collect(),
    }
}

fn replica<'a>(dataplane: &'a str, status: &'a InboundStatus) -> Replica<'a> {
    Replica {
        dataplane,
        verdict: status.verdict.as_str(),
        reason: &status.reason,
        clean_seconds: status.clean.as_secs(),
        last_plaintext: status.last_plaintext.map(rfc3339),
        counts: Counts::from(&status.totals),
        possible_open_plaintext: status.possible_open_plaintext,
        reporting: status.reporting,
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
