//! The receive side of KWIK sessions, as pure logic with no I/O.
//!
//! Bytes of one logical stream may arrive over several paths, in any order, with
//! overlaps and duplicates. This crate puts them back together and decides what the
//! application may read and what credit the senders get:
//!
//! * [`RangeSet`] — sorted disjoint byte ranges (acknowledgements, gaps).
//! * [`StreamBuffer`] — per-stream, gap-aware reassembly that keeps the received
//!   [`bytes::Bytes`] without copying, with final-size and limit checks.
//! * [`ReceiveWindow`] — flow-control credit of one scope (the session budget or a
//!   stream allocation) that grows only as the application reads, with auto-tuning.
//! * [`Backpressure`] — threshold and hysteresis signal with a typed reason.
//! * [`Presentation`] — the session's receive side, shared between writer threads
//!   (one per path) and the reader, handing out [`PresentationEvent`]s for the
//!   senders.
//!
//! Time is always passed in (`now`); nothing here reads the clock, spawns or sleeps,
//! except [`Presentation::read_blocking`], the blocking adapter for non-async code.
//! Readiness uses [`std::task::Waker`], so any runtime can build `AsyncRead` on it.
//!
//! Concurrency is checked with loom:
//! `RUSTFLAGS="--cfg loom" cargo test -p kwik-presentation --release --lib loom`.

mod backpressure;
mod config;
mod error;
mod event;
mod id;
#[cfg(all(test, loom))]
mod loom_tests;
mod presentation;
mod range_set;
mod stream_buffer;
mod sync;
mod table;
mod window;

pub use backpressure::{
    Backpressure, BackpressureReason, BackpressureScope, BackpressureState, BackpressureStats,
};
pub use config::{Fraction, PresentationConfig};
pub use error::{FractionError, InsertError, OpenError, ReadError, WriteError};
pub use event::PresentationEvent;
pub use id::{Dir, Side, StreamId, VARINT_LIMIT};
pub use presentation::{Presentation, PresentationStats, StreamStats, WriteOutcome};
pub use range_set::RangeSet;
pub use stream_buffer::{
    BufferCounters, DEFAULT_MAX_SEGMENTS, GapStats, InsertOutcome, StreamBuffer, StreamRead,
};
pub use window::{CreditExceeded, ReceiveWindow};
