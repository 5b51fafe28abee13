//! Recordings on disk into other layouts: [`export`] reads a finished CSV recording
//! through its sidecar and writes it again with the live writers (Parquet), with a
//! sidecar of its own.

pub mod export;
