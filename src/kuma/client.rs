//! The HTTP client for the Kuma control-plane API.
//!
//! It reads three things: the meshes, the dataplane overviews of a mesh (every page)
//! and one sidecar's Envoy `/stats` text, which the control plane fetches from the
//! sidecar on our behalf. Every request is bounded three ways: a timeout, a cap on
//! the body (enforced while it streams in) and a limit on requests in flight, which
//! protects the control plane when thousands of sidecars are polled.
//!
//! The user token, when configured, is read from a file and re-read when the file
//! changes, because Kubernetes rotates mounted Secrets in place. It never appears
//! in an error, a log line or `Debug` output.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use reqwest::{Certificate, Response, Url, redirect};
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;
use tracing::debug;

pub use super::error::{ErrorReason, KumaError};
use super::model::{ApiError, DataplaneOverview, Mesh, Page};

/// The default cap on a response body. The biggest sidecars' full `/stats` text
/// runs to about 10 MiB, the limit Kuma itself hit before it asked Envoy for
/// `usedonly` stats; three times that leaves room without letting one answer
/// exhaust memory.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Items per list request: Kuma's maximum, so 10,000 dataplanes take 10 requests.
const PAGE_SIZE: usize = 1000;

/// Upper bound on connecting. A control plane in the same cluster connects in
/// milliseconds; waiting the whole request timeout for a blackholed address only
/// delays the error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the token file is looked at. Kubernetes takes up to a minute to
/// propagate a rotated Secret, so a second adds nothing noticeable and keeps the
/// file system out of the per-request path.
const TOKEN_RECHECK: Duration = Duration::from_secs(1);

/// The tag that names the service an inbound belongs to.
const SERVICE_TAG: &str = "kuma.io/service";

/// How much of an error answer is read to find Kuma's `title` and `detail`.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// How the client reaches the control plane.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API base URL, e.g. `http://127.0.0.1:5681` or `https://kuma-control-plane:5682`;
    /// a trailing slash and a path prefix (behind a reverse proxy) are fine.
    pub base_url: String,
    /// File holding a user token sent as `Authorization: Bearer`; `None` sends no
    /// credentials, which a default Kuma install accepts for reading.
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle trusted for an HTTPS base URL, instead of the system roots;
    /// `None` trusts the system roots.
    pub ca_file: Option<PathBuf>,
    /// Limit on one request, from connecting to the last byte of the body.
    pub request_timeout: Duration,
    /// Requests in flight at once, across all clones of the client.
    pub concurrency: usize,
    /// Largest body accepted; a longer one is refused while it streams in.
    pub max_body_bytes: usize,
}

/// A client for the Kuma API; cheap to clone, and clones share the connection
/// pool, the in-flight limit and the token.
#[derive(Clone)]
pub struct KumaClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    token: Option<TokenSource>,
    in_flight: Semaphore,
    concurrency: usize,
    timeout: Duration,
    max_body_bytes: usize,
}

// === impl KumaClient ===

impl KumaClient {
    /// Validates the configuration, loads the CA bundle and builds the HTTP client.
    ///
    /// # Errors
    ///
    /// An unusable URL or limit, an unreadable or empty CA file, or a TLS setup
    /// the HTTP library refuses. The token file is not read yet: a missing file
    /// fails each request instead, so a Secret mounted late does not stop startup.
    pub fn new(config: ClientConfig) -> Result<Self, KumaError> {
        let base = base_url(&config.base_url)?;
        check_limits(&config)?;

        let mut builder = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(CONNECT_TIMEOUT))
            // Kuma never redirects; following one could hand the token elsewhere.
            .redirect(redirect::Policy::none())
            .user_agent(concat!("strictly/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            builder = builder.tls_certs_only(load_ca(path)?);
        }
        let http = builder
            .build()
            .map_err(|source| KumaError::ClientBuild { source })?;

        let inner = Inner {
            http,
            base,
            token: config.token_file.map(TokenSource::new),
            in_flight: Semaphore::new(config.concurrency),
            concurrency: config.concurrency,
            timeout: config.request_timeout,
            max_body_bytes: config.max_body_bytes,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// How many requests this client keeps in flight at most.
    pub fn concurrency(&self) -> usize {
        self.inner.concurrency
    }

    /// Every mesh (`GET /meshes`, all pages).
    pub async fn meshes(&self) -> Result<Vec<Mesh>, KumaError> {
        let mut all = Vec::new();
        self.pages(&["meshes"], None, |page| all.extend(page))
            .await?;
        Ok(all)
    }

    /// Every dataplane of a mesh with its insight
    /// (`GET /meshes/{mesh}/dataplanes/_overview`, all pages).
    pub async fn dataplanes(&self, mesh: &str) -> Result<Vec<DataplaneOverview>, KumaError> {
        let mut all = Vec::new();
        self.dataplane_pages(mesh, None, |page| all.extend(page))
            .await?;
        Ok(all)
    }

    /// The dataplanes of a mesh handed to `take` one page at a time, so that a
    /// caller who keeps only a little of each never holds a whole big mesh.
    ///
    /// With a `service`, the control plane narrows the list with
    /// `tag=kuma.io/service:<service>`. Kuma matches a tag value as a substring
    /// (`redis` also finds `redis-cache`), so the answer is a superset and the
    /// caller must still compare exactly. Kuma 2.x matches the tag against
    /// inbound and gateway tags; the unreleased Kuma 3 matches labels instead,
    /// where `kuma.io/service` does not appear, so there the list comes back empty.
    pub async fn dataplane_pages(
        &self,
        mesh: &str,
        service: Option<&str>,
        take: impl FnMut(Vec<DataplaneOverview>),
    ) -> Result<(), KumaError> {
        let tag = service.map(|service| format!("{SERVICE_TAG}:{service}"));
        let segments = ["meshes", mesh, "dataplanes", "_overview"];
        self.pages(&segments, tag.as_deref(), take).await
    }

    /// One sidecar's Envoy `/stats` text, as the control plane relays it
    /// (`GET /meshes/{mesh}/dataplanes/{name}/stats`).
    pub async fn stats(&self, mesh: &str, dataplane: &str) -> Result<Bytes, KumaError> {
        let mut body = BytesMut::new();
        self.stats_with(mesh, dataplane, |piece| body.extend_from_slice(piece))
            .await?;
        Ok(body.freeze())
    }

    /// The same text handed to `read` piece by piece as it arrives, so that no
    /// copy of the whole body is kept. Returns the body's length.
    pub async fn stats_with(
        &self,
        mesh: &str,
        dataplane: &str,
        read: impl FnMut(&[u8]),
    ) -> Result<usize, KumaError> {
        let url = self.url(&["meshes", mesh, "dataplanes", dataplane, "stats"])?;

        // Kuma's API declares JSON output; a text-only Accept header may be refused.
        self.get_with(url, "*/*", read).await
    }

    /// Reads every page of a list, handing each to `take` as it arrives. The
    /// offset is taken out of each `next` link and
    /// the request re-issued against our own base URL, because Kuma builds `next`
    /// from the request's `Host` header, which is wrong behind a port-forward.
    async fn pages<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        tag: Option<&str>,
        mut take: impl FnMut(Vec<T>),
    ) -> Result<(), KumaError> {
        let mut offset: Option<String> = None;
        let mut seen = HashSet::new();

        loop {
            let mut url = self.url(segments)?;
            set_query(&mut url, tag, offset.as_deref());
            let path = path_of(&url);
            let page: Page<T> = self.get_json(url).await?;

            let empty = page.items.is_empty();
            take(page.items);
            let Some(next) = page.next else {
                return Ok(());
            };

            let next_offset = self.next_offset(&path, &next)?;
            if empty {
                return Err(paging(&path, "an empty page links to another page"));
            }
            if !seen.insert(next_offset.clone()) {
                return Err(paging(
                    &path,
                    format!("offset {next_offset:?} was already read; the list would never end"),
                ));
            }
            offset = Some(next_offset);
        }
    }

    /// The `offset` query value of a `next` link, absolute or relative.
    fn next_offset(&self, path: &str, next: &str) -> Result<String, KumaError> {
        let url = Url::parse(next)
            .or_else(|_| self.inner.base.join(next))
            .map_err(|e| paging(path, format!("next link {next:?} is not a URL: {e}")))?;
        url.query_pairs()
            .find(|(key, _)| key == "offset")
            .map(|(_, value)| value.into_owned())
            .ok_or_else(|| paging(path, format!("next link {next:?} has no offset")))
    }

    async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, KumaError> {
        let path = path_of(&url);
        let mut body = Vec::new();
        self.get_with(url, "application/json", |piece| {
            body.extend_from_slice(piece)
        })
        .await?;
        serde_json::from_slice(&body).map_err(|source| KumaError::Json { path, source })
    }

    /// One GET within the in-flight limit, its body handed to `read` piece by
    /// piece: the permit is held until the whole body is read, so the limit
    /// bounds the control plane's work, not just ours.
    async fn get_with(
        &self,
        url: Url,
        accept: &'static str,
        read: impl FnMut(&[u8]),
    ) -> Result<usize, KumaError> {
        let path = path_of(&url);
        let mut request = self.inner.http.get(url).header(ACCEPT, accept);
        if let Some(token) = &self.inner.token {
            request = request.header(AUTHORIZATION, token.header().await?);
        }

        let _permit = self
            .inner
            .in_flight
            .acquire()
            .await
            .expect("the in-flight semaphore is never closed");
        debug!(path = %path, "GET");
        let response = request
            .send()
            .await
            .map_err(|e| self.request_error(&path, e))?;

        if !response.status().is_success() {
            return Err(status_error(path, response).await);
        }
        self.read_body(&path, response, read).await
    }

    /// Reads a body chunk by chunk and stops as soon as it passes the cap, so an
    /// oversized answer is never read whole.
    async fn read_body(
        &self,
        path: &str,
        mut response: Response,
        mut read: impl FnMut(&[u8]),
    ) -> Result<usize, KumaError> {
        let limit = self.inner.max_body_bytes;
        let too_large = || KumaError::BodyTooLarge {
            path: path.to_string(),
            limit,
        };
        let announced = response.content_length().unwrap_or(0);
        if announced > limit as u64 {
            return Err(too_large());
        }

        let mut length = 0;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.request_error(path, e))?
        {
            length += chunk.len();
            if length > limit {
                return Err(too_large());
            }
            read(&chunk);
        }
        Ok(length)
    }

    /// Sorts a transport error into timeout, connect or a broken connection.
    fn request_error(&self, path: &str, error: reqwest::Error) -> KumaError {
        let path = path.to_string();
        let source = error.without_url();

        // Checked first: a connect that timed out is an unreachable control plane.
        if source.is_connect() {
            KumaError::Connect { path, source }
        } else if source.is_timeout() {
            KumaError::Timeout {
                path,
                timeout: self.inner.timeout,
            }
        } else {
            KumaError::Transport { path, source }
        }
    }

    /// The base URL with these path segments appended, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<Url, KumaError> {
        // The URL library silently drops `.` and `..` segments and an empty one
        // changes the route, either way asking for another resource; Kuma never
        // names a resource like that.
        if let Some(name) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(KumaError::BadName {
                name: name.to_string(),
            });
        }

        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .expect("the base URL was checked to have a path at construction")
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }
}

impl fmt::Debug for KumaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KumaClient")
            .field("base_url", &self.inner.base.as_str())
            .field(
                "token_file",
                &self.inner.token.as_ref().map(|t| t.path.as_path()),
            )
            .field("request_timeout", &self.inner.timeout)
            .field("concurrency", &self.inner.concurrency)
            .field("max_body_bytes", &self.inner.max_body_bytes)
            .finish()
    }
}

/// Parses the base URL. Credentials in it are refused: they would end up in logs
/// and error messages, where the token file's never do.
fn base_url(raw: &str) -> Result<Url, KumaError> {
    let invalid = |reason: String| KumaError::InvalidUrl { reason };
    let url = Url::parse(raw.trim()).map_err(|e| invalid(format!("{raw:?}: {e}")))?;

    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "{raw:?}: the scheme must be http or https"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials in the URL are not supported; use a token file".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "{raw:?}: a query or fragment is not allowed"
        )));
    }
    if url.cannot_be_a_base() {
        return Err(invalid(format!("{raw:?}: not a base URL")));
    }
    Ok(url)
}

/// Limits of zero would make every request wait forever or fail.
fn check_limits(config: &ClientConfig) -> Result<(), KumaError> {
    let reason = if config.concurrency == 0 {
        "concurrency must be at least 1"
    } else if config.request_timeout.is_zero() {
        "the request timeout must be above zero"
    } else if config.max_body_bytes == 0 {
        "the body limit must be above zero"
    } else {
        return Ok(());
    };
    Err(KumaError::InvalidConfig { reason })
}

/// Reads a PEM bundle; read at startup only, so blocking IO is fine here.
fn load_ca(path: &Path) -> Result<Vec<Certificate>, KumaError> {
    let pem = std::fs::read(path).map_err(|source| KumaError::CaFile {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |reason: String| KumaError::CaInvalid {
        path: path.to_path_buf(),
        reason,
    };

    let certs = Certificate::from_pem_bundle(&pem).map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// Sets the query of a list request: the tag filter, if any, then `size` and
/// `offset`.
fn set_query(url: &mut Url, tag: Option<&str>, offset: Option<&str>) {
    let mut query = url.query_pairs_mut();
    if let Some(tag) = tag {
        query.append_pair("tag", tag);
    }
    query.append_pair("size", &PAGE_SIZE.to_string());
    if let Some(offset) = offset {
        query.append_pair("offset", offset);
    }
}

/// Path and query of a URL: what error messages name. The host is left out: it
/// is the same for every request and known from the configuration.
fn path_of(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    }
}

fn paging(path: &str, reason: impl Into<String>) -> KumaError {
    KumaError::Paging {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Turns a non-2xx answer into an error, with Kuma's `title` and `detail` when the
/// body is its `/std-errors` JSON. The body is read only up to a small cap.
async fn status_error(path: String, mut response: Response) -> KumaError {
    let status = response.status();
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > ERROR_BODY_BYTES {
            break;
        }
    }

    let api = serde_json::from_slice::<ApiError>(&body)
        .ok()
        .filter(|api| !api.title.is_empty() || !api.detail.is_empty());
    KumaError::Status { path, status, api }
}

// === impl TokenSource ===

/// The token file and the `Authorization` value last read from it.
struct TokenSource {
    path: PathBuf,
    state: Mutex<TokenState>,
}

#[derive(Default)]
struct TokenState {
    /// When the file was last looked at.
    checked: Option<Instant>,
    /// Modification time and length the header was read at.
    stamp: Option<FileStamp>,
    /// Marked sensitive, so even the HTTP library's `Debug` hides it.
    header: Option<HeaderValue>,
}

/// What tells that a file changed without reading it. A rewrite with the same
/// length inside one timestamp tick would go unnoticed until the next change;
/// Kubernetes swaps a whole directory on rotation, which always moves the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl TokenSource {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            state: Mutex::new(TokenState::default()),
        }
    }

    /// The current `Authorization` value, re-read when the file changed. At most
    /// one request looks at the file at a time; the others wait for its answer.
    async fn header(&self) -> Result<HeaderValue, KumaError> {
        let mut state = self.state.lock().await;
        if let (Some(checked), Some(header)) = (state.checked, &state.header)
            && checked.elapsed() < TOKEN_RECHECK
        {
            return Ok(header.clone());
        }

        let metadata = tokio::fs::metadata(&self.path)
            .await
            .map_err(|source| self.unreadable(source))?;
        let stamp = FileStamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
        };
        let header = match &state.header {
            Some(header) if state.stamp == Some(stamp) => header.clone(),
            _ => {
                let header = self.read().await?;
                state.header = Some(header.clone());
                state.stamp = Some(stamp);
                header
            }
        };

        state.checked = Some(Instant::now());
        Ok(header)
    }

    /// Reads the file into a `Bearer` header value. Surrounding whitespace, like the
    /// trailing newline an editor or `echo` leaves, is trimmed.
    async fn read(&self) -> Result<HeaderValue, KumaError> {
        let raw = tokio::fs::read(&self.path)
            .await
            .map_err(|source| self.unreadable(source))?;
        let token = raw.trim_ascii();
        if token.is_empty() {
            return Err(self.invalid("the file is empty"));
        }

        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(token);
        let mut header = HeaderValue::from_bytes(&value)
            .map_err(|_| self.invalid("it holds characters not allowed in an HTTP header"))?;
        header.set_sensitive(true);
        Ok(header)
    }

    fn unreadable(&self, source: std::io::Error) -> KumaError {
        KumaError::TokenFile {
            path: self.path.clone(),
            source,
        }
    }

    fn invalid(&self, reason: &'static str) -> KumaError {
        KumaError::TokenInvalid {
            path: self.path.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base_url: &str) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into(),
            token_file: None,
            ca_file: None,
            request_timeout: Duration::from_secs(1),
            concurrency: 2,
            max_body_bytes: MAX_BODY_BYTES,
        }
    }

    fn client(base_url: &str) -> KumaClient {
        KumaClient::new(config(base_url)).expect("test config is valid")
    }

    #[test]
    fn base_url_tolerates_a_trailing_slash_and_keeps_a_prefix() {
        let plain = client("http://127.0.0.1:5681/");
        let prefixed = client("https://127.0.0.1/kuma/api/");

        assert_eq!(
            plain.url(&["meshes"]).expect("plain name").as_str(),
            "http://127.0.0.1:5681/meshes"
        );
        assert_eq!(
            prefixed.url(&["meshes"]).expect("plain name").as_str(),
            "https://127.0.0.1/kuma/api/meshes"
        );
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let client = client("http://127.0.0.1:5681");
        let url = client
            .url(&["meshes", "a/b", "dataplanes", "x?y#z %", "stats"])
            .expect("odd but possible names");

        assert_eq!(url.path(), "/meshes/a%2Fb/dataplanes/x%3Fy%23z%20%25/stats");
        assert_eq!(url.query(), None);
    }

    #[test]
    fn dot_segments_are_refused() {
        let client = client("http://127.0.0.1:5681");

        for name in ["..", ".", ""] {
            let error = client
                .url(&["meshes", name, "dataplanes"])
                .expect_err("dot segment");
            assert_eq!(error.reason(), ErrorReason::Parse);
        }
    }

    #[test]
    fn bad_base_urls_are_refused_without_echoing_credentials() {
        for raw in [
            "localhost:5681",
            "ftp://cp:21",
            "http://cp:5681/?a=b",
            "not a url",
        ] {
            assert!(KumaClient::new(config(raw)).is_err(), "{raw}");
        }

        let error = KumaClient::new(config("http://admin:hunter2@cp:5681")).expect_err("userinfo");
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn zero_limits_are_refused() {
        let mut zero = config("http://127.0.0.1:5681");
        zero.concurrency = 0;

        assert!(matches!(
            KumaClient::new(zero),
            Err(KumaError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn next_offset_is_read_from_absolute_and_relative_links() {
        let client = client("http://127.0.0.1:5681");
        let absolute = "http://kuma-control-plane.kuma-system:5681/meshes/default/dataplanes/\
                        _overview?offset=2000&size=1000";

        assert_eq!(
            client.next_offset("/p", absolute).expect("absolute link"),
            "2000"
        );
        assert_eq!(
            client
                .next_offset("/p", "/meshes?size=1000&offset=abc%3D")
                .expect("relative link"),
            "abc="
        );
        assert!(client.next_offset("/p", "http://cp/meshes?size=1").is_err());
    }

    #[test]
    fn list_query_carries_size_and_offset() {
        let client = client("http://127.0.0.1:5681");
        let mut url = client.url(&["meshes"]).expect("plain name");
        set_query(&mut url, None, Some("1000"));

        assert_eq!(path_of(&url), "/meshes?size=1000&offset=1000");
    }

    #[test]
    fn a_tag_filter_is_percent_encoded() {
        let client = client("http://127.0.0.1:5681");
        let mut url = client.url(&["meshes"]).expect("plain name");
        set_query(&mut url, Some("kuma.io/service:a b&c"), None);

        assert_eq!(
            path_of(&url),
            "/meshes?tag=kuma.io%2Fservice%3Aa+b%26c&size=1000"
        );
    }
}
