//! The KWIK wire format as docs/PROTOCOL.md writes it down, for tests that play
//! a raw peer over quinn: the control frames those tests send or expect (§3)
//! and the data stream header and segments (§2). Written from the document,
//! not from the crate's codec, so the tests also check that the two agree.

#![allow(dead_code)]

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kwik::{PathId, RefuseReason, SessionId, StreamId};

const OPEN: u64 = 0x01;
const JOIN: u64 = 0x02;
const WELCOME: u64 = 0x03;
const REFUSED: u64 = 0x04;
const TOKEN_REQUEST: u64 = 0x05;
const PATH_TOKEN: u64 = 0x06;
const SESSION_CREDIT: u64 = 0x10;
const STREAM_CREDIT: u64 = 0x11;
const BACKPRESSURE: u64 = 0x13;
const GRANT: u64 = 0x23;

/// Data stream kind DATA (§2).
const KIND_DATA: u64 = 0x00;
/// Segment flag bit 0 (§2).
const FLAG_FIN: u8 = 0x01;

/// The control frames these tests speak (§3); any other type decodes as `Other`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Open {
        version: u64,
        max_data: u64,
        stream_credit: u64,
    },
    Join {
        session: SessionId,
        path: PathId,
        token: Bytes,
    },
    /// `version` is on the wire from version 2 on (§3.1); 1 when absent.
    Welcome {
        session: SessionId,
        path: PathId,
        max_data: u64,
        stream_credit: u64,
        version: u64,
    },
    Refused {
        reason: RefuseReason,
    },
    TokenRequest {
        path: PathId,
    },
    PathToken {
        path: PathId,
        token: Bytes,
    },
    SessionCredit {
        max_data: u64,
    },
    StreamCredit {
        stream: StreamId,
        max_offset: u64,
    },
    /// `reason` is on the wire from version 2 on (§3.3); `None` when absent.
    Backpressure {
        stream: Option<StreamId>,
        on: bool,
        reason: Option<u64>,
    },
    Grant {
        grant: Bytes,
    },
    /// A frame of another type, with its payload.
    Other {
        ty: u64,
        payload: Bytes,
    },
}

/// RFC 9000 §16 varint.
fn put_varint(buf: &mut BytesMut, v: u64) {
    if v < 1 << 6 {
        buf.put_u8(v as u8);
    } else if v < 1 << 14 {
        buf.put_u16(0x4000 | v as u16);
    } else if v < 1 << 30 {
        buf.put_u32(0x8000_0000 | v as u32);
    } else {
        assert!(v < 1 << 62, "varint out of range");
        buf.put_u64(0xc000_0000_0000_0000 | v);
    }
}

/// Reads a varint from the front of `buf`; `None` if it is incomplete.
fn get_varint(buf: &mut &[u8]) -> Option<u64> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return None;
    }
    let mut v = u64::from(first & 0x3f);
    for b in &buf[1..len] {
        v = (v << 8) | u64::from(*b);
    }
    buf.advance(len);
    Some(v)
}

fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    put_varint(buf, bytes.len() as u64);
    buf.put_slice(bytes);
}

/// The refuse reason codes of §3.1 and §3.2.
fn refuse_code(reason: RefuseReason) -> u64 {
    match reason {
        RefuseReason::Version => 1,
        RefuseReason::UnknownSession => 2,
        RefuseReason::BadToken => 3,
        RefuseReason::ReusedToken => 4,
        RefuseReason::ExpiredToken => 5,
        RefuseReason::PathInUse => 6,
        RefuseReason::Unavailable => 7,
        other => panic!("no code for {other:?}"),
    }
}

fn refuse_reason(code: u64) -> RefuseReason {
    match code {
        1 => RefuseReason::Version,
        2 => RefuseReason::UnknownSession,
        3 => RefuseReason::BadToken,
        4 => RefuseReason::ReusedToken,
        5 => RefuseReason::ExpiredToken,
        6 => RefuseReason::PathInUse,
        7 => RefuseReason::Unavailable,
        other => panic!("unknown refuse reason {other}"),
    }
}

impl Frame {
    /// Appends `type | length | payload` (§3).
    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        let mut p = BytesMut::new();
        let ty = match self {
            Frame::Open {
                version,
                max_data,
                stream_credit,
            } => {
                put_varint(&mut p, *version);
                put_varint(&mut p, *max_data);
                put_varint(&mut p, *stream_credit);
                OPEN
            }
            Frame::Join {
                session,
                path,
                token,
            } => {
                p.put_slice(session.as_bytes());
                put_varint(&mut p, path.into_inner());
                put_bytes(&mut p, token);
                JOIN
            }
            Frame::Welcome {
                session,
                path,
                max_data,
                stream_credit,
                version,
            } => {
                p.put_slice(session.as_bytes());
                put_varint(&mut p, path.into_inner());
                put_varint(&mut p, *max_data);
                put_varint(&mut p, *stream_credit);
                if *version >= 2 {
                    put_varint(&mut p, *version);
                }
                WELCOME
            }
            Frame::Refused { reason } => {
                put_varint(&mut p, refuse_code(*reason));
                REFUSED
            }
            Frame::TokenRequest { path } => {
                put_varint(&mut p, path.into_inner());
                TOKEN_REQUEST
            }
            Frame::PathToken { path, token } => {
                put_varint(&mut p, path.into_inner());
                put_bytes(&mut p, token);
                PATH_TOKEN
            }
            Frame::SessionCredit { max_data } => {
                put_varint(&mut p, *max_data);
                SESSION_CREDIT
            }
            Frame::StreamCredit { stream, max_offset } => {
                put_varint(&mut p, stream.into_inner());
                put_varint(&mut p, *max_offset);
                STREAM_CREDIT
            }
            Frame::Backpressure { stream, on, reason } => {
                match stream {
                    None => p.put_u8(0),
                    Some(s) => {
                        p.put_u8(1);
                        put_varint(&mut p, s.into_inner());
                    }
                }
                p.put_u8(u8::from(*on));
                if let Some(r) = reason {
                    put_varint(&mut p, *r);
                }
                BACKPRESSURE
            }
            Frame::Grant { grant } => {
                put_bytes(&mut p, grant);
                GRANT
            }
            Frame::Other { ty, payload } => {
                p.put_slice(payload);
                *ty
            }
        };
        put_varint(buf, ty);
        put_varint(buf, p.len() as u64);
        buf.put_slice(&p);
    }

    fn decode(ty: u64, payload: &[u8]) -> Frame {
        let mut p = payload;
        let varint = |p: &mut &[u8]| get_varint(p).expect("truncated payload");
        let session = |p: &mut &[u8]| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&p[..16]);
            p.advance(16);
            SessionId::from_bytes(id)
        };
        let bytes = |p: &mut &[u8]| {
            let len = get_varint(p).expect("truncated length") as usize;
            let b = Bytes::copy_from_slice(&p[..len]);
            p.advance(len);
            b
        };
        let frame = match ty {
            OPEN => Frame::Open {
                version: varint(&mut p),
                max_data: varint(&mut p),
                stream_credit: varint(&mut p),
            },
            JOIN => Frame::Join {
                session: session(&mut p),
                path: PathId::new(varint(&mut p)),
                token: bytes(&mut p),
            },
            WELCOME => Frame::Welcome {
                session: session(&mut p),
                path: PathId::new(varint(&mut p)),
                max_data: varint(&mut p),
                stream_credit: varint(&mut p),
                version: if p.is_empty() { 1 } else { varint(&mut p) },
            },
            REFUSED => Frame::Refused {
                reason: refuse_reason(varint(&mut p)),
            },
            TOKEN_REQUEST => Frame::TokenRequest {
                path: PathId::new(varint(&mut p)),
            },
            PATH_TOKEN => Frame::PathToken {
                path: PathId::new(varint(&mut p)),
                token: bytes(&mut p),
            },
            SESSION_CREDIT => Frame::SessionCredit {
                max_data: varint(&mut p),
            },
            STREAM_CREDIT => Frame::StreamCredit {
                stream: StreamId::new(varint(&mut p)),
                max_offset: varint(&mut p),
            },
            BACKPRESSURE => {
                let flag = |p: &mut &[u8]| {
                    let b = p[0];
                    p.advance(1);
                    assert!(b <= 1, "flag byte {b}");
                    b == 1
                };
                let stream = flag(&mut p).then(|| StreamId::new(varint(&mut p)));
                let on = flag(&mut p);
                let reason = (!p.is_empty()).then(|| varint(&mut p));
                Frame::Backpressure { stream, on, reason }
            }
            GRANT => Frame::Grant {
                grant: bytes(&mut p),
            },
            ty => {
                return Frame::Other {
                    ty,
                    payload: Bytes::copy_from_slice(payload),
                };
            }
        };
        assert!(p.is_empty(), "trailing bytes in frame type {ty:#x}");
        frame
    }
}

/// Splits a control channel's bytes into frames.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    buf: BytesMut,
}

impl FrameReader {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, if the bytes for one arrived; an error for a
    /// payload over the limit of §3.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        let mut rest: &[u8] = &self.buf;
        let (Some(ty), Some(len)) = (get_varint(&mut rest), get_varint(&mut rest)) else {
            return Ok(None);
        };
        let len = len as usize;
        if len > 16 * 1024 {
            return Err(format!("frame payload of {len} bytes"));
        }
        if rest.len() < len {
            return Ok(None);
        }
        let header = self.buf.len() - rest.len();
        let frame = Frame::decode(ty, &rest[..len]);
        self.buf.advance(header + len);
        Ok(Some(frame))
    }
}

/// Starts a data stream of logical `stream` (§2).
pub(crate) fn encode_stream_header(buf: &mut BytesMut, stream: StreamId) {
    put_varint(buf, KIND_DATA);
    put_varint(buf, stream.into_inner());
}

/// A segment header; `length` payload bytes follow it (§2).
pub(crate) fn encode_segment_header(buf: &mut BytesMut, offset: u64, length: u64, fin: bool) {
    buf.put_u8(if fin { FLAG_FIN } else { 0 });
    put_varint(buf, offset);
    put_varint(buf, length);
}

/// One segment of a data stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub(crate) offset: u64,
    pub(crate) data: Bytes,
    pub(crate) fin: bool,
}

/// Reads a data stream: its header, then whole segments.
#[derive(Debug, Default)]
pub(crate) struct SegmentReader {
    buf: BytesMut,
    stream: Option<StreamId>,
}

impl SegmentReader {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The logical stream, once the header arrived.
    pub(crate) fn stream(&self) -> Option<StreamId> {
        self.stream
    }

    /// Takes `chunk` and appends every segment completed so far to `out`; an
    /// error for a stream kind or flags §2 does not define.
    pub(crate) fn feed(&mut self, chunk: Bytes, out: &mut Vec<Piece>) -> Result<(), String> {
        self.buf.extend_from_slice(&chunk);
        loop {
            let mut rest: &[u8] = &self.buf;
            if self.stream.is_none() {
                let (Some(kind), Some(id)) = (get_varint(&mut rest), get_varint(&mut rest)) else {
                    return Ok(());
                };
                if kind != KIND_DATA {
                    return Err(format!("data stream kind {kind}"));
                }
                self.stream = Some(StreamId::new(id));
                let used = self.buf.len() - rest.len();
                self.buf.advance(used);
                continue;
            }
            let Some(&flags) = rest.first() else {
                return Ok(());
            };
            rest.advance(1);
            let (Some(offset), Some(len)) = (get_varint(&mut rest), get_varint(&mut rest)) else {
                return Ok(());
            };
            if flags & !FLAG_FIN != 0 {
                return Err(format!("segment flags {flags:#x}"));
            }
            let len = len as usize;
            if rest.len() < len {
                return Ok(());
            }
            let header = self.buf.len() - rest.len();
            self.buf.advance(header);
            let data = self.buf.split_to(len).freeze();
            out.push(Piece {
                offset,
                data,
                fin: flags & FLAG_FIN != 0,
            });
        }
    }
}
