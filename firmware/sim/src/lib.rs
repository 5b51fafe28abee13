//! Host simulator of the XIAO nRF52840 Sense board.
//!
//! It runs the firmware's own sampling and framing code ([`xiao_proto::Sampler`],
//! [`xiao_proto::AudioWindow`], the LSM6DS3TR-C conversions) on deterministic synthetic
//! sensors and emits the bytes the board sends: COBS frames (or CSV lines), optionally
//! with injected faults whose ground truth is counted in [`SimStats`].
//!
//! Three ways to use it:
//! * in process and pure: [`Simulator::tick`] / [`Simulator::next_frame_bytes`], or the
//!   simulator as an endless iterator of byte chunks;
//! * on a thread at the board's pace: [`Simulator::spawn`] returns a [`SimStream`] that
//!   implements [`std::io::Read`] like a serial port;
//! * as a device for other programs: the `xiao-sim` binary writes to stdout or to a
//!   pseudo-terminal ([`Pty`]) whose path it prints.

mod pty;
mod rng;
mod signal;
mod simulator;
mod stream;

pub use pty::Pty;
pub use signal::PCM_RATE_HZ;
pub use simulator::{
    Announce, Fate, Faults, Probability, ProbabilityError, SIM_FIRMWARE_VERSION, SimConfig,
    SimStats, Simulator, Tick,
};
pub use stream::{Pacing, SimStream};
