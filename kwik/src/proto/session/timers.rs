//! The session's clocks besides the paths' pings: the delayed-ACK deadline and
//! the wall-clock anchor. The core never reads a clock: the driver passes
//! `now` into every call and, now and then, the Unix time at some `now`
//! ([`Timers::set_wall_clock`]); grant expiries are Unix times, so the core
//! converts with that anchor.

use std::time::Instant;

/// The delayed-ACK deadline and the wall-clock anchor.
#[derive(Debug)]
pub(crate) struct Timers {
    ack_deadline: Option<Instant>,
    /// An instant and the Unix time in milliseconds at that instant.
    wall: (Instant, u64),
}

impl Timers {
    /// No ACK pending; the wall clock reads 0 at `now` until anchored.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            ack_deadline: None,
            wall: (now, 0),
        }
    }

    /// Anchors wall-clock time: `unix_ms` is the Unix time at `now`.
    pub(crate) fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.wall = (now, unix_ms);
    }

    /// Unix milliseconds at `now`, from the last anchor.
    pub(crate) fn wall_ms(&self, now: Instant) -> u64 {
        let (at, ms) = self.wall;
        if now >= at {
            ms.saturating_add(now.duration_since(at).as_millis() as u64)
        } else {
            ms.saturating_sub(at.duration_since(now).as_millis() as u64)
        }
    }

    /// Acknowledgements are due at `due` at the latest.
    pub(crate) fn arm_ack(&mut self, due: Instant) {
        self.ack_deadline = Some(self.ack_deadline.map_or(due, |d| d.min(due)));
    }

    /// Whether the delayed-ACK deadline passed at `now` (it is then disarmed).
    pub(crate) fn take_ack_due(&mut self, now: Instant) -> bool {
        if self.ack_deadline.is_some_and(|d| d <= now) {
            self.ack_deadline = None;
            return true;
        }
        false
    }

    /// The earlier of the delayed-ACK deadline and `pings` (the paths' next ping).
    pub(crate) fn next_deadline(&self, pings: Option<Instant>) -> Option<Instant> {
        pings.into_iter().chain(self.ack_deadline).min()
    }
}
