//! The sample rate, fixed at build time, and the clock that keeps it.

use embassy_time::{Duration, Instant, Timer};
use xiao_fw_core::{SampleRate, SampleSchedule};

/// Samples per second, from `XIAO_RATE_HZ` (build.rs validated it with the
/// same [`SampleRate`]; a bad value here is a const-evaluation error).
pub(crate) const RATE: SampleRate = match SampleRate::new(parse_decimal(env!("XIAO_RATE_HZ"))) {
    Ok(rate) => rate,
    Err(_) => panic!("XIAO_RATE_HZ out of range"),
};
/// [`RATE`] in hertz.
pub(crate) const RATE_HZ: u32 = RATE.hz();

/// Parses a decimal string at compile time (for `env!` values).
pub(crate) const fn parse_decimal(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        assert!(digit.is_ascii_digit(), "not a decimal number");
        value = value * 10 + (digit - b'0') as u32;
        i += 1;
    }
    value
}

/// Wakes the sensor task at the deadlines of a [`SampleSchedule`] at
/// [`RATE`]: computed from the sample index, so they never drift.
#[derive(Debug)]
pub(crate) struct SampleClock {
    start: Instant,
    schedule: SampleSchedule,
    n: u64,
}

impl SampleClock {
    /// A clock whose first deadline is one period after `start`.
    pub(crate) fn new(start: Instant) -> Self {
        Self {
            start,
            schedule: SampleSchedule::new(RATE),
            n: 0,
        }
    }

    /// Waits for the next deadline. Returns how many deadlines had already
    /// passed entirely by the time the task ran (0 normally): those samples
    /// were not taken, and the caller gives up their sequence numbers so the
    /// host sees the gap rather than a compressed time axis.
    ///
    /// Cancel-safe: a dropped wait leaves the schedule where it was.
    pub(crate) async fn tick(&mut self) -> u64 {
        let n = self.n + 1;
        let due = self.start + Duration::from_micros(self.schedule.deadline_micros(n));
        Timer::at(due).await;
        let late_us = Instant::now()
            .checked_duration_since(due)
            .map_or(0, |d| d.as_micros());
        let missed = self.schedule.missed_periods(late_us);
        self.n = n + missed;
        missed
    }
}
