//! `kwik-record stream --fleet N`: N simulated devices from one process, each behind its
//! own gateway and KWIK session, for load tests of a recorder server. Several such
//! processes together make a fleet larger than one process can drive.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use kwik_recorder::{
    Gateway, GatewayConfig, GatewayCounts, GeneratorSource, Pacing, RateHz, SampleSource,
    SignalGenerator, SimEfield, SimImu, WireSample,
};

use crate::exit::{Exit, usage};
use crate::runtime::{err, runtime};

/// How often a simulated fleet device delivers what fell due: a board buffering its
/// samples into USB packets does the same, and one process can then drive hundreds of
/// devices (a wake-up per device every 10 ms instead of every millisecond).
const FLEET_BURST: Duration = Duration::from_millis(10);

/// What a fleet did, in all and device by device where something went wrong.
#[derive(Debug, serde::Serialize)]
struct FleetReport {
    devices: usize,
    /// Every counter summed over the devices.
    counts: GatewayCounts,
    /// Devices whose every sample was confirmed on the server's disk.
    lossless_devices: usize,
    /// Samples not confirmed at the end, over all devices.
    undelivered: u64,
    /// Devices that ended with an error, and the error.
    errors: Vec<(String, String)>,
    /// Seconds from the start until the sources ended, and the drain after.
    stream_seconds: f64,
    drain_seconds: f64,
}

/// Runs `n` simulated devices of `kind` (`sim-imu` or `sim-efield`) at `rate`, device
/// ids `<base device>-0000`, `-0001`, ..., each stopping after `limit` samples.
pub(crate) fn run(
    base: GatewayConfig,
    kind: &str,
    n: u32,
    rate: u32,
    limit: Option<u64>,
    json: bool,
) -> Result<ExitCode> {
    let rate = RateHz::try_from(rate).map_err(err)?;
    let rt = runtime()?;
    let _guard = rt.enter();
    let mut gateways = Vec::with_capacity(n as usize);
    for i in 0..n {
        let mut config = base.clone();
        config.key.device = format!("{}-{i:04}", base.key.device);
        if let Some((path, max)) = &base.spool {
            let name = format!("{}-{}.spool", config.key.device, config.key.stream);
            config.spool = Some((path.with_file_name(name), *max));
        }
        let name = config.key.device.clone();
        let gw = match kind {
            "sim-imu" => start(config, SimImu { rate }, limit)?,
            "sim-efield" => start(config, SimEfield { rate }, limit)?,
            other => {
                return Err(usage(format!(
                    "--fleet simulates devices: use --source sim-imu or sim-efield, not {other:?}"
                )));
            }
        };
        gateways.push((name, gw));
    }
    let t0 = Instant::now();
    let mut last = Instant::now();
    while gateways.iter().any(|(_, g)| !g.source_finished()) {
        if crate::interrupt::requested() {
            gateways.iter().for_each(|(_, g)| g.stop_source());
        }
        std::thread::sleep(Duration::from_millis(100));
        if !json && last.elapsed() >= Duration::from_secs(2) {
            last = Instant::now();
            let mut c = GatewayCounts::default();
            gateways.iter().for_each(|(_, g)| c += g.counts());
            // Not eprintln!: a closed stderr must not stop the fleet with a panic.
            let _ = writeln!(
                std::io::stderr(),
                "{:.0}s: {n} devices, {} samples, {} confirmed, {} pending",
                t0.elapsed().as_secs_f64(),
                c.device_samples,
                c.acked,
                c.pending()
            );
        }
    }
    let stream_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let reports = rt.block_on(async {
        let mut v = Vec::with_capacity(gateways.len());
        for (name, g) in gateways {
            v.push((name, g.finish().await));
        }
        v
    });
    let mut report = FleetReport {
        devices: reports.len(),
        counts: GatewayCounts::default(),
        lossless_devices: 0,
        undelivered: 0,
        errors: Vec::new(),
        stream_seconds,
        drain_seconds: t1.elapsed().as_secs_f64(),
    };
    for (name, r) in reports {
        report.counts += r.counts;
        report.undelivered += r.undelivered;
        if r.undelivered == 0 && r.counts.dropped_overflow == 0 {
            report.lossless_devices += 1;
        }
        if let Some(e) = r.error {
            report.errors.push((name, e));
        }
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&report).map_err(err)?);
    } else {
        let c = &report.counts;
        outln!(
            "{} devices: {} samples, confirmed on disk {}, dropped {}, sent {} in {} writes; {} of {} devices lossless",
            report.devices,
            c.device_samples,
            c.acked,
            c.dropped_overflow,
            c.sent,
            c.writes,
            report.lossless_devices,
            report.devices
        );
        for (name, e) in &report.errors {
            outln!("{name}: {e}");
        }
    }
    Ok(match (
        report.lossless_devices == report.devices,
        report.errors.is_empty(),
    ) {
        (false, _) => Exit::DataLost,
        (true, false) => Exit::Environment,
        (true, true) => Exit::Ok,
    }
    .into())
}

fn start<G>(config: GatewayConfig, generator: G, limit: Option<u64>) -> Result<Gateway>
where
    G: SignalGenerator,
    GeneratorSource<G>: SampleSource<Sample = G::Sample>,
    G::Sample: WireSample,
{
    let source = GeneratorSource::new(generator, limit, Pacing::RealTime).with_burst(FLEET_BURST);
    Gateway::start(config, source).map_err(|e| anyhow!("cannot start a gateway: {e}"))
}
