//! The uploader: a thread with its own single-threaded tokio runtime that resumes the
//! journal, then passes over the recordings folder (every `scan_interval`, at once again
//! after a pass that did something) uploading each ready file, verifying the stored
//! object's SHA-256 against the local file's, and applying the retention rule to
//! complete recordings.
//!
//! A failed request is retried with a capped exponential backoff and the local file is
//! never touched before its object is verified; refused credentials or a bad
//! configuration stop the uploader with the error (retrying cannot help), and the files
//! stay where they are for a later `kwik-record upload`. Blocking file reads happen on
//! the uploader's own thread, where nothing else runs.

use std::collections::HashSet;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

use crate::upload::connection::{RecordingStore, StoreConfig, StoreError};
use crate::upload::journal::{
    JournalEntry, JournalError, STATE_DIR, UploadJournal, UploadLedger, UploadedFile,
};
use crate::upload::scan::{Work, scan};

/// The smallest part S3 accepts for every part of a multipart upload but the last.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 << 30;

/// Bytes per part of a multipart upload: 5 MiB to 5 GiB. Files up to one part go up in a
/// single PUT; larger ones in parts of this size, each journalled once stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSize(u64);

/// A part size outside 5 MiB ..= 5 GiB.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("part size {0} bytes is outside 5 MiB ..= 5 GiB, the range S3 accepts")]
pub struct PartSizeError(pub u64);

impl PartSize {
    /// The size in bytes.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl Default for PartSize {
    /// 16 MiB: few requests for a typical part, little memory per request.
    fn default() -> Self {
        PartSize(16 << 20)
    }
}

impl TryFrom<u64> for PartSize {
    type Error = PartSizeError;
    fn try_from(n: u64) -> Result<Self, Self::Error> {
        if (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&n) {
            Ok(PartSize(n))
        } else {
            Err(PartSizeError(n))
        }
    }
}

/// What happens to the local files of a recording once the store has confirmed all of
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Remove them at once (the default).
    #[default]
    Remove,
    /// Keep them.
    Keep,
    /// Keep them this long after the last confirmation, then remove them.
    KeepFor(Duration),
}

/// How the uploader works.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// The store.
    pub store: StoreConfig,
    /// Multipart part size.
    pub part_size: PartSize,
    /// Local files after confirmation.
    pub retention: Retention,
    /// The longest wait between two attempts of a failed upload (default 30 s); the wait
    /// starts at 250 ms and doubles per failure in a row.
    pub retry_cap: Duration,
    /// How often the folder is looked at for new finished files (default 1 s).
    pub scan_interval: Duration,
    /// Upload at most this many bytes per second on average (default: no limit), so that
    /// a field machine's uplink keeps room for the live streams.
    pub bandwidth: Option<u64>,
}

impl UploadConfig {
    /// Defaults for `store`.
    pub fn new(store: StoreConfig) -> Self {
        UploadConfig {
            store,
            part_size: PartSize::default(),
            retention: Retention::default(),
            retry_cap: Duration::from_secs(30),
            scan_interval: Duration::from_secs(1),
            bandwidth: None,
        }
    }
}

/// Why the uploader could not start, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// A request to the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The journal or the ledger could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A local file could not be read.
    #[error("cannot read {} for upload: {source}", path.display())]
    Local {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file's path cannot be an object key (not UTF-8, or outside the folder).
    #[error("{} cannot be named in the store (not UTF-8?)", .0.display())]
    Key(PathBuf),
    /// The stored object differs from the local file after upload.
    #[error(
        "{key} in {url} holds {stored_size} bytes with SHA-256 {stored}, the local file \
         {local_size} bytes with {local}; uploading it again"
    )]
    Mismatch {
        /// The store.
        url: String,
        /// The object key.
        key: String,
        /// Size of the stored object.
        stored_size: u64,
        /// Its SHA-256.
        stored: String,
        /// Size of the local file.
        local_size: u64,
        /// Its SHA-256.
        local: String,
    },
    /// The uploader's thread could not be started.
    #[error("cannot start the upload thread: {0}")]
    Thread(std::io::Error),
}

impl UploadError {
    /// True when retrying cannot help (credentials, configuration, a broken journal).
    pub fn is_fatal(&self) -> bool {
        match self {
            UploadError::Store(e) => e.is_fatal(),
            UploadError::Journal(_) | UploadError::Key(_) | UploadError::Thread(_) => true,
            UploadError::Local { .. } | UploadError::Mismatch { .. } => false,
        }
    }
}

/// What the uploader did (cumulative).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UploadCounts {
    /// Files whose objects were stored and verified.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Multipart parts stored.
    pub parts: u64,
    /// Journal entries continued after a restart.
    pub resumed: u64,
    /// Uploads begun again under the same key (the store had forgotten the upload, or the
    /// stored object did not match).
    pub restarted: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Failed attempts (retried or not).
    pub failures: u64,
    /// Local files removed after confirmation (retention).
    pub removed_local: u64,
    /// Files waiting: in the journal or found ready but not yet stored.
    pub pending: u64,
}

/// The outcome of an uploader run.
#[derive(Debug, Clone, Serialize)]
pub struct UploadReport {
    /// `s3://bucket/prefix`.
    pub store: String,
    /// The counts.
    pub counts: UploadCounts,
    /// Why it stopped early (refused credentials, ...), if it did.
    pub error: Option<String>,
    /// The last failure that was retried, if any.
    pub last_failure: Option<String>,
}

impl UploadReport {
    /// True when everything found was stored and verified.
    pub fn is_complete(&self) -> bool {
        self.error.is_none() && self.counts.pending == 0
    }
}

#[derive(Debug, Default)]
struct Shared {
    counts: Mutex<UploadCounts>,
    last_failure: Mutex<Option<String>>,
}

impl Shared {
    fn count(&self, f: impl FnOnce(&mut UploadCounts)) {
        // A poisoned lock only means a panicking reader; the counts are plain numbers.
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c);
        metrics::gauge!("kwik_record_upload_pending").set(c.pending as f64);
    }

    fn counts(&self) -> UploadCounts {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A running uploader over one recordings folder.
#[derive(Debug)]
pub struct Uploader {
    shared: Arc<Shared>,
    finish: watch::Sender<Option<Instant>>,
    thread: std::thread::JoinHandle<UploadReport>,
}

impl Uploader {
    /// Starts uploading the finished recordings below `root` (and what the journal there
    /// has in flight) to the store.
    ///
    /// # Errors
    /// [`UploadError`] for a configuration the store client rejects, an unreadable
    /// journal, or no thread.
    pub fn spawn(root: &Path, config: UploadConfig) -> Result<Self, UploadError> {
        let store = RecordingStore::connect(&config.store)?;
        let state = root.join(STATE_DIR);
        let journal = UploadJournal::open(&state)?;
        let ledger = UploadLedger::open(&state)?;
        let shared = Arc::new(Shared::default());
        let (finish, finish_rx) = watch::channel(None);
        let task = Task {
            root: root.to_path_buf(),
            store,
            config,
            inherited: journal.entries().map(|e| e.path.clone()).collect(),
            journal,
            ledger,
            shared: shared.clone(),
            finish: finish_rx,
        };
        let thread = std::thread::Builder::new()
            .name("kwik-upload".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(task.run()),
                    Err(e) => task.report(Some(format!("cannot start the upload runtime: {e}"))),
                }
            })
            .map_err(UploadError::Thread)?;
        Ok(Uploader {
            shared,
            finish,
            thread,
        })
    }

    /// The counts so far.
    pub fn counts(&self) -> UploadCounts {
        self.shared.counts()
    }

    /// Uploads what is left (a last pass over the folder), waiting at most `wait`, and
    /// returns the report. What is not stored by then stays in the folder and the
    /// journal for the next run.
    pub fn finish(self, wait: Duration) -> UploadReport {
        let _ = self.finish.send(Some(Instant::now() + wait));
        let url_counts = self.shared.counts();
        self.thread.join().unwrap_or_else(|_| UploadReport {
            store: String::new(),
            counts: url_counts,
            error: Some("the upload thread panicked".into()),
            last_failure: None,
        })
    }
}

/// Whether an upload attempt loop ended with the file stored.
enum Outcome {
    Stored,
    /// The finish deadline passed first.
    OutOfTime,
    /// A fatal error: the uploader stops.
    Fatal(String),
}

struct Task {
    root: PathBuf,
    store: RecordingStore,
    config: UploadConfig,
    journal: UploadJournal,
    ledger: UploadLedger,
    /// Entries left by an earlier run, whose local file is hashed again before use.
    inherited: HashSet<PathBuf>,
    shared: Arc<Shared>,
    finish: watch::Receiver<Option<Instant>>,
}

impl Task {
    async fn run(mut self) -> UploadReport {
        // Day folders emptied by retention on an earlier day.
        for device in subfolders(&self.root) {
            for day in subfolders(&device) {
                remove_if_old_and_empty(&day);
            }
        }
        let resumed: Vec<PathBuf> = self.journal.entries().map(|e| e.path.clone()).collect();
        for rel in resumed {
            self.shared.count(|c| c.resumed += 1);
            tracing::info!(file = %rel.display(), store = %self.store.url(), "resuming upload");
            match self.upload(&rel).await {
                Outcome::Stored => {}
                Outcome::OutOfTime => return self.report(None),
                Outcome::Fatal(e) => return self.report(Some(e)),
            }
        }
        loop {
            let work = scan(&self.root, &self.ledger, &self.journal);
            let waiting = work.iter().filter(|w| matches!(w, Work::Upload(_))).count();
            let in_flight = self.journal.len();
            self.shared
                .count(|c| c.pending = (waiting + in_flight) as u64);
            let mut did = false;
            for w in work {
                match w {
                    Work::Upload(rel) => {
                        did = true;
                        match self.upload(&rel).await {
                            Outcome::Stored => self
                                .shared
                                .count(|c| c.pending = c.pending.saturating_sub(1)),
                            Outcome::OutOfTime => return self.report(None),
                            Outcome::Fatal(e) => return self.report(Some(e)),
                        }
                    }
                    Work::Complete { files, helpers } => match self.retire(&files, &helpers) {
                        Ok(removed) => did |= removed,
                        Err(e) => return self.report(Some(e.to_string())),
                    },
                }
            }
            if did {
                continue;
            }
            let deadline = *self.finish.borrow();
            if deadline.is_some() {
                // A pass that found nothing to do after the recorders stopped: done.
                return self.report(None);
            }
            let tick = tokio::time::sleep(self.config.scan_interval);
            tokio::select! {
                () = tick => {}
                _ = self.finish.changed() => {}
            }
        }
    }

    fn report(&self, error: Option<String>) -> UploadReport {
        let mut counts = self.shared.counts();
        if error.is_some() || counts.pending > 0 || !self.journal.is_empty() {
            // Count again what is left, for the report.
            let left = scan(&self.root, &self.ledger, &self.journal)
                .iter()
                .filter(|w| matches!(w, Work::Upload(_)))
                .count()
                + self.journal.len();
            counts.pending = left as u64;
            self.shared.count(|c| c.pending = left as u64);
        }
        UploadReport {
            store: self.store.url().to_string(),
            counts,
            error,
            last_failure: self
                .shared
                .last_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Uploads one file, retrying with a capped backoff until it is stored, the finish
    /// deadline passes, or a fatal error.
    async fn upload(&mut self, rel: &Path) -> Outcome {
        let mut failures_in_a_row = 0u32;
        loop {
            match self.upload_once(rel).await {
                Ok(()) => return Outcome::Stored,
                Err(e) if e.is_fatal() => {
                    self.shared.count(|c| c.failures += 1);
                    metrics::counter!("kwik_record_upload_failures_total").increment(1);
                    tracing::error!(file = %rel.display(), "upload stopped: {e}");
                    return Outcome::Fatal(e.to_string());
                }
                Err(e) => {
                    failures_in_a_row = failures_in_a_row.saturating_add(1);
                    let delay = backoff(failures_in_a_row, self.config.retry_cap);
                    self.shared.count(|c| {
                        c.failures += 1;
                        c.retries += 1;
                    });
                    metrics::counter!("kwik_record_upload_failures_total").increment(1);
                    metrics::counter!("kwik_record_upload_retries_total").increment(1);
                    tracing::warn!(
                        file = %rel.display(),
                        "upload failed: {e}; retry {failures_in_a_row} in {delay:?} (the local file is kept)"
                    );
                    *self
                        .shared
                        .last_failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    if !self.sleep(delay).await {
                        return Outcome::OutOfTime;
                    }
                }
            }
        }
    }

    /// Sleeps `d`, or less if the finish deadline comes first; false if it has passed.
    async fn sleep(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            let deadline = *self.finish.borrow();
            let end = deadline.map_or(until, |dl| dl.min(until));
            let tick = tokio::time::sleep_until(end.into());
            tokio::select! {
                () = tick => return deadline.is_none_or(|dl| until <= dl),
                r = self.finish.changed() => if r.is_err() {
                    // The handle is gone without finishing: sleep out the delay.
                    tokio::time::sleep_until(until.into()).await;
                    return true;
                },
            }
        }
    }

    fn local_error(path: &Path) -> impl FnOnce(std::io::Error) -> UploadError + '_ {
        move |source| UploadError::Local {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The journal entry for `rel`: the existing one if its file is unchanged, else a
    /// new one (an old multipart upload of a changed file is abandoned). `None` if the
    /// local file is gone (nothing can be uploaded; the entry is dropped).
    async fn entry(&mut self, rel: &Path) -> Result<Option<JournalEntry>, UploadError> {
        let local = self.root.join(rel);
        let size = match std::fs::metadata(&local) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(file = %local.display(), "in the upload journal but gone from the disk; forgetting it");
                self.journal.remove(rel)?;
                return Ok(None);
            }
            Err(e) => return Err(Self::local_error(&local)(e)),
        };
        if let Some(e) = self.journal.get(rel) {
            if !self.inherited.contains(rel) && e.size == size {
                return Ok(Some(e.clone()));
            }
        }
        let sha256 = hash_file(&local).map_err(Self::local_error(&local))?;
        if let Some(e) = self.journal.get(rel).cloned() {
            self.inherited.remove(rel);
            if e.size == size && e.sha256 == sha256 {
                return Ok(Some(e));
            }
            if let Some(id) = &e.upload_id {
                let _ = self.store.abort_multipart(&e.key, id).await;
            }
        }
        let key = self
            .store
            .url()
            .key_for(rel)
            .ok_or_else(|| UploadError::Key(rel.to_path_buf()))?;
        let e = JournalEntry {
            key,
            path: rel.to_path_buf(),
            size,
            sha256,
            part_size: self.config.part_size.get(),
            upload_id: None,
            parts: Vec::new(),
        };
        self.journal.put(e.clone())?;
        Ok(Some(e))
    }

    /// Begins the entry again under the same key (the store forgot the upload, or the
    /// stored object did not match).
    fn restart(&mut self, e: &mut JournalEntry) -> Result<(), UploadError> {
        e.upload_id = None;
        e.parts.clear();
        self.journal.put(e.clone())?;
        self.shared.count(|c| c.restarted += 1);
        Ok(())
    }

    async fn upload_once(&mut self, rel: &Path) -> Result<(), UploadError> {
        let Some(mut e) = self.entry(rel).await? else {
            return Ok(());
        };
        let local = self.root.join(rel);
        let mut pace = Pace::new(self.config.bandwidth);
        if e.size <= e.part_size {
            let data = read_range(&local, 0, e.size).map_err(Self::local_error(&local))?;
            self.store.put(&e.key, data).await?;
            pace.sent(e.size).await;
        } else {
            let id = match &e.upload_id {
                Some(id) => id.clone(),
                None => {
                    let id = self.store.create_multipart(&e.key).await?;
                    e.upload_id = Some(id.clone());
                    e.parts.clear();
                    self.journal.put(e.clone())?;
                    id
                }
            };
            let n = e.size.div_ceil(e.part_size) as usize;
            for idx in e.parts.len()..n {
                let at = idx as u64 * e.part_size;
                let len = e.part_size.min(e.size - at);
                let data = read_range(&local, at, len).map_err(Self::local_error(&local))?;
                match self.store.put_part(&e.key, &id, idx, data).await {
                    Ok(etag) => {
                        e.parts.push(etag);
                        self.journal.put(e.clone())?;
                        self.shared.count(|c| c.parts += 1);
                        pace.sent(len).await;
                    }
                    Err(err @ StoreError::NotFound { .. }) => {
                        self.restart(&mut e)?;
                        return Err(err.into());
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            match self.store.complete_multipart(&e.key, &id, &e.parts).await {
                Ok(()) => {}
                // Completed before a crash took the journal's last word with it: the
                // read-back below tells.
                Err(StoreError::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        match self.store.digest(&e.key).await? {
            Some((size, sha)) if size == e.size && sha == e.sha256 => {}
            other => {
                let (stored_size, stored) = other.unwrap_or((0, "none (no object)".into()));
                self.restart(&mut e)?;
                return Err(UploadError::Mismatch {
                    url: self.store.url().to_string(),
                    key: e.key,
                    stored_size,
                    stored,
                    local_size: e.size,
                    local: e.sha256,
                });
            }
        }
        self.ledger.insert(UploadedFile {
            path: rel.to_path_buf(),
            key: e.key.clone(),
            size: e.size,
            sha256: e.sha256.clone(),
            confirmed_unix_s: unix_now(),
        })?;
        self.journal.remove(rel)?;
        self.shared.count(|c| {
            c.files += 1;
            c.bytes += e.size;
        });
        metrics::counter!("kwik_record_upload_files_total").increment(1);
        metrics::counter!("kwik_record_upload_bytes_total").increment(e.size);
        tracing::info!(file = %rel.display(), key = %e.key, bytes = e.size, "uploaded and verified");
        Ok(())
    }

    /// Applies the retention rule to a complete recording; true if files were removed.
    fn retire(&mut self, files: &[PathBuf], helpers: &[PathBuf]) -> Result<bool, JournalError> {
        let newest = files
            .iter()
            .filter_map(|f| self.ledger.get(f).map(|u| u.confirmed_unix_s))
            .max()
            .unwrap_or(0);
        let due = match self.config.retention {
            Retention::Remove => true,
            Retention::Keep => false,
            Retention::KeepFor(d) => unix_now().saturating_sub(newest) >= d.as_secs(),
        };
        if !due {
            return Ok(false);
        }
        // Data parts and helpers first, the sidecar (last in `files`) at the end, so an
        // interruption leaves a sidecar whose confirmed parts the next pass finishes.
        let mut removed = 0;
        for f in helpers.iter().chain(files) {
            let p = self.root.join(f);
            match std::fs::remove_file(&p) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(file = %p.display(), "cannot remove the uploaded local copy: {e}");
                    return Ok(false);
                }
            }
        }
        self.ledger.forget(files.iter().map(PathBuf::as_path))?;
        self.shared.count(|c| c.removed_local += removed);
        if let Some(day) = files
            .first()
            .and_then(|f| self.root.join(f).parent().map(Path::to_path_buf))
        {
            remove_if_old_and_empty(&day);
        }
        Ok(true)
    }
}

fn subfolders(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes a recordings day folder (`<device>/YYYY-MM-DD`) once retention emptied it,
/// if its date is before yesterday (UTC): a recorder may still be about to write into
/// today's or yesterday's folder (a local midnight), and a folder removed under it
/// would fail its next file. A folder that is not empty, or not named by a date, stays.
pub(crate) fn remove_if_old_and_empty(day: &Path) {
    let Some(date) = day
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| chrono::NaiveDate::parse_from_str(n, "%Y-%m-%d").ok())
    else {
        return;
    };
    let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    if date < yesterday && std::fs::remove_dir(day).is_ok() {
        tracing::debug!(folder = %day.display(), "removed an emptied day folder");
    }
}

/// The wait before attempt `n + 1` after `n` failures in a row: 250 ms doubling, at most
/// `cap`.
fn backoff(n: u32, cap: Duration) -> Duration {
    let d = Duration::from_millis(250).saturating_mul(1u32 << n.saturating_sub(1).min(16));
    d.min(cap)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// SHA-256 (hex) of a file.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn read_range(path: &Path, at: u64, len: u64) -> std::io::Result<Bytes> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(at))?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// Keeps the average upload rate of one file at or below a limit.
struct Pace {
    limit: Option<u64>,
    start: Instant,
    sent: u64,
}

impl Pace {
    fn new(limit: Option<u64>) -> Self {
        Pace {
            limit,
            start: Instant::now(),
            sent: 0,
        }
    }

    async fn sent(&mut self, n: u64) {
        self.sent += n;
        if let Some(rate) = self.limit.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(self.sent as f64 / rate as f64);
            let elapsed = self.start.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_empty_day_folders_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("xiao");
        let today = chrono::Utc::now().date_naive();
        let name = |d: chrono::NaiveDate| dev.join(d.format("%Y-%m-%d").to_string());
        let old = name(today - chrono::Days::new(3));
        let old_full = name(today - chrono::Days::new(4));
        let recent = name(today - chrono::Days::new(1));
        let other = dev.join("notes");
        for d in [&old, &old_full, &recent, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(old_full.join("x.csv"), b"1").unwrap();
        for d in [&old, &old_full, &recent, &other] {
            remove_if_old_and_empty(d);
        }
        assert!(!old.exists());
        assert!(old_full.exists() && recent.exists() && other.exists());
    }

    #[test]
    fn part_sizes_outside_what_s3_takes_are_refused() {
        assert!(PartSize::try_from(MIN_PART_SIZE - 1).is_err());
        assert_eq!(PartSize::try_from(MIN_PART_SIZE).unwrap().get(), 5 << 20);
        assert!(PartSize::try_from(MAX_PART_SIZE + 1).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let cap = Duration::from_secs(2);
        assert_eq!(backoff(1, cap), Duration::from_millis(250));
        assert_eq!(backoff(2, cap), Duration::from_millis(500));
        assert_eq!(backoff(3, cap), Duration::from_secs(1));
        assert_eq!(backoff(4, cap), cap);
        assert_eq!(backoff(40, cap), cap);
    }
}
