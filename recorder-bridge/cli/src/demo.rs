//! `kwik-record demo`: a recorder server, a simulated XIAO board (the firmware's own
//! sampling and framing code in `xiao-sim`) and a gateway with two KWIK paths on
//! loopback. One path is killed halfway; at the end the recorded file is compared
//! value by value with the simulator's ground truth and the counts of every stage are
//! printed.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use kwik_recorder::{
    ArrivalLog, Dashboard, DashboardParts, Gateway, GatewayConfig, GatewayCounts, GatewayError,
    IdentityError, ImuRow, RecorderServer, RecorderServerConfig, ServeError, ServerIdentity,
    SimImuConfig, StreamKey, StreamReport, parse_csv, sim_imu,
};
use kwik_testbed::{Relay, RelayConfig, RelayStartError};

use crate::args::SchedulerArg;
use crate::exit::{Exit, usage};
use crate::runtime::{err, runtime};

/// `kwik-record demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// How long the simulated board samples (`10s`, `500ms`, or bare seconds).
    #[arg(long, value_parser = crate::args::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Sample rate of the simulated board in Hz.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Output folder.
    #[arg(long, default_value = "recordings/demo")]
    out: PathBuf,
    /// Scheduler of the sensor stream (default redundant: every sample on both
    /// paths, so the killed path adds neither loss nor latency).
    #[arg(long, value_enum, default_value = "redundant")]
    scheduler: SchedulerArg,
    /// Seed of the simulated signals.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Longest the gateway holds a sample to batch it with others (`10ms`, `0` for
    /// none); the latency figures include it.
    #[arg(long, value_parser = crate::args::parse_duration, default_value = "10ms")]
    batch_delay: Duration,
    #[command(flatten)]
    ui: crate::ui::UiArgs,
}

/// Runs `kwik-record demo`. Exit code 0 only if nothing was lost.
pub(crate) fn demo(a: DemoArgs, json: bool) -> Result<ExitCode> {
    if a.duration.is_zero() {
        return Err(usage("--duration must be longer than zero"));
    }
    let rate = NonZeroU32::new(a.rate).ok_or_else(|| usage("--rate must be at least 1"))?;
    let ui = a.ui.clone();
    let out = a.out.clone();
    let config = DemoConfig {
        duration: a.duration,
        rate_hz: rate,
        out_dir: a.out,
        scheduler: a.scheduler.into(),
        seed: a.seed,
        batch_delay: a.batch_delay,
        verbose: !json,
    };
    let rt = runtime()?;
    // Ctrl-C or SIGTERM stops the board early; the demo then delivers what it produced
    // and prints its summary as after a full run.
    crate::interrupt::install();
    // With --ui the recordings are browsable while the demo runs and after it, until
    // Ctrl-C.
    // The dashboard opens as soon as the demo's server runs: its devices, their paths
    // and live plots, and the recordings.
    let (summary, dashboard) = rt
        .block_on(run_demo(config, &ui, &out, json))
        .map_err(err)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&summary).map_err(err)?);
    } else {
        print_summary(&summary);
    }
    if dashboard.is_some() {
        rt.block_on(async {
            crate::ui::until_interrupted("demo finished", json, None).await;
            crate::ui::close(dashboard).await;
        });
    }
    Ok(Exit::lossless(summary.ok).into())
}

/// Settings of the demo.
#[derive(Debug, Clone)]
pub(crate) struct DemoConfig {
    /// How long the simulated board samples (default 10 s).
    duration: Duration,
    /// Its sample rate (default 1000 Hz).
    rate_hz: NonZeroU32,
    /// Where the recording goes (default `recordings/demo`).
    out_dir: PathBuf,
    /// Scheduler of the sensor stream (default redundant: a 1 kHz sensor stream
    /// is small, and with a copy on each path the kill costs no latency).
    scheduler: kwik::Scheduler,
    /// Seed of the simulated signals.
    seed: u64,
    /// The gateway's batch delay (default 10 ms).
    batch_delay: Duration,
    /// Print progress lines while running.
    verbose: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            duration: Duration::from_secs(10),
            rate_hz: NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN),
            out_dir: PathBuf::from("recordings/demo"),
            scheduler: kwik::Scheduler::Redundant,
            seed: 1,
            batch_delay: kwik_recorder::DEFAULT_BATCH_DELAY,
            verbose: true,
        }
    }
}

/// Why the demo could not run (as opposed to running and finding losses).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    /// Certificates could not be made.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(#[from] kwik::TlsConfigError),
    /// The server could not start.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The gateway could not start.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// A loopback relay could not be bound.
    #[error("cannot bind a loopback relay: {0}")]
    Relay(std::io::Error),
    /// The dashboard (`--ui`) could not start.
    #[error("{0:#}")]
    Dashboard(anyhow::Error),
}

/// One KWIK path of the demo.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct DemoPath {
    /// Path number.
    id: u64,
    /// The gateway's local address.
    local: Option<SocketAddr>,
    /// The address it sends to (a loopback relay in front of the server).
    via: SocketAddr,
    /// Killed halfway?
    killed: bool,
    /// Final state as kwik reports it.
    state: String,
}

/// Counts at every stage, from the board to the file.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct DemoStages {
    /// Samples the simulated board took.
    device_produced: u64,
    /// Gateway: decoded intact from the board's frames.
    gateway_received: u64,
    /// Gateway: device sequence gaps.
    device_lost: u64,
    /// Gateway: held in memory / spooled to disk / dropped on overflow.
    gateway_queued: u64,
    /// Gateway: written to the spool.
    gateway_spooled: u64,
    /// Gateway: dropped because queue and spool were full.
    gateway_dropped: u64,
    /// Gateway: not sent because the dashboard stopped the device (not lost).
    gateway_filtered: u64,
    /// Network: sample messages sent (incl. re-sends after reconnects).
    network_sent: u64,
    /// Server: sample messages received.
    server_received: u64,
    /// Server: duplicates dropped by sequence number.
    server_duplicates: u64,
    /// Server: malformed messages skipped.
    server_malformed: u64,
    /// Server: sequence numbers never received.
    server_missing: u64,
    /// Server: pushed to the recorder's ring.
    recorder_in: u64,
    /// Recorder: rows in the data file.
    written: u64,
    /// Recorder: lost in ring, exporter or writer.
    recorder_dropped: u64,
    /// Gateway: confirmed on disk by the server.
    acked: u64,
}

/// Percentiles of per-sample delivery latency in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct LatencyFigures {
    /// Samples measured.
    samples: u64,
    /// Median.
    p50_ms: f64,
    /// 99th percentile.
    p99_ms: f64,
    /// Maximum.
    max_ms: f64,
}

impl LatencyFigures {
    fn of(mut ms: Vec<f64>) -> Option<Self> {
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        Some(LatencyFigures {
            samples: ms.len() as u64,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        })
    }
}

/// Delivery latency of every sample: from the moment the simulated board produced it
/// (its real-time schedule: start + seq / rate) to its first arrival at the server
/// (gateway queue, KWIK, decode included), before and after the path was killed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct DemoLatency {
    /// Samples due from 1 s after the start until the kill (the warm-up second, with
    /// the handshake and the paths coming up, is left out).
    before_kill: Option<LatencyFigures>,
    /// Samples due in the second after the kill (the failover window).
    after_kill: Option<LatencyFigures>,
    /// Samples due from one second after the kill to the end.
    later: Option<LatencyFigures>,
    /// Smoothed RTT of the surviving path at the end, in ms.
    surviving_path_rtt_ms: Option<f64>,
    /// How much the 99th percentile in the failover window exceeds the one before the
    /// kill, in ms (0 if it does not): the spike the kill added beyond the usual
    /// jitter. The percentile, not the maximum, so that one stray sample on a busy
    /// machine (before or after) does not decide it.
    added_by_kill_ms: Option<f64>,
    /// Worst latency in the failover window minus the worst before the kill, in ms
    /// (may be negative).
    max_change_ms: Option<f64>,
    /// How far the 99th percentile moves by itself: between the window before the
    /// kill and the one after the failover window, neither of which holds a
    /// failover, in ms. On loopback, where the RTT is a fraction of a millisecond,
    /// this run-to-run jitter of a busy machine is the yardstick `added_by_kill_ms` is
    /// read against.
    p99_spread_ms: Option<f64>,
    /// Samples that never arrived (should be 0).
    never_arrived: u64,
    /// Longest the gateway held a sample to batch it with others, in ms: part of every
    /// figure above (a sample waits between 0 and this long).
    batch_delay_ms: f64,
}

/// The demo's result.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct DemoSummary {
    /// Root output folder.
    out_dir: PathBuf,
    /// Data files written.
    files: Vec<PathBuf>,
    /// The sidecar.
    sidecar: PathBuf,
    /// Wall time of the whole run in seconds.
    elapsed_s: f64,
    /// Sample rate.
    rate_hz: u32,
    /// Scheduler used.
    scheduler: String,
    /// Seconds after the start when the path was killed (none when the demo was
    /// interrupted before halfway).
    killed_at_s: Option<f64>,
    /// Seconds after the start when SIGINT or SIGTERM stopped the board early.
    interrupted_at_s: Option<f64>,
    /// The paths.
    paths: Vec<DemoPath>,
    /// Path events seen by the gateway (`t=1.23s Abandoned(path 0)`).
    events: Vec<String>,
    /// Counts per stage.
    stages: DemoStages,
    /// KWIK bytes re-sent after the path died.
    bytes_resent: u64,
    /// Per-sample delivery latency around the path kill.
    latency: DemoLatency,
    /// Rows in the file equal the simulator's samples, value by value, in order.
    file_matches_simulator: bool,
    /// Samples produced by the board but not in the file.
    lost: u64,
    /// Gateway error, if any.
    gateway_error: Option<String>,
    /// Nothing lost, the file verified, every stage balanced.
    ok: bool,
}

fn scheduler_name(s: kwik::Scheduler) -> String {
    match s {
        kwik::Scheduler::MinRtt => "min-rtt".into(),
        kwik::Scheduler::Aggregate => "aggregate".into(),
        kwik::Scheduler::Redundant => "redundant".into(),
        kwik::Scheduler::Backup => "backup".into(),
        other => format!("{other:?}"),
    }
}

/// Runs the demo (inside a tokio runtime), with the dashboard `ui` asks for over
/// `ui_root`; returns the summary and the dashboard, still running.
async fn run_demo(
    mut config: DemoConfig,
    ui: &crate::ui::UiArgs,
    ui_root: &std::path::Path,
    json: bool,
) -> Result<(DemoSummary, Option<Dashboard>), DemoError> {
    // Absolute, so every path printed says exactly where the files are.
    if let Ok(abs) = std::path::absolute(&config.out_dir) {
        config.out_dir = abs;
    }
    let say = |s: String| {
        if config.verbose {
            outln!("{s}");
        }
    };
    let t0 = Instant::now();
    let id = ServerIdentity::generate(&[])?;
    let session = kwik::SessionConfig::lan();
    let mut sc = RecorderServerConfig {
        out_dir: config.out_dir.clone(),
        ..RecorderServerConfig::default()
    };
    sc.recording.min_free_bytes = 16 << 20;
    let n = config.duration.as_secs_f64() * f64::from(config.rate_hz.get());
    let n = n.round().max(1.0) as u64;
    let arrivals = std::sync::Arc::new(ArrivalLog::new(usize::try_from(n).unwrap_or(0)));
    sc.arrivals = Some(arrivals.clone());
    let server = RecorderServer::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        id.server_config()?.session(session.clone()),
        sc,
    )?;
    let server_addr = server.local_addr().map_err(DemoError::Relay)?;
    let parts = DashboardParts {
        recorder: None,
        devices: Some(std::sync::Arc::new(server.reports_handle())),
    };
    let dashboard = crate::ui::open(ui, ui_root, parts, json)
        .await
        .map_err(DemoError::Dashboard)?;
    say(format!(
        "recorder server on {server_addr} (KWIK over QUIC, TLS with an in-process CA), recording into {}",
        config.out_dir.display()
    ));
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let relay1 = start_relay(server_addr).await?;
    let relay2 = start_relay(server_addr).await?;
    // A second loopback address for the second uplink where the OS has one (Linux
    // routes all of 127/8 to lo); otherwise a second port on 127.0.0.1.
    let second_local = match std::net::UdpSocket::bind("127.0.0.2:0") {
        Ok(_) => SocketAddr::from(([127, 0, 0, 2], 0)),
        Err(_) => any,
    };
    let sim = SimImuConfig {
        seed: config.seed,
        rate_hz: config.rate_hz,
        limit: Some(n),
        real_time: true,
    };
    let key = StreamKey {
        device: "xiao-sim-1".into(),
        stream: "imu".into(),
    };
    let mut gc = GatewayConfig::new(
        relay1.local_addr(),
        id.client_config()?.session(session.clone()),
        key,
    );
    gc.bind = any;
    gc.extra_paths = vec![kwik::PathSpec::local(second_local).with_remote(relay2.local_addr())];
    gc.scheduler = Some(config.scheduler);
    gc.prefix = "demo".into();
    gc.batch_delay = config.batch_delay;
    gc.spool = Some((
        config.out_dir.join(".spool").join("xiao-sim-1.spool"),
        256 << 20,
    ));
    say(format!(
        "simulated XIAO nRF52840 Sense: {} Hz for {:.1} s = {n} samples (xiao-sim, COBS+CRC frames as on USB)",
        config.rate_hz,
        config.duration.as_secs_f64()
    ));
    // The board's schedule starts when its simulator thread does (inside `sim_imu`).
    let board_start = Instant::now();
    let gw = Gateway::start(gc, sim_imu(sim))?;
    // Wait for the session and both paths.
    let session_up = Instant::now();
    let mut session = None;
    while session_up.elapsed() < Duration::from_secs(10) && !crate::interrupt::requested() {
        if let Some(s) = gw.session() {
            if s.paths().len() >= 2 {
                session = Some(s);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut events_rx = session.as_ref().map(kwik::Session::path_events);
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let ev_task = {
        let events = events.clone();
        let verbose = config.verbose;
        tokio::spawn(async move {
            if let Some(rx) = events_rx.as_mut() {
                while let Some(e) = rx.next().await {
                    let line = format!("t={:.2}s path event {e:?}", t0.elapsed().as_secs_f64());
                    if verbose {
                        outln!("  {line}");
                    }
                    if let Ok(mut v) = events.lock() {
                        v.push(line);
                    }
                }
            }
        })
    };
    let mut paths_before = Vec::new();
    if let Some(s) = &session {
        for p in s.paths() {
            say(format!(
                "  {} local {} -> {}",
                p.stats.id,
                p.local
                    .map_or_else(|| "127.0.0.1".into(), |a| a.to_string()),
                p.remote.map_or_else(|| "?".into(), |a| a.to_string()),
            ));
            paths_before.push(p);
        }
    } else {
        say("  warning: the session did not come up with two paths in 10 s".into());
    }
    say(format!(
        "gateway streaming with the {} scheduler",
        scheduler_name(config.scheduler)
    ));
    // Kill the first path halfway (unless a signal came first).
    let start = Instant::now();
    let half = config.duration / 2;
    while start.elapsed() < half && !gw.source_finished() && !crate::interrupt::requested() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut interrupted_at = None;
    let mut kill = None;
    if !crate::interrupt::requested() {
        relay1.handle().set_blackhole(true);
        let killed_at = t0.elapsed().as_secs_f64();
        kill = Some((Instant::now(), killed_at));
        say(format!(
            "t={killed_at:.2}s killed path 0 (its relay now drops every datagram, both ways); {} samples so far",
            gw.counts().device_samples
        ));
    }
    let mut last_print = Instant::now();
    while !gw.source_finished() {
        if interrupted_at.is_none() && crate::interrupt::requested() {
            // The board stops; what it produced is still delivered and checked.
            gw.stop_source();
            let at = t0.elapsed().as_secs_f64();
            interrupted_at = Some(at);
            say(format!(
                "t={at:.2}s interrupted: the board stops after {} samples; delivering them",
                gw.counts().device_samples
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            let c = gw.counts();
            say(format!(
                "t={:.2}s device {} samples, confirmed on disk {}, pending {}",
                t0.elapsed().as_secs_f64(),
                c.device_samples,
                c.acked,
                c.pending()
            ));
        }
    }
    let final_session = gw.session();
    let bytes_resent = final_session.as_ref().map_or(0, |s| s.stats().bytes_resent);
    let paths_after = final_session
        .as_ref()
        .map(kwik::Session::paths)
        .unwrap_or_default();
    let report = gw.finish().await;
    let reports = server.shutdown().await;
    ev_task.abort();
    let stream: Option<&StreamReport> = reports.first();
    let files = stream.map(|r| r.files.clone()).unwrap_or_default();
    let mut rows: Vec<ImuRow> = Vec::new();
    let mut parse_ok = true;
    for f in &files {
        match std::fs::read(f)
            .ok()
            .and_then(|b| parse_csv::<ImuRow>(&b).ok())
        {
            Some(p) => rows.extend(p.rows),
            None => parse_ok = false,
        }
    }
    let c: GatewayCounts = report.counts;
    // Interrupted, the board produced fewer than `n`: the books are kept against what it
    // did produce.
    let produced = if interrupted_at.is_some() {
        c.device_produced
    } else {
        n
    };
    let expected = sim.expected(produced);
    // Stopped from the dashboard, the file holds the simulator's samples less the
    // filtered ones: the rows must be the expected ones, in order, with only those left
    // out.
    let matches =
        parse_ok && rows.len() as u64 + c.filtered == produced && in_order_within(&rows, &expected);
    let stages = DemoStages {
        device_produced: produced,
        gateway_received: c.device_samples,
        device_lost: c.device_lost,
        gateway_queued: c.queued,
        gateway_spooled: c.spooled,
        gateway_dropped: c.dropped_overflow,
        gateway_filtered: c.filtered,
        network_sent: c.sent,
        server_received: stream.map_or(0, |r| r.counts.received),
        server_duplicates: stream.map_or(0, |r| r.counts.duplicates),
        server_malformed: stream.map_or(0, |r| r.counts.malformed),
        server_missing: stream.map_or(0, |r| r.counts.missing),
        recorder_in: stream.map_or(0, |r| r.counts.pushed),
        written: stream.map_or(0, |r| r.written),
        recorder_dropped: stream.map_or(0, |r| r.recorder_dropped),
        acked: c.acked,
    };
    let lost = produced.saturating_sub(stages.written + stages.gateway_filtered);
    let balanced = stream.is_some_and(StreamReport::balanced)
        && stages.gateway_received
            == stages.acked + stages.gateway_dropped + stages.gateway_filtered;
    let paths = paths_before
        .iter()
        .map(|p| DemoPath {
            id: p.stats.id.into_inner(),
            local: p.local,
            via: if p.stats.id.into_inner() == 0 {
                relay1.local_addr()
            } else {
                relay2.local_addr()
            },
            killed: kill.is_some() && p.stats.id.into_inner() == 0,
            state: paths_after
                .iter()
                .find(|q| q.stats.id == p.stats.id)
                .map_or_else(|| "gone".into(), |q| format!("{:?}", q.stats.state)),
        })
        .collect();
    let events = events.lock().map(|v| v.clone()).unwrap_or_default();
    let surviving_rtt = paths_after
        .iter()
        .filter(|p| p.stats.id.into_inner() != 0)
        .find_map(|p| p.stats.srtt);
    let latency = delivery_latency(
        &arrivals,
        produced,
        config.rate_hz,
        board_start,
        kill.map(|(at, _)| at),
        surviving_rtt,
        config.batch_delay,
    );
    let ok = lost == 0 && matches && balanced;
    let summary = DemoSummary {
        out_dir: config.out_dir.clone(),
        sidecar: stream.map(|r| r.sidecar.clone()).unwrap_or_default(),
        files,
        elapsed_s: t0.elapsed().as_secs_f64(),
        rate_hz: config.rate_hz.get(),
        scheduler: scheduler_name(config.scheduler),
        killed_at_s: kill.map(|(_, s)| s),
        interrupted_at_s: interrupted_at,
        paths,
        events,
        stages,
        bytes_resent,
        latency,
        file_matches_simulator: matches,
        lost,
        gateway_error: report.error,
        ok,
    };
    Ok((summary, dashboard))
}

/// Whether `rows` appear in `expected` in the same order (every row of `rows` is one of
/// `expected`, none twice, none out of order).
fn in_order_within(rows: &[ImuRow], expected: &[ImuRow]) -> bool {
    let mut rest = expected.iter();
    rows.iter().all(|r| rest.any(|e| e == r))
}

/// A loopback relay in front of the server: the path through it can be cut (blackholed
/// both ways, without any signal) as a dead uplink is.
async fn start_relay(server: SocketAddr) -> Result<Relay, DemoError> {
    Relay::start(server, RelayConfig::default())
        .await
        .map_err(|e| match e {
            RelayStartError::Bind(io) => DemoError::Relay(io),
            other => DemoError::Relay(std::io::Error::other(other)),
        })
}

fn delivery_latency(
    arrivals: &ArrivalLog,
    n: u64,
    rate: NonZeroU32,
    board_start: Instant,
    kill: Option<Instant>,
    surviving_rtt: Option<Duration>,
    batch_delay: Duration,
) -> DemoLatency {
    let (mut before, mut after, mut later) = (Vec::new(), Vec::new(), Vec::new());
    let mut never_arrived = 0;
    let warm_up = board_start + Duration::from_secs(1);
    // Without a kill (interrupted before halfway) every sample counts as "before".
    let window_end = kill.map(|k| k + Duration::from_secs(1));
    for seq in 0..n {
        let due = board_start + Duration::from_secs_f64(seq as f64 / f64::from(rate.get()));
        let Some(at) = arrivals.arrival(seq) else {
            never_arrived += 1;
            continue;
        };
        let ms = at.saturating_duration_since(due).as_secs_f64() * 1e3;
        if due < warm_up {
            continue;
        } else if kill.is_none_or(|k| due < k) {
            before.push(ms);
        } else if window_end.is_some_and(|w| due < w) {
            after.push(ms);
        } else {
            later.push(ms);
        }
    }
    let before_kill = LatencyFigures::of(before);
    let after_kill = LatencyFigures::of(after);
    let later = LatencyFigures::of(later);
    let p99_spread_ms = match (before_kill, later) {
        (Some(b), Some(l)) => Some((l.p99_ms - b.p99_ms).abs()),
        _ => None,
    };
    let (added_by_kill_ms, max_change_ms) = match (before_kill, after_kill) {
        (Some(b), Some(a)) => (
            Some((a.p99_ms - b.p99_ms).max(0.0)),
            Some(a.max_ms - b.max_ms),
        ),
        _ => (None, None),
    };
    DemoLatency {
        before_kill,
        after_kill,
        later,
        surviving_path_rtt_ms: surviving_rtt.map(|d| d.as_secs_f64() * 1e3),
        added_by_kill_ms,
        max_change_ms,
        p99_spread_ms,
        never_arrived,
        batch_delay_ms: batch_delay.as_secs_f64() * 1e3,
    }
}

/// Prints a summary for people.
fn print_summary(s: &DemoSummary) {
    let st = &s.stages;
    outln!();
    outln!("recorded {} samples into:", st.written);
    for f in &s.files {
        outln!("  {}", f.display());
    }
    outln!("  {}", s.sidecar.display());
    outln!("sample counts at every stage:");
    outln!("  simulated board produced     {:>8}", st.device_produced);
    outln!(
        "  gateway decoded from frames  {:>8}  (device gaps {}, queued {}, spooled {}, dropped {})",
        st.gateway_received,
        st.device_lost,
        st.gateway_queued,
        st.gateway_spooled,
        st.gateway_dropped
    );
    if st.gateway_filtered > 0 {
        outln!(
            "  not sent by request          {:>8}  (the device was stopped from the dashboard; not lost)",
            st.gateway_filtered
        );
    }
    outln!(
        "  sent over KWIK               {:>8}  (re-sent bytes after the path died: {})",
        st.network_sent,
        s.bytes_resent
    );
    outln!(
        "  server received              {:>8}  (duplicates {}, malformed {}, missing {})",
        st.server_received,
        st.server_duplicates,
        st.server_malformed,
        st.server_missing
    );
    outln!("  recorder ring in             {:>8}", st.recorder_in);
    outln!(
        "  rows in the CSV              {:>8}  (recorder dropped {})",
        st.written,
        st.recorder_dropped
    );
    outln!("  confirmed to the gateway     {:>8}", st.acked);
    for p in &s.paths {
        outln!(
            "path {} ({} -> {}){}: {}",
            p.id,
            p.local
                .map_or_else(|| "127.0.0.1".into(), |a| a.to_string()),
            p.via,
            if p.killed { " killed halfway" } else { "" },
            p.state
        );
    }
    let l = &s.latency;
    let fig = |f: Option<LatencyFigures>| {
        f.map_or_else(
            || "-".to_owned(),
            |f| {
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
                    f.p50_ms, f.p99_ms, f.max_ms, f.samples
                )
            },
        )
    };
    outln!(
        "delivery latency, board -> server (first arrival of each sample; includes up to {:.0} ms the gateway holds a sample to batch it, --batch-delay):",
        l.batch_delay_ms
    );
    outln!("  before the kill              {}", fig(l.before_kill));
    outln!("  1 s after the kill           {}", fig(l.after_kill));
    outln!("  later                        {}", fig(l.later));
    if let (Some(added), Some(rtt)) = (l.added_by_kill_ms, l.surviving_path_rtt_ms) {
        let spread = l.p99_spread_ms.unwrap_or(0.0);
        outln!(
            "  the kill added {added:.2} ms to the p99 (max {:+.2} ms); surviving path RTT {rtt:.2} ms, \
             p99 moving by {spread:.2} ms between windows without a failover: {}",
            l.max_change_ms.unwrap_or(0.0),
            if added <= rtt {
                "within one RTT"
            } else if added <= rtt + spread {
                "within one RTT plus the p99's own movement"
            } else {
                "MORE than one RTT plus the p99's own movement"
            }
        );
    }
    if let Some(e) = &s.gateway_error {
        outln!("gateway error: {e}");
    }
    outln!(
        "file equals the simulator's samples value by value: {}",
        if s.file_matches_simulator {
            "yes"
        } else {
            "NO"
        }
    );
    if let Some(at) = s.interrupted_at_s {
        outln!("interrupted at t={at:.1}s: the board stopped early");
    }
    let killed = s.killed_at_s.map_or_else(
        || "no path killed".to_owned(),
        |at| format!("one of two paths killed at t={at:.1}s"),
    );
    if s.ok {
        outln!(
            "OK: nothing was lost ({} of {} samples recorded, {killed})",
            st.written,
            st.device_produced
        );
    } else {
        outln!("FAILED: {} samples lost", s.lost);
    }
}
