//! The four answers strictly gives about an inbound.

use std::fmt;

/// Whether an inbound can switch from Permissive to Strict mTLS now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Clean for the whole window, with enough mTLS traffic as evidence.
    Ready,
    /// A plaintext connection was opened inside the window.
    Plaintext,
    /// No plaintext seen, but not for long enough or with too little mTLS traffic.
    InsufficientData,
    /// No fresh data: the dataplane is offline, its stats failed, or polls are stale.
    Unknown,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::Ready,
        Verdict::Plaintext,
        Verdict::InsufficientData,
        Verdict::Unknown,
    ];

    /// The label value used on metrics and in the JSON API.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ready => "ready",
            Verdict::Plaintext => "plaintext",
            Verdict::InsufficientData => "insufficient_data",
            Verdict::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
