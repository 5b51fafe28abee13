//! Which files of a recordings folder are ready to upload, read from the sidecars.
//!
//! A data part is ready once it is closed: when its recording has ended (the sidecar's
//! state is no longer `recording`), or earlier when the sidecar already lists a later
//! part (a split recording moved on). A sidecar is ready once its recording has ended
//! and the store has confirmed every one of its parts; it goes last, so a sidecar in the
//! store always finds its parts there. A recording whose sidecar is confirmed too is
//! complete, and its local files are up for removal by the retention rule.

use std::path::{Path, PathBuf};

use crate::store::parquet::journal_path;
use crate::store::sidecar::{RecordingState, Sidecar};
use crate::upload::journal::{STATE_DIR, UploadJournal, UploadLedger};

/// One thing a pass over the folder found to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Work {
    /// Upload this file (relative to the recordings folder).
    Upload(PathBuf),
    /// Every file of this recording is confirmed; `files` are its local files
    /// (relative), the sidecar last, and `helpers` the recorder's own files next to them
    /// (sequence and Parquet journals) that go with them.
    Complete {
        /// The data parts and the sidecar.
        files: Vec<PathBuf>,
        /// Sequence journals and Parquet recovery journals of the parts, where present.
        helpers: Vec<PathBuf>,
    },
}

/// How deep below the recordings folder sidecars are looked for
/// (`<device>/<day>/<file>` is three levels).
const DEPTH: usize = 4;

/// The work in the recordings folder `root`: uploads of ready files not yet confirmed
/// (nor in flight in `journal`, which the uploader resumes first) and complete
/// recordings.
pub(crate) fn scan(root: &Path, ledger: &UploadLedger, journal: &UploadJournal) -> Vec<Work> {
    let mut sidecars = Vec::new();
    find_sidecars(root, DEPTH, &mut sidecars);
    sidecars.sort();
    let mut uploads = Vec::new();
    let mut complete = Vec::new();
    for sc_path in sidecars {
        // A sidecar is replaced atomically, so an unreadable one is not a torn write:
        // it is left for `verify` to report.
        let Ok(sc) = Sidecar::read(&sc_path) else {
            continue;
        };
        let Some(dir) = sc_path.parent() else {
            continue;
        };
        let ended = sc.state != RecordingState::Recording;
        let mut all_confirmed = ended;
        let mut files = Vec::new();
        let mut helpers = Vec::new();
        for (i, part) in sc.parts.iter().enumerate() {
            let local = dir.join(&part.file);
            let Ok(rel) = local.strip_prefix(root).map(Path::to_path_buf) else {
                all_confirmed = false;
                continue;
            };
            let closed = ended || i + 1 < sc.parts.len();
            let size = std::fs::metadata(&local).map(|m| m.len()).ok();
            let confirmed = ledger.get(&rel).is_some_and(|u| {
                Some(u.size) == size && part.sha256.as_ref().is_none_or(|s| *s == u.sha256)
            });
            if !confirmed {
                all_confirmed = false;
                if closed && size.is_some() && journal.get(&rel).is_none() {
                    uploads.push(Work::Upload(rel.clone()));
                }
            }
            for h in [local.with_extension("seq"), journal_path(&local)] {
                if h.exists() {
                    if let Ok(r) = h.strip_prefix(root) {
                        helpers.push(r.to_path_buf());
                    }
                }
            }
            files.push(rel);
        }
        if !all_confirmed {
            continue;
        }
        let Ok(rel) = sc_path.strip_prefix(root).map(Path::to_path_buf) else {
            continue;
        };
        let size = std::fs::metadata(&sc_path).map(|m| m.len()).ok();
        if ledger.get(&rel).is_some_and(|u| Some(u.size) == size) {
            files.push(rel);
            complete.push(Work::Complete { files, helpers });
        } else if journal.get(&rel).is_none() {
            complete.push(Work::Upload(rel));
        }
    }
    uploads.extend(complete);
    uploads
}

fn find_sidecars(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if p.is_dir() {
            if depth > 0 && name != STATE_DIR {
                find_sidecars(&p, depth - 1, out);
            }
        } else if name.ends_with(".meta.json") {
            out.push(p);
        }
    }
}
