//! The receive side of a session, over [`kwik_presentation`]: which streams are
//! being received, what is not yet acknowledged, the peer streams waiting to
//! be accepted, the acknowledgements of recently finished streams, and how
//! the presentation's signals (credit, backpressure, gaps) become frames.
//! The session owns its [`Presentation`] here, by value; every use of it by
//! the core goes through this file.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kwik_presentation::{
    BackpressureScope, BackpressureState, Dir, OpenError, Presentation, PresentationConfig,
    PresentationEvent, ReadError, Side, StreamId,
};

use crate::proto::error::ProtocolError;
use crate::proto::ids::PathId;
use crate::proto::wire::frame::{BackpressureReason, Frame, MAX_ACK_RANGES};
use crate::proto::wire::segment::Piece;

/// Streams whose reader finished; acknowledged again after a path loss.
const RETIRED_ACKS: usize = 256;

/// A receive side for a new session (either side) configured by `config`.
pub(crate) fn new_presentation(config: &PresentationConfig, now: Instant) -> Presentation {
    Presentation::new(config.clone(), now)
}

#[derive(Debug, Default)]
struct RecvState {
    unacked: u64,
    fin: bool,
    /// Payload received on each path (duplicates included), in arrival order
    /// of the paths; a session has a handful.
    per_path: Vec<(PathId, u64)>,
}

/// Figures of one receive stream ([`RecvStream::stats`](crate::RecvStream::stats)),
/// the receiving counterpart of [`SendStreamStats`](crate::SendStreamStats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecvStreamStats {
    /// Payload bytes the stream's buffer took in, duplicates included (the
    /// sum of `per_path`).
    pub bytes_received: u64,
    /// Of those, bytes that arrived more than once (redundant scheduling,
    /// re-sends) and were trimmed.
    pub bytes_duplicate: u64,
    /// Bytes the application read (the read position).
    pub bytes_delivered: u64,
    /// Bytes buffered and not yet read.
    pub buffered: u64,
    /// Of those, bytes readable now (before the first hole).
    pub readable: u64,
    /// Segments that arrived with a hole before them.
    pub out_of_order_segments: u64,
    /// Holes open now between the read position and the highest byte received.
    pub gaps: usize,
    /// The widest hole open now.
    pub largest_gap: Option<Range<u64>>,
    /// How long the hole the reader waits on has been open.
    pub oldest_gap_age: Option<Duration>,
    /// How long the application's reads have waited with nothing to read, in
    /// total (measured by the stream's reads; a read waiting now counts up to
    /// the call of `stats`).
    pub time_blocked: Duration,
    /// The credit the sender has: the highest offset it may send up to.
    pub credit: u64,
    /// What the sender is told now: backpressure on this stream and why
    /// (the window's own signal, or [`Manual`](crate::BackpressureReason::Manual)
    /// while the application holds it).
    pub backpressure: Option<BackpressureReason>,
    /// Payload bytes received on each path, a secondary server's path too
    /// (duplicates included).
    pub per_path: Vec<(PathId, u64)>,
}

/// What [`RecvSide::open_peer`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PeerStream {
    /// Known already.
    Known,
    /// Opened now, on first sight: the application may accept it.
    Opened,
    /// Released already: late data.
    Released,
}

/// What became of a piece handed to [`RecvSide::write`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// The stream is unknown to the presentation: late data, ignored.
    Late,
    /// Buffered, and the stream is not tracked for acknowledgements.
    Untracked,
    /// Buffered; acknowledge the stream now (FIN or threshold reached).
    AckNow,
    /// Buffered; acknowledge within the ACK delay.
    AckLater,
}

/// A presentation signal for the peer (see [`RecvSide::signal`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// New credit for a stream (also owed to secondaries holding grants for it).
    StreamCredit(StreamId, u64),
    /// A frame for every path (session credit).
    Broadcast(Frame),
    /// The presentation raised (with the reason the peer hears) or dropped
    /// backpressure on a scope.
    Backpressure(BackpressureScope, Option<BackpressureReason>),
    /// A gap stayed open too long: acknowledge what is held.
    Ack(StreamId),
}

/// The receive side of a session.
#[derive(Debug)]
pub(crate) struct RecvSide {
    presentation: Presentation,
    streams: HashMap<StreamId, RecvState>,
    retired: VecDeque<(StreamId, u64)>,
    incoming: [VecDeque<StreamId>; 2],
    ack_threshold: u64,
}

/// The index of `dir` in per-direction arrays.
pub(crate) fn dir_index(dir: Dir) -> usize {
    match dir {
        Dir::Bi => 0,
        Dir::Uni => 1,
    }
}

impl RecvSide {
    /// Over `presentation`; a stream is acknowledged at once when it holds
    /// `ack_threshold` unacknowledged bytes.
    pub(crate) fn new(presentation: Presentation, ack_threshold: u64) -> Self {
        Self {
            presentation,
            streams: HashMap::new(),
            retired: VecDeque::new(),
            incoming: [VecDeque::new(), VecDeque::new()],
            ack_threshold,
        }
    }

    /// The presentation, for its counters.
    pub(crate) fn presentation(&self) -> &Presentation {
        &self.presentation
    }

    /// Up to `max_len` bytes of `id` for the application (see
    /// [`Presentation::read_chunk`]).
    pub(crate) fn read_chunk(
        &mut self,
        id: StreamId,
        max_len: usize,
    ) -> Result<Option<Bytes>, ReadError> {
        self.presentation.read_chunk(id, max_len)
    }

    /// Copies readable bytes of `id` into `buf` (see [`Presentation::read`]).
    pub(crate) fn read(&mut self, id: StreamId, buf: &mut [u8]) -> Result<usize, ReadError> {
        self.presentation.read(id, buf)
    }

    /// The next signal of the presentation for the senders.
    pub(crate) fn poll_event(&mut self) -> Option<PresentationEvent> {
        self.presentation.poll_event()
    }

    /// The next stream whose blocked reader may read now.
    pub(crate) fn poll_readable(&mut self) -> Option<StreamId> {
        self.presentation.poll_readable()
    }

    /// Runs the presentation's timers (gap timeouts, idle stream removal).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.presentation.handle_timeout(now);
    }

    /// When [`Self::handle_timeout`] has work next.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.presentation.next_deadline()
    }

    /// The receive half of a local bidirectional stream. A refused open only
    /// means the peer cannot answer until streams are released, which the peer
    /// sees as missing credit.
    pub(crate) fn open_local(&mut self, id: StreamId) {
        if self.presentation.open_stream(id).is_ok() {
            self.streams.insert(id, RecvState::default());
        }
    }

    /// Makes sure the receive side knows `id`, opening a peer stream on first
    /// sight. `side` is this side; `next_bi` the index of the next local
    /// bidirectional stream.
    pub(crate) fn open_peer(
        &mut self,
        id: StreamId,
        side: Side,
        next_bi: u64,
    ) -> Result<PeerStream, ProtocolError> {
        if self.streams.contains_key(&id) {
            return Ok(PeerStream::Known);
        }
        if id.initiator() == side {
            if id.dir() == Dir::Uni {
                return Err(ProtocolError::StreamState(
                    "data on a locally opened uni stream",
                ));
            }
            if id.index() >= next_bi {
                return Err(ProtocolError::StreamState(
                    "data on an unopened local stream",
                ));
            }
            // A local bi stream whose receive half was released: late data.
            return Ok(PeerStream::Released);
        }
        match self.presentation.open_stream(id) {
            Ok(_) => {
                self.streams.insert(id, RecvState::default());
                self.incoming[dir_index(id.dir())].push_back(id);
                Ok(PeerStream::Opened)
            }
            Err(OpenError::Closed(_)) => Ok(PeerStream::Released),
            Err(e) => Err(ProtocolError::TooManyStreams(e.to_string())),
        }
    }

    /// Hands a piece of a known stream, arrived on `path`, to the presentation.
    pub(crate) fn write(
        &mut self,
        piece: Piece,
        path: PathId,
        now: Instant,
    ) -> Result<Written, ProtocolError> {
        let id = piece.stream;
        let len = piece.data.len() as u64;
        match self
            .presentation
            .write(id, piece.offset, piece.data, piece.fin, now)
        {
            Ok(_) => {}
            Err(kwik_presentation::WriteError::UnknownStream(_)) => return Ok(Written::Late),
            Err(e) => return Err(ProtocolError::Data(e)),
        }
        let Some(state) = self.streams.get_mut(&id) else {
            return Ok(Written::Untracked);
        };
        match state.per_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, n)) => *n += len,
            None => state.per_path.push((path, len)),
        }
        state.unacked += len;
        if piece.fin {
            state.fin = true;
        }
        if piece.fin || state.unacked >= self.ack_threshold {
            Ok(Written::AckNow)
        } else {
            Ok(Written::AckLater)
        }
    }

    /// Figures of a known receive stream (`time_blocked` and `backpressure`
    /// are the caller's to fill in).
    pub(crate) fn stream_stats(&self, id: StreamId) -> Option<RecvStreamStats> {
        let p = self.presentation.stream_stats(id)?;
        let per_path = self
            .streams
            .get(&id)
            .map(|s| s.per_path.clone())
            .unwrap_or_default();
        Some(RecvStreamStats {
            bytes_received: p.counters.new_bytes + p.counters.duplicate_bytes,
            bytes_duplicate: p.counters.duplicate_bytes,
            bytes_delivered: p.read_position,
            buffered: p.buffered_bytes,
            readable: p.readable_bytes,
            out_of_order_segments: p.counters.out_of_order_segments,
            gaps: p.gaps.gap_count,
            largest_gap: p.gaps.largest_gap,
            oldest_gap_age: p.gaps.oldest_gap_age,
            time_blocked: Duration::ZERO,
            credit: p.credit,
            backpressure: None,
            per_path,
        })
    }

    /// Whether the receive side holds every byte of `range` of `stream`.
    pub(crate) fn holds(&self, stream: StreamId, range: Range<u64>) -> bool {
        self.streams.contains_key(&stream)
            && self
                .presentation
                .received_ranges(stream)
                .is_some_and(|held| {
                    held.iter()
                        .any(|h| h.start <= range.start && range.end <= h.end)
                })
    }

    pub(crate) fn stream_credit(&self, id: StreamId) -> Option<u64> {
        self.presentation.stream_credit(id)
    }

    /// The ACK frame of a tracked stream.
    pub(crate) fn ack_frame(&self, id: StreamId) -> Option<Frame> {
        let state = self.streams.get(&id)?;
        let mut ranges = self.presentation.received_ranges(id)?;
        ranges.truncate(MAX_ACK_RANGES);
        Some(Frame::Ack {
            stream: id,
            fin: state.fin,
            ranges,
        })
    }

    /// An ACK of `id` went out.
    pub(crate) fn acked(&mut self, id: StreamId) {
        if let Some(state) = self.streams.get_mut(&id) {
            state.unacked = 0;
        }
    }

    /// Streams with bytes not yet acknowledged.
    pub(crate) fn unacked_streams(&self) -> Vec<StreamId> {
        self.streams
            .iter()
            .filter(|(_, s)| s.unacked > 0)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Credits and acknowledgements of every known stream, session credit
    /// first (re-sent after a path loss).
    pub(crate) fn credit_frames(&self, out: &mut Vec<Frame>) {
        out.push(Frame::SessionCredit {
            max_data: self.presentation.session_credit(),
        });
        let mut ids: Vec<StreamId> = self.streams.keys().copied().collect();
        ids.sort();
        for id in ids {
            if let Some(max_offset) = self.presentation.stream_credit(id) {
                out.push(Frame::StreamCredit {
                    stream: id,
                    max_offset,
                });
            }
            if let Some(f) = self.ack_frame(id) {
                out.push(f);
            }
        }
    }

    /// The final acknowledgements of recently finished streams.
    pub(crate) fn retired_frames(&self, out: &mut Vec<Frame>) {
        for (stream, final_size) in &self.retired {
            let mut ranges = Vec::new();
            if *final_size > 0 {
                ranges.push(0..*final_size);
            }
            out.push(Frame::Ack {
                stream: *stream,
                fin: true,
                ranges,
            });
        }
    }

    /// The next peer-opened stream of `dir` not yet accepted.
    pub(crate) fn accept(&mut self, dir: Dir) -> Option<StreamId> {
        self.incoming[dir_index(dir)].pop_front()
    }

    /// The application stopped reading `stream`: buffered bytes are dropped.
    pub(crate) fn stop(&mut self, stream: StreamId) {
        self.presentation.stop(stream);
    }

    /// Whether releasing `stream` owes the peer a last ACK.
    pub(crate) fn owes_ack(&self, stream: StreamId) -> bool {
        self.streams
            .get(&stream)
            .is_some_and(|s| s.unacked > 0 || s.fin)
    }

    /// Forgets `stream`; a finished one is remembered for re-acknowledging.
    pub(crate) fn release(&mut self, stream: StreamId) {
        if let Some(state) = self.streams.remove(&stream) {
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

    /// RESET_STREAM from the peer (an unknown stream is ignored).
    pub(crate) fn reset(
        &mut self,
        stream: StreamId,
        final_size: u64,
        error_code: u64,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        match self.presentation.reset(stream, final_size, error_code, now) {
            Ok(()) | Err(kwik_presentation::WriteError::UnknownStream(_)) => Ok(()),
            Err(e) => Err(ProtocolError::Data(e)),
        }
    }

    /// A path measured `rtt` (gap timeouts scale with it).
    pub(crate) fn set_rtt(&mut self, rtt: Duration) {
        self.presentation.set_rtt(rtt);
    }

    /// What the peer must hear of a presentation event, if anything.
    pub(crate) fn signal(event: PresentationEvent) -> Option<Signal> {
        Some(match event {
            PresentationEvent::StreamCredit { stream, max_offset } => {
                Signal::StreamCredit(stream, max_offset)
            }
            PresentationEvent::SessionCredit { max_data } => {
                Signal::Broadcast(Frame::SessionCredit { max_data })
            }
            PresentationEvent::Backpressure { scope, state } => {
                let reason = match (scope, state) {
                    (_, BackpressureState::Off) => None,
                    // The session's window is shared: whichever stream fills it.
                    (BackpressureScope::Session, BackpressureState::On(_)) => {
                        Some(BackpressureReason::SessionWindow)
                    }
                    (BackpressureScope::Stream(_), BackpressureState::On(r)) => Some(match r {
                        kwik_presentation::BackpressureReason::SlowReader => {
                            BackpressureReason::SlowReader
                        }
                        kwik_presentation::BackpressureReason::HeadOfLineGap => {
                            BackpressureReason::HeadOfLineGap
                        }
                        _ => BackpressureReason::Unspecified,
                    }),
                };
                Signal::Backpressure(scope, reason)
            }
            // Tell the sender what we hold; it re-sends what it has not seen
            // acknowledged once a path is declared dead.
            PresentationEvent::GapTimeout { stream, .. } => Signal::Ack(stream),
            _ => return None,
        })
    }
}
