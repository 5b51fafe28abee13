//! `count` connections (raw quinn) or sessions (kwik) to one server endpoint, one small
//! bi-stream exchange each: set-up rate, resident memory per connection and the CPU
//! the idle connections cost.
//!
//! ```text
//! cargo bench -p kwik-integration --bench transport_scale -- --stack quinn --count 1000
//! cargo bench -p kwik-integration --bench transport_scale -- --stack kwik --count 1000
//! ```
//!
//! Run each stack in its own process (as these commands and `benches/run-transport.sh`
//! do) so the memory figure does not inherit another scenario's heap. Lines starting
//! with `RESULT` carry the figures; docs/BENCHMARKS.md records them with the commands
//! that made them.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use common::cli::Stack;
use common::process::{cpu_seconds, vm_rss_kib};
use common::quinn_pair::QuinnPair;
use hdrhistogram::Histogram;
use kwik_testbed::Loopback;
use kwik_testbed::tls::SERVER_NAME;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

/// `count` connections or sessions to one server endpoint.
#[derive(Debug, Parser)]
#[command(about = "kwik vs raw quinn: many connections to one server endpoint")]
struct Cli {
    #[arg(long, value_enum)]
    stack: Stack,
    /// Number of connections / sessions.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// kwik only: ping interval per path in ms (default: kwik's default).
    #[arg(long)]
    ping_ms: Option<u64>,
    /// Skip the idle-CPU windows (18 s; their figures print as 0), e.g. when a
    /// profiler should see the set-up alone.
    #[arg(long)]
    skip_idle: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let idle = if cli.skip_idle {
        IdleWindows::Skip
    } else {
        IdleWindows::Measure
    };
    common::runtime::run_bounded(async move {
        let scale = match cli.stack {
            Stack::Quinn => quinn_scale(cli.count, cli.concurrency, idle).await?,
            Stack::Kwik => {
                let mut config = kwik::SessionConfig::default();
                if let Some(ms) = cli.ping_ms {
                    config = config.ping_interval(Duration::from_millis(ms));
                }
                kwik_scale(cli.count, cli.concurrency, config, idle).await?
            }
        };
        scale.print(&format!("scale-{:?}", cli.stack), cli.count);
        Ok(())
    })
}

/// Whether a scenario measures the CPU its idle connections cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdleWindows {
    Measure,
    Skip,
}

/// Results of a scale scenario.
struct Scale {
    setup_secs: f64,
    /// CPU the process used during the set-up of the batch (both ends), seconds.
    setup_cpu_secs: f64,
    established: usize,
    failed: usize,
    first_error: Option<String>,
    connect_ms: Histogram<u64>,
    rss_before_kib: u64,
    rss_after_kib: u64,
    /// CPU used by the process while the connections sat idle, in % of one core
    /// (3 s from 0.3 s after the last set-up).
    idle_cpu_percent: f64,
    /// The same over 10 s, from 5 s after that window (idle kwik sessions ping
    /// less over time).
    idle_cpu_settled_percent: f64,
}

impl Scale {
    fn print(&self, name: &str, count: usize) {
        let rate = self.established as f64 / self.setup_secs;
        let per_conn = self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64
            / self.established.max(1) as f64;
        let cpu_ms = self.setup_cpu_secs * 1e3 / self.established.max(1) as f64;
        let ms = |q: f64| self.connect_ms.value_at_quantile(q);
        println!(
            "{name}: {} of {count} established ({} failed) in {:.3} s = {rate:.0} /s, {cpu_ms:.2} ms CPU each; connect p50 {} ms, p99 {} ms, max {} ms; VmRSS {} -> {} KiB = {per_conn:.1} KiB each (client + server ends, one process)",
            self.established,
            self.failed,
            self.setup_secs,
            ms(0.5),
            ms(0.99),
            self.connect_ms.max(),
            self.rss_before_kib,
            self.rss_after_kib
        );
        if let Some(error) = &self.first_error {
            println!("  first failure: {error}");
        }
        println!(
            "RESULT {name} established={} failed={} setup_rate_per_s={rate:.0} setup_cpu_ms_per_conn={cpu_ms:.2} kib_per_conn={per_conn:.1} connect_p99_ms={} idle_cpu_percent={:.1} idle_cpu_settled_percent={:.1}",
            self.established,
            self.failed,
            ms(0.99),
            self.idle_cpu_percent,
            self.idle_cpu_settled_percent
        );
    }
}

/// `count` quinn connections to one server endpoint, each exchanging a small message on
/// one bi stream and then staying open.
async fn quinn_scale(count: usize, concurrency: usize, idle: IdleWindows) -> Result<Scale> {
    let pair = QuinnPair::new()?;
    let server_addr = pair.server.local_addr()?;
    let server = pair.server.clone();
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel();
    let acceptor = tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let held_tx = held_tx.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                if let Ok((send, recv)) = conn.accept_bi().await {
                    let _ = echo(send, recv).await;
                }
                // Keep the server end alive until the scenario ends.
                let _ = held_tx.send(conn);
            });
        }
    });
    let client = pair.client.clone();
    let connect_one = move || {
        let client = client.clone();
        async move {
            let conn = client.connect(server_addr, SERVER_NAME)?.await?;
            let (send, recv) = conn.open_bi().await?;
            ping(send, recv).await?;
            anyhow::Ok(conn)
        }
    };
    let (clients, servers, scale) =
        measure_scale(count, concurrency, idle, connect_one, &mut held_rx).await?;
    for conn in &clients {
        conn.close(0u32.into(), b"bench over");
    }
    pair.client.wait_idle().await;
    acceptor.abort();
    drop(servers);
    Ok(scale)
}

/// `count` kwik sessions to one server endpoint, one small bi-stream exchange each.
async fn kwik_scale(
    count: usize,
    concurrency: usize,
    config: kwik::SessionConfig,
    idle: IdleWindows,
) -> Result<Scale> {
    let pair = Loopback::new(config)?;
    let server_addr = pair.server.local_addr()?;
    let server = pair.server.clone();
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel();
    let acceptor = tokio::spawn(async move {
        while let Some(session) = server.accept().await {
            let held_tx = held_tx.clone();
            tokio::spawn(async move {
                if let Ok((send, recv)) = session.accept_bi().await {
                    let _ = echo(send, recv).await;
                }
                let _ = held_tx.send(session);
            });
        }
    });
    let client = pair.client.clone();
    let connect_one = move || {
        let client = client.clone();
        async move {
            let session = client.connect(server_addr, SERVER_NAME).await?;
            let (send, recv) = session.open_bi().await?;
            ping(send, recv).await?;
            anyhow::Ok(session)
        }
    };
    let (clients, servers, scale) =
        measure_scale(count, concurrency, idle, connect_one, &mut held_rx).await?;
    for session in &clients {
        session.close(0, b"bench over");
    }
    drop(servers);
    acceptor.abort();
    Ok(scale)
}

/// The server half of one scale exchange (quinn or kwik streams): echoes a short
/// message and finishes the stream.
async fn echo(mut send: impl AsyncWrite + Unpin, recv: impl AsyncRead + Unpin) -> Result<()> {
    let mut msg = Vec::new();
    recv.take(1024).read_to_end(&mut msg).await?;
    send.write_all(&msg).await?;
    send.shutdown().await?;
    Ok(())
}

/// The client half: sends 64 bytes, finishes, and checks they all come back.
async fn ping(mut send: impl AsyncWrite + Unpin, recv: impl AsyncRead + Unpin) -> Result<()> {
    send.write_all(&[0x5a; 64]).await?;
    send.shutdown().await?;
    let mut back = Vec::new();
    recv.take(1024).read_to_end(&mut back).await?;
    if back.len() != 64 {
        bail!("short echo");
    }
    Ok(())
}

/// Warms up with one connection, then opens `count` more with at most `concurrency`
/// handshakes in flight, and reads VmRSS before and after. Failed connections are
/// counted, not fatal.
async fn measure_scale<C, S, F, Fut>(
    count: usize,
    concurrency: usize,
    idle: IdleWindows,
    connect_one: F,
    held: &mut tokio::sync::mpsc::UnboundedReceiver<S>,
) -> Result<(Vec<C>, Vec<S>, Scale)>
where
    C: Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<C>> + Send + 'static,
{
    // Warm up (crypto tables, runtime, first allocations) before the baseline.
    let warm = connect_one().await?;
    let warm_server = held.recv().await.context("server side ended")?;
    let rss_before_kib = vm_rss_kib()?;
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let setup_cpu_before = cpu_seconds()?;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let permit = limit.clone().acquire_owned().await?;
        let connect = connect_one();
        tasks.spawn(async move {
            let began = Instant::now();
            let conn = connect.await;
            drop(permit);
            (conn, began.elapsed())
        });
    }
    let mut clients = Vec::with_capacity(count + 1);
    let mut failed = 0;
    let mut first_error = None;
    let mut connect_ms = Histogram::new_with_bounds(1, 600_000, 3)?;
    while let Some(joined) = tasks.join_next().await {
        let (conn, took) = joined.context("connect task")?;
        connect_ms.saturating_record((took.as_millis() as u64).max(1));
        match conn {
            Ok(conn) => clients.push(conn),
            Err(error) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    let setup_secs = start.elapsed().as_secs_f64();
    let setup_cpu_secs = cpu_seconds()? - setup_cpu_before;
    let established = clients.len();
    let mut servers = Vec::with_capacity(count + 1);
    while servers.len() < established {
        match tokio::time::timeout(Duration::from_secs(5), held.recv()).await {
            Ok(Some(server)) => servers.push(server),
            _ => break,
        }
    }
    // Let acknowledgements and stream state settle before reading memory.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_after_kib = vm_rss_kib()?;
    let (idle_cpu_percent, idle_cpu_settled_percent) = match idle {
        IdleWindows::Measure => idle_cpu().await?,
        IdleWindows::Skip => (0.0, 0.0),
    };
    clients.push(warm);
    servers.push(warm_server);
    Ok((
        clients,
        servers,
        Scale {
            setup_secs,
            setup_cpu_secs,
            established,
            failed,
            first_error,
            connect_ms,
            rss_before_kib,
            rss_after_kib,
            idle_cpu_percent,
            idle_cpu_settled_percent,
        },
    ))
}

/// CPU the established, idle connections cost (keep-alives, pings, timers), in % of
/// one core: over 3 s from now, and over 10 s from 5 s after that.
async fn idle_cpu() -> Result<(f64, f64)> {
    let idle_window = Duration::from_secs(3);
    let cpu_before = cpu_seconds()?;
    tokio::time::sleep(idle_window).await;
    let first = (cpu_seconds()? - cpu_before) / idle_window.as_secs_f64() * 100.0;
    // Settled: longer than kwik's longest idle ping interval with default
    // settings (3.3 s), so pings that come in bursts are counted fairly.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled_window = Duration::from_secs(10);
    let cpu_before = cpu_seconds()?;
    tokio::time::sleep(settled_window).await;
    let settled = (cpu_seconds()? - cpu_before) / settled_window.as_secs_f64() * 100.0;
    Ok((first, settled))
}
