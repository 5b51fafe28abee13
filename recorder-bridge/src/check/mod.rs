//! Recordings already on disk: [`verify`] checks one against its sidecar, [`recover`]
//! repairs one whose process died.

pub mod recover;
pub mod verify;
