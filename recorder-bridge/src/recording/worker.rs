//! One stream of a recording group: its files and exporter are created when the group
//! starts, then a worker thread moves samples ring → segment stamp/filter → exporter.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Instant;

use crate::capture::ring::RingReader;
use crate::format::compat::HeaderFacts;
use crate::format::encoder::{Encoder, EncoderError, Format};
use crate::format::schema::Schema;
use crate::format::segment::LineState;
use crate::recording::config::{LineFilter, RecordingConfig, SegmentMarking, StartError};
use crate::recording::shared::{GroupShared, StreamShared};
use crate::store::exporter::{BatchWriter, Exporter, WriteOutcome};
use crate::store::file_writer::{FileConfig, FileProgress, FileReport, FileWriter, WriterStop};
use crate::store::mcap::{McapConfig, McapWriter};
use crate::store::parquet::{ParquetConfig, ParquetWriter};
use crate::sync::lock_std as lock;

/// A stream added to a group that has not started yet, whatever its schema.
pub(crate) trait PendingStream: Send {
    fn name(&self) -> &str;
    fn check(&self, format: &Format) -> Result<(), EncoderError>;
    fn launch(
        self: Box<Self>,
        group: &GroupLaunch,
        base: PathBuf,
    ) -> Result<(Arc<StreamShared>, StreamRun), StartError>;
}

/// What runs a started stream on its worker thread.
pub(crate) type StreamRun = Box<dyn FnOnce(Arc<GroupShared>) + Send>;

/// What every stream of a starting group is created with.
pub(crate) struct GroupLaunch {
    pub(crate) config: RecordingConfig,
    pub(crate) comments: Vec<String>,
    /// What headers that state facts (the XIAO compatibility header) say.
    pub(crate) facts: HeaderFacts,
    /// The session id, for files that carry metadata (Parquet, MCAP).
    pub(crate) session_id: String,
    /// The group's t0 in UTC: RFC 3339, and µs since the Unix epoch.
    pub(crate) start_utc: String,
    pub(crate) start_utc_us: i64,
    /// Device and settings, as key-value metadata (JSON values).
    pub(crate) metadata: Vec<(String, String)>,
    pub(crate) progress: Option<Waker>,
}

/// A stream of schema `S` waiting for the group to start.
pub(crate) struct Pending<S: Schema> {
    pub(crate) name: String,
    pub(crate) reader: RingReader<S>,
}

impl<S: Schema> PendingStream for Pending<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self, format: &Format) -> Result<(), EncoderError> {
        if format.is_text() {
            Encoder::<S>::new(format.for_schema(S::NAME)).map(|_| ())
        } else {
            Ok(())
        }
    }

    fn launch(
        self: Box<Self>,
        group: &GroupLaunch,
        base: PathBuf,
    ) -> Result<(Arc<StreamShared>, StreamRun), StartError> {
        let cfg = &group.config;
        let format = cfg.format.for_schema(S::NAME);
        let mut comments = group.comments.clone();
        comments.insert(1, format!("schema={} stream={}", S::NAME, self.name));
        let data = base.with_extension(format.extension());
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
        let data_file = |source| StartError::DataFile {
            path: data.clone(),
            source,
        };
        let writer = match &format {
            Format::Parquet(options) => {
                let mut metadata = vec![
                    ("kwik.session_id".to_owned(), group.session_id.clone()),
                    ("kwik.stream".to_owned(), self.name.clone()),
                    ("kwik.schema".to_owned(), S::NAME.to_owned()),
                    ("kwik.start_utc".to_owned(), group.start_utc.clone()),
                ];
                metadata.extend(group.metadata.iter().cloned());
                let pq = ParquetConfig {
                    path: data.clone(),
                    sync_interval: cfg.sync_interval,
                    start_utc_us: group.start_utc_us,
                    metadata,
                    options: options.clone(),
                    // The group refuses a size limit that would stop a columnar file.
                    size_limit: cfg.size_limit,
                };
                StreamWriter::Parquet(ParquetWriter::create(pq, dropped).map_err(data_file)?)
            }
            Format::Mcap(options) => {
                let mut metadata = vec![
                    ("session_id".to_owned(), group.session_id.clone()),
                    ("stream".to_owned(), self.name.clone()),
                    ("schema".to_owned(), S::NAME.to_owned()),
                    ("start_utc".to_owned(), group.start_utc.clone()),
                ];
                metadata.extend(
                    group
                        .metadata
                        .iter()
                        .map(|(k, v)| (k.trim_start_matches("kwik.").to_owned(), v.clone())),
                );
                let mc = McapConfig {
                    path: data.clone(),
                    sync_interval: cfg.sync_interval,
                    start_utc_us: group.start_utc_us,
                    stream: self.name.clone(),
                    metadata,
                    options: options.clone(),
                    // The group refuses a size limit that would stop a columnar file.
                    size_limit: cfg.size_limit,
                };
                StreamWriter::Mcap(McapWriter::create(mc, dropped).map_err(data_file)?)
            }
            _ => {
                let encoder = Encoder::<S>::new(format.clone())?.with_facts(group.facts.clone());
                let file_cfg = FileConfig {
                    path: data.clone(),
                    comments,
                    size_limit: cfg.size_limit,
                    on_size_limit: cfg.on_size_limit,
                    sync_interval: cfg.sync_interval,
                    fault: cfg.write_fault,
                };
                StreamWriter::Text(
                    FileWriter::create(encoder, file_cfg, dropped).map_err(data_file)?,
                )
            }
        };
        let progress = writer.progress();
        if let Some(w) = &group.progress {
            progress.set_waker(w.clone());
        }
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

/// The data-file writer of one stream: text (CSV, LabVIEW), Parquet or MCAP. One per stream,
/// moved once to the writer thread: the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum StreamWriter<S: Schema> {
    Text(FileWriter<S>),
    Parquet(ParquetWriter<S>),
    Mcap(McapWriter<S>),
}

impl<S: Schema> StreamWriter<S> {
    fn progress(&self) -> Arc<FileProgress> {
        match self {
            StreamWriter::Text(w) => w.progress(),
            StreamWriter::Parquet(w) => w.progress(),
            StreamWriter::Mcap(w) => w.progress(),
        }
    }
}

impl<S: Schema> BatchWriter<S> for StreamWriter<S> {
    type Report = FileReport;

    fn write_batch(&mut self, batch: &[S]) -> WriteOutcome {
        match self {
            StreamWriter::Text(w) => w.write_batch(batch),
            StreamWriter::Parquet(w) => w.write_batch(batch),
            StreamWriter::Mcap(w) => w.write_batch(batch),
        }
    }

    fn tick(&mut self) -> WriteOutcome {
        match self {
            StreamWriter::Text(w) => w.tick(),
            StreamWriter::Parquet(w) => w.tick(),
            StreamWriter::Mcap(w) => w.tick(),
        }
    }

    fn finish(self) -> FileReport {
        match self {
            StreamWriter::Text(w) => w.finish(),
            StreamWriter::Parquet(w) => w.finish(),
            StreamWriter::Mcap(w) => w.finish(),
        }
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
    // Samples lost inside the recorder (ring, exporter, writer) when last looked at: a
    // change frees room as much as a write does.
    let mut lost_seen = 0u64;
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
        let e = stream.export.snapshot();
        let lost = stream.ring_dropped.load(Ordering::Relaxed) + e.dropped + e.discarded;
        if lost != lost_seen {
            lost_seen = lost;
            group.wake_progress();
        }
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
