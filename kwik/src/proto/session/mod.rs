//! The sans-IO session core. [`SessionState`] composes one part per subsystem:
//! [`paths`], the send side ([`send`] over [`send_buffer`]), the receive side
//! ([`recv`], which owns the session's `Presentation`, and [`delivery`], reads
//! and the receive side's signals), [`timers`], counters ([`stats`]) and a
//! client's links to secondaries ([`SecondaryLinks`]); it decides what each
//! frame or piece of data means for them. Callers pass `now`, feed frames and
//! pieces in, read stream data, and take frames, data
//! ([`SessionState::poll_data`]), events and the next deadline out.

pub(crate) mod backpressure;
pub(crate) mod control_queue;
pub(crate) mod delivery;
pub(crate) mod events;
pub(crate) mod path_control;
pub(crate) mod paths;
pub(crate) mod recreate;
pub(crate) mod recv;
pub(crate) mod send;
pub(crate) mod send_buffer;
pub(crate) mod stats;
pub(crate) mod telemetry;
pub(crate) mod timers;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Instant;

use bytes::Bytes;
use kwik_presentation::{BackpressureScope, Dir, Presentation, Side, StreamId};

use self::backpressure::{Backpressure, LocalBackpressure, PeerBackpressure};
use self::events::{Event, PathEvent};
use self::path_control::Abandon;
use self::paths::Paths;
use self::recreate::Recreations;
use self::recv::{PeerStream, RecvSide, Written, dir_index};
use self::send::{DataTransmit, SendSide, SendStreamStats};
use self::stats::SessionStats;
use self::telemetry::SessionMetrics;
use self::timers::Timers;
use crate::proto::config::SessionConfig;
use crate::proto::error::{
    CloseReason, DelegateError, PROTOCOL_ERROR_CODE, ProtocolError, WriteError,
};
use crate::proto::ids::{PathId, SECONDARY_PATH_BASE, SessionId};
use crate::proto::multiserver::client::{Admission, SecondaryLinks};
use crate::proto::multiserver::grant::Grant;
use crate::proto::multiserver::token::TokenKey;
use crate::proto::peer_fault::PeerFault;
use crate::proto::scheduler::Scheduler;
use crate::proto::wire::frame::{BackpressureReason, Frame, PathStatus};
use crate::proto::wire::segment::Piece;

/// What one path's writers would find if woken now (see
/// [`SessionState::pending_work`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PathWork {
    pub(crate) path: PathId,
    /// Control frames are queued for the path.
    pub(crate) control: bool,
    /// Stream data may be ready for the path, or it has data streams to finish.
    pub(crate) data: bool,
}

/// The state of one session (one side).
#[derive(Debug)]
pub(crate) struct SessionState {
    id: SessionId,
    side: Side,
    config: SessionConfig,
    paths: Paths,
    send: SendSide,
    recv: RecvSide,
    timers: Timers,
    /// (Client) dead paths being re-created.
    recreate: Recreations,
    /// (Client) live links to secondary servers and their grants.
    links: SecondaryLinks,
    /// Index of the next local stream, per direction.
    next_index: [u64; 2],
    events: VecDeque<Event>,
    closed: Option<CloseReason>,
    stats: SessionStats,
    metrics: SessionMetrics,
    /// The protocol version the session runs at (docs/PROTOCOL.md §3.1).
    version: u64,
    /// (Receiver) what the peer is told of backpressure, and hand holds.
    holds: LocalBackpressure,
    /// (Sender) what the peer signalled.
    peer_backpressure: PeerBackpressure,
}

impl SessionState {
    /// A session whose first path is `PathId::INITIAL`. `peer_max_data` and
    /// `peer_stream_credit` come from the peer's OPEN or WELCOME.
    pub(crate) fn new(
        id: SessionId,
        side: Side,
        config: SessionConfig,
        presentation: Presentation,
        peer_max_data: u64,
        peer_stream_credit: u64,
        now: Instant,
    ) -> Self {
        let version = config.version.number();
        let mut s = Self {
            id,
            side,
            send: SendSide::new(peer_max_data, peer_stream_credit, config.max_segment),
            recv: RecvSide::new(presentation, config.ack_threshold),
            recreate: Recreations::new(config.recreation, seed(id)),
            config,
            paths: Paths::new(side),
            metrics: SessionMetrics::new(side),
            timers: Timers::new(now),
            links: SecondaryLinks::default(),
            next_index: [0, 0],
            events: VecDeque::new(),
            closed: None,
            stats: SessionStats::default(),
            version,
            holds: LocalBackpressure::default(),
            peer_backpressure: PeerBackpressure::default(),
        };
        s.add_path(PathId::INITIAL, PathStatus::Available, now);
        s
    }

    /// The same session running at protocol `version` (what the handshake
    /// agreed on).
    pub(crate) fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// The protocol version the session runs at.
    pub(crate) fn version(&self) -> u64 {
        self.version
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

    /// The receive side's presentation (for its counters; reads go through
    /// [`Self::read_chunk`]).
    pub(crate) fn presentation(&self) -> &Presentation {
        self.recv.presentation()
    }

    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Anchors wall-clock time: `unix_ms` is the Unix time at `now`.
    pub(crate) fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.timers.set_wall_clock(now, unix_ms);
    }

    // ----- streams, send side -----

    fn check_open(&self) -> Result<(), CloseReason> {
        match &self.closed {
            Some(r) => Err(r.clone()),
            None => Ok(()),
        }
    }

    /// Opens a local stream.
    pub(crate) fn open(
        &mut self,
        dir: Dir,
        policy: Option<Scheduler>,
    ) -> Result<StreamId, CloseReason> {
        self.check_open()?;
        let index = &mut self.next_index[dir_index(dir)];
        let id = StreamId::from_parts(*index, self.side, dir);
        *index += 1;
        if dir == Dir::Bi {
            self.recv.open_local(id);
        }
        self.send
            .insert(id, policy.unwrap_or(self.config.scheduler));
        self.stats.streams_opened += 1;
        Ok(id)
    }

    /// Appends a copy of `data` (up to the credit). Returns bytes accepted.
    pub(crate) fn write_copy(
        &mut self,
        stream: StreamId,
        data: &[u8],
    ) -> Result<usize, WriteError> {
        self.check_open().map_err(WriteError::SessionClosed)?;
        let n = self.send.write_copy(stream, data)?;
        self.stats.bytes_written += n as u64;
        self.metrics.written.increment(n as u64);
        Ok(n)
    }

    /// Appends `data` without copying (up to the credit). Returns what was not
    /// accepted (empty when everything was).
    pub(crate) fn write_bytes(
        &mut self,
        stream: StreamId,
        data: Bytes,
    ) -> Result<Bytes, WriteError> {
        self.check_open().map_err(WriteError::SessionClosed)?;
        let len = data.len();
        let rest = self.send.write_bytes(stream, data)?;
        self.stats.bytes_written += (len - rest.len()) as u64;
        self.metrics.written.increment((len - rest.len()) as u64);
        Ok(rest)
    }

    /// Changes the scheduling policy of a local send stream from its next chunk on.
    pub(crate) fn set_scheduler(
        &mut self,
        stream: StreamId,
        policy: Scheduler,
    ) -> Result<(), WriteError> {
        self.check_open().map_err(WriteError::SessionClosed)?;
        self.send.set_scheduler(stream, policy)
    }

    /// Sets the priority of a local send stream (higher first).
    pub(crate) fn set_priority(
        &mut self,
        stream: StreamId,
        priority: i32,
    ) -> Result<(), WriteError> {
        self.check_open().map_err(WriteError::SessionClosed)?;
        self.send.set_priority(stream, priority)
    }

    /// Figures of a send stream; `None` once it is complete (or reset).
    pub(crate) fn send_stream_stats(&self, stream: StreamId) -> Option<SendStreamStats> {
        self.send.stream_stats(stream)
    }

    /// What the peer's backpressure holds `stream` back with now, if anything.
    pub(crate) fn peer_backpressure(&self, stream: StreamId, now: Instant) -> Option<Backpressure> {
        self.peer_backpressure.get(stream, now)
    }

    /// Ends the stream after what was written.
    pub(crate) fn finish(&mut self, stream: StreamId) -> Result<(), WriteError> {
        self.check_open().map_err(WriteError::SessionClosed)?;
        self.send.finish(stream)
    }

    /// Writes `data` at `offset` of `stream` (up to the credit): at or past the
    /// write offset (a jump leaves a hole), or into holes (bytes skipped or
    /// delegated, e.g. reclaimed from a dead secondary; allowed after
    /// `finish`). Returns what was not accepted.
    pub(crate) fn write_at(
        &mut self,
        stream: StreamId,
        offset: u64,
        data: Bytes,
    ) -> Result<Bytes, WriteError> {
        self.check_open().map_err(WriteError::SessionClosed)?;
        let len = data.len();
        let rest = self.send.write_at(stream, offset, data)?;
        self.stats.bytes_written += (len - rest.len()) as u64;
        self.metrics.written.increment((len - rest.len()) as u64);
        Ok(rest)
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
        self.check_open().map_err(DelegateError::SessionClosed)?;
        let expiry = self
            .timers
            .wall_ms(now)
            .saturating_add(self.config.grant_ttl.as_millis() as u64);
        let Some((grant, signed)) =
            self.send
                .delegate(stream, range, path, (key, self.id), expiry)?
        else {
            return Ok(None);
        };
        self.stats.grants_issued += 1;
        self.paths.queue_frame(Frame::Grant { grant: signed });
        Ok(Some(grant))
    }

    /// The parts of `range` of `stream` that the peer has not acknowledged and
    /// that this side does not hold itself (skipped or delegated bytes). Empty
    /// for a stream that is complete (or unknown).
    pub(crate) fn missing(&self, stream: StreamId, range: &Range<u64>) -> Vec<Range<u64>> {
        self.send.missing(stream, range)
    }

    /// The ranges delegated to `path` that the peer has not acknowledged.
    pub(crate) fn missing_from(&self, path: PathId) -> Vec<(StreamId, Range<u64>)> {
        self.send.missing_from(path)
    }

    /// Abandons the stream: retained data is dropped and the peer told.
    pub(crate) fn reset(&mut self, stream: StreamId, error_code: u64) -> Result<(), WriteError> {
        self.check_open().map_err(WriteError::SessionClosed)?;
        let (final_size, released) = self.send.reset(stream, error_code)?;
        self.paths.release(&released, None);
        self.paths.broadcast(
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

    fn retire_send(&mut self, stream: StreamId) {
        self.send.retire(stream);
        self.peer_backpressure.forget(stream);
        self.paths.stream_done(stream);
        self.events.push_back(Event::Writable);
    }

    /// True while some stream still has data or a FIN the peer has not
    /// acknowledged.
    pub(crate) fn has_unacknowledged(&self) -> bool {
        self.send.has_unacknowledged()
    }

    /// Bytes of `stream` written but not yet acknowledged (None: stream done).
    pub(crate) fn retained(&self, stream: StreamId) -> Option<u64> {
        self.send.retained(stream)
    }

    /// The paths whose writers have something to do now: queued control
    /// frames, or stream data that [`Self::poll_data`] might hand out (a
    /// superset: credit and the scheduler may still hold it back) or data
    /// streams to finish. Paths with neither are left out, so the driver
    /// wakes only the writers that would not go straight back to sleep.
    pub(crate) fn pending_work(&self, out: &mut Vec<PathWork>) {
        for (path, control, done) in self.paths.queued() {
            let data = done || self.send.may_have_data(path);
            if control || data {
                out.push(PathWork {
                    path,
                    control,
                    data,
                });
            }
        }
    }

    /// Streams of this path whose data streams the driver may finish.
    pub(crate) fn take_done_streams(&mut self, path: PathId) -> Vec<StreamId> {
        self.paths.take_done_streams(path)
    }

    // ----- outgoing -----

    /// The next control frame for `path`.
    pub(crate) fn poll_control(&mut self, path: PathId) -> Option<Frame> {
        self.paths.poll_control(path)
    }

    /// The next chunk of stream data `path` should carry, if the scheduler gives it
    /// one now. Call again after any state change.
    pub(crate) fn poll_data(&mut self, path: PathId) -> Option<DataTransmit> {
        if self.closed.is_some() || !self.paths.is_live(path) {
            return None;
        }
        let views = self
            .paths
            .views(self.config.path_window, self.config.ack_delay);
        let picked = self.send.poll_data(path, &views)?;
        let len = picked.out.data.len() as u64;
        self.paths.mark_active();
        self.paths.on_sent(path, len, picked.resend);
        self.stats.bytes_sent += len;
        self.metrics.sent.increment(len);
        if picked.resend {
            self.stats.bytes_resent += len;
            self.metrics.resent.increment(len);
        }
        Some(DataTransmit {
            stream: picked.stream,
            offset: picked.out.offset,
            data: picked.out.data,
            fin: picked.out.fin,
            priority: picked.priority,
        })
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
        self.paths.mark_active();
        self.paths.on_received(path, piece.data.len() as u64);
        self.stats.bytes_received += piece.data.len() as u64;
        self.metrics.received.increment(piece.data.len() as u64);
        self.receive(piece, path, now)
    }

    /// (Client) Stream data from the secondary on `path`: accepted only inside
    /// a grant the primary sent for that path (stream, range, expiry plus
    /// [`GRANT_GRACE_MS`](crate::proto::multiserver::client::GRANT_GRACE_MS)).
    /// An error is the secondary's fault: the caller closes that path; the
    /// session goes on and nothing of the piece was buffered.
    pub(crate) fn handle_secondary_piece(
        &mut self,
        path: PathId,
        piece: Piece,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        if self.closed.is_some() || !self.links.contains(path) {
            return Ok(());
        }
        let len = piece.data.len() as u64;
        let now_ms = self.timers.wall_ms(now);
        let held = || {
            self.recv
                .holds(piece.stream, piece.offset..piece.offset + len)
        };
        match self.links.admit(path, &piece, now_ms, held) {
            Admission::Accept => {}
            Admission::Held => {
                self.stats.late_segments += 1;
                return Ok(());
            }
            Admission::Outside => {
                self.stats.segments_outside_grant += 1;
                return Err(ProtocolError::OutsideGrant {
                    path,
                    stream: piece.stream,
                    offset: piece.offset,
                    length: len,
                });
            }
        }
        self.stats.bytes_received += len;
        self.metrics.received.increment(len);
        self.stats.bytes_from_secondaries += len;
        self.receive(piece, path, now)
    }

    /// Makes sure the receive side knows `id`, opening a peer stream on first
    /// sight. `Ok(false)`: the stream was released already (late data).
    fn recv_stream(&mut self, id: StreamId) -> Result<bool, ProtocolError> {
        match self
            .recv
            .open_peer(id, self.side, self.next_index[dir_index(Dir::Bi)])?
        {
            PeerStream::Known => Ok(true),
            PeerStream::Released => Ok(false),
            PeerStream::Opened => {
                if id.dir() == Dir::Bi {
                    self.send.insert(id, self.config.scheduler);
                }
                self.stats.streams_accepted += 1;
                self.events.push_back(Event::Incoming(id.dir()));
                Ok(true)
            }
        }
    }

    fn receive(&mut self, piece: Piece, path: PathId, now: Instant) -> Result<(), ProtocolError> {
        let id = piece.stream;
        if !self.recv_stream(id)? {
            self.stats.late_segments += 1;
            return Ok(());
        }
        let written = self.recv.write(piece, path, now);
        // Credit, backpressure and readiness the write caused (none if refused).
        self.pump_recv();
        match written? {
            Written::Late => self.stats.late_segments += 1,
            Written::Untracked => {}
            Written::AckNow => self.queue_ack(id),
            Written::AckLater => self.timers.arm_ack(now + self.config.ack_delay),
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
        if !self.links.contains(path) {
            // The secondary is gone (or never joined): nobody to forward to.
            return Ok(());
        }
        self.links.make_room(path, self.timers.wall_ms(now))?;
        let stream = grant.stream;
        // A grant may come before any byte of its stream: it opens it.
        if !self.recv_stream(stream)? || self.recv.holds(stream, grant.range.clone()) {
            // Released, or every byte arrived already: nothing to write.
            return Ok(());
        }
        if !self.links.insert(grant) {
            // A copy re-sent after a path loss.
            return Ok(());
        }
        self.events
            .push_back(Event::ToSecondary(path, Frame::Grant { grant: signed }));
        if let Some(max_offset) = self.recv.stream_credit(stream) {
            self.events.push_back(Event::ToSecondary(
                path,
                Frame::StreamCredit { stream, max_offset },
            ));
        }
        if let Some(ack) = self.recv.ack_frame(stream) {
            self.events.push_back(Event::ToSecondary(path, ack));
        }
        Ok(())
    }

    /// (Client) A link to the secondary on `path` is up.
    pub(crate) fn secondary_joined(&mut self, path: PathId) {
        self.links.join(path);
    }

    /// (Client) The link to the secondary on `path` ended: the primary gets
    /// the acknowledgements of the streams it held grants for (so it sees
    /// what is missing) and then PATH_ABANDON.
    pub(crate) fn secondary_lost(&mut self, path: PathId) {
        for s in self.links.lose(path) {
            self.queue_ack(s);
        }
        self.paths.queue_frame(Frame::PathAbandon { path });
    }

    fn queue_ack(&mut self, id: StreamId) {
        let Some(frame) = self.recv.ack_frame(id) else {
            return;
        };
        self.recv.acked(id);
        if let (true, Frame::Ack { ranges, .. }) = (self.links.has_grants(), &frame) {
            for path in self.links.holders(id) {
                self.events
                    .push_back(Event::ToSecondary(path, frame.clone()));
                // Grants whose bytes all arrived are done: the secondary heard
                // so with this ACK; nothing more is accepted under them.
                self.links.remove_held(path, id, ranges);
            }
        }
        self.paths.queue_frame(frame);
    }

    /// The next peer-opened stream of `dir` not yet accepted.
    pub(crate) fn accept(&mut self, dir: Dir) -> Option<StreamId> {
        self.recv.accept(dir)
    }

    /// The application is done with the receive half of `stream` (read to the end,
    /// or gave up): it is released; late data is ignored.
    pub(crate) fn release_recv(&mut self, stream: StreamId, stop_code: Option<u64>) {
        if let Some(code) = stop_code {
            self.recv.stop(stream);
            self.pump_recv();
            self.paths.broadcast(
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
        if self.recv.owes_ack(stream) {
            self.queue_ack(stream);
        }
        self.links.remove_stream(stream);
        self.holds.remove_stream(stream);
        self.recv.release(stream);
        self.pump_recv();
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
                self.expect_side(Side::Server, "TOKEN_REQUEST")?;
                self.events.push_back(Event::TokenRequested(p));
            }
            Frame::PathToken { path: p, token } => {
                self.expect_side(Side::Client, "PATH_TOKEN")?;
                self.events.push_back(Event::TokenReceived(p, token));
            }
            Frame::SessionCredit { max_data } => {
                if self.send.on_session_credit(max_data) {
                    self.events.push_back(Event::Writable);
                }
            }
            Frame::StreamCredit { stream, max_offset } => {
                if self.send.on_stream_credit(stream, max_offset) {
                    self.events.push_back(Event::Writable);
                }
            }
            Frame::Ack {
                stream,
                fin,
                ranges,
            } => {
                if let Some(acked) = self.send.on_ack(stream, &ranges, fin) {
                    self.stats.bytes_acked += acked.bytes;
                    self.metrics.acked.increment(acked.bytes);
                    self.paths.release(&acked.released, Some(now));
                    if acked.complete {
                        self.retire_send(stream);
                    }
                }
            }
            Frame::Backpressure { stream, on, reason } => {
                self.stats.backpressure_signals += 1;
                // The session, or a live send stream of this side: nothing
                // else is remembered, so a peer cannot grow the table.
                if stream.is_none_or(|s| self.send.stream_stats(s).is_some()) {
                    let scope =
                        stream.map_or(BackpressureScope::Session, BackpressureScope::Stream);
                    let on = on.then(|| reason.unwrap_or(BackpressureReason::Unspecified));
                    let mut events = Vec::new();
                    self.peer_backpressure.on_frame(scope, on, now, &mut events);
                    self.events
                        .extend(events.into_iter().map(Event::Backpressure));
                }
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
                let reset = self.recv.reset(stream, final_size, error_code, now);
                self.pump_recv();
                reset?;
            }
            Frame::StopSending { stream, error_code } => {
                if stream.initiator() != self.side && stream.dir() == Dir::Uni {
                    return Err(ProtocolError::StreamState(
                        "STOP_SENDING for a peer uni stream",
                    ));
                }
                if self.send.stop(stream, error_code) {
                    let _ = self.reset(stream, error_code);
                }
            }
            Frame::PathStatus { path: p, status } => {
                if self.paths.set_status(p, status) == Some(true) {
                    self.events
                        .push_back(Event::Path(PathEvent::status(p, status)));
                }
            }
            Frame::Ping { seq } => self.paths.on_ping(path, seq, now),
            Frame::Pong { seq } => {
                let (validated, srtt) = self.paths.on_pong(path, seq, now);
                if validated {
                    self.events
                        .push_back(Event::Path(PathEvent::Validated(path)));
                }
                if let Some(rtt) = srtt {
                    self.recv.set_rtt(rtt);
                }
            }
            Frame::Close { code, reason } => {
                self.close_with(CloseReason::Peer { code, reason });
            }
            Frame::PathAbandon { path: p } => {
                if !self.paths.contains(p) && p.into_inner() >= SECONDARY_PATH_BASE {
                    self.links.forget(p);
                    self.events.push_back(Event::SecondaryAbandoned(p));
                }
                self.abandon_path(p, Abandon::Removed, now);
            }
            Frame::AddPath {
                path: p,
                addr,
                server_name,
                token,
            } => {
                self.expect_side(Side::Client, "ADD_PATH")?;
                self.events.push_back(Event::AddPathRequested {
                    path: p,
                    addr,
                    server_name,
                    token,
                });
            }
            Frame::AddPathResult { path: p, outcome } => {
                self.expect_side(Side::Server, "ADD_PATH_RESULT")?;
                self.events.push_back(Event::AddPathResult(p, outcome));
            }
            Frame::Relay { path: p, payload } => {
                self.events.push_back(match self.side {
                    Side::Client => Event::RelayForward(p, payload),
                    Side::Server => Event::RelayReceived(p, payload),
                });
            }
            Frame::Grant { grant } => {
                self.expect_side(Side::Client, "GRANT")?;
                self.on_grant(grant, now)?;
            }
        }
        Ok(())
    }

    /// A frame only `side` may receive.
    fn expect_side(&self, side: Side, frame: &'static str) -> Result<(), ProtocolError> {
        if self.side == side {
            Ok(())
        } else {
            Err(ProtocolError::UnexpectedFrame(frame))
        }
    }

    // ----- time -----

    /// Runs timers due at `now`: pings, missed-pong detection, grant expiry,
    /// delayed acks.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        // Data waiting for acknowledgement keeps liveness checks at full rate.
        let waiting = self.send.has_unacknowledged();
        let round = self.paths.on_timeout(
            now,
            self.config.ping_interval,
            self.config.idle_ping_cap(),
            self.config.missed_pong_threshold,
            waiting,
        );
        for id in round.degraded {
            self.events.push_back(Event::Path(PathEvent::Degraded(id)));
        }
        for id in round.dead {
            // Never abandon the last healthy path for missed pongs alone: QUIC's
            // idle timeout decides for it.
            if self.paths.others_healthy(id) {
                self.abandon_path(id, Abandon::Failed, now);
            }
        }
        self.start_due_dials(now);
        if self.stats.grants_issued > 0 {
            let now_ms = self.timers.wall_ms(now);
            for p in self
                .send
                .lapsed(now_ms, crate::proto::multiserver::client::GRANT_GRACE_MS)
            {
                self.events
                    .push_back(Event::Path(PathEvent::GrantExpired(p)));
            }
        }
        if self.timers.take_ack_due(now) {
            for id in self.recv.unacked_streams() {
                self.queue_ack(id);
            }
        }
        self.recv.handle_timeout(now);
        self.pump_recv();
    }

    /// When [`Self::handle_timeout`] should run next.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let paths = self.paths.next_deadline(self.config.ping_interval);
        let earliest = paths.into_iter().chain(self.recreate.next_deadline()).min();
        let core = self.timers.next_deadline(earliest);
        core.into_iter().chain(self.recv.next_deadline()).min()
    }

    // ----- close -----

    /// Ends the session: CLOSE goes out on every path.
    pub(crate) fn close(&mut self, code: u64, reason: Bytes) {
        self.end(code, reason.clone(), CloseReason::Local { code, reason });
    }

    /// Ends the session because of a protocol violation.
    pub(crate) fn fail(&mut self, error: &ProtocolError) {
        self.fail_for(&PeerFault::protocol(error));
    }

    /// Ends the session for `fault`, a protocol violation: the CLOSE and the
    /// connections' close carry its phrase, which names the class of the
    /// error (and the frame, when known) as the peer log does
    /// (docs/PROTOCOL.md §3.8).
    pub(crate) fn fail_for(&mut self, fault: &PeerFault) {
        let text = fault.to_string();
        self.end(
            PROTOCOL_ERROR_CODE,
            Bytes::from(text.clone()),
            CloseReason::Protocol(text),
        );
    }

    /// CLOSE with `code` and `reason` on every path, then closed for `why`.
    fn end(&mut self, code: u64, reason: Bytes, why: CloseReason) {
        if self.closed.is_some() {
            return;
        }
        self.paths.broadcast(Frame::Close { code, reason }, None);
        self.close_with(why);
    }

    fn close_with(&mut self, reason: CloseReason) {
        if self.closed.is_none() {
            self.closed = Some(reason);
            self.recreate.clear();
            self.events.push_back(Event::Closed);
            self.events.push_back(Event::Writable);
        }
    }

    pub(crate) fn stats(&self) -> SessionStats {
        let mut s = self.stats.clone();
        s.bytes_retained = self.send.total_retained();
        s
    }
}

/// The jitter seed of a session's path re-creation: from its (random) id, so
/// sessions of one client do not retry in step.
fn seed(id: SessionId) -> u64 {
    let b = id.as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}
