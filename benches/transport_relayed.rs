//! One stream through one rate-limited impairment relay per path: kwik over one or more
//! paths (`Aggregate` by default) against raw quinn over one, in units of the per-path
//! rate R.
//!
//! ```text
//! cargo bench -p kwik-integration --bench transport_relayed -- --stack quinn --paths 1 --rate-mbit 100 --size-mib 96
//! cargo bench -p kwik-integration --bench transport_relayed -- --stack kwik --paths 2 --rate-mbit 100 --size-mib 96 --scheduler aggregate
//! cargo bench -p kwik-integration --bench transport_relayed -- --stack kwik --paths 2 --rate-mbit 100 --last-rate-mbit 25 --size-mib 64 --runs 2
//! ```
//!
//! Lines starting with `RESULT` carry the figures; docs/BENCHMARKS.md records them with
//! the commands that made them. `benches/run-transport.sh` runs every transport scenario.

mod common;

use anyhow::{Result, bail};
use clap::Parser;
use common::cli::{Policy, Stack};
use common::kwik_pair::kwik_bulk;
use common::payload::MIB;
use common::quinn_pair::quinn_transfer;
use common::relays::rate_limit;
use common::report::report_median;
use common::stats::bits_per_s;

/// One stream through `paths` relays, each rate-limited to R both ways.
#[derive(Debug, Parser)]
#[command(about = "kwik vs raw quinn: one stream through rate-limited relays, one per path")]
struct Cli {
    #[arg(long, value_enum)]
    stack: Stack,
    /// Number of paths (relays); quinn supports 1.
    #[arg(long, default_value_t = 2)]
    paths: usize,
    /// Rate limit R per path and direction, Mbit/s.
    #[arg(long, default_value_t = 100)]
    rate_mbit: u64,
    /// Transfer size in MiB.
    #[arg(long, default_value_t = 96)]
    size_mib: u64,
    /// kwik scheduler of the stream.
    #[arg(long, value_enum, default_value_t = Policy::Aggregate)]
    scheduler: Policy,
    /// Number of runs (the median is reported).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Rate limit of the last path instead of R (unequal paths), Mbit/s; R in
    /// the figures is then the mean of the paths' rates.
    #[arg(long)]
    last_rate_mbit: Option<u64>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rates = path_rates(cli.paths, cli.rate_mbit, cli.last_rate_mbit);
    common::runtime::run_bounded(relayed(
        cli.stack,
        rates,
        cli.size_mib,
        cli.scheduler,
        cli.runs,
    ))
}

/// The rate limit of each of `paths` relays: `rate_mbit`, the last one `last` if given.
fn path_rates(paths: usize, rate_mbit: u64, last: Option<u64>) -> Vec<u64> {
    let mut rates = vec![rate_mbit; paths.max(1)];
    if let (Some(last), Some(slot)) = (last, rates.last_mut()) {
        *slot = last;
    }
    rates
}

async fn relayed(
    stack: Stack,
    rates_mbit: Vec<u64>,
    size_mib: u64,
    policy: Policy,
    runs: usize,
) -> Result<()> {
    let size = size_mib * MIB;
    let paths = rates_mbit.len();
    let impairments = rates_mbit
        .iter()
        .map(|r| rate_limit(*r))
        .collect::<Result<Vec<_>>>()?;
    let rate_mbit: u64 = rates_mbit.iter().sum::<u64>() / paths as u64;
    let rate = rates_mbit.iter().sum::<u64>() as f64 * 1e6 / paths as f64;
    let unequal = rates_mbit.iter().any(|r| *r != rates_mbit[0]);
    let name = match stack {
        Stack::Quinn => {
            if paths != 1 {
                bail!("raw quinn has one path");
            }
            "relayed-quinn-1path".to_owned()
        }
        Stack::Kwik if unequal => {
            let rates: Vec<String> = rates_mbit.iter().map(u64::to_string).collect();
            format!(
                "relayed-kwik-{paths}path-{policy:?}-rates-{}",
                rates.join("-")
            )
        }
        Stack::Kwik => format!("relayed-kwik-{paths}path-{policy:?}"),
    };
    let mut ratios = Vec::new();
    for run in 0..runs.max(1) {
        let transfer = match stack {
            Stack::Quinn => quinn_transfer(size, &impairments).await?,
            Stack::Kwik => kwik_bulk(size, &impairments, policy).await?,
        };
        let lost = transfer.sink.lost(size);
        if lost != 0 {
            bail!("{name}: {lost} bytes lost");
        }
        let goodput = bits_per_s(size, transfer.secs);
        println!(
            "{name} run {run}: {size_mib} MiB in {:.3} s = {:.1} Mbit/s = {:.3} R (R = {rate_mbit} Mbit/s)",
            transfer.secs,
            goodput / 1e6,
            goodput / rate
        );
        ratios.push(goodput / rate);
    }
    report_median(&name, "xR", &ratios);
    Ok(())
}
