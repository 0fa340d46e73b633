//! `strictly demo`: Kuma's "progressively rolling in strict mTLS" guide, played by
//! the simulated control plane while the real daemon judges it, all on 127.0.0.1.
//!
//! The cast, in mesh `default` (Permissive):
//!
//! - namespace `kuma-demo`: demo-app (HTTP 5000) and redis (TCP 6379), both long in
//!   the mesh and talking mTLS only;
//! - namespace `kuma-demo-migration`: a redis just deployed in Permissive mode, and a
//!   demo-app that first runs outside the mesh (plaintext to redis), then joins it:
//!   its pod is replaced, a new dataplane appears, and its calls turn to mTLS.
//!
//! Within about a minute the migration redis goes from plaintext to ready.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use clap::Parser;
use tracing::info;

use crate::cli::{Cli, Command, DemoArgs, LogFormat, RunArgs};
use crate::daemon::{Daemon, StartError};
use crate::sim::script::{self, Change, Phase, Target};
use crate::sim::{
    ConnectionKind, InboundTraffic, ProxyKind, SimControlPlane, SimDataplane, SimInbound, SimMesh,
    World,
};

const MESH: &str = "default";
pub const MIGRATION_REDIS: &str = "redis-7b9f6c5d8-m4kzp.kuma-demo-migration";
pub const MIGRATION_REDIS_SERVICE: &str = "redis_kuma-demo-migration_svc_6379";
const MIGRATION_APP: &str = "demo-app-84d7f9c6b-r8tnx.kuma-demo-migration";
const DEMO_REDIS: &str = "redis-5d8c7b4f9-q7wnm.kuma-demo";
const DEMO_APP: &str = "demo-app-6f9c8d7b5-x2kq4.kuma-demo";

/// The window at speed 1: long enough to watch each verdict, short enough that the
/// whole story fits in about a minute.
const WINDOW: Duration = Duration::from_secs(15);
const THREE_DAYS: Duration = Duration::from_secs(3 * 24 * 3600);

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the simulated control plane could not start: {0}")]
    ControlPlane(#[source] std::io::Error),
    #[error(transparent)]
    Daemon(#[from] StartError),
    #[error("the demo's own daemon flags are invalid: {0}")]
    Flags(String),
}

/// The world when the story starts.
pub fn world() -> World {
    let mut world = World::new();
    world.add_mesh(SimMesh::permissive(MESH));
    world
        .add_dataplane(long_running(
            DEMO_APP,
            "10.42.0.21",
            http_inbound("kuma-demo", 600),
        ))
        .add_dataplane(long_running(
            DEMO_REDIS,
            "10.42.0.13",
            redis_inbound("kuma-demo", 1500),
        ))
        .add_dataplane(SimDataplane::gateway(
            MESH,
            "edge-gateway-7c5d9f8b6-h4jzt.kuma-demo",
            "10.42.0.30",
            ProxyKind::BuiltinGateway,
        ))
        .add_dataplane(
            SimDataplane::sidecar(MESH, MIGRATION_REDIS, "10.42.1.13")
                .inbound(redis_inbound("kuma-demo-migration", 0)),
        );
    world
}

fn long_running(name: &str, ip: &str, inbound: SimInbound) -> SimDataplane {
    SimDataplane::sidecar(MESH, name, ip)
        .inbound(inbound)
        .with_uptime(THREE_DAYS)
}

fn redis_inbound(namespace: &str, mtls: u64) -> SimInbound {
    let service = format!("redis_{namespace}_svc_6379");
    seen_mtls(SimInbound::tcp(6379, &service).named("redis"), mtls)
}

fn http_inbound(namespace: &str, mtls: u64) -> SimInbound {
    let service = format!("demo-app_{namespace}_svc_5000");
    seen_mtls(SimInbound::http(5000, &service).named("http"), mtls)
}

/// An inbound whose Envoy has counted `mtls` mesh connections and nothing else.
fn seen_mtls(inbound: SimInbound, mtls: u64) -> SimInbound {
    inbound.with_traffic(InboundTraffic {
        mtls,
        ..InboundTraffic::default()
    })
}

/// The guide's steps as phases, at speed 1.
pub fn phases() -> Vec<Phase> {
    let migration_redis = Target::new(MESH, MIGRATION_REDIS, 6379);
    let migration_app = Target::new(MESH, MIGRATION_APP, 5000);
    let steady = |phase: Phase| {
        phase
            .flow(Target::new(MESH, DEMO_APP, 5000), ConnectionKind::Mtls, 2.0)
            .flow(
                Target::new(MESH, DEMO_REDIS, 6379),
                ConnectionKind::Mtls,
                3.0,
            )
    };

    vec![
        steady(Phase::new(
            "redis is deployed in kuma-demo-migration in Permissive mode; nothing calls it yet",
            Some(Duration::from_secs(5)),
        )),
        steady(Phase::new(
            "demo-app runs outside the mesh and calls the migration redis in plaintext",
            Some(Duration::from_secs(15)),
        ))
        .change(Change::Active {
            to: migration_redis.clone(),
            active: 1,
        })
        .flow(migration_redis.clone(), ConnectionKind::Plaintext, 1.0),
        steady(Phase::new(
            "demo-app joins the mesh: its pod is replaced by one with a sidecar, and its calls \
             to redis turn to mTLS; redis is ready once a whole window passes without plaintext",
            None,
        ))
        .change(Change::Add(Box::new(
            SimDataplane::sidecar(MESH, MIGRATION_APP, "10.42.1.21")
                .inbound(http_inbound("kuma-demo-migration", 0)),
        )))
        .change(Change::Active {
            to: migration_redis.clone(),
            active: 0,
        })
        .flow(migration_redis, ConnectionKind::Mtls, 3.0)
        .flow(migration_app, ConnectionKind::Mtls, 1.0),
    ]
}

/// The daemon's settings for a demo played at `speed`.
pub fn daemon_args(kuma_url: &str, args: &DemoArgs) -> Result<RunArgs, DemoError> {
    let window = WINDOW.div_f64(args.speed);
    let poll = (window / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let format = match args.log_format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    let argv = [
        "strictly".to_string(),
        "run".to_string(),
        format!("--kuma-url={kuma_url}"),
        format!("--listen={}", args.listen),
        format!("--window={}ms", window.as_millis()),
        format!("--poll-interval={}ms", poll.as_millis()),
        format!("--stale-after={}ms", (poll * 5).as_millis()),
        format!("--log-format={format}"),
    ];
    let cli = Cli::try_parse_from(argv).map_err(|e| DemoError::Flags(e.to_string()))?;
    let Command::Run(run) = cli.command else {
        return Err(DemoError::Flags("not the run command".to_string()));
    };
    run.validate()
        .map_err(|e| DemoError::Flags(e.to_string()))?;
    Ok(run)
}

/// Plays the demo until `shutdown` completes.
pub async fn run(args: &DemoArgs, shutdown: impl Future<Output = ()>) -> Result<(), DemoError> {
    let cp = SimControlPlane::start(world())
        .await
        .map_err(DemoError::ControlPlane)?;
    let run_args = daemon_args(&cp.url(), args)?;
    let daemon = Daemon::bind(&run_args).await?;
    let base = daemon
        .local_addr()
        .map_or_else(|_| args.listen.to_string(), |a| a.to_string());
    banner(&base, &cp.url(), &run_args);

    let handle = cp.handle();
    let phases = phases();
    let story = script::play(&handle, &phases, args.speed, |n, phase| {
        info!(phase = n, of = phases.len(), "{}", phase.story);
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(daemon.run(async {
        let _ = stop_rx.await;
    }));

    tokio::pin!(story);
    tokio::select! {
        () = shutdown => {}
        () = &mut story => std::future::pending::<()>().await,
    }
    let _ = stop_tx.send(());
    let _ = daemon.await;
    cp.shutdown().await;
    Ok(())
}

/// Prints where to look. A closed stdout (`strictly demo | head -1`) loses
/// the banner, not the demo.
fn banner(base: &str, kuma_url: &str, run: &RunArgs) {
    let _ = writeln!(
        std::io::stdout(),
        "strictly demo: Kuma's strict-mTLS migration, played by a simulated control plane\n\
         \n  status page   http://{base}/\n  metrics       http://{base}/metrics\n  \
         inbounds API  http://{base}/api/v1/inbounds\n  control plane {kuma_url} (simulated)\n\
         \nWindow {}: watch redis in kuma-demo-migration go from plaintext to ready.\n\
         In another terminal: strictly check --kuma-url {kuma_url} --window {} --observe {}\n\
         Ctrl-C stops.\n",
        humantime::format_duration(run.verdict.window),
        humantime::format_duration(run.verdict.window),
        humantime::format_duration(run.verdict.window),
    );
}
