//! How often one offender (a remote IP address) may appear in the log: a burst of
//! lines per window, then silence until the next window, whose first line says how
//! many were left out. Only the log is limited: counters count every fault. Memory is
//! bounded: at most a fixed number of addresses (4096) are remembered, the oldest
//! window going first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Lines one offender may log per window.
const BURST: u32 = 5;
/// The window.
const WINDOW: Duration = Duration::from_secs(60);
/// Offenders remembered at most.
const CAPACITY: usize = 4096;

/// Whether to log a fault of an offender now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Log it; `suppressed` lines of this offender were left out before it.
    Log {
        /// Lines left out since the last one logged.
        suppressed: u64,
    },
    /// Leave it out (it is counted for the next line that is logged).
    Suppress,
}

/// The offenders' windows.
#[derive(Debug)]
pub(crate) struct OffenderLog {
    burst: u32,
    window: Duration,
    capacity: usize,
    seen: HashMap<IpAddr, Window>,
}

/// One offender's current window.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    logged: u32,
    suppressed: u64,
}

impl Default for OffenderLog {
    fn default() -> Self {
        Self::new(BURST, WINDOW, CAPACITY)
    }
}

impl OffenderLog {
    /// `burst` lines per `window` per offender, at most `capacity` offenders.
    pub(crate) fn new(burst: u32, window: Duration, capacity: usize) -> Self {
        Self {
            burst,
            window,
            capacity: capacity.max(1),
            seen: HashMap::new(),
        }
    }

    /// Whether a fault of `who` at `now` is logged.
    pub(crate) fn check(&mut self, who: IpAddr, now: Instant) -> Verdict {
        if !self.seen.contains_key(&who) && self.seen.len() >= self.capacity {
            self.evict(now);
        }
        let w = self.seen.entry(who).or_insert(Window {
            start: now,
            logged: 0,
            suppressed: 0,
        });
        if now.saturating_duration_since(w.start) >= self.window {
            w.start = now;
            w.logged = 0;
        }
        if w.logged < self.burst {
            w.logged += 1;
            let suppressed = std::mem::take(&mut w.suppressed);
            Verdict::Log { suppressed }
        } else {
            w.suppressed += 1;
            Verdict::Suppress
        }
    }

    /// Makes room: forgets offenders whose window is over and who owe no count of
    /// left-out lines, else the one whose window started first.
    fn evict(&mut self, now: Instant) {
        let window = self.window;
        self.seen
            .retain(|_, w| now.saturating_duration_since(w.start) < window || w.suppressed > 0);
        if self.seen.len() >= self.capacity {
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, w)| w.start)
                .map(|(k, _)| *k)
            {
                self.seen.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_burst_per_window_then_the_count_of_what_was_left_out() {
        let t0 = Instant::now();
        let mut log = OffenderLog::new(2, Duration::from_secs(60), 16);
        assert_eq!(log.check(ip(1), t0), Verdict::Log { suppressed: 0 });
        assert_eq!(log.check(ip(1), t0), Verdict::Log { suppressed: 0 });
        for _ in 0..1000 {
            assert_eq!(log.check(ip(1), t0), Verdict::Suppress);
        }
        // Another offender has its own budget.
        assert_eq!(log.check(ip(2), t0), Verdict::Log { suppressed: 0 });
        let later = t0 + Duration::from_secs(60);
        assert_eq!(log.check(ip(1), later), Verdict::Log { suppressed: 1000 });
        assert_eq!(log.check(ip(1), later), Verdict::Log { suppressed: 0 });
        assert_eq!(log.check(ip(1), later), Verdict::Suppress);
    }

    #[test]
    fn memory_stays_bounded_under_many_offenders() {
        let t0 = Instant::now();
        let mut log = OffenderLog::new(1, Duration::from_secs(60), 8);
        for i in 0..=255u8 {
            let now = t0 + Duration::from_millis(u64::from(i));
            assert_eq!(log.check(ip(i), now), Verdict::Log { suppressed: 0 });
            assert!(log.seen.len() <= log.capacity);
        }
        // The newest are remembered: their second fault in the window is left out.
        assert_eq!(
            log.check(ip(255), t0 + Duration::from_secs(1)),
            Verdict::Suppress
        );
    }
}
