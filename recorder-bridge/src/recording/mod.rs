//! Recording groups (several streams with one t0, started and stopped together). Layers:
//! [`config`], [`segment_cell`], [`status`] → `shared` (what the threads share) →
//! `worker` (one thread per stream) and `monitor` (limits, disk, sidecars) → [`group`]
//! ([`RecordingGroup`](group::RecordingGroup) and [`Recording`](group::Recording)).

pub mod config;
pub mod group;
mod monitor;
pub mod segment_cell;
mod shared;
pub mod status;
mod worker;
