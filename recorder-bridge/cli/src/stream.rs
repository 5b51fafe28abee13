//! `kwik-record stream`: the gateway, streaming a device (serial, BLE or simulator) to
//! a recorder server until the source ends, `--duration` passes, Ctrl-C or SIGTERM.

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use kwik_recorder::{
    DEFAULT_SERVER_NAME, Gateway, GatewayConfig, GatewayReport, Pacing, RateHz, SampleSource,
    SimEfieldSource, SimImuConfig, StreamKey, WireFormat, WireSample, load_ca, serial, sim_imu,
};

use crate::args::SchedulerArg;
use crate::exit::{Exit, usage};
use crate::runtime::{err, runtime};

/// File layouts on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FormatArg {
    /// Standard CSV.
    Csv,
    /// Legacy LabVIEW blocks (E-field only).
    Labview,
}

/// `--path LOCAL[@REMOTE]`.
fn parse_path(s: &str) -> Result<kwik::PathSpec, String> {
    let addr = |a: &str, what: &str| {
        a.parse::<SocketAddr>()
            .map_err(|e| format!("{what} address {a:?}: {e} (expected e.g. 192.168.1.20:0)"))
    };
    Ok(match s.split_once('@') {
        Some((local, remote)) => {
            kwik::PathSpec::local(addr(local, "local")?).with_remote(addr(remote, "remote")?)
        }
        None => kwik::PathSpec::local(addr(s, "local")?),
    })
}

/// `kwik-record stream`.
#[derive(Debug, clap::Args)]
pub(crate) struct StreamArgs {
    /// Recorder server, HOST:PORT. Repeat it for a fleet of servers (sharing one CA
    /// and object store): the gateway moves to the next when its server cannot be
    /// reached, its spool bridging the gap.
    #[arg(long, required = true)]
    to: Vec<String>,
    /// Device: serial:PATH, ble:NAME, sim-imu or sim-efield.
    #[arg(long)]
    source: String,
    /// An extra path (repeat for more uplinks): its local address, e.g.
    /// 192.168.1.20:0, optionally `@` another address of the server (or a relay in
    /// front of it) for that path, e.g. 192.168.1.20:0@10.0.0.5:4433 (default: --to).
    #[arg(long = "path", value_name = "LOCAL[@REMOTE]", value_parser = parse_path)]
    paths: Vec<kwik::PathSpec>,
    /// Scheduler of the sensor stream.
    #[arg(long, value_enum, default_value = "min-rtt")]
    scheduler: SchedulerArg,
    /// Spool folder used while the server is unreachable or slow.
    #[arg(long)]
    spool: Option<PathBuf>,
    /// Maximum spool size in MiB.
    #[arg(long, default_value_t = 256)]
    spool_mib: u64,
    /// The server's CA certificate (DER), e.g. recordings/tls/ca.der.
    #[arg(long, default_value = "recordings/tls/ca.der")]
    ca: PathBuf,
    /// Name in the server's certificate.
    #[arg(long, default_value = DEFAULT_SERVER_NAME)]
    server_name: String,
    /// Device id (the server's folder name). Default: derived from the source.
    #[arg(long)]
    device: Option<String>,
    /// Stream name.
    #[arg(long, default_value = "imu")]
    stream: String,
    /// File-name prefix on the server.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Stop after this long of source data (`10s`, `2m`, `1h` or bare seconds;
    /// default: until Ctrl-C, SIGTERM or the device ends). `--seconds` is an older
    /// name of this flag.
    #[arg(long, alias = "seconds", value_parser = crate::args::parse_duration)]
    duration: Option<Duration>,
    /// Sample rate of the simulators in Hz.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seed of the simulated signals.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// File layout on the server.
    #[arg(long, value_enum, default_value = "csv")]
    format: FormatArg,
    /// Size limit per file on the server in bytes.
    #[arg(long)]
    size_limit: Option<u64>,
    /// How long one connection attempt may take before it is retried (`10s`,
    /// `500ms`, or bare seconds).
    #[arg(long, value_parser = crate::args::parse_duration, default_value = "10s")]
    connect_timeout: Duration,
    /// Longest a sample waits for others to share its write to the server (`10ms`,
    /// `0` for none): many samples per message and per write let one server take many
    /// devices; the delivery latency grows by at most this much.
    #[arg(long, value_parser = crate::args::parse_duration, default_value = "10ms")]
    batch_delay: Duration,
    /// Simulate this many devices from this process (sim-imu or sim-efield), each
    /// behind its own gateway and session, device ids `<device>-0000`, `-0001`, ...:
    /// a load generator for a recorder server.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    fleet: u32,
}

/// Runs `kwik-record stream` until the source ends, `--duration` passes, Ctrl-C or
/// SIGTERM; then delivers what is left and stops the remote recording. Exit 1 if a
/// sample was not confirmed on the server's disk.
pub(crate) fn stream(a: StreamArgs, json: bool) -> Result<ExitCode> {
    let mut servers = Vec::new();
    for to in &a.to {
        servers.push(
            to.to_socket_addrs()
                .map_err(|e| anyhow!("cannot resolve --to {to}: {e}"))?
                .next()
                .ok_or_else(|| anyhow!("--to {to} resolves to no address"))?,
        );
    }
    let server = servers.remove(0);
    let ca = load_ca(&a.ca).map_err(|e| {
        anyhow!("{e}; copy the server's ca.der here or pass --ca (the server prints its path)")
    })?;
    let client = kwik::ClientConfig::with_root_certificates([ca]).map_err(err)?;
    let (kind, arg) = a.source.split_once(':').unwrap_or((a.source.as_str(), ""));
    let device = a.device.clone().unwrap_or_else(|| match kind {
        "serial" => std::path::Path::new(arg).file_name().map_or_else(
            || "serial".into(),
            |n| {
                n.to_string_lossy()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            },
        ),
        "ble" => format!(
            "ble-{}",
            arg.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        ),
        other => other.to_owned(),
    });
    let key = StreamKey {
        device,
        stream: a.stream.clone(),
    };
    let mut config = GatewayConfig::new(server, client, key);
    config.server_name = a.server_name.clone();
    config.extra_paths = a.paths.clone();
    config.fallback_servers = servers;
    config.scheduler = Some(a.scheduler.into());
    config.prefix = a.prefix.clone();
    config.size_limit = a.size_limit;
    if a.connect_timeout.is_zero() {
        return Err(usage("--connect-timeout must be longer than zero"));
    }
    config.connect_timeout = a.connect_timeout;
    config.batch_delay = a.batch_delay;
    config.format = match a.format {
        FormatArg::Csv => WireFormat::Csv,
        FormatArg::Labview => WireFormat::Labview,
    };
    if let Some(dir) = &a.spool {
        config.spool = Some((
            dir.join(format!("{}-{}.spool", config.key.device, config.key.stream)),
            a.spool_mib << 20,
        ));
    }
    let rate = NonZeroU32::new(a.rate).ok_or_else(|| usage("--rate must be at least 1"))?;
    let limit = a
        .duration
        .map(|d| (d.as_secs_f64() * f64::from(a.rate)).round().max(1.0) as u64);
    crate::interrupt::install();
    if a.fleet > 1 {
        return crate::fleet::run(config, kind, a.fleet, a.rate, limit, json);
    }
    let rt = runtime()?;
    let report = match kind {
        "sim-imu" => rt.block_on(run_gateway(
            config,
            sim_imu(SimImuConfig {
                seed: a.seed,
                rate_hz: rate,
                limit,
                real_time: true,
            }),
            None,
            json,
        ))?,
        "sim-efield" => rt.block_on(run_gateway(
            config,
            SimEfieldSource::efield(
                RateHz::try_from(a.rate).map_err(err)?,
                limit,
                Pacing::RealTime,
            ),
            None,
            json,
        ))?,
        "serial" => {
            let src = serial(std::path::Path::new(arg))
                .map_err(|e| anyhow!("cannot open serial port {arg}: {e}"))?;
            rt.block_on(run_gateway(config, src, a.duration, json))?
        }
        "ble" => ble_stream(&rt, config, arg, a.duration, json)?,
        _ => {
            return Err(usage(format!(
                "unknown --source {:?}; use serial:PATH, ble:NAME, sim-imu or sim-efield",
                a.source
            )));
        }
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&report).map_err(err)?);
    } else {
        let c = &report.counts;
        outln!(
            "device {} samples ({} lost on the device side, {} corrupt frames); queued {}, spooled {}, dropped {}; sent {} ({} re-sent); confirmed on disk {}",
            c.device_samples,
            c.device_lost,
            c.device_errors,
            c.queued,
            c.spooled,
            c.dropped_overflow,
            c.sent,
            c.resent,
            c.acked
        );
        if let Some(r) = &report.server_report {
            if let Some(files) = r.get("files") {
                outln!("server files: {files}");
            }
        }
        if let Some(e) = &report.error {
            outln!("error: {e}");
        }
    }
    let lossless = report.undelivered == 0 && report.counts.dropped_overflow == 0;
    Ok(match (lossless, &report.error) {
        (false, _) => Exit::DataLost,
        // Nothing lost, but the server was not reachable to the end.
        (true, Some(_)) => Exit::Environment,
        (true, None) => Exit::Ok,
    }
    .into())
}

#[cfg(feature = "ble")]
fn ble_stream(
    rt: &tokio::runtime::Runtime,
    config: GatewayConfig,
    name: &str,
    duration: Option<Duration>,
    json: bool,
) -> Result<GatewayReport> {
    let src = rt
        .block_on(kwik_recorder::BleSource::connect(
            name,
            Duration::from_secs(15),
        ))
        .map_err(err)?;
    rt.block_on(run_gateway(config, src, duration, json))
}

#[cfg(not(feature = "ble"))]
fn ble_stream(
    _rt: &tokio::runtime::Runtime,
    _config: GatewayConfig,
    _name: &str,
    _duration: Option<Duration>,
    _json: bool,
) -> Result<GatewayReport> {
    Err(anyhow!(
        "this kwik-record was built without BLE; rebuild with `--features ble` (needs a BLE adapter and BlueZ)"
    ))
}

async fn run_gateway<Src>(
    config: GatewayConfig,
    source: Src,
    stop_after: Option<Duration>,
    json: bool,
) -> Result<GatewayReport>
where
    Src: SampleSource,
    Src::Sample: WireSample,
{
    let gw = Arc::new(Gateway::start(config, source).map_err(err)?);
    let start = Instant::now();
    let mut last = Instant::now();
    while !gw.source_finished() {
        if crate::interrupt::requested() || stop_after.is_some_and(|d| start.elapsed() >= d) {
            gw.stop_source();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !json && last.elapsed() >= Duration::from_secs(2) {
            last = Instant::now();
            let c = gw.counts();
            // Not eprintln!: a closed stderr must not stop the stream with a panic.
            let _ = writeln!(
                std::io::stderr(),
                "{:.0}s: {} samples, {} confirmed, {} pending ({} spooled now)",
                start.elapsed().as_secs_f64(),
                c.device_samples,
                c.acked,
                c.pending(),
                gw.spooled_now()
            );
        }
    }
    match Arc::try_unwrap(gw) {
        Ok(gw) => Ok(gw.finish().await),
        Err(_) => Err(anyhow!("internal: gateway still shared")),
    }
}
