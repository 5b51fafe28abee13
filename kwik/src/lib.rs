//! Multipath sessions over QUIC.
//!
//! A KWIK [`Session`] looks like one QUIC connection to the application — it opens
//! and accepts streams — but owns one or more *paths*, each a separate QUIC
//! connection (`quinn`). The bytes of one logical stream travel over any path with
//! explicit logical offsets, a per-stream [`Scheduler`] decides which, and the
//! sender keeps what it wrote until the receiver acknowledges it, so when a path
//! dies its unacknowledged bytes are re-sent on the others: nothing is lost while
//! one path survives. The receive side is [`kwik_presentation`].
//!
//! The crate is split the way quinn is: a sans-IO core (`src/proto`: frames and
//! codec, handshake decisions, session and path state, retention, scheduling,
//! multi-server grants; it takes `now` and hands back frames, data and
//! deadlines) driven by deterministic tests, and a tokio/quinn driver
//! (`src/driver`) behind [`Endpoint`], [`Session`], [`SendStream`] and
//! [`RecvStream`] that carries bytes and timers. The wire protocol is specified
//! in `docs/PROTOCOL.md`.
//!
//! Multi-server sessions: the server that opened a session (the primary) can
//! ask the client to join a secondary server that shares its [`TokenKey`]
//! ([`Session::add_secondary`]); the secondary receives the path from
//! [`Endpoint::accept_secondary`] as a [`SecondarySession`], and the two servers
//! exchange messages through the client ([`Session::relay`],
//! [`SecondarySession::accept_relay`]). The primary delegates byte ranges of a
//! stream to a secondary ([`Session::delegate`]): a signed [`Grant`] travels
//! to the client, which forwards it to the secondary and from then on accepts
//! that secondary's bytes inside the grant only; the secondary writes them
//! ([`SecondarySession::accept_grant`], [`SecondarySession::write_at`]) paced
//! by the client's receive window. The client reads one ordered stream. What a
//! dead secondary left missing comes back from [`Session::missing_from`], and
//! the primary writes it itself ([`SendStream::write_at`]).
//!
//! Logs go through `tracing`; counters and gauges through `metrics`, per
//! path (labels `side`, `path`: bytes sent, re-sent, acknowledged, received,
//! RTT, rate, in flight, state), per session (label `side`) and for events
//! (sessions, paths added, degraded, abandoned, re-created, refused joins,
//! protocol errors, multi-server counters); `docs/METRICS.md` lists every name
//! and unit. Per-stream and per-path figures come from the API:
//! [`SendStream::stats`], [`RecvStream::stats`], [`Session::path_stats`],
//! [`Session::paths`], [`Session::stats`] and [`Session::presentation_stats`].
//!
//! Backpressure reaches the sending application: [`SendStream::backpressure`]
//! says whether the receiver holds the stream (or the whole session) back,
//! why ([`BackpressureReason`]: slow reader, head-of-line gap, session window,
//! manual) and for how long, and [`Session::backpressure_events`] reports
//! each signal's start and end. The receiving application can hold a stream
//! or the session by hand ([`RecvStream::hold`], [`Session::hold`]). The
//! reasons travel in protocol version 2 ([`ProtocolVersion`]); sessions with
//! peers of version 1 negotiate down and keep working.
//!
//! A path that dies while another lives is re-created by the client over the
//! same addresses, with backoff ([`PathRecreation`], [`PathEvent::Recreated`]).
//!
//! A server and a client in one process, on loopback, with a second path:
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tokio::io::AsyncWriteExt;
//! // A self-signed server certificate that the client trusts (verification stays on).
//! let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
//! let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
//! let server_config = kwik::ServerConfig::with_single_cert(vec![cert.cert.der().clone()], key)?;
//! let server = kwik::Endpoint::server("127.0.0.1:0".parse()?, server_config)?;
//! let client_config = kwik::ClientConfig::with_root_certificates([cert.cert.der().clone()])?;
//! let client = kwik::Endpoint::client("127.0.0.1:0".parse()?, client_config)?;
//!
//! let session = client.connect(server.local_addr()?, "localhost").await?;
//! let accepted = server.accept().await.expect("a session");
//! // A second uplink: another local socket, same server, same session.
//! let path = session.add_path(kwik::PathSpec::local("127.0.0.1:0".parse()?)).await?;
//! assert_eq!(path, kwik::PathId::new(1));
//!
//! let mut stream = session.open_uni().await?;
//! stream.write_all(b"hello over two paths").await?;
//! stream.finish()?;
//! let mut incoming = accepted.accept_uni().await?;
//! assert_eq!(incoming.read_to_end(1024).await?, b"hello over two paths");
//! stream.finished().await?; // acknowledged: safe to close
//! session.close(0, b"done");
//! assert!(matches!(accepted.closed().await, kwik::CloseReason::Peer { code: 0, .. }));
//! # Ok(()) }
//! ```

mod driver;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz;
mod proto;

pub use driver::endpoint::Endpoint;
pub use driver::error::{AddPathError, ConnectError, EndpointError};
pub use driver::multi_server::SecondaryPath;
pub use driver::quinn_config::{
    ClientConfig, DEFAULT_SERVER_SOCKET_BUFFER, ServerConfig, TlsConfigError,
};
pub use driver::recv_stream::RecvStream;
pub use driver::secondary::SecondarySession;
pub use driver::send_stream::SendStream;
pub use driver::session::{BackpressureEvents, PathEvents, PathInfo, PathSpec, Session};
pub use kwik_presentation::{
    BackpressureScope, Dir, PresentationConfig, PresentationStats, Side, StreamId,
};
pub use proto::config::{ALPN, ProtocolVersion, SecondaryJoins, SessionConfig};
pub use proto::error::{
    AddSecondaryError, CloseReason, DelegateError, PROTOCOL_ERROR_CODE, ProtocolError, ReadError,
    RelayError, RemovePathError, SecondaryWriteError, StreamError, WriteError,
};
pub use proto::ids::{PathId, SessionId};
pub use proto::multiserver::grant::{GRANT_LEN, Grant, GrantError};
pub use proto::multiserver::secondary::SecondaryStats;
pub use proto::multiserver::token::{TOKEN_LEN, TokenError, TokenIssuer, TokenKey};
pub use proto::peer_fault::{HANDSHAKE_TIMEOUT_CODE, JOIN_REFUSED_CODE, VERSION_REFUSED_CODE};
pub use proto::scheduler::Scheduler;
pub use proto::session::backpressure::{Backpressure, BackpressureEvent};
pub use proto::session::events::PathEvent;
pub use proto::session::paths::{PathState, PathStats};
pub use proto::session::recreate::PathRecreation;
pub use proto::session::recv::RecvStreamStats;
pub use proto::session::send::SendStreamStats;
pub use proto::session::stats::SessionStats;
pub use proto::wire::backpressure::BackpressureReason;
pub use proto::wire::frame::{
    AddPathOutcome, DecodeError, MAX_RELAY_LEN, PathStatus, RefuseReason,
};
pub use proto::wire::varint::VARINT_MAX;
