//! Error types, one per fallible operation.

use crate::StreamId;

/// Why [`StreamBuffer::insert`](crate::StreamBuffer::insert) or
/// [`StreamBuffer::reset`](crate::StreamBuffer::reset) refused a segment.
/// Every variant is a protocol violation by the sender; nothing was buffered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InsertError {
    /// `offset + len` overflows or reaches 2^62 (beyond any QUIC offset).
    #[error("segment at offset {offset} with length {len} exceeds the maximum stream offset")]
    OffsetOverflow {
        /// Offset of the segment.
        offset: u64,
        /// Length of the segment.
        len: u64,
    },
    /// The segment ends beyond the credit (max offset) granted for the stream.
    #[error("segment ends at {end}, beyond the granted stream limit {limit}")]
    FlowControl {
        /// The granted max offset.
        limit: u64,
        /// End of the offending segment.
        end: u64,
    },
    /// The segment ends beyond the known final size.
    #[error("segment ends at {end}, beyond the final size {final_size}")]
    BeyondFinalSize {
        /// The final size announced earlier.
        final_size: u64,
        /// End of the offending segment.
        end: u64,
    },
    /// A FIN or reset announces a final size different from the one already known.
    #[error("final size changed from {previous} to {new}")]
    FinalSizeChanged {
        /// The final size announced earlier.
        previous: u64,
        /// The conflicting final size.
        new: u64,
    },
    /// A FIN or reset announces a final size below bytes already received.
    #[error("final size {final_size} is below the highest received offset {highest}")]
    FinalSizeBelowReceived {
        /// The announced final size.
        final_size: u64,
        /// Highest offset already received.
        highest: u64,
    },
    /// The stream holds too many separate segments (tiny, scattered writes);
    /// refusing bounds the bookkeeping memory per buffered byte.
    #[error("stream buffer holds {segments} segments, the limit")]
    TooFragmented {
        /// Number of segments held.
        segments: usize,
    },
}

/// Why [`Presentation::write`](crate::Presentation::write) or
/// [`Presentation::reset`](crate::Presentation::reset) refused a segment.
/// Every variant except [`WriteError::UnknownStream`] is a protocol violation by
/// the peer; nothing was buffered and no credit was used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The stream was never opened with [`Presentation::open_stream`](crate::Presentation::open_stream).
    #[error("unknown stream {0}")]
    UnknownStream(StreamId),
    /// The segment ends beyond the stream's credit (QUIC FLOW_CONTROL_ERROR).
    #[error("stream {stream}: segment ends at {end}, beyond the stream limit {limit}")]
    FlowControl {
        /// The stream.
        stream: StreamId,
        /// The stream's granted max offset.
        limit: u64,
        /// End of the offending segment.
        end: u64,
    },
    /// Accepting the segment would exceed the session credit (QUIC MAX_DATA).
    #[error("session flow control exceeded: {received} received would pass the limit {limit}")]
    SessionFlowControl {
        /// The session credit (max sum of highest offsets).
        limit: u64,
        /// The total the segment would have brought the session to.
        received: u64,
    },
    /// The segment ends beyond the stream's final size.
    #[error("stream {stream}: segment ends at {end}, beyond the final size {final_size}")]
    BeyondFinalSize {
        /// The stream.
        stream: StreamId,
        /// The known final size.
        final_size: u64,
        /// End of the offending segment.
        end: u64,
    },
    /// A FIN or reset changes the stream's final size.
    #[error("stream {stream}: final size changed from {previous} to {new}")]
    FinalSizeChanged {
        /// The stream.
        stream: StreamId,
        /// The final size known before.
        previous: u64,
        /// The conflicting final size.
        new: u64,
    },
    /// A FIN or reset announces a final size below data already received.
    #[error("stream {stream}: final size {final_size} is below received offset {highest}")]
    FinalSizeBelowReceived {
        /// The stream.
        stream: StreamId,
        /// The announced final size.
        final_size: u64,
        /// Highest offset already received.
        highest: u64,
    },
    /// `offset + len` overflows or reaches 2^62.
    #[error("segment offset or length exceeds the maximum stream offset")]
    OffsetOverflow,
    /// The stream holds too many separate segments.
    #[error("stream {stream}: too fragmented ({segments} segments)")]
    TooFragmented {
        /// The stream.
        stream: StreamId,
        /// Number of segments held.
        segments: usize,
    },
}

impl WriteError {
    pub(crate) fn from_insert(stream: StreamId, e: InsertError) -> Self {
        match e {
            InsertError::OffsetOverflow { .. } => Self::OffsetOverflow,
            InsertError::FlowControl { limit, end } => Self::FlowControl { stream, limit, end },
            InsertError::BeyondFinalSize { final_size, end } => Self::BeyondFinalSize {
                stream,
                final_size,
                end,
            },
            InsertError::FinalSizeChanged { previous, new } => Self::FinalSizeChanged {
                stream,
                previous,
                new,
            },
            InsertError::FinalSizeBelowReceived {
                final_size,
                highest,
            } => Self::FinalSizeBelowReceived {
                stream,
                final_size,
                highest,
            },
            InsertError::TooFragmented { segments } => Self::TooFragmented { stream, segments },
        }
    }
}

/// Why a read from [`Presentation`](crate::Presentation) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The stream is not (or no longer) known.
    #[error("unknown stream {0}")]
    UnknownStream(StreamId),
    /// The peer reset the stream; buffered data was discarded.
    #[error("stream reset by peer with error code {error_code}")]
    Reset {
        /// Application error code from the peer.
        error_code: u64,
    },
    /// The application stopped the stream with [`Presentation::stop`](crate::Presentation::stop).
    #[error("stream stopped by the application")]
    Stopped,
    /// Nothing is readable yet: no data at the read position and the end not
    /// reached. The stream is reported by
    /// [`Presentation::poll_readable`](crate::Presentation::poll_readable) once
    /// that changes.
    #[error("no data readable yet")]
    Blocked,
}

/// Why [`Presentation::open_stream`](crate::Presentation::open_stream) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The id is at or above 2^62.
    #[error("stream id {0} is outside the varint range")]
    InvalidId(StreamId),
    /// The stream existed and was removed; ids are never reused.
    #[error("stream {0} was already closed and removed")]
    Closed(StreamId),
    /// The configured maximum number of concurrently open streams is reached.
    #[error("too many open streams (limit {limit})")]
    TooManyStreams {
        /// The configured limit.
        limit: usize,
    },
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FractionError {
    /// The value is not in `0.0..=1.0` (or is NaN).
    #[error("{0} is not a fraction between 0 and 1")]
    OutOfRange(f64),
}
