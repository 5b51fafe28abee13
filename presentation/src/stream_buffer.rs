//! Gap-aware reassembly buffer of one logical stream.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use crate::id::VARINT_LIMIT;
use crate::{InsertError, RangeSet};

/// Default cap on separately stored segments per stream (see
/// [`StreamBuffer::set_max_segments`]).
pub const DEFAULT_MAX_SEGMENTS: usize = 1 << 16;

/// Reassembles one logical stream from `(offset, Bytes)` segments received in any
/// order, possibly overlapping or duplicated.
///
/// Ownership: the buffer keeps the received [`Bytes`] as they are (slices of the
/// sender's packets, no copy on insert); overlaps are trimmed with `slice`. Reads hand
/// those same `Bytes` (or slices of them) to the caller. Only when the stream holds
/// more than [`set_max_segments`](Self::set_max_segments) separate segments does it
/// copy touching segments together, to bound bookkeeping per buffered byte.
///
/// The buffer enforces the stream's limits: a segment ending beyond the granted
/// limit or beyond a known final size, or a FIN/reset changing a known final size,
/// is an [`InsertError`] and leaves the buffer untouched.
#[derive(Debug)]
pub struct StreamBuffer {
    /// Bytes handed to the reader (or discarded by stop/reset).
    read_pos: u64,
    /// Contiguous data from `read_pos` to `contiguous_end`, in order.
    contiguous: VecDeque<Bytes>,
    /// Every byte below this offset has been received.
    contiguous_end: u64,
    /// Out-of-order segments above `contiguous_end`: disjoint, keyed by offset.
    pending: BTreeMap<u64, Bytes>,
    pending_bytes: u64,
    /// Highest offset received (end of the furthest segment, or reset final size).
    highest: u64,
    /// Granted max offset.
    limit: u64,
    final_size: Option<u64>,
    state: RecvState,
    /// Ranges above `contiguous_end` received after a stop (data not kept).
    stopped_ranges: RangeSet,
    max_segments: usize,
    /// Since when the current head-of-line gap has been open.
    head_gap_since: Option<Instant>,
    counters: BufferCounters,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecvState {
    Receiving,
    Reset { error_code: u64, seen: bool },
    Stopped,
}

/// Running totals of one [`StreamBuffer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BufferCounters {
    /// Bytes received for the first time.
    pub new_bytes: u64,
    /// Bytes received again (overlaps and duplicates), trimmed away.
    pub duplicate_bytes: u64,
    /// Bytes dropped unread because of a reset or a stop.
    pub discarded_bytes: u64,
    /// Segments that arrived beyond the contiguous end (a gap before them).
    pub out_of_order_segments: u64,
    /// Segments accepted in total.
    pub segments: u64,
}

/// What an accepted segment did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InsertOutcome {
    /// Bytes received for the first time.
    pub new_bytes: u64,
    /// Bytes already received before (trimmed, not stored twice).
    pub duplicate_bytes: u64,
    /// Growth of the highest received offset (flow-control consumption).
    pub highest_delta: u64,
}

/// Result of a read from a [`StreamBuffer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamRead<T> {
    /// Data (a chunk, or a count of bytes copied).
    Data(T),
    /// Nothing readable yet: no data at the read position (possibly a gap).
    Blocked,
    /// The read position reached the final size (FIN).
    Finished,
    /// The stream was reset by the peer.
    Reset {
        /// Application error code from the peer.
        error_code: u64,
    },
    /// The stream was stopped by the application.
    Stopped,
}

/// Gap observations of one stream (see [`StreamBuffer::gap_stats`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GapStats {
    /// Number of holes between the contiguous end and the highest received offset.
    pub gap_count: usize,
    /// The hole the reader waits on, if data lies beyond it.
    pub next_gap: Option<Range<u64>>,
    /// The widest hole.
    pub largest_gap: Option<Range<u64>>,
    /// How long the head-of-line hole has been open.
    pub oldest_gap_age: Option<Duration>,
}

impl BufferCounters {
    /// Adds `other`'s counts to `self`.
    pub fn absorb(&mut self, other: &BufferCounters) {
        self.new_bytes += other.new_bytes;
        self.duplicate_bytes += other.duplicate_bytes;
        self.discarded_bytes += other.discarded_bytes;
        self.out_of_order_segments += other.out_of_order_segments;
        self.segments += other.segments;
    }
}

impl StreamBuffer {
    /// An empty buffer that accepts data up to offset `limit`.
    pub fn new(limit: u64) -> Self {
        Self {
            read_pos: 0,
            contiguous: VecDeque::new(),
            contiguous_end: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            highest: 0,
            limit,
            final_size: None,
            state: RecvState::Receiving,
            stopped_ranges: RangeSet::new(),
            max_segments: DEFAULT_MAX_SEGMENTS,
            head_gap_since: None,
            counters: BufferCounters::default(),
        }
    }

    /// Caps the number of separately stored segments. Above it the buffer first
    /// copies touching segments together; if they still exceed the cap, inserts fail
    /// with [`InsertError::TooFragmented`]. Default [`DEFAULT_MAX_SEGMENTS`] (65 536):
    /// enough for 75 MB of 1200-byte datagrams, at ~64 bytes of bookkeeping each.
    pub fn set_max_segments(&mut self, max: usize) {
        self.max_segments = max.max(1);
    }

    /// Raises the granted limit (max offset). A lower value is ignored: credit
    /// never shrinks.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = self.limit.max(limit);
    }

    /// The granted max offset.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Checks a segment against the limits without storing it. On success returns
    /// by how much the highest received offset would grow. May defragment. A segment
    /// that reaches the contiguous end is never refused as too fragmented: it can
    /// only reduce the number of stored segments.
    pub fn prepare(&mut self, offset: u64, len: u64, fin: bool) -> Result<u64, InsertError> {
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= VARINT_LIMIT)
            .ok_or(InsertError::OffsetOverflow { offset, len })?;
        if let Some(final_size) = self.final_size {
            if end > final_size {
                return Err(InsertError::BeyondFinalSize { final_size, end });
            }
            if fin && end != final_size {
                return Err(InsertError::FinalSizeChanged {
                    previous: final_size,
                    new: end,
                });
            }
        } else if fin && end < self.highest {
            return Err(InsertError::FinalSizeBelowReceived {
                final_size: end,
                highest: self.highest,
            });
        }
        if !self.is_reset() && end > self.limit {
            return Err(InsertError::FlowControl {
                limit: self.limit,
                end,
            });
        }
        if self.state == RecvState::Receiving
            && self.segment_count() >= self.max_segments
            && offset > self.contiguous_end
        {
            self.defragment();
            let segments = self.segment_count();
            if segments >= self.max_segments {
                return Err(InsertError::TooFragmented { segments });
            }
        }
        Ok(end.saturating_sub(self.highest))
    }

    /// Accepts a segment from the network. `now` dates a gap the segment may open.
    pub fn insert(
        &mut self,
        offset: u64,
        data: Bytes,
        fin: bool,
        now: Instant,
    ) -> Result<InsertOutcome, InsertError> {
        self.prepare(offset, data.len() as u64, fin)?;
        Ok(self.insert_prepared(offset, data, fin, now))
    }

    /// Stores a segment that [`prepare`](Self::prepare) accepted.
    pub(crate) fn insert_prepared(
        &mut self,
        offset: u64,
        mut data: Bytes,
        fin: bool,
        now: Instant,
    ) -> InsertOutcome {
        let len = data.len() as u64;
        let end = offset + len;
        let mut outcome = InsertOutcome {
            highest_delta: end.saturating_sub(self.highest),
            ..InsertOutcome::default()
        };
        self.highest = self.highest.max(end);
        if fin {
            self.final_size = Some(end);
        }
        self.counters.segments += 1;
        match self.state {
            RecvState::Reset { .. } => {
                // Data after a reset is dropped; the reset already accounted for it.
                outcome.duplicate_bytes = len;
            }
            RecvState::Stopped => {
                let fresh = if end > self.contiguous_end {
                    self.stopped_ranges
                        .insert(offset.max(self.contiguous_end)..end)
                } else {
                    0
                };
                while let Some(first) = self.stopped_ranges.first() {
                    if first.start > self.contiguous_end {
                        break;
                    }
                    self.contiguous_end = self.contiguous_end.max(first.end);
                    self.stopped_ranges.pop_first();
                }
                self.read_pos = self.contiguous_end;
                outcome.new_bytes = fresh;
                outcome.duplicate_bytes = len - fresh;
                self.counters.discarded_bytes += fresh;
            }
            RecvState::Receiving => {
                // An empty segment carries nothing to store (its FIN, if any, is
                // recorded above); stored, it would be a zero-length entry that
                // a later overlapping insert could never step past.
                if end <= self.contiguous_end || len == 0 {
                    outcome.duplicate_bytes = len;
                } else {
                    let mut offset = offset;
                    if offset < self.contiguous_end {
                        let cut = self.contiguous_end - offset;
                        data.advance(cut as usize);
                        outcome.duplicate_bytes += cut;
                        offset = self.contiguous_end;
                    }
                    let fast = offset == self.contiguous_end
                        && self
                            .pending
                            .first_key_value()
                            .is_none_or(|(&k, _)| end <= k);
                    if fast {
                        // In-order append: the common case, no map operations.
                        outcome.new_bytes += end - offset;
                        self.contiguous_end = end;
                        self.contiguous.push_back(data);
                        if !self.pending.is_empty() {
                            self.promote();
                            self.head_gap_since = if self.pending.is_empty() {
                                None
                            } else {
                                Some(now)
                            };
                        }
                    } else {
                        if offset > self.contiguous_end {
                            self.counters.out_of_order_segments += 1;
                        }
                        let (fresh, dup) = self.insert_pending(offset, data);
                        outcome.new_bytes += fresh;
                        outcome.duplicate_bytes += dup;
                        let before = self.contiguous_end;
                        self.promote();
                        if self.pending.is_empty() {
                            self.head_gap_since = None;
                        } else if self.contiguous_end != before || self.head_gap_since.is_none() {
                            self.head_gap_since = Some(now);
                        }
                    }
                }
            }
        }
        self.counters.new_bytes += outcome.new_bytes;
        self.counters.duplicate_bytes += outcome.duplicate_bytes;
        outcome
    }

    /// Inserts `data` at `offset >= contiguous_end` into the out-of-order map,
    /// trimming what is already there. Returns (new bytes, duplicate bytes).
    fn insert_pending(&mut self, mut offset: u64, mut data: Bytes) -> (u64, u64) {
        let end = offset + data.len() as u64;
        // Common case: nothing stored overlaps [offset, end). The last segment
        // starting before `end` decides it, since stored segments are disjoint.
        let clear = self
            .pending
            .range(..end)
            .next_back()
            .is_none_or(|(&k, v)| k + v.len() as u64 <= offset);
        if clear {
            self.pending_bytes += end - offset;
            self.pending.insert(offset, data);
            return (end - offset, 0);
        }
        let (mut fresh, mut dup) = (0, 0);
        if let Some((&k, v)) = self.pending.range(..=offset).next_back() {
            let prev_end = k + v.len() as u64;
            if prev_end >= end {
                return (0, end - offset);
            }
            if prev_end > offset {
                let cut = prev_end - offset;
                data.advance(cut as usize);
                dup += cut;
                offset = prev_end;
            }
        }
        while !data.is_empty() {
            let next = self
                .pending
                .range(offset..end)
                .next()
                .map(|(&k, v)| (k, v.len() as u64));
            match next {
                None => {
                    fresh += data.len() as u64;
                    self.pending_bytes += data.len() as u64;
                    self.pending.insert(offset, data);
                    break;
                }
                Some((k, l)) => {
                    if k > offset {
                        let piece = data.split_to((k - offset) as usize);
                        fresh += piece.len() as u64;
                        self.pending_bytes += piece.len() as u64;
                        self.pending.insert(offset, piece);
                    }
                    let skip = (k + l).min(end) - k;
                    data.advance(skip as usize);
                    dup += skip;
                    offset = k + skip;
                }
            }
        }
        (fresh, dup)
    }

    /// Moves out-of-order segments that now touch the contiguous end into the
    /// contiguous queue.
    fn promote(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.contiguous_end {
                break;
            }
            let data = entry.remove();
            self.pending_bytes -= data.len() as u64;
            self.contiguous_end += data.len() as u64;
            self.contiguous.push_back(data);
        }
    }

    fn segment_count(&self) -> usize {
        self.contiguous.len() + self.pending.len()
    }

    /// Copies runs of touching segments into single buffers.
    fn defragment(&mut self) {
        if self.contiguous.len() > 1 {
            let mut joined =
                BytesMut::with_capacity((self.contiguous_end - self.read_pos) as usize);
            for chunk in self.contiguous.drain(..) {
                joined.extend_from_slice(&chunk);
            }
            self.contiguous.push_back(joined.freeze());
        }
        let old = std::mem::take(&mut self.pending);
        let mut run: Option<(u64, BytesMut)> = None;
        for (k, v) in old {
            match &mut run {
                Some((start, buf)) if *start + buf.len() as u64 == k => buf.extend_from_slice(&v),
                _ => {
                    if let Some((start, buf)) = run.take() {
                        self.pending.insert(start, buf.freeze());
                    }
                    let mut buf = BytesMut::with_capacity(v.len());
                    buf.extend_from_slice(&v);
                    run = Some((k, buf));
                }
            }
        }
        if let Some((start, buf)) = run {
            self.pending.insert(start, buf.freeze());
        }
    }

    /// Takes up to `max_len` contiguous bytes at the read position, without copying.
    /// A `max_len` of 0 is treated as 1.
    pub fn read_chunk(&mut self, max_len: usize) -> StreamRead<Bytes> {
        match self.state {
            RecvState::Reset { error_code, .. } => {
                self.state = RecvState::Reset {
                    error_code,
                    seen: true,
                };
                return StreamRead::Reset { error_code };
            }
            RecvState::Stopped => return StreamRead::Stopped,
            RecvState::Receiving => {}
        }
        let max_len = max_len.max(1);
        let Some(front) = self.contiguous.front_mut() else {
            return self.idle_read();
        };
        let chunk = if front.len() <= max_len {
            // The queue holds no empty Bytes, so the front is non-empty here.
            self.contiguous.pop_front().unwrap_or_default()
        } else {
            front.split_to(max_len)
        };
        self.read_pos += chunk.len() as u64;
        StreamRead::Data(chunk)
    }

    /// Copies contiguous bytes at the read position into `buf` (as many as fit).
    pub fn read(&mut self, buf: &mut [u8]) -> StreamRead<usize> {
        match self.state {
            RecvState::Reset { error_code, .. } => {
                self.state = RecvState::Reset {
                    error_code,
                    seen: true,
                };
                return StreamRead::Reset { error_code };
            }
            RecvState::Stopped => return StreamRead::Stopped,
            RecvState::Receiving => {}
        }
        if buf.is_empty() {
            return StreamRead::Data(0);
        }
        let mut copied = 0;
        while copied < buf.len() {
            let Some(front) = self.contiguous.front_mut() else {
                break;
            };
            let n = front.len().min(buf.len() - copied);
            buf[copied..copied + n].copy_from_slice(&front[..n]);
            copied += n;
            if n == front.len() {
                self.contiguous.pop_front();
            } else {
                front.advance(n);
            }
        }
        if copied == 0 {
            return self.idle_read();
        }
        self.read_pos += copied as u64;
        StreamRead::Data(copied)
    }

    fn idle_read<T>(&self) -> StreamRead<T> {
        if self.final_size == Some(self.read_pos) {
            StreamRead::Finished
        } else {
            StreamRead::Blocked
        }
    }

    /// The peer reset the stream at `final_size`: buffered data is discarded and
    /// reads report the reset. Returns by how much the highest received offset grew
    /// (the final size counts against flow control). A reset after the reader saw
    /// the whole stream, or a repeated reset, changes nothing.
    pub fn reset(&mut self, final_size: u64, error_code: u64) -> Result<u64, InsertError> {
        if final_size > VARINT_LIMIT {
            return Err(InsertError::OffsetOverflow {
                offset: final_size,
                len: 0,
            });
        }
        if let Some(previous) = self.final_size {
            if previous != final_size {
                return Err(InsertError::FinalSizeChanged {
                    previous,
                    new: final_size,
                });
            }
        } else if final_size < self.highest {
            return Err(InsertError::FinalSizeBelowReceived {
                final_size,
                highest: self.highest,
            });
        }
        if !self.is_reset() && final_size > self.limit {
            return Err(InsertError::FlowControl {
                limit: self.limit,
                end: final_size,
            });
        }
        let delta = final_size.saturating_sub(self.highest);
        self.highest = self.highest.max(final_size);
        self.final_size = Some(final_size);
        if matches!(self.state, RecvState::Reset { .. }) || self.is_finished() {
            return Ok(delta);
        }
        self.discard_buffered();
        self.state = RecvState::Reset {
            error_code,
            seen: false,
        };
        Ok(delta)
    }

    /// The application will not read any more: buffered data is dropped; later
    /// segments are only tracked (for acknowledgements) and discarded. Returns the
    /// number of buffered bytes dropped.
    pub fn stop(&mut self) -> u64 {
        if self.state != RecvState::Receiving {
            return 0;
        }
        self.stopped_ranges = self
            .pending
            .iter()
            .map(|(&k, v)| k..k + v.len() as u64)
            .collect();
        let dropped = self.discard_buffered();
        self.state = RecvState::Stopped;
        dropped
    }

    fn discard_buffered(&mut self) -> u64 {
        let dropped = self.buffered_bytes();
        self.contiguous.clear();
        self.pending.clear();
        self.pending_bytes = 0;
        self.read_pos = self.contiguous_end;
        self.head_gap_since = None;
        self.counters.discarded_bytes += dropped;
        dropped
    }

    /// Offset of the next byte the reader gets (bytes read or discarded so far).
    pub fn read_position(&self) -> u64 {
        self.read_pos
    }

    /// Every byte below this offset has been received.
    pub fn contiguous_end(&self) -> u64 {
        self.contiguous_end
    }

    /// Highest offset received (or the reset's final size).
    pub fn highest_received(&self) -> u64 {
        self.highest
    }

    /// The final size, once a FIN or reset announced it.
    pub fn final_size(&self) -> Option<u64> {
        self.final_size
    }

    /// Bytes stored and not yet read.
    pub fn buffered_bytes(&self) -> u64 {
        (self.contiguous_end - self.read_pos) + self.pending_bytes
    }

    /// Bytes the reader can take right now (before the first gap).
    pub fn readable_bytes(&self) -> u64 {
        self.contiguous_end - self.read_pos
    }

    /// Whether the reader consumed everything up to the final size.
    pub fn is_finished(&self) -> bool {
        self.state == RecvState::Receiving && self.final_size == Some(self.read_pos)
    }

    /// Whether the stream was reset by the peer.
    pub fn is_reset(&self) -> bool {
        matches!(self.state, RecvState::Reset { .. })
    }

    /// Whether the application stopped the stream.
    pub fn is_stopped(&self) -> bool {
        self.state == RecvState::Stopped
    }

    /// Whether nothing more can arrive that anyone will read: finished (FIN read),
    /// reset (and the reader was told), or stopped with every byte up to the final
    /// size seen.
    pub fn is_closed(&self) -> bool {
        match self.state {
            RecvState::Receiving => self.is_finished(),
            RecvState::Reset { seen, .. } => seen,
            RecvState::Stopped => self.final_size == Some(self.contiguous_end),
        }
    }

    /// Running totals.
    pub fn counters(&self) -> BufferCounters {
        self.counters
    }

    /// Byte ranges received so far (read or buffered), for acknowledgements.
    pub fn received_ranges(&self) -> RangeSet {
        let mut set = RangeSet::new();
        match self.state {
            RecvState::Reset { .. } => {
                set.insert(0..self.highest);
            }
            RecvState::Stopped => {
                set = self.stopped_ranges.clone();
                set.insert(0..self.contiguous_end);
            }
            RecvState::Receiving => {
                set.insert(0..self.contiguous_end);
                for (&k, v) in &self.pending {
                    set.insert(k..k + v.len() as u64);
                }
            }
        }
        set
    }

    /// Holes between the contiguous end and the highest received offset, in order.
    pub fn gaps(&self) -> Vec<Range<u64>> {
        let mut gaps = Vec::new();
        let mut cursor = self.contiguous_end;
        let starts = self
            .pending
            .iter()
            .map(|(&k, v)| (k, k + v.len() as u64))
            .chain(self.stopped_ranges.iter().map(|r| (r.start, r.end)));
        for (s, e) in starts {
            if s > cursor {
                gaps.push(cursor..s);
            }
            cursor = cursor.max(e);
        }
        gaps
    }

    /// The hole the reader waits on, if data lies beyond it.
    pub fn next_gap(&self) -> Option<Range<u64>> {
        self.pending
            .first_key_value()
            .map(|(&k, _)| self.contiguous_end..k)
    }

    /// Since when the head-of-line hole has been open (reset whenever the contiguous
    /// end advances past part of it).
    pub fn gap_since(&self) -> Option<Instant> {
        self.head_gap_since
    }

    /// Gap count, next gap, largest gap and head-of-line gap age at `now`.
    pub fn gap_stats(&self, now: Instant) -> GapStats {
        let gaps = self.gaps();
        GapStats {
            gap_count: gaps.len(),
            next_gap: self.next_gap(),
            largest_gap: gaps.iter().max_by_key(|g| g.end - g.start).cloned(),
            oldest_gap_age: self
                .head_gap_since
                .map(|since| now.saturating_duration_since(since)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(range: Range<u64>) -> Bytes {
        range.map(|i| i as u8).collect::<Vec<u8>>().into()
    }

    fn drain(buf: &mut StreamBuffer) -> Vec<u8> {
        let mut out = Vec::new();
        while let StreamRead::Data(chunk) = buf.read_chunk(usize::MAX) {
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[test]
    fn in_order_reads_without_copy() {
        let now = Instant::now();
        let mut b = StreamBuffer::new(1000);
        let data = bytes(0..10);
        let ptr = data.as_ptr();
        b.insert(0, data, false, now).unwrap();
        match b.read_chunk(100) {
            StreamRead::Data(chunk) => assert_eq!(chunk.as_ptr(), ptr, "same allocation"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(b.read_chunk(100), StreamRead::Blocked);
    }

    #[test]
    fn out_of_order_overlap_and_duplicates() {
        let now = Instant::now();
        let mut b = StreamBuffer::new(1000);
        let o = b.insert(10, bytes(10..20), false, now).unwrap();
        assert_eq!(
            (o.new_bytes, o.duplicate_bytes, o.highest_delta),
            (10, 0, 20)
        );
        assert_eq!(b.read_chunk(100), StreamRead::Blocked);
        assert_eq!(b.next_gap(), Some(0..10));
        let o = b.insert(5, bytes(5..25), false, now).unwrap();
        assert_eq!((o.new_bytes, o.duplicate_bytes), (10, 10));
        let o = b.insert(0, bytes(0..25), true, now).unwrap();
        assert_eq!((o.new_bytes, o.duplicate_bytes), (5, 20));
        assert_eq!(b.buffered_bytes(), 25);
        assert_eq!(drain(&mut b), (0..25).map(|i| i as u8).collect::<Vec<_>>());
        assert_eq!(b.read_chunk(1), StreamRead::Finished);
        assert!(b.is_closed());
        let c = b.counters();
        assert_eq!((c.new_bytes, c.duplicate_bytes), (25, 30));
    }

    /// Found by the garbage property test: an empty segment past the contiguous
    /// end used to be stored as a zero-length entry, and a later segment over
    /// the same offset looped forever trying to step past it.
    #[test]
    fn empty_segment_ahead_is_not_stored() {
        let now = Instant::now();
        let mut b = StreamBuffer::new(1000);
        let o = b.insert(10, Bytes::new(), false, now).unwrap();
        assert_eq!((o.new_bytes, o.duplicate_bytes), (0, 0));
        assert_eq!(b.buffered_bytes(), 0);
        let o = b.insert(5, bytes(5..20), false, now).unwrap();
        assert_eq!((o.new_bytes, o.duplicate_bytes), (15, 0));
        b.insert(0, bytes(0..5), false, now).unwrap();
        // An empty FIN ahead still sets the final size.
        b.insert(30, Bytes::new(), true, now).unwrap();
        b.insert(20, bytes(20..30), false, now).unwrap();
        assert_eq!(drain(&mut b), (0..30).map(|i| i as u8).collect::<Vec<_>>());
        assert_eq!(b.read_chunk(1), StreamRead::Finished);
    }

    #[test]
    fn limits_are_typed_errors() {
        let now = Instant::now();
        let mut b = StreamBuffer::new(100);
        assert_eq!(
            b.insert(90, bytes(0..20), false, now),
            Err(InsertError::FlowControl {
                limit: 100,
                end: 110
            })
        );
        b.insert(0, bytes(0..10), true, now).unwrap();
        assert_eq!(
            b.insert(5, bytes(0..10), false, now),
            Err(InsertError::BeyondFinalSize {
                final_size: 10,
                end: 15
            })
        );
        assert_eq!(
            b.insert(0, bytes(0..5), true, now),
            Err(InsertError::FinalSizeChanged {
                previous: 10,
                new: 5
            })
        );
        assert!(matches!(
            b.insert(u64::MAX, bytes(0..2), false, now),
            Err(InsertError::OffsetOverflow { .. })
        ));
        let mut c = StreamBuffer::new(100);
        c.insert(20, bytes(0..10), false, now).unwrap();
        assert_eq!(
            c.insert(0, bytes(0..10), true, now),
            Err(InsertError::FinalSizeBelowReceived {
                final_size: 10,
                highest: 30
            })
        );
        assert_eq!(c.buffered_bytes(), 10, "refused segments leave no trace");
    }

    #[test]
    fn reset_and_stop() {
        let now = Instant::now();
        let mut b = StreamBuffer::new(100);
        b.insert(0, bytes(0..10), false, now).unwrap();
        assert_eq!(b.reset(50, 7), Ok(40));
        assert_eq!(b.read_chunk(10), StreamRead::Reset { error_code: 7 });
        assert_eq!(b.buffered_bytes(), 0);
        assert!(b.reset(60, 7).is_err());

        let mut s = StreamBuffer::new(100);
        s.insert(0, bytes(0..10), false, now).unwrap();
        s.insert(20, bytes(20..30), false, now).unwrap();
        assert_eq!(s.stop(), 20);
        let o = s.insert(10, bytes(10..40), true, now).unwrap();
        assert_eq!((o.new_bytes, o.duplicate_bytes), (20, 10));
        assert_eq!(s.received_ranges().iter().collect::<Vec<_>>(), vec![0..40]);
        assert!(s.is_closed());
        assert_eq!(s.read_chunk(1), StreamRead::Stopped);
    }

    #[test]
    fn gap_observability() {
        let t0 = Instant::now();
        let mut b = StreamBuffer::new(1000);
        b.insert(0, bytes(0..10), false, t0).unwrap();
        b.insert(20, bytes(20..30), false, t0).unwrap();
        b.insert(100, bytes(0..10), false, t0 + Duration::from_millis(5))
            .unwrap();
        let g = b.gap_stats(t0 + Duration::from_millis(10));
        assert_eq!(g.gap_count, 2);
        assert_eq!(g.next_gap, Some(10..20));
        assert_eq!(g.largest_gap, Some(30..100));
        assert_eq!(g.oldest_gap_age, Some(Duration::from_millis(10)));
        b.insert(10, bytes(10..20), false, t0 + Duration::from_millis(20))
            .unwrap();
        assert_eq!(b.next_gap(), Some(30..100));
        assert_eq!(b.gap_since(), Some(t0 + Duration::from_millis(20)));
        assert_eq!(b.counters().out_of_order_segments, 2);
    }

    #[test]
    fn copying_read_and_partial_chunks() {
        let now = Instant::now();
        let mut b = StreamBuffer::new(1000);
        b.insert(0, bytes(0..10), false, now).unwrap();
        b.insert(10, bytes(10..20), true, now).unwrap();
        assert_eq!(b.read_chunk(4), StreamRead::Data(bytes(0..4)));
        let mut buf = [0u8; 12];
        assert_eq!(b.read(&mut buf), StreamRead::Data(12));
        assert_eq!(&buf[..], &(4..16).map(|i| i as u8).collect::<Vec<_>>()[..]);
        assert_eq!(b.read(&mut buf), StreamRead::Data(4));
        assert_eq!(b.read(&mut buf), StreamRead::Finished);
    }

    #[test]
    fn fragmentation_is_bounded() {
        let now = Instant::now();
        let mut b = StreamBuffer::new(10_000);
        b.set_max_segments(8);
        // Touching segments beyond a gap get merged by a copy.
        for i in 0..20u64 {
            b.insert(100 + i * 2, bytes(0..2), false, now).unwrap();
        }
        assert!(b.segment_count() <= 9);
        // Scattered one-byte segments cannot all be kept apart.
        let mut refused = false;
        for i in 0..20u64 {
            if let Err(InsertError::TooFragmented { .. }) =
                b.insert(1000 + i * 2, bytes(0..1), false, now)
            {
                refused = true;
            }
        }
        assert!(refused);
        b.insert(0, bytes(0..100), false, now).unwrap();
        assert_eq!(drain(&mut b).len(), 140);
    }
}
