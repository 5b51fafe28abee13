//! Settings of a recording group, its id and why it may refuse to start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::format::encoder::{EncoderError, Format};
use crate::store::exporter::{ExportConfig, OverflowPolicy};
use crate::store::file_writer::{SizeLimitAction, WriteFault};
use crate::store::sidecar::SidecarError;

/// Identifier of one recording (128 random bits, hex): the `session=` of the comment
/// header and the `session_id` of the sidecar and status.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RecordingId(pub String);

impl RecordingId {
    /// A fresh random id.
    pub fn random() -> Self {
        RecordingId(format!("{:032x}", rand::random::<u128>()))
    }
}

/// A file-name prefix: 1-64 characters of `A-Z a-z 0-9 - _ .`, not starting with `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

/// A prefix that cannot be used in a file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "prefix {0:?} is not usable in a file name; use 1-64 characters from A-Z a-z 0-9 - _ . (not starting with a dot)"
)]
pub struct PrefixError(pub String);

impl TryFrom<&str> for Prefix {
    type Error = PrefixError;
    fn try_from(s: &str) -> Result<Self, PrefixError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Prefix(s.to_owned()))
        } else {
            Err(PrefixError(s.to_owned()))
        }
    }
}

impl Prefix {
    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which samples are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LineFilter {
    /// Every sample (default).
    #[default]
    All,
    /// Only samples on active lines; the others are counted as `filtered_inactive`.
    ActiveOnly,
}

/// Where a sample's segment marker comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SegmentMarking {
    /// The recorder stamps each sample with the group's current marker
    /// ([`Recording::set_segment`]) as it reads it (default).
    ///
    /// [`Recording::set_segment`]: crate::recording::group::Recording::set_segment
    #[default]
    Group,
    /// Samples arrive already stamped (a device that knows its scan state).
    FromSamples,
}

/// Settings of a recording group.
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// Root folder; files go to `<out_dir>/YYYY-MM-DD/` (default `recordings`).
    pub out_dir: PathBuf,
    /// File-name prefix (default `rec`).
    pub prefix: Prefix,
    /// Layout of the data files (default standard CSV).
    pub format: Format,
    /// Stop after this long (default: no limit).
    pub duration_limit: Option<Duration>,
    /// Size limit per data file in bytes (default: none).
    pub size_limit: Option<u64>,
    /// What the size limit does (default stop).
    pub on_size_limit: SizeLimitAction,
    /// Exporter batch, flush interval and overflow policy. The default policy here is
    /// [`OverflowPolicy::Reject`]: when both buffers are full the stream's worker leaves
    /// samples in the ring and retries, so the ring (sized by the caller) absorbs a slow
    /// disk and a loss shows up as ring drops. The acquisition never waits either way.
    /// With [`OverflowPolicy::DropNewest`] the exporter drops and counts instead.
    pub export: ExportConfig,
    /// fsync data at least this often (default 1 s): the most a crash can lose.
    pub sync_interval: Duration,
    /// Sidecar refresh and free-disk check interval (default 1 s).
    pub status_interval: Duration,
    /// How often a worker polls its ring when it found nothing (default 5 ms).
    pub poll_interval: Duration,
    /// Active-lines-only option (default all samples).
    pub lines: LineFilter,
    /// Where segment markers come from (default the group).
    pub segments: SegmentMarking,
    /// Refuse to start, and stop cleanly, when free space falls below this (default
    /// 64 MiB).
    pub min_free_bytes: u64,
    /// Warn when the projected time to a full disk is shorter than this (default 10 min).
    pub warn_time_to_full: Duration,
    /// Device description written to the comment header and the sidecar.
    pub device: BTreeMap<String, String>,
    /// Extra settings written to the comment header and the sidecar.
    pub settings: BTreeMap<String, String>,
    /// Injected write failure (tests of the error path).
    pub write_fault: Option<WriteFault>,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            out_dir: PathBuf::from("recordings"),
            prefix: Prefix("rec".into()),
            format: Format::default(),
            duration_limit: None,
            size_limit: None,
            on_size_limit: SizeLimitAction::Stop,
            export: ExportConfig {
                overflow: OverflowPolicy::Reject,
                ..ExportConfig::default()
            },
            sync_interval: Duration::from_secs(1),
            status_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(5),
            lines: LineFilter::All,
            segments: SegmentMarking::Group,
            min_free_bytes: 64 << 20,
            warn_time_to_full: Duration::from_secs(600),
            device: BTreeMap::new(),
            settings: BTreeMap::new(),
            write_fault: None,
        }
    }
}

/// Why a recording could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The group has no streams.
    #[error("no stream to record; add at least one stream to the group")]
    NoStreams,
    /// Two streams have the same name.
    #[error("two streams are named {0:?}; give every stream of a group its own name")]
    DuplicateStream(String),
    /// The layout does not fit a stream's schema.
    #[error(transparent)]
    Format(#[from] EncoderError),
    /// The output folder could not be created or examined.
    #[error("cannot use output folder {path}: {source}; check the path and its permissions")]
    OutputDir {
        /// The folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not enough free space.
    #[error(
        "only {free} bytes free in {path}, below the {min} byte reserve; free some space or record elsewhere with --out"
    )]
    DiskFull {
        /// The folder.
        path: PathBuf,
        /// Free bytes.
        free: u64,
        /// The reserve.
        min: u64,
    },
    /// A data file could not be created.
    #[error("cannot create data file {path}: {source}")]
    DataFile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The sidecar could not be written.
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    /// A thread could not be started.
    #[error("cannot start a recorder thread: {0}")]
    Thread(std::io::Error),
}

/// The settings written to the comment header and the sidecar: the configured extras
/// and what the recorder itself was told.
pub(crate) fn settings_of(c: &RecordingConfig) -> BTreeMap<String, String> {
    let mut s = c.settings.clone();
    s.insert("format".into(), c.format.name().into());
    if let Format::Labview(l) = &c.format {
        s.insert("labview_block".into(), l.block().to_string());
    }
    if let Format::Csv(o) = &c.format {
        if let crate::format::number::FloatText::Fixed(d) = o.floats {
            s.insert("decimals".into(), d.get().to_string());
        }
        if o.compat != crate::format::compat::CsvCompat::Kwik {
            s.insert("compat".into(), o.compat.name().into());
        }
    }
    if let Some(d) = c.duration_limit {
        s.insert("duration_limit_s".into(), d.as_secs_f64().to_string());
    }
    if let Some(b) = c.size_limit {
        s.insert("size_limit_bytes".into(), b.to_string());
        s.insert(
            "on_size_limit".into(),
            match c.on_size_limit {
                SizeLimitAction::Split => "split".into(),
                _ => "stop".into(),
            },
        );
    }
    if c.lines == LineFilter::ActiveOnly {
        s.insert("lines".into(), "active-only".into());
    }
    s.insert("batch".into(), c.export.batch.to_string());
    s.insert(
        "sync_interval_ms".into(),
        c.sync_interval.as_millis().to_string(),
    );
    s
}
