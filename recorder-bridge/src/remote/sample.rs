//! Sample bodies on the wire, one generic trait for all schemas: the XIAO IMU sample
//! travels as the board's own `xiao-proto` frame (COBS + CRC-32), E-field and stage
//! samples as fixed little-endian records.

use xiao_proto::{Frame, FrameDecoder};

use crate::capture::sources::xiao::{imu_row, imu_sample};
use crate::format::schema::{EfieldSample, ImuRow, Schema};
use crate::format::segment::{LineState, Segment, SegmentId};
use crate::format::time::RelMicros;
use crate::remote::wire::WireSchema;

/// Why a sample body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// The body has the wrong length.
    #[error("sample body of {got} bytes, expected {want}")]
    Length {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// The embedded device frame is corrupt (COBS, CRC, kind or length).
    #[error("device frame: {0}")]
    Frame(xiao_proto::DecodeError),
    /// The embedded device frame is not a sample frame.
    #[error("device frame is not a sample")]
    NotASample,
    /// The device frame's 32-bit sequence number disagrees with the message's.
    #[error("device frame sequence {frame} does not match message sequence {message}")]
    SeqMismatch {
        /// Low 32 bits of the message's sequence number.
        message: u32,
        /// The frame's sequence number.
        frame: u32,
    },
    /// A flag field has an invalid value.
    #[error("invalid line flag {0}")]
    LineFlag(u8),
}

/// A schema that can travel in a sensor stream.
pub trait WireSample: Schema {
    /// Its schema byte.
    const WIRE: WireSchema;
    /// Appends the body of sample `seq` to `out`.
    fn encode_body(&self, seq: u64, out: &mut Vec<u8>);
    /// Decodes the body of sample `seq`.
    fn decode_body(seq: u64, body: &[u8]) -> Result<Self, SampleError>;
    /// The sample's device (or acquisition) time in microseconds, for time anchors.
    fn device_time_us(&self) -> u64;
}

impl WireSample for ImuRow {
    const WIRE: WireSchema = WireSchema::Imu;

    fn device_time_us(&self) -> u64 {
        u64::from(self.millis) * 1000
    }

    fn encode_body(&self, seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(Frame::Sample(imu_sample(seq, self)).encode().as_bytes());
    }

    fn decode_body(seq: u64, body: &[u8]) -> Result<Self, SampleError> {
        let mut d = FrameDecoder::new();
        let mut frame = None;
        for f in d.decode(body) {
            if frame.is_some() {
                return Err(SampleError::Length {
                    got: body.len(),
                    want: xiao_proto::MAX_WIRE_FRAME_LEN,
                });
            }
            frame = Some(f.map_err(SampleError::Frame)?);
        }
        if d.pending() != 0 {
            return Err(SampleError::Length {
                got: body.len(),
                want: xiao_proto::MAX_WIRE_FRAME_LEN,
            });
        }
        match frame {
            Some(Frame::Sample(s)) if s.seq.0 == seq as u32 => Ok(imu_row(&s)),
            Some(Frame::Sample(s)) => Err(SampleError::SeqMismatch {
                message: seq as u32,
                frame: s.seq.0,
            }),
            Some(_) => Err(SampleError::NotASample),
            None => Err(SampleError::Length {
                got: body.len(),
                want: xiao_proto::MAX_WIRE_FRAME_LEN,
            }),
        }
    }
}

fn put_prefix(out: &mut Vec<u8>, t: RelMicros, seg: Segment) {
    out.extend_from_slice(&t.0.to_le_bytes());
    out.extend_from_slice(&seg.id.0.to_le_bytes());
    out.push(seg.line.as_flag());
}

fn get_prefix(body: &[u8]) -> Result<(RelMicros, Segment), SampleError> {
    let t = u64::from_le_bytes(
        body[0..8]
            .try_into()
            .map_err(|_| SampleError::LineFlag(0))?,
    );
    let id = u32::from_le_bytes(
        body[8..12]
            .try_into()
            .map_err(|_| SampleError::LineFlag(0))?,
    );
    let line = LineState::from_flag(body[12]).ok_or(SampleError::LineFlag(body[12]))?;
    Ok((
        RelMicros(t),
        Segment {
            id: SegmentId(id),
            line,
        },
    ))
}

fn f64_at(body: &[u8], at: usize) -> f64 {
    let mut b = [0; 8];
    b.copy_from_slice(&body[at..at + 8]);
    f64::from_le_bytes(b)
}

const PREFIX_LEN: usize = 13;
const EFIELD_LEN: usize = PREFIX_LEN + 8 * 8;
const STAGE_LEN: usize = PREFIX_LEN + 2 * 8;

fn check_len(body: &[u8], want: usize) -> Result<(), SampleError> {
    if body.len() == want {
        Ok(())
    } else {
        Err(SampleError::Length {
            got: body.len(),
            want,
        })
    }
}

impl WireSample for EfieldSample {
    const WIRE: WireSchema = WireSchema::Efield;

    fn device_time_us(&self) -> u64 {
        self.t_rel.0
    }

    fn encode_body(&self, _seq: u64, out: &mut Vec<u8>) {
        put_prefix(out, self.t_rel, self.segment);
        for c in self.channels {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }

    fn decode_body(seq: u64, body: &[u8]) -> Result<Self, SampleError> {
        check_len(body, EFIELD_LEN)?;
        let (t_rel, segment) = get_prefix(body)?;
        let mut channels = [0.0; 8];
        for (i, c) in channels.iter_mut().enumerate() {
            *c = f64_at(body, PREFIX_LEN + 8 * i);
        }
        Ok(EfieldSample {
            index: seq,
            t_rel,
            segment,
            channels,
        })
    }
}

impl WireSample for crate::format::schema::StagePosition {
    const WIRE: WireSchema = WireSchema::Stage;

    fn device_time_us(&self) -> u64 {
        self.t_rel.0
    }

    fn encode_body(&self, _seq: u64, out: &mut Vec<u8>) {
        put_prefix(out, self.t_rel, self.segment);
        out.extend_from_slice(&self.x.to_le_bytes());
        out.extend_from_slice(&self.y.to_le_bytes());
    }

    fn decode_body(seq: u64, body: &[u8]) -> Result<Self, SampleError> {
        check_len(body, STAGE_LEN)?;
        let (t_rel, segment) = get_prefix(body)?;
        Ok(crate::format::schema::StagePosition {
            index: seq,
            t_rel,
            segment,
            x: f64_at(body, PREFIX_LEN),
            y: f64_at(body, PREFIX_LEN + 8),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::sources::signal::{RateHz, SignalGenerator, SimEfield, SimImu, SimStage};
    use crate::format::schema::StagePosition;

    /// One suite for every schema: encode then decode gives the sample back, every
    /// truncation and every flipped bit of the body is an error or (for the unchecked
    /// fixed records) a different but well-formed value — never a panic.
    fn round_trip<S: WireSample>(samples: impl Iterator<Item = (u64, S)>) {
        for (seq, s) in samples {
            let mut body = Vec::new();
            s.encode_body(seq, &mut body);
            assert_eq!(S::decode_body(seq, &body), Ok(s));
            for cut in 0..body.len() {
                assert!(S::decode_body(seq, &body[..cut]).is_err());
            }
            for i in 0..body.len() {
                let mut b = body.clone();
                b[i] ^= 0x10;
                let _ = S::decode_body(seq, &b);
            }
        }
    }

    #[test]
    fn all_schemas_round_trip() {
        let rate = RateHz::try_from(1000).unwrap();
        let imu = SimImu { rate };
        round_trip((0..50u64).map(|i| (i + (1 << 33), imu.sample(i))));
        let ef = SimEfield { rate };
        round_trip((0..50u64).map(|i| (i, ef.sample(i))));
        let st = SimStage { rate };
        round_trip((0..50u64).map(|i| (i, st.sample(i))));
    }

    #[test]
    fn corrupt_imu_frames_are_rejected() {
        let row = SimImu {
            rate: RateHz::try_from(100).unwrap(),
        }
        .sample(3);
        let mut body = Vec::new();
        row.encode_body(3, &mut body);
        for i in 0..body.len() - 1 {
            let mut b = body.clone();
            b[i] ^= 0x01;
            if b[i] == 0 {
                continue;
            }
            assert!(ImuRow::decode_body(3, &b).is_err(), "flip at {i} accepted");
        }
        assert!(matches!(
            ImuRow::decode_body(4, &body),
            Err(SampleError::SeqMismatch { .. })
        ));
        let _ = StagePosition::default();
    }
}
