//! A mesh client that keeps talking in the background, as the clients of a
//! live service do. strictly wants fresh mTLS evidence inside its window, so a
//! verdict of `ready` holds only while mesh traffic keeps coming.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::clients::{Client, Connection, Reply};

/// Time between two mesh connections: a few per poll of the daemon under test.
const PAUSE: Duration = Duration::from_millis(150);

/// A thread that opens one mesh mTLS connection (PING, PONG, close) after
/// another until stopped. Dropping it stops it too.
#[derive(Debug)]
pub struct MeshTraffic {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<u64>>>,
}

impl MeshTraffic {
    pub fn start(client: Client) -> MeshTraffic {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || talk(&client, &stopped));
        MeshTraffic {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops after the connection in flight and returns how many connections
    /// were made, each of them answered.
    pub fn stop(mut self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().context("mesh traffic already stopped")?;
        match thread.join() {
            Ok(result) => result,
            Err(_) => bail!("the mesh traffic thread panicked"),
        }
    }
}

impl Drop for MeshTraffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn talk(client: &Client, stop: &AtomicBool) -> Result<u64> {
    let mut made = 0;
    while !stop.load(Ordering::Relaxed) {
        let reply = client.open(Connection::MeshPing)?;
        made += 1;
        if reply != Reply::Answer("PONG".into()) {
            bail!("mesh connection {made} got {reply:?}");
        }
        thread::sleep(PAUSE);
    }
    Ok(made)
}
