//! What one connection moves: the deltas of the counters strictly reads, taken
//! around a single connection on an otherwise idle inbound.

use std::fmt::Write;

use anyhow::Result;

use super::clients::{Connection, Reply};
use super::inbound::{Inbound, StatNames};
use super::stats::Stats;

/// The columns of a [`Movement`], in order.
pub const COLUMNS: [&str; 12] = [
    "listener downstream_cx_total",
    "ssl.handshake",
    "ssl.connection_error",
    "ssl.fail_verify_error",
    "ssl.fail_verify_no_cert",
    "ssl.fail_verify_san",
    "ssl.fail_verify_cert_hash",
    "cluster upstream_cx_total",
    "rbac.allowed",
    "rbac.denied",
    "tcp/http downstream_cx_total",
    "listener downstream_listener_filter_remote_close",
];

/// Counter deltas in the order of [`COLUMNS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Movement(pub [i64; 12]);

impl Movement {
    pub fn between(names: &StatNames, before: &Stats, after: &Stats) -> Movement {
        Movement(Movement::stat_names(names).map(|name| after.delta(before, &name)))
    }

    /// The whole stat names behind [`COLUMNS`] for one inbound.
    pub fn stat_names(names: &StatNames) -> [String; 12] {
        let [connection_error, fail_verify_error, no_cert, san, cert_hash] = names.ssl_failures();
        [
            names.listener("downstream_cx_total"),
            names.listener("ssl.handshake"),
            connection_error,
            fail_verify_error,
            no_cert,
            san,
            cert_hash,
            names.cluster("upstream_cx_total"),
            names.rbac("allowed"),
            names.rbac("denied"),
            names.proxy("downstream_cx_total"),
            names.listener("downstream_listener_filter_remote_close"),
        ]
    }

    pub fn all(&self) -> i64 {
        self.0[0]
    }

    pub fn mtls(&self) -> i64 {
        self.0[1]
    }

    pub fn failed(&self) -> i64 {
        self.0[2..7].iter().sum()
    }

    /// strictly's rule: all − mTLS − failed, clamped at 0.
    pub fn plaintext(&self) -> i64 {
        (self.all() - self.mtls() - self.failed()).max(0)
    }

    /// The Kuma guide's rule: cluster upstream_cx_total − rbac.allowed.
    pub fn guide_plaintext(&self) -> i64 {
        self.0[7] - self.0[8]
    }
}

/// Opens one connection of `kind` on an idle inbound and returns what the
/// client saw and what moved.
pub fn measure(inbound: &Inbound, kind: Connection) -> Result<(Reply, Movement)> {
    let before = inbound.settle()?;
    let reply = inbound.client().open(kind)?;
    let after = inbound.settle()?;
    Ok((reply, Movement::between(&inbound.names, &before, &after)))
}

/// A Markdown table of measured rows, with strictly's and the guide's counts.
pub fn markdown(rows: &[(Connection, Movement)]) -> String {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| connection | {} | strictly: plaintext / mTLS / failed | guide |",
        COLUMNS.join(" | ")
    );
    let _ = writeln!(table, "|{}", "---|".repeat(COLUMNS.len() + 3));
    for (kind, movement) in rows {
        let cells: Vec<String> = movement.0.iter().map(i64::to_string).collect();
        let _ = writeln!(
            table,
            "| {} | {} | {} / {} / {} | {} |",
            kind.label(),
            cells.join(" | "),
            movement.plaintext(),
            movement.mtls(),
            movement.failed(),
            movement.guide_plaintext()
        );
    }
    table
}
