//! Events the senders must hear, and the coalescing queue that holds them.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::time::Duration;

use crate::{BackpressureScope, BackpressureState, StreamId};

/// Something the senders of the session must be told.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresentationEvent {
    /// The stream's credit grew: the peer may send up to `max_offset`.
    StreamCredit {
        /// The stream.
        stream: StreamId,
        /// New max offset (QUIC MAX_STREAM_DATA).
        max_offset: u64,
    },
    /// The session credit grew.
    SessionCredit {
        /// New max sum of highest offsets over all streams (QUIC MAX_DATA).
        max_data: u64,
    },
    /// Backpressure switched on or off.
    Backpressure {
        /// Session or stream.
        scope: BackpressureScope,
        /// The new state (with the reason when on).
        state: BackpressureState,
    },
    /// The reader has waited on `gap` for `age`; senders should retransmit it.
    GapTimeout {
        /// The stream.
        stream: StreamId,
        /// The missing byte range the reader waits on.
        gap: Range<u64>,
        /// How long it has been missing.
        age: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum EventKey {
    StreamCredit(StreamId),
    SessionCredit,
    Backpressure(BackpressureScope),
    Gap(StreamId),
}

impl EventKey {
    fn of(event: &PresentationEvent) -> Self {
        match event {
            PresentationEvent::StreamCredit { stream, .. } => Self::StreamCredit(*stream),
            PresentationEvent::SessionCredit { .. } => Self::SessionCredit,
            PresentationEvent::Backpressure { scope, .. } => Self::Backpressure(*scope),
            PresentationEvent::GapTimeout { stream, .. } => Self::Gap(*stream),
        }
    }
}

/// Pending events, at most one per kind and scope: a newer event replaces an
/// undelivered older one of the same key (only the latest credit or state
/// matters), which bounds the queue by the number of streams. A hard cap guards
/// against a consumer that never drains; overflow drops the oldest and is counted.
#[derive(Debug)]
pub(crate) struct EventQueue {
    order: VecDeque<EventKey>,
    pending: HashMap<EventKey, PresentationEvent>,
    cap: usize,
    dropped: u64,
}

impl EventQueue {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            order: VecDeque::new(),
            pending: HashMap::new(),
            cap: cap.max(4),
            dropped: 0,
        }
    }

    /// Queues `event`, replacing an undelivered one of the same key.
    pub(crate) fn push(&mut self, event: PresentationEvent) {
        let key = EventKey::of(&event);
        if self.pending.insert(key, event).is_none() {
            if self.order.len() >= self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.pending.remove(&old);
                    self.dropped += 1;
                }
            }
            self.order.push_back(key);
        }
    }

    pub(crate) fn pop(&mut self) -> Option<PresentationEvent> {
        let key = self.order.pop_front()?;
        self.pending.remove(&key)
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_by_key() {
        let mut q = EventQueue::new(16);
        let s = StreamId::new(4);
        q.push(PresentationEvent::StreamCredit {
            stream: s,
            max_offset: 10,
        });
        q.push(PresentationEvent::SessionCredit { max_data: 5 });
        q.push(PresentationEvent::StreamCredit {
            stream: s,
            max_offset: 20,
        });
        assert_eq!(q.len(), 2);
        assert_eq!(
            q.pop(),
            Some(PresentationEvent::StreamCredit {
                stream: s,
                max_offset: 20
            })
        );
        assert_eq!(
            q.pop(),
            Some(PresentationEvent::SessionCredit { max_data: 5 })
        );
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn bounded() {
        let mut q = EventQueue::new(4);
        for i in 0..10 {
            q.push(PresentationEvent::StreamCredit {
                stream: StreamId::new(i * 4),
                max_offset: 1,
            });
        }
        assert_eq!(q.len(), 4);
        assert_eq!(q.dropped(), 6);
    }
}
