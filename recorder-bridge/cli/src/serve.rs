//! `kwik-record serve`: the recorder server, recording the sensor streams gateways send
//! over KWIK until Ctrl-C, SIGTERM or `--duration`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use kwik_recorder::{CA_FILE, RecorderServer, RecorderServerConfig, ServerIdentity};

use crate::exit::Exit;
use crate::runtime::{err, runtime};

/// `kwik-record serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// UDP address to listen on.
    #[arg(long, default_value = "0.0.0.0:4433")]
    listen: SocketAddr,
    /// Root folder; each device records into `OUT/<device>/YYYY-MM-DD/`.
    #[arg(long, default_value = "recordings")]
    out: PathBuf,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9464).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Folder with ca.der, server.der and server.key.der; created with a new CA if
    /// missing. Default OUT/tls. Gateways need its ca.der (`stream --ca`).
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// Extra DNS names or IP addresses for a newly generated server certificate.
    #[arg(long = "name")]
    names: Vec<String>,
    /// Stop after this long (`10s`, `2m`, `1h` or bare seconds; default: until
    /// Ctrl-C or SIGTERM). `--seconds` is an older name of this flag.
    #[arg(long, alias = "seconds", value_parser = crate::args::parse_duration)]
    duration: Option<Duration>,
    /// Record every stream in this layout, whatever the gateways ask (default: what each
    /// gateway asks with `stream --format`, CSV or LabVIEW).
    #[arg(long, value_enum)]
    format: Option<crate::formats::FormatKind>,
    /// fsync the data at least this often (the most a crash of the server can lose
    /// beyond what the gateways still hold; with Parquet and MCAP also how often the
    /// gateways' samples are confirmed).
    #[arg(long, value_parser = crate::args::parse_duration, default_value = "1s")]
    sync_interval: Duration,
    #[command(flatten)]
    ui: crate::ui::UiArgs,
    #[command(flatten)]
    store: crate::upload::UploadArgs,
}

/// Runs `kwik-record serve` until Ctrl-C, SIGTERM or `--duration`. Exit 1 if the
/// recorder dropped a sample it had received.
pub(crate) fn serve(a: ServeArgs, json: bool) -> Result<ExitCode> {
    let tls_dir = a.tls_dir.clone().unwrap_or_else(|| a.out.join("tls"));
    let identity = match ServerIdentity::load(&tls_dir) {
        Ok(i) => i,
        Err(_) => {
            let i = ServerIdentity::generate(&a.names).map_err(err)?;
            i.save(&tls_dir).map_err(err)?;
            i
        }
    };
    // Recordings a killed server left: repaired before anything records here, so that
    // they count as ended (and go to the store with the rest).
    for (sidecar, r) in kwik_recorder::recover_interrupted(&a.out) {
        match r {
            Ok(r) => {
                tracing::info!(sidecar = %sidecar.display(), samples = r.samples, "recovered an interrupted recording")
            }
            Err(e) => {
                tracing::warn!(sidecar = %sidecar.display(), error = %e, "cannot recover an interrupted recording")
            }
        }
    }
    let rt = runtime()?;
    let upload = a.store.start(&a.out)?;
    crate::interrupt::install();
    rt.block_on(async move {
        if let Some(m) = a.metrics {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(m)
                .install()
                .map_err(|e| anyhow!("cannot serve metrics on {m}: {e}"))?;
        }
        let mut config = RecorderServerConfig {
            out_dir: a.out.clone(),
            format: a.format.map(crate::formats::FormatKind::with_defaults),
            ..RecorderServerConfig::default()
        };
        config.recording.sync_interval = a.sync_interval;
        let server = RecorderServer::bind(a.listen, identity.server_config().map_err(err)?, config)
            .map_err(err)?;
        let addr = server.local_addr().map_err(err)?;
        if json {
            outln!(
                "{}",
                serde_json::json!({"listening": addr, "out": a.out, "ca": tls_dir.join(CA_FILE)})
            );
        } else {
            outln!(
                "recorder server listening on {addr}, recording into {}; gateways need --ca {}",
                a.out.display(),
                tls_dir.join(CA_FILE).display()
            );
        }
        let devices = kwik_recorder::DashboardParts {
            recorder: None,
            devices: Some(std::sync::Arc::new(server.reports_handle())),
        };
        let dashboard = crate::ui::open(&a.ui, &a.out, devices, json).await?;
        let start = Instant::now();
        while !crate::interrupt::requested()
            && a.duration.is_none_or(|d| start.elapsed() < d)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.publish_metrics();
        }
        crate::ui::close(dashboard).await;
        let reports = server.shutdown().await;
        if json {
            outln!("{}", serde_json::to_string(&reports).map_err(err)?);
        } else {
            for r in &reports {
                outln!(
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
        let lost: u64 = reports.iter().map(|r| r.recorder_dropped).sum();
        let exit = Exit::lossless(lost == 0);
        let Some(upload) = upload else {
            return Ok(exit.into());
        };
        let done = tokio::task::spawn_blocking(move || upload.finish())
            .await
            .map_err(err)?;
        if json {
            outln!("{}", serde_json::json!({ "upload": done.report }));
        } else {
            outln!("{}", done.line());
        }
        Ok(done.exit(exit).into())
    })
}
