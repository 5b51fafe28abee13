//! Sensor recording for the KWIK workspace: schemas, a ring buffer with drop detection,
//! a double-buffered exporter with its own writer thread, standard CSV and the legacy
//! LabVIEW layout, crash-safe files with a `.meta.json` sidecar, and recording groups.
//!
//! Layers, each using only the ones before it: [`format`](mod@format) (pure text:
//! schemas, numbers, the two layouts) → [`capture`] (the ring buffer, sources and the
//! producer thread that feeds a ring) → [`store`] (a writer thread swapping two
//! buffers, files, sidecars) → [`recording`] (groups, limits) → [`check`] (verify,
//! recover) → [`convert`] (export to other layouts) → [`remote`] (recording over KWIK) →
//! [`dashboard`] (the web dashboard: live plots, recorder panel, recordings browser);
//! [`upload`] copies finished recordings into S3-compatible object storage. The
//! `kwik-record` command line is a
//! separate package (`recorder-bridge/cli`) built on this library; every public item is
//! re-exported here at the root.
//!
//! ```
//! use kwik_recorder::{ImuRow, Schema, Encoder, Format};
//! let mut enc = Encoder::<ImuRow>::new(Format::default()).unwrap();
//! let mut out = Vec::new();
//! enc.begin(&[], &mut out);
//! enc.push(&ImuRow { millis: 5, ax: 0.5, ..ImuRow::default() }, &mut out);
//! assert_eq!(out, b"millis,ax,ay,az,gx,gy,gz,tempC,audioRMS\n5,0.5,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n");
//! ```

pub mod capture;
pub mod check;
pub mod convert;
pub mod dashboard;
pub mod format;
pub mod recording;
pub mod remote;
pub mod store;
mod sync;
pub mod upload;

pub use capture::device_notes::DeviceNotes;
pub use capture::producer::{Producer, ProducerReport};
pub use capture::ring::{RingReader, RingWriter, SampleIndex, Since, ring};
pub use capture::sample_source::{SampleSource, SourceEvent};
pub use capture::sources::ble::{BleCounts, BleNotificationDecoder, SAMPLE_UUID, SERVICE_UUID};
#[cfg(feature = "ble")]
pub use capture::sources::ble::{BleError, BleSource};
pub use capture::sources::frames::{FrameSource, SimImuConfig, serial, sim_imu, sim_imu_with};
pub use capture::sources::generated::{GeneratorSource, Pacing, SimEfieldSource};
pub use capture::sources::signal::{
    RateHz, SignalGenerator, SimEfield, SimImu, SimStage, ZeroRate,
};
pub use capture::sources::xiao::{device_entries, imu_row, imu_sample};
pub use check::recover::{RecoverError, RecoverReport, recover, recover_interrupted};
pub use check::runs::{RunPiece, RunSummary, RunsReport, check_runs};
pub use check::verify::{PartContents, VerifyError, VerifyReport, verify};
pub use convert::export::{ExportError, ExportReport, default_output, export};
pub use dashboard::ApiError;
pub use dashboard::access::{Access, AccessToken, TokenError};
pub use dashboard::channels::Channels;
pub use dashboard::decimate::{Columns, MinMax, samples_per_column};
pub use dashboard::devices::DeviceView;
pub use dashboard::library::{
    DeleteError, Entry, PathError, Preview, PreviewError, RecordingsRoot,
};
pub use dashboard::live::{LiveQuery, LiveSettings, UiCounts};
pub use dashboard::recorder::{Indicator, LiveRecorder, PanelError, PanelStatus, StartSettings};
pub use dashboard::server::{Dashboard, DashboardConfig, DashboardError, DashboardParts};
pub use dashboard::tap::{Cursor, CursorRead, LiveStream, StreamInfo, Tap, Taps};
pub use format::columns::{
    ColumnBatch, ColumnData, ColumnSpec, ColumnType, Columnar, McapOptions, ParquetOptions, RowSink,
};
pub use format::compat::{CsvCompat, HeaderFacts, XIAO_TITLE, find_xiao_totals, xiao_totals};
pub use format::csv::{CsvLines, CsvOptions, ParsedCsv, parse_csv};
pub use format::encoder::{Encoder, EncoderError, Format};
pub use format::footer::Footer;
pub use format::json_rows::{JsonRows, json_key, json_schema};
pub use format::labview::{
    DEFAULT_LABVIEW_BLOCK, LabviewLayout, LabviewLayoutError, ParsedLabview, parse_labview,
};
pub use format::number::{
    Decimals, DecimalsError, FloatText, MAX_DECIMALS, ParseRowError, RowWriter,
};
pub use format::packed::Packed;
pub use format::parse_error::ParseError;
pub use format::schema::{EfieldSample, ImuRow, LabviewValues, Schema, SchemaKind, StagePosition};
pub use format::segment::{LineState, Segment, SegmentId};
pub use format::time::RelMicros;
pub use recording::config::{
    LineFilter, Prefix, PrefixError, RecordingConfig, RecordingId, SegmentMarking, StartError,
};
pub use recording::group::{Recording, RecordingGroup};
pub use recording::segment_cell::SegmentCell;
pub use recording::status::{GroupState, GroupStatus, RecordingSummary, StreamStatus};
pub use remote::tls::{CA_FILE, DEFAULT_SERVER_NAME};
pub use remote::{
    ArrivalLog, CONTROL_VERSION, DEFAULT_BATCH_DELAY, DEFAULT_CONNECT_TIMEOUT, EncodeError,
    Gateway, GatewayConfig, GatewayCounters, GatewayCounts, GatewayError, GatewayReport,
    IdentityError, LinkView, MIN_WIRE_VERSION, Message, MessageDecoder, OpenStreamError, Outbox,
    PathView, RecorderServer, RecorderServerConfig, RunId, SampleError, SamplesEncoder, Sending,
    ServeError, ServerIdentity, ServerReports, ServerStreamCounters, ServerStreamCounts, Spool,
    SpoolError, SpoolRecord, StartRequest, StreamHeader, StreamKey, StreamReport, StreamRing,
    WIRE_VERSION, WireError, WireFormat, WireSample, WireSchema, WireStats, load_ca,
};
pub use store::exporter::{
    BatchWriter, ExportConfig, ExportCounts, ExportStats, Exporter, MemoryWriter, Overflow,
    OverflowPolicy, WriteOutcome,
};
pub use store::file_writer::{
    FileConfig, FileProgress, FileReport, FileWriter, PartInfo, SizeLimitAction, WriteFault,
    WriterStop, part_path,
};
pub use store::mcap::{
    CHUNK_BYTES, MIN_PART_BYTES, McapConfig, McapContents, McapLayout, McapRepair, McapWriter,
    read_mcap, recover_mcap,
};
pub use store::parquet::{
    MAX_ROW_GROUP_ROWS, ParquetConfig, ParquetContents, ParquetRepair, ParquetWriter, journal_path,
    read_parquet, recover_parquet,
};
pub use store::sidecar::{
    CsvMeta, DroppedCounts, LabviewMeta, PartMeta, RecordingState, Sidecar, SidecarError,
    XiaoDeviceInfo, XiaoSidecarFields, sidecar_path,
};
pub use upload::connection::{RecordingStore, StoreConfig, StoreError};
pub use upload::fetch::{StoredSidecar, fetch_recording, list_sidecars};
pub use upload::journal::{JournalEntry, JournalError, UploadJournal, UploadLedger, UploadedFile};
pub use upload::location::{StoreUrl, StoreUrlError};
pub use upload::uploader::{
    MAX_PART_SIZE, MIN_PART_SIZE, PartSize, PartSizeError, Retention, UploadConfig, UploadCounts,
    UploadError, UploadReport, Uploader,
};
