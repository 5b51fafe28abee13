//! What the transport bench binaries (`transport_*.rs`, `kwik_multiserver.rs`) share:
//! the kwik and raw-quinn set-up halves, the checked payload, the impairment relays in
//! front of a server, medians and the `RESULT` lines.
//!
//! How they depend on each other (no cycles): [`cli`], [`payload`], [`process`] and
//! [`stats`] import none of the others; [`report`] uses `stats`; [`relays`] starts the
//! relays; [`quinn_pair`] and [`kwik_pair`] run one transfer over `payload` and
//! `relays` (`kwik_pair` also takes a `cli` policy); [`runtime`] runs a scenario.
//!
//! Each bench binary is its own crate and uses only part of this module.
#![allow(dead_code)]

pub(crate) mod cli;
pub(crate) mod kwik_pair;
pub(crate) mod payload;
pub(crate) mod process;
pub(crate) mod quinn_pair;
pub(crate) mod relays;
pub(crate) mod report;
pub(crate) mod runtime;
pub(crate) mod stats;
