//! The session's decisions about its paths: joins, failures, removal, status
//! changes, and (client) the re-creation of paths that died. Path state
//! itself lives in [`paths`](super::paths); the backoff schedule in
//! [`recreate`](super::recreate).

use std::time::Instant;

use bytes::Bytes;

use super::SessionState;
use super::events::{Event, PathEvent};
use super::paths::PathStats;
use super::recreate::Retry;
use crate::proto::error::{CloseReason, PATH_ABANDONED, RemovePathError};
use crate::proto::ids::{PathId, SECONDARY_PATH_BASE};
use crate::proto::wire::frame::{Frame, PathStatus};
use kwik_presentation::Side;

/// Why a path is abandoned: a failure may be repaired by re-creating the
/// path, a removal is what one side wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Abandon {
    /// Missed pongs, a QUIC error or idle timeout, a corrupt stream.
    Failed,
    /// `remove_path` here, or PATH_ABANDON from the peer.
    Removed,
}

impl SessionState {
    /// A fresh path id for a path this side is about to add.
    pub(crate) fn allocate_path_id(&mut self) -> PathId {
        self.paths.allocate_id()
    }

    pub(crate) fn live_paths(&self) -> usize {
        self.paths.live()
    }

    pub(crate) fn has_path(&self, id: PathId) -> bool {
        self.paths.contains(id)
    }

    /// The status of a path (dead ones keep their last status).
    pub(crate) fn path_status(&self, id: PathId) -> Option<PathStatus> {
        self.paths.status(id)
    }

    /// A path joined. Its first ping goes out at once.
    pub(crate) fn add_path(&mut self, id: PathId, status: PathStatus, now: Instant) {
        if !self.paths.insert(id, status, now) {
            return;
        }
        // Queued now rather than at the timer's next tick, so it can leave
        // with the path's first frames.
        self.paths.ping_now(
            id,
            now,
            self.config.ping_interval,
            self.config.idle_ping_cap(),
        );
        self.stats.paths_added += 1;
        self.events.push_back(Event::Path(PathEvent::Added(id)));
        if id != PathId::INITIAL {
            // Make sure the new path learns the current credits even if the frames
            // that carried them travel elsewhere.
            self.resync();
        }
    }

    pub(crate) fn path_stats(&self) -> Vec<PathStats> {
        self.paths.stats()
    }

    /// The driver saw the path's QUIC connection fail (error or idle timeout).
    pub(crate) fn path_failed(&mut self, id: PathId, now: Instant) {
        self.abandon_path(id, Abandon::Failed, now);
    }

    /// The QUIC connection of `path` ended, with the peer's application close
    /// (code, reason) if it closed that way. A code other than the one of an
    /// abandoned path means the peer closed the session (its CLOSE may still
    /// be in flight); anything else is a failed path.
    pub(crate) fn connection_lost(
        &mut self,
        path: PathId,
        application_close: Option<(u64, Bytes)>,
        now: Instant,
    ) {
        match application_close {
            Some((code, reason)) if code != u64::from(PATH_ABANDONED) => {
                self.close_with(CloseReason::Peer { code, reason });
            }
            _ => self.path_failed(path, now),
        }
    }

    /// The application removes a live path (not the last): the peer is told,
    /// the path is abandoned, and it is not re-created.
    pub(crate) fn remove_path(&mut self, id: PathId, now: Instant) -> Result<(), RemovePathError> {
        if !self.paths.is_live(id) {
            return Err(RemovePathError::UnknownPath(id));
        }
        if self.paths.live() < 2 {
            return Err(RemovePathError::LastPath);
        }
        self.paths
            .broadcast(Frame::PathAbandon { path: id }, Some(id));
        self.abandon_path(id, Abandon::Removed, now);
        Ok(())
    }

    /// Sets (or clears) the weight `Aggregate` gives a live path on this
    /// side (local: the peer's sending is its own). False for a dead path.
    pub(crate) fn set_path_weight(&mut self, id: PathId, weight: Option<u32>) -> bool {
        self.paths.set_weight(id, weight)
    }

    /// The weight of a path (dead ones keep theirs).
    pub(crate) fn path_weight(&self, id: PathId) -> Option<u32> {
        self.paths.weight(id)
    }

    /// Changes a path's status locally and tells the peer.
    pub(crate) fn set_path_status(&mut self, id: PathId, status: PathStatus) -> bool {
        let Some(changed) = self.paths.set_status(id, status) else {
            return false;
        };
        if changed {
            self.events
                .push_back(Event::Path(PathEvent::status(id, status)));
        }
        self.paths
            .broadcast(Frame::PathStatus { path: id, status }, None);
        true
    }

    pub(super) fn abandon_path(&mut self, id: PathId, why: Abandon, now: Instant) {
        if why == Abandon::Removed && self.recreate.cancel(id) {
            // The peer removed a path we were about to bring back.
            self.events.push_back(Event::Path(PathEvent::GaveUp(id)));
        }
        if !self.paths.abandon(id) {
            return;
        }
        self.stats.paths_abandoned += 1;
        self.events.push_back(Event::Path(PathEvent::Abandoned(id)));
        self.events.push_back(Event::ClosePath(id));
        self.send.path_lost(id);
        if self.paths.live() == 0 {
            self.close_with(CloseReason::AllPathsLost);
            return;
        }
        if why == Abandon::Failed
            && self.side == Side::Client
            && id.into_inner() < SECONDARY_PATH_BASE
            && self.closed.is_none()
        {
            self.recreate.start(id, now);
        }
        self.resync();
    }

    /// Re-sends what the peer must know (credits, acknowledgements) on the best
    /// path: frames that travelled on a dead path may be lost.
    pub(super) fn resync(&mut self) {
        if self.paths.best().is_none() {
            return;
        }
        let mut frames = Vec::new();
        self.recv.credit_frames(&mut frames);
        // A held scope's credit stays where the hold froze it.
        for f in &mut frames {
            *f = self
                .holds
                .clamp(std::mem::replace(f, Frame::Ping { seq: 0 }));
        }
        // Grants travel once; one lost with its path is sent again (the client
        // ignores copies of grants it holds).
        self.send.grant_frames(&mut frames);
        self.recv.retired_frames(&mut frames);
        self.paths.queue_frames(frames);
    }

    /// Starts the re-creation dials due at `now` (from `handle_timeout`).
    pub(super) fn start_due_dials(&mut self, now: Instant) {
        for (path, attempt) in self.recreate.due(now) {
            self.stats.recreate_attempts += 1;
            self.events
                .push_back(Event::Path(PathEvent::Recreating { path, attempt }));
            self.events.push_back(Event::Dial(path));
        }
    }

    /// (Client) The dial that re-creates `old` failed: another attempt is
    /// scheduled, or the path is given up.
    pub(crate) fn recreate_failed(&mut self, old: PathId, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        if self.recreate.failed(old, now) == Retry::GaveUp {
            self.stats.paths_given_up += 1;
            self.events.push_back(Event::Path(PathEvent::GaveUp(old)));
        }
    }

    /// (Client) `new` joined in place of the dead path `old`. False if `old`
    /// was no longer being re-created (the caller removes `new` again).
    pub(crate) fn recreated(&mut self, old: PathId, new: PathId) -> bool {
        if !self.recreate.succeeded(old) {
            return false;
        }
        self.stats.paths_recreated += 1;
        self.events
            .push_back(Event::Path(PathEvent::Recreated { old, new }));
        true
    }

    /// Whether the dead path `old` is being re-created.
    pub(crate) fn is_recreating(&self, old: PathId) -> bool {
        self.recreate.contains(old)
    }

    /// Queues `frame` on the best live path.
    pub(crate) fn queue_frame(&mut self, frame: Frame) {
        self.paths.queue_frame(frame);
    }
}
