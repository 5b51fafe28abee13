//! A [`SignalGenerator`] as a [`SampleSource`]: samples `0, 1, 2, ...` with sequence
//! number = sample index, in real time (each when it is due against the wall clock) or
//! as fast as they are read.

use std::time::{Duration, Instant};

use crate::capture::sample_source::{SampleSource, SourceEvent};
use crate::capture::sources::signal::{RateHz, SignalGenerator, SimEfield};

/// Whether a [`GeneratorSource`] keeps to its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pacing {
    /// Each sample when it is due (start + index / rate), in bursts of what fell due
    /// during a nap of at least a millisecond.
    RealTime,
    /// As fast as the reader takes them.
    Unpaced,
}

/// Shortest nap of a real-time source whose next sample is not yet due: below a
/// millisecond a sleep costs more than it waits, so due samples go out in bursts.
const MIN_NAP: Duration = Duration::from_millis(1);
/// Longest nap, so that a reader can check for a stop request (the
/// [`SampleSource`] contract).
const MAX_NAP: Duration = Duration::from_millis(100);

/// A generator's samples as a source, stopping after `limit` samples if given.
#[derive(Debug)]
pub struct GeneratorSource<G> {
    generator: G,
    next: u64,
    limit: Option<u64>,
    start: Instant,
    pacing: Pacing,
    min_nap: Duration,
}

/// The E-field simulator as a source (the gateway's `sim-efield`).
pub type SimEfieldSource = GeneratorSource<SimEfield>;

impl<G: SignalGenerator> GeneratorSource<G> {
    /// Samples of `generator` from index 0, timed from now.
    pub fn new(generator: G, limit: Option<u64>, pacing: Pacing) -> Self {
        GeneratorSource {
            generator,
            next: 0,
            limit,
            start: Instant::now(),
            pacing,
            min_nap: MIN_NAP,
        }
    }

    /// In real time, naps of at least `burst` (at most 100 ms) between bursts of due
    /// samples instead of 1 ms: what a board that buffers its samples into USB packets
    /// does, and what lets one machine simulate hundreds of devices (fewer wake-ups).
    pub fn with_burst(mut self, burst: Duration) -> Self {
        self.min_nap = burst.clamp(MIN_NAP, MAX_NAP);
        self
    }

    /// Sample `i` of this source.
    pub fn expected(&self, i: u64) -> G::Sample {
        self.generator.sample(i)
    }
}

impl SimEfieldSource {
    /// The E-field simulator at `rate`, stopping after `limit` samples if given,
    /// paced by `pacing`.
    pub fn efield(rate: RateHz, limit: Option<u64>, pacing: Pacing) -> Self {
        GeneratorSource::new(SimEfield { rate }, limit, pacing)
    }
}

impl<G: SignalGenerator> SampleSource for GeneratorSource<G> {
    type Sample = G::Sample;

    fn rate_hz(&self) -> u32 {
        self.generator.rate().get()
    }

    fn next_event(&mut self) -> Option<SourceEvent<G::Sample>> {
        if self.limit.is_some_and(|l| self.next >= l) {
            return None;
        }
        if self.pacing == Pacing::RealTime {
            let due =
                self.start + Duration::from_micros(self.generator.rate().time_of(self.next).0);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait.clamp(self.min_nap, MAX_NAP));
                if Instant::now() < due {
                    return Some(SourceEvent::Idle);
                }
            }
        }
        let seq = self.next;
        self.next += 1;
        Some(SourceEvent::Sample {
            seq,
            sample: self.generator.sample(seq),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::sources::signal::SimStage;

    #[test]
    fn unpaced_yields_the_generator_in_order_up_to_the_limit() {
        let g = SimStage {
            rate: RateHz::try_from(50).unwrap(),
        };
        let mut src = GeneratorSource::new(g, Some(120), Pacing::Unpaced);
        let mut got = Vec::new();
        while let Some(e) = src.next_event() {
            if let SourceEvent::Sample { seq, sample } = e {
                got.push((seq, sample));
            }
        }
        let want: Vec<_> = (0..120).map(|i| (i, g.sample(i))).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn real_time_keeps_to_the_rate() {
        let rate = RateHz::try_from(2_000).unwrap();
        let mut src = SimEfieldSource::efield(rate, Some(200), Pacing::RealTime);
        let start = Instant::now();
        let mut n = 0;
        while let Some(e) = src.next_event() {
            if matches!(e, SourceEvent::Sample { .. }) {
                n += 1;
            }
        }
        assert_eq!(n, 200);
        // 200 samples at 2 kHz are due over 99.5 ms.
        assert!(
            start.elapsed() >= Duration::from_micros(99_500),
            "{:?}",
            start.elapsed()
        );
    }
}
