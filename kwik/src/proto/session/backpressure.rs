//! Backpressure at both ends of a session (docs/PROTOCOL.md §3.3).
//!
//! The receiver ([`LocalBackpressure`]) tells its peer when a scope — one
//! stream or the whole session — is held back: because its presentation
//! raised backpressure (slow reader, head-of-line gap, session window filling
//! up) or because the application holds it by hand. A hand hold also keeps
//! the scope's credit where it was until it is released. The sender
//! ([`PeerBackpressure`]) remembers what the peer signalled and since when,
//! so its application can ask ([`Backpressure`]) and hear when a signal
//! starts and ends ([`BackpressureEvent`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kwik_presentation::{BackpressureScope, StreamId};

use crate::proto::wire::frame::{BackpressureReason, Frame};

/// The receiver's backpressure on a stream, as its sender sees it
/// ([`SendStream::backpressure`](crate::SendStream::backpressure)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backpressure {
    /// Whether the stream itself is held, or the whole session (a stream
    /// signal wins when both are on).
    pub scope: BackpressureScope,
    /// Why ([`BackpressureReason::Unspecified`] from a version-1 peer).
    pub reason: BackpressureReason,
    /// How long it has lasted so far.
    pub lasted: Duration,
}

/// A backpressure signal of the peer started or ended
/// ([`Session::backpressure_events`](crate::Session::backpressure_events)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackpressureEvent {
    /// The peer holds `scope` back.
    Started {
        /// The session or one of this side's send streams.
        scope: BackpressureScope,
        /// Why.
        reason: BackpressureReason,
    },
    /// The peer released `scope` (or gave another reason, which starts a new
    /// signal; or the stream ended).
    Ended {
        /// The session or one of this side's send streams.
        scope: BackpressureScope,
        /// Why it had been on.
        reason: BackpressureReason,
        /// How long it lasted.
        lasted: Duration,
    },
}

impl BackpressureEvent {
    /// The session or send stream the event is about.
    pub fn scope(&self) -> BackpressureScope {
        match self {
            Self::Started { scope, .. } | Self::Ended { scope, .. } => *scope,
        }
    }
}

type Signal = Option<(BackpressureReason, Instant)>;

/// (Sender) What the peer signalled, per scope, with when it started. Only
/// this side's live send streams are remembered, so a peer cannot grow it.
#[derive(Debug, Default)]
pub(crate) struct PeerBackpressure {
    session: Signal,
    streams: HashMap<StreamId, (BackpressureReason, Instant)>,
}

impl PeerBackpressure {
    /// A BACKPRESSURE frame for `scope`; the events it makes go to `out`.
    pub(crate) fn on_frame(
        &mut self,
        scope: BackpressureScope,
        on: Option<BackpressureReason>,
        now: Instant,
        out: &mut Vec<BackpressureEvent>,
    ) {
        let current = match scope {
            BackpressureScope::Session => self.session,
            BackpressureScope::Stream(s) => self.streams.get(&s).copied(),
        };
        let next = match (current, on) {
            (Some((was, since)), Some(reason)) if was == reason => Some((was, since)),
            (current, on) => {
                if let Some((reason, since)) = current {
                    out.push(BackpressureEvent::Ended {
                        scope,
                        reason,
                        lasted: now.saturating_duration_since(since),
                    });
                }
                on.map(|reason| {
                    out.push(BackpressureEvent::Started { scope, reason });
                    (reason, now)
                })
            }
        };
        match scope {
            BackpressureScope::Session => self.session = next,
            BackpressureScope::Stream(s) => match next {
                Some(signal) => {
                    self.streams.insert(s, signal);
                }
                None => {
                    self.streams.remove(&s);
                }
            },
        }
    }

    /// What holds `stream` back now: its own signal, else the session's.
    pub(crate) fn get(&self, stream: StreamId, now: Instant) -> Option<Backpressure> {
        let (scope, (reason, since)) = match self.streams.get(&stream) {
            Some(signal) => (BackpressureScope::Stream(stream), *signal),
            None => (BackpressureScope::Session, self.session?),
        };
        Some(Backpressure {
            scope,
            reason,
            lasted: now.saturating_duration_since(since),
        })
    }

    /// The send stream ended (complete or reset): its signal goes with it.
    pub(crate) fn forget(&mut self, stream: StreamId) {
        self.streams.remove(&stream);
    }
}

/// (Receiver) What the peer is told, per scope: the presentation's signal,
/// overridden by the application's hand hold, which also freezes the
/// scope's credit at what it was when the hold began.
#[derive(Debug, Default)]
pub(crate) struct LocalBackpressure {
    auto_session: Option<BackpressureReason>,
    auto_streams: HashMap<StreamId, BackpressureReason>,
    /// Credit (MAX_DATA) the peer had when the session was held.
    held_session: Option<u64>,
    /// Credit (max offset) each held stream had when it was held.
    held_streams: HashMap<StreamId, u64>,
}

impl LocalBackpressure {
    /// What the peer is told of `scope` now.
    pub(crate) fn signalled(&self, scope: BackpressureScope) -> Option<BackpressureReason> {
        let (held, auto) = match scope {
            BackpressureScope::Session => (self.held_session.is_some(), self.auto_session),
            BackpressureScope::Stream(s) => (
                self.held_streams.contains_key(&s),
                self.auto_streams.get(&s).copied(),
            ),
        };
        if held {
            Some(BackpressureReason::Manual)
        } else {
            auto
        }
    }

    /// Runs `change` on the state of `scope`; the BACKPRESSURE frame to send
    /// if what the peer should know changed. `version` is the session's: a
    /// version-1 peer hears on and off only, without reasons.
    fn update(
        &mut self,
        scope: BackpressureScope,
        version: u64,
        change: impl FnOnce(&mut Self),
    ) -> Option<Frame> {
        let before = self.signalled(scope);
        change(self);
        let after = self.signalled(scope);
        let reasons = version > crate::proto::wire::frame::BASE_VERSION;
        if before == after || (!reasons && before.is_some() && after.is_some()) {
            return None;
        }
        Some(Frame::Backpressure {
            stream: match scope {
                BackpressureScope::Session => None,
                BackpressureScope::Stream(s) => Some(s),
            },
            on: after.is_some(),
            reason: reasons.then(|| after.or(before).unwrap_or(BackpressureReason::Unspecified)),
        })
    }

    /// The presentation raised (`Some`) or dropped (`None`) backpressure.
    pub(crate) fn on_signal(
        &mut self,
        scope: BackpressureScope,
        reason: Option<BackpressureReason>,
        version: u64,
    ) -> Option<Frame> {
        self.update(scope, version, |s| match (scope, reason) {
            (BackpressureScope::Session, r) => s.auto_session = r,
            (BackpressureScope::Stream(id), Some(r)) => {
                s.auto_streams.insert(id, r);
            }
            (BackpressureScope::Stream(id), None) => {
                s.auto_streams.remove(&id);
            }
        })
    }

    /// The application holds `scope`, whose peer has `credit` now.
    pub(crate) fn hold(
        &mut self,
        scope: BackpressureScope,
        credit: u64,
        version: u64,
    ) -> Option<Frame> {
        self.update(scope, version, |s| match scope {
            BackpressureScope::Session => {
                s.held_session.get_or_insert(credit);
            }
            BackpressureScope::Stream(id) => {
                s.held_streams.entry(id).or_insert(credit);
            }
        })
    }

    /// The application releases `scope`; the frame to send, if any. The
    /// caller sends the scope's current credit after it.
    pub(crate) fn release(&mut self, scope: BackpressureScope, version: u64) -> Option<Frame> {
        self.update(scope, version, |s| match scope {
            BackpressureScope::Session => s.held_session = None,
            BackpressureScope::Stream(id) => {
                s.held_streams.remove(&id);
            }
        })
    }

    /// Whether the application holds `scope`.
    pub(crate) fn is_held(&self, scope: BackpressureScope) -> bool {
        match scope {
            BackpressureScope::Session => self.held_session.is_some(),
            BackpressureScope::Stream(s) => self.held_streams.contains_key(&s),
        }
    }

    /// `frame` as it may go to the peer: credit of a held scope stays at what
    /// it was when the hold began (`None`: do not send it now).
    pub(crate) fn gate(&self, frame: Frame) -> Option<Frame> {
        match frame {
            Frame::SessionCredit { max_data } => match self.held_session {
                Some(held) if max_data > held => None,
                _ => Some(frame),
            },
            Frame::StreamCredit { stream, max_offset } => match self.held_streams.get(&stream) {
                Some(held) if max_offset > *held => None,
                _ => Some(frame),
            },
            other => Some(other),
        }
    }

    /// Like [`Self::gate`], for credit re-sent after a path loss: a held
    /// scope's credit goes out at its held value.
    pub(crate) fn clamp(&self, frame: Frame) -> Frame {
        match frame {
            Frame::SessionCredit { max_data } => Frame::SessionCredit {
                max_data: self.held_session.map_or(max_data, |h| h.min(max_data)),
            },
            Frame::StreamCredit { stream, max_offset } => Frame::StreamCredit {
                stream,
                max_offset: self
                    .held_streams
                    .get(&stream)
                    .map_or(max_offset, |h| (*h).min(max_offset)),
            },
            other => other,
        }
    }

    /// The receive stream is gone: its signals and hold with it.
    pub(crate) fn remove_stream(&mut self, stream: StreamId) {
        self.auto_streams.remove(&stream);
        self.held_streams.remove(&stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: u64 = 1;
    const V2: u64 = 2;

    fn frame(stream: Option<u64>, on: bool, reason: Option<BackpressureReason>) -> Option<Frame> {
        Some(Frame::Backpressure {
            stream: stream.map(StreamId::new),
            on,
            reason,
        })
    }

    #[test]
    fn a_hold_overrides_the_presentation_and_freezes_credit() {
        use BackpressureReason::*;
        let s = BackpressureScope::Stream(StreamId::new(2));
        let mut b = LocalBackpressure::default();
        assert_eq!(
            b.on_signal(s, Some(SlowReader), V2),
            frame(Some(2), true, Some(SlowReader))
        );
        assert_eq!(b.on_signal(s, Some(SlowReader), V2), None);
        assert_eq!(b.hold(s, 100, V2), frame(Some(2), true, Some(Manual)));
        assert_eq!(b.on_signal(s, None, V2), None, "still held");
        let credit = |m| Frame::StreamCredit {
            stream: StreamId::new(2),
            max_offset: m,
        };
        assert_eq!(b.gate(credit(150)), None);
        assert_eq!(b.gate(credit(100)), Some(credit(100)));
        assert_eq!(b.clamp(credit(150)), credit(100));
        assert_eq!(b.release(s, V2), frame(Some(2), false, Some(Manual)));
        assert_eq!(b.gate(credit(150)), Some(credit(150)));
        // A version-1 peer hears on and off only.
        let session = BackpressureScope::Session;
        assert_eq!(
            b.on_signal(session, Some(SessionWindow), V1),
            frame(None, true, None)
        );
        assert_eq!(b.hold(session, 7, V1), None, "on already");
        assert_eq!(b.release(session, V1), None, "still on");
        assert_eq!(b.on_signal(session, None, V1), frame(None, false, None));
    }

    #[test]
    fn the_sender_tracks_start_reason_and_duration() {
        use BackpressureReason::*;
        let t = Instant::now();
        let id = StreamId::new(2);
        let s = BackpressureScope::Stream(id);
        let mut p = PeerBackpressure::default();
        let mut ev = Vec::new();
        p.on_frame(s, Some(SlowReader), t, &mut ev);
        p.on_frame(s, Some(SlowReader), t + Duration::from_millis(5), &mut ev);
        assert_eq!(
            ev,
            [BackpressureEvent::Started {
                scope: s,
                reason: SlowReader
            }]
        );
        let seen = p.get(id, t + Duration::from_millis(8)).unwrap();
        assert_eq!(
            (seen.scope, seen.reason, seen.lasted),
            (s, SlowReader, Duration::from_millis(8))
        );
        // The session's signal applies to streams without their own.
        p.on_frame(BackpressureScope::Session, Some(SessionWindow), t, &mut ev);
        assert_eq!(
            p.get(StreamId::new(6), t).map(|b| b.reason),
            Some(SessionWindow)
        );
        ev.clear();
        p.on_frame(s, None, t + Duration::from_millis(10), &mut ev);
        assert_eq!(
            ev,
            [BackpressureEvent::Ended {
                scope: s,
                reason: SlowReader,
                lasted: Duration::from_millis(10)
            }]
        );
        assert_eq!(
            p.get(id, t).map(|b| b.scope),
            Some(BackpressureScope::Session)
        );
    }
}
