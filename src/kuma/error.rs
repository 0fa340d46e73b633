//! Placeholder for the client's errors: the reasons failed requests are counted by.

/// Why a request to the control plane failed, as `strictly_poll_errors_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    Timeout,
    Http4xx,
    Http5xx,
    Connect,
    Parse,
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 5] = [
        ErrorReason::Timeout,
        ErrorReason::Http4xx,
        ErrorReason::Http5xx,
        ErrorReason::Connect,
        ErrorReason::Parse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Timeout => "timeout",
            ErrorReason::Http4xx => "http_4xx",
            ErrorReason::Http5xx => "http_5xx",
            ErrorReason::Connect => "connect",
            ErrorReason::Parse => "parse",
        }
    }
}
