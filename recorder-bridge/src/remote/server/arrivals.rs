//! First-arrival times of samples at the recorder server, for latency measurements
//! (the demo's delivery-latency figures across a path kill).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When each sequence number of one stream first reached the server.
///
/// Bounded: it holds a slot for sequence numbers `0..capacity` (8 bytes each) and
/// ignores later ones. Share it through [`RecorderServerConfig::arrivals`]; every stream
/// of the server records into it, so give it to a server that records one stream.
///
/// [`RecorderServerConfig::arrivals`]: crate::remote::RecorderServerConfig::arrivals
#[derive(Debug)]
pub struct ArrivalLog {
    origin: Instant,
    /// Nanoseconds after `origin` plus one; 0 = not arrived.
    slots: Box<[AtomicU64]>,
}

impl ArrivalLog {
    /// A log for sequence numbers below `capacity`, with times measured from now.
    pub fn new(capacity: usize) -> Self {
        ArrivalLog {
            origin: Instant::now(),
            slots: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Notes that `seq` arrived now, unless an earlier copy did.
    pub fn record(&self, seq: u64) {
        if let Some(slot) = usize::try_from(seq).ok().and_then(|i| self.slots.get(i)) {
            let t = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
            let _ = slot.compare_exchange(0, t, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// When `seq` first arrived, if it did (and is below the capacity).
    pub fn arrival(&self, seq: u64) -> Option<Instant> {
        let slot = self.slots.get(usize::try_from(seq).ok()?)?;
        match slot.load(Ordering::Relaxed) {
            0 => None,
            t => Some(self.origin + Duration::from_nanos(t - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_arrival_wins_and_out_of_range_is_ignored() {
        let log = ArrivalLog::new(4);
        assert_eq!(log.arrival(1), None);
        log.record(1);
        let first = log.arrival(1).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        log.record(1);
        assert_eq!(log.arrival(1), Some(first));
        log.record(9);
        assert_eq!(log.arrival(9), None);
    }
}
