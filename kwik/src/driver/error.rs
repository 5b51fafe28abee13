//! Errors of the endpoint and of opening connections and paths: they carry
//! quinn's errors, so they belong to the driver.

use crate::driver::quinn_config::TlsConfigError;
use crate::proto::error::{CloseReason, ProtocolError};
use crate::proto::wire::frame::RefuseReason;

/// Why an endpoint could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// Binding the UDP socket failed.
    #[error("bind: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS configuration is unusable.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
}

/// Why `connect` (or joining a path) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// This endpoint has no client configuration.
    #[error("endpoint has no client configuration")]
    NotAClient,
    /// quinn refused to start the connection (bad server name, endpoint closed...).
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The QUIC handshake or the connection failed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing the control channel failed.
    #[error("control stream write: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading the control channel failed.
    #[error("control stream read: {0}")]
    Read(#[from] quinn::ReadError),
    /// The server closed the control channel before answering.
    #[error("server closed the control channel")]
    ControlClosed,
    /// The server refused.
    #[error("refused by server: {0:?}")]
    Refused(RefuseReason),
    /// The server answered with something unexpected.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// No answer in time.
    #[error("timed out")]
    TimedOut,
    /// Binding a local socket for a new path failed.
    #[error("bind: {0}")]
    Io(#[from] std::io::Error),
}

/// Why adding a path failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddPathError {
    /// Only the client adds paths to its sessions (in this version).
    #[error("only clients add paths")]
    NotAClient,
    /// The session ended.
    #[error("session closed: {0}")]
    SessionClosed(CloseReason),
    /// The session has the configured maximum number of paths.
    #[error("too many paths")]
    TooManyPaths,
    /// The server did not hand out a join token in time.
    #[error("no join token from server")]
    NoToken,
    /// Connecting or joining failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}
