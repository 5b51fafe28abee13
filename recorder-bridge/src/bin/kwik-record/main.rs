//! `kwik-record`: record sensor streams to CSV, list, verify and recover recordings,
//! and the remote commands (`serve`, `stream`, `demo`, from `kwik_recorder::remote::cli`).

mod files;
mod record;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::files::{cmd_ls, cmd_recover, cmd_verify};
use crate::record::{RecordArgs, cmd_record};

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

/// Subcommands. New ones (e.g. remote `serve`, `stream`, `demo`) are added here and
/// dispatched in `main`.
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
    /// Loopback demo: recorder server, simulated XIAO and a two-path gateway; one path
    /// is killed halfway; exits non-zero if any sample was lost.
    Demo(kwik_recorder::remote::cli::DemoArgs),
    /// Recorder server: record the sensor streams gateways send over KWIK.
    Serve(kwik_recorder::remote::cli::ServeArgs),
    /// Gateway: stream a device (serial, BLE or simulator) to a recorder server.
    Stream(kwik_recorder::remote::cli::StreamArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let result = match cli.command {
        Command::Record(a) => cmd_record(a, json),
        Command::Ls { dir } => cmd_ls(dir.as_deref().unwrap_or(Path::new("recordings")), json),
        Command::Recover { file } => cmd_recover(&file, json),
        Command::Verify { file } => cmd_verify(&file, json),
        Command::Demo(a) => kwik_recorder::remote::cli::demo(a, json).map_err(Into::into),
        Command::Serve(a) => kwik_recorder::remote::cli::serve(a, json).map_err(Into::into),
        Command::Stream(a) => kwik_recorder::remote::cli::stream(a, json).map_err(Into::into),
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
