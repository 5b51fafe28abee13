//! The endpoint: one UDP socket and quinn endpoint that opens sessions
//! (client), accepts them (server), or both. A server reads the first frame
//! of every connection and does what the core's handshake decides: start a
//! session, join a path to one, accept a secondary path, or refuse.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use quinn::VarInt;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::driver::control::{HANDSHAKE_TIMEOUT, read_frame, unix_ms, write_frame, write_frames};
use crate::driver::dial::Route;
use crate::driver::error::{ConnectError, EndpointError};
use crate::driver::links::spawn_client_join;
use crate::driver::path_tasks::{attach_path, timer_task};
use crate::driver::peer_log::{self, Stage, close_for, connect_fault, connection_fault};
use crate::driver::quinn_config::{
    ClientConfig, ServerConfig, quinn_client_config, quinn_server_config,
};
use crate::driver::secondary::{SecondarySession, accept_secondary};
use crate::driver::session::Session;
use crate::driver::shared::{ClientSide, ServerSide, SessionRegistry, SessionShared};
use crate::proto::handshake::{self, AnswerError, FirstFrame, JoinRequest, Opening};
use crate::proto::ids::{PathId, SessionId};
use crate::proto::multiserver::token::TokenIssuer;
use crate::proto::peer_fault::{FrameType, PeerFault};
use crate::proto::wire::frame::{Frame, FrameReader, PathStatus, RefuseReason};

/// How many accepted sessions wait for `Endpoint::accept` before new ones wait.
const ACCEPT_BACKLOG: usize = 256;

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

/// A server endpoint's side of its sessions.

#[derive(Debug)]
struct ServerShared {
    config: ServerConfig,
    sessions: Arc<SessionRegistry>,
    tokens: Arc<Mutex<TokenIssuer>>,
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
        let sc = quinn_server_config(&config)?;
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
            tokens: Arc::new(Mutex::new(TokenIssuer::new(config.token_key.clone()))),
            config,
            sessions: Arc::new(Mutex::new(HashMap::new())),
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
        let mut version = config.session.version.number();
        let (conn, send, recv, reader, state) = loop {
            let conn = self
                .inner
                .quinn
                .connect_with(qc.clone(), addr, server_name)?
                .await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            let (opening, open) = Opening::new(config.session.clone(), version, Instant::now());
            write_frame(&mut send, &open).await?;
            let mut reader = FrameReader::new();
            let answer = read_frame(&mut recv, &mut reader).await?;
            match opening.on_answer(answer, Instant::now()) {
                Ok(state) => break (conn, send, recv, reader, state),
                // A server of an older version: open the session again at the
                // version every server speaks (the server closes this one).
                Err(AnswerError::Refused(RefuseReason::Version)) => {
                    let Some(older) = Opening::fallback(version) else {
                        return Err(AnswerError::Refused(RefuseReason::Version).into());
                    };
                    debug!(
                        offered = version,
                        retry = older,
                        "version refused; opening again"
                    );
                    version = older;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let shared = SessionShared::new(
            state,
            Some(ClientSide {
                quinn: self.inner.quinn.clone(),
                config: config.clone(),
                quinn_config: qc.clone(),
                server: addr,
                server_name: server_name.to_owned(),
                extra: Mutex::new(Vec::new()),
                routes: Mutex::new(HashMap::from([(
                    PathId::INITIAL,
                    Route {
                        endpoint: self.inner.quinn.clone(),
                        remote: addr,
                    },
                )])),
                join_secondary: spawn_client_join,
            }),
            None,
        );
        attach_path(&shared, PathId::INITIAL, conn, send, recv, reader);
        start(&shared);
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
        let remote = incoming.remote_address();
        tokio::spawn(async move {
            if let Err(r) = serve_connection(incoming, server).await {
                peer_log::report(remote, r.session, r.path, &r.fault);
            }
        });
    }
}

/// A connection that did not become a session or a path, and why: what the peer
/// log reports.
#[derive(Debug)]
struct Refusal {
    fault: PeerFault,
    session: Option<SessionId>,
    path: Option<PathId>,
}

impl From<PeerFault> for Refusal {
    fn from(fault: PeerFault) -> Self {
        Self {
            fault,
            session: None,
            path: None,
        }
    }
}

/// Ends `conn` with the application close of `fault` (if it has one) and returns
/// the refusal to report.
fn refuse(conn: &quinn::Connection, fault: PeerFault) -> Refusal {
    close_for(conn, &fault);
    fault.into()
}

async fn serve_connection(
    incoming: quinn::Incoming,
    server: Arc<ServerShared>,
) -> Result<(), Refusal> {
    let conn = incoming
        .await
        .map_err(|e| connection_fault(&e, Stage::Handshake))?;
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.accept_bi()).await;
    let (mut send, mut recv) = match accepted {
        Err(_) => {
            return Err(refuse(
                &conn,
                PeerFault::HandshakeTimeout(HANDSHAKE_TIMEOUT),
            ));
        }
        Ok(Err(e)) => return Err(connection_fault(&e, Stage::Established).into()),
        Ok(Ok(streams)) => streams,
    };
    let mut reader = FrameReader::new();
    let first = match read_frame(&mut recv, &mut reader).await {
        Ok(f) => f,
        Err(e) => return Err(refuse(&conn, connect_fault(e))),
    };
    let offered = match &first {
        Frame::Open { version, .. } => Some(*version),
        _ => None,
    };
    let first_name = first.name();
    let config = &server.config;
    let decision = handshake::on_first_frame(
        first,
        &config.session,
        config.secondary_joins,
        |session| server.sessions.lock().contains_key(&session),
        SessionId::random,
        Instant::now(),
    );
    let lost = |e: ConnectError| Refusal::from(connect_fault(e));
    match decision {
        FirstFrame::Open { state, welcome } => {
            // The path's first frames (its first ping) leave with the WELCOME,
            // in one packet.
            let mut state = *state;
            let mut first = vec![welcome];
            while let Some(f) = state.poll_control(PathId::INITIAL) {
                first.push(f);
            }
            write_frames(&mut send, &first)
                .await
                .map_err(|e| lost(e.into()))?;
            let id = state.id();
            let shared = SessionShared::new(
                state,
                None,
                Some(ServerSide {
                    sessions: server.sessions.clone(),
                    tokens: server.tokens.clone(),
                    token_key: config.token_key.clone(),
                }),
            );
            metrics::counter!("kwik_sessions_accepted_total").increment(1);
            server.sessions.lock().insert(id, Arc::downgrade(&shared));
            attach_path(&shared, PathId::INITIAL, conn, send, recv, reader);
            start(&shared);
            if server.incoming_tx.send(Session::new(shared)).await.is_err() {
                debug!("endpoint gone; session dropped");
            }
            Ok(())
        }
        FirstFrame::Refuse(reason) => {
            let fault = match (reason, offered) {
                (RefuseReason::Version, Some(offered)) => PeerFault::Version { offered },
                (reason, _) => PeerFault::JoinRefused(reason),
            };
            answer_refused(conn, send, reason, &fault).await;
            Err(fault.into())
        }
        FirstFrame::Secondary(request) => {
            let (session, path) = (request.session, request.path);
            let verified = request.verify(&mut server.tokens.lock(), unix_ms());
            if let Err(reason) = verified {
                return Err(refuse_join(&server, conn, send, session, path, reason).await);
            }
            accept_secondary(
                conn,
                (send, recv, reader),
                request,
                (config.token_key.clone(), config.session.max_segment),
                &server.secondary_tx,
            )
            .await
            .map_err(|e| Refusal {
                session: Some(session),
                path: Some(path),
                ..lost(e)
            })
        }
        FirstFrame::Join(request) => {
            let (session, path) = (request.session, request.path);
            match join(&server, &request) {
                Ok((shared, welcome)) => {
                    write_frame(&mut send, &welcome)
                        .await
                        .map_err(|e| lost(e.into()))?;
                    shared.with_state(|s| s.add_path(path, PathStatus::Available, Instant::now()));
                    attach_path(&shared, path, conn, send, recv, reader);
                    Ok(())
                }
                Err(reason) => Err(refuse_join(&server, conn, send, session, path, reason).await),
            }
        }
        FirstFrame::Unexpected => {
            let fault = PeerFault::Protocol {
                frame: Some(FrameType::Named(first_name)),
                detail: "the first frame must be OPEN or JOIN".into(),
            };
            Err(refuse(&conn, fault))
        }
    }
}

/// Answers REFUSED for `reason`, gives the answer a moment to leave, then closes the
/// connection with the application close of `fault`.
async fn answer_refused(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    reason: RefuseReason,
    fault: &PeerFault,
) {
    if write_frame(&mut send, &Frame::Refused { reason })
        .await
        .is_ok()
    {
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
    }
    close_for(&conn, fault);
}

/// Answers a JOIN with REFUSED (counted), then closes the connection.
async fn refuse_join(
    server: &ServerShared,
    conn: quinn::Connection,
    send: quinn::SendStream,
    session: SessionId,
    path: PathId,
    reason: RefuseReason,
) -> Refusal {
    server.refused_joins.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("kwik_joins_refused_total").increment(1);
    let fault = PeerFault::JoinRefused(reason);
    answer_refused(conn, send, reason, &fault).await;
    Refusal {
        fault,
        session: Some(session),
        path: Some(path),
    }
}

/// A JOIN of a session held here: the session and the WELCOME to answer
/// with, or why the join is refused.
fn join(
    server: &ServerShared,
    request: &JoinRequest,
) -> Result<(Arc<SessionShared>, Frame), RefuseReason> {
    let shared = server
        .sessions
        .lock()
        .get(&request.session)
        .and_then(Weak::upgrade)
        .ok_or(RefuseReason::UnknownSession)?;
    request.verify(&mut server.tokens.lock(), unix_ms())?;
    let welcome = handshake::admit_join(&shared.state.lock(), request.path)?;
    Ok((shared, welcome))
}

/// Starts a new session's timer (the core's and its receive side's timeouts).
fn start(shared: &Arc<SessionShared>) {
    tokio::spawn(timer_task(shared.clone()));
}
