//! A secondary server's share of a multi-server session ([`SecondarySession`]):
//! one path from the client, joined with a token the primary issued. Its
//! tasks carry frames and segments; what a grant, credit or acknowledgement
//! means, and whether a write may go out, is decided by the core's
//! [`SecondaryState`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kwik_presentation::StreamId;
use parking_lot::Mutex;
use quinn::VarInt;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, warn};

use crate::driver::control::{JoinedControl, unix_ms, write_frame};
use crate::driver::error::ConnectError;
use crate::driver::multi_server::RELAY_QUEUE;
use crate::driver::peer_log::{self, close_for};
use crate::proto::error::{CloseReason, RelayError, SecondaryWriteError};
use crate::proto::handshake::{JoinRequest, secondary_welcome};
use crate::proto::ids::{PathId, SessionId};
use crate::proto::multiserver::grant::Grant;
use crate::proto::multiserver::secondary::{SecondaryInput, SecondaryState, SecondaryStats};
use crate::proto::multiserver::token::TokenKey;
use crate::proto::peer_fault::PeerFault;
use crate::proto::wire::frame::{Frame, FrameReader, MAX_RELAY_LEN};
use crate::proto::wire::segment::{encode_segment_header, encode_stream_header};

/// A secondary server's share of a session that another server (the primary)
/// opened: one path from the client, joined with a token the primary issued.
/// Comes from [`Endpoint::accept_secondary`](crate::Endpoint::accept_secondary).
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct SecondarySession {
    inner: Arc<SecondaryShared>,
}

#[derive(Debug)]
struct SecondaryShared {
    id: SessionId,
    path: PathId,
    conn: quinn::Connection,
    frames: mpsc::Sender<Frame>,
    relays: tokio::sync::Mutex<mpsc::Receiver<Bytes>>,
    closed: watch::Receiver<bool>,
    /// Grants, credit and acknowledgements learned from the client.
    data: Mutex<SecondaryState>,
    /// Signalled whenever `data` changes or the path closes.
    changed: Notify,
    /// One QUIC uni stream per logical stream written.
    streams: tokio::sync::Mutex<HashMap<StreamId, quinn::SendStream>>,
    max_segment: usize,
}

impl SecondarySession {
    /// The id of the session this path belongs to (the primary's session).
    pub fn id(&self) -> SessionId {
        self.inner.id
    }

    /// This path's id in the session (assigned by the primary).
    pub fn path(&self) -> PathId {
        self.inner.path
    }

    /// The client's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.inner.conn.remote_address()
    }

    /// The next grant the primary delegated to this path (verified: signed
    /// under the shared key for this session and path, not expired); `None`
    /// once the path is closed. Refused grants never show up here (see
    /// [`SecondaryStats::grants_refused`]). Cancel-safe.
    pub async fn accept_grant(&self) -> Option<Grant> {
        let mut closed = self.inner.closed.clone();
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(g) = self.inner.data.lock().take_fresh() {
                return Some(g);
            }
            if *closed.borrow_and_update() {
                return None;
            }
            tokio::select! {
                _ = changed => {}
                r = closed.changed() => if r.is_err() { return None; },
            }
        }
    }

    /// The grants this path holds: not expired, and not yet acknowledged
    /// entirely by the client (a grant whose whole range arrived is dropped).
    pub fn grants(&self) -> Vec<Grant> {
        self.inner.data.lock().grants(unix_ms())
    }

    /// Counters of this path.
    pub fn stats(&self) -> SecondaryStats {
        self.inner.data.lock().stats()
    }

    /// Writes `data` at `offset` of logical `stream`, inside a grant this path
    /// holds (else refused locally with a typed error, nothing sent). Waits for
    /// the client's credit for the stream (its receive window applies to
    /// secondaries as to the primary). The bytes travel as segments on a QUIC
    /// unidirectional stream of this path. Not cancel-safe (a prefix may have
    /// been sent).
    ///
    /// ```no_run
    /// # async fn demo(secondary: kwik::SecondarySession, file: bytes::Bytes) -> Result<(), Box<dyn std::error::Error>> {
    /// while let Some(grant) = secondary.accept_grant().await {
    ///     let part = file.slice(grant.range.start as usize..grant.range.end as usize);
    ///     secondary.write_at(grant.stream, grant.range.start, part).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn write_at(
        &self,
        stream: StreamId,
        offset: u64,
        mut data: Bytes,
    ) -> Result<(), SecondaryWriteError> {
        let len = data.len() as u64;
        self.inner
            .data
            .lock()
            .check_write(stream, offset, len, unix_ms())?;
        let mut at = offset;
        while !data.is_empty() {
            let credit = self.wait_credit(stream, at).await?;
            // Waiting for credit may outlast the grant: the client would refuse
            // what follows (and close the path), so stop here.
            let live = self
                .inner
                .data
                .lock()
                .is_live(stream, at, data.len() as u64, unix_ms());
            if !live {
                return Err(SecondaryWriteError::Expired);
            }
            let take = (data.len() as u64)
                .min(credit - at)
                .min(self.inner.max_segment as u64) as usize;
            let piece = data.split_to(take);
            self.send_segment(stream, at, piece).await?;
            at += take as u64;
        }
        Ok(())
    }

    /// Waits until the client's credit for `stream` passes `offset`.
    async fn wait_credit(&self, stream: StreamId, offset: u64) -> Result<u64, SecondaryWriteError> {
        let mut counted = false;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut d = self.inner.data.lock();
                let credit = d.credit(stream);
                if credit > offset {
                    return Ok(credit);
                }
                if !counted {
                    counted = true;
                    d.credit_wait();
                }
            }
            if *self.inner.closed.borrow() {
                return Err(SecondaryWriteError::Closed(self.close_reason()));
            }
            changed.await;
        }
    }

    async fn send_segment(
        &self,
        stream: StreamId,
        offset: u64,
        data: Bytes,
    ) -> Result<(), SecondaryWriteError> {
        let closed = |this: &Self| SecondaryWriteError::Closed(this.close_reason());
        let mut streams = self.inner.streams.lock().await;
        let mut header = BytesMut::new();
        let send = match streams.entry(stream) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let s = self.inner.conn.open_uni().await.map_err(|_| closed(self))?;
                encode_stream_header(&mut header, stream);
                e.insert(s)
            }
        };
        let len = data.len() as u64;
        encode_segment_header(&mut header, offset, len, false);
        send.write_all_chunks(&mut [header.freeze(), data])
            .await
            .map_err(|_| closed(self))?;
        self.inner.data.lock().written(len);
        Ok(())
    }

    /// Waits until the client acknowledged every byte of `range` of `stream`
    /// (whoever sent it): then this path may close without loss. Cancel-safe.
    pub async fn acknowledged(
        &self,
        stream: StreamId,
        range: Range<u64>,
    ) -> Result<(), SecondaryWriteError> {
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let done = self.inner.data.lock().acknowledged(stream, range.clone());
            if done {
                return Ok(());
            }
            if *self.inner.closed.borrow() {
                return Err(SecondaryWriteError::Closed(self.close_reason()));
            }
            changed.await;
        }
    }

    /// The next message the primary relayed to this path; `None` once the path
    /// is closed. Cancel-safe.
    pub async fn accept_relay(&self) -> Option<Bytes> {
        self.inner.relays.lock().await.recv().await
    }

    /// Sends an opaque message to the primary through the client (it comes out
    /// of the primary's [`Session::accept_relay`](crate::Session::accept_relay)). Waits while this path's
    /// outgoing queue is full. Cancel-safe (the message is either queued or not).
    pub async fn relay(&self, payload: Bytes) -> Result<(), RelayError> {
        if payload.len() > MAX_RELAY_LEN {
            return Err(RelayError::TooLong(payload.len()));
        }
        let path = self.inner.path;
        self.inner
            .frames
            .send(Frame::Relay { path, payload })
            .await
            .map_err(|_| RelayError::SessionClosed(self.close_reason()))
    }

    /// Closes this path with `code` and `reason` (the client drops its link; the
    /// session at the primary goes on).
    pub fn close(&self, code: u32, reason: &[u8]) {
        self.inner.conn.close(VarInt::from_u32(code), reason);
    }

    fn close_reason(&self) -> CloseReason {
        match self.inner.conn.close_reason() {
            Some(quinn::ConnectionError::ApplicationClosed(c)) => CloseReason::Peer {
                code: c.error_code.into_inner(),
                reason: c.reason,
            },
            Some(quinn::ConnectionError::LocallyClosed) => CloseReason::Local {
                code: 0,
                reason: Bytes::new(),
            },
            _ => CloseReason::AllPathsLost,
        }
    }

    /// Waits until the path is closed and says why (a client that closed its
    /// session shows up as [`CloseReason::Peer`] with the session's code).
    /// Cancel-safe.
    pub async fn closed(&self) -> CloseReason {
        let mut closed = self.inner.closed.clone();
        while !*closed.borrow_and_update() {
            if closed.changed().await.is_err() {
                break;
            }
        }
        let _ = self.inner.conn.closed().await;
        self.close_reason()
    }
}

/// (Secondary server) A verified JOIN for a session this endpoint does not
/// hold: answers WELCOME and hands the path to the application through
/// `accepted`.
pub(crate) async fn accept_secondary(
    conn: quinn::Connection,
    (mut send, recv, reader): JoinedControl,
    request: JoinRequest,
    (key, max_segment): (TokenKey, usize),
    accepted: &mpsc::Sender<SecondarySession>,
) -> Result<(), ConnectError> {
    let JoinRequest { session, path, .. } = request;
    write_frame(&mut send, &secondary_welcome(&request)).await?;
    let _ = send.set_priority(100);
    let (frames_tx, frames_rx) = mpsc::channel(RELAY_QUEUE);
    let (relay_tx, relay_rx) = mpsc::channel(RELAY_QUEUE);
    let (closed_tx, closed_rx) = watch::channel(false);
    let inner = Arc::new(SecondaryShared {
        id: session,
        path,
        conn: conn.clone(),
        frames: frames_tx.clone(),
        relays: tokio::sync::Mutex::new(relay_rx),
        closed: closed_rx,
        data: Mutex::new(SecondaryState::new(session, path)),
        changed: Notify::new(),
        streams: tokio::sync::Mutex::new(HashMap::new()),
        max_segment,
    });
    let secondary = SecondarySession {
        inner: inner.clone(),
    };
    tokio::spawn(frame_writer(send, frames_rx));
    tokio::spawn(secondary_reader(inner.clone(), key, recv, reader, relay_tx));
    tokio::spawn(async move {
        let _ = conn.closed().await;
        let _ = closed_tx.send(true);
        inner.changed.notify_waiters();
    });
    metrics::counter!("kwik_secondary_sessions_accepted_total").increment(1);
    debug!(%session, %path, "secondary path accepted");
    if accepted.send(secondary).await.is_err() {
        debug!("endpoint gone; secondary session dropped");
    }
    Ok(())
}

/// (Secondary) frames from the client: relays for the application (waiting for
/// it when its queue is full, which stalls the control stream: QUIC flow control
/// then holds the client back), grants (verified under the shared key),
/// credits and acknowledgements, pings answered; a malformed frame closes the
/// path.
async fn secondary_reader(
    inner: Arc<SecondaryShared>,
    key: TokenKey,
    mut recv: quinn::RecvStream,
    mut reader: FrameReader,
    relays: mpsc::Sender<Bytes>,
) {
    let (session, path, conn) = (inner.id, inner.path, inner.conn.clone());
    loop {
        loop {
            let frame = match reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    metrics::counter!("kwik_protocol_errors_total").increment(1);
                    let fault = PeerFault::bad_frame(reader.bad_type(), e);
                    close_for(&conn, &fault);
                    peer_log::report(conn.remote_address(), Some(session), Some(path), &fault);
                    return;
                }
            };
            let input = inner.data.lock().on_frame(frame, &key, unix_ms());
            match input {
                SecondaryInput::Relay(payload) => {
                    if relays.send(payload).await.is_err() {
                        // Nobody reads relays any more; keep answering pings.
                        metrics::counter!("kwik_relays_dropped_total").increment(1);
                    }
                }
                SecondaryInput::Answer(frame) => {
                    let _ = inner.frames.send(frame).await;
                }
                SecondaryInput::Changed => inner.changed.notify_waiters(),
                SecondaryInput::GrantRefused(reason) => {
                    metrics::counter!("kwik_grants_refused_total").increment(1);
                    warn!(%session, %path, %reason, "grant refused");
                    inner.changed.notify_waiters();
                }
                SecondaryInput::Close { code, reason } => {
                    conn.close(
                        VarInt::from_u32(code.min(u64::from(u32::MAX)) as u32),
                        &reason,
                    );
                    return;
                }
                SecondaryInput::Ignored(other) => {
                    debug!(%session, %path, frame = ?other, "ignored on a secondary path");
                }
            }
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) | Err(_) => return,
        }
    }
}

/// Writes the frames queued for one control channel (a link or a secondary).
async fn frame_writer(mut send: quinn::SendStream, mut rx: mpsc::Receiver<Frame>) {
    let mut buf = BytesMut::new();
    while let Some(frame) = rx.recv().await {
        buf.clear();
        frame.encode(&mut buf);
        while let Ok(f) = rx.try_recv() {
            f.encode(&mut buf);
        }
        if send.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}
