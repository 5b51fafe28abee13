//! The sans-IO session core: paths, send-side retention and scheduling, the
//! receive side's acknowledgements, liveness and control frames. It never touches
//! a socket or a clock: callers pass `now`, feed frames and pieces in, and pull
//! frames and data out per path ([`SessionState::poll_control`],
//! [`SessionState::poll_data`]) and the next deadline.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kwik_presentation::{
    BackpressureScope, BackpressureState, Dir, OpenError, Presentation, PresentationEvent, Side,
    StreamId,
};

use crate::config::SessionConfig;
use crate::error::{CloseReason, DelegateError, ProtocolError, WriteError};
use crate::frame::{AddPathOutcome, Frame, PathStatus};
use crate::grant::{Grant, GrantSet};
use crate::ids::{PathId, SessionId};
use crate::path::{Path, PathState, PathStats};
use crate::retention::{PositionError, SendBuffer};
use crate::scheduler::{self, PathView, Scheduler};
use crate::segment::Piece;
use crate::token::TokenKey;

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
    /// (Primary server) A grant delegated to this secondary path expired (and
    /// the client's grace period after it passed) with bytes still missing:
    /// reclaim them (`Session::missing_from`).
    GrantExpired(PathId),
}

/// Session-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Bytes the application wrote.
    pub bytes_written: u64,
    /// Payload bytes handed to paths (first sends, redundant copies and re-sends).
    pub bytes_sent: u64,
    /// Of `bytes_sent`, re-sends of dead paths' data.
    pub bytes_resent: u64,
    /// Bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// Payload bytes received from the peer (duplicates included).
    pub bytes_received: u64,
    /// Bytes written and not yet acknowledged (retained for re-sending).
    pub bytes_retained: u64,
    /// Paths that joined.
    pub paths_added: u64,
    /// Paths abandoned.
    pub paths_abandoned: u64,
    /// Streams opened locally.
    pub streams_opened: u64,
    /// Streams opened by the peer.
    pub streams_accepted: u64,
    /// Late segments for streams already released, and segments from a
    /// secondary for bytes the client held already after their grant was spent
    /// (ignored, nothing buffered).
    pub late_segments: u64,
    /// Backpressure signals received from the peer.
    pub backpressure_signals: u64,
    /// (Client) payload bytes received from secondary servers inside their
    /// grants (duplicates included).
    pub bytes_from_secondaries: u64,
    /// (Client) data segments from secondary servers refused because no grant
    /// the primary sent covers them (wrong stream or range, expired); each one
    /// closed the secondary's path and none of its bytes was buffered.
    pub segments_outside_grant: u64,
    /// (Primary server) ranges delegated to secondary servers.
    pub grants_issued: u64,
}

/// What the driver must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A peer-opened stream of this direction can be accepted.
    Incoming(Dir),
    /// Tell the application.
    Path(PathEvent),
    /// Close the QUIC connection of this path.
    ClosePath(PathId),
    /// Credit grew or a stream changed state: wake blocked writers.
    Writable,
    /// (Server) the peer asks for a join token for this path.
    TokenRequested(PathId),
    /// (Client) the server handed out a join token.
    TokenReceived(PathId, Bytes),
    /// The session ended (see [`SessionState::close_reason`]).
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

/// Path ids the primary assigns to secondary paths start here, so they never
/// collide with the ids a client picks for its own paths (counted from 1).
pub(crate) const SECONDARY_PATH_BASE: u64 = 1 << 32;

/// (Client) how long after its expiry a grant still admits a secondary's
/// segments: data in flight when the grant lapsed, and the skew between the
/// primary's clock (which set the expiry) and the client's.
pub(crate) const GRANT_GRACE_MS: u64 = 2_000;

/// (Client) most live grants one secondary path may hold (grants leave when
/// their range has arrived or they expired). Outstanding grants are bounded by
/// the session window anyway: the primary reserves credit for each.
pub(crate) const MAX_GRANTS_PER_PATH: usize = 16384;

/// One chunk of stream data for a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DataTransmit {
    pub(crate) stream: StreamId,
    pub(crate) offset: u64,
    pub(crate) data: Bytes,
    pub(crate) fin: bool,
}

#[derive(Debug, Default)]
struct RecvState {
    unacked: u64,
    fin: bool,
}

/// Streams whose reader finished; acknowledged again after a path loss.
const RETIRED_ACKS: usize = 256;

/// The state of one session (one side).
#[derive(Debug)]
pub(crate) struct SessionState {
    id: SessionId,
    side: Side,
    config: SessionConfig,
    presentation: Arc<Presentation>,
    paths: BTreeMap<PathId, Path>,
    send: HashMap<StreamId, SendBuffer>,
    order: VecDeque<StreamId>,
    recv: HashMap<StreamId, RecvState>,
    retired: VecDeque<(StreamId, u64)>,
    peer_max_data: u64,
    peer_stream_credit: u64,
    written_total: u64,
    next_index: [u64; 2],
    resend: VecDeque<(StreamId, u64)>,
    ack_deadline: Option<Instant>,
    incoming: [VecDeque<StreamId>; 2],
    events: VecDeque<Event>,
    closed: Option<CloseReason>,
    stats: SessionStats,
    next_path: u64,
    /// Stop-sending codes for streams the peer stopped.
    stopped: HashMap<StreamId, u64>,
    /// Positioned writes behind a stream's send cursor, to schedule.
    fill: VecDeque<(StreamId, u64)>,
    /// (Client) live secondary links.
    links: BTreeSet<PathId>,
    /// (Client) grants the primary sent, by secondary path.
    grants: BTreeMap<PathId, GrantSet>,
    /// An instant and the Unix time in milliseconds at that instant (given
    /// by the driver): grant expiries are wall-clock times.
    wall: (Instant, u64),
}

fn dir_index(dir: Dir) -> usize {
    match dir {
        Dir::Bi => 0,
        Dir::Uni => 1,
    }
}

impl SessionState {
    /// A session whose first path is `PathId::INITIAL`. `peer_max_data` and
    /// `peer_stream_credit` come from the peer's OPEN or WELCOME.
    pub(crate) fn new(
        id: SessionId,
        side: Side,
        config: SessionConfig,
        presentation: Arc<Presentation>,
        peer_max_data: u64,
        peer_stream_credit: u64,
        now: Instant,
    ) -> Self {
        let mut s = Self {
            id,
            side,
            config,
            presentation,
            paths: BTreeMap::new(),
            send: HashMap::new(),
            order: VecDeque::new(),
            recv: HashMap::new(),
            retired: VecDeque::new(),
            peer_max_data,
            peer_stream_credit,
            written_total: 0,
            next_index: [0, 0],
            resend: VecDeque::new(),
            ack_deadline: None,
            incoming: [VecDeque::new(), VecDeque::new()],
            events: VecDeque::new(),
            closed: None,
            stats: SessionStats::default(),
            next_path: 1,
            stopped: HashMap::new(),
            fill: VecDeque::new(),
            links: BTreeSet::new(),
            grants: BTreeMap::new(),
            wall: (now, 0),
        };
        s.add_path(PathId::INITIAL, PathStatus::Available, now);
        s
    }

    pub(crate) fn id(&self) -> SessionId {
        self.id
    }

    pub(crate) fn side(&self) -> Side {
        self.side
    }

    pub(crate) fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Anchors wall-clock time: `unix_ms` is the Unix time at `now`.
    pub(crate) fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.wall = (now, unix_ms);
    }

    /// Unix milliseconds at `now`, from the last anchor.
    fn wall_ms(&self, now: Instant) -> u64 {
        let (at, ms) = self.wall;
        if now >= at {
            ms.saturating_add(now.duration_since(at).as_millis() as u64)
        } else {
            ms.saturating_sub(at.duration_since(now).as_millis() as u64)
        }
    }

    // ----- paths -----

    /// A fresh path id for a path this side is about to add.
    pub(crate) fn allocate_path_id(&mut self) -> PathId {
        let id = PathId::new(self.next_path);
        self.next_path += 1;
        id
    }

    pub(crate) fn live_paths(&self) -> usize {
        self.paths.values().filter(|p| p.is_alive()).count()
    }

    pub(crate) fn has_path(&self, id: PathId) -> bool {
        self.paths.contains_key(&id)
    }

    /// A path joined. Its first ping goes out at once.
    pub(crate) fn add_path(&mut self, id: PathId, status: PathStatus, now: Instant) {
        if self.paths.contains_key(&id) {
            return;
        }
        self.next_path = self.next_path.max(id.into_inner() + 1);
        self.paths.insert(id, Path::new(id, status, now));
        self.stats.paths_added += 1;
        self.events.push_back(Event::Path(PathEvent::Added(id)));
        if id != PathId::INITIAL {
            // Make sure the new path learns the current credits even if the frames
            // that carried them travel elsewhere.
            self.resync(now);
        }
    }

    pub(crate) fn path_stats(&self) -> Vec<PathStats> {
        self.paths.values().map(Path::stats).collect()
    }

    /// The driver saw the path's QUIC connection fail (error or idle timeout).
    pub(crate) fn path_failed(&mut self, id: PathId, now: Instant) {
        self.abandon_path(id, now);
    }

    /// The application removes a path: the peer is told, the path is abandoned.
    pub(crate) fn remove_path(&mut self, id: PathId, now: Instant) -> bool {
        if !self.paths.get(&id).is_some_and(Path::is_alive) || self.live_paths() < 2 {
            return false;
        }
        self.broadcast(Frame::PathAbandon { path: id }, Some(id));
        self.abandon_path(id, now);
        true
    }

    /// Changes a path's status locally and tells the peer.
    pub(crate) fn set_path_status(&mut self, id: PathId, status: PathStatus) -> bool {
        let Some(path) = self.paths.get_mut(&id).filter(|p| p.is_alive()) else {
            return false;
        };
        if path.status != status {
            path.status = status;
            self.events.push_back(Event::Path(match status {
                PathStatus::Backup => PathEvent::Backup(id),
                _ => PathEvent::Available(id),
            }));
        }
        self.broadcast(Frame::PathStatus { path: id, status }, None);
        self.wake_paths();
        true
    }

    fn abandon_path(&mut self, id: PathId, now: Instant) {
        let Some(path) = self.paths.get_mut(&id) else {
            return;
        };
        if !path.is_alive() {
            return;
        }
        path.state = PathState::Abandoned;
        path.inflight = 0;
        path.control.clear();
        self.stats.paths_abandoned += 1;
        self.events.push_back(Event::Path(PathEvent::Abandoned(id)));
        self.events.push_back(Event::ClosePath(id));
        for (stream, buf) in &mut self.send {
            for key in buf.path_lost(id) {
                self.resend.push_back((*stream, key));
            }
        }
        if self.live_paths() == 0 {
            self.close_with(CloseReason::AllPathsLost);
            return;
        }
        self.resync(now);
    }

    /// Re-sends what the peer must know (credits, acknowledgements) on the best
    /// path: frames that travelled on a dead path may be lost.
    fn resync(&mut self, now: Instant) {
        let _ = now;
        let Some(best) = self.best_path() else {
            return;
        };
        let mut frames = vec![Frame::SessionCredit {
            max_data: self.presentation.session_credit(),
        }];
        let mut ids: Vec<StreamId> = self.recv.keys().copied().collect();
        ids.sort();
        for id in ids {
            if let Some(max_offset) = self.presentation.stream_credit(id) {
                frames.push(Frame::StreamCredit {
                    stream: id,
                    max_offset,
                });
            }
            if let Some(f) = self.ack_frame(id) {
                frames.push(f);
            }
        }
        // Grants travel once; one lost with its path is sent again (the client
        // ignores copies of grants it holds).
        for buf in self.send.values() {
            for d in buf.delegations() {
                frames.push(Frame::Grant {
                    grant: d.signed.clone(),
                });
            }
        }
        for (stream, final_size) in &self.retired {
            let mut ranges = Vec::new();
            if *final_size > 0 {
                ranges.push(0..*final_size);
            }
            frames.push(Frame::Ack {
                stream: *stream,
                fin: true,
                ranges,
            });
        }
        if let Some(path) = self.paths.get_mut(&best) {
            path.control.extend(frames);
        }
    }

    /// Live path with the lowest RTT among the healthiest (for control frames).
    fn best_path(&self) -> Option<PathId> {
        self.paths
            .values()
            .filter(|p| p.is_alive())
            .min_by_key(|p| {
                (
                    p.state == PathState::Degraded,
                    p.srtt().unwrap_or(std::time::Duration::MAX),
                    p.id,
                )
            })
            .map(|p| p.id)
    }

    /// Queues `frame` on the best live path.
    pub(crate) fn queue_frame(&mut self, frame: Frame) {
        if let Some(best) = self.best_path() {
            if let Some(p) = self.paths.get_mut(&best) {
                p.control.push_back(frame);
            }
        }
    }

    /// Queues `frame` on every live path (except `skip`).
    fn broadcast(&mut self, frame: Frame, skip: Option<PathId>) {
        for p in self.paths.values_mut() {
            if p.is_alive() && Some(p.id) != skip {
                p.control.push_back(frame.clone());
            }
        }
    }

    /// Stream data moved: every path pings at the base interval again.
    fn mark_active(&mut self) {
        for p in self.paths.values_mut() {
            p.mark_active();
        }
    }

    fn wake_paths(&mut self) {
        // The driver notifies every path task after handling any call; nothing to
        // record here, kept as the single place to hook finer-grained wake-ups.
    }

    fn views(&self) -> Vec<PathView> {
        let (ceiling, ack_delay) = (self.config.path_window, self.config.ack_delay);
        self.paths
            .values()
            .filter(|p| p.is_alive())
            .map(|p| p.view(ceiling, ack_delay))
            .collect()
    }

    // ----- streams, send side -----

    /// Opens a local stream.
    pub(crate) fn open(
        &mut self,
        dir: Dir,
        policy: Option<Scheduler>,
    ) -> Result<StreamId, CloseReason> {
        if let Some(r) = &self.closed {
            return Err(r.clone());
        }
        let index = &mut self.next_index[dir_index(dir)];
        let id = StreamId::from_parts(*index, self.side, dir);
        *index += 1;
        if dir == Dir::Bi {
            // The receive half; a refused open only means the peer cannot answer
            // until streams are released, which the peer sees as missing credit.
            if self.presentation.open_stream(id).is_ok() {
                self.recv.insert(id, RecvState::default());
            }
        }
        self.insert_send(id, policy.unwrap_or(self.config.scheduler));
        self.stats.streams_opened += 1;
        Ok(id)
    }

    fn insert_send(&mut self, id: StreamId, policy: Scheduler) {
        self.send.insert(
            id,
            SendBuffer::new(policy, self.peer_stream_credit, self.config.max_segment),
        );
        self.order.push_back(id);
    }

    /// Bytes `stream` may accept now (0: blocked on credit).
    pub(crate) fn writable(&self, stream: StreamId) -> Result<u64, WriteError> {
        if let Some(r) = &self.closed {
            return Err(WriteError::SessionClosed(r.clone()));
        }
        if let Some(code) = self.stopped.get(&stream) {
            return Err(WriteError::Stopped { error_code: *code });
        }
        let buf = self.send.get(&stream).ok_or(WriteError::ClosedStream)?;
        if buf.is_finished() || buf.reset.is_some() {
            return Err(WriteError::ClosedStream);
        }
        let session_room = self.peer_max_data.saturating_sub(self.written_total);
        Ok(buf.stream_room().min(session_room))
    }

    /// Appends a copy of `data` (up to the credit). Returns bytes accepted.
    pub(crate) fn write_copy(
        &mut self,
        stream: StreamId,
        data: &[u8],
    ) -> Result<usize, WriteError> {
        let room = self.writable(stream)?;
        let n = (data.len() as u64).min(room) as usize;
        if n > 0 {
            // `writable` succeeded, so the stream exists.
            if let Some(buf) = self.send.get_mut(&stream) {
                buf.push_copy(&data[..n]);
            }
            self.written_total += n as u64;
            self.stats.bytes_written += n as u64;
        }
        Ok(n)
    }

    /// Appends `data` without copying (up to the credit). Returns what was not
    /// accepted (empty when everything was).
    pub(crate) fn write_bytes(
        &mut self,
        stream: StreamId,
        mut data: Bytes,
    ) -> Result<Bytes, WriteError> {
        let room = self.writable(stream)?;
        let n = (data.len() as u64).min(room) as usize;
        if n > 0 {
            let head = data.split_to(n);
            if let Some(buf) = self.send.get_mut(&stream) {
                buf.push_bytes(head);
            }
            self.written_total += n as u64;
            self.stats.bytes_written += n as u64;
        }
        Ok(data)
    }

    /// Changes the scheduling policy of a local send stream from its next chunk on.
    pub(crate) fn set_scheduler(
        &mut self,
        stream: StreamId,
        policy: Scheduler,
    ) -> Result<(), WriteError> {
        if let Some(r) = &self.closed {
            return Err(WriteError::SessionClosed(r.clone()));
        }
        let buf = self.send.get_mut(&stream).ok_or(WriteError::ClosedStream)?;
        if buf.reset.is_some() {
            return Err(WriteError::ClosedStream);
        }
        buf.set_policy(policy);
        Ok(())
    }

    /// Ends the stream after what was written.
    pub(crate) fn finish(&mut self, stream: StreamId) -> Result<(), WriteError> {
        if let Some(r) = &self.closed {
            return Err(WriteError::SessionClosed(r.clone()));
        }
        if let Some(code) = self.stopped.get(&stream) {
            return Err(WriteError::Stopped { error_code: *code });
        }
        let buf = self.send.get_mut(&stream).ok_or(WriteError::ClosedStream)?;
        if buf.is_finished() || buf.reset.is_some() {
            return Err(WriteError::ClosedStream);
        }
        buf.finish();
        Ok(())
    }

    /// Writes `data` at `offset` of `stream` (up to the credit): at or past the
    /// write offset (a jump leaves a hole), or into holes (bytes skipped or
    /// delegated, e.g. reclaimed from a dead secondary; allowed after
    /// `finish`). Returns what was not accepted.
    pub(crate) fn write_at(
        &mut self,
        stream: StreamId,
        offset: u64,
        mut data: Bytes,
    ) -> Result<Bytes, WriteError> {
        if let Some(r) = &self.closed {
            return Err(WriteError::SessionClosed(r.clone()));
        }
        if let Some(code) = self.stopped.get(&stream) {
            return Err(WriteError::Stopped { error_code: *code });
        }
        let session_room = self.peer_max_data.saturating_sub(self.written_total);
        let buf = self.send.get_mut(&stream).ok_or(WriteError::ClosedStream)?;
        if buf.reset.is_some() {
            return Err(WriteError::ClosedStream);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= crate::VARINT_MAX)
            .ok_or(WriteError::BeyondFinalSize)?;
        if data.is_empty() {
            return Ok(data);
        }
        buf.check_position(&(offset..end)).map_err(|e| match e {
            PositionError::AlreadyWritten => WriteError::AlreadyWritten { offset },
            PositionError::BeyondFinalSize => WriteError::BeyondFinalSize,
        })?;
        let limit = end
            .min(buf.max_offset())
            .min(buf.write_offset().saturating_add(session_room));
        if limit <= offset {
            return Ok(data);
        }
        let head = data.split_to((limit - offset) as usize);
        let n = head.len() as u64;
        let growth = buf.growth_to(limit);
        for key in buf.write_at(offset, head) {
            self.fill.push_back((stream, key));
        }
        self.written_total += growth;
        self.stats.bytes_written += n;
        Ok(data)
    }

    /// (Primary server) Leaves `range` of `stream` to the secondary on `path`:
    /// reserves session credit up to the range's end (the client counts the
    /// secondary's bytes against the same window), signs a grant under `key`
    /// that expires `grant_ttl` from `now`, and queues it for the client.
    /// `Ok(None)`: not enough session credit yet; call again when writable.
    pub(crate) fn delegate(
        &mut self,
        stream: StreamId,
        range: Range<u64>,
        path: PathId,
        key: &TokenKey,
        now: Instant,
    ) -> Result<Option<Grant>, DelegateError> {
        if let Some(r) = &self.closed {
            return Err(DelegateError::SessionClosed(r.clone()));
        }
        if range.is_empty() || range.end > crate::VARINT_MAX {
            return Err(DelegateError::EmptyRange);
        }
        let session_room = self.peer_max_data.saturating_sub(self.written_total);
        let expiry = self
            .wall_ms(now)
            .saturating_add(self.config.grant_ttl.as_millis() as u64);
        let buf = self
            .send
            .get_mut(&stream)
            .filter(|b| b.reset.is_none())
            .ok_or(DelegateError::UnknownStream(stream))?;
        buf.check_position(&range).map_err(|e| match e {
            PositionError::AlreadyWritten => DelegateError::AlreadyWritten,
            PositionError::BeyondFinalSize => DelegateError::BeyondFinalSize,
        })?;
        let growth = buf.growth_to(range.end);
        if growth > session_room {
            return Ok(None);
        }
        let grant = Grant::new(path, stream, range.clone(), expiry);
        let signed = grant.sign(key, self.id);
        buf.delegate(path, range, signed.clone(), expiry);
        self.written_total += growth;
        self.stats.grants_issued += 1;
        self.queue_frame(Frame::Grant { grant: signed });
        Ok(Some(grant))
    }

    /// The parts of `range` of `stream` that the peer has not acknowledged and
    /// that this side does not hold itself (skipped or delegated bytes). Empty
    /// for a stream that is complete (or unknown).
    pub(crate) fn missing(&self, stream: StreamId, range: &Range<u64>) -> Vec<Range<u64>> {
        self.send
            .get(&stream)
            .map(|b| b.missing(range))
            .unwrap_or_default()
    }

    /// The ranges delegated to `path` that the peer has not acknowledged.
    pub(crate) fn missing_from(&self, path: PathId) -> Vec<(StreamId, Range<u64>)> {
        let mut out: Vec<(StreamId, Range<u64>)> = self
            .send
            .iter()
            .flat_map(|(id, b)| b.missing_from(path).into_iter().map(|r| (*id, r)))
            .collect();
        out.sort_by_key(|(id, r)| (*id, r.start));
        out
    }

    /// Abandons the stream: retained data is dropped and the peer told.
    pub(crate) fn reset(&mut self, stream: StreamId, error_code: u64) -> Result<(), WriteError> {
        if let Some(r) = &self.closed {
            return Err(WriteError::SessionClosed(r.clone()));
        }
        let buf = self.send.get_mut(&stream).ok_or(WriteError::ClosedStream)?;
        if buf.reset.is_some() {
            return Err(WriteError::ClosedStream);
        }
        let final_size = buf.write_offset();
        let released = buf.abandon(error_code);
        self.release(&released, None);
        self.broadcast(
            Frame::ResetStream {
                stream,
                error_code,
                final_size,
            },
            None,
        );
        self.retire_send(stream);
        Ok(())
    }

    fn release(&mut self, released: &[(PathId, u64)], now: Option<Instant>) {
        for (p, len) in released {
            if let Some(path) = self.paths.get_mut(p) {
                match now {
                    Some(now) => path.on_delivered(*len, now),
                    None => path.inflight = path.inflight.saturating_sub(*len),
                }
            }
        }
    }

    fn retire_send(&mut self, stream: StreamId) {
        self.send.remove(&stream);
        self.order.retain(|s| *s != stream);
        for p in self.paths.values_mut() {
            if p.is_alive() {
                p.done_streams.push(stream);
            }
        }
        self.events.push_back(Event::Writable);
    }

    /// True while some stream still has data or a FIN the peer has not
    /// acknowledged.
    pub(crate) fn has_unacknowledged(&self) -> bool {
        self.send
            .values()
            .any(|b| b.reset.is_none() && (b.retained() > 0 || b.is_finished()))
    }

    /// Bytes of `stream` written but not yet acknowledged (None: stream done).
    pub(crate) fn retained(&self, stream: StreamId) -> Option<u64> {
        self.send.get(&stream).map(SendBuffer::retained)
    }

    /// Streams of this path whose data streams the driver may finish.
    pub(crate) fn take_done_streams(&mut self, path: PathId) -> Vec<StreamId> {
        self.paths
            .get_mut(&path)
            .map(|p| std::mem::take(&mut p.done_streams))
            .unwrap_or_default()
    }

    // ----- outgoing -----

    /// The next control frame for `path`.
    pub(crate) fn poll_control(&mut self, path: PathId) -> Option<Frame> {
        self.paths
            .get_mut(&path)
            .filter(|p| p.is_alive())?
            .control
            .pop_front()
    }

    /// The next chunk of stream data `path` should carry, if the scheduler gives it
    /// one now. Call again after any state change.
    pub(crate) fn poll_data(&mut self, path: PathId) -> Option<DataTransmit> {
        if self.closed.is_some() || !self.paths.get(&path).is_some_and(Path::is_alive) {
            return None;
        }
        let views = self.views();
        if scheduler::may_resend(path, &views) {
            while let Some((stream, key)) = self.resend.pop_front() {
                if let Some(out) = self
                    .send
                    .get_mut(&stream)
                    .and_then(|b| b.take_resend(key, path))
                {
                    return Some(self.account(path, stream, out, true));
                }
            }
        }
        for _ in 0..self.fill.len() {
            let Some((stream, key)) = self.fill.pop_front() else {
                break;
            };
            let Some(buf) = self.send.get_mut(&stream) else {
                continue;
            };
            if !scheduler::may_send(buf.policy, path, &views) {
                self.fill.push_back((stream, key));
                continue;
            }
            if let Some(out) = buf.take_resend(key, path) {
                return Some(self.account(path, stream, out, false));
            }
        }
        for _ in 0..self.order.len() {
            let Some(stream) = self.order.pop_front() else {
                break;
            };
            self.order.push_back(stream);
            let Some(buf) = self.send.get_mut(&stream) else {
                continue;
            };
            if !buf.has_new_data(path) || !scheduler::may_send(buf.policy, path, &views) {
                continue;
            }
            if let Some(out) = buf.take_new(path) {
                return Some(self.account(path, stream, out, false));
            }
        }
        None
    }

    fn account(
        &mut self,
        path: PathId,
        stream: StreamId,
        out: crate::retention::Outgoing,
        resend: bool,
    ) -> DataTransmit {
        let len = out.data.len() as u64;
        self.mark_active();
        if let Some(p) = self.paths.get_mut(&path) {
            p.inflight += len;
            p.bytes_sent += len;
            if resend {
                p.bytes_resent += len;
            }
        }
        self.stats.bytes_sent += len;
        if resend {
            self.stats.bytes_resent += len;
        }
        DataTransmit {
            stream,
            offset: out.offset,
            data: out.data,
            fin: out.fin,
        }
    }

    // ----- incoming -----

    /// Stream data that arrived on `path`.
    pub(crate) fn handle_piece(
        &mut self,
        path: PathId,
        piece: Piece,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        if self.closed.is_some() {
            return Ok(());
        }
        self.mark_active();
        if let Some(p) = self.paths.get_mut(&path) {
            p.bytes_received += piece.data.len() as u64;
        }
        self.stats.bytes_received += piece.data.len() as u64;
        self.receive(piece, now)
    }

    /// (Client) Stream data from the secondary on `path`: accepted only inside
    /// a grant the primary sent for that path (stream, range, expiry plus
    /// [`GRANT_GRACE_MS`]). An error is the secondary's fault: the caller
    /// closes that path; the session goes on and nothing of the piece was
    /// buffered.
    pub(crate) fn handle_secondary_piece(
        &mut self,
        path: PathId,
        piece: Piece,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        if self.closed.is_some() || !self.links.contains(&path) {
            return Ok(());
        }
        let len = piece.data.len() as u64;
        let now_ms = self.wall_ms(now);
        let covered = !piece.fin
            && self.grants.get(&path).is_some_and(|set| {
                set.covering(
                    path,
                    piece.stream,
                    piece.offset,
                    len,
                    now_ms,
                    GRANT_GRACE_MS,
                )
                .is_some()
            });
        if !covered && !piece.fin && self.holds(piece.stream, piece.offset..piece.offset + len) {
            // A spent grant's range written again (e.g. the primary reclaimed
            // it meanwhile): the client holds every byte already, so nothing
            // would be buffered. Dropped, not an error.
            self.stats.late_segments += 1;
            return Ok(());
        }
        if !covered {
            self.stats.segments_outside_grant += 1;
            return Err(ProtocolError::OutsideGrant {
                path,
                stream: piece.stream,
                offset: piece.offset,
                length: len,
            });
        }
        self.stats.bytes_received += len;
        self.stats.bytes_from_secondaries += len;
        self.receive(piece, now)
    }

    /// Whether the receive side holds every byte of `range` of `stream`.
    fn holds(&self, stream: StreamId, range: Range<u64>) -> bool {
        self.recv.contains_key(&stream)
            && self
                .presentation
                .received_ranges(stream)
                .is_some_and(|held| {
                    held.iter()
                        .any(|h| h.start <= range.start && range.end <= h.end)
                })
    }

    /// Makes sure the receive side knows `id`, opening a peer stream on first
    /// sight. `Ok(false)`: the stream was released already (late data).
    fn recv_stream(&mut self, id: StreamId) -> Result<bool, ProtocolError> {
        if self.recv.contains_key(&id) {
            return Ok(true);
        }
        if id.initiator() == self.side {
            if id.dir() == Dir::Uni {
                return Err(ProtocolError::StreamState(
                    "data on a locally opened uni stream",
                ));
            }
            if id.index() >= self.next_index[dir_index(Dir::Bi)] {
                return Err(ProtocolError::StreamState(
                    "data on an unopened local stream",
                ));
            }
            // A local bi stream whose receive half was released: late data.
            return Ok(false);
        }
        match self.presentation.open_stream(id) {
            Ok(_) => {
                self.recv.insert(id, RecvState::default());
                if id.dir() == Dir::Bi {
                    self.insert_send(id, self.config.scheduler);
                }
                self.incoming[dir_index(id.dir())].push_back(id);
                self.stats.streams_accepted += 1;
                self.events.push_back(Event::Incoming(id.dir()));
                Ok(true)
            }
            Err(OpenError::Closed(_)) => Ok(false),
            Err(e) => Err(ProtocolError::TooManyStreams(e.to_string())),
        }
    }

    fn receive(&mut self, piece: Piece, now: Instant) -> Result<(), ProtocolError> {
        let id = piece.stream;
        if !self.recv_stream(id)? {
            self.stats.late_segments += 1;
            return Ok(());
        }
        let len = piece.data.len() as u64;
        match self
            .presentation
            .write(id, piece.offset, piece.data, piece.fin, now)
        {
            Ok(_) => {}
            Err(kwik_presentation::WriteError::UnknownStream(_)) => {
                self.stats.late_segments += 1;
                return Ok(());
            }
            Err(e) => return Err(ProtocolError::Data(e)),
        }
        let Some(state) = self.recv.get_mut(&id) else {
            return Ok(());
        };
        state.unacked += len;
        if piece.fin {
            state.fin = true;
        }
        if piece.fin || state.unacked >= self.config.ack_threshold {
            self.queue_ack(id);
        } else {
            let due = now + self.config.ack_delay;
            self.ack_deadline = Some(self.ack_deadline.map_or(due, |d| d.min(due)));
        }
        Ok(())
    }

    /// (Client) A grant the primary sent: remembered for checking the
    /// secondary's data, and forwarded to the secondary with the stream's
    /// credit. The client does not hold the key: it trusts what arrives on the
    /// session's paths (authenticated by TLS with the primary); the secondary
    /// verifies the tag.
    fn on_grant(&mut self, signed: Bytes, now: Instant) -> Result<(), ProtocolError> {
        let grant = Grant::decode_unverified(&signed).map_err(ProtocolError::Grant)?;
        let path = grant.path;
        if path.into_inner() < SECONDARY_PATH_BASE {
            return Err(ProtocolError::StreamState("grant for a non-secondary path"));
        }
        if !self.links.contains(&path) {
            // The secondary is gone (or never joined): nobody to forward to.
            return Ok(());
        }
        let now_ms = self.wall_ms(now);
        let set = self.grants.entry(path).or_default();
        if set.len() >= MAX_GRANTS_PER_PATH {
            set.remove_expired(now_ms, GRANT_GRACE_MS);
            if set.len() >= MAX_GRANTS_PER_PATH {
                return Err(ProtocolError::TooManyGrants(path));
            }
        }
        let stream = grant.stream;
        // A grant may come before any byte of its stream: it opens it.
        if !self.recv_stream(stream)? || self.holds(stream, grant.range.clone()) {
            // Released, or every byte arrived already: nothing to write.
            return Ok(());
        }
        if !self.grants.entry(path).or_default().insert(grant) {
            // A copy re-sent after a path loss.
            return Ok(());
        }
        self.events
            .push_back(Event::ToSecondary(path, Frame::Grant { grant: signed }));
        if let Some(max_offset) = self.presentation.stream_credit(stream) {
            self.events.push_back(Event::ToSecondary(
                path,
                Frame::StreamCredit { stream, max_offset },
            ));
        }
        if let Some(ack) = self.ack_frame(stream) {
            self.events.push_back(Event::ToSecondary(path, ack));
        }
        Ok(())
    }

    /// Secondary paths holding a grant for `stream`.
    fn grant_holders(&self, stream: StreamId) -> Vec<PathId> {
        self.grants
            .iter()
            .filter(|(_, set)| set.has_stream(stream))
            .map(|(p, _)| *p)
            .collect()
    }

    /// (Client) A link to the secondary on `path` is up.
    pub(crate) fn secondary_joined(&mut self, path: PathId) {
        self.links.insert(path);
    }

    /// (Client) The link to the secondary on `path` ended: the primary gets
    /// the acknowledgements of the streams it held grants for (so it sees
    /// what is missing) and then PATH_ABANDON.
    pub(crate) fn secondary_lost(&mut self, path: PathId) {
        self.links.remove(&path);
        if let Some(set) = self.grants.remove(&path) {
            for s in set.streams() {
                self.queue_ack(s);
            }
        }
        self.queue_frame(Frame::PathAbandon { path });
    }

    fn ack_frame(&self, id: StreamId) -> Option<Frame> {
        let state = self.recv.get(&id)?;
        let mut ranges = self.presentation.received_ranges(id)?;
        ranges.truncate(crate::frame::MAX_ACK_RANGES);
        Some(Frame::Ack {
            stream: id,
            fin: state.fin,
            ranges,
        })
    }

    fn queue_ack(&mut self, id: StreamId) {
        let Some(frame) = self.ack_frame(id) else {
            return;
        };
        if let Some(state) = self.recv.get_mut(&id) {
            state.unacked = 0;
        }
        if let (false, Frame::Ack { ranges, .. }) = (self.grants.is_empty(), &frame) {
            for path in self.grant_holders(id) {
                self.events
                    .push_back(Event::ToSecondary(path, frame.clone()));
                // Grants whose bytes all arrived are done: the secondary heard
                // so with this ACK; nothing more is accepted under them.
                if let Some(set) = self.grants.get_mut(&path) {
                    set.remove_held(id, ranges);
                }
            }
        }
        if let Some(best) = self.best_path() {
            if let Some(p) = self.paths.get_mut(&best) {
                p.control.push_back(frame);
            }
        }
    }

    /// The next peer-opened stream of `dir` not yet accepted.
    pub(crate) fn accept(&mut self, dir: Dir) -> Option<StreamId> {
        self.incoming[dir_index(dir)].pop_front()
    }

    /// The application is done with the receive half of `stream` (read to the end,
    /// or gave up): it is released; late data is ignored.
    pub(crate) fn release_recv(&mut self, stream: StreamId, stop_code: Option<u64>) {
        if let Some(code) = stop_code {
            self.presentation.stop(stream);
            self.broadcast(
                Frame::StopSending {
                    stream,
                    error_code: code,
                },
                None,
            );
            // Keep acknowledging until the peer resets; the entry stays.
            return;
        }
        // Acknowledge everything now: a delayed ACK would find no state later.
        if self
            .recv
            .get(&stream)
            .is_some_and(|s| s.unacked > 0 || s.fin)
        {
            self.queue_ack(stream);
        }
        for set in self.grants.values_mut() {
            set.remove_stream(stream);
        }
        if let Some(state) = self.recv.remove(&stream) {
            if state.fin {
                let end = self
                    .presentation
                    .received_ranges(stream)
                    .and_then(|r| r.last().map(|r| r.end))
                    .unwrap_or(0);
                self.retired.push_back((stream, end));
                if self.retired.len() > RETIRED_ACKS {
                    self.retired.pop_front();
                }
            }
        }
        self.presentation.remove_stream(stream);
    }

    /// A control frame from the peer on `path`.
    pub(crate) fn handle_frame(
        &mut self,
        path: PathId,
        frame: Frame,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        match frame {
            Frame::Open { .. } => return Err(ProtocolError::UnexpectedFrame("OPEN")),
            Frame::Join { .. } => return Err(ProtocolError::UnexpectedFrame("JOIN")),
            Frame::Welcome { .. } => return Err(ProtocolError::UnexpectedFrame("WELCOME")),
            Frame::Refused { .. } => return Err(ProtocolError::UnexpectedFrame("REFUSED")),
            Frame::TokenRequest { path: p } => {
                if self.side != Side::Server {
                    return Err(ProtocolError::UnexpectedFrame("TOKEN_REQUEST"));
                }
                self.events.push_back(Event::TokenRequested(p));
            }
            Frame::PathToken { path: p, token } => {
                if self.side != Side::Client {
                    return Err(ProtocolError::UnexpectedFrame("PATH_TOKEN"));
                }
                self.events.push_back(Event::TokenReceived(p, token));
            }
            Frame::SessionCredit { max_data } => {
                if max_data > self.peer_max_data {
                    self.peer_max_data = max_data;
                    self.events.push_back(Event::Writable);
                }
            }
            Frame::StreamCredit { stream, max_offset } => {
                if let Some(buf) = self.send.get_mut(&stream) {
                    if buf.raise_credit(max_offset) {
                        self.events.push_back(Event::Writable);
                    }
                }
            }
            Frame::Ack {
                stream,
                fin,
                ranges,
            } => {
                if let Some(buf) = self.send.get_mut(&stream) {
                    let before = buf.retained();
                    let released = buf.on_ack(&ranges, fin);
                    self.stats.bytes_acked += before - buf.retained();
                    let complete = buf.is_complete();
                    self.release(&released, Some(now));
                    if complete {
                        self.retire_send(stream);
                    }
                }
            }
            Frame::Backpressure { .. } => {
                self.stats.backpressure_signals += 1;
            }
            Frame::ResetStream {
                stream,
                error_code,
                final_size,
            } => {
                if stream.initiator() == self.side && stream.dir() == Dir::Uni {
                    return Err(ProtocolError::StreamState(
                        "RESET_STREAM for a local uni stream",
                    ));
                }
                match self.presentation.reset(stream, final_size, error_code, now) {
                    Ok(()) | Err(kwik_presentation::WriteError::UnknownStream(_)) => {}
                    Err(e) => return Err(ProtocolError::Data(e)),
                }
            }
            Frame::StopSending { stream, error_code } => {
                if stream.initiator() != self.side && stream.dir() == Dir::Uni {
                    return Err(ProtocolError::StreamState(
                        "STOP_SENDING for a peer uni stream",
                    ));
                }
                if self.send.contains_key(&stream) {
                    self.stopped.insert(stream, error_code);
                    let _ = self.reset(stream, error_code);
                }
            }
            Frame::PathStatus { path: p, status } => {
                if let Some(ps) = self.paths.get_mut(&p).filter(|x| x.is_alive()) {
                    if ps.status != status {
                        ps.status = status;
                        self.events.push_back(Event::Path(match status {
                            PathStatus::Backup => PathEvent::Backup(p),
                            _ => PathEvent::Available(p),
                        }));
                    }
                }
            }
            Frame::Ping { seq } => {
                if let Some(p) = self.paths.get_mut(&path).filter(|p| p.is_alive()) {
                    p.control.push_front(Frame::Pong { seq });
                    p.on_peer_ping(now);
                }
            }
            Frame::Pong { seq } => {
                if let Some(p) = self.paths.get_mut(&path) {
                    if p.on_pong(seq, now) {
                        self.events
                            .push_back(Event::Path(PathEvent::Validated(path)));
                    }
                }
                if let Some(rtt) = self.paths.get(&path).and_then(Path::srtt) {
                    self.presentation.set_rtt(rtt);
                }
            }
            Frame::Close { code, reason } => {
                self.close_with(CloseReason::Peer { code, reason });
            }
            Frame::PathAbandon { path: p } => {
                if !self.paths.contains_key(&p) && p.into_inner() >= SECONDARY_PATH_BASE {
                    self.links.remove(&p);
                    self.grants.remove(&p);
                    self.events.push_back(Event::SecondaryAbandoned(p));
                }
                self.abandon_path(p, now);
            }
            Frame::AddPath {
                path: p,
                addr,
                server_name,
                token,
            } => {
                if self.side != Side::Client {
                    return Err(ProtocolError::UnexpectedFrame("ADD_PATH"));
                }
                self.events.push_back(Event::AddPathRequested {
                    path: p,
                    addr,
                    server_name,
                    token,
                });
            }
            Frame::AddPathResult { path: p, outcome } => {
                if self.side != Side::Server {
                    return Err(ProtocolError::UnexpectedFrame("ADD_PATH_RESULT"));
                }
                self.events.push_back(Event::AddPathResult(p, outcome));
            }
            Frame::Relay { path: p, payload } => {
                self.events.push_back(match self.side {
                    Side::Client => Event::RelayForward(p, payload),
                    Side::Server => Event::RelayReceived(p, payload),
                });
            }
            Frame::Grant { grant } => {
                if self.side != Side::Client {
                    return Err(ProtocolError::UnexpectedFrame("GRANT"));
                }
                self.on_grant(grant, now)?;
            }
        }
        Ok(())
    }

    /// Something the receive side wants the peer to hear.
    pub(crate) fn handle_presentation_event(&mut self, event: PresentationEvent) {
        if self.closed.is_some() {
            return;
        }
        let frame = match event {
            PresentationEvent::StreamCredit { stream, max_offset } => {
                if !self.grants.is_empty() {
                    for path in self.grant_holders(stream) {
                        self.events.push_back(Event::ToSecondary(
                            path,
                            Frame::StreamCredit { stream, max_offset },
                        ));
                    }
                }
                Frame::StreamCredit { stream, max_offset }
            }
            PresentationEvent::SessionCredit { max_data } => Frame::SessionCredit { max_data },
            PresentationEvent::Backpressure { scope, state } => Frame::Backpressure {
                stream: match scope {
                    BackpressureScope::Session => None,
                    BackpressureScope::Stream(s) => Some(s),
                },
                on: matches!(state, BackpressureState::On(_)),
            },
            PresentationEvent::GapTimeout { stream, .. } => {
                // Tell the sender what we hold; it re-sends what it has not
                // seen acknowledged once a path is declared dead.
                self.queue_ack(stream);
                return;
            }
            _ => return,
        };
        self.broadcast(frame, None);
    }

    // ----- time -----

    /// Runs timers due at `now`: pings, missed-pong detection, delayed acks.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        let interval = self.config.ping_interval;
        let idle_cap = self.config.idle_ping_cap();
        let threshold = self.config.missed_pong_threshold;
        let mut dead = Vec::new();
        let mut degraded = Vec::new();
        // Data waiting for acknowledgement keeps liveness checks at full rate.
        let waiting = self.has_unacknowledged();
        for p in self.paths.values_mut().filter(|p| p.is_alive()) {
            if waiting {
                p.mark_active();
            }
            if now < p.ping_deadline(interval) {
                continue;
            }
            let ping = p.on_ping_due(now, interval, idle_cap);
            p.control.push_back(ping);
            if p.missed >= 1 && p.state != PathState::Degraded {
                p.state = PathState::Degraded;
                degraded.push(p.id);
            }
            if p.missed >= threshold {
                dead.push(p.id);
            }
        }
        for id in degraded {
            self.events.push_back(Event::Path(PathEvent::Degraded(id)));
        }
        for id in dead {
            // Never abandon the last healthy path for missed pongs alone: QUIC's
            // idle timeout decides for it.
            let others = self
                .paths
                .values()
                .any(|p| p.id != id && p.is_alive() && p.state != PathState::Degraded);
            if others {
                self.abandon_path(id, now);
            }
        }
        if self.stats.grants_issued > 0 {
            let now_ms = self.wall_ms(now);
            let mut lapsed: Vec<PathId> = Vec::new();
            for buf in self.send.values_mut() {
                for p in buf.lapsed(now_ms, GRANT_GRACE_MS) {
                    if !lapsed.contains(&p) {
                        lapsed.push(p);
                    }
                }
            }
            for p in lapsed {
                self.events
                    .push_back(Event::Path(PathEvent::GrantExpired(p)));
            }
        }
        if self.ack_deadline.is_some_and(|d| d <= now) {
            self.ack_deadline = None;
            let due: Vec<StreamId> = self
                .recv
                .iter()
                .filter(|(_, s)| s.unacked > 0)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                self.queue_ack(id);
            }
        }
    }

    /// When [`Self::handle_timeout`] should run next.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let interval = self.config.ping_interval;
        self.paths
            .values()
            .filter(|p| p.is_alive())
            .map(|p| p.ping_deadline(interval))
            .chain(self.ack_deadline)
            .min()
    }

    // ----- close -----

    /// Ends the session: CLOSE goes out on every path.
    pub(crate) fn close(&mut self, code: u64, reason: Bytes) {
        if self.closed.is_some() {
            return;
        }
        self.broadcast(
            Frame::Close {
                code,
                reason: reason.clone(),
            },
            None,
        );
        self.close_with(CloseReason::Local { code, reason });
    }

    /// Ends the session because of a protocol violation.
    pub(crate) fn fail(&mut self, error: &ProtocolError) {
        if self.closed.is_some() {
            return;
        }
        self.broadcast(
            Frame::Close {
                code: crate::PROTOCOL_ERROR_CODE,
                reason: Bytes::from(error.to_string()),
            },
            None,
        );
        self.close_with(CloseReason::Protocol(error.to_string()));
    }

    fn close_with(&mut self, reason: CloseReason) {
        if self.closed.is_none() {
            self.closed = Some(reason);
            self.events.push_back(Event::Closed);
            self.events.push_back(Event::Writable);
        }
    }

    pub(crate) fn stats(&self) -> SessionStats {
        let mut s = self.stats.clone();
        s.bytes_retained = self.send.values().map(SendBuffer::retained).sum();
        s
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use kwik_presentation::PresentationConfig;

    fn state(side: Side) -> SessionState {
        let now = Instant::now();
        let presentation = Arc::new(Presentation::new(PresentationConfig::default(), now));
        SessionState::new(
            SessionId::from_bytes([1; 16]),
            side,
            SessionConfig::default(),
            presentation,
            1 << 20,
            1 << 16,
            now,
        )
    }

    /// The events after the initial `Added(0)`.
    fn events(s: &mut SessionState) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = s.poll_event() {
            if !matches!(e, Event::Path(PathEvent::Added(_))) {
                out.push(e);
            }
        }
        out
    }

    #[test]
    fn multi_server_frames_are_checked_by_side() {
        let now = Instant::now();
        let path = PathId::new(1 << 32);
        let add = Frame::AddPath {
            path,
            addr: "127.0.0.1:4433".parse().unwrap(),
            server_name: Bytes::from_static(b"localhost"),
            token: Bytes::from_static(b"t"),
        };
        let result = Frame::AddPathResult {
            path,
            outcome: AddPathOutcome::Joined,
        };
        let relay = Frame::Relay {
            path,
            payload: Bytes::from_static(b"hi"),
        };

        let mut server = state(Side::Server);
        assert_eq!(
            server.handle_frame(PathId::INITIAL, add.clone(), now),
            Err(ProtocolError::UnexpectedFrame("ADD_PATH"))
        );
        server
            .handle_frame(PathId::INITIAL, result.clone(), now)
            .unwrap();
        server
            .handle_frame(PathId::INITIAL, relay.clone(), now)
            .unwrap();
        assert_eq!(
            events(&mut server),
            vec![
                Event::AddPathResult(path, AddPathOutcome::Joined),
                Event::RelayReceived(path, Bytes::from_static(b"hi")),
            ]
        );

        let mut client = state(Side::Client);
        assert_eq!(
            client.handle_frame(PathId::INITIAL, result, now),
            Err(ProtocolError::UnexpectedFrame("ADD_PATH_RESULT"))
        );
        client.handle_frame(PathId::INITIAL, add, now).unwrap();
        client.handle_frame(PathId::INITIAL, relay, now).unwrap();
        assert_eq!(
            events(&mut client),
            vec![
                Event::AddPathRequested {
                    path,
                    addr: "127.0.0.1:4433".parse().unwrap(),
                    server_name: Bytes::from_static(b"localhost"),
                    token: Bytes::from_static(b"t"),
                },
                Event::RelayForward(path, Bytes::from_static(b"hi")),
            ]
        );
        // Secondary paths never become transport paths of the core.
        assert!(!client.has_path(path));
    }

    /// `s` receives a GRANT frame (a signed `grant`) from the primary on path 0.
    fn receive_grant(
        s: &mut SessionState,
        grant: Bytes,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        s.handle_frame(PathId::INITIAL, Frame::Grant { grant }, now)
    }

    /// The control frames `s` has queued on path 0.
    fn control_frames(s: &mut SessionState) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(f) = s.poll_control(PathId::INITIAL) {
            frames.push(f);
        }
        frames
    }

    fn piece(stream: StreamId, offset: u64, len: usize, fin: bool) -> Piece {
        Piece {
            stream,
            offset,
            data: Bytes::from(vec![7u8; len]),
            fin,
        }
    }

    #[test]
    fn client_accepts_secondary_data_inside_grants_only() {
        let t0 = Instant::now();
        let mut client = state(Side::Client);
        client.set_wall_clock(t0, 1_000_000);
        let key = TokenKey::new([5; 32]);
        let path = PathId::new(SECONDARY_PATH_BASE);
        let stream = StreamId::from_parts(0, Side::Server, Dir::Uni);
        let grant = Grant::new(path, stream, 100..200, 1_000_500);
        let signed = grant.sign(&key, client.id());

        // A grant for a secondary the client has no link to is dropped.
        receive_grant(&mut client, signed.clone(), t0).unwrap();
        assert!(events(&mut client).is_empty());
        client.secondary_joined(path);
        receive_grant(&mut client, signed.clone(), t0).unwrap();
        let ev = events(&mut client);
        assert!(ev.contains(&Event::Incoming(Dir::Uni)), "{ev:?}");
        assert!(ev.contains(&Event::ToSecondary(path, Frame::Grant { grant: signed })));
        assert!(ev.iter().any(|e| matches!(
            e,
            Event::ToSecondary(p, Frame::StreamCredit { stream: s, .. }) if *p == path && *s == stream
        )));

        // Inside: buffered, acknowledged to the primary and to the secondary.
        client
            .handle_secondary_piece(path, piece(stream, 100, 50, false), t0)
            .unwrap();
        assert_eq!(client.stats().bytes_from_secondaries, 50);
        client.handle_timeout(t0 + std::time::Duration::from_secs(1));
        assert!(events(&mut client).iter().any(|e| matches!(
            e,
            Event::ToSecondary(p, Frame::Ack { ranges, .. }) if *p == path && ranges == &vec![100..150]
        )));
        // The rest of the range: the grant is spent once the ACK says so.
        client
            .handle_secondary_piece(path, piece(stream, 150, 50, false), t0)
            .unwrap();
        client.handle_timeout(t0 + std::time::Duration::from_secs(2));
        assert!(
            client
                .grants
                .get(&path)
                .is_some_and(|g| !g.has_stream(stream))
        );
        // Written again (held bytes): dropped, not an error.
        let late = client.stats().late_segments;
        client
            .handle_secondary_piece(path, piece(stream, 120, 10, false), t0)
            .unwrap();
        assert_eq!(client.stats().late_segments, late + 1);
        assert_eq!(client.presentation.stats().buffered_bytes, 100);
        // A copy of the spent grant is not forwarded again.
        let _ = events(&mut client);
        let copy = grant.sign(&key, client.id());
        receive_grant(&mut client, copy, t0).unwrap();
        assert!(events(&mut client).is_empty());
        // Outside (past the range, other stream, a FIN): refused, counted, not buffered.
        for bad in [
            piece(stream, 150, 51, false),
            piece(stream, 99, 2, false),
            piece(
                StreamId::from_parts(1, Side::Server, Dir::Uni),
                100,
                1,
                false,
            ),
            piece(stream, 150, 50, true),
        ] {
            assert!(matches!(
                client.handle_secondary_piece(path, bad, t0),
                Err(ProtocolError::OutsideGrant { .. })
            ));
        }
        assert_eq!(client.stats().segments_outside_grant, 4);
        assert_eq!(client.presentation.stats().buffered_bytes, 100);
        // After expiry plus the grace period the grant admits nothing.
        let late = t0 + std::time::Duration::from_millis(500 + GRANT_GRACE_MS + 1);
        assert!(
            client
                .handle_secondary_piece(path, piece(stream, 200, 10, false), late)
                .is_err()
        );
        assert!(client.close_reason().is_none(), "the session goes on");
        // Losing the link acknowledges to the primary, then reports the loss.
        let mut c = client;
        c.secondary_lost(path);
        let frames = control_frames(&mut c);
        let ack = frames.iter().position(|f| matches!(f, Frame::Ack { .. }));
        let abandon = frames
            .iter()
            .position(|f| *f == Frame::PathAbandon { path });
        assert!(ack.is_some() && ack < abandon, "{frames:?}");
        assert!(
            c.handle_secondary_piece(path, piece(stream, 100, 1, false), t0)
                .is_ok()
        );
        assert_eq!(
            c.stats().segments_outside_grant,
            5,
            "a dead link's data is ignored"
        );

        // Only the primary sends grants.
        let mut server = state(Side::Server);
        let signed = grant.sign(&key, server.id());
        assert_eq!(
            receive_grant(&mut server, signed, t0),
            Err(ProtocolError::UnexpectedFrame("GRANT"))
        );
    }

    #[test]
    fn primary_delegates_writes_holes_and_sees_what_is_missing() {
        let t0 = Instant::now();
        let key = TokenKey::new([5; 32]);
        let path = PathId::new(SECONDARY_PATH_BASE);
        let mut server = state(Side::Server);
        server.set_wall_clock(t0, 1_000_000);
        let stream = server.open(Dir::Uni, None).unwrap();
        assert_eq!(
            server.write_at(stream, 0, Bytes::from(vec![1u8; 100])),
            Ok(Bytes::new())
        );
        let grant = server
            .delegate(stream, 100..200, path, &key, t0)
            .unwrap()
            .expect("credit for 200 bytes");
        assert_eq!(grant.expiry_ms, 1_000_000 + 60_000);
        let signed = control_frames(&mut server)
            .iter()
            .find_map(|f| match f {
                Frame::Grant { grant } => Some(grant.clone()),
                _ => None,
            })
            .expect("GRANT queued");
        assert_eq!(
            Grant::verify(&key, server.id(), &signed, 1_000_000),
            Ok(grant)
        );

        // Bytes the primary wrote cannot be delegated or written again.
        assert_eq!(
            server.delegate(stream, 50..150, path, &key, t0),
            Err(DelegateError::AlreadyWritten)
        );
        assert_eq!(
            server.write_at(stream, 99, Bytes::from_static(b"xy")),
            Err(WriteError::AlreadyWritten { offset: 99 })
        );
        assert_eq!(server.missing(stream, &(0..300)), vec![100..200]);
        // The client acknowledges part of the delegated range.
        let ack = |ranges: Vec<Range<u64>>, fin| Frame::Ack {
            stream,
            fin,
            ranges,
        };
        server
            .handle_frame(PathId::INITIAL, ack(vec![0..150], false), t0)
            .unwrap();
        assert_eq!(server.missing_from(path), vec![(stream, 150..200)]);
        // The primary reclaims the rest itself, after finishing.
        server.finish(stream).unwrap();
        assert_eq!(
            server.write_at(stream, 200, Bytes::from_static(b"z")),
            Err(WriteError::BeyondFinalSize)
        );
        assert_eq!(
            server.write_at(stream, 150, Bytes::from(vec![2u8; 50])),
            Ok(Bytes::new())
        );
        assert!(server.missing_from(path).is_empty());
        let mut sent = Vec::new();
        while let Some(tx) = server.poll_data(PathId::INITIAL) {
            sent.push((tx.offset, tx.data.len(), tx.fin));
        }
        assert!(sent.contains(&(150, 50, true)), "{sent:?}");
        // Complete only when every byte up to the final size is acknowledged.
        server
            .handle_frame(PathId::INITIAL, ack(vec![0..150], true), t0)
            .unwrap();
        assert!(server.retained(stream).is_some());
        server
            .handle_frame(PathId::INITIAL, ack(vec![0..200], true), t0)
            .unwrap();
        assert_eq!(server.retained(stream), None);
    }

    #[test]
    fn delegation_waits_for_session_credit() {
        let t0 = Instant::now();
        let key = TokenKey::new([5; 32]);
        let path = PathId::new(SECONDARY_PATH_BASE);
        let mut server = state(Side::Server);
        let stream = server.open(Dir::Uni, None).unwrap();
        // The peer granted 1 MiB of session credit: a range ending past it waits.
        assert_eq!(
            server.delegate(stream, (1 << 20) - 10..(1 << 20) + 10, path, &key, t0),
            Ok(None)
        );
        assert!(
            server
                .delegate(stream, 0..(1 << 20), path, &key, t0)
                .unwrap()
                .is_some()
        );
        // The delegated range used the session credit up.
        assert_eq!(
            server.write_at(stream, 1 << 20, Bytes::from_static(b"x")),
            Ok(Bytes::from_static(b"x"))
        );
        server
            .handle_frame(
                PathId::INITIAL,
                Frame::SessionCredit { max_data: 2 << 20 },
                t0,
            )
            .unwrap();
        // Stream credit (64 KiB) still limits the primary's own bytes.
        assert_eq!(
            server.write_at(stream, 1 << 20, Bytes::from_static(b"x")),
            Ok(Bytes::from_static(b"x"))
        );
        server
            .handle_frame(
                PathId::INITIAL,
                Frame::StreamCredit {
                    stream,
                    max_offset: 2 << 20,
                },
                t0,
            )
            .unwrap();
        assert_eq!(
            server.write_at(stream, 1 << 20, Bytes::from_static(b"x")),
            Ok(Bytes::new())
        );
        assert_eq!(
            server.delegate(stream, 5..5, path, &key, t0),
            Err(DelegateError::EmptyRange)
        );
    }
}
