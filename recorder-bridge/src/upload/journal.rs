//! What the uploader has in flight and what the store has confirmed, in two small JSON
//! files under `<recordings>/.kwik-upload/`, each rewritten atomically (temp file, fsync,
//! rename, fsync of the folder) after every step, so a crash or `kill -9` leaves one
//! whole version:
//!
//! * `journal.json` — one [`JournalEntry`] per file being uploaded: the object key, the
//!   local path, size and SHA-256, and for a multipart upload its upload id and the
//!   ETags of the parts already stored. A restarted uploader continues each entry from
//!   there, or restarts it under the same key (so one part never becomes two objects).
//! * `uploaded.json` — one [`UploadedFile`] per local file whose object was verified,
//!   kept while the local copy is retained (`--keep-local`, `--keep-hours`), so that it
//!   is not uploaded again.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The folder of the uploader's files, below the recordings folder.
pub const STATE_DIR: &str = ".kwik-upload";

/// Why a journal file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Reading, writing or renaming the file failed.
    #[error("upload journal {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not the JSON the uploader writes.
    #[error(
        "upload journal {} is unreadable ({source}); move it away to start afresh (the \
         local recordings are untouched)",
        path.display()
    )]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// One file in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The object key.
    pub key: String,
    /// The file, relative to the recordings folder.
    pub path: PathBuf,
    /// Its size in bytes when the upload began.
    pub size: u64,
    /// Its SHA-256 (hex) when the upload began.
    pub sha256: String,
    /// Bytes per part of this upload (the setting when it began; a resumed upload keeps
    /// it so that its parts line up).
    pub part_size: u64,
    /// The multipart upload id, once the store gave one (none for a single PUT).
    pub upload_id: Option<String>,
    /// ETags of the parts stored so far, in order.
    pub parts: Vec<String>,
}

/// The files in flight, by local path.
#[derive(Debug)]
pub struct UploadJournal {
    file: PathBuf,
    entries: BTreeMap<PathBuf, JournalEntry>,
}

impl UploadJournal {
    /// Opens (or starts) the journal in `state_dir`.
    ///
    /// # Errors
    /// [`JournalError`] if the folder cannot be made or the file is unreadable.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        let file = state_dir.join("journal.json");
        let entries: Vec<JournalEntry> = load(&file)?;
        Ok(UploadJournal {
            file,
            entries: entries.into_iter().map(|e| (e.path.clone(), e)).collect(),
        })
    }

    /// The entries, by local path.
    pub fn entries(&self) -> impl Iterator<Item = &JournalEntry> {
        self.entries.values()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of files in flight.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry of the file at `path` (relative), if any.
    pub fn get(&self, path: &Path) -> Option<&JournalEntry> {
        self.entries.get(path)
    }

    /// Records `entry` (new or updated) durably.
    ///
    /// # Errors
    /// [`JournalError::Io`] if the file cannot be written; the entry is then not recorded.
    pub fn put(&mut self, entry: JournalEntry) -> Result<(), JournalError> {
        let old = self.entries.insert(entry.path.clone(), entry.clone());
        if let Err(e) = self.save() {
            match old {
                Some(o) => self.entries.insert(o.path.clone(), o),
                None => self.entries.remove(&entry.path),
            };
            return Err(e);
        }
        Ok(())
    }

    /// Removes the entry of `path` durably.
    ///
    /// # Errors
    /// [`JournalError::Io`] if the file cannot be written.
    pub fn remove(&mut self, path: &Path) -> Result<(), JournalError> {
        if self.entries.remove(path).is_some() {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), JournalError> {
        store(&self.file, &self.entries.values().collect::<Vec<_>>())
    }
}

/// One file whose object the store has confirmed, while its local copy is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedFile {
    /// The file, relative to the recordings folder.
    pub path: PathBuf,
    /// The object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 (hex), equal to the stored object's.
    pub sha256: String,
    /// When the store confirmed it, in seconds since the Unix epoch.
    pub confirmed_unix_s: u64,
}

/// The confirmed files whose local copies are still there, by local path.
#[derive(Debug)]
pub struct UploadLedger {
    file: PathBuf,
    entries: BTreeMap<PathBuf, UploadedFile>,
}

impl UploadLedger {
    /// Opens (or starts) the ledger in `state_dir`.
    ///
    /// # Errors
    /// [`JournalError`] if the file is unreadable.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        let file = state_dir.join("uploaded.json");
        let entries: Vec<UploadedFile> = load(&file)?;
        Ok(UploadLedger {
            file,
            entries: entries.into_iter().map(|e| (e.path.clone(), e)).collect(),
        })
    }

    /// The record of the file at `path` (relative), if it was confirmed.
    pub fn get(&self, path: &Path) -> Option<&UploadedFile> {
        self.entries.get(path)
    }

    /// Records a confirmed file durably.
    ///
    /// # Errors
    /// [`JournalError::Io`] if the file cannot be written.
    pub fn insert(&mut self, f: UploadedFile) -> Result<(), JournalError> {
        self.entries.insert(f.path.clone(), f);
        self.save()
    }

    /// Forgets the files at `paths` (their local copies were removed) durably.
    ///
    /// # Errors
    /// [`JournalError::Io`] if the file cannot be written.
    pub fn forget<'a>(
        &mut self,
        paths: impl IntoIterator<Item = &'a Path>,
    ) -> Result<(), JournalError> {
        let mut changed = false;
        for p in paths {
            changed |= self.entries.remove(p).is_some();
        }
        if changed {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), JournalError> {
        store(&self.file, &self.entries.values().collect::<Vec<_>>())
    }
}

fn load<T: DeserializeOwned>(file: &Path) -> Result<Vec<T>, JournalError> {
    match fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| JournalError::Json {
            path: file.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(JournalError::Io {
            path: file.to_path_buf(),
            source,
        }),
    }
}

fn store<T: Serialize>(file: &Path, value: &T) -> Result<(), JournalError> {
    let io = |source| JournalError::Io {
        path: file.to_path_buf(),
        source,
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io)?;
    // Serialising our own plain structs cannot fail.
    let json = serde_json::to_vec_pretty(value).map_err(|source| JournalError::Json {
        path: file.to_path_buf(),
        source,
    })?;
    let tmp = file.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(&json).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, file).map_err(io)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &str) -> JournalEntry {
        JournalEntry {
            key: format!("pre/{p}"),
            path: p.into(),
            size: 10,
            sha256: "ab".into(),
            part_size: 5 << 20,
            upload_id: None,
            parts: Vec::new(),
        }
    }

    #[test]
    fn entries_survive_a_reopen_and_removal_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = UploadJournal::open(dir.path()).unwrap();
        assert!(j.is_empty());
        j.put(entry("d/a.csv")).unwrap();
        let mut b = entry("d/b.csv");
        b.upload_id = Some("id-1".into());
        b.parts = vec!["e1".into(), "e2".into()];
        j.put(b.clone()).unwrap();
        let j2 = UploadJournal::open(dir.path()).unwrap();
        assert_eq!(j2.len(), 2);
        assert_eq!(j2.get(Path::new("d/b.csv")), Some(&b));
        let mut j2 = j2;
        j2.remove(Path::new("d/a.csv")).unwrap();
        assert_eq!(UploadJournal::open(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn a_torn_journal_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("journal.json"), b"[{\"key\":").unwrap();
        assert!(matches!(
            UploadJournal::open(dir.path()),
            Err(JournalError::Json { .. })
        ));
    }

    #[test]
    fn the_ledger_forgets_removed_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = UploadLedger::open(dir.path()).unwrap();
        l.insert(UploadedFile {
            path: "d/a.csv".into(),
            key: "k".into(),
            size: 1,
            sha256: "s".into(),
            confirmed_unix_s: 5,
        })
        .unwrap();
        assert!(
            UploadLedger::open(dir.path())
                .unwrap()
                .get(Path::new("d/a.csv"))
                .is_some()
        );
        l.forget([Path::new("d/a.csv")]).unwrap();
        assert!(
            UploadLedger::open(dir.path())
                .unwrap()
                .get(Path::new("d/a.csv"))
                .is_none()
        );
    }
}
