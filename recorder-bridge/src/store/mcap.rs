//! Live MCAP files (for Foxglove and the `mcap` readers): one channel per stream, one
//! JSON message per sample (see [`crate::format::json_rows`]) whose log and publish
//! times are the sample's time in ns, zstd chunks with message indexes, and the summary
//! section (schemas, channels, statistics, chunk and metadata indexes) written on stop.
//!
//! An MCAP file is a sequence of self-delimited records, so no journal is needed: a
//! chunk is closed, written, flushed and synced at every sync interval (and whenever it
//! reaches [`CHUNK_BYTES`] of JSON), and whatever is on disk up to the last whole chunk
//! reads back. After a crash [`recover_mcap`] reads the file from the start up to the
//! first record that is cut off or damaged, and writes those messages again with a
//! summary: the loss is what had not reached a closed chunk yet, at most one sync
//! interval of samples (plus what the exporter's two buffers held, as for CSV).
//!
//! The file starts with a `kwik` metadata record (session, stream, schema, start, device,
//! settings) and the schema and channel in a chunk of their own, synced before the first
//! sample; a clean stop adds a `kwik.end` metadata record (`dropped`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcap::records::{Metadata, op};
use mcap::sans_io::{LinearReadEvent, LinearReader, LinearReaderOptions};

use crate::format::columns::{ColumnBatch, Columnar, McapOptions};
use crate::format::json_rows::{JsonRows, json_schema};
use crate::store::exporter::{BatchWriter, WriteOutcome};
use crate::store::file_writer::{
    FileProgress, FileReport, PartInfo, WriterStop, hash_file, part_path,
};

/// Uncompressed bytes after which a chunk is closed even before the sync interval
/// (bounds the chunk buffer; ~3 500 E-field messages).
pub const CHUNK_BYTES: u64 = 1 << 20;

/// Records longer than this are taken for damage, not data (our chunks are about
/// [`CHUNK_BYTES`]).
const RECORD_LIMIT: usize = 256 << 20;

/// Schema encoding and message encoding of the channels (the MCAP registry's names).
const SCHEMA_ENCODING: &str = "jsonschema";
const MESSAGE_ENCODING: &str = "json";

/// Name of the metadata record written at the start, and of the one written at the end.
pub const META_START: &str = "kwik";
/// See [`META_START`].
pub const META_END: &str = "kwik.end";

/// What one stream's channel is: its schema and topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McapLayout {
    /// Schema name (`kwik.efield`, ...).
    pub schema_name: String,
    /// The JSON Schema of the messages.
    pub schema: String,
    /// Channel topic: `/` and the stream's name.
    pub topic: String,
    /// Channel metadata (`kwik.schema`).
    pub channel_metadata: BTreeMap<String, String>,
}

impl McapLayout {
    /// The layout of a stream of rows `R` named `stream`.
    pub fn of<R: Columnar>(stream: &str) -> Self {
        let schema_name = format!("kwik.{}", R::NAME);
        McapLayout {
            schema: json_schema(&schema_name, R::TYPED_COLUMNS),
            schema_name,
            topic: format!("/{stream}"),
            channel_metadata: BTreeMap::from([("kwik.schema".to_owned(), R::NAME.to_owned())]),
        }
    }
}

/// Settings of one live MCAP file.
#[derive(Debug, Clone)]
pub struct McapConfig {
    /// The data file.
    pub path: PathBuf,
    /// A chunk is closed and synced at least this often: the most a crash loses.
    pub sync_interval: Duration,
    /// The recording's start (t0) in µs since the Unix epoch: sample time zero.
    pub start_utc_us: i64,
    /// The stream's name (the channel's topic is `/` and this).
    pub stream: String,
    /// Entries of the `kwik` metadata record (session, device, settings).
    pub metadata: Vec<(String, String)>,
    /// Layout options.
    pub options: McapOptions,
    /// Size limit per part in bytes (summary included): before a part would pass it,
    /// the part is closed with its summary and the stream goes on in the next numbered
    /// part (`_part002.mcap`, ...), between two chunks. `None`: one file.
    pub size_limit: Option<u64>,
}

/// Bytes kept free in a part for its summary: the fixed records plus a chunk index
/// per chunk.
fn summary_reserve(chunks: u64) -> u64 {
    16 * 1024 + 160 * chunks
}

/// Smallest size limit a part can keep to (a chunk and its summary).
pub const MIN_PART_BYTES: u64 = 256 * 1024;

type Inner = mcap::Writer<BufWriter<File>>;

fn to_io(e: mcap::McapError) -> io::Error {
    match e {
        mcap::McapError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// Creates `path` (refusing to overwrite a file) with the start metadata and the
/// channel, synced; returns the writer, a handle to sync the file with, and the channel.
fn open_mcap(
    path: &Path,
    layout: &McapLayout,
    metadata: &[(String, String)],
    options: &McapOptions,
) -> io::Result<(Inner, File, u16)> {
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    let sync = file.try_clone()?;
    let mut w = mcap::WriteOptions::new()
        .compression(Some(mcap::Compression::Zstd))
        .compression_level(options.zstd_level)
        // The writer thread is the one compressing: no extra threads on a small machine.
        .compression_threads(0)
        // Chunks are closed by the writer (at its chunk size, at each sync, before a
        // part would pass its size limit), so it knows what is on disk at each close.
        .chunk_size(None)
        // Whole chunks are built in memory and written at once: a crash cuts at most
        // the last one, never leaves a chunk header pointing at nothing.
        .disable_seeking(true)
        .library(format!("kwik-record {}", env!("CARGO_PKG_VERSION")))
        .create(BufWriter::with_capacity(1 << 16, file))
        .map_err(to_io)?;
    w.write_metadata(&Metadata {
        name: META_START.to_owned(),
        metadata: metadata.iter().cloned().collect(),
    })
    .map_err(to_io)?;
    let schema = w
        .add_schema(
            &layout.schema_name,
            SCHEMA_ENCODING,
            layout.schema.as_bytes(),
        )
        .map_err(to_io)?;
    let channel = w
        .add_channel(
            schema,
            &layout.topic,
            MESSAGE_ENCODING,
            &layout.channel_metadata,
        )
        .map_err(to_io)?;
    w.flush().map_err(to_io)?;
    sync.sync_all()?;
    Ok((w, sync, channel))
}

/// Writes the end metadata and the summary, flushes and syncs.
fn close_mcap(mut w: Inner, dropped: u64) -> io::Result<()> {
    w.write_metadata(&Metadata {
        name: META_END.to_owned(),
        metadata: BTreeMap::from([("dropped".to_owned(), dropped.to_string())]),
    })
    .map_err(to_io)?;
    w.finish().map_err(to_io)?;
    let file = w.into_inner().into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// A [`BatchWriter`] that writes one stream to a live MCAP file, in numbered parts
/// under a size limit (see the module docs for what a crash loses).
pub struct McapWriter<R: Columnar> {
    writer: Option<Inner>,
    sync: File,
    channel: u16,
    config: McapConfig,
    layout: McapLayout,
    rows: JsonRows,
    batch: Option<ColumnBatch>,
    json: Vec<u8>,
    /// Uncompressed bytes a chunk may hold before it is closed.
    chunk_bytes: u64,
    /// JSON bytes in the open chunk.
    pending: u64,
    /// Chunks closed in the open part.
    part_chunks: u64,
    /// The open part (1-based) and the parts closed before it.
    part: u32,
    parts: Vec<PartInfo>,
    /// Messages handed to the MCAP writer, in the open part.
    messages: u64,
    /// Messages in chunks of the open part that were closed and synced.
    synced: u64,
    bytes_reported: u64,
    last_flush: Instant,
    progress: Arc<FileProgress>,
    stop: Option<WriterStop>,
    dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
    _rows: std::marker::PhantomData<R>,
}

impl<R: Columnar> std::fmt::Debug for McapWriter<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McapWriter")
            .field("path", &self.config.path)
            .field("part", &self.part)
            .field("messages", &self.messages)
            .field("stop", &self.stop)
            .finish()
    }
}

impl<R: Columnar> McapWriter<R> {
    /// Creates the file (refusing to overwrite one) with its channel. `dropped` reports
    /// this stream's losses so far, for the metadata written at close. A size limit
    /// below [`MIN_PART_BYTES`] is refused.
    pub fn create(
        config: McapConfig,
        dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> io::Result<Self> {
        if config.size_limit.is_some_and(|l| l < MIN_PART_BYTES) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("an MCAP part needs a size limit of at least {MIN_PART_BYTES} bytes"),
            ));
        }
        let layout = McapLayout::of::<R>(&config.stream);
        let (writer, sync, channel) =
            open_mcap(&config.path, &layout, &config.metadata, &config.options)?;
        let progress = Arc::new(FileProgress::default());
        progress.set_part(1, &config.path);
        let chunk_bytes = config
            .size_limit
            .map_or(CHUNK_BYTES, |l| CHUNK_BYTES.min(l / 4));
        Ok(McapWriter {
            writer: Some(writer),
            sync,
            channel,
            layout,
            config,
            rows: JsonRows::new(R::TYPED_COLUMNS),
            batch: None,
            json: Vec::with_capacity(512),
            chunk_bytes,
            pending: 0,
            part_chunks: 0,
            part: 1,
            parts: Vec::new(),
            messages: 0,
            synced: 0,
            bytes_reported: 0,
            last_flush: Instant::now(),
            progress,
            stop: None,
            dropped,
            _rows: std::marker::PhantomData,
        })
    }

    /// Live progress.
    pub fn progress(&self) -> Arc<FileProgress> {
        self.progress.clone()
    }

    fn path(&self) -> PathBuf {
        part_path(&self.config.path, self.part)
    }

    /// Writes a run of rows (the column buffers are reused between runs).
    pub fn write_rows(&mut self, rows: &[R]) -> io::Result<()> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let base = self.config.start_utc_us;
        let mut batch = self.batch.take().unwrap_or_else(|| {
            // A device clock starts anywhere: its first sample is put at t0.
            let base = if R::DEVICE_CLOCK {
                base.saturating_sub(i64::try_from(first.time_us()).unwrap_or(i64::MAX))
            } else {
                base
            };
            ColumnBatch::new(R::TYPED_COLUMNS, base)
        });
        batch.clear();
        for r in rows {
            r.put_columns(&mut batch.row());
        }
        let result = if batch.columns.iter().any(|c| c.len() != rows.len()) {
            Err(io::Error::other(format!(
                "the {} rows' typed columns are inconsistent (a bug)",
                R::NAME
            )))
        } else {
            (0..rows.len()).try_for_each(|i| self.write_message(&batch, i))
        };
        self.batch = Some(batch);
        result
    }

    fn write_message(&mut self, batch: &ColumnBatch, i: usize) -> io::Result<()> {
        self.json.clear();
        let time_us = self.rows.write_row(batch, i, &mut self.json);
        let len = self.json.len() as u64;
        if self.pending > 0 && self.pending + len > self.chunk_bytes {
            self.close_chunk()?;
        }
        let ns = u64::try_from(time_us).unwrap_or(0).saturating_mul(1000);
        let header = ::mcap::records::MessageHeader {
            channel_id: self.channel,
            // Wraps after 2^32 messages; the log time orders them.
            sequence: self.messages as u32,
            log_time: ns,
            publish_time: ns,
        };
        let Some(w) = self.writer.as_mut() else {
            return Err(io::Error::other("the MCAP file is closed"));
        };
        w.write_to_known_channel(&header, &self.json)
            .map_err(to_io)?;
        self.messages += 1;
        self.pending += len;
        Ok(())
    }

    /// Closes the open chunk (written, not synced); then, if another chunk could pass
    /// the size limit, closes the part and opens the next.
    fn close_chunk(&mut self) -> io::Result<()> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        if self.pending == 0 {
            return Ok(());
        }
        w.flush().map_err(to_io)?;
        self.pending = 0;
        self.part_chunks += 1;
        let on_disk = self.sync.metadata()?.len();
        if let Some(limit) = self.config.size_limit {
            let next = self.chunk_bytes + summary_reserve(self.part_chunks + 1);
            if on_disk + next > limit {
                self.next_part()?;
            }
        }
        Ok(())
    }

    /// Closes the open chunk, flushes and syncs the file.
    fn sync_chunk(&mut self) -> io::Result<()> {
        self.last_flush = Instant::now();
        if self.messages == self.synced {
            return Ok(());
        }
        let part = self.part;
        self.close_chunk()?;
        if part != self.part {
            return Ok(()); // the part was closed, and synced, with its summary
        }
        self.sync.sync_data()?;
        self.progress.add_samples(self.messages - self.synced);
        self.synced = self.messages;
        let bytes = self.sync.metadata()?.len();
        self.progress
            .add_bytes(bytes.saturating_sub(self.bytes_reported));
        self.bytes_reported = bytes;
        Ok(())
    }

    /// Closes the open part with its summary and records it.
    fn close_part(&mut self) -> io::Result<()> {
        let Some(w) = self.writer.take() else {
            return Ok(());
        };
        close_mcap(w, (self.dropped)())?;
        let path = self.path();
        let bytes = std::fs::metadata(&path)?.len();
        self.progress.add_samples(self.messages - self.synced);
        self.progress
            .add_bytes(bytes.saturating_sub(self.bytes_reported));
        self.parts.push(PartInfo {
            sha256: hash_file(&path).ok().map(hex::encode),
            path,
            samples: self.messages,
            bytes,
        });
        Ok(())
    }

    fn next_part(&mut self) -> io::Result<()> {
        self.close_part()?;
        self.part += 1;
        let path = self.path();
        let (writer, sync, channel) = open_mcap(
            &path,
            &self.layout,
            &self.config.metadata,
            &self.config.options,
        )?;
        self.writer = Some(writer);
        self.sync = sync;
        self.channel = channel;
        self.part_chunks = 0;
        self.messages = 0;
        self.synced = 0;
        self.bytes_reported = 0;
        self.progress.set_part(u64::from(self.part), &path);
        Ok(())
    }

    fn fail(&mut self, e: &io::Error) {
        let stop = WriterStop::Io {
            errno: e.raw_os_error(),
            message: e.to_string(),
        };
        self.progress.set_stop(stop.clone());
        self.stop = Some(stop);
    }
}

impl<R: Columnar> BatchWriter<R> for McapWriter<R> {
    type Report = FileReport;

    fn write_batch(&mut self, batch: &[R]) -> WriteOutcome {
        if self.stop.is_some() || self.writer.is_none() {
            return WriteOutcome::Stop;
        }
        if let Err(e) = self.write_rows(batch) {
            self.fail(&e);
            return WriteOutcome::Stop;
        }
        WriteOutcome::Continue
    }

    fn tick(&mut self) -> WriteOutcome {
        if self.stop.is_some() {
            return WriteOutcome::Stop;
        }
        if self.last_flush.elapsed() >= self.config.sync_interval {
            if let Err(e) = self.sync_chunk() {
                self.fail(&e);
                return WriteOutcome::Stop;
            }
        }
        WriteOutcome::Continue
    }

    fn finish(mut self) -> FileReport {
        if self.stop.is_none() {
            if let Err(e) = self.close_chunk().and_then(|()| self.close_part()) {
                self.fail(&e);
            }
        }
        let mut parts = std::mem::take(&mut self.parts);
        if self.stop.is_some() {
            // The open part as far as it was synced: `recover` closes it.
            let path = self.path();
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            self.progress
                .add_bytes(bytes.saturating_sub(self.bytes_reported));
            parts.push(PartInfo {
                path,
                samples: self.synced,
                bytes,
                sha256: None,
            });
            if let Some(w) = self.writer.take() {
                // No summary for a failed part: what is on disk is what recover reads.
                drop(w.into_inner());
            }
        }
        FileReport {
            parts,
            stop: self.stop,
        }
    }
}

/// What an MCAP data file holds, read record by record from the start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct McapContents {
    /// Messages in the data section.
    pub messages: u64,
    /// Chunks in the data section.
    pub chunks: u64,
    /// `(topic, schema name)` of each channel of the data section.
    pub channels: Vec<(String, String)>,
    /// Every `(key, value)` of every metadata record of the data section, in order
    /// (the record names left out).
    pub metadata: Vec<(String, String)>,
    /// Whether the file ends with a summary section and footer (a clean close).
    pub summary: bool,
    /// The summary's statistics message count, if it has one.
    pub summary_messages: Option<u64>,
    /// Bytes of the whole records before the first one that is cut off or damaged
    /// (the file's length when nothing is).
    pub good_bytes: u64,
    /// Why reading stopped before the end, if it did.
    pub damage: Option<String>,
}

/// Feeds `file` to a linear reader; calls `each(opcode, body)` for every record (those
/// inside chunks included; a chunk's records only once its CRC checked). Returns the
/// error that stopped the reading, if any.
fn scan(
    file: &mut impl Read,
    options: LinearReaderOptions,
    mut each: impl FnMut(u8, &[u8]) -> Result<(), String>,
) -> Option<String> {
    let mut reader = LinearReader::new_with_options(options.with_record_length_limit(RECORD_LIMIT));
    while let Some(event) = reader.next_event() {
        match event {
            Err(e) => return Some(e.to_string()),
            Ok(LinearReadEvent::ReadRequest(need)) => {
                let buf = reader.insert(need.min(1 << 20));
                match file.read(buf) {
                    Ok(n) => reader.notify_read(n),
                    Err(e) => return Some(e.to_string()),
                }
            }
            Ok(LinearReadEvent::Record { opcode, data }) => {
                if let Err(e) = each(opcode, data) {
                    return Some(e);
                }
            }
        }
    }
    None
}

/// Reads an MCAP file from start to end (every chunk decompressed and its CRC checked,
/// the data and summary CRCs checked) and says what it holds and where it stops being
/// whole.
pub fn read_mcap(path: &Path) -> Result<McapContents, String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let mut c = McapContents::default();
    let mut schemas = BTreeMap::new();
    let mut in_summary = false;
    // Offsets of whole records outside chunks (chunks are read as one record first).
    let mut raw = File::open(path).map_err(|e| e.to_string())?;
    let mut at = 8u64;
    let cut = scan(
        &mut raw,
        LinearReaderOptions::default()
            .with_emit_chunks(true)
            .with_skip_end_magic(true),
        |opcode, body| {
            if opcode == op::DATA_END {
                return Err(String::new());
            }
            if !(op::HEADER..=op::DATA_END).contains(&opcode) || opcode == op::FOOTER {
                // Not a record a writer puts in a data section: a torn write.
                return Err(format!(
                    "no MCAP record at byte {at} (opcode {opcode:#04x})"
                ));
            }
            at += 9 + body.len() as u64;
            Ok(())
        },
    );
    c.good_bytes = at;
    let damage = scan(
        &mut file,
        LinearReaderOptions::default().with_prevalidate_chunk_crcs(true),
        |opcode, body| {
            let record = mcap::parse_record(opcode, body).map_err(|e| e.to_string())?;
            use mcap::records::Record;
            match record {
                Record::DataEnd(_) => in_summary = true,
                Record::Footer(_) => c.summary = true,
                Record::Message { .. } if !in_summary => c.messages += 1,
                Record::Chunk { .. } if !in_summary => c.chunks += 1,
                Record::Schema { header, .. } if !in_summary => {
                    schemas.insert(header.id, header.name);
                }
                Record::Channel(ch) if !in_summary => c.channels.push((
                    ch.topic,
                    schemas.get(&ch.schema_id).cloned().unwrap_or_default(),
                )),
                Record::Metadata(m) if !in_summary => c.metadata.extend(m.metadata),
                Record::Statistics(s) => c.summary_messages = Some(s.message_count),
                _ => {}
            }
            Ok(())
        },
    );
    c.damage = match (cut, damage) {
        (_, Some(e)) => Some(e),
        // The empty reason is the stop at the data section's end: nothing is wrong.
        (Some(e), None) if !e.is_empty() => Some(e),
        _ => None,
    };
    if c.damage.is_none() {
        c.good_bytes = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    }
    c.summary &= c.damage.is_none();
    Ok(c)
}

/// Calls `each` with the body of every message of the MCAP file at `path`, in file
/// order, until it returns false. Returns why the reading stopped early when the file
/// stops being whole (a file being recorded, or a crash), `None` when it did not.
pub fn for_each_message(
    path: &Path,
    mut each: impl FnMut(&[u8]) -> bool,
) -> io::Result<Option<String>> {
    let mut file = File::open(path)?;
    let stop = scan(&mut file, LinearReaderOptions::default(), |opcode, body| {
        if opcode != op::MESSAGE {
            return Ok(());
        }
        match mcap::parse_record(opcode, body).map_err(|e| e.to_string())? {
            mcap::records::Record::Message { data, .. } if !each(&data) => Err(String::new()),
            _ => Ok(()),
        }
    });
    Ok(stop.filter(|e| !e.is_empty()))
}

/// What [`recover_mcap`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McapRepair {
    /// Messages in the file after repair.
    pub messages: u64,
    /// Bytes of the crashed file after its last whole chunk (left out).
    pub truncated_bytes: u64,
}

/// Closes an MCAP file whose process died: writes the messages of every whole chunk
/// again, with the metadata and channel found in the file (or `fallback` when the crash
/// came before the channel reached the disk), the `extra` entries in the end metadata
/// record (the drop counts the sidecar knows), and a summary; then replaces the file
/// with it. A file that already has its summary is left as it is.
pub fn recover_mcap(
    path: &Path,
    fallback: &McapLayout,
    extra: &[(String, String)],
) -> Result<McapRepair, String> {
    let before = read_mcap(path)?;
    if before.summary {
        return Ok(McapRepair {
            messages: before.messages,
            truncated_bytes: 0,
        });
    }
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    let tmp = {
        let mut n = path.as_os_str().to_owned();
        n.push(".recovering");
        PathBuf::from(n)
    };
    let _ = std::fs::remove_file(&tmp);
    let result = rewrite(path, &tmp, before.good_bytes, fallback, extra);
    let messages = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(McapRepair {
        messages,
        truncated_bytes: len - before.good_bytes.min(len),
    })
}

/// Copies the messages of the first `good` bytes of `src` into a new file `dst`.
fn rewrite(
    src: &Path,
    dst: &Path,
    good: u64,
    fallback: &McapLayout,
    extra: &[(String, String)],
) -> Result<u64, String> {
    use mcap::records::Record;
    let io_err = |e: io::Error| format!("{}: {e}", dst.display());
    let mut input = File::open(src)
        .map_err(|e| format!("{}: {e}", src.display()))?
        .take(good);
    let mut metadata: Vec<(String, String)> = Vec::new();
    let mut layout: Option<McapLayout> = None;
    let mut schemas: BTreeMap<u16, (String, Vec<u8>)> = BTreeMap::new();
    let mut out: Option<(Inner, u16)> = None;
    let mut messages = 0u64;
    let mut pending = 0u64;
    let mut failure: Option<String> = None;
    let stopped = scan(
        &mut input,
        LinearReaderOptions::default()
            .with_prevalidate_chunk_crcs(true)
            .with_skip_end_magic(true),
        |opcode, body| {
            let record = mcap::parse_record(opcode, body).map_err(|e| e.to_string())?;
            match record {
                Record::Metadata(m) if m.name == META_START => metadata.extend(m.metadata),
                Record::Schema { header, data } => {
                    schemas.insert(header.id, (header.name, data.into_owned()));
                }
                Record::Channel(ch) if layout.is_none() => {
                    let (schema_name, schema) =
                        schemas.get(&ch.schema_id).cloned().unwrap_or_default();
                    layout = Some(McapLayout {
                        schema_name,
                        schema: String::from_utf8_lossy(&schema).into_owned(),
                        topic: ch.topic,
                        channel_metadata: ch.metadata,
                    });
                }
                Record::Message { header, data } => {
                    if out.is_none() {
                        let l = layout.as_ref().unwrap_or(fallback);
                        match open_mcap(dst, l, &metadata, &McapOptions::default()) {
                            Ok((w, _, ch)) => out = Some((w, ch)),
                            Err(e) => {
                                failure = Some(io_err(e));
                                return Err(String::new());
                            }
                        }
                    }
                    if let Some((w, ch)) = out.as_mut() {
                        let h = mcap::records::MessageHeader {
                            channel_id: *ch,
                            ..header
                        };
                        if let Err(e) = w.write_to_known_channel(&h, &data) {
                            failure = Some(io_err(to_io(e)));
                            return Err(String::new());
                        }
                        messages += 1;
                        pending += data.len() as u64;
                        if pending >= CHUNK_BYTES {
                            pending = 0;
                            if let Err(e) = w.flush() {
                                failure = Some(io_err(to_io(e)));
                                return Err(String::new());
                            }
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        },
    );
    if let Some(f) = failure {
        return Err(f);
    }
    // A chunk damaged inside the whole records (not a crash artefact) ends the copy;
    // what came before it is kept.
    if let Some(e) = stopped {
        tracing::warn!(file = %src.display(), error = %e, "MCAP recovery stopped early");
    }
    let (w, _) = match out {
        Some(o) => o,
        None => {
            let l = layout.as_ref().unwrap_or(fallback);
            let (w, _, ch) =
                open_mcap(dst, l, &metadata, &McapOptions::default()).map_err(io_err)?;
            (w, ch)
        }
    };
    let mut w = w;
    w.write_metadata(&Metadata {
        name: META_END.to_owned(),
        metadata: extra.iter().cloned().collect(),
    })
    .map_err(|e| io_err(to_io(e)))?;
    w.finish().map_err(|e| io_err(to_io(e)))?;
    let file = w
        .into_inner()
        .into_inner()
        .map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    Ok(messages)
}
