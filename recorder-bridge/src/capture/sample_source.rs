//! What every device or simulator is to the recorder and the gateway: something that
//! yields numbered samples, losses, decode errors and what the device says of itself.

use crate::format::schema::Schema;

/// What a source yields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SourceEvent<S> {
    /// A sample and its sequence number (widened to 64 bits, increasing by one per
    /// sample the device took).
    Sample {
        /// Sequence number.
        seq: u64,
        /// The sample.
        sample: S,
    },
    /// The device numbered this many samples that never arrived intact.
    Lost(u64),
    /// A device frame was rejected (corrupt); the decoder resynchronised.
    DecodeError,
    /// The device described itself (a XIAO board does at start and every few seconds).
    Device(xiao_proto::DeviceInfo),
    /// Nothing arrived within the source's poll interval (lets the caller check for a
    /// stop request).
    Idle,
}

/// A device or simulator that yields samples. Runs on its own thread: `next_event`
/// may block, but for at most about 100 ms.
pub trait SampleSource: Send + 'static {
    /// The samples it yields.
    type Sample: Schema;
    /// Nominal rate in hertz (0 if unknown).
    fn rate_hz(&self) -> u32;
    /// The next event; `None` when the source has ended (end of file, limit reached,
    /// device gone).
    fn next_event(&mut self) -> Option<SourceEvent<Self::Sample>>;
}
