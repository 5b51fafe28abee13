//! `kwik-record`: record sensor streams to CSV, list, verify and recover recordings,
//! and the remote commands (`serve`, `stream`, `demo`). Every subcommand is a front end
//! of the `kwik-recorder` library: this package owns the command line (clap), progress
//! display, signal handling and the exit codes ([`exit`]: 0 ok, 1 data lost, 2 usage,
//! 3 environment).

// First, so that `outln!` is in scope in every module below.
#[macro_use]
mod out;

mod args;
mod completions;
mod config_file;
mod config_print;
mod demo;
mod exit;
mod export;
mod files;
mod fleet;
mod formats;
mod interrupt;
mod logs;
mod record;
mod runtime;
mod serve;
mod stream;
mod ui;
mod upload;

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::completions::{cmd_completions, cmd_man};
use crate::config_print::{ConfigCommand, cmd_config};
use crate::demo::{DemoArgs, demo};
use crate::exit::Exit;
use crate::export::{ExportArgs, cmd_export};
use crate::files::{cmd_ls, cmd_recover, cmd_verify};
use crate::logs::LogFormat;
use crate::record::{RecordArgs, cmd_record};
use crate::serve::{ServeArgs, serve};
use crate::stream::{StreamArgs, stream};
use crate::ui::{UiCommandArgs, cmd_ui};
use crate::upload::{StoreConnArgs, UploadCommandArgs, cmd_upload, is_store_address};

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
    /// Read the settings of serve, stream or record from this TOML file (one table
    /// per command, named after it; keys are the long flag names; flags override it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log lines on standard error as text (human) or one JSON object each (json).
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: LogFormat,
    /// What to log, e.g. info, debug or warn,kwik=debug (default: RUST_LOG, else
    /// warnings plus kwik's and the recorder's notices).
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Subcommands, each dispatched in `main` to the module named for it.
#[derive(Debug, Subcommand)]
enum Command {
    /// Record a board on a serial port, or a simulated source, to files.
    Record(RecordArgs),
    /// List recordings with format, state, duration, samples, dropped and size.
    Ls {
        /// Folder to search (default `recordings`), or an object store's
        /// s3://BUCKET/PREFIX.
        dir: Option<PathBuf>,
        #[command(flatten)]
        store: StoreConnArgs,
    },
    /// Repair a recording whose process died (cut partial row, add footer, finalise sidecar).
    Recover {
        /// A data file of the recording, or its .meta.json.
        file: PathBuf,
    },
    /// Check a recording against its sidecar; exits non-zero on any mismatch.
    Verify {
        /// A data file of the recording, or its .meta.json; or its address in an object
        /// store, s3://BUCKET/KEY (downloaded into a temporary folder and checked there).
        /// A folder (local, or s3://BUCKET/PREFIX/ in a store): every recording below
        /// it, and the recordings of each gateway run (across server restarts and a
        /// fleet's servers) checked to hold each sample exactly once.
        file: PathBuf,
        #[command(flatten)]
        store: StoreConnArgs,
    },
    /// Upload the finished recordings of a folder to object storage (what a stopped
    /// `record --store` or `serve --store` left, its journal first), then exit.
    Upload(UploadCommandArgs),
    /// Write a finished recording again in another layout (Parquet or MCAP, from a CSV
    /// or LabVIEW recording), with its own sidecar.
    Export(ExportArgs),
    /// Loopback demo: recorder server, simulated XIAO and a two-path gateway; one path
    /// is killed halfway; exits non-zero if any sample was lost.
    Demo(DemoArgs),
    /// Recorder server: record the sensor streams gateways send over KWIK.
    Serve(ServeArgs),
    /// Gateway: stream a device (serial, BLE or simulator) to a recorder server.
    Stream(StreamArgs),
    /// Config files: `config print` shows the settings a command would run with.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of kwik-record, or of one command.
    Man {
        /// A command, e.g. serve (default: the whole program).
        command: Option<String>,
    },
    /// Web dashboard over a recordings folder: browse, preview, download, verify and
    /// delete recordings without recording.
    Ui(UiCommandArgs),
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // Before clap sees it, so that `--json` also shapes errors of a bad config file.
    let json = argv.iter().any(|a| a == "--json");
    let resolved = match config_file::resolve(&Cli::command(), argv.clone()) {
        Ok(r) => r,
        Err(e) => return fail(&exit::usage(e.to_string()), json),
    };
    let cli = match Cli::command()
        .try_get_matches_from(&resolved.argv)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Err(e) = logs::init(cli.log_format, cli.log_level.as_deref()) {
        return fail(&exit::usage(e.to_string()), json);
    }
    let json = cli.json;
    let result = match cli.command {
        Command::Record(a) => cmd_record(a, json),
        Command::Ls { dir, store } => {
            let dir = dir.as_deref().unwrap_or(Path::new("recordings"));
            if is_store_address(dir) {
                upload::cmd_ls_store(dir, &store, json)
            } else {
                cmd_ls(dir, json)
            }
        }
        Command::Recover { file } => cmd_recover(&file, json),
        Command::Verify { file, store } => {
            if is_store_address(&file) {
                upload::cmd_verify_store(&file, &store, json)
            } else {
                cmd_verify(&file, json)
            }
        }
        Command::Upload(a) => cmd_upload(a, json),
        Command::Export(a) => cmd_export(a, json),
        Command::Demo(a) => demo(a, json),
        Command::Serve(a) => serve(a, json),
        Command::Stream(a) => stream(a, json),
        Command::Config(ConfigCommand::Print { .. }) => cmd_config(&argv, json),
        Command::Completions { shell } => cmd_completions(shell),
        Command::Man { command } => cmd_man(command.as_deref()),
        Command::Ui(a) => cmd_ui(a, json),
    };
    match result {
        Ok(code) => code,
        Err(e) => fail(&e, json),
    }
}

/// Reports `e` (as JSON with `--json`) and returns its exit code.
fn fail(e: &anyhow::Error, json: bool) -> ExitCode {
    if json {
        outln!("{}", serde_json::json!({ "error": format!("{e:#}") }));
    } else {
        // Not eprintln!: a closed stderr must not turn an error into a panic.
        let _ = writeln!(std::io::stderr(), "error: {e:#}");
    }
    Exit::of_error(e).into()
}
