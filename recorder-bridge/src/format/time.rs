//! Time of a sample relative to its recording group's t0.

use std::fmt;

/// Time since the recording group's t0, in whole microseconds.
///
/// Stored as an integer so that the 6-decimal CSV form (`12.000250`) is exact and
/// round-trips without loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RelMicros(pub u64);

impl RelMicros {
    /// From a duration since t0 (sub-microsecond part truncated).
    pub fn from_duration(d: std::time::Duration) -> Self {
        RelMicros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// Seconds as a float (for display and the LabVIEW time row's meaning).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl fmt::Display for RelMicros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}
