//! The session's receive side: streams, one shared window, backpressure, events.

use std::fmt;
use std::ops::Range;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

use crate::event::EventQueue;
use crate::stream_buffer::GapStats;
use crate::sync::Mutex;
use crate::table::StreamTable;
use crate::{
    Backpressure, BackpressureReason, BackpressureScope, BackpressureState, BackpressureStats,
    BufferCounters, OpenError, PresentationConfig, PresentationEvent, RangeSet, ReadError,
    ReceiveWindow, StreamBuffer, StreamId, StreamRead, WriteError,
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

/// Session-wide counters and gauges (see [`Presentation::stats`]).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PresentationStats {
    /// Bytes received for the first time, over all streams.
    pub bytes_received: u64,
    /// Bytes handed to the application.
    pub bytes_read: u64,
    /// Bytes received more than once (trimmed).
    pub duplicate_bytes: u64,
    /// Bytes dropped unread (reset, stop, removal).
    pub discarded_bytes: u64,
    /// Bytes that arrived for streams already removed (ignored).
    pub late_bytes: u64,
    /// Segments that arrived with a hole before them.
    pub out_of_order_segments: u64,
    /// Writes refused as protocol violations.
    pub rejected_writes: u64,
    /// Bytes held, not yet read.
    pub buffered_bytes: u64,
    /// Bytes the application could read right now.
    pub readable_bytes: u64,
    /// Current session window (bytes).
    pub session_window: u64,
    /// Current session credit (MAX_DATA).
    pub session_credit: u64,
    /// Sum over streams of the highest offset received.
    pub session_received: u64,
    /// `buffered_bytes / session_window`.
    pub window_utilisation: f64,
    /// Times auto-tuning grew the session window.
    pub session_window_growths: u64,
    /// Streams currently known.
    pub open_streams: usize,
    /// Holes currently open, over all streams.
    pub gaps: usize,
    /// Gap-timeout events raised.
    pub gap_timeouts: u64,
    /// Backpressure of all streams together (including removed ones).
    pub stream_backpressure: BackpressureStats,
    /// Session backpressure.
    pub session_backpressure: BackpressureStats,
    /// Events queued, not yet taken.
    pub events_pending: usize,
    /// Events dropped because nobody drained the queue.
    pub events_dropped: u64,
}

/// One stream's view (see [`Presentation::stream_stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// Bytes held, not yet read.
    pub buffered_bytes: u64,
    /// Bytes readable now.
    pub readable_bytes: u64,
    /// Offset of the next byte the reader gets.
    pub read_position: u64,
    /// Highest offset received.
    pub highest_received: u64,
    /// Final size, once known.
    pub final_size: Option<u64>,
    /// Current credit (max offset).
    pub credit: u64,
    /// Current stream window.
    pub window: u64,
    /// Running totals of the buffer.
    pub counters: BufferCounters,
    /// Gap observations at the time asked.
    pub gaps: GapStats,
    /// Reason of the current backpressure, if on.
    pub backpressure: Option<BackpressureReason>,
}

/// Per-stream state, behind the stream's own mutex.
#[derive(Debug)]
struct StreamState {
    buffer: StreamBuffer,
    window: ReceiveWindow,
    backpressure: Backpressure,
    reader: Option<Waker>,
    last_activity: Instant,
    /// (head gap it was about, when) of the last gap-timeout event.
    gap_reported: Option<(Instant, Instant)>,
}

/// Session state, behind one short-held mutex. Lock order everywhere:
/// table shard, then stream, then session.
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

/// Wakers collected under locks and woken after they are released. An operation
/// wakes at most the stream's reader and the event consumer, so two slots suffice
/// and no allocation happens on the data path.
#[derive(Default)]
struct Wakeups([Option<Waker>; 2]);

impl Wakeups {
    fn add(&mut self, waker: Option<Waker>) {
        let Some(waker) = waker else {
            return;
        };
        match self.0.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(waker),
            // Not reached with two sources; waking early is still correct.
            None => waker.wake(),
        }
    }

    fn wake(self) {
        for w in self.0.into_iter().flatten() {
            w.wake();
        }
    }
}

/// The receive side of one KWIK session.
///
/// `Presentation` is `Send + Sync`; share it as `Arc<Presentation>` between the
/// writers (one task or thread per path) and the application (the reader). All
/// methods take `&self`. Each stream has its own lock, streams are found through a
/// sharded table, and session accounting sits behind one briefly held lock, so
/// writers of different streams and the reader rarely wait on each other.
///
/// It is pure logic: it never reads the clock (time comes in as `now`; reads date
/// their effects with the latest `now` seen), never spawns, never sleeps — except
/// [`read_blocking`](Self::read_blocking), the blocking convenience for non-async
/// callers.
///
/// Ownership: written `Bytes` are kept as they are and handed to the reader without
/// copy by [`poll_read_chunk`](Self::poll_read_chunk).
///
/// # Example: two writers and a reader
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, Instant};
/// use bytes::Bytes;
/// use kwik_presentation::{Presentation, PresentationConfig, StreamId};
///
/// let session = Arc::new(Presentation::new(PresentationConfig::default(), Instant::now()));
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
/// // Two paths: one carries the even chunks, the other the odd ones.
/// let writers: Vec<_> = (0..2)
///     .map(|path| {
///         let session = Arc::clone(&session);
///         let chunks = chunks.clone();
///         std::thread::spawn(move || {
///             for (i, (offset, data)) in chunks.into_iter().enumerate() {
///                 if i % 2 == path {
///                     session.write(id, offset, data, i == last, Instant::now()).unwrap();
///                 }
///             }
///         })
///     })
///     .collect();
///
/// let mut received = Vec::new();
/// let mut buf = [0u8; 4096];
/// loop {
///     match session.read_blocking(id, &mut buf, Duration::from_secs(10)).unwrap() {
///         0 => break, // FIN
///         n => received.extend_from_slice(&buf[..n]),
///     }
/// }
/// for w in writers {
///     w.join().unwrap();
/// }
/// assert_eq!(received, payload);
/// ```
pub struct Presentation {
    config: PresentationConfig,
    streams: StreamTable<Mutex<StreamState>>,
    session: Mutex<Session>,
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
            streams: StreamTable::new(),
            session: Mutex::new(session),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &PresentationConfig {
        &self.config
    }

    /// Registers a stream (idempotent). Returns its credit (max offset): the initial
    /// stream window for a new stream, the current credit for a known one.
    #[tracing::instrument(level = "debug", skip(self, id), fields(stream = %id))]
    pub fn open_stream(&self, id: StreamId) -> Result<u64, OpenError> {
        if !id.is_valid() {
            return Err(OpenError::InvalidId(id));
        }
        let mut shard = self.streams.shard(id).write();
        if let Some(stream) = shard.get(&id) {
            return Ok(stream.lock().window.credit());
        }
        let mut session = self.session.lock();
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
        shard.insert(
            id,
            Mutex::new(StreamState {
                buffer,
                window: ReceiveWindow::new(window, self.config.max_stream_window),
                backpressure: Backpressure::new(
                    self.config.stream_backpressure,
                    self.config.hysteresis,
                ),
                reader: None,
                last_activity: session.clock,
                gap_reported: None,
            }),
        );
        debug!(stream = %id, credit = window, "stream opened");
        Ok(window)
    }

    /// Forgets a stream: buffered bytes are dropped and their window returned to the
    /// session; later writes for it are ignored (counted as late) and reads fail with
    /// [`ReadError::UnknownStream`]. The id cannot be opened again.
    #[tracing::instrument(level = "debug", skip(self, id), fields(stream = %id))]
    pub fn remove_stream(&self, id: StreamId) {
        let removed = self.streams.shard(id).write().remove(&id);
        let Some(stream) = removed else {
            return;
        };
        let mut st = stream.lock();
        let mut wake = Wakeups::default();
        wake.add(st.reader.take());
        let mut session = self.session.lock();
        let now = session.clock;
        session.buffered -= st.buffer.buffered_bytes();
        session.readable -= st.buffer.readable_bytes();
        let mut counters = st.buffer.counters();
        counters.discarded_bytes += st.buffer.buffered_bytes();
        session.retired.absorb(&counters);
        let release = st.window.outstanding();
        st.window.consume(release);
        session.window.consume(release);
        let stats = st.backpressure.stats(now);
        session
            .retired_stream_backpressure
            .absorb(&BackpressureStats { active: 0, ..stats });
        session.open_streams -= 1;
        session.removed[id.kind()].insert(id.index()..id.index() + 1);
        self.session_after_release(&mut session, &mut wake);
        drop(session);
        drop(st);
        debug!(stream = %id, "stream removed");
        wake.wake();
    }

    /// Writer side: a segment from the network.
    ///
    /// The segment is checked against the stream's credit and final size and the
    /// session credit before anything is stored; a violation is a [`WriteError`]
    /// and leaves no trace. Overlaps and duplicates are trimmed (no copy). Writes to
    /// a removed stream are accepted and ignored; to a stopped stream, tracked and
    /// discarded.
    pub fn write(
        &self,
        id: StreamId,
        offset: u64,
        data: Bytes,
        fin: bool,
        now: Instant,
    ) -> Result<WriteOutcome, WriteError> {
        let shard = self.streams.shard(id).read();
        let Some(stream) = shard.get(&id) else {
            drop(shard);
            return self.write_unknown(id, data.len() as u64, now);
        };
        let mut st = stream.lock();
        let delta = match st.buffer.prepare(offset, data.len() as u64, fin) {
            Ok(delta) => delta,
            Err(e) => {
                drop(st);
                drop(shard);
                return Err(self.reject(WriteError::from_insert(id, e), now));
            }
        };
        let end = offset + data.len() as u64;
        let fin_is_news = fin && st.buffer.final_size().is_none();
        if delta == 0
            && end <= st.buffer.contiguous_end()
            && !fin_is_news
            && !st.buffer.is_stopped()
        {
            // Pure duplicate (redundant path or retransmission): nothing changes
            // for the session or the reader, so neither lock nor waker is touched.
            let outcome = st.buffer.insert_prepared(offset, data, fin, now);
            st.last_activity = now;
            return Ok(WriteOutcome {
                new_bytes: outcome.new_bytes,
                duplicate_bytes: outcome.duplicate_bytes,
            });
        }
        let mut wake = Wakeups::default();
        let mut session = self.session.lock();
        session.clock = session.clock.max(now);
        if let Err(e) = session.window.receive(delta) {
            session.rejected_writes += 1;
            drop(session);
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
            let release = st.window.outstanding();
            st.window.consume(release);
            session.window.consume(release);
            self.session_after_release(&mut session, &mut wake);
        } else {
            self.stream_pressure(id, &mut st, &mut session, now, &mut wake);
            self.session_pressure(&mut session, now, &mut wake);
        }
        if readable_after > readable_before || fin {
            wake.add(st.reader.take());
        }
        drop(session);
        drop(st);
        drop(shard);
        wake.wake();
        Ok(WriteOutcome {
            new_bytes: outcome.new_bytes,
            duplicate_bytes: outcome.duplicate_bytes,
        })
    }

    fn write_unknown(
        &self,
        id: StreamId,
        len: u64,
        now: Instant,
    ) -> Result<WriteOutcome, WriteError> {
        let mut session = self.session.lock();
        session.clock = session.clock.max(now);
        if id.is_valid() && session.removed[id.kind()].contains(id.index()) {
            session.late_bytes += len;
            return Ok(WriteOutcome {
                new_bytes: 0,
                duplicate_bytes: len,
            });
        }
        session.rejected_writes += 1;
        Err(WriteError::UnknownStream(id))
    }

    fn reject(&self, error: WriteError, now: Instant) -> WriteError {
        let mut session = self.session.lock();
        session.clock = session.clock.max(now);
        session.rejected_writes += 1;
        drop(session);
        debug!(%error, "segment refused");
        error
    }

    /// Peer reset the stream at `final_size`: buffered data is discarded, its
    /// window returned, and the reader gets [`ReadError::Reset`].
    #[tracing::instrument(level = "debug", skip(self, id, now), fields(stream = %id))]
    pub fn reset(
        &self,
        id: StreamId,
        final_size: u64,
        error_code: u64,
        now: Instant,
    ) -> Result<(), WriteError> {
        let shard = self.streams.shard(id).read();
        let Some(stream) = shard.get(&id) else {
            drop(shard);
            return self.write_unknown(id, 0, now).map(|_| ());
        };
        let mut st = stream.lock();
        let delta = final_size.saturating_sub(st.buffer.highest_received());
        let mut wake = Wakeups::default();
        let mut session = self.session.lock();
        session.clock = session.clock.max(now);
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
            let release = st.window.outstanding();
            st.window.consume(release);
            session.window.consume(release);
            self.stream_pressure(id, &mut st, &mut session, now, &mut wake);
            self.session_after_release(&mut session, &mut wake);
        }
        wake.add(st.reader.take());
        drop(session);
        drop(st);
        drop(shard);
        debug!(stream = %id, final_size, error_code, "stream reset by peer");
        wake.wake();
        Ok(())
    }

    /// Reader side: up to `max_len` contiguous bytes, without copying.
    ///
    /// `Ready(Ok(Some(bytes)))` is data; `Ready(Ok(None))` the end of the stream
    /// (FIN reached); `Pending` registers `cx`'s waker, woken when data or the end
    /// arrives. One reader per stream: a new waker replaces the previous one.
    /// A `max_len` of 0 is treated as 1. Cancel-safe: nothing is consumed unless
    /// `Ready(Ok(Some(_)))` is returned.
    pub fn poll_read_chunk(
        &self,
        id: StreamId,
        max_len: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, ReadError>> {
        self.read_with(
            id,
            cx,
            |buffer| buffer.read_chunk(max_len),
            |b| b.len() as u64,
        )
        .map(|r| {
            r.map(|read| match read {
                StreamRead::Data(bytes) => Some(bytes),
                _ => None,
            })
        })
    }

    /// Copying convenience over [`poll_read_chunk`](Self::poll_read_chunk): fills
    /// as much of `buf` as is readable. `Ok(0)` means end of stream (when `buf` is
    /// not empty).
    pub fn poll_read(
        &self,
        id: StreamId,
        buf: &mut [u8],
        cx: &mut Context<'_>,
    ) -> Poll<Result<usize, ReadError>> {
        self.read_with(id, cx, |buffer| buffer.read(buf), |n| *n as u64)
            .map(|r| {
                r.map(|read| match read {
                    StreamRead::Data(n) => n,
                    _ => 0,
                })
            })
    }

    /// Shared reader path. Returns `Ready(Ok(Data))` or `Ready(Ok(Finished))`.
    fn read_with<T>(
        &self,
        id: StreamId,
        cx: &mut Context<'_>,
        read: impl FnOnce(&mut StreamBuffer) -> StreamRead<T>,
        len: impl Fn(&T) -> u64,
    ) -> Poll<Result<StreamRead<T>, ReadError>> {
        let shard = self.streams.shard(id).read();
        let Some(stream) = shard.get(&id) else {
            return Poll::Ready(Err(ReadError::UnknownStream(id)));
        };
        let mut st = stream.lock();
        match read(&mut st.buffer) {
            StreamRead::Data(data) => {
                let n = len(&data);
                if n > 0 {
                    let mut wake = Wakeups::default();
                    self.consumed(id, &mut st, n, &mut wake);
                    drop(st);
                    drop(shard);
                    wake.wake();
                }
                Poll::Ready(Ok(StreamRead::Data(data)))
            }
            StreamRead::Finished => Poll::Ready(Ok(StreamRead::Finished)),
            StreamRead::Reset { error_code } => Poll::Ready(Err(ReadError::Reset { error_code })),
            StreamRead::Stopped => Poll::Ready(Err(ReadError::Stopped)),
            StreamRead::Blocked => {
                match &st.reader {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => st.reader = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Accounts `n` bytes read from `st`: releases window, re-evaluates
    /// backpressure, raises credit when worth it.
    fn consumed(&self, id: StreamId, st: &mut StreamState, n: u64, wake: &mut Wakeups) {
        st.window.consume(n);
        let mut session = self.session.lock();
        let now = session.clock;
        st.last_activity = now;
        session.buffered -= n;
        session.readable -= n;
        session.bytes_read += n;
        session.window.consume(n);
        self.stream_pressure(id, st, &mut session, now, wake);
        self.session_after_release(&mut session, wake);
    }

    /// Re-evaluates a stream's backpressure and raises its credit when due.
    fn stream_pressure(
        &self,
        id: StreamId,
        st: &mut StreamState,
        session: &mut Session,
        now: Instant,
        wake: &mut Wakeups,
    ) {
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
            wake.add(session.events.push(PresentationEvent::Backpressure {
                scope: BackpressureScope::Stream(id),
                state,
            }));
        }
        let open_ended = st.buffer.final_size().is_none() && !st.buffer.is_stopped();
        if open_ended && !st.backpressure.is_on() {
            if let Some(credit) = st.window.update(now, session.rtt) {
                st.buffer.set_limit(credit);
                wake.add(session.events.push(PresentationEvent::StreamCredit {
                    stream: id,
                    max_offset: credit,
                }));
            }
        }
    }

    /// Re-evaluates session backpressure after bytes arrived.
    fn session_pressure(&self, session: &mut Session, now: Instant, wake: &mut Wakeups) {
        let transition = session.backpressure.update(
            session.buffered,
            session.readable,
            session.window.window(),
            now,
        );
        if let Some(state) = transition {
            if matches!(state, BackpressureState::On(_)) {
                session.window.note_pressure();
            }
            debug!(?state, "session backpressure");
            wake.add(session.events.push(PresentationEvent::Backpressure {
                scope: BackpressureScope::Session,
                state,
            }));
        }
    }

    /// After session window was released: backpressure off and credit raise.
    fn session_after_release(&self, session: &mut Session, wake: &mut Wakeups) {
        let now = session.clock;
        self.session_pressure(session, now, wake);
        if !session.backpressure.is_on() {
            let rtt = session.rtt;
            if let Some(max_data) = session.window.update(now, rtt) {
                wake.add(
                    session
                        .events
                        .push(PresentationEvent::SessionCredit { max_data }),
                );
                publish_gauges(session);
            }
        }
    }

    /// Blocking read for non-async callers: waits until data, end of stream, an
    /// error, or `timeout` ([`ReadError::TimedOut`]). `Ok(0)` means end of stream
    /// (when `buf` is not empty). This is the one method that reads the clock (to
    /// honour `timeout`) and parks the calling thread; never call it from async
    /// code.
    #[cfg(not(all(loom, test)))]
    pub fn read_blocking(
        &self,
        id: StreamId,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, ReadError> {
        let deadline = Instant::now().checked_add(timeout);
        let waker = Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(result) = self.poll_read(id, buf, &mut cx) {
                return result;
            }
            match deadline {
                None => std::thread::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(ReadError::TimedOut);
                    }
                    std::thread::park_timeout(deadline - now);
                }
            }
        }
    }

    /// The application no longer reads this stream: buffered bytes are dropped and
    /// their credit returned; later writes for it are accepted and discarded
    /// (counted) up to the final size, and reads fail with [`ReadError::Stopped`].
    #[tracing::instrument(level = "debug", skip(self, id), fields(stream = %id))]
    pub fn stop(&self, id: StreamId) {
        let shard = self.streams.shard(id).read();
        let Some(stream) = shard.get(&id) else {
            return;
        };
        let mut st = stream.lock();
        let mut wake = Wakeups::default();
        let readable = st.buffer.readable_bytes();
        let dropped = st.buffer.stop();
        let mut session = self.session.lock();
        session.buffered -= dropped;
        session.readable -= readable.min(dropped);
        let release = st.window.outstanding();
        st.window.consume(release);
        session.window.consume(release);
        let now = session.clock;
        self.stream_pressure(id, &mut st, &mut session, now, &mut wake);
        self.session_after_release(&mut session, &mut wake);
        wake.add(st.reader.take());
        drop(session);
        drop(st);
        drop(shard);
        debug!(stream = %id, dropped, "stream stopped by application");
        wake.wake();
    }

    /// Byte ranges received (buffered or already read), for acknowledgements.
    /// `None` if the stream is unknown.
    pub fn received_ranges(&self, id: StreamId) -> Option<Vec<Range<u64>>> {
        let shard = self.streams.shard(id).read();
        let st = shard.get(&id)?.lock();
        Some(st.buffer.received_ranges().iter().collect())
    }

    /// The stream's current credit (max offset). `None` if unknown.
    pub fn stream_credit(&self, id: StreamId) -> Option<u64> {
        let shard = self.streams.shard(id).read();
        let credit = shard.get(&id)?.lock().window.credit();
        Some(credit)
    }

    /// The session credit: the max sum over streams of the highest offset received
    /// (QUIC MAX_DATA semantics).
    pub fn session_credit(&self) -> u64 {
        self.session.lock().window.credit()
    }

    /// Tells auto-tuning the current round-trip time (e.g. the smallest of the
    /// paths' smoothed RTTs).
    pub fn set_rtt(&self, rtt: Duration) {
        self.session.lock().rtt = rtt;
    }

    /// Next event for the senders, or `Pending` (registering `cx`'s waker) when none
    /// is queued. Events are coalesced: only the latest credit or backpressure state
    /// per scope is kept.
    pub fn poll_event(&self, cx: &mut Context<'_>) -> Poll<PresentationEvent> {
        let mut session = self.session.lock();
        match session.events.pop() {
            Some(event) => Poll::Ready(event),
            None => {
                session.events.register(cx.waker());
                Poll::Pending
            }
        }
    }

    /// Takes every queued event.
    pub fn drain_events(&self) -> Vec<PresentationEvent> {
        let mut session = self.session.lock();
        std::iter::from_fn(|| session.events.pop()).collect()
    }

    /// Runs timers: gap-timeout events and removal of closed streams idle for
    /// `idle_stream_timeout`. Call at [`next_deadline`](Self::next_deadline) (calling
    /// earlier or more often is harmless).
    #[tracing::instrument(level = "debug", skip_all)]
    pub fn handle_timeout(&self, now: Instant) {
        let mut wake = Wakeups::default();
        let mut idle = Vec::new();
        let mut timeouts = Vec::new();
        for shard in self.streams.shards() {
            let shard = shard.read();
            for (&id, stream) in shard.iter() {
                let mut st = stream.lock();
                if st.buffer.is_closed()
                    && now.saturating_duration_since(st.last_activity)
                        >= self.config.idle_stream_timeout
                {
                    idle.push(id);
                    continue;
                }
                let Some(since) = st.buffer.gap_since() else {
                    st.gap_reported = None;
                    continue;
                };
                if now >= self.gap_deadline(&st, since) {
                    if let Some(gap) = st.buffer.next_gap() {
                        st.gap_reported = Some((since, now));
                        timeouts.push(PresentationEvent::GapTimeout {
                            stream: id,
                            gap,
                            age: now.saturating_duration_since(since),
                        });
                    }
                }
            }
        }
        {
            let mut session = self.session.lock();
            session.clock = session.clock.max(now);
            for event in timeouts {
                debug!(?event, "gap timeout");
                session.gap_timeouts += 1;
                wake.add(session.events.push(event));
            }
        }
        wake.wake();
        for id in idle {
            self.remove_stream(id);
        }
        // Publishes the counters as metrics.
        let _ = self.stats();
    }

    fn gap_deadline(&self, st: &StreamState, since: Instant) -> Instant {
        let from = match st.gap_reported {
            Some((about, at)) if about == since => at,
            _ => since,
        };
        from + self.config.gap_timeout
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work next, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for shard in self.streams.shards() {
            let shard = shard.read();
            for stream in shard.values() {
                let st = stream.lock();
                let deadline = if st.buffer.is_closed() {
                    Some(st.last_activity + self.config.idle_stream_timeout)
                } else {
                    st.buffer
                        .gap_since()
                        .map(|since| self.gap_deadline(&st, since))
                };
                next = match (next, deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        next
    }

    /// Session-wide counters and gauges; also publishes them as metrics.
    pub fn stats(&self) -> PresentationStats {
        let mut stream_bp = BackpressureStats::default();
        let mut counters = BufferCounters::default();
        let mut gaps = 0;
        let now = self.session.lock().clock;
        for shard in self.streams.shards() {
            let shard = shard.read();
            for stream in shard.values() {
                let st = stream.lock();
                stream_bp.absorb(&st.backpressure.stats(now));
                counters.absorb(&st.buffer.counters());
                gaps += st.buffer.gaps().len();
            }
        }
        let session = self.session.lock();
        stream_bp.absorb(&session.retired_stream_backpressure);
        counters.absorb(&session.retired);
        let window = session.window.window();
        let stats = PresentationStats {
            bytes_received: counters.new_bytes,
            bytes_read: session.bytes_read,
            duplicate_bytes: counters.duplicate_bytes,
            discarded_bytes: counters.discarded_bytes,
            late_bytes: session.late_bytes,
            out_of_order_segments: counters.out_of_order_segments,
            rejected_writes: session.rejected_writes,
            buffered_bytes: session.buffered,
            readable_bytes: session.readable,
            session_window: window,
            session_credit: session.window.credit(),
            session_received: session.window.received(),
            window_utilisation: session.buffered as f64 / window as f64,
            session_window_growths: session.window.growths(),
            open_streams: session.open_streams,
            gaps,
            gap_timeouts: session.gap_timeouts,
            stream_backpressure: stream_bp,
            session_backpressure: session.backpressure.stats(session.clock),
            events_pending: session.events.len(),
            events_dropped: session.events.dropped(),
        };
        drop(session);
        publish_counters(&stats);
        stats
    }

    /// One stream's buffer, window, gap and backpressure view. `None` if unknown.
    pub fn stream_stats(&self, id: StreamId) -> Option<StreamStats> {
        let now = self.session.lock().clock;
        let shard = self.streams.shard(id).read();
        let st = shard.get(&id)?.lock();
        Some(StreamStats {
            buffered_bytes: st.buffer.buffered_bytes(),
            readable_bytes: st.buffer.readable_bytes(),
            read_position: st.buffer.read_position(),
            highest_received: st.buffer.highest_received(),
            final_size: st.buffer.final_size(),
            credit: st.window.credit(),
            window: st.window.window(),
            counters: st.buffer.counters(),
            gaps: st.buffer.gap_stats(now),
            backpressure: st.backpressure.reason(),
        })
    }
}

/// Publishes session counters through the `metrics` facade (absolute values; called
/// from `stats` and timeouts, not per segment).
fn publish_counters(stats: &PresentationStats) {
    metrics::counter!("kwik_presentation_bytes_received_total").absolute(stats.bytes_received);
    metrics::counter!("kwik_presentation_bytes_read_total").absolute(stats.bytes_read);
    metrics::counter!("kwik_presentation_duplicate_bytes_total").absolute(stats.duplicate_bytes);
    metrics::counter!("kwik_presentation_discarded_bytes_total").absolute(stats.discarded_bytes);
    metrics::counter!("kwik_presentation_out_of_order_segments_total")
        .absolute(stats.out_of_order_segments);
    metrics::counter!("kwik_presentation_gap_timeouts_total").absolute(stats.gap_timeouts);
    metrics::counter!("kwik_presentation_rejected_writes_total").absolute(stats.rejected_writes);
    metrics::counter!("kwik_presentation_backpressure_activations_total", "scope" => "session")
        .absolute(stats.session_backpressure.activations);
    metrics::counter!("kwik_presentation_backpressure_activations_total", "scope" => "stream")
        .absolute(stats.stream_backpressure.activations);
    metrics::gauge!("kwik_presentation_gaps").set(stats.gaps as f64);
    metrics::gauge!("kwik_presentation_buffered_bytes").set(stats.buffered_bytes as f64);
    metrics::gauge!("kwik_presentation_window_utilisation").set(stats.window_utilisation);
    metrics::gauge!("kwik_presentation_open_streams").set(stats.open_streams as f64);
}

/// Publishes window gauges (called at session credit raises, every half window).
fn publish_gauges(session: &Session) {
    let window = session.window.window() as f64;
    metrics::gauge!("kwik_presentation_session_window_bytes").set(window);
    metrics::gauge!("kwik_presentation_buffered_bytes").set(session.buffered as f64);
    metrics::gauge!("kwik_presentation_window_utilisation").set(session.buffered as f64 / window);
}

impl fmt::Debug for Presentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let session = self.session.lock();
        f.debug_struct("Presentation")
            .field("open_streams", &session.open_streams)
            .field("buffered", &session.buffered)
            .field("session_credit", &session.window.credit())
            .finish_non_exhaustive()
    }
}

/// Wakes a parked thread (for [`Presentation::read_blocking`]).
#[cfg(not(all(loom, test)))]
struct ThreadWaker(std::thread::Thread);

#[cfg(not(all(loom, test)))]
impl std::task::Wake for ThreadWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::Fraction;
    use std::sync::Arc;
    use std::task::Waker;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    fn chunk(len: usize, seed: u8) -> Bytes {
        (0..len)
            .map(|i| (i as u8).wrapping_add(seed))
            .collect::<Vec<_>>()
            .into()
    }

    fn read_all(p: &Presentation, id: StreamId) -> Vec<u8> {
        let mut out = Vec::new();
        while let Poll::Ready(Ok(Some(b))) = p.poll_read_chunk(id, usize::MAX, &mut cx()) {
            out.extend_from_slice(&b);
        }
        out
    }

    fn small(t: Instant) -> Presentation {
        let config = PresentationConfig::default()
            .session_window(1000)
            .max_session_window(1000)
            .stream_window(400)
            .max_stream_window(400)
            .gap_timeout(Duration::from_millis(100))
            .idle_stream_timeout(Duration::from_secs(1));
        Presentation::new(config, t)
    }

    #[test]
    fn open_write_read_fin() {
        let t = Instant::now();
        let p = small(t);
        let id = StreamId::new(0);
        assert_eq!(p.open_stream(id), Ok(400));
        assert_eq!(p.open_stream(id), Ok(400), "idempotent");
        let o = p.write(id, 10, chunk(10, 10), true, t).unwrap();
        assert_eq!(
            o,
            WriteOutcome {
                new_bytes: 10,
                duplicate_bytes: 0
            }
        );
        assert!(p.poll_read_chunk(id, 100, &mut cx()).is_pending());
        let o = p.write(id, 0, chunk(15, 0), false, t).unwrap();
        assert_eq!(
            o,
            WriteOutcome {
                new_bytes: 10,
                duplicate_bytes: 5
            }
        );
        assert_eq!(
            p.received_ranges(id),
            Some(std::iter::once(0..20).collect())
        );
        assert_eq!(read_all(&p, id), chunk(20, 0).to_vec());
        assert_eq!(p.poll_read_chunk(id, 100, &mut cx()), Poll::Ready(Ok(None)));
        let mut buf = [0u8; 8];
        assert_eq!(p.poll_read(id, &mut buf, &mut cx()), Poll::Ready(Ok(0)));
        let s = p.stats();
        assert_eq!(
            (s.bytes_received, s.bytes_read, s.duplicate_bytes),
            (20, 20, 5)
        );
    }

    /// Counts wakes, to check the reader is woken.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn late_fin_wakes_the_reader() {
        let t = Instant::now();
        let p = small(t);
        let id = StreamId::new(0);
        p.open_stream(id).unwrap();
        p.write(id, 0, chunk(10, 0), false, t).unwrap();
        assert_eq!(read_all(&p, id).len(), 10);
        let counter = Arc::new(CountingWaker(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        assert!(p.poll_read_chunk(id, 10, &mut cx).is_pending());
        // An empty FIN segment (or a duplicate carrying the FIN) ends the stream.
        p.write(id, 10, Bytes::new(), true, t).unwrap();
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(p.poll_read_chunk(id, 10, &mut cx), Poll::Ready(Ok(None)));

        let id2 = StreamId::new(4);
        p.open_stream(id2).unwrap();
        p.write(id2, 0, chunk(10, 0), false, t).unwrap();
        assert_eq!(read_all(&p, id2).len(), 10);
        assert!(p.poll_read_chunk(id2, 10, &mut cx).is_pending());
        p.write(id2, 0, chunk(10, 0), true, t).unwrap();
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(p.poll_read_chunk(id2, 10, &mut cx), Poll::Ready(Ok(None)));
    }

    #[test]
    fn event_consumer_is_woken() {
        let t = Instant::now();
        let p = small(t);
        let id = StreamId::new(0);
        p.open_stream(id).unwrap();
        let counter = Arc::new(CountingWaker(std::sync::atomic::AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        assert!(p.poll_event(&mut cx).is_pending());
        p.write(id, 0, chunk(350, 0), false, t).unwrap();
        assert_eq!(counter.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(matches!(
            p.poll_event(&mut cx),
            Poll::Ready(PresentationEvent::Backpressure { .. })
        ));
        assert!(p.poll_event(&mut cx).is_pending());
    }

    #[test]
    fn protocol_violations_are_typed() {
        let t = Instant::now();
        let p = small(t);
        let id = StreamId::new(4);
        assert_eq!(
            p.write(id, 0, chunk(1, 0), false, t),
            Err(WriteError::UnknownStream(id))
        );
        p.open_stream(id).unwrap();
        assert!(matches!(
            p.write(id, 390, chunk(20, 0), false, t),
            Err(WriteError::FlowControl {
                limit: 400,
                end: 410,
                ..
            })
        ));
        p.write(id, 0, chunk(10, 0), true, t).unwrap();
        assert!(matches!(
            p.write(id, 0, chunk(11, 0), false, t),
            Err(WriteError::BeyondFinalSize { final_size: 10, .. })
        ));
        assert!(matches!(
            p.reset(id, 12, 0, t),
            Err(WriteError::FinalSizeChanged {
                previous: 10,
                new: 12,
                ..
            })
        ));
        assert!(matches!(
            p.write(id, u64::MAX - 1, chunk(10, 0), false, t),
            Err(WriteError::OffsetOverflow)
        ));
        assert_eq!(
            p.open_stream(StreamId::new(u64::MAX)),
            Err(OpenError::InvalidId(StreamId::new(u64::MAX)))
        );
        assert_eq!(p.stats().rejected_writes, 5);
        assert_eq!(p.stats().buffered_bytes, 10);
    }

    #[test]
    fn session_flow_control_spans_streams() {
        let t = Instant::now();
        let p = small(t);
        let ids: Vec<_> = (0..4)
            .map(|i| StreamId::from_parts(i, crate::Side::Client, crate::Dir::Uni))
            .collect();
        for &id in &ids {
            p.open_stream(id).unwrap();
        }
        for &id in &ids[..2] {
            p.write(id, 0, chunk(400, 0), false, t).unwrap();
        }
        p.write(ids[2], 0, chunk(200, 0), false, t).unwrap();
        // 1000 received: the session window is exhausted.
        assert!(matches!(
            p.write(ids[3], 0, chunk(1, 0), false, t),
            Err(WriteError::SessionFlowControl {
                limit: 1000,
                received: 1001
            })
        ));
        // Reading releases credit once half the window is consumed.
        assert_eq!(read_all(&p, ids[0]).len(), 400);
        assert_eq!(p.session_credit(), 1000);
        assert_eq!(read_all(&p, ids[2]).len(), 200);
        assert_eq!(p.session_credit(), 1600);
        let events = p.drain_events();
        assert!(events.contains(&PresentationEvent::SessionCredit { max_data: 1600 }));
        assert!(events.contains(&PresentationEvent::StreamCredit {
            stream: ids[0],
            max_offset: 800
        }));
        p.write(ids[3], 0, chunk(1, 0), false, t).unwrap();
    }

    #[test]
    fn backpressure_withholds_credit_with_hysteresis() {
        let t = Instant::now();
        let p = small(t);
        let id = StreamId::new(0);
        p.open_stream(id).unwrap();
        p.write(id, 0, chunk(300, 0), false, t).unwrap();
        let on = PresentationEvent::Backpressure {
            scope: BackpressureScope::Stream(id),
            state: BackpressureState::On(BackpressureReason::SlowReader),
        };
        assert_eq!(p.drain_events(), vec![on]);
        // Read 120 of 300: 180 buffered (45 %), below the off threshold (50 %).
        match p.poll_read_chunk(id, 120, &mut cx()) {
            Poll::Ready(Ok(Some(b))) => assert_eq!(b.len(), 120),
            other => panic!("unexpected {other:?}"),
        }
        let events = p.drain_events();
        assert!(events.contains(&PresentationEvent::Backpressure {
            scope: BackpressureScope::Stream(id),
            state: BackpressureState::Off,
        }));
        let s = p.stats();
        assert_eq!(s.stream_backpressure.activations, 1);
        assert_eq!(s.stream_backpressure.slow_reader, 1);

        // A hole in front of the data: reason is the gap.
        let g = StreamId::new(8);
        p.open_stream(g).unwrap();
        p.write(g, 10, chunk(300, 0), false, t).unwrap();
        assert!(p.drain_events().contains(&PresentationEvent::Backpressure {
            scope: BackpressureScope::Stream(g),
            state: BackpressureState::On(BackpressureReason::HeadOfLineGap),
        }));
    }

    #[test]
    fn gap_timeout_and_idle_cleanup() {
        let t = Instant::now();
        let p = small(t);
        let id = StreamId::new(0);
        p.open_stream(id).unwrap();
        p.write(id, 50, chunk(50, 0), true, t).unwrap();
        assert_eq!(p.next_deadline(), Some(t + Duration::from_millis(100)));
        p.handle_timeout(t + Duration::from_millis(50));
        assert!(
            p.drain_events()
                .iter()
                .all(|e| !matches!(e, PresentationEvent::GapTimeout { .. }))
        );
        p.handle_timeout(t + Duration::from_millis(100));
        assert_eq!(
            p.drain_events(),
            vec![PresentationEvent::GapTimeout {
                stream: id,
                gap: 0..50,
                age: Duration::from_millis(100)
            }]
        );
        assert_eq!(p.next_deadline(), Some(t + Duration::from_millis(200)));
        let later = t + Duration::from_millis(150);
        p.write(id, 0, chunk(50, 0), false, later).unwrap();
        assert_eq!(read_all(&p, id).len(), 100);
        assert_eq!(p.poll_read_chunk(id, 1, &mut cx()), Poll::Ready(Ok(None)));
        // Closed: removed after idle_stream_timeout; late duplicates are absorbed.
        assert_eq!(p.next_deadline(), Some(later + Duration::from_secs(1)));
        p.handle_timeout(later + Duration::from_secs(1));
        assert_eq!(p.stream_credit(id), None);
        assert_eq!(
            p.write(id, 0, chunk(10, 0), false, later),
            Ok(WriteOutcome {
                new_bytes: 0,
                duplicate_bytes: 10
            })
        );
        assert_eq!(p.open_stream(id), Err(OpenError::Closed(id)));
        let s = p.stats();
        assert_eq!((s.open_streams, s.gap_timeouts, s.late_bytes), (0, 1, 10));
    }

    #[test]
    fn reset_stop_and_remove_release_window() {
        let t = Instant::now();
        let p = small(t);
        let (a, b, c) = (StreamId::new(0), StreamId::new(4), StreamId::new(8));
        for id in [a, b, c] {
            p.open_stream(id).unwrap();
            p.write(id, 0, chunk(200, 0), false, t).unwrap();
        }
        p.reset(a, 250, 42, t).unwrap();
        assert_eq!(
            p.poll_read_chunk(a, 10, &mut cx()),
            Poll::Ready(Err(ReadError::Reset { error_code: 42 }))
        );
        p.stop(b);
        assert_eq!(
            p.poll_read_chunk(b, 10, &mut cx()),
            Poll::Ready(Err(ReadError::Stopped))
        );
        let o = p.write(b, 150, chunk(100, 0), true, t).unwrap();
        assert_eq!(
            o,
            WriteOutcome {
                new_bytes: 50,
                duplicate_bytes: 50
            }
        );
        p.remove_stream(c);
        assert_eq!(
            p.poll_read_chunk(c, 10, &mut cx()),
            Poll::Ready(Err(ReadError::UnknownStream(c)))
        );
        let s = p.stats();
        assert_eq!(s.buffered_bytes, 0);
        assert_eq!(s.session_received, 250 + 250 + 200);
        assert_eq!(s.discarded_bytes, 200 + 200 + 50 + 200);
        // 700 released; credit is raised when half a window (500) was consumed since
        // the last raise: once, at 500 consumed.
        assert_eq!(s.session_credit, 500 + 1000);
    }

    #[test]
    fn blocking_read_times_out_and_wakes() {
        let t = Instant::now();
        let p = Arc::new(small(t));
        let id = StreamId::new(0);
        p.open_stream(id).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            p.read_blocking(id, &mut buf, Duration::from_millis(10)),
            Err(ReadError::TimedOut)
        );
        let writer = {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                p.write(id, 0, chunk(5, 1), true, Instant::now()).unwrap();
            })
        };
        assert_eq!(
            p.read_blocking(id, &mut buf, Duration::from_secs(20)),
            Ok(5)
        );
        assert_eq!(&buf[..5], &chunk(5, 1)[..]);
        assert_eq!(
            p.read_blocking(id, &mut buf, Duration::from_secs(20)),
            Ok(0)
        );
        writer.join().unwrap();
    }

    #[test]
    fn window_auto_tunes_when_reader_keeps_up() {
        let t = Instant::now();
        let config = PresentationConfig::default()
            .session_window(1000)
            .max_session_window(8000)
            .stream_window(1000)
            .max_stream_window(8000)
            .backpressure_thresholds(Fraction::new(1.0).unwrap(), Fraction::new(1.0).unwrap());
        let p = Presentation::new(config, t);
        let id = StreamId::new(0);
        p.open_stream(id).unwrap();
        let mut offset = 0;
        for _ in 0..20 {
            p.write(id, offset, chunk(500, 0), false, t).unwrap();
            offset += 500;
            assert_eq!(read_all(&p, id).len(), 500);
        }
        let s = p.stats();
        assert!(s.session_window_growths >= 2, "{s:?}");
        assert!(s.session_window > 1000);
        assert!(p.stream_stats(id).unwrap().window > 1000);
    }

    /// Stream-window auto-tuning on an explicit clock, one step a second (so the
    /// "two raises within 2 RTT" test never fires). Each step the sender sends
    /// 100-byte pieces up to its credit (or 100 bytes short of it) while a reader
    /// that keeps up lags 60 % of a window behind (bytes behind a gap), then reads
    /// what it can; a slow reader reads only 100 bytes a step.
    #[test]
    fn stream_window_grows_only_when_the_sender_runs_out_and_the_reader_keeps_up() {
        #[derive(Clone, Copy, Debug)]
        enum Step {
            /// The sender uses the whole credit; then the reader catches up.
            Exhausted,
            /// The sender stops 100 bytes short of its credit; the reader catches up.
            CreditLeft,
            /// The sender uses the whole credit; the reader reads 100 bytes a step.
            SlowReader,
        }
        let config = PresentationConfig::default()
            .session_window(1 << 20)
            .max_session_window(1 << 20)
            .stream_window(1000)
            .max_stream_window(8000);
        for (step, want) in [
            (Step::Exhausted, 8000),
            (Step::CreditLeft, 1000),
            (Step::SlowReader, 1000),
        ] {
            let t = Instant::now();
            let p = Presentation::new(config.clone(), t);
            let id = StreamId::new(0);
            p.open_stream(id).unwrap();
            let (mut sent, mut read) = (0u64, 0u64);
            // Reads until `read` reaches `max` or nothing more is readable.
            let read_up_to = |read: &mut u64, max: u64| {
                while *read < max {
                    match p.poll_read_chunk(id, (max - *read) as usize, &mut cx()) {
                        Poll::Ready(Ok(Some(b))) => *read += b.len() as u64,
                        _ => break,
                    }
                }
            };
            for second in 1..=10 {
                let now = t + Duration::from_secs(second);
                let s = p.stream_stats(id).unwrap();
                let end = match step {
                    Step::CreditLeft => s.credit - 100,
                    Step::Exhausted | Step::SlowReader => s.credit,
                };
                while sent < end {
                    let len = (end - sent).min(100);
                    p.write(id, sent, chunk(len as usize, 0), false, now)
                        .unwrap();
                    sent += len;
                    if !matches!(step, Step::SlowReader) {
                        read_up_to(&mut read, sent.saturating_sub(s.window * 6 / 10));
                    }
                }
                match step {
                    Step::SlowReader => {
                        let target = read + 100;
                        read_up_to(&mut read, target);
                    }
                    Step::Exhausted | Step::CreditLeft => {
                        // In two parts half a second apart, so two raises in one
                        // catch-up never look like "two raises within 2 RTT".
                        read_up_to(&mut read, sent - s.window / 2);
                        p.handle_timeout(now + Duration::from_millis(500));
                        read_up_to(&mut read, sent);
                    }
                }
            }
            let s = p.stream_stats(id).unwrap();
            assert_eq!(s.window, want, "{step:?}: {s:?}");
        }
    }

    #[test]
    fn concurrent_writers_and_reader() {
        let t = Instant::now();
        let p = Arc::new(Presentation::new(PresentationConfig::default(), t));
        let ids: Vec<_> = (0..4).map(StreamId::new).collect();
        for &id in &ids {
            p.open_stream(id).unwrap();
        }
        let data = chunk(300_000, 3);
        let writers: Vec<_> = (0..2)
            .map(|path| {
                let p = Arc::clone(&p);
                let data = data.clone();
                let ids = ids.clone();
                std::thread::spawn(move || {
                    let n = data.len().div_ceil(1000);
                    for i in (0..n).rev() {
                        let start = i * 1000;
                        let end = (start + 1000).min(data.len());
                        for &id in &ids {
                            // Path 0 sends everything, path 1 only even chunks: duplicates.
                            if path == 0 || i % 2 == 0 {
                                p.write(
                                    id,
                                    start as u64,
                                    data.slice(start..end),
                                    end == data.len(),
                                    Instant::now(),
                                )
                                .unwrap();
                            }
                        }
                    }
                })
            })
            .collect();
        for &id in &ids {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 7000];
            loop {
                match p
                    .read_blocking(id, &mut buf, Duration::from_secs(20))
                    .unwrap()
                {
                    0 => break,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
            assert_eq!(got, data.to_vec());
        }
        for w in writers {
            w.join().unwrap();
        }
        let s = p.stats();
        assert_eq!(s.bytes_received, 4 * 300_000);
        assert_eq!(s.bytes_read, 4 * 300_000);
        assert_eq!(s.buffered_bytes, 0);
    }
}
