//! The receive side's timers: gap-timeout events and the removal of closed
//! streams that stayed idle.

use std::time::Instant;

use tracing::debug;

use super::StreamState;
use crate::{Presentation, PresentationConfig, PresentationEvent};

impl Presentation {
    /// Runs timers: gap-timeout events and removal of closed streams idle for
    /// `idle_stream_timeout`. Call at [`next_deadline`](Self::next_deadline) (calling
    /// earlier or more often is harmless).
    #[tracing::instrument(level = "debug", skip_all)]
    pub fn handle_timeout(&mut self, now: Instant) {
        let session = &mut self.session;
        session.see(now);
        let mut idle = Vec::new();
        for (&id, st) in self.streams.iter_mut() {
            if st.buffer.is_closed()
                && now.saturating_duration_since(st.last_activity)
                    >= self.config.idle_stream_timeout
            {
                idle.push(id);
                continue;
            }
            let Some(since) = st.buffer.gap_since() else {
                st.gap_reported = None;
                continue;
            };
            if now >= gap_deadline(&self.config, st, since) {
                if let Some(gap) = st.buffer.next_gap() {
                    st.gap_reported = Some((since, now));
                    let event = PresentationEvent::GapTimeout {
                        stream: id,
                        gap,
                        age: now.saturating_duration_since(since),
                    };
                    debug!(?event, "gap timeout");
                    session.gap_timeouts += 1;
                    session.events.push(event);
                }
            }
        }
        for id in idle {
            self.remove_stream(id);
        }
        // Publishes the counters as metrics.
        let _ = self.stats();
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work next, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.streams
            .values()
            .filter_map(|st| {
                if st.buffer.is_closed() {
                    Some(st.last_activity + self.config.idle_stream_timeout)
                } else {
                    st.buffer
                        .gap_since()
                        .map(|since| gap_deadline(&self.config, st, since))
                }
            })
            .min()
    }
}

/// When the head gap of `st`, open since `since`, is reported (again).
fn gap_deadline(config: &PresentationConfig, st: &StreamState, since: Instant) -> Instant {
    let from = match st.gap_reported {
        Some((about, at)) if about == since => at,
        _ => since,
    };
    from + config.gap_timeout
}
