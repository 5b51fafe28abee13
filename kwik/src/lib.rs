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
//! The crate is split the way quinn is: a sans-IO core (frames and codec, session
//! and path state, retention, scheduling; it takes `now` and hands back frames,
//! data and deadlines) driven by deterministic tests, and one tokio/quinn driver
//! module behind [`Endpoint`], [`Session`], [`SendStream`] and [`RecvStream`].
//! The wire protocol is specified in `docs/PROTOCOL.md`.
//!
//! ```no_run
//! # async fn demo(root: rustls_pki_types::CertificateDer<'static>) -> Result<(), Box<dyn std::error::Error>> {
//! use tokio::io::AsyncWriteExt;
//! let config = kwik::ClientConfig::with_root_certificates([root])?;
//! let endpoint = kwik::Endpoint::client("127.0.0.1:0".parse()?, config)?;
//! let session = endpoint.connect("127.0.0.1:4433".parse()?, "localhost").await?;
//! // A second uplink: another local address, same server.
//! session.add_path(kwik::PathSpec::local("127.0.0.2:0".parse()?)).await?;
//! let mut stream = session.open_uni().await?;
//! stream.write_all(b"hello over two paths").await?;
//! stream.finish()?;
//! # Ok(()) }
//! ```

mod config;
mod driver;
mod error;
pub mod frame;
mod ids;
mod path;
mod retention;
mod scheduler;
pub mod segment;
mod state;
mod token;
mod varint;

#[cfg(test)]
mod sim;

pub use config::{ALPN, ClientConfig, ServerConfig, SessionConfig, TlsConfigError};
pub use driver::{Endpoint, PathInfo, PathSpec, RecvStream, SendStream, Session};
pub use error::{
    AddPathError, CloseReason, ConnectError, EndpointError, ProtocolError, ReadError,
    RemovePathError, StreamError, WriteError,
};
pub use frame::{DecodeError, PathStatus, RefuseReason};
pub use ids::{PathId, SessionId};
pub use kwik_presentation::{Dir, PresentationConfig, PresentationStats, Side, StreamId};
pub use path::{PathState, PathStats};
pub use scheduler::Scheduler;
pub use state::{PathEvent, SessionStats};
pub use token::{TOKEN_LEN, TokenError, TokenIssuer, TokenKey};
pub use varint::VARINT_MAX;

/// Application close code a session uses when it ends on a protocol violation.
pub const PROTOCOL_ERROR_CODE: u64 = 0x1_0000;
