//! Samples to durable files. Layers: [`exporter`] (two bounded buffers, a writer
//! thread swapping them) → [`file_writer`] (encoding, size limits, parts, fsync via
//! `background_sync`, SHA-256 via `hash`) and [`parquet`] (live Parquet with a recovery journal) → [`sidecar`] (the `.meta.json`); [`disk`]
//! answers how much room is left.

pub(crate) mod background_sync;
pub mod disk;
pub mod exporter;
pub mod file_writer;
pub(crate) mod hash;
pub mod parquet;
pub mod sidecar;
