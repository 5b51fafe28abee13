//! The web dashboard: a live oscilloscope of the streams a recorder reads, a recorder
//! panel (start, stop, limits, state), the remote view of a recorder server's devices
//! and a browser of the recordings on disk, served by the recorder itself (assets
//! embedded, works offline).
//!
//! Layers, each using only those before it: [`channels`] (the plottable view of each
//! schema) and [`decimate`] (pure min/max columns) → [`tap`] (cursors on the rings, never
//! slowing their writer) → [`recorder`] (the panel: one recording of the taps at a time)
//! and [`library`] (files inside the recordings root, previews) and [`devices`] (the
//! remote view) → [`access`] (token rule) and [`live`] (a WebSocket per browser with a
//! bounded queue) → `api` (routes) → [`server`] ([`Dashboard`](server::Dashboard)).
//! The dashboard sits on top of the library, like [`remote`](crate::remote): nothing
//! below it knows it exists.

pub mod access;
mod api;
pub mod channels;
mod columnar_preview;
pub mod decimate;
pub mod devices;
pub mod library;
pub mod live;
pub mod recorder;
pub mod server;
pub mod tap;

pub use api::ApiError;
