//! Sensor recording for the KWIK workspace: schemas, a ring buffer with drop detection,
//! a double-buffered exporter with its own writer thread, standard CSV and the legacy
//! LabVIEW layout, crash-safe files with a `.meta.json` sidecar, and recording groups.
//!
//! Layers, each using only the ones before it:
//! [`codec`] (pure text) → [`ring`](mod@ring) (pure memory) → [`exporter`] + [`file_writer`]
//! (a writer thread swapping two buffers) → [`recorder`] (groups, limits, sidecars) →
//! [`remote`] (recording over KWIK). The `kwik-record` command line is a separate
//! package (`recorder-bridge/cli`) built on this library.
//!
//! ```
//! use kwik_recorder::{ImuRow, Schema, Encoder, Format};
//! let mut enc = Encoder::<ImuRow>::new(Format::default()).unwrap();
//! let mut out = Vec::new();
//! enc.begin(&[], &mut out);
//! enc.push(&ImuRow { millis: 5, ax: 0.5, ..ImuRow::default() }, &mut out);
//! assert_eq!(out, b"millis,ax,ay,az,gx,gy,gz,tempC,audioRMS\n5,0.5,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n");
//! ```

mod background_sync;
pub mod codec;
pub mod disk;
pub mod exporter;
pub mod file_writer;
mod hashing;
pub mod recorder;
pub mod recover;
pub mod remote;
pub mod ring;
pub mod schema;
pub mod sidecar;
pub mod source;
mod sync;
pub mod verify;

pub use codec::{
    CsvOptions, DEFAULT_LABVIEW_BLOCK, Encoder, EncoderError, Footer, Format, LabviewLayout,
    LabviewLayoutError, ParseError, ParseRowError, ParsedCsv, ParsedLabview, RowWriter, parse_csv,
    parse_labview,
};
pub use exporter::{
    BatchWriter, ExportConfig, ExportCounts, ExportStats, Exporter, MemoryWriter, Overflow,
    OverflowPolicy, WriteOutcome,
};
pub use file_writer::{
    FileConfig, FileProgress, FileReport, FileWriter, PartInfo, SizeLimitAction, WriteFault,
    WriterStop, part_path,
};
pub use recorder::{
    DeviceNotes, GroupState, GroupStatus, LineFilter, Prefix, PrefixError, Recording,
    RecordingConfig, RecordingGroup, RecordingSummary, SegmentCell, SegmentMarking, SessionId,
    StartError, StreamStatus,
};
pub use recover::{RecoverError, RecoverReport, recover};
#[cfg(feature = "ble")]
pub use remote::ble::{BleError, BleSource};
pub use remote::tls::{CA_FILE, DEFAULT_SERVER_NAME};
pub use remote::{
    ArrivalLog, EncodeError, FeedReport, FrameSource, Gateway, GatewayConfig, GatewayCounters,
    GatewayCounts, GatewayError, GatewayReport, IdentityError, Message, MessageDecoder,
    OpenStreamError, Outbox, RecorderServer, RunId, SampleError, SampleSource, SeqWidener,
    ServeError, ServerConfig, ServerIdentity, ServerStreamCounters, ServerStreamCounts,
    SimEfieldSource, SimImuConfig, SourceEvent, SourceFeed, Spool, SpoolError, SpoolRecord,
    StartRequest, StreamHeader, StreamKey, StreamReport, UdpRelay, WireError, WireFormat,
    WireSample, WireSchema, WireStats, device_entries, imu_row, imu_sample, load_ca, serial,
    sim_imu, sim_imu_with,
};
pub use ring::{RingReader, RingWriter, SampleIndex, Since, ring};
pub use schema::{
    EfieldSample, ImuRow, LabviewValues, LineState, RelMicros, Schema, SchemaKind, Segment,
    SegmentId, StagePosition,
};
pub use sidecar::{
    DroppedCounts, LabviewMeta, PartMeta, RecordingState, Sidecar, SidecarError, sidecar_path,
};
pub use source::{RateHz, SignalGenerator, SimEfield, SimImu, SimSource, SimStage, ZeroRate};
pub use verify::{PartContents, VerifyError, VerifyReport, verify};
