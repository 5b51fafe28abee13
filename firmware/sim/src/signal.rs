//! Deterministic synthetic sensors: what the board's chips would hold at a given time.

use crate::rng::SplitMix64;
use std::f64::consts::TAU;
use xiao_proto::lsm6::ImuBurst;
use xiao_proto::{AudioWindow, RawReading, SamplerConfig, Temperature};

/// PDM microphone sample rate the firmware runs at (16 kHz PCM after decimation).
pub const PCM_RATE_HZ: u32 = 16_000;
/// Longest PCM window summarised into one sample (40 ms, the window at 25 Hz).
const MAX_WINDOW: usize = 640;

/// Smooth signals with seeded phases and amplitudes plus seeded noise.
#[derive(Debug, Clone)]
pub(crate) struct SyntheticSensors {
    rng: SplitMix64,
    phase: [f64; 6],
    amp: [f64; 6],
    tone_hz: f64,
    pcm: Vec<i16>,
}

impl SyntheticSensors {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let phase = [(); 6].map(|()| rng.next_f64() * TAU);
        let amp = [(); 6].map(|()| 0.5 + rng.next_f64());
        let tone_hz = 200.0 + 800.0 * rng.next_f64();
        Self {
            rng,
            phase,
            amp,
            tone_hz,
            pcm: Vec::with_capacity(MAX_WINDOW),
        }
    }

    /// The raw reading at device time `millis` for a sample period of `period_s`.
    pub(crate) fn read(
        &mut self,
        millis: u32,
        period_s: f64,
        config: &SamplerConfig,
    ) -> RawReading {
        let t = f64::from(millis) / 1000.0;
        let wave = |i: usize, hz: f64| (TAU * hz * t + self.phase[i]).sin() * self.amp[i];
        // The board lies flat and is gently tilted and turned by hand.
        let accel = [
            0.05 * wave(0, 0.5) + 0.002 * self.rng.noise(),
            0.05 * wave(1, 0.3) + 0.002 * self.rng.noise(),
            1.0 + 0.01 * wave(2, 0.7) + 0.002 * self.rng.noise(),
        ];
        let gyro = [
            20.0 * wave(3, 0.5) + 0.1 * self.rng.noise(),
            15.0 * wave(4, 0.3) + 0.1 * self.rng.noise(),
            5.0 * wave(5, 0.2) + 0.1 * self.rng.noise(),
        ];
        let accel_raw = accel.map(|g| config.accel_range.to_raw(g as f32));
        let gyro_raw = gyro.map(|d| config.gyro_range.to_raw(d as f32));
        // Die temperature drifts slowly around 24 °C in quarter degrees, as TEMP reports.
        let temp_c = 24.0 + 1.5 * (TAU * t / 600.0 + self.phase[0]).sin();
        let quarter = (temp_c * 4.0).round() as i32;
        // Microphone: a tone whose loudness swells, noise and a DC offset, summarised
        // by the firmware's own RMS code.
        let window = ((f64::from(PCM_RATE_HZ) * period_s) as usize).clamp(1, MAX_WINDOW);
        let loudness = 800.0 * (1.0 + (TAU * 0.1 * t + self.phase[1]).sin());
        self.pcm.clear();
        for k in 0..window {
            let tk = t + k as f64 / f64::from(PCM_RATE_HZ);
            let x = -300.0 + loudness * (TAU * self.tone_hz * tk).sin() + 50.0 * self.rng.noise();
            self.pcm.push(x.round().clamp(-32768.0, 32767.0) as i16);
        }
        let mut audio = AudioWindow::new();
        audio.push(&self.pcm);
        RawReading {
            millis,
            imu: ImuBurst::from_raw(gyro_raw, accel_raw),
            temperature: Temperature::DieQuarterCelsius(quarter),
            audio_rms: audio.rms(),
        }
    }
}
