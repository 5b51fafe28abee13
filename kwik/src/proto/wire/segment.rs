//! Stream data on the wire. Each (path, logical stream) pair uses QUIC
//! unidirectional streams that start with `kind (varint, 0 = data) | stream id
//! (varint)` and then carry segments `flags (u8, bit 0 = FIN) | offset (varint) |
//! length (varint) | length bytes`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kwik_presentation::StreamId;

use crate::proto::wire::frame::DecodeError;
use crate::proto::wire::varint::{self, VARINT_MAX, VarintAccumulator};

/// Kind of a data stream that carries segments of one logical stream.
pub(crate) const STREAM_KIND_DATA: u64 = 0;
/// Largest segment payload a receiver accepts, in bytes.
pub(crate) const MAX_SEGMENT_LEN: u64 = 1 << 24;
const FLAG_FIN: u8 = 0x01;

/// Writes the header that opens a data stream for `stream`.
pub(crate) fn encode_stream_header(buf: &mut BytesMut, stream: StreamId) {
    varint::encode(buf, STREAM_KIND_DATA);
    varint::encode(buf, stream.into_inner());
}

/// Writes a segment header; the `length` payload bytes follow it.
pub(crate) fn encode_segment_header(buf: &mut BytesMut, offset: u64, length: u64, fin: bool) {
    buf.put_u8(if fin { FLAG_FIN } else { 0 });
    varint::encode(buf, offset);
    varint::encode(buf, length);
}

/// A contiguous part of a segment as it arrived; `fin` is set on the part that ends
/// a FIN segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    /// The logical stream.
    pub(crate) stream: StreamId,
    /// Logical offset of the first byte.
    pub(crate) offset: u64,
    /// The bytes (a slice of what the transport delivered, not a copy).
    pub(crate) data: Bytes,
    /// The stream ends at `offset + data.len()`.
    pub(crate) fin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Kind,
    Stream,
    Flags,
    Offset,
    Length,
    Data,
}

/// Parses one data stream incrementally, without copying payload bytes.
#[derive(Debug)]
pub(crate) struct SegmentReader {
    state: State,
    acc: VarintAccumulator,
    stream: Option<StreamId>,
    fin: bool,
    offset: u64,
    remaining: u64,
}

impl Default for SegmentReader {
    fn default() -> Self {
        Self::new()
    }
}

impl SegmentReader {
    /// A reader at the start of a data stream.
    pub(crate) fn new() -> Self {
        Self {
            state: State::Kind,
            acc: VarintAccumulator::default(),
            stream: None,
            fin: false,
            offset: 0,
            remaining: 0,
        }
    }

    /// True between segments (a clean place for the data stream to end).
    pub(crate) fn at_boundary(&self) -> bool {
        self.state == State::Flags || (self.state == State::Kind && self.acc.is_empty())
    }

    /// Feeds bytes of the data stream, appending the pieces they complete to `out`.
    pub(crate) fn feed(
        &mut self,
        mut chunk: Bytes,
        out: &mut Vec<Piece>,
    ) -> Result<(), DecodeError> {
        while chunk.has_remaining() || (self.state == State::Data && self.remaining == 0) {
            match self.state {
                State::Data => {
                    let take = (self.remaining as usize).min(chunk.len());
                    let data = chunk.split_to(take);
                    self.remaining -= take as u64;
                    let fin = self.fin && self.remaining == 0;
                    let stream = self.stream.ok_or(DecodeError::InvalidValue("stream"))?;
                    if !data.is_empty() || fin {
                        out.push(Piece {
                            stream,
                            offset: self.offset,
                            data,
                            fin,
                        });
                    }
                    self.offset += take as u64;
                    if self.remaining == 0 {
                        self.state = State::Flags;
                    }
                }
                State::Flags => {
                    let flags = chunk.get_u8();
                    if flags & !FLAG_FIN != 0 {
                        return Err(DecodeError::InvalidValue("segment flags"));
                    }
                    self.fin = flags & FLAG_FIN != 0;
                    self.state = State::Offset;
                }
                state => {
                    let Some(value) = self.acc.push(chunk.get_u8()) else {
                        continue;
                    };
                    match state {
                        State::Kind => {
                            if value != STREAM_KIND_DATA {
                                return Err(DecodeError::UnknownStreamKind(value));
                            }
                            self.state = State::Stream;
                        }
                        State::Stream => {
                            self.stream = Some(StreamId::new(value));
                            self.state = State::Flags;
                        }
                        State::Offset => {
                            self.offset = value;
                            self.state = State::Length;
                        }
                        State::Length => {
                            if value > MAX_SEGMENT_LEN {
                                return Err(DecodeError::InvalidValue("segment length"));
                            }
                            if self
                                .offset
                                .checked_add(value)
                                .is_none_or(|end| end > VARINT_MAX)
                            {
                                return Err(DecodeError::SegmentOverflow {
                                    offset: self.offset,
                                    length: value,
                                });
                            }
                            self.remaining = value;
                            self.state = State::Data;
                            if value == 0 {
                                // Emits the (FIN-only) piece and returns to Flags.
                                continue;
                            }
                        }
                        State::Flags | State::Data => {}
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn segments_round_trip_any_split(
            id in 0u64..VARINT_MAX,
            segs in proptest::collection::vec((0u64..1 << 40, proptest::collection::vec(any::<u8>(), 0..300), any::<bool>()), 1..6),
            split in 1usize..50,
        ) {
            let stream = StreamId::new(id);
            let mut wire = BytesMut::new();
            encode_stream_header(&mut wire, stream);
            for (off, data, fin) in &segs {
                encode_segment_header(&mut wire, *off, data.len() as u64, *fin);
                wire.put_slice(data);
            }
            let wire = wire.freeze();
            let mut reader = SegmentReader::new();
            let mut pieces = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                let end = (at + split).min(wire.len());
                reader.feed(wire.slice(at..end), &mut pieces).unwrap();
                at = end;
            }
            prop_assert!(reader.at_boundary());
            // Rebuild each segment from its pieces.
            let mut rebuilt: Vec<(u64, Vec<u8>, bool)> = Vec::new();
            let mut cur: Option<(u64, Vec<u8>)> = None;
            let want: Vec<_> = segs.iter().filter(|(_, d, f)| !d.is_empty() || *f).cloned().collect();
            let mut seg_iter = want.iter();
            let mut expected = seg_iter.next();
            for p in pieces {
                prop_assert_eq!(p.stream, stream);
                let (start, buf) = cur.get_or_insert((p.offset, Vec::new()));
                prop_assert_eq!(*start + buf.len() as u64, p.offset);
                buf.extend_from_slice(&p.data);
                let (eoff, edata, efin) = expected.unwrap();
                if buf.len() == edata.len() && (p.fin || !efin) {
                    let (s, b) = cur.take().unwrap();
                    rebuilt.push((s, b, p.fin));
                    prop_assert_eq!(s, *eoff);
                    expected = seg_iter.next();
                }
            }
            prop_assert_eq!(rebuilt, want);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut reader = SegmentReader::new();
            let mut out = Vec::new();
            let _ = reader.feed(Bytes::from(bytes), &mut out);
        }
    }

    #[test]
    fn bad_kind_flags_and_overflow_rejected() {
        let mut r = SegmentReader::new();
        assert_eq!(
            r.feed(Bytes::from_static(&[0x05]), &mut Vec::new()),
            Err(DecodeError::UnknownStreamKind(5))
        );
        let mut r = SegmentReader::new();
        assert_eq!(
            r.feed(Bytes::from_static(&[0, 4, 0x80]), &mut Vec::new()),
            Err(DecodeError::InvalidValue("segment flags"))
        );
        let mut wire = BytesMut::new();
        encode_stream_header(&mut wire, StreamId::new(0));
        encode_segment_header(&mut wire, VARINT_MAX - 2, 10, false);
        let mut r = SegmentReader::new();
        assert!(matches!(
            r.feed(wire.freeze(), &mut Vec::new()),
            Err(DecodeError::SegmentOverflow { .. })
        ));
        let mut wire = BytesMut::new();
        encode_stream_header(&mut wire, StreamId::new(0));
        encode_segment_header(&mut wire, 0, MAX_SEGMENT_LEN + 1, false);
        let mut r = SegmentReader::new();
        assert_eq!(
            r.feed(wire.freeze(), &mut Vec::new()),
            Err(DecodeError::InvalidValue("segment length"))
        );
    }

    #[test]
    fn mid_segment_is_not_boundary() {
        let mut wire = BytesMut::new();
        encode_stream_header(&mut wire, StreamId::new(8));
        encode_segment_header(&mut wire, 0, 10, true);
        wire.put_slice(&[7; 4]);
        let mut r = SegmentReader::new();
        let mut out = Vec::new();
        r.feed(wire.freeze(), &mut out).unwrap();
        assert!(!r.at_boundary());
        assert_eq!(out.len(), 1);
        assert!(!out[0].fin);
    }
}
