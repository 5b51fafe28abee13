//! Control frames: what travels on each path's control channel (the path's first
//! bidirectional QUIC stream). Wire format in `docs/PROTOCOL.md`:
//! `type (varint) | length (varint) | payload (length bytes)`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kwik_presentation::StreamId;

use crate::proto::ids::{PathId, SessionId};
pub(crate) use crate::proto::wire::backpressure::BackpressureReason;
use crate::proto::wire::varint::{self, VARINT_MAX};

/// The highest protocol version this side speaks (OPEN offers it, docs/PROTOCOL.md
/// §3.1). Version 2 adds the version to WELCOME and a reason to BACKPRESSURE.
pub(crate) const PROTOCOL_VERSION: u64 = 2;
/// The version every KWIK peer speaks; a client falls back to it when a server
/// refuses the version offered.
pub(crate) const BASE_VERSION: u64 = 1;
/// Largest accepted frame payload in bytes.
pub(crate) const MAX_FRAME_PAYLOAD: usize = 16 * 1024;
/// Most ranges one ACK frame may carry.
pub(crate) const MAX_ACK_RANGES: usize = 64;
/// Longest close reason in bytes.
pub(crate) const MAX_REASON_LEN: usize = 1024;
/// Longest join token in bytes.
pub(crate) const MAX_TOKEN_LEN: usize = 256;
/// Longest server name in an ADD_PATH frame, in bytes.
pub(crate) const MAX_SERVER_NAME_LEN: usize = 255;
/// Longest relayed application message in bytes.
pub const MAX_RELAY_LEN: usize = 8 * 1024;

/// Whether the sender should use a path for new data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathStatus {
    /// Use the path as the scheduler sees fit.
    Available,
    /// Use the path only when no available path is left.
    Backup,
}

/// Why a server refused an OPEN or a JOIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefuseReason {
    /// The server does not speak this protocol version.
    Version,
    /// No session with that id lives here.
    UnknownSession,
    /// The token failed verification (forged, wrong session or path, malformed).
    BadToken,
    /// The token was valid once and has been used already.
    ReusedToken,
    /// The token expired.
    ExpiredToken,
    /// The path id is already in use in the session.
    PathInUse,
    /// The server does not accept new sessions or paths now.
    Unavailable,
}

impl RefuseReason {
    fn code(self) -> u64 {
        match self {
            Self::Version => 1,
            Self::UnknownSession => 2,
            Self::BadToken => 3,
            Self::ReusedToken => 4,
            Self::ExpiredToken => 5,
            Self::PathInUse => 6,
            Self::Unavailable => 7,
        }
    }

    fn from_code(code: u64) -> Result<Self, DecodeError> {
        Ok(match code {
            1 => Self::Version,
            2 => Self::UnknownSession,
            3 => Self::BadToken,
            4 => Self::ReusedToken,
            5 => Self::ExpiredToken,
            6 => Self::PathInUse,
            7 => Self::Unavailable,
            _ => return Err(DecodeError::InvalidValue("refuse reason")),
        })
    }
}

/// What became of an ADD_PATH request, as the client reports it to the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AddPathOutcome {
    /// The secondary server welcomed the path.
    Joined,
    /// No QUIC connection to the secondary could be made (no answer, TLS
    /// failure, connection refused).
    Unreachable,
    /// The secondary answered the JOIN with REFUSED.
    Refused(RefuseReason),
    /// The secondary did not answer the JOIN in time.
    TimedOut,
}

impl AddPathOutcome {
    fn encode(self, p: &mut BytesMut) {
        match self {
            Self::Joined => varint::encode(p, 0),
            Self::Unreachable => varint::encode(p, 1),
            Self::Refused(reason) => {
                varint::encode(p, 2);
                varint::encode(p, reason.code());
            }
            Self::TimedOut => varint::encode(p, 3),
        }
    }

    fn decode(p: &mut Bytes) -> Result<Self, DecodeError> {
        Ok(match get_varint(p)? {
            0 => Self::Joined,
            1 => Self::Unreachable,
            2 => Self::Refused(RefuseReason::from_code(get_varint(p)?)?),
            3 => Self::TimedOut,
            _ => return Err(DecodeError::InvalidValue("add-path outcome")),
        })
    }
}

/// One control frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Frame {
    /// First frame of the first path: open a new session. Carries the sender's
    /// initial receive credits.
    Open {
        /// Protocol version ([`PROTOCOL_VERSION`]).
        version: u64,
        /// Initial session credit the client grants (MAX_DATA).
        max_data: u64,
        /// Initial per-stream credit the client grants.
        stream_credit: u64,
    },
    /// First frame of a further path: join an existing session.
    Join {
        /// The session to join.
        session: SessionId,
        /// The path this connection becomes.
        path: PathId,
        /// The token the server issued for this session and path.
        token: Bytes,
    },
    /// Server's answer to OPEN or JOIN: the path belongs to the session.
    Welcome {
        /// The session.
        session: SessionId,
        /// The path this connection is.
        path: PathId,
        /// Initial session credit the server grants.
        max_data: u64,
        /// Initial per-stream credit the server grants.
        stream_credit: u64,
        /// The session's protocol version: on the wire only from version 2 on
        /// (a version-1 WELCOME ends after `stream_credit`).
        version: u64,
    },
    /// Server's answer to OPEN or JOIN: refused; the connection closes.
    Refused {
        /// Why.
        reason: RefuseReason,
    },
    /// Client asks for a join token for a path it is about to add.
    TokenRequest {
        /// The path id the client will join with.
        path: PathId,
    },
    /// Server hands out a single-use join token for `path`.
    PathToken {
        /// The path the token is bound to.
        path: PathId,
        /// The opaque token.
        token: Bytes,
    },
    /// New session credit (max sum over streams of the highest offset).
    SessionCredit {
        /// The new limit.
        max_data: u64,
    },
    /// New stream credit (max offset).
    StreamCredit {
        /// The stream.
        stream: StreamId,
        /// The new limit.
        max_offset: u64,
    },
    /// Byte ranges of a stream the receiver holds (buffered or read).
    Ack {
        /// The stream.
        stream: StreamId,
        /// The receiver has seen the FIN (the final size).
        fin: bool,
        /// Ascending, disjoint, non-empty ranges.
        ranges: Vec<Range<u64>>,
    },
    /// The receiver's backpressure switched on or off.
    Backpressure {
        /// `None` for the whole session, else the stream.
        stream: Option<StreamId>,
        /// On (true) or off.
        on: bool,
        /// Why (version 2 on; `None` in a version-1 session, whose frame has
        /// no reason field).
        reason: Option<BackpressureReason>,
    },
    /// The sender abandons a stream.
    ResetStream {
        /// The stream.
        stream: StreamId,
        /// Application error code.
        error_code: u64,
        /// Bytes the sender had written (the final size).
        final_size: u64,
    },
    /// The receiver no longer reads a stream.
    StopSending {
        /// The stream.
        stream: StreamId,
        /// Application error code.
        error_code: u64,
    },
    /// The sender of this frame asks the peer to treat a path as available or backup.
    PathStatus {
        /// The path.
        path: PathId,
        /// Its status.
        status: PathStatus,
    },
    /// Liveness and RTT probe; answered by PONG with the same sequence number.
    Ping {
        /// Sequence number.
        seq: u64,
    },
    /// Answer to PING.
    Pong {
        /// The PING's sequence number.
        seq: u64,
    },
    /// The session ends.
    Close {
        /// Application error code.
        code: u64,
        /// Human-readable reason (UTF-8 not enforced).
        reason: Bytes,
    },
    /// The sender stops using a path; the peer closes it.
    PathAbandon {
        /// The path.
        path: PathId,
    },
    /// (Primary server to client) connect to a secondary server and join this
    /// session there as `path`, showing `token`.
    AddPath {
        /// The path id the secondary path gets (assigned by the primary).
        path: PathId,
        /// The secondary server's UDP address.
        addr: SocketAddr,
        /// The name the secondary's certificate is verified for.
        server_name: Bytes,
        /// A join token for this session and `path`, signed with the key the
        /// primary shares with the secondary.
        token: Bytes,
    },
    /// (Client to primary server) what became of an ADD_PATH.
    AddPathResult {
        /// The path of the ADD_PATH.
        path: PathId,
        /// Joined, or why not.
        outcome: AddPathOutcome,
    },
    /// An opaque application message between the primary and the secondary on
    /// `path`, forwarded by the client (primary to client: deliver to `path`;
    /// client to secondary, or client to primary: comes from `path`).
    Relay {
        /// The secondary path.
        path: PathId,
        /// The message (at most [`MAX_RELAY_LEN`] bytes).
        payload: Bytes,
    },
    /// (Primary server to client, then client to secondary) a signed
    /// delegation grant ([`Grant::sign`](crate::Grant::sign)): the secondary on
    /// the grant's path may write the grant's byte range of its stream.
    Grant {
        /// The signed grant, exactly [`GRANT_LEN`](crate::GRANT_LEN) bytes.
        grant: Bytes,
    },
}

mod ty {
    pub(super) const OPEN: u64 = 0x01;
    pub(super) const JOIN: u64 = 0x02;
    pub(super) const WELCOME: u64 = 0x03;
    pub(super) const REFUSED: u64 = 0x04;
    pub(super) const TOKEN_REQUEST: u64 = 0x05;
    pub(super) const PATH_TOKEN: u64 = 0x06;
    pub(super) const SESSION_CREDIT: u64 = 0x10;
    pub(super) const STREAM_CREDIT: u64 = 0x11;
    pub(super) const ACK: u64 = 0x12;
    pub(super) const BACKPRESSURE: u64 = 0x13;
    pub(super) const RESET_STREAM: u64 = 0x14;
    pub(super) const STOP_SENDING: u64 = 0x15;
    pub(super) const PATH_STATUS: u64 = 0x16;
    pub(super) const PING: u64 = 0x17;
    pub(super) const PONG: u64 = 0x18;
    pub(super) const CLOSE: u64 = 0x19;
    pub(super) const PATH_ABANDON: u64 = 0x1a;
    pub(super) const ADD_PATH: u64 = 0x20;
    pub(super) const ADD_PATH_RESULT: u64 = 0x21;
    pub(super) const RELAY: u64 = 0x22;
    pub(super) const GRANT: u64 = 0x23;
}

/// Why bytes from the peer are not a valid frame or segment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame type is not defined by this version.
    #[error("unknown frame type {0:#x}")]
    UnknownFrame(u64),
    /// The payload ended before the frame was complete.
    #[error("frame payload truncated")]
    Truncated,
    /// The payload is longer than the frame needs.
    #[error("{0} trailing bytes after the frame")]
    TrailingBytes(usize),
    /// The declared payload is longer than the limit (16384 bytes).
    #[error("frame payload of {0} bytes is too large")]
    FrameTooLarge(u64),
    /// A field holds a value outside its range.
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
    /// A data segment's offset plus length passes 2^62.
    #[error("segment offset {offset} + length {length} passes the maximum offset")]
    SegmentOverflow {
        /// Declared offset.
        offset: u64,
        /// Declared length.
        length: u64,
    },
    /// A data stream started with an unknown kind.
    #[error("unknown data stream kind {0}")]
    UnknownStreamKind(u64),
}

/// The name of frame type `t` as docs/PROTOCOL.md spells it, `None` for a
/// type no frame has.
pub(crate) fn type_name(t: u64) -> Option<&'static str> {
    Some(match t {
        ty::OPEN => "OPEN",
        ty::JOIN => "JOIN",
        ty::WELCOME => "WELCOME",
        ty::REFUSED => "REFUSED",
        ty::TOKEN_REQUEST => "TOKEN_REQUEST",
        ty::PATH_TOKEN => "PATH_TOKEN",
        ty::SESSION_CREDIT => "SESSION_CREDIT",
        ty::STREAM_CREDIT => "STREAM_CREDIT",
        ty::ACK => "ACK",
        ty::BACKPRESSURE => "BACKPRESSURE",
        ty::RESET_STREAM => "RESET_STREAM",
        ty::STOP_SENDING => "STOP_SENDING",
        ty::PATH_STATUS => "PATH_STATUS",
        ty::PING => "PING",
        ty::PONG => "PONG",
        ty::CLOSE => "CLOSE",
        ty::PATH_ABANDON => "PATH_ABANDON",
        ty::ADD_PATH => "ADD_PATH",
        ty::ADD_PATH_RESULT => "ADD_PATH_RESULT",
        ty::RELAY => "RELAY",
        ty::GRANT => "GRANT",
        _ => return None,
    })
}

impl Frame {
    /// The frame's name as docs/PROTOCOL.md spells it (`OPEN`, `PING`, ...), for
    /// log lines and close reasons.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Frame::Open { .. } => "OPEN",
            Frame::Join { .. } => "JOIN",
            Frame::Welcome { .. } => "WELCOME",
            Frame::Refused { .. } => "REFUSED",
            Frame::TokenRequest { .. } => "TOKEN_REQUEST",
            Frame::PathToken { .. } => "PATH_TOKEN",
            Frame::SessionCredit { .. } => "SESSION_CREDIT",
            Frame::StreamCredit { .. } => "STREAM_CREDIT",
            Frame::Ack { .. } => "ACK",
            Frame::Backpressure { .. } => "BACKPRESSURE",
            Frame::ResetStream { .. } => "RESET_STREAM",
            Frame::StopSending { .. } => "STOP_SENDING",
            Frame::PathStatus { .. } => "PATH_STATUS",
            Frame::Ping { .. } => "PING",
            Frame::Pong { .. } => "PONG",
            Frame::Close { .. } => "CLOSE",
            Frame::PathAbandon { .. } => "PATH_ABANDON",
            Frame::AddPath { .. } => "ADD_PATH",
            Frame::AddPathResult { .. } => "ADD_PATH_RESULT",
            Frame::Relay { .. } => "RELAY",
            Frame::Grant { .. } => "GRANT",
        }
    }

    /// Appends the frame's wire form to `buf`.
    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        let mut p = BytesMut::new();
        let t = match self {
            Frame::Open {
                version,
                max_data,
                stream_credit,
            } => {
                varint::encode(&mut p, *version);
                varint::encode(&mut p, *max_data);
                varint::encode(&mut p, *stream_credit);
                ty::OPEN
            }
            Frame::Join {
                session,
                path,
                token,
            } => {
                p.put_slice(session.as_bytes());
                varint::encode(&mut p, path.into_inner());
                put_bytes(&mut p, token);
                ty::JOIN
            }
            Frame::Welcome {
                session,
                path,
                max_data,
                stream_credit,
                version,
            } => {
                p.put_slice(session.as_bytes());
                varint::encode(&mut p, path.into_inner());
                varint::encode(&mut p, *max_data);
                varint::encode(&mut p, *stream_credit);
                if *version > BASE_VERSION {
                    varint::encode(&mut p, *version);
                }
                ty::WELCOME
            }
            Frame::Refused { reason } => {
                varint::encode(&mut p, reason.code());
                ty::REFUSED
            }
            Frame::TokenRequest { path } => {
                varint::encode(&mut p, path.into_inner());
                ty::TOKEN_REQUEST
            }
            Frame::PathToken { path, token } => {
                varint::encode(&mut p, path.into_inner());
                put_bytes(&mut p, token);
                ty::PATH_TOKEN
            }
            Frame::SessionCredit { max_data } => {
                varint::encode(&mut p, *max_data);
                ty::SESSION_CREDIT
            }
            Frame::StreamCredit { stream, max_offset } => {
                varint::encode(&mut p, stream.into_inner());
                varint::encode(&mut p, *max_offset);
                ty::STREAM_CREDIT
            }
            Frame::Ack {
                stream,
                fin,
                ranges,
            } => {
                varint::encode(&mut p, stream.into_inner());
                p.put_u8(u8::from(*fin));
                let ranges = &ranges[..ranges.len().min(MAX_ACK_RANGES)];
                varint::encode(&mut p, ranges.len() as u64);
                for r in ranges {
                    varint::encode(&mut p, r.start);
                    varint::encode(&mut p, r.end - r.start);
                }
                ty::ACK
            }
            Frame::Backpressure { stream, on, reason } => {
                match stream {
                    None => p.put_u8(0),
                    Some(s) => {
                        p.put_u8(1);
                        varint::encode(&mut p, s.into_inner());
                    }
                }
                p.put_u8(u8::from(*on));
                if let Some(reason) = reason {
                    varint::encode(&mut p, reason.code());
                }
                ty::BACKPRESSURE
            }
            Frame::ResetStream {
                stream,
                error_code,
                final_size,
            } => {
                varint::encode(&mut p, stream.into_inner());
                varint::encode(&mut p, *error_code);
                varint::encode(&mut p, *final_size);
                ty::RESET_STREAM
            }
            Frame::StopSending { stream, error_code } => {
                varint::encode(&mut p, stream.into_inner());
                varint::encode(&mut p, *error_code);
                ty::STOP_SENDING
            }
            Frame::PathStatus { path, status } => {
                varint::encode(&mut p, path.into_inner());
                p.put_u8(match status {
                    PathStatus::Available => 0,
                    PathStatus::Backup => 1,
                });
                ty::PATH_STATUS
            }
            Frame::Ping { seq } => {
                varint::encode(&mut p, *seq);
                ty::PING
            }
            Frame::Pong { seq } => {
                varint::encode(&mut p, *seq);
                ty::PONG
            }
            Frame::Close { code, reason } => {
                varint::encode(&mut p, *code);
                let reason = &reason[..reason.len().min(MAX_REASON_LEN)];
                put_bytes(&mut p, reason);
                ty::CLOSE
            }
            Frame::PathAbandon { path } => {
                varint::encode(&mut p, path.into_inner());
                ty::PATH_ABANDON
            }
            Frame::AddPath {
                path,
                addr,
                server_name,
                token,
            } => {
                varint::encode(&mut p, path.into_inner());
                put_addr(&mut p, *addr);
                put_bytes(
                    &mut p,
                    &server_name[..server_name.len().min(MAX_SERVER_NAME_LEN)],
                );
                put_bytes(&mut p, token);
                ty::ADD_PATH
            }
            Frame::AddPathResult { path, outcome } => {
                varint::encode(&mut p, path.into_inner());
                outcome.encode(&mut p);
                ty::ADD_PATH_RESULT
            }
            Frame::Relay { path, payload } => {
                varint::encode(&mut p, path.into_inner());
                put_bytes(&mut p, &payload[..payload.len().min(MAX_RELAY_LEN)]);
                ty::RELAY
            }
            Frame::Grant { grant } => {
                put_bytes(&mut p, &grant[..grant.len().min(crate::GRANT_LEN)]);
                ty::GRANT
            }
        };
        varint::encode(buf, t);
        varint::encode(buf, p.len() as u64);
        buf.put_slice(&p);
    }

    /// Decodes one frame from a complete payload of type `t`.
    fn decode_payload(t: u64, mut p: Bytes) -> Result<Frame, DecodeError> {
        let p = &mut p;
        let frame = match t {
            ty::OPEN => Frame::Open {
                version: get_varint(p)?,
                max_data: get_varint(p)?,
                stream_credit: get_varint(p)?,
            },
            ty::JOIN => Frame::Join {
                session: get_session(p)?,
                path: PathId::new(get_varint(p)?),
                token: get_bytes(p, MAX_TOKEN_LEN)?,
            },
            ty::WELCOME => Frame::Welcome {
                session: get_session(p)?,
                path: PathId::new(get_varint(p)?),
                max_data: get_varint(p)?,
                stream_credit: get_varint(p)?,
                // Absent in version 1; when present it names a later version.
                version: if p.has_remaining() {
                    Some(get_varint(p)?)
                        .filter(|v| *v > BASE_VERSION)
                        .ok_or(DecodeError::InvalidValue("welcome version"))?
                } else {
                    BASE_VERSION
                },
            },
            ty::REFUSED => Frame::Refused {
                reason: RefuseReason::from_code(get_varint(p)?)?,
            },
            ty::TOKEN_REQUEST => Frame::TokenRequest {
                path: PathId::new(get_varint(p)?),
            },
            ty::PATH_TOKEN => Frame::PathToken {
                path: PathId::new(get_varint(p)?),
                token: get_bytes(p, MAX_TOKEN_LEN)?,
            },
            ty::SESSION_CREDIT => Frame::SessionCredit {
                max_data: get_varint(p)?,
            },
            ty::STREAM_CREDIT => Frame::StreamCredit {
                stream: StreamId::new(get_varint(p)?),
                max_offset: get_varint(p)?,
            },
            ty::ACK => {
                let stream = StreamId::new(get_varint(p)?);
                let fin = get_flag(p, "ack fin flag")?;
                let count = get_varint(p)?;
                if count > MAX_ACK_RANGES as u64 {
                    return Err(DecodeError::InvalidValue("ack range count"));
                }
                let mut ranges: Vec<Range<u64>> = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let start = get_varint(p)?;
                    let len = get_varint(p)?;
                    let end = start
                        .checked_add(len)
                        .filter(|e| *e <= VARINT_MAX)
                        .ok_or(DecodeError::InvalidValue("ack range end"))?;
                    if len == 0 || ranges.last().is_some_and(|prev| prev.end >= start) {
                        return Err(DecodeError::InvalidValue("ack ranges order"));
                    }
                    ranges.push(start..end);
                }
                Frame::Ack {
                    stream,
                    fin,
                    ranges,
                }
            }
            ty::BACKPRESSURE => {
                let stream = if get_flag(p, "backpressure scope")? {
                    Some(StreamId::new(get_varint(p)?))
                } else {
                    None
                };
                let on = get_flag(p, "backpressure state")?;
                // Version 2 adds the reason; a version-1 frame ends here.
                let reason = if p.has_remaining() {
                    Some(BackpressureReason::from_code(get_varint(p)?)?)
                } else {
                    None
                };
                Frame::Backpressure { stream, on, reason }
            }
            ty::RESET_STREAM => Frame::ResetStream {
                stream: StreamId::new(get_varint(p)?),
                error_code: get_varint(p)?,
                final_size: get_varint(p)?,
            },
            ty::STOP_SENDING => Frame::StopSending {
                stream: StreamId::new(get_varint(p)?),
                error_code: get_varint(p)?,
            },
            ty::PATH_STATUS => Frame::PathStatus {
                path: PathId::new(get_varint(p)?),
                status: if get_flag(p, "path status")? {
                    PathStatus::Backup
                } else {
                    PathStatus::Available
                },
            },
            ty::PING => Frame::Ping {
                seq: get_varint(p)?,
            },
            ty::PONG => Frame::Pong {
                seq: get_varint(p)?,
            },
            ty::CLOSE => Frame::Close {
                code: get_varint(p)?,
                reason: get_bytes(p, MAX_REASON_LEN)?,
            },
            ty::PATH_ABANDON => Frame::PathAbandon {
                path: PathId::new(get_varint(p)?),
            },
            ty::ADD_PATH => Frame::AddPath {
                path: PathId::new(get_varint(p)?),
                addr: get_addr(p)?,
                server_name: get_bytes(p, MAX_SERVER_NAME_LEN)?,
                token: get_bytes(p, MAX_TOKEN_LEN)?,
            },
            ty::ADD_PATH_RESULT => Frame::AddPathResult {
                path: PathId::new(get_varint(p)?),
                outcome: AddPathOutcome::decode(p)?,
            },
            ty::RELAY => Frame::Relay {
                path: PathId::new(get_varint(p)?),
                payload: get_bytes(p, MAX_RELAY_LEN)?,
            },
            ty::GRANT => {
                let grant = get_bytes(p, crate::GRANT_LEN)?;
                if grant.len() != crate::GRANT_LEN {
                    return Err(DecodeError::InvalidValue("grant length"));
                }
                Frame::Grant { grant }
            }
            other => return Err(DecodeError::UnknownFrame(other)),
        };
        if p.has_remaining() {
            return Err(DecodeError::TrailingBytes(p.remaining()));
        }
        Ok(frame)
    }
}

fn put_bytes(p: &mut BytesMut, bytes: &[u8]) {
    varint::encode(p, bytes.len() as u64);
    p.put_slice(bytes);
}

/// `family (u8: 4 or 6) | address (4 or 16 bytes) | port (u16 BE)`.
fn put_addr(p: &mut BytesMut, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            p.put_u8(4);
            p.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            p.put_u8(6);
            p.put_slice(&ip.octets());
        }
    }
    p.put_u16(addr.port());
}

fn get_addr(p: &mut Bytes) -> Result<SocketAddr, DecodeError> {
    if !p.has_remaining() {
        return Err(DecodeError::Truncated);
    }
    let ip = match p.get_u8() {
        4 => {
            if p.remaining() < 4 {
                return Err(DecodeError::Truncated);
            }
            let mut o = [0u8; 4];
            p.copy_to_slice(&mut o);
            IpAddr::V4(Ipv4Addr::from(o))
        }
        6 => {
            if p.remaining() < 16 {
                return Err(DecodeError::Truncated);
            }
            let mut o = [0u8; 16];
            p.copy_to_slice(&mut o);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return Err(DecodeError::InvalidValue("address family")),
    };
    if p.remaining() < 2 {
        return Err(DecodeError::Truncated);
    }
    Ok(SocketAddr::new(ip, p.get_u16()))
}

fn get_varint(p: &mut Bytes) -> Result<u64, DecodeError> {
    varint::decode(p).ok_or(DecodeError::Truncated)
}

fn get_flag(p: &mut Bytes, what: &'static str) -> Result<bool, DecodeError> {
    if !p.has_remaining() {
        return Err(DecodeError::Truncated);
    }
    match p.get_u8() {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidValue(what)),
    }
}

fn get_session(p: &mut Bytes) -> Result<SessionId, DecodeError> {
    if p.remaining() < SessionId::LEN {
        return Err(DecodeError::Truncated);
    }
    let mut id = [0u8; SessionId::LEN];
    p.copy_to_slice(&mut id);
    Ok(SessionId::from_bytes(id))
}

fn get_bytes(p: &mut Bytes, max: usize) -> Result<Bytes, DecodeError> {
    let len = get_varint(p)?;
    if len > max as u64 {
        return Err(DecodeError::InvalidValue("byte string length"));
    }
    if p.remaining() < len as usize {
        return Err(DecodeError::Truncated);
    }
    Ok(p.split_to(len as usize))
}

/// Reassembles control frames from the bytes of a control stream, however the
/// transport splits them.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    buf: BytesMut,
    /// The type of the frame that failed to decode, once one did.
    bad_type: Option<u64>,
}

impl FrameReader {
    /// An empty reader.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received on the control stream.
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. After an
    /// error the stream is unusable (frame boundaries are lost).
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        let mut peek = &self.buf[..];
        let Some(t) = varint::decode(&mut peek) else {
            return Ok(None);
        };
        let Some(len) = varint::decode(&mut peek) else {
            return Ok(None);
        };
        if len > MAX_FRAME_PAYLOAD as u64 {
            self.bad_type = Some(t);
            return Err(DecodeError::FrameTooLarge(len));
        }
        if peek.len() < len as usize {
            return Ok(None);
        }
        let header = self.buf.len() - peek.len();
        self.buf.advance(header);
        let payload = self.buf.split_to(len as usize).freeze();
        let frame = Frame::decode_payload(t, payload);
        if frame.is_err() {
            self.bad_type = Some(t);
        }
        frame.map(Some)
    }

    /// The type of the frame whose decoding failed (after
    /// [`Self::next_frame`] returned an error), for the close phrase.
    pub(crate) fn bad_type(&self) -> Option<u64> {
        self.bad_type
    }

    /// Bytes held that do not form a complete frame yet.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests;
