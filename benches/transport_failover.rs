//! kwik over two rate-limited relays; one path is blackholed mid-transfer: the longest
//! stall, the bytes lost (none may be) and the goodput before and after.
//!
//! ```text
//! cargo bench -p kwik-integration --bench transport_failover -- --rate-mbit 100 --size-mib 96 --cut-path 1
//! cargo bench -p kwik-integration --bench transport_failover -- --rate-mbit 100 --size-mib 96 --cut-path 0
//! ```
//!
//! Lines starting with `RESULT` carry the figures; docs/BENCHMARKS.md records them with
//! the commands that made them. `benches/run-transport.sh` runs every transport scenario.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use common::cli::Policy;
use common::kwik_pair::{Cut, kwik_transfer_cut};
use common::payload::MIB;
use common::relays::rate_limit;
use common::stats::bits_per_s;

/// kwik over two rate-limited relays; one path is blackholed mid-transfer.
#[derive(Debug, Parser)]
#[command(about = "kwik failover: one of two rate-limited paths blackholed mid-transfer")]
struct Cli {
    /// Rate limit R per path and direction, Mbit/s.
    #[arg(long, default_value_t = 100)]
    rate_mbit: u64,
    /// Transfer size in MiB.
    #[arg(long, default_value_t = 96)]
    size_mib: u64,
    /// kwik scheduler of the stream.
    #[arg(long, value_enum, default_value_t = Policy::Aggregate)]
    scheduler: Policy,
    /// Which path to blackhole: 0 is the initial path, 1 the added one.
    #[arg(long, default_value_t = 1)]
    cut_path: usize,
    /// Fraction of the transfer received before the cut.
    #[arg(long, default_value_t = 0.3)]
    cut_at: f64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    common::runtime::run_bounded(failover(
        cli.rate_mbit,
        cli.size_mib,
        cli.scheduler,
        cli.cut_path,
        cli.cut_at,
    ))
}

async fn failover(
    rate_mbit: u64,
    size_mib: u64,
    policy: Policy,
    cut_path: usize,
    cut_at: f64,
) -> Result<()> {
    if cut_path > 1 {
        bail!("--cut-path is 0 or 1");
    }
    let size = size_mib * MIB;
    let imp = rate_limit(rate_mbit)?;
    let config = kwik::SessionConfig::lan().scheduler(policy.scheduler());
    let cut = Cut {
        path: cut_path,
        after: (size as f64 * cut_at.clamp(0.0, 1.0)) as u64,
    };
    let (transfer, cut_instant) =
        kwik_transfer_cut(size, &[imp.clone(), imp], config, Some(cut)).await?;
    let cut_instant = cut_instant.context("cut never happened")?;
    let lost = transfer.sink.lost(size);
    let arrivals = transfer.sink.arrivals.as_deref().unwrap_or_default();
    // The longest interval without newly readable bytes, starting at the cut.
    let mut previous = cut_instant;
    let mut stall = Duration::ZERO;
    let mut stall_end = cut_instant;
    for &(at, _) in arrivals.iter().filter(|(at, _)| *at >= cut_instant) {
        if at - previous > stall {
            stall = at - previous;
            stall_end = at;
        }
        previous = at;
    }
    let before = arrivals
        .iter()
        .rfind(|(at, _)| *at <= cut_instant)
        .map_or(0, |&(_, bytes)| bytes);
    let first = arrivals.first().map(|&(at, _)| at).unwrap_or(cut_instant);
    let rate_before = bits_per_s(before, (cut_instant - first).as_secs_f64().max(1e-9));
    let last = arrivals.last().map(|&(at, _)| at).unwrap_or(stall_end);
    let after_bytes = size.saturating_sub(
        arrivals
            .iter()
            .rfind(|(at, _)| *at <= stall_end)
            .map_or(0, |&(_, bytes)| bytes),
    );
    let rate_after = bits_per_s(after_bytes, (last - stall_end).as_secs_f64().max(1e-9));
    let name = format!("failover-cut{cut_path}-{policy:?}");
    println!(
        "{name}: {size_mib} MiB in {:.3} s; cut path {cut_path} at {:.1} MiB; longest stall {:.0} ms, ended {:.0} ms after the cut; goodput before {:.1} Mbit/s, after {:.1} Mbit/s; lost {lost} B",
        transfer.secs,
        before as f64 / MIB as f64,
        stall.as_secs_f64() * 1e3,
        (stall_end - cut_instant).as_secs_f64() * 1e3,
        rate_before / 1e6,
        rate_after / 1e6,
    );
    println!(
        "RESULT {name} stall_ms={:.0} recovered_after_ms={:.0} bytes_lost={lost} before_xR={:.3} after_xR={:.3}",
        stall.as_secs_f64() * 1e3,
        (stall_end - cut_instant).as_secs_f64() * 1e3,
        rate_before / (rate_mbit as f64 * 1e6),
        rate_after / (rate_mbit as f64 * 1e6),
    );
    if lost != 0 {
        bail!("{name}: {lost} bytes lost");
    }
    Ok(())
}
