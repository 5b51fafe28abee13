//! Recording groups: several streams started and stopped together with one t0, each
//! read from its ring buffer by a worker thread into its own double-buffered exporter
//! and data files, with limits, free-disk checks and a periodically refreshed sidecar.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde::Serialize;

use crate::codec::{Encoder, EncoderError, Format};
use crate::disk;
use crate::exporter::{ExportConfig, ExportStats, Exporter, OverflowPolicy};
use crate::file_writer::{
    FileConfig, FileProgress, FileReport, FileWriter, SizeLimitAction, WriteFault, WriterStop,
};
use crate::ring::RingReader;
use crate::schema::{LineState, Schema, Segment, SegmentId};
use crate::sidecar::{
    DroppedCounts, LabviewMeta, PartMeta, RecordingState, SIDECAR_VERSION, Sidecar, SidecarError,
    file_name,
};

/// Identifier of a recording session (128 random bits, hex).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SessionId(pub String);

impl SessionId {
    /// A fresh random id.
    pub fn random() -> Self {
        SessionId(format!("{:032x}", rand::random::<u128>()))
    }
}

/// A file-name prefix: 1-64 characters of `A-Z a-z 0-9 - _ .`, not starting with `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

/// A prefix that cannot be used in a file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "prefix {0:?} is not usable in a file name; use 1-64 characters from A-Z a-z 0-9 - _ . (not starting with a dot)"
)]
pub struct PrefixError(pub String);

impl TryFrom<&str> for Prefix {
    type Error = PrefixError;
    fn try_from(s: &str) -> Result<Self, PrefixError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Prefix(s.to_owned()))
        } else {
            Err(PrefixError(s.to_owned()))
        }
    }
}

impl Prefix {
    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which samples are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LineFilter {
    /// Every sample (default).
    #[default]
    All,
    /// Only samples on active lines; the others are counted as `filtered_inactive`.
    ActiveOnly,
}

/// Where a sample's segment marker comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SegmentMarking {
    /// The recorder stamps each sample with the group's current marker
    /// ([`Recording::set_segment`]) as it reads it (default).
    #[default]
    Group,
    /// Samples arrive already stamped (a device that knows its scan state).
    FromSamples,
}

/// Settings of a recording group.
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// Root folder; files go to `<out_dir>/YYYY-MM-DD/` (default `recordings`).
    pub out_dir: PathBuf,
    /// File-name prefix (default `rec`).
    pub prefix: Prefix,
    /// Layout of the data files (default standard CSV).
    pub format: Format,
    /// Stop after this long (default: no limit).
    pub duration_limit: Option<Duration>,
    /// Size limit per data file in bytes (default: none).
    pub size_limit: Option<u64>,
    /// What the size limit does (default stop).
    pub on_size_limit: SizeLimitAction,
    /// Exporter batch, flush interval and overflow policy. The default policy here is
    /// [`OverflowPolicy::Reject`]: when both buffers are full the stream's worker leaves
    /// samples in the ring and retries, so the ring (sized by the caller) absorbs a slow
    /// disk and a loss shows up as ring drops. The acquisition never waits either way.
    /// With [`OverflowPolicy::DropNewest`] the exporter drops and counts instead.
    pub export: ExportConfig,
    /// fsync data at least this often (default 1 s): the most a crash can lose.
    pub sync_interval: Duration,
    /// Sidecar refresh and free-disk check interval (default 1 s).
    pub status_interval: Duration,
    /// How often a worker polls its ring when it found nothing (default 5 ms).
    pub poll_interval: Duration,
    /// Active-lines-only option (default all samples).
    pub lines: LineFilter,
    /// Where segment markers come from (default the group).
    pub segments: SegmentMarking,
    /// Refuse to start, and stop cleanly, when free space falls below this (default
    /// 64 MiB).
    pub min_free_bytes: u64,
    /// Warn when the projected time to a full disk is shorter than this (default 10 min).
    pub warn_time_to_full: Duration,
    /// Device description written to the comment header and the sidecar.
    pub device: BTreeMap<String, String>,
    /// Extra settings written to the comment header and the sidecar.
    pub settings: BTreeMap<String, String>,
    /// Injected write failure (tests of the error path).
    pub write_fault: Option<WriteFault>,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            out_dir: PathBuf::from("recordings"),
            prefix: Prefix("rec".into()),
            format: Format::default(),
            duration_limit: None,
            size_limit: None,
            on_size_limit: SizeLimitAction::Stop,
            export: ExportConfig {
                overflow: OverflowPolicy::Reject,
                ..ExportConfig::default()
            },
            sync_interval: Duration::from_secs(1),
            status_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(5),
            lines: LineFilter::All,
            segments: SegmentMarking::Group,
            min_free_bytes: 64 << 20,
            warn_time_to_full: Duration::from_secs(600),
            device: BTreeMap::new(),
            settings: BTreeMap::new(),
            write_fault: None,
        }
    }
}

/// Why a recording could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The group has no streams.
    #[error("no stream to record; add at least one stream to the group")]
    NoStreams,
    /// Two streams have the same name.
    #[error("two streams are named {0:?}; give every stream of a group its own name")]
    DuplicateStream(String),
    /// The layout does not fit a stream's schema.
    #[error(transparent)]
    Format(#[from] EncoderError),
    /// The output folder could not be created or examined.
    #[error("cannot use output folder {path}: {source}; check the path and its permissions")]
    OutputDir {
        /// The folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not enough free space.
    #[error(
        "only {free} bytes free in {path}, below the {min} byte reserve; free some space or record elsewhere with --out"
    )]
    DiskFull {
        /// The folder.
        path: PathBuf,
        /// Free bytes.
        free: u64,
        /// The reserve.
        min: u64,
    },
    /// A data file could not be created.
    #[error("cannot create data file {path}: {source}")]
    DataFile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The sidecar could not be written.
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    /// A thread could not be started.
    #[error("cannot start a recorder thread: {0}")]
    Thread(std::io::Error),
}

/// What is learned about the device while a recording runs (e.g. the firmware version
/// a board announces): entries set here are merged over [`RecordingConfig::device`] in
/// every stream's sidecar from its next refresh on, the final one included. Cloning
/// gives another handle on the same entries; any thread may set them.
#[derive(Debug, Clone, Default)]
pub struct DeviceNotes(Arc<Mutex<BTreeMap<String, String>>>);

impl DeviceNotes {
    /// Sets every entry of `entries` (replacing earlier values or configured ones).
    pub fn set_all(&self, entries: impl IntoIterator<Item = (String, String)>) {
        lock(&self.0).extend(entries);
    }

    /// `configured` with these entries laid over it.
    pub(crate) fn over(&self, configured: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut device = configured.clone();
        device.extend(lock(&self.0).iter().map(|(k, v)| (k.clone(), v.clone())));
        device
    }
}

/// The current segment marker of a group, readable and writable from any thread.
#[derive(Debug, Default)]
pub struct SegmentCell(AtomicU64);

impl SegmentCell {
    /// Sets the marker.
    pub fn set(&self, s: Segment) {
        let v = (u64::from(s.id.0) << 1) | u64::from(s.line.as_flag());
        self.0.store(v, Ordering::Release);
    }
    /// Reads the marker.
    pub fn get(&self) -> Segment {
        let v = self.0.load(Ordering::Acquire);
        Segment {
            id: SegmentId((v >> 1) as u32),
            line: if v & 1 == 1 {
                LineState::Active
            } else {
                LineState::Inactive
            },
        }
    }
}

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

struct StreamShared {
    name: String,
    schema: &'static str,
    base: PathBuf,
    sidecar: PathBuf,
    produced: AtomicU64,
    source_lost: AtomicU64,
    ring_dropped: AtomicU64,
    filtered: AtomicU64,
    pushed: AtomicU64,
    export: Arc<ExportStats>,
    progress: Arc<FileProgress>,
    report: Mutex<Option<FileReport>>,
}

impl StreamShared {
    fn in_files(&self) -> u64 {
        match &*lock(&self.report) {
            Some(r) => r.parts.iter().map(|p| p.samples).sum(),
            None => self.progress.samples(),
        }
    }

    fn dropped(&self) -> DroppedCounts {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

struct GroupShared {
    session: SessionId,
    config: RecordingConfig,
    day_dir: PathBuf,
    t0: Instant,
    start_utc: DateTime<Utc>,
    stop: AtomicBool,
    state: Mutex<GroupState>,
    stop_reason: Mutex<Option<String>>,
    warnings: Mutex<Vec<String>>,
    ended: Mutex<Option<Duration>>,
    segment: Arc<SegmentCell>,
    device_notes: DeviceNotes,
    streams: Vec<Arc<StreamShared>>,
    free: AtomicU64,
}

impl GroupShared {
    fn request_stop(&self, reason: &str) {
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
    }

    fn elapsed(&self) -> Duration {
        lock(&self.ended).unwrap_or_else(|| self.t0.elapsed())
    }
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
    /// Session id.
    pub session_id: SessionId,
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

trait PendingStream: Send {
    fn name(&self) -> &str;
    fn check(&self, format: &Format) -> Result<(), EncoderError>;
    fn launch(
        self: Box<Self>,
        group: &GroupLaunch,
        base: PathBuf,
    ) -> Result<(Arc<StreamShared>, StreamRun), StartError>;
}

type StreamRun = Box<dyn FnOnce(Arc<GroupShared>) + Send>;

struct GroupLaunch {
    config: RecordingConfig,
    comments: Vec<String>,
}

struct Pending<S: Schema> {
    name: String,
    reader: RingReader<S>,
}

impl<S: Schema> PendingStream for Pending<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self, format: &Format) -> Result<(), EncoderError> {
        Encoder::<S>::new(format.clone()).map(|_| ())
    }

    fn launch(
        self: Box<Self>,
        group: &GroupLaunch,
        base: PathBuf,
    ) -> Result<(Arc<StreamShared>, StreamRun), StartError> {
        let cfg = &group.config;
        let encoder = Encoder::<S>::new(cfg.format.clone())?;
        let mut comments = group.comments.clone();
        comments.insert(1, format!("schema={} stream={}", S::NAME, self.name));
        let data = base.with_extension("csv");
        let file_cfg = FileConfig {
            path: data.clone(),
            comments,
            size_limit: cfg.size_limit,
            on_size_limit: cfg.on_size_limit,
            sync_interval: cfg.sync_interval,
            fault: cfg.write_fault,
        };
        // The footer's dropped count reads the shared counters, set up just below.
        let slot: Arc<Mutex<Option<Arc<StreamShared>>>> = Arc::new(Mutex::new(None));
        let slot2 = slot.clone();
        let dropped = Arc::new(move || {
            lock(&slot2).as_ref().map_or(0, |s| {
                s.source_lost.load(Ordering::Relaxed)
                    + s.ring_dropped.load(Ordering::Relaxed)
                    + s.export.snapshot().dropped
            })
        });
        let writer = FileWriter::create(encoder, file_cfg, dropped).map_err(|source| {
            StartError::DataFile {
                path: data.clone(),
                source,
            }
        })?;
        let progress = writer.progress();
        let exporter = Exporter::start(cfg.export, writer).map_err(StartError::Thread)?;
        let shared = Arc::new(StreamShared {
            name: self.name.clone(),
            schema: S::NAME,
            sidecar: base.with_extension("meta.json"),
            base: data,
            produced: AtomicU64::new(0),
            source_lost: AtomicU64::new(0),
            ring_dropped: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            export: exporter.stats(),
            progress,
            report: Mutex::new(None),
        });
        *lock(&slot) = Some(shared.clone());
        let me = shared.clone();
        let reader = self.reader;
        let run = Box::new(move |g: Arc<GroupShared>| {
            stream_worker(g, me, reader, exporter);
            // Break the footer closure's reference cycle.
            lock(&slot).take();
        });
        Ok((shared, run))
    }
}

/// The worker loop of one stream: ring → segment stamp/filter → exporter.
fn stream_worker<S: Schema>(
    group: Arc<GroupShared>,
    stream: Arc<StreamShared>,
    mut reader: RingReader<S>,
    mut exporter: Exporter<S, FileReport>,
) {
    let cfg = &group.config;
    let chunk = cfg.export.batch.clamp(256, 16384);
    let mut buf: Vec<S> = Vec::with_capacity(chunk);
    let start = reader.position().0;
    let mut stop_at: Option<u64> = None;
    // Samples read from the ring and not yet accepted by the exporter (it refuses them
    // while both buffers are full): they wait here while the ring keeps absorbing.
    let mut pos = 0usize;
    loop {
        if stop_at.is_none() && group.stop.load(Ordering::Acquire) {
            // Everything produced before the stop request is recorded.
            stop_at = Some(reader.head().0);
        }
        let mut got = None;
        if pos == buf.len() {
            buf.clear();
            pos = 0;
            let max = match stop_at {
                Some(end) => usize::try_from(end.saturating_sub(reader.position().0))
                    .unwrap_or(usize::MAX)
                    .min(chunk),
                None => chunk,
            };
            let r = reader.read(&mut buf, max);
            stream.ring_dropped.fetch_add(r.dropped, Ordering::Relaxed);
            let marker = group.segment.get();
            let before = buf.len();
            buf.retain_mut(|s| {
                if cfg.segments == SegmentMarking::Group {
                    s.set_segment(marker);
                }
                let line = match cfg.segments {
                    SegmentMarking::Group => marker.line,
                    SegmentMarking::FromSamples => s.segment().map_or(marker.line, |m| m.line),
                };
                cfg.lines != LineFilter::ActiveOnly || line == LineState::Active
            });
            stream
                .filtered
                .fetch_add((before - buf.len()) as u64, Ordering::Relaxed);
            // Produced by the device: what reached the ring plus what the source
            // reported lost on the way there.
            let lost = reader.lost_upstream();
            stream.source_lost.store(lost, Ordering::Relaxed);
            stream
                .produced
                .store(reader.position().0 - start + lost, Ordering::Relaxed);
            got = Some(r);
        }
        // Accepted, or dropped/discarded and counted by the exporter; a refused tail
        // (both buffers full under Reject) waits here for the next round.
        let took = exporter.push_slice(&buf[pos..]);
        pos += took;
        stream.pushed.fetch_add(took as u64, Ordering::Relaxed);
        let blocked = pos < buf.len();
        exporter.poll(Instant::now());
        if let Some(stop) = stream.progress.stop() {
            group.request_stop(&match stop {
                WriterStop::SizeLimit => "size limit".to_owned(),
                WriterStop::Io { message, .. } => format!("write error: {message}"),
            });
        }
        let idle = got.is_none_or(|r| r.read == 0 && r.dropped == 0);
        if let Some(end) = stop_at {
            if reader.position().0 >= end && pos == buf.len() {
                break;
            }
        }
        if blocked {
            // Both export buffers are full: wake as soon as the writer gives one back.
            exporter.wait_for_room(cfg.poll_interval);
        } else if idle && stop_at.is_none() {
            std::thread::sleep(cfg.poll_interval);
        }
    }
    let report = exporter.close().unwrap_or(FileReport {
        parts: Vec::new(),
        stop: Some(WriterStop::Io {
            errno: None,
            message: "the writer thread panicked".into(),
        }),
    });
    *lock(&stream.report) = Some(report);
}

/// A recording group being assembled: add streams, then [`RecordingGroup::start`].
pub struct RecordingGroup {
    config: RecordingConfig,
    streams: Vec<Box<dyn PendingStream>>,
    segment: Arc<SegmentCell>,
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

    /// Checks settings and disk, creates the files and sidecars (state `recording`),
    /// and starts every stream with one t0.
    pub fn start(self) -> Result<Recording, StartError> {
        let RecordingGroup {
            config,
            streams,
            segment,
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
        let session = SessionId::random();
        let stamp = start_local.format("%Y%m%d_%H%M%S").to_string();
        let mut comments = vec![
            format!("kwik-record {}", env!("CARGO_PKG_VERSION")),
            format!(
                "session={} start={}",
                session.0,
                start_utc.to_rfc3339_opts(SecondsFormat::Micros, false)
            ),
        ];
        if !config.device.is_empty() {
            comments.push(format!("device: {}", kv(&config.device)));
        }
        comments.push(format!("settings: {}", kv(&settings_of(&config))));
        let launch = GroupLaunch {
            config: config.clone(),
            comments,
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
            session,
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

fn settings_of(c: &RecordingConfig) -> BTreeMap<String, String> {
    let mut s = c.settings.clone();
    s.insert("format".into(), c.format.name().into());
    if let Format::Labview(l) = &c.format {
        s.insert("labview_block".into(), l.block().to_string());
    }
    if let Some(d) = c.duration_limit {
        s.insert("duration_limit_s".into(), d.as_secs_f64().to_string());
    }
    if let Some(b) = c.size_limit {
        s.insert("size_limit_bytes".into(), b.to_string());
        s.insert(
            "on_size_limit".into(),
            match c.on_size_limit {
                SizeLimitAction::Split => "split".into(),
                _ => "stop".into(),
            },
        );
    }
    if c.lines == LineFilter::ActiveOnly {
        s.insert("lines".into(), "active-only".into());
    }
    s.insert("batch".into(), c.export.batch.to_string());
    s.insert(
        "sync_interval_ms".into(),
        c.sync_interval.as_millis().to_string(),
    );
    s
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

fn sidecar_of(group: &GroupShared, s: &StreamShared, state: RecordingState) -> Sidecar {
    let cfg = &group.config;
    let elapsed = group.elapsed();
    let report = lock(&s.report).clone();
    let parts: Vec<PartMeta> = match &report {
        Some(r) => r.parts.iter().map(PartMeta::from_part).collect(),
        None => (1..=s.progress.parts().max(1) as u32)
            .map(|n| PartMeta {
                file: file_name(&crate::file_writer::part_path(&s.base, n)),
                samples: 0,
                bytes: 0,
                sha256: None,
            })
            .collect(),
    };
    let samples = s.in_files();
    let file_size = match &report {
        Some(r) => r.parts.iter().map(|p| p.bytes).sum(),
        None => s.progress.bytes(),
    };
    let secs = elapsed.as_secs_f64();
    let now = Utc::now();
    Sidecar {
        version: SIDECAR_VERSION,
        session_id: group.session.0.clone(),
        stream: s.name.clone(),
        schema: s.schema.to_owned(),
        format: cfg.format.name().to_owned(),
        labview: match &cfg.format {
            Format::Labview(l) => Some(LabviewMeta {
                block: l.block(),
                constants: l.constants().to_vec(),
            }),
            _ => None,
        },
        state,
        start_utc: group
            .start_utc
            .to_rfc3339_opts(SecondsFormat::Micros, false),
        end_utc: Some(now.to_rfc3339_opts(SecondsFormat::Micros, false)),
        duration_s: secs,
        samples,
        produced: s.produced.load(Ordering::Relaxed),
        filtered_inactive: s.filtered.load(Ordering::Relaxed),
        dropped: s.dropped(),
        average_rate_hz: if secs > 0.0 {
            samples as f64 / secs
        } else {
            0.0
        },
        file_size,
        sha256: match &parts[..] {
            [one] => one.sha256.clone(),
            _ => None,
        },
        parts,
        device: group.device_notes.over(&cfg.device),
        settings: settings_of(cfg),
        stop_reason: lock(&group.stop_reason).clone(),
        warnings: lock(&group.warnings).clone(),
    }
}

fn write_sidecar(
    group: &GroupShared,
    s: &StreamShared,
    state: RecordingState,
) -> Result<(), SidecarError> {
    sidecar_of(group, s, state).write_atomic(&s.sidecar)
}

fn warn(group: &GroupShared, msg: String) {
    let mut w = lock(&group.warnings);
    if !w.contains(&msg) {
        w.push(msg);
    }
}

/// Monitor thread: limits, disk checks, sidecar refresh, then finalisation.
fn monitor(group: Arc<GroupShared>, workers: Vec<JoinHandle<()>>) -> RecordingSummary {
    let cfg = &group.config;
    let step = Duration::from_millis(20).min(cfg.status_interval);
    let mut last_refresh = Instant::now();
    let mut last_bytes = 0u64;
    let mut last_check = Instant::now();
    let mut warned_ttf = false;
    while !group.stop.load(Ordering::Acquire) && !workers.iter().all(|w| w.is_finished()) {
        std::thread::sleep(step);
        if let Some(limit) = cfg.duration_limit {
            if group.t0.elapsed() >= limit {
                group.request_stop("duration limit");
                break;
            }
        }
        if last_refresh.elapsed() >= cfg.status_interval {
            let bytes: u64 = group.streams.iter().map(|s| s.progress.bytes()).sum();
            let dt = last_check.elapsed().as_secs_f64();
            let rate = (bytes.saturating_sub(last_bytes)) as f64 / dt.max(1e-3);
            last_bytes = bytes;
            last_check = Instant::now();
            if let Ok(free) = disk::free_bytes(&group.day_dir) {
                group.free.store(free, Ordering::Relaxed);
                if free < cfg.min_free_bytes {
                    warn(
                        &group,
                        format!("free disk space fell to {free} bytes; recording stopped"),
                    );
                    group.request_stop("disk nearly full");
                    break;
                }
                let usable = free - cfg.min_free_bytes;
                if let Some(ttf) = disk::time_to_full(usable, rate) {
                    if ttf < cfg.warn_time_to_full && !warned_ttf {
                        warned_ttf = true;
                        warn(
                            &group,
                            format!(
                                "disk projected full in {:.0} s at {:.0} B/s",
                                ttf.as_secs_f64(),
                                rate
                            ),
                        );
                    }
                }
            }
            for s in &group.streams {
                // A failed refresh is retried at the next interval; the data files are
                // what matters.
                let _ = write_sidecar(&group, s, RecordingState::Recording);
            }
            last_refresh = Instant::now();
        }
    }
    group.request_stop("stopped");
    for w in workers {
        let _ = w.join();
    }
    *lock(&group.ended) = Some(group.t0.elapsed());
    let failed = group.streams.iter().any(|s| {
        matches!(
            lock(&s.report).as_ref().and_then(|r| r.stop.clone()),
            Some(WriterStop::Io { .. })
        )
    });
    let (gstate, fstate) = if failed {
        (GroupState::Failed, RecordingState::Failed)
    } else {
        (GroupState::Finished, RecordingState::Finished)
    };
    let mut sidecar_errors = Vec::new();
    for s in &group.streams {
        if let Err(e) = write_sidecar(&group, s, fstate) {
            sidecar_errors.push(e.to_string());
        }
    }
    for e in sidecar_errors {
        warn(&group, format!("sidecar not finalised: {e}"));
    }
    *lock(&group.state) = gstate;
    summary(&group)
}

/// What a finished recording produced.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingSummary {
    /// Final status (state, duration, counts per stream).
    pub status: GroupStatus,
    /// Every data file, per stream, in order.
    pub files: Vec<Vec<PathBuf>>,
}

fn status(group: &GroupShared) -> GroupStatus {
    let elapsed = group.elapsed().as_secs_f64();
    let free = group.free.load(Ordering::Relaxed);
    let streams: Vec<StreamStatus> = group
        .streams
        .iter()
        .map(|s| {
            let samples = s.in_files();
            StreamStatus {
                name: s.name.clone(),
                schema: s.schema,
                file: s.progress.current_file(),
                sidecar: s.sidecar.clone(),
                parts: s.progress.parts(),
                bytes: s.progress.bytes(),
                produced: s.produced.load(Ordering::Relaxed),
                samples,
                rate_hz: if elapsed > 0.0 {
                    samples as f64 / elapsed
                } else {
                    0.0
                },
                filtered_inactive: s.filtered.load(Ordering::Relaxed),
                dropped: s.dropped(),
            }
        })
        .collect();
    let bytes: u64 = streams.iter().map(|s| s.bytes).sum();
    let rate = if elapsed > 0.0 {
        bytes as f64 / elapsed
    } else {
        0.0
    };
    GroupStatus {
        session_id: group.session.clone(),
        state: *lock(&group.state),
        duration_s: elapsed,
        free_disk_bytes: free,
        time_to_full_s: disk::time_to_full(free.saturating_sub(group.config.min_free_bytes), rate)
            .map(|d| d.as_secs_f64()),
        stop_reason: lock(&group.stop_reason).clone(),
        warnings: lock(&group.warnings).clone(),
        streams,
    }
}

fn summary(group: &GroupShared) -> RecordingSummary {
    RecordingSummary {
        status: status(group),
        files: group
            .streams
            .iter()
            .map(|s| match &*lock(&s.report) {
                Some(r) => r.parts.iter().map(|p| p.path.clone()).collect(),
                None => vec![s.base.clone()],
            })
            .collect(),
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
            .field("session", &self.group.session)
            .finish()
    }
}

impl Recording {
    /// The session id.
    pub fn session_id(&self) -> &SessionId {
        &self.group.session
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
