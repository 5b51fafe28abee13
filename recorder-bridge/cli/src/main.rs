//! `kwik-record`: record sensor streams to CSV, list, verify and recover recordings,
//! and the remote commands (`serve`, `stream`, `demo`). Every subcommand is a front end
//! of the `kwik-recorder` library: this package owns the command line (clap), progress
//! display, signal handling and the exit codes.

mod args;
mod demo;
mod export;
mod files;
mod formats;
mod interrupt;
mod record;
mod runtime;
mod serve;
mod stream;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::demo::{DemoArgs, demo};
use crate::export::{ExportArgs, cmd_export};
use crate::files::{cmd_ls, cmd_recover, cmd_verify};
use crate::record::{RecordArgs, cmd_record};
use crate::serve::{ServeArgs, serve};
use crate::stream::{StreamArgs, stream};

#[derive(Debug, Parser)]
#[command(
    name = "kwik-record",
    version,
    about = "Record sensor streams to CSV without losing a sample silently"
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Subcommands, each dispatched in `main` to the module named for it.
#[derive(Debug, Subcommand)]
enum Command {
    /// Record a board on a serial port, or a simulated source, to files.
    Record(RecordArgs),
    /// List recordings with duration, samples, dropped, size and state.
    Ls {
        /// Folder to search (default `recordings`).
        dir: Option<PathBuf>,
    },
    /// Repair a recording whose process died (cut partial row, add footer, finalise sidecar).
    Recover {
        /// A data file of the recording, or its .meta.json.
        file: PathBuf,
    },
    /// Check a recording against its sidecar; exits non-zero on any mismatch.
    Verify {
        /// A data file of the recording, or its .meta.json.
        file: PathBuf,
    },
    /// Write a finished CSV recording again in another layout (Parquet), with its own
    /// sidecar.
    Export(ExportArgs),
    /// Loopback demo: recorder server, simulated XIAO and a two-path gateway; one path
    /// is killed halfway; exits non-zero if any sample was lost.
    Demo(DemoArgs),
    /// Recorder server: record the sensor streams gateways send over KWIK.
    Serve(ServeArgs),
    /// Gateway: stream a device (serial, BLE or simulator) to a recorder server.
    Stream(StreamArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let result = match cli.command {
        Command::Record(a) => cmd_record(a, json),
        Command::Ls { dir } => cmd_ls(dir.as_deref().unwrap_or(Path::new("recordings")), json),
        Command::Recover { file } => cmd_recover(&file, json),
        Command::Verify { file } => cmd_verify(&file, json),
        Command::Export(a) => cmd_export(a, json),
        Command::Demo(a) => demo(a, json),
        Command::Serve(a) => serve(a, json),
        Command::Stream(a) => stream(a, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
