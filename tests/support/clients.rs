//! Clients that open each kind of connection a Kuma sidecar's inbound can see,
//! from a mesh client's mTLS to a plaintext client that never says a word.
//!
//! Mesh clients offer ALPN `kuma` and present a certificate; that is what sends
//! them to the filter chain where Envoy terminates TLS. `redis-cli --tls` cannot
//! set ALPN, so the TLS clients here are rustls.

use std::io::{self, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::certs::{Identity, MeshCerts};
use super::http1;
use super::process::{Process, program};
use super::workload::HTTP_PATH;

/// How long a client waits for an answer that may never come: a refused
/// handshake is answered within milliseconds, a workload that got TLS bytes it
/// cannot parse may never answer.
const ANSWER_WAIT: Duration = Duration::from_millis(500);

/// Long enough for Envoy to accept a connection and run its listener filters.
const SILENCE: Duration = Duration::from_millis(200);

/// Once a server has sent its handshake flight, this much silence means it is
/// waiting for the client.
const QUIET: Duration = Duration::from_millis(100);

/// Each kind of connection the measurements open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// `redis-cli PING` in plaintext.
    PlaintextPing,
    /// A mesh client: mTLS with ALPN `kuma` and the demo-app certificate, PING.
    MeshPing,
    /// A mesh client that completes the mTLS handshake and hangs up without
    /// sending a byte.
    SilentMesh,
    /// ALPN `kuma`, but no client certificate.
    MeshWithoutCert,
    /// ALPN `kuma`, a client certificate from a CA the sidecar does not trust.
    MeshUntrustedCa,
    /// ALPN `kuma`, a certificate from the mesh CA for another trust domain.
    MeshWrongSan,
    /// TLS without ALPN `kuma`: TLS that did not come from a mesh sidecar.
    TlsOutsideMesh,
    /// A mesh ClientHello, the server's answer read, then bytes that are not TLS.
    GarbageAfterClientHello,
    /// A mesh ClientHello, and the client hangs up at once.
    ClientHelloThenHangUp,
    /// A mesh ClientHello, the server's answer read, then the client hangs up.
    HangUpAfterServerHello,
    /// Connects in plaintext, sends nothing, hangs up.
    SilentPlaintext,
}

impl Connection {
    pub const ALL: [Connection; 11] = [
        Connection::PlaintextPing,
        Connection::MeshPing,
        Connection::SilentMesh,
        Connection::MeshWithoutCert,
        Connection::MeshUntrustedCa,
        Connection::MeshWrongSan,
        Connection::TlsOutsideMesh,
        Connection::GarbageAfterClientHello,
        Connection::ClientHelloThenHangUp,
        Connection::HangUpAfterServerHello,
        Connection::SilentPlaintext,
    ];

    /// A short description for tables.
    pub fn label(self) -> &'static str {
        match self {
            Connection::PlaintextPing => "plaintext redis-cli PING",
            Connection::MeshPing => "mesh mTLS (ALPN kuma, good cert) PING",
            Connection::SilentMesh => "mesh mTLS, handshake done, sends nothing",
            Connection::MeshWithoutCert => "mesh TLS without client cert",
            Connection::MeshUntrustedCa => "mesh mTLS, cert from untrusted CA",
            Connection::MeshWrongSan => "mesh mTLS, cert with wrong SAN",
            Connection::TlsOutsideMesh => "TLS from outside the mesh (no ALPN kuma)",
            Connection::GarbageAfterClientHello => "garbage after ClientHello",
            Connection::ClientHelloThenHangUp => "ClientHello, then hang up at once",
            Connection::HangUpAfterServerHello => "ClientHello, server answers, hang up",
            Connection::SilentPlaintext => "plaintext, connects and sends nothing",
        }
    }
}

/// What the client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The workload answered; for redis, `PONG`.
    Answer(String),
    /// No answer: the connection was closed or refused, or nothing came back in
    /// time. The text says which.
    NoAnswer(String),
}

/// Opens connections to one inbound port, with the certificates of its mesh.
#[derive(Debug, Clone)]
pub struct Client {
    pub port: u16,
    pub certs: MeshCerts,
}

impl Client {
    /// Opens one connection of `kind`, lets it run its course, and closes it.
    /// Errors are the harness's own (a missing program, a refused TCP connect),
    /// never the outcome of the connection.
    pub fn open(&self, kind: Connection) -> Result<Reply> {
        match kind {
            Connection::PlaintextPing => self.redis_cli_ping(),
            Connection::MeshPing => self.tls_ping(Some(Identity::DemoApp), true),
            Connection::SilentMesh => self.silent_mesh(),
            Connection::MeshWithoutCert => self.tls_ping(None, true),
            Connection::MeshUntrustedCa => self.tls_ping(Some(Identity::Untrusted), true),
            Connection::MeshWrongSan => self.tls_ping(Some(Identity::WrongSan), true),
            Connection::TlsOutsideMesh => self.tls_ping(None, false),
            Connection::GarbageAfterClientHello => self.garbage_after_client_hello(),
            Connection::ClientHelloThenHangUp => self.client_hello_then_hang_up(false),
            Connection::HangUpAfterServerHello => self.client_hello_then_hang_up(true),
            Connection::SilentPlaintext => self.silent_plaintext(),
        }
    }

    /// A plaintext TCP connection that has sent nothing yet; it stays open
    /// until the stream drops.
    pub fn hold_plaintext(&self) -> Result<TcpStream> {
        self.connect()
    }

    /// A plaintext connection to redis that has already had its PONG and stays
    /// open until the stream drops.
    pub fn hold_plaintext_ping(&self) -> Result<TcpStream> {
        let mut tcp = self.connect()?;
        tcp.write_all(b"PING\r\n")?;
        let reply = read_reply(&mut tcp);
        ensure!(
            reply == Reply::Answer("PONG".into()),
            "plaintext PING got {reply:?}"
        );
        Ok(tcp)
    }

    /// A mesh mTLS connection to redis that has already had its PONG and stays
    /// open until the stream drops.
    pub fn hold_mesh(&self) -> Result<StreamOwned<ClientConnection, TcpStream>> {
        let config = self.tls_config(Some(Identity::DemoApp), true)?;
        let mut tls = self.tls_stream(config)?;
        tls.write_all(b"PING\r\n")?;
        let reply = read_reply(&mut tls);
        ensure!(
            reply == Reply::Answer("PONG".into()),
            "mesh PING got {reply:?}"
        );
        Ok(tls)
    }

    /// A mesh mTLS connection whose handshake is done and that has sent no
    /// byte since; it stays open until the stream drops.
    pub fn hold_silent_mesh(&self) -> Result<StreamOwned<ClientConnection, TcpStream>> {
        let config = self.tls_config(Some(Identity::DemoApp), true)?;
        let mut tls = self.tls_stream(config)?;
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }

    /// A mesh client halfway through its handshake: the ClientHello is sent and
    /// the server's answer read, and the client's certificate and Finished are
    /// held back. Envoy has accepted the connection and waits for them.
    pub fn hold_mesh_handshake(&self) -> Result<HeldHandshake> {
        let config = self.tls_config(Some(Identity::DemoApp), true)?;
        let mut tls = self.tls_stream(config)?;
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut tls.sock)?;
        }
        while !tls.conn.wants_write() {
            let read = tls.conn.read_tls(&mut tls.sock)?;
            ensure!(read > 0, "the server closed during the handshake");
            tls.conn.process_new_packets()?;
        }
        Ok(HeldHandshake { tls })
    }

    /// Sends `requests` GETs over one kept-alive connection, plaintext or as a
    /// mesh client, and returns the status codes.
    pub fn http_requests(&self, mesh: bool, requests: usize) -> Result<Vec<u16>> {
        if mesh {
            let config = self.tls_config(Some(Identity::DemoApp), true)?;
            keep_alive_gets(self.tls_stream(config)?, requests)
        } else {
            keep_alive_gets(self.connect()?, requests)
        }
    }

    fn redis_cli_ping(&self) -> Result<Reply> {
        let mut command = Command::new(program("redis-cli")?);
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "PING"]);
        let mut process = Process::spawn_piped("redis-cli", command)?;
        let (status, output) = process.output_within(Duration::from_secs(5))?;
        let output = output.trim().to_owned();
        Ok(match status {
            Some(status) if status.success() && output == "PONG" => Reply::Answer(output),
            Some(status) => Reply::NoAnswer(format!("redis-cli {status}: {output}")),
            None => Reply::NoAnswer(format!("redis-cli hung: {output}")),
        })
    }

    fn tls_ping(&self, identity: Option<Identity>, kuma_alpn: bool) -> Result<Reply> {
        let config = self.tls_config(identity, kuma_alpn)?;
        let mut tls = self.tls_stream(config)?;
        // The first write drives the handshake.
        if let Err(error) = tls.write_all(b"PING\r\n").and_then(|()| tls.flush()) {
            return Ok(Reply::NoAnswer(error.to_string()));
        }
        Ok(read_reply(&mut tls))
    }

    fn silent_mesh(&self) -> Result<Reply> {
        let mut tls = self.hold_silent_mesh()?;
        // Whatever the server still sends after the handshake (TLS 1.3 session
        // tickets) is read, so that hanging up sends a FIN and not a reset.
        tls.sock.set_read_timeout(Some(QUIET))?;
        Ok(read_reply(&mut tls))
    }

    fn garbage_after_client_hello(&self) -> Result<Reply> {
        let mut tcp = self.connect()?;
        tcp.write_all(&self.client_hello()?)?;
        let answered = read_some(&mut tcp)?;
        ensure!(answered > 0, "the server did not answer the ClientHello");

        // Not a TLS record: the first byte is no valid content type.
        tcp.write_all(b"this is not TLS\r\n")?;
        Ok(drain(&mut tcp))
    }

    /// Hanging up with unread data in the socket makes the kernel send a reset
    /// instead of a FIN, so after reading the server's answer the client reads
    /// until it stops coming: both variants end with an orderly FIN.
    fn client_hello_then_hang_up(&self, read_answer: bool) -> Result<Reply> {
        let mut tcp = self.connect()?;
        tcp.write_all(&self.client_hello()?)?;
        if read_answer {
            let answered = read_some(&mut tcp)?;
            ensure!(answered > 0, "the server did not answer the ClientHello");
            drain(&mut tcp);
        }
        tcp.shutdown(std::net::Shutdown::Both)?;
        Ok(Reply::NoAnswer("client hung up".into()))
    }

    fn silent_plaintext(&self) -> Result<Reply> {
        let tcp = self.connect()?;
        thread::sleep(SILENCE);
        drop(tcp);
        Ok(Reply::NoAnswer("client sent nothing".into()))
    }

    /// The ClientHello a mesh client sends (ALPN `kuma`), as bytes.
    fn client_hello(&self) -> Result<Vec<u8>> {
        let config = self.tls_config(Some(Identity::DemoApp), true)?;
        let mut connection = ClientConnection::new(config, server_name())?;
        let mut hello = Vec::new();
        while connection.wants_write() {
            connection.write_tls(&mut hello)?;
        }
        Ok(hello)
    }

    fn connect(&self) -> Result<TcpStream> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .with_context(|| format!("cannot connect to {addr}"))?;
        tcp.set_read_timeout(Some(ANSWER_WAIT))?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }

    fn tls_stream(
        &self,
        config: Arc<ClientConfig>,
    ) -> Result<StreamOwned<ClientConnection, TcpStream>> {
        let connection = ClientConnection::new(config, server_name())?;
        Ok(StreamOwned::new(connection, self.connect()?))
    }

    /// A client that trusts the mesh CA, presents `identity` if any, and offers
    /// ALPN `kuma` when asked to.
    fn tls_config(&self, identity: Option<Identity>, kuma_alpn: bool) -> Result<Arc<ClientConfig>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.certs.mesh_ca())? {
            roots.add(cert?)?;
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);

        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some(identity) => {
                let (cert, key) = self.certs.client(identity);
                let chain = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
                builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&key)?)?
            }
        };
        if kuma_alpn {
            config.alpn_protocols = vec![b"kuma".to_vec()];
        }
        Ok(Arc::new(config))
    }
}

/// The sidecar's certificate carries IP:127.0.0.1 for this check; a client
/// dialing an IP sends no SNI, which the sidecar does not need.
fn server_name() -> ServerName<'static> {
    ServerName::IpAddress(Ipv4Addr::LOCALHOST.into())
}

/// A mesh handshake the client has not finished, from
/// [`Client::hold_mesh_handshake`].
#[derive(Debug)]
pub struct HeldHandshake {
    tls: StreamOwned<ClientConnection, TcpStream>,
}

impl HeldHandshake {
    /// Finishes the handshake, sends PING and returns the answer.
    pub fn finish(mut self) -> Result<Reply> {
        self.tls.write_all(b"PING\r\n")?;
        Ok(read_reply(&mut self.tls))
    }
}

fn keep_alive_gets(stream: impl Read + Write, requests: usize) -> Result<Vec<u16>> {
    let mut reader = BufReader::new(stream);
    (0..requests)
        .map(|_| {
            http1::write_get(reader.get_mut(), HTTP_PATH, true)?;
            Ok(http1::read_response(&mut reader)?.status)
        })
        .collect()
}

/// Reads one line of a redis reply (`+PONG\r\n`), or says why there was none.
fn read_reply(stream: &mut impl Read) -> Reply {
    let mut reply = Vec::new();
    let mut buf = [0; 512];
    let ended = loop {
        match stream.read(&mut buf) {
            Ok(0) => break "closed".to_owned(),
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(error) => break error.to_string(),
        }
        if reply.ends_with(b"\r\n") {
            break String::new();
        }
    };
    if reply.is_empty() {
        return Reply::NoAnswer(ended);
    }
    let text = String::from_utf8_lossy(&reply);
    Reply::Answer(text.trim().trim_start_matches('+').to_owned())
}

/// Reads whatever arrives first; 0 when nothing came in time.
fn read_some(tcp: &mut TcpStream) -> Result<usize> {
    let mut buf = [0; 16 * 1024];
    match tcp.read(&mut buf) {
        Ok(n) => Ok(n),
        Err(error) if is_timeout(&error) => Ok(0),
        Err(error) => Err(error.into()),
    }
}

/// Reads until the peer closes, errs, or goes quiet.
fn drain(tcp: &mut TcpStream) -> Reply {
    if let Err(error) = tcp.set_read_timeout(Some(QUIET)) {
        return Reply::NoAnswer(error.to_string());
    }
    let mut buf = [0; 16 * 1024];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return Reply::NoAnswer("closed by the server".into()),
            Ok(_) => continue,
            Err(error) if is_timeout(&error) => return Reply::NoAnswer("server went quiet".into()),
            Err(error) => return Reply::NoAnswer(error.to_string()),
        }
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
