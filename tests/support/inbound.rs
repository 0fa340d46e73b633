//! A Kuma-like sidecar inbound: the workload, an Envoy configured from one of
//! the templates in `tests/envoy/`, and the stat names that belong to it.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use super::certs::{DEMO_APP_SPIFFE, MeshCerts};
use super::clients::{Client, Connection, Reply};
use super::envoy::Envoy;
use super::measure::Movement;
use super::process::{ScratchDir, envoy_binary, free_port, program, repo_root, wait_until};
use super::stats::Stats;
use super::workload::{App, Workload};

/// A port can be taken by someone else between picking it and binding it.
const START_ATTEMPTS: usize = 3;

/// Connections close within milliseconds; a silent one that Envoy holds in its
/// listener filters closes when the client hangs up.
const SETTLE: Duration = Duration::from_secs(5);

/// An identity no client has, for the inbound whose RBAC denies everyone.
const NOBODY_SPIFFE: &str = "spiffe://default/not-demo-app";

/// The inbounds the templates describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundKind {
    /// redis behind a Permissive inbound, legacy naming, demo-app allowed.
    TcpPermissive,
    /// The same, with a MeshTrafficPermission that does not allow demo-app.
    TcpPermissiveDenied,
    /// redis behind a Strict inbound, legacy naming.
    TcpStrict,
    /// redis behind a Permissive inbound, unified naming (`self_inbound_dp_redis`).
    TcpPermissiveUnified,
    /// An HTTP/1.1 server behind a Permissive HTTP inbound, legacy naming.
    HttpPermissive,
}

impl InboundKind {
    fn template(self) -> &'static str {
        match self {
            InboundKind::TcpPermissive | InboundKind::TcpPermissiveDenied => "tcp-permissive.yaml",
            InboundKind::TcpStrict => "tcp-strict.yaml",
            InboundKind::TcpPermissiveUnified => "tcp-permissive-unified.yaml",
            InboundKind::HttpPermissive => "http-permissive.yaml",
        }
    }

    fn app(self) -> App {
        match self {
            InboundKind::HttpPermissive => App::Http,
            _ => App::Redis,
        }
    }

    fn allowed_principal(self) -> &'static str {
        match self {
            InboundKind::TcpPermissiveDenied => NOBODY_SPIFFE,
            _ => DEMO_APP_SPIFFE,
        }
    }

    fn label(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

/// The whole stat names of one inbound, as Kuma's configuration makes Envoy
/// write them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatNames {
    /// `127.0.0.1_<listener port>`, or `self_inbound_dp_redis`.
    pub listener: String,
    /// `localhost_<app port>`, or `self_inbound_dp_redis`.
    pub cluster: String,
    /// Up to and including `rbac.`: `inbound_127_0_0_1_<port>.rbac.`,
    /// `self_inbound_dp_redis.rbac.`, or for HTTP `http.localhost_<port>.rbac.`.
    pub rbac: String,
    /// tcp_proxy or HTTP connection manager: `tcp.localhost_<port>`,
    /// `http.localhost_<port>`, or `tcp.self_inbound_dp_redis`.
    pub proxy: String,
}

impl StatNames {
    fn new(kind: InboundKind, listener_port: u16, app_port: u16) -> StatNames {
        match kind {
            InboundKind::TcpPermissiveUnified => StatNames {
                listener: "self_inbound_dp_redis".into(),
                cluster: "self_inbound_dp_redis".into(),
                rbac: "self_inbound_dp_redis.rbac.".into(),
                proxy: "tcp.self_inbound_dp_redis".into(),
            },
            InboundKind::HttpPermissive => StatNames {
                listener: format!("127.0.0.1_{listener_port}"),
                cluster: format!("localhost_{app_port}"),
                rbac: format!("http.localhost_{app_port}.rbac."),
                proxy: format!("http.localhost_{app_port}"),
            },
            _ => StatNames {
                listener: format!("127.0.0.1_{listener_port}"),
                cluster: format!("localhost_{app_port}"),
                rbac: format!("inbound_127_0_0_1_{listener_port}.rbac."),
                proxy: format!("tcp.localhost_{app_port}"),
            },
        }
    }

    /// `listener.<L>.<stat>`, e.g. `listener("ssl.handshake")`.
    pub fn listener(&self, stat: &str) -> String {
        format!("listener.{}.{stat}", self.listener)
    }

    /// `cluster.<C>.<stat>`.
    pub fn cluster(&self, stat: &str) -> String {
        format!("cluster.{}.{stat}", self.cluster)
    }

    /// `<R>rbac.<stat>`: `allowed`, `denied`, `shadow_allowed`, `shadow_denied`.
    pub fn rbac(&self, stat: &str) -> String {
        format!("{}{stat}", self.rbac)
    }

    /// `tcp.<P>.<stat>` or `http.<P>.<stat>`.
    pub fn proxy(&self, stat: &str) -> String {
        format!("{}.{stat}", self.proxy)
    }

    /// The five listener counters of failed TLS handshakes.
    pub fn ssl_failures(&self) -> [String; 5] {
        [
            "ssl.connection_error",
            "ssl.fail_verify_error",
            "ssl.fail_verify_no_cert",
            "ssl.fail_verify_san",
            "ssl.fail_verify_cert_hash",
        ]
        .map(|stat| self.listener(stat))
    }
}

/// A running inbound. Dropping it stops Envoy and the workload and removes its
/// scratch directory.
#[derive(Debug)]
pub struct Inbound {
    pub kind: InboundKind,
    /// The port clients connect to (the dataplane's inbound port).
    pub listener_port: u16,
    /// The workload's own port, behind Envoy.
    pub app_port: u16,
    pub names: StatNames,
    pub certs: MeshCerts,
    config: PathBuf,
    envoy: Envoy,
    /// Held so that the workload stops with the inbound.
    workload: Workload,
    // Last, so that it is removed after the processes that write into it stop.
    dir: ScratchDir,
}

impl Inbound {
    /// Makes certificates, starts the workload and Envoy, and returns once
    /// Envoy's listener is bound.
    pub fn start(kind: InboundKind) -> Result<Inbound> {
        // A missing program is no port race: say so once, before any retry.
        envoy_binary()?;
        for name in ["redis-cli", "openssl", kind.app().program()] {
            program(name)?;
        }

        let dir = ScratchDir::new(&kind.label())?;
        let certs = MeshCerts::generate(&dir.path().join("certs"))?;

        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match start_processes(kind, dir.path(), &certs) {
                Ok((listener_port, app_port, config, envoy, workload)) => {
                    return Ok(Inbound {
                        kind,
                        listener_port,
                        app_port,
                        names: StatNames::new(kind, listener_port, app_port),
                        certs,
                        config,
                        envoy,
                        workload,
                        dir,
                    });
                }
                Err(error) => failures.push(format!("{error:#}")),
            }
        }
        bail!("cannot start {kind:?}:\n{}", failures.join("\n---\n"))
    }

    pub fn admin_url(&self) -> String {
        self.envoy.admin_url()
    }

    pub fn admin_address(&self) -> SocketAddr {
        self.envoy.admin_address()
    }

    pub fn envoy(&self) -> &Envoy {
        &self.envoy
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn stats(&self) -> Result<Stats> {
        self.envoy.stats()
    }

    pub fn stats_text(&self, used_only: bool) -> Result<String> {
        self.envoy.stats_text(used_only)
    }

    /// A client for this inbound's port and mesh.
    pub fn client(&self) -> Client {
        Client {
            port: self.listener_port,
            certs: self.certs.clone(),
        }
    }

    /// Opens one connection of `kind`, then waits until Envoy has counted it.
    pub fn open(&self, kind: Connection) -> Result<Reply> {
        let reply = self.client().open(kind)?;
        self.settle()?;
        Ok(reply)
    }

    /// Waits until no connection is open on the listener (none accepted, none
    /// still in the listener filters) and the inbound's counters stopped
    /// moving, then returns the stats.
    pub fn settle(&self) -> Result<Stats> {
        let watched = Movement::stat_names(&self.names);
        let mut previous: Option<Stats> = None;
        wait_until(SETTLE, "the inbound's connections to close", || {
            let stats = self.stats()?;
            let idle = stats.get(&self.names.listener("downstream_cx_active")) == 0
                && stats.get(&self.names.listener("downstream_pre_cx_active")) == 0;
            let still = previous
                .as_ref()
                .is_some_and(|before| watched.iter().all(|n| before.get(n) == stats.get(n)));
            previous = Some(stats.clone());
            Ok((idle && still).then_some(stats))
        })
    }

    /// Kills Envoy, as a crashed sidecar goes, leaving the workload running.
    pub fn stop_envoy(&mut self) {
        self.envoy.stop();
    }

    /// Kills Envoy (as a crashed or replaced sidecar would go) and starts a new
    /// one on the same ports and configuration. The admin address changes.
    pub fn restart_envoy(&mut self) -> Result<()> {
        self.envoy.stop();
        self.envoy = Envoy::start(&self.config, self.dir.path())?;
        let listener = listener_name(self.kind, self.listener_port);
        let bound = self.envoy.listener_port(&listener)?;
        ensure!(
            bound == Some(self.listener_port),
            "after the restart, {listener} bound to {bound:?}, not {}",
            self.listener_port
        );
        Ok(())
    }

    /// Restarts Envoy with the configuration of `kind` on the same ports and
    /// certificates, as a switch from Permissive to Strict does; the new kind
    /// must name its stats as the old one did.
    pub fn restart_as(&mut self, kind: InboundKind) -> Result<()> {
        let names = StatNames::new(kind, self.listener_port, self.app_port);
        ensure!(
            names == self.names,
            "{kind:?} names its stats {names:?}, not {:?}",
            self.names
        );
        let yaml = render(kind, self.listener_port, self.app_port, &self.certs)?;
        fs::write(&self.config, yaml)?;
        self.kind = kind;
        self.restart_envoy()
    }
}

type Started = (u16, u16, PathBuf, Envoy, Workload);

fn start_processes(kind: InboundKind, dir: &Path, certs: &MeshCerts) -> Result<Started> {
    let app_port = free_port()?;
    let listener_port = free_port()?;
    ensure!(app_port != listener_port, "got the same free port twice");

    let workload = Workload::start(kind.app(), app_port, dir)?;
    let config = dir.join("envoy.yaml");
    let yaml = render(kind, listener_port, app_port, certs)?;
    fs::write(&config, yaml)?;
    let envoy = Envoy::start(&config, dir)?;

    let bound = envoy.listener_port(&listener_name(kind, listener_port))?;
    ensure!(
        bound == Some(listener_port),
        "listener bound to {bound:?}, not {listener_port}"
    );
    Ok((listener_port, app_port, config, envoy, workload))
}

fn listener_name(kind: InboundKind, listener_port: u16) -> String {
    match kind {
        InboundKind::TcpPermissiveUnified => "self_inbound_dp_redis".into(),
        _ => format!("inbound:127.0.0.1:{listener_port}"),
    }
}

/// Fills a template's placeholders.
pub fn render(
    kind: InboundKind,
    listener_port: u16,
    app_port: u16,
    certs: &MeshCerts,
) -> Result<String> {
    let path = repo_root().join("tests/envoy").join(kind.template());
    let template =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let cert_dir = certs
        .dir()
        .to_str()
        .context("certificate path is not UTF-8")?;
    let yaml = template
        .replace("{{LISTENER_PORT}}", &listener_port.to_string())
        .replace("{{APP_PORT}}", &app_port.to_string())
        .replace("{{CERT_DIR}}", cert_dir)
        .replace("{{ALLOWED_PRINCIPAL}}", kind.allowed_principal());
    ensure!(
        !yaml.contains("{{"),
        "{} has a placeholder left",
        path.display()
    );
    Ok(yaml)
}
