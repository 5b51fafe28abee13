//! Configuration of the protocol: session behaviour ([`SessionConfig`]), the
//! ALPN, and whether a server accepts secondary paths ([`SecondaryJoins`]).
//! The TLS and quinn side of endpoints is the driver's (`driver/quinn_config.rs`).

use std::time::Duration;

use kwik_presentation::PresentationConfig;

use crate::proto::scheduler::Scheduler;
use crate::proto::session::recreate::PathRecreation;

/// The ALPN protocol name of KWIK version 1.
pub const ALPN: &[u8] = b"kwik/1";

/// A KWIK protocol version (docs/PROTOCOL.md §3.1): what a client offers in
/// OPEN and the highest a server accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ProtocolVersion {
    /// Version 1: BACKPRESSURE says on or off, without a reason.
    V1,
    /// Version 2: WELCOME carries the version, BACKPRESSURE its reason. The
    /// default.
    #[default]
    V2,
}

impl ProtocolVersion {
    /// The number on the wire.
    pub fn number(self) -> u64 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }
}

/// How a session behaves: scheduling, liveness, acknowledgements, windows.
/// `Default` suits a LAN or WAN session; [`SessionConfig::lan`] detects dead paths
/// faster. Setters take and return `self`.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub(crate) scheduler: Scheduler,
    pub(crate) ping_interval: Duration,
    pub(crate) idle_ping_interval: Duration,
    pub(crate) missed_pong_threshold: u32,
    pub(crate) ack_delay: Duration,
    pub(crate) ack_threshold: u64,
    pub(crate) path_window: u64,
    pub(crate) max_segment: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) token_ttl: Duration,
    pub(crate) grant_ttl: Duration,
    pub(crate) max_paths: usize,
    pub(crate) recreation: PathRecreation,
    pub(crate) presentation: PresentationConfig,
    pub(crate) version: ProtocolVersion,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            scheduler: Scheduler::MinRtt,
            ping_interval: Duration::from_millis(250),
            idle_ping_interval: Duration::from_secs(5),
            missed_pong_threshold: 4,
            ack_delay: Duration::from_millis(5),
            ack_threshold: 256 * 1024,
            path_window: 8 << 20,
            max_segment: 64 * 1024,
            idle_timeout: Duration::from_secs(10),
            token_ttl: Duration::from_secs(30),
            grant_ttl: Duration::from_secs(60),
            max_paths: 8,
            recreation: PathRecreation::default(),
            presentation: PresentationConfig::default(),
            version: ProtocolVersion::default(),
        }
    }
}

impl SessionConfig {
    /// A preset for local networks: pings every 50 ms, a path is abandoned after 4
    /// missed pongs (about 200 ms), QUIC idle timeout 2 s.
    pub fn lan() -> Self {
        Self::default()
            .ping_interval(Duration::from_millis(50))
            .missed_pong_threshold(4)
            .idle_timeout(Duration::from_secs(2))
    }

    /// Scheduling policy of streams opened without an explicit one. Default
    /// [`Scheduler::MinRtt`].
    pub fn scheduler(mut self, scheduler: Scheduler) -> Self {
        self.scheduler = scheduler;
        self
    }

    /// Interval between pings on each path while data moves. Default 250 ms.
    /// Shorter detects dead paths sooner at the cost of a few bytes per ping (and
    /// some CPU per session). Idle sessions ping less often, see
    /// [`idle_ping_interval`](Self::idle_ping_interval).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Longest interval between pings on a path while the session is idle (no
    /// stream data sent or received since the previous ping, nothing waiting for
    /// an acknowledgement). From `ping_interval`, the interval doubles with every
    /// idle ping up to this value, and drops back to `ping_interval` as soon as
    /// data moves. Default 5 s; the interval used never exceeds a third of the
    /// idle timeout (pings keep idle connections open). Longer saves CPU and
    /// packets with many idle sessions; the death of an idle path is noticed later
    /// (its streams have nothing in flight to lose). Set it to `ping_interval` to
    /// ping at a constant rate.
    pub fn idle_ping_interval(mut self, interval: Duration) -> Self {
        self.idle_ping_interval = interval;
        self
    }

    /// The ping interval ceiling for idle paths (never below `ping_interval`).
    pub(crate) fn idle_ping_cap(&self) -> Duration {
        self.idle_ping_interval
            .min(self.idle_timeout / 3)
            .max(self.ping_interval)
    }

    /// Overdue pongs after which a path is abandoned (its unacknowledged data is
    /// re-sent on the others). Default 4; minimum 1. The last healthy path is never
    /// abandoned for missed pongs (only for a QUIC error or idle timeout).
    pub fn missed_pong_threshold(mut self, threshold: u32) -> Self {
        self.missed_pong_threshold = threshold.max(1);
        self
    }

    /// Longest delay before received data is acknowledged. Default 5 ms. Longer
    /// means fewer ACK frames but more retained bytes at the sender.
    pub fn ack_delay(mut self, delay: Duration) -> Self {
        self.ack_delay = delay;
        self
    }

    /// Unacknowledged bytes of one stream after which an ACK goes out at once.
    /// Default 256 KiB.
    pub fn ack_threshold(mut self, bytes: u64) -> Self {
        self.ack_threshold = bytes.max(1);
        self
    }

    /// Most bytes one path may have in flight (sent, not acknowledged). Default
    /// 8 MiB. It should exceed the path's bandwidth × (RTT + ACK delay). While
    /// [`Scheduler::Aggregate`] spreads a stream over several paths, each path's
    /// limit is sized to its measured bandwidth × delay instead (at most this).
    pub fn path_window(mut self, bytes: u64) -> Self {
        self.path_window = bytes.max(1);
        self
    }

    /// Largest data segment in bytes. Default 64 KiB (at most 16 MiB).
    pub fn max_segment(mut self, bytes: usize) -> Self {
        self.max_segment = bytes.clamp(1, 1 << 24);
        self
    }

    /// QUIC idle timeout of each path. Default 10 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Lifetime of the join tokens a server issues. Default 30 s.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Lifetime of the delegation grants a primary server signs
    /// (`Session::delegate`). Default 60 s. A secondary refuses an expired
    /// grant and stops writing under it; the client accepts its data until 2 s
    /// after the expiry (in flight, clock skew). Longer suits slow secondaries;
    /// shorter reclaims sooner from a secondary that stalls.
    pub fn grant_ttl(mut self, ttl: Duration) -> Self {
        self.grant_ttl = ttl;
        self
    }

    /// Most paths of one session (alive at once). Default 8.
    pub fn max_paths(mut self, paths: usize) -> Self {
        self.max_paths = paths.max(1);
        self
    }

    /// (Client) Whether and how paths that died (missed pongs, a QUIC error
    /// or idle timeout) are dialled again over the same addresses. Default
    /// [`PathRecreation::default`] (on); [`PathRecreation::off`] keeps dead
    /// paths dead. A path removed on purpose is never re-created, and a
    /// session whose last path died has ended (no path to ask for a token).
    pub fn path_recreation(mut self, recreation: PathRecreation) -> Self {
        self.recreation = recreation;
        self
    }

    /// The highest protocol version this side speaks. Default
    /// [`ProtocolVersion::V2`]. A client offers it in OPEN and, when a server
    /// refuses it (a server of version 1), opens the session again with
    /// version 1; a server accepts OPENs of version 1 up to this one, and
    /// the session runs at the version the client offered. `V1` makes this
    /// side behave as a version-1 peer (no backpressure reasons on the wire),
    /// e.g. to check that mixed fleets interoperate.
    pub fn protocol_version(mut self, version: ProtocolVersion) -> Self {
        self.version = version;
        self
    }

    /// Receive-side settings (windows, backpressure). Default
    /// [`PresentationConfig::default`].
    pub fn presentation(mut self, config: PresentationConfig) -> Self {
        self.presentation = config;
        self
    }
}

/// Whether a server endpoint serves as a *secondary* server of sessions that
/// another server (the primary) opened: a JOIN for a session this endpoint does
/// not know is then accepted when its token verifies under the shared
/// [`TokenKey`](crate::TokenKey), and the path comes out of `Endpoint::accept_secondary`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecondaryJoins {
    /// JOINs for unknown sessions are refused (`UnknownSession`). The default.
    #[default]
    Refuse,
    /// JOINs for unknown sessions with a valid token become secondary sessions.
    Accept,
}
