//! Multi-server sessions, the secondary server's part: what one secondary path
//! learned from the client (grants verified under the key shared with the
//! primary, the client's credit and acknowledgements per stream) and the
//! checks a write must pass before a byte goes out. Time comes in as Unix
//! milliseconds (grant expiries are wall-clock times set by the primary).

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use bytes::Bytes;
use kwik_presentation::{RangeSet, StreamId};

use super::grant::{Grant, GrantSet, MAX_GRANTS_PER_PATH};
use super::token::TokenKey;
use crate::proto::error::SecondaryWriteError;
use crate::proto::ids::{PathId, SessionId};
use crate::proto::wire::frame::Frame;

/// Counters of a secondary path ([`SecondarySession::stats`](crate::SecondarySession::stats)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecondaryStats {
    /// Grants received that verified.
    pub grants_received: u64,
    /// Grants refused: forged or altered (tag), for another path, expired,
    /// malformed. Counted in `kwik_grants_refused_total` as well.
    pub grants_refused: u64,
    /// Stream bytes written to the client.
    pub bytes_written: u64,
    /// Times a write waited for the client's stream credit (backpressure).
    pub credit_waits: u64,
}

/// What a frame from the client asks of the secondary's driver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SecondaryInput {
    /// A relayed message for the application.
    Relay(Bytes),
    /// Answer the client with this (a pong).
    Answer(Frame),
    /// Grants, credit or acknowledgements changed: wake waiting writers.
    Changed,
    /// A grant was refused (and counted), for this reason; writers wake too.
    GrantRefused(String),
    /// The client closed its session: close the path with this code.
    Close {
        /// The session's close code.
        code: u64,
        /// Its reason.
        reason: Bytes,
    },
    /// Nothing the client may tell a secondary: ignored.
    Ignored(Frame),
}

/// The state of one secondary path.
#[derive(Debug)]
pub(crate) struct SecondaryState {
    session: SessionId,
    path: PathId,
    grants: GrantSet,
    fresh: VecDeque<Grant>,
    credit: HashMap<StreamId, u64>,
    acked: HashMap<StreamId, RangeSet>,
    stats: SecondaryStats,
}

impl SecondaryState {
    /// Path `path` of `session`, joined with a verified token.
    pub(crate) fn new(session: SessionId, path: PathId) -> Self {
        Self {
            session,
            path,
            grants: GrantSet::default(),
            fresh: VecDeque::new(),
            credit: HashMap::new(),
            acked: HashMap::new(),
            stats: SecondaryStats::default(),
        }
    }

    /// A control frame from the client; grants are verified under `key` at
    /// `now_ms`.
    pub(crate) fn on_frame(&mut self, frame: Frame, key: &TokenKey, now_ms: u64) -> SecondaryInput {
        match frame {
            Frame::Relay { payload, .. } => SecondaryInput::Relay(payload),
            Frame::Ping { seq } => SecondaryInput::Answer(Frame::Pong { seq }),
            Frame::Grant { grant } => self.on_grant(&grant, key, now_ms),
            Frame::StreamCredit { stream, max_offset } => {
                let c = self.credit.entry(stream).or_insert(0);
                *c = (*c).max(max_offset);
                SecondaryInput::Changed
            }
            Frame::Ack { stream, ranges, .. } => {
                let acked = self.acked.entry(stream).or_default();
                for r in ranges {
                    acked.insert(r);
                }
                let held: Vec<Range<u64>> = acked.iter().collect();
                if !self.grants.is_empty() {
                    self.grants.remove_held(stream, &held);
                }
                SecondaryInput::Changed
            }
            Frame::Close { code, reason } => SecondaryInput::Close { code, reason },
            other => SecondaryInput::Ignored(other),
        }
    }

    fn on_grant(&mut self, signed: &[u8], key: &TokenKey, now_ms: u64) -> SecondaryInput {
        let verified = Grant::verify(key, self.session, signed, now_ms)
            .map_err(|e| e.to_string())
            .and_then(|g| {
                if g.path == self.path {
                    Ok(g)
                } else {
                    Err(format!("grant for {}", g.path))
                }
            });
        match verified {
            Ok(g) => {
                self.stats.grants_received += 1;
                if self.grants.len() >= MAX_GRANTS_PER_PATH {
                    self.grants.remove_expired(now_ms, 0);
                }
                if self.grants.insert(g.clone()) {
                    self.fresh.push_back(g);
                }
                SecondaryInput::Changed
            }
            Err(reason) => {
                self.stats.grants_refused += 1;
                SecondaryInput::GrantRefused(reason)
            }
        }
    }

    /// The next grant not yet handed to the application.
    pub(crate) fn take_fresh(&mut self) -> Option<Grant> {
        self.fresh.pop_front()
    }

    /// The grants held and not expired at `now_ms`.
    pub(crate) fn grants(&self, now_ms: u64) -> Vec<Grant> {
        self.grants
            .iter()
            .filter(|g| g.expiry_ms >= now_ms)
            .cloned()
            .collect()
    }

    pub(crate) fn stats(&self) -> SecondaryStats {
        self.stats.clone()
    }

    /// Whether a write of `len` bytes at `offset` of `stream` may start at
    /// `now_ms`: some grant covers it, and one that covers it has not expired.
    pub(crate) fn check_write(
        &self,
        stream: StreamId,
        offset: u64,
        len: u64,
        now_ms: u64,
    ) -> Result<(), SecondaryWriteError> {
        if self
            .grants
            .covering(self.path, stream, offset, len, 0, u64::MAX)
            .is_none()
        {
            return Err(SecondaryWriteError::OutsideGrant {
                stream,
                offset,
                length: len,
            });
        }
        if !self.is_live(stream, offset, len, now_ms) {
            return Err(SecondaryWriteError::Expired);
        }
        Ok(())
    }

    /// Whether a grant not expired at `now_ms` covers the bytes (the client
    /// would refuse them otherwise, and close the path).
    pub(crate) fn is_live(&self, stream: StreamId, offset: u64, len: u64, now_ms: u64) -> bool {
        self.grants
            .covering(self.path, stream, offset, len, now_ms, 0)
            .is_some()
    }

    /// The client's credit (max offset) for `stream`.
    pub(crate) fn credit(&self, stream: StreamId) -> u64 {
        self.credit.get(&stream).copied().unwrap_or(0)
    }

    /// A write waits for the client's credit.
    pub(crate) fn credit_wait(&mut self) {
        self.stats.credit_waits += 1;
    }

    /// `len` stream bytes went out.
    pub(crate) fn written(&mut self, len: u64) {
        self.stats.bytes_written += len;
    }

    /// Whether the client acknowledged every byte of `range` of `stream`.
    pub(crate) fn acknowledged(&self, stream: StreamId, range: Range<u64>) -> bool {
        self.acked
            .get(&stream)
            .is_some_and(|a| a.contains_range(range))
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use kwik_presentation::{Dir, Side};

    const KEY: TokenKey = TokenKey::new([5; 32]);
    const NOW: u64 = 1_000_000;

    fn secondary() -> (SecondaryState, SessionId, PathId) {
        let (session, path) = (SessionId::from_bytes([7; 16]), PathId::new(1 << 32));
        (SecondaryState::new(session, path), session, path)
    }

    #[test]
    fn only_verified_grants_for_this_path_are_held() {
        let (mut s, session, path) = secondary();
        let stream = StreamId::from_parts(0, Side::Server, Dir::Uni);
        let valid = Grant::new(path, stream, 0..1000, NOW + 60_000);
        let refused = [
            valid.sign(&TokenKey::new([9; 32]), session),
            Grant::new(path, stream, 0..1000, NOW - 1).sign(&KEY, session),
            Grant::new(PathId::new((1 << 32) + 1), stream, 0..1000, NOW + 60_000)
                .sign(&KEY, session),
            valid.sign(&KEY, SessionId::from_bytes([8; 16])),
        ];
        for grant in refused {
            assert!(matches!(
                s.on_frame(Frame::Grant { grant }, &KEY, NOW),
                SecondaryInput::GrantRefused(_)
            ));
        }
        let grant = valid.sign(&KEY, session);
        assert_eq!(
            s.on_frame(
                Frame::Grant {
                    grant: grant.clone()
                },
                &KEY,
                NOW
            ),
            SecondaryInput::Changed
        );
        // A copy is counted but handed out once.
        s.on_frame(Frame::Grant { grant }, &KEY, NOW);
        assert_eq!(s.take_fresh(), Some(valid.clone()));
        assert_eq!(s.take_fresh(), None);
        assert_eq!(
            (s.stats().grants_received, s.stats().grants_refused),
            (2, 4)
        );
        assert_eq!(s.grants(NOW), vec![valid.clone()]);
        assert!(s.grants(NOW + 60_001).is_empty());
    }

    #[test]
    fn writes_need_a_live_covering_grant_and_credit_and_acks_are_kept() {
        let (mut s, session, path) = secondary();
        let stream = StreamId::from_parts(0, Side::Server, Dir::Uni);
        let grant = Grant::new(path, stream, 1000..2000, NOW + 1500);
        s.on_frame(
            Frame::Grant {
                grant: grant.sign(&KEY, session),
            },
            &KEY,
            NOW,
        );
        assert_eq!(s.check_write(stream, 1000, 1000, NOW), Ok(()));
        assert_eq!(
            s.check_write(stream, 990, 20, NOW),
            Err(SecondaryWriteError::OutsideGrant {
                stream,
                offset: 990,
                length: 20
            })
        );
        assert_eq!(
            s.check_write(stream, 1000, 4, NOW + 1501),
            Err(SecondaryWriteError::Expired)
        );
        assert!(s.is_live(stream, 1500, 10, NOW + 1500));
        assert!(!s.is_live(stream, 1500, 10, NOW + 1501));

        assert_eq!(s.credit(stream), 0);
        for max_offset in [1200, 1100] {
            s.on_frame(Frame::StreamCredit { stream, max_offset }, &KEY, NOW);
        }
        assert_eq!(s.credit(stream), 1200, "credit only grows");

        let ack = |ranges| Frame::Ack {
            stream,
            fin: false,
            ranges,
        };
        s.on_frame(ack(vec![0..1500]), &KEY, NOW);
        assert!(s.acknowledged(stream, 0..1500));
        assert!(!s.acknowledged(stream, 0..2000));
        assert_eq!(
            s.grants(NOW).len(),
            1,
            "the grant's range is not all held yet"
        );
        s.on_frame(ack(vec![1500..2000]), &KEY, NOW);
        assert!(s.acknowledged(stream, 0..2000));
        assert!(
            s.grants(NOW).is_empty(),
            "a grant whose range arrived is done"
        );

        assert_eq!(
            s.on_frame(Frame::Ping { seq: 4 }, &KEY, NOW),
            SecondaryInput::Answer(Frame::Pong { seq: 4 })
        );
        assert_eq!(
            s.on_frame(
                Frame::Close {
                    code: 3,
                    reason: Bytes::from_static(b"bye")
                },
                &KEY,
                NOW
            ),
            SecondaryInput::Close {
                code: 3,
                reason: Bytes::from_static(b"bye")
            }
        );
    }
}
