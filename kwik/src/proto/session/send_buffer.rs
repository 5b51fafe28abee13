//! Send side of one logical stream: bytes the application wrote, kept until the
//! receiver acknowledges them (so a dead path's share can be re-sent), the cursors
//! that say what each path still has to send, and the peer's credit.
//!
//! Memory is bounded by credit: the application can only write up to the peer's
//! max offset, and everything below the acknowledged prefix is released.
//!
//! Positioned writes (multi-server delegation): the write offset is a high-water
//! mark. Bytes below it that this side did not write — skipped by a write
//! further on, or delegated to a secondary server — are *holes*; a later
//! positioned write may fill them. A stream with holes is complete only when
//! the receiver acknowledged every byte up to the final size, whoever sent it.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, Range};

use bytes::{Bytes, BytesMut};
use kwik_presentation::RangeSet;

use crate::proto::ids::PathId;
use crate::proto::scheduler::Scheduler;

#[derive(Debug)]
struct Chunk {
    data: Bytes,
    /// Live paths that carried this chunk and may still deliver it.
    sent_on: Vec<PathId>,
}

/// One chunk handed to a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub(crate) offset: u64,
    pub(crate) data: Bytes,
    pub(crate) fin: bool,
}

/// Send-side state of one logical stream.
#[derive(Debug)]
pub(crate) struct SendBuffer {
    chunks: BTreeMap<u64, Chunk>,
    staging: BytesMut,
    write_offset: u64,
    fin: Option<u64>,
    fin_acked: bool,
    /// Key of the last chunk handed out by the shared cursor (non-redundant).
    cursor: Option<u64>,
    /// Per-path cursors (redundant).
    cursors: HashMap<PathId, Option<u64>>,
    max_offset: u64,
    retained: u64,
    max_segment: usize,
    pub(crate) policy: Scheduler,
    /// Higher goes first when a path has room for one stream's chunk only.
    pub(crate) priority: i32,
    /// Set when the stream was reset (locally or because the peer stopped it).
    pub(crate) reset: Option<u64>,
    /// Offsets below `write_offset` this side has not written.
    holes: RangeSet,
    /// Union of every range the receiver acknowledged.
    acked: RangeSet,
    /// Ranges delegated to secondary paths, not yet fully acknowledged.
    delegated: Vec<Delegation>,
    /// Payload bytes handed to paths (first sends, copies, re-sends).
    pub(crate) bytes_sent: u64,
    /// Of `bytes_sent`, re-sends of dead paths' data.
    pub(crate) bytes_resent: u64,
    /// Bytes the peer acknowledged.
    pub(crate) bytes_acked: u64,
}

/// A range of a stream left to a secondary server.
#[derive(Debug, Clone)]
pub(crate) struct Delegation {
    pub(crate) path: PathId,
    pub(crate) range: Range<u64>,
    /// The signed grant (re-sent after a path loss).
    pub(crate) signed: Bytes,
    /// The grant's expiry (Unix ms).
    pub(crate) expiry_ms: u64,
    /// Its expiry with bytes missing was reported.
    reported: bool,
}

/// Why a positioned write or a delegation does not fit the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PositionError {
    /// Part of the range was already written by this side.
    AlreadyWritten,
    /// The range passes the stream's final size.
    BeyondFinalSize,
}

impl SendBuffer {
    pub(crate) fn new(policy: Scheduler, initial_credit: u64, max_segment: usize) -> Self {
        Self {
            chunks: BTreeMap::new(),
            staging: BytesMut::new(),
            write_offset: 0,
            fin: None,
            fin_acked: false,
            cursor: None,
            cursors: HashMap::new(),
            max_offset: initial_credit,
            retained: 0,
            max_segment: max_segment.max(1),
            policy,
            priority: 0,
            reset: None,
            holes: RangeSet::new(),
            acked: RangeSet::new(),
            delegated: Vec::new(),
            bytes_sent: 0,
            bytes_resent: 0,
            bytes_acked: 0,
        }
    }

    /// Checks that `range` is free for this side: at or past the write offset,
    /// or inside holes, and below a known final size.
    pub(crate) fn check_position(&self, range: &Range<u64>) -> Result<(), PositionError> {
        if let Some(fin) = self.fin {
            if range.end > fin {
                return Err(PositionError::BeyondFinalSize);
            }
        }
        let below = range.start..range.end.min(self.write_offset);
        if !below.is_empty() && !self.holes.contains_range(below) {
            return Err(PositionError::AlreadyWritten);
        }
        Ok(())
    }

    /// Highest offset this side would have reached after covering `end`.
    pub(crate) fn growth_to(&self, end: u64) -> u64 {
        end.saturating_sub(self.write_offset)
    }

    /// Peer credit (max offset).
    pub(crate) fn max_offset(&self) -> u64 {
        self.max_offset
    }

    /// Moves the high-water mark to `end` (if beyond), leaving a hole.
    fn extend_to(&mut self, end: u64) {
        if end > self.write_offset {
            self.seal();
            self.holes.insert(self.write_offset..end);
            self.write_offset = end;
        }
    }

    /// Writes `data` at `offset` (checked with [`Self::check_position`]; the
    /// caller has checked credit). Returns the keys of new chunks that lie behind
    /// the send cursor (they must be scheduled explicitly).
    pub(crate) fn write_at(&mut self, offset: u64, mut data: Bytes) -> Vec<u64> {
        let end = offset + data.len() as u64;
        self.seal();
        self.extend_to(end);
        self.holes.remove(offset..end);
        let mut behind = Vec::new();
        let mut at = offset;
        while !data.is_empty() {
            let piece = data.split_to(data.len().min(self.max_segment));
            let len = piece.len() as u64;
            let cursor_passed = match self.policy {
                Scheduler::Redundant => self.cursors.values().flatten().any(|c| *c >= at),
                _ => self.cursor.is_some_and(|c| c >= at),
            };
            if cursor_passed {
                behind.push(at);
            }
            self.chunks.insert(
                at,
                Chunk {
                    data: piece,
                    sent_on: Vec::new(),
                },
            );
            self.retained += len;
            at += len;
        }
        behind
    }

    /// Leaves `range` to the secondary on `path` (checked with
    /// [`Self::check_position`]; the caller has reserved session credit up to
    /// its end).
    pub(crate) fn delegate(
        &mut self,
        path: PathId,
        range: Range<u64>,
        signed: Bytes,
        expiry_ms: u64,
    ) {
        self.extend_to(range.end);
        self.delegated.push(Delegation {
            path,
            range,
            signed,
            expiry_ms,
            reported: false,
        });
    }

    /// Paths of delegations whose grant lapsed (`expiry_ms + grace_ms` passed
    /// at `now_ms`) with bytes still missing, each delegation reported once.
    pub(crate) fn lapsed(&mut self, now_ms: u64, grace_ms: u64) -> Vec<PathId> {
        let mut out = Vec::new();
        for i in 0..self.delegated.len() {
            let d = &self.delegated[i];
            if d.reported || now_ms <= d.expiry_ms.saturating_add(grace_ms) {
                continue;
            }
            let missing = !self.missing(&d.range).is_empty();
            let d = &mut self.delegated[i];
            d.reported = true;
            if missing && !out.contains(&d.path) {
                out.push(d.path);
            }
        }
        out
    }

    /// The parts of `range` the receiver has not acknowledged and this side
    /// does not hold itself (holes: skipped or delegated bytes).
    pub(crate) fn missing(&self, range: &Range<u64>) -> Vec<Range<u64>> {
        let mut out = RangeSet::new();
        let end = range.end.min(self.write_offset);
        for h in self.holes.iter() {
            let r = h.start.max(range.start)..h.end.min(end);
            if !r.is_empty() {
                out.insert(r);
            }
        }
        out.subtract(&self.acked);
        out.iter().collect()
    }

    /// Ranges delegated to `path` that are still missing at the receiver.
    pub(crate) fn missing_from(&self, path: PathId) -> Vec<Range<u64>> {
        let mut out = RangeSet::new();
        for d in self.delegated.iter().filter(|d| d.path == path) {
            for m in self.missing(&d.range) {
                out.insert(m);
            }
        }
        out.iter().collect()
    }

    /// Delegations not yet fully acknowledged.
    pub(crate) fn delegations(&self) -> &[Delegation] {
        &self.delegated
    }

    /// Changes the scheduling policy from the next chunk on. Chunks already sent
    /// are not sent again: switching to `Redundant` copies what is not yet sent
    /// onto every path; switching away continues after the furthest chunk any
    /// path took.
    pub(crate) fn set_policy(&mut self, policy: Scheduler) {
        let was_redundant = self.policy == Scheduler::Redundant;
        if was_redundant && policy != Scheduler::Redundant {
            self.cursor = self.cursors.drain().filter_map(|(_, k)| k).max();
        } else if !was_redundant && policy == Scheduler::Redundant {
            self.cursors.clear();
        }
        self.policy = policy;
    }

    /// Where a redundant path's cursor is: its own, or for a path that has not
    /// sent on this stream yet, where shared scheduling stopped (the oldest
    /// retained chunk for a stream that was always redundant).
    fn redundant_cursor(&self, path: PathId) -> Option<u64> {
        self.cursors.get(&path).copied().unwrap_or(self.cursor)
    }

    /// Bytes the stream's credit still allows.
    pub(crate) fn stream_room(&self) -> u64 {
        self.max_offset.saturating_sub(self.write_offset)
    }

    pub(crate) fn write_offset(&self) -> u64 {
        self.write_offset
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.fin.is_some()
    }

    /// Bytes retained (written, not yet acknowledged).
    pub(crate) fn retained(&self) -> u64 {
        self.retained + self.staging.len() as u64
    }

    pub(crate) fn raise_credit(&mut self, max_offset: u64) -> bool {
        if max_offset > self.max_offset {
            self.max_offset = max_offset;
            true
        } else {
            false
        }
    }

    /// Appends a copy of `data` (small writes are coalesced in a staging buffer).
    /// The caller has checked credit.
    pub(crate) fn push_copy(&mut self, data: &[u8]) {
        self.staging.extend_from_slice(data);
        self.write_offset += data.len() as u64;
        if self.staging.len() >= self.max_segment {
            self.seal();
        }
    }

    /// Appends `data` without copying. The caller has checked credit.
    pub(crate) fn push_bytes(&mut self, mut data: Bytes) {
        self.seal();
        while !data.is_empty() {
            let piece = data.split_to(data.len().min(self.max_segment));
            let len = piece.len() as u64;
            self.chunks.insert(
                self.write_offset,
                Chunk {
                    data: piece,
                    sent_on: Vec::new(),
                },
            );
            self.retained += len;
            self.write_offset += len;
        }
    }

    fn seal(&mut self) {
        while !self.staging.is_empty() {
            let take = self.staging.len().min(self.max_segment);
            let data = self.staging.split_to(take).freeze();
            let offset = self.write_offset - take as u64 - self.staging.len() as u64;
            self.retained += data.len() as u64;
            self.chunks.insert(
                offset,
                Chunk {
                    data,
                    sent_on: Vec::new(),
                },
            );
        }
    }

    /// Marks the end of the stream at the current write offset.
    pub(crate) fn finish(&mut self) {
        if self.fin.is_some() {
            return;
        }
        self.seal();
        self.fin = Some(self.write_offset);
        let last_unsent = self.chunks.last_key_value().is_some_and(|(k, c)| {
            k + c.data.len() as u64 == self.write_offset && c.sent_on.is_empty()
        });
        if !last_unsent {
            // The FIN travels in an empty chunk at the final offset.
            self.chunks.insert(
                self.write_offset,
                Chunk {
                    data: Bytes::new(),
                    sent_on: Vec::new(),
                },
            );
        }
    }

    fn outgoing(&mut self, key: u64, path: PathId) -> Option<Outgoing> {
        let fin = self.fin;
        let chunk = self.chunks.get_mut(&key)?;
        if !chunk.sent_on.contains(&path) {
            chunk.sent_on.push(path);
        }
        let end = key + chunk.data.len() as u64;
        Some(Outgoing {
            offset: key,
            data: chunk.data.clone(),
            fin: fin == Some(end),
        })
    }

    fn next_key(&mut self, after: Option<u64>) -> Option<u64> {
        let next = |chunks: &BTreeMap<u64, Chunk>| {
            let lower = match after {
                None => Bound::Unbounded,
                Some(k) => Bound::Excluded(k),
            };
            chunks
                .range((lower, Bound::Unbounded))
                .next()
                .map(|(k, _)| *k)
        };
        if let Some(k) = next(&self.chunks) {
            return Some(k);
        }
        if self.staging.is_empty() {
            return None;
        }
        self.seal();
        next(&self.chunks)
    }

    /// True if `path` would find new data to send.
    pub(crate) fn has_new_data(&self, path: PathId) -> bool {
        let after = if self.policy == Scheduler::Redundant {
            self.redundant_cursor(path)
        } else {
            self.cursor
        };
        !self.staging.is_empty()
            || match after {
                None => !self.chunks.is_empty(),
                Some(k) => self
                    .chunks
                    .range((Bound::Excluded(k), Bound::Unbounded))
                    .next()
                    .is_some(),
            }
    }

    /// The next new chunk for `path` (advancing the right cursor).
    pub(crate) fn take_new(&mut self, path: PathId) -> Option<Outgoing> {
        if self.reset.is_some() {
            return None;
        }
        let redundant = self.policy == Scheduler::Redundant;
        let after = if redundant {
            self.redundant_cursor(path)
        } else {
            self.cursor
        };
        let key = self.next_key(after)?;
        if redundant {
            self.cursors.insert(path, Some(key));
        } else {
            self.cursor = Some(key);
        }
        self.outgoing(key, path)
    }

    /// The chunk at `key` for a re-send on `path`, if it still needs one.
    pub(crate) fn take_resend(&mut self, key: u64, path: PathId) -> Option<Outgoing> {
        if self.reset.is_some() {
            return None;
        }
        let chunk = self.chunks.get(&key)?;
        if chunk.sent_on.contains(&path) {
            return None;
        }
        self.outgoing(key, path)
    }

    /// A path died: forget it as a carrier. Returns the keys of chunks no live path
    /// carries any more (to re-send) — only chunks the shared cursor already passed;
    /// chunks ahead of it will be sent anyway.
    pub(crate) fn path_lost(&mut self, path: PathId) -> Vec<u64> {
        self.cursors.remove(&path);
        let mut orphans = Vec::new();
        for (key, chunk) in &mut self.chunks {
            let before = chunk.sent_on.len();
            chunk.sent_on.retain(|p| *p != path);
            if before != chunk.sent_on.len() && chunk.sent_on.is_empty() {
                orphans.push(*key);
            }
        }
        orphans
    }

    /// Applies an acknowledgement. Returns `(path, bytes)` pairs to take off the
    /// paths' in-flight counts.
    pub(crate) fn on_ack(&mut self, ranges: &[Range<u64>], fin: bool) -> Vec<(PathId, u64)> {
        if fin && self.fin.is_some() {
            self.fin_acked = true;
        }
        let mut released = Vec::new();
        if !self.holes.is_empty() {
            for r in ranges {
                self.acked.insert(r.clone());
            }
            let acked = &self.acked;
            self.delegated
                .retain(|d| !acked.contains_range(d.range.clone()));
        }
        for r in ranges {
            let keys: Vec<u64> = self
                .chunks
                .range(r.start..r.end)
                .filter(|(k, c)| *k + c.data.len() as u64 <= r.end && !c.data.is_empty())
                .map(|(k, _)| *k)
                .collect();
            for k in keys {
                if let Some(c) = self.chunks.remove(&k) {
                    let len = c.data.len() as u64;
                    self.retained -= len;
                    for p in c.sent_on {
                        released.push((p, len));
                    }
                }
            }
        }
        if self.fin_acked {
            if let Some(f) = self.fin {
                if self.chunks.get(&f).is_some_and(|c| c.data.is_empty()) {
                    self.chunks.remove(&f);
                }
            }
        }
        released
    }

    /// Everything written was delivered, FIN included.
    pub(crate) fn is_complete(&self) -> bool {
        self.fin_acked
            && self.chunks.is_empty()
            && self.staging.is_empty()
            && self.holes.iter().all(|h| self.acked.contains_range(h))
    }

    /// Drops all retained data (reset). Returns in-flight releases.
    pub(crate) fn abandon(&mut self, error_code: u64) -> Vec<(PathId, u64)> {
        self.reset = Some(error_code);
        let mut released = Vec::new();
        for (_, c) in std::mem::take(&mut self.chunks) {
            for p in c.sent_on {
                released.push((p, c.data.len() as u64));
            }
        }
        self.staging.clear();
        self.retained = 0;
        released
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    const P0: PathId = PathId::new(0);
    const P1: PathId = PathId::new(1);

    #[test]
    fn chunks_cursor_ack_and_fin() {
        let mut b = SendBuffer::new(Scheduler::MinRtt, 1000, 4);
        b.push_copy(b"abcdefghij");
        assert_eq!(b.write_offset(), 10);
        let a = b.take_new(P0).unwrap();
        assert_eq!((a.offset, &a.data[..], a.fin), (0, &b"abcd"[..], false));
        let c = b.take_new(P1).unwrap();
        assert_eq!(c.offset, 4);
        b.finish();
        let d = b.take_new(P0).unwrap();
        assert_eq!((d.offset, &d.data[..], d.fin), (8, &b"ij"[..], true));
        assert!(b.take_new(P0).is_none());
        let rel = b.on_ack(&[0..8], false);
        assert_eq!(rel, vec![(P0, 4), (P1, 4)]);
        assert!(!b.is_complete());
        b.on_ack(&[0..10], true);
        assert!(b.is_complete());
        assert_eq!(b.retained(), 0);
    }

    #[test]
    fn fin_after_sent_data_uses_empty_chunk() {
        let mut b = SendBuffer::new(Scheduler::MinRtt, 1000, 64);
        b.push_bytes(Bytes::from_static(b"xyz"));
        assert!(!b.take_new(P0).unwrap().fin);
        b.finish();
        let f = b.take_new(P0).unwrap();
        assert_eq!((f.offset, f.data.len(), f.fin), (3, 0, true));
        b.on_ack(&[0..3], true);
        assert!(b.is_complete());
    }

    #[test]
    fn lost_path_orphans_only_its_chunks() {
        let mut b = SendBuffer::new(Scheduler::MinRtt, 1000, 2);
        b.push_bytes(Bytes::from_static(b"aabbcc"));
        b.take_new(P0);
        b.take_new(P1);
        let orphans = b.path_lost(P0);
        assert_eq!(orphans, vec![0]);
        let r = b.take_resend(0, P1).unwrap();
        assert_eq!(&r.data[..], b"aa");
        assert!(b.take_resend(0, P1).is_none());
    }

    #[test]
    fn redundant_sends_each_chunk_on_each_path() {
        let mut b = SendBuffer::new(Scheduler::Redundant, 1000, 2);
        b.push_bytes(Bytes::from_static(b"aabb"));
        assert_eq!(b.take_new(P0).unwrap().offset, 0);
        assert_eq!(b.take_new(P0).unwrap().offset, 2);
        assert!(b.take_new(P0).is_none());
        assert_eq!(b.take_new(P1).unwrap().offset, 0);
        assert_eq!(b.take_new(P1).unwrap().offset, 2);
        let rel = b.on_ack(&[0..4], false);
        assert_eq!(rel.len(), 4);
        // A path joining later starts at the oldest retained chunk.
        b.push_bytes(Bytes::from_static(b"cc"));
        let p2 = PathId::new(2);
        assert_eq!(b.take_new(p2).unwrap().offset, 4);
    }

    #[test]
    fn policy_change_sends_nothing_twice_on_a_path() {
        let mut b = SendBuffer::new(Scheduler::MinRtt, 1000, 2);
        b.push_bytes(Bytes::from_static(b"aabbccdd"));
        assert_eq!(b.take_new(P0).unwrap().offset, 0);
        // From here on every chunk goes on every path; chunk 0 is not repeated.
        b.set_policy(Scheduler::Redundant);
        assert_eq!(b.take_new(P1).unwrap().offset, 2);
        assert_eq!(b.take_new(P0).unwrap().offset, 2);
        assert_eq!(b.take_new(P0).unwrap().offset, 4);
        // Back to one copy: continue after the furthest chunk any path took.
        b.set_policy(Scheduler::Aggregate);
        assert_eq!(b.policy, Scheduler::Aggregate);
        assert_eq!(b.take_new(P1).unwrap().offset, 6);
        assert!(b.take_new(P0).is_none());
        // Chunk 4 went on P0 only: losing P0 orphans it (and chunk 0), not 2.
        assert_eq!(b.path_lost(P0), vec![0, 4]);
    }

    #[test]
    fn abandon_releases_everything() {
        let mut b = SendBuffer::new(Scheduler::MinRtt, 1000, 2);
        b.push_bytes(Bytes::from_static(b"aabb"));
        b.take_new(P0);
        let rel = b.abandon(7);
        assert_eq!(rel, vec![(P0, 2)]);
        assert!(b.take_new(P0).is_none());
        assert_eq!(b.retained(), 0);
    }
}
