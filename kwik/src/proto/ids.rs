//! Identifiers: sessions and paths. Stream ids come from `kwik-presentation`.

use std::fmt;

/// A session's identity, chosen at random by the server that opened it. Paths that
/// join the session (on this or, later, another server) name it with this id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// Wire length in bytes.
    pub const LEN: usize = 16;

    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A path of a session: one QUIC connection. Path 0 is the connection that opened
/// the session; the client numbers the paths it adds 1, 2, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathId(u64);

impl PathId {
    /// The path that opened the session.
    pub const INITIAL: PathId = PathId(0);

    /// Wraps a raw path number (values at or above 2^62 are not encodable).
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw path number.
    pub const fn into_inner(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PathId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "path{}", self.0)
    }
}

/// Path ids the primary assigns to secondary paths start here, so they never
/// collide with the ids a client picks for its own paths (counted from 1).
pub(crate) const SECONDARY_PATH_BASE: u64 = 1 << 32;
