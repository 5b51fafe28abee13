//! The bulk payload and the receiver that checks it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;

/// One mebibyte.
pub(crate) const MIB: u64 = 1 << 20;

/// The bulk payload: a 1 MiB pattern repeated; byte `i` of the stream is
/// `pattern[i % 1 MiB]`. Written zero-copy as slices of one `Bytes`.
pub(crate) fn pattern() -> Bytes {
    Bytes::from((0..MIB).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>())
}

/// What a receiver saw: checks every byte against the pattern at its stream offset and
/// optionally records when bytes arrived.
#[derive(Debug)]
pub(crate) struct Sink {
    pattern: Bytes,
    total: u64,
    mismatched: u64,
    progress: Arc<AtomicU64>,
    /// When bytes arrived: (instant, bytes received so far), if recorded.
    pub(crate) arrivals: Option<Vec<(Instant, u64)>>,
}

impl Sink {
    /// A sink that publishes its byte count to `progress`.
    pub(crate) fn new(progress: Arc<AtomicU64>, record_arrivals: bool) -> Self {
        Self {
            pattern: pattern(),
            total: 0,
            mismatched: 0,
            progress,
            arrivals: record_arrivals.then(Vec::new),
        }
    }

    /// Checks and counts the next bytes of the stream.
    pub(crate) fn take(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let at = (self.total % MIB) as usize;
            let n = chunk.len().min(self.pattern.len() - at);
            if chunk[..n] != self.pattern[at..at + n] {
                self.mismatched += n as u64;
            }
            self.total += n as u64;
            chunk = &chunk[n..];
        }
        self.progress.store(self.total, Ordering::Relaxed);
        if let Some(arrivals) = &mut self.arrivals {
            arrivals.push((Instant::now(), self.total));
        }
    }

    /// Bytes not delivered intact: missing or corrupt.
    pub(crate) fn lost(&self, size: u64) -> u64 {
        size.saturating_sub(self.total) + self.mismatched
    }
}

/// Outcome of one transfer.
#[derive(Debug)]
pub(crate) struct Transfer {
    /// From opening the stream to the receiver reading the last byte.
    pub(crate) secs: f64,
    /// What the receiver saw.
    pub(crate) sink: Sink,
}
