//! Error types of the core and of the session operations that do not touch
//! quinn, one per fallible operation. (Endpoint and connection errors, which
//! carry quinn's, are the driver's: `driver/error.rs`.)

use bytes::Bytes;

use kwik_presentation::StreamId;

use crate::proto::ids::PathId;
use crate::proto::multiserver::grant::GrantError;
use crate::proto::wire::frame::{DecodeError, RefuseReason};

/// Application close code a session uses when it ends on a protocol violation.
pub const PROTOCOL_ERROR_CODE: u64 = 0x1_0000;

/// QUIC application close code of a path abandoned while its session lives on.
pub(crate) const PATH_ABANDONED: u32 = 0x1_0001;

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// This side called `close`.
    #[error("closed locally with code {code}")]
    Local {
        /// Application code.
        code: u64,
        /// Reason bytes.
        reason: Bytes,
    },
    /// The peer sent CLOSE.
    #[error("closed by peer with code {code}: {}", String::from_utf8_lossy(reason))]
    Peer {
        /// Application code.
        code: u64,
        /// Reason bytes.
        reason: Bytes,
    },
    /// A protocol violation (by the peer, or a corrupt stream), with the
    /// phrase the connections were closed with: it names the class and the
    /// frame, e.g. `protocol violation (OPEN frame): unexpected OPEN frame`.
    #[error("{0}")]
    Protocol(String),
    /// Every path died.
    #[error("all paths lost")]
    AllPathsLost,
}

impl CloseReason {
    /// The QUIC application close (code, reason) that ends this session's
    /// connections: this side's code, or the protocol-error code.
    pub(crate) fn application_close(&self) -> (u32, Bytes) {
        match self {
            Self::Local { code, reason } => {
                ((*code).min(u64::from(u32::MAX)) as u32, reason.clone())
            }
            Self::Protocol(text) => (PROTOCOL_ERROR_CODE as u32, Bytes::from(text.clone())),
            _ => (0, Bytes::new()),
        }
    }
}

/// A protocol violation detected by the session core.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Bytes that are not a valid frame or segment.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Stream data refused by the receive side (credit, final size, ...).
    #[error(transparent)]
    Data(#[from] kwik_presentation::WriteError),
    /// A frame that is not allowed here (e.g. OPEN on an established path).
    #[error("unexpected {0} frame")]
    UnexpectedFrame(&'static str),
    /// Data or a frame for a stream the peer may not use that way.
    #[error("stream misuse: {0}")]
    StreamState(&'static str),
    /// The peer opened more streams than allowed.
    #[error("too many streams: {0}")]
    TooManyStreams(String),
    /// A GRANT frame from the primary that is malformed or has an empty range.
    #[error("bad grant: {0}")]
    Grant(GrantError),
    /// The primary sent more live grants for one secondary path than the
    /// client keeps.
    #[error("too many grants for {0}")]
    TooManyGrants(PathId),
    /// A secondary server sent stream data that no grant from the primary
    /// covers (wrong stream or range, expired grant, or a FIN): the path is
    /// closed, the session goes on.
    #[error("{path} wrote {length} bytes at {offset} of stream {stream} outside its grants")]
    OutsideGrant {
        /// The secondary path.
        path: PathId,
        /// The stream it wrote.
        stream: StreamId,
        /// Offset of the refused bytes.
        offset: u64,
        /// Their length.
        length: u64,
    },
}

/// Why writing to a stream failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The session ended.
    #[error("session closed: {0}")]
    SessionClosed(CloseReason),
    /// The peer asked us to stop sending (the stream was reset with that code).
    #[error("stopped by peer with code {error_code}")]
    Stopped {
        /// The peer's code.
        error_code: u64,
    },
    /// The stream was finished or reset locally.
    #[error("stream already finished or reset")]
    ClosedStream,
    /// A positioned write covers bytes this side already wrote (only holes —
    /// skipped or delegated ranges — can be written again).
    #[error("bytes at {offset} already written")]
    AlreadyWritten {
        /// Offset of the write.
        offset: u64,
    },
    /// A positioned write passes the stream's final size (or 2^62).
    #[error("write beyond the stream's final size")]
    BeyondFinalSize,
}

/// Why a primary server could not delegate a range of a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DelegateError {
    /// Only the primary server delegates.
    #[error("only the primary server delegates")]
    NotAServer,
    /// No secondary path with that id in this session.
    #[error("unknown secondary path {0}")]
    UnknownPath(PathId),
    /// Not a stream this side sends on (or it was reset or is complete).
    #[error("unknown stream {0}")]
    UnknownStream(StreamId),
    /// The range is empty or passes 2^62.
    #[error("empty range")]
    EmptyRange,
    /// Part of the range was already written by the primary.
    #[error("part of the range was already written")]
    AlreadyWritten,
    /// The range passes the stream's final size.
    #[error("range beyond the stream's final size")]
    BeyondFinalSize,
    /// The session ended.
    #[error("session closed: {0}")]
    SessionClosed(CloseReason),
}

/// Why a secondary server could not write stream data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecondaryWriteError {
    /// No grant of this path covers the bytes (refused locally, nothing sent).
    #[error("no grant covers {length} bytes at {offset} of stream {stream}")]
    OutsideGrant {
        /// The stream.
        stream: StreamId,
        /// Offset of the write.
        offset: u64,
        /// Its length.
        length: u64,
    },
    /// The grant that covered the bytes has expired.
    #[error("grant expired")]
    Expired,
    /// The path is closed.
    #[error("secondary path closed: {0}")]
    Closed(CloseReason),
}

/// Why reading a stream failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The peer reset the stream.
    #[error("reset by peer with code {error_code}")]
    Reset {
        /// The peer's code.
        error_code: u64,
    },
    /// The stream was stopped locally.
    #[error("stream stopped")]
    Stopped,
    /// The session ended before the stream was complete.
    #[error("session closed: {0}")]
    SessionClosed(CloseReason),
    /// The stream is unknown (already read to the end and released).
    #[error("unknown stream")]
    UnknownStream,
    /// `read_to_end` got more than its limit.
    #[error("stream longer than {limit} bytes")]
    TooLong {
        /// The limit.
        limit: usize,
    },
}

/// Why opening or accepting a stream failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The session ended.
    #[error("session closed: {0}")]
    SessionClosed(CloseReason),
    /// Too many streams are open on the receive side.
    #[error("too many open streams")]
    TooManyStreams,
}

/// Why removing a path failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemovePathError {
    /// No live path with that id.
    #[error("unknown or dead path {0}")]
    UnknownPath(PathId),
    /// It is the last live path (close the session instead).
    #[error("cannot remove the last path")]
    LastPath,
}

/// Why a primary server could not add a secondary path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddSecondaryError {
    /// Only the server that opened the session (the primary) adds secondaries.
    #[error("only the primary server adds secondary paths")]
    NotAServer,
    /// The session ended.
    #[error("session closed: {0}")]
    SessionClosed(CloseReason),
    /// The server name is longer than 255 bytes.
    #[error("server name too long")]
    InvalidServerName,
    /// The client could not make a QUIC connection to the secondary.
    #[error("secondary unreachable from the client")]
    Unreachable,
    /// The secondary refused the JOIN (e.g. it does not share the token key).
    #[error("secondary refused the join: {0:?}")]
    Refused(RefuseReason),
    /// No outcome in time (the client or the secondary did not answer).
    #[error("timed out")]
    TimedOut,
}

/// Why a relay message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// Only the primary server relays with `Session::relay` (a secondary uses
    /// `SecondarySession::relay`).
    #[error("only the primary server relays to secondaries")]
    NotAServer,
    /// No secondary path with that id in this session.
    #[error("unknown secondary path {0}")]
    UnknownPath(PathId),
    /// The payload is longer than `frame::MAX_RELAY_LEN`.
    #[error("relay payload of {0} bytes is too long")]
    TooLong(usize),
    /// The session (or the secondary path) ended.
    #[error("session closed: {0}")]
    SessionClosed(CloseReason),
}
