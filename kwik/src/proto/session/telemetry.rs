//! The labelled `metrics` of a session: per path (labels `side` and `path`)
//! and per session (label `side`). Handles are registered once, when the
//! path or session is created, so updating one costs what the installed
//! recorder charges for an atomic add or store (nothing without a recorder).
//! Per-stream figures are not metrics (one label value per stream would grow
//! without bound): they are in `SendStream::stats`.
//!
//! Names and units (every counter ends in `_total`):
//!
//! | name | kind | unit | labels |
//! |---|---|---|---|
//! | `kwik_path_bytes_sent_total` | counter | bytes of stream payload handed to the path (first sends and re-sends) | side, path |
//! | `kwik_path_bytes_resent_total` | counter | of those, bytes re-sent for a dead path | side, path |
//! | `kwik_path_bytes_acked_total` | counter | bytes sent on the path that the peer acknowledged | side, path |
//! | `kwik_path_bytes_received_total` | counter | stream payload bytes received on the path | side, path |
//! | `kwik_path_rtt_seconds` | gauge | smoothed RTT from PING/PONG, seconds | side, path |
//! | `kwik_path_rate_bytes_per_second` | gauge | delivery-rate estimate, bytes/s | side, path |
//! | `kwik_path_inflight_bytes` | gauge | bytes sent on the path, not yet acknowledged | side, path |
//! | `kwik_path_state` | gauge | 0 joined, 1 validated, 2 degraded, 3 abandoned | side, path |
//! | `kwik_session_bytes_written_total` | counter | bytes the application wrote | side |
//! | `kwik_session_bytes_sent_total` | counter | payload bytes handed to paths | side |
//! | `kwik_session_bytes_resent_total` | counter | of those, re-sends of dead paths' data | side |
//! | `kwik_session_bytes_acked_total` | counter | bytes the peer acknowledged | side |
//! | `kwik_session_bytes_received_total` | counter | payload bytes received | side |
//!
//! `side` is `client` or `server`; `path` is the path id in decimal. Paths of
//! different sessions with the same id share a series (sessions are not a
//! label: their number is unbounded).

use std::time::Duration;

use kwik_presentation::Side;
use metrics::{Counter, Gauge};

use super::paths::PathState;
use crate::proto::ids::PathId;

fn side_label(side: Side) -> &'static str {
    match side {
        Side::Client => "client",
        Side::Server => "server",
    }
}

/// The metric handles of one path.
#[derive(Debug)]
pub(crate) struct PathMetrics {
    sent: Counter,
    resent: Counter,
    acked: Counter,
    received: Counter,
    rtt: Gauge,
    rate: Gauge,
    inflight: Gauge,
    state: Gauge,
}

impl PathMetrics {
    pub(crate) fn new(side: Side, path: PathId) -> Self {
        let labels = [
            ("side", side_label(side).to_owned()),
            ("path", path.into_inner().to_string()),
        ];
        Self {
            sent: metrics::counter!("kwik_path_bytes_sent_total", &labels),
            resent: metrics::counter!("kwik_path_bytes_resent_total", &labels),
            acked: metrics::counter!("kwik_path_bytes_acked_total", &labels),
            received: metrics::counter!("kwik_path_bytes_received_total", &labels),
            rtt: metrics::gauge!("kwik_path_rtt_seconds", &labels),
            rate: metrics::gauge!("kwik_path_rate_bytes_per_second", &labels),
            inflight: metrics::gauge!("kwik_path_inflight_bytes", &labels),
            state: metrics::gauge!("kwik_path_state", &labels),
        }
    }

    pub(crate) fn sent(&self, bytes: u64, resend: bool, inflight: u64) {
        self.sent.increment(bytes);
        if resend {
            self.resent.increment(bytes);
        }
        self.inflight.set(inflight as f64);
    }

    pub(crate) fn acked(&self, bytes: u64, inflight: u64, rate: f64) {
        self.acked.increment(bytes);
        self.inflight.set(inflight as f64);
        self.rate.set(rate);
    }

    pub(crate) fn inflight(&self, inflight: u64) {
        self.inflight.set(inflight as f64);
    }

    pub(crate) fn received(&self, bytes: u64) {
        self.received.increment(bytes);
    }

    pub(crate) fn rtt(&self, srtt: Duration) {
        self.rtt.set(srtt.as_secs_f64());
    }

    pub(crate) fn state(&self, state: PathState) {
        self.state.set(match state {
            PathState::Joined => 0.0,
            PathState::Validated => 1.0,
            PathState::Degraded => 2.0,
            PathState::Abandoned => 3.0,
        });
    }
}

/// The session-wide metric handles.
#[derive(Debug)]
pub(crate) struct SessionMetrics {
    pub(crate) written: Counter,
    pub(crate) sent: Counter,
    pub(crate) resent: Counter,
    pub(crate) acked: Counter,
    pub(crate) received: Counter,
}

impl SessionMetrics {
    pub(crate) fn new(side: Side) -> Self {
        let labels = [("side", side_label(side))];
        Self {
            written: metrics::counter!("kwik_session_bytes_written_total", &labels),
            sent: metrics::counter!("kwik_session_bytes_sent_total", &labels),
            resent: metrics::counter!("kwik_session_bytes_resent_total", &labels),
            acked: metrics::counter!("kwik_session_bytes_acked_total", &labels),
            received: metrics::counter!("kwik_session_bytes_received_total", &labels),
        }
    }
}
