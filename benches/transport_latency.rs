//! Small timestamped messages over a lossy fast path and a clean slow path: delivery
//! latency percentiles of kwik (`MinRtt` or `Redundant`) against raw quinn on the lossy
//! path alone.
//!
//! ```text
//! cargo bench -p kwik-integration --bench transport_latency -- --stack quinn
//! cargo bench -p kwik-integration --bench transport_latency -- --stack kwik --scheduler min-rtt
//! cargo bench -p kwik-integration --bench transport_latency -- --stack kwik --scheduler redundant
//! ```
//!
//! Lines starting with `RESULT` carry the figures; docs/BENCHMARKS.md records them with
//! the commands that made them. `benches/run-transport.sh` runs every transport scenario.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use common::cli::{Policy, Stack};
use common::kwik_pair::kwik_connect;
use common::quinn_pair::QuinnPair;
use common::relays::{print_relays, start_relays};
use hdrhistogram::Histogram;
use kwik_testbed::Loopback;
use kwik_testbed::impairment::{Impairment, LossRate};
use kwik_testbed::tls::SERVER_NAME;

/// Small timestamped messages over a lossy fast path and a clean slow path.
#[derive(Debug, Parser)]
#[command(about = "kwik vs raw quinn: message latency over a lossy and a clean path")]
struct Cli {
    #[arg(long, value_enum)]
    stack: Stack,
    /// kwik scheduler of the stream.
    #[arg(long, value_enum, default_value_t = Policy::MinRtt)]
    scheduler: Policy,
    /// Messages to send.
    #[arg(long, default_value_t = 3000)]
    messages: u64,
    /// Interval between messages, microseconds.
    #[arg(long, default_value_t = 1000)]
    interval_us: u64,
    /// Random loss of the lossy path (both directions), percent.
    #[arg(long, default_value_t = 5.0)]
    loss_percent: f64,
    /// Seed of the relays' loss generators.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One latency-probe message: sequence number, send time (ns since a shared base),
/// padding.
const MESSAGE_LEN: usize = 256;

fn main() -> Result<()> {
    let cli = Cli::parse();
    common::runtime::run_bounded(latency(
        cli.stack,
        cli.scheduler,
        cli.messages,
        cli.interval_us,
        cli.loss_percent,
        cli.seed,
    ))
}

async fn latency(
    stack: Stack,
    policy: Policy,
    messages: u64,
    interval_us: u64,
    loss_percent: f64,
    seed: u64,
) -> Result<()> {
    // Path 0: fast but lossy; path 1: clean, twice the delay.
    let mut lossy = Impairment::none();
    lossy
        .set_delay(Duration::from_millis(5))
        .set_loss(LossRate::percent(loss_percent)?);
    let mut clean = Impairment::none();
    clean.set_delay(Duration::from_millis(10));
    let base = Instant::now();
    let interval = Duration::from_micros(interval_us.max(1));
    let histogram = match stack {
        Stack::Quinn => {
            let pair = QuinnPair::new()?;
            let relays = start_relays(pair.server.local_addr()?, &[lossy], seed).await?;
            let server = pair.server.clone();
            let receiver = tokio::spawn(async move {
                let conn = server.accept().await.context("no incoming")?.await?;
                let mut recv = conn.accept_uni().await?;
                let mut probe = Probe::new(base);
                while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
                    probe.take(&chunk.bytes)?;
                }
                conn.close(0u32.into(), b"done");
                anyhow::Ok(probe.histogram)
            });
            let conn = pair
                .client
                .connect(relays[0].local_addr(), SERVER_NAME)?
                .await?;
            let mut send = conn.open_uni().await?;
            let mut ticker = tokio::time::interval(interval);
            for seq in 0..messages {
                ticker.tick().await;
                send.write_chunk(message(seq, base)).await?;
            }
            send.finish()?;
            let histogram = receiver.await??;
            print_relays(&relays);
            histogram
        }
        Stack::Kwik => {
            let config = kwik::SessionConfig::lan().scheduler(policy.scheduler());
            let pair = Loopback::new(config)?;
            let relays = start_relays(pair.server.local_addr()?, &[lossy, clean], seed).await?;
            let server = pair.server.clone();
            let receiver = tokio::spawn(async move {
                let session = server.accept().await.context("no incoming session")?;
                let mut recv = session.accept_uni().await?;
                let mut probe = Probe::new(base);
                while let Some(chunk) = recv.read_chunk(usize::MAX).await? {
                    probe.take(&chunk)?;
                }
                anyhow::Ok((probe.histogram, session))
            });
            let session = kwik_connect(&pair, &relays).await?;
            // Let pings measure both paths' RTT before the probe starts.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut send = session.open_uni_with(Some(policy.scheduler())).await?;
            let mut ticker = tokio::time::interval(interval);
            for seq in 0..messages {
                ticker.tick().await;
                send.write_chunk(message(seq, base)).await?;
            }
            send.finish()?;
            let (histogram, server_session) = receiver.await??;
            for path in session.paths() {
                let s = &path.stats;
                println!(
                    "  path {:?}: {:?} sent {} B, srtt {:?}",
                    s.id, s.state, s.bytes_sent, s.srtt
                );
            }
            print_relays(&relays);
            session.close(0, b"done");
            server_session.close(0, b"done");
            histogram
        }
    };
    if histogram.len() != messages {
        bail!("received {} of {messages} messages", histogram.len());
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e3;
    let name = match stack {
        Stack::Quinn => "latency-quinn-lossy-path".to_owned(),
        Stack::Kwik => format!("latency-kwik-{policy:?}"),
    };
    println!(
        "RESULT {name} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} p999_ms={:.2} max_ms={:.2} messages={messages} loss={loss_percent}%",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        histogram.max() as f64 / 1e3
    );
    Ok(())
}

fn message(seq: u64, base: Instant) -> Bytes {
    let mut m = vec![0u8; MESSAGE_LEN];
    m[..8].copy_from_slice(&seq.to_be_bytes());
    m[8..16].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_be_bytes());
    Bytes::from(m)
}

/// Reassembles probe messages from a byte stream and records their one-way latency.
struct Probe {
    base: Instant,
    partial: Vec<u8>,
    next_seq: u64,
    histogram: Histogram<u64>,
}

impl Probe {
    fn new(base: Instant) -> Self {
        Self {
            base,
            partial: Vec::with_capacity(MESSAGE_LEN),
            next_seq: 0,
            // 1 us .. 60 s, 3 significant figures.
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }

    fn take(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let n = (MESSAGE_LEN - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.partial.len() == MESSAGE_LEN {
                let seq = u64::from_be_bytes(self.partial[..8].try_into()?);
                let sent = u64::from_be_bytes(self.partial[8..16].try_into()?);
                if seq != self.next_seq {
                    bail!("message {seq} arrived, expected {}", self.next_seq);
                }
                self.next_seq += 1;
                let now = self.base.elapsed().as_nanos() as u64;
                let micros = (now.saturating_sub(sent) / 1000).max(1);
                self.histogram.saturating_record(micros);
                self.partial.clear();
            }
        }
        Ok(())
    }
}
