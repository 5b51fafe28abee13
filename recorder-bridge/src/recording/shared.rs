//! The state a recording group's threads share: the group's (t0, stop flag, state,
//! warnings) and each stream's (paths, counters, the writer's progress and report).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::capture::device_notes::DeviceNotes;
use crate::recording::config::{RecordingConfig, RecordingId};
use crate::recording::segment_cell::SegmentCell;
use crate::recording::status::GroupState;
use crate::store::exporter::ExportStats;
use crate::store::file_writer::{FileProgress, FileReport};
use crate::store::sidecar::DroppedCounts;
use crate::sync::lock_std as lock;

/// One stream of a running group, as its worker, the monitor and status readers see it.
pub(crate) struct StreamShared {
    pub(crate) name: String,
    pub(crate) schema: &'static str,
    pub(crate) base: PathBuf,
    pub(crate) sidecar: PathBuf,
    pub(crate) produced: AtomicU64,
    pub(crate) source_lost: AtomicU64,
    pub(crate) ring_dropped: AtomicU64,
    pub(crate) filtered: AtomicU64,
    pub(crate) pushed: AtomicU64,
    pub(crate) export: Arc<ExportStats>,
    pub(crate) progress: Arc<FileProgress>,
    pub(crate) report: Mutex<Option<FileReport>>,
}

impl StreamShared {
    pub(crate) fn in_files(&self) -> u64 {
        match &*lock(&self.report) {
            Some(r) => r.parts.iter().map(|p| p.samples).sum(),
            None => self.progress.samples(),
        }
    }

    pub(crate) fn dropped(&self) -> DroppedCounts {
        let e = self.export.snapshot();
        let pushed = self.pushed.load(Ordering::Relaxed);
        let finished = lock(&self.report).is_some();
        let writer = if finished || self.progress.stop().is_some() {
            pushed.saturating_sub(e.dropped + self.in_files())
        } else {
            e.discarded
        };
        DroppedCounts {
            source: self.source_lost.load(Ordering::Relaxed),
            ring: self.ring_dropped.load(Ordering::Relaxed),
            exporter: e.dropped,
            writer,
        }
    }
}

/// A running group, shared by its stream workers, its monitor and its handle.
pub(crate) struct GroupShared {
    pub(crate) id: RecordingId,
    pub(crate) config: RecordingConfig,
    pub(crate) day_dir: PathBuf,
    pub(crate) t0: Instant,
    pub(crate) start_utc: DateTime<Utc>,
    pub(crate) stop: AtomicBool,
    pub(crate) state: Mutex<GroupState>,
    pub(crate) stop_reason: Mutex<Option<String>>,
    pub(crate) warnings: Mutex<Vec<String>>,
    pub(crate) ended: Mutex<Option<Duration>>,
    pub(crate) segment: Arc<SegmentCell>,
    pub(crate) device_notes: DeviceNotes,
    pub(crate) streams: Vec<Arc<StreamShared>>,
    pub(crate) free: AtomicU64,
    /// Woken when samples leave the recorder or the state changes (see
    /// `RecordingGroup::wake_on_progress`).
    pub(crate) progress: Option<Waker>,
}

impl GroupShared {
    pub(crate) fn request_stop(&self, reason: &str) {
        let mut r = lock(&self.stop_reason);
        if r.is_none() {
            *r = Some(reason.to_owned());
        }
        drop(r);
        let mut st = lock(&self.state);
        if *st == GroupState::Recording {
            *st = GroupState::Stopping;
        }
        self.stop.store(true, Ordering::Release);
        drop(st);
        self.wake_progress();
    }

    /// Wakes whoever waits for the group's progress (samples written or counted lost,
    /// a state change).
    pub(crate) fn wake_progress(&self) {
        if let Some(w) = &self.progress {
            w.wake_by_ref();
        }
    }

    pub(crate) fn elapsed(&self) -> Duration {
        lock(&self.ended).unwrap_or_else(|| self.t0.elapsed())
    }
}
