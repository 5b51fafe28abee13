//! Live Parquet files: typed columns (see [`ColumnSpec`]), zstd pages, one row group per
//! sync interval, and a journal that lets `recover` close a file whose process died.
//!
//! A Parquet file is readable only once its footer (the schema and where every row
//! group lies) is written at the end. While recording, each row group is written,
//! flushed and synced at the sync interval (or at [`MAX_ROW_GROUP_ROWS`]); then its
//! footer entry is appended to `<file>.journal` and synced. After a crash `recover`
//! cuts the file after the last journalled row group and writes the footer from the
//! journal: the loss is what had not reached a row group yet, at most one sync interval
//! of samples (plus what the exporter's two buffers held, as for CSV). A clean close
//! writes the footer and removes the journal.
//!
//! Journal records are `[u32 LE length][thrift footer of one row group][4 bytes of its
//! SHA-256]`; the first holds no row group, only the schema and key-value metadata.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parquet::basic::{Compression, Encoding, LogicalType, Repetition, TimeUnit, ZstdLevel};
use parquet::data_type::{BoolType, DoubleType, FloatType, Int32Type, Int64Type};
use parquet::file::metadata::{
    FileMetaData, KeyValue, ParquetMetaData, ParquetMetaDataReader, ParquetMetaDataWriter,
    RowGroupMetaData,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, SchemaDescriptor, Type, TypePtr};
use sha2::{Digest, Sha256};

use crate::format::columns::Columnar;
use crate::format::columns::{ColumnBatch, ColumnData, ColumnSpec, ColumnType, ParquetOptions};
use crate::store::exporter::{BatchWriter, WriteOutcome};
use crate::store::file_writer::{
    FileProgress, FileReport, PartInfo, WriterStop, hash_file, part_path,
};

/// Rows after which a row group is written even before the sync interval (bounds the
/// memory the column buffers take: ~100 MB for the E-field schema).
pub const MAX_ROW_GROUP_ROWS: usize = 1 << 20;

/// Settings of one live Parquet file.
#[derive(Debug, Clone)]
pub struct ParquetConfig {
    /// The data file.
    pub path: PathBuf,
    /// A row group is written and synced at least this often: the most a crash loses.
    pub sync_interval: Duration,
    /// The recording's start (t0) in µs since the Unix epoch: the `time` column's zero.
    pub start_utc_us: i64,
    /// Key-value metadata of the file (session, device, settings).
    pub metadata: Vec<(String, String)>,
    /// Layout options.
    pub options: ParquetOptions,
    /// Size limit per part in bytes (footer included): before a row group would take a
    /// part past it (judged from the part's bytes per row so far), the part is closed
    /// with its footer and the stream goes on in the next numbered part
    /// (`_part002.parquet`, ...). A part holds at least one row group. `None`: one file.
    pub size_limit: Option<u64>,
}

/// The journal beside a live Parquet file.
pub fn journal_path(data: &Path) -> PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

fn to_io(e: parquet::errors::ParquetError) -> io::Error {
    match e {
        parquet::errors::ParquetError::External(inner) => io::Error::other(inner),
        other => io::Error::other(other.to_string()),
    }
}

/// The Parquet schema of `S`'s typed columns.
pub(crate) fn parquet_schema<S: Columnar>() -> io::Result<TypePtr> {
    let fields = S::TYPED_COLUMNS
        .iter()
        .map(|c| {
            use parquet::basic::Type as P;
            let (physical, logical) = match c.ty {
                ColumnType::UInt32 => (P::INT32, Some(LogicalType::integer(32, false))),
                ColumnType::UInt64 => (P::INT64, Some(LogicalType::integer(64, false))),
                ColumnType::Float32 => (P::FLOAT, None),
                ColumnType::Float64 | ColumnType::Seconds => (P::DOUBLE, None),
                ColumnType::Bool => (P::BOOLEAN, None),
                ColumnType::Timestamp => (
                    P::INT64,
                    Some(LogicalType::timestamp(true, TimeUnit::MICROS)),
                ),
            };
            Type::primitive_type_builder(c.name, physical)
                .with_repetition(Repetition::REQUIRED)
                .with_logical_type(logical)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(to_io)?;
    Type::group_type_builder(S::NAME)
        .with_fields(fields)
        .build()
        .map(Arc::new)
        .map_err(to_io)
}

fn properties(specs: &[ColumnSpec], opts: &ParquetOptions, kv: Vec<KeyValue>) -> WriterProperties {
    let level = ZstdLevel::try_new(opts.zstd_level).unwrap_or_default();
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_offset_index_disabled(true)
        .set_created_by(format!("kwik-record {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(kv));
    for c in specs {
        // Counters and clocks differ little from row to row; float bytes compress far
        // better split by significance.
        let enc = match c.ty {
            ColumnType::UInt32 | ColumnType::UInt64 | ColumnType::Timestamp => {
                Encoding::DELTA_BINARY_PACKED
            }
            ColumnType::Float32 | ColumnType::Float64 | ColumnType::Seconds => {
                Encoding::BYTE_STREAM_SPLIT
            }
            ColumnType::Bool => Encoding::PLAIN,
        };
        b = b.set_column_encoding(ColumnPath::from(c.name), enc);
    }
    b.build()
}

/// The footer bytes (thrift metadata, length, magic) of `row_groups`.
fn footer_bytes(
    schema: &TypePtr,
    kv: Option<Vec<KeyValue>>,
    row_groups: Vec<RowGroupMetaData>,
) -> io::Result<Vec<u8>> {
    let rows = row_groups.iter().map(RowGroupMetaData::num_rows).sum();
    let descr = Arc::new(SchemaDescriptor::new(schema.clone()));
    let created_by = Some(format!("kwik-record {}", env!("CARGO_PKG_VERSION")));
    let md = ParquetMetaData::new(
        FileMetaData::new(1, rows, created_by, kv, descr, None),
        row_groups,
    );
    let mut out = Vec::new();
    ParquetMetaDataWriter::new(&mut out, &md)
        .finish()
        .map_err(to_io)?;
    Ok(out)
}

fn journal_record(footer: &[u8]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(footer.len() + 8);
    rec.extend_from_slice(&(footer.len() as u32).to_le_bytes());
    rec.extend_from_slice(footer);
    rec.extend_from_slice(&Sha256::digest(footer)[..4]);
    rec
}

/// A [`BatchWriter`] that writes one schema to a live Parquet file (see the module
/// docs for what a crash loses).
pub struct ParquetWriter<S: Columnar> {
    writer: Option<SerializedFileWriter<File>>,
    journal: File,
    config: ParquetConfig,
    schema: TypePtr,
    kv: Vec<KeyValue>,
    batch: Option<ColumnBatch>,
    /// The open part (1-based) and the parts closed before it.
    part: u32,
    parts: Vec<PartInfo>,
    /// Row groups in the open part.
    part_groups: usize,
    /// Rows in the open part's row groups.
    rows_flushed: u64,
    bytes_reported: u64,
    last_flush: Instant,
    progress: Arc<FileProgress>,
    stop: Option<WriterStop>,
    dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
    _schema: std::marker::PhantomData<S>,
}

impl<S: Columnar> std::fmt::Debug for ParquetWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetWriter")
            .field("path", &self.config.path)
            .field("rows_flushed", &self.rows_flushed)
            .field("stop", &self.stop)
            .finish()
    }
}

impl<S: Columnar> ParquetWriter<S> {
    /// Creates the file (refusing to overwrite one) and its journal. `dropped` reports
    /// this stream's losses so far, for the metadata written at close.
    pub fn create(
        config: ParquetConfig,
        dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> io::Result<Self> {
        let schema = parquet_schema::<S>()?;
        let kv: Vec<KeyValue> = config
            .metadata
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        let (writer, journal) = open_part::<S>(&config.path, &schema, &kv, &config.options)?;
        let progress = Arc::new(FileProgress::default());
        progress.set_part(1, &config.path);
        Ok(ParquetWriter {
            writer: Some(writer),
            journal,
            config,
            schema,
            kv,
            batch: None,
            part: 1,
            parts: Vec::new(),
            part_groups: 0,
            rows_flushed: 0,
            bytes_reported: 0,
            last_flush: Instant::now(),
            progress,
            stop: None,
            dropped,
            _schema: std::marker::PhantomData,
        })
    }

    fn path(&self) -> PathBuf {
        part_path(&self.config.path, self.part)
    }

    /// Whether `rows` more rows, as one row group, could take the open part past the
    /// size limit.
    fn would_pass_limit(&self, rows: usize) -> bool {
        let (Some(limit), Some(w)) = (self.config.size_limit, self.writer.as_ref()) else {
            return false;
        };
        if self.part_groups == 0 {
            return false;
        }
        let bytes = w.bytes_written() as u64;
        let per_row = bytes.div_ceil(self.rows_flushed.max(1));
        // The footer: about 200 bytes per column chunk, plus the schema and metadata.
        let footer = 4096
            + 200 * (self.part_groups as u64 + 1) * S::TYPED_COLUMNS.len() as u64
            + self
                .kv
                .iter()
                .map(|k| k.key.len() + k.value.as_ref().map_or(0, String::len))
                .sum::<usize>() as u64;
        bytes + per_row * rows as u64 + footer > limit
    }

    /// Closes the open part with its footer and records it.
    fn close_part(&mut self) -> io::Result<()> {
        let Some(mut w) = self.writer.take() else {
            return Ok(());
        };
        w.append_key_value_metadata(KeyValue::new(
            "kwik.dropped".to_owned(),
            (self.dropped)().to_string(),
        ));
        let file = w.into_inner().map_err(to_io)?;
        file.sync_all()?;
        let path = self.path();
        std::fs::remove_file(journal_path(&path))?;
        let bytes = std::fs::metadata(&path)?.len();
        self.progress
            .add_bytes(bytes.saturating_sub(self.bytes_reported));
        self.parts.push(PartInfo {
            sha256: hash_file(&path).ok().map(hex::encode),
            path,
            samples: self.rows_flushed,
            bytes,
        });
        Ok(())
    }

    fn next_part(&mut self) -> io::Result<()> {
        self.close_part()?;
        self.part += 1;
        let path = self.path();
        let (writer, journal) =
            open_part::<S>(&path, &self.schema, &self.kv, &self.config.options)?;
        self.writer = Some(writer);
        self.journal = journal;
        self.part_groups = 0;
        self.rows_flushed = 0;
        self.bytes_reported = 0;
        self.progress.set_part(u64::from(self.part), &path);
        Ok(())
    }

    /// Live progress.
    pub fn progress(&self) -> Arc<FileProgress> {
        self.progress.clone()
    }

    /// Creates the column buffers at the first sample.
    fn batch_for(&mut self, first: &S) {
        let base = self.config.start_utc_us;
        self.batch.get_or_insert_with(|| {
            // A device clock starts anywhere: its first sample is put at t0.
            let base = if S::DEVICE_CLOCK {
                base.saturating_sub(i64::try_from(first.time_us()).unwrap_or(i64::MAX))
            } else {
                base
            };
            ColumnBatch::new(S::TYPED_COLUMNS, base)
        });
    }

    /// Writes the buffered rows as one row group, syncs it, journals its footer entry.
    fn flush_row_group(&mut self) -> io::Result<()> {
        self.last_flush = Instant::now();
        let (Some(_), Some(batch)) = (self.writer.as_ref(), self.batch.as_ref()) else {
            return Ok(());
        };
        let rows = batch.rows();
        if rows == 0 {
            return Ok(());
        }
        if batch.columns.iter().any(|c| c.len() != rows) {
            return Err(io::Error::other(format!(
                "the {} schema's typed columns are inconsistent (a bug)",
                S::NAME
            )));
        }
        if self.would_pass_limit(rows) {
            self.next_part()?;
        }
        let (Some(w), Some(batch)) = (self.writer.as_mut(), self.batch.as_mut()) else {
            return Ok(());
        };
        let mut rg = w.next_row_group().map_err(to_io)?;
        for data in &batch.columns {
            let Some(mut col) = rg.next_column().map_err(to_io)? else {
                return Err(io::Error::other("more column buffers than columns (a bug)"));
            };
            match data {
                ColumnData::Int32(v) => col.typed::<Int32Type>().write_batch(v, None, None),
                ColumnData::Int64(v) => col.typed::<Int64Type>().write_batch(v, None, None),
                ColumnData::Float(v) => col.typed::<FloatType>().write_batch(v, None, None),
                ColumnData::Double(v) => col.typed::<DoubleType>().write_batch(v, None, None),
                ColumnData::Bool(v) => col.typed::<BoolType>().write_batch(v, None, None),
            }
            .map_err(to_io)?;
            col.close().map_err(to_io)?;
        }
        let meta = rg.close().map_err(to_io)?;
        w.flush()?;
        w.inner().sync_data()?;
        let footer = footer_bytes(&self.schema, None, vec![meta.as_ref().clone()])?;
        self.journal.write_all(&journal_record(&footer))?;
        self.journal.sync_data()?;
        batch.clear();
        self.part_groups += 1;
        self.rows_flushed += rows as u64;
        let bytes = w.bytes_written() as u64;
        self.progress.add_bytes(bytes - self.bytes_reported);
        self.bytes_reported = bytes;
        self.progress.add_samples(rows as u64);
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

    fn close(&mut self) -> io::Result<()> {
        self.flush_row_group()?;
        self.close_part()
    }
}

/// Creates a part (refusing to overwrite a file) and its journal, whose first record
/// holds the schema and the key-value metadata.
fn open_part<S: Columnar>(
    path: &Path,
    schema: &TypePtr,
    kv: &[KeyValue],
    options: &ParquetOptions,
) -> io::Result<(SerializedFileWriter<File>, File)> {
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    let mut journal = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(journal_path(path))?;
    journal.write_all(&journal_record(&footer_bytes(
        schema,
        Some(kv.to_vec()),
        Vec::new(),
    )?))?;
    journal.sync_all()?;
    let props = properties(S::TYPED_COLUMNS, options, kv.to_vec());
    let writer = SerializedFileWriter::new(file, schema.clone(), Arc::new(props)).map_err(to_io)?;
    Ok((writer, journal))
}

impl<S: Columnar> BatchWriter<S> for ParquetWriter<S> {
    type Report = FileReport;

    fn write_batch(&mut self, batch: &[S]) -> WriteOutcome {
        if self.stop.is_some() || self.writer.is_none() {
            return WriteOutcome::Stop;
        }
        let Some(first) = batch.first() else {
            return WriteOutcome::Continue;
        };
        let mut rest = batch;
        self.batch_for(first);
        while !rest.is_empty() {
            let room = MAX_ROW_GROUP_ROWS.saturating_sub(cols_rows(&self.batch));
            let (run, tail) = rest.split_at(room.min(rest.len()));
            rest = tail;
            if let Some(cols) = self.batch.as_mut() {
                for s in run {
                    s.put_columns(&mut cols.row());
                }
            }
            if cols_rows(&self.batch) >= MAX_ROW_GROUP_ROWS {
                if let Err(e) = self.flush_row_group() {
                    self.fail(&e);
                    return WriteOutcome::Stop;
                }
            }
        }
        WriteOutcome::Continue
    }

    fn tick(&mut self) -> WriteOutcome {
        if self.stop.is_some() {
            return WriteOutcome::Stop;
        }
        if self.last_flush.elapsed() >= self.config.sync_interval {
            if let Err(e) = self.flush_row_group() {
                self.fail(&e);
                return WriteOutcome::Stop;
            }
        }
        WriteOutcome::Continue
    }

    fn finish(mut self) -> FileReport {
        if self.stop.is_none() {
            if let Err(e) = self.close() {
                self.fail(&e);
            }
        }
        let mut parts = std::mem::take(&mut self.parts);
        if self.stop.is_some() {
            // The open part as far as its row groups went: `recover` closes it.
            let path = self.path();
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            self.progress
                .add_bytes(bytes.saturating_sub(self.bytes_reported));
            parts.push(PartInfo {
                path,
                samples: self.rows_flushed,
                bytes,
                sha256: None,
            });
        }
        FileReport {
            parts,
            stop: self.stop,
        }
    }
}

fn cols_rows(b: &Option<ColumnBatch>) -> usize {
    b.as_ref().map_or(0, ColumnBatch::rows)
}

/// What a Parquet data file holds, read through its footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetContents {
    /// Rows over all row groups.
    pub rows: u64,
    /// Row groups.
    pub row_groups: usize,
    /// The file's key-value metadata.
    pub metadata: Vec<(String, String)>,
}

/// Reads a Parquet file's footer and decodes every page of every column (so damage
/// anywhere is found).
pub fn read_parquet(path: &Path) -> Result<ParquetContents, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let reader =
        SerializedFileReader::new(file).map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let md = reader.metadata();
    let mut rows = 0u64;
    for i in 0..md.num_row_groups() {
        let rg = reader.get_row_group(i).map_err(|e| e.to_string())?;
        for c in 0..md.row_group(i).num_columns() {
            let mut pages = rg.get_column_page_reader(c).map_err(|e| e.to_string())?;
            while let Some(p) = pages
                .get_next_page()
                .map_err(|e| format!("row group {i} column {c}: {e}"))?
            {
                let _ = p.num_values();
            }
        }
        rows += md.row_group(i).num_rows().max(0) as u64;
    }
    let metadata = md
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    Ok(ParquetContents {
        rows,
        row_groups: md.num_row_groups(),
        metadata,
    })
}

/// What [`recover_parquet`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetRepair {
    /// Rows in the file after repair.
    pub rows: u64,
    /// Bytes cut from the end (a row group that never reached the journal).
    pub truncated_bytes: u64,
}

/// Closes a live Parquet file whose process died: cuts it after the last journalled
/// row group and writes the footer from the journal (with `extra` key-value metadata,
/// such as the drop counts the sidecar knows), then removes the journal. A file that
/// already has its footer (closed cleanly) is left as it is.
pub fn recover_parquet(path: &Path, extra: &[(String, String)]) -> Result<ParquetRepair, String> {
    let jpath = journal_path(path);
    if !jpath.exists() {
        let c = read_parquet(path)?;
        return Ok(ParquetRepair {
            rows: c.rows,
            truncated_bytes: 0,
        });
    }
    let mut journal = Vec::new();
    File::open(&jpath)
        .and_then(|mut f| f.read_to_end(&mut journal))
        .map_err(|e| format!("{}: {e}", jpath.display()))?;
    let mut metas = Vec::new();
    let mut at = 0usize;
    while let Some(len) = journal.get(at..at + 4) {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(body) = journal.get(at + 4..at + 4 + len) else {
            break; // a record cut by the crash
        };
        let Some(sum) = journal.get(at + 4 + len..at + 8 + len) else {
            break;
        };
        if Sha256::digest(body)[..4] != *sum || len < 8 {
            break;
        }
        let md = ParquetMetaDataReader::decode_metadata(&body[..len - 8])
            .map_err(|e| format!("journal record at byte {at}: {e}"))?;
        metas.push(md);
        at += 8 + len;
    }
    let Some(head) = metas.first() else {
        return Err(format!("{} holds no schema record", jpath.display()));
    };
    let schema = head.file_metadata().schema_descr().root_schema_ptr();
    let mut kv = head
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    kv.extend(
        extra
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );
    let row_groups: Vec<RowGroupMetaData> = metas
        .iter()
        .skip(1)
        .flat_map(|m| m.row_groups().iter().cloned())
        .collect();
    let end = row_groups
        .iter()
        .flat_map(|rg| rg.columns().iter().map(|c| c.byte_range()))
        .map(|(start, len)| start + len)
        .max()
        .unwrap_or(4);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len < end {
        return Err(format!(
            "the journal lists row groups up to byte {end} but the file has {len} bytes"
        ));
    }
    let rows = row_groups
        .iter()
        .map(|rg| rg.num_rows().max(0) as u64)
        .sum();
    let footer = footer_bytes(&schema, Some(kv), row_groups).map_err(|e| e.to_string())?;
    let io_err = |e: io::Error| format!("{}: {e}", path.display());
    file.set_len(end).map_err(io_err)?;
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(end)).map_err(io_err)?;
    if end == 4 {
        // No row group: make sure the leading magic is there.
        file.seek(io::SeekFrom::Start(0)).map_err(io_err)?;
        file.write_all(b"PAR1").map_err(io_err)?;
    }
    file.write_all(&footer).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    std::fs::remove_file(&jpath).map_err(|e| format!("{}: {e}", jpath.display()))?;
    Ok(ParquetRepair {
        rows,
        truncated_bytes: len - end,
    })
}
