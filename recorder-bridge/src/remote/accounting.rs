//! Sample counters of every stage, so that each stage's books balance:
//! what came in = what went on + what was dropped (and counted).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($(#[$m:meta])* $name:ident / $snap:ident { $($(#[$fm:meta])* $f:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[$fm])* pub $f: AtomicU64,)*
        }

        /// A snapshot of the counters of the same name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
        pub struct $snap {
            $($(#[$fm])* pub $f: u64,)*
        }

        impl $name {
            /// Reads every counter.
            pub fn snapshot(&self) -> $snap {
                $snap { $($f: self.$f.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Counters of a gateway (device side, queue, spool, network).
    GatewayCounters / GatewayCounts {
        /// Samples the device numbered (sequence span seen, including gaps).
        device_produced,
        /// Samples decoded intact from the device.
        device_samples,
        /// Sequence numbers never received from the device (its own drops and frames
        /// that arrived corrupt).
        device_lost,
        /// Device frames rejected by the decoder (CRC, COBS, length).
        device_errors,
        /// Samples put in the in-memory queue.
        queued,
        /// Samples written to the on-disk spool.
        spooled,
        /// Samples dropped because queue and spool were full (or no spool was given).
        dropped_overflow,
        /// Samples not sent because the server paused the stream (not recorded by
        /// request; not lost).
        filtered,
        /// Sample messages written to KWIK (re-sends after a reconnect included).
        sent,
        /// Of `sent`, re-sends after a reconnect.
        resent,
        /// Samples the server confirmed on disk.
        acked,
        /// Sessions opened to the server.
        connects,
        /// Failed connection attempts.
        connect_failures,
    }
}

counters! {
    /// Counters of one recorded stream on the server.
    ServerStreamCounters / ServerStreamCounts {
        /// Sample messages received (duplicates included).
        received,
        /// Samples already recorded (re-sends after a reconnect), dropped by sequence number.
        duplicates,
        /// Messages that did not decode (counted and skipped).
        malformed,
        /// Sequence numbers skipped between received samples (lost before the server).
        missing,
        /// Samples pushed to the recorder's ring.
        pushed,
        /// Samples the gateway did not send because this server paused the stream (not
        /// recorded by request; not lost, not missing).
        filtered,
        /// Times reading stopped because the recorder's buffers were full (credit withheld).
        stalls,
    }
}

impl GatewayCounters {
    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

impl GatewayCounts {
    /// Samples decoded but not (yet) confirmed on disk, dropped nor filtered: in queue,
    /// spool or flight. Zero once a gateway has drained.
    pub fn pending(&self) -> u64 {
        self.device_samples
            .saturating_sub(self.acked + self.dropped_overflow + self.filtered)
    }
}
