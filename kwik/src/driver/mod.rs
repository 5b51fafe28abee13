//! The tokio/quinn driver: the only part of the crate that touches sockets,
//! tasks and the clock. It moves bytes between quinn connections and the
//! sans-IO core ([`proto`](crate::proto)), hands received segments to the
//! core, and arms the session timer; it decides nothing about what a frame
//! means or what to accept.
//!
//! How it layers: [`endpoint`] accepts and opens connections and acts on the
//! core's handshake decisions; [`shared`] is one session's state (the core
//! behind a lock, the paths' I/O, the [`wakers`] of blocked calls); [`path_tasks`] runs each
//! path's readers and writers and the session timer; [`dial`] opens a client's further paths
//! (added, or re-created when the core says so); [`session`], [`send_stream`]
//! and [`recv_stream`] are what the application holds; [`multi_server`],
//! [`links`] (client) and [`secondary`] (secondary server) add multi-server
//! sessions; [`control`] and [`quinn_config`] are the control channel's bytes
//! and quinn's configuration.

pub(crate) mod control;
pub(crate) mod dial;
pub(crate) mod endpoint;
pub(crate) mod error;
pub(crate) mod links;
pub(crate) mod multi_server;
pub(crate) mod path_tasks;
pub(crate) mod peer_log;
pub(crate) mod quinn_config;
pub(crate) mod recv_stream;
pub(crate) mod secondary;
pub(crate) mod send_stream;
pub(crate) mod session;
pub(crate) mod shared;
pub(crate) mod sync;
pub(crate) mod wakers;

#[cfg(all(test, loom))]
mod loom_tests;
