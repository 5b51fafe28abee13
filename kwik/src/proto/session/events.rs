//! What the session core reports: path events for the application, and the
//! events its driver acts on (wake-ups, connections to close, multi-server
//! requests).

use bytes::Bytes;
use kwik_presentation::{Dir, StreamId};

use super::backpressure::BackpressureEvent;
use crate::proto::ids::PathId;
use crate::proto::wire::frame::{AddPathOutcome, Frame, PathStatus};

/// Something that happened to a path, as the application sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathEvent {
    /// A path joined the session.
    Added(PathId),
    /// The first pong came back (or a degraded path recovered).
    Validated(PathId),
    /// A pong is overdue.
    Degraded(PathId),
    /// The path is now a backup path.
    Backup(PathId),
    /// The path is now an available (non-backup) path.
    Available(PathId),
    /// The path is dead or removed; its unacknowledged data went to other paths.
    Abandoned(PathId),
    /// (Client) A dial to bring back the dead path `path` starts (attempt
    /// counts from 1). See [`PathRecreation`](crate::PathRecreation).
    Recreating {
        /// The dead path.
        path: PathId,
        /// Which attempt this is.
        attempt: u32,
    },
    /// (Client) The dead path `old` is back: `new` joined over the same
    /// local and remote addresses and carries traffic from now on.
    Recreated {
        /// The dead path (it keeps its counters).
        old: PathId,
        /// The path that replaces it.
        new: PathId,
    },
    /// (Client) The dead path is not re-created: its attempts are spent, or
    /// the peer removed it meanwhile.
    GaveUp(PathId),
    /// (Primary server) A grant delegated to this secondary path expired (and
    /// the client's grace period after it passed) with bytes still missing:
    /// reclaim them (`Session::missing_from`).
    GrantExpired(PathId),
}

impl PathEvent {
    /// The event for a path whose status became `status`.
    pub(crate) fn status(id: PathId, status: PathStatus) -> Self {
        match status {
            PathStatus::Backup => Self::Backup(id),
            _ => Self::Available(id),
        }
    }
}

/// What the driver must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A peer-opened stream of this direction can be accepted.
    Incoming(Dir),
    /// Tell the application.
    Path(PathEvent),
    /// Tell the application: the peer's backpressure started or ended.
    Backpressure(BackpressureEvent),
    /// Close the QUIC connection of this path.
    ClosePath(PathId),
    /// (Client) Dial a replacement of this dead path over its addresses and
    /// report with `recreated` or `recreate_failed`.
    Dial(PathId),
    /// Credit grew or a stream changed state: wake blocked writers.
    Writable,
    /// The blocked reader of this stream may read now (data, its end, a reset,
    /// a stop or its removal arrived): wake it.
    Readable(StreamId),
    /// Control frames were queued by a call that wakes no path task by itself
    /// (a read that released credit): wake the control writers.
    Transmit,
    /// (Server) the peer asks for a join token for this path.
    TokenRequested(PathId),
    /// (Client) the server handed out a join token.
    TokenReceived(PathId, Bytes),
    /// The session ended (see `SessionState::close_reason`).
    Closed,
    /// (Client) the primary asks us to join a secondary server as `path`.
    AddPathRequested {
        path: PathId,
        addr: std::net::SocketAddr,
        server_name: Bytes,
        token: Bytes,
    },
    /// (Primary server) the client reports what became of an ADD_PATH.
    AddPathResult(PathId, AddPathOutcome),
    /// (Client) the primary relays a message to the secondary on this path.
    RelayForward(PathId, Bytes),
    /// (Primary server) a secondary's message, forwarded by the client.
    RelayReceived(PathId, Bytes),
    /// The peer abandoned a secondary path (primary: the client lost it;
    /// client: the primary removed it).
    SecondaryAbandoned(PathId),
    /// (Client) a frame for the secondary on this path (a forwarded grant, the
    /// credit and acknowledgements of the streams it holds grants for).
    ToSecondary(PathId, Frame),
}
