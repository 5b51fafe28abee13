//! A fixed-capacity ring of samples with a monotonic write index.
//!
//! One writer ([`RingWriter`], not `Clone`) and any number of readers ([`RingReader`],
//! each with its own position). The writer never blocks and never waits for a reader:
//! it overwrites the oldest slot. A reader asks for everything since its index and
//! learns exactly how many samples it missed. The writer can also report samples it
//! knows were lost before they reached it (a device's sequence gaps), so readers
//! account for those too. Each slot is guarded by a sequence number
//! (a per-slot seqlock), so a reader detects a slot overwritten while it was copying.
//! No I/O, no clock, no thread.
//!
//! A slot holds its sample as atomic words ([`Packed`]): a reader may copy a slot the
//! writer is overwriting, and with plain memory that copy would be a data race (undefined
//! behaviour even when the torn copy is then thrown away). With atomic words the race is
//! benign by construction and the ring has no `unsafe`. The protocol is model-checked
//! with loom (`loom_tests` below, run by `.ci/run`).

use crate::format::packed::Packed;
use crate::sync::{Arc, AtomicU64, Ordering, fence};

/// Position of a sample in a ring's history: 0 for the first sample ever pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SampleIndex(pub u64);

/// Most words a ring sample may pack into (the widest schema, E-field, takes 11).
const MAX_WORDS: usize = 16;

struct Ring {
    /// `capacity` slots of `1 + words` atomics each: the slot's sequence number, then
    /// the packed sample. The sequence is `2 * (i + 1)` once sample `i` is complete in
    /// the slot, odd while it is written.
    cells: Box<[AtomicU64]>,
    /// Words per sample.
    words: usize,
    capacity: u64,
    head: AtomicU64,
    /// Samples lost upstream of the writer, as it reported them.
    lost_upstream: AtomicU64,
}

impl Ring {
    /// The sequence number of slot `i % capacity` and its words.
    fn slot(&self, i: u64) -> (&AtomicU64, &[AtomicU64]) {
        let stride = 1 + self.words;
        let at = (i % self.capacity) as usize * stride;
        let (seq, words) = self.cells[at..at + stride].split_at(1);
        (&seq[0], words)
    }
}

/// The result of a [`RingReader::read`] or [`RingReader::since`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    /// Samples appended to the output.
    pub read: usize,
    /// Index to ask from next time.
    pub next: SampleIndex,
    /// Samples between the requested index and `next` that were overwritten before they
    /// could be read.
    pub dropped: u64,
}

/// The single writer of a ring. Owns the write index.
pub struct RingWriter<T> {
    ring: Arc<Ring>,
    /// Index of the next push: the writer's own copy of `head` (it is the only one to
    /// store it), so a push never loads the shared index.
    next: u64,
    _values: std::marker::PhantomData<fn(T)>,
}

/// A reader of a ring with its own position. Cloning gives an independent reader at
/// the same position.
pub struct RingReader<T> {
    ring: Arc<Ring>,
    next: SampleIndex,
    /// The ring's upstream-loss count when this reader was created: it counts only
    /// later losses, as it reads only later samples.
    lost_base: u64,
    _values: std::marker::PhantomData<fn() -> T>,
}

/// Creates a ring holding the last `capacity` samples (at least 1).
pub fn ring<T: Packed>(capacity: usize) -> (RingWriter<T>, RingReader<T>) {
    const { assert!(T::WORDS >= 1 && T::WORDS <= MAX_WORDS) };
    let capacity = capacity.max(1);
    let cells = (0..capacity * (1 + T::WORDS))
        .map(|_| AtomicU64::new(0))
        .collect();
    let ring = Arc::new(Ring {
        cells,
        words: T::WORDS,
        capacity: capacity as u64,
        head: AtomicU64::new(0),
        lost_upstream: AtomicU64::new(0),
    });
    (
        RingWriter {
            ring: ring.clone(),
            next: 0,
            _values: std::marker::PhantomData,
        },
        RingReader {
            ring,
            next: SampleIndex(0),
            lost_base: 0,
            _values: std::marker::PhantomData,
        },
    )
}

impl<T: Packed> RingWriter<T> {
    /// Appends a sample, overwriting the oldest when full. Never blocks.
    pub fn push(&mut self, value: T) -> SampleIndex {
        let ring = &*self.ring;
        let mut packed = [0u64; MAX_WORDS];
        let packed = &mut packed[..T::WORDS];
        value.pack(packed);
        let i = self.next;
        let (seq, words) = ring.slot(i);
        seq.store(2 * i + 1, Ordering::Relaxed);
        // Orders the odd sequence before the words: a reader that sees any new word
        // then sees a sequence other than the one it started with.
        fence(Ordering::Release);
        for (cell, w) in words.iter().zip(packed.iter()) {
            cell.store(*w, Ordering::Relaxed);
        }
        seq.store(2 * i + 2, Ordering::Release);
        ring.head.store(i + 1, Ordering::Release);
        self.next = i + 1;
        SampleIndex(i)
    }

    /// Appends every sample of `values`.
    pub fn push_slice(&mut self, values: &[T]) {
        for v in values {
            self.push(*v);
        }
    }

    /// Index the next sample will get (= samples pushed so far).
    pub fn head(&self) -> SampleIndex {
        SampleIndex(self.next)
    }

    /// Records that `n` samples were lost before they reached this writer (e.g. sequence
    /// numbers a device skipped, or frames that arrived corrupt), so that readers count
    /// them with what they missed themselves. They take no slot and no index.
    pub fn count_lost_upstream(&mut self, n: u64) {
        self.ring.lost_upstream.fetch_add(n, Ordering::Relaxed);
    }

    /// A new reader positioned at the current head (sees only future samples).
    pub fn reader(&self) -> RingReader<T> {
        RingReader {
            ring: self.ring.clone(),
            next: self.head(),
            lost_base: self.ring.lost_upstream.load(Ordering::Relaxed),
            _values: std::marker::PhantomData,
        }
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
    }
}

impl<T: Packed> RingReader<T> {
    /// Index the next sample will get (= samples pushed so far).
    pub fn head(&self) -> SampleIndex {
        SampleIndex(self.ring.head.load(Ordering::Acquire))
    }

    /// Samples the writer has reported lost upstream of the ring (see
    /// [`RingWriter::count_lost_upstream`]) since this reader, or the reader it was
    /// cloned from, was created.
    pub fn lost_upstream(&self) -> u64 {
        self.ring.lost_upstream.load(Ordering::Relaxed) - self.lost_base
    }

    /// This reader's position.
    pub fn position(&self) -> SampleIndex {
        self.next
    }

    /// Moves this reader's position (e.g. to `head()` to skip history).
    pub fn seek(&mut self, index: SampleIndex) {
        self.next = index;
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.ring.capacity as usize
    }

    /// Appends to `out` at most `max` samples from `index` on, without moving this
    /// reader. Samples no longer in the ring are counted in `dropped`.
    pub fn since(&self, index: SampleIndex, out: &mut Vec<T>, max: usize) -> Since {
        let ring = &*self.ring;
        let head = ring.head.load(Ordering::Acquire);
        let mut start = index.0.min(head);
        let oldest = head.saturating_sub(ring.capacity);
        let mut dropped = 0;
        if start < oldest {
            dropped += oldest - start;
            start = oldest;
        }
        let end = head.min(start.saturating_add(max as u64));
        let mut read = 0;
        let mut copy = [0u64; MAX_WORDS];
        let copy = &mut copy[..T::WORDS];
        for i in start..end {
            let (seq, words) = ring.slot(i);
            let s1 = seq.load(Ordering::Acquire);
            if s1 != 2 * i + 2 {
                dropped += 1;
                continue;
            }
            for (w, cell) in copy.iter_mut().zip(words) {
                *w = cell.load(Ordering::Relaxed);
            }
            // Orders the word loads before the second sequence load: if any word came
            // from a later push, that push's odd sequence is visible here.
            fence(Ordering::Acquire);
            let s2 = seq.load(Ordering::Relaxed);
            if s2 != s1 {
                dropped += 1;
                continue;
            }
            out.push(T::unpack(copy));
            read += 1;
        }
        Since {
            read,
            next: SampleIndex(end),
            dropped,
        }
    }

    /// Appends at most `max` samples from this reader's position and advances it.
    pub fn read(&mut self, out: &mut Vec<T>, max: usize) -> Since {
        let r = self.since(self.next, out, max);
        self.next = r.next;
        r
    }
}

impl<T> Clone for RingReader<T> {
    fn clone(&self) -> Self {
        RingReader {
            ring: self.ring.clone(),
            next: self.next,
            lost_base: self.lost_base,
            _values: std::marker::PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for RingWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingWriter")
            .field("capacity", &self.ring.capacity)
            .field("head", &self.next)
            .finish()
    }
}

impl<T> std::fmt::Debug for RingReader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingReader")
            .field("capacity", &self.ring.capacity)
            .field("next", &self.next)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn reader_learns_exactly_what_it_missed() {
        let (mut w, mut r) = ring::<u64>(4);
        for i in 0..10 {
            w.push(i);
        }
        let mut out = Vec::new();
        let s = r.read(&mut out, usize::MAX);
        assert_eq!(out, vec![6, 7, 8, 9]);
        assert_eq!(s.dropped, 6);
        assert_eq!(s.next, SampleIndex(10));
        out.clear();
        assert_eq!(r.read(&mut out, 10).read, 0);
    }

    #[test]
    fn upstream_losses_reach_every_reader_and_take_no_index() {
        let (mut w, r) = ring::<u8>(4);
        let other = w.reader();
        w.push(1);
        w.count_lost_upstream(3);
        let late = w.reader(); // like a reader attached now: later losses only
        w.push(2);
        w.count_lost_upstream(2);
        assert_eq!((r.lost_upstream(), other.lost_upstream()), (5, 5));
        assert_eq!((late.lost_upstream(), late.clone().lost_upstream()), (2, 2));
        assert_eq!(w.head(), SampleIndex(2));
    }

    #[test]
    fn readers_keep_their_own_positions() {
        let (mut w, mut a) = ring::<u32>(8);
        let mut b = a.clone();
        w.push_slice(&[1, 2, 3]);
        let mut out = Vec::new();
        a.read(&mut out, 2);
        assert_eq!(out, vec![1, 2]);
        out.clear();
        b.read(&mut out, 10);
        assert_eq!(out, vec![1, 2, 3]);
        out.clear();
        a.read(&mut out, 10);
        assert_eq!(out, vec![3]);
    }

    #[test]
    fn concurrent_reader_never_sees_torn_or_misordered_values() {
        let (mut w, mut r) = ring::<(u64, u64)>(64);
        let n = 200_000u64;
        let t = std::thread::spawn(move || {
            for i in 0..n {
                w.push((i, i.wrapping_mul(0x9e37_79b9)));
            }
        });
        let mut out = Vec::new();
        let mut seen = 0u64;
        let mut dropped = 0u64;
        let mut last = None;
        while seen + dropped < n {
            out.clear();
            let s = r.read(&mut out, 32);
            dropped += s.dropped;
            for &(i, h) in &out {
                assert_eq!(h, i.wrapping_mul(0x9e37_79b9));
                assert!(last.is_none_or(|l| i > l));
                last = Some(i);
            }
            seen += out.len() as u64;
        }
        t.join().unwrap();
        assert_eq!(seen + dropped, n);
    }
}

#[cfg(all(test, loom))]
mod loom_tests;
