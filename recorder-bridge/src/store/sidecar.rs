//! The `.meta.json` sidecar next to each data file, written atomically (temp file,
//! fsync, rename, fsync of the directory) so a crash leaves either the old or the new
//! version, never a torn one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::file_writer::PartInfo;

/// Version of the sidecar layout.
pub const SIDECAR_VERSION: u32 = 1;

/// Where a recording is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecordingState {
    /// Still being written (or the process died: run `kwik-record recover`).
    Recording,
    /// Closed cleanly.
    Finished,
    /// Stopped by a write error; the files hold what was written before it.
    Failed,
    /// Repaired by `kwik-record recover` after the process died.
    Recovered,
}

/// Samples lost, per pipeline stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DroppedCounts {
    /// Numbered by the device but never received intact (sequence gaps: lost on the
    /// link, or in frames that arrived corrupt), as the source reported them. Absent
    /// in sidecars written before this stage was counted.
    #[serde(default)]
    pub source: u64,
    /// Overwritten in the ring buffer before the recorder read them.
    pub ring: u64,
    /// Dropped by the exporter because both buffers were full.
    pub exporter: u64,
    /// Delivered to the writer but not in any file (write error, or after a size limit
    /// stop), or, after `recover`, produced but in no file when the process died.
    pub writer: u64,
}

impl DroppedCounts {
    /// Sum over all stages (saturating: a sidecar read from disk may hold anything).
    pub fn total(&self) -> u64 {
        self.source.saturating_add(self.recorder())
    }

    /// Lost inside the recorder: ring, exporter and writer (every stage but `source`),
    /// saturating.
    pub fn recorder(&self) -> u64 {
        self.ring
            .saturating_add(self.exporter)
            .saturating_add(self.writer)
    }
}

/// One data file of a recording, as stored in the sidecar (file name relative to the
/// sidecar's directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    /// File name.
    pub file: String,
    /// Samples in the file.
    pub samples: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 (hex) of the file, once closed.
    pub sha256: Option<String>,
}

impl PartMeta {
    /// From a writer's part info.
    pub fn from_part(p: &PartInfo) -> Self {
        PartMeta {
            file: file_name(&p.path),
            samples: p.samples,
            bytes: p.bytes,
            sha256: p.sha256.clone(),
        }
    }
}

pub(crate) fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The LabVIEW layout's settings, kept so `verify` can re-read the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabviewMeta {
    /// Samples per block.
    pub block: usize,
    /// The six constant rows.
    pub constants: Vec<String>,
}

/// The sidecar of one stream of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    /// Layout version ([`SIDECAR_VERSION`]).
    pub version: u32,
    /// Session id (shared by every stream of a recording group).
    pub session_id: String,
    /// Stream name within the group.
    pub stream: String,
    /// Schema name.
    pub schema: String,
    /// `csv` or `labview`.
    pub format: String,
    /// LabVIEW settings, when `format` is `labview`.
    pub labview: Option<LabviewMeta>,
    /// Life-cycle state.
    pub state: RecordingState,
    /// Start time (the group's t0) in UTC, RFC 3339 with offset.
    pub start_utc: String,
    /// End time in UTC (set when finalised; last refresh time while recording).
    pub end_utc: Option<String>,
    /// Duration in seconds.
    pub duration_s: f64,
    /// Samples in the data files.
    pub samples: u64,
    /// Samples produced by the source since the start (those it reported lost before
    /// they reached the recorder included).
    pub produced: u64,
    /// Samples skipped because they were on inactive lines (active-lines-only option);
    /// not a loss.
    pub filtered_inactive: u64,
    /// Samples lost per stage.
    pub dropped: DroppedCounts,
    /// Average recorded rate (samples / duration), in Hz.
    pub average_rate_hz: f64,
    /// Total size of the data files in bytes.
    pub file_size: u64,
    /// SHA-256 of the data file (single-part recordings, once closed).
    pub sha256: Option<String>,
    /// The data files, in order.
    pub parts: Vec<PartMeta>,
    /// Device description (name, kind, firmware, ...).
    pub device: BTreeMap<String, String>,
    /// Recording settings (rates, limits, layout, ...).
    pub settings: BTreeMap<String, String>,
    /// Why the recording stopped (`stopped`, `duration limit`, `size limit`, `write
    /// error: ...`, `disk nearly full`).
    pub stop_reason: Option<String>,
    /// Warnings raised while recording (free disk, drops).
    pub warnings: Vec<String>,
}

/// Why a sidecar could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SidecarError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is not a valid sidecar.
    #[error("{path} is not a valid sidecar: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
}

/// The sidecar path of a data file: `<stem>.meta.json`, with any `_partNNN` suffix
/// removed from the stem. A `.meta.json` path is returned as is.
pub fn sidecar_path(data: &Path) -> PathBuf {
    let name = file_name(data);
    if name.ends_with(".meta.json") {
        return data.to_path_buf();
    }
    let stem = data
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = match stem.rsplit_once("_part") {
        Some((b, n)) if n.len() == 3 && n.bytes().all(|c| c.is_ascii_digit()) => b.to_owned(),
        _ => stem,
    };
    data.with_file_name(format!("{base}.meta.json"))
}

impl Sidecar {
    /// Why the counts of a finished or recovered recording do not balance (`produced`
    /// must equal `samples + filtered_inactive + dropped`), or `None` when they do or
    /// the recording is neither. Never overflows, whatever the file holds.
    pub fn accounting_problem(&self) -> Option<String> {
        if !matches!(
            self.state,
            RecordingState::Finished | RecordingState::Recovered
        ) {
            return None;
        }
        let accounted = self
            .samples
            .checked_add(self.filtered_inactive)
            .and_then(|n| n.checked_add(self.dropped.total()));
        if accounted == Some(self.produced) {
            return None;
        }
        Some(format!(
            "accounting does not balance: produced {} != recorded {} + filtered {} + dropped {}",
            self.produced,
            self.samples,
            self.filtered_inactive,
            self.dropped.total()
        ))
    }

    /// Writes atomically: temp file in the same directory, fsync, rename, fsync dir.
    pub fn write_atomic(&self, path: &Path) -> Result<(), SidecarError> {
        let io_err = |source| SidecarError::Io {
            path: path.to_path_buf(),
            source,
        };
        let json = serde_json::to_vec_pretty(self).map_err(|source| SidecarError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let tmp = path.with_extension("json.tmp");
        let mut f = fs::File::create(&tmp).map_err(io_err)?;
        f.write_all(&json).map_err(io_err)?;
        f.write_all(b"\n").map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err)?;
        if let Some(dir) = path.parent() {
            // Makes the rename itself durable; not every filesystem allows it.
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Reads a sidecar.
    pub fn read(path: &Path) -> Result<Self, SidecarError> {
        let bytes = fs::read(path).map_err(|source| SidecarError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| SidecarError::Json {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A finished sidecar with these counts (test fixture).
    pub(crate) fn finished(produced: u64, samples: u64, dropped: DroppedCounts) -> Sidecar {
        Sidecar {
            version: SIDECAR_VERSION,
            session_id: "s".into(),
            stream: "imu".into(),
            schema: "xiao-imu".into(),
            format: "csv".into(),
            labview: None,
            state: RecordingState::Finished,
            start_utc: "2026-01-01T00:00:00Z".into(),
            end_utc: None,
            duration_s: 1.0,
            samples,
            produced,
            filtered_inactive: 0,
            dropped,
            average_rate_hz: 0.0,
            file_size: 0,
            sha256: None,
            parts: Vec::new(),
            device: BTreeMap::new(),
            settings: BTreeMap::new(),
            stop_reason: None,
            warnings: Vec::new(),
        }
    }

    /// A sidecar from disk may hold any count: the accounting check reports counts
    /// that overflow instead of panicking on the sum.
    #[test]
    fn accounting_of_huge_counts_is_a_problem_not_an_overflow() {
        let huge = DroppedCounts {
            source: u64::MAX,
            ring: u64::MAX,
            exporter: 1,
            writer: 1,
        };
        assert_eq!(huge.total(), u64::MAX);
        assert!(finished(u64::MAX, 1, huge).accounting_problem().is_some());
        let none = DroppedCounts::default();
        assert!(
            finished(u64::MAX, u64::MAX, none)
                .accounting_problem()
                .is_none()
        );
        let some = DroppedCounts { ring: 2, ..none };
        assert!(finished(10, 8, some).accounting_problem().is_none());
        assert!(finished(10, 9, some).accounting_problem().is_some());
    }

    #[test]
    fn sidecar_of_parts_is_the_base_sidecar() {
        assert_eq!(
            sidecar_path(Path::new("/r/x_20250101_000000_part002.csv")),
            Path::new("/r/x_20250101_000000.meta.json")
        );
        assert_eq!(
            sidecar_path(Path::new("/r/x_20250101_000000.csv")),
            Path::new("/r/x_20250101_000000.meta.json")
        );
    }
}
