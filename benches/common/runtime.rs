//! How a transport scenario runs: logs on request, a 2-worker tokio runtime, and a
//! bound on the wall time so a hang is reported as a failure, not waited out.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result};

/// The longest a scenario may run.
const SCENARIO_LIMIT: Duration = Duration::from_secs(300);

/// Runs `scenario` on a fresh multi-thread runtime with 2 workers, failing if it takes
/// longer than 300 s. Logs go to stderr when asked for, e.g. `RUST_LOG=kwik=debug`.
pub(crate) fn run_bounded(scenario: impl Future<Output = Result<()>>) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::time::timeout(SCENARIO_LIMIT, scenario)
            .await
            .context("scenario did not finish within 300 s")?
    })
}
