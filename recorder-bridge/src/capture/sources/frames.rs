//! XIAO frames (`xiao-proto`, COBS + CRC-32) as a [`SampleSource`]: the board over USB
//! serial, a pseudo-terminal, or the board's simulator (`xiao-sim`, the same frames in
//! process). Sequence numbers are counted by `xiao_proto`'s `SequenceTracker`.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use xiao_proto::{Frame, FrameDecoder};

use crate::capture::sample_source::{SampleSource, SourceEvent};
use crate::capture::sources::sequence::DeviceSequence;
use crate::capture::sources::xiao::imu_row;
use crate::format::schema::ImuRow;

/// XIAO frames (`xiao-proto`, COBS + CRC-32) read from any byte stream: a serial port,
/// a pseudo-terminal or the in-process simulator.
#[derive(Debug)]
pub struct FrameSource<R> {
    reader: R,
    decoder: FrameDecoder,
    sequence: DeviceSequence,
    events: VecDeque<SourceEvent<ImuRow>>,
    rate_hz: u32,
    buf: Vec<u8>,
    ended: bool,
}

impl<R: Read + Send + 'static> FrameSource<R> {
    /// Decodes frames from `reader`; `rate_hz` is the nominal rate until the device
    /// announces its own.
    pub fn new(reader: R, rate_hz: u32) -> Self {
        FrameSource {
            reader,
            decoder: FrameDecoder::new(),
            sequence: DeviceSequence::default(),
            events: VecDeque::new(),
            rate_hz,
            buf: vec![0; 4096],
            ended: false,
        }
    }

    /// Decoder counters (frames, CRC errors, ...).
    pub fn decoder_stats(&self) -> xiao_proto::DecoderStats {
        *self.decoder.stats()
    }

    /// The byte stream.
    pub fn into_inner(self) -> R {
        self.reader
    }

    fn feed(&mut self, n: usize) {
        let FrameSource {
            decoder,
            buf,
            events,
            sequence,
            rate_hz,
            ..
        } = self;
        for f in decoder.decode(&buf[..n]) {
            match f {
                Ok(Frame::Sample(s)) => {
                    if let Some((seq, lost)) = sequence.accept(s.seq) {
                        if lost > 0 {
                            events.push_back(SourceEvent::Lost(lost));
                        }
                        events.push_back(SourceEvent::Sample {
                            seq,
                            sample: imu_row(&s),
                        });
                    }
                }
                Ok(Frame::DeviceInfo(info)) => {
                    if info.rate_hz > 0 {
                        *rate_hz = u32::from(info.rate_hz);
                    }
                    events.push_back(SourceEvent::Device(info));
                }
                Ok(_) => {}
                Err(_) => events.push_back(SourceEvent::DecodeError),
            }
        }
    }
}

impl<R: Read + Send + 'static> SampleSource for FrameSource<R> {
    type Sample = ImuRow;

    fn rate_hz(&self) -> u32 {
        self.rate_hz
    }

    fn next_event(&mut self) -> Option<SourceEvent<ImuRow>> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            match self.reader.read(&mut self.buf) {
                Ok(0) => self.ended = true,
                Ok(n) => self.feed(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    return Some(SourceEvent::Idle);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "device read failed; source ends");
                    self.ended = true;
                }
            }
        }
    }
}

/// Settings of the in-process XIAO simulator source.
#[derive(Debug, Clone, Copy)]
pub struct SimImuConfig {
    /// Seed of the synthetic signals.
    pub seed: u64,
    /// Sample rate.
    pub rate_hz: NonZeroU32,
    /// Stop after this many samples (`None`: until stopped).
    pub limit: Option<u64>,
    /// Run at the board's pace (true) or as fast as the gateway reads.
    pub real_time: bool,
}

impl SimImuConfig {
    /// The simulator configuration (frames format, no faults, device info every 2 s).
    pub fn sim_config(&self) -> xiao_sim::SimConfig {
        xiao_sim::SimConfig::new(self.seed, self.rate_hz)
    }

    /// The samples this simulator produces, in order (the ground truth of a run).
    pub fn expected(&self, n: u64) -> Vec<ImuRow> {
        let mut sim = xiao_sim::Simulator::new(self.sim_config());
        (0..n).map(|_| imu_row(&sim.tick().sample)).collect()
    }
}

/// The XIAO simulator (`xiao-sim`) on its own thread, read through the same frame
/// decoder as a real board.
pub fn sim_imu(config: SimImuConfig) -> FrameSource<xiao_sim::SimStream> {
    sim_imu_with(config.sim_config(), config.real_time, config.limit)
}

/// Like [`sim_imu`] with a full simulator configuration (faults, seed, rate).
pub fn sim_imu_with(
    sim: xiao_sim::SimConfig,
    real_time: bool,
    limit: Option<u64>,
) -> FrameSource<xiao_sim::SimStream> {
    let rate = sim.rate_hz.get();
    let pacing = if real_time {
        xiao_sim::Pacing::RealTime
    } else {
        xiao_sim::Pacing::Unpaced
    };
    let stream = xiao_sim::Simulator::new(sim).spawn(pacing, limit);
    FrameSource::new(stream, rate)
}

/// Opens a serial port (the board's USB CDC-ACM, or a pseudo-terminal) and decodes its
/// frames.
pub fn serial(
    path: &Path,
) -> Result<FrameSource<Box<dyn serialport::SerialPort>>, serialport::Error> {
    let port = serialport::new(path.to_string_lossy(), 115_200)
        .timeout(Duration::from_millis(100))
        .open()?;
    Ok(FrameSource::new(port, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulator_frames_decode_to_the_ground_truth_with_faults_counted() {
        let mut cfg = xiao_sim::SimConfig::new(5, NonZeroU32::new(1000).unwrap());
        cfg.faults.drop = xiao_sim::Probability::try_from(0.02).unwrap();
        cfg.faults.corrupt = xiao_sim::Probability::try_from(0.02).unwrap();
        let mut truth = xiao_sim::Simulator::new(cfg);
        let ticks: Vec<_> = (0..2000).map(|_| truth.tick()).collect();
        let mut src = sim_imu_with(cfg, false, Some(2000));
        let (mut got, mut lost, mut errors) = (Vec::new(), 0, 0);
        while let Some(e) = src.next_event() {
            match e {
                SourceEvent::Sample { seq, sample } => got.push((seq, sample)),
                SourceEvent::Lost(n) => lost += n,
                SourceEvent::DecodeError => errors += 1,
                _ => {}
            }
        }
        let intact: Vec<_> = ticks
            .iter()
            .filter(|t| t.fate == xiao_sim::Fate::Sent)
            .map(|t| (u64::from(t.sample.seq.0), imu_row(&t.sample)))
            .collect();
        assert_eq!(got, intact);
        let stats = truth.stats();
        assert_eq!(errors, stats.corrupted);
        // Losses seen by the host: dropped and corrupted samples, except at the end.
        let last = got.last().unwrap().0;
        assert_eq!(lost + got.len() as u64, last + 1);
    }
}
