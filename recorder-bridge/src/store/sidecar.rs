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

/// The standard CSV layout's settings, kept so `verify` and `recover` know what the
/// file should hold. Absent in sidecars of files with the default settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CsvMeta {
    /// Whose conventions the file follows (`kwik` or `xiao`).
    pub compat: String,
    /// Fixed decimals of the float cells; `None` for the shortest exact text.
    pub decimals: Option<u8>,
    /// Whether the file starts with `#` comment lines.
    pub comment_header: bool,
}

/// The XIAO recorder's sidecar fields, written beside KWIK's own (with the same values)
/// when a recording is made with `--compat xiao`, so its notebooks read them unchanged.
/// `session_id` is shared with KWIK's field of that name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XiaoSidecarFields {
    /// Start time, RFC 3339.
    pub start_time: String,
    /// End time, RFC 3339.
    pub end_time: Option<String>,
    /// Duration in seconds.
    pub duration_seconds: f64,
    /// Samples in the data files.
    pub total_samples: u64,
    /// Samples per second over the duration.
    pub average_sample_rate_hz: f64,
    /// The data file as the recorder named it.
    pub file_path: String,
    /// Total size of the data files in bytes.
    pub file_size_bytes: u64,
    /// Device name and how it was connected.
    pub device_info: XiaoDeviceInfo,
    /// The recording settings.
    pub recording_settings: BTreeMap<String, String>,
}

/// `device_info` of the XIAO recorder's sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XiaoDeviceInfo {
    /// Device name.
    pub name: String,
    /// `USB serial`, `BLE`, `simulator`, `KWIK` (remote) or the device kind as given.
    pub connection_type: String,
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
    /// CSV settings other than the defaults, when `format` is `csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<CsvMeta>,
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
    /// The XIAO recorder's field names, for `--compat xiao` recordings.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub xiao: Option<XiaoSidecarFields>,
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

    /// Whose CSV conventions the data files follow (KWIK's when not recorded).
    pub fn csv_compat(&self) -> crate::format::compat::CsvCompat {
        self.csv
            .as_ref()
            .and_then(|c| crate::format::compat::CsvCompat::from_name(&c.compat))
            .unwrap_or_default()
    }

    /// Fills the XIAO recorder's fields from KWIK's (for `--compat xiao` recordings;
    /// no-op otherwise). `file_path` is kept once set.
    pub fn refresh_xiao_fields(&mut self, file_path: &Path) {
        if self.csv_compat() != crate::format::compat::CsvCompat::Xiao {
            return;
        }
        let kind = self.device.get("kind").cloned().unwrap_or_default();
        let connection_type = if kind.contains("serial") {
            "USB serial".to_owned()
        } else if kind.contains("ble") {
            "BLE".to_owned()
        } else if kind.contains("kwik") || kind.contains("remote") {
            "KWIK".to_owned()
        } else {
            kind
        };
        let file_path = match &self.xiao {
            Some(x) => x.file_path.clone(),
            None => file_path.display().to_string(),
        };
        self.xiao = Some(XiaoSidecarFields {
            start_time: self.start_utc.clone(),
            end_time: self.end_utc.clone(),
            duration_seconds: self.duration_s,
            total_samples: self.samples,
            average_sample_rate_hz: self.average_rate_hz,
            file_path,
            file_size_bytes: self.file_size,
            device_info: XiaoDeviceInfo {
                name: self.device.get("name").cloned().unwrap_or_default(),
                connection_type,
            },
            recording_settings: self.settings.clone(),
        });
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
            csv: None,
            xiao: None,
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
