//! The bytes on the wire (docs/PROTOCOL.md): QUIC varints, control frames and
//! the segments of data streams.

pub(crate) mod backpressure;
pub(crate) mod frame;
pub(crate) mod segment;
pub(crate) mod varint;
