//! Why a peer was refused or its connection failed, and the QUIC application close
//! (code and reason phrase) each class of fault ends the connection with, so that the
//! peer, a packet capture and the log all say the same (docs/PROTOCOL.md §3.8).

use std::time::Duration;

use crate::proto::error::{PATH_ABANDONED, PROTOCOL_ERROR_CODE, ProtocolError};
use crate::proto::wire::frame::{DecodeError, PROTOCOL_VERSION, RefuseReason, type_name};

/// Application close code of an OPEN whose KWIK version this side does not speak.
pub const VERSION_REFUSED_CODE: u64 = 0x1_0002;
/// Application close code of a refused JOIN (forged, reused or expired token,
/// unknown session, path id in use, no room for another path).
pub const JOIN_REFUSED_CODE: u64 = 0x1_0003;
/// Application close code of a connection that sent no OPEN or JOIN in time.
pub const HANDSHAKE_TIMEOUT_CODE: u64 = 0x1_0004;

/// The frame a protocol violation was found in: a known frame by name, or a type
/// this version does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameType {
    /// A frame of docs/PROTOCOL.md §3, by its name (`OPEN`, `ACK`, ...).
    Named(&'static str),
    /// A frame type that no frame has.
    Unknown(u64),
}

impl std::fmt::Display for FrameType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameType::Named(name) => f.write_str(name),
            FrameType::Unknown(t) => write!(f, "unknown type {t:#x}"),
        }
    }
}

/// Why a peer was refused, or why its connection failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PeerFault {
    /// The TLS handshake found no common application protocol: the peer does not
    /// offer ALPN `kwik/1` (TLS alert no_application_protocol, QUIC CRYPTO_ERROR
    /// 0x178; no application close is possible before the handshake).
    #[error("bad ALPN: the peer does not speak kwik/1")]
    Alpn,
    /// The QUIC or TLS handshake failed for another reason.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// OPEN with a KWIK version this side does not speak.
    #[error("KWIK version {offered} not supported (this side speaks 1 to {PROTOCOL_VERSION})")]
    Version {
        /// The version the peer offered.
        offered: u64,
    },
    /// A JOIN was refused.
    #[error("join refused: {}", refusal_text(*.0))]
    JoinRefused(RefuseReason),
    /// Bytes or frames the protocol does not allow.
    #[error("protocol violation{}: {detail}", .frame.map(|f| format!(" ({f} frame)")).unwrap_or_default())]
    Protocol {
        /// The frame it was found in, when known.
        frame: Option<FrameType>,
        /// What was wrong.
        detail: String,
    },
    /// Bytes on one path that are not frames or segments: that path is closed, the
    /// session goes on on its other paths.
    #[error("protocol violation on a path{}: {detail}", .frame.map(|f| format!(" ({f} frame)")).unwrap_or_default())]
    PathProtocol {
        /// The frame it was found in, when known.
        frame: Option<FrameType>,
        /// What was wrong.
        detail: String,
    },
    /// No OPEN or JOIN within the handshake timeout.
    #[error("no OPEN or JOIN within {} s", .0.as_secs())]
    HandshakeTimeout(Duration),
    /// Nothing was heard from the peer for the QUIC idle timeout.
    #[error("idle timeout: nothing heard from the peer")]
    IdleTimeout,
    /// A QUIC transport error (e.g. the peer opened more streams than allowed).
    #[error("transport error: {0}")]
    Transport(String),
}

impl PeerFault {
    /// A protocol violation found by the core: the session ends.
    pub(crate) fn protocol(e: &ProtocolError) -> Self {
        PeerFault::Protocol {
            frame: frame_of(e),
            detail: e.to_string(),
        }
    }

    /// A protocol violation found by the core in a frame named `frame`: the
    /// session ends.
    pub(crate) fn protocol_in(frame: &'static str, e: &ProtocolError) -> Self {
        PeerFault::Protocol {
            frame: frame_of(e).or(Some(FrameType::Named(frame))),
            detail: e.to_string(),
        }
    }

    /// A violation on one path (undecodable frames or segments): the path ends.
    pub(crate) fn path_protocol(e: &ProtocolError) -> Self {
        PeerFault::PathProtocol {
            frame: frame_of(e),
            detail: e.to_string(),
        }
    }

    /// Control bytes on one path that did not decode as a frame of type `ty`
    /// (when the type was read): the path ends, the phrase names the type.
    pub(crate) fn bad_frame(ty: Option<u64>, e: DecodeError) -> Self {
        PeerFault::PathProtocol {
            frame: ty.map(|t| type_name(t).map_or(FrameType::Unknown(t), FrameType::Named)),
            detail: e.to_string(),
        }
    }

    /// A short fixed name of the fault's class: the `reason` of the log line and the
    /// label of the `kwik_peer_faults_total` counter.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            PeerFault::Alpn => "alpn",
            PeerFault::Handshake(_) => "handshake",
            PeerFault::Version { .. } => "version",
            PeerFault::JoinRefused(RefuseReason::BadToken) => "forged_token",
            PeerFault::JoinRefused(_) => "join_refused",
            PeerFault::Protocol { .. } | PeerFault::PathProtocol { .. } => "protocol_violation",
            PeerFault::HandshakeTimeout(_) => "handshake_timeout",
            PeerFault::IdleTimeout => "idle_timeout",
            PeerFault::Transport(_) => "transport",
        }
    }

    /// The application close (code, reason phrase) that ends the peer's connection,
    /// or `None` where none can be sent: before the TLS handshake completed, or once
    /// the connection is gone.
    pub(crate) fn application_close(&self) -> Option<(u64, String)> {
        let code = match self {
            PeerFault::Version { .. } => VERSION_REFUSED_CODE,
            PeerFault::JoinRefused(_) => JOIN_REFUSED_CODE,
            PeerFault::Protocol { .. } => PROTOCOL_ERROR_CODE,
            PeerFault::PathProtocol { .. } => u64::from(PATH_ABANDONED),
            PeerFault::HandshakeTimeout(_) => HANDSHAKE_TIMEOUT_CODE,
            PeerFault::Alpn
            | PeerFault::Handshake(_)
            | PeerFault::IdleTimeout
            | PeerFault::Transport(_) => return None,
        };
        Some((code, self.to_string()))
    }
}

/// The frame a core error was found in, when it says.
fn frame_of(e: &ProtocolError) -> Option<FrameType> {
    match e {
        ProtocolError::UnexpectedFrame(name) => Some(FrameType::Named(name)),
        ProtocolError::Decode(DecodeError::UnknownFrame(t)) => Some(FrameType::Unknown(*t)),
        ProtocolError::Grant(_) | ProtocolError::TooManyGrants(_) => {
            Some(FrameType::Named("GRANT"))
        }
        _ => None,
    }
}

/// The reason phrase of a refused JOIN.
fn refusal_text(reason: RefuseReason) -> &'static str {
    match reason {
        RefuseReason::Version => "version not supported",
        RefuseReason::UnknownSession => "unknown session",
        RefuseReason::BadToken => "forged or malformed token",
        RefuseReason::ReusedToken => "token already used",
        RefuseReason::ExpiredToken => "token expired",
        RefuseReason::PathInUse => "path id in use",
        RefuseReason::Unavailable => "no room for another path",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_has_its_code_and_a_phrase_naming_the_cause() {
        let cases = [
            (
                PeerFault::Version { offered: 7 },
                VERSION_REFUSED_CODE,
                "version 7",
            ),
            (
                PeerFault::JoinRefused(RefuseReason::BadToken),
                JOIN_REFUSED_CODE,
                "forged",
            ),
            (
                PeerFault::protocol(&ProtocolError::UnexpectedFrame("OPEN")),
                PROTOCOL_ERROR_CODE,
                "(OPEN frame)",
            ),
            (
                PeerFault::protocol(&ProtocolError::Decode(DecodeError::UnknownFrame(0x3f))),
                PROTOCOL_ERROR_CODE,
                "(unknown type 0x3f frame)",
            ),
            (
                PeerFault::HandshakeTimeout(Duration::from_secs(10)),
                HANDSHAKE_TIMEOUT_CODE,
                "within 10 s",
            ),
        ];
        let mut codes = Vec::new();
        for (fault, code, phrase) in cases {
            let (c, text) = fault.application_close().expect("a close is sent");
            assert_eq!(c, code, "{fault}");
            assert!(text.contains(phrase), "{text}");
            assert!(text.len() <= crate::proto::wire::frame::MAX_REASON_LEN);
            codes.push(c);
        }
        codes.dedup();
        assert_eq!(codes.len(), 4, "one code per class");
        let truncated = PeerFault::bad_frame(Some(0x12), DecodeError::Truncated);
        assert_eq!(
            truncated.to_string(),
            "protocol violation on a path (ACK frame): frame payload truncated"
        );
        assert_eq!(PeerFault::Alpn.application_close(), None);
        assert_eq!(PeerFault::IdleTimeout.application_close(), None);
        assert_eq!(
            PeerFault::JoinRefused(RefuseReason::BadToken).kind(),
            "forged_token"
        );
    }
}
