//! `xiao-sim`: a simulated XIAO nRF52840 Sense on stdout or a pseudo-terminal.

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use std::io::Write;
use std::num::NonZeroU32;
use xiao_proto::StreamFormat;
use xiao_sim::{Announce, Faults, Pacing, Probability, Pty, SimConfig, Simulator};

/// Emits the byte stream of a simulated XIAO nRF52840 Sense board.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Seed of the synthetic signals and the fault decisions.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sample rate in hertz.
    #[arg(long, default_value_t = NonZeroU32::new(25).expect("25 is not zero"))]
    rate: NonZeroU32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Frames)]
    format: Format,
    /// Where the bytes go.
    #[arg(long, value_enum, default_value_t = Output::Stdout)]
    output: Output,
    /// Probability that a sample is dropped (sequence gap), 0..=1.
    #[arg(long, default_value_t = 0.0)]
    drop: f64,
    /// Probability that a sample's bytes are corrupted, 0..=1.
    #[arg(long, default_value_t = 0.0)]
    corrupt: f64,
    /// Stop after this many samples (default: run until killed).
    #[arg(long)]
    count: Option<u64>,
    /// Do not pace to the sample rate; emit as fast as the output accepts.
    #[arg(long)]
    fast: bool,
    /// With `--output pty`: at the end, wait this long for the reader to take every byte.
    #[arg(long, default_value_t = 30)]
    drain_timeout_s: u64,
    /// Send a device-info frame every this many device milliseconds (0: only at start).
    #[arg(long, default_value_t = 2000)]
    announce_ms: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// COBS frames with CRC-32.
    Frames,
    /// CSV lines `millis,ax,ay,az,gx,gy,gz,tempC,audioRMS`.
    Csv,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    /// Standard output.
    Stdout,
    /// A new pseudo-terminal; its path is printed on stdout.
    Pty,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = SimConfig {
        seed: args.seed,
        rate_hz: args.rate,
        format: match args.format {
            Format::Frames => StreamFormat::Frames,
            Format::Csv => StreamFormat::Csv,
        },
        faults: Faults {
            drop: Probability::try_from(args.drop).context("--drop")?,
            corrupt: Probability::try_from(args.corrupt).context("--corrupt")?,
        },
        announce: NonZeroU32::new(args.announce_ms)
            .map_or(Announce::AtStart, Announce::EveryMillis),
        ..SimConfig::default()
    };
    let (mut sink, pty): (Box<dyn Write>, Option<Pty>) = match args.output {
        Output::Stdout => (Box::new(std::io::stdout().lock()), None),
        Output::Pty => {
            let pty = Pty::open().context("opening a pseudo-terminal")?;
            println!("{}", pty.slave_path().display());
            std::io::stdout().flush()?;
            let writer = pty.try_clone_writer().context("duplicating the terminal")?;
            (Box::new(writer), Some(pty))
        }
    };
    let pacing = if args.fast {
        Pacing::Unpaced
    } else {
        Pacing::RealTime
    };
    let mut stream = Simulator::new(config).spawn(pacing, args.count);
    while let Some(chunk) = stream.recv_chunk() {
        match sink.write_all(&chunk).and_then(|()| sink.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("writing the stream"),
        }
    }
    if let Some(pty) = &pty {
        // Closing the terminal discards what the reader has not taken yet.
        let timeout = std::time::Duration::from_secs(args.drain_timeout_s);
        if !pty.wait_drained(timeout)? {
            eprintln!("xiao-sim: reader did not take every byte within {timeout:?}");
        }
    }
    let stats = stream.stop();
    eprintln!(
        "xiao-sim: {} samples, {} sent, {} dropped, {} corrupted, {} info frames, {} bytes",
        stats.samples, stats.sent, stats.dropped, stats.corrupted, stats.info_frames, stats.bytes
    );
    Ok(())
}
