//! The serial frame: a versioned, typed, CRC-32-protected record, COBS-stuffed and
//! terminated by a single 0x00 byte.
//!
//! Layout before stuffing (all integers little-endian, floats IEEE-754 binary32 LE):
//!
//! | bytes | field |
//! |-------|-------|
//! | 0     | protocol version, [`PROTOCOL_VERSION`] |
//! | 1     | frame kind, [`FrameKind`] |
//! | 2 ..  | payload, fixed length per kind |
//! | last 4 | CRC-32/ISO-HDLC over bytes 0 .. end of payload |
//!
//! Sample payload (40 bytes): `seq u32, millis u32, ax ay az f32 (g), gx gy gz f32 (dps),
//! temp f32 (°C), audio_rms f32 (counts)`.
//! Device-info payload (8 bytes): `fw major u8, minor u8, patch u8, rate_hz u16,
//! accel_range_g u8, gyro_range_dps u16`.

use crate::cobs;
use crate::sample::{DeviceInfo, ImuSample, SeqNo};
use crc::{CRC_32_ISO_HDLC, Crc};

/// Version byte of every frame this crate writes; frames with another version are
/// rejected with [`DecodeError::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u8 = 1;

/// The byte that ends every frame on the wire.
pub const FRAME_DELIMITER: u8 = 0x00;

/// Length of a sample frame's payload.
pub const SAMPLE_PAYLOAD_LEN: usize = 40;
/// Length of a device-info frame's payload.
pub const INFO_PAYLOAD_LEN: usize = 8;

const HEADER_LEN: usize = 2;
const CRC_LEN: usize = 4;
const OVERHEAD: usize = HEADER_LEN + CRC_LEN;

/// Largest frame before stuffing, over all kinds this version knows.
pub const MAX_RAW_FRAME_LEN: usize = OVERHEAD + SAMPLE_PAYLOAD_LEN;

/// Largest frame on the wire, stuffed, including the trailing delimiter.
pub const MAX_WIRE_FRAME_LEN: usize = cobs::max_encoded_len(MAX_RAW_FRAME_LEN) + 1;

/// CRC-32 engine. Bare-metal targets use the 1 KiB byte-wise table (flash is
/// scarce); hosts use the 16 KiB slice-by-16 table, several times faster on the
/// decoders of many devices. Both compute the same CRC (pinned by the self-test
/// golden frame, which runs on both).
#[cfg(target_os = "none")]
static CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);
#[cfg(not(target_os = "none"))]
static CRC32: Crc<u32, crc::Table<16>> = Crc::<u32, crc::Table<16>>::new(&CRC_32_ISO_HDLC);

/// Frame kind byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// An [`ImuSample`] (kind byte 0x01).
    Sample,
    /// A [`DeviceInfo`] (kind byte 0x02).
    DeviceInfo,
}

impl FrameKind {
    /// The kind byte on the wire.
    #[must_use]
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Sample => 0x01,
            Self::DeviceInfo => 0x02,
        }
    }

    /// The kind for a wire byte, if known.
    #[must_use]
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x01 => Some(Self::Sample),
            0x02 => Some(Self::DeviceInfo),
            _ => None,
        }
    }

    /// Payload length of this kind.
    #[must_use]
    pub const fn payload_len(self) -> usize {
        match self {
            Self::Sample => SAMPLE_PAYLOAD_LEN,
            Self::DeviceInfo => INFO_PAYLOAD_LEN,
        }
    }
}

/// A decoded frame.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Frame {
    /// One sensor sample.
    Sample(ImuSample),
    /// The device describing itself.
    DeviceInfo(DeviceInfo),
}

impl Frame {
    /// The kind of this frame.
    #[must_use]
    pub const fn kind(&self) -> FrameKind {
        match self {
            Self::Sample(_) => FrameKind::Sample,
            Self::DeviceInfo(_) => FrameKind::DeviceInfo,
        }
    }

    /// Encodes this frame for the wire (stuffed, with the trailing delimiter).
    #[must_use]
    pub fn encode(&self) -> WireFrame {
        let mut raw = [0u8; MAX_RAW_FRAME_LEN];
        raw[0] = PROTOCOL_VERSION;
        raw[1] = self.kind().to_byte();
        let payload_len = self.kind().payload_len();
        let payload = &mut raw[HEADER_LEN..HEADER_LEN + payload_len];
        match self {
            Self::Sample(s) => write_sample(s, payload),
            Self::DeviceInfo(i) => write_info(i, payload),
        }
        let body = HEADER_LEN + payload_len;
        let crc = CRC32.checksum(&raw[..body]);
        raw[body..body + CRC_LEN].copy_from_slice(&crc.to_le_bytes());
        let mut wire = WireFrame {
            bytes: [0; MAX_WIRE_FRAME_LEN],
            len: 0,
        };
        // `wire.bytes` holds max_encoded_len(MAX_RAW_FRAME_LEN) + 1 bytes, enough for
        // any raw frame plus the delimiter, so the fallback is never taken.
        let stuffed = cobs::encode(&raw[..body + CRC_LEN], &mut wire.bytes).unwrap_or(0);
        wire.bytes[stuffed] = FRAME_DELIMITER;
        wire.len = stuffed + 1;
        wire
    }
}

impl From<ImuSample> for Frame {
    fn from(sample: ImuSample) -> Self {
        Self::Sample(sample)
    }
}

impl From<DeviceInfo> for Frame {
    fn from(info: DeviceInfo) -> Self {
        Self::DeviceInfo(info)
    }
}

/// One encoded frame, ready to write to the serial line. Owns its bytes in a fixed
/// array (no allocation); [`WireFrame::as_bytes`] is the part to send.
#[derive(Clone, Copy)]
pub struct WireFrame {
    bytes: [u8; MAX_WIRE_FRAME_LEN],
    len: usize,
}

impl WireFrame {
    /// The bytes to send, ending with [`FRAME_DELIMITER`].
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Number of bytes to send.
    #[must_use]
    #[allow(clippy::len_without_is_empty)] // never empty: always ends with the delimiter
    pub const fn len(&self) -> usize {
        self.len
    }
}

impl core::fmt::Debug for WireFrame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WireFrame")
            .field("bytes", &self.as_bytes())
            .finish()
    }
}

impl AsRef<[u8]> for WireFrame {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Why a frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The byte stuffing is invalid (a code byte points past the end of the frame).
    #[error("invalid COBS stuffing")]
    Cobs,
    /// The frame is shorter than its kind requires (cut off, e.g. by a reconnect).
    #[error("truncated frame: {len} bytes, at least {expected} expected")]
    Truncated {
        /// Unstuffed length received.
        len: usize,
        /// Unstuffed length required.
        expected: usize,
    },
    /// More bytes arrived without a delimiter than any valid frame has; the decoder
    /// drops everything up to the next delimiter.
    #[error("oversized frame: more than {max} bytes before a delimiter")]
    Oversized {
        /// Largest stuffed length accepted.
        max: usize,
    },
    /// The CRC does not match: the frame was corrupted.
    #[error("CRC mismatch: frame says {expected:#010x}, computed {computed:#010x}")]
    Crc {
        /// CRC carried by the frame.
        expected: u32,
        /// CRC of the received bytes.
        computed: u32,
    },
    /// The CRC is valid but the protocol version is not one this crate speaks.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The CRC is valid but the kind byte is unknown.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// The CRC is valid but the payload length does not match the kind.
    #[error("payload of {len} bytes for frame kind {kind:?}, expected {expected}")]
    PayloadLength {
        /// The frame kind.
        kind: FrameKind,
        /// Payload length received.
        len: usize,
        /// Payload length of that kind.
        expected: usize,
    },
}

/// Decodes one frame from its stuffed bytes, without the trailing delimiter.
///
/// For a byte stream use [`FrameDecoder`](crate::FrameDecoder), which finds the
/// delimiters, resynchronises and counts errors.
///
/// # Errors
/// Every malformed input gives a [`DecodeError`]; this function never panics.
pub fn decode_frame(stuffed: &[u8]) -> Result<Frame, DecodeError> {
    if stuffed.len() > cobs::max_encoded_len(MAX_RAW_FRAME_LEN) {
        return Err(DecodeError::Oversized {
            max: cobs::max_encoded_len(MAX_RAW_FRAME_LEN),
        });
    }
    let mut raw = [0u8; MAX_RAW_FRAME_LEN];
    let len = cobs::decode(stuffed, &mut raw).map_err(|e| match e {
        cobs::CobsError::Overflow => DecodeError::Oversized {
            max: cobs::max_encoded_len(MAX_RAW_FRAME_LEN),
        },
        cobs::CobsError::Truncated | cobs::CobsError::ZeroByte => DecodeError::Cobs,
    })?;
    decode_raw(&raw[..len])
}

fn decode_raw(raw: &[u8]) -> Result<Frame, DecodeError> {
    let Some(body_len) = raw.len().checked_sub(CRC_LEN).filter(|&b| b >= HEADER_LEN) else {
        return Err(DecodeError::Truncated {
            len: raw.len(),
            expected: OVERHEAD,
        });
    };
    let (body, crc_bytes) = raw.split_at(body_len);
    let expected = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let computed = CRC32.checksum(body);
    let version = body[0];
    let kind = FrameKind::from_byte(body[1]);
    let payload = &body[HEADER_LEN..];
    if computed != expected {
        // A well-formed header with too few bytes is most likely a frame cut short;
        // anything else is corruption.
        if let Some(kind) = kind.filter(|_| version == PROTOCOL_VERSION) {
            if payload.len() < kind.payload_len() {
                return Err(DecodeError::Truncated {
                    len: raw.len(),
                    expected: OVERHEAD + kind.payload_len(),
                });
            }
        }
        return Err(DecodeError::Crc { expected, computed });
    }
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let kind = kind.ok_or(DecodeError::UnknownKind(body[1]))?;
    if payload.len() != kind.payload_len() {
        return Err(DecodeError::PayloadLength {
            kind,
            len: payload.len(),
            expected: kind.payload_len(),
        });
    }
    Ok(match kind {
        FrameKind::Sample => Frame::Sample(read_sample(payload)),
        FrameKind::DeviceInfo => Frame::DeviceInfo(read_info(payload)),
    })
}

/// Little-endian field writer over a fixed payload slice whose length the caller
/// sized from [`FrameKind::payload_len`].
struct Put<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Put<'_> {
    fn bytes(&mut self, b: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.at..self.at + b.len()) {
            dst.copy_from_slice(b);
        }
        self.at += b.len();
    }
}

/// Little-endian field reader; reads past the end yield zeros (callers check the
/// length first, so this never happens).
struct Get<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Get<'_> {
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.buf.get(self.at..self.at + N) {
            out.copy_from_slice(src);
        }
        self.at += N;
        out
    }
    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
    fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.array())
    }
}

fn write_sample(s: &ImuSample, payload: &mut [u8]) {
    let mut put = Put {
        buf: payload,
        at: 0,
    };
    put.bytes(&s.seq.0.to_le_bytes());
    put.bytes(&s.millis.to_le_bytes());
    for v in s.accel_g.iter().chain(&s.gyro_dps) {
        put.bytes(&v.to_le_bytes());
    }
    put.bytes(&s.temp_c.to_le_bytes());
    put.bytes(&s.audio_rms.to_le_bytes());
}

fn read_sample(payload: &[u8]) -> ImuSample {
    let mut get = Get {
        buf: payload,
        at: 0,
    };
    ImuSample {
        seq: SeqNo(get.u32()),
        millis: get.u32(),
        accel_g: [get.f32(), get.f32(), get.f32()],
        gyro_dps: [get.f32(), get.f32(), get.f32()],
        temp_c: get.f32(),
        audio_rms: get.f32(),
    }
}

fn write_info(i: &DeviceInfo, payload: &mut [u8]) {
    let mut put = Put {
        buf: payload,
        at: 0,
    };
    put.bytes(&i.firmware_version);
    put.bytes(&i.rate_hz.to_le_bytes());
    put.bytes(&[i.accel_range_g]);
    put.bytes(&i.gyro_range_dps.to_le_bytes());
}

fn read_info(payload: &[u8]) -> DeviceInfo {
    let mut get = Get {
        buf: payload,
        at: 0,
    };
    DeviceInfo {
        firmware_version: [get.u8(), get.u8(), get.u8()],
        rate_hz: get.u16(),
        accel_range_g: get.u8(),
        gyro_range_dps: get.u16(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ImuSample {
        ImuSample {
            seq: SeqNo(7),
            millis: 1234,
            accel_g: [0.01, -0.02, 1.0],
            gyro_dps: [1.5, -2.5, 0.0],
            temp_c: 24.75,
            audio_rms: 123.5,
        }
    }

    #[test]
    fn sample_round_trips() {
        let wire = Frame::Sample(sample()).encode();
        let bytes = wire.as_bytes();
        assert_eq!(*bytes.last().unwrap(), FRAME_DELIMITER);
        assert!(!bytes[..bytes.len() - 1].contains(&0));
        assert!(bytes.len() <= MAX_WIRE_FRAME_LEN);
        let decoded = decode_frame(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(decoded, Frame::Sample(sample()));
    }

    #[test]
    fn info_round_trips() {
        let info = DeviceInfo {
            firmware_version: [0, 1, 2],
            rate_hz: 25,
            accel_range_g: 4,
            gyro_range_dps: 2000,
        };
        let wire = Frame::DeviceInfo(info).encode();
        let n = wire.len();
        assert_eq!(
            decode_frame(&wire.as_bytes()[..n - 1]),
            Ok(Frame::DeviceInfo(info))
        );
    }

    fn stuff(raw: &[u8]) -> ([u8; 80], usize) {
        let mut out = [0u8; 80];
        let n = cobs::encode(raw, &mut out).unwrap();
        (out, n)
    }

    fn with_crc(body: &[u8]) -> ([u8; 70], usize) {
        let mut raw = [0u8; 70];
        raw[..body.len()].copy_from_slice(body);
        let crc = CRC32.checksum(body);
        raw[body.len()..body.len() + 4].copy_from_slice(&crc.to_le_bytes());
        (raw, body.len() + 4)
    }

    #[test]
    fn typed_errors() {
        // Valid CRC, wrong version.
        let (raw, n) = with_crc(&[9, 1, 0, 0]);
        let (s, m) = stuff(&raw[..n]);
        assert_eq!(
            decode_frame(&s[..m]),
            Err(DecodeError::UnsupportedVersion(9))
        );
        // Valid CRC, unknown kind.
        let (raw, n) = with_crc(&[1, 0x7F]);
        let (s, m) = stuff(&raw[..n]);
        assert_eq!(decode_frame(&s[..m]), Err(DecodeError::UnknownKind(0x7F)));
        // Valid CRC, short sample payload.
        let (raw, n) = with_crc(&[1, 1, 5, 5]);
        let (s, m) = stuff(&raw[..n]);
        assert!(matches!(
            decode_frame(&s[..m]),
            Err(DecodeError::PayloadLength {
                kind: FrameKind::Sample,
                len: 2,
                expected: 40
            })
        ));
        // Cut-off sample frame.
        let wire = Frame::Sample(sample()).encode();
        let (raw_full, _) = {
            let mut raw = [0u8; MAX_RAW_FRAME_LEN];
            let n = cobs::decode(&wire.as_bytes()[..wire.len() - 1], &mut raw).unwrap();
            (raw, n)
        };
        let (s, m) = stuff(&raw_full[..30]);
        assert!(matches!(
            decode_frame(&s[..m]),
            Err(DecodeError::Truncated { len: 30, .. })
        ));
        // Too short for a header.
        assert!(matches!(
            decode_frame(&[0x02, 0x01]),
            Err(DecodeError::Truncated { .. })
        ));
        // Bad stuffing.
        assert_eq!(decode_frame(&[0x09, 1, 2]), Err(DecodeError::Cobs));
        // Oversized.
        assert!(matches!(
            decode_frame(&[1u8; 200]),
            Err(DecodeError::Oversized { .. })
        ));
    }
}
