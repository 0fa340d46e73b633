//! Stats from a real Envoy: the simulated control plane asks a sidecar's admin
//! API and passes the text on, as a zone control plane does for
//! `/meshes/{mesh}/dataplanes/{name}/stats`.
//!
//! Kuma answers with its admin failure (500) when the sidecar cannot be reached,
//! takes too long, or answers anything but `200`; so does this relay.

use std::time::Duration;

use hyper::StatusCode;

use super::api::{Answer, ApiRequest};
use super::body::Payload;
use super::world::Reply;

/// Kuma's limits on a request to a sidecar's admin API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a relayed request produced no stats.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("Envoy could not be asked: {0}")]
    Request(#[from] reqwest::Error),
    #[error("Envoy answered {0}")]
    Status(StatusCode),
}

/// The HTTP client for sidecars' admin APIs, shared by every request.
#[derive(Debug, Clone)]
pub(crate) struct Relay {
    http: reqwest::Client,
}

impl Relay {
    /// # Errors
    ///
    /// When the HTTP library cannot set up a client.
    pub(crate) fn new() -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self { http })
    }

    /// Fills in an answer that is to be relayed from Envoy; any other answer is
    /// returned as it is.
    pub(crate) async fn complete(&self, mut answer: Answer, request: &ApiRequest) -> Answer {
        let Some(url) = answer.relay_from.take() else {
            return answer;
        };
        match self.fetch(&url).await {
            Ok(body) => {
                answer.payload = Payload::Full(body);
                answer
            }
            Err(error) => {
                tracing::debug!(%url, %error, "relaying stats from Envoy failed");
                Answer::from_reply(&Reply::admin_failure(), request)
            }
        }
    }

    async fn fetch(&self, url: &str) -> Result<bytes::Bytes, RelayError> {
        let response = self.http.get(url).send().await?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(RelayError::Status(status));
        }
        Ok(response.bytes().await?)
    }
}
