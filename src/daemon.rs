//! `strictly run`: wires the client, the engine, the exporter and the poll loop, and
//! stops them in order on SIGTERM or SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::cli::{ConnectionArgs, RunArgs};
use crate::engine::{Engine, Settings};
use crate::exporter::server::{self, App};
use crate::exporter::{Published, metrics};
use crate::kuma::client::{ClientConfig, KumaClient, MAX_BODY_BYTES};
use crate::poller::{Poller, Selection};

/// How long a poll cycle in flight may run on after a stop signal. Kubernetes waits
/// 30 s by default before it kills a pod, so this leaves room for the rest.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the control-plane client could not be built: {0}")]
    Client(#[from] crate::kuma::error::KumaError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A daemon that is bound and ready to run.
pub struct Daemon {
    listener: TcpListener,
    app: Arc<App>,
    poller: Poller,
    poll_interval: Duration,
}

impl Daemon {
    /// Builds everything and binds the listener, so a bad address fails before any
    /// request goes out.
    pub async fn bind(args: &RunArgs) -> Result<Self, StartError> {
        let client = KumaClient::new(client_config(&args.connection))?;
        let listener =
            TcpListener::bind(args.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: args.listen,
                    source,
                })?;

        let published = Published::default();
        let (registry, self_metrics) = metrics::registry(published.clone(), args.per_dataplane);
        let engine = Engine::new(settings(args));
        let selection = selection(&args.connection);
        let poller = Poller::new(client, engine, selection, self_metrics, published.clone())
            .with_shard(args.shard);
        Ok(Self {
            listener,
            app: Arc::new(App {
                published,
                registry,
            }),
            poller,
            poll_interval: args.poll_interval,
        })
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves and polls until `shutdown` completes; then finishes the cycle in
    /// flight and stops the server.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let server_stop = wait_for(stop_rx);
        let server = tokio::spawn(server::serve(self.listener, self.app, server_stop));

        self.poller
            .run(self.poll_interval, SHUTDOWN_GRACE, shutdown)
            .await;

        info!("stopping the HTTP server");
        let _ = stop_tx.send(true);
        let _ = server.await;
    }
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// The client settings the connection flags describe, shared by every command.
pub fn client_config(c: &ConnectionArgs) -> ClientConfig {
    ClientConfig {
        base_url: c.kuma_url.clone(),
        token_file: c.kuma_token_file.clone(),
        ca_file: c.kuma_ca_file.clone(),
        request_timeout: c.request_timeout,
        concurrency: c.concurrency,
        max_body_bytes: MAX_BODY_BYTES,
    }
}

/// The meshes and services the connection flags select, shared by every command.
pub fn selection(c: &ConnectionArgs) -> Selection {
    Selection {
        meshes: c.meshes.clone(),
        services: c.services.clone(),
    }
}

fn settings(args: &RunArgs) -> Settings {
    Settings {
        window: args.verdict.window,
        min_mtls_connections: args.verdict.min_mtls_connections,
        stale_after: args.stale_after(),
        // Two missed listings in a row, at least, before a dataplane is forgotten.
        forget_after: args.poll_interval * 2,
    }
}

/// Completes on SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C).
pub async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => info!("SIGINT received, shutting down"),
        () = term => info!("SIGTERM received, shutting down"),
    }
}
