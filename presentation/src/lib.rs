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
//! * [`Presentation`] — the session's receive side as a single-owner core
//!   (`&mut self`, in the style of quinn-proto's stream assembler): segments go
//!   in, data comes out, and the caller drains [`PresentationEvent`]s for the
//!   senders and the streams whose readers to wake.
//!
//! Time is always passed in (`now`); nothing here reads the clock, spawns, sleeps,
//! blocks or locks. The owner decides how it is shared: kwik keeps it inside its
//! session state, under the one lock its driver holds for the session, and wakes
//! readers with its own wakers when [`Presentation::poll_readable`] names them.

mod backpressure;
mod config;
mod error;
mod event;
mod id;
mod presentation;
mod range_set;
mod ready;
mod stream_buffer;
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
