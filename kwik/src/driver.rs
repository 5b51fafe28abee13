//! The tokio/quinn driver: the only module that touches sockets, tasks and the
//! clock. It moves bytes between quinn connections and the sans-IO
//! [`SessionState`], hands received segments to [`Presentation`], and arms the
//! session timer.
//!
//! Per path it runs a control reader, a control writer, a data writer (which pulls
//! scheduled chunks from the core when the path has room), a data acceptor (one
//! reader task per incoming data stream) and a watcher for the connection's end.
//! Per session it runs the timer and the presentation-event pump.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kwik_presentation::{Dir, Presentation, PresentationStats, Side, StreamId};
use parking_lot::Mutex;
use quinn::VarInt;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tracing::{debug, warn};

use crate::config::{ClientConfig, SecondaryJoins, ServerConfig, SessionConfig, TlsConfigError};
use crate::error::{
    AddPathError, CloseReason, ConnectError, EndpointError, ProtocolError, ReadError,
    RemovePathError, StreamError, WriteError,
};
use crate::frame::{Frame, FrameReader, PROTOCOL_VERSION, PathStatus, RefuseReason};
use crate::ids::{PathId, SessionId};
use crate::path::PathStats;
use crate::scheduler::Scheduler;
use crate::segment::{SegmentReader, encode_segment_header, encode_stream_header};
use crate::state::{Event, PathEvent, SessionState, SessionStats};
use crate::token::{TokenError, TokenIssuer};

/// QUIC application close code of a path abandoned while its session lives on.
const PATH_ABANDONED: u32 = 0x1_0001;
/// How long a handshake (OPEN/JOIN answer, token) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent QUIC data streams a peer may open on a new path.
const INITIAL_DATA_STREAMS: u32 = 64;
/// Ceiling for that limit as it grows. One data stream per (path, logical stream)
/// is open at a time and the receive side refuses more than its `max_streams`
/// logical streams (default 1024), so more concurrent QUIC streams are not needed.
const MAX_DATA_STREAMS: u32 = 4096;
/// How many accepted sessions wait for `Endpoint::accept` before new ones wait.
const ACCEPT_BACKLOG: usize = 256;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

mod multiserver;

pub use multiserver::{SecondaryPath, SecondarySession, SecondaryStats};

fn transport(config: &SessionConfig) -> Arc<quinn::TransportConfig> {
    Arc::new(transport_config(config))
}

fn transport_config(config: &SessionConfig) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // The idle timeout is clamped into QUIC's range; an out-of-range value means
    // "no timeout", which our pings make harmless.
    t.max_idle_timeout(quinn::IdleTimeout::try_from(config.idle_timeout).ok());
    // quinn allocates a map entry up front for every uni stream the peer may open
    // at once, so this limit is memory per path: start small and let the data
    // acceptor raise it while streams are in use (`data_acceptor`).
    t.max_concurrent_uni_streams(VarInt::from_u32(INITIAL_DATA_STREAMS));
    t.max_concurrent_bidi_streams(VarInt::from_u32(4));
    t.stream_receive_window(VarInt::from_u32(16 << 20));
    t.receive_window(VarInt::from_u32(64 << 20));
    t.send_window(64 << 20);
    t
}

fn quinn_client_config(config: &ClientConfig) -> Result<quinn::ClientConfig, TlsConfigError> {
    let crypto = QuicClientConfig::try_from(config.tls.clone())
        .map_err(|e| TlsConfigError::Quic(e.to_string()))?;
    let mut c = quinn::ClientConfig::new(Arc::new(crypto));
    c.transport_config(transport(&config.session));
    Ok(c)
}

// ===================================================================== endpoint

/// A KWIK endpoint over one UDP socket: a client (it [`connect`](Self::connect)s),
/// a server (it [`accept`](Self::accept)s), or both.
///
/// ```no_run
/// # async fn demo(config: kwik::ServerConfig) -> Result<(), Box<dyn std::error::Error>> {
/// let endpoint = kwik::Endpoint::server("127.0.0.1:4433".parse()?, config)?;
/// while let Some(session) = endpoint.accept().await {
///     tokio::spawn(async move {
///         while let Ok(mut stream) = session.accept_uni().await {
///             let mut data = Vec::new();
///             tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut data).await.ok();
///         }
///     });
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Endpoint {
    inner: Arc<EndpointInner>,
}

#[derive(Debug)]
struct EndpointInner {
    quinn: quinn::Endpoint,
    client: Option<(ClientConfig, quinn::ClientConfig)>,
    server: Option<Arc<ServerShared>>,
}

#[derive(Debug)]
struct ServerShared {
    config: ServerConfig,
    sessions: Mutex<HashMap<SessionId, Weak<SessionShared>>>,
    tokens: Mutex<TokenIssuer>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Session>>,
    incoming_tx: mpsc::Sender<Session>,
    refused_joins: AtomicU64,
    secondary_incoming: tokio::sync::Mutex<mpsc::Receiver<SecondarySession>>,
    secondary_tx: mpsc::Sender<SecondarySession>,
}

impl Endpoint {
    /// A client endpoint bound to `bind` (e.g. `0.0.0.0:0`). Must be called within a
    /// tokio runtime.
    pub fn client(bind: SocketAddr, config: ClientConfig) -> Result<Self, EndpointError> {
        let qc = quinn_client_config(&config)?;
        let quinn = quinn::Endpoint::client(bind)?;
        Ok(Self {
            inner: Arc::new(EndpointInner {
                quinn,
                client: Some((config, qc)),
                server: None,
            }),
        })
    }

    /// A server endpoint listening on `bind`. Must be called within a tokio runtime.
    pub fn server(bind: SocketAddr, config: ServerConfig) -> Result<Self, EndpointError> {
        let crypto = QuicServerConfig::try_from(config.tls.clone())
            .map_err(|e| TlsConfigError::Quic(e.to_string()))?;
        let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        sc.transport_config(transport(&config.session));
        let socket = bind_socket(bind, config.socket_buffer)?;
        let quinn = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(sc),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
        let (secondary_tx, secondary_rx) = mpsc::channel(ACCEPT_BACKLOG);
        let server = Arc::new(ServerShared {
            secondary_incoming: tokio::sync::Mutex::new(secondary_rx),
            secondary_tx,
            tokens: Mutex::new(TokenIssuer::new(config.token_key.clone())),
            config,
            sessions: Mutex::new(HashMap::new()),
            incoming: tokio::sync::Mutex::new(rx),
            incoming_tx: tx,
            refused_joins: AtomicU64::new(0),
        });
        tokio::spawn(accept_loop(quinn.clone(), server.clone()));
        Ok(Self {
            inner: Arc::new(EndpointInner {
                quinn,
                client: None,
                server: Some(server),
            }),
        })
    }

    /// The local UDP address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.quinn.local_addr()
    }

    /// Opens a session to the server at `addr`, verifying its certificate for
    /// `server_name`. Not cancel-safe (a half-open connection is dropped).
    ///
    /// ```no_run
    /// # async fn demo(config: kwik::ClientConfig) -> Result<(), Box<dyn std::error::Error>> {
    /// let endpoint = kwik::Endpoint::client("127.0.0.1:0".parse()?, config)?;
    /// let session = endpoint.connect("127.0.0.1:4433".parse()?, "localhost").await?;
    /// println!("session {}", session.id());
    /// # Ok(()) }
    /// ```
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<Session, ConnectError> {
        let (config, qc) = self.inner.client.as_ref().ok_or(ConnectError::NotAClient)?;
        let conn = self
            .inner
            .quinn
            .connect_with(qc.clone(), addr, server_name)?
            .await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let now = Instant::now();
        let presentation = Arc::new(Presentation::new(config.session.presentation.clone(), now));
        let open = Frame::Open {
            version: PROTOCOL_VERSION,
            max_data: presentation.session_credit(),
            stream_credit: config.session.presentation.get_stream_window(),
        };
        write_frame(&mut send, &open).await?;
        let mut reader = FrameReader::new();
        let answer = read_frame(&mut recv, &mut reader).await?;
        let (session_id, max_data, stream_credit) = match answer {
            Frame::Welcome {
                session,
                path,
                max_data,
                stream_credit,
            } if path == PathId::INITIAL => (session, max_data, stream_credit),
            Frame::Refused { reason } => return Err(ConnectError::Refused(reason)),
            _ => return Err(ProtocolError::UnexpectedFrame("answer to OPEN").into()),
        };
        let state = SessionState::new(
            session_id,
            Side::Client,
            config.session.clone(),
            presentation.clone(),
            max_data,
            stream_credit,
            Instant::now(),
        );
        let shared = SessionShared::new(
            state,
            presentation,
            Some(ClientSide {
                endpoint: self.inner.clone(),
                server: addr,
                server_name: server_name.to_owned(),
                extra: Mutex::new(Vec::new()),
            }),
            None,
        );
        shared.attach_path(PathId::INITIAL, conn, send, recv, reader);
        shared.start();
        Ok(Session::new(shared))
    }

    /// The next session a client opened, or `None` once the endpoint is closed (or
    /// is not a server). Cancel-safe.
    pub async fn accept(&self) -> Option<Session> {
        let server = self.inner.server.as_ref()?;
        server.incoming.lock().await.recv().await
    }

    /// The next secondary path a client joined to this endpoint on behalf of a
    /// session opened at another server (see
    /// [`ServerConfig::secondary_joins`](crate::ServerConfig::secondary_joins) and
    /// [`Session::add_secondary`]); `None` once the endpoint is closed (or is not
    /// a server). Cancel-safe.
    pub async fn accept_secondary(&self) -> Option<SecondarySession> {
        let server = self.inner.server.as_ref()?;
        server.secondary_incoming.lock().await.recv().await
    }

    /// JOIN attempts refused (bad, reused or expired tokens, unknown sessions).
    pub fn refused_joins(&self) -> u64 {
        self.inner
            .server
            .as_ref()
            .map_or(0, |s| s.refused_joins.load(Ordering::Relaxed))
    }

    /// Closes every connection of this endpoint at once (sessions see their paths
    /// fail). Prefer [`Session::close`] for an orderly end.
    pub fn close(&self, code: u32, reason: &[u8]) {
        self.inner.quinn.close(VarInt::from_u32(code), reason);
    }

    /// Waits until the endpoint's connections are fully closed.
    pub async fn wait_idle(&self) {
        self.inner.quinn.wait_idle().await;
    }
}

/// A UDP socket bound to `bind` whose receive and send buffers are at least
/// `buffer` bytes where the kernel allows it (0: the kernel's defaults). A buffer
/// the kernel refuses to grow is not an error: the endpoint works, it only drops
/// datagrams sooner under a burst, so this is logged.
fn bind_socket(bind: SocketAddr, buffer: usize) -> io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(bind)?;
    if buffer == 0 {
        return Ok(socket);
    }
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    // Only ever grow: a kernel default above the request stays.
    if state.recv_buffer_size((&socket).into()).unwrap_or(0) < buffer {
        if let Err(e) = state.set_recv_buffer_size((&socket).into(), buffer) {
            warn!(error = %e, bytes = buffer, "cannot enlarge the UDP receive buffer");
        }
    }
    if state.send_buffer_size((&socket).into()).unwrap_or(0) < buffer {
        if let Err(e) = state.set_send_buffer_size((&socket).into(), buffer) {
            warn!(error = %e, bytes = buffer, "cannot enlarge the UDP send buffer");
        }
    }
    // Linux reports twice the size it was asked for (its bookkeeping overhead), so a
    // reading below the request means the kernel capped it.
    let recv = state.recv_buffer_size((&socket).into()).unwrap_or(0);
    if recv < buffer {
        debug!(
            requested = buffer,
            granted = recv,
            "UDP receive buffer capped by the kernel (net.core.rmem_max)"
        );
    }
    Ok(socket)
}

async fn accept_loop(quinn: quinn::Endpoint, server: Arc<ServerShared>) {
    while let Some(incoming) = quinn.accept().await {
        let server = server.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(incoming, server).await {
                debug!(error = %e, "connection not accepted");
            }
        });
    }
}

async fn serve_connection(
    incoming: quinn::Incoming,
    server: Arc<ServerShared>,
) -> Result<(), ConnectError> {
    let conn = incoming.await?;
    let (mut send, mut recv) = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| ConnectError::TimedOut)??;
    let mut reader = FrameReader::new();
    let first = read_frame(&mut recv, &mut reader).await?;
    match first {
        Frame::Open {
            version,
            max_data,
            stream_credit,
        } => {
            if version != PROTOCOL_VERSION {
                write_frame(
                    &mut send,
                    &Frame::Refused {
                        reason: RefuseReason::Version,
                    },
                )
                .await?;
                let _ = send.finish();
                return Err(ConnectError::Refused(RefuseReason::Version));
            }
            let id = SessionId::random();
            let cfg = server.config.session.clone();
            let now = Instant::now();
            let presentation = Arc::new(Presentation::new(cfg.presentation.clone(), now));
            let welcome = Frame::Welcome {
                session: id,
                path: PathId::INITIAL,
                max_data: presentation.session_credit(),
                stream_credit: cfg.presentation.get_stream_window(),
            };
            write_frame(&mut send, &welcome).await?;
            let state = SessionState::new(
                id,
                Side::Server,
                cfg,
                presentation.clone(),
                max_data,
                stream_credit,
                now,
            );
            let shared = SessionShared::new(state, presentation, None, Some(server.clone()));
            metrics::counter!("kwik_sessions_accepted_total").increment(1);
            server.sessions.lock().insert(id, Arc::downgrade(&shared));
            shared.attach_path(PathId::INITIAL, conn, send, recv, reader);
            shared.start();
            if server.incoming_tx.send(Session::new(shared)).await.is_err() {
                debug!("endpoint gone; session dropped");
            }
            Ok(())
        }
        Frame::Join {
            session,
            path,
            token,
        } => {
            if server.config.secondary_joins == SecondaryJoins::Accept
                && !server.sessions.lock().contains_key(&session)
            {
                return multiserver::serve_secondary(
                    server,
                    conn,
                    send,
                    recv,
                    reader,
                    (session, path, token),
                )
                .await;
            }
            let outcome = join(&server, session, path, &token);
            match outcome {
                Ok(shared) => {
                    let welcome = Frame::Welcome {
                        session,
                        path,
                        max_data: shared.presentation.session_credit(),
                        stream_credit: shared
                            .state
                            .lock()
                            .config()
                            .presentation
                            .get_stream_window(),
                    };
                    write_frame(&mut send, &welcome).await?;
                    shared.with_state(|s| s.add_path(path, PathStatus::Available, Instant::now()));
                    shared.attach_path(path, conn, send, recv, reader);
                    Ok(())
                }
                Err(reason) => refuse_join(&server, conn, send, session, path, reason).await,
            }
        }
        _ => {
            conn.close(VarInt::from_u32(PATH_ABANDONED), b"expected OPEN or JOIN");
            Err(ProtocolError::UnexpectedFrame("first frame").into())
        }
    }
}

/// Answers a JOIN with REFUSED (counted), then closes the connection.
async fn refuse_join(
    server: &ServerShared,
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    session: SessionId,
    path: PathId,
    reason: RefuseReason,
) -> Result<(), ConnectError> {
    server.refused_joins.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("kwik_joins_refused_total").increment(1);
    warn!(?reason, %session, %path, "join refused");
    write_frame(&mut send, &Frame::Refused { reason }).await?;
    let _ = send.finish();
    // Give the answer a moment to leave before the connection closes.
    let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
    conn.close(VarInt::from_u32(PATH_ABANDONED), b"join refused");
    Err(ConnectError::Refused(reason))
}

fn join(
    server: &ServerShared,
    session: SessionId,
    path: PathId,
    token: &[u8],
) -> Result<Arc<SessionShared>, RefuseReason> {
    let shared = server
        .sessions
        .lock()
        .get(&session)
        .and_then(Weak::upgrade)
        .ok_or(RefuseReason::UnknownSession)?;
    server
        .tokens
        .lock()
        .verify(session, path, token, unix_ms())
        .map_err(|e| match e {
            TokenError::Expired => RefuseReason::ExpiredToken,
            TokenError::Reused => RefuseReason::ReusedToken,
            _ => RefuseReason::BadToken,
        })?;
    let state = shared.state.lock();
    if state.close_reason().is_some() {
        return Err(RefuseReason::UnknownSession);
    }
    if state.has_path(path) {
        return Err(RefuseReason::PathInUse);
    }
    if state.live_paths() >= state.config().max_paths {
        return Err(RefuseReason::Unavailable);
    }
    drop(state);
    Ok(shared)
}

async fn write_frame(send: &mut quinn::SendStream, frame: &Frame) -> Result<(), quinn::WriteError> {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf);
    send.write_all(&buf).await
}

/// A joined path's control channel: its two halves and the frame reader that
/// may already hold frames that followed WELCOME.
type JoinedControl = (quinn::SendStream, quinn::RecvStream, FrameReader);

/// Sends JOIN as the first frame of `conn`'s control stream and waits for the
/// WELCOME of that session and path. Any other answer (or none) closes `conn`.
async fn send_join(
    conn: &quinn::Connection,
    session: SessionId,
    path: PathId,
    token: Bytes,
) -> Result<JoinedControl, ConnectError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let join = Frame::Join {
        session,
        path,
        token,
    };
    write_frame(&mut send, &join).await?;
    let mut reader = FrameReader::new();
    match read_frame(&mut recv, &mut reader).await {
        Ok(Frame::Welcome {
            session: s,
            path: p,
            ..
        }) if s == session && p == path => Ok((send, recv, reader)),
        Ok(Frame::Refused { reason }) => Err(ConnectError::Refused(reason)),
        Ok(_) => {
            conn.close(
                VarInt::from_u32(PATH_ABANDONED),
                b"unexpected answer to JOIN",
            );
            Err(ProtocolError::UnexpectedFrame("answer to JOIN").into())
        }
        Err(e) => {
            conn.close(VarInt::from_u32(PATH_ABANDONED), b"no answer to JOIN");
            Err(e)
        }
    }
}

async fn read_frame(
    recv: &mut quinn::RecvStream,
    reader: &mut FrameReader,
) -> Result<Frame, ConnectError> {
    let work = async {
        loop {
            if let Some(f) = reader.next_frame().map_err(ProtocolError::from)? {
                return Ok(f);
            }
            match recv.read_chunk(64 * 1024, true).await? {
                Some(chunk) => reader.push(&chunk.bytes),
                None => return Err(ConnectError::ControlClosed),
            }
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, work)
        .await
        .map_err(|_| ConnectError::TimedOut)?
}

// ====================================================================== session

#[derive(Debug)]
struct ClientSide {
    endpoint: Arc<EndpointInner>,
    server: SocketAddr,
    server_name: String,
    /// Endpoints bound to other local addresses for added paths.
    extra: Mutex<Vec<quinn::Endpoint>>,
}

#[derive(Debug)]
struct PathIo {
    conn: quinn::Connection,
    local: Option<SocketAddr>,
    control: Arc<Notify>,
    data: Arc<Notify>,
}

#[derive(Debug)]
struct SessionShared {
    id: SessionId,
    side: Side,
    state: Mutex<SessionState>,
    presentation: Arc<Presentation>,
    paths: Mutex<HashMap<PathId, PathIo>>,
    accept: Notify,
    timer: Notify,
    wakers: Mutex<HashMap<(StreamId, u8), Waker>>,
    events: broadcast::Sender<PathEvent>,
    tokens: Mutex<HashMap<PathId, oneshot::Sender<Bytes>>>,
    client: Option<ClientSide>,
    server: Option<Arc<ServerShared>>,
    closed: watch::Sender<bool>,
    multi: multiserver::MultiServer,
}

const WAKE_WRITE: u8 = 0;
const WAKE_READ: u8 = 1;
const WAKE_FINISHED: u8 = 2;
const WAKE_DELEGATE: u8 = 3;

impl SessionShared {
    fn new(
        state: SessionState,
        presentation: Arc<Presentation>,
        client: Option<ClientSide>,
        server: Option<Arc<ServerShared>>,
    ) -> Arc<Self> {
        // Path events are rare; a consumer that lags skips the oldest.
        let (events, _) = broadcast::channel(32);
        let (closed, _) = watch::channel(false);
        let mut state = state;
        state.set_wall_clock(Instant::now(), unix_ms());
        Arc::new(Self {
            id: state.id(),
            side: state.side(),
            state: Mutex::new(state),
            presentation,
            paths: Mutex::new(HashMap::new()),
            accept: Notify::new(),
            timer: Notify::new(),
            wakers: Mutex::new(HashMap::new()),
            events,
            tokens: Mutex::new(HashMap::new()),
            client,
            server,
            closed,
            multi: multiserver::MultiServer::new(),
        })
    }

    /// Runs `f` on the core, then acts on the events it produced and wakes the
    /// path tasks.
    fn with_state<R>(self: &Arc<Self>, f: impl FnOnce(&mut SessionState) -> R) -> R {
        let r = self.with_state_quiet(f);
        self.kick();
        r
    }

    /// Like [`Self::with_state`] but wakes nobody (for the path tasks' own polls,
    /// which would otherwise wake themselves forever).
    fn with_state_quiet<R>(self: &Arc<Self>, f: impl FnOnce(&mut SessionState) -> R) -> R {
        let mut events = Vec::new();
        let r = {
            let mut state = self.state.lock();
            let r = f(&mut state);
            while let Some(e) = state.poll_event() {
                events.push(e);
            }
            r
        };
        for e in events {
            self.on_event(e);
        }
        r
    }

    /// Wakes the data writers of the other paths (the scheduler's view changed).
    fn kick_others(&self, path: PathId) {
        for (id, p) in self.paths.lock().iter() {
            if *id != path {
                p.data.notify_one();
            }
        }
    }

    fn kick(&self) {
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
                    PathEvent::Abandoned(_) => {
                        metrics::counter!("kwik_paths_abandoned_total").increment(1)
                    }
                    PathEvent::Degraded(_) => {
                        metrics::counter!("kwik_paths_degraded_total").increment(1)
                    }
                    _ => {}
                }
                let _ = self.events.send(e);
            }
            Event::ClosePath(id) => {
                if let Some(io) = self.paths.lock().remove(&id) {
                    io.control.notify_one();
                    io.data.notify_one();
                    io.conn
                        .close(VarInt::from_u32(PATH_ABANDONED), b"path abandoned");
                }
            }
            Event::Writable => self.wake(|_| true),
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
                if self.client.is_some() {
                    tokio::spawn(multiserver::client_join(
                        self.clone(),
                        path,
                        addr,
                        server_name,
                        token,
                    ));
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
                self.wake(|_| true);
                let reason = self.state.lock().close_reason().cloned();
                let (code, text): (u32, Bytes) = match reason {
                    Some(CloseReason::Local { code, reason }) => {
                        (code.min(u32::MAX as u64) as u32, reason)
                    }
                    Some(CloseReason::Protocol(t)) => {
                        (crate::PROTOCOL_ERROR_CODE as u32, Bytes::from(t))
                    }
                    _ => (0, Bytes::new()),
                };
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

    fn wake(&self, filter: impl Fn(&(StreamId, u8)) -> bool) {
        let wakers: Vec<Waker> = {
            let mut map = self.wakers.lock();
            let keys: Vec<_> = map.keys().filter(|k| filter(k)).copied().collect();
            keys.into_iter().filter_map(|k| map.remove(&k)).collect()
        };
        for w in wakers {
            w.wake();
        }
    }

    fn register(&self, key: (StreamId, u8), cx: &Context<'_>) {
        self.wakers.lock().insert(key, cx.waker().clone());
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    fn close_reason(&self) -> CloseReason {
        self.state
            .lock()
            .close_reason()
            .cloned()
            .unwrap_or(CloseReason::AllPathsLost)
    }

    fn start(self: &Arc<Self>) {
        tokio::spawn(timer_task(self.clone()));
        tokio::spawn(presentation_task(self.clone()));
    }

    fn attach_path(
        self: &Arc<Self>,
        id: PathId,
        conn: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        reader: FrameReader,
    ) {
        // The control channel goes before data on the same connection.
        let _ = send.set_priority(100);
        let io = PathIo {
            conn: conn.clone(),
            local: None,
            control: Arc::new(Notify::new()),
            data: Arc::new(Notify::new()),
        };
        let (control, data) = (io.control.clone(), io.data.clone());
        self.paths.lock().insert(id, io);
        tokio::spawn(control_reader(self.clone(), id, recv, reader));
        tokio::spawn(control_writer(self.clone(), id, send, control));
        tokio::spawn(data_writer(self.clone(), id, conn.clone(), data));
        tokio::spawn(data_acceptor(self.clone(), id, conn.clone()));
        tokio::spawn(path_watcher(self.clone(), id, conn));
        self.kick();
    }

    fn path_alive(&self, id: PathId) -> bool {
        self.paths.lock().contains_key(&id)
    }
}

async fn timer_task(shared: Arc<SessionShared>) {
    let mut closed = shared.closed.subscribe();
    loop {
        if shared.is_closed() {
            return;
        }
        let deadline = {
            let core = shared.state.lock().next_deadline();
            let pres = shared.presentation.next_deadline();
            match (core, pres) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let far = Instant::now() + Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(deadline.unwrap_or(far).into());
        tokio::select! {
            _ = sleep => {}
            _ = shared.timer.notified() => continue,
            _ = closed.changed() => return,
        }
        let now = Instant::now();
        shared.presentation.handle_timeout(now);
        let wall = unix_ms();
        shared.with_state(|s| {
            s.set_wall_clock(now, wall);
            s.handle_timeout(now)
        });
    }
}

async fn presentation_task(shared: Arc<SessionShared>) {
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

async fn control_reader(
    shared: Arc<SessionShared>,
    path: PathId,
    mut recv: quinn::RecvStream,
    mut reader: FrameReader,
) {
    loop {
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => {
                    let result = shared.with_state(|s| {
                        let r = s.handle_frame(path, frame, Instant::now());
                        if let Err(e) = &r {
                            s.fail(e);
                        }
                        r
                    });
                    if let Err(e) = result {
                        metrics::counter!("kwik_protocol_errors_total").increment(1);
                        warn!(session = %shared.id, %path, error = %e, "protocol error");
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(session = %shared.id, %path, error = %e, "bad control frame; closing path");
                    shared.with_state(|s| s.path_failed(path, Instant::now()));
                    return;
                }
            }
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) | Err(_) => {
                if !shared.is_closed() {
                    shared.with_state(|s| s.path_failed(path, Instant::now()));
                }
                return;
            }
        }
    }
}

async fn control_writer(
    shared: Arc<SessionShared>,
    path: PathId,
    mut send: quinn::SendStream,
    notify: Arc<Notify>,
) {
    loop {
        let mut buf = BytesMut::new();
        {
            let mut state = shared.state.lock();
            while let Some(f) = state.poll_control(path) {
                f.encode(&mut buf);
            }
        }
        if buf.is_empty() {
            if !shared.path_alive(path) {
                return;
            }
            notify.notified().await;
            continue;
        }
        if send.write_all(&buf).await.is_err() {
            return;
        }
    }
}

async fn data_writer(
    shared: Arc<SessionShared>,
    path: PathId,
    conn: quinn::Connection,
    notify: Arc<Notify>,
) {
    let mut streams: HashMap<StreamId, quinn::SendStream> = HashMap::new();
    let mut header = BytesMut::new();
    loop {
        let (next, done) =
            shared.with_state_quiet(|s| (s.poll_data(path), s.take_done_streams(path)));
        for id in done {
            if let Some(mut s) = streams.remove(&id) {
                let _ = s.finish();
            }
        }
        let Some(tx) = next else {
            if !shared.path_alive(path) {
                return;
            }
            notify.notified().await;
            continue;
        };
        shared.kick_others(path);
        header.clear();
        let stream = match streams.entry(tx.stream) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let Ok(s) = conn.open_uni().await else {
                    return;
                };
                encode_stream_header(&mut header, tx.stream);
                e.insert(s)
            }
        };
        encode_segment_header(&mut header, tx.offset, tx.data.len() as u64, tx.fin);
        let header_bytes = header.split().freeze();
        if stream
            .write_all_chunks(&mut [header_bytes, tx.data])
            .await
            .is_err()
        {
            return;
        }
        if tx.fin {
            if let Some(mut s) = streams.remove(&tx.stream) {
                let _ = s.finish();
            }
        }
    }
}

async fn data_acceptor(shared: Arc<SessionShared>, path: PathId, conn: quinn::Connection) {
    // Data streams of this path being read now; when they reach half the limit
    // the peer may open, the limit doubles (up to `MAX_DATA_STREAMS`), so a
    // session that uses few streams keeps quinn's per-stream table small.
    let open = Arc::new(AtomicU64::new(0));
    let mut limit = INITIAL_DATA_STREAMS;
    while let Ok(recv) = conn.accept_uni().await {
        let in_use = open.fetch_add(1, Ordering::Relaxed) + 1;
        if in_use * 2 >= u64::from(limit) && limit < MAX_DATA_STREAMS {
            limit = (limit * 2).min(MAX_DATA_STREAMS);
            conn.set_max_concurrent_uni_streams(VarInt::from_u32(limit));
        }
        let (shared, open) = (shared.clone(), open.clone());
        tokio::spawn(async move {
            data_reader(shared, path, recv).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn data_reader(shared: Arc<SessionShared>, path: PathId, mut recv: quinn::RecvStream) {
    let mut reader = SegmentReader::new();
    let mut pieces = Vec::new();
    loop {
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => {
                if let Err(e) = reader.feed(chunk.bytes, &mut pieces) {
                    warn!(session = %shared.id, %path, error = %e, "bad data stream; closing path");
                    shared.with_state(|s| s.path_failed(path, Instant::now()));
                    return;
                }
                if pieces.is_empty() {
                    continue;
                }
                let now = Instant::now();
                let failed = shared.with_state(|s| {
                    for piece in pieces.drain(..) {
                        if let Err(e) = s.handle_piece(path, piece, now) {
                            s.fail(&e);
                            return Some(e);
                        }
                    }
                    None
                });
                if let Some(e) = failed {
                    metrics::counter!("kwik_protocol_errors_total").increment(1);
                    warn!(session = %shared.id, %path, error = %e, "protocol error on data");
                    return;
                }
            }
            Ok(None) => {
                if !reader.at_boundary() {
                    warn!(session = %shared.id, %path, "data stream ended inside a segment");
                    shared.with_state(|s| s.path_failed(path, Instant::now()));
                }
                return;
            }
            // The connection failed (the watcher handles it) or the stream was reset.
            Err(_) => return,
        }
    }
}

async fn path_watcher(shared: Arc<SessionShared>, path: PathId, conn: quinn::Connection) {
    let error = conn.closed().await;
    debug!(session = %shared.id, %path, %error, "path connection ended");
    let now = Instant::now();
    shared.with_state(|s| {
        if let quinn::ConnectionError::ApplicationClosed(close) = &error {
            let code = close.error_code.into_inner();
            if code != u64::from(PATH_ABANDONED) {
                // The peer closed the session itself (CLOSE may still be in flight).
                let _ = s.handle_frame(
                    path,
                    Frame::Close {
                        code,
                        reason: close.reason.clone(),
                    },
                    now,
                );
                return;
            }
        }
        s.path_failed(path, now);
    });
}

/// Which addresses a new path uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathSpec {
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    status: Option<PathStatus>,
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

/// Held by every user-facing handle (sessions and streams). When the last one is
/// dropped the session closes itself — after its written data has been
/// acknowledged (or the idle timeout passed), so dropping handles loses nothing.
#[derive(Debug)]
struct SessionHandle {
    shared: Arc<SessionShared>,
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

/// Stream of [`PathEvent`]s of a session (see [`Session::path_events`]).
#[derive(Debug)]
pub struct PathEvents {
    rx: broadcast::Receiver<PathEvent>,
}

impl PathEvents {
    /// The next event; `None` once the session is gone. Events that a slow
    /// consumer missed are skipped. Cancel-safe.
    pub async fn next(&mut self) -> Option<PathEvent> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Session {
    fn new(shared: Arc<SessionShared>) -> Self {
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

    /// Subscribes to path events from now on.
    pub fn path_events(&self) -> PathEvents {
        PathEvents {
            rx: self.shared.events.subscribe(),
        }
    }

    /// Session counters.
    pub fn stats(&self) -> SessionStats {
        self.shared.state.lock().stats()
    }

    /// Receive-side counters (buffered bytes, window, duplicates, gaps).
    pub fn presentation_stats(&self) -> PresentationStats {
        self.shared.presentation.stats()
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
        let (path, token_rx) = {
            let mut state = shared.state.lock();
            if let Some(r) = state.close_reason() {
                return Err(AddPathError::SessionClosed(r.clone()));
            }
            if state.live_paths() >= state.config().max_paths {
                return Err(AddPathError::TooManyPaths);
            }
            let path = state.allocate_path_id();
            let (tx, rx) = oneshot::channel();
            shared.tokens.lock().insert(path, tx);
            (path, rx)
        };
        shared.with_state(|s| s.queue_frame(Frame::TokenRequest { path }));
        let token = match tokio::time::timeout(HANDSHAKE_TIMEOUT, token_rx).await {
            Ok(Ok(t)) => t,
            _ => {
                shared.tokens.lock().remove(&path);
                return Err(AddPathError::NoToken);
            }
        };
        let (_, qc) = client
            .endpoint
            .client
            .as_ref()
            .ok_or(AddPathError::NotAClient)?;
        let endpoint = match spec.local {
            Some(local) => {
                let ep = quinn::Endpoint::client(local).map_err(ConnectError::from)?;
                client.extra.lock().push(ep.clone());
                ep
            }
            None => client.endpoint.quinn.clone(),
        };
        let remote = spec.remote.unwrap_or(client.server);
        let conn = endpoint
            .connect_with(qc.clone(), remote, &client.server_name)
            .map_err(ConnectError::from)?
            .await
            .map_err(ConnectError::from)?;
        let (send, recv, reader) = send_join(&conn, shared.id, path, token).await?;
        let status = spec.status.unwrap_or(PathStatus::Available);
        shared.with_state(|s| {
            s.add_path(path, PathStatus::Available, Instant::now());
        });
        shared.attach_path(path, conn, send, recv, reader);
        if let Some(io) = shared.paths.lock().get_mut(&path) {
            io.local = endpoint.local_addr().ok();
        }
        if status != PathStatus::Available {
            shared.with_state(|s| s.set_path_status(path, status));
        }
        Ok(path)
    }

    /// Removes a live path: the peer is told, its unacknowledged data moves to the
    /// remaining paths, and its connection closes.
    pub fn remove_path(&self, path: PathId) -> Result<(), RemovePathError> {
        let now = Instant::now();
        self.shared.with_state(|s| {
            if !s
                .path_stats()
                .iter()
                .any(|p| p.id == path && p.state != crate::PathState::Abandoned)
            {
                return Err(RemovePathError::UnknownPath(path));
            }
            if s.remove_path(path, now) {
                Ok(())
            } else {
                Err(RemovePathError::LastPath)
            }
        })
    }

    /// Marks a live path as available or backup, here and at the peer. Returns
    /// false for an unknown or dead path.
    pub fn set_path_status(&self, path: PathId, status: PathStatus) -> bool {
        self.shared.with_state(|s| s.set_path_status(path, status))
    }
}

// ====================================================================== streams

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
    fn new(shared: Arc<SessionShared>, handle: Arc<SessionHandle>, id: StreamId) -> Self {
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
    /// that another writer — a secondary server, see [`Session::delegate`] —
    /// or a later `write_at` fills), or into a hole (e.g. a range reclaimed
    /// from a secondary that died, see [`Session::missing_from`]; allowed after
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
    fn new(shared: Arc<SessionShared>, handle: Arc<SessionHandle>, id: StreamId) -> Self {
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
