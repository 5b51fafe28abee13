//! The reason a BACKPRESSURE frame gives (protocol version 2,
//! docs/PROTOCOL.md §3.3) and its wire code.

use crate::proto::wire::frame::DecodeError;

/// Why a receiver holds a sender back (BACKPRESSURE, docs/PROTOCOL.md §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackpressureReason {
    /// The peer speaks version 1, whose BACKPRESSURE carries no reason.
    Unspecified,
    /// The stream's reader reads too slowly: most of what the receiver buffers
    /// for it is readable.
    SlowReader,
    /// Most of what the receiver buffers for the stream waits behind a hole
    /// (data missing, e.g. on a slow or dead path), not for the reader.
    HeadOfLineGap,
    /// The session's receive window (shared by all streams) is filling up.
    SessionWindow,
    /// The receiving application holds the stream or the session by hand
    /// (`RecvStream::hold`, `Session::hold`).
    Manual,
}

impl BackpressureReason {
    /// The wire code (version 2).
    pub(crate) fn code(self) -> u64 {
        match self {
            Self::Unspecified => 0,
            Self::SlowReader => 1,
            Self::HeadOfLineGap => 2,
            Self::SessionWindow => 3,
            Self::Manual => 4,
        }
    }

    pub(crate) fn from_code(code: u64) -> Result<Self, DecodeError> {
        Ok(match code {
            0 => Self::Unspecified,
            1 => Self::SlowReader,
            2 => Self::HeadOfLineGap,
            3 => Self::SessionWindow,
            4 => Self::Manual,
            _ => return Err(DecodeError::InvalidValue("backpressure reason")),
        })
    }
}
