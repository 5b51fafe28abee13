//! Which readers to wake: the streams whose reader was told "blocked" and that
//! have since got something to say (data, the end, an error).

use std::collections::VecDeque;

use crate::StreamId;

/// Streams whose waiting reader should look again, oldest first, each at most
/// once (the caller keeps a per-stream "waiting" flag and pushes only when it
/// clears it), so the queue is bounded by the number of streams.
#[derive(Debug, Default)]
pub(crate) struct ReadyQueue {
    streams: VecDeque<StreamId>,
}

impl ReadyQueue {
    pub(crate) fn push(&mut self, id: StreamId) {
        self.streams.push_back(id);
    }

    pub(crate) fn pop(&mut self) -> Option<StreamId> {
        self.streams.pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.streams.len()
    }
}
