//! The recorder panel's model: the live streams of one process and at most one
//! recording of them at a time, started and stopped from the dashboard (or adopted
//! from the command line that started it), with the state the panel shows.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::dashboard::tap::Taps;
use crate::format::columns::{McapOptions, ParquetOptions};
use crate::format::csv::CsvOptions;
use crate::format::encoder::Format;
use crate::format::labview::LabviewLayout;
use crate::recording::config::{Prefix, PrefixError, RecordingConfig, StartError};
use crate::recording::group::{Recording, RecordingGroup};
use crate::recording::status::{GroupState, GroupStatus, RecordingSummary};
use crate::store::file_writer::SizeLimitAction;
use crate::sync::lock_std as lock;

/// What the Start button sends.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct StartSettings {
    /// File-name prefix (default: the recorder's).
    pub prefix: Option<String>,
    /// Stop after this many seconds.
    pub duration_s: Option<f64>,
    /// Size limit per data file in bytes.
    pub size_limit_bytes: Option<u64>,
    /// At the size limit continue in numbered parts instead of stopping.
    pub split: bool,
    /// `csv` (default), `labview`, `parquet` or `mcap`.
    pub format: Option<String>,
}

/// Why the panel refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PanelError {
    /// This dashboard has no live streams (it only browses recordings).
    #[error("this dashboard has no live streams to record; it only browses recordings")]
    NoStreams,
    /// A recording is already running.
    #[error("a recording is already running; stop it first")]
    AlreadyRecording,
    /// Nothing is being recorded.
    #[error("nothing is being recorded")]
    NotRecording,
    /// The prefix cannot be used in a file name.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// A setting is out of range.
    #[error("bad setting: {0}")]
    Setting(String),
    /// The recording could not start.
    #[error("cannot start the recording: {0}")]
    Start(#[from] StartError),
}

/// The state indicator of the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Indicator {
    /// Not recording; the last recording (if any) ended cleanly.
    Ready,
    /// Recording, nothing wrong.
    Recording,
    /// Recording, with a warning (samples lost, disk filling up).
    Warning,
    /// The last recording failed.
    Error,
}

/// What the recorder panel shows.
#[derive(Debug, Clone, Serialize)]
pub struct PanelStatus {
    /// State indicator.
    pub indicator: Indicator,
    /// Why the indicator is what it is (warning text, stop reason).
    pub reason: Option<String>,
    /// Start time of the current (or last) recording, UTC RFC 3339.
    pub started_utc: Option<String>,
    /// Fraction (0..1) of the duration or size limit reached, whichever is nearer.
    pub progress: Option<f64>,
    /// The current recording's status.
    pub current: Option<GroupStatus>,
    /// The last finished recording's summary.
    pub last: Option<RecordingSummary>,
}

struct Running {
    recording: Recording,
    started_utc: String,
    config: RecordingConfig,
}

/// The live streams of a process and the recording of them the dashboard controls.
pub struct LiveRecorder {
    taps: Taps,
    base: RecordingConfig,
    running: Mutex<Option<Running>>,
    last: Mutex<Option<(String, RecordingSummary)>>,
}

impl std::fmt::Debug for LiveRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRecorder")
            .field("taps", &self.taps)
            .field("out_dir", &self.base.out_dir)
            .finish_non_exhaustive()
    }
}

impl LiveRecorder {
    /// The streams of `taps`; recordings started from the dashboard use `base` with the
    /// panel's settings over it.
    pub fn new(base: RecordingConfig, taps: Taps) -> Self {
        LiveRecorder {
            taps,
            base,
            running: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    /// The live streams.
    pub fn taps(&self) -> &Taps {
        &self.taps
    }

    /// The recordings root.
    pub fn out_dir(&self) -> &std::path::Path {
        &self.base.out_dir
    }

    /// Takes over a recording started elsewhere (the command line's), with the settings
    /// it was started with, so the panel shows and stops it. A recording already running
    /// is handed back.
    pub fn adopt(&self, recording: Recording, config: RecordingConfig) -> Result<(), Recording> {
        let mut r = lock(&self.running);
        if r.is_some() {
            return Err(recording);
        }
        *r = Some(Running {
            recording,
            started_utc: now_utc(),
            config,
        });
        Ok(())
    }

    /// Starts a recording of every live stream with `settings` over the base settings.
    pub fn start(&self, settings: &StartSettings) -> Result<GroupStatus, PanelError> {
        if self.taps.is_empty() {
            return Err(PanelError::NoStreams);
        }
        self.collect_finished();
        let mut running = lock(&self.running);
        if running.is_some() {
            return Err(PanelError::AlreadyRecording);
        }
        let config = self.config_for(settings)?;
        let mut group = RecordingGroup::new(config.clone());
        for t in self.taps.iter() {
            t.add_to(&mut group);
        }
        let recording = group.start()?;
        let status = recording.status();
        *running = Some(Running {
            recording,
            started_utc: now_utc(),
            config,
        });
        Ok(status)
    }

    /// Stops the current recording and returns its summary. Blocks until its files are
    /// closed (call it off the async threads).
    pub fn stop(&self) -> Result<RecordingSummary, PanelError> {
        self.stop_because("stopped")
    }

    /// Like [`LiveRecorder::stop`], with the reason the status and sidecar give.
    pub fn stop_because(&self, reason: &str) -> Result<RecordingSummary, PanelError> {
        let r = lock(&self.running).take().ok_or(PanelError::NotRecording)?;
        let summary = r.recording.stop_because(reason);
        *lock(&self.last) = Some((r.started_utc, summary.clone()));
        Ok(summary)
    }

    /// Stops whatever runs (at shutdown) with `reason`, and returns the summary of the
    /// last recording; `None` when there was none.
    pub fn shutdown(&self, reason: &str) -> Option<RecordingSummary> {
        self.collect_finished();
        self.stop_because(reason)
            .ok()
            .or_else(|| self.last_summary())
    }

    /// The summary of the last finished recording.
    pub fn last_summary(&self) -> Option<RecordingSummary> {
        lock(&self.last).as_ref().map(|(_, s)| s.clone())
    }

    /// True while a recording runs.
    pub fn is_recording(&self) -> bool {
        self.collect_finished();
        lock(&self.running).is_some()
    }

    /// Sidecars of the recording in progress (what may not be deleted).
    pub fn live_sidecars(&self) -> Vec<PathBuf> {
        match &*lock(&self.running) {
            Some(r) => r
                .recording
                .status()
                .streams
                .into_iter()
                .map(|s| s.sidecar)
                .collect(),
            None => Vec::new(),
        }
    }

    /// What the panel shows now.
    pub fn panel(&self) -> PanelStatus {
        self.collect_finished();
        let running = lock(&self.running);
        let last = lock(&self.last).clone();
        if let Some(r) = &*running {
            let st = r.recording.status();
            let dropped = st.total_dropped();
            let (indicator, reason) = if let Some(w) = st.warnings.last() {
                (Indicator::Warning, Some(w.clone()))
            } else if dropped > 0 {
                (Indicator::Warning, Some(format!("{dropped} samples lost")))
            } else {
                (Indicator::Recording, None)
            };
            let by_time = r
                .config
                .duration_limit
                .map(|d| st.duration_s / d.as_secs_f64().max(1e-9));
            let by_size = r.config.size_limit.and_then(|lim| {
                // A split recording never stops at the limit: no progress toward it.
                (r.config.on_size_limit == SizeLimitAction::Stop).then(|| {
                    let biggest = st.streams.iter().map(|s| s.bytes).max().unwrap_or(0);
                    biggest as f64 / lim.max(1) as f64
                })
            });
            let progress = match (by_time, by_size) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            return PanelStatus {
                indicator,
                reason,
                started_utc: Some(r.started_utc.clone()),
                progress: progress.map(|p| p.clamp(0.0, 1.0)),
                current: Some(st),
                last: last.map(|(_, s)| s),
            };
        }
        let (indicator, reason, started) = match &last {
            Some((started, s)) if s.status.state == GroupState::Failed => (
                Indicator::Error,
                s.status.stop_reason.clone(),
                Some(started.clone()),
            ),
            Some((started, s)) => (
                Indicator::Ready,
                s.status.stop_reason.clone(),
                Some(started.clone()),
            ),
            None => (Indicator::Ready, None, None),
        };
        PanelStatus {
            indicator,
            reason,
            started_utc: started,
            progress: None,
            current: None,
            last: last.map(|(_, s)| s),
        }
    }

    /// Moves a recording that ended by itself (limit, error) to `last`.
    fn collect_finished(&self) {
        let mut running = lock(&self.running);
        if running.as_ref().is_some_and(|r| r.recording.is_finished()) {
            if let Some(r) = running.take() {
                drop(running);
                let summary = r.recording.wait();
                *lock(&self.last) = Some((r.started_utc, summary));
            }
        }
    }

    fn config_for(&self, s: &StartSettings) -> Result<RecordingConfig, PanelError> {
        let mut c = self.base.clone();
        if let Some(p) = s.prefix.as_deref().filter(|p| !p.is_empty()) {
            c.prefix = Prefix::try_from(p)?;
        }
        c.duration_limit = match s.duration_s {
            None => None,
            Some(d) if d.is_finite() && d > 0.0 && d < 1e9 => Some(Duration::from_secs_f64(d)),
            Some(d) => {
                return Err(PanelError::Setting(format!(
                    "duration {d} s; give a positive number of seconds"
                )));
            }
        };
        c.size_limit = match s.size_limit_bytes {
            Some(0) => {
                return Err(PanelError::Setting(
                    "size limit 0; give at least 1 byte".into(),
                ));
            }
            other => other,
        };
        c.on_size_limit = if s.split {
            SizeLimitAction::Split
        } else {
            SizeLimitAction::Stop
        };
        c.format = match s.format.as_deref() {
            None => c.format,
            Some("csv") => Format::Csv(CsvOptions::default()),
            Some("labview") => Format::Labview(LabviewLayout::default()),
            Some("parquet") => Format::Parquet(ParquetOptions::default()),
            Some("mcap") => Format::Mcap(McapOptions::default()),
            Some(other) => {
                return Err(PanelError::Setting(format!(
                    "format {other:?}; use csv, labview, parquet or mcap"
                )));
            }
        };
        Ok(c)
    }
}

fn now_utc() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}
