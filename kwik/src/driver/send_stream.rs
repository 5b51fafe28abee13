//! The sending half of a stream: writes go into the core's send side (which
//! retains them until acknowledged), blocked writers wait for credit.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use kwik_presentation::StreamId;
use tokio::io::AsyncWrite;

use crate::driver::shared::{SessionHandle, SessionShared, WAKE_FINISHED, WAKE_WRITE};
use crate::proto::error::WriteError;
use crate::proto::scheduler::Scheduler;
use crate::proto::session::SessionState;
use crate::proto::session::backpressure::Backpressure;
use crate::proto::session::send::SendStreamStats;

/// The sending half of a stream. Implements [`AsyncWrite`]; dropping it finishes
/// the stream. Written bytes are retained until the peer acknowledges them.
#[derive(Debug)]
pub struct SendStream {
    shared: Arc<SessionShared>,
    _handle: Arc<SessionHandle>,
    id: StreamId,
    ended: bool,
}

impl SendStream {
    pub(crate) fn new(
        shared: Arc<SessionShared>,
        handle: Arc<SessionHandle>,
        id: StreamId,
    ) -> Self {
        Self {
            shared,
            _handle: handle,
            id,
            ended: false,
        }
    }

    /// The stream id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Writes `data` without copying, waiting for credit as needed. Not cancel-safe
    /// (a prefix may have been written).
    pub async fn write_chunk(&mut self, data: Bytes) -> Result<(), WriteError> {
        let id = self.id;
        self.write_pieces(data, |s, _, d| s.write_bytes(id, d))
            .await
    }

    /// Writes `data` at logical `offset`, waiting for credit as needed: at or
    /// past everything written so far (the bytes in between become a *hole*
    /// that another writer — a secondary server, see [`Session::delegate`](crate::Session::delegate) —
    /// or a later `write_at` fills), or into a hole (e.g. a range reclaimed
    /// from a secondary that died, see [`Session::missing_from`](crate::Session::missing_from); allowed after
    /// [`finish`](Self::finish) too). Bytes this side already wrote are
    /// refused with [`WriteError::AlreadyWritten`]. The stream's final size is
    /// the highest offset written or delegated when it is finished. Not
    /// cancel-safe (a prefix may have been written). Takes `&self`, so one
    /// task may fill holes while another writes further on.
    ///
    /// ```no_run
    /// # async fn demo(session: kwik::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut stream = session.open_uni().await?;
    /// stream.write_at(1024, bytes::Bytes::from_static(b"second kilobyte...")).await?;
    /// stream.write_at(0, bytes::Bytes::from(vec![0u8; 1024])).await?;
    /// stream.finish()?;
    /// # Ok(()) }
    /// ```
    pub async fn write_at(&self, offset: u64, data: Bytes) -> Result<(), WriteError> {
        let id = self.id;
        self.write_pieces(data, |s, done, d| s.write_at(id, offset + done, d))
            .await
    }

    /// Hands `data` to `write` until it took everything: `write` gets the
    /// bytes taken so far and the rest, takes what credit allows and returns
    /// what it left; in between, waits for credit to move.
    async fn write_pieces(
        &self,
        mut data: Bytes,
        write: impl Fn(&mut SessionState, u64, Bytes) -> Result<Bytes, WriteError>,
    ) -> Result<(), WriteError> {
        let mut done = 0u64;
        while !data.is_empty() {
            let rest = poll_fn(|cx| {
                let shared = &self.shared;
                let attempt = |d: Bytes| shared.with_state(|s| write(s, done, d));
                match attempt(data.clone())? {
                    rest if rest.len() < data.len() => Poll::Ready(Ok(rest)),
                    _ => {
                        shared.register((self.id, WAKE_WRITE), cx);
                        match attempt(data.clone())? {
                            rest if rest.len() < data.len() => Poll::Ready(Ok(rest)),
                            _ => Poll::Pending,
                        }
                    }
                }
            })
            .await?;
            done += (data.len() - rest.len()) as u64;
            data = rest;
        }
        Ok(())
    }

    /// Changes how the stream's bytes are spread over the paths, from the next
    /// chunk a path takes on: bytes already sent are not sent again (switching
    /// to [`Scheduler::Redundant`] copies only what is not yet sent; switching
    /// away from it goes on after the furthest byte any path carried). Re-sends
    /// of a lost path's bytes are unaffected. Fails once the stream was reset or
    /// is fully acknowledged, or the session closed.
    ///
    /// ```no_run
    /// # async fn demo(session: kwik::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut stream = session.open_uni().await?;
    /// stream.write_chunk(bytes::Bytes::from_static(b"bulk...")).await?;
    /// // From now on this stream's bytes travel on every path.
    /// stream.set_scheduler(kwik::Scheduler::Redundant)?;
    /// stream.write_chunk(bytes::Bytes::from_static(b"urgent")).await?;
    /// # Ok(()) }
    /// ```
    pub fn set_scheduler(&mut self, policy: Scheduler) -> Result<(), WriteError> {
        let id = self.id;
        self.shared.with_state(|s| s.set_scheduler(id, policy))
    }

    /// Sets the stream's priority (default 0; higher first). When a path has
    /// room for one more chunk and several streams have data for it, the
    /// highest priority gets it; streams of equal priority take turns. So on
    /// saturated paths a high-priority stream goes first and the others get
    /// what capacity it leaves; re-sends of a dead path's data come before
    /// any new data.
    pub fn set_priority(&mut self, priority: i32) -> Result<(), WriteError> {
        let id = self.id;
        self.shared.with_state(|s| s.set_priority(id, priority))
    }

    /// The stream's figures: written, sent (and re-sent) on paths,
    /// acknowledged, retained, the peer's credit, the priority. `None` once
    /// every byte is acknowledged (after [`finished`](Self::finished)
    /// returned) or the stream was reset.
    pub fn stats(&self) -> Option<SendStreamStats> {
        self.shared.state.lock().send_stream_stats(self.id)
    }

    /// What the receiver holds this stream back with now: its backpressure
    /// on this stream or, if none, on the whole session, with the reason and
    /// how long it has lasted. `None` while the receiver lets it flow.
    /// [`Session::backpressure_events`](crate::Session::backpressure_events)
    /// reports each signal's start and end.
    pub fn backpressure(&self) -> Option<Backpressure> {
        self.shared
            .state
            .lock()
            .peer_backpressure(self.id, Instant::now())
    }

    /// Ends the stream after the bytes written so far.
    pub fn finish(&mut self) -> Result<(), WriteError> {
        self.ended = true;
        let id = self.id;
        self.shared.with_state(|s| s.finish(id))
    }

    /// Abandons the stream with `error_code`: retained bytes are dropped and the
    /// peer's reader sees a reset.
    pub fn reset(&mut self, error_code: u64) -> Result<(), WriteError> {
        self.ended = true;
        let id = self.id;
        self.shared.with_state(|s| s.reset(id, error_code))
    }

    /// Waits until everything written (and the FIN, once finished) has been
    /// acknowledged by the peer, i.e. nothing is retained any more — and, on a
    /// stream with holes (delegated or skipped ranges), until the peer
    /// acknowledged every byte up to the final size, whoever sent it.
    /// Cancel-safe.
    pub async fn finished(&self) -> Result<(), WriteError> {
        let id = self.id;
        poll_fn(|cx| {
            let check = || {
                let s = self.shared.state.lock();
                if s.retained(id).is_none() {
                    return Some(Ok(()));
                }
                s.close_reason()
                    .map(|r| Err(WriteError::SessionClosed(r.clone())))
            };
            if let Some(r) = check() {
                return Poll::Ready(r);
            }
            self.shared.register((id, WAKE_FINISHED), cx);
            match check() {
                Some(r) => Poll::Ready(r),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Bytes written and not yet acknowledged.
    pub fn retained(&self) -> u64 {
        self.shared.state.lock().retained(self.id).unwrap_or(0)
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let id = self.id;
        let attempt = || self.shared.with_state(|s| s.write_copy(id, buf));
        match attempt() {
            Ok(0) => {}
            Ok(n) => return Poll::Ready(Ok(n)),
            Err(e) => return Poll::Ready(Err(io::Error::other(e))),
        }
        self.shared.register((id, WAKE_WRITE), cx);
        match attempt() {
            Ok(0) => Poll::Pending,
            Ok(n) => Poll::Ready(Ok(n)),
            Err(e) => Poll::Ready(Err(io::Error::other(e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are already owned by the session and scheduled.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ended {
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(self.finish().map_err(io::Error::other))
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if !self.ended {
            let id = self.id;
            let _ = self.shared.with_state(|s| s.finish(id));
        }
    }
}
