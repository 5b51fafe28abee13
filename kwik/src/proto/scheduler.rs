//! Scheduling policies: which path may carry a stream's next chunk. The decisions
//! are pure functions of a snapshot of the paths ([`PathView`]); the session state
//! asks them each time a path has room for more data (pull scheduling: a path that
//! drains faster asks more often, so capacity weighting falls out of the pulls).

use std::time::Duration;

use crate::proto::ids::PathId;
use crate::proto::wire::frame::PathStatus;

/// How a stream's bytes are spread over the session's paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Scheduler {
    /// Send on the path with the lowest smoothed RTT that has room; spill to the
    /// next one when it is full. The default.
    #[default]
    MinRtt,
    /// Use every available path, each taking chunks in proportion to how fast it
    /// drains (the path with the least data in flight relative to its delivery rate
    /// goes next), so a slow path does not hold the reader up with a large backlog.
    ///
    /// With user weights (`Session::set_path_weight`, `PathSpec::weight`; a
    /// path without one counts as 1) the bytes are split in the weights'
    /// proportion instead, e.g. 3:1 keeps a metered link at a quarter: the
    /// path owed most under the weights takes the next chunk when it has room,
    /// and the others wait rather than take its share.
    Aggregate,
    /// Send every byte on every available path (telemetry: the first copy wins,
    /// duplicates are trimmed by the receiver).
    Redundant,
    /// Use one path (the lowest-numbered healthy available one); the others are
    /// standby and only carry data when it is gone.
    Backup,
    /// Only this path while it is alive; falls back to `MinRtt` when it is not.
    Pinned(PathId),
}

/// What the scheduler knows about one live path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PathView {
    pub(crate) id: PathId,
    pub(crate) status: PathStatus,
    /// Missed at least one pong.
    pub(crate) degraded: bool,
    pub(crate) srtt: Duration,
    /// Bytes handed to the path and not yet acknowledged.
    pub(crate) inflight: u64,
    /// Limit for `inflight` (the configured `path_window`).
    pub(crate) window: u64,
    /// Limit for `inflight` sized to the path's bandwidth × delay (at most
    /// `window`); `Aggregate` uses it while it spreads a stream over several
    /// paths, so no path builds a queue the others' data waits behind.
    pub(crate) sized_window: u64,
    /// Delivery rate estimate in bytes per second (> 0).
    pub(crate) rate: f64,
    /// The user's weight for `Aggregate`, if set.
    pub(crate) weight: Option<u32>,
    /// Bytes the path is owed under the weights (higher: it goes next).
    pub(crate) deficit: f64,
}

impl PathView {
    fn tier(&self) -> u8 {
        let backup = u8::from(self.status == PathStatus::Backup) * 2;
        backup + u8::from(self.degraded)
    }

    fn has_room(&self) -> bool {
        self.inflight < self.window
    }

    /// When a chunk handed to this path now would arrive, roughly: the time to
    /// drain what the path already holds plus half its RTT. `Aggregate` gives
    /// the next chunk to the path where it lands first, so a path with a long
    /// RTT or a deep queue takes less and the receiver waits less for gaps.
    fn load(&self) -> f64 {
        self.inflight as f64 / self.rate + self.srtt.as_secs_f64() / 2.0
    }
}

/// The live paths a policy may choose from: the best tier present (healthy
/// available, then degraded available, then healthy backup, then degraded backup).
fn candidates(views: &[PathView]) -> impl Iterator<Item = &PathView> {
    let best = views.iter().map(PathView::tier).min().unwrap_or(0);
    views.iter().filter(move |v| v.tier() == best)
}

fn min_rtt(path: PathId, views: &[PathView]) -> bool {
    candidates(views)
        .filter(|v| v.has_room())
        .min_by_key(|v| (v.srtt, v.id))
        .is_some_and(|v| v.id == path)
}

/// May `path` take a new chunk of a stream scheduled with `policy`? `views` holds
/// every live path of the session.
pub(crate) fn may_send(policy: Scheduler, path: PathId, views: &[PathView]) -> bool {
    match policy {
        Scheduler::MinRtt => min_rtt(path, views),
        Scheduler::Aggregate if views.iter().any(|v| v.weight.is_some()) => candidates(views)
            .max_by(|a, b| a.deficit.total_cmp(&b.deficit).then(b.id.cmp(&a.id)))
            .is_some_and(|v| v.id == path && v.has_room()),
        Scheduler::Aggregate => {
            // Alone, a path may fill the whole window (nothing to wait behind).
            let several = candidates(views).nth(1).is_some();
            candidates(views)
                .filter(|v| {
                    if several {
                        v.inflight < v.sized_window
                    } else {
                        v.has_room()
                    }
                })
                .min_by(|a, b| a.load().total_cmp(&b.load()).then(a.id.cmp(&b.id)))
                .is_some_and(|v| v.id == path)
        }
        Scheduler::Redundant => candidates(views).any(|v| v.id == path && v.has_room()),
        Scheduler::Backup => candidates(views)
            .min_by_key(|v| v.id)
            .is_some_and(|v| v.id == path && v.has_room()),
        Scheduler::Pinned(pin) => {
            if views.iter().any(|v| v.id == pin) {
                pin == path && views.iter().any(|v| v.id == pin && v.has_room())
            } else {
                min_rtt(path, views)
            }
        }
    }
}

/// May `path` re-send a chunk whose paths all died? Any healthy candidate with room.
pub(crate) fn may_resend(path: PathId, views: &[PathView]) -> bool {
    candidates(views).any(|v| v.id == path && v.has_room())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u64, rtt_ms: u64, inflight: u64) -> PathView {
        PathView {
            id: PathId::new(id),
            status: PathStatus::Available,
            degraded: false,
            srtt: Duration::from_millis(rtt_ms),
            inflight,
            window: 100,
            sized_window: 100,
            rate: 1.0,
            weight: None,
            deficit: 0.0,
        }
    }

    #[test]
    fn weighted_aggregate_follows_the_deficit_and_waits_for_it() {
        let mut v = [view(0, 10, 0), view(1, 50, 0)];
        v[0].weight = Some(3);
        v[0].deficit = -10.0;
        v[1].deficit = 10.0;
        // Path 1 is owed more: it goes next even with the longer RTT.
        assert!(may_send(Scheduler::Aggregate, PathId::new(1), &v));
        assert!(!may_send(Scheduler::Aggregate, PathId::new(0), &v));
        // Full: nobody takes its share meanwhile.
        v[1].inflight = 100;
        assert!(!may_send(Scheduler::Aggregate, PathId::new(0), &v));
        assert!(!may_send(Scheduler::Aggregate, PathId::new(1), &v));
        // Other policies ignore weights.
        assert!(may_send(Scheduler::MinRtt, PathId::new(0), &v));
    }

    #[test]
    fn min_rtt_prefers_fast_path_then_spills() {
        let v = [view(0, 10, 0), view(1, 20, 0)];
        assert!(may_send(Scheduler::MinRtt, PathId::new(0), &v));
        assert!(!may_send(Scheduler::MinRtt, PathId::new(1), &v));
        let v = [view(0, 10, 100), view(1, 20, 0)];
        assert!(may_send(Scheduler::MinRtt, PathId::new(1), &v));
    }

    #[test]
    fn aggregate_balances_by_load() {
        let v = [view(0, 10, 50), view(1, 20, 10)];
        assert!(may_send(Scheduler::Aggregate, PathId::new(1), &v));
        assert!(!may_send(Scheduler::Aggregate, PathId::new(0), &v));
        let mut fast = [view(0, 10, 50), view(1, 10, 10)];
        fast[0].rate = 10.0;
        assert!(may_send(Scheduler::Aggregate, PathId::new(0), &fast));
    }

    #[test]
    fn aggregate_keeps_queues_short_only_while_it_spreads() {
        let mut v = [view(0, 10, 40), view(1, 10, 0)];
        v[0].sized_window = 40;
        // Path 0 is at its sized window: it takes nothing while path 1 can.
        assert!(!may_send(Scheduler::Aggregate, PathId::new(0), &v));
        v[1].inflight = 60;
        v[1].sized_window = 60;
        assert!(!may_send(Scheduler::Aggregate, PathId::new(0), &v));
        assert!(!may_send(Scheduler::Aggregate, PathId::new(1), &v));
        // Other policies use the configured window.
        assert!(may_send(Scheduler::MinRtt, PathId::new(0), &v));
        // A path alone may fill the configured window.
        assert!(may_send(Scheduler::Aggregate, PathId::new(0), &v[..1]));
    }

    #[test]
    fn aggregate_prefers_the_path_where_data_lands_first() {
        // Same queue in time, but path 1 has a much longer RTT.
        let v = [view(0, 10, 5), view(1, 200, 5)];
        assert!(may_send(Scheduler::Aggregate, PathId::new(0), &v));
        assert!(!may_send(Scheduler::Aggregate, PathId::new(1), &v));
    }

    #[test]
    fn backup_and_degraded_tiers() {
        let mut v = [view(0, 10, 0), view(1, 5, 0)];
        v[1].status = PathStatus::Backup;
        assert!(may_send(Scheduler::MinRtt, PathId::new(0), &v));
        assert!(!may_send(Scheduler::Redundant, PathId::new(1), &v));
        v[0].degraded = true;
        assert!(may_send(Scheduler::MinRtt, PathId::new(0), &v));
        let only_backup = [v[1]];
        assert!(may_send(Scheduler::MinRtt, PathId::new(1), &only_backup));
    }

    #[test]
    fn backup_policy_uses_one_path_and_pinned_falls_back() {
        let v = [view(0, 30, 0), view(1, 5, 0)];
        assert!(may_send(Scheduler::Backup, PathId::new(0), &v));
        assert!(!may_send(Scheduler::Backup, PathId::new(1), &v));
        assert!(may_send(
            Scheduler::Pinned(PathId::new(0)),
            PathId::new(0),
            &v
        ));
        assert!(!may_send(
            Scheduler::Pinned(PathId::new(0)),
            PathId::new(1),
            &v
        ));
        let survivors = [view(1, 5, 0)];
        assert!(may_send(
            Scheduler::Pinned(PathId::new(0)),
            PathId::new(1),
            &survivors
        ));
        assert!(may_send(Scheduler::Backup, PathId::new(1), &survivors));
    }

    #[test]
    fn redundant_uses_all_with_room() {
        let v = [view(0, 10, 0), view(1, 20, 100)];
        assert!(may_send(Scheduler::Redundant, PathId::new(0), &v));
        assert!(!may_send(Scheduler::Redundant, PathId::new(1), &v));
    }
}
