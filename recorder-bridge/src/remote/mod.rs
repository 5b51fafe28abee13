//! Remote recording over KWIK: the sensor-stream protocol, device sources, the gateway
//! (queue + spool + KWIK sender) and the recorder server bridge. See
//! `docs/RECORDING.md` for the wire format and the accounting.
//!
//! Layers: [`wire`] and [`sample`] (pure codec) → [`journal`], [`spool`], [`outbox`]
//! (storage) → [`source`] (devices), [`server`], [`gateway`] (tokio + kwik).

pub mod accounting;
pub mod arrivals;
pub mod ble;
pub mod feed;
pub mod gateway;
pub mod journal;
pub mod outbox;
pub mod relay;
pub mod sample;
pub mod server;
pub mod source;
pub mod spool;
pub mod tls;
pub mod wire;

pub use accounting::{GatewayCounters, GatewayCounts, ServerStreamCounters, ServerStreamCounts};
pub use arrivals::ArrivalLog;
pub use feed::{FeedReport, SourceFeed};
pub use gateway::{DEFAULT_CONNECT_TIMEOUT, Gateway, GatewayConfig, GatewayError, GatewayReport};
pub use outbox::Outbox;
pub use relay::UdpRelay;
pub use sample::{SampleError, WireSample, imu_row, imu_sample};
pub use server::{OpenStreamError, RecorderServer, ServeError, ServerConfig, StreamReport};
pub use source::{
    FrameSource, SampleSource, SeqWidener, SimEfieldSource, SimImuConfig, SourceEvent,
    device_entries, serial, sim_imu, sim_imu_with,
};
pub use spool::{Spool, SpoolError, SpoolRecord};
pub use tls::{IdentityError, ServerIdentity, load_ca};
pub use wire::{
    EncodeError, Message, MessageDecoder, RunId, StartRequest, StreamHeader, StreamKey, WireError,
    WireFormat, WireSchema, WireStats,
};
