//! The file side of the exporter: encodes batches into a data file, splits into
//! numbered parts or stops at a size limit, hashes what it writes, and syncs to disk at
//! a configurable interval. Runs on the exporter's writer thread, never on the
//! acquisition thread.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex as StdMutex, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::format::encoder::Encoder;
use crate::format::footer::Footer;
use crate::format::schema::Schema;
use crate::store::background_sync::BackgroundSync;
use crate::store::exporter::{BatchWriter, WriteOutcome};
use crate::store::hash::FileHasher;
use crate::sync::lock_std;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What to do when a data file reaches the size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SizeLimitAction {
    /// Close the file and stop the recording.
    #[default]
    Stop,
    /// Close the file and continue in the next numbered part (`_part002`, ...), at a
    /// row (or LabVIEW block) boundary, so no sample is lost or split.
    Split,
}

/// An injected write failure, for tests of the error path (a seam, not a feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteFault {
    /// Bytes (over all parts) the file may take before writes fail.
    pub after_bytes: u64,
    /// The OS error to fail with (e.g. `libc::ENOSPC`, `libc::EIO`).
    pub errno: i32,
}

/// Data-file settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// Path of the first part.
    pub path: PathBuf,
    /// Comment lines for the CSV comment header.
    pub comments: Vec<String>,
    /// Size limit per file in bytes (footer included), if any.
    pub size_limit: Option<u64>,
    /// What the size limit does.
    pub on_size_limit: SizeLimitAction,
    /// Sync data to disk at least this often (default 1 s): a crash loses at most this
    /// much (plus the time one sync takes on a slow disk). Shorter costs more disk
    /// flushes. The syncs run on a helper thread, so encoding never waits for them.
    pub sync_interval: Duration,
    /// Injected write failure (tests).
    pub fault: Option<WriteFault>,
}

/// One finished (or interrupted) data file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartInfo {
    /// File path.
    pub path: PathBuf,
    /// Samples in the file.
    pub samples: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file's bytes (hex), when the file was closed cleanly.
    pub sha256: Option<String>,
}

/// Why the file writer stopped before being closed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum WriterStop {
    /// The size limit with [`SizeLimitAction::Stop`].
    SizeLimit,
    /// A write or sync failed.
    Io {
        /// The OS error number, if any.
        errno: Option<i32>,
        /// The error text.
        message: String,
    },
}

/// Live progress of a file writer, readable from other threads.
#[derive(Debug, Default)]
pub struct FileProgress {
    bytes: AtomicU64,
    samples: AtomicU64,
    parts: AtomicU64,
    current: StdMutex<PathBuf>,
    stop: StdMutex<Option<WriterStop>>,
    /// Woken whenever the sample count changes (see [`FileProgress::set_waker`]).
    waker: OnceLock<Waker>,
}

impl FileProgress {
    /// Bytes written over all parts.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Samples written over all parts (including a LabVIEW block in progress).
    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }
    /// Parts opened so far.
    pub fn parts(&self) -> u64 {
        self.parts.load(Ordering::Relaxed)
    }
    /// The file being written.
    pub fn current_file(&self) -> PathBuf {
        match self.current.lock() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
    /// Why the writer stopped, if it did.
    pub fn stop(&self) -> Option<WriterStop> {
        match self.stop.lock() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Has the writer thread wake `waker` each time samples are counted written (a
    /// batch encoded, a part closed), so that whoever waits for the buffers to drain
    /// learns it at once instead of polling. Set once; later calls are ignored.
    pub fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    /// Adds `n` bytes written.
    pub(crate) fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Notes that the writer opened part `n`, at `path`.
    pub(crate) fn set_part(&self, n: u64, path: &Path) {
        *lock_std(&self.current) = path.to_path_buf();
        self.parts.store(n, Ordering::Relaxed);
    }

    /// Records why the writer stopped.
    pub(crate) fn set_stop(&self, stop: WriterStop) {
        *lock_std(&self.stop) = Some(stop);
        self.wake();
    }

    /// Adds `n` samples written and wakes the waker, if any.
    pub(crate) fn add_samples(&self, n: u64) {
        self.samples.fetch_add(n, Ordering::Relaxed);
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = self.waker.get() {
            w.wake_by_ref();
        }
    }
}

/// The final report of a file writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// Every part written, in order.
    pub parts: Vec<PartInfo>,
    /// Why the writer stopped early, if it did.
    pub stop: Option<WriterStop>,
}

/// Returns the path of part `n` (1-based): part 1 is `path` itself, later parts get a
/// `_partNNN` suffix before the extension.
pub fn part_path(path: &Path, n: u32) -> PathBuf {
    if n <= 1 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("data");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("csv");
    path.with_file_name(format!("{stem}_part{n:03}.{ext}"))
}

struct OpenPart {
    file: File,
    path: PathBuf,
    /// Samples encoded into this part (some may still be in `out`).
    samples: u64,
    bytes: u64,
    /// Bytes and samples known to be in the file (last successful write).
    flushed_bytes: u64,
    flushed_samples: u64,
}

/// A [`BatchWriter`] that writes one schema in one layout to data files.
pub struct FileWriter<S: Schema> {
    encoder: Encoder<S>,
    config: FileConfig,
    part: Option<OpenPart>,
    part_no: u32,
    done: Vec<PartInfo>,
    out: Vec<u8>,
    /// SHA-256 of the open part's bytes, computed off this thread for big blocks.
    hasher: FileHasher,
    total_bytes: u64,
    total_bytes_closed: u64,
    last_sync: Instant,
    dirty: bool,
    /// Interval syncs, off this thread.
    syncer: BackgroundSync,
    stop: Option<WriterStop>,
    progress: Arc<FileProgress>,
    dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl<S: Schema> std::fmt::Debug for FileWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("config", &self.config)
            .field("part_no", &self.part_no)
            .field("stop", &self.stop)
            .finish()
    }
}

const FOOTER_RESERVE: u64 = 64;

fn io_stop(e: &io::Error) -> WriterStop {
    WriterStop::Io {
        errno: e.raw_os_error(),
        message: e.to_string(),
    }
}

impl<S: Schema> FileWriter<S> {
    /// Creates the first part (refusing to overwrite an existing file) and writes its
    /// header. `dropped` reports this stream's losses so far, for the footer.
    pub fn create(
        encoder: Encoder<S>,
        config: FileConfig,
        dropped: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> io::Result<Self> {
        // Room for a block plus one run of rows: the buffer never grows (and is never
        // copied) on the fast path.
        let capacity = WRITE_BLOCK_BYTES + WRITE_BLOCK_ROWS * encoder.max_bytes_per_sample();
        let mut w = FileWriter {
            encoder,
            config,
            part: None,
            part_no: 0,
            done: Vec::new(),
            out: Vec::with_capacity(capacity),
            hasher: FileHasher::new(),
            total_bytes: 0,
            total_bytes_closed: 0,
            last_sync: Instant::now(),
            dirty: false,
            syncer: BackgroundSync::new(),
            stop: None,
            progress: Arc::new(FileProgress::default()),
            dropped,
        };
        w.open_next()?;
        w.write_out()?;
        Ok(w)
    }

    /// Live progress.
    pub fn progress(&self) -> Arc<FileProgress> {
        self.progress.clone()
    }

    fn open_next(&mut self) -> io::Result<()> {
        self.part_no += 1;
        let path = part_path(&self.config.path, self.part_no);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        *lock_std(&self.progress.current) = path.clone();
        self.progress
            .parts
            .store(u64::from(self.part_no), Ordering::Relaxed);
        self.part = Some(OpenPart {
            file,
            path,
            samples: 0,
            bytes: 0,
            flushed_bytes: 0,
            flushed_samples: 0,
        });
        self.encoder.begin(&self.config.comments, &mut self.out);
        Ok(())
    }

    /// Writes `self.out` to the open part.
    fn write_out(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let Some(part) = self.part.as_mut() else {
            self.out.clear();
            return Ok(());
        };
        let n = self.out.len() as u64;
        let res = match self.config.fault {
            Some(f) if self.total_bytes + n > f.after_bytes => {
                // Write what fits, as a full disk would, then fail.
                let room = f.after_bytes.saturating_sub(self.total_bytes) as usize;
                let _ = part.file.write_all(&self.out[..room]);
                self.total_bytes += room as u64;
                Err(io::Error::from_raw_os_error(f.errno))
            }
            _ => part.file.write_all(&self.out),
        };
        res?;
        part.bytes += n;
        part.flushed_bytes = part.bytes;
        part.flushed_samples = part.samples;
        self.total_bytes += n;
        self.progress.bytes.fetch_add(n, Ordering::Relaxed);
        // Hands the written bytes to the hasher; `out` comes back empty.
        self.hasher.update(&mut self.out);
        self.dirty = true;
        Ok(())
    }

    /// Ends the open part: footer (or partial LabVIEW block), sync, record it.
    fn close_part(&mut self) -> io::Result<()> {
        let Some(part) = self.part.as_ref() else {
            return Ok(());
        };
        let pending = self.encoder.pending() as u64;
        let footer = Footer {
            samples: part.samples + pending,
            dropped: (self.dropped)(),
        };
        self.encoder.finish(footer, &mut self.out);
        if let Some(p) = self.part.as_mut() {
            p.samples += pending;
        }
        self.progress.add_samples(pending);
        self.write_out()?;
        let Some(part) = self.part.take() else {
            return Ok(());
        };
        let mut sha256 = self.hasher.finish().map(hex::encode);
        if let Some((at, totals)) = self.encoder.totals_patch(part.samples) {
            // The header's totals were placeholders of the same length: overwrite them,
            // then hash the file as it now is (the running digest saw the placeholders).
            use std::os::unix::fs::FileExt;
            part.file.write_all_at(&totals, at as u64)?;
            sha256 = Some(hex::encode(hash_file(&part.path)?));
        }
        part.file.sync_all()?;
        self.dirty = false;
        self.total_bytes_closed += part.bytes;
        self.done.push(PartInfo {
            path: part.path,
            samples: part.samples,
            bytes: part.bytes,
            sha256,
        });
        Ok(())
    }

    /// True when the row just encoded at the end of `out` would push a part that
    /// already holds rows over the size limit.
    fn over_limit(&self) -> bool {
        let (Some(limit), Some(part)) = (self.config.size_limit, self.part.as_ref()) else {
            return false;
        };
        part.samples > 0 && part.bytes + self.out.len() as u64 + FOOTER_RESERVE > limit
    }

    fn set_stop(&mut self, stop: WriterStop) {
        *lock_std(&self.progress.stop) = Some(stop.clone());
        self.stop = Some(stop);
    }

    /// Stops after an I/O error, keeping what was written: the part is cut back to its
    /// last whole write (so it holds only whole rows), a footer is tried, and the part
    /// is recorded with the hash of exactly the bytes it holds.
    fn fail(&mut self, stop: WriterStop) {
        self.set_stop(stop);
        self.out.clear();
        let Some(mut part) = self.part.take() else {
            return;
        };
        let _ = part.file.set_len(part.flushed_bytes);
        // The cursor may be past the cut (a partial write): put it back at the end.
        let _ = part.file.seek(SeekFrom::Start(part.flushed_bytes));
        part.bytes = part.flushed_bytes;
        part.samples = part.flushed_samples;
        self.progress.bytes.store(
            self.total_bytes_closed + part.flushed_bytes,
            Ordering::Relaxed,
        );
        let mut footer = Vec::new();
        if let crate::format::encoder::Format::Csv(o) = self.encoder.format() {
            if o.compat.has_footer() {
                Footer {
                    samples: part.samples,
                    dropped: (self.dropped)(),
                }
                .write_for(o.compat, &mut footer);
            }
        }
        let fits = self.config.fault.is_none_or(|f| {
            part.flushed_bytes + self.total_bytes_closed + footer.len() as u64 <= f.after_bytes
        });
        if !footer.is_empty() && fits && part.file.write_all(&footer).is_ok() {
            part.bytes += footer.len() as u64;
            self.hasher.update(&mut footer);
        } else {
            let _ = part.file.set_len(part.flushed_bytes);
        }
        let _ = part.file.sync_all();
        self.progress.samples.store(
            self.done.iter().map(|p| p.samples).sum::<u64>() + part.samples,
            Ordering::Relaxed,
        );
        self.progress.wake();
        self.done.push(PartInfo {
            path: part.path,
            samples: part.samples,
            bytes: part.bytes,
            sha256: self.hasher.finish().map(hex::encode),
        });
    }
}

/// SHA-256 of a whole file, read back in blocks.
pub(crate) fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

/// Rows encoded per run on the fast path, and the size at which the encoded text is
/// written: blocks of a few hundred KiB keep the text in cache between encoding, hashing
/// and the copy into the page cache, while each `write` still moves a lot of bytes.
const WRITE_BLOCK_ROWS: usize = 512;
const WRITE_BLOCK_BYTES: usize = 256 * 1024;

impl<S: Schema> FileWriter<S> {
    /// How many more samples can be encoded without any of them reaching the size limit
    /// (unbounded without a limit).
    fn rows_within_limit(&self) -> usize {
        let (Some(limit), Some(part)) = (self.config.size_limit, self.part.as_ref()) else {
            return usize::MAX;
        };
        let used = part.bytes + self.out.len() as u64 + FOOTER_RESERVE;
        let room = usize::try_from(limit.saturating_sub(used)).unwrap_or(usize::MAX);
        // Samples held in a LabVIEW block come out with the next sample's block.
        (room / self.encoder.max_bytes_per_sample()).saturating_sub(self.encoder.pending())
    }

    fn count_emitted(&mut self, emitted: u64) {
        if let Some(p) = self.part.as_mut() {
            p.samples += emitted;
        }
        self.progress.add_samples(emitted);
    }

    /// Encodes one sample near the size limit: a row (or block) that would cross it
    /// goes to the next part, or stops the writer.
    fn write_one_checked(&mut self, sample: &S) -> io::Result<WriteOutcome> {
        let before = self.out.len();
        let held = self.encoder.pending() as u64;
        if !self.encoder.push(sample, &mut self.out) {
            return Ok(WriteOutcome::Continue); // held in a LabVIEW block
        }
        let emitted = held + 1;
        if self.over_limit() {
            // The new row (or block) goes to the next part, or nowhere.
            let tail = self.out.split_off(before);
            self.write_out()?;
            self.close_part()?;
            match self.config.on_size_limit {
                SizeLimitAction::Stop => {
                    self.set_stop(WriterStop::SizeLimit);
                    return Ok(WriteOutcome::Stop);
                }
                SizeLimitAction::Split => {
                    self.open_next()?;
                    self.out.extend_from_slice(&tail);
                }
            }
        }
        self.count_emitted(emitted);
        Ok(WriteOutcome::Continue)
    }
}

impl<S: Schema> BatchWriter<S> for FileWriter<S> {
    type Report = FileReport;

    fn write_batch(&mut self, batch: &[S]) -> WriteOutcome {
        if self.stop.is_some() || self.part.is_none() {
            return WriteOutcome::Stop;
        }
        let mut rest = batch;
        while !rest.is_empty() {
            let n = self
                .rows_within_limit()
                .min(rest.len())
                .min(WRITE_BLOCK_ROWS);
            let result = if n > 0 {
                // Fast path: these rows cannot reach the size limit, so they are encoded
                // in one run, counted once, and written as one block.
                let (run, tail) = rest.split_at(n);
                rest = tail;
                let emitted = self.encoder.push_all(run, &mut self.out) as u64;
                self.count_emitted(emitted);
                if self.out.len() >= WRITE_BLOCK_BYTES {
                    self.write_out()
                } else {
                    Ok(())
                }
            } else {
                let Some((sample, tail)) = rest.split_first() else {
                    break;
                };
                rest = tail;
                match self.write_one_checked(sample) {
                    Ok(WriteOutcome::Continue) => Ok(()),
                    Ok(WriteOutcome::Stop) => return WriteOutcome::Stop,
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = result {
                self.fail(io_stop(&e));
                return WriteOutcome::Stop;
            }
        }
        if let Err(e) = self.write_out() {
            self.fail(io_stop(&e));
            return WriteOutcome::Stop;
        }
        WriteOutcome::Continue
    }

    fn tick(&mut self) -> WriteOutcome {
        if self.stop.is_some() {
            return WriteOutcome::Stop;
        }
        if let Some((errno, message)) = self.syncer.failure() {
            self.fail(WriterStop::Io { errno, message });
            return WriteOutcome::Stop;
        }
        if self.dirty && self.last_sync.elapsed() >= self.config.sync_interval {
            // The sync runs on a helper thread: encoding goes on while the disk
            // flushes. If the last one is still running, ask again at the next tick.
            let asked = match self.part.as_ref() {
                Some(p) => self.syncer.request(&p.file),
                None => Ok(true),
            };
            match asked {
                Ok(true) => {
                    self.dirty = false;
                    self.last_sync = Instant::now();
                }
                Ok(false) => {}
                Err(e) => {
                    self.fail(io_stop(&e));
                    return WriteOutcome::Stop;
                }
            }
        }
        WriteOutcome::Continue
    }

    fn finish(mut self) -> FileReport {
        if self.stop.is_none() {
            if let Err(e) = self.close_part() {
                self.fail(io_stop(&e));
            }
        }
        FileReport {
            parts: self.done,
            stop: self.stop,
        }
    }
}
