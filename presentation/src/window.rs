//! Flow-control credit of one scope (the session, or one stream).

use std::time::{Duration, Instant};

/// A receive would pass the granted credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("receiving would reach {requested}, beyond the credit {limit}")]
pub struct CreditExceeded {
    /// The granted credit.
    pub limit: u64,
    /// The total the receive would have reached.
    pub requested: u64,
}

/// Receive window and credit of one flow-control scope, with QUIC semantics.
///
/// A [`Presentation`](crate::Presentation) keeps one for the whole session (its
/// budget of buffered-but-unread bytes; credit = MAX_DATA, the max sum over streams
/// of the highest offset received) and one per stream (that stream's allocation;
/// credit = MAX_STREAM_DATA, the max offset).
///
/// * `received` counts flow-control consumption by the sender (highest offsets);
///   it never passes `credit`.
/// * `consumed` counts bytes the application read (or that were discarded); only
///   consumption releases credit.
/// * Credit only grows: it is raised to `consumed + window` once at least half a
///   window has been consumed since the last raise, so updates are worth sending.
/// * Auto-tuning: the window doubles, up to `max_window`, at a raise when it is what
///   limited the sender and the reader kept up (no backpressure signalled since the
///   last raise). It limited the sender when the sender used the whole credit since
///   the last raise, or when two raises come less than two round trips apart. The
///   first test needs no clock: over several paths the time from a raise to the data
///   it allows includes every path's queue, which a round-trip estimate from pings
///   misses (a window that sustains the fastest path's RTT stalls the stream).
#[derive(Debug, Clone)]
pub struct ReceiveWindow {
    window: u64,
    max_window: u64,
    credit: u64,
    received: u64,
    consumed: u64,
    last_update: Option<Instant>,
    pressure_since_update: bool,
    /// The sender used the whole credit since the last raise.
    blocked_since_update: bool,
    growths: u64,
}

impl ReceiveWindow {
    /// A window of `window` bytes (initial credit), tunable up to `max_window`.
    pub fn new(window: u64, max_window: u64) -> Self {
        Self {
            window,
            max_window: max_window.max(window),
            credit: window,
            received: 0,
            consumed: 0,
            last_update: None,
            pressure_since_update: false,
            blocked_since_update: false,
            growths: 0,
        }
    }

    /// Current credit: the peer may send up to this (offset or total).
    pub fn credit(&self) -> u64 {
        self.credit
    }

    /// Current window size in bytes.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Auto-tuning ceiling.
    pub fn max_window(&self) -> u64 {
        self.max_window
    }

    /// Flow-control consumption by the sender.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes released by the application.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Received but not yet consumed: at most the window.
    pub fn outstanding(&self) -> u64 {
        self.received - self.consumed
    }

    /// How many more bytes the sender may send under the current credit.
    pub fn available(&self) -> u64 {
        self.credit - self.received
    }

    /// How many times auto-tuning grew the window.
    pub fn growths(&self) -> u64 {
        self.growths
    }

    /// Checks that `delta` more bytes fit the credit, without recording them.
    pub fn check(&self, delta: u64) -> Result<(), CreditExceeded> {
        let requested = self.received.saturating_add(delta);
        if requested > self.credit {
            Err(CreditExceeded {
                limit: self.credit,
                requested,
            })
        } else {
            Ok(())
        }
    }

    /// Records `delta` more bytes received, if they fit the credit.
    pub fn receive(&mut self, delta: u64) -> Result<(), CreditExceeded> {
        self.check(delta)?;
        self.received += delta;
        self.blocked_since_update |= self.received == self.credit;
        Ok(())
    }

    /// Records `n` bytes consumed (read or discarded); capped at what was received.
    pub fn consume(&mut self, n: u64) {
        self.consumed = (self.consumed + n).min(self.received);
    }

    /// Notes that backpressure was signalled: suppresses auto-tuning until the
    /// next credit raise.
    pub fn note_pressure(&mut self) {
        self.pressure_since_update = true;
    }

    /// Whether enough was consumed that a credit raise is worth sending.
    #[inline]
    pub fn update_due(&self) -> bool {
        (self.consumed + self.window).saturating_sub(self.credit) >= self.window.div_ceil(2)
    }

    /// Raises the credit if [`update_due`](Self::update_due), auto-tuning the window
    /// first. Returns the new credit when it was raised.
    #[inline]
    pub fn update(&mut self, now: Instant, rtt: Duration) -> Option<u64> {
        if !self.update_due() {
            return None;
        }
        Some(self.raise(now, rtt))
    }

    fn raise(&mut self, now: Instant, rtt: Duration) -> u64 {
        let fast = self
            .last_update
            .is_some_and(|last| now.saturating_duration_since(last) < rtt.saturating_mul(2));
        let limited = fast || self.blocked_since_update;
        if limited && !self.pressure_since_update && self.window < self.max_window {
            self.window = (self.window.saturating_mul(2)).min(self.max_window);
            self.growths += 1;
            tracing::debug!(window = self.window, fast, "receive window grew");
        }
        tracing::trace!(
            window = self.window,
            blocked = self.blocked_since_update,
            since_last = ?self.last_update.map(|last| now.saturating_duration_since(last)),
            ?rtt,
            "credit raise"
        );
        self.last_update = Some(now);
        self.pressure_since_update = false;
        self.blocked_since_update = false;
        self.credit = self.credit.max(self.consumed + self.window);
        self.credit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_grows_after_half_a_window() {
        let t = Instant::now();
        let rtt = Duration::from_millis(10);
        let mut w = ReceiveWindow::new(100, 100);
        assert_eq!(w.receive(100), Ok(()));
        assert_eq!(
            w.receive(1),
            Err(CreditExceeded {
                limit: 100,
                requested: 101
            })
        );
        w.consume(49);
        assert_eq!(w.update(t, rtt), None, "not worth an update yet");
        w.consume(1);
        assert_eq!(w.update(t, rtt), Some(150));
        assert_eq!(w.available(), 50);
        w.consume(1000);
        assert_eq!(w.consumed(), 100, "cannot consume more than received");
    }

    #[test]
    fn auto_tunes_when_reader_keeps_up() {
        let t = Instant::now();
        let rtt = Duration::from_millis(10);
        let mut w = ReceiveWindow::new(100, 400);
        w.receive(60).unwrap();
        w.consume(60);
        assert_eq!(w.update(t, rtt), Some(160));
        w.receive(60).unwrap();
        w.consume(60);
        // Second raise within 2 RTT: the window doubles.
        assert_eq!(w.update(t + Duration::from_millis(5), rtt), Some(320));
        assert_eq!(w.window(), 200);
        // Backpressure in between: no growth.
        w.receive(120).unwrap();
        w.consume(120);
        w.note_pressure();
        assert_eq!(w.update(t + Duration::from_millis(6), rtt), Some(440));
        assert_eq!(w.window(), 200);
        // Slow raises, sender never out of credit: no growth either.
        w.receive(150).unwrap();
        w.consume(150);
        assert_eq!(w.update(t + Duration::from_secs(1), rtt), Some(590));
        assert_eq!(w.window(), 200);
        assert_eq!(w.growths(), 1);
    }

    /// The rule that keeps a stream spread over unequal paths from stalling: raises
    /// far apart (a credit loop much longer than the RTT estimate, e.g. behind a
    /// slow path's queue), but the sender ran out of credit each time, so the window
    /// grows anyway, up to `max_window`; with credit left over, or with the reader
    /// behind (backpressure), it does not.
    #[test]
    fn grows_when_the_sender_used_the_whole_credit() {
        let t = Instant::now();
        let rtt = Duration::from_millis(10);
        let secs = |s: u64| t + Duration::from_secs(s);
        let mut w = ReceiveWindow::new(100, 400);
        // The sender takes all 100 bytes of credit; the reader reads half.
        w.receive(100).unwrap();
        w.consume(50);
        assert_eq!(w.update(secs(1), rtt), Some(250), "blocked: 100 -> 200");
        assert_eq!(w.window(), 200);
        w.receive(150).unwrap();
        w.consume(100);
        assert_eq!(
            w.update(secs(2), rtt),
            Some(550),
            "blocked again: 200 -> 400"
        );
        assert_eq!(w.window(), 400, "capped at max_window");
        w.receive(300).unwrap();
        w.consume(400);
        assert_eq!(w.update(secs(3), rtt), Some(950));
        assert_eq!(w.window(), 400);
        assert_eq!(w.growths(), 2);

        // Out of credit, but the reader fell behind (backpressure): no growth.
        let mut w = ReceiveWindow::new(100, 400);
        w.receive(100).unwrap();
        w.note_pressure();
        w.consume(60);
        assert_eq!(w.update(secs(1), rtt), Some(160));
        assert_eq!(w.window(), 100);
        // Credit left over at the next raise: no growth either.
        w.receive(50).unwrap();
        w.consume(90);
        assert_eq!(w.update(secs(2), rtt), Some(250));
        assert_eq!(w.window(), 100);
        assert_eq!(w.growths(), 0);
    }
}
