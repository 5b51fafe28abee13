//! A session as the application holds it ([`Session`]): streams, paths,
//! events and counters, and on a primary server its secondary paths, relays
//! and delegations. Each method takes the core's lock for one decision and
//! wakes the tasks that must act on it.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use kwik_presentation::{BackpressureScope, Dir, PresentationStats, Side, StreamId};
use tokio::sync::{broadcast, oneshot};

use crate::driver::control::unix_ms;
use crate::driver::dial::{Route, dial};
use crate::driver::error::{AddPathError, ConnectError};
use crate::driver::multi_server::{ADD_PATH_TIMEOUT, SecondaryPath};
use crate::driver::recv_stream::RecvStream;
use crate::driver::send_stream::SendStream;
use crate::driver::shared::{SessionHandle, SessionShared, WAKE_DELEGATE};
use crate::proto::error::{
    AddSecondaryError, CloseReason, DelegateError, RelayError, RemovePathError, StreamError,
};
use crate::proto::ids::{PathId, SECONDARY_PATH_BASE, SessionId};
use crate::proto::multiserver::grant::Grant;
use crate::proto::multiserver::token::TokenKey;
use crate::proto::scheduler::Scheduler;
use crate::proto::session::backpressure::BackpressureEvent;
use crate::proto::session::events::PathEvent;
use crate::proto::session::paths::PathStats;
use crate::proto::session::stats::SessionStats;
use crate::proto::wire::frame::{
    AddPathOutcome, Frame, MAX_RELAY_LEN, MAX_SERVER_NAME_LEN, PathStatus,
};

/// Which addresses a new path uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathSpec {
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    status: Option<PathStatus>,
    weight: Option<u32>,
}

impl PathSpec {
    /// A path from another local address (a second uplink) to the session's server.
    pub fn local(addr: SocketAddr) -> Self {
        Self {
            local: Some(addr),
            ..Self::default()
        }
    }

    /// A path to another address of the same server (or a relay in front of it),
    /// from the session's endpoint.
    pub fn remote(addr: SocketAddr) -> Self {
        Self {
            remote: Some(addr),
            ..Self::default()
        }
    }

    /// Sets the local address.
    pub fn with_local(mut self, addr: SocketAddr) -> Self {
        self.local = Some(addr);
        self
    }

    /// Sets the remote address.
    pub fn with_remote(mut self, addr: SocketAddr) -> Self {
        self.remote = Some(addr);
        self
    }

    /// Gives the path a weight for [`Scheduler::Aggregate`] (at least 1; see
    /// [`Session::set_path_weight`]).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = Some(weight.max(1));
        self
    }

    /// The local address, if set.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// The remote address, if set (`None`: the session's server).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Starts the path as a backup path.
    pub fn backup(mut self) -> Self {
        self.status = Some(PathStatus::Backup);
        self
    }
}

/// A path's addresses and statistics.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PathInfo {
    /// State, RTT and counters.
    pub stats: PathStats,
    /// The peer's address on this path (`None` once the path is gone).
    pub remote: Option<SocketAddr>,
    /// The local address, when the path was bound to one explicitly.
    pub local: Option<SocketAddr>,
}

/// A KWIK session: streams over one or more paths. Cheap to clone; all clones
/// are the same session.
#[derive(Clone, Debug)]
pub struct Session {
    shared: Arc<SessionShared>,
    handle: Arc<SessionHandle>,
}

/// Stream of [`PathEvent`]s of a session (see [`Session::path_events`]).
#[derive(Debug)]
pub struct PathEvents {
    rx: broadcast::Receiver<PathEvent>,
}

impl PathEvents {
    /// The next event; `None` once the session is gone. Events that a slow
    /// consumer missed are skipped. Cancel-safe.
    pub async fn next(&mut self) -> Option<PathEvent> {
        next_event(&mut self.rx).await
    }
}

/// Stream of [`BackpressureEvent`]s of a session: the peer's backpressure on
/// the session or on this side's send streams, when it starts and when it
/// ends (see [`Session::backpressure_events`]).
#[derive(Debug)]
pub struct BackpressureEvents {
    rx: broadcast::Receiver<BackpressureEvent>,
}

impl BackpressureEvents {
    /// The next event; `None` once the session is gone. Events that a slow
    /// consumer missed are skipped. Cancel-safe.
    pub async fn next(&mut self) -> Option<BackpressureEvent> {
        next_event(&mut self.rx).await
    }
}

async fn next_event<T: Clone>(rx: &mut broadcast::Receiver<T>) -> Option<T> {
    loop {
        match rx.recv().await {
            Ok(e) => return Some(e),
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

impl Session {
    pub(crate) fn new(shared: Arc<SessionShared>) -> Self {
        let handle = Arc::new(SessionHandle {
            shared: shared.clone(),
        });
        Self { shared, handle }
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.shared.id
    }

    /// Whether this side opened (client) or accepted (server) the session.
    pub fn side(&self) -> Side {
        self.shared.side
    }

    /// Opens a unidirectional stream with the session's default scheduler.
    /// Completes at once; cancel-safe.
    pub async fn open_uni(&self) -> Result<SendStream, StreamError> {
        self.open_uni_with(None).await
    }

    /// Opens a unidirectional stream scheduled with `policy` (`None`: default).
    pub async fn open_uni_with(
        &self,
        policy: Option<Scheduler>,
    ) -> Result<SendStream, StreamError> {
        let id = self
            .shared
            .with_state(|s| s.open(Dir::Uni, policy))
            .map_err(StreamError::SessionClosed)?;
        Ok(SendStream::new(
            self.shared.clone(),
            self.handle.clone(),
            id,
        ))
    }

    /// Opens a bidirectional stream with the session's default scheduler.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), StreamError> {
        self.open_bi_with(None).await
    }

    /// Opens a bidirectional stream whose send half uses `policy`.
    pub async fn open_bi_with(
        &self,
        policy: Option<Scheduler>,
    ) -> Result<(SendStream, RecvStream), StreamError> {
        let id = self
            .shared
            .with_state(|s| s.open(Dir::Bi, policy))
            .map_err(StreamError::SessionClosed)?;
        Ok((
            SendStream::new(self.shared.clone(), self.handle.clone(), id),
            RecvStream::new(self.shared.clone(), self.handle.clone(), id),
        ))
    }

    async fn accept_dir(&self, dir: Dir) -> Result<StreamId, StreamError> {
        loop {
            let notified = self.shared.accept.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(id) = self.shared.state.lock().accept(dir) {
                return Ok(id);
            }
            if self.shared.is_closed() {
                return Err(StreamError::SessionClosed(self.shared.close_reason()));
            }
            notified.await;
        }
    }

    /// The next unidirectional stream the peer opened (in arrival order of their
    /// first bytes). Cancel-safe.
    pub async fn accept_uni(&self) -> Result<RecvStream, StreamError> {
        let id = self.accept_dir(Dir::Uni).await?;
        Ok(RecvStream::new(
            self.shared.clone(),
            self.handle.clone(),
            id,
        ))
    }

    /// The next bidirectional stream the peer opened. Cancel-safe.
    pub async fn accept_bi(&self) -> Result<(SendStream, RecvStream), StreamError> {
        let id = self.accept_dir(Dir::Bi).await?;
        Ok((
            SendStream::new(self.shared.clone(), self.handle.clone(), id),
            RecvStream::new(self.shared.clone(), self.handle.clone(), id),
        ))
    }

    /// Ends the session: CLOSE with `code` and `reason` goes out on every path, then
    /// the connections close. Unacknowledged data is dropped — wait for
    /// [`SendStream::finished`] first for an orderly end.
    pub fn close(&self, code: u32, reason: &[u8]) {
        let reason = Bytes::copy_from_slice(reason);
        self.shared.with_state(|s| s.close(u64::from(code), reason));
    }

    /// Waits until the session ends and says why. Cancel-safe.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.shared.closed.subscribe();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                break;
            }
        }
        self.shared.close_reason()
    }

    /// Why the session ended, if it did.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.state.lock().close_reason().cloned()
    }

    /// Every path the session has had, with state and statistics.
    pub fn paths(&self) -> Vec<PathInfo> {
        let stats = self.shared.state.lock().path_stats();
        let io = self.shared.paths.lock();
        stats
            .into_iter()
            .map(|s| {
                let p = io.get(&s.id);
                PathInfo {
                    remote: p.map(|p| p.conn.remote_address()),
                    local: p.and_then(|p| p.local),
                    stats: s,
                }
            })
            .collect()
    }

    /// The state, RTT and counters of every path the session has had (the
    /// figures of [`paths`](Self::paths) without addresses).
    pub fn path_stats(&self) -> Vec<PathStats> {
        self.shared.state.lock().path_stats()
    }

    /// Subscribes to path events from now on.
    pub fn path_events(&self) -> PathEvents {
        PathEvents {
            rx: self.shared.events.subscribe(),
        }
    }

    /// Subscribes to the peer's backpressure events from now on: each
    /// signal on the session or on one of this side's send streams when it
    /// starts (with its reason) and when it ends (with how long it lasted).
    /// [`SendStream::backpressure`] answers the same for one stream at any
    /// time.
    pub fn backpressure_events(&self) -> BackpressureEvents {
        BackpressureEvents {
            rx: self.shared.backpressure.subscribe(),
        }
    }

    /// Holds the peer back on the whole session, by hand: it hears
    /// BACKPRESSURE for the session (reason [`BackpressureReason::Manual`](crate::BackpressureReason::Manual))
    /// and gets no more session credit until [`release`](Self::release),
    /// so it stops once it has sent what it was granted. Holding twice is
    /// holding once. For one stream see [`RecvStream::hold`].
    pub fn hold(&self) {
        self.shared
            .with_state(|s| s.hold(BackpressureScope::Session));
    }

    /// Ends a [`hold`](Self::hold): the peer hears the session's signal end
    /// (unless the receive window's own backpressure is on) and gets the
    /// credit it missed.
    pub fn release(&self) {
        self.shared
            .with_state(|s| s.release_hold(BackpressureScope::Session));
    }

    /// Session counters.
    pub fn stats(&self) -> SessionStats {
        self.shared.state.lock().stats()
    }

    /// Receive-side counters (buffered bytes, window, duplicates, gaps).
    pub fn presentation_stats(&self) -> PresentationStats {
        self.shared.state.lock().presentation().stats()
    }

    /// Adds a path (client only): asks the server for a join token on an existing
    /// path, opens a new QUIC connection as `spec` says, and joins it to the
    /// session. Returns the new path's id once the server welcomed it. Not
    /// cancel-safe.
    ///
    /// ```no_run
    /// # async fn demo(session: kwik::Session) -> Result<(), Box<dyn std::error::Error>> {
    /// let path = session.add_path(kwik::PathSpec::local("192.168.1.20:0".parse()?)).await?;
    /// println!("joined {path}");
    /// # Ok(()) }
    /// ```
    pub async fn add_path(&self, spec: PathSpec) -> Result<PathId, AddPathError> {
        let shared = &self.shared;
        let client = shared.client.as_ref().ok_or(AddPathError::NotAClient)?;
        if let Some(r) = shared.state.lock().close_reason() {
            return Err(AddPathError::SessionClosed(r.clone()));
        }
        let (endpoint, own) = match spec.local {
            Some(local) => {
                let ep = quinn::Endpoint::client(local).map_err(ConnectError::from)?;
                (ep.clone(), Some(ep))
            }
            None => (client.quinn.clone(), None),
        };
        let route = Route {
            endpoint,
            remote: spec.remote.unwrap_or(client.server),
        };
        let status = spec.status.unwrap_or(PathStatus::Available);
        let path = dial(shared, client, route, status, spec.weight).await?;
        // Kept only for a path that joined: an application retrying a failing
        // uplink does not pile up endpoints.
        if let Some(ep) = own {
            client.extra.lock().push(ep);
        }
        Ok(path)
    }

    /// Removes a live path: the peer is told, its unacknowledged data moves to the
    /// remaining paths, and its connection closes. A removed path is not
    /// re-created (see [`PathRecreation`](crate::PathRecreation)).
    pub fn remove_path(&self, path: PathId) -> Result<(), RemovePathError> {
        self.shared
            .with_state(|s| s.remove_path(path, Instant::now()))
    }

    /// Sets the weight [`Scheduler::Aggregate`] gives a live path for what
    /// this side sends (`None`: back to splitting by measured rate once no
    /// path has a weight; a path without one counts as 1 while others have
    /// one). With weights 3 and 1, three quarters of the bytes go on the first
    /// path and a quarter on the second, whatever their speeds — e.g. to keep
    /// a metered link at a quarter; the faster path does not take the slower
    /// one's share. A re-created path keeps the weight of the one it
    /// replaces. Returns false for an unknown or dead path.
    pub fn set_path_weight(&self, path: PathId, weight: Option<u32>) -> bool {
        self.shared.with_state(|s| s.set_path_weight(path, weight))
    }

    /// Marks a live path as available or backup, here and at the peer. Returns
    /// false for an unknown or dead path.
    pub fn set_path_status(&self, path: PathId, status: PathStatus) -> bool {
        self.shared.with_state(|s| s.set_path_status(path, status))
    }
}

// ----- multi-server (primary) -----

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
                shared.events.send(PathEvent::Added(path));
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
    /// [`SecondarySession::closed`](crate::SecondarySession::closed) then completes. [`PathEvent::Abandoned`]
    /// goes out on both sides, as it does when the client loses the secondary.
    pub fn remove_secondary(&self, path: PathId) -> Result<(), RemovePathError> {
        if self.shared.server.is_none() || !self.shared.multi.forget(path) {
            return Err(RemovePathError::UnknownPath(path));
        }
        self.shared.events.send(PathEvent::Abandoned(path));
        self.shared.wake_all();
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
    /// [`SecondarySession::accept_relay`](crate::SecondarySession::accept_relay). Delivery is in order while the client
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
    /// [`SecondarySession::relay`](crate::SecondarySession::relay), with the secondary's path id; `None` once
    /// the session has ended. Cancel-safe.
    pub async fn accept_relay(&self) -> Option<(PathId, Bytes)> {
        let mut closed = self.shared.closed.subscribe();
        let mut rx = self.shared.multi.relays().1.lock().await;
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
        let key: TokenKey = server.token_key.clone();
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
