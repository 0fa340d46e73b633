//! What can go wrong when strictly talks to the Kuma control plane, and the closed
//! set of reasons the daemon counts failures by.
//!
//! Every request error names the request path, so a log line says which call
//! failed; HTTP errors carry Kuma's own `title` and `detail` when its body had them.
//! No variant ever holds the user token.

use std::error::Error as _;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;

use super::model::ApiError;

/// Why a request failed, as a closed set fit for a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    Timeout,
    Http4xx,
    Http5xx,
    Connect,
    Parse,
}

impl ErrorReason {
    /// Every reason, so a metric family can be filled with zeros up front.
    pub const ALL: [ErrorReason; 5] = [
        ErrorReason::Timeout,
        ErrorReason::Http4xx,
        ErrorReason::Http5xx,
        ErrorReason::Connect,
        ErrorReason::Parse,
    ];

    /// The label value.
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

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of the Kuma API client.
#[derive(Debug, thiserror::Error)]
pub enum KumaError {
    /// The configured base URL cannot be used; only at construction.
    #[error("invalid control-plane URL: {reason}")]
    InvalidUrl { reason: String },

    /// A setting makes the client unusable (a zero limit); only at construction.
    #[error("invalid client setting: {reason}")]
    InvalidConfig { reason: &'static str },

    /// The CA bundle could not be read; only at construction.
    #[error("cannot read CA file {}: {source}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The CA bundle holds no usable PEM certificate; only at construction.
    #[error("CA file {} is not a usable PEM bundle: {reason}", path.display())]
    CaInvalid { path: PathBuf, reason: String },

    /// The HTTP client could not be built (TLS setup); only at construction.
    #[error("cannot build the HTTP client: {}", chain(source))]
    ClientBuild {
        #[source]
        source: reqwest::Error,
    },

    /// The token file could not be read, so no request can be authenticated.
    #[error("cannot read token file {}: {source}", path.display())]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The token file was read but holds nothing that can be sent.
    #[error("token file {} holds no usable token: {reason}", path.display())]
    TokenInvalid { path: PathBuf, reason: &'static str },

    /// A name to put into a URL path that Kuma never gives a resource.
    #[error("refusing to request {name:?}: not a resource name")]
    BadName { name: String },

    /// The whole request, body included, took longer than the configured timeout.
    #[error("GET {path} timed out after {}", humantime::format_duration(*timeout))]
    Timeout { path: String, timeout: Duration },

    /// No connection to the control plane could be made.
    #[error("GET {path}: cannot connect to the control plane: {}", chain(source))]
    Connect {
        path: String,
        #[source]
        source: reqwest::Error,
    },

    /// The connection failed after it was made (reset, closed mid-body).
    #[error("GET {path}: request failed: {}", chain(source))]
    Transport {
        path: String,
        #[source]
        source: reqwest::Error,
    },

    /// The control plane answered with a status other than 2xx.
    #[error("GET {path}: HTTP {status}{}", kuma_message(api.as_ref()))]
    Status {
        path: String,
        status: StatusCode,
        /// Kuma's `/std-errors` body, when the answer carried one.
        api: Option<ApiError>,
    },

    /// The body grew past the cap; reading stopped there.
    #[error("GET {path}: body over {limit} bytes refused")]
    BodyTooLarge { path: String, limit: usize },

    /// The body is not the JSON shape expected.
    #[error("GET {path}: unexpected JSON: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },

    /// A list answer's `next` link cannot be followed safely.
    #[error("GET {path}: cannot page through the list: {reason}")]
    Paging { path: String, reason: String },
}

impl KumaError {
    /// The reason this failure is counted under.
    pub fn reason(&self) -> ErrorReason {
        match self {
            // Construction errors keep strictly from ever reaching the control
            // plane, which is what `connect` means to an operator.
            KumaError::InvalidUrl { .. }
            | KumaError::InvalidConfig { .. }
            | KumaError::CaFile { .. }
            | KumaError::CaInvalid { .. }
            | KumaError::ClientBuild { .. } => ErrorReason::Connect,

            // Without its token the request would be refused with a 401: the same
            // credential trouble on our side, fixed the same way.
            KumaError::TokenFile { .. } | KumaError::TokenInvalid { .. } => ErrorReason::Http4xx,

            KumaError::Timeout { .. } => ErrorReason::Timeout,
            KumaError::Connect { .. } | KumaError::Transport { .. } => ErrorReason::Connect,
            KumaError::Status { status, .. } if status.is_server_error() => ErrorReason::Http5xx,

            // Redirects are not followed: a 3xx, like a 4xx, means the request
            // itself must change.
            KumaError::Status { .. } => ErrorReason::Http4xx,

            KumaError::BadName { .. }
            | KumaError::BodyTooLarge { .. }
            | KumaError::Json { .. }
            | KumaError::Paging { .. } => ErrorReason::Parse,
        }
    }

    /// The HTTP status, when the control plane answered with an error status.
    /// A 404 on a dataplane's stats means it is gone, not that Kuma is down.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            KumaError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `": title: detail"` from Kuma's error body, or nothing.
fn kuma_message(api: Option<&ApiError>) -> String {
    let Some(api) = api else {
        return String::new();
    };
    match (api.title.is_empty(), api.detail.is_empty()) {
        (false, false) => format!(": {}: {}", api.title, api.detail),
        (false, true) => format!(": {}", api.title),
        (true, false) => format!(": {}", api.detail),
        (true, true) => String::new(),
    }
}

/// A reqwest error with its causes: its own text is only "error sending request",
/// the useful part ("Connection refused") sits in the source chain.
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, api: Option<ApiError>) -> KumaError {
        KumaError::Status {
            path: "/meshes/default/dataplanes/redis-1/stats".into(),
            status: StatusCode::from_u16(code).expect("test status is valid"),
            api,
        }
    }

    #[test]
    fn reasons_have_stable_labels() {
        let labels: Vec<&str> = ErrorReason::ALL.iter().map(|r| r.as_str()).collect();

        assert_eq!(
            labels,
            ["timeout", "http_4xx", "http_5xx", "connect", "parse"]
        );
    }

    #[test]
    fn status_reason_follows_the_status_class() {
        assert_eq!(status(500, None).reason(), ErrorReason::Http5xx);
        assert_eq!(status(503, None).reason(), ErrorReason::Http5xx);
        assert_eq!(status(404, None).reason(), ErrorReason::Http4xx);
        assert_eq!(status(302, None).reason(), ErrorReason::Http4xx);
    }

    #[test]
    fn status_display_carries_kuma_title_and_detail() {
        let api = ApiError {
            title: "Could not execute admin operation".into(),
            detail: "Internal Server Error".into(),
        };
        let text = status(500, Some(api)).to_string();

        assert_eq!(
            text,
            "GET /meshes/default/dataplanes/redis-1/stats: HTTP 500 Internal Server Error: \
             Could not execute admin operation: Internal Server Error"
        );
        assert_eq!(
            status(502, None).to_string(),
            "GET /meshes/default/dataplanes/redis-1/stats: HTTP 502 Bad Gateway"
        );
    }

    #[test]
    fn token_trouble_counts_as_a_client_side_refusal() {
        let error = KumaError::TokenInvalid {
            path: "/var/run/secrets/token".into(),
            reason: "the file is empty",
        };

        assert_eq!(error.reason(), ErrorReason::Http4xx);
    }
}
