//! The async runtime of the remote commands (`serve`, `stream`, `demo`) and the one way
//! their errors become messages.

use anyhow::{Result, anyhow};

/// A two-worker tokio runtime: the remote commands move one sensor stream each, which
/// two threads carry with room to spare on a small gateway.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the async runtime: {e}"))
}

/// An error as its message alone, the way the remote commands report library errors.
pub(crate) fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{e}")
}
