//! End-to-end transport benchmarks for issue 3: kwik against raw quinn, on loopback, in one
//! process, measured in the same run.
//!
//! Run (release profile; `all` runs each scenario in a fresh child process so memory
//! figures do not inherit another scenario's heap):
//!
//! ```text
//! cargo bench -p kwik-integration --bench kwik_transport -- all
//! cargo bench -p kwik-integration --bench kwik_transport -- bulk --stack quinn --size-mib 1024 --runs 3
//! cargo bench -p kwik-integration --bench kwik_transport -- bulk --stack kwik --size-mib 1024 --runs 3
//! cargo bench -p kwik-integration --bench kwik_transport -- bulk-pair --size-mib 1024 --runs 5
//! cargo bench -p kwik-integration --bench kwik_transport -- relayed --stack kwik --paths 2 --rate-mbit 100
//! cargo bench -p kwik-integration --bench kwik_transport -- failover --rate-mbit 100 --cut-path 0
//! cargo bench -p kwik-integration --bench kwik_transport -- latency --stack kwik --scheduler redundant
//! cargo bench -p kwik-integration --bench kwik_transport -- scale --stack quinn --count 1000
//! ```
//!
//! Lines starting with `RESULT` carry the figures; docs/BENCHMARKS.md records them with
//! the commands that made them.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use kwik_testbed::Loopback;
use kwik_testbed::impairment::{BitRate, Impairment, LossRate};
use kwik_testbed::relay::{Relay, RelayConfig};
use kwik_testbed::tls::{SERVER_NAME, TestPki};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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

/// Which transport a scenario drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stack {
    /// Raw quinn: one QUIC connection (one path).
    Quinn,
    /// A kwik session.
    Kwik,
}

/// kwik scheduling policies selectable from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Policy {
    MinRtt,
    Aggregate,
    Redundant,
    Backup,
}

impl Policy {
    fn scheduler(self) -> kwik::Scheduler {
        match self {
            Policy::MinRtt => kwik::Scheduler::MinRtt,
            Policy::Aggregate => kwik::Scheduler::Aggregate,
            Policy::Redundant => kwik::Scheduler::Redundant,
            Policy::Backup => kwik::Scheduler::Backup,
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
enum Scenario {
    /// Every scenario, each in a fresh child process.
    All {
        /// Loopback bulk transfer size in MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Runs (pairs) of the bulk scenario (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Connections / sessions for the scale scenarios.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Per-path rate limit R of the relayed scenarios, Mbit/s.
        #[arg(long, default_value_t = 100)]
        rate_mbit: u64,
        /// Transfer size of the relayed and failover scenarios in MiB.
        #[arg(long, default_value_t = 96)]
        relayed_mib: u64,
        /// Only the raw-quinn scenarios (when kwik is not usable).
        #[arg(long)]
        quinn_only: bool,
    },
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
    /// One stream through `paths` relays, each rate-limited to R both ways.
    Relayed {
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
    },
    /// kwik over two rate-limited relays; one path is blackholed mid-transfer.
    Failover {
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
    },
    /// Small timestamped messages over a lossy fast path and a clean slow path;
    /// delivery latency percentiles.
    Latency {
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
    },
    /// `count` connections (quinn) or sessions (kwik) to one server endpoint, one small
    /// bi-stream exchange each; set-up rate and resident memory per connection.
    Scale {
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
    },
}

fn main() -> Result<()> {
    // Logs only when asked for, e.g. RUST_LOG=kwik=debug.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Scenario::All {
        size_mib,
        runs,
        count,
        rate_mbit,
        relayed_mib,
        quinn_only,
    } = cli.scenario
    {
        return run_all(size_mib, runs, count, rate_mbit, relayed_mib, quinn_only);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Bound every scenario: a hang is reported as a failure, not waited out.
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(300), run(cli.scenario))
            .await
            .context("scenario did not finish within 300 s")?
    })
}

async fn run(scenario: Scenario) -> Result<()> {
    match scenario {
        Scenario::All { .. } => unreachable!("handled in main"),
        Scenario::Bulk {
            stack,
            size_mib,
            runs,
        } => {
            let size = size_mib * MIB;
            let mut goodputs = Vec::new();
            for run in 0..runs {
                let secs = match stack {
                    Stack::Quinn => quinn_bulk(size, Windows::Default).await?,
                    Stack::Kwik => kwik_bulk(size, &[], Policy::MinRtt).await?.secs,
                };
                let gbps = bits_per_s(size, secs) / 1e9;
                println!(
                    "bulk {stack:?} run {run}: {size_mib} MiB in {secs:.3} s = {gbps:.3} Gbit/s"
                );
                goodputs.push(gbps);
            }
            report_median(&format!("bulk-{stack:?}"), "Gbit/s", &goodputs);
        }
        Scenario::BulkPair { size_mib, runs } => {
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
        }
        Scenario::Relayed {
            stack,
            paths,
            rate_mbit,
            size_mib,
            scheduler,
            runs,
            last_rate_mbit,
        } => {
            let rates = path_rates(paths, rate_mbit, last_rate_mbit);
            relayed(stack, &rates, size_mib, scheduler, runs).await?
        }
        Scenario::Failover {
            rate_mbit,
            size_mib,
            scheduler,
            cut_path,
            cut_at,
        } => failover(rate_mbit, size_mib, scheduler, cut_path, cut_at).await?,
        Scenario::Latency {
            stack,
            scheduler,
            messages,
            interval_us,
            loss_percent,
            seed,
        } => latency(stack, scheduler, messages, interval_us, loss_percent, seed).await?,
        Scenario::Scale {
            stack,
            count,
            concurrency,
            ping_ms,
        } => {
            let scale = match stack {
                Stack::Quinn => quinn_scale(count, concurrency).await?,
                Stack::Kwik => {
                    let mut config = kwik::SessionConfig::default();
                    if let Some(ms) = ping_ms {
                        config = config.ping_interval(Duration::from_millis(ms));
                    }
                    kwik_scale(count, concurrency, config).await?
                }
            };
            scale.print(&format!("scale-{stack:?}"), count);
        }
    }
    Ok(())
}

/// Runs every scenario as a child process of this same binary.
fn run_all(
    size_mib: u64,
    runs: usize,
    count: usize,
    rate_mbit: u64,
    relayed_mib: u64,
    quinn_only: bool,
) -> Result<()> {
    println!("host: {} cores, load average {}", cores(), load_average());
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let size = size_mib.to_string();
    let runs = runs.to_string();
    let count = count.to_string();
    let rate = rate_mbit.to_string();
    let relayed = relayed_mib.to_string();
    let mut scenarios: Vec<Vec<&str>> = Vec::new();
    let stacks: &[&str] = if quinn_only {
        &["quinn"]
    } else {
        &["quinn", "kwik"]
    };
    if quinn_only {
        scenarios.push(vec![
            "bulk",
            "--stack",
            "quinn",
            "--size-mib",
            &size,
            "--runs",
            &runs,
        ]);
    } else {
        scenarios.push(vec!["bulk-pair", "--size-mib", &size, "--runs", &runs]);
    }
    scenarios.push(vec![
        "relayed",
        "--stack",
        "quinn",
        "--paths",
        "1",
        "--rate-mbit",
        &rate,
        "--size-mib",
        &relayed,
    ]);
    if !quinn_only {
        for paths in ["1", "2"] {
            scenarios.push(vec![
                "relayed",
                "--stack",
                "kwik",
                "--paths",
                paths,
                "--rate-mbit",
                &rate,
                "--size-mib",
                &relayed,
                "--scheduler",
                "aggregate",
            ]);
        }
        for cut in ["1", "0"] {
            scenarios.push(vec![
                "failover",
                "--rate-mbit",
                &rate,
                "--size-mib",
                &relayed,
                "--cut-path",
                cut,
            ]);
        }
    }
    scenarios.push(vec!["latency", "--stack", "quinn"]);
    if !quinn_only {
        for policy in ["min-rtt", "redundant"] {
            scenarios.push(vec!["latency", "--stack", "kwik", "--scheduler", policy]);
        }
    }
    for stack in stacks {
        scenarios.push(vec!["scale", "--stack", stack, "--count", &count]);
    }
    let mut failed = Vec::new();
    for args in scenarios {
        println!("\n$ kwik_transport {}", args.join(" "));
        let status = Command::new(&exe).args(&args).status()?;
        if !status.success() {
            println!("RESULT FAILED {}: {status}", args.join(" "));
            failed.push(args.join(" "));
        }
    }
    if !failed.is_empty() {
        bail!("{} scenario(s) failed: {failed:?}", failed.len());
    }
    Ok(())
}

// ---------------------------------------------------------------- shared pieces

/// The bulk payload: a 1 MiB pattern repeated; byte `i` of the stream is
/// `pattern[i % 1 MiB]`. Written zero-copy as slices of one `Bytes`.
fn pattern() -> Bytes {
    Bytes::from((0..MIB).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>())
}

/// What a receiver saw: checks every byte against the pattern at its stream offset and
/// optionally records when bytes arrived.
struct Sink {
    pattern: Bytes,
    total: u64,
    mismatched: u64,
    progress: Arc<AtomicU64>,
    arrivals: Option<Vec<(Instant, u64)>>,
}

impl Sink {
    fn new(progress: Arc<AtomicU64>, record_arrivals: bool) -> Self {
        Self {
            pattern: pattern(),
            total: 0,
            mismatched: 0,
            progress,
            arrivals: record_arrivals.then(Vec::new),
        }
    }

    fn take(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let at = (self.total % MIB) as usize;
            let n = chunk.len().min(self.pattern.len() - at);
            if chunk[..n] != self.pattern[at..at + n] {
                self.mismatched += n as u64;
            }
            self.total += n as u64;
            chunk = &chunk[n..];
        }
        self.progress.store(self.total, Ordering::Relaxed);
        if let Some(arrivals) = &mut self.arrivals {
            arrivals.push((Instant::now(), self.total));
        }
    }

    /// Bytes not delivered intact: missing or corrupt.
    fn lost(&self, size: u64) -> u64 {
        size.saturating_sub(self.total) + self.mismatched
    }
}

/// Outcome of one transfer.
struct Transfer {
    secs: f64,
    sink: Sink,
}

fn relay_impairment(rate_mbit: u64) -> Result<Impairment> {
    let mut imp = Impairment::none();
    imp.set_rate(Some(BitRate::mbit(rate_mbit)?));
    Ok(imp)
}

async fn start_relays(
    target: SocketAddr,
    impairments: &[Impairment],
    seed: u64,
) -> Result<Vec<Relay>> {
    let mut relays = Vec::new();
    for (i, imp) in impairments.iter().enumerate() {
        let mut config = RelayConfig::default();
        config
            .set_seed(seed.wrapping_add(i as u64))
            .set_impairment_both(imp.clone());
        relays.push(Relay::start(target, config).await?);
    }
    Ok(relays)
}

fn print_relays(relays: &[Relay]) {
    for (i, relay) in relays.iter().enumerate() {
        let s = relay.handle().stats();
        println!(
            "  relay {i}: c->s forwarded {} pkts / {} B, dropped queue {} loss {} blackhole {}; s->c forwarded {} pkts, dropped {}",
            s.client_to_server.forwarded_packets,
            s.client_to_server.forwarded_bytes,
            s.client_to_server.dropped_queue,
            s.client_to_server.dropped_loss,
            s.client_to_server.dropped_blackhole,
            s.server_to_client.forwarded_packets,
            s.server_to_client.dropped_total(),
        );
    }
}

// ---------------------------------------------------------------- quinn

struct QuinnPair {
    server: quinn::Endpoint,
    client: quinn::Endpoint,
}

/// quinn's flow-control windows: its defaults, or the larger ones kwik configures on its
/// paths (16 MiB per stream, 64 MiB per connection), to separate the cost of kwik's
/// layer from the effect of its window sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Windows {
    Default,
    LikeKwik,
}

fn quinn_pair() -> Result<QuinnPair> {
    quinn_pair_with(Windows::Default)
}

fn quinn_pair_with(windows: Windows) -> Result<QuinnPair> {
    let pki = TestPki::generate()?;
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let mut server_config = pki.quinn_server_config(ALPN)?;
    let mut client_config = pki.quinn_client_config(ALPN)?;
    if windows == Windows::LikeKwik {
        let mut transport = quinn::TransportConfig::default();
        transport
            .stream_receive_window(quinn::VarInt::from_u32(16 << 20))
            .receive_window(quinn::VarInt::from_u32(64 << 20))
            .send_window(64 << 20);
        let transport = Arc::new(transport);
        server_config.transport_config(transport.clone());
        client_config.transport_config(transport);
    }
    let server = quinn::Endpoint::server(server_config, any)?;
    let mut client = quinn::Endpoint::client(any)?;
    client.set_default_client_config(client_config);
    Ok(QuinnPair { server, client })
}

/// Sends `size` bytes on one quinn uni stream, directly or through the first relay;
/// returns the seconds from opening the stream to the receiver reading the last byte
/// (handshake excluded).
async fn quinn_bulk(size: u64, windows: Windows) -> Result<f64> {
    Ok(quinn_transfer_with(size, &[], windows).await?.secs)
}

async fn quinn_transfer(size: u64, relays: &[Impairment]) -> Result<Transfer> {
    quinn_transfer_with(size, relays, Windows::Default).await
}

async fn quinn_transfer_with(
    size: u64,
    relays: &[Impairment],
    windows: Windows,
) -> Result<Transfer> {
    let pair = quinn_pair_with(windows)?;
    let server_addr = pair.server.local_addr()?;
    let relays = start_relays(server_addr, relays, 1).await?;
    let server = pair.server.clone();
    let receiver = tokio::spawn(async move {
        let conn = server.accept().await.context("no incoming")?.await?;
        let mut recv = conn.accept_uni().await?;
        let mut sink = Sink::new(Arc::default(), false);
        while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
            sink.take(&chunk.bytes);
        }
        let done = Instant::now();
        conn.close(0u32.into(), b"done");
        anyhow::Ok((sink, done))
    });
    let target = relays.first().map_or(server_addr, Relay::local_addr);
    let conn = pair.client.connect(target, SERVER_NAME)?.await?;
    let chunk = pattern();
    let start = Instant::now();
    let mut send = conn.open_uni().await?;
    let mut sent = 0u64;
    while sent < size {
        let len = (size - sent).min(MIB) as usize;
        send.write_chunk(chunk.slice(..len)).await?;
        sent += len as u64;
    }
    send.finish()?;
    let (sink, done) = receiver.await??;
    if sink.lost(size) != 0 {
        bail!("quinn receiver lost {} of {size} bytes", sink.lost(size));
    }
    conn.closed().await;
    print_relays(&relays);
    Ok(Transfer {
        secs: (done - start).as_secs_f64(),
        sink,
    })
}

// ---------------------------------------------------------------- kwik

/// Connects a kwik session, through the relays when there are any (the first relay
/// carries the initial path, each further relay one added path).
async fn kwik_connect(pair: &Loopback, relays: &[Relay]) -> Result<kwik::Session> {
    let server_addr = pair.server.local_addr()?;
    let first = relays.first().map_or(server_addr, Relay::local_addr);
    let session = pair.client.connect(first, SERVER_NAME).await?;
    for relay in relays.iter().skip(1) {
        session
            .add_path(kwik::PathSpec::remote(relay.local_addr()))
            .await?;
    }
    Ok(session)
}

/// Sends `size` bytes on one kwik uni stream; returns timing and what the receiver saw.
async fn kwik_bulk(size: u64, relays: &[Impairment], policy: Policy) -> Result<Transfer> {
    let config = kwik::SessionConfig::default().scheduler(policy.scheduler());
    kwik_transfer(size, relays, config, None).await
}

/// A blackhole to apply to one relay once the receiver has `after` bytes.
struct Cut {
    path: usize,
    after: u64,
}

async fn kwik_transfer(
    size: u64,
    impairments: &[Impairment],
    config: kwik::SessionConfig,
    cut: Option<Cut>,
) -> Result<Transfer> {
    Ok(kwik_transfer_cut(size, impairments, config, cut).await?.0)
}

/// Like [`kwik_transfer`], also returning when the cut happened.
async fn kwik_transfer_cut(
    size: u64,
    impairments: &[Impairment],
    config: kwik::SessionConfig,
    cut: Option<Cut>,
) -> Result<(Transfer, Option<Instant>)> {
    let pair = Loopback::new(config)?;
    let relays = start_relays(pair.server.local_addr()?, impairments, 1).await?;
    let progress = Arc::new(AtomicU64::new(0));
    let server = pair.server.clone();
    let record = cut.is_some();
    let receiver = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let session = server.accept().await.context("no incoming session")?;
            let mut recv = session.accept_uni().await?;
            let mut sink = Sink::new(progress, record);
            while let Some(chunk) = recv.read_chunk(usize::MAX).await? {
                sink.take(&chunk);
            }
            let done = Instant::now();
            anyhow::Ok((sink, done, session))
        })
    };
    let session = kwik_connect(&pair, &relays).await?;
    let cutter = cut.map(|cut| {
        let handle = relays[cut.path].handle();
        let progress = progress.clone();
        tokio::spawn(async move {
            while progress.load(Ordering::Relaxed) < cut.after {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            handle.set_blackhole(true);
            Instant::now()
        })
    });
    let chunk = pattern();
    let start = Instant::now();
    let mut send = session.open_uni().await?;
    let mut sent = 0u64;
    while sent < size {
        let len = (size - sent).min(MIB) as usize;
        send.write_chunk(chunk.slice(..len)).await?;
        sent += len as u64;
    }
    send.finish()?;
    let (sink, done, server_session) = tokio::time::timeout(Duration::from_secs(300), receiver)
        .await
        .context("kwik transfer did not complete within 300 s")???;
    let cut_at = match cutter {
        Some(task) => Some(task.await?),
        None => None,
    };
    for path in session.paths() {
        let s = &path.stats;
        println!(
            "  path {:?}: {:?} sent {} B (resent {}), srtt {:?}, rate {:.1} Mbit/s",
            s.id,
            s.state,
            s.bytes_sent,
            s.bytes_resent,
            s.srtt,
            s.rate * 8e-6
        );
    }
    let stats = session.stats();
    println!(
        "  session: written {} sent {} resent {} acked {} paths abandoned {}",
        stats.bytes_written,
        stats.bytes_sent,
        stats.bytes_resent,
        stats.bytes_acked,
        stats.paths_abandoned
    );
    let ps = server_session.presentation_stats();
    let (sb, bb) = (&ps.stream_backpressure, &ps.session_backpressure);
    println!(
        "  receiver: session window {} KiB ({} growths), stream backpressure {}x ({} slow reader, {} gap) {:?}, session backpressure {}x {:?}, gap timeouts {}",
        ps.session_window >> 10,
        ps.session_window_growths,
        sb.activations,
        sb.slow_reader,
        sb.head_of_line_gap,
        sb.time_active,
        bb.activations,
        bb.time_active,
        ps.gap_timeouts,
    );
    print_relays(&relays);
    session.close(0, b"done");
    server_session.close(0, b"done");
    Ok((
        Transfer {
            secs: (done - start).as_secs_f64(),
            sink,
        },
        cut_at,
    ))
}

// ---------------------------------------------------------------- scenarios

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
    rates_mbit: &[u64],
    size_mib: u64,
    policy: Policy,
    runs: usize,
) -> Result<()> {
    let size = size_mib * MIB;
    let paths = rates_mbit.len();
    let impairments = rates_mbit
        .iter()
        .map(|r| relay_impairment(*r))
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
    let imp = relay_impairment(rate_mbit)?;
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

/// One latency-probe message: sequence number, send time (ns since a shared base),
/// padding.
const MESSAGE_LEN: usize = 256;

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
            let pair = quinn_pair()?;
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

/// Results of a scale scenario.
struct Scale {
    setup_secs: f64,
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
        let ms = |q: f64| self.connect_ms.value_at_quantile(q);
        println!(
            "{name}: {} of {count} established ({} failed) in {:.3} s = {rate:.0} /s; connect p50 {} ms, p99 {} ms, max {} ms; VmRSS {} -> {} KiB = {per_conn:.1} KiB each (client + server ends, one process)",
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
            "RESULT {name} established={} failed={} setup_rate_per_s={rate:.0} kib_per_conn={per_conn:.1} connect_p99_ms={} idle_cpu_percent={:.1} idle_cpu_settled_percent={:.1}",
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
async fn quinn_scale(count: usize, concurrency: usize) -> Result<Scale> {
    let pair = quinn_pair()?;
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
        measure_scale(count, concurrency, connect_one, &mut held_rx).await?;
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
        measure_scale(count, concurrency, connect_one, &mut held_rx).await?;
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
    // CPU the established, idle connections cost (keep-alives, pings, timers).
    let idle_window = Duration::from_secs(3);
    let cpu_before = cpu_seconds()?;
    tokio::time::sleep(idle_window).await;
    let idle_cpu_percent = (cpu_seconds()? - cpu_before) / idle_window.as_secs_f64() * 100.0;
    // Settled: longer than kwik's longest idle ping interval with default
    // settings (3.3 s), so pings that come in bursts are counted fairly.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled_window = Duration::from_secs(10);
    let cpu_before = cpu_seconds()?;
    tokio::time::sleep(settled_window).await;
    let idle_cpu_settled_percent =
        (cpu_seconds()? - cpu_before) / settled_window.as_secs_f64() * 100.0;
    clients.push(warm);
    servers.push(warm_server);
    Ok((
        clients,
        servers,
        Scale {
            setup_secs,
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

// ---------------------------------------------------------------- small helpers

fn bits_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs
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
        println!("RESULT {name} no runs");
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
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS line")?
        .parse()?)
}

/// User + system CPU time of this process so far, from /proc/self/stat.
fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line, 12 and 13 after `)`.
    let ticks: u64 = fields.get(11).context("no utime")?.parse::<u64>()?
        + fields.get(12).context("no stime")?.parse::<u64>()?;
    Ok(ticks as f64 / CLOCK_TICKS_PER_SECOND)
}

/// Linux reports process times in USER_HZ, which is 100 on every mainstream platform.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
