//! The HTTP server of the daemon:
//!
//! - `GET /metrics`: Prometheus text format 0.0.4, or OpenMetrics when the scraper's
//!   `Accept` header asks for it;
//! - `GET /healthz`: 200 while the process is alive;
//! - `GET /readyz`: 503 until the first poll cycle completed, then 200;
//! - `GET /api/v1/inbounds`: the verdicts as JSON;
//! - `GET /`: the status page.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::{debug, error, warn};

use super::{Published, api, page};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What every request handler reads.
#[derive(Debug)]
pub struct App {
    pub published: Published,
    pub registry: Registry,
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Usually out of file descriptors; the next accept may succeed.
                    warn!(error = %err, "accepting a connection failed");
                    continue;
                }
            },
        };
        tokio::spawn(connection(stream, peer, app.clone()));
    }
}

async fn connection(stream: tokio::net::TcpStream, peer: SocketAddr, app: Arc<App>) {
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(route(&app, &req)) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(err) = conn.await {
        debug!(%peer, error = %err, "connection ended with an error");
    }
}

fn route(app: &App, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
    }
    match req.uri().path() {
        "/metrics" => metrics(app, req),
        "/healthz" => plain(StatusCode::OK, "ok\n"),
        "/readyz" => readyz(app),
        "/api/v1/inbounds" => inbounds(app),
        "/" => html(page::render(app.published.latest().as_deref())),
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn metrics(app: &App, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let wants_openmetrics = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));

    // Sized up front from the snapshot: one allocation of about the final size
    // rather than a dozen doublings. It renders no faster than a growing buffer
    // (glibc remaps big ones without copying), but it does not depend on that.
    let snapshot = app.published.latest();
    let mut body = String::with_capacity(super::metrics::size_hint(snapshot.as_deref()));
    drop(snapshot);
    let (encoded, content_type) = if wants_openmetrics {
        (text::encode(&mut body, &app.registry), OPENMETRICS)
    } else {
        (
            prometheus_text::encode(&mut body, &app.registry),
            prometheus_text::CONTENT_TYPE,
        )
    };
    match encoded {
        Ok(()) => respond(StatusCode::OK, content_type, body),
        Err(err) => {
            error!(error = %err, "encoding metrics failed");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
        }
    }
}

fn readyz(app: &App) -> Response<Full<Bytes>> {
    match app.published.latest() {
        Some(_) => plain(StatusCode::OK, "ready\n"),
        None => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "first poll cycle not completed yet\n",
        ),
    }
}

fn inbounds(app: &App) -> Response<Full<Bytes>> {
    let snapshot = app.published.latest();
    match serde_json::to_string(&api::inbounds(snapshot.as_deref())) {
        Ok(json) => respond(StatusCode::OK, "application/json", json),
        Err(err) => {
            error!(error = %err, "encoding the inbounds failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")
        }
    }
}

fn html(body: String) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, "text/html; charset=utf-8", body)
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body.to_string())
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
