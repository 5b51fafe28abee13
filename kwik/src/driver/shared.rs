//! The driver's state of one session ([`SessionShared`]): the sans-IO core
//! (which owns the receive side, the session's `Presentation`) behind one
//! lock, the I/O of each path, the wakers of blocked application calls, and
//! what the core's events mean for tasks and connections.
//!
//! Lock order: the core (`state`), then `wakers`. A blocked call registers its
//! waker while it still holds the core's lock, and the core's events are acted
//! on after that lock is released, so a wake-up the core reports can never
//! fall between a call's check and its registration (see
//! [`wakers`](crate::driver::wakers)). Every
//! handle and task of the session holds it; the last user-facing handle
//! ([`SessionHandle`]) closes the session when it goes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::task::Context;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kwik_presentation::Side;
use parking_lot::Mutex;
use quinn::VarInt;
use tokio::sync::{Notify, broadcast, oneshot, watch};
use tracing::debug;

use crate::driver::control::unix_ms;
use crate::driver::dial::{Route, redial};
use crate::driver::multi_server::MultiServer;
use crate::driver::quinn_config::ClientConfig;
use crate::driver::wakers::{StreamWakers, WakeKey};
use crate::proto::error::CloseReason;
use crate::proto::error::PATH_ABANDONED;
use crate::proto::ids::{PathId, SessionId};
use crate::proto::multiserver::token::{TokenIssuer, TokenKey};
use crate::proto::session::SessionState;
use crate::proto::session::backpressure::BackpressureEvent;
use crate::proto::session::events::{Event, PathEvent};
use crate::proto::wire::frame::Frame;

/// Starts the client's join of a secondary server (ADD_PATH from the primary).
/// The endpoint hands it over at connect, so that a session's state does not
/// depend on the link tasks that depend on it.
pub(crate) type JoinSecondary = fn(Arc<SessionShared>, PathId, SocketAddr, Bytes, Bytes);

/// What a client session needs to open more connections.
#[derive(Debug)]
pub(crate) struct ClientSide {
    /// The endpoint the session was opened from.
    pub(crate) quinn: quinn::Endpoint,
    pub(crate) config: ClientConfig,
    pub(crate) quinn_config: quinn::ClientConfig,
    pub(crate) server: SocketAddr,
    pub(crate) server_name: String,
    /// Endpoints bound to other local addresses for added paths.
    pub(crate) extra: Mutex<Vec<quinn::Endpoint>>,
    /// The route of each live path (and of dead ones being re-created).
    pub(crate) routes: Mutex<HashMap<PathId, Route>>,
    pub(crate) join_secondary: JoinSecondary,
}

/// The sessions of a server endpoint, by id.
pub(crate) type SessionRegistry = Mutex<HashMap<SessionId, Weak<SessionShared>>>;

/// What a server session shares with its endpoint.
#[derive(Debug)]
pub(crate) struct ServerSide {
    pub(crate) sessions: Arc<SessionRegistry>,
    pub(crate) tokens: Arc<Mutex<TokenIssuer>>,
    /// The key shared with secondary servers (signs grants).
    pub(crate) token_key: TokenKey,
}

/// The I/O side of one path: its connection and the signals of its writers.
#[derive(Debug)]
pub(crate) struct PathIo {
    pub(crate) conn: quinn::Connection,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) control: Arc<Notify>,
    pub(crate) data: Arc<Notify>,
}

/// Events of a session for the application (path events, backpressure
/// events). The channel exists from the first subscriber on: a session
/// nobody watches keeps no event buffer (32 slots would be ~1.5 KiB per
/// session).
#[derive(Debug)]
pub(crate) struct EventHub<T>(OnceLock<broadcast::Sender<T>>);

impl<T> Default for EventHub<T> {
    fn default() -> Self {
        Self(OnceLock::new())
    }
}

impl<T: Clone> EventHub<T> {
    /// These events are rare; a consumer that lags skips the oldest.
    const CAPACITY: usize = 32;

    pub(crate) fn send(&self, event: T) {
        if let Some(tx) = self.0.get() {
            let _ = tx.send(event);
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<T> {
        self.0
            .get_or_init(|| broadcast::channel(Self::CAPACITY).0)
            .subscribe()
    }
}

/// One session's driver state: the core behind its lock, the paths' I/O, and
/// the wake-ups of tasks and application calls.
#[derive(Debug)]
pub(crate) struct SessionShared {
    pub(crate) id: SessionId,
    pub(crate) side: Side,
    pub(crate) state: Mutex<SessionState>,
    pub(crate) paths: Mutex<HashMap<PathId, PathIo>>,
    pub(crate) accept: Notify,
    pub(crate) timer: Notify,
    /// The deadline the timer task sleeps until (`None`: no deadline), set
    /// under the core's lock.
    pub(crate) timer_armed: Mutex<Option<Instant>>,
    pub(crate) wakers: StreamWakers,
    pub(crate) events: EventHub<PathEvent>,
    pub(crate) backpressure: EventHub<BackpressureEvent>,
    pub(crate) tokens: Mutex<HashMap<PathId, oneshot::Sender<Bytes>>>,
    pub(crate) client: Option<ClientSide>,
    pub(crate) server: Option<ServerSide>,
    pub(crate) closed: watch::Sender<bool>,
    pub(crate) multi: MultiServer,
}

pub(crate) use crate::driver::wakers::{WAKE_DELEGATE, WAKE_FINISHED, WAKE_READ, WAKE_WRITE};

impl SessionShared {
    pub(crate) fn new(
        state: SessionState,
        client: Option<ClientSide>,
        server: Option<ServerSide>,
    ) -> Arc<Self> {
        let (closed, _) = watch::channel(false);
        let mut state = state;
        state.set_wall_clock(Instant::now(), unix_ms());
        Arc::new(Self {
            id: state.id(),
            side: state.side(),
            state: Mutex::new(state),
            paths: Mutex::new(HashMap::new()),
            accept: Notify::new(),
            timer: Notify::new(),
            timer_armed: Mutex::new(None),
            wakers: StreamWakers::default(),
            events: EventHub::default(),
            backpressure: EventHub::default(),
            tokens: Mutex::new(HashMap::new()),
            client,
            server,
            closed,
            multi: MultiServer::new(),
        })
    }

    /// Runs `f` on the core, then acts on the events it produced and wakes the
    /// path tasks that have something to do: a writer whose path has control
    /// frames queued or data it may send, and the timer when the core's next
    /// deadline is earlier than the one it sleeps on. The others would only
    /// look and go back to sleep (most calls change one stream or one path).
    pub(crate) fn with_state<R>(self: &Arc<Self>, f: impl FnOnce(&mut SessionState) -> R) -> R {
        let (r, (work, wake_timer)) = self.run_core(f, |state| {
            let mut work = Vec::new();
            state.pending_work(&mut work);
            // Under the core's lock, as the timer arms under it (no deadline can
            // fall between the timer's reading and this comparison).
            let wake_timer = earlier(state.next_deadline(), *self.timer_armed.lock());
            (work, wake_timer)
        });
        if !work.is_empty() {
            let paths = self.paths.lock();
            for w in &work {
                if let Some(p) = paths.get(&w.path) {
                    if w.control {
                        p.control.notify_one();
                    }
                    if w.data {
                        p.data.notify_one();
                    }
                }
            }
        }
        if wake_timer {
            self.timer.notify_one();
        }
        r
    }

    /// Like [`Self::with_state`] but wakes nobody (for the path tasks' own polls,
    /// which would otherwise wake themselves forever).
    pub(crate) fn with_state_quiet<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut SessionState) -> R,
    ) -> R {
        self.run_core(f, |_| ()).0
    }

    /// Runs `f` on the core and then `after` under the same lock, then acts on the
    /// events the core produced (outside the lock).
    fn run_core<R, A>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut SessionState) -> R,
        after: impl FnOnce(&SessionState) -> A,
    ) -> (R, A) {
        let mut events = Vec::new();
        let (r, a) = {
            let mut state = self.state.lock();
            let r = f(&mut state);
            while let Some(e) = state.poll_event() {
                events.push(e);
            }
            let a = after(&state);
            (r, a)
        };
        for e in events {
            self.on_event(e);
        }
        (r, a)
    }

    /// Wakes the data writers of the other paths (the scheduler's view changed).
    pub(crate) fn kick_others(&self, path: PathId) {
        for (id, p) in self.paths.lock().iter() {
            if *id != path {
                p.data.notify_one();
            }
        }
    }

    /// Wakes every path's writers and the timer (a path was attached).
    pub(crate) fn kick(&self) {
        for p in self.paths.lock().values() {
            p.control.notify_one();
            p.data.notify_one();
        }
        self.timer.notify_one();
    }

    fn on_event(self: &Arc<Self>, event: Event) {
        match event {
            Event::Incoming(_) => self.accept.notify_waiters(),
            Event::Path(e) => {
                debug!(session = %self.id, event = ?e, "path event");
                match e {
                    PathEvent::Added(_) => metrics::counter!("kwik_paths_added_total").increment(1),
                    PathEvent::Abandoned(id) => {
                        metrics::counter!("kwik_paths_abandoned_total").increment(1);
                        // Keep the route only while the core brings the path back.
                        if let Some(client) = &self.client {
                            if !self.state.lock().is_recreating(id) {
                                client.routes.lock().remove(&id);
                            }
                        }
                    }
                    PathEvent::Degraded(_) => {
                        metrics::counter!("kwik_paths_degraded_total").increment(1)
                    }
                    PathEvent::Recreating { .. } => {
                        metrics::counter!("kwik_path_recreate_attempts_total").increment(1)
                    }
                    PathEvent::GaveUp(id) => {
                        metrics::counter!("kwik_paths_given_up_total").increment(1);
                        if let Some(client) = &self.client {
                            client.routes.lock().remove(&id);
                        }
                    }
                    _ => {}
                }
                self.events.send(e);
            }
            Event::Backpressure(e) => {
                debug!(session = %self.id, event = ?e, "peer backpressure");
                self.backpressure.send(e);
            }
            Event::ClosePath(id) => {
                if let Some(io) = self.paths.lock().remove(&id) {
                    io.control.notify_one();
                    io.data.notify_one();
                    io.conn
                        .close(VarInt::from_u32(PATH_ABANDONED), b"path abandoned");
                }
            }
            Event::Writable => self.wake_all(),
            Event::Readable(stream) => self.wake_one((stream, WAKE_READ)),
            Event::Transmit => {
                for p in self.paths.lock().values() {
                    p.control.notify_one();
                }
            }
            Event::Dial(old) => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(redial(self.clone(), old));
                }
            }
            Event::TokenRequested(path) => {
                if let Some(server) = &self.server {
                    let ttl = self.state.lock().config().token_ttl.as_millis() as u64;
                    let token = server.tokens.lock().issue(self.id, path, unix_ms(), ttl);
                    // Runs after the lock is released by the caller's loop.
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.with_state(|s| s.queue_frame(Frame::PathToken { path, token }));
                    });
                }
            }
            Event::AddPathRequested {
                path,
                addr,
                server_name,
                token,
            } => {
                if let Some(client) = &self.client {
                    (client.join_secondary)(self.clone(), path, addr, server_name, token);
                }
            }
            Event::AddPathResult(path, outcome) => self.multi.on_add_path_result(path, outcome),
            Event::RelayForward(path, payload) => self.multi.on_relay_forward(path, payload),
            Event::RelayReceived(path, payload) => self.multi.on_relay_received(path, payload),
            Event::SecondaryAbandoned(path) => self.on_secondary_abandoned(path),
            Event::ToSecondary(path, frame) => self.multi.to_link(path, frame),
            Event::TokenReceived(path, token) => {
                if let Some(tx) = self.tokens.lock().remove(&path) {
                    let _ = tx.send(token);
                }
            }
            Event::Closed => {
                let _ = self.closed.send(true);
                self.accept.notify_waiters();
                self.wake_all();
                let (code, text) = self
                    .state
                    .lock()
                    .close_reason()
                    .map_or((0, Bytes::new()), CloseReason::application_close);
                if let Some(server) = &self.server {
                    server.sessions.lock().remove(&self.id);
                }
                self.multi.on_closed(code, &text);
                metrics::counter!("kwik_sessions_closed_total").increment(1);
                // Let the control writers flush CLOSE, then close the connections
                // (at once when called outside a runtime; the close code carries
                // the session's code either way).
                let this = self.clone();
                let close_all = move || {
                    let paths: Vec<PathIo> = this.paths.lock().drain().map(|(_, p)| p).collect();
                    for p in paths {
                        p.conn.close(VarInt::from_u32(code), &text);
                        p.control.notify_one();
                        p.data.notify_one();
                    }
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        rt.spawn(async move {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            close_all();
                        });
                    }
                    Err(_) => close_all(),
                }
            }
        }
    }

    /// Wakes every blocked application call of the session.
    pub(crate) fn wake_all(&self) {
        self.wakers.wake_all();
    }

    /// Wakes the call waiting on `key`, if any.
    pub(crate) fn wake_one(&self, key: WakeKey) {
        self.wakers.wake(key);
    }

    /// Registers `cx`'s waker for `key`. Call it with the core's lock held
    /// (inside [`Self::with_state`]), after the core said there is nothing to do.
    pub(crate) fn register(&self, key: WakeKey, cx: &Context<'_>) {
        self.wakers.register(key, cx.waker());
    }

    pub(crate) fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    pub(crate) fn close_reason(&self) -> CloseReason {
        self.state
            .lock()
            .close_reason()
            .cloned()
            .unwrap_or(CloseReason::AllPathsLost)
    }

    /// The peer abandoned the secondary path `path` (PATH_ABANDON).
    fn on_secondary_abandoned(&self, path: PathId) {
        if self.multi.forget(path) {
            self.events.send(PathEvent::Abandoned(path));
            // `delegate` calls waiting for credit for this path fail now.
            self.wake_all();
        }
    }

    pub(crate) fn path_alive(&self, id: PathId) -> bool {
        self.paths.lock().contains_key(&id)
    }
}

/// Whether a core whose next deadline is `next` must wake a timer sleeping
/// until `armed`: only for an earlier deadline (a later one is found when the
/// timer wakes at `armed` and looks again).
fn earlier(next: Option<Instant>, armed: Option<Instant>) -> bool {
    match (next, armed) {
        (Some(next), Some(armed)) => next < armed,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Held by every user-facing handle (sessions and streams). When the last one is
/// dropped the session closes itself — after its written data has been
/// acknowledged (or the idle timeout passed), so dropping handles loses nothing.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    pub(crate) shared: Arc<SessionShared>,
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        let shared = self.shared.clone();
        if shared.is_closed() {
            return;
        }
        let close = move |shared: &Arc<SessionShared>| {
            shared.with_state(|s| s.close(0, Bytes::from_static(b"all handles dropped")));
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let patience = shared.state.lock().config().idle_timeout;
                    let deadline = Instant::now() + patience;
                    while !shared.is_closed()
                        && shared.state.lock().has_unacknowledged()
                        && Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    close(&shared);
                });
            }
            Err(_) => close(&shared),
        }
    }
}
