//! What the receive side reports: session-wide and per-stream views, and their
//! publication through the `metrics` facade.

use crate::stream_buffer::GapStats;
use crate::{BackpressureReason, BackpressureStats, BufferCounters, Presentation, StreamId};

use super::Session;

/// Session-wide counters and gauges (see [`Presentation::stats`]).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PresentationStats {
    /// Bytes received for the first time, over all streams.
    pub bytes_received: u64,
    /// Bytes handed to the application.
    pub bytes_read: u64,
    /// Bytes received more than once (trimmed).
    pub duplicate_bytes: u64,
    /// Bytes dropped unread (reset, stop, removal).
    pub discarded_bytes: u64,
    /// Bytes that arrived for streams already removed (ignored).
    pub late_bytes: u64,
    /// Segments that arrived with a hole before them.
    pub out_of_order_segments: u64,
    /// Writes refused as protocol violations.
    pub rejected_writes: u64,
    /// Bytes held, not yet read.
    pub buffered_bytes: u64,
    /// Bytes the application could read right now.
    pub readable_bytes: u64,
    /// Current session window (bytes).
    pub session_window: u64,
    /// Current session credit (MAX_DATA).
    pub session_credit: u64,
    /// Sum over streams of the highest offset received.
    pub session_received: u64,
    /// `buffered_bytes / session_window`.
    pub window_utilisation: f64,
    /// Times auto-tuning grew the session window.
    pub session_window_growths: u64,
    /// Streams currently known.
    pub open_streams: usize,
    /// Holes currently open, over all streams.
    pub gaps: usize,
    /// Gap-timeout events raised.
    pub gap_timeouts: u64,
    /// Backpressure of all streams together (including removed ones).
    pub stream_backpressure: BackpressureStats,
    /// Session backpressure.
    pub session_backpressure: BackpressureStats,
    /// Events queued, not yet taken.
    pub events_pending: usize,
    /// Events dropped because nobody drained the queue.
    pub events_dropped: u64,
}

/// One stream's view (see [`Presentation::stream_stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamStats {
    /// Bytes held, not yet read.
    pub buffered_bytes: u64,
    /// Bytes readable now.
    pub readable_bytes: u64,
    /// Offset of the next byte the reader gets.
    pub read_position: u64,
    /// Highest offset received.
    pub highest_received: u64,
    /// Final size, once known.
    pub final_size: Option<u64>,
    /// Current credit (max offset).
    pub credit: u64,
    /// Current stream window.
    pub window: u64,
    /// Running totals of the buffer.
    pub counters: BufferCounters,
    /// Gap observations at the time asked.
    pub gaps: GapStats,
    /// Reason of the current backpressure, if on.
    pub backpressure: Option<BackpressureReason>,
}

impl Presentation {
    /// Session-wide counters and gauges; also publishes them as metrics.
    pub fn stats(&self) -> PresentationStats {
        let session = &self.session;
        let now = session.clock;
        let mut stream_bp = BackpressureStats::default();
        let mut counters = BufferCounters::default();
        let mut gaps = 0;
        for st in self.streams.values() {
            stream_bp.absorb(&st.backpressure.stats(now));
            counters.absorb(&st.buffer.counters());
            gaps += st.buffer.gaps().len();
        }
        stream_bp.absorb(&session.retired_stream_backpressure);
        counters.absorb(&session.retired);
        let window = session.window.window();
        let stats = PresentationStats {
            bytes_received: counters.new_bytes,
            bytes_read: session.bytes_read,
            duplicate_bytes: counters.duplicate_bytes,
            discarded_bytes: counters.discarded_bytes,
            late_bytes: session.late_bytes,
            out_of_order_segments: counters.out_of_order_segments,
            rejected_writes: session.rejected_writes,
            buffered_bytes: session.buffered,
            readable_bytes: session.readable,
            session_window: window,
            session_credit: session.window.credit(),
            session_received: session.window.received(),
            window_utilisation: session.buffered as f64 / window as f64,
            session_window_growths: session.window.growths(),
            open_streams: session.open_streams,
            gaps,
            gap_timeouts: session.gap_timeouts,
            stream_backpressure: stream_bp,
            session_backpressure: session.backpressure.stats(now),
            events_pending: session.events.len(),
            events_dropped: session.events.dropped(),
        };
        publish_counters(&stats);
        stats
    }

    /// One stream's buffer, window, gap and backpressure view. `None` if unknown.
    pub fn stream_stats(&self, id: StreamId) -> Option<StreamStats> {
        let now = self.session.clock;
        let st = self.streams.get(&id)?;
        Some(StreamStats {
            buffered_bytes: st.buffer.buffered_bytes(),
            readable_bytes: st.buffer.readable_bytes(),
            read_position: st.buffer.read_position(),
            highest_received: st.buffer.highest_received(),
            final_size: st.buffer.final_size(),
            credit: st.window.credit(),
            window: st.window.window(),
            counters: st.buffer.counters(),
            gaps: st.buffer.gap_stats(now),
            backpressure: st.backpressure.reason(),
        })
    }
}

/// Publishes session counters through the `metrics` facade (absolute values; called
/// from `stats` and timeouts, not per segment).
fn publish_counters(stats: &PresentationStats) {
    metrics::counter!("kwik_presentation_bytes_received_total").absolute(stats.bytes_received);
    metrics::counter!("kwik_presentation_bytes_read_total").absolute(stats.bytes_read);
    metrics::counter!("kwik_presentation_duplicate_bytes_total").absolute(stats.duplicate_bytes);
    metrics::counter!("kwik_presentation_discarded_bytes_total").absolute(stats.discarded_bytes);
    metrics::counter!("kwik_presentation_out_of_order_segments_total")
        .absolute(stats.out_of_order_segments);
    metrics::counter!("kwik_presentation_gap_timeouts_total").absolute(stats.gap_timeouts);
    metrics::counter!("kwik_presentation_rejected_writes_total").absolute(stats.rejected_writes);
    metrics::counter!("kwik_presentation_backpressure_activations_total", "scope" => "session")
        .absolute(stats.session_backpressure.activations);
    metrics::counter!("kwik_presentation_backpressure_activations_total", "scope" => "stream")
        .absolute(stats.stream_backpressure.activations);
    metrics::gauge!("kwik_presentation_gaps").set(stats.gaps as f64);
    metrics::gauge!("kwik_presentation_buffered_bytes").set(stats.buffered_bytes as f64);
    metrics::gauge!("kwik_presentation_window_utilisation").set(stats.window_utilisation);
    metrics::gauge!("kwik_presentation_open_streams").set(stats.open_streams as f64);
}

/// Publishes window gauges (called at session credit raises, every half window).
pub(super) fn publish_gauges(session: &Session) {
    let window = session.window.window() as f64;
    metrics::gauge!("kwik_presentation_session_window_bytes").set(window);
    metrics::gauge!("kwik_presentation_buffered_bytes").set(session.buffered as f64);
    metrics::gauge!("kwik_presentation_window_utilisation").set(session.buffered as f64 / window);
}
