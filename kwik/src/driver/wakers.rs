//! The wakers of blocked application calls of one session, keyed by stream and
//! by what the call waits for (read, write, finish, delegate).
//!
//! The contract that makes a wake-up impossible to miss: a call that finds
//! nothing to do registers its waker *while it still holds the session core's
//! lock*; whoever changes the core reports the change as an event and wakes
//! the registered waker *after* releasing that lock. Either the change came
//! first (the call sees it) or the registration did (the wake finds it).
//! Lock order: the core, then this registry; waking happens outside both.
//! The loom models in `loom_tests.rs` check this hand-off.

use std::collections::HashMap;
use std::task::Waker;

use kwik_presentation::StreamId;

use crate::driver::sync::Mutex;

/// What a blocked call waits for, on one stream.
pub(crate) type WakeKey = (StreamId, u8);

/// A blocked write waits for credit or room.
pub(crate) const WAKE_WRITE: u8 = 0;
/// A blocked read waits for data, the end or an error.
pub(crate) const WAKE_READ: u8 = 1;
/// `finished()` waits for the peer's acknowledgement.
pub(crate) const WAKE_FINISHED: u8 = 2;
/// `delegate` waits for session credit.
pub(crate) const WAKE_DELEGATE: u8 = 3;

/// One waker per key; a new registration replaces the previous one.
#[derive(Debug, Default)]
pub(crate) struct StreamWakers {
    map: Mutex<HashMap<WakeKey, Waker>>,
}

impl StreamWakers {
    /// Registers `waker` for `key` (call with the core's lock held).
    pub(crate) fn register(&self, key: WakeKey, waker: &Waker) {
        let mut map = self.map.lock();
        match map.get(&key) {
            Some(w) if w.will_wake(waker) => {}
            _ => {
                map.insert(key, waker.clone());
            }
        }
    }

    /// Wakes the call waiting on `key`, if any (call without the core's lock).
    pub(crate) fn wake(&self, key: WakeKey) {
        let waker = self.map.lock().remove(&key);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Wakes every waiting call (credit grew, the session closed).
    pub(crate) fn wake_all(&self) {
        let wakers: Vec<Waker> = self.map.lock().drain().map(|(_, w)| w).collect();
        for w in wakers {
            w.wake();
        }
    }
}
