//! Multi-server sessions, the driver's state (either side): the secondary
//! paths a session has, the primary's ADD_PATHs waiting for their outcome, the
//! relay queue, and the client's links to secondaries (their connection, frame
//! queue and [`Outbox`]). The tasks that use them are in `links.rs` (client),
//! `secondary.rs` (secondary) and the session's own methods (primary).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use quinn::VarInt;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::proto::error::PATH_ABANDONED;
use crate::proto::ids::PathId;
use crate::proto::multiserver::client::LinkOutbox;
use crate::proto::wire::frame::{AddPathOutcome, Frame};

/// Relay messages waiting for `accept_relay`, and frames waiting for a link's
/// control writer; beyond this a relayed message is dropped and counted.
pub(crate) const RELAY_QUEUE: usize = 256;

/// A queue of relayed messages: its sender and its (awaited) receiver.
pub(crate) type RelayQueue = (
    mpsc::Sender<(PathId, Bytes)>,
    tokio::sync::Mutex<mpsc::Receiver<(PathId, Bytes)>>,
);
/// How long `add_secondary` waits for the client's ADD_PATH_RESULT: the client
/// spends at most one handshake timeout connecting and one waiting for the answer.
pub(crate) const ADD_PATH_TIMEOUT: Duration = Duration::from_secs(25);

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
pub(crate) struct MultiServer {
    /// (Primary) ADD_PATHs waiting for their outcome.
    pub(crate) pending: Mutex<HashMap<PathId, oneshot::Sender<AddPathOutcome>>>,
    /// Joined secondary paths (primary and client).
    pub(crate) paths: Mutex<BTreeMap<PathId, SecondaryPath>>,
    /// (Client) the control channel of each secondary link.
    pub(crate) links: Mutex<HashMap<PathId, Link>>,
    /// (Primary) relayed messages from secondaries.
    /// (Primary) secondaries' relayed messages for `accept_relay`, created
    /// on first use (most sessions never relay; the queue's first block is
    /// ~1.5 KiB).
    relays: OnceLock<RelayQueue>,
    pub(crate) next: AtomicU64,
    pub(crate) relays_dropped: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) conn: quinn::Connection,
    pub(crate) frames: mpsc::Sender<Frame>,
    pub(crate) outbox: Arc<Outbox>,
}

/// (Client) What the session owes one secondary besides relays (see
/// [`LinkOutbox`]), and the signal for the link's control writer.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) pending: Mutex<LinkOutbox>,
    pub(crate) notify: Notify,
}

impl Outbox {
    pub(crate) fn push(&self, frame: Frame) {
        if self.pending.lock().push(frame) {
            self.notify.notify_one();
        }
    }

    pub(crate) fn drain_into(&self, buf: &mut BytesMut) {
        self.pending.lock().drain_into(buf);
    }
}

impl MultiServer {
    pub(crate) fn new() -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            paths: Mutex::new(BTreeMap::new()),
            links: Mutex::new(HashMap::new()),
            relays: OnceLock::new(),
            next: AtomicU64::new(0),
            relays_dropped: AtomicU64::new(0),
        }
    }

    /// The relay queue (created on first use).
    pub(crate) fn relays(&self) -> &RelayQueue {
        self.relays.get_or_init(|| {
            let (tx, rx) = mpsc::channel(RELAY_QUEUE);
            (tx, tokio::sync::Mutex::new(rx))
        })
    }

    /// The session ended: waiting `add_secondary` calls fail, links close.
    pub(crate) fn on_closed(&self, code: u32, reason: &[u8]) {
        self.pending.lock().clear();
        for (_, link) in self.links.lock().drain() {
            link.conn.close(VarInt::from_u32(code), reason);
        }
        self.paths.lock().clear();
    }

    /// (Primary) the client reported an ADD_PATH's outcome.
    pub(crate) fn on_add_path_result(&self, path: PathId, outcome: AddPathOutcome) {
        if let Some(tx) = self.pending.lock().remove(&path) {
            let _ = tx.send(outcome);
        }
    }

    /// (Primary) a relayed message from the secondary on `path`.
    pub(crate) fn on_relay_received(&self, path: PathId, payload: Bytes) {
        if !self.paths.lock().contains_key(&path)
            || self.relays().0.try_send((path, payload)).is_err()
        {
            self.relays_dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("kwik_relays_dropped_total").increment(1);
        }
    }

    /// (Client) the primary relays `payload` to the secondary on `path`.
    pub(crate) fn on_relay_forward(&self, path: PathId, payload: Bytes) {
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
    pub(crate) fn to_link(&self, path: PathId, frame: Frame) {
        if let Some(link) = self.links.lock().get(&path) {
            link.outbox.push(frame);
        }
    }

    /// Forgets a secondary path; closes the client's link to it. True if it was
    /// known.
    pub(crate) fn forget(&self, path: PathId) -> bool {
        if let Some(link) = self.links.lock().remove(&path) {
            link.conn
                .close(VarInt::from_u32(PATH_ABANDONED), b"secondary path removed");
        }
        self.paths.lock().remove(&path).is_some()
    }
}
