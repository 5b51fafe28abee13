//! The impairment model of one direction of a relay, as pure logic.
//!
//! A [`Link`] decides, for each datagram offered at time `now`, whether it is dropped (and
//! why) or when it is to be delivered. It never reads the clock and never sleeps: the
//! relay's tokio driver (and deterministic unit tests) pass `now` in. Given the same seed,
//! the same impairment and the same sequence of `(now, len)` offers, the verdicts are the
//! same.
//!
//! The stages, in order:
//! 1. **blackhole** — everything is dropped ([`DropReason::Blackhole`]);
//! 2. **random loss** — each datagram is dropped with probability [`LossRate`], drawn
//!    from a seeded generator ([`DropReason::Loss`]);
//! 3. **rate limit** — a token bucket of [`BitRate`] with a burst allowance, in front of a
//!    FIFO queue bounded in bytes; a datagram that would overflow the queue is dropped at
//!    the tail ([`DropReason::Queue`]);
//! 4. **delay and jitter** — a fixed delay plus a uniform random extra in `[0, jitter]`.
//!    Delivery times never decrease, so the link does not reorder datagrams.
//!
//! Sizes are UDP payload bytes; IP and UDP headers are not charged to the rate limit.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A probability of random loss, in `[0.0, 1.0]`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct LossRate(f64);

/// A value that is not a probability was given as a [`LossRate`].
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("loss rate {0} is not within [0, 1]")]
pub struct InvalidLossRate(pub f64);

impl LossRate {
    /// No random loss.
    pub const ZERO: LossRate = LossRate(0.0);

    /// Builds a loss rate from a probability in `[0.0, 1.0]`.
    pub fn new(probability: f64) -> Result<Self, InvalidLossRate> {
        if (0.0..=1.0).contains(&probability) {
            Ok(Self(probability))
        } else {
            Err(InvalidLossRate(probability))
        }
    }

    /// Builds a loss rate from a percentage in `[0.0, 100.0]`.
    pub fn percent(percent: f64) -> Result<Self, InvalidLossRate> {
        Self::new(percent / 100.0).map_err(|_| InvalidLossRate(percent))
    }

    /// The probability in `[0.0, 1.0]`.
    pub fn probability(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for LossRate {
    type Error = InvalidLossRate;

    fn try_from(probability: f64) -> Result<Self, Self::Error> {
        Self::new(probability)
    }
}

/// A link rate in bits per second (never zero; "no limit" is `Option::None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BitRate(NonZeroU64);

/// Zero was given as a [`BitRate`]; to stop traffic use a blackhole instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a bit rate must be greater than zero")]
pub struct ZeroBitRate;

impl BitRate {
    /// Builds a rate from bits per second.
    pub fn bits_per_second(bits: u64) -> Result<Self, ZeroBitRate> {
        NonZeroU64::new(bits).map(Self).ok_or(ZeroBitRate)
    }

    /// Builds a rate from megabits (10^6 bits) per second.
    pub fn mbit(megabits: u64) -> Result<Self, ZeroBitRate> {
        Self::bits_per_second(megabits.saturating_mul(1_000_000))
    }

    /// The rate in bits per second.
    pub fn as_bits_per_second(self) -> u64 {
        self.0.get()
    }

    /// The rate in bytes per second.
    pub fn bytes_per_second(self) -> f64 {
        self.0.get() as f64 / 8.0
    }
}

impl TryFrom<u64> for BitRate {
    type Error = ZeroBitRate;

    fn try_from(bits: u64) -> Result<Self, Self::Error> {
        Self::bits_per_second(bits)
    }
}

/// What one direction of a relay does to the datagrams that cross it.
///
/// The default impairs nothing: no blackhole, no loss, no rate limit, no delay.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    blackhole: bool,
    loss: LossRate,
    rate: Option<BitRate>,
    burst_bytes: u32,
    queue_limit_bytes: u32,
    delay: Duration,
    jitter: Duration,
}

impl Default for Impairment {
    fn default() -> Self {
        Self {
            blackhole: false,
            loss: LossRate::ZERO,
            rate: None,
            burst_bytes: Self::DEFAULT_BURST_BYTES,
            queue_limit_bytes: Self::DEFAULT_QUEUE_LIMIT_BYTES,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
        }
    }
}

impl Impairment {
    /// Default token-bucket depth: 16 KiB, about a dozen full-size QUIC datagrams.
    pub const DEFAULT_BURST_BYTES: u32 = 16 * 1024;
    /// Default queue bound behind the rate limiter: 256 KiB (21 ms at 100 Mbit/s).
    pub const DEFAULT_QUEUE_LIMIT_BYTES: u32 = 256 * 1024;

    /// An impairment that changes nothing (same as `Default`).
    pub fn none() -> Self {
        Self::default()
    }

    /// Drops every datagram when `on` (default off). Counted as [`DropReason::Blackhole`].
    pub fn set_blackhole(&mut self, on: bool) -> &mut Self {
        self.blackhole = on;
        self
    }

    /// Random loss probability (default zero). Counted as [`DropReason::Loss`].
    pub fn set_loss(&mut self, loss: LossRate) -> &mut Self {
        self.loss = loss;
        self
    }

    /// Rate limit in bits per second, or `None` for unlimited (default).
    pub fn set_rate(&mut self, rate: Option<BitRate>) -> &mut Self {
        self.rate = rate;
        self
    }

    /// Token-bucket depth in bytes (default [`Self::DEFAULT_BURST_BYTES`]): how much may
    /// leave at once after the link was idle. Larger bursts make a rate-limited link
    /// friendlier to bursty senders but less smooth.
    pub fn set_burst_bytes(&mut self, bytes: u32) -> &mut Self {
        self.burst_bytes = bytes;
        self
    }

    /// Bound of the FIFO queue behind the rate limiter, in bytes (default
    /// [`Self::DEFAULT_QUEUE_LIMIT_BYTES`]). A datagram that would overflow it is dropped
    /// ([`DropReason::Queue`]). Larger queues add latency under load (bufferbloat);
    /// smaller ones drop sooner.
    pub fn set_queue_limit_bytes(&mut self, bytes: u32) -> &mut Self {
        self.queue_limit_bytes = bytes;
        self
    }

    /// Fixed one-way delay added to every datagram (default zero).
    pub fn set_delay(&mut self, delay: Duration) -> &mut Self {
        self.delay = delay;
        self
    }

    /// Upper bound of a uniform random extra delay (default zero). Datagrams are never
    /// reordered: a datagram is not delivered before the one offered ahead of it.
    pub fn set_jitter(&mut self, jitter: Duration) -> &mut Self {
        self.jitter = jitter;
        self
    }

    /// Whether every datagram is dropped.
    pub fn blackhole(&self) -> bool {
        self.blackhole
    }

    /// The random loss probability.
    pub fn loss(&self) -> LossRate {
        self.loss
    }

    /// The rate limit, if any.
    pub fn rate(&self) -> Option<BitRate> {
        self.rate
    }

    /// The token-bucket depth in bytes.
    pub fn burst_bytes(&self) -> u32 {
        self.burst_bytes
    }

    /// The queue bound in bytes.
    pub fn queue_limit_bytes(&self) -> u32 {
        self.queue_limit_bytes
    }

    /// The fixed delay.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The jitter bound.
    pub fn jitter(&self) -> Duration {
        self.jitter
    }
}

/// Why a [`Link`] dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The link is blackholed.
    Blackhole,
    /// Random loss.
    Loss,
    /// The rate limiter's queue was full (drop-tail), or the relay's in-flight bound was
    /// reached.
    Queue,
}

/// The fate of one datagram offered to a [`Link`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver the datagram at this instant (possibly `now`).
    Deliver(Instant),
    /// Drop the datagram.
    Drop(DropReason),
}

/// One direction of an impaired link: the state of its token bucket, queue, delay line and
/// loss generator. Pure logic; see the [module docs](self).
#[derive(Debug)]
pub struct Link {
    impairment: Impairment,
    rng: StdRng,
    /// Bytes available in the token bucket as of `tokens_at`.
    tokens: f64,
    tokens_at: Instant,
    /// When the last queued datagram leaves the rate limiter; in the past when idle.
    backlog_until: Instant,
    /// Delivery time of the last datagram accepted, to keep delivery in order.
    last_delivery: Instant,
}

impl Link {
    /// A link with the given impairment, loss generator seed and start time. The token
    /// bucket starts full.
    pub fn new(impairment: Impairment, seed: u64, now: Instant) -> Self {
        Self {
            tokens: f64::from(impairment.burst_bytes),
            impairment,
            rng: StdRng::seed_from_u64(seed),
            tokens_at: now,
            backlog_until: now,
            last_delivery: now,
        }
    }

    /// The current impairment.
    pub fn impairment(&self) -> &Impairment {
        &self.impairment
    }

    /// Replaces the impairment. Datagrams already accepted keep their delivery time; the
    /// token bucket and the queue carry over (the bucket is clipped to the new burst).
    pub fn set_impairment(&mut self, impairment: Impairment) {
        self.tokens = self.tokens.min(f64::from(impairment.burst_bytes));
        self.impairment = impairment;
    }

    /// Decides the fate of a datagram of `len` payload bytes offered at `now`.
    ///
    /// `now` should not go backwards between calls; if it does, it is treated as the
    /// latest instant seen.
    pub fn offer(&mut self, now: Instant, len: usize) -> Verdict {
        if self.impairment.blackhole {
            return Verdict::Drop(DropReason::Blackhole);
        }
        let p = self.impairment.loss.probability();
        if p > 0.0 && self.rng.random_bool(p) {
            return Verdict::Drop(DropReason::Loss);
        }
        let departure = match self.impairment.rate {
            None => now,
            Some(rate) => match self.shape(now, len, rate) {
                Some(departure) => departure,
                None => return Verdict::Drop(DropReason::Queue),
            },
        };
        let jitter = if self.impairment.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.impairment.jitter.mul_f64(self.rng.random::<f64>())
        };
        let delivery = (departure + self.impairment.delay + jitter).max(self.last_delivery);
        self.last_delivery = delivery;
        Verdict::Deliver(delivery)
    }

    /// Token bucket in front of a byte-bounded FIFO: returns the departure time, or `None`
    /// when the queue would overflow.
    fn shape(&mut self, now: Instant, len: usize, rate: BitRate) -> Option<Instant> {
        let bytes_per_sec = rate.bytes_per_second();
        let len_f = len as f64;
        let queue_limit = f64::from(self.impairment.queue_limit_bytes);
        if self.backlog_until > now {
            // Datagrams are waiting: the bucket is empty and this one queues behind them.
            let backlog = (self.backlog_until - now).as_secs_f64() * bytes_per_sec;
            if backlog + len_f > queue_limit {
                return None;
            }
            let departure = self.backlog_until + Duration::from_secs_f64(len_f / bytes_per_sec);
            self.backlog_until = departure;
            self.tokens = 0.0;
            self.tokens_at = departure;
            return Some(departure);
        }
        // Idle: refill the bucket for the time that passed.
        if now > self.tokens_at {
            let refill = (now - self.tokens_at).as_secs_f64() * bytes_per_sec;
            self.tokens = (self.tokens + refill).min(f64::from(self.impairment.burst_bytes));
            self.tokens_at = now;
        }
        if self.tokens >= len_f {
            self.tokens -= len_f;
            return Some(now);
        }
        if len_f > queue_limit {
            return None;
        }
        let departure = now + Duration::from_secs_f64((len_f - self.tokens) / bytes_per_sec);
        self.tokens = 0.0;
        self.tokens_at = departure;
        self.backlog_until = departure;
        Some(departure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(v: Verdict) -> Instant {
        match v {
            Verdict::Deliver(at) => at,
            Verdict::Drop(reason) => panic!("unexpected drop: {reason:?}"),
        }
    }

    #[test]
    fn default_link_delivers_immediately() {
        let t0 = Instant::now();
        let mut link = Link::new(Impairment::none(), 1, t0);
        for i in 0..1000u64 {
            let now = t0 + Duration::from_micros(i);
            assert_eq!(link.offer(now, 1200), Verdict::Deliver(now));
        }
    }

    #[test]
    fn blackhole_drops_everything_and_can_be_lifted() {
        let t0 = Instant::now();
        let mut imp = Impairment::none();
        imp.set_blackhole(true);
        let mut link = Link::new(imp.clone(), 1, t0);
        for _ in 0..100 {
            assert_eq!(link.offer(t0, 100), Verdict::Drop(DropReason::Blackhole));
        }
        imp.set_blackhole(false);
        link.set_impairment(imp);
        assert_eq!(link.offer(t0, 100), Verdict::Deliver(t0));
    }

    #[test]
    fn loss_ratio_matches_and_is_reproducible() {
        let t0 = Instant::now();
        let mut imp = Impairment::none();
        imp.set_loss(LossRate::percent(5.0).unwrap());
        let run = |seed| {
            let mut link = Link::new(imp.clone(), seed, t0);
            (0..100_000)
                .map(|_| link.offer(t0, 1200) == Verdict::Drop(DropReason::Loss))
                .collect::<Vec<_>>()
        };
        let a = run(7);
        let lost = a.iter().filter(|&&l| l).count();
        assert!(
            (4_500..=5_500).contains(&lost),
            "lost {lost} of 100000 at 5 %"
        );
        assert_eq!(a, run(7), "same seed, same losses");
        assert_ne!(a, run(8), "another seed, other losses");
    }

    #[test]
    fn rate_limit_spaces_departures_and_drops_at_the_tail() {
        let t0 = Instant::now();
        let mut imp = Impairment::none();
        // 1 Mbit/s = 125 000 B/s: a 1250-byte datagram takes 10 ms.
        imp.set_rate(Some(BitRate::mbit(1).unwrap()))
            .set_burst_bytes(2500)
            .set_queue_limit_bytes(12_500);
        let mut link = Link::new(imp, 1, t0);
        let verdicts: Vec<_> = (0..100).map(|_| link.offer(t0, 1250)).collect();
        // Two leave at once from the burst, then the 12 500-byte queue holds ten more.
        assert_eq!(verdicts[0], Verdict::Deliver(t0));
        assert_eq!(verdicts[1], Verdict::Deliver(t0));
        let queued: Vec<_> = verdicts[2..12].iter().map(|&v| delivered(v)).collect();
        for (i, at) in queued.iter().enumerate() {
            let expected = Duration::from_millis(10 * (i as u64 + 1));
            let got = *at - t0;
            assert!(
                got.abs_diff(expected) < Duration::from_micros(1),
                "{got:?} vs {expected:?}"
            );
        }
        assert!(
            verdicts[12..]
                .iter()
                .all(|&v| v == Verdict::Drop(DropReason::Queue))
        );
        // Once the queue has drained, datagrams flow again.
        let later = t0 + Duration::from_millis(500);
        assert_eq!(link.offer(later, 1250), Verdict::Deliver(later));
    }

    #[test]
    fn offered_at_the_rate_nothing_is_dropped() {
        let t0 = Instant::now();
        let mut imp = Impairment::none();
        imp.set_rate(Some(BitRate::mbit(100).unwrap()));
        let mut link = Link::new(imp, 1, t0);
        // 1200 bytes at 100 Mbit/s take 96 us; offer one every 96 us for 10 000 datagrams.
        for i in 0..10_000u64 {
            let now = t0 + Duration::from_micros(96 * i);
            assert!(matches!(link.offer(now, 1200), Verdict::Deliver(_)));
        }
    }

    #[test]
    fn delay_and_jitter_bound_delivery_and_keep_order() {
        let t0 = Instant::now();
        let mut imp = Impairment::none();
        imp.set_delay(Duration::from_millis(20))
            .set_jitter(Duration::from_millis(5));
        let mut link = Link::new(imp, 3, t0);
        let mut last = t0;
        for i in 0..1000u64 {
            let now = t0 + Duration::from_micros(100 * i);
            let at = delivered(link.offer(now, 1000));
            assert!(at >= now + Duration::from_millis(20));
            assert!(at >= last, "reordered");
            // Order keeping may push a datagram behind its predecessor, never past
            // that predecessor's own bound.
            assert!(at <= now.max(last) + Duration::from_millis(25));
            last = at;
        }
    }

    #[test]
    fn bad_parameters_are_rejected() {
        assert!(LossRate::new(1.5).is_err());
        assert!(LossRate::new(-0.1).is_err());
        assert!(LossRate::new(f64::NAN).is_err());
        assert!(BitRate::bits_per_second(0).is_err());
        assert_eq!(
            BitRate::mbit(100).unwrap().as_bits_per_second(),
            100_000_000
        );
    }
}
