//! The paths of a session: per path, liveness from ping/pong, smoothed RTT,
//! data in flight, delivery rate, counters and its queue of control frames;
//! for the session, which path carries what must arrive (the best one) and
//! which ids new paths get.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kwik_presentation::{Side, StreamId};

use super::control_queue::ControlQueue;
use super::telemetry::PathMetrics;
use crate::proto::ids::PathId;
use crate::proto::scheduler::PathView;
use crate::proto::wire::frame::{Frame, PathStatus};

/// Where a path is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathState {
    /// Joined; no pong seen yet.
    Joined,
    /// A pong came back: the path carries traffic both ways.
    Validated,
    /// At least one pong is overdue.
    Degraded,
    /// Dead or removed; its unacknowledged data was re-sent elsewhere.
    Abandoned,
}

/// Counters and estimates of one path.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PathStats {
    /// The path.
    pub id: PathId,
    /// Life-cycle state.
    pub state: PathState,
    /// Available or backup.
    pub status: PathStatus,
    /// Smoothed round-trip time from ping/pong, if measured.
    pub srtt: Option<Duration>,
    /// Payload bytes handed to this path (first sends and re-sends).
    pub bytes_sent: u64,
    /// Of `bytes_sent`, bytes that were re-sends of a dead path's data.
    pub bytes_resent: u64,
    /// Payload bytes received on this path.
    pub bytes_received: u64,
    /// Bytes sent on this path and not yet acknowledged.
    pub inflight: u64,
    /// Delivery-rate estimate (bytes per second) used by `Aggregate`.
    pub rate: f64,
    /// Pings sent.
    pub pings_sent: u64,
    /// Pings currently overdue.
    pub missed_pongs: u32,
    /// The user's weight for `Aggregate` (`None`: split by measured rate).
    pub weight: Option<u32>,
    /// Control frames waiting for the path's control writer (it waits while
    /// the peer does not read its control channel).
    pub control_queued: usize,
    /// Control frames that replaced a queued one carrying older state of the
    /// same thing (an ACK, a credit, a PING or PONG) instead of queuing.
    pub control_coalesced: u64,
}

#[derive(Debug)]
pub(crate) struct Path {
    pub(crate) id: PathId,
    pub(crate) state: PathState,
    pub(crate) status: PathStatus,
    srtt: Option<Duration>,
    next_seq: u64,
    outstanding: Option<(u64, Instant)>,
    pub(crate) missed: u32,
    next_ping: Instant,
    /// When the last ping went out.
    last_ping: Option<Instant>,
    /// The interval the next ping was scheduled with (grows while idle).
    interval: Duration,
    /// Stream data moved (either way) since the last ping.
    active: bool,
    pub(crate) inflight: u64,
    rate: f64,
    /// `rate` comes from a measurement, not `INITIAL_RATE`.
    rate_measured: bool,
    rate_window_start: Instant,
    rate_window_bytes: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_resent: u64,
    pub(crate) bytes_received: u64,
    pings_sent: u64,
    pub(crate) control: ControlQueue,
    /// Logical streams whose data streams on this path can be finished.
    pub(crate) done_streams: Vec<StreamId>,
    metrics: PathMetrics,
    /// The user's weight for `Aggregate`.
    pub(crate) weight: Option<u32>,
    /// Bytes this path is owed under the weights (see [`Paths::on_sent`]).
    deficit: f64,
}

/// Initial delivery-rate guess (bytes/s) until acknowledgements measure it.
const INITIAL_RATE: f64 = 10e6;
/// Bound of a path's weighted deficit (bytes), so a path that could not take
/// its share for a while does not take everything afterwards.
const MAX_DEFICIT: f64 = (16 << 20) as f64;
/// RTT assumed until the first pong.
const UNKNOWN_RTT: Duration = Duration::from_millis(100);
/// In-flight allowance over the path's bandwidth × delay (see [`Path::window`]).
const WINDOW_GAIN: f64 = 8.0;
/// Smallest per-path window: enough for one ACK threshold and a few segments,
/// so a path that has not measured its rate yet is not starved.
const MIN_WINDOW: u64 = 512 << 10;

impl Path {
    pub(crate) fn new(id: PathId, status: PathStatus, now: Instant, side: Side) -> Self {
        let metrics = PathMetrics::new(side, id);
        metrics.state(PathState::Joined);
        Self {
            id,
            state: PathState::Joined,
            status,
            srtt: None,
            next_seq: 0,
            outstanding: None,
            missed: 0,
            next_ping: now,
            last_ping: None,
            interval: Duration::ZERO,
            active: true,
            inflight: 0,
            rate: INITIAL_RATE,
            rate_measured: false,
            rate_window_start: now,
            rate_window_bytes: 0,
            bytes_sent: 0,
            bytes_resent: 0,
            bytes_received: 0,
            pings_sent: 0,
            control: ControlQueue::default(),
            done_streams: Vec::new(),
            metrics,
            weight: None,
            deficit: 0.0,
        }
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.state != PathState::Abandoned
    }

    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Stream data moved on the session: the next ping is at most one base
    /// interval after the last one again.
    pub(crate) fn mark_active(&mut self) {
        self.active = true;
    }

    /// When the next ping is due: one `base` interval after the last ping while
    /// data moves, a backed-off interval while the session is idle.
    pub(crate) fn ping_deadline(&self, base: Duration) -> Instant {
        match self.last_ping {
            Some(last) if self.active => self.next_ping.min(last + base),
            _ => self.next_ping,
        }
    }

    /// A ping is due (see [`Self::ping_deadline`]): counts an unanswered previous
    /// ping as missed and returns the frame to send. The next ping follows after
    /// `base` while data moved since the last ping or a pong is overdue; on an idle
    /// healthy path the interval doubles up to `idle_cap`, so idle sessions cost
    /// little (liveness of an idle path matters less: nothing waits on it).
    pub(crate) fn on_ping_due(
        &mut self,
        now: Instant,
        base: Duration,
        idle_cap: Duration,
    ) -> Frame {
        // A pong is overdue once the oldest unanswered ping is older than the
        // base interval and twice the smoothed RTT (a ping interval below the RTT
        // must not make a healthy path look dead).
        if let Some((_, sent)) = self.outstanding {
            let patience = self.srtt.map_or(base, |rtt| base.max(rtt * 2));
            if now.saturating_duration_since(sent) >= patience {
                self.missed += 1;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.outstanding.is_none() {
            self.outstanding = Some((seq, now));
        }
        self.pings_sent += 1;
        self.interval = if self.active || self.missed > 0 || self.state != PathState::Validated {
            base
        } else {
            (self.interval * 2).clamp(base, idle_cap.max(base))
        };
        self.active = false;
        self.last_ping = Some(now);
        self.next_ping = now + self.interval;
        Frame::Ping { seq }
    }

    /// The peer pinged on this path: it is alive in that direction, so an idle
    /// path waits one more interval before pinging itself (on an idle session
    /// only one side keeps pinging).
    pub(crate) fn on_peer_ping(&mut self, now: Instant) {
        if !self.active && self.missed == 0 && self.state == PathState::Validated {
            self.next_ping = self.next_ping.max(now + self.interval);
        }
    }

    /// A pong arrived. Returns true if it validated the path or cleared degradation.
    pub(crate) fn on_pong(&mut self, seq: u64, now: Instant) -> bool {
        let Some((out_seq, sent)) = self.outstanding else {
            return false;
        };
        if seq < out_seq || seq >= self.next_seq {
            return false;
        }
        if seq == out_seq {
            let sample = now.saturating_duration_since(sent);
            self.srtt = Some(match self.srtt {
                None => sample,
                Some(s) => (s * 7 + sample) / 8,
            });
        }
        self.outstanding = None;
        self.missed = 0;
        let changed = matches!(self.state, PathState::Joined | PathState::Degraded);
        if let Some(srtt) = self.srtt {
            self.metrics.rtt(srtt);
        }
        if self.is_alive() {
            self.state = PathState::Validated;
            if changed {
                self.metrics.state(self.state);
            }
        }
        changed
    }

    pub(crate) fn on_delivered(&mut self, bytes: u64, now: Instant) {
        self.inflight = self.inflight.saturating_sub(bytes);
        if !self.rate_measured && self.rate_window_bytes == 0 {
            // The first acknowledgement starts the first sample: the time
            // before data flowed says nothing about the path's rate.
            self.rate_window_start = now;
            self.rate_window_bytes = 1;
            return;
        }
        self.rate_window_bytes += bytes;
        let elapsed = now.saturating_duration_since(self.rate_window_start);
        if elapsed >= Duration::from_millis(50) {
            let sample = self.rate_window_bytes as f64 / elapsed.as_secs_f64();
            // The first sample replaces the initial guess (a wrong guess would
            // take several samples to wash out of the average).
            self.rate = if self.rate_measured {
                self.rate * 0.75 + sample * 0.25
            } else {
                sample
            }
            .max(1.0);
            self.rate_measured = true;
            self.rate_window_bytes = 0;
            self.rate_window_start = now;
        }
    }

    /// Most bytes this path may have in flight: `WINDOW_GAIN` times its
    /// delivery rate × (RTT + the peer's ACK delay), between `MIN_WINDOW` and
    /// `ceiling`. Sized per path, so a slow path holds a short queue: data it
    /// carries arrives about as soon as the fast path's, and the receiver does
    /// not wait on one path while its window fills with the other's bytes. The
    /// gain leaves room for the rate to grow (a window-limited path still
    /// measures more than it gets, so its window keeps growing).
    pub(crate) fn window(&self, ceiling: u64, ack_delay: Duration) -> u64 {
        // Data is acknowledged up to one ACK delay after it arrives, and the ACK
        // may wait for the timer once more behind a busy control stream.
        let Some(srtt) = self.srtt else {
            // Until the first pong nothing is known about the path: stay small
            // for that one round trip.
            return MIN_WINDOW.min(ceiling);
        };
        let rtt = srtt + ack_delay * 2;
        let bdp = self.rate.max(1.0) * rtt.as_secs_f64();
        ((bdp * WINDOW_GAIN) as u64).clamp(MIN_WINDOW.min(ceiling), ceiling)
    }

    pub(crate) fn view(&self, ceiling: u64, ack_delay: Duration) -> PathView {
        PathView {
            id: self.id,
            status: self.status,
            degraded: self.state == PathState::Degraded,
            srtt: self.srtt.unwrap_or(UNKNOWN_RTT),
            inflight: self.inflight,
            window: ceiling,
            sized_window: self.window(ceiling, ack_delay),
            rate: self.rate.max(1.0),
            weight: self.weight,
            deficit: self.deficit,
        }
    }

    pub(crate) fn stats(&self) -> PathStats {
        PathStats {
            id: self.id,
            state: self.state,
            status: self.status,
            srtt: self.srtt,
            bytes_sent: self.bytes_sent,
            bytes_resent: self.bytes_resent,
            bytes_received: self.bytes_received,
            inflight: self.inflight,
            rate: self.rate,
            pings_sent: self.pings_sent,
            missed_pongs: self.missed,
            weight: self.weight,
            control_queued: self.control.len(),
            control_coalesced: self.control.coalesced(),
        }
    }
}

/// What a round of liveness timers found (see [`Paths::on_timeout`]).
#[derive(Debug, Default)]
pub(crate) struct PingRound {
    /// Paths that just became degraded (a pong is overdue).
    pub(crate) degraded: Vec<PathId>,
    /// Paths past the missed-pong threshold.
    pub(crate) dead: Vec<PathId>,
}

/// Every path the session has had (abandoned ones stay, for their counters),
/// and the next id this side hands out.
#[derive(Debug)]
pub(crate) struct Paths {
    /// Boxed: a map node holds room for eleven entries, and a session has one
    /// path or a few, so inline paths would leave kilobytes of every
    /// session's node unused.
    paths: BTreeMap<PathId, Box<Path>>,
    next: u64,
    /// Which side this is (a label of the paths' metrics).
    side: Side,
}

impl Paths {
    pub(crate) fn new(side: Side) -> Self {
        Self {
            paths: BTreeMap::new(),
            next: 1,
            side,
        }
    }

    /// A fresh path id for a path this side is about to add.
    pub(crate) fn allocate_id(&mut self) -> PathId {
        let id = PathId::new(self.next);
        self.next += 1;
        id
    }

    /// Adds a path; false if the id is known already.
    pub(crate) fn insert(&mut self, id: PathId, status: PathStatus, now: Instant) -> bool {
        if self.paths.contains_key(&id) {
            return false;
        }
        self.next = self.next.max(id.into_inner() + 1);
        self.paths
            .insert(id, Box::new(Path::new(id, status, now, self.side)));
        true
    }

    /// The weight of a path (dead ones keep theirs).
    pub(crate) fn weight(&self, id: PathId) -> Option<u32> {
        self.paths.get(&id).and_then(|p| p.weight)
    }

    /// The status of a path (dead ones keep their last status).
    pub(crate) fn status(&self, id: PathId) -> Option<PathStatus> {
        self.paths.get(&id).map(|p| p.status)
    }

    pub(crate) fn contains(&self, id: PathId) -> bool {
        self.paths.contains_key(&id)
    }

    /// The path if it is alive.
    pub(crate) fn live_mut(&mut self, id: PathId) -> Option<&mut Path> {
        self.paths
            .get_mut(&id)
            .map(|p| &mut **p)
            .filter(|p| p.is_alive())
    }

    pub(crate) fn is_live(&self, id: PathId) -> bool {
        self.paths.get(&id).is_some_and(|p| p.is_alive())
    }

    pub(crate) fn live(&self) -> usize {
        self.paths.values().filter(|p| p.is_alive()).count()
    }

    pub(crate) fn stats(&self) -> Vec<PathStats> {
        self.paths.values().map(|p| p.stats()).collect()
    }

    /// Marks a live path abandoned: nothing is in flight on it any more and its
    /// queued control frames are dropped. False if it was dead or unknown.
    pub(crate) fn abandon(&mut self, id: PathId) -> bool {
        let Some(path) = self.live_mut(id) else {
            return false;
        };
        path.state = PathState::Abandoned;
        path.inflight = 0;
        path.control.clear();
        path.metrics.state(PathState::Abandoned);
        path.metrics.inflight(0);
        true
    }

    /// Sets a live path's status. `None` for a dead or unknown path, else
    /// whether the status changed.
    pub(crate) fn set_status(&mut self, id: PathId, status: PathStatus) -> Option<bool> {
        let path = self.live_mut(id)?;
        let changed = path.status != status;
        path.status = status;
        Some(changed)
    }

    /// Sets (or clears) a live path's weight; false for a dead or unknown path.
    pub(crate) fn set_weight(&mut self, id: PathId, weight: Option<u32>) -> bool {
        let Some(path) = self.live_mut(id) else {
            return false;
        };
        path.weight = weight.map(|w| w.max(1));
        true
    }

    /// Live path with the lowest RTT among the healthiest (for control frames).
    pub(crate) fn best(&self) -> Option<PathId> {
        self.paths
            .values()
            .filter(|p| p.is_alive())
            .min_by_key(|p| {
                (
                    p.state == PathState::Degraded,
                    p.srtt().unwrap_or(Duration::MAX),
                    p.id,
                )
            })
            .map(|p| p.id)
    }

    /// Queues `frame` on the best live path.
    pub(crate) fn queue_frame(&mut self, frame: Frame) {
        if let Some(best) = self.best() {
            if let Some(p) = self.paths.get_mut(&best) {
                p.control.push_back(frame);
            }
        }
    }

    /// Queues `frames` on the best live path.
    pub(crate) fn queue_frames(&mut self, frames: Vec<Frame>) {
        if let Some(best) = self.best() {
            if let Some(p) = self.paths.get_mut(&best) {
                p.control.extend(frames);
            }
        }
    }

    /// Queues `frame` on every live path (except `skip`).
    pub(crate) fn broadcast(&mut self, frame: Frame, skip: Option<PathId>) {
        for p in self.paths.values_mut() {
            if p.is_alive() && Some(p.id) != skip {
                p.control.push_back(frame.clone());
            }
        }
    }

    /// The next control frame for a live `path`.
    pub(crate) fn poll_control(&mut self, path: PathId) -> Option<Frame> {
        self.live_mut(path)?.control.pop_front()
    }

    /// Stream data moved: every path pings at the base interval again.
    pub(crate) fn mark_active(&mut self) {
        for p in self.paths.values_mut() {
            p.mark_active();
        }
    }

    /// The scheduler's view of the live paths.
    pub(crate) fn views(&self, ceiling: u64, ack_delay: Duration) -> Vec<PathView> {
        self.paths
            .values()
            .filter(|p| p.is_alive())
            .map(|p| p.view(ceiling, ack_delay))
            .collect()
    }

    /// Acknowledged (`now` given: counts towards the delivery rate) or dropped
    /// bytes leave the paths that carried them.
    pub(crate) fn release(&mut self, released: &[(PathId, u64)], now: Option<Instant>) {
        for (p, len) in released {
            if let Some(path) = self.paths.get_mut(p) {
                match now {
                    Some(now) => {
                        path.on_delivered(*len, now);
                        path.metrics.acked(*len, path.inflight, path.rate);
                    }
                    None => {
                        path.inflight = path.inflight.saturating_sub(*len);
                        path.metrics.inflight(path.inflight);
                    }
                }
            }
        }
    }

    /// `len` payload bytes went out on `path`. While weights are set, each
    /// live available path is owed its weighted share of them and `path` is
    /// paid `len` (a deficit round-robin over bytes: `Aggregate` gives the
    /// next chunk to the path owed most, so the split follows the weights
    /// within about a segment). Deficits stay within a few windows.
    pub(crate) fn on_sent(&mut self, path: PathId, len: u64, resend: bool) {
        if !resend
            && self
                .paths
                .values()
                .any(|p| p.is_alive() && p.weight.is_some())
        {
            let sharing = |p: &Path| p.is_alive() && p.status == PathStatus::Available;
            let total: f64 = self
                .paths
                .values()
                .filter(|p| sharing(p))
                .map(|p| f64::from(p.weight.unwrap_or(1)))
                .sum();
            if total > 0.0 {
                for p in self.paths.values_mut().filter(|p| sharing(p)) {
                    let owed = len as f64 * f64::from(p.weight.unwrap_or(1)) / total;
                    p.deficit = (p.deficit + owed).clamp(-MAX_DEFICIT, MAX_DEFICIT);
                }
            }
            if let Some(p) = self.paths.get_mut(&path) {
                p.deficit = (p.deficit - len as f64).clamp(-MAX_DEFICIT, MAX_DEFICIT);
            }
        }
        if let Some(p) = self.paths.get_mut(&path) {
            p.inflight += len;
            p.bytes_sent += len;
            if resend {
                p.bytes_resent += len;
            }
            p.metrics.sent(len, resend, p.inflight);
        }
    }

    /// `len` payload bytes arrived on `path`.
    pub(crate) fn on_received(&mut self, path: PathId, len: u64) {
        if let Some(p) = self.paths.get_mut(&path) {
            p.bytes_received += len;
            p.metrics.received(len);
        }
    }

    /// The data streams of `stream` may be finished on every live path.
    pub(crate) fn stream_done(&mut self, stream: StreamId) {
        for p in self.paths.values_mut() {
            if p.is_alive() {
                p.done_streams.push(stream);
            }
        }
    }

    /// The live paths, each with whether control frames are queued for it and
    /// whether it has data streams for the driver to finish.
    pub(crate) fn queued(&self) -> impl Iterator<Item = (PathId, bool, bool)> + '_ {
        self.paths
            .values()
            .filter(|p| p.is_alive())
            .map(|p| (p.id, !p.control.is_empty(), !p.done_streams.is_empty()))
    }

    /// Streams of this path whose data streams the driver may finish.
    pub(crate) fn take_done_streams(&mut self, path: PathId) -> Vec<StreamId> {
        self.paths
            .get_mut(&path)
            .map(|p| std::mem::take(&mut p.done_streams))
            .unwrap_or_default()
    }

    /// A PING arrived on `path`: PONG goes out first.
    pub(crate) fn on_ping(&mut self, path: PathId, seq: u64, now: Instant) {
        if let Some(p) = self.live_mut(path) {
            p.control.push_front(Frame::Pong { seq });
            p.on_peer_ping(now);
        }
    }

    /// A PONG arrived on `path`: whether it validated the path, and the
    /// path's smoothed RTT.
    pub(crate) fn on_pong(
        &mut self,
        path: PathId,
        seq: u64,
        now: Instant,
    ) -> (bool, Option<Duration>) {
        let validated = self
            .paths
            .get_mut(&path)
            .is_some_and(|p| p.on_pong(seq, now));
        (validated, self.paths.get(&path).and_then(|p| p.srtt()))
    }

    /// Sends the pings due at `now` and notes overdue pongs. `waiting`: data
    /// waits for acknowledgement, which keeps liveness checks at full rate.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        interval: Duration,
        idle_cap: Duration,
        threshold: u32,
        waiting: bool,
    ) -> PingRound {
        let mut round = PingRound::default();
        for p in self.paths.values_mut().filter(|p| p.is_alive()) {
            if waiting {
                p.mark_active();
            }
            if now < p.ping_deadline(interval) {
                continue;
            }
            let ping = p.on_ping_due(now, interval, idle_cap);
            p.control.push_back(ping);
            if p.missed >= 1 && p.state != PathState::Degraded {
                p.state = PathState::Degraded;
                p.metrics.state(PathState::Degraded);
                round.degraded.push(p.id);
            }
            if p.missed >= threshold {
                round.dead.push(p.id);
            }
        }
        round
    }

    /// Queues a ping on the live path `id` now, whatever its deadline (a new
    /// path's first ping).
    pub(crate) fn ping_now(
        &mut self,
        id: PathId,
        now: Instant,
        interval: Duration,
        idle_cap: Duration,
    ) {
        if let Some(p) = self.live_mut(id) {
            let ping = p.on_ping_due(now, interval, idle_cap);
            p.control.push_back(ping);
        }
    }

    /// Whether a live, healthy path other than `id` exists.
    pub(crate) fn others_healthy(&self, id: PathId) -> bool {
        self.paths
            .values()
            .any(|p| p.id != id && p.is_alive() && p.state != PathState::Degraded)
    }

    /// The earliest ping deadline of the live paths.
    pub(crate) fn next_deadline(&self, interval: Duration) -> Option<Instant> {
        self.paths
            .values()
            .filter(|p| p.is_alive())
            .map(|p| p.ping_deadline(interval))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(250);
    const CAP: Duration = Duration::from_secs(2);

    /// Sends the due ping and answers it at once; returns the next deadline.
    fn ping_pong(p: &mut Path, now: Instant) -> Instant {
        assert!(p.ping_deadline(BASE) <= now);
        let Frame::Ping { seq } = p.on_ping_due(now, BASE, CAP) else {
            unreachable!("on_ping_due returns a ping")
        };
        p.on_pong(seq, now);
        p.ping_deadline(BASE)
    }

    #[test]
    fn idle_path_backs_off_and_data_restores_the_base_interval() {
        let t0 = Instant::now();
        let mut p = Path::new(PathId::INITIAL, PathStatus::Available, t0, Side::Client);
        // Unvalidated and just started: base interval.
        assert_eq!(ping_pong(&mut p, t0), t0 + BASE);
        // Idle from here on: the interval doubles up to the cap.
        let mut now = t0 + BASE;
        let mut gaps = Vec::new();
        for _ in 0..5 {
            let next = ping_pong(&mut p, now);
            gaps.push(next - now);
            now = next;
        }
        assert_eq!(
            gaps,
            [500, 1000, 2000, 2000, 2000].map(Duration::from_millis)
        );
        // Data moves: the next ping is one base interval after the last one.
        let last = now - CAP;
        p.mark_active();
        assert_eq!(p.ping_deadline(BASE), last + BASE);
        assert_eq!(ping_pong(&mut p, now), now + BASE);
    }

    #[test]
    fn window_follows_bandwidth_times_delay() {
        let t0 = Instant::now();
        let ceiling = 8 << 20;
        let ack_delay = Duration::from_millis(5);
        let mut fast = Path::new(PathId::INITIAL, PathStatus::Available, t0, Side::Client);
        let mut slow = Path::new(PathId::new(1), PathStatus::Available, t0, Side::Client);
        for p in [&mut fast, &mut slow] {
            ping_pong(p, t0);
        }
        // 1 MB per 10 ms = 100 MB/s vs 1 MB per 400 ms = 2.5 MB/s.
        for i in 1..=40u32 {
            fast.on_delivered(100_000, t0 + Duration::from_millis(10) * i);
            slow.on_delivered(2_500, t0 + Duration::from_millis(10) * i);
        }
        let (w_fast, w_slow) = (
            fast.window(ceiling, ack_delay),
            slow.window(ceiling, ack_delay),
        );
        assert!(w_fast > w_slow, "{w_fast} vs {w_slow}");
        assert_eq!(w_slow, MIN_WINDOW);
        assert!(w_fast <= ceiling);
        assert_eq!(fast.window(MIN_WINDOW / 2, ack_delay), MIN_WINDOW / 2);
    }

    #[test]
    fn peer_pings_postpone_own_pings_while_idle() {
        let t0 = Instant::now();
        let mut p = Path::new(PathId::INITIAL, PathStatus::Available, t0, Side::Client);
        let now = ping_pong(&mut p, t0);
        // Idle: the next ping comes 500 ms after this one.
        let due = ping_pong(&mut p, now);
        assert_eq!(due - now, Duration::from_millis(500));
        let heard = due - Duration::from_millis(1);
        p.on_peer_ping(heard);
        assert_eq!(p.ping_deadline(BASE), heard + Duration::from_millis(500));
        // Not while data moves.
        p.mark_active();
        let due = p.ping_deadline(BASE);
        p.on_peer_ping(due);
        assert_eq!(p.ping_deadline(BASE), due);
    }

    #[test]
    fn overdue_pong_keeps_the_base_interval() {
        let t0 = Instant::now();
        let mut p = Path::new(PathId::INITIAL, PathStatus::Available, t0, Side::Client);
        let mut now = ping_pong(&mut p, t0);
        now = ping_pong(&mut p, now);
        // The next ping gets no answer: it is overdue at the following one.
        let _ = p.on_ping_due(now, BASE, CAP);
        now += Duration::from_secs(1);
        let _ = p.on_ping_due(now, BASE, CAP);
        assert_eq!(p.missed, 1);
        assert_eq!(p.ping_deadline(BASE), now + BASE);
    }
}
