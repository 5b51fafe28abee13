//! The parts of the XIAO firmware that need no hardware, kept apart so they
//! build and are unit-tested on the host:
//!
//! * [`SampleRate`] and [`SampleSchedule`]: when each sample is due, without
//!   drift, and how many periods a late wake-up missed;
//! * [`PacketBatch`]: encoded frames collected into USB bulk packets, with
//!   the short/zero-length packet that ends a transfer.
//!
//! ```text
//! cd firmware/xiao/core && cargo test --target x86_64-unknown-linux-gnu
//! ```
#![no_std]

mod batch;
mod schedule;

pub use batch::{BatchFull, PacketBatch, Packets};
pub use schedule::{RateError, SampleRate, SampleSchedule};
