//! Recordings copied into S3-compatible object storage. Layers: [`location`] (pure:
//! `s3://bucket/prefix` and object keys) → [`connection`] (the `object_store` AWS client
//! and typed errors) → [`journal`] (what is in flight and what is confirmed, on disk) →
//! `scan` (which files of a recordings folder are ready, from their sidecars) →
//! [`uploader`] (the thread that uploads, verifies, retries and applies retention) and
//! [`fetch`] (reading recordings back for `ls` and `verify`).
//!
//! The uploader only reads the recordings folder; the recorder and the server know
//! nothing of it. See `docs/RECORDING.md`, "Object storage".

pub mod connection;
pub mod fetch;
pub mod journal;
pub mod location;
pub(crate) mod scan;
pub mod uploader;
