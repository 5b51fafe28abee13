//! Settings of a recorder server and why it, or one of its streams, may fail to start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::format::encoder::Format;
use crate::recording::config::{RecordingConfig, StartError};
use crate::remote::server::arrivals::ArrivalLog;
use crate::remote::wire::StreamKey;

/// Settings of a [`RecorderServer`](crate::remote::server::RecorderServer).
#[derive(Debug, Clone)]
pub struct RecorderServerConfig {
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
    /// The layout of every stream's files, whatever the gateways ask (default `None`:
    /// what each gateway's start request asks, standard CSV or LabVIEW). With Parquet
    /// or MCAP a stream's backlog grows to two sync intervals of samples at its rate,
    /// since its samples count as written only once their row group or chunk is synced.
    pub format: Option<Format>,
}

impl Default for RecorderServerConfig {
    fn default() -> Self {
        RecorderServerConfig {
            out_dir: PathBuf::from("recordings"),
            recording: RecordingConfig::default(),
            ack_interval: Duration::from_millis(100),
            backlog_limit: 4096,
            ring_capacity: 16384,
            arrivals: None,
            format: None,
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
