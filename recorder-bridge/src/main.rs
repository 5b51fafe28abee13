//! `kwik-record`: record sensor streams to CSV, list, verify and recover recordings.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use kwik_recorder::{
    CsvOptions, Format, LabviewLayout, Prefix, RateHz, Recording, RecordingConfig, RecordingGroup,
    RecordingSummary, Sidecar, SignalGenerator, SimEfield, SimImu, SimSource, SimStage,
    SizeLimitAction, recover, ring, verify,
};

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

/// What `record` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SourceKind {
    /// A XIAO board's frames on a serial port (its USB port, or a pseudo-terminal).
    Serial(PathBuf),
    /// Simulated XIAO IMU rows.
    SimImu,
    /// Simulated two-ADC E-field samples.
    SimEfield,
    /// Simulated stage positions.
    SimStage,
}

impl SourceKind {
    /// The name the sidecar's device info gives.
    fn name(&self) -> String {
        match self {
            SourceKind::Serial(p) => format!("serial:{}", p.display()),
            SourceKind::SimImu => "sim-imu".into(),
            SourceKind::SimEfield => "sim-efield".into(),
            SourceKind::SimStage => "sim-stage".into(),
        }
    }
}

fn parse_source(s: &str) -> Result<SourceKind, String> {
    match s {
        "sim-imu" => Ok(SourceKind::SimImu),
        "sim-efield" => Ok(SourceKind::SimEfield),
        "sim-stage" => Ok(SourceKind::SimStage),
        _ => match s.strip_prefix("serial:") {
            Some(path) if !path.is_empty() => Ok(SourceKind::Serial(path.into())),
            _ => Err(format!(
                "unknown source {s:?}; use serial:PATH (the board's USB port, e.g. \
                 serial:/dev/ttyACM0), sim-imu, sim-efield or sim-stage"
            )),
        },
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatKind {
    /// Standard CSV with comment header and footer.
    Csv,
    /// Legacy LabVIEW block layout (E-field only).
    Labview,
}

#[derive(Debug, Args)]
struct RecordArgs {
    /// What to record: serial:PATH (a XIAO board's USB port, e.g. serial:/dev/ttyACM0;
    /// stops when the board goes away), sim-imu, sim-efield or sim-stage.
    #[arg(long, value_parser = parse_source)]
    source: SourceKind,
    /// Sample rate in Hz of a simulated source (default 100 for sim-imu, 1000
    /// otherwise); a board sets its own.
    #[arg(long)]
    rate: Option<u32>,
    /// Stop after this long (e.g. 10s, 500ms, 2m, 1h). Default: until Ctrl-C.
    #[arg(long, value_parser = kwik_recorder::args::parse_duration)]
    duration: Option<Duration>,
    /// File layout.
    #[arg(long, value_enum, default_value = "csv")]
    format: FormatKind,
    /// Root output folder; files go to OUT/YYYY-MM-DD/.
    #[arg(long, default_value = "recordings")]
    out: PathBuf,
    /// File-name prefix.
    #[arg(long, default_value = "rec")]
    prefix: String,
    /// Size limit per file (e.g. 500M, 2G, 100000).
    #[arg(long, value_parser = parse_size)]
    size_limit: Option<u64>,
    /// At the size limit, continue in numbered parts instead of stopping.
    #[arg(long)]
    split: bool,
    /// Samples per LabVIEW block.
    #[arg(long, default_value_t = kwik_recorder::codec::DEFAULT_LABVIEW_BLOCK)]
    labview_block: usize,
    /// Leave out the `#` comment header of standard CSV.
    #[arg(long)]
    no_comments: bool,
    /// fsync the data at least this often (the most a crash can lose).
    #[arg(long, value_parser = kwik_recorder::args::parse_duration, default_value = "1s")]
    sync_interval: Duration,
    /// Exporter batch size in samples.
    #[arg(long, default_value_t = 8192)]
    batch: usize,
    /// Refuse to start / stop cleanly below this much free disk (e.g. 64M).
    #[arg(long, value_parser = parse_size, default_value = "64M")]
    min_free: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size; write e.g. 100000, 500K, 64M, 2G"))
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

fn cmd_record(a: RecordArgs, json: bool) -> Result<ExitCode> {
    let prefix = Prefix::try_from(a.prefix.as_str())?;
    let format = match a.format {
        FormatKind::Csv => Format::Csv(CsvOptions {
            comment_header: !a.no_comments,
        }),
        FormatKind::Labview => Format::Labview(
            LabviewLayout::default()
                .with_block(a.labview_block)
                .context("bad --labview-block")?,
        ),
    };
    let default_rate = match a.source {
        SourceKind::Serial(_) if a.rate.is_some() => {
            bail!("--rate is for simulated sources; a board samples at its own rate")
        }
        SourceKind::SimImu => 100,
        _ => 1000,
    };
    let rate = RateHz::try_from(a.rate.unwrap_or(default_rate))
        .context("bad --rate; give a rate of at least 1 Hz")?;
    let mut config = RecordingConfig {
        out_dir: a.out.clone(),
        prefix,
        format,
        duration_limit: a.duration,
        size_limit: a.size_limit,
        on_size_limit: if a.split {
            SizeLimitAction::Split
        } else {
            SizeLimitAction::Stop
        },
        sync_interval: a.sync_interval,
        min_free_bytes: a.min_free,
        ..RecordingConfig::default()
    };
    config.export.batch = a.batch.max(1);
    config.device.insert("name".into(), a.source.name());
    let kind = if let SourceKind::Serial(_) = a.source {
        "xiao-serial"
    } else {
        config
            .settings
            .insert("rate_hz".into(), rate.get().to_string());
        "simulator"
    };
    config.device.insert("kind".into(), kind.into());
    kwik_recorder::interrupt::install();
    match &a.source {
        SourceKind::Serial(path) => run_serial(path, config, &a, json),
        SourceKind::SimImu => run_sim(SimImu { rate }, config, &a, json),
        SourceKind::SimEfield => run_sim(SimEfield { rate }, config, &a, json),
        SourceKind::SimStage => run_sim(SimStage { rate }, config, &a, json),
    }
}

fn run_sim<G: SignalGenerator>(
    generator: G,
    config: RecordingConfig,
    a: &RecordArgs,
    json: bool,
) -> Result<ExitCode> {
    let rate = generator.rate().get();
    // Two seconds of history: the recorder reads every few ms, so this is ample.
    let (writer, reader) = ring(rate.max(1024) as usize * 2);
    let mut group = RecordingGroup::new(config);
    group.add_stream(<G::Sample as kwik_recorder::Schema>::NAME, reader);
    let recording = group.start().context("cannot start the recording")?;
    let source = SimSource::spawn(generator, writer, None).context("cannot start the source")?;
    let summary = watch(recording, a, json, || false);
    drop(source);
    report_summary(&summary, json)
}

/// Records a XIAO board's frames from a serial port until the limit, Ctrl-C, or the
/// board going away; sequence gaps and corrupt frames are counted as source losses.
fn run_serial(
    path: &Path,
    config: RecordingConfig,
    a: &RecordArgs,
    json: bool,
) -> Result<ExitCode> {
    let port = kwik_recorder::remote::serial(path).with_context(|| {
        format!(
            "cannot open serial port {}; check the board is plugged in and that you may \
             read the port (e.g. membership of the dialout group)",
            path.display()
        )
    })?;
    // Four seconds at the board's highest rate (about 4 kHz): ample for a recorder that
    // reads every few milliseconds.
    let (writer, reader) = ring::<kwik_recorder::ImuRow>(16_384);
    let mut group = RecordingGroup::new(config);
    group.add_stream(
        <kwik_recorder::ImuRow as kwik_recorder::Schema>::NAME,
        reader,
    );
    let recording = group.start().context("cannot start the recording")?;
    let feed = kwik_recorder::remote::SourceFeed::spawn(port, writer)
        .context("cannot start reading the serial port")?;
    let summary = watch(recording, a, json, || feed.is_finished());
    let fed = feed.stop();
    if !json && fed.corrupt_frames > 0 {
        println!("  {} corrupt frames from the board", fed.corrupt_frames);
    }
    report_summary(&summary, json)
}

/// Shows progress until the recording ends by itself, Ctrl-C, or `source_ended`
/// (then the recording is stopped with the reason "source ended").
fn watch(
    recording: Recording,
    a: &RecordArgs,
    json: bool,
    source_ended: impl Fn() -> bool,
) -> RecordingSummary {
    let bar = if a.quiet || json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = match a.duration {
            Some(d) => indicatif::ProgressBar::new(d.as_millis() as u64),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        b.set_style(style);
        b
    };
    let mut ended = false;
    while !recording.is_finished() && !kwik_recorder::interrupt::requested() {
        if source_ended() {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let st = recording.status();
        let samples: u64 = st.streams.iter().map(|s| s.samples).sum();
        let bytes: u64 = st.streams.iter().map(|s| s.bytes).sum();
        bar.set_position((st.duration_s * 1000.0) as u64);
        bar.set_message(format!(
            "{samples} samples, {} dropped, {:.1} MB",
            st.total_dropped(),
            bytes as f64 / 1e6
        ));
    }
    bar.finish_and_clear();
    if ended {
        recording.stop_because("source ended")
    } else {
        recording.stop()
    }
}

fn report_summary(s: &RecordingSummary, json: bool) -> Result<ExitCode> {
    let st = &s.status;
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else {
        println!(
            "recording {:?} ({}), {:.3} s, session {}",
            st.state,
            st.stop_reason.as_deref().unwrap_or("stopped"),
            st.duration_s,
            st.session_id.0
        );
        for (stream, files) in st.streams.iter().zip(&s.files) {
            println!(
                "  {} [{}]: {} of {} produced samples written ({:.1} Hz), dropped source {} / ring {} / exporter {} / writer {}, {} bytes",
                stream.name,
                stream.schema,
                stream.samples,
                stream.produced,
                stream.rate_hz,
                stream.dropped.source,
                stream.dropped.ring,
                stream.dropped.exporter,
                stream.dropped.writer,
                stream.bytes
            );
            for f in files {
                println!("    {}", f.display());
            }
            println!("    {}", stream.sidecar.display());
        }
        for w in &st.warnings {
            println!("  warning: {w}");
        }
    }
    Ok(if st.state == kwik_recorder::GroupState::Failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn find_sidecars(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() && depth > 0 {
            find_sidecars(&p, depth - 1, out);
        } else if p.to_string_lossy().ends_with(".meta.json") {
            out.push(p);
        }
    }
}

fn cmd_ls(dir: &Path, json: bool) -> Result<ExitCode> {
    if !dir.is_dir() {
        bail!(
            "{} is not a folder; give the recordings folder (default `recordings`)",
            dir.display()
        );
    }
    let mut paths = Vec::new();
    find_sidecars(dir, 3, &mut paths);
    paths.sort();
    let mut rows = Vec::new();
    for p in &paths {
        match Sidecar::read(p) {
            Ok(sc) => rows.push((p.clone(), Some(sc))),
            Err(_) => rows.push((p.clone(), None)),
        }
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, sc)| serde_json::json!({ "sidecar": p, "meta": sc }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no recordings under {}", dir.display());
    }
    println!(
        "{:<48} {:<10} {:>10} {:>12} {:>9} {:>12}",
        "recording", "state", "duration", "samples", "dropped", "bytes"
    );
    for (p, sc) in rows {
        let name = p
            .strip_prefix(dir)
            .unwrap_or(&p)
            .to_string_lossy()
            .trim_end_matches(".meta.json")
            .to_owned();
        match sc {
            Some(sc) => println!(
                "{:<48} {:<10} {:>9.1}s {:>12} {:>9} {:>12}",
                name,
                format!("{:?}", sc.state).to_lowercase(),
                sc.duration_s,
                sc.samples,
                sc.dropped.total(),
                sc.file_size
            ),
            None => println!("{name:<48} unreadable sidecar (try `kwik-record verify`)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_recover(file: &Path, json: bool) -> Result<ExitCode> {
    let r = recover(file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if r.repaired {
        println!(
            "recovered {}: {} samples, cut {} bytes of partial rows, added {} footer(s)",
            r.sidecar.display(),
            r.samples,
            r.truncated_bytes,
            r.footers_added
        );
    } else {
        println!(
            "{} was already closed cleanly; nothing to do",
            r.sidecar.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_verify(file: &Path, json: bool) -> Result<ExitCode> {
    let r = verify(file)?;
    if json {
        println!("{}", serde_json::json!({ "ok": r.is_ok(), "report": r }));
    } else if r.is_ok() {
        println!(
            "OK {}: {} samples in {} file(s) match the sidecar",
            r.sidecar.display(),
            r.samples,
            r.parts
        );
    } else {
        println!("MISMATCH {}:", r.sidecar.display());
        for p in &r.problems {
            println!("  - {p}");
        }
    }
    Ok(if r.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
