//! A path's control frames waiting for its control writer.
//!
//! A peer that does not read its control channel stops the writer (QUIC flow
//! control), and every ACK, credit, PING and PONG queued meanwhile would stay
//! here. The frames that only carry the latest state of something — a
//! stream's ACK (cumulative ranges), a credit (only grows), a scope's
//! backpressure, a PING (any PONG answers the oldest), a PONG (the newest
//! says the path lives), a path's join token — replace a queued frame of the
//! same kind and scope instead of queuing behind it. So the queue holds at
//! most a few frames per stream the receive side tracks (bounded by its
//! `max_streams`) plus the frames that must all go out (CLOSE, resets,
//! path changes), whatever the peer sends.

use std::collections::VecDeque;

use kwik_presentation::StreamId;

use crate::proto::ids::PathId;
use crate::proto::wire::frame::Frame;

/// What a frame carries the latest state of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Ack(StreamId),
    StreamCredit(StreamId),
    SessionCredit,
    Backpressure(Option<StreamId>),
    Ping,
    Pong,
    PathToken(PathId),
}

fn key(frame: &Frame) -> Option<Key> {
    Some(match frame {
        Frame::Ack { stream, .. } => Key::Ack(*stream),
        Frame::StreamCredit { stream, .. } => Key::StreamCredit(*stream),
        Frame::SessionCredit { .. } => Key::SessionCredit,
        Frame::Backpressure { stream, .. } => Key::Backpressure(*stream),
        Frame::Ping { .. } => Key::Ping,
        Frame::Pong { .. } => Key::Pong,
        Frame::PathToken { path, .. } => Key::PathToken(*path),
        _ => return None,
    })
}

/// The control frames of one path, in order, coalesced by what they carry.
#[derive(Debug, Default)]
pub(crate) struct ControlQueue {
    frames: VecDeque<Frame>,
    /// Frames that replaced a queued one instead of queuing.
    coalesced: u64,
}

impl ControlQueue {
    /// Whether `frame` replaced a queued frame of its key (or was dropped as
    /// older than it: a lower credit).
    fn coalesce(&mut self, frame: &mut Option<Frame>) -> bool {
        let Some(k) = frame.as_ref().and_then(key) else {
            return false;
        };
        let Some(queued) = self.frames.iter_mut().find(|f| key(f) == Some(k)) else {
            return false;
        };
        let Some(new) = frame.take() else {
            return false;
        };
        // Credit only grows: keep the higher of the two.
        let keep_queued = match (&*queued, &new) {
            (
                Frame::StreamCredit { max_offset: a, .. },
                Frame::StreamCredit { max_offset: b, .. },
            ) => a >= b,
            (Frame::SessionCredit { max_data: a }, Frame::SessionCredit { max_data: b }) => a >= b,
            _ => false,
        };
        if !keep_queued {
            *queued = new;
        }
        self.coalesced += 1;
        true
    }

    /// Queues `frame` last (or in the place of a queued one of its kind).
    pub(crate) fn push_back(&mut self, frame: Frame) {
        let mut frame = Some(frame);
        if !self.coalesce(&mut frame) {
            self.frames.extend(frame);
        }
    }

    /// Queues `frame` first (or in the place of a queued one of its kind).
    pub(crate) fn push_front(&mut self, frame: Frame) {
        let mut frame = Some(frame);
        if !self.coalesce(&mut frame) {
            if let Some(f) = frame {
                self.frames.push_front(f);
            }
        }
    }

    /// Queues `frames` last, in order.
    pub(crate) fn extend(&mut self, frames: impl IntoIterator<Item = Frame>) {
        for f in frames {
            self.push_back(f);
        }
    }

    /// The next frame to send.
    pub(crate) fn pop_front(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// Drops everything queued.
    pub(crate) fn clear(&mut self) {
        self.frames.clear();
    }

    /// Frames queued now.
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when no frame is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames that replaced a queued one so far.
    pub(crate) fn coalesced(&self) -> u64 {
        self.coalesced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_state_frames_replace_queued_ones_others_queue() {
        let mut q = ControlQueue::default();
        let s = StreamId::new(2);
        for i in 0..1000u64 {
            q.push_front(Frame::Pong { seq: i });
            q.push_back(Frame::Ping { seq: i });
            q.push_back(Frame::Ack {
                stream: s,
                fin: false,
                ranges: std::iter::once(0..i + 1).collect(),
            });
            q.push_back(Frame::StreamCredit {
                stream: s,
                max_offset: 1000 - i,
            });
        }
        q.push_back(Frame::Close {
            code: 0,
            reason: Default::default(),
        });
        q.push_back(Frame::Close {
            code: 1,
            reason: Default::default(),
        });
        assert_eq!(q.len(), 6);
        assert_eq!(q.coalesced(), 4 * 999);
        assert_eq!(q.pop_front(), Some(Frame::Pong { seq: 999 }));
        assert_eq!(q.pop_front(), Some(Frame::Ping { seq: 999 }));
        assert_eq!(
            q.pop_front(),
            Some(Frame::Ack {
                stream: s,
                fin: false,
                ranges: std::iter::once(0..1000).collect()
            })
        );
        assert_eq!(
            q.pop_front(),
            Some(Frame::StreamCredit {
                stream: s,
                max_offset: 1000
            }),
            "the highest credit stays"
        );
        assert!(matches!(q.pop_front(), Some(Frame::Close { code: 0, .. })));
        assert!(matches!(q.pop_front(), Some(Frame::Close { code: 1, .. })));
    }
}
