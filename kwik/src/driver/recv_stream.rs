//! The receiving half of a stream. Reads go through the session core (which
//! owns the presentation) under the session's lock; a read that finds nothing
//! registers its waker before the lock is released, and the core's
//! [`Readable`](crate::proto::session::events::Event::Readable) event wakes it.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kwik_presentation::{BackpressureScope, StreamId};
use tokio::io::{AsyncRead, ReadBuf};

use crate::driver::shared::{SessionHandle, SessionShared, WAKE_READ};
use crate::proto::error::ReadError;
use crate::proto::session::SessionState;
use crate::proto::session::recv::RecvStreamStats;

/// The receiving half of a stream. Implements [`AsyncRead`]; dropping it before
/// the end stops the stream (the peer is asked to stop sending).
#[derive(Debug)]
pub struct RecvStream {
    shared: Arc<SessionShared>,
    _handle: Arc<SessionHandle>,
    id: StreamId,
    done: bool,
    /// Since when the current read waits with nothing to read.
    blocked_since: Option<Instant>,
    /// Time earlier reads waited.
    time_blocked: Duration,
    /// The figures as the stream ended (its receive state is gone then).
    last: Option<RecvStreamStats>,
}

/// What a read from the core found.
enum Attempt<T> {
    /// Data, the end, or an error: the read is over.
    Done(Result<T, ReadError>),
    /// Nothing readable; the waker is registered.
    Blocked,
}

fn map_read_error<T>(r: Result<T, kwik_presentation::ReadError>) -> Attempt<T> {
    Attempt::Done(match r {
        Ok(v) => Ok(v),
        Err(kwik_presentation::ReadError::Blocked) => return Attempt::Blocked,
        Err(kwik_presentation::ReadError::Reset { error_code }) => {
            Err(ReadError::Reset { error_code })
        }
        Err(kwik_presentation::ReadError::Stopped) => Err(ReadError::Stopped),
        Err(_) => Err(ReadError::UnknownStream),
    })
}

impl RecvStream {
    pub(crate) fn new(
        shared: Arc<SessionShared>,
        handle: Arc<SessionHandle>,
        id: StreamId,
    ) -> Self {
        Self {
            shared,
            _handle: handle,
            id,
            done: false,
            blocked_since: None,
            time_blocked: Duration::ZERO,
            last: None,
        }
    }

    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    fn end(&mut self) {
        if !self.done {
            self.done = true;
            let id = self.id;
            self.last = self.shared.with_state(|s| {
                let stats = s.recv_stream_stats(id);
                s.release_recv(id, None);
                stats
            });
        }
    }

    /// The stream's figures: bytes received (per path, duplicates), read and
    /// buffered, holes, time the reads waited, credit, backpressure. After
    /// the stream ended (read to its end, reset) the figures it ended with;
    /// `None` if it was stopped or its receive state is gone otherwise.
    pub fn stats(&self) -> Option<RecvStreamStats> {
        let mut stats = match &self.last {
            Some(last) => last.clone(),
            None => self.shared.state.lock().recv_stream_stats(self.id)?,
        };
        stats.time_blocked = self.time_blocked
            + self
                .blocked_since
                .map_or(Duration::ZERO, |since| since.elapsed());
        Some(stats)
    }

    /// Holds the sender back on this stream by hand: it hears BACKPRESSURE
    /// for the stream (reason [`BackpressureReason::Manual`](crate::BackpressureReason::Manual))
    /// and gets no more credit for it until [`release`](Self::release), so
    /// it stops once it has sent what it was granted. Reading goes on as
    /// usual. Holding twice is holding once; a stream that ended cannot be
    /// held (returns `false`).
    pub fn hold(&self) -> bool {
        let id = self.id;
        !self.done
            && self
                .shared
                .with_state(|s| s.hold(BackpressureScope::Stream(id)))
    }

    /// Ends a [`hold`](Self::hold): the sender hears the stream's signal end
    /// (unless the window's own backpressure is on) and gets the credit it
    /// missed.
    pub fn release(&self) {
        let id = self.id;
        self.shared
            .with_state(|s| s.release_hold(BackpressureScope::Stream(id)));
    }

    /// Runs `read` on the core; if it finds nothing, registers `cx`'s waker
    /// while the core is still locked (see the lock order in
    /// [`shared`](crate::driver::shared)).
    fn attempt<T>(
        &mut self,
        cx: &Context<'_>,
        read: impl FnOnce(&mut SessionState) -> Result<T, kwik_presentation::ReadError>,
    ) -> Poll<Result<T, ReadError>> {
        let key = (self.id, WAKE_READ);
        let attempt = self.shared.with_state_quiet(|s| {
            let attempt = map_read_error(read(s));
            if matches!(attempt, Attempt::Blocked) {
                self.shared.register(key, cx);
            }
            attempt
        });
        match attempt {
            Attempt::Done(r) => {
                if let Some(since) = self.blocked_since.take() {
                    self.time_blocked += since.elapsed();
                }
                Poll::Ready(r)
            }
            Attempt::Blocked => {
                self.blocked_since.get_or_insert_with(Instant::now);
                self.pending_or_closed()
            }
        }
    }

    fn pending_or_closed<T>(&self) -> Poll<Result<T, ReadError>> {
        if self.shared.is_closed() {
            Poll::Ready(Err(ReadError::SessionClosed(self.shared.close_reason())))
        } else {
            Poll::Pending
        }
    }

    /// Up to `max_len` contiguous bytes without copying; `Ok(None)` at the end of
    /// the stream. Cancel-safe.
    pub async fn read_chunk(&mut self, max_len: usize) -> Result<Option<Bytes>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let id = self.id;
        let r = poll_fn(|cx| self.attempt(cx, |s| s.read_chunk(id, max_len))).await;
        match &r {
            Ok(None) => self.end(),
            Err(ReadError::Reset { .. }) => self.end(),
            _ => {}
        }
        r
    }

    /// Reads the whole stream into memory; fails with [`ReadError::TooLong`] once
    /// more than `limit` bytes arrived. Not cancel-safe (bytes read are lost).
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.read_chunk(64 * 1024).await? {
            out.extend_from_slice(&chunk);
            if out.len() > limit {
                return Err(ReadError::TooLong { limit });
            }
        }
        Ok(out)
    }

    /// Stops reading: buffered bytes are dropped and the peer is asked to stop
    /// sending with `error_code`.
    pub fn stop(&mut self, error_code: u64) {
        if !self.done {
            self.done = true;
            let id = self.id;
            self.shared
                .with_state(|s| s.release_recv(id, Some(error_code)));
        }
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.done || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let id = self.id;
        let unfilled = buf.initialize_unfilled();
        let r = match self.attempt(cx, |s| s.read(id, unfilled)) {
            Poll::Ready(r) => r,
            Poll::Pending => return Poll::Pending,
        };
        match r {
            Ok(0) => {
                self.end();
                Poll::Ready(Ok(()))
            }
            Ok(n) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(io::Error::other(e))),
        }
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        self.stop(0);
    }
}
