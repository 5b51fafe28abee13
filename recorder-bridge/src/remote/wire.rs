//! The sensor-stream protocol carried over KWIK streams: message framing, typed
//! messages and a streaming decoder. Pure: no I/O, no clock. The exact byte layout is
//! specified in `docs/RECORDING.md`.
//!
//! Every message is `0xA5, kind: u8, len: u16 LE, payload[len]`. Integers are
//! little-endian; strings are `len: u8` then UTF-8 bytes.

/// First byte of every message; the decoder resynchronises on it after bad input.
pub const MAGIC: u8 = 0xA5;
/// Version of this protocol a peer speaks, carried in [`Message::Hello`]. Version 2
/// added [`Message::Samples`] (many samples in one message) and the server's Hello
/// reply that tells a gateway it may send them. Version 3 added
/// [`StartRequest::held_from`], which a gateway sends only to a server that answered
/// its Hello with 3 or more.
pub const WIRE_VERSION: u8 = 3;
/// Oldest protocol version a server still accepts from a gateway.
pub const MIN_WIRE_VERSION: u8 = 1;
/// Layout version of a [`StreamHeader`] (its first byte); unchanged since version 1.
pub const HEADER_LAYOUT: u8 = 1;
/// Largest sample body a [`Message::Samples`] can carry (its length is one byte);
/// longer bodies travel as single [`Message::Sample`]s.
pub const MAX_BATCHED_BODY: usize = u8::MAX as usize;
/// Bytes before the payload: magic, kind, length.
pub const MESSAGE_OVERHEAD: usize = 4;
/// Largest payload of one message.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;
/// Version of [`Message::Control`] this build writes. A reader takes the fields it knows
/// from any version at or above 1 and skips what a later version appended.
pub const CONTROL_VERSION: u8 = 1;

/// Identifies one recording stream of one device: `device` names the board (one
/// folder per device on the server), `stream` the sensor stream of that board.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamKey {
    /// Device id (printable, at most 64 bytes; becomes a folder name).
    pub device: String,
    /// Stream name within the device (e.g. `imu`).
    pub stream: String,
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.device, self.stream)
    }
}

/// Identifies one run of a source (random, chosen when the gateway starts reading the
/// device). Sequence numbers are only comparable within one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RunId(pub u64);

impl RunId {
    /// A fresh random run id.
    pub fn random() -> Self {
        RunId(rand::random())
    }
}

/// The schema of a sensor stream, as a byte on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireSchema {
    /// XIAO IMU sample: the `xiao-proto` frame.
    Imu,
    /// Two-ADC E-field sample.
    Efield,
    /// Stage position.
    Stage,
}

impl WireSchema {
    /// The byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            WireSchema::Imu => 1,
            WireSchema::Efield => 2,
            WireSchema::Stage => 3,
        }
    }

    /// The schema of a byte, if known.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(WireSchema::Imu),
            2 => Some(WireSchema::Efield),
            3 => Some(WireSchema::Stage),
            _ => None,
        }
    }
}

/// File layout the gateway asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WireFormat {
    /// Standard CSV with comment header and footer.
    #[default]
    Csv,
    /// The legacy LabVIEW block layout (E-field only).
    Labview,
}

/// Whether a gateway sends a stream's samples into the recording (see
/// [`Message::Control`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sending {
    /// Samples go to the server (the normal state).
    #[default]
    On,
    /// Samples are taken from the device and counted, but not sent: not recorded by
    /// request ([`Message::Filtered`]).
    Paused,
}

impl Sending {
    const fn to_byte(self) -> u8 {
        match self {
            Sending::Paused => 0,
            Sending::On => 1,
        }
    }

    const fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Sending::Paused),
            1 => Some(Sending::On),
            _ => None,
        }
    }
}

/// Recording settings sent with [`Message::Start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRequest {
    /// The stream, its run, schema, rate and time anchors (the same header the sensor
    /// stream starts with).
    pub header: StreamHeader,
    /// File-name prefix (empty: the server's default, the stream name).
    pub prefix: String,
    /// Stop after this many milliseconds (0: no limit).
    pub duration_limit_ms: u64,
    /// Size limit per data file in bytes (0: no limit).
    pub size_limit: u64,
    /// Layout of the data file.
    pub format: WireFormat,
    /// The lowest sequence number the gateway still holds: everything below was
    /// confirmed by a server (this one, or another of a fleet) or counted lost by the
    /// gateway. A server that has less of this run starts here instead of counting the
    /// samples another server has as missing. `None`: not sent (before version 3).
    pub held_from: Option<u64>,
}

/// The first message of every sensor stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// Which stream this is.
    pub key: StreamKey,
    /// The source run (see [`RunId`]).
    pub run: RunId,
    /// Schema of every sample that follows.
    pub schema: WireSchema,
    /// Nominal sample rate in hertz.
    pub rate_hz: u32,
    /// Device time (microseconds) of the anchor sample.
    pub device_time_us: u64,
    /// Host UTC time (microseconds since the Unix epoch) when the gateway received the
    /// anchor sample.
    pub host_utc_us: i64,
    /// Sequence number of the anchor sample.
    pub anchor_seq: u64,
}

/// One message of the protocol.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Message {
    /// Gateway → server, first message of the control stream.
    Hello {
        /// Protocol version ([`WIRE_VERSION`]).
        version: u8,
        /// Free-form name of the gateway (logs only).
        gateway: String,
    },
    /// Gateway → server: start (or resume) recording a stream.
    Start(StartRequest),
    /// Gateway → server: stop recording a stream and finalise its files.
    Stop(StreamKey),
    /// Gateway → server: ask for a stream's status.
    StatusRequest(StreamKey),
    /// Gateway → server: what the device said of itself (firmware version, sensor
    /// ranges, ...), for the recording's sidecar. Sent when it first arrives and
    /// whenever it changes.
    Device {
        /// The stream.
        key: StreamKey,
        /// Entries for the sidecar's `device` map.
        entries: std::collections::BTreeMap<String, String>,
    },
    /// Server → gateway: the recording runs; send samples from `next_seq` on.
    Started {
        /// The stream.
        key: StreamKey,
        /// First sequence number the server still needs (everything below is on disk).
        next_seq: u64,
    },
    /// Server → gateway: every sample below `next_seq` is in the data files (or was
    /// counted as lost by the server); the gateway may forget them.
    Ack {
        /// The stream.
        key: StreamKey,
        /// First sequence number not yet on disk.
        next_seq: u64,
    },
    /// Gateway → server: the state [`Message::Control`] asked for is in effect (also
    /// sent after `Started` in every session while paused). A gateway that does not
    /// know `Control` never sends it.
    SendingState {
        /// The stream.
        key: StreamKey,
        /// The state now.
        sending: Sending,
        /// Samples of this run not sent by request so far.
        filtered: u64,
    },
    /// Server → gateway: send the stream's samples, or pause them (the dashboard's
    /// per-device Stop/Start). Versioned ([`CONTROL_VERSION`]); a gateway that does not
    /// know the kind skips it, and the server sees no [`Message::SendingState`].
    Control {
        /// The stream.
        key: StreamKey,
        /// The state asked for.
        sending: Sending,
    },
    /// Server → gateway: status or final summary of a stream, as JSON.
    Status {
        /// The stream.
        key: StreamKey,
        /// True once the recording is finalised (reply to [`Message::Stop`]).
        final_: bool,
        /// JSON document (see `docs/RECORDING.md`).
        json: String,
    },
    /// Server → gateway: a request failed.
    Error {
        /// The stream concerned.
        key: StreamKey,
        /// Why.
        text: String,
    },
    /// First message of a sensor stream.
    Header(StreamHeader),
    /// Sensor stream: the `count` samples from `first_seq` on were taken by the device
    /// but, by request ([`Message::Control`]), not sent. The server counts them as
    /// filtered, not missing.
    Filtered {
        /// First sequence number of the range.
        first_seq: u64,
        /// Samples in the range (at least 1).
        count: u64,
    },
    /// One sample of a sensor stream: its sequence number and schema-specific body.
    Sample {
        /// Sequence number within the run.
        seq: u64,
        /// Body (see [`crate::remote::WireSample`]).
        body: Vec<u8>,
    },
    /// Consecutive samples of a sensor stream in one message (protocol version 2):
    /// sample `i` has sequence number `first_seq + i`. Written with
    /// [`SamplesEncoder`], read with [`Message::sample_bodies`].
    Samples {
        /// Sequence number of the first sample.
        first_seq: u64,
        /// The bodies, each as `u8 len, body[len]` (at least one; checked on decode).
        bodies: Vec<u8>,
    },
}

/// Message kinds on the wire.
mod kind {
    pub(super) const HELLO: u8 = 0x01;
    pub(super) const START: u8 = 0x02;
    pub(super) const STOP: u8 = 0x03;
    pub(super) const STATUS_REQUEST: u8 = 0x04;
    pub(super) const DEVICE: u8 = 0x05;
    pub(super) const SENDING_STATE: u8 = 0x06;
    pub(super) const STARTED: u8 = 0x11;
    pub(super) const ACK: u8 = 0x12;
    pub(super) const STATUS: u8 = 0x13;
    pub(super) const ERROR: u8 = 0x14;
    pub(super) const CONTROL: u8 = 0x15;
    pub(super) const HEADER: u8 = 0x21;
    pub(super) const SAMPLE: u8 = 0x22;
    pub(super) const FILTERED: u8 = 0x23;
    pub(super) const SAMPLES: u8 = 0x24;
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload is longer than [`MAX_PAYLOAD`].
    #[error("message payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLong(usize),
    /// A string is longer than 255 bytes.
    #[error("string of {0} bytes exceeds the 255-byte limit")]
    StringTooLong(usize),
}

/// Why received bytes were not a valid message. The decoder counts each and skips the
/// bad bytes; decoding continues with the next message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Bytes before a message start were skipped (resynchronisation).
    #[error("{0} bytes without a message start were skipped")]
    Garbage(usize),
    /// The kind byte is not one this version knows; the message was skipped.
    #[error("unknown message kind 0x{0:02x}")]
    UnknownKind(u8),
    /// The payload is shorter than its kind requires.
    #[error("message kind 0x{kind:02x} truncated: {len} payload bytes")]
    Truncated {
        /// The kind.
        kind: u8,
        /// Payload length.
        len: usize,
    },
    /// The payload has bytes after the last field.
    #[error("message kind 0x{kind:02x} has {extra} trailing bytes")]
    Trailing {
        /// The kind.
        kind: u8,
        /// Extra bytes.
        extra: usize,
    },
    /// A string field is not UTF-8.
    #[error("a string field is not UTF-8")]
    NotUtf8,
    /// A field has a value outside its range (unknown schema or format byte).
    #[error("field {0} has an invalid value")]
    BadField(&'static str),
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    let len = u8::try_from(s.len()).map_err(|_| EncodeError::StringTooLong(s.len()))?;
    out.push(len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_key(out: &mut Vec<u8>, k: &StreamKey) -> Result<(), EncodeError> {
    put_str(out, &k.device)?;
    put_str(out, &k.stream)
}

fn put_header(out: &mut Vec<u8>, h: &StreamHeader) -> Result<(), EncodeError> {
    out.push(HEADER_LAYOUT);
    put_key(out, &h.key)?;
    out.extend_from_slice(&h.run.0.to_le_bytes());
    out.push(h.schema.to_byte());
    out.extend_from_slice(&h.rate_hz.to_le_bytes());
    out.extend_from_slice(&h.device_time_us.to_le_bytes());
    out.extend_from_slice(&h.host_utc_us.to_le_bytes());
    out.extend_from_slice(&h.anchor_seq.to_le_bytes());
    Ok(())
}

impl Message {
    /// Appends this message's bytes to `out`. On error `out` is unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        let r = self.encode_inner(out);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// This message's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut v = Vec::new();
        self.encode(&mut v)?;
        Ok(v)
    }

    fn encode_inner(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.extend_from_slice(&[MAGIC, 0, 0, 0]);
        let kind = match self {
            Message::Hello { version, gateway } => {
                out.push(*version);
                put_str(out, gateway)?;
                kind::HELLO
            }
            Message::Start(r) => {
                put_header(out, &r.header)?;
                put_str(out, &r.prefix)?;
                out.extend_from_slice(&r.duration_limit_ms.to_le_bytes());
                out.extend_from_slice(&r.size_limit.to_le_bytes());
                out.push(match r.format {
                    WireFormat::Csv => 0,
                    WireFormat::Labview => 1,
                });
                if let Some(seq) = r.held_from {
                    out.extend_from_slice(&seq.to_le_bytes());
                }
                kind::START
            }
            Message::Stop(k) => {
                put_key(out, k)?;
                kind::STOP
            }
            Message::StatusRequest(k) => {
                put_key(out, k)?;
                kind::STATUS_REQUEST
            }
            Message::Device { key, entries } => {
                put_key(out, key)?;
                // A map of strings always serialises.
                out.extend_from_slice(
                    serde_json::to_string(entries)
                        .unwrap_or_default()
                        .as_bytes(),
                );
                kind::DEVICE
            }
            Message::Started { key, next_seq } => {
                put_key(out, key)?;
                out.extend_from_slice(&next_seq.to_le_bytes());
                kind::STARTED
            }
            Message::Ack { key, next_seq } => {
                put_key(out, key)?;
                out.extend_from_slice(&next_seq.to_le_bytes());
                kind::ACK
            }
            Message::Status { key, final_, json } => {
                put_key(out, key)?;
                out.push(u8::from(*final_));
                out.extend_from_slice(json.as_bytes());
                kind::STATUS
            }
            Message::Error { key, text } => {
                put_key(out, key)?;
                out.extend_from_slice(text.as_bytes());
                kind::ERROR
            }
            Message::SendingState {
                key,
                sending,
                filtered,
            } => {
                put_key(out, key)?;
                out.push(sending.to_byte());
                out.extend_from_slice(&filtered.to_le_bytes());
                kind::SENDING_STATE
            }
            Message::Control { key, sending } => {
                out.push(CONTROL_VERSION);
                put_key(out, key)?;
                out.push(sending.to_byte());
                kind::CONTROL
            }
            Message::Filtered { first_seq, count } => {
                out.extend_from_slice(&first_seq.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
                kind::FILTERED
            }
            Message::Header(h) => {
                put_header(out, h)?;
                kind::HEADER
            }
            Message::Sample { seq, body } => {
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(body);
                kind::SAMPLE
            }
            Message::Samples { first_seq, bodies } => {
                out.extend_from_slice(&first_seq.to_le_bytes());
                out.extend_from_slice(bodies);
                kind::SAMPLES
            }
        };
        let len = out.len() - start - MESSAGE_OVERHEAD;
        let len16 = u16::try_from(len).map_err(|_| EncodeError::TooLong(len))?;
        out[start + 1] = kind;
        out[start + 2..start + 4].copy_from_slice(&len16.to_le_bytes());
        Ok(())
    }

    /// Appends a [`Message::Sample`] without building the message first.
    pub fn encode_sample(seq: u64, body: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = 8 + body.len();
        let len16 = u16::try_from(len).map_err(|_| EncodeError::TooLong(len))?;
        out.extend_from_slice(&[MAGIC, kind::SAMPLE]);
        out.extend_from_slice(&len16.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(body);
        Ok(())
    }

    /// The samples of a [`Message::Samples`] as `(seq, body)`, in order; empty for any
    /// other message. The bodies were checked when the message was decoded.
    pub fn sample_bodies(&self) -> impl Iterator<Item = (u64, &[u8])> {
        let (first, bodies) = match self {
            Message::Samples { first_seq, bodies } => (*first_seq, bodies.as_slice()),
            _ => (0, &[][..]),
        };
        BodyIter(bodies)
            .map_while(Result::ok)
            .zip(first..)
            .map(|(b, seq)| (seq, b))
    }

    /// Decodes one message from its kind and payload.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<Message, WireError> {
        let mut r = Reader {
            kind,
            buf: payload,
            at: 0,
        };
        let m = match kind {
            kind::HELLO => Message::Hello {
                version: r.u8()?,
                gateway: r.str()?,
            },
            kind::START => {
                let header = r.header()?;
                let prefix = r.str()?;
                let duration_limit_ms = r.u64()?;
                let size_limit = r.u64()?;
                let format = match r.u8()? {
                    0 => WireFormat::Csv,
                    1 => WireFormat::Labview,
                    _ => return Err(WireError::BadField("format")),
                };
                let held_from = (r.at < r.buf.len()).then(|| r.u64()).transpose()?;
                Message::Start(StartRequest {
                    header,
                    prefix,
                    duration_limit_ms,
                    size_limit,
                    format,
                    held_from,
                })
            }
            kind::STOP => Message::Stop(r.key()?),
            kind::STATUS_REQUEST => Message::StatusRequest(r.key()?),
            kind::DEVICE => Message::Device {
                key: r.key()?,
                entries: serde_json::from_str(&r.rest_str()?)
                    .map_err(|_| WireError::BadField("device entries"))?,
            },
            kind::STARTED => Message::Started {
                key: r.key()?,
                next_seq: r.u64()?,
            },
            kind::ACK => Message::Ack {
                key: r.key()?,
                next_seq: r.u64()?,
            },
            kind::STATUS => {
                let key = r.key()?;
                let final_ = r.u8()? != 0;
                let json = r.rest_str()?;
                Message::Status { key, final_, json }
            }
            kind::ERROR => Message::Error {
                key: r.key()?,
                text: r.rest_str()?,
            },
            kind::SENDING_STATE => Message::SendingState {
                key: r.key()?,
                sending: Sending::from_byte(r.u8()?).ok_or(WireError::BadField("sending"))?,
                filtered: r.u64()?,
            },
            kind::CONTROL => {
                if r.u8()? < 1 {
                    return Err(WireError::BadField("control version"));
                }
                let key = r.key()?;
                let sending = Sending::from_byte(r.u8()?).ok_or(WireError::BadField("sending"))?;
                // A later version may append fields: this one reads what it knows.
                r.at = r.buf.len();
                Message::Control { key, sending }
            }
            kind::FILTERED => {
                let first_seq = r.u64()?;
                let count = r.u64()?;
                if count == 0 || first_seq.checked_add(count).is_none() {
                    return Err(WireError::BadField("filtered range"));
                }
                Message::Filtered { first_seq, count }
            }
            kind::HEADER => Message::Header(r.header()?),
            kind::SAMPLE => {
                let seq = r.u64()?;
                let body = r.buf[r.at..].to_vec();
                r.at = r.buf.len();
                Message::Sample { seq, body }
            }
            kind::SAMPLES => {
                let first_seq = r.u64()?;
                let bodies = &r.buf[r.at..];
                let count = BodyIter(bodies).try_fold(0u64, |n, b| b.map(|_| n + 1))?;
                if count == 0 {
                    return Err(WireError::BadField("sample count"));
                }
                if first_seq.checked_add(count).is_none() {
                    return Err(WireError::BadField("first_seq"));
                }
                r.at = r.buf.len();
                Message::Samples {
                    first_seq,
                    bodies: bodies.to_vec(),
                }
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        if r.at != payload.len() {
            return Err(WireError::Trailing {
                kind,
                extra: payload.len() - r.at,
            });
        }
        Ok(m)
    }
}

/// Walks the `u8 len, body[len]` records of a [`Message::Samples`] payload.
struct BodyIter<'a>(&'a [u8]);

impl<'a> Iterator for BodyIter<'a> {
    type Item = Result<&'a [u8], WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&len, rest) = self.0.split_first()?;
        let len = usize::from(len);
        if rest.len() < len {
            self.0 = &[];
            return Some(Err(WireError::Truncated {
                kind: kind::SAMPLES,
                len: rest.len(),
            }));
        }
        let (body, rest) = rest.split_at(len);
        self.0 = rest;
        Some(Ok(body))
    }
}

/// Builds one [`Message::Samples`] in place at the end of a buffer: consecutive
/// samples are appended until the message is full.
#[derive(Debug)]
pub struct SamplesEncoder {
    start: usize,
    next_seq: u64,
    count: u32,
}

impl SamplesEncoder {
    /// Starts a message for samples from `first_seq` at the end of `out`.
    pub fn begin(first_seq: u64, out: &mut Vec<u8>) -> Self {
        let start = out.len();
        out.extend_from_slice(&[MAGIC, kind::SAMPLES, 0, 0]);
        out.extend_from_slice(&first_seq.to_le_bytes());
        SamplesEncoder {
            start,
            next_seq: first_seq,
            count: 0,
        }
    }

    /// Appends sample `seq` if it follows the last one and fits; false (and `out`
    /// unchanged) otherwise: the caller then finishes this message and begins another.
    pub fn push(&mut self, seq: u64, body: &[u8], out: &mut Vec<u8>) -> bool {
        let payload = out.len() - self.start - MESSAGE_OVERHEAD;
        if seq != self.next_seq
            || body.len() > MAX_BATCHED_BODY
            || payload + 1 + body.len() > MAX_PAYLOAD
        {
            return false;
        }
        out.push(body.len() as u8);
        out.extend_from_slice(body);
        self.next_seq += 1;
        self.count += 1;
        true
    }

    /// Samples in the message so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True while no sample was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Writes the payload length. An empty message is removed from `out` instead (a
    /// Samples message carries at least one sample).
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.count == 0 {
            out.truncate(self.start);
            return;
        }
        // push keeps the payload within MAX_PAYLOAD.
        let len = (out.len() - self.start - MESSAGE_OVERHEAD) as u16;
        out[self.start + 2..self.start + 4].copy_from_slice(&len.to_le_bytes());
    }
}

struct Reader<'a> {
    kind: u8,
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(e) => {
                let s = &self.buf[self.at..e];
                self.at = e;
                Ok(s)
            }
            None => Err(WireError::Truncated {
                kind: self.kind,
                len: self.buf.len(),
            }),
        }
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn str(&mut self) -> Result<String, WireError> {
        let n = usize::from(self.u8()?);
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::NotUtf8)
    }
    fn rest_str(&mut self) -> Result<String, WireError> {
        let b = &self.buf[self.at..];
        self.at = self.buf.len();
        String::from_utf8(b.to_vec()).map_err(|_| WireError::NotUtf8)
    }
    fn header(&mut self) -> Result<StreamHeader, WireError> {
        if self.u8()? != HEADER_LAYOUT {
            return Err(WireError::BadField("version"));
        }
        let key = self.key()?;
        let run = RunId(self.u64()?);
        let schema = WireSchema::from_byte(self.u8()?).ok_or(WireError::BadField("schema"))?;
        Ok(StreamHeader {
            key,
            run,
            schema,
            rate_hz: self.u32()?,
            device_time_us: self.u64()?,
            host_utc_us: self.u64()? as i64,
            anchor_seq: self.u64()?,
        })
    }
    fn key(&mut self) -> Result<StreamKey, WireError> {
        Ok(StreamKey {
            device: self.str()?,
            stream: self.str()?,
        })
    }
}

/// Counters of a [`MessageDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct WireStats {
    /// Messages decoded.
    pub messages: u64,
    /// Bytes fed in.
    pub bytes: u64,
    /// Bytes skipped while looking for a message start.
    pub garbage_bytes: u64,
    /// Messages skipped because they were malformed (any [`WireError`] but garbage).
    pub malformed: u64,
}

/// Splits a byte stream into messages. Owns a buffer of at most one partial message
/// (`MESSAGE_OVERHEAD + MAX_PAYLOAD` bytes); feed it chunks of any size with
/// [`MessageDecoder::push`], then drain [`MessageDecoder::next_message`].
#[derive(Debug, Default)]
pub struct MessageDecoder {
    buf: Vec<u8>,
    at: usize,
    stats: WireStats,
}

impl MessageDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> WireStats {
        self.stats
    }

    /// Bytes held that do not yet form a whole message.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.at
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.at > 0 && self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        } else if self.at > 64 * 1024 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(bytes);
        self.stats.bytes += bytes.len() as u64;
    }

    /// The next whole message (or the error of a skipped one); `None` when more bytes
    /// are needed.
    pub fn next_message(&mut self) -> Option<Result<Message, WireError>> {
        let rest = &self.buf[self.at..];
        if rest.is_empty() {
            return None;
        }
        if rest[0] != MAGIC {
            let skip = rest.iter().position(|&b| b == MAGIC).unwrap_or(rest.len());
            self.at += skip;
            self.stats.garbage_bytes += skip as u64;
            return Some(Err(WireError::Garbage(skip)));
        }
        if rest.len() < MESSAGE_OVERHEAD {
            return None;
        }
        let kind = rest[1];
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
        if rest.len() < MESSAGE_OVERHEAD + len {
            return None;
        }
        let payload = &rest[MESSAGE_OVERHEAD..MESSAGE_OVERHEAD + len];
        let r = Message::decode(kind, payload);
        self.at += MESSAGE_OVERHEAD + len;
        match &r {
            Ok(_) => self.stats.messages += 1,
            Err(_) => self.stats.malformed += 1,
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> StreamKey {
        StreamKey {
            device: "xiao-1".into(),
            stream: "imu".into(),
        }
    }

    fn header() -> StreamHeader {
        StreamHeader {
            key: key(),
            run: RunId(3),
            schema: WireSchema::Imu,
            rate_hz: 1000,
            device_time_us: 123,
            host_utc_us: -5,
            anchor_seq: 9,
        }
    }

    fn all() -> Vec<Message> {
        vec![
            Message::Hello {
                version: WIRE_VERSION,
                gateway: "gw".into(),
            },
            Message::Start(StartRequest {
                header: header(),
                prefix: "run".into(),
                duration_limit_ms: 10_000,
                size_limit: 1 << 20,
                format: WireFormat::Labview,
                held_from: None,
            }),
            Message::Start(StartRequest {
                header: header(),
                prefix: String::new(),
                duration_limit_ms: 0,
                size_limit: 0,
                format: WireFormat::Csv,
                held_from: Some(1 << 40),
            }),
            Message::Stop(key()),
            Message::StatusRequest(key()),
            Message::Device {
                key: key(),
                entries: [("firmware".to_owned(), "0.1.0".to_owned())].into(),
            },
            Message::Started {
                key: key(),
                next_seq: 5,
            },
            Message::Ack {
                key: key(),
                next_seq: u64::MAX,
            },
            Message::Status {
                key: key(),
                final_: true,
                json: "{\"a\":1}".into(),
            },
            Message::Error {
                key: key(),
                text: "no".into(),
            },
            Message::SendingState {
                key: key(),
                sending: Sending::Paused,
                filtered: 77,
            },
            Message::Control {
                key: key(),
                sending: Sending::On,
            },
            Message::Header(header()),
            Message::Sample {
                seq: 42,
                body: vec![1, 2, 3],
            },
            Message::Filtered {
                first_seq: 43,
                count: 1000,
            },
            Message::Samples {
                first_seq: 1043,
                bodies: vec![2, 4, 5, 0, 1, 6],
            },
        ]
    }

    #[test]
    fn a_later_control_version_is_read_for_the_fields_it_shares() {
        let mut bytes = Message::Control {
            key: key(),
            sending: Sending::Paused,
        }
        .to_bytes()
        .unwrap();
        // Version 2 with one more field appended.
        bytes[MESSAGE_OVERHEAD] = 2;
        bytes.extend_from_slice(&[7, 7]);
        bytes[2] += 2;
        let mut d = MessageDecoder::new();
        d.push(&bytes);
        assert_eq!(
            d.next_message(),
            Some(Ok(Message::Control {
                key: key(),
                sending: Sending::Paused
            }))
        );
        // Version 0 never existed; an empty range is no range.
        bytes[MESSAGE_OVERHEAD] = 0;
        d.push(&bytes);
        assert_eq!(
            d.next_message(),
            Some(Err(WireError::BadField("control version")))
        );
        let empty = Message::Filtered {
            first_seq: 1,
            count: 0,
        }
        .to_bytes()
        .unwrap();
        d.push(&empty);
        assert_eq!(
            d.next_message(),
            Some(Err(WireError::BadField("filtered range")))
        );
    }

    #[test]
    fn every_message_round_trips() {
        for m in all() {
            let bytes = m.to_bytes().unwrap();
            let mut d = MessageDecoder::new();
            d.push(&bytes);
            assert_eq!(d.next_message(), Some(Ok(m.clone())));
            assert_eq!(d.next_message(), None);
        }
    }

    #[test]
    fn encode_sample_matches_message() {
        let mut a = Vec::new();
        Message::encode_sample(9, &[4, 5], &mut a).unwrap();
        let b = Message::Sample {
            seq: 9,
            body: vec![4, 5],
        }
        .to_bytes()
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn samples_encoder_round_trips_and_splits_where_it_must() {
        let mut out = Vec::new();
        let mut e = SamplesEncoder::begin(100, &mut out);
        assert!(e.push(100, &[1, 2, 3], &mut out));
        assert!(e.push(101, &[], &mut out));
        assert!(e.push(102, &[9; 255], &mut out));
        // Not the next sequence number, or too long a body: refused, buffer unchanged.
        let before = out.clone();
        assert!(!e.push(104, &[1], &mut out));
        assert!(!e.push(103, &[0; 256], &mut out));
        assert_eq!(out, before);
        assert_eq!(e.len(), 3);
        e.finish(&mut out);
        let mut d = MessageDecoder::new();
        d.push(&out);
        let m = d.next_message().unwrap().unwrap();
        let got: Vec<(u64, Vec<u8>)> = m.sample_bodies().map(|(s, b)| (s, b.to_vec())).collect();
        assert_eq!(
            got,
            vec![(100, vec![1, 2, 3]), (101, vec![]), (102, vec![9; 255])]
        );
        assert_eq!(d.next_message(), None);
        // An empty encoder leaves nothing behind.
        let mut out = vec![7];
        SamplesEncoder::begin(5, &mut out).finish(&mut out);
        assert_eq!(out, vec![7]);
    }

    #[test]
    fn samples_encoder_stops_at_the_payload_limit() {
        let mut out = Vec::new();
        let mut e = SamplesEncoder::begin(0, &mut out);
        let mut seq = 0;
        while e.push(seq, &[0xAB; 200], &mut out) {
            seq += 1;
        }
        e.finish(&mut out);
        assert!(out.len() - MESSAGE_OVERHEAD <= MAX_PAYLOAD);
        let m = Message::decode(out[1], &out[MESSAGE_OVERHEAD..]).unwrap();
        assert_eq!(m.sample_bodies().count() as u64, seq);
    }

    #[test]
    fn bad_samples_payloads_are_typed_errors() {
        // No body at all.
        let p = 7u64.to_le_bytes();
        assert_eq!(
            Message::decode(kind::SAMPLES, &p),
            Err(WireError::BadField("sample count"))
        );
        // A length byte promising more than is there.
        let mut p = 7u64.to_le_bytes().to_vec();
        p.extend_from_slice(&[2, 1, 5, 1]);
        assert!(matches!(
            Message::decode(kind::SAMPLES, &p),
            Err(WireError::Truncated { .. })
        ));
        // Sequence numbers that would wrap.
        let mut p = (u64::MAX - 1).to_le_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 0]);
        assert_eq!(
            Message::decode(kind::SAMPLES, &p),
            Err(WireError::BadField("first_seq"))
        );
    }

    #[test]
    fn garbage_and_unknown_kinds_are_counted_and_skipped() {
        let mut bytes = vec![1, 2, 3];
        bytes.extend_from_slice(&[MAGIC, 0x7f, 2, 0, 9, 9]);
        bytes.extend(Message::Stop(key()).to_bytes().unwrap());
        let mut d = MessageDecoder::new();
        d.push(&bytes);
        assert_eq!(d.next_message(), Some(Err(WireError::Garbage(3))));
        assert_eq!(d.next_message(), Some(Err(WireError::UnknownKind(0x7f))));
        assert_eq!(d.next_message(), Some(Ok(Message::Stop(key()))));
        assert_eq!(d.stats().malformed, 1);
        assert_eq!(d.stats().garbage_bytes, 3);
    }

    #[test]
    fn too_long_strings_are_refused() {
        let m = Message::Stop(StreamKey {
            device: "x".repeat(300),
            stream: "s".into(),
        });
        let mut out = vec![1];
        assert_eq!(m.encode(&mut out), Err(EncodeError::StringTooLong(300)));
        assert_eq!(out, [1]);
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_messages(cuts in proptest::collection::vec(0usize..400, 0..20)) {
            let msgs = all();
            let mut bytes = Vec::new();
            for m in &msgs { m.encode(&mut bytes).unwrap(); }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut d = MessageDecoder::new();
            let mut got = Vec::new();
            let mut last = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                d.push(&bytes[last..c]);
                last = c;
                while let Some(m) = d.next_message() { got.push(m.unwrap()); }
            }
            prop_assert_eq!(got, msgs);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut d = MessageDecoder::new();
            d.push(&bytes);
            let mut n = 0;
            while d.next_message().is_some() { n += 1; prop_assert!(n <= bytes.len()); }
        }
    }
}
