//! Threshold-and-hysteresis backpressure signal of one scope.

use std::time::{Duration, Instant};

use crate::{Fraction, StreamId};

/// What a backpressure signal applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackpressureScope {
    /// The whole session's window.
    Session,
    /// One stream's window.
    Stream(StreamId),
}

/// Why backpressure switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackpressureReason {
    /// Most buffered bytes are readable: the application reads too slowly.
    SlowReader,
    /// Most buffered bytes wait behind a hole: data is missing (a slow or dead path),
    /// not the reader.
    HeadOfLineGap,
}

/// A backpressure transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackpressureState {
    /// Fill level crossed the on-threshold; credit is withheld until `Off`.
    On(BackpressureReason),
    /// Fill level fell below the off-threshold (on-threshold minus hysteresis).
    Off,
}

/// Counters of a backpressure signal (or of all stream signals together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackpressureStats {
    /// Times the signal switched on.
    pub activations: u64,
    /// Activations with reason [`BackpressureReason::SlowReader`].
    pub slow_reader: u64,
    /// Activations with reason [`BackpressureReason::HeadOfLineGap`].
    pub head_of_line_gap: u64,
    /// Total time spent on (including a current activation, up to the time asked).
    pub time_active: Duration,
    /// How many signals are on right now (0 or 1 for a single scope).
    pub active: u64,
}

impl BackpressureStats {
    /// Adds `other`'s counts to `self`.
    pub fn absorb(&mut self, other: &BackpressureStats) {
        self.activations += other.activations;
        self.slow_reader += other.slow_reader;
        self.head_of_line_gap += other.head_of_line_gap;
        self.time_active += other.time_active;
        self.active += other.active;
    }
}

/// Backpressure of one scope: on when `buffered >= on × window`, off again when
/// `buffered <= (on − hysteresis) × window`.
#[derive(Debug, Clone)]
pub struct Backpressure {
    on: Fraction,
    off: Fraction,
    /// Window the byte thresholds below were computed for.
    window: u64,
    on_at: u64,
    off_at: u64,
    active: Option<(BackpressureReason, Instant)>,
    stats: BackpressureStats,
}

impl Backpressure {
    /// A signal with the given on-threshold and hysteresis.
    pub fn new(on: Fraction, hysteresis: Fraction) -> Self {
        let off = Fraction::new((on.get() - hysteresis.get()).max(0.0)).unwrap_or(on);
        Self {
            on,
            off,
            window: 0,
            on_at: 0,
            off_at: 0,
            active: None,
            stats: BackpressureStats::default(),
        }
    }

    /// Re-evaluates with the current fill: `buffered` bytes held, `readable` of them
    /// before the first hole, against `window`. Returns a transition, if any.
    #[inline]
    pub fn update(
        &mut self,
        buffered: u64,
        readable: u64,
        window: u64,
        now: Instant,
    ) -> Option<BackpressureState> {
        // Called for every segment and read: the common "nothing changes" case
        // compares integers only.
        if window == self.window {
            let quiet = match self.active {
                None => buffered < self.on_at || buffered == 0,
                Some(_) => buffered > self.off_at,
            };
            if quiet {
                return None;
            }
        }
        self.transition(buffered, readable, window, now)
    }

    fn transition(
        &mut self,
        buffered: u64,
        readable: u64,
        window: u64,
        now: Instant,
    ) -> Option<BackpressureState> {
        if window != self.window {
            self.window = window;
            self.on_at = self.on.of(window);
            self.off_at = self.off.of(window);
        }
        match self.active {
            None if buffered > 0 && buffered >= self.on_at => {
                let reason = if readable.saturating_mul(2) >= buffered {
                    BackpressureReason::SlowReader
                } else {
                    BackpressureReason::HeadOfLineGap
                };
                self.active = Some((reason, now));
                self.stats.activations += 1;
                match reason {
                    BackpressureReason::SlowReader => self.stats.slow_reader += 1,
                    BackpressureReason::HeadOfLineGap => self.stats.head_of_line_gap += 1,
                }
                Some(BackpressureState::On(reason))
            }
            Some((_, since)) if buffered <= self.off_at => {
                self.stats.time_active += now.saturating_duration_since(since);
                self.active = None;
                Some(BackpressureState::Off)
            }
            _ => None,
        }
    }

    /// Whether the signal is on.
    pub fn is_on(&self) -> bool {
        self.active.is_some()
    }

    /// The reason of the current activation.
    pub fn reason(&self) -> Option<BackpressureReason> {
        self.active.map(|(reason, _)| reason)
    }

    /// Counters, counting a current activation up to `now`.
    pub fn stats(&self, now: Instant) -> BackpressureStats {
        let mut stats = self.stats;
        if let Some((_, since)) = self.active {
            stats.time_active += now.saturating_duration_since(since);
            stats.active = 1;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_and_reasons() {
        let t = Instant::now();
        let f = |v| Fraction::new(v).unwrap();
        let mut b = Backpressure::new(f(0.75), f(0.25));
        assert_eq!(b.update(70, 70, 100, t), None);
        assert_eq!(
            b.update(75, 70, 100, t),
            Some(BackpressureState::On(BackpressureReason::SlowReader))
        );
        assert_eq!(b.update(60, 60, 100, t), None, "inside the hysteresis band");
        assert_eq!(
            b.update(50, 50, 100, t + Duration::from_millis(3)),
            Some(BackpressureState::Off)
        );
        assert_eq!(
            b.update(90, 10, 100, t),
            Some(BackpressureState::On(BackpressureReason::HeadOfLineGap))
        );
        let s = b.stats(t + Duration::from_millis(2));
        assert_eq!(
            (s.activations, s.slow_reader, s.head_of_line_gap, s.active),
            (2, 1, 1, 1)
        );
        assert_eq!(s.time_active, Duration::from_millis(5));
    }
}
