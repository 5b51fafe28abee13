//! Sample rate and the deadline arithmetic of the sampling loop.

/// A sample rate in hertz, 1..=[`SampleRate::MAX_HZ`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SampleRate(u32);

/// Why a rate was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateError {
    /// Zero, or above [`SampleRate::MAX_HZ`].
    #[error("sample rate {0} Hz is outside 1..=1000")]
    OutOfRange(u32),
}

impl SampleRate {
    /// Highest supported rate. The IMU's burst read takes about 0.4 ms at
    /// 400 kHz I2C, and the IMU's fastest gyro rate is 1.66 kHz.
    pub const MAX_HZ: u32 = 1000;
    /// The firmware's default.
    pub const DEFAULT: Self = Self(25);

    /// Checks the range; usable in constants.
    pub const fn new(hz: u32) -> Result<Self, RateError> {
        if hz == 0 || hz > Self::MAX_HZ {
            Err(RateError::OutOfRange(hz))
        } else {
            Ok(Self(hz))
        }
    }

    /// The rate in hertz.
    pub const fn hz(self) -> u32 {
        self.0
    }
}

impl Default for SampleRate {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<u32> for SampleRate {
    type Error = RateError;

    fn try_from(hz: u32) -> Result<Self, Self::Error> {
        Self::new(hz)
    }
}

/// Deadlines `n / rate` after a start time, in microseconds.
///
/// Each deadline is computed from `n` rather than by adding a period to the
/// previous one, so rounding (the nRF52840's 32.768 kHz time base cannot
/// represent 1 ms exactly) never accumulates: over any span the number of
/// deadlines is exactly `rate × span`, to within one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleSchedule {
    rate: SampleRate,
}

impl SampleSchedule {
    /// A schedule at `rate`.
    pub const fn new(rate: SampleRate) -> Self {
        Self { rate }
    }

    /// The rate.
    pub const fn rate(&self) -> SampleRate {
        self.rate
    }

    /// Microseconds from the start to deadline `n` (rounded down). Exact
    /// for n up to 2^64 / 10^6, which at 1 kHz is half a million years.
    pub const fn deadline_micros(&self, n: u64) -> u64 {
        n.saturating_mul(1_000_000) / self.rate.0 as u64
    }

    /// Whole periods that passed between a deadline and a wake-up `late_micros`
    /// after it: the samples that were not taken in time.
    pub const fn missed_periods(&self, late_micros: u64) -> u64 {
        late_micros.saturating_mul(self.rate.0 as u64) / 1_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_range_is_enforced() {
        assert_eq!(SampleRate::try_from(0), Err(RateError::OutOfRange(0)));
        assert_eq!(SampleRate::try_from(1001), Err(RateError::OutOfRange(1001)));
        assert_eq!(SampleRate::try_from(1).map(SampleRate::hz), Ok(1));
        assert_eq!(SampleRate::try_from(1000).map(SampleRate::hz), Ok(1000));
        assert_eq!(SampleRate::default().hz(), 25);
    }

    #[test]
    fn deadlines_do_not_drift() {
        for hz in [1, 3, 7, 25, 333, 1000] {
            let s = SampleSchedule::new(SampleRate::new(hz).unwrap());
            // After exactly `hz` periods, exactly one second has passed.
            for seconds in [1u64, 60, 86_400] {
                assert_eq!(
                    s.deadline_micros(seconds * u64::from(hz)),
                    seconds * 1_000_000
                );
            }
            // Consecutive deadlines differ by the period, rounded either way.
            let period = 1_000_000 / u64::from(hz);
            for n in 0..2000 {
                let step = s.deadline_micros(n + 1) - s.deadline_micros(n);
                assert!(
                    step == period || step == period + 1,
                    "{hz} Hz, n={n}: {step}"
                );
            }
        }
    }

    #[test]
    fn missed_periods_count_whole_periods_only() {
        let s = SampleSchedule::new(SampleRate::new(1000).unwrap());
        assert_eq!(s.missed_periods(0), 0);
        assert_eq!(s.missed_periods(999), 0);
        assert_eq!(s.missed_periods(1000), 1);
        assert_eq!(s.missed_periods(25_400), 25);
        let s = SampleSchedule::new(SampleRate::DEFAULT);
        assert_eq!(s.missed_periods(39_999), 0);
        assert_eq!(s.missed_periods(40_000), 1);
        assert_eq!(s.missed_periods(u64::MAX), u64::MAX / 1_000_000);
    }
}
