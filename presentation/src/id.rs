//! Logical stream identifiers (QUIC numbering).

use std::fmt;

/// Largest value a QUIC variable-length integer can carry, plus one (2^62).
pub const VARINT_LIMIT: u64 = 1 << 62;

/// Which endpoint opened a stream (bit 0 of a [`StreamId`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client opened the stream (bit 0 clear).
    Client,
    /// The server opened the stream (bit 0 set).
    Server,
}

/// Whether a stream carries data both ways (bit 1 of a [`StreamId`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Bidirectional (bit 1 clear).
    Bi,
    /// Unidirectional (bit 1 set).
    Uni,
}

/// A logical KWIK stream id, numbered as in QUIC: bit 0 is the initiator
/// (0 client, 1 server), bit 1 the direction (0 bidirectional, 1 unidirectional),
/// the remaining bits the index among streams of that kind.
///
/// Valid ids are below 2^62 (the varint range); [`Presentation::open_stream`]
/// rejects larger ones.
///
/// [`Presentation::open_stream`]: crate::Presentation::open_stream
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(u64);

impl StreamId {
    /// Wraps a raw id. Any `u64` is accepted here; ids at or above 2^62 are
    /// rejected where they enter the presentation layer.
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// Builds the id of the `index`-th stream of a kind.
    pub const fn from_parts(index: u64, initiator: Side, dir: Dir) -> Self {
        let side_bit = match initiator {
            Side::Client => 0,
            Side::Server => 1,
        };
        let dir_bit = match dir {
            Dir::Bi => 0,
            Dir::Uni => 2,
        };
        Self((index << 2) | dir_bit | side_bit)
    }

    /// The raw value.
    pub const fn into_inner(self) -> u64 {
        self.0
    }

    /// Index of the stream among streams of the same initiator and direction.
    pub const fn index(self) -> u64 {
        self.0 >> 2
    }

    /// The endpoint that opened the stream.
    pub const fn initiator(self) -> Side {
        if self.0 & 1 == 0 {
            Side::Client
        } else {
            Side::Server
        }
    }

    /// Direction of the stream.
    pub const fn dir(self) -> Dir {
        if self.0 & 2 == 0 { Dir::Bi } else { Dir::Uni }
    }

    /// Whether the id fits the varint range (below 2^62).
    pub const fn is_valid(self) -> bool {
        self.0 < VARINT_LIMIT
    }

    /// The two low bits: which of the four kinds of stream this is.
    pub(crate) const fn kind(self) -> usize {
        (self.0 & 3) as usize
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<StreamId> for u64 {
    fn from(id: StreamId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        for index in [0, 1, 7, 1 << 40] {
            for side in [Side::Client, Side::Server] {
                for dir in [Dir::Bi, Dir::Uni] {
                    let id = StreamId::from_parts(index, side, dir);
                    assert_eq!(id.index(), index);
                    assert_eq!(id.initiator(), side);
                    assert_eq!(id.dir(), dir);
                    assert_eq!(StreamId::new(id.into_inner()), id);
                }
            }
        }
    }

    #[test]
    fn quic_numbering() {
        assert_eq!(
            StreamId::from_parts(0, Side::Client, Dir::Bi).into_inner(),
            0
        );
        assert_eq!(
            StreamId::from_parts(0, Side::Server, Dir::Bi).into_inner(),
            1
        );
        assert_eq!(
            StreamId::from_parts(0, Side::Client, Dir::Uni).into_inner(),
            2
        );
        assert_eq!(
            StreamId::from_parts(1, Side::Server, Dir::Uni).into_inner(),
            7
        );
        assert!(!StreamId::new(VARINT_LIMIT).is_valid());
        assert!(StreamId::new(VARINT_LIMIT - 1).is_valid());
    }
}
