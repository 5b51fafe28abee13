//! Recording groups: several streams started and stopped together with one t0, each
//! read from its ring buffer by a worker thread into its own double-buffered exporter
//! and data files, with limits, free-disk checks and a periodically refreshed sidecar.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::Instant;

use chrono::{DateTime, Local, SecondsFormat, Utc};

use crate::capture::device_notes::DeviceNotes;
use crate::capture::ring::RingReader;
use crate::format::compat::HeaderFacts;
use crate::format::encoder::EncoderError;
use crate::format::schema::Schema;
use crate::format::segment::{LineState, Segment, SegmentId};
use crate::recording::config::{RecordingConfig, RecordingId, StartError, settings_of};
use crate::recording::monitor::{monitor, status, summary, write_sidecar};
use crate::recording::segment_cell::SegmentCell;
use crate::recording::shared::GroupShared;
use crate::recording::status::{GroupState, GroupStatus, RecordingSummary};
use crate::recording::worker::{GroupLaunch, Pending, PendingStream};
use crate::store::disk;
use crate::store::file_writer::SizeLimitAction;
use crate::store::sidecar::RecordingState;

/// A recording group being assembled: add streams, then [`RecordingGroup::start`].
pub struct RecordingGroup {
    config: RecordingConfig,
    streams: Vec<Box<dyn PendingStream>>,
    segment: Arc<SegmentCell>,
    progress: Option<Waker>,
}

impl std::fmt::Debug for RecordingGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingGroup")
            .field("config", &self.config)
            .field(
                "streams",
                &self.streams.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl RecordingGroup {
    /// A group with these settings and no streams yet.
    pub fn new(config: RecordingConfig) -> Self {
        RecordingGroup {
            config,
            streams: Vec::new(),
            segment: Arc::new(SegmentCell::default()),
            progress: None,
        }
    }

    /// Adds a stream read from `reader` (from the reader's current position).
    pub fn add_stream<S: Schema>(&mut self, name: &str, reader: RingReader<S>) -> &mut Self {
        self.streams.push(Box::new(Pending {
            name: name.to_owned(),
            reader,
        }));
        self
    }

    /// The group's segment marker (sources may read it; [`Recording::set_segment`]
    /// writes it).
    pub fn segment_cell(&self) -> Arc<SegmentCell> {
        self.segment.clone()
    }

    /// Has the group wake `waker` whenever samples leave its buffers (encoded into a
    /// data file, or counted lost in the ring, the exporter or the writer) and when
    /// its state changes (stopping, finished). A producer that holds back while the
    /// recorder is behind (the recorder server withholding credit) waits on it instead
    /// of polling the status. Wakes come from the writer and worker threads.
    pub fn wake_on_progress(&mut self, waker: Waker) -> &mut Self {
        self.progress = Some(waker);
        self
    }

    /// Checks settings and disk, creates the files and sidecars (state `recording`),
    /// and starts every stream with one t0.
    pub fn start(self) -> Result<Recording, StartError> {
        let RecordingGroup {
            config,
            streams,
            segment,
            progress,
        } = self;
        if streams.is_empty() {
            return Err(StartError::NoStreams);
        }
        let mut names: Vec<&str> = streams.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(StartError::DuplicateStream(w[0].to_owned()));
        }
        for s in &streams {
            s.check(&config.format)?;
        }
        // Columnar files split into whole parts between row groups or chunks; stopping
        // at a limit would leave rows the writer accepted unwritten.
        if !config.format.is_text()
            && config.size_limit.is_some()
            && config.on_size_limit != SizeLimitAction::Split
        {
            return Err(StartError::Format(EncoderError::SizeLimitUnsupported(
                config.format.name(),
            )));
        }
        let start_local: DateTime<Local> = Local::now();
        let start_utc = start_local.with_timezone(&Utc);
        let day_dir = config
            .out_dir
            .join(start_local.format("%Y-%m-%d").to_string());
        std::fs::create_dir_all(&day_dir).map_err(|source| StartError::OutputDir {
            path: day_dir.clone(),
            source,
        })?;
        let free = disk::free_bytes(&day_dir).map_err(|source| StartError::OutputDir {
            path: day_dir.clone(),
            source,
        })?;
        if free < config.min_free_bytes {
            return Err(StartError::DiskFull {
                path: day_dir,
                free,
                min: config.min_free_bytes,
            });
        }
        let id = RecordingId::random();
        let stamp = start_local.format("%Y%m%d_%H%M%S").to_string();
        let mut comments = vec![
            format!("kwik-record {}", env!("CARGO_PKG_VERSION")),
            format!(
                "session={} start={}",
                id.0,
                start_utc.to_rfc3339_opts(SecondsFormat::Micros, false)
            ),
        ];
        if !config.device.is_empty() {
            comments.push(format!("device: {}", kv(&config.device)));
        }
        comments.push(format!("settings: {}", kv(&settings_of(&config))));
        let facts = HeaderFacts {
            start: start_local.to_rfc3339_opts(SecondsFormat::Millis, false),
            device: config
                .device
                .get("name")
                .cloned()
                .unwrap_or_else(|| "unknown device".into()),
        };
        let metadata = vec![
            (
                "kwik.device".to_owned(),
                serde_json::to_string(&config.device).unwrap_or_default(),
            ),
            (
                "kwik.settings".to_owned(),
                serde_json::to_string(&settings_of(&config)).unwrap_or_default(),
            ),
        ];
        let launch = GroupLaunch {
            config: config.clone(),
            comments,
            facts,
            session_id: id.0.clone(),
            start_utc: start_utc.to_rfc3339_opts(SecondsFormat::Micros, false),
            start_utc_us: start_utc.timestamp_micros(),
            metadata,
            progress: progress.clone(),
        };
        let single = streams.len() == 1;
        let mut shared_streams = Vec::new();
        let mut runs = Vec::new();
        for s in streams {
            let stem = if single {
                format!("{}_{stamp}", config.prefix.as_str())
            } else {
                format!("{}-{}_{stamp}", config.prefix.as_str(), s.name())
            };
            let base = unique_base(&day_dir, &stem);
            let (sh, run) = s.launch(&launch, base)?;
            shared_streams.push(sh);
            runs.push(run);
        }
        let group = Arc::new(GroupShared {
            id,
            config,
            day_dir,
            t0: Instant::now(),
            start_utc,
            stop: AtomicBool::new(false),
            state: Mutex::new(GroupState::Recording),
            stop_reason: Mutex::new(None),
            warnings: Mutex::new(Vec::new()),
            ended: Mutex::new(None),
            segment,
            device_notes: DeviceNotes::default(),
            streams: shared_streams,
            free: AtomicU64::new(free),
            progress,
        });
        for s in &group.streams {
            write_sidecar(&group, s, RecordingState::Recording)?;
        }
        let mut workers = Vec::new();
        for (run, s) in runs.into_iter().zip(&group.streams) {
            let g = group.clone();
            let h = std::thread::Builder::new()
                .name(format!("kwik-rec-{}", s.name))
                .spawn(move || run(g))
                .map_err(StartError::Thread)?;
            workers.push(h);
        }
        let g = group.clone();
        let monitor = std::thread::Builder::new()
            .name("kwik-rec-monitor".into())
            .spawn(move || monitor(g, workers))
            .map_err(StartError::Thread)?;
        Ok(Recording {
            group,
            monitor: Some(monitor),
        })
    }
}

fn kv(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unique_base(dir: &Path, stem: &str) -> PathBuf {
    let mut n = 1;
    loop {
        let name = if n == 1 {
            stem.to_owned()
        } else {
            format!("{stem}-{n}")
        };
        let base = dir.join(&name);
        if !base.with_extension("csv").exists() && !base.with_extension("meta.json").exists() {
            return base;
        }
        n += 1;
    }
}

/// A running recording group.
pub struct Recording {
    group: Arc<GroupShared>,
    monitor: Option<JoinHandle<RecordingSummary>>,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("id", &self.group.id)
            .finish()
    }
}

impl Recording {
    /// The recording's id.
    pub fn id(&self) -> &RecordingId {
        &self.group.id
    }

    /// The group's t0 (relative times of every stream count from here).
    pub fn t0(&self) -> Instant {
        self.group.t0
    }

    /// Sets the segment marker for every stream of the group, from the next sample each
    /// stream's worker reads.
    pub fn set_segment(&self, id: SegmentId, line: LineState) {
        self.group.segment.set(Segment { id, line });
    }

    /// A handle for what is learned about the device while recording (see
    /// [`DeviceNotes`]).
    pub fn device_notes(&self) -> DeviceNotes {
        self.group.device_notes.clone()
    }

    /// Current status; cheap, callable from any thread.
    pub fn status(&self) -> GroupStatus {
        status(&self.group)
    }

    /// True once the recording has ended by itself (limit, error) or after `stop`.
    pub fn is_finished(&self) -> bool {
        self.monitor.as_ref().is_none_or(|m| m.is_finished())
    }

    /// Stops every stream (recording all samples produced before this call), finalises
    /// files and sidecars, and returns the summary.
    pub fn stop(self) -> RecordingSummary {
        self.stop_because("stopped")
    }

    /// Like [`Recording::stop`], with the reason the status and sidecar give (e.g.
    /// "source ended").
    pub fn stop_because(mut self, reason: &str) -> RecordingSummary {
        self.group.request_stop(reason);
        self.join()
    }

    /// Waits until the recording ends by itself (duration/size limit, error, full disk).
    pub fn wait(mut self) -> RecordingSummary {
        self.join()
    }

    fn join(&mut self) -> RecordingSummary {
        match self.monitor.take().map(|m| m.join()) {
            Some(Ok(s)) => s,
            _ => summary(&self.group),
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if self.monitor.is_some() {
            self.group.request_stop("recording handle dropped");
            let _ = self.join();
        }
    }
}
