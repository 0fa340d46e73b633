//! Response bodies of the simulated control plane: whole ones, and a filler
//! stream of any length that is produced chunk by chunk as the client reads.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::load::LoadCounters;

/// One line of filler; a stats reader sees a plausible, useless counter.
const FILLER_LINE: &[u8] = b"cluster.filler.upstream_cx_total: 1\n";

/// Filler is sent in chunks of about this size.
const FILLER_CHUNK: usize = 64 * 1024;

/// What a response carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Payload {
    Full(Bytes),
    /// These pieces one after the other, sent without copying them together.
    Parts(Vec<Bytes>),
    /// This many bytes of filler, length not announced.
    Filler(u64),
}

/// A body that counts the bytes it hands out.
pub(crate) struct SimBody {
    state: State,
    load: Arc<LoadCounters>,
}

enum State {
    /// What is left to send, last piece first.
    Full(Vec<Bytes>),
    Filler {
        remaining: u64,
        chunk: Bytes,
    },
}

impl SimBody {
    pub(crate) fn new(payload: Payload, load: Arc<LoadCounters>) -> Self {
        let state = match payload {
            Payload::Full(bytes) => State::Full(vec![bytes]),
            Payload::Parts(mut parts) => {
                parts.retain(|part| !part.is_empty());
                parts.reverse();
                State::Full(parts)
            }
            Payload::Filler(remaining) => State::Filler {
                remaining,
                chunk: filler_chunk(),
            },
        };
        Self { state, load }
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        match &mut self.state {
            State::Full(parts) => parts.pop(),
            State::Filler { remaining, chunk } => {
                let size = (*remaining).min(chunk.len() as u64) as usize;
                *remaining -= size as u64;
                (size > 0).then(|| chunk.slice(..size))
            }
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let chunk = this.next_chunk();
        if let Some(chunk) = &chunk {
            this.load.served(chunk.len());
        }
        Poll::Ready(chunk.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Full(parts) => parts.is_empty(),
            State::Filler { remaining, .. } => *remaining == 0,
        }
    }

    /// Exact for a whole body, so it goes out with a `Content-Length`; unknown for
    /// filler, so it goes out chunked and a client learns its size only by reading.
    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Full(parts) => SizeHint::with_exact(parts.iter().map(|b| b.len() as u64).sum()),
            State::Filler { .. } => SizeHint::default(),
        }
    }
}

fn filler_chunk() -> Bytes {
    let lines = FILLER_CHUNK / FILLER_LINE.len();
    Bytes::from(FILLER_LINE.repeat(lines))
}
