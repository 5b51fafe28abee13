//! Configuration of the receive side.

use std::time::Duration;

use crate::FractionError;

/// A number in `0.0..=1.0`, e.g. a fill level. Built with [`Fraction::new`] or
/// `TryFrom<f64>`, which reject anything else.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Fraction(f64);

impl Fraction {
    /// Checks that `value` lies in `0.0..=1.0`.
    pub fn new(value: f64) -> Result<Self, FractionError> {
        if (0.0..=1.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(FractionError::OutOfRange(value))
        }
    }

    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }

    /// `self * amount`, rounded down.
    pub(crate) fn of(self, amount: u64) -> u64 {
        (amount as f64 * self.0) as u64
    }
}

impl TryFrom<f64> for Fraction {
    type Error = FractionError;

    fn try_from(value: f64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

/// Settings of a [`Presentation`](crate::Presentation). `Default` gives values
/// suited to a LAN/WAN session of a few paths; each setter documents its unit and
/// trade-off. Setters take `self` and return it, for chaining.
#[derive(Debug, Clone)]
pub struct PresentationConfig {
    pub(crate) session_window: u64,
    pub(crate) max_session_window: u64,
    pub(crate) stream_window: u64,
    pub(crate) max_stream_window: u64,
    pub(crate) stream_backpressure: Fraction,
    pub(crate) session_backpressure: Fraction,
    pub(crate) hysteresis: Fraction,
    pub(crate) gap_timeout: Duration,
    pub(crate) idle_stream_timeout: Duration,
    pub(crate) initial_rtt: Duration,
    pub(crate) max_streams: usize,
    pub(crate) max_segments_per_stream: usize,
}

impl Default for PresentationConfig {
    fn default() -> Self {
        Self {
            session_window: 16 << 20,
            max_session_window: 64 << 20,
            stream_window: 4 << 20,
            max_stream_window: 16 << 20,
            stream_backpressure: Fraction(0.75),
            session_backpressure: Fraction(0.80),
            hysteresis: Fraction(0.25),
            gap_timeout: Duration::from_millis(250),
            idle_stream_timeout: Duration::from_secs(30),
            initial_rtt: Duration::from_millis(50),
            max_streams: 1024,
            max_segments_per_stream: crate::stream_buffer::DEFAULT_MAX_SEGMENTS,
        }
    }
}

impl PresentationConfig {
    /// Initial session window in bytes: how much the whole session may hold
    /// buffered-but-unread. Default 16 MiB. Larger windows sustain more bandwidth ×
    /// delay but let a stalled reader pin more memory. Raises the maximum if needed.
    pub fn session_window(mut self, bytes: u64) -> Self {
        self.session_window = bytes.max(1);
        self.max_session_window = self.max_session_window.max(self.session_window);
        self
    }

    /// Ceiling for session-window auto-tuning, in bytes. Default 64 MiB. Never below
    /// the initial session window.
    pub fn max_session_window(mut self, bytes: u64) -> Self {
        self.max_session_window = bytes.max(self.session_window);
        self
    }

    /// Initial per-stream window (credit beyond the read position) in bytes.
    /// Default 4 MiB. Raises the maximum if needed.
    pub fn stream_window(mut self, bytes: u64) -> Self {
        self.stream_window = bytes.max(1);
        self.max_stream_window = self.max_stream_window.max(self.stream_window);
        self
    }

    /// Ceiling for per-stream auto-tuning, in bytes. Default 16 MiB.
    pub fn max_stream_window(mut self, bytes: u64) -> Self {
        self.max_stream_window = bytes.max(self.stream_window);
        self
    }

    /// Fill levels (buffered / window) at which backpressure switches on for a
    /// stream and for the session. Defaults 0.75 and 0.80. Lower values signal
    /// earlier and waste less memory; higher values use more of the window.
    pub fn backpressure_thresholds(mut self, stream: Fraction, session: Fraction) -> Self {
        self.stream_backpressure = stream;
        self.session_backpressure = session;
        self
    }

    /// How far below the on-threshold the fill level must fall before backpressure
    /// switches off again. Default 0.25 (on at 75 %, off at 50 %). Larger values mean
    /// fewer on/off flaps and longer stalls.
    pub fn backpressure_hysteresis(mut self, hysteresis: Fraction) -> Self {
        self.hysteresis = hysteresis;
        self
    }

    /// How long the reader may wait on a hole before a
    /// [`PresentationEvent::GapTimeout`](crate::PresentationEvent::GapTimeout) asks
    /// the senders to retransmit; repeated every `timeout` while the hole stays.
    /// Default 250 ms. Shorter values recover faster and re-send more needlessly.
    pub fn gap_timeout(mut self, timeout: Duration) -> Self {
        self.gap_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a closed stream (finished, reset, or stopped and complete) lingers
    /// without activity before it is removed. Late duplicates from slower paths
    /// keep being absorbed until then. Default 30 s.
    pub fn idle_stream_timeout(mut self, timeout: Duration) -> Self {
        self.idle_stream_timeout = timeout;
        self
    }

    /// Round-trip time assumed by auto-tuning until
    /// [`Presentation::set_rtt`](crate::Presentation::set_rtt) reports a measured
    /// one. Default 50 ms.
    pub fn initial_rtt(mut self, rtt: Duration) -> Self {
        self.initial_rtt = rtt;
        self
    }

    /// Most streams open at once. Default 1024. Bounds memory held by per-stream
    /// bookkeeping.
    pub fn max_streams(mut self, streams: usize) -> Self {
        self.max_streams = streams.max(1);
        self
    }

    /// Most separately stored segments per stream before touching segments are
    /// copied together and, if still too many, writes refused. Default 65 536.
    pub fn max_segments_per_stream(mut self, segments: usize) -> Self {
        self.max_segments_per_stream = segments.max(1);
        self
    }

    /// Initial session window in bytes.
    pub fn get_session_window(&self) -> u64 {
        self.session_window
    }

    /// Initial per-stream window in bytes.
    pub fn get_stream_window(&self) -> u64 {
        self.stream_window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_rejects_out_of_range() {
        assert!(Fraction::new(0.5).is_ok());
        assert!(Fraction::try_from(1.5).is_err());
        assert!(Fraction::try_from(f64::NAN).is_err());
        assert!(Fraction::new(-0.1).is_err());
    }

    #[test]
    fn setters_keep_bounds_consistent() {
        let c = PresentationConfig::default()
            .session_window(100 << 20)
            .stream_window(1 << 10)
            .max_stream_window(1);
        assert_eq!(c.max_session_window, 100 << 20);
        assert_eq!(c.max_stream_window, 1 << 10);
    }
}
