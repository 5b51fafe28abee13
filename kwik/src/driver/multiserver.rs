//! Multi-server sessions, the driver side: a primary server asks its client to
//! join a secondary server (ADD_PATH), the client connects there and reports back
//! (ADD_PATH_RESULT), the secondary accepts the JOIN as a [`SecondarySession`],
//! and the client forwards RELAY messages between the two servers.
//!
//! A secondary path is not one of the session core's transport paths: the
//! client keeps it beside its [`SessionState`](crate::state::SessionState) as a
//! *link* (its own QUIC connection and control channel), so the core never
//! schedules the client's data, acknowledgements or credits towards a server
//! that does not hold the session.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kwik_presentation::{RangeSet, StreamId};
use parking_lot::Mutex;
use quinn::VarInt;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{debug, warn};

use super::{
    HANDSHAKE_TIMEOUT, PATH_ABANDONED, ServerShared, Session, SessionShared, WAKE_DELEGATE,
    refuse_join, send_join, transport_config, unix_ms, write_frame,
};
use crate::error::{
    AddSecondaryError, CloseReason, ConnectError, DelegateError, RelayError, SecondaryWriteError,
};
use crate::frame::RefuseReason;
use crate::frame::{AddPathOutcome, Frame, FrameReader, MAX_RELAY_LEN, MAX_SERVER_NAME_LEN};
use crate::grant::{Grant, GrantSet};
use crate::ids::{PathId, SessionId};
use crate::segment::{SegmentReader, encode_segment_header, encode_stream_header};
use crate::state::{PathEvent, SECONDARY_PATH_BASE};
use crate::token::TokenError;
use crate::token::TokenKey;

/// Relay messages waiting for `accept_relay`, and frames waiting for a link's
/// control writer; beyond this a relayed message is dropped and counted.
const RELAY_QUEUE: usize = 256;
/// How long `add_secondary` waits for the client's ADD_PATH_RESULT: the client
/// spends at most one handshake timeout connecting and one waiting for the answer.
const ADD_PATH_TIMEOUT: Duration = Duration::from_secs(25);

/// A secondary path of a multi-server session, as the primary server or the
/// client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecondaryPath {
    /// The path id (assigned by the primary, at least 2^32).
    pub id: PathId,
    /// The secondary server's address.
    pub addr: SocketAddr,
}

/// The multi-server part of a session (either side).
#[derive(Debug)]
pub(super) struct MultiServer {
    /// (Primary) ADD_PATHs waiting for their outcome.
    pending: Mutex<HashMap<PathId, oneshot::Sender<AddPathOutcome>>>,
    /// Joined secondary paths (primary and client).
    paths: Mutex<BTreeMap<PathId, SecondaryPath>>,
    /// (Client) the control channel of each secondary link.
    links: Mutex<HashMap<PathId, Link>>,
    /// (Primary) relayed messages from secondaries.
    relay_tx: mpsc::Sender<(PathId, Bytes)>,
    relay_rx: tokio::sync::Mutex<mpsc::Receiver<(PathId, Bytes)>>,
    next: AtomicU64,
    relays_dropped: AtomicU64,
}

#[derive(Debug)]
struct Link {
    conn: quinn::Connection,
    frames: mpsc::Sender<Frame>,
    outbox: Arc<Outbox>,
}

/// (Client) What the session owes one secondary besides relays: forwarded
/// grants (at most the client's per-path grant limit), and the latest credit
/// and acknowledgement of each stream it holds grants for (coalesced, so the
/// queue stays bounded however often they change).
#[derive(Debug, Default)]
struct Outbox {
    pending: Mutex<OutboxFrames>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct OutboxFrames {
    grants: VecDeque<Bytes>,
    credits: BTreeMap<StreamId, u64>,
    acks: BTreeMap<StreamId, Frame>,
}

impl Outbox {
    fn push(&self, frame: Frame) {
        {
            let mut p = self.pending.lock();
            match frame {
                Frame::Grant { grant } => {
                    if p.grants.len() < crate::state::MAX_GRANTS_PER_PATH {
                        p.grants.push_back(grant);
                    }
                }
                Frame::StreamCredit { stream, max_offset } => {
                    let c = p.credits.entry(stream).or_insert(0);
                    *c = (*c).max(max_offset);
                }
                Frame::Ack { stream, .. } => {
                    p.acks.insert(stream, frame);
                }
                _ => return,
            }
        }
        self.notify.notify_one();
    }

    fn drain_into(&self, buf: &mut BytesMut) {
        let mut p = self.pending.lock();
        for grant in p.grants.drain(..) {
            Frame::Grant { grant }.encode(buf);
        }
        for (stream, max_offset) in std::mem::take(&mut p.credits) {
            Frame::StreamCredit { stream, max_offset }.encode(buf);
        }
        for (_, ack) in std::mem::take(&mut p.acks) {
            ack.encode(buf);
        }
    }
}

impl MultiServer {
    pub(super) fn new() -> Self {
        let (relay_tx, relay_rx) = mpsc::channel(RELAY_QUEUE);
        Self {
            pending: Mutex::new(HashMap::new()),
            paths: Mutex::new(BTreeMap::new()),
            links: Mutex::new(HashMap::new()),
            relay_tx,
            relay_rx: tokio::sync::Mutex::new(relay_rx),
            next: AtomicU64::new(0),
            relays_dropped: AtomicU64::new(0),
        }
    }

    /// The session ended: waiting `add_secondary` calls fail, links close.
    pub(super) fn on_closed(&self, code: u32, reason: &[u8]) {
        self.pending.lock().clear();
        for (_, link) in self.links.lock().drain() {
            link.conn.close(VarInt::from_u32(code), reason);
        }
        self.paths.lock().clear();
    }

    /// (Primary) the client reported an ADD_PATH's outcome.
    pub(super) fn on_add_path_result(&self, path: PathId, outcome: AddPathOutcome) {
        if let Some(tx) = self.pending.lock().remove(&path) {
            let _ = tx.send(outcome);
        }
    }

    /// (Primary) a relayed message from the secondary on `path`.
    pub(super) fn on_relay_received(&self, path: PathId, payload: Bytes) {
        if !self.paths.lock().contains_key(&path)
            || self.relay_tx.try_send((path, payload)).is_err()
        {
            self.relays_dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("kwik_relays_dropped_total").increment(1);
        }
    }

    /// (Client) the primary relays `payload` to the secondary on `path`.
    pub(super) fn on_relay_forward(&self, path: PathId, payload: Bytes) {
        let sent = self
            .links
            .lock()
            .get(&path)
            .is_some_and(|l| l.frames.try_send(Frame::Relay { path, payload }).is_ok());
        if !sent {
            self.relays_dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("kwik_relays_dropped_total").increment(1);
        }
    }

    /// (Client) Queues a frame for the secondary on `path`.
    pub(super) fn to_link(&self, path: PathId, frame: Frame) {
        if let Some(link) = self.links.lock().get(&path) {
            link.outbox.push(frame);
        }
    }

    /// Forgets a secondary path; closes the client's link to it. True if it was
    /// known.
    fn forget(&self, path: PathId) -> bool {
        if let Some(link) = self.links.lock().remove(&path) {
            link.conn
                .close(VarInt::from_u32(PATH_ABANDONED), b"secondary path removed");
        }
        self.paths.lock().remove(&path).is_some()
    }
}

impl SessionShared {
    /// The peer abandoned the secondary path `path` (PATH_ABANDON).
    pub(super) fn on_secondary_abandoned(&self, path: PathId) {
        if self.multi.forget(path) {
            let _ = self.events.send(PathEvent::Abandoned(path));
            // `delegate` calls waiting for credit for this path fail now.
            self.wake(|_| true);
        }
    }
}

fn outcome_of(e: &ConnectError) -> AddPathOutcome {
    match e {
        ConnectError::Refused(reason) => AddPathOutcome::Refused(*reason),
        ConnectError::TimedOut => AddPathOutcome::TimedOut,
        _ => AddPathOutcome::Unreachable,
    }
}

/// (Client) joins the secondary at `addr` as `path` and reports the outcome to
/// the primary.
pub(super) async fn client_join(
    shared: Arc<SessionShared>,
    path: PathId,
    addr: SocketAddr,
    server_name: Bytes,
    token: Bytes,
) {
    let outcome = match join_secondary(&shared, path, addr, &server_name, token).await {
        Ok(()) => AddPathOutcome::Joined,
        Err(e) => {
            debug!(session = %shared.id, %path, %addr, error = %e, "secondary join failed");
            outcome_of(&e)
        }
    };
    shared.with_state(|s| s.queue_frame(Frame::AddPathResult { path, outcome }));
}

async fn join_secondary(
    shared: &Arc<SessionShared>,
    path: PathId,
    addr: SocketAddr,
    server_name: &[u8],
    token: Bytes,
) -> Result<(), ConnectError> {
    let client = shared.client.as_ref().ok_or(ConnectError::NotAClient)?;
    let (config, qc) = client
        .endpoint
        .client
        .as_ref()
        .ok_or(ConnectError::NotAClient)?;
    let in_use =
        shared.state.lock().has_path(path) || shared.multi.links.lock().contains_key(&path);
    if in_use {
        return Err(ConnectError::Refused(RefuseReason::PathInUse));
    }
    let name = std::str::from_utf8(server_name).map_err(|_| {
        ConnectError::Connect(quinn::ConnectError::InvalidServerName(
            String::from_utf8_lossy(server_name).into_owned(),
        ))
    })?;
    // The link carries no session traffic of its own, so the client keeps it
    // alive with QUIC keep-alives (both ends would otherwise idle out).
    let mut qc = qc.clone();
    let mut t = transport_config(&config.session);
    t.keep_alive_interval(Some(
        (config.session.idle_timeout / 3).max(Duration::from_millis(50)),
    ));
    qc.transport_config(Arc::new(t));
    let connecting = client.endpoint.quinn.connect_with(qc, addr, name)?;
    let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| ConnectError::Connection(quinn::ConnectionError::TimedOut))??;
    let (send, recv, reader) = send_join(&conn, shared.id, path, token).await?;
    if shared.is_closed() {
        conn.close(VarInt::from_u32(0), b"session closed");
        return Err(ConnectError::ControlClosed);
    }
    let (tx, rx) = mpsc::channel(RELAY_QUEUE);
    let outbox = Arc::new(Outbox::default());
    shared.multi.links.lock().insert(
        path,
        Link {
            conn: conn.clone(),
            frames: tx.clone(),
            outbox: outbox.clone(),
        },
    );
    shared
        .multi
        .paths
        .lock()
        .insert(path, SecondaryPath { id: path, addr });
    shared.with_state(|s| s.secondary_joined(path));
    let _ = shared.events.send(PathEvent::Added(path));
    tokio::spawn(link_writer(send, rx, outbox));
    tokio::spawn(link_reader(shared.clone(), path, recv, reader, tx));
    tokio::spawn(link_data_acceptor(shared.clone(), path, conn.clone()));
    tokio::spawn(link_watcher(shared.clone(), path, conn));
    Ok(())
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

/// (Client) Writes a link's control channel: relays and pongs from `rx`,
/// grants, credits and acknowledgements from the outbox.
async fn link_writer(
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Frame>,
    outbox: Arc<Outbox>,
) {
    let mut buf = BytesMut::new();
    loop {
        buf.clear();
        outbox.drain_into(&mut buf);
        while let Ok(f) = rx.try_recv() {
            f.encode(&mut buf);
        }
        if buf.is_empty() {
            tokio::select! {
                f = rx.recv() => match f {
                    Some(f) => f.encode(&mut buf),
                    None => break,
                },
                _ = outbox.notify.notified() => continue,
            }
        }
        if send.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// (Client) Data streams a secondary opens on its link.
async fn link_data_acceptor(shared: Arc<SessionShared>, path: PathId, conn: quinn::Connection) {
    while let Ok(recv) = conn.accept_uni().await {
        tokio::spawn(link_data_reader(shared.clone(), path, conn.clone(), recv));
    }
}

/// (Client) One data stream from a secondary: every piece is checked against
/// the grants the primary sent for this path before anything is buffered. A
/// piece outside them, or malformed data, closes the link (the session goes
/// on; the primary hears PATH_ABANDON and can reclaim).
async fn link_data_reader(
    shared: Arc<SessionShared>,
    path: PathId,
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
) {
    let mut reader = SegmentReader::new();
    let mut pieces = Vec::new();
    loop {
        let error = match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => {
                if let Err(e) = reader.feed(chunk.bytes, &mut pieces) {
                    Some(crate::ProtocolError::from(e))
                } else {
                    let now = Instant::now();
                    shared
                        .with_state(|s| {
                            for piece in pieces.drain(..) {
                                s.handle_secondary_piece(path, piece, now)?;
                            }
                            Ok(())
                        })
                        .err()
                }
            }
            Ok(None) => {
                if reader.at_boundary() {
                    return;
                }
                Some(crate::ProtocolError::StreamState(
                    "data stream ended inside a segment",
                ))
            }
            Err(_) => return,
        };
        if let Some(e) = error {
            pieces.clear();
            if matches!(e, crate::ProtocolError::OutsideGrant { .. }) {
                metrics::counter!("kwik_segments_outside_grant_total").increment(1);
            }
            metrics::counter!("kwik_protocol_errors_total").increment(1);
            warn!(session = %shared.id, %path, error = %e, "secondary broke the protocol; closing its path");
            conn.close(
                VarInt::from_u64(crate::PROTOCOL_ERROR_CODE).unwrap_or(VarInt::from_u32(0)),
                e.to_string().as_bytes(),
            );
            return;
        }
    }
}

/// (Client) frames from a secondary: relays go to the primary (stamped with the
/// link's own path id, whatever the secondary wrote), pings are answered.
async fn link_reader(
    shared: Arc<SessionShared>,
    path: PathId,
    mut recv: quinn::RecvStream,
    mut reader: FrameReader,
    frames: mpsc::Sender<Frame>,
) {
    loop {
        loop {
            match reader.next_frame() {
                Ok(Some(Frame::Relay { payload, .. })) => {
                    shared.with_state(|s| s.queue_frame(Frame::Relay { path, payload }));
                }
                Ok(Some(Frame::Ping { seq })) => {
                    let _ = frames.try_send(Frame::Pong { seq });
                }
                Ok(Some(other)) => {
                    debug!(session = %shared.id, %path, frame = ?other, "ignored on a secondary link");
                }
                Ok(None) => break,
                Err(e) => {
                    metrics::counter!("kwik_protocol_errors_total").increment(1);
                    warn!(session = %shared.id, %path, error = %e, "bad frame from secondary; closing link");
                    if let Some(link) = shared.multi.links.lock().get(&path) {
                        link.conn
                            .close(VarInt::from_u32(PATH_ABANDONED), b"bad frame");
                    }
                    return;
                }
            }
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) | Err(_) => return,
        }
    }
}

/// (Client) when a link ends without the primary having removed it, the
/// primary is told with PATH_ABANDON.
async fn link_watcher(shared: Arc<SessionShared>, path: PathId, conn: quinn::Connection) {
    let error = conn.closed().await;
    debug!(session = %shared.id, %path, %error, "secondary link ended");
    if shared.multi.forget(path) {
        let _ = shared.events.send(PathEvent::Abandoned(path));
        shared.with_state(|s| s.secondary_lost(path));
    }
}

// ===================================================================== primary

impl Session {
    /// (Primary server) Asks the client to join the secondary server at `addr`
    /// (its certificate verified for `server_name`) as a new path of this
    /// session. The secondary must share this server's
    /// [`TokenKey`](crate::TokenKey) and accept secondary joins
    /// ([`SecondaryJoins::Accept`](crate::SecondaryJoins::Accept)). Returns the
    /// path id once the secondary welcomed the client. Not cancel-safe (a path
    /// that joins after cancellation stays joined).
    ///
    /// ```no_run
    /// # async fn demo(session: kwik::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// let path = session.add_secondary("10.0.0.2:4433".parse()?, "secondary.example").await?;
    /// session.relay(path, bytes::Bytes::from_static(b"serve chunks 1, 3, 5"))?;
    /// # Ok(()) }
    /// ```
    pub async fn add_secondary(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<PathId, AddSecondaryError> {
        let shared = &self.shared;
        let server = shared
            .server
            .as_ref()
            .ok_or(AddSecondaryError::NotAServer)?;
        if server_name.len() > MAX_SERVER_NAME_LEN {
            return Err(AddSecondaryError::InvalidServerName);
        }
        let ttl = {
            let state = shared.state.lock();
            if let Some(r) = state.close_reason() {
                return Err(AddSecondaryError::SessionClosed(r.clone()));
            }
            state.config().token_ttl.as_millis() as u64
        };
        let path =
            PathId::new(SECONDARY_PATH_BASE + shared.multi.next.fetch_add(1, Ordering::Relaxed));
        let token = server.tokens.lock().issue(shared.id, path, unix_ms(), ttl);
        let (tx, rx) = oneshot::channel();
        shared.multi.pending.lock().insert(path, tx);
        shared.with_state(|s| {
            s.queue_frame(Frame::AddPath {
                path,
                addr,
                server_name: Bytes::copy_from_slice(server_name.as_bytes()),
                token,
            })
        });
        let outcome = tokio::time::timeout(ADD_PATH_TIMEOUT, rx).await;
        shared.multi.pending.lock().remove(&path);
        match outcome {
            Ok(Ok(AddPathOutcome::Joined)) => {
                shared
                    .multi
                    .paths
                    .lock()
                    .insert(path, SecondaryPath { id: path, addr });
                metrics::counter!("kwik_secondary_paths_added_total").increment(1);
                let _ = shared.events.send(PathEvent::Added(path));
                Ok(path)
            }
            Ok(Ok(AddPathOutcome::Refused(reason))) => Err(AddSecondaryError::Refused(reason)),
            Ok(Ok(AddPathOutcome::TimedOut)) => Err(AddSecondaryError::TimedOut),
            Ok(Ok(_)) => Err(AddSecondaryError::Unreachable),
            Ok(Err(_)) => Err(AddSecondaryError::SessionClosed(shared.close_reason())),
            Err(_) => Err(AddSecondaryError::TimedOut),
        }
    }

    /// (Primary server) Removes a secondary path: the client is told
    /// (PATH_ABANDON) and closes its connection to the secondary, whose
    /// [`SecondarySession::closed`] then completes. [`PathEvent::Abandoned`]
    /// goes out on both sides, as it does when the client loses the secondary.
    pub fn remove_secondary(&self, path: PathId) -> Result<(), crate::RemovePathError> {
        if self.shared.server.is_none() || !self.shared.multi.forget(path) {
            return Err(crate::RemovePathError::UnknownPath(path));
        }
        let _ = self.shared.events.send(PathEvent::Abandoned(path));
        self.shared.wake(|_| true);
        self.shared
            .with_state(|s| s.queue_frame(Frame::PathAbandon { path }));
        Ok(())
    }

    /// Secondary paths of this session: on the primary, those it added; on the
    /// client, the links it holds to secondary servers. (They are not in
    /// [`Session::paths`], which lists the transport paths to the primary.)
    pub fn secondary_paths(&self) -> Vec<SecondaryPath> {
        self.shared.multi.paths.lock().values().copied().collect()
    }

    /// (Primary server) Sends an opaque message to the secondary on `path`; the
    /// client forwards it, the secondary reads it with
    /// [`SecondarySession::accept_relay`]. Delivery is in order while the client
    /// keeps up; a message that finds the client's queue for that secondary full
    /// (256 messages) is dropped and counted (`kwik_relays_dropped_total`).
    pub fn relay(&self, path: PathId, payload: Bytes) -> Result<(), RelayError> {
        if self.shared.server.is_none() {
            return Err(RelayError::NotAServer);
        }
        if payload.len() > MAX_RELAY_LEN {
            return Err(RelayError::TooLong(payload.len()));
        }
        if let Some(r) = self.close_reason() {
            return Err(RelayError::SessionClosed(r));
        }
        if !self.shared.multi.paths.lock().contains_key(&path) {
            return Err(RelayError::UnknownPath(path));
        }
        self.shared
            .with_state(|s| s.queue_frame(Frame::Relay { path, payload }));
        Ok(())
    }

    /// (Primary server) The next message a secondary sent with
    /// [`SecondarySession::relay`], with the secondary's path id; `None` once
    /// the session has ended. Cancel-safe.
    pub async fn accept_relay(&self) -> Option<(PathId, Bytes)> {
        let mut closed = self.shared.closed.subscribe();
        let mut rx = self.shared.multi.relay_rx.lock().await;
        loop {
            if let Ok(m) = rx.try_recv() {
                return Some(m);
            }
            if *closed.borrow_and_update() {
                return None;
            }
            tokio::select! {
                m = rx.recv() => return m,
                r = closed.changed() => if r.is_err() { return None; },
            }
        }
    }

    /// Relayed messages dropped (full queues, unknown paths) by this side.
    pub fn relays_dropped(&self) -> u64 {
        self.shared.multi.relays_dropped.load(Ordering::Relaxed)
    }

    /// (Primary server) Delegates bytes `range` of `stream` (a stream this side
    /// sends on) to the secondary on `path`: signs a [`Grant`] under the key
    /// shared with the secondary (bound to this session, the path, the stream,
    /// the range, and an expiry [`grant_ttl`](crate::SessionConfig::grant_ttl)
    /// from now) and sends it to the client, which forwards it to the
    /// secondary and from then on accepts that secondary's bytes inside the
    /// range only. The primary's own stream leaves the range as a hole: it
    /// may still fill it with [`SendStream::write_at`](crate::SendStream::write_at)
    /// (reclaim), and [`SendStream::finished`](crate::SendStream::finished)
    /// completes only once the client acknowledged every byte, whoever sent it.
    ///
    /// Waits until the client's session credit covers the range's end (the
    /// client counts the secondary's bytes against the same receive window), so
    /// delegate ranges of at most the client's session window at a time
    /// (e.g. one chunk after another). Cancel-safe (nothing is delegated until
    /// it returns `Ok`).
    ///
    /// ```no_run
    /// # async fn demo(session: kwik::Session, secondary: kwik::PathId) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut stream = session.open_uni().await?;
    /// let chunk = 1 << 20;
    /// stream.write_at(0, bytes::Bytes::from(vec![1u8; chunk as usize])).await?;
    /// session.delegate(stream.id(), chunk..2 * chunk, secondary).await?;
    /// stream.finish()?;
    /// stream.finished().await?; // every byte arrived, the secondary's too
    /// # Ok(()) }
    /// ```
    pub async fn delegate(
        &self,
        stream: StreamId,
        range: Range<u64>,
        path: PathId,
    ) -> Result<Grant, DelegateError> {
        let shared = &self.shared;
        let server = shared.server.as_ref().ok_or(DelegateError::NotAServer)?;
        let key: TokenKey = server.config.token_key.clone();
        poll_fn(|cx| {
            let attempt = || {
                if !shared.multi.paths.lock().contains_key(&path) {
                    return Err(DelegateError::UnknownPath(path));
                }
                shared.with_state(|s| s.delegate(stream, range.clone(), path, &key, Instant::now()))
            };
            if let Some(g) = attempt()? {
                return Poll::Ready(Ok(g));
            }
            shared.register((stream, WAKE_DELEGATE), cx);
            match attempt()? {
                Some(g) => Poll::Ready(Ok(g)),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// (Primary server) The parts of `range` of `stream` the client has not
    /// acknowledged that this side does not hold itself: bytes delegated (or
    /// skipped by `write_at`) that have not arrived. Empty once the stream is
    /// complete. Acknowledgements lag by up to the ACK delay, so the answer may
    /// include bytes that are just arriving; writing them again is harmless
    /// (the client trims duplicates).
    pub fn missing(&self, stream: StreamId, range: Range<u64>) -> Vec<Range<u64>> {
        self.shared.state.lock().missing(stream, &range)
    }

    /// (Primary server) What the secondary on `path` was delegated and the
    /// client has not acknowledged, as `(stream, range)` — what to reclaim (write
    /// with [`SendStream::write_at`](crate::SendStream::write_at) or delegate to
    /// another secondary) after [`PathEvent::Abandoned`] or
    /// [`PathEvent::GrantExpired`] for that path. When the client loses a
    /// secondary it acknowledges the affected streams before it reports the
    /// loss, so by the time the primary sees `Abandoned` the answer is current.
    pub fn missing_from(&self, path: PathId) -> Vec<(StreamId, Range<u64>)> {
        self.shared.state.lock().missing_from(path)
    }
}

// =================================================================== secondary

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
    data: Mutex<SecondaryData>,
    /// Signalled whenever `data` changes or the path closes.
    changed: Notify,
    /// One QUIC uni stream per logical stream written.
    streams: tokio::sync::Mutex<HashMap<StreamId, quinn::SendStream>>,
    max_segment: usize,
}

#[derive(Debug, Default)]
struct SecondaryData {
    grants: GrantSet,
    fresh: VecDeque<Grant>,
    credit: HashMap<StreamId, u64>,
    acked: HashMap<StreamId, RangeSet>,
    stats: SecondaryStats,
}

/// Counters of a secondary path ([`SecondarySession::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecondaryStats {
    /// Grants received that verified.
    pub grants_received: u64,
    /// Grants refused: forged or altered (tag), for another path, expired,
    /// malformed. Counted in `kwik_grants_refused_total` as well.
    pub grants_refused: u64,
    /// Stream bytes written to the client.
    pub bytes_written: u64,
    /// Times a write waited for the client's stream credit (backpressure).
    pub credit_waits: u64,
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
            if let Some(g) = self.inner.data.lock().fresh.pop_front() {
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
        let now = unix_ms();
        self.inner
            .data
            .lock()
            .grants
            .iter()
            .filter(|g| g.expiry_ms >= now)
            .cloned()
            .collect()
    }

    /// Counters of this path.
    pub fn stats(&self) -> SecondaryStats {
        self.inner.data.lock().stats.clone()
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
        {
            let d = self.inner.data.lock();
            let path = self.inner.path;
            if d.grants
                .covering(path, stream, offset, len, 0, u64::MAX)
                .is_none()
            {
                return Err(SecondaryWriteError::OutsideGrant {
                    stream,
                    offset,
                    length: len,
                });
            }
            if d.grants
                .covering(path, stream, offset, len, unix_ms(), 0)
                .is_none()
            {
                return Err(SecondaryWriteError::Expired);
            }
        }
        let mut at = offset;
        while !data.is_empty() {
            let credit = self.wait_credit(stream, at).await?;
            // Waiting for credit may outlast the grant: the client would refuse
            // what follows (and close the path), so stop here.
            let live = self
                .inner
                .data
                .lock()
                .grants
                .covering(self.inner.path, stream, at, data.len() as u64, unix_ms(), 0)
                .is_some();
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
                let credit = d.credit.get(&stream).copied().unwrap_or(0);
                if credit > offset {
                    return Ok(credit);
                }
                if !counted {
                    counted = true;
                    d.stats.credit_waits += 1;
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
        self.inner.data.lock().stats.bytes_written += len;
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
            let done = self
                .inner
                .data
                .lock()
                .acked
                .get(&stream)
                .is_some_and(|a| a.contains_range(range.clone()));
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
    /// of the primary's [`Session::accept_relay`]). Waits while this path's
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

/// (Secondary server) a JOIN for a session this endpoint does not hold: accept
/// it as a secondary path when the token verifies under the shared key.
pub(super) async fn serve_secondary(
    server: Arc<ServerShared>,
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    reader: FrameReader,
    (session, path, token): (SessionId, PathId, Bytes),
) -> Result<(), ConnectError> {
    let verified = server
        .tokens
        .lock()
        .verify(session, path, &token, unix_ms())
        .map_err(|e| match e {
            TokenError::Expired => RefuseReason::ExpiredToken,
            TokenError::Reused => RefuseReason::ReusedToken,
            _ => RefuseReason::BadToken,
        });
    if let Err(reason) = verified {
        return refuse_join(&server, conn, send, session, path, reason).await;
    }
    // A secondary holds no receive window yet: it grants the client no credit.
    write_frame(
        &mut send,
        &Frame::Welcome {
            session,
            path,
            max_data: 0,
            stream_credit: 0,
        },
    )
    .await?;
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
        data: Mutex::new(SecondaryData::default()),
        changed: Notify::new(),
        streams: tokio::sync::Mutex::new(HashMap::new()),
        max_segment: server.config.session.max_segment,
    });
    let secondary = SecondarySession {
        inner: inner.clone(),
    };
    tokio::spawn(frame_writer(send, frames_rx));
    tokio::spawn(secondary_reader(
        inner.clone(),
        server.config.token_key.clone(),
        recv,
        reader,
        relay_tx,
    ));
    tokio::spawn(async move {
        let _ = conn.closed().await;
        let _ = closed_tx.send(true);
        inner.changed.notify_waiters();
    });
    metrics::counter!("kwik_secondary_sessions_accepted_total").increment(1);
    debug!(%session, %path, "secondary path accepted");
    if server.secondary_tx.send(secondary).await.is_err() {
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
            match reader.next_frame() {
                Ok(Some(Frame::Relay { payload, .. })) => {
                    if relays.send(payload).await.is_err() {
                        // Nobody reads relays any more; keep answering pings.
                        metrics::counter!("kwik_relays_dropped_total").increment(1);
                    }
                }
                Ok(Some(Frame::Ping { seq })) => {
                    let _ = inner.frames.send(Frame::Pong { seq }).await;
                }
                Ok(Some(Frame::Grant { grant })) => {
                    let verified = Grant::verify(&key, session, &grant, unix_ms())
                        .map_err(|e| e.to_string())
                        .and_then(|g| {
                            if g.path == path {
                                Ok(g)
                            } else {
                                Err(format!("grant for {}", g.path))
                            }
                        });
                    let mut d = inner.data.lock();
                    match verified {
                        Ok(g) => {
                            d.stats.grants_received += 1;
                            if d.grants.len() >= crate::state::MAX_GRANTS_PER_PATH {
                                d.grants.remove_expired(unix_ms(), 0);
                            }
                            if d.grants.insert(g.clone()) {
                                d.fresh.push_back(g);
                            }
                        }
                        Err(reason) => {
                            d.stats.grants_refused += 1;
                            metrics::counter!("kwik_grants_refused_total").increment(1);
                            warn!(%session, %path, %reason, "grant refused");
                        }
                    }
                    drop(d);
                    inner.changed.notify_waiters();
                }
                Ok(Some(Frame::StreamCredit { stream, max_offset })) => {
                    let mut d = inner.data.lock();
                    let c = d.credit.entry(stream).or_insert(0);
                    *c = (*c).max(max_offset);
                    drop(d);
                    inner.changed.notify_waiters();
                }
                Ok(Some(Frame::Ack { stream, ranges, .. })) => {
                    let mut d = inner.data.lock();
                    let acked = d.acked.entry(stream).or_default();
                    for r in ranges {
                        acked.insert(r);
                    }
                    let held: Vec<Range<u64>> = acked.iter().collect();
                    if !d.grants.is_empty() {
                        d.grants.remove_held(stream, &held);
                    }
                    drop(d);
                    inner.changed.notify_waiters();
                }
                Ok(Some(Frame::Close { code, reason })) => {
                    conn.close(
                        VarInt::from_u32(code.min(u64::from(u32::MAX)) as u32),
                        &reason,
                    );
                    return;
                }
                Ok(Some(other)) => {
                    debug!(%session, %path, frame = ?other, "ignored on a secondary path");
                }
                Ok(None) => break,
                Err(e) => {
                    metrics::counter!("kwik_protocol_errors_total").increment(1);
                    warn!(%session, %path, error = %e, "bad control frame on a secondary path");
                    conn.close(VarInt::from_u32(PATH_ABANDONED), b"bad control frame");
                    return;
                }
            }
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) | Err(_) => return,
        }
    }
}
