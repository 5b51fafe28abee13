//! Bulk transfer on plain loopback (no relay): one stream, kwik against raw quinn, in
//! one process.
//!
//! ```text
//! cargo bench -p kwik-integration --bench transport_bulk -- bulk --stack quinn --size-mib 1024 --runs 3
//! cargo bench -p kwik-integration --bench transport_bulk -- bulk --stack kwik --size-mib 1024 --runs 3
//! cargo bench -p kwik-integration --bench transport_bulk -- bulk-pair --size-mib 1024 --runs 5
//! ```
//!
//! Lines starting with `RESULT` carry the figures; docs/BENCHMARKS.md records them with
//! the commands that made them. `benches/run-transport.sh` runs every transport scenario.

mod common;

use anyhow::Result;
use clap::{Parser, Subcommand};
use common::cli::{Policy, Stack};
use common::kwik_pair::kwik_bulk;
use common::payload::MIB;
use common::quinn_pair::{Windows, quinn_bulk};
use common::report::report_median;
use common::stats::bits_per_s;

#[derive(Debug, Parser)]
#[command(about = "kwik vs raw quinn: bulk transfer on loopback")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, global = true, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Subcommand)]
enum Scenario {
    /// One stream, bulk transfer on plain loopback (no relay).
    Bulk {
        #[arg(long, value_enum)]
        stack: Stack,
        /// Transfer size in MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Number of runs (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Raw quinn and kwik bulk runs alternated in one process (quinn, kwik, quinn, ...),
    /// so both see the same background load; reports each median and the median of the
    /// per-pair ratios kwik / quinn.
    BulkPair {
        /// Transfer size in MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Number of pairs.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    common::runtime::run_bounded(async move {
        match cli.scenario {
            Scenario::Bulk {
                stack,
                size_mib,
                runs,
            } => bulk(stack, size_mib, runs).await,
            Scenario::BulkPair { size_mib, runs } => bulk_pair(size_mib, runs).await,
        }
    })
}

async fn bulk(stack: Stack, size_mib: u64, runs: usize) -> Result<()> {
    let size = size_mib * MIB;
    let mut goodputs = Vec::new();
    for run in 0..runs {
        let secs = match stack {
            Stack::Quinn => quinn_bulk(size, Windows::Default).await?,
            Stack::Kwik => kwik_bulk(size, &[], Policy::MinRtt).await?.secs,
        };
        let gbps = bits_per_s(size, secs) / 1e9;
        println!("bulk {stack:?} run {run}: {size_mib} MiB in {secs:.3} s = {gbps:.3} Gbit/s");
        goodputs.push(gbps);
    }
    report_median(&format!("bulk-{stack:?}"), "Gbit/s", &goodputs);
    Ok(())
}

async fn bulk_pair(size_mib: u64, runs: usize) -> Result<()> {
    let size = size_mib * MIB;
    let mut quinn = Vec::new();
    let mut tuned = Vec::new();
    let mut kwik = Vec::new();
    let mut ratios = Vec::new();
    let mut ratios_tuned = Vec::new();
    for run in 0..runs.max(1) {
        let q = bits_per_s(size, quinn_bulk(size, Windows::Default).await?) / 1e9;
        let t = bits_per_s(size, quinn_bulk(size, Windows::LikeKwik).await?) / 1e9;
        let k = bits_per_s(size, kwik_bulk(size, &[], Policy::MinRtt).await?.secs) / 1e9;
        println!(
            "bulk-pair run {run}: quinn {q:.3}, quinn with kwik's windows {t:.3}, kwik {k:.3} Gbit/s; kwik/quinn {:.3}, kwik/quinn-windows {:.3}",
            k / q,
            k / t
        );
        quinn.push(q);
        tuned.push(t);
        kwik.push(k);
        ratios.push(k / q);
        ratios_tuned.push(k / t);
    }
    report_median("bulk-pair-quinn", "Gbit/s", &quinn);
    report_median("bulk-pair-quinn-kwik-windows", "Gbit/s", &tuned);
    report_median("bulk-pair-kwik", "Gbit/s", &kwik);
    report_median("bulk-pair-ratio-kwik-over-quinn", "x", &ratios);
    report_median(
        "bulk-pair-ratio-kwik-over-quinn-kwik-windows",
        "x",
        &ratios_tuned,
    );
    Ok(())
}
