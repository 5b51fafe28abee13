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
use crate::remote::wire::is_filtered;

#[derive(Debug)]
struct Entry {
    seq: u64,
    bytes: Bytes,
}

/// Unconfirmed samples of one stream. Owns the encoded messages; [`Outbox::take_unsent`]
/// hands out cheap clones ([`Bytes`]) and keeps the originals until acknowledged.
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

    /// Adds a sample's encoded message. Never blocks on the network; may write to the
    /// spool file. Returns false when the sample had to be dropped (counted).
    pub fn push(&mut self, seq: u64, bytes: Bytes) -> bool {
        let spooling = self.spool.as_ref().is_some_and(|s| !s.is_empty());
        if !spooling && self.mem.len() < self.mem_cap {
            self.mem.push_back(Entry { seq, bytes });
            GatewayCounters::add(&self.counters.queued, 1);
            return true;
        }
        if let Some(spool) = self.spool.as_mut() {
            match spool.push(seq, &bytes) {
                Ok(()) => {
                    GatewayCounters::add(&self.counters.spooled, 1);
                    return true;
                }
                Err(SpoolError::Full(_)) => {}
                Err(e) => self.spool_error = Some(e.to_string()),
            }
        }
        GatewayCounters::add(&self.counters.dropped_overflow, 1);
        false
    }

    /// Adds a [`Message::Filtered`](crate::remote::wire::Message::Filtered) range in
    /// sample order, under the range's last sequence number. Not a sample: the queue and
    /// spool counters leave it out. Returns false when it had to be dropped (the server
    /// then counts the range as missing, and a warning is logged).
    pub fn push_marker(&mut self, seq: u64, bytes: Bytes) -> bool {
        let spooling = self.spool.as_ref().is_some_and(|s| !s.is_empty());
        if !spooling && self.mem.len() < self.mem_cap {
            self.mem.push_back(Entry { seq, bytes });
            return true;
        }
        if let Some(spool) = self.spool.as_mut() {
            match spool.push(seq, &bytes) {
                Ok(()) => return true,
                Err(SpoolError::Full(_)) => {}
                Err(e) => self.spool_error = Some(e.to_string()),
            }
        }
        tracing::warn!(seq, "queue and spool full: a filtered range was dropped");
        false
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
                            if !is_filtered(&r.bytes) {
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

    /// The next messages to write on the current connection (at most about
    /// `max_bytes`), marked as sent. Empty when everything held was sent.
    pub fn take_unsent(&mut self, max_bytes: usize) -> Vec<Bytes> {
        self.refill();
        let mut out = Vec::new();
        let mut size = 0;
        while self.sent < self.mem.len() && (size < max_bytes || out.is_empty()) {
            let e = &self.mem[self.sent];
            size += e.bytes.len();
            out.push(e.bytes.clone());
            self.sent += 1;
        }
        out
    }

    /// The server has every sample below `next_seq` on disk: forget them.
    pub fn ack(&mut self, next_seq: u64) {
        if next_seq <= self.acked_below {
            return;
        }
        self.acked_below = next_seq;
        let (mut n, mut samples) = (0, 0);
        while let Some(e) = self.mem.front().filter(|e| e.seq < next_seq) {
            samples += u64::from(!is_filtered(&e.bytes));
            self.mem.pop_front();
            n += 1;
        }
        self.sent = self.sent.saturating_sub(n);
        GatewayCounters::add(&self.counters.acked, samples);
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

    fn seq_of(b: &Bytes) -> u64 {
        u64::from_le_bytes(b[..8].try_into().unwrap())
    }

    #[test]
    fn overflow_spools_in_order_and_resends_after_rewind() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(GatewayCounters::default());
        let spool = Spool::create(&dir.path().join("s"), 20 * 100).unwrap();
        let mut o = Outbox::new(10, Some(spool), counters.clone());
        for s in 0..200 {
            o.push(s, msg(s));
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
    fn without_spool_overflow_is_counted() {
        let counters = Arc::new(GatewayCounters::default());
        let mut o = Outbox::new(3, None, counters.clone());
        let accepted = (0..5).filter(|&s| o.push(s, msg(s))).count();
        assert_eq!(accepted, 3);
        assert_eq!(counters.snapshot().dropped_overflow, 2);
    }
}
