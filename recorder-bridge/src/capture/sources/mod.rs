//! The sources: [`signal`] (deterministic generators) and [`generated`] (one paced as a
//! source); the XIAO board's [`xiao`] types, its `sequence` numbers, its [`frames`]
//! (serial port or simulator) and its [`ble`] notifications.

pub mod ble;
pub mod frames;
pub mod generated;
pub(crate) mod sequence;
pub mod signal;
pub mod xiao;
