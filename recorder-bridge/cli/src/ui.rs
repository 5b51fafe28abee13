//! The web dashboard on the command line: the `--ui ADDR` / `--ui-token` flags of
//! `record`, `serve` and `demo`, and the `ui` subcommand (a recordings browser without
//! recording). Every command starts its dashboard through [`open`] and closes it
//! through [`close`], so the flags mean the same everywhere.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kwik_recorder::{
    AccessToken, Dashboard, DashboardConfig, DashboardParts, LiveRecorder, Recording,
    RecordingConfig, RecordingSummary, Taps,
};

use crate::runtime::{err, runtime};

/// `--ui` and `--ui-token`, flattened into the commands that can show a dashboard.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct UiArgs {
    /// Serve the web dashboard (live plots, recorder panel, recordings) on this address,
    /// e.g. 127.0.0.1:8080. Any address other than loopback requires the access token
    /// (generated and printed unless --ui-token gives one).
    #[arg(long, value_name = "ADDR")]
    pub(crate) ui: Option<SocketAddr>,
    /// Access token of the dashboard (letters, digits, - _ . ~); required by every API
    /// request and the live WebSocket.
    #[arg(long, value_name = "TOKEN", requires = "ui", value_parser = parse_token)]
    pub(crate) ui_token: Option<AccessToken>,
}

/// `kwik-record ui`.
#[derive(Debug, clap::Args)]
pub(crate) struct UiCommandArgs {
    /// Recordings folder to browse.
    #[arg(long, default_value = "recordings")]
    out: PathBuf,
    /// Address of the dashboard.
    #[arg(long = "ui", value_name = "ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Access token (see `record --ui-token`).
    #[arg(long, value_name = "TOKEN", value_parser = parse_token)]
    ui_token: Option<AccessToken>,
    /// Stop after this long (`10s`, `2m`, `1h` or bare seconds; default: until Ctrl-C
    /// or SIGTERM).
    #[arg(long, value_parser = crate::args::parse_duration)]
    duration: Option<Duration>,
}

fn parse_token(s: &str) -> Result<AccessToken, String> {
    AccessToken::try_from(s).map_err(|e| e.to_string())
}

/// Starts the dashboard `ui` asks for (none without `--ui`) over the recordings in
/// `out`, and prints its URL. Call inside the tokio runtime.
pub(crate) async fn open(
    ui: &UiArgs,
    out: &Path,
    parts: DashboardParts,
    json: bool,
) -> Result<Option<Dashboard>> {
    let Some(addr) = ui.ui else {
        return Ok(None);
    };
    let config = DashboardConfig {
        addr,
        token: ui.ui_token.clone(),
        out_dir: out.to_path_buf(),
        ..DashboardConfig::default()
    };
    let d = Dashboard::bind(config, parts).await.map_err(err)?;
    if json {
        outln!("{}", serde_json::json!({ "dashboard": d.url() }));
    } else {
        outln!("dashboard: {}", d.url());
    }
    Ok(Some(d))
}

/// Closes a dashboard [`open`] started.
pub(crate) async fn close(d: Option<Dashboard>) {
    if let Some(d) = d {
        d.shutdown().await;
    }
}

/// Keeps the process (and its dashboard) up until Ctrl-C, saying so once.
pub(crate) async fn until_interrupted(what: &str, json: bool, duration: Option<Duration>) {
    if !json {
        match duration {
            Some(d) => outln!("{what}; the dashboard stays up for {d:?} or until Ctrl-C"),
            None => outln!("{what}; the dashboard stays up until Ctrl-C"),
        }
    }
    let start = tokio::time::Instant::now();
    while !crate::interrupt::requested() && duration.is_none_or(|d| start.elapsed() < d) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `record --ui`: the recording the command line started, shown and controlled by the
/// dashboard (Stop, then Start again with other settings) until Ctrl-C or until a
/// source ends. Returns the last recording's summary.
pub(crate) fn record(
    ui: &UiArgs,
    recording: Recording,
    config: RecordingConfig,
    taps: Taps,
    json: bool,
    source_ended: impl Fn() -> bool,
) -> Result<RecordingSummary> {
    let recorder = Arc::new(LiveRecorder::new(config.clone(), taps));
    let out = config.out_dir.clone();
    if let Err(r) = recorder.adopt(recording, config) {
        // A fresh recorder holds no recording; should it ever, record as without --ui.
        return Ok(r.stop());
    }
    let rt = runtime()?;
    rt.block_on(async {
        let parts = DashboardParts {
            recorder: Some(recorder.clone()),
            devices: None,
        };
        let dashboard = open(ui, &out, parts, json).await?;
        let mut said = false;
        while !crate::interrupt::requested() && !source_ended() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if !said && !recorder.is_recording() {
                said = true;
                if !json {
                    outln!("recording ended; start another from the dashboard, Ctrl-C to quit");
                }
            }
        }
        close(dashboard).await;
        Ok::<_, anyhow::Error>(())
    })?;
    let reason = if source_ended() {
        "source ended"
    } else {
        "stopped"
    };
    recorder
        .shutdown(reason)
        .context("no recording was made while the dashboard ran")
}

/// `kwik-record ui`: browse, download, verify and delete recordings, until Ctrl-C,
/// SIGTERM or `--duration`.
pub(crate) fn cmd_ui(a: UiCommandArgs, json: bool) -> Result<ExitCode> {
    let rt = runtime()?;
    crate::interrupt::install();
    rt.block_on(async {
        let ui = UiArgs {
            ui: Some(a.addr),
            ui_token: a.ui_token,
        };
        let dashboard = open(&ui, &a.out, DashboardParts::default(), json).await?;
        until_interrupted(&format!("browsing {}", a.out.display()), json, a.duration).await;
        close(dashboard).await;
        Ok(ExitCode::SUCCESS)
    })
}
