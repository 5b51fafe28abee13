//! The session's receive side: streams, one shared window, backpressure, events,
//! and which readers to wake — one owner, `&mut self`, no locks.

mod stats;
mod timeout;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

pub use self::stats::{PresentationStats, StreamStats};
use crate::event::EventQueue;
use crate::ready::ReadyQueue;
use crate::{
    Backpressure, BackpressureScope, BackpressureState, BackpressureStats, BufferCounters,
    OpenError, PresentationConfig, PresentationEvent, RangeSet, ReadError, ReceiveWindow,
    StreamBuffer, StreamId, StreamRead, WriteError,
};

/// What a [`Presentation::write`] did with a segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Bytes received for the first time (buffered, or discarded on a stopped
    /// stream).
    pub new_bytes: u64,
    /// Bytes received before (overlaps, duplicates, data after a reset or after the
    /// stream was removed): trimmed, never stored or counted twice.
    pub duplicate_bytes: u64,
}

/// Hashes a `StreamId` (a single `u64`) with one multiply; ids are bounded by
/// `max_streams`, so an attacker gains nothing by choosing them.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdMap<V> = HashMap<StreamId, V, BuildHasherDefault<IdHasher>>;

/// Per-stream state.
#[derive(Debug)]
struct StreamState {
    buffer: StreamBuffer,
    window: ReceiveWindow,
    backpressure: Backpressure,
    /// The last read found nothing ([`ReadError::Blocked`]): the stream goes to
    /// the ready queue once it has something for the reader.
    reader_waiting: bool,
    last_activity: Instant,
    /// (head gap it was about, when) of the last gap-timeout event.
    gap_reported: Option<(Instant, Instant)>,
}

impl StreamState {
    /// Queues the stream for its waiting reader, if one waits.
    fn wake(&mut self, id: StreamId, ready: &mut ReadyQueue) {
        if self.reader_waiting {
            self.reader_waiting = false;
            ready.push(id);
        }
    }
}

/// Session-wide accounting and the events for the senders.
#[derive(Debug)]
struct Session {
    window: ReceiveWindow,
    backpressure: Backpressure,
    buffered: u64,
    readable: u64,
    rtt: Duration,
    /// Latest `now` seen; dates events of calls that take no `now` (reads).
    clock: Instant,
    events: EventQueue,
    /// Indices of removed streams, per kind (low two id bits): ids are not reused.
    removed: [RangeSet; 4],
    open_streams: usize,
    bytes_read: u64,
    late_bytes: u64,
    /// Buffer counters of removed streams (live streams keep their own).
    retired: BufferCounters,
    rejected_writes: u64,
    gap_timeouts: u64,
    /// Backpressure counters of removed streams.
    retired_stream_backpressure: BackpressureStats,
}

impl Session {
    fn see(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
    }

    /// A write for a stream that is not open: late data of a removed stream is
    /// absorbed, anything else refused.
    fn write_unknown(
        &mut self,
        id: StreamId,
        len: u64,
        now: Instant,
    ) -> Result<WriteOutcome, WriteError> {
        self.see(now);
        if id.is_valid() && self.removed[id.kind()].contains(id.index()) {
            self.late_bytes += len;
            return Ok(WriteOutcome {
                new_bytes: 0,
                duplicate_bytes: len,
            });
        }
        self.rejected_writes += 1;
        Err(WriteError::UnknownStream(id))
    }

    fn reject(&mut self, error: WriteError, now: Instant) -> WriteError {
        self.see(now);
        self.rejected_writes += 1;
        debug!(%error, "segment refused");
        error
    }

    /// Returns what `st` holds of both windows unread: nobody will read it.
    fn release(&mut self, st: &mut StreamState) {
        let release = st.window.outstanding();
        st.window.consume(release);
        self.window.consume(release);
    }

    /// Accounts `n` bytes read from `st`: releases window, re-evaluates
    /// backpressure, raises credit when worth it.
    fn consumed(&mut self, id: StreamId, st: &mut StreamState, n: u64) {
        st.window.consume(n);
        let now = self.clock;
        st.last_activity = now;
        self.buffered -= n;
        self.readable -= n;
        self.bytes_read += n;
        self.window.consume(n);
        self.stream_pressure(id, st, now);
        self.after_release();
    }

    /// Re-evaluates a stream's backpressure and raises its credit when due.
    fn stream_pressure(&mut self, id: StreamId, st: &mut StreamState, now: Instant) {
        let transition = st.backpressure.update(
            st.buffer.buffered_bytes(),
            st.buffer.readable_bytes(),
            st.window.window(),
            now,
        );
        if let Some(state) = transition {
            if matches!(state, BackpressureState::On(_)) {
                st.window.note_pressure();
            }
            debug!(stream = %id, ?state, "stream backpressure");
            self.events.push(PresentationEvent::Backpressure {
                scope: BackpressureScope::Stream(id),
                state,
            });
        }
        let open_ended = st.buffer.final_size().is_none() && !st.buffer.is_stopped();
        if open_ended && !st.backpressure.is_on() {
            if let Some(credit) = st.window.update(now, self.rtt) {
                st.buffer.set_limit(credit);
                self.events.push(PresentationEvent::StreamCredit {
                    stream: id,
                    max_offset: credit,
                });
            }
        }
    }

    /// Re-evaluates session backpressure after bytes arrived.
    fn session_pressure(&mut self, now: Instant) {
        let transition =
            self.backpressure
                .update(self.buffered, self.readable, self.window.window(), now);
        if let Some(state) = transition {
            if matches!(state, BackpressureState::On(_)) {
                self.window.note_pressure();
            }
            debug!(?state, "session backpressure");
            self.events.push(PresentationEvent::Backpressure {
                scope: BackpressureScope::Session,
                state,
            });
        }
    }

    /// After session window was released: backpressure off and credit raise.
    fn after_release(&mut self) {
        let now = self.clock;
        self.session_pressure(now);
        if !self.backpressure.is_on() {
            if let Some(max_data) = self.window.update(now, self.rtt) {
                self.events
                    .push(PresentationEvent::SessionCredit { max_data });
                stats::publish_gauges(self);
            }
        }
    }
}

/// The receive side of one KWIK session.
///
/// One owner drives it through `&mut self`, like quinn-proto's stream
/// assembler: the caller (kwik's session core, under the lock the driver
/// already holds for the session) writes segments in, reads data out, and
/// drains three outputs after each call:
///
/// * [`poll_event`](Self::poll_event) — what the senders must hear (credit,
///   backpressure, gap timeouts); the caller sends it.
/// * [`poll_readable`](Self::poll_readable) — streams whose reader was told
///   [`ReadError::Blocked`] and that now have data, their end or an error; the
///   caller wakes those readers however it waits (a task waker, a condition
///   variable).
/// * [`next_deadline`](Self::next_deadline) — when to call
///   [`handle_timeout`](Self::handle_timeout).
///
/// It is pure logic: it never reads the clock (time comes in as `now`; reads
/// date their effects with the latest `now` seen), never spawns, never sleeps,
/// never blocks.
///
/// Ownership: written `Bytes` are kept as they are and handed to the reader
/// without copy by [`read_chunk`](Self::read_chunk).
///
/// # Example: two paths and a reader
///
/// ```
/// use std::time::Instant;
/// use bytes::Bytes;
/// use kwik_presentation::{Presentation, PresentationConfig, ReadError, StreamId};
///
/// let mut session = Presentation::new(PresentationConfig::default(), Instant::now());
/// let id = StreamId::new(2);
/// session.open_stream(id).unwrap();
///
/// let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
/// let chunks: Vec<(u64, Bytes)> = payload
///     .chunks(1200)
///     .enumerate()
///     .map(|(i, c)| ((i * 1200) as u64, Bytes::copy_from_slice(c)))
///     .collect();
/// let last = chunks.len() - 1;
///
/// // Nothing yet: the reader is told so, and waits for the stream to be ready.
/// assert_eq!(session.read_chunk(id, usize::MAX), Err(ReadError::Blocked));
///
/// // Two paths: the odd chunks arrive first, then the even ones.
/// let mut received = Vec::new();
/// for path in [1, 0] {
///     for (i, (offset, data)) in chunks.iter().enumerate() {
///         if i % 2 == path {
///             session.write(id, *offset, data.clone(), i == last, Instant::now()).unwrap();
///         }
///     }
///     while let Some(ready) = session.poll_readable() {
///         assert_eq!(ready, id);
///         while let Ok(Some(chunk)) = session.read_chunk(ready, usize::MAX) {
///             received.extend_from_slice(&chunk);
///         }
///     }
///     // Credit the reader released goes to the senders.
///     while let Some(event) = session.poll_event() {
///         let _ = event;
///     }
/// }
/// assert_eq!(session.read_chunk(id, usize::MAX), Ok(None)); // the end
/// assert_eq!(received, payload);
/// ```
pub struct Presentation {
    config: PresentationConfig,
    /// Boxed: the table grows in steps of whole buckets (four for a first
    /// stream), and a session often reads one stream or a few.
    streams: IdMap<Box<StreamState>>,
    session: Session,
    ready: ReadyQueue,
}

impl Presentation {
    /// A session receive side with no streams yet; `now` starts its clock.
    pub fn new(config: PresentationConfig, now: Instant) -> Self {
        let session = Session {
            window: ReceiveWindow::new(config.session_window, config.max_session_window),
            backpressure: Backpressure::new(config.session_backpressure, config.hysteresis),
            buffered: 0,
            readable: 0,
            rtt: config.initial_rtt,
            clock: now,
            events: EventQueue::new(config.max_streams.saturating_mul(4).saturating_add(16)),
            removed: Default::default(),
            open_streams: 0,
            bytes_read: 0,
            late_bytes: 0,
            retired: BufferCounters::default(),
            rejected_writes: 0,
            gap_timeouts: 0,
            retired_stream_backpressure: BackpressureStats::default(),
        };
        Self {
            config,
            streams: IdMap::default(),
            session,
            ready: ReadyQueue::default(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &PresentationConfig {
        &self.config
    }

    /// Registers a stream (idempotent). Returns its credit (max offset): the initial
    /// stream window for a new stream, the current credit for a known one.
    #[tracing::instrument(level = "debug", skip(self, id), fields(stream = %id))]
    pub fn open_stream(&mut self, id: StreamId) -> Result<u64, OpenError> {
        if !id.is_valid() {
            return Err(OpenError::InvalidId(id));
        }
        if let Some(stream) = self.streams.get(&id) {
            return Ok(stream.window.credit());
        }
        let session = &mut self.session;
        if session.removed[id.kind()].contains(id.index()) {
            return Err(OpenError::Closed(id));
        }
        if session.open_streams >= self.config.max_streams {
            return Err(OpenError::TooManyStreams {
                limit: self.config.max_streams,
            });
        }
        session.open_streams += 1;
        let window = self.config.stream_window;
        let mut buffer = StreamBuffer::new(window);
        buffer.set_max_segments(self.config.max_segments_per_stream);
        self.streams.insert(
            id,
            Box::new(StreamState {
                buffer,
                window: ReceiveWindow::new(window, self.config.max_stream_window),
                backpressure: Backpressure::new(
                    self.config.stream_backpressure,
                    self.config.hysteresis,
                ),
                reader_waiting: false,
                last_activity: session.clock,
                gap_reported: None,
            }),
        );
        debug!(stream = %id, credit = window, "stream opened");
        Ok(window)
    }

    /// Forgets a stream: buffered bytes are dropped and their window returned to the
    /// session; later writes for it are ignored (counted as late) and reads fail with
    /// [`ReadError::UnknownStream`]. The id cannot be opened again. A waiting
    /// reader is made ready (to learn that the stream is gone).
    #[tracing::instrument(level = "debug", skip(self, id), fields(stream = %id))]
    pub fn remove_stream(&mut self, id: StreamId) {
        let Some(mut st) = self.streams.remove(&id) else {
            return;
        };
        st.wake(id, &mut self.ready);
        let session = &mut self.session;
        let now = session.clock;
        session.buffered -= st.buffer.buffered_bytes();
        session.readable -= st.buffer.readable_bytes();
        let mut counters = st.buffer.counters();
        counters.discarded_bytes += st.buffer.buffered_bytes();
        session.retired.absorb(&counters);
        session.release(&mut st);
        let stats = st.backpressure.stats(now);
        session
            .retired_stream_backpressure
            .absorb(&BackpressureStats { active: 0, ..stats });
        session.open_streams -= 1;
        session.removed[id.kind()].insert(id.index()..id.index() + 1);
        session.after_release();
        debug!(stream = %id, "stream removed");
    }

    /// Writer side: a segment from the network.
    ///
    /// The segment is checked against the stream's credit and final size and the
    /// session credit before anything is stored; a violation is a [`WriteError`]
    /// and leaves no trace. Overlaps and duplicates are trimmed (no copy). Writes to
    /// a removed stream are accepted and ignored; to a stopped stream, tracked and
    /// discarded.
    pub fn write(
        &mut self,
        id: StreamId,
        offset: u64,
        data: Bytes,
        fin: bool,
        now: Instant,
    ) -> Result<WriteOutcome, WriteError> {
        let len = data.len() as u64;
        let session = &mut self.session;
        let Some(st) = self.streams.get_mut(&id) else {
            return session.write_unknown(id, len, now);
        };
        let delta = match st.buffer.prepare(offset, len, fin) {
            Ok(delta) => delta,
            Err(e) => return Err(session.reject(WriteError::from_insert(id, e), now)),
        };
        let end = offset + len;
        let fin_is_news = fin && st.buffer.final_size().is_none();
        if delta == 0
            && end <= st.buffer.contiguous_end()
            && !fin_is_news
            && !st.buffer.is_stopped()
        {
            // Pure duplicate (redundant path or retransmission): nothing changes
            // for the session or the reader.
            let outcome = st.buffer.insert_prepared(offset, data, fin, now);
            st.last_activity = now;
            return Ok(WriteOutcome {
                new_bytes: outcome.new_bytes,
                duplicate_bytes: outcome.duplicate_bytes,
            });
        }
        session.see(now);
        if let Err(e) = session.window.receive(delta) {
            session.rejected_writes += 1;
            debug!(stream = %id, limit = e.limit, requested = e.requested, "session flow control violated");
            return Err(WriteError::SessionFlowControl {
                limit: e.limit,
                received: e.requested,
            });
        }
        // The buffer limit equals the stream credit, so this cannot fail after
        // `prepare` accepted the segment.
        let _ = st.window.receive(delta);
        let buffered_before = st.buffer.buffered_bytes();
        let readable_before = st.buffer.readable_bytes();
        let outcome = st.buffer.insert_prepared(offset, data, fin, now);
        let buffered_after = st.buffer.buffered_bytes();
        let readable_after = st.buffer.readable_bytes();
        session.buffered += buffered_after - buffered_before;
        session.readable += readable_after - readable_before;
        st.last_activity = now;
        if st.buffer.is_stopped() {
            // Nobody reads a stopped stream: what arrives is consumed at once.
            session.release(st);
            session.after_release();
        } else {
            session.stream_pressure(id, st, now);
            session.session_pressure(now);
        }
        if readable_after > readable_before || fin {
            st.wake(id, &mut self.ready);
        }
        Ok(WriteOutcome {
            new_bytes: outcome.new_bytes,
            duplicate_bytes: outcome.duplicate_bytes,
        })
    }

    /// Peer reset the stream at `final_size`: buffered data is discarded, its
    /// window returned, and the reader gets [`ReadError::Reset`].
    #[tracing::instrument(level = "debug", skip(self, id, now), fields(stream = %id))]
    pub fn reset(
        &mut self,
        id: StreamId,
        final_size: u64,
        error_code: u64,
        now: Instant,
    ) -> Result<(), WriteError> {
        let session = &mut self.session;
        let Some(st) = self.streams.get_mut(&id) else {
            return session.write_unknown(id, 0, now).map(|_| ());
        };
        let delta = final_size.saturating_sub(st.buffer.highest_received());
        session.see(now);
        if let Err(e) = session.window.check(delta) {
            session.rejected_writes += 1;
            return Err(WriteError::SessionFlowControl {
                limit: e.limit,
                received: e.requested,
            });
        }
        let buffered_before = st.buffer.buffered_bytes();
        let readable_before = st.buffer.readable_bytes();
        if let Err(e) = st.buffer.reset(final_size, error_code) {
            session.rejected_writes += 1;
            return Err(WriteError::from_insert(id, e));
        }
        let _ = session.window.receive(delta);
        // The buffer checked `final_size` against the stream credit.
        let _ = st.window.receive(delta);
        session.buffered -= buffered_before - st.buffer.buffered_bytes();
        session.readable -= readable_before - st.buffer.readable_bytes();
        st.last_activity = now;
        if st.buffer.is_reset() {
            session.release(st);
            session.stream_pressure(id, st, now);
            session.after_release();
        }
        st.wake(id, &mut self.ready);
        debug!(stream = %id, final_size, error_code, "stream reset by peer");
        Ok(())
    }

    /// Reader side: up to `max_len` contiguous bytes, without copying.
    ///
    /// `Ok(Some(bytes))` is data; `Ok(None)` the end of the stream (FIN
    /// reached); [`ReadError::Blocked`] means nothing is readable yet — the
    /// stream then shows up in [`poll_readable`](Self::poll_readable) once data,
    /// the end or an error arrives. A `max_len` of 0 is treated as 1. Nothing is
    /// consumed unless `Ok(Some(_))` is returned.
    pub fn read_chunk(&mut self, id: StreamId, max_len: usize) -> Result<Option<Bytes>, ReadError> {
        self.read_with(id, |buffer| buffer.read_chunk(max_len), |b| b.len() as u64)
            .map(|read| match read {
                StreamRead::Data(bytes) => Some(bytes),
                _ => None,
            })
    }

    /// Copying convenience over [`read_chunk`](Self::read_chunk): fills as much
    /// of `buf` as is readable. `Ok(0)` means end of stream (when `buf` is not
    /// empty); [`ReadError::Blocked`] as for `read_chunk`.
    pub fn read(&mut self, id: StreamId, buf: &mut [u8]) -> Result<usize, ReadError> {
        self.read_with(id, |buffer| buffer.read(buf), |n| *n as u64)
            .map(|read| match read {
                StreamRead::Data(n) => n,
                _ => 0,
            })
    }

    /// Shared reader path. Returns `Ok(Data)` or `Ok(Finished)`.
    fn read_with<T>(
        &mut self,
        id: StreamId,
        read: impl FnOnce(&mut StreamBuffer) -> StreamRead<T>,
        len: impl Fn(&T) -> u64,
    ) -> Result<StreamRead<T>, ReadError> {
        let Some(st) = self.streams.get_mut(&id) else {
            return Err(ReadError::UnknownStream(id));
        };
        match read(&mut st.buffer) {
            StreamRead::Data(data) => {
                let n = len(&data);
                if n > 0 {
                    self.session.consumed(id, st, n);
                }
                Ok(StreamRead::Data(data))
            }
            StreamRead::Finished => Ok(StreamRead::Finished),
            StreamRead::Reset { error_code } => Err(ReadError::Reset { error_code }),
            StreamRead::Stopped => Err(ReadError::Stopped),
            StreamRead::Blocked => {
                st.reader_waiting = true;
                Err(ReadError::Blocked)
            }
        }
    }

    /// The next stream whose reader was told [`ReadError::Blocked`] and may now
    /// read (data, the end, a reset, a stop or removal arrived), or `None`.
    /// Each blocked read yields its stream at most once; the queue never holds a
    /// stream twice.
    pub fn poll_readable(&mut self) -> Option<StreamId> {
        self.ready.pop()
    }

    /// The application no longer reads this stream: buffered bytes are dropped and
    /// their credit returned; later writes for it are accepted and discarded
    /// (counted) up to the final size, and reads fail with [`ReadError::Stopped`].
    #[tracing::instrument(level = "debug", skip(self, id), fields(stream = %id))]
    pub fn stop(&mut self, id: StreamId) {
        let Some(st) = self.streams.get_mut(&id) else {
            return;
        };
        let session = &mut self.session;
        let readable = st.buffer.readable_bytes();
        let dropped = st.buffer.stop();
        session.buffered -= dropped;
        session.readable -= readable.min(dropped);
        session.release(st);
        let now = session.clock;
        session.stream_pressure(id, st, now);
        session.after_release();
        st.wake(id, &mut self.ready);
        debug!(stream = %id, dropped, "stream stopped by application");
    }

    /// Byte ranges received (buffered or already read), for acknowledgements.
    /// `None` if the stream is unknown.
    pub fn received_ranges(&self, id: StreamId) -> Option<Vec<Range<u64>>> {
        let st = self.streams.get(&id)?;
        Some(st.buffer.received_ranges().iter().collect())
    }

    /// The stream's current credit (max offset). `None` if unknown.
    pub fn stream_credit(&self, id: StreamId) -> Option<u64> {
        Some(self.streams.get(&id)?.window.credit())
    }

    /// The session credit: the max sum over streams of the highest offset received
    /// (QUIC MAX_DATA semantics).
    pub fn session_credit(&self) -> u64 {
        self.session.window.credit()
    }

    /// Tells auto-tuning the current round-trip time (e.g. the smallest of the
    /// paths' smoothed RTTs).
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.session.rtt = rtt;
    }

    /// Next event for the senders, oldest first, or `None`. Events are
    /// coalesced: only the latest credit or backpressure state per scope is kept.
    pub fn poll_event(&mut self) -> Option<PresentationEvent> {
        self.session.events.pop()
    }

    /// Takes every queued event.
    pub fn drain_events(&mut self) -> Vec<PresentationEvent> {
        std::iter::from_fn(|| self.session.events.pop()).collect()
    }
}

impl fmt::Debug for Presentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presentation")
            .field("open_streams", &self.session.open_streams)
            .field("buffered", &self.session.buffered)
            .field("session_credit", &self.session.window.credit())
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}
