//! What a running or finished recording group reports: its state, per-stream counts and
//! the files it wrote.

use std::path::PathBuf;

use serde::Serialize;

use crate::recording::config::RecordingId;
use crate::store::sidecar::DroppedCounts;

/// The life-cycle state of a running group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GroupState {
    /// Recording.
    Recording,
    /// Stop requested; draining buffers.
    Stopping,
    /// Closed cleanly.
    Finished,
    /// Stopped by a write error.
    Failed,
}

/// Status of one stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    /// Stream name.
    pub name: String,
    /// Schema name.
    pub schema: &'static str,
    /// Data file being written.
    pub file: PathBuf,
    /// Sidecar path.
    pub sidecar: PathBuf,
    /// Parts so far.
    pub parts: u64,
    /// Bytes written over all parts.
    pub bytes: u64,
    /// Samples produced by the source since the start (those it reported lost before
    /// they reached the recorder included).
    pub produced: u64,
    /// Samples in the data files.
    pub samples: u64,
    /// Recorded samples per second since t0.
    pub rate_hz: f64,
    /// Samples skipped on inactive lines.
    pub filtered_inactive: u64,
    /// Losses per stage.
    pub dropped: DroppedCounts,
}

/// Status of a recording group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    /// The recording's id (named `session_id` in JSON, as in the sidecar).
    pub session_id: RecordingId,
    /// State.
    pub state: GroupState,
    /// Time since t0 (or the final duration).
    pub duration_s: f64,
    /// Free bytes on the output filesystem at the last check.
    pub free_disk_bytes: u64,
    /// Projected time until the disk is full at the current write rate.
    pub time_to_full_s: Option<f64>,
    /// Why the recording stopped, once it did.
    pub stop_reason: Option<String>,
    /// Warnings so far.
    pub warnings: Vec<String>,
    /// Per-stream status.
    pub streams: Vec<StreamStatus>,
}

impl GroupStatus {
    /// Samples lost over all streams and stages.
    pub fn total_dropped(&self) -> u64 {
        self.streams.iter().map(|s| s.dropped.total()).sum()
    }
}

/// What a finished recording produced.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingSummary {
    /// Final status (state, duration, counts per stream).
    pub status: GroupStatus,
    /// Every data file, per stream, in order.
    pub files: Vec<Vec<PathBuf>>,
}
