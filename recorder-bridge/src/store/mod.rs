//! Samples to durable files. Layers: [`exporter`] (two bounded buffers, a writer
//! thread swapping them) → [`file_writer`] (encoding, size limits, parts, fsync via
//! `background_sync`, SHA-256 via `hash`) and [`parquet`] (live Parquet with a recovery journal) and [`mcap`](mod@mcap) (live MCAP,
//! recovered from its own records) → [`sidecar`] (the `.meta.json`); [`disk`]
//! answers how much room is left.

pub(crate) mod background_sync;
pub mod disk;
pub mod exporter;
pub mod file_writer;
pub(crate) mod hash;
pub mod mcap;
pub mod parquet;
pub mod sidecar;
