//! The receiving half of a stream, read straight from the session's
//! presentation, and the task that pumps the presentation's events into the
//! core. Every use of the presentation by the driver is here, besides the
//! session timer's.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use kwik_presentation::StreamId;
use tokio::io::{AsyncRead, ReadBuf};

use crate::driver::shared::{SessionHandle, SessionShared, WAKE_READ};
use crate::proto::error::ReadError;

/// Pumps the presentation's events (credit, backpressure, gaps) into the core.
pub(crate) async fn presentation_task(shared: Arc<SessionShared>) {
    let mut closed = shared.closed.subscribe();
    loop {
        let pres = shared.presentation.clone();
        tokio::select! {
            event = poll_fn(|cx| pres.poll_event(cx)) => {
                shared.with_state(|s| s.handle_presentation_event(event));
            }
            _ = closed.changed() => return,
        }
    }
}

/// The receiving half of a stream. Implements [`AsyncRead`]; dropping it before
/// the end stops the stream (the peer is asked to stop sending).
#[derive(Debug)]
pub struct RecvStream {
    shared: Arc<SessionShared>,
    _handle: Arc<SessionHandle>,
    id: StreamId,
    done: bool,
}

fn map_read_error(e: kwik_presentation::ReadError) -> ReadError {
    match e {
        kwik_presentation::ReadError::Reset { error_code } => ReadError::Reset { error_code },
        kwik_presentation::ReadError::Stopped => ReadError::Stopped,
        _ => ReadError::UnknownStream,
    }
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
            self.shared.with_state(|s| s.release_recv(id, None));
        }
    }

    fn poll_pending_or_closed<T>(&self, cx: &Context<'_>) -> Poll<Result<T, ReadError>> {
        self.shared.register((self.id, WAKE_READ), cx);
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
        let r = poll_fn(
            |cx| match self.shared.presentation.poll_read_chunk(id, max_len, cx) {
                Poll::Ready(r) => Poll::Ready(r.map_err(map_read_error)),
                Poll::Pending => self.poll_pending_or_closed(cx),
            },
        )
        .await;
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
        let r = match self
            .shared
            .presentation
            .poll_read(id, buf.initialize_unfilled(), cx)
        {
            Poll::Ready(r) => r.map_err(map_read_error),
            Poll::Pending => match self.poll_pending_or_closed::<usize>(cx) {
                Poll::Ready(r) => r,
                Poll::Pending => return Poll::Pending,
            },
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
