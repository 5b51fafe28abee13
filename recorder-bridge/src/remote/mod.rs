//! Remote recording over KWIK: the sensor-stream protocol, the gateway (queue + spool +
//! KWIK sender, fed by any [`SampleSource`](crate::capture::sample_source::SampleSource))
//! and the recorder server bridge. See `docs/RECORDING.md` for the wire format and the
//! accounting.
//!
//! Layers: [`wire`] and [`sample`] (pure codec), [`tls`], [`accounting`] → [`server`]
//! (with its sequence journal) and [`gateway`] (with its outbox and spool), on tokio
//! and kwik.

pub mod accounting;
pub mod gateway;
pub mod sample;
pub mod server;
pub mod tls;
pub mod wire;

pub use accounting::{GatewayCounters, GatewayCounts, ServerStreamCounters, ServerStreamCounts};
pub use gateway::outbox::Outbox;
pub use gateway::spool::{Spool, SpoolError, SpoolRecord};
pub use gateway::{
    DEFAULT_BATCH_DELAY, DEFAULT_CONNECT_TIMEOUT, Gateway, GatewayConfig, GatewayError,
    GatewayReport,
};
pub use sample::{SampleError, WireSample};
pub use server::arrivals::ArrivalLog;
pub use server::config::{OpenStreamError, RecorderServerConfig, ServeError};
pub use server::links::{LinkView, PathView};
pub use server::stream::{StreamReport, StreamRing};
pub use server::{RecorderServer, ServerReports};
pub use tls::{IdentityError, ServerIdentity, load_ca};
pub use wire::{
    CONTROL_VERSION, EncodeError, MIN_WIRE_VERSION, Message, MessageDecoder, RunId, SamplesEncoder,
    Sending, StartRequest, StreamHeader, StreamKey, WIRE_VERSION, WireError, WireFormat,
    WireSchema, WireStats,
};
