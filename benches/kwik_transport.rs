//! End-to-end transport benchmarks for issue 3: kwik against raw quinn, on loopback, in one
//! process, measured in the same run.
//!
//! Run (release profile; each scenario runs in a fresh child process so memory figures
//! do not inherit another scenario's heap):
//!
//! ```text
//! cargo bench -p kwik-testbed --bench kwik_transport -- all
//! cargo bench -p kwik-testbed --bench kwik_transport -- quinn-bulk --size-mib 1024 --runs 3
//! cargo bench -p kwik-testbed --bench kwik_transport -- quinn-conns --count 1000
//! ```
//!
//! Figures and the commands that made them go to docs/BENCHMARKS.md.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use kwik_testbed::tls::{SERVER_NAME, TestPki};
use tokio::sync::Semaphore;

const ALPN: &[&[u8]] = &[b"kwik-bench/1"];
const MIB: u64 = 1 << 20;

#[derive(Debug, Parser)]
#[command(about = "kwik vs raw quinn transport benchmarks (loopback)")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, global = true, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Subcommand)]
enum Scenario {
    /// Every scenario below, each in a fresh child process, with default sizes.
    All {
        /// Bulk transfer size in MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Runs per bulk scenario (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Connections / sessions for the scale scenarios.
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
    /// Raw quinn: one connection, one uni stream, bulk transfer on loopback.
    QuinnBulk {
        /// Transfer size in MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Number of runs (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Raw quinn: `count` connections to one server endpoint, one small bi-stream
    /// exchange each; set-up rate and resident memory per connection.
    QuinnConns {
        /// Number of connections.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Handshakes in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::All {
            size_mib,
            runs,
            count,
        } => run_all(size_mib, runs, count),
        Scenario::QuinnBulk { size_mib, runs } => {
            let rt = runtime()?;
            let goodputs = (0..runs)
                .map(|run| {
                    let secs = rt.block_on(quinn_bulk(size_mib * MIB))?;
                    let gbps = gbit_per_s(size_mib * MIB, secs);
                    println!(
                        "quinn-bulk run {run}: {size_mib} MiB in {secs:.3} s = {gbps:.3} Gbit/s"
                    );
                    Ok(gbps)
                })
                .collect::<Result<Vec<_>>>()?;
            report_median("quinn-bulk", "Gbit/s", &goodputs);
            Ok(())
        }
        Scenario::QuinnConns { count, concurrency } => {
            let rt = runtime()?;
            let scale = rt.block_on(quinn_conns(count, concurrency))?;
            scale.print("quinn-conns", count);
            Ok(())
        }
    }
}

/// Runs every scenario as a child process of this same binary.
fn run_all(size_mib: u64, runs: usize, count: usize) -> Result<()> {
    println!("host: {} cores, load average {}", cores(), load_average());
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let scenarios: Vec<Vec<String>> = vec![
        vec![
            "quinn-bulk".into(),
            "--size-mib".into(),
            size_mib.to_string(),
            "--runs".into(),
            runs.to_string(),
        ],
        vec!["quinn-conns".into(), "--count".into(), count.to_string()],
    ];
    for args in scenarios {
        println!("\n$ kwik_transport {}", args.join(" "));
        let status = Command::new(&exe).args(&args).status()?;
        if !status.success() {
            bail!("scenario {} failed: {status}", args[0]);
        }
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A server and a client quinn endpoint on loopback sharing one test CA.
struct QuinnPair {
    server: quinn::Endpoint,
    client: quinn::Endpoint,
}

fn quinn_pair() -> Result<QuinnPair> {
    let pki = TestPki::generate()?;
    let any: std::net::SocketAddr = "127.0.0.1:0".parse()?;
    let server = quinn::Endpoint::server(pki.quinn_server_config(ALPN)?, any)?;
    let mut client = quinn::Endpoint::client(any)?;
    client.set_default_client_config(pki.quinn_client_config(ALPN)?);
    Ok(QuinnPair { server, client })
}

/// One chunk of the bulk payload, shared (zero-copy) by every write.
fn bulk_chunk() -> Bytes {
    Bytes::from((0..MIB).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>())
}

/// Sends `size` bytes on one uni stream; returns the seconds from opening the stream to
/// the receiver having read the last byte (handshake excluded).
async fn quinn_bulk(size: u64) -> Result<f64> {
    let pair = quinn_pair()?;
    let server = pair.server.clone();
    let receiver = tokio::spawn(async move {
        let conn = server.accept().await.context("no incoming")?.await?;
        let mut recv = conn.accept_uni().await?;
        let mut total = 0u64;
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
            total += chunk.bytes.len() as u64;
        }
        let done = Instant::now();
        conn.close(0u32.into(), b"done");
        anyhow::Ok((total, done))
    });
    let conn = pair
        .client
        .connect(pair.server.local_addr()?, SERVER_NAME)?
        .await?;
    let chunk = bulk_chunk();
    let start = Instant::now();
    let mut send = conn.open_uni().await?;
    let mut sent = 0u64;
    while sent < size {
        let len = (size - sent).min(chunk.len() as u64) as usize;
        send.write_chunk(chunk.slice(..len)).await?;
        sent += len as u64;
    }
    send.finish()?;
    let (total, done) = receiver.await??;
    if total != size {
        bail!("receiver got {total} of {size} bytes");
    }
    conn.closed().await;
    pair.client.wait_idle().await;
    Ok((done - start).as_secs_f64())
}

/// Results of a scale scenario.
struct Scale {
    setup_secs: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
}

impl Scale {
    fn print(&self, name: &str, count: usize) {
        let rate = count as f64 / self.setup_secs;
        let per_conn =
            (self.rss_after_kib.saturating_sub(self.rss_before_kib)) as f64 / count as f64;
        println!(
            "{name}: {count} established in {:.3} s = {rate:.0} /s; VmRSS {} -> {} KiB = {per_conn:.1} KiB per connection (client + server ends, one process)",
            self.setup_secs, self.rss_before_kib, self.rss_after_kib
        );
        println!("RESULT {name} setup_rate_per_s={rate:.0} kib_per_conn={per_conn:.1}");
    }
}

/// `count` connections to one server endpoint, each exchanging a small message on one bi
/// stream and then staying open; measures set-up rate and VmRSS growth.
async fn quinn_conns(count: usize, concurrency: usize) -> Result<Scale> {
    let pair = quinn_pair()?;
    let server_addr = pair.server.local_addr()?;
    let server = pair.server.clone();
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel();
    let acceptor = tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let held_tx = held_tx.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                if let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    if let Ok(msg) = recv.read_to_end(1024).await {
                        let _ = send.write_all(&msg).await;
                        let _ = send.finish();
                    }
                }
                // Keep the server end alive until the scenario ends.
                let _ = held_tx.send(conn);
            });
        }
    });

    let connect_one = {
        let client = pair.client.clone();
        move || {
            let client = client.clone();
            async move {
                let conn = client.connect(server_addr, SERVER_NAME)?.await?;
                let (mut send, mut recv) = conn.open_bi().await?;
                send.write_all(&[0x5a; 64]).await?;
                send.finish()?;
                let echo = recv.read_to_end(1024).await?;
                if echo.len() != 64 {
                    bail!("short echo");
                }
                anyhow::Ok(conn)
            }
        }
    };
    // Warm up (crypto tables, runtime, first allocations) before the baseline.
    let warm = connect_one().await?;
    let _warm_server = held_rx.recv().await;
    let rss_before_kib = vm_rss_kib()?;

    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let permit = limit.clone().acquire_owned().await?;
        let connect = connect_one();
        tasks.spawn(async move {
            let conn = connect.await;
            drop(permit);
            conn
        });
    }
    let mut clients = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        clients.push(joined??);
    }
    let setup_secs = start.elapsed().as_secs_f64();
    let mut servers = Vec::with_capacity(count);
    while servers.len() < count {
        servers.push(held_rx.recv().await.context("server side ended")?);
    }
    // Let acknowledgements and stream state settle before reading memory.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after_kib = vm_rss_kib()?;

    for conn in clients.iter().chain(std::iter::once(&warm)) {
        conn.close(0u32.into(), b"bench over");
    }
    pair.client.wait_idle().await;
    acceptor.abort();
    drop(servers);
    Ok(Scale {
        setup_secs,
        rss_before_kib,
        rss_after_kib,
    })
}

fn gbit_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs / 1e9
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

fn report_median(name: &str, unit: &str, values: &[f64]) {
    if values.is_empty() {
        println!("{name}: no runs");
        return;
    }
    let runs: Vec<String> = values.iter().map(|v| format!("{v:.3}")).collect();
    println!(
        "RESULT {name} median={:.3} {unit} runs=[{}]",
        median(values),
        runs.join(", ")
    );
}

/// Resident set size of this process, from /proc/self/status.
fn vm_rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kib = line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS line")?
        .parse()?;
    Ok(kib)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
