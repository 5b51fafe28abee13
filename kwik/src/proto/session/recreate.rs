//! Re-creation of dead paths (client side): which dead paths are dialled
//! again, when (exponential backoff with jitter, capped), and when to give up.
//!
//! A path that died of a failure (missed pongs, a QUIC error or idle
//! timeout, a bad stream) is re-created over the same local/remote pair as a
//! *new* path with a fresh join token; a path removed on purpose (by either
//! side) is not. The replacement gets a new id so that nothing still in
//! flight for the dead connection — a late frame, a data stream, a task
//! about to exit — can be mistaken for the new one; the dead path keeps its
//! counters. The schedule is pure: the core asks [`Recreations::due`] at
//! `now` which dials start, the driver dials and reports back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::proto::ids::PathId;

/// How a client re-creates paths that died. `Default`: on, first attempt
/// after 100–200 ms, the delay doubling up to 5 s, at most 8 attempts per path.
///
/// ```
/// use std::time::Duration;
/// let patient = kwik::PathRecreation::default()
///     .initial_backoff(Duration::from_millis(500))
///     .max_backoff(Duration::from_secs(30))
///     .max_attempts(20);
/// let config = kwik::SessionConfig::default().path_recreation(patient);
/// # let _ = config;
/// let never = kwik::SessionConfig::default().path_recreation(kwik::PathRecreation::off());
/// # let _ = never;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathRecreation {
    initial: Duration,
    max: Duration,
    attempts: u32,
}

impl Default for PathRecreation {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
            attempts: 8,
        }
    }
}

impl PathRecreation {
    /// Dead paths stay dead (the behaviour before re-creation existed).
    pub fn off() -> Self {
        Self {
            attempts: 0,
            ..Self::default()
        }
    }

    /// Upper bound of the delay before the first attempt. Default 200 ms.
    /// Each delay is drawn uniformly from its upper half (jitter), so many
    /// clients that lost the same network do not dial back in lockstep.
    pub fn initial_backoff(mut self, delay: Duration) -> Self {
        self.initial = delay.max(Duration::from_millis(1));
        self
    }

    /// Cap of the delay between attempts (it doubles after each failed one).
    /// Default 5 s. Never below the initial backoff.
    pub fn max_backoff(mut self, delay: Duration) -> Self {
        self.max = delay;
        self
    }

    /// Dials per dead path before it is given up (`PathEvent::GaveUp`).
    /// Default 8; 0 turns re-creation off.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// Whether dead paths are re-created at all.
    pub fn is_on(&self) -> bool {
        self.attempts > 0
    }

    /// The upper bound of the delay before attempt `attempt` (1-based).
    fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(20);
        self.initial
            .saturating_mul(1 << doublings)
            .min(self.max.max(self.initial))
    }

    /// The delay before attempt `attempt`, with `unit` in [0, 1) choosing
    /// where in the upper half of the ceiling it falls.
    pub(crate) fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        ceiling / 2 + ceiling.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
    }
}

/// One dead path waiting to come back.
#[derive(Debug)]
struct Pending {
    /// The attempt that starts next (or is under way).
    attempt: u32,
    /// When it starts; `None` while a dial is under way.
    due: Option<Instant>,
}

/// What became of a failed dial (see [`Recreations::failed`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Another attempt is scheduled.
    Scheduled,
    /// The attempts are spent: the path stays dead.
    GaveUp,
    /// The path was not being re-created (cancelled meanwhile).
    Unknown,
}

/// The dead paths of a session that are being re-created.
#[derive(Debug)]
pub(crate) struct Recreations {
    config: PathRecreation,
    pending: BTreeMap<PathId, Pending>,
    /// splitmix64 state for the jitter (seeded per session: deterministic
    /// in tests, different across sessions).
    rng: u64,
}

impl Recreations {
    pub(crate) fn new(config: PathRecreation, seed: u64) -> Self {
        Self {
            config,
            pending: BTreeMap::new(),
            rng: seed,
        }
    }

    fn unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `path` died of a failure at `now`: schedules its first attempt.
    /// False when re-creation is off or the path is already pending.
    pub(crate) fn start(&mut self, path: PathId, now: Instant) -> bool {
        if !self.config.is_on() || self.pending.contains_key(&path) {
            return false;
        }
        let unit = self.unit();
        let due = now + self.config.delay(1, unit);
        self.pending.insert(
            path,
            Pending {
                attempt: 1,
                due: Some(due),
            },
        );
        true
    }

    /// The dials that start at `now`, as (dead path, attempt); they count as
    /// under way until [`Self::failed`] or [`Self::succeeded`].
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(PathId, u32)> {
        let mut out = Vec::new();
        for (id, p) in &mut self.pending {
            if p.due.is_some_and(|d| d <= now) {
                p.due = None;
                out.push((*id, p.attempt));
            }
        }
        out
    }

    /// The dial for `path` failed at `now`.
    pub(crate) fn failed(&mut self, path: PathId, now: Instant) -> Retry {
        let Some(p) = self.pending.get_mut(&path) else {
            return Retry::Unknown;
        };
        if p.attempt >= self.config.attempts {
            self.pending.remove(&path);
            return Retry::GaveUp;
        }
        p.attempt += 1;
        let attempt = p.attempt;
        let unit = self.unit();
        let delay = self.config.delay(attempt, unit);
        if let Some(p) = self.pending.get_mut(&path) {
            p.due = Some(now + delay);
        }
        Retry::Scheduled
    }

    /// The dial for `path` succeeded; false if it was not pending.
    pub(crate) fn succeeded(&mut self, path: PathId) -> bool {
        self.pending.remove(&path).is_some()
    }

    /// Stops re-creating `path` (the peer removed it); false if not pending.
    pub(crate) fn cancel(&mut self, path: PathId) -> bool {
        self.pending.remove(&path).is_some()
    }

    /// Whether `path` is being re-created.
    pub(crate) fn contains(&self, path: PathId) -> bool {
        self.pending.contains_key(&path)
    }

    /// Drops every pending re-creation (the session ended).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
    }

    /// When the next dial starts.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().filter_map(|p| p.due).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_cap_and_stay_in_the_upper_half() {
        let c = PathRecreation::default()
            .initial_backoff(MS * 100)
            .max_backoff(MS * 1000);
        let ceilings: Vec<_> = (1..=6).map(|a| c.ceiling(a)).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000].map(|m| MS * m));
        for a in 1..=6 {
            assert_eq!(c.delay(a, 0.0), c.ceiling(a) / 2);
            assert_eq!(c.delay(a, 1.0), c.ceiling(a));
            let mid = c.delay(a, 0.5);
            assert!(mid > c.ceiling(a) / 2 && mid < c.ceiling(a));
        }
        // A cap below the initial delay does not shrink it.
        let odd = PathRecreation::default()
            .initial_backoff(MS * 300)
            .max_backoff(MS * 10);
        assert_eq!(odd.ceiling(4), MS * 300);
    }

    #[test]
    fn schedule_runs_the_attempts_then_gives_up() {
        let t0 = Instant::now();
        let c = PathRecreation::default()
            .initial_backoff(MS * 100)
            .max_attempts(3);
        let mut r = Recreations::new(c, 7);
        let p = PathId::new(0);
        assert!(r.start(p, t0));
        assert!(!r.start(p, t0), "already pending");
        let first = r.next_deadline().unwrap();
        assert!(first >= t0 + MS * 50 && first <= t0 + MS * 100);
        assert!(r.due(first - MS).is_empty());
        assert_eq!(r.due(first), [(p, 1)]);
        // Under way: no deadline, not due again.
        assert_eq!(r.next_deadline(), None);
        assert!(r.due(first + MS * 1000).is_empty());
        let mut now = first;
        for attempt in 2..=3 {
            assert_eq!(r.failed(p, now), Retry::Scheduled);
            let due = r.next_deadline().unwrap();
            let ceiling = c.ceiling(attempt);
            assert!(due >= now + ceiling / 2 && due <= now + ceiling);
            assert_eq!(r.due(due), [(p, attempt)]);
            now = due;
        }
        assert_eq!(r.failed(p, now), Retry::GaveUp);
        assert!(!r.contains(p));
        assert_eq!(r.failed(p, now), Retry::Unknown);
    }

    #[test]
    fn success_cancel_and_off() {
        let t0 = Instant::now();
        let mut r = Recreations::new(PathRecreation::default(), 1);
        let (a, b) = (PathId::new(0), PathId::new(1));
        assert!(r.start(a, t0) && r.start(b, t0));
        assert!(r.cancel(b));
        let due = r.next_deadline().unwrap();
        assert_eq!(r.due(due), [(a, 1)]);
        assert!(r.succeeded(a));
        assert!(!r.succeeded(a));
        assert_eq!(r.next_deadline(), None);

        let mut off = Recreations::new(PathRecreation::off(), 1);
        assert!(!PathRecreation::off().is_on());
        assert!(!off.start(a, t0));
        assert_eq!(off.next_deadline(), None);
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let t0 = Instant::now();
        let deadlines: Vec<_> = (0..8u64)
            .map(|seed| {
                let mut r = Recreations::new(PathRecreation::default(), seed);
                r.start(PathId::new(0), t0);
                r.next_deadline().unwrap()
            })
            .collect();
        let distinct: std::collections::BTreeSet<_> = deadlines.iter().collect();
        assert!(distinct.len() > 4, "{deadlines:?}");
    }
}
