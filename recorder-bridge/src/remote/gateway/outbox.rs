//! The gateway's queue of samples not yet confirmed on disk by the server: a bounded
//! in-memory deque (oldest first) that overflows into a bounded on-disk [`Spool`].
//! Samples leave only when the server acknowledges them, so after a reconnect every
//! unconfirmed sample is sent again (the server drops the duplicates by sequence
//! number). Overflow beyond both bounds drops the newest sample and counts it.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::remote::accounting::GatewayCounters;
use crate::remote::gateway::spool::{Spool, SpoolError};

/// First byte of every held entry (in memory and in the spool): a sample's body follows.
const SAMPLE: u8 = 0;
/// First byte of a held entry that is a whole message to send as it is.
const MESSAGE: u8 = 1;

#[derive(Debug)]
struct Entry {
    seq: u64,
    /// The kind byte ([`SAMPLE`] or [`MESSAGE`]), then the bytes.
    bytes: Bytes,
}

fn tagged(tag: u8, bytes: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(1 + bytes.len());
    v.push(tag);
    v.extend_from_slice(bytes);
    Bytes::from(v)
}

fn is_sample(bytes: &[u8]) -> bool {
    bytes.first() == Some(&SAMPLE)
}

/// Where [`Outbox::insert`] put an entry.
enum Held {
    Memory,
    Spool,
}

/// What [`Outbox::take_unsent`] hands out, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsent {
    /// A sample's encoded body.
    Sample(Bytes),
    /// A whole message that goes between the samples (a filtered range).
    Message(Bytes),
}

impl Unsent {
    fn of(bytes: &Bytes) -> Self {
        let rest = bytes.slice(1..);
        if is_sample(bytes) {
            Unsent::Sample(rest)
        } else {
            Unsent::Message(rest)
        }
    }
}

/// Unconfirmed samples of one stream. Owns each sample's encoded body;
/// [`Outbox::take_unsent`] hands out cheap clones ([`Bytes`]) with their sequence
/// numbers and keeps the originals until acknowledged.
#[derive(Debug)]
pub struct Outbox {
    mem: VecDeque<Entry>,
    mem_cap: usize,
    /// Entries at the front of `mem` already written on the current connection.
    sent: usize,
    spool: Option<Spool>,
    /// Everything below this was acknowledged.
    acked_below: u64,
    counters: Arc<GatewayCounters>,
    spool_error: Option<String>,
}

impl Outbox {
    /// An outbox holding up to `mem_cap` samples in memory, then spilling to `spool`.
    pub fn new(mem_cap: usize, spool: Option<Spool>, counters: Arc<GatewayCounters>) -> Self {
        Outbox {
            mem: VecDeque::new(),
            mem_cap: mem_cap.max(1),
            sent: 0,
            spool,
            acked_below: 0,
            counters,
            spool_error: None,
        }
    }

    /// Adds a sample's encoded body. Never blocks on the network; may write to the
    /// spool file. Returns false when the sample had to be dropped (counted).
    pub fn push(&mut self, seq: u64, body: &[u8]) -> bool {
        let held = self.insert(seq, tagged(SAMPLE, body));
        let counter = match held {
            Some(Held::Memory) => &self.counters.queued,
            Some(Held::Spool) => &self.counters.spooled,
            None => &self.counters.dropped_overflow,
        };
        GatewayCounters::add(counter, 1);
        held.is_some()
    }

    /// Adds a [`Message::Filtered`](crate::remote::wire::Message::Filtered) range in
    /// sample order, under the range's last sequence number. Not a sample: the queue and
    /// spool counters leave it out. Returns false when it had to be dropped (the server
    /// then counts the range as missing, and a warning is logged).
    pub fn push_marker(&mut self, seq: u64, message: &[u8]) -> bool {
        let held = self.insert(seq, tagged(MESSAGE, message)).is_some();
        if !held {
            tracing::warn!(seq, "queue and spool full: a filtered range was dropped");
        }
        held
    }

    /// Holds an entry in memory while there is room and nothing is spooled (order),
    /// else in the spool; `None` when both are full.
    fn insert(&mut self, seq: u64, bytes: Bytes) -> Option<Held> {
        let spooling = self.spool.as_ref().is_some_and(|s| !s.is_empty());
        if !spooling && self.mem.len() < self.mem_cap {
            self.mem.push_back(Entry { seq, bytes });
            return Some(Held::Memory);
        }
        match self.spool.as_mut()?.push(seq, &bytes) {
            Ok(()) => Some(Held::Spool),
            Err(SpoolError::Full(_)) => None,
            Err(e) => {
                self.spool_error = Some(e.to_string());
                None
            }
        }
    }

    /// Moves spooled samples back to memory while there is room.
    fn refill(&mut self) {
        let room = self.mem_cap.saturating_sub(self.mem.len());
        if room < self.mem_cap / 2 {
            return;
        }
        let Some(spool) = self.spool.as_mut() else {
            return;
        };
        while self.mem.len() < self.mem_cap && !spool.is_empty() {
            match spool.pop(self.mem_cap - self.mem.len()) {
                Ok(recs) if recs.is_empty() => break,
                Ok(recs) => {
                    for r in recs {
                        if r.seq < self.acked_below {
                            // Confirmed meanwhile (resume after a server restart).
                            if is_sample(&r.bytes) {
                                GatewayCounters::add(&self.counters.acked, 1);
                            }
                            continue;
                        }
                        self.mem.push_back(Entry {
                            seq: r.seq,
                            bytes: r.bytes,
                        });
                    }
                }
                Err(e) => {
                    self.spool_error = Some(e.to_string());
                    break;
                }
            }
        }
    }

    /// The next samples `(seq, body)` to write on the current connection (bodies of at
    /// most about `max_bytes` in all), in sequence order, marked as sent. Empty when
    /// everything held was sent.
    pub fn take_unsent(&mut self, max_bytes: usize) -> Vec<(u64, Unsent)> {
        self.refill();
        let mut out = Vec::new();
        let mut size = 0;
        while self.sent < self.mem.len() && (size < max_bytes || out.is_empty()) {
            let e = &self.mem[self.sent];
            size += e.bytes.len();
            out.push((e.seq, Unsent::of(&e.bytes)));
            self.sent += 1;
        }
        out
    }

    /// Samples held but not yet written on the current connection (in memory and in
    /// the spool).
    pub fn unsent(&self) -> u64 {
        (self.mem.len() - self.sent) as u64 + self.spooled()
    }

    /// The server has every sample below `next_seq` on disk: forget them.
    pub fn ack(&mut self, next_seq: u64) {
        if next_seq <= self.acked_below {
            return;
        }
        self.acked_below = next_seq;
        let (mut n, mut samples) = (0, 0);
        while let Some(e) = self.mem.front().filter(|e| e.seq < next_seq) {
            samples += u64::from(is_sample(&e.bytes));
            self.mem.pop_front();
            n += 1;
        }
        self.sent = self.sent.saturating_sub(n);
        GatewayCounters::add(&self.counters.acked, samples);
    }

    /// Everything below this sequence number was acknowledged (or never held).
    pub fn acked_below(&self) -> u64 {
        self.acked_below
    }

    /// A new connection: everything unconfirmed goes out again. Returns how many
    /// samples will be re-sent from memory.
    pub fn rewind(&mut self) -> usize {
        let n = self.sent;
        self.sent = 0;
        n
    }

    /// Samples held (memory and spool).
    pub fn len(&self) -> u64 {
        self.mem.len() as u64 + self.spool.as_ref().map_or(0, Spool::len)
    }

    /// True when every sample pushed was acknowledged (or dropped).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Samples in the spool.
    pub fn spooled(&self) -> u64 {
        self.spool.as_ref().map_or(0, Spool::len)
    }

    /// The last spool I/O error, if any.
    pub fn spool_error(&self) -> Option<&str> {
        self.spool_error.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> Bytes {
        Bytes::from(seq.to_le_bytes().to_vec())
    }

    fn seq_of((seq, u): &(u64, Unsent)) -> u64 {
        let Unsent::Sample(b) = u else {
            panic!("not a sample: {u:?}")
        };
        assert_eq!(u64::from_le_bytes(b[..8].try_into().unwrap()), *seq);
        *seq
    }

    #[test]
    fn overflow_spools_in_order_and_resends_after_rewind() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(GatewayCounters::default());
        // 100 spool records of 21 bytes: 12 of record header, the entry's kind byte and
        // an 8-byte body.
        let spool = Spool::create(&dir.path().join("s"), 21 * 100).unwrap();
        let mut o = Outbox::new(10, Some(spool), counters.clone());
        for s in 0..200 {
            o.push(s, &msg(s));
        }
        let c = counters.snapshot();
        assert_eq!(c.queued, 10);
        assert_eq!(c.spooled, 100);
        assert_eq!(c.dropped_overflow, 90);
        // Send some, lose the connection, send again from the oldest unconfirmed.
        let first: Vec<u64> = o.take_unsent(1 << 20).iter().map(seq_of).collect();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        o.ack(4);
        assert_eq!(o.rewind(), 6);
        let mut all = Vec::new();
        loop {
            let b = o.take_unsent(1 << 20);
            if b.is_empty() {
                break;
            }
            let seqs: Vec<u64> = b.iter().map(seq_of).collect();
            o.ack(seqs.last().unwrap() + 1);
            all.extend(seqs);
        }
        assert_eq!(all, (4..110).collect::<Vec<_>>());
        assert!(o.is_empty());
        let c = counters.snapshot();
        assert_eq!(c.acked + c.dropped_overflow, 200);
    }

    #[test]
    fn markers_are_not_counted_as_samples_whatever_a_body_looks_like() {
        let counters = Arc::new(GatewayCounters::default());
        let mut o = Outbox::new(10, None, counters.clone());
        // A body that starts like an encoded message is still a sample.
        o.push(0, &[0xA5, 0x23, 16, 0]);
        o.push_marker(3, &[0xA5, 0x23, 16, 0, 1]);
        o.push(4, &[7]);
        let got = o.take_unsent(1 << 20);
        assert_eq!(
            got,
            vec![
                (0, Unsent::Sample(Bytes::from_static(&[0xA5, 0x23, 16, 0]))),
                (
                    3,
                    Unsent::Message(Bytes::from_static(&[0xA5, 0x23, 16, 0, 1]))
                ),
                (4, Unsent::Sample(Bytes::from_static(&[7]))),
            ]
        );
        o.ack(5);
        assert_eq!(counters.snapshot().acked, 2);
        assert!(o.is_empty());
    }

    #[test]
    fn without_spool_overflow_is_counted() {
        let counters = Arc::new(GatewayCounters::default());
        let mut o = Outbox::new(3, None, counters.clone());
        let accepted = (0..5).filter(|&s| o.push(s, &msg(s))).count();
        assert_eq!(accepted, 3);
        assert_eq!(counters.snapshot().dropped_overflow, 2);
    }
}
