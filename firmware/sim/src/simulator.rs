//! The simulated board: synthetic sensors → the firmware's [`Sampler`] → output bytes,
//! with optional injected faults.

use crate::rng::SplitMix64;
use crate::signal::SyntheticSensors;
use std::num::NonZeroU32;
use std::time::Duration;
use xiao_proto::{Frame, ImuSample, MAX_SAMPLE_BYTES, Sampler, SamplerConfig, StreamFormat};

/// Firmware version the simulator reports in its [`DeviceInfo`](xiao_proto::DeviceInfo).
pub const SIM_FIRMWARE_VERSION: [u8; 3] = [0, 1, 0];

/// A probability in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Probability(f64);

impl Probability {
    /// Never.
    pub const NEVER: Self = Self(0.0);

    /// The value in `[0, 1]`.
    #[must_use]
    pub const fn get(self) -> f64 {
        self.0
    }
}

/// A value outside `[0, 1]` (or NaN) given as a [`Probability`].
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("probability {0} is not within [0, 1]")]
pub struct ProbabilityError(pub f64);

impl TryFrom<f64> for Probability {
    type Error = ProbabilityError;

    fn try_from(p: f64) -> Result<Self, Self::Error> {
        if (0.0..=1.0).contains(&p) {
            Ok(Self(p))
        } else {
            Err(ProbabilityError(p))
        }
    }
}

/// Faults to inject, each decided per sample from the seeded generator.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Chance that a sample is taken (using a sequence number) but never sent, as when
    /// the USB buffer is full. The host sees a sequence gap. Default: never.
    pub drop: Probability,
    /// Chance that one byte of a sent sample is corrupted (one or more bits flipped).
    /// In [`StreamFormat::Frames`] the flip never creates or removes a `0x00`, so each
    /// corrupted frame costs exactly that frame: one decoder error and one sequence
    /// gap. In CSV format the line ending is never hit either, but CSV has no check, so
    /// a corrupted line may still parse with a wrong value. Default: never.
    pub corrupt: Probability,
}

/// When the simulated board sends a [`DeviceInfo`](xiao_proto::DeviceInfo) frame
/// (frames format only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Announce {
    /// Never.
    Never,
    /// Once, before the first sample.
    AtStart,
    /// Before the first sample and then before the first sample at least this many
    /// device milliseconds after the previous announcement. The firmware's USB
    /// transport does this every 2000 ms, the default.
    EveryMillis(NonZeroU32),
}

impl Default for Announce {
    fn default() -> Self {
        Self::EveryMillis(NonZeroU32::new(2000).unwrap_or(NonZeroU32::MIN))
    }
}

/// Settings of a [`Simulator`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Seed of every synthetic signal and fault decision. Default 0.
    pub seed: u64,
    /// Sample rate in hertz; sample `i` carries `millis = i * 1000 / rate_hz`.
    /// Default 25 Hz (the firmware's default).
    pub rate_hz: NonZeroU32,
    /// Byte stream format. Default: frames.
    pub format: StreamFormat,
    /// Sensor full-scale settings. Default: ±4 g, ±2000 dps.
    pub sampler: SamplerConfig,
    /// Injected faults. Default: none.
    pub faults: Faults,
    /// Device-info frames (frames format only). Default: every 2 s, as the firmware.
    pub announce: Announce,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            rate_hz: NonZeroU32::new(25).unwrap_or(NonZeroU32::MIN),
            format: StreamFormat::Frames,
            sampler: SamplerConfig::default(),
            faults: Faults::default(),
            announce: Announce::default(),
        }
    }
}

impl SimConfig {
    /// Default settings with `seed` and `rate_hz`.
    #[must_use]
    pub fn new(seed: u64, rate_hz: NonZeroU32) -> Self {
        Self {
            seed,
            rate_hz,
            ..Self::default()
        }
    }
}

/// What happened to one simulated sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fate {
    /// Sent intact.
    Sent,
    /// Taken but not sent.
    Dropped,
    /// Sent with the byte at `index` of its encoding corrupted.
    Corrupted {
        /// Offset of the corrupted byte within this sample's bytes.
        index: usize,
    },
}

/// One sample period of the simulated board.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// The sample the firmware logic produced (what an intact frame decodes to).
    pub sample: ImuSample,
    /// What the fault injection did with it.
    pub fate: Fate,
    /// Every byte sent during this period, in order (a due device-info frame or, in
    /// CSV format, the header row at start; then the sample's bytes; empty when the
    /// sample was dropped and nothing else was due).
    pub bytes: Vec<u8>,
}

/// Ground truth of everything the simulator did, to compare with what a host counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SimStats {
    /// Samples taken (sequence numbers used).
    pub samples: u64,
    /// Samples sent intact.
    pub sent: u64,
    /// Samples dropped.
    pub dropped: u64,
    /// Samples sent corrupted.
    pub corrupted: u64,
    /// Device-info frames sent.
    pub info_frames: u64,
    /// Bytes emitted in total.
    pub bytes: u64,
}

/// A deterministic simulated board. Pure: no threads, no clock; see
/// [`Simulator::spawn`] for a real-time producer.
///
/// ```
/// use xiao_proto::{Frame, FrameDecoder};
/// use xiao_sim::{SimConfig, Simulator};
///
/// let mut sim = Simulator::new(SimConfig::default());
/// let mut decoder = FrameDecoder::new();
/// let bytes = sim.next_frame_bytes();
/// let frames: Vec<_> = decoder.decode(&bytes).collect();
/// assert!(matches!(frames.last(), Some(Ok(Frame::Sample(s))) if s.seq.0 == 0));
/// ```
#[derive(Debug, Clone)]
pub struct Simulator {
    config: SimConfig,
    sensors: SyntheticSensors,
    faults: SplitMix64,
    sampler: Sampler,
    index: u64,
    last_info: Option<u32>,
    stats: SimStats,
}

impl Simulator {
    /// A board at power-on with the given settings.
    #[must_use]
    pub fn new(config: SimConfig) -> Self {
        Self {
            sensors: SyntheticSensors::new(config.seed),
            // A separate stream so that changing fault settings keeps the signals.
            faults: SplitMix64::new(config.seed ^ 0x5EED_FA17_0000_0000),
            sampler: Sampler::new(config.sampler),
            index: 0,
            last_info: None,
            stats: SimStats::default(),
            config,
        }
    }

    /// The settings.
    #[must_use]
    pub const fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Counters so far.
    #[must_use]
    pub const fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Time between samples.
    #[must_use]
    pub fn period(&self) -> Duration {
        Duration::from_secs(1) / self.config.rate_hz.get()
    }

    /// Runs one sample period and returns what the board did.
    pub fn tick(&mut self) -> Tick {
        let rate = u64::from(self.config.rate_hz.get());
        let millis = (self.index * 1000 / rate) as u32;
        let period_s = 1.0 / rate as f64;
        let raw = self.sensors.read(millis, period_s, &self.config.sampler);
        let sample = self.sampler.sample(&raw);
        self.stats.samples += 1;

        let mut bytes = Vec::new();
        match self.config.format {
            StreamFormat::Csv if self.index == 0 => {
                // The board starts every CSV session with the header row.
                bytes.extend_from_slice(xiao_proto::CSV_HEADER.as_bytes());
                bytes.extend_from_slice(xiao_proto::CSV_LINE_END.as_bytes());
            }
            StreamFormat::Frames if self.announce_due(millis) => {
                let info = self.sampler.device_info(
                    SIM_FIRMWARE_VERSION,
                    u16::try_from(self.config.rate_hz.get()).unwrap_or(u16::MAX),
                );
                bytes.extend_from_slice(Frame::DeviceInfo(info).encode().as_bytes());
                self.stats.info_frames += 1;
                self.last_info = Some(millis);
            }
            _ => {}
        }
        self.index += 1;

        let fate = if self.faults.chance(self.config.faults.drop.get()) {
            self.stats.dropped += 1;
            Fate::Dropped
        } else {
            let mut out = [0u8; MAX_SAMPLE_BYTES];
            // MAX_SAMPLE_BYTES holds any frame and any in-range CSV line; a line that
            // does not fit (absurd values) is sent truncated rather than not at all.
            let n = Sampler::encode(&sample, self.config.format, &mut out).unwrap_or(out.len());
            let encoded = &mut out[..n];
            let fate = if self.faults.chance(self.config.faults.corrupt.get()) {
                let index = self.corrupt(encoded);
                self.stats.corrupted += 1;
                Fate::Corrupted { index }
            } else {
                self.stats.sent += 1;
                Fate::Sent
            };
            bytes.extend_from_slice(encoded);
            fate
        };
        self.stats.bytes += bytes.len() as u64;
        Tick {
            sample,
            fate,
            bytes,
        }
    }

    fn announce_due(&self, millis: u32) -> bool {
        match (self.config.announce, self.last_info) {
            (Announce::Never, _) => false,
            (_, None) => true,
            (Announce::AtStart, Some(_)) => false,
            (Announce::EveryMillis(every), Some(last)) => millis.wrapping_sub(last) >= every.get(),
        }
    }

    /// Flips bits of one byte, never touching the terminator and never producing one,
    /// so that framing survives and exactly this record is damaged.
    fn corrupt(&mut self, encoded: &mut [u8]) -> usize {
        let body = encoded.len().saturating_sub(1).max(1);
        let index = self.faults.below(body as u64) as usize;
        let Some(byte) = encoded.get_mut(index) else {
            return 0;
        };
        let terminators: &[u8] = match self.config.format {
            StreamFormat::Csv => b"\r\n",
            _ => &[xiao_proto::FRAME_DELIMITER],
        };
        loop {
            let mask = 1 + self.faults.below(255) as u8;
            if !terminators.contains(&(*byte ^ mask)) {
                *byte ^= mask;
                return index;
            }
        }
    }

    /// The bytes of the next period that sends anything (skips dropped samples); never
    /// empty.
    pub fn next_frame_bytes(&mut self) -> Vec<u8> {
        loop {
            let tick = self.tick();
            if !tick.bytes.is_empty() {
                return tick.bytes;
            }
        }
    }
}

/// Endless stream of [`Simulator::next_frame_bytes`].
impl Iterator for Simulator {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        Some(self.next_frame_bytes())
    }
}
