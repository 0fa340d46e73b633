//! The simulated control plane's HTTP server and the handle that changes its
//! world while it runs.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::debug;

use super::api::{self, Answer, ApiRequest};
use super::body::SimBody;
use super::load::{Load, LoadCounters};
use super::relay::Relay;
use super::world::World;

/// A running simulated control plane on 127.0.0.1 and a port of its own.
///
/// [`SimControlPlane::shutdown`] stops it and waits; dropping it stops it too,
/// without waiting. Either way open connections are cut.
#[derive(Debug)]
pub struct SimControlPlane {
    addr: SocketAddr,
    handle: SimHandle,
    /// Dropping the sender is the stop signal.
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl SimControlPlane {
    /// Binds 127.0.0.1 on a free port and starts serving `world`.
    ///
    /// # Errors
    ///
    /// When the socket cannot be bound, or no HTTP client can be set up for
    /// relaying real sidecars' stats.
    pub async fn start(world: World) -> std::io::Result<Self> {
        let relay = Relay::new().map_err(std::io::Error::other)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let handle = SimHandle::new(world, relay);

        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, handle.clone(), stopped));
        Ok(Self {
            addr,
            handle,
            stop,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A handle on the world and the load counters.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Stops accepting, cuts open connections and waits until the server is gone.
    /// A panic inside the server is passed on, so a test sees it.
    pub async fn shutdown(self) {
        drop(self.stop);
        if let Err(error) = self.task.await
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

/// Changes the world of a running simulated control plane and reads its load.
/// Cheap to clone; every clone sees the same world.
#[derive(Debug, Clone)]
pub struct SimHandle {
    world: Arc<Mutex<World>>,
    load: Arc<LoadCounters>,
    relay: Relay,
}

impl SimHandle {
    fn new(world: World, relay: Relay) -> Self {
        Self {
            world: Arc::new(Mutex::new(world)),
            load: Arc::new(LoadCounters::default()),
            relay,
        }
    }

    /// Changes the world; requests see the change from the next one on.
    pub fn update<R>(&self, change: impl FnOnce(&mut World) -> R) -> R {
        change(&mut self.lock())
    }

    /// Reads the world.
    pub fn read<R>(&self, read: impl FnOnce(&World) -> R) -> R {
        read(&self.lock())
    }

    /// What the server did since it started or since [`SimHandle::reset_load`].
    pub fn load(&self) -> Load {
        self.load.snapshot()
    }

    /// Starts a new load measurement.
    pub fn reset_load(&self) {
        self.load.reset();
    }

    /// A panic inside an `update` closure poisons the lock; the world is plain
    /// data that is still consistent enough to serve, so keep going.
    fn lock(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one request. The world is locked only while the answer is built,
    /// never across the configured delay or a relayed request to Envoy.
    async fn serve(&self, request: Request<Incoming>) -> Response<SimBody> {
        self.load.request();
        let request = api_request(&request);
        let _in_flight = api::is_stats(&request.path).then(|| self.load.stats_request());

        let answer = self.update(|world| api::answer(world, &request, Instant::now()));
        if !answer.delay.is_zero() {
            tokio::time::sleep(answer.delay).await;
        }
        let answer = self.relay.complete(answer, &request).await;
        self.response(answer)
    }

    fn response(&self, answer: Answer) -> Response<SimBody> {
        let body = SimBody::new(answer.payload, Arc::clone(&self.load));
        let mut response = Response::new(body);
        *response.status_mut() = answer.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
        response
    }
}

fn api_request(request: &Request<Incoming>) -> ApiRequest {
    let header = |name| {
        request
            .headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    ApiRequest::from_parts(
        request.method().clone(),
        request.uri(),
        header(HOST),
        header(AUTHORIZATION),
    )
}

/// Accepts connections until told to stop, then cuts the open ones.
async fn accept_loop(listener: TcpListener, handle: SimHandle, mut stopped: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, handle.clone()));
                }
                Err(error) => {
                    // Out of file descriptors, typically: back off a little.
                    debug!(%error, "simulated control plane could not accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, handle: SimHandle) {
    let service = service_fn(move |request| {
        let handle = handle.clone();
        async move { Ok::<_, Infallible>(handle.serve(request).await) }
    });

    // A client that hangs up mid-body (a refused oversized answer) ends here.
    if let Err(error) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        debug!(%error, "simulated control plane connection ended");
    }
}
