//! `kwik-record record`: a board on a serial port or simulated sources, one recording
//! group, progress while it runs and the summary at the end.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use kwik_recorder::{
    GeneratorSource, Pacing, Prefix, Producer, RateHz, Recording, RecordingConfig, RecordingGroup,
    RecordingSummary, SignalGenerator, SimEfield, SimImu, SimStage, SizeLimitAction, ring,
};

use crate::exit::{Exit, usage};

/// What one `--source` of `record` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SourceKind {
    /// A XIAO board's frames on a serial port (its USB port, or a pseudo-terminal).
    Serial(PathBuf),
    /// A XIAO board's notifications over BLE, found by its advertised name.
    Ble(String),
    /// A simulated source, at its own rate or `--rate`.
    Sim(SimKind, Option<u32>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SimKind {
    /// Simulated XIAO IMU rows.
    Imu,
    /// Simulated two-ADC E-field samples.
    Efield,
    /// Simulated stage positions.
    Stage,
}

impl SimKind {
    /// The schema (and stream) name of its samples.
    fn schema(self) -> &'static str {
        match self {
            SimKind::Imu => <kwik_recorder::ImuRow as kwik_recorder::Schema>::NAME,
            SimKind::Efield => <kwik_recorder::EfieldSample as kwik_recorder::Schema>::NAME,
            SimKind::Stage => <kwik_recorder::StagePosition as kwik_recorder::Schema>::NAME,
        }
    }
}

impl SourceKind {
    /// The schema (and stream) name of its samples.
    fn schema(&self) -> &'static str {
        match self {
            SourceKind::Serial(_) | SourceKind::Ble(_) => SimKind::Imu.schema(),
            SourceKind::Sim(kind, _) => kind.schema(),
        }
    }

    /// The name the sidecar's device info gives.
    fn name(&self) -> String {
        match self {
            SourceKind::Serial(p) => format!("serial:{}", p.display()),
            SourceKind::Ble(name) => format!("ble:{name}"),
            SourceKind::Sim(SimKind::Imu, _) => "sim-imu".into(),
            SourceKind::Sim(SimKind::Efield, _) => "sim-efield".into(),
            SourceKind::Sim(SimKind::Stage, _) => "sim-stage".into(),
        }
    }
}

fn parse_source(s: &str) -> Result<SourceKind, String> {
    if let Some(path) = s.strip_prefix("serial:") {
        if !path.is_empty() {
            return Ok(SourceKind::Serial(path.into()));
        }
    }
    if let Some(name) = s.strip_prefix("ble:") {
        if !name.is_empty() {
            return Ok(SourceKind::Ble(name.into()));
        }
    }
    let (name, rate) = match s.split_once('@') {
        Some((name, hz)) => match hz.parse::<u32>() {
            Ok(hz) => (name, Some(hz)),
            Err(_) => {
                return Err(format!(
                    "{hz:?} is not a rate in Hz; write e.g. sim-efield@128000"
                ));
            }
        },
        None => (s, None),
    };
    let kind = match name {
        "sim-imu" => SimKind::Imu,
        "sim-efield" => SimKind::Efield,
        "sim-stage" => SimKind::Stage,
        _ => {
            return Err(format!(
                "unknown source {s:?}; use serial:PATH (the board's USB port, e.g. \
                 serial:/dev/ttyACM0), ble:NAME (the board's advertised name), sim-imu, \
                 sim-efield or sim-stage (optionally with @HZ, e.g. sim-efield@128000)"
            ));
        }
    };
    Ok(SourceKind::Sim(kind, rate))
}

#[derive(Debug, Args)]
pub(crate) struct RecordArgs {
    /// What to record: serial:PATH (a XIAO board's USB port, e.g. serial:/dev/ttyACM0;
    /// the recording stops when the board goes away), ble:NAME (a board over BLE, by
    /// its advertised name; needs a build with `--features ble`), sim-imu, sim-efield or sim-stage
    /// (a simulator's rate can follow, e.g. sim-efield@128000). Repeat it to record
    /// several streams in one group, started and stopped together with one t0 (e.g.
    /// --source sim-efield@128000 --source sim-stage@100); one stream per schema.
    #[arg(long = "source", value_name = "SOURCE", value_parser = parse_source, required = true)]
    sources: Vec<SourceKind>,
    /// Sample rate in Hz of the simulated sources that name none (default 100 for
    /// sim-imu, 1000 otherwise); a board samples at its own rate.
    #[arg(long)]
    rate: Option<u32>,
    /// Stop after this long (e.g. 10s, 500ms, 2m, 1h). Default: until Ctrl-C.
    #[arg(long, value_parser = crate::args::parse_duration)]
    duration: Option<Duration>,
    /// File layout.
    #[command(flatten)]
    layout: crate::formats::FormatArgs,
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
    /// fsync the data at least this often (the most a crash can lose).
    #[arg(long, value_parser = crate::args::parse_duration, default_value = "1s")]
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
    #[command(flatten)]
    ui: crate::ui::UiArgs,
    #[command(flatten)]
    store: crate::upload::UploadArgs,
}

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
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

pub(crate) fn cmd_record(a: RecordArgs, json: bool) -> Result<ExitCode> {
    let prefix =
        Prefix::try_from(a.prefix.as_str()).map_err(|e| usage(format!("--prefix: {e}")))?;
    let format = a.layout.to_format().map_err(|e| usage(format!("{e:#}")))?;
    for (i, later) in a.sources.iter().enumerate() {
        if let Some(first) = a.sources[..i].iter().find(|s| s.schema() == later.schema()) {
            return Err(usage(format!(
                "--source {} and --source {} both give {} samples; a recording has one \
                 stream per schema (run two recordings for two such devices)",
                first.name(),
                later.name(),
                later.schema()
            )));
        }
    }
    if a.rate.is_some() && !a.sources.iter().any(|s| matches!(s, SourceKind::Sim(..))) {
        return Err(usage(
            "--rate is for simulated sources; a board samples at its own rate",
        ));
    }
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
    let names: Vec<String> = a.sources.iter().map(SourceKind::name).collect();
    config.device.insert("name".into(), names.join(" + "));
    let board = a.sources.iter().find_map(|s| match s {
        SourceKind::Serial(_) => Some("xiao-serial"),
        SourceKind::Ble(_) => Some("xiao-ble"),
        SourceKind::Sim(..) => None,
    });
    let kind = match (board, a.sources.len() > 1) {
        (Some(board), false) => board.to_owned(),
        (Some(board), true) => format!("{board} + simulator"),
        (None, _) => "simulator".to_owned(),
    };
    config.device.insert("kind".into(), kind);
    for source in &a.sources {
        if let SourceKind::Sim(kind, own) = source {
            config.settings.insert(
                format!("{}.rate_hz", kind.schema()),
                sim_rate(*kind, own.or(a.rate))?.get().to_string(),
            );
        }
    }
    let mut group = RecordingGroup::new(config.clone());
    let mut taps = kwik_recorder::Taps::new();
    let mut starts = Vec::new();
    for source in &a.sources {
        starts.push(attach(source, a.rate, &mut group, &mut taps)?);
    }
    // Before the recording, so that a store the client cannot use fails first.
    let upload = a.store.start(&a.out)?;
    let recording = group.start().context("cannot start the recording")?;
    crate::interrupt::install();
    let notes = recording.device_notes();
    let running = starts
        .into_iter()
        .map(|start| start(notes.clone()))
        .collect::<Result<Vec<Producer>>>()?;
    // A simulator runs until stopped; a board ends by itself when it goes away.
    let source_ended = || running.iter().any(Producer::is_finished);
    let summary = if a.ui.ui.is_some() {
        crate::ui::record(&a.ui, recording, config, taps, json, source_ended)?
    } else {
        watch(recording, &a, upload.as_ref(), json, source_ended)
    };
    for producer in running {
        let fed = producer.stop();
        if !json && fed.corrupt_frames > 0 {
            outln!("  {} corrupt frames from the board", fed.corrupt_frames);
        }
    }
    let upload = upload.map(crate::upload::Running::finish);
    report_summary(&summary, upload.as_ref(), json)
}

/// What starts a source's producer once the recording has started; a board writes what
/// it says of itself into the recording's device notes.
type Start = Box<dyn FnOnce(kwik_recorder::DeviceNotes) -> Result<Producer>>;

/// Adds the stream of `source` to `group` and to the dashboard's `taps` (one ring each)
/// and returns what starts the source. A serial port is opened here, so a missing board
/// fails before any file is created.
fn attach(
    source: &SourceKind,
    rate: Option<u32>,
    group: &mut RecordingGroup,
    taps: &mut kwik_recorder::Taps,
) -> Result<Start> {
    let (kind, rate) = match source {
        SourceKind::Serial(path) => {
            let port = kwik_recorder::serial(path).with_context(|| {
                format!(
                    "cannot open serial port {}; check the board is plugged in and that you \
                     may read the port (e.g. membership of the dialout group)",
                    path.display()
                )
            })?;
            return Ok(attach_board(port, group, taps));
        }
        SourceKind::Ble(name) => return attach_ble(name, group, taps),
        SourceKind::Sim(kind, own) => (*kind, sim_rate(*kind, own.or(rate))?),
    };
    Ok(match kind {
        SimKind::Imu => attach_sim(SimImu { rate }, group, taps),
        SimKind::Efield => attach_sim(SimEfield { rate }, group, taps),
        SimKind::Stage => attach_sim(SimStage { rate }, group, taps),
    })
}

/// A simulator's rate: its own or `--rate`, else 100 Hz for the IMU and 1 kHz for the
/// others.
fn sim_rate(kind: SimKind, rate: Option<u32>) -> Result<RateHz> {
    let default = if kind == SimKind::Imu { 100 } else { 1000 };
    RateHz::try_from(rate.unwrap_or(default))
        .map_err(|e| usage(format!("bad rate ({e}); give at least 1 Hz")))
}

fn attach_sim<G: SignalGenerator>(
    generator: G,
    group: &mut RecordingGroup,
    taps: &mut kwik_recorder::Taps,
) -> Start
where
    G::Sample: kwik_recorder::Channels,
{
    let rate = generator.rate().get();
    // Two seconds of history: the recorder reads every few ms, so this is ample.
    let (writer, reader) = ring(rate.max(1024) as usize * 2);
    let name = <G::Sample as kwik_recorder::Schema>::NAME;
    taps.add(name, f64::from(rate), &reader);
    group.add_stream(name, reader);
    Box::new(move |notes| {
        let source = GeneratorSource::new(generator, None, Pacing::RealTime);
        Producer::spawn(source, writer, notes).context("cannot start the source")
    })
}

/// A XIAO board (on a serial port or over BLE); its sequence gaps and corrupt frames
/// are counted as source losses. The port or link is opened by the caller, so a
/// missing board fails before any file is created.
fn attach_board<S>(board: S, group: &mut RecordingGroup, taps: &mut kwik_recorder::Taps) -> Start
where
    S: kwik_recorder::SampleSource<Sample = kwik_recorder::ImuRow> + Send + 'static,
{
    // Four seconds at the board's highest rate (about 4 kHz): ample for a recorder that
    // reads every few milliseconds.
    let (writer, reader) = ring::<kwik_recorder::ImuRow>(16_384);
    // The board's rate is its own; plots decimate as for 1 kHz.
    taps.add(
        <kwik_recorder::ImuRow as kwik_recorder::Schema>::NAME,
        1000.0,
        &reader,
    );
    group.add_stream(
        <kwik_recorder::ImuRow as kwik_recorder::Schema>::NAME,
        reader,
    );
    Box::new(move |notes| {
        Producer::spawn(board, writer, notes).context("cannot start reading the board")
    })
}

/// The board advertising `name` over BLE (15 s to find it). Its notifications arrive
/// on a runtime that lives as long as the process.
#[cfg(feature = "ble")]
fn attach_ble(
    name: &str,
    group: &mut RecordingGroup,
    taps: &mut kwik_recorder::Taps,
) -> Result<Start> {
    static BLE_RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = match BLE_RUNTIME.get() {
        Some(rt) => rt,
        None => {
            let rt = crate::runtime::runtime()?;
            BLE_RUNTIME.get_or_init(|| rt)
        }
    };
    let board = rt
        .block_on(kwik_recorder::BleSource::connect(
            name,
            Duration::from_secs(15),
        ))
        .with_context(|| format!("cannot connect to the BLE board {name:?}"))?;
    Ok(attach_board(board, group, taps))
}

#[cfg(not(feature = "ble"))]
fn attach_ble(
    _name: &str,
    _group: &mut RecordingGroup,
    _taps: &mut kwik_recorder::Taps,
) -> Result<Start> {
    Err(anyhow::anyhow!(
        "this kwik-record was built without BLE; rebuild with `--features ble` (needs a BLE adapter and BlueZ)"
    ))
}

/// Shows progress until the recording ends by itself, Ctrl-C, or `source_ended`
/// (then the recording is stopped with the reason "source ended").
fn watch(
    recording: Recording,
    a: &RecordArgs,
    upload: Option<&crate::upload::Running>,
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
    while !recording.is_finished() && !crate::interrupt::requested() {
        if source_ended() {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let st = recording.status();
        let samples: u64 = st.streams.iter().map(|s| s.samples).sum();
        let bytes: u64 = st.streams.iter().map(|s| s.bytes).sum();
        bar.set_position((st.duration_s * 1000.0) as u64);
        let uploads = upload.map_or_else(String::new, |u| format!(", {}", u.progress()));
        bar.set_message(format!(
            "{samples} samples, {} dropped, {:.1} MB{uploads}",
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

fn report_summary(
    s: &RecordingSummary,
    upload: Option<&crate::upload::Finished>,
    json: bool,
) -> Result<ExitCode> {
    let st = &s.status;
    if json {
        let mut v = serde_json::to_value(s)?;
        if let (Some(u), Some(o)) = (upload, v.as_object_mut()) {
            o.insert("upload".into(), serde_json::to_value(&u.report)?);
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!(
            "recording {:?} ({}), {:.3} s, session {}",
            st.state,
            st.stop_reason.as_deref().unwrap_or("stopped"),
            st.duration_s,
            st.session_id.0
        );
        for (stream, files) in st.streams.iter().zip(&s.files) {
            outln!(
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
                outln!("    {}", f.display());
            }
            outln!("    {}", stream.sidecar.display());
        }
        for w in &st.warnings {
            outln!("  warning: {w}");
        }
        if let Some(u) = upload {
            outln!("  {}", u.line());
        }
    }
    // Samples the host lost (ring, exporter, writer) outweigh the failure that caused
    // them; a recording that failed without losing one (e.g. the disk filled at a clean
    // point) is the environment's. A board's own gaps happened before the host and are
    // reported, not an exit status.
    let host_lost: u64 = st
        .streams
        .iter()
        .map(|s| s.dropped.ring + s.dropped.exporter + s.dropped.writer)
        .sum();
    let exit = if host_lost > 0 {
        Exit::DataLost
    } else if st.state == kwik_recorder::GroupState::Failed {
        Exit::Environment
    } else {
        Exit::Ok
    };
    Ok(upload.map_or(exit, |u| u.exit(exit)).into())
}
