//! The recorder server: accepts KWIK sessions from gateways and records every sensor
//! stream to disk, one folder per device.
//!
//! Per stream: KWIK stream → [`MessageDecoder`] → sample decode → duplicate filter (by
//! sequence number) → ring buffer → [`Recording`] (exporter, writer thread, CSV and
//! sidecar). When the recorder's buffers hold more than a bound, the stream is not read
//! until they drain, so KWIK withholds credit and the gateway spools instead of the
//! server dropping. Every sample is counted at every stage ([`StreamReport`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::codec::{CsvOptions, Format, LabviewLayout};
use crate::recorder::{
    GroupStatus, Prefix, Recording, RecordingConfig, RecordingGroup, SegmentMarking, StartError,
};
use crate::remote::accounting::{ServerStreamCounters, ServerStreamCounts};
use crate::remote::arrivals::ArrivalLog;
use crate::remote::journal::{Journal, JournalContents, journal_path};
use crate::remote::sample::WireSample;
use crate::remote::wire::{
    Message, MessageDecoder, RunId, StartRequest, StreamHeader, StreamKey, WIRE_VERSION,
    WireFormat, WireSchema,
};
use crate::ring::{RingWriter, ring};
use crate::schema::{EfieldSample, ImuRow, StagePosition};
use crate::sidecar::{RecordingState, Sidecar, sidecar_path};

/// Settings of a [`RecorderServer`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Root folder: each device records into `<out_dir>/<device>/YYYY-MM-DD/`.
    pub out_dir: PathBuf,
    /// Template for every recording (export batch, sync interval, free-disk reserve).
    /// `out_dir`, `prefix`, `format`, limits and device info are set per stream.
    pub recording: RecordingConfig,
    /// How often the server confirms samples on disk to gateways (default 100 ms).
    pub ack_interval: Duration,
    /// Samples a stream may have in the recorder's buffers (not yet in the file) before
    /// the server stops reading it, withholding credit (default 4096; keep it below the
    /// exporter batch so the exporter never overflows).
    pub backlog_limit: u64,
    /// Ring capacity per stream in samples (default 16384, above `backlog_limit`).
    pub ring_capacity: usize,
    /// Records when each sample first arrives (latency measurements; default none).
    pub arrivals: Option<Arc<ArrivalLog>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            out_dir: PathBuf::from("recordings"),
            recording: RecordingConfig::default(),
            ack_interval: Duration::from_millis(100),
            backlog_limit: 4096,
            ring_capacity: 16384,
            arrivals: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The KWIK endpoint could not be created (address in use, TLS configuration).
    #[error("cannot listen: {0}")]
    Endpoint(#[from] kwik::EndpointError),
    /// The output folder is not usable.
    #[error("cannot use output folder {path}: {source}")]
    OutputDir {
        /// The folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Why a stream could not be opened for recording.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStreamError {
    /// A device or stream name is not usable as a folder or file name.
    #[error("name {0:?} is not usable; use 1-64 characters from A-Z a-z 0-9 - _ .")]
    BadName(String),
    /// The recording could not start (disk, format, folder).
    #[error(transparent)]
    Start(#[from] StartError),
    /// The stream is already recorded with another schema.
    #[error("stream {0} is already recorded with another schema")]
    SchemaMismatch(StreamKey),
    /// The sequence journal could not be created.
    #[error("cannot create the sequence journal {path}: {source}")]
    Journal {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

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
trait StreamSink: Send + Sync {
    fn run(&self) -> RunId;
    fn schema(&self) -> WireSchema;
    fn push(&self, seq: u64, body: &[u8]);
    fn count_malformed(&self);
    fn has_room(&self) -> bool;
    fn committed(&self) -> u64;
    fn report(&self) -> StreamReport;
    fn stop(&self) -> StreamReport;
    fn stall(&self);
    /// Lays the device's own description over the recording's device info.
    fn note_device(&self, entries: std::collections::BTreeMap<String, String>);
}

struct Ingest<S> {
    writer: RingWriter<S>,
    next_seq: u64,
    journal: Journal,
    journal_error: bool,
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
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
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
                Ok(sc) if sc.state == RecordingState::Recording => {
                    match crate::recover::recover(&csv) {
                        Ok(r) => {
                            tracing::info!(file = %csv.display(), samples = r.samples, "recovered an interrupted recording");
                            r.samples
                        }
                        Err(e) => {
                            tracing::warn!(file = %csv.display(), error = %e, "cannot recover");
                            continue;
                        }
                    }
                }
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

impl<S: WireSample> DeviceStream<S> {
    fn open(
        config: &ServerConfig,
        req: &StartRequest,
    ) -> Result<Arc<dyn StreamSink>, OpenStreamError> {
        let h = &req.header;
        check_name(&h.key.device)?;
        check_name(&h.key.stream)?;
        let dir = config.out_dir.join(&h.key.device);
        let first_seq = resume_point(&dir, &h.key, h.run).unwrap_or(h.anchor_seq);
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
        rc.format = match req.format {
            WireFormat::Labview => Format::Labview(LabviewLayout::default()),
            _ => Format::Csv(CsvOptions::default()),
        };
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
        let (writer, reader) = ring::<S>(config.ring_capacity);
        let mut group = RecordingGroup::new(rc);
        group.add_stream(&h.key.stream, reader);
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
            }),
            recording: Mutex::new(Some(recording)),
            final_report: Mutex::new(None),
            counters: ServerStreamCounters::default(),
            after_stop: AtomicU64::new(0),
            written_cache: AtomicU64::new(0),
            backlog_limit: config.backlog_limit,
            files,
            sidecar,
            arrivals: config.arrivals.clone(),
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
        if written == 0 {
            return self.first_seq;
        }
        ing.journal
            .map()
            .seq_of(written - 1)
            .map_or(self.first_seq, |s| s + 1)
    }
}

impl<S: WireSample> StreamSink for DeviceStream<S> {
    fn run(&self) -> RunId {
        self.run
    }

    fn schema(&self) -> WireSchema {
        S::WIRE
    }

    fn push(&self, seq: u64, body: &[u8]) {
        if let Some(log) = &self.arrivals {
            log.record(seq);
        }
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let sample = match S::decode_body(seq, body) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(stream = %self.key, seq, error = %e, "malformed sample skipped");
                self.count_malformed();
                return;
            }
        };
        let mut ing = lock(&self.ingest);
        if seq < ing.next_seq {
            self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if lock(&self.final_report).is_some() {
            self.after_stop.fetch_add(1, Ordering::Relaxed);
            ing.next_seq = seq + 1;
            return;
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
        if st.state != crate::recorder::GroupState::Recording {
            return true;
        }
        let done = st
            .streams
            .first()
            .map_or(0, |s| s.samples + s.dropped.recorder());
        self.written_cache.store(done, Ordering::Relaxed);
        pushed.saturating_sub(done) <= self.backlog_limit
    }

    fn committed(&self) -> u64 {
        if let Some(r) = lock(&self.final_report).as_ref() {
            return r.committed_next_seq.max(lock(&self.ingest).next_seq);
        }
        let Some(st) = self.status() else {
            return self.first_seq;
        };
        if st.state != crate::recorder::GroupState::Recording {
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

impl<S: WireSample> DeviceStream<S> {
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
        session_id: crate::recorder::SessionId(String::new()),
        state: crate::recorder::GroupState::Finished,
        duration_s: 0.0,
        free_disk_bytes: 0,
        time_to_full_s: None,
        stop_reason: None,
        warnings: vec![],
        streams: vec![],
    }
}

fn open_sink(
    config: &ServerConfig,
    req: &StartRequest,
) -> Result<Arc<dyn StreamSink>, OpenStreamError> {
    match req.header.schema {
        WireSchema::Imu => DeviceStream::<ImuRow>::open(config, req),
        WireSchema::Efield => DeviceStream::<EfieldSample>::open(config, req),
        WireSchema::Stage => DeviceStream::<StagePosition>::open(config, req),
    }
}

struct ServerShared {
    config: ServerConfig,
    streams: Mutex<HashMap<StreamKey, Arc<dyn StreamSink>>>,
    /// Finished streams' final reports, newest last.
    finished: Mutex<Vec<StreamReport>>,
    sessions: AtomicU64,
    /// Messages on sensor streams that could not be attributed to a stream.
    stray_malformed: AtomicU64,
}

impl ServerShared {
    /// The sink for `req`: the running one (same run: resume), or a new recording.
    async fn start(
        self: &Arc<Self>,
        req: StartRequest,
    ) -> Result<(Arc<dyn StreamSink>, u64), String> {
        let key = req.header.key.clone();
        let existing = lock(&self.streams).get(&key).cloned();
        if let Some(s) = existing {
            if s.run() == req.header.run && s.schema() == req.header.schema {
                let next = s.committed();
                return Ok((s, next));
            }
            // A new run of the device (or another schema): finish the old recording.
            let me = self.clone();
            let k = key.clone();
            let _ = tokio::task::spawn_blocking(move || me.finish(&k)).await;
        }
        let me = self.clone();
        let r = tokio::task::spawn_blocking(move || open_sink(&me.config, &req))
            .await
            .map_err(|e| e.to_string())?;
        let sink = r.map_err(|e| e.to_string())?;
        let mut map = lock(&self.streams);
        let sink = map.entry(key).or_insert(sink).clone();
        let next = sink.committed();
        Ok((sink, next))
    }

    fn finish(&self, key: &StreamKey) -> Option<StreamReport> {
        let sink = lock(&self.streams).remove(key)?;
        let report = sink.stop();
        lock(&self.finished).push(report.clone());
        Some(report)
    }

    fn get(&self, key: &StreamKey) -> Option<Arc<dyn StreamSink>> {
        lock(&self.streams).get(key).cloned()
    }
}

/// A running recorder server. Must be created inside a tokio runtime.
#[derive(Debug)]
pub struct RecorderServer {
    endpoint: kwik::Endpoint,
    shared: Arc<ServerShared>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for ServerShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerShared")
            .field("out_dir", &self.config.out_dir)
            .finish_non_exhaustive()
    }
}

impl RecorderServer {
    /// Listens on `addr` and starts accepting gateways.
    pub fn bind(
        addr: SocketAddr,
        tls: kwik::ServerConfig,
        config: ServerConfig,
    ) -> Result<Self, ServeError> {
        std::fs::create_dir_all(&config.out_dir).map_err(|source| ServeError::OutputDir {
            path: config.out_dir.clone(),
            source,
        })?;
        let endpoint = kwik::Endpoint::server(addr, tls)?;
        let shared = Arc::new(ServerShared {
            config,
            streams: Mutex::new(HashMap::new()),
            finished: Mutex::new(Vec::new()),
            sessions: AtomicU64::new(0),
            stray_malformed: AtomicU64::new(0),
        });
        let ep = endpoint.clone();
        let sh = shared.clone();
        let accept = tokio::spawn(async move {
            while let Some(session) = ep.accept().await {
                sh.sessions.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("kwik_record_sessions_total").increment(1);
                tokio::spawn(serve_session(sh.clone(), session));
            }
        });
        Ok(RecorderServer {
            endpoint,
            shared,
            accept,
        })
    }

    /// The UDP address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Reports of every stream: running ones first, then finished ones.
    pub fn reports(&self) -> Vec<StreamReport> {
        let running: Vec<_> = lock(&self.shared.streams).values().cloned().collect();
        let mut out: Vec<StreamReport> = running.iter().map(|s| s.report()).collect();
        out.extend(lock(&self.shared.finished).iter().cloned());
        out
    }

    /// Sessions accepted so far.
    pub fn sessions(&self) -> u64 {
        self.shared.sessions.load(Ordering::Relaxed)
    }

    /// Messages that arrived on a sensor stream before its header (counted, skipped).
    pub fn stray_malformed(&self) -> u64 {
        self.shared.stray_malformed.load(Ordering::Relaxed)
    }

    /// Publishes every stream's counters as Prometheus gauges (call periodically).
    pub fn publish_metrics(&self) {
        for r in self.reports() {
            let labels = [("device", r.device.clone()), ("stream", r.stream.clone())];
            metrics::gauge!("kwik_record_received_samples", &labels).set(r.counts.received as f64);
            metrics::gauge!("kwik_record_written_samples", &labels).set(r.written as f64);
            metrics::gauge!("kwik_record_duplicate_samples", &labels)
                .set(r.counts.duplicates as f64);
            metrics::gauge!("kwik_record_missing_samples", &labels).set(r.counts.missing as f64);
            metrics::gauge!("kwik_record_malformed_messages", &labels)
                .set(r.counts.malformed as f64);
            metrics::gauge!("kwik_record_recorder_dropped_samples", &labels)
                .set(r.recorder_dropped as f64);
            metrics::gauge!("kwik_record_credit_stalls", &labels).set(r.counts.stalls as f64);
        }
    }

    /// Stops accepting, finalises every recording and returns all reports.
    pub async fn shutdown(self) -> Vec<StreamReport> {
        self.accept.abort();
        self.endpoint.close(0, b"server shutting down");
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let keys: Vec<StreamKey> = lock(&shared.streams).keys().cloned().collect();
            for k in keys {
                shared.finish(&k);
            }
        })
        .await;
        lock(&self.shared.finished).clone()
    }
}

async fn serve_session(shared: Arc<ServerShared>, session: kwik::Session) {
    let keys: Arc<Mutex<HashSet<StreamKey>>> = Arc::default();
    let uni = {
        let (shared, session, keys) = (shared.clone(), session.clone(), keys.clone());
        tokio::spawn(async move {
            while let Ok(recv) = session.accept_uni().await {
                tokio::spawn(sensor_stream(shared.clone(), recv, keys.clone()));
            }
        })
    };
    if let Ok((send, recv)) = session.accept_bi().await {
        let (tx, rx) = mpsc::channel::<Message>(256);
        let writer = tokio::spawn(control_writer(send, rx));
        let acker = tokio::spawn(ack_ticker(shared.clone(), keys.clone(), tx.clone()));
        control_reader(shared.clone(), recv, tx, keys).await;
        acker.abort();
        let _ = writer.await;
    }
    let _ = session.closed().await;
    uni.abort();
}

async fn control_writer(mut send: kwik::SendStream, mut rx: mpsc::Receiver<Message>) {
    let mut buf = Vec::new();
    while let Some(m) = rx.recv().await {
        buf.clear();
        if m.encode(&mut buf).is_err() {
            continue;
        }
        while let Ok(more) = rx.try_recv() {
            let _ = more.encode(&mut buf);
        }
        if send
            .write_chunk(Bytes::copy_from_slice(&buf))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = send.finish();
}

async fn ack_ticker(
    shared: Arc<ServerShared>,
    keys: Arc<Mutex<HashSet<StreamKey>>>,
    tx: mpsc::Sender<Message>,
) {
    let mut last: HashMap<StreamKey, u64> = HashMap::new();
    let mut tick = tokio::time::interval(shared.config.ack_interval);
    loop {
        tick.tick().await;
        let ks: Vec<StreamKey> = lock(&keys).iter().cloned().collect();
        for key in ks {
            let Some(sink) = shared.get(&key) else {
                continue;
            };
            let sh = sink.clone();
            let next = match tokio::task::spawn_blocking(move || sh.committed()).await {
                Ok(n) => n,
                Err(_) => continue,
            };
            if last.get(&key) != Some(&next) {
                last.insert(key.clone(), next);
                if tx
                    .send(Message::Ack {
                        key,
                        next_seq: next,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn control_reader(
    shared: Arc<ServerShared>,
    mut recv: kwik::RecvStream,
    tx: mpsc::Sender<Message>,
    keys: Arc<Mutex<HashSet<StreamKey>>>,
) {
    let mut dec = MessageDecoder::new();
    loop {
        while let Some(m) = dec.next_message() {
            let reply = match m {
                Ok(Message::Hello { version, gateway }) => {
                    tracing::info!(%gateway, version, "gateway connected");
                    (version != WIRE_VERSION).then(|| Message::Error {
                        key: StreamKey::default(),
                        text: format!("protocol version {version} not supported (server speaks {WIRE_VERSION})"),
                    })
                }
                Ok(Message::Start(req)) => {
                    let key = req.header.key.clone();
                    match shared.start(req).await {
                        Ok((_, next_seq)) => {
                            lock(&keys).insert(key.clone());
                            Some(Message::Started { key, next_seq })
                        }
                        Err(text) => Some(Message::Error { key, text }),
                    }
                }
                Ok(Message::Stop(key)) => {
                    lock(&keys).remove(&key);
                    let sh = shared.clone();
                    let k = key.clone();
                    let report = tokio::task::spawn_blocking(move || sh.finish(&k))
                        .await
                        .ok()
                        .flatten();
                    Some(match report {
                        Some(r) => Message::Status {
                            key,
                            final_: true,
                            json: serde_json::to_string(&r).unwrap_or_default(),
                        },
                        None => Message::Error {
                            key,
                            text: "no such recording".into(),
                        },
                    })
                }
                Ok(Message::Device { key, entries }) => match shared.get(&key) {
                    Some(s) => {
                        s.note_device(entries);
                        None
                    }
                    None => Some(Message::Error {
                        key,
                        text: "no such recording".into(),
                    }),
                },
                Ok(Message::StatusRequest(key)) => Some(match shared.get(&key) {
                    Some(s) => {
                        let r = tokio::task::spawn_blocking(move || s.report()).await.ok();
                        Message::Status {
                            key,
                            final_: false,
                            json: r
                                .and_then(|r| serde_json::to_string(&r).ok())
                                .unwrap_or_default(),
                        }
                    }
                    None => Message::Error {
                        key,
                        text: "no such recording".into(),
                    },
                }),
                Ok(other) => {
                    tracing::debug!(?other, "unexpected message on the control stream");
                    shared.stray_malformed.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Err(e) => {
                    tracing::debug!(error = %e, "malformed control message skipped");
                    shared.stray_malformed.fetch_add(1, Ordering::Relaxed);
                    None
                }
            };
            if let Some(r) = reply {
                if tx.send(r).await.is_err() {
                    return;
                }
            }
        }
        match recv.read_chunk(64 * 1024).await {
            Ok(Some(chunk)) => dec.push(&chunk),
            _ => return,
        }
    }
}

async fn sensor_stream(
    shared: Arc<ServerShared>,
    mut recv: kwik::RecvStream,
    keys: Arc<Mutex<HashSet<StreamKey>>>,
) {
    let mut dec = MessageDecoder::new();
    let mut sink: Option<Arc<dyn StreamSink>> = None;
    loop {
        while let Some(m) = dec.next_message() {
            match (m, &sink) {
                (Ok(Message::Sample { seq, body }), Some(s)) => s.push(seq, &body),
                (Ok(Message::Header(h)), None) => match attach(&shared, h.clone()).await {
                    Ok(s) => {
                        // This session's gateway gets acks for the stream.
                        lock(&keys).insert(h.key);
                        sink = Some(s);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "sensor stream refused");
                        recv.stop(1);
                        return;
                    }
                },
                (Ok(_), Some(s)) | (Err(_), Some(s)) => s.count_malformed(),
                (_, None) => {
                    shared.stray_malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Credit: do not read on while the recorder is behind; KWIK's window then
        // fills and the gateway's sender waits (and spools).
        if let Some(s) = &sink {
            let mut stalled = false;
            loop {
                let s2 = s.clone();
                let room = tokio::task::spawn_blocking(move || s2.has_room())
                    .await
                    .unwrap_or(true);
                if room {
                    break;
                }
                if !stalled {
                    stalled = true;
                    s.stall();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        match recv.read_chunk(64 * 1024).await {
            Ok(Some(chunk)) => dec.push(&chunk),
            _ => return,
        }
    }
}

/// Binds a sensor stream to its recording: the one its gateway started, or a new one
/// with default settings (a gateway that sends no Start).
async fn attach(
    shared: &Arc<ServerShared>,
    h: StreamHeader,
) -> Result<Arc<dyn StreamSink>, String> {
    if let Some(s) = shared.get(&h.key) {
        if s.run() == h.run && s.schema() == h.schema {
            return Ok(s);
        }
    }
    let req = StartRequest {
        header: h,
        prefix: String::new(),
        duration_limit_ms: 0,
        size_limit: 0,
        format: WireFormat::Csv,
    };
    shared.start(req).await.map(|(s, _)| s)
}
