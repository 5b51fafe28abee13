//! The sans-IO core: wire codec, session state, multi-server grants and
//! tokens, scheduling. Nothing here spawns, sleeps, opens a socket or reads the
//! clock: callers pass `now` (and the Unix time where grants and tokens need
//! it), feed frames and segments in, and take frames, data, events and the
//! next deadline out. The [`driver`](crate::driver) carries the bytes.

pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod handshake;
pub(crate) mod ids;
pub(crate) mod multiserver;
pub(crate) mod offenders;
pub(crate) mod peer_fault;
pub(crate) mod scheduler;
pub(crate) mod session;
pub(crate) mod wire;

#[cfg(test)]
mod sim;
