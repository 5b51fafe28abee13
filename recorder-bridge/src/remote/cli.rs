//! Command-line front ends of remote recording: `serve`, `stream` and `demo`
//! (argument structs for `clap` and their runners; the `kwik-record` binary only
//! dispatches to them).

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::remote::demo::{DemoConfig, print_summary, run_demo};
use crate::remote::gateway::{Gateway, GatewayConfig, GatewayReport};
use crate::remote::server::{RecorderServer, ServerConfig};
use crate::remote::source::{SampleSource, SimEfieldSource, SimImuConfig, serial, sim_imu};
use crate::remote::tls::{CA_FILE, DEFAULT_SERVER_NAME, ServerIdentity, load_ca};
use crate::remote::wire::{StreamKey, WireFormat};
use crate::source::RateHz;

/// An error of a remote-recording command, with a message that says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

fn err(e: impl std::fmt::Display) -> CliError {
    CliError(e.to_string())
}

/// Scheduler choices on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum SchedulerArg {
    /// Every byte on every path (lowest latency through a path failure).
    Redundant,
    /// The path with the lowest RTT first, spilling to the others.
    MinRtt,
    /// All paths in proportion to their speed.
    Aggregate,
    /// One path; the others only when it dies.
    Backup,
}

impl From<SchedulerArg> for kwik::Scheduler {
    fn from(s: SchedulerArg) -> Self {
        match s {
            SchedulerArg::Redundant => kwik::Scheduler::Redundant,
            SchedulerArg::MinRtt => kwik::Scheduler::MinRtt,
            SchedulerArg::Aggregate => kwik::Scheduler::Aggregate,
            SchedulerArg::Backup => kwik::Scheduler::Backup,
        }
    }
}

/// File layouts on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum FormatArg {
    /// Standard CSV.
    Csv,
    /// Legacy LabVIEW blocks (E-field only).
    Labview,
}

/// `kwik-record serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// UDP address to listen on.
    #[arg(long, default_value = "0.0.0.0:4433")]
    pub listen: SocketAddr,
    /// Root folder; each device records into `OUT/<device>/YYYY-MM-DD/`.
    #[arg(long, default_value = "recordings")]
    pub out: PathBuf,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9464).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Folder with ca.der, server.der and server.key.der; created with a new CA if
    /// missing. Default OUT/tls. Gateways need its ca.der (`stream --ca`).
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// Extra DNS names or IP addresses for a newly generated server certificate.
    #[arg(long = "name")]
    pub names: Vec<String>,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<f64>,
}

/// `kwik-record stream`.
#[derive(Debug, clap::Args)]
pub struct StreamArgs {
    /// Recorder server, HOST:PORT.
    #[arg(long)]
    pub to: String,
    /// Device: serial:PATH, ble:NAME, sim-imu or sim-efield.
    #[arg(long)]
    pub source: String,
    /// Local address of an extra path (repeat for more uplinks), e.g. 192.168.1.20:0.
    #[arg(long = "path")]
    pub paths: Vec<SocketAddr>,
    /// Scheduler of the sensor stream.
    #[arg(long, value_enum, default_value = "min-rtt")]
    pub scheduler: SchedulerArg,
    /// Spool folder used while the server is unreachable or slow.
    #[arg(long)]
    pub spool: Option<PathBuf>,
    /// Maximum spool size in MiB.
    #[arg(long, default_value_t = 256)]
    pub spool_mib: u64,
    /// The server's CA certificate (DER), e.g. recordings/tls/ca.der.
    #[arg(long, default_value = "recordings/tls/ca.der")]
    pub ca: PathBuf,
    /// Name in the server's certificate.
    #[arg(long, default_value = DEFAULT_SERVER_NAME)]
    pub server_name: String,
    /// Device id (the server's folder name). Default: derived from the source.
    #[arg(long)]
    pub device: Option<String>,
    /// Stream name.
    #[arg(long, default_value = "imu")]
    pub stream: String,
    /// File-name prefix on the server.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Stop after this many seconds of source data (default: until Ctrl-C or the
    /// device ends).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Sample rate of the simulators in Hz.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Seed of the simulated signals.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// File layout on the server.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: FormatArg,
    /// Size limit per file on the server in bytes.
    #[arg(long)]
    pub size_limit: Option<u64>,
    /// How long one connection attempt may take before it is retried (`10s`,
    /// `500ms`, or bare seconds).
    #[arg(long, value_parser = crate::args::parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
}

/// `kwik-record demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How long the simulated board samples (`10s`, `500ms`, or bare seconds).
    #[arg(long, value_parser = crate::args::parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Sample rate of the simulated board in Hz.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Output folder.
    #[arg(long, default_value = "recordings/demo")]
    pub out: PathBuf,
    /// Scheduler of the sensor stream (default redundant: every sample on both
    /// paths, so the killed path adds neither loss nor latency).
    #[arg(long, value_enum, default_value = "redundant")]
    pub scheduler: SchedulerArg,
    /// Seed of the simulated signals.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("cannot start the async runtime: {e}")))
}

/// Runs `kwik-record demo`. Exit code 0 only if nothing was lost.
pub fn demo(a: DemoArgs, json: bool) -> Result<ExitCode, CliError> {
    if a.duration.is_zero() {
        return Err(CliError("--duration must be longer than zero".into()));
    }
    let rate =
        NonZeroU32::new(a.rate).ok_or_else(|| CliError("--rate must be at least 1".into()))?;
    let config = DemoConfig {
        duration: a.duration,
        rate_hz: rate,
        out_dir: a.out,
        scheduler: a.scheduler.into(),
        seed: a.seed,
        verbose: !json,
    };
    let summary = runtime()?.block_on(run_demo(config)).map_err(err)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary).map_err(err)?);
    } else {
        print_summary(&summary);
    }
    Ok(if summary.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `kwik-record serve` until Ctrl-C (or `--seconds`).
pub fn serve(a: ServeArgs, json: bool) -> Result<ExitCode, CliError> {
    let tls_dir = a.tls_dir.clone().unwrap_or_else(|| a.out.join("tls"));
    let identity = match ServerIdentity::load(&tls_dir) {
        Ok(i) => i,
        Err(_) => {
            let i = ServerIdentity::generate(&a.names).map_err(err)?;
            i.save(&tls_dir).map_err(err)?;
            i
        }
    };
    let rt = runtime()?;
    crate::interrupt::install();
    rt.block_on(async move {
        if let Some(m) = a.metrics {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(m)
                .install()
                .map_err(|e| CliError(format!("cannot serve metrics on {m}: {e}")))?;
        }
        let config = ServerConfig {
            out_dir: a.out.clone(),
            ..ServerConfig::default()
        };
        let server = RecorderServer::bind(a.listen, identity.server_config().map_err(err)?, config)
            .map_err(err)?;
        let addr = server.local_addr().map_err(err)?;
        if json {
            println!(
                "{}",
                serde_json::json!({"listening": addr, "out": a.out, "ca": tls_dir.join(CA_FILE)})
            );
        } else {
            println!(
                "recorder server listening on {addr}, recording into {}; gateways need --ca {}",
                a.out.display(),
                tls_dir.join(CA_FILE).display()
            );
        }
        let start = Instant::now();
        while !crate::interrupt::requested()
            && a.seconds.is_none_or(|s| start.elapsed().as_secs_f64() < s)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.publish_metrics();
        }
        let reports = server.shutdown().await;
        // stdout may be gone (a closed pipe) by now; the files are what matters.
        let mut o = std::io::stdout();
        if json {
            let _ = writeln!(o, "{}", serde_json::to_string(&reports).map_err(err)?);
        } else {
            for r in &reports {
                let _ = writeln!(
                    o,
                    "{}/{}: {} samples written, {} duplicates, {} malformed, {} missing, {} lost in the recorder -> {}",
                    r.device,
                    r.stream,
                    r.written,
                    r.counts.duplicates,
                    r.counts.malformed,
                    r.counts.missing,
                    r.recorder_dropped,
                    r.files.first().map_or_else(String::new, |f| f.display().to_string())
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `kwik-record stream` until the source ends, `--seconds` pass or Ctrl-C; then
/// delivers what is left and stops the remote recording.
pub fn stream(a: StreamArgs, json: bool) -> Result<ExitCode, CliError> {
    let server =
        a.to.to_socket_addrs()
            .map_err(|e| CliError(format!("cannot resolve --to {}: {e}", a.to)))?
            .next()
            .ok_or_else(|| CliError(format!("--to {} resolves to no address", a.to)))?;
    let ca = load_ca(&a.ca).map_err(|e| {
        CliError(format!(
            "{e}; copy the server's ca.der here or pass --ca (the server prints its path)"
        ))
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
    config.extra_paths = a.paths.iter().map(|p| kwik::PathSpec::local(*p)).collect();
    config.scheduler = Some(a.scheduler.into());
    config.prefix = a.prefix.clone();
    config.size_limit = a.size_limit;
    if a.connect_timeout.is_zero() {
        return Err(CliError(
            "--connect-timeout must be longer than zero".into(),
        ));
    }
    config.connect_timeout = a.connect_timeout;
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
    let rate =
        NonZeroU32::new(a.rate).ok_or_else(|| CliError("--rate must be at least 1".into()))?;
    let limit = a
        .seconds
        .map(|s| (s * f64::from(a.rate)).round().max(1.0) as u64);
    let rt = runtime()?;
    crate::interrupt::install();
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
            SimEfieldSource::new(RateHz::try_from(a.rate).map_err(err)?, limit, true),
            None,
            json,
        ))?,
        "serial" => {
            let src = serial(std::path::Path::new(arg))
                .map_err(|e| CliError(format!("cannot open serial port {arg}: {e}")))?;
            rt.block_on(run_gateway(
                config,
                src,
                a.seconds.map(Duration::from_secs_f64),
                json,
            ))?
        }
        "ble" => ble_stream(&rt, config, arg, a.seconds, json)?,
        _ => {
            return Err(CliError(format!(
                "unknown --source {:?}; use serial:PATH, ble:NAME, sim-imu or sim-efield",
                a.source
            )));
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(err)?);
    } else {
        let c = &report.counts;
        println!(
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
                println!("server files: {files}");
            }
        }
        if let Some(e) = &report.error {
            println!("error: {e}");
        }
    }
    let complete =
        report.error.is_none() && report.undelivered == 0 && report.counts.dropped_overflow == 0;
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(feature = "ble")]
fn ble_stream(
    rt: &tokio::runtime::Runtime,
    config: GatewayConfig,
    name: &str,
    seconds: Option<f64>,
    json: bool,
) -> Result<GatewayReport, CliError> {
    let src = rt
        .block_on(crate::remote::ble::BleSource::connect(
            name,
            Duration::from_secs(15),
        ))
        .map_err(err)?;
    rt.block_on(run_gateway(
        config,
        src,
        seconds.map(Duration::from_secs_f64),
        json,
    ))
}

#[cfg(not(feature = "ble"))]
fn ble_stream(
    _rt: &tokio::runtime::Runtime,
    _config: GatewayConfig,
    _name: &str,
    _seconds: Option<f64>,
    _json: bool,
) -> Result<GatewayReport, CliError> {
    Err(CliError(
        "this kwik-record was built without BLE; rebuild with `--features ble` (needs a BLE adapter and BlueZ)".into(),
    ))
}

async fn run_gateway<Src: SampleSource>(
    config: GatewayConfig,
    source: Src,
    stop_after: Option<Duration>,
    json: bool,
) -> Result<GatewayReport, CliError> {
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
            eprintln!(
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
        Err(_) => Err(CliError("internal: gateway still shared".into())),
    }
}
