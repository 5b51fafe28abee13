//! The firmware's sampling and framing step, shared with the simulator: raw sensor
//! readings in, numbered [`ImuSample`]s and the exact output bytes out.

use crate::csv::{CsvWriteError, write_csv_line};
use crate::frame::{Frame, MAX_WIRE_FRAME_LEN};
use crate::lsm6::{AccelRange, GyroRange, ImuBurst, imu_temp_c};
use crate::sample::{DeviceInfo, ImuSample, SeqNo};

/// Sensor settings the [`Sampler`] converts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SamplerConfig {
    /// Accelerometer full scale (default ±4 g).
    pub accel_range: AccelRange,
    /// Gyroscope full scale (default ±2000 dps).
    pub gyro_range: GyroRange,
}

/// A temperature as the hardware reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Temperature {
    /// nRF52840 TEMP peripheral result: signed quarter degrees Celsius.
    DieQuarterCelsius(i32),
    /// LSM6DS3TR-C OUT_TEMP register: 256 LSB/°C, 0 at 25 °C.
    ImuRaw(i16),
    /// Already in °C.
    Celsius(f32),
}

impl Temperature {
    /// In degrees Celsius.
    #[must_use]
    pub fn celsius(self) -> f32 {
        match self {
            // Exact for every value the TEMP peripheral can produce.
            Self::DieQuarterCelsius(q) => q as f32 / 4.0,
            Self::ImuRaw(raw) => imu_temp_c(raw),
            Self::Celsius(c) => c,
        }
    }
}

/// Everything read from the hardware for one sample period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawReading {
    /// Device time of the reading, milliseconds since boot.
    pub millis: u32,
    /// The gyro + accel burst read from the IMU.
    pub imu: ImuBurst,
    /// The temperature reading.
    pub temperature: Temperature,
    /// Audio RMS of the period's PCM window (see [`AudioWindow`](crate::AudioWindow)).
    pub audio_rms: f32,
}

/// Which byte stream the device sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StreamFormat {
    /// COBS frames with CRC (the default).
    #[default]
    Frames,
    /// CSV lines `millis,ax,...` (the original text stream; no sequence numbers).
    Csv,
}

/// Largest output of [`Sampler::encode`] for one sample, any format.
pub const MAX_SAMPLE_BYTES: usize = if MAX_WIRE_FRAME_LEN > crate::CSV_LINE_CAPACITY {
    MAX_WIRE_FRAME_LEN
} else {
    crate::CSV_LINE_CAPACITY
};

/// Turns raw readings into numbered samples. Every call to [`Sampler::sample`] uses
/// one sequence number, so a sample the transport then fails to send leaves a gap the
/// host can count.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    next: SeqNo,
}

impl Sampler {
    /// A sampler whose first sample gets sequence number 0.
    #[must_use]
    pub const fn new(config: SamplerConfig) -> Self {
        Self {
            config,
            next: SeqNo(0),
        }
    }

    /// A sampler whose first sample gets `first`.
    #[must_use]
    pub const fn starting_at(config: SamplerConfig, first: SeqNo) -> Self {
        Self {
            config,
            next: first,
        }
    }

    /// The settings.
    #[must_use]
    pub const fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The sequence number the next sample will get.
    #[must_use]
    pub const fn next_seq(&self) -> SeqNo {
        self.next
    }

    /// Converts a reading into the next numbered sample.
    pub fn sample(&mut self, raw: &RawReading) -> ImuSample {
        let seq = self.next;
        self.next = seq.next();
        let accel = self.config.accel_range;
        let gyro = self.config.gyro_range;
        ImuSample {
            seq,
            millis: raw.millis,
            accel_g: raw.imu.accel_raw().map(|r| accel.to_g(r)),
            gyro_dps: raw.imu.gyro_raw().map(|r| gyro.to_dps(r)),
            temp_c: raw.temperature.celsius(),
            audio_rms: raw.audio_rms,
        }
    }

    /// Uses up a sequence number without producing a sample (a reading that failed),
    /// so the host sees the loss as a gap.
    pub fn skip(&mut self) -> SeqNo {
        let seq = self.next;
        self.next = seq.next();
        seq
    }

    /// Writes the bytes the device sends for `sample` in `format` into `out`; returns
    /// their length.
    ///
    /// # Errors
    /// [`CsvWriteError::BufferTooSmall`] when `out` is too small (a buffer of
    /// [`MAX_SAMPLE_BYTES`] always suffices for frames and in-range CSV lines).
    pub fn encode(
        sample: &ImuSample,
        format: StreamFormat,
        out: &mut [u8],
    ) -> Result<usize, CsvWriteError> {
        match format {
            StreamFormat::Frames => {
                let wire = Frame::Sample(*sample).encode();
                let capacity = out.len();
                let dst = out
                    .get_mut(..wire.len())
                    .ok_or(CsvWriteError::BufferTooSmall { capacity })?;
                dst.copy_from_slice(wire.as_bytes());
                Ok(wire.len())
            }
            StreamFormat::Csv => write_csv_line(sample, out),
        }
    }

    /// The [`DeviceInfo`] describing this sampler's settings.
    #[must_use]
    pub const fn device_info(&self, firmware_version: [u8; 3], rate_hz: u16) -> DeviceInfo {
        DeviceInfo {
            firmware_version,
            rate_hz,
            accel_range_g: self.config.accel_range.range_g(),
            gyro_range_dps: self.config.gyro_range.range_dps(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_numbers() {
        let mut s = Sampler::new(SamplerConfig::default());
        let raw = RawReading {
            millis: 5,
            imu: ImuBurst::from_raw([1000, 0, -1000], [8197, 0, -8197]),
            temperature: Temperature::DieQuarterCelsius(97),
            audio_rms: 3.0,
        };
        let a = s.sample(&raw);
        assert_eq!(a.seq, SeqNo(0));
        assert!((a.gyro_dps[0] - 70.0).abs() < 1e-3);
        assert!((a.accel_g[2] + 1.0).abs() < 1e-3);
        assert_eq!(a.temp_c, 24.25);
        assert_eq!(s.skip(), SeqNo(1));
        assert_eq!(s.sample(&raw).seq, SeqNo(2));
        let mut buf = [0u8; MAX_SAMPLE_BYTES];
        let n = Sampler::encode(&a, StreamFormat::Frames, &mut buf).unwrap();
        assert_eq!(&buf[..n], Frame::Sample(a).encode().as_bytes());
        let n = Sampler::encode(&a, StreamFormat::Csv, &mut buf).unwrap();
        assert!(buf[..n].ends_with(b"\r\n"));
        assert_eq!(s.device_info([1, 2, 3], 25).gyro_range_dps, 2000);
    }
}
