//! One remotely recorded stream: its recording, its duplicate filter and sequence
//! journal, its counters and the room it has for more samples.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use std::time::Duration;

use tokio::sync::Notify;

use crate::capture::ring::{RingReader, RingWriter, ring};
use crate::check::recover::recover;
use crate::format::csv::CsvOptions;
use crate::format::encoder::Format;
use crate::format::labview::LabviewLayout;
use crate::format::schema::{EfieldSample, ImuRow, StagePosition};
use crate::recording::config::{Prefix, RecordingId, SegmentMarking};
use crate::recording::group::{Recording, RecordingGroup};
use crate::recording::status::{GroupState, GroupStatus};
use crate::remote::accounting::{ServerStreamCounters, ServerStreamCounts};
use crate::remote::sample::WireSample;
use crate::remote::server::arrivals::ArrivalLog;
use crate::remote::server::config::{OpenStreamError, RecorderServerConfig};
use crate::remote::server::journal::{Journal, JournalContents, journal_path};
use crate::remote::wire::{RunId, StartRequest, StreamKey, WireFormat, WireSchema};
use crate::store::sidecar::{RecordingState, Sidecar, sidecar_path};
use crate::sync::lock_std as lock;

/// Everything known about one recorded stream: where, how many, what was lost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamReport {
    /// Device id.
    pub device: String,
    /// Stream name.
    pub stream: String,
    /// Source run (hex).
    pub run: String,
    /// Schema name.
    pub schema: &'static str,
    /// Data files.
    pub files: Vec<PathBuf>,
    /// Sidecar (`.meta.json`).
    pub sidecar: PathBuf,
    /// True once the recording is finalised.
    pub finished: bool,
    /// First sequence number this recording needed (resume point).
    pub first_seq: u64,
    /// Samples confirmed on disk up to (excluding) this sequence number.
    pub committed_next_seq: u64,
    /// Network-side counters.
    pub counts: ServerStreamCounts,
    /// Samples in the data files.
    pub written: u64,
    /// Samples the recorder lost (ring, exporter, writer).
    pub recorder_dropped: u64,
    /// Samples received after the recording had stopped by itself (limit or error).
    pub after_stop: u64,
    /// The recorder's own status.
    pub status: GroupStatus,
}

impl StreamReport {
    /// Unique samples received = written + lost inside the recorder + discarded after
    /// a stop. True when these books balance.
    pub fn balanced(&self) -> bool {
        self.counts.pushed == self.written + self.recorder_dropped
    }
}

/// One recorded stream, whatever its schema.
pub(crate) trait StreamSink: Send + Sync {
    fn run(&self) -> RunId;
    fn schema(&self) -> WireSchema;
    /// Records samples `(seq, body)` in the order given (one or a batch).
    fn push_many(&self, samples: &mut dyn Iterator<Item = (u64, &[u8])>);
    /// The gateway did not send `count` samples from `first_seq` on, by request.
    fn filtered(&self, first_seq: u64, count: u64);
    fn count_malformed(&self);
    fn has_room(&self) -> bool;
    /// Notified (`notify_waiters`) whenever [`StreamSink::has_room`] may have changed:
    /// samples written or lost in the recorder, its state changed, the stream stopped.
    fn room_changed(&self) -> &Notify;
    fn committed(&self) -> u64;
    fn report(&self) -> StreamReport;
    fn stop(&self) -> StreamReport;
    fn stall(&self);
    /// Lays the device's own description over the recording's device info.
    fn note_device(&self, entries: std::collections::BTreeMap<String, String>);
    /// A reader of the stream's ring for live views, and the device's nominal rate.
    fn live(&self) -> (StreamRing, f64);
}

/// A reader of a remotely recorded stream's ring, whatever its schema: what a live view
/// (the dashboard) reads without slowing the recording.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StreamRing {
    /// XIAO IMU rows.
    Imu(RingReader<ImuRow>),
    /// E-field samples.
    Efield(RingReader<EfieldSample>),
    /// Stage positions.
    Stage(RingReader<StagePosition>),
}

impl From<RingReader<ImuRow>> for StreamRing {
    fn from(r: RingReader<ImuRow>) -> Self {
        StreamRing::Imu(r)
    }
}

impl From<RingReader<EfieldSample>> for StreamRing {
    fn from(r: RingReader<EfieldSample>) -> Self {
        StreamRing::Efield(r)
    }
}

impl From<RingReader<StagePosition>> for StreamRing {
    fn from(r: RingReader<StagePosition>) -> Self {
        StreamRing::Stage(r)
    }
}

/// The waker a stream's recording wakes when samples leave its buffers: it notifies
/// every task waiting for room on that stream.
#[derive(Debug, Default)]
struct RoomSignal(Notify);

impl Wake for RoomSignal {
    fn wake(self: Arc<Self>) {
        self.0.notify_waiters();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.notify_waiters();
    }
}

struct Ingest<S> {
    writer: RingWriter<S>,
    next_seq: u64,
    journal: Journal,
    journal_error: bool,
    /// The latest filtered range: `(rows pushed before it, sequence number after it)`.
    /// Once those rows are on disk, everything below its end is committed.
    filtered_to: Option<(u64, u64)>,
}

struct DeviceStream<S: WireSample> {
    key: StreamKey,
    run: RunId,
    first_seq: u64,
    ingest: Mutex<Ingest<S>>,
    recording: Mutex<Option<Recording>>,
    final_report: Mutex<Option<StreamReport>>,
    counters: ServerStreamCounters,
    after_stop: AtomicU64,
    written_cache: AtomicU64,
    backlog_limit: u64,
    files: PathBuf,
    sidecar: PathBuf,
    arrivals: Option<Arc<ArrivalLog>>,
    room: Arc<RoomSignal>,
    live: StreamRing,
    rate_hz: f64,
}

fn check_name(n: &str) -> Result<(), OpenStreamError> {
    Prefix::try_from(n)
        .map(|_| ())
        .map_err(|_| OpenStreamError::BadName(n.to_owned()))
}

/// The sequence number after the last sample of run `run` of `key` already in files
/// under `dir` (recovering recordings a killed server left unfinished).
fn resume_point(dir: &Path, key: &StreamKey, run: RunId) -> Option<u64> {
    let mut best: Option<u64> = None;
    let days = std::fs::read_dir(dir).ok()?;
    for day in days.flatten() {
        let Ok(files) = std::fs::read_dir(day.path()) else {
            continue;
        };
        for f in files.flatten() {
            let p = f.path();
            if p.extension().is_none_or(|e| e != "seq") {
                continue;
            }
            let Some(j) = JournalContents::read(&p) else {
                continue;
            };
            if j.run != run || j.stream != key.stream {
                continue;
            }
            let csv = p.with_extension("csv");
            let rows = match Sidecar::read(&sidecar_path(&csv)) {
                Ok(sc) if sc.state == RecordingState::Recording => match recover(&csv) {
                    Ok(r) => {
                        tracing::info!(file = %csv.display(), samples = r.samples, "recovered an interrupted recording");
                        r.samples
                    }
                    Err(e) => {
                        tracing::warn!(file = %csv.display(), error = %e, "cannot recover");
                        continue;
                    }
                },
                Ok(sc) => sc.samples,
                Err(_) => continue,
            };
            if let Some(n) = j.next_after(rows) {
                best = Some(best.map_or(n, |b| b.max(n)));
            }
        }
    }
    best
}

impl<S: WireSample> DeviceStream<S>
where
    RingReader<S>: Into<StreamRing>,
{
    fn open(
        config: &RecorderServerConfig,
        req: &StartRequest,
    ) -> Result<Arc<dyn StreamSink>, OpenStreamError> {
        let h = &req.header;
        check_name(&h.key.device)?;
        check_name(&h.key.stream)?;
        let dir = config.out_dir.join(&h.key.device);
        // Where this server's files of the run end, else the run's start; and never
        // below what the gateway still holds (the rest is on another server).
        let first_seq = resume_point(&dir, &h.key, h.run)
            .unwrap_or(h.anchor_seq)
            .max(req.held_from.unwrap_or(0));
        let prefix = if req.prefix.is_empty() {
            h.key.stream.as_str()
        } else {
            req.prefix.as_str()
        };
        let prefix = Prefix::try_from(prefix).map_err(|e| OpenStreamError::BadName(e.0))?;
        let mut rc = config.recording.clone();
        rc.out_dir = dir;
        rc.prefix = prefix;
        rc.segments = SegmentMarking::FromSamples;
        rc.format = match (&config.format, req.format) {
            (Some(f), _) => f.clone(),
            (None, WireFormat::Labview) => Format::Labview(LabviewLayout::default()),
            (None, _) => Format::Csv(CsvOptions::default()),
        };
        // A columnar file counts a sample as written once its row group or chunk is
        // synced: the backlog (and the ring behind it) must hold a sync interval of
        // samples at the stream's rate, or the server would stall the gateway until
        // each sync.
        let backlog_limit = if rc.format.is_text() {
            config.backlog_limit
        } else {
            let interval =
                (f64::from(h.rate_hz) * rc.sync_interval.as_secs_f64() * 2.0).min(1e7) as u64;
            config.backlog_limit.max(interval)
        };
        let ring_capacity = config
            .ring_capacity
            .max(usize::try_from(backlog_limit.saturating_mul(2)).unwrap_or(usize::MAX));
        rc.duration_limit =
            (req.duration_limit_ms > 0).then(|| Duration::from_millis(req.duration_limit_ms));
        rc.size_limit = (req.size_limit > 0).then_some(req.size_limit);
        let d = &mut rc.device;
        d.insert("id".into(), h.key.device.clone());
        d.insert("stream".into(), h.key.stream.clone());
        d.insert("run".into(), format!("{:016x}", h.run.0));
        d.insert("transport".into(), "kwik".into());
        d.insert("rate_hz".into(), h.rate_hz.to_string());
        d.insert("anchor_seq".into(), h.anchor_seq.to_string());
        d.insert("anchor_device_time_us".into(), h.device_time_us.to_string());
        d.insert("anchor_host_utc_us".into(), h.host_utc_us.to_string());
        rc.settings
            .insert("first_seq".into(), first_seq.to_string());
        let (writer, reader) = ring::<S>(ring_capacity);
        let live: StreamRing = reader.clone().into();
        let room = Arc::new(RoomSignal::default());
        let mut group = RecordingGroup::new(rc);
        group.add_stream(&h.key.stream, reader);
        group.wake_on_progress(Waker::from(room.clone()));
        let recording = group.start()?;
        let st = recording.status();
        let (files, sidecar) = st
            .streams
            .first()
            .map(|s| (s.file.clone(), s.sidecar.clone()))
            .unwrap_or_default();
        let jpath = journal_path(&files);
        let journal = Journal::create(&jpath, h.run, &h.key.stream).map_err(|source| {
            OpenStreamError::Journal {
                path: jpath.clone(),
                source,
            }
        })?;
        tracing::info!(stream = %h.key, file = %files.display(), first_seq, "recording");
        Ok(Arc::new(DeviceStream::<S> {
            key: h.key.clone(),
            run: h.run,
            first_seq,
            ingest: Mutex::new(Ingest {
                writer,
                next_seq: first_seq,
                journal,
                journal_error: false,
                filtered_to: None,
            }),
            recording: Mutex::new(Some(recording)),
            final_report: Mutex::new(None),
            counters: ServerStreamCounters::default(),
            after_stop: AtomicU64::new(0),
            written_cache: AtomicU64::new(0),
            backlog_limit,
            files,
            sidecar,
            arrivals: config.arrivals.clone(),
            room,
            live,
            rate_hz: f64::from(h.rate_hz),
        }))
    }

    fn status(&self) -> Option<GroupStatus> {
        lock(&self.recording).as_ref().map(Recording::status)
    }

    fn build_report(
        &self,
        status: GroupStatus,
        files: Vec<PathBuf>,
        finished: bool,
    ) -> StreamReport {
        let s = status.streams.first();
        let written = s.map_or(0, |s| s.samples);
        StreamReport {
            device: self.key.device.clone(),
            stream: self.key.stream.clone(),
            run: format!("{:016x}", self.run.0),
            schema: S::NAME,
            files,
            sidecar: self.sidecar.clone(),
            finished,
            first_seq: self.first_seq,
            committed_next_seq: self.committed_from(written),
            counts: self.counters.snapshot(),
            written,
            recorder_dropped: s.map_or(0, |s| s.dropped.recorder()),
            after_stop: self.after_stop.load(Ordering::Relaxed),
            status,
        }
    }

    fn committed_from(&self, written: u64) -> u64 {
        let ing = lock(&self.ingest);
        let rows = if written == 0 {
            self.first_seq
        } else {
            ing.journal
                .map()
                .seq_of(written - 1)
                .map_or(self.first_seq, |s| s + 1)
        };
        // A filtered range needs no row: it is done once the rows before it are.
        match ing.filtered_to {
            Some((before, end)) if written >= before => rows.max(end),
            _ => rows,
        }
    }
}

impl<S: WireSample> StreamSink for DeviceStream<S>
where
    RingReader<S>: Into<StreamRing>,
{
    fn live(&self) -> (StreamRing, f64) {
        (self.live.clone(), self.rate_hz)
    }

    fn run(&self) -> RunId {
        self.run
    }

    fn schema(&self) -> WireSchema {
        S::WIRE
    }

    fn push_many(&self, samples: &mut dyn Iterator<Item = (u64, &[u8])>) {
        // Decoded before the lock is taken; the lock is then taken once per batch.
        let mut decoded = Vec::with_capacity(samples.size_hint().0);
        for (seq, body) in samples {
            if let Some(log) = &self.arrivals {
                log.record(seq);
            }
            self.counters.received.fetch_add(1, Ordering::Relaxed);
            match S::decode_body(seq, body) {
                Ok(s) => decoded.push((seq, s)),
                Err(e) => {
                    tracing::debug!(stream = %self.key, seq, error = %e, "malformed sample skipped");
                    self.count_malformed();
                }
            }
        }
        if decoded.is_empty() {
            return;
        }
        let stopped = lock(&self.final_report).is_some();
        let mut ing = lock(&self.ingest);
        for (seq, sample) in decoded {
            if seq < ing.next_seq {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if stopped {
                self.after_stop.fetch_add(1, Ordering::Relaxed);
                ing.next_seq = seq + 1;
                continue;
            }
            if seq > ing.next_seq {
                let gap = seq - ing.next_seq;
                self.counters.missing.fetch_add(gap, Ordering::Relaxed);
                // Never received: the sidecar counts them as lost before the recorder.
                ing.writer.count_lost_upstream(gap);
            }
            if ing.journal.push(seq).is_err() && !ing.journal_error {
                ing.journal_error = true;
                tracing::warn!(stream = %self.key, "sequence journal write failed; resume after a crash may duplicate samples");
            }
            ing.writer.push(sample);
            ing.next_seq = seq + 1;
            self.counters.pushed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn filtered(&self, first_seq: u64, count: u64) {
        let end = first_seq.saturating_add(count);
        let mut ing = lock(&self.ingest);
        if end <= ing.next_seq {
            return; // sent again after a reconnect: already counted
        }
        let from = first_seq.max(ing.next_seq);
        if from > ing.next_seq {
            let gap = from - ing.next_seq;
            self.counters.missing.fetch_add(gap, Ordering::Relaxed);
            ing.writer.count_lost_upstream(gap);
        }
        self.counters
            .filtered
            .fetch_add(end - from, Ordering::Relaxed);
        ing.next_seq = end;
        ing.filtered_to = Some((ing.journal.map().rows(), end));
        drop(ing);
        // The sidecar says it too: these samples are missing from the file by request.
        let total = self.counters.filtered.load(Ordering::Relaxed);
        if let Some(rec) = lock(&self.recording).as_ref() {
            rec.device_notes()
                .set_all([("filtered_by_request".to_owned(), total.to_string())]);
        }
    }

    fn count_malformed(&self) {
        self.counters.malformed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("kwik_record_malformed_total", "device" => self.key.device.clone())
            .increment(1);
    }

    fn has_room(&self) -> bool {
        let pushed = self.counters.pushed.load(Ordering::Relaxed);
        let cached = self.written_cache.load(Ordering::Relaxed);
        if pushed.saturating_sub(cached) <= self.backlog_limit / 2 {
            return true;
        }
        let Some(st) = self.status() else {
            return true; // stopped: samples are counted as after-stop, never buffered
        };
        if st.state != GroupState::Recording {
            return true;
        }
        let done = st
            .streams
            .first()
            .map_or(0, |s| s.samples + s.dropped.recorder());
        self.written_cache.store(done, Ordering::Relaxed);
        pushed.saturating_sub(done) <= self.backlog_limit
    }

    fn room_changed(&self) -> &Notify {
        &self.room.0
    }

    fn committed(&self) -> u64 {
        if let Some(r) = lock(&self.final_report).as_ref() {
            return r.committed_next_seq.max(lock(&self.ingest).next_seq);
        }
        let Some(st) = self.status() else {
            return self.first_seq;
        };
        if st.state != GroupState::Recording {
            // Stopped by a limit or an error: what arrives now is counted, not stored.
            return lock(&self.ingest).next_seq;
        }
        let written = st.streams.first().map_or(0, |s| s.samples);
        self.committed_from(written)
    }

    fn report(&self) -> StreamReport {
        if let Some(r) = lock(&self.final_report).as_ref() {
            let mut r = r.clone();
            r.counts = self.counters.snapshot();
            r.after_stop = self.after_stop.load(Ordering::Relaxed);
            return r;
        }
        match self.status() {
            Some(st) => self.build_report(st, vec![self.files.clone()], false),
            None => self.stop(),
        }
    }

    fn stop(&self) -> StreamReport {
        let rec = lock(&self.recording).take();
        // Without a recording there is always room (later samples are counted as
        // after-stop): let a reader waiting for room go on.
        self.room.0.notify_waiters();
        if let Some(rec) = rec {
            let summary = rec.stop();
            let files = summary.files.first().cloned().unwrap_or_default();
            let report = self.build_report(summary.status, files, true);
            *lock(&self.final_report) = Some(report);
        }
        self.report_final()
    }

    fn stall(&self) {
        self.counters.stalls.fetch_add(1, Ordering::Relaxed);
    }

    fn note_device(&self, entries: std::collections::BTreeMap<String, String>) {
        if let Some(rec) = lock(&self.recording).as_ref() {
            rec.device_notes().set_all(entries);
        }
    }
}

impl<S: WireSample> DeviceStream<S>
where
    RingReader<S>: Into<StreamRing>,
{
    fn report_final(&self) -> StreamReport {
        let mut r = lock(&self.final_report)
            .clone()
            .unwrap_or_else(|| self.build_report(empty_status(), vec![], true));
        r.counts = self.counters.snapshot();
        r.after_stop = self.after_stop.load(Ordering::Relaxed);
        r
    }
}

fn empty_status() -> GroupStatus {
    GroupStatus {
        session_id: RecordingId(String::new()),
        state: GroupState::Finished,
        duration_s: 0.0,
        free_disk_bytes: 0,
        time_to_full_s: None,
        stop_reason: None,
        warnings: vec![],
        streams: vec![],
    }
}

pub(crate) fn open_sink(
    config: &RecorderServerConfig,
    req: &StartRequest,
) -> Result<Arc<dyn StreamSink>, OpenStreamError> {
    match req.header.schema {
        WireSchema::Imu => DeviceStream::<ImuRow>::open(config, req),
        WireSchema::Efield => DeviceStream::<EfieldSample>::open(config, req),
        WireSchema::Stage => DeviceStream::<StagePosition>::open(config, req),
    }
}
