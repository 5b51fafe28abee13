//! Delegation grants: the primary server's signed statement that the secondary
//! on one path may write one byte range of one logical stream of a session,
//! until an expiry. Signed with the key the primary shares with its
//! secondaries ([`TokenKey`]), so the secondary and the client's primary-side
//! checks need no other trust. Pure logic: no I/O, time passed in.
//!
//! Wire form (73 bytes): `version (u8 = 1) | path (u64 BE) | stream (u64 BE) |
//! start (u64 BE) | end (u64 BE) | expiry (u64 BE, Unix ms) | tag (32)`, with
//! `tag = HMAC-SHA256(key, "kwik/1 grant" | session id (16) | the 40 bytes
//! from path to expiry)`. The session id is not carried: it is bound by the tag.

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use hmac::Mac;
use kwik_presentation::StreamId;

use crate::proto::ids::{PathId, SessionId};
use crate::proto::multiserver::token::TokenKey;

const GRANT_VERSION: u8 = 1;
const BODY_LEN: usize = 40;
const TAG_LEN: usize = 32;
/// Length of a signed grant on the wire.
pub const GRANT_LEN: usize = 1 + BODY_LEN + TAG_LEN;
const LABEL: &[u8] = b"kwik/1 grant";

/// The right of the secondary on `path` to write bytes `range` of `stream` until
/// `expiry_ms` (Unix milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Grant {
    /// The secondary path that may write.
    pub path: PathId,
    /// The logical stream.
    pub stream: StreamId,
    /// The byte range (non-empty).
    pub range: Range<u64>,
    /// When the grant lapses (Unix milliseconds).
    pub expiry_ms: u64,
}

/// Why a signed grant was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// Wrong length or version.
    #[error("malformed grant")]
    Malformed,
    /// The range is empty or reversed.
    #[error("grant with an empty range")]
    EmptyRange,
    /// The tag does not match: forged, altered, or for another session.
    #[error("grant does not verify")]
    BadTag,
    /// The grant's expiry has passed.
    #[error("grant expired")]
    Expired,
}

impl Grant {
    /// A grant for `path` to write `range` of `stream` until `expiry_ms`.
    pub fn new(path: PathId, stream: StreamId, range: Range<u64>, expiry_ms: u64) -> Self {
        Self {
            path,
            stream,
            range,
            expiry_ms,
        }
    }

    fn body(&self) -> [u8; BODY_LEN] {
        let mut b = [0u8; BODY_LEN];
        for (i, v) in [
            self.path.into_inner(),
            self.stream.into_inner(),
            self.range.start,
            self.range.end,
            self.expiry_ms,
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        b
    }

    fn tag(
        key: &TokenKey,
        session: SessionId,
        body: &[u8],
    ) -> crate::proto::multiserver::token::HmacSha256 {
        let mut mac = key.mac();
        mac.update(LABEL);
        mac.update(session.as_bytes());
        mac.update(body);
        mac
    }

    /// The signed wire form for `session` under `key`.
    pub fn sign(&self, key: &TokenKey, session: SessionId) -> Bytes {
        let body = self.body();
        let tag = Self::tag(key, session, &body).finalize().into_bytes();
        let mut out = BytesMut::with_capacity(GRANT_LEN);
        out.put_u8(GRANT_VERSION);
        out.put_slice(&body);
        out.put_slice(&tag);
        out.freeze()
    }

    /// Checks a signed grant for `session` under `key` at `now_ms`.
    pub fn verify(
        key: &TokenKey,
        session: SessionId,
        signed: &[u8],
        now_ms: u64,
    ) -> Result<Grant, GrantError> {
        if signed.len() != GRANT_LEN || signed[0] != GRANT_VERSION {
            return Err(GrantError::Malformed);
        }
        Self::tag(key, session, &signed[1..1 + BODY_LEN])
            .verify_slice(&signed[1 + BODY_LEN..])
            .map_err(|_| GrantError::BadTag)?;
        let grant = Self::decode_unverified(signed)?;
        if grant.expiry_ms < now_ms {
            return Err(GrantError::Expired);
        }
        Ok(grant)
    }

    /// Reads a signed grant's fields without checking its tag or expiry: what
    /// the client does with a grant that arrived from the primary over the
    /// session's authenticated paths (it does not hold the key; the secondary
    /// checks the tag).
    pub(crate) fn decode_unverified(signed: &[u8]) -> Result<Grant, GrantError> {
        if signed.len() != GRANT_LEN || signed[0] != GRANT_VERSION {
            return Err(GrantError::Malformed);
        }
        let body = &signed[1..1 + BODY_LEN];
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[i * 8..i * 8 + 8]);
            u64::from_be_bytes(b)
        };
        let grant = Grant::new(
            PathId::new(field(0)),
            StreamId::new(field(1)),
            field(2)..field(3),
            field(4),
        );
        if grant.range.is_empty() {
            return Err(GrantError::EmptyRange);
        }
        Ok(grant)
    }

    /// Whether bytes `offset..offset + len` of `stream` from `path` fall inside
    /// this grant.
    pub fn covers(&self, path: PathId, stream: StreamId, offset: u64, len: u64) -> bool {
        path == self.path
            && stream == self.stream
            && offset >= self.range.start
            && offset
                .checked_add(len)
                .is_some_and(|end| end <= self.range.end)
    }
}

/// Most live grants one secondary path may hold, at the client and at the
/// secondary (grants leave when their range has arrived or they expired).
/// Outstanding grants are bounded by the session window anyway: the primary
/// reserves credit for each.
pub(crate) const MAX_GRANTS_PER_PATH: usize = 16384;

/// The grants of one secondary path, ordered by stream and range so that the
/// grant covering a segment is found without scanning them all.
#[derive(Debug, Default)]
pub(crate) struct GrantSet {
    map: BTreeMap<(StreamId, u64, u64, u64), Grant>,
}

impl GrantSet {
    fn key(g: &Grant) -> (StreamId, u64, u64, u64) {
        (g.stream, g.range.start, g.range.end, g.expiry_ms)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds a grant; false if it is already held.
    pub(crate) fn insert(&mut self, grant: Grant) -> bool {
        self.map.insert(Self::key(&grant), grant).is_none()
    }

    /// A grant that covers `offset..offset + len` of `stream` from `path` and
    /// whose expiry plus `grace_ms` has not passed at `now_ms`.
    pub(crate) fn covering(
        &self,
        path: PathId,
        stream: StreamId,
        offset: u64,
        len: u64,
        now_ms: u64,
        grace_ms: u64,
    ) -> Option<&Grant> {
        self.map
            .range((stream, 0, 0, 0)..=(stream, offset, u64::MAX, u64::MAX))
            .rev()
            .map(|(_, g)| g)
            .find(|g| {
                g.covers(path, stream, offset, len)
                    && now_ms <= g.expiry_ms.saturating_add(grace_ms)
            })
    }

    /// Whether any grant is for `stream`.
    pub(crate) fn has_stream(&self, stream: StreamId) -> bool {
        self.map
            .range((stream, 0, 0, 0)..=(stream, u64::MAX, u64::MAX, u64::MAX))
            .next()
            .is_some()
    }

    /// The streams with grants, each once.
    pub(crate) fn streams(&self) -> Vec<StreamId> {
        let mut out: Vec<StreamId> = self.map.keys().map(|k| k.0).collect();
        out.dedup();
        out
    }

    /// Forgets the grants of `stream`.
    pub(crate) fn remove_stream(&mut self, stream: StreamId) {
        self.map.retain(|k, _| k.0 != stream);
    }

    /// Forgets grants whose expiry plus `grace_ms` passed at `now_ms`.
    pub(crate) fn remove_expired(&mut self, now_ms: u64, grace_ms: u64) {
        self.map
            .retain(|_, g| now_ms <= g.expiry_ms.saturating_add(grace_ms));
    }

    /// Forgets grants of `stream` whose whole range lies in one of `held`
    /// (ascending ranges the receiver holds): nothing more is expected.
    pub(crate) fn remove_held(&mut self, stream: StreamId, held: &[Range<u64>]) {
        let done: Vec<_> = self
            .map
            .range((stream, 0, 0, 0)..=(stream, u64::MAX, u64::MAX, u64::MAX))
            .filter(|(_, g)| {
                held.iter()
                    .any(|h| h.start <= g.range.start && g.range.end <= h.end)
            })
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            self.map.remove(&k);
        }
    }

    /// Every grant, by stream and range.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Grant> {
        self.map.values()
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SESSION: SessionId = SessionId::from_bytes([3; 16]);

    fn grant() -> Grant {
        Grant::new(PathId::new(1 << 32), StreamId::new(3), 1000..2000, 5000)
    }

    #[test]
    fn signed_grant_verifies_and_covers_its_range_only() {
        let key = TokenKey::new([1; 32]);
        let g = grant();
        let wire = g.sign(&key, SESSION);
        assert_eq!(wire.len(), GRANT_LEN);
        let back = Grant::verify(&key, SESSION, &wire, 4999).unwrap();
        assert_eq!(back, g);
        assert!(back.covers(g.path, g.stream, 1000, 1000));
        assert!(back.covers(g.path, g.stream, 1500, 0));
        assert!(!back.covers(g.path, g.stream, 999, 2));
        assert!(!back.covers(g.path, g.stream, 1999, 2));
        assert!(!back.covers(g.path, StreamId::new(7), 1000, 1));
        assert!(!back.covers(PathId::new(1), g.stream, 1000, 1));
        assert!(!back.covers(g.path, g.stream, u64::MAX, 2));
    }

    #[test]
    fn forged_expired_other_session_malformed() {
        let key = TokenKey::new([1; 32]);
        let wire = grant().sign(&key, SESSION);
        assert_eq!(
            Grant::verify(&key, SESSION, &wire, 5001),
            Err(GrantError::Expired)
        );
        assert_eq!(
            Grant::verify(&key, SessionId::from_bytes([4; 16]), &wire, 0),
            Err(GrantError::BadTag)
        );
        assert_eq!(
            Grant::verify(&TokenKey::new([2; 32]), SESSION, &wire, 0),
            Err(GrantError::BadTag)
        );
        assert_eq!(
            Grant::verify(&key, SESSION, &wire[..GRANT_LEN - 1], 0),
            Err(GrantError::Malformed)
        );
        let empty = Grant::new(PathId::new(1), StreamId::new(3), 5..5, 10).sign(&key, SESSION);
        assert_eq!(
            Grant::verify(&key, SESSION, &empty, 0),
            Err(GrantError::EmptyRange)
        );
    }

    proptest! {
        #[test]
        fn any_changed_byte_is_refused(i in 0usize..GRANT_LEN, flip in 1u8..=255) {
            let key = TokenKey::new([1; 32]);
            let mut wire = grant().sign(&key, SESSION).to_vec();
            wire[i] ^= flip;
            prop_assert!(Grant::verify(&key, SESSION, &wire, 0).is_err());
        }
    }

    #[test]
    fn grant_set_finds_the_covering_grant() {
        let path = PathId::new(1 << 32);
        let s3 = StreamId::new(3);
        let mut set = GrantSet::default();
        assert!(set.insert(Grant::new(path, s3, 0..100, 1000)));
        assert!(set.insert(Grant::new(path, s3, 200..300, 1000)));
        assert!(set.insert(Grant::new(path, s3, 100..200, 10)));
        assert!(!set.insert(Grant::new(path, s3, 0..100, 1000)));
        assert!(set.insert(Grant::new(path, StreamId::new(7), 0..50, 1000)));
        assert_eq!(set.len(), 4);
        let find = |set: &GrantSet, off, len, now| {
            set.covering(path, s3, off, len, now, 5)
                .map(|g| g.range.clone())
        };
        assert_eq!(find(&set, 250, 50, 0), Some(200..300));
        assert_eq!(find(&set, 0, 100, 0), Some(0..100));
        assert_eq!(find(&set, 150, 10, 15), Some(100..200));
        assert_eq!(find(&set, 150, 10, 16), None, "expired past the grace");
        assert_eq!(find(&set, 90, 20, 0), None, "spans two grants");
        assert_eq!(find(&set, 300, 1, 0), None);
        assert!(set.covering(PathId::new(1), s3, 0, 1, 0, 0).is_none());
        assert_eq!(set.streams(), vec![s3, StreamId::new(7)]);
        set.remove_held(s3, &[0..150]);
        assert_eq!(set.len(), 3);
        set.remove_expired(100, 0);
        assert_eq!(set.len(), 2);
        set.remove_stream(s3);
        assert!(!set.has_stream(s3));
        assert!(set.has_stream(StreamId::new(7)));
        assert_eq!(set.iter().count(), 1);
        assert!(!set.is_empty());
    }
}
