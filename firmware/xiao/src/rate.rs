//! The sample rate, fixed at build time, and the schedule that keeps it.

use embassy_time::{Duration, Instant, Timer};

/// Samples per second, from `XIAO_RATE_HZ` (validated to 1..=1000 by build.rs).
pub(crate) const RATE_HZ: u32 = parse_decimal(env!("XIAO_RATE_HZ"));

/// Parses the decimal string build.rs emitted; build.rs already rejected
/// anything else, so a bad digit is a build-time (const evaluation) error.
pub(crate) const fn parse_decimal(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        assert!(digit.is_ascii_digit(), "XIAO_RATE_HZ is not decimal");
        value = value * 10 + (digit - b'0') as u32;
        i += 1;
    }
    value
}

const _: () = assert!(RATE_HZ >= 1 && RATE_HZ <= 1000);

/// Wakes the sensor task at `start + n / RATE_HZ` for n = 1, 2, … Each
/// deadline is computed from `n`, not by adding a period to the last one,
/// so the 32.768 kHz time base's rounding (1 ms is 32.768 ticks) never
/// accumulates: the long-run rate is exactly [`RATE_HZ`].
#[derive(Debug)]
pub(crate) struct SampleClock {
    start: Instant,
    n: u64,
}

impl SampleClock {
    /// A clock whose first deadline is one period after `start`.
    pub(crate) fn new(start: Instant) -> Self {
        Self { start, n: 0 }
    }

    fn deadline(&self) -> Instant {
        self.start + Duration::from_micros(self.n * 1_000_000 / u64::from(RATE_HZ))
    }

    /// Waits for the next deadline. Returns how many deadlines had already
    /// passed entirely by the time the task ran (0 normally): those samples
    /// were not taken, and the caller gives up their sequence numbers so the
    /// host sees the gap rather than a compressed time axis.
    ///
    /// Cancel-safe: a dropped wait leaves the schedule where it was.
    pub(crate) async fn tick(&mut self) -> u64 {
        self.n += 1;
        let due = self.deadline();
        Timer::at(due).await;
        let late_us = Instant::now()
            .checked_duration_since(due)
            .map_or(0, |d| d.as_micros());
        let missed = late_us * u64::from(RATE_HZ) / 1_000_000;
        self.n += missed;
        missed
    }
}
