//! Multi-server sessions, the client's part: its links to secondary servers,
//! the grants the primary sent for each (which decide what a secondary may
//! write), what the client owes each secondary (forwarded grants, credit,
//! acknowledgements, coalesced), and what a secondary's control frames mean.
//!
//! A secondary path is not one of the session's transport paths: the client
//! keeps it as a *link* beside them, so the core never schedules the client's
//! data, acknowledgements or credits towards a server that does not hold the
//! session.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use kwik_presentation::StreamId;

use super::grant::{Grant, GrantSet, MAX_GRANTS_PER_PATH};
use crate::proto::error::ProtocolError;
use crate::proto::ids::PathId;
use crate::proto::wire::frame::Frame;
use crate::proto::wire::segment::Piece;

/// How long after its expiry a grant still admits a secondary's segments:
/// data in flight when the grant lapsed, and the skew between the primary's
/// clock (which set the expiry) and the client's.
pub(crate) const GRANT_GRACE_MS: u64 = 2_000;

/// What the client does with stream data from a secondary.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A grant covers it: buffer it.
    Accept,
    /// No grant covers it, but the client holds every byte already (a spent
    /// grant's range written again, e.g. after the primary reclaimed it):
    /// dropped, not an error.
    Held,
    /// No grant covers it (wrong stream or range, expired, a FIN): the
    /// secondary broke the protocol; nothing is buffered.
    Outside,
}

/// The client's live links to secondaries and the grants it holds for each.
#[derive(Debug, Default)]
pub(crate) struct SecondaryLinks {
    links: BTreeSet<PathId>,
    grants: BTreeMap<PathId, GrantSet>,
}

impl SecondaryLinks {
    /// A link to the secondary on `path` is up.
    pub(crate) fn join(&mut self, path: PathId) {
        self.links.insert(path);
    }

    pub(crate) fn contains(&self, path: PathId) -> bool {
        self.links.contains(&path)
    }

    /// The link on `path` ended: returns the streams it held grants for.
    pub(crate) fn lose(&mut self, path: PathId) -> Vec<StreamId> {
        self.links.remove(&path);
        self.grants
            .remove(&path)
            .map(|set| set.streams())
            .unwrap_or_default()
    }

    /// Whether a grant for `path`, not expired (plus [`GRANT_GRACE_MS`]) at
    /// `now_ms`, covers `len` bytes at `offset` of `stream`.
    pub(crate) fn covers(
        &self,
        path: PathId,
        stream: StreamId,
        offset: u64,
        len: u64,
        now_ms: u64,
    ) -> bool {
        self.grants.get(&path).is_some_and(|set| {
            set.covering(path, stream, offset, len, now_ms, GRANT_GRACE_MS)
                .is_some()
        })
    }

    /// What to do with `piece` from the secondary on `path` at `now_ms`;
    /// `held` says whether the client holds all of its bytes already.
    pub(crate) fn admit(
        &self,
        path: PathId,
        piece: &Piece,
        now_ms: u64,
        held: impl FnOnce() -> bool,
    ) -> Admission {
        let len = piece.data.len() as u64;
        if !piece.fin && self.covers(path, piece.stream, piece.offset, len, now_ms) {
            return Admission::Accept;
        }
        if !piece.fin && held() {
            return Admission::Held;
        }
        Admission::Outside
    }

    /// Makes room for one more grant on `path`: expired grants leave when
    /// the path holds the most it may.
    pub(crate) fn make_room(&mut self, path: PathId, now_ms: u64) -> Result<(), ProtocolError> {
        let set = self.grants.entry(path).or_default();
        if set.len() >= MAX_GRANTS_PER_PATH {
            set.remove_expired(now_ms, GRANT_GRACE_MS);
            if set.len() >= MAX_GRANTS_PER_PATH {
                return Err(ProtocolError::TooManyGrants(path));
            }
        }
        Ok(())
    }

    /// Adds a grant for its path; false if it is held already.
    pub(crate) fn insert(&mut self, grant: Grant) -> bool {
        self.grants.entry(grant.path).or_default().insert(grant)
    }

    /// Whether any link holds grants.
    pub(crate) fn has_grants(&self) -> bool {
        !self.grants.is_empty()
    }

    /// The grants held for `path`.
    #[cfg(test)]
    pub(crate) fn grants_of(&self, path: PathId) -> Option<&GrantSet> {
        self.grants.get(&path)
    }

    /// Secondary paths holding a grant for `stream`.
    pub(crate) fn holders(&self, stream: StreamId) -> Vec<PathId> {
        self.grants
            .iter()
            .filter(|(_, set)| set.has_stream(stream))
            .map(|(p, _)| *p)
            .collect()
    }

    /// The grants of `stream` on `path` whose bytes all arrived (`held`) are
    /// done: nothing more is accepted under them.
    pub(crate) fn remove_held(&mut self, path: PathId, stream: StreamId, held: &[Range<u64>]) {
        if let Some(set) = self.grants.get_mut(&path) {
            set.remove_held(stream, held);
        }
    }

    /// The application released `stream`: no grant for it matters any more.
    pub(crate) fn remove_stream(&mut self, stream: StreamId) {
        for set in self.grants.values_mut() {
            set.remove_stream(stream);
        }
    }

    /// The primary abandoned the secondary path `path`.
    pub(crate) fn forget(&mut self, path: PathId) {
        self.links.remove(&path);
        self.grants.remove(&path);
    }
}

/// What the client owes one secondary besides relays: forwarded grants (at
/// most the per-path grant limit), and the latest credit and acknowledgement
/// of each stream it holds grants for (coalesced, so the queue stays bounded
/// however often they change).
#[derive(Debug, Default)]
pub(crate) struct LinkOutbox {
    grants: VecDeque<Bytes>,
    credits: BTreeMap<StreamId, u64>,
    acks: BTreeMap<StreamId, Frame>,
}

impl LinkOutbox {
    /// Queues `frame` (a grant, credit or ACK; others are not owed to a
    /// secondary). True if the link has something new to write.
    pub(crate) fn push(&mut self, frame: Frame) -> bool {
        match frame {
            Frame::Grant { grant } => {
                if self.grants.len() < MAX_GRANTS_PER_PATH {
                    self.grants.push_back(grant);
                }
            }
            Frame::StreamCredit { stream, max_offset } => {
                let c = self.credits.entry(stream).or_insert(0);
                *c = (*c).max(max_offset);
            }
            Frame::Ack { stream, .. } => {
                self.acks.insert(stream, frame);
            }
            _ => return false,
        }
        true
    }

    /// Encodes everything owed into `buf` and forgets it.
    pub(crate) fn drain_into(&mut self, buf: &mut BytesMut) {
        for grant in self.grants.drain(..) {
            Frame::Grant { grant }.encode(buf);
        }
        for (stream, max_offset) in std::mem::take(&mut self.credits) {
            Frame::StreamCredit { stream, max_offset }.encode(buf);
        }
        for (_, ack) in std::mem::take(&mut self.acks) {
            ack.encode(buf);
        }
    }
}

/// What a frame from a secondary on its link asks of the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LinkInput {
    /// Send this to the primary (a relay, stamped with the link's own path id
    /// whatever the secondary wrote).
    ToPrimary(Frame),
    /// Answer the secondary with this (a pong).
    Answer(Frame),
    /// Nothing a secondary may tell the client: ignored.
    Ignored(Frame),
}

/// Reads a frame the secondary on `path` sent on its link.
pub(crate) fn on_link_frame(path: PathId, frame: Frame) -> LinkInput {
    match frame {
        Frame::Relay { payload, .. } => LinkInput::ToPrimary(Frame::Relay { path, payload }),
        Frame::Ping { seq } => LinkInput::Answer(Frame::Pong { seq }),
        other => LinkInput::Ignored(other),
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use kwik_presentation::{Dir, Side};

    #[test]
    fn link_outbox_coalesces_credit_and_acks() {
        let stream = StreamId::from_parts(0, Side::Server, Dir::Uni);
        let mut outbox = LinkOutbox::default();
        assert!(outbox.push(Frame::StreamCredit {
            stream,
            max_offset: 10
        }));
        assert!(outbox.push(Frame::StreamCredit {
            stream,
            max_offset: 5
        }));
        let ack = |end| Frame::Ack {
            stream,
            fin: false,
            ranges: vec![0..end],
        };
        assert!(outbox.push(ack(3)));
        assert!(outbox.push(ack(7)));
        assert!(!outbox.push(Frame::Ping { seq: 1 }));
        let mut buf = BytesMut::new();
        outbox.drain_into(&mut buf);
        let mut expected = BytesMut::new();
        Frame::StreamCredit {
            stream,
            max_offset: 10,
        }
        .encode(&mut expected);
        ack(7).encode(&mut expected);
        assert_eq!(buf, expected);
        buf.clear();
        outbox.drain_into(&mut buf);
        assert!(buf.is_empty());
    }

    #[test]
    fn link_frames_relay_to_the_primary_as_the_link_and_pings_are_answered() {
        let path = PathId::new(1 << 32);
        let payload = Bytes::from_static(b"hi");
        assert_eq!(
            on_link_frame(
                path,
                Frame::Relay {
                    path: PathId::new(7),
                    payload: payload.clone()
                }
            ),
            LinkInput::ToPrimary(Frame::Relay { path, payload })
        );
        assert_eq!(
            on_link_frame(path, Frame::Ping { seq: 3 }),
            LinkInput::Answer(Frame::Pong { seq: 3 })
        );
        assert_eq!(
            on_link_frame(path, Frame::PathAbandon { path }),
            LinkInput::Ignored(Frame::PathAbandon { path })
        );
    }
}
