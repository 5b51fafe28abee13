//! Multi-server goodput: one file served to a client by a primary and
//! one secondary server, each reached through its own impairment relay
//! rate-limited to R (both directions). The primary writes the even chunks and
//! delegates the odd ones to the secondary, which writes them straight into the
//! client's stream. The peer, measured in the same run through the same kind of
//! relay, is the primary alone (one server, one path at R).
//!
//! ```text
//! cargo bench -p kwik-integration --bench kwik_multiserver -- --rate-mbit 100 --size-mib 64 --runs 3
//! cargo bench -p kwik-integration --bench kwik_multiserver -- --rate-mbit 100 --size-mib 64 --runs 3 --chunk-kib 1024
//! ```
//!
//! Lines starting with `RESULT` carry the figures (medians); docs/BENCHMARKS.md
//! records them with the command that made them.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use common::payload::MIB;
use common::relays::{rate_limit, start_relays};
use common::stats::median;
use kwik::{SecondaryJoins, TokenKey};
use kwik_testbed::loopback;
use kwik_testbed::relay::Relay;
use kwik_testbed::tls::{SERVER_NAME, TestPki};
use sha2::{Digest, Sha256};

#[derive(Debug, Parser)]
#[command(about = "kwik multi-server goodput: primary + secondary vs primary alone")]
struct Cli {
    /// The rate limit R of each relay, Mbit/s.
    #[arg(long, default_value_t = 100)]
    rate_mbit: u64,
    /// The file size, MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: u64,
    /// The chunk size (alternating primary / secondary), KiB.
    #[arg(long, default_value_t = 256)]
    chunk_kib: u64,
    /// Runs of each setup; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Who serves the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Servers {
    /// The primary alone.
    PrimaryOnly,
    /// The primary and one secondary, alternating chunks.
    WithSecondary,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.size_mib == 0 || cli.chunk_kib == 0 || cli.rate_mbit == 0 {
        bail!("--size-mib, --chunk-kib and --rate-mbit must be positive");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&cli))
}

async fn run(cli: &Cli) -> Result<()> {
    let file = pattern(cli.size_mib * MIB);
    let rate = cli.rate_mbit as f64 * 1e6;
    let mut alone = Vec::new();
    let mut both = Vec::new();
    for run in 0..cli.runs.max(1) {
        for (servers, into) in [
            (Servers::PrimaryOnly, &mut alone),
            (Servers::WithSecondary, &mut both),
        ] {
            let secs = transfer(&file, cli.chunk_kib * 1024, cli.rate_mbit, servers).await?;
            let ratio = file.len() as f64 * 8.0 / secs / rate;
            println!(
                "{servers:?} run {run}: {} MiB in {secs:.3} s = {ratio:.3} R (R = {} Mbit/s)",
                cli.size_mib, cli.rate_mbit
            );
            into.push(ratio);
        }
    }
    let (alone, both) = (median(&alone), median(&both));
    println!("RESULT multiserver-primary-only median {alone:.3} R");
    println!("RESULT multiserver-primary+secondary median {both:.3} R");
    println!(
        "RESULT multiserver ratio (primary+secondary / primary alone) {:.3}",
        both / alone
    );
    Ok(())
}

/// One transfer of `file`; returns the seconds from the client's session
/// start to its last byte (checked by hash).
async fn transfer(file: &Bytes, chunk: u64, rate_mbit: u64, servers: Servers) -> Result<f64> {
    let pki = TestPki::generate()?;
    let key = TokenKey::random();
    let session = kwik::SessionConfig::default();
    let server_config = || -> Result<kwik::ServerConfig> {
        Ok(loopback::server_config(&pki, session.clone())?.token_key(key.clone()))
    };
    let primary = loopback::server_endpoint(server_config()?)?;
    let secondary =
        loopback::server_endpoint(server_config()?.secondary_joins(SecondaryJoins::Accept))?;
    let client = loopback::client_endpoint(loopback::client_config(&pki, session.clone())?)?;
    let to_primary = limited_relay(primary.local_addr()?, rate_mbit, 1).await?;
    let to_secondary = limited_relay(secondary.local_addr()?, rate_mbit, 2).await?;

    // The secondary writes whatever it is granted, from its own copy.
    let secondary_task = {
        let file = file.clone();
        tokio::spawn(async move {
            let path = secondary
                .accept_secondary()
                .await
                .context("no secondary join")?;
            while let Some(grant) = path.accept_grant().await {
                let r = grant.range.clone();
                path.write_at(
                    grant.stream,
                    r.start,
                    file.slice(r.start as usize..r.end as usize),
                )
                .await?;
            }
            anyhow::Ok(())
        })
    };
    let primary_task = {
        let file = file.clone();
        let secondary_addr = to_secondary.local_addr();
        tokio::spawn(async move {
            let session = primary.accept().await.context("no session")?;
            let secondary_path = match servers {
                Servers::PrimaryOnly => None,
                Servers::WithSecondary => {
                    Some(session.add_secondary(secondary_addr, SERVER_NAME).await?)
                }
            };
            let mut stream = session.open_uni().await?;
            let len = file.len() as u64;
            for start in (0..len).step_by(chunk as usize) {
                let range = start..(start + chunk).min(len);
                match secondary_path {
                    Some(path) if (start / chunk) % 2 == 1 => {
                        session.delegate(stream.id(), range, path).await?;
                    }
                    _ => {
                        let part = file.slice(range.start as usize..range.end as usize);
                        stream.write_at(range.start, part).await?;
                    }
                }
            }
            stream.finish()?;
            stream.finished().await?;
            anyhow::Ok(session)
        })
    };

    let started = Instant::now();
    let session = client.connect(to_primary.local_addr(), SERVER_NAME).await?;
    let mut recv = session.accept_uni().await?;
    let mut hash = Sha256::new();
    while let Some(chunk) =
        tokio::time::timeout(Duration::from_secs(60), recv.read_chunk(usize::MAX))
            .await
            .context("the stream stalled for 60 s")??
    {
        hash.update(&chunk);
    }
    let secs = started.elapsed().as_secs_f64();
    if hash.finalize()[..] != Sha256::digest(file)[..] {
        bail!("{servers:?}: the received file differs from the served one");
    }
    let primary_session = primary_task.await??;
    session.close(0, b"done");
    primary_session.close(0, b"done");
    match servers {
        // Nobody joins the secondary: its task waits for a join forever.
        Servers::PrimaryOnly => secondary_task.abort(),
        // Its loop ends when its path closes with the session.
        Servers::WithSecondary => tokio::time::timeout(Duration::from_secs(10), secondary_task)
            .await
            .context("the secondary did not see its path close")???,
    }
    Ok(secs)
}

/// One relay to `target`, rate-limited to `rate_mbit` both ways.
async fn limited_relay(target: SocketAddr, rate_mbit: u64, seed: u64) -> Result<Relay> {
    let mut relays = start_relays(target, &[rate_limit(rate_mbit)?], seed).await?;
    relays
        .pop()
        .context("start_relays starts one relay per impairment")
}

/// `len` bytes of a pattern that does not repeat with the chunk size.
fn pattern(len: u64) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}
