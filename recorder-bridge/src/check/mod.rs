//! Recordings already on disk: [`verify`] checks one against its sidecar, [`recover`]
//! repairs one whose process died, [`runs`] checks that the recordings of one gateway
//! run (across restarts and servers) fit together.

pub mod recover;
pub mod runs;
pub mod verify;
