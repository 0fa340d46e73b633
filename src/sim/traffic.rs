//! What has reached one inbound of a simulated sidecar since its Envoy started.
//!
//! The model counts connections by what Envoy did with them, the way the counters
//! of a permissive inbound see them; [`super::render`] turns it into stat lines.
//! Every field is cumulative except `active`, so a script of phases only ever adds.

/// Connections an inbound received since its Envoy started, by kind.
///
/// `mtls_denied` and `mtls_silent` are parts of `mtls`, not additions to it:
/// both kinds complete the handshake. Where they exceed `mtls`, the excess is
/// ignored rather than producing a negative count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundTraffic {
    /// Connections without TLS (the plaintext chain).
    pub plaintext: u64,
    /// TLS connections from outside the mesh, passed through untouched.
    pub foreign_tls: u64,
    /// Mesh mTLS connections whose handshake Envoy completed.
    pub mtls: u64,
    /// Of `mtls`, connections the RBAC filter refused.
    pub mtls_denied: u64,
    /// Of `mtls`, connections closed before sending a byte, which RBAC never sees.
    pub mtls_silent: u64,
    /// Failed handshakes: the client sent no certificate.
    pub failed_no_cert: u64,
    /// Failed handshakes: the client certificate is signed by an untrusted CA.
    pub failed_untrusted: u64,
    /// Failed handshakes: the certificate's SAN is not the expected one.
    pub failed_san: u64,
    /// Failed handshakes: garbage after the ClientHello.
    pub failed_garbage: u64,
    /// Connections open right now (a gauge, not cumulative).
    pub active: u64,
}

/// One kind of connection, for adding to a model without breaking its rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionKind {
    Plaintext,
    ForeignTls,
    Mtls,
    MtlsDenied,
    MtlsSilent,
    FailedNoCert,
    FailedUntrusted,
    FailedSan,
    FailedGarbage,
}

impl InboundTraffic {
    /// Records `count` more connections of one kind; denied and silent ones also
    /// count as mTLS, as Envoy counts them.
    pub fn add(&mut self, kind: ConnectionKind, count: u64) {
        let field = match kind {
            ConnectionKind::Plaintext => &mut self.plaintext,
            ConnectionKind::ForeignTls => &mut self.foreign_tls,
            ConnectionKind::Mtls => &mut self.mtls,
            ConnectionKind::MtlsDenied => {
                self.mtls += count;
                &mut self.mtls_denied
            }
            ConnectionKind::MtlsSilent => {
                self.mtls += count;
                &mut self.mtls_silent
            }
            ConnectionKind::FailedNoCert => &mut self.failed_no_cert,
            ConnectionKind::FailedUntrusted => &mut self.failed_untrusted,
            ConnectionKind::FailedSan => &mut self.failed_san,
            ConnectionKind::FailedGarbage => &mut self.failed_garbage,
        };
        *field += count;
    }

    /// Failed TLS handshakes of every kind.
    pub fn failed(&self) -> u64 {
        self.failed_no_cert + self.failed_untrusted + self.failed_san + self.failed_garbage
    }

    /// Every connection the listener accepted.
    pub fn total(&self) -> u64 {
        self.plaintext + self.foreign_tls + self.mtls + self.failed()
    }

    /// Mesh connections RBAC allowed: they sent data and were not denied.
    pub fn rbac_allowed(&self) -> u64 {
        self.mtls
            .saturating_sub(self.rbac_denied())
            .saturating_sub(self.mtls_silent)
    }

    /// Mesh connections RBAC denied, bounded by the mTLS count.
    pub fn rbac_denied(&self) -> u64 {
        self.mtls_denied.min(self.mtls)
    }

    /// Connections Strict mode would break: plaintext and TLS from outside the mesh.
    pub fn breaks_under_strict(&self) -> u64 {
        self.plaintext + self.foreign_tls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_and_silent_are_part_of_mtls() {
        let mut traffic = InboundTraffic::default();
        traffic.add(ConnectionKind::Mtls, 7);
        traffic.add(ConnectionKind::MtlsDenied, 2);
        traffic.add(ConnectionKind::MtlsSilent, 1);

        assert_eq!(traffic.mtls, 10);
        assert_eq!(traffic.rbac_allowed(), 7);
        assert_eq!(traffic.rbac_denied(), 2);
        assert_eq!(traffic.total(), 10);
    }

    #[test]
    fn inconsistent_parts_never_go_negative() {
        let traffic = InboundTraffic {
            mtls: 1,
            mtls_denied: 5,
            mtls_silent: 5,
            ..InboundTraffic::default()
        };

        assert_eq!(traffic.rbac_allowed(), 0);
        assert_eq!(traffic.rbac_denied(), 1);
    }
}
