//! Deterministic signal generators: sample `i` depends only on `i` and the rate, so a
//! recording of one can be checked value by value. They exist so the recorder can be
//! run and tested without hardware; [`GeneratorSource`](super::generated::GeneratorSource)
//! paces one in real time for a [`Producer`](crate::capture::producer::Producer).

use std::f64::consts::TAU;

use crate::format::schema::{EfieldSample, ImuRow, Schema, StagePosition};
use crate::format::time::RelMicros;

/// A sample rate in whole hertz (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RateHz(u32);

/// A rate of zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sample rate must be at least 1 Hz")]
pub struct ZeroRate;

impl TryFrom<u32> for RateHz {
    type Error = ZeroRate;
    fn try_from(v: u32) -> Result<Self, ZeroRate> {
        if v == 0 { Err(ZeroRate) } else { Ok(RateHz(v)) }
    }
}

impl RateHz {
    /// Hertz.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Time of sample `i` since t0, exact to the microsecond (floor).
    pub fn time_of(self, i: u64) -> RelMicros {
        RelMicros((u128::from(i) * 1_000_000 / u128::from(self.0)) as u64)
    }
}

/// A deterministic generator of one schema.
pub trait SignalGenerator: Send + 'static {
    /// The samples it makes.
    type Sample: Schema;
    /// Sample number `index`; the same index always gives the same sample.
    fn sample(&self, index: u64) -> Self::Sample;
    /// Its rate.
    fn rate(&self) -> RateHz;
}

/// Simulated XIAO IMU: slow sines on every axis, a constant-ish temperature and a
/// periodic audio burst.
#[derive(Debug, Clone, Copy)]
pub struct SimImu {
    /// Sample rate.
    pub rate: RateHz,
}

impl SignalGenerator for SimImu {
    type Sample = ImuRow;
    fn sample(&self, i: u64) -> ImuRow {
        let t = self.rate.time_of(i).as_secs_f64();
        let s = |f: f64, a: f64, p: f64| (a * (TAU * f * t + p).sin()) as f32;
        ImuRow {
            millis: ((u128::from(i) * 1000 / u128::from(self.rate.0)) & 0xffff_ffff) as u32,
            ax: s(0.5, 0.2, 0.0),
            ay: s(0.7, 0.2, 1.0),
            az: 1.0 + s(0.3, 0.05, 2.0),
            gx: s(1.1, 30.0, 0.0),
            gy: s(1.3, 30.0, 0.5),
            gz: s(0.9, 45.0, 1.5),
            temp_c: 24.0 + s(0.01, 0.5, 0.0),
            audio_rms: if (i / u64::from(self.rate.0.max(1))) % 2 == 0 {
                0.01
            } else {
                0.2 + s(3.0, 0.05, 0.0)
            },
        }
    }
    fn rate(&self) -> RateHz {
        self.rate
    }
}

/// Simulated two-ADS131A04 E-field bench: a quadrature pair per axis, quantised to
/// 24-bit codes and scaled to volts (±2.4 V full scale).
#[derive(Debug, Clone, Copy)]
pub struct SimEfield {
    /// Sample rate.
    pub rate: RateHz,
}

fn adc_volts(x: f64) -> f64 {
    let code = (x.clamp(-1.0, 1.0) * 8_388_607.0).round();
    code * 2.4 / 8_388_608.0
}

impl SignalGenerator for SimEfield {
    type Sample = EfieldSample;
    fn sample(&self, i: u64) -> EfieldSample {
        let t_rel = self.rate.time_of(i);
        let t = t_rel.as_secs_f64();
        let mut channels = [0.0; 8];
        for (k, c) in channels.iter_mut().enumerate() {
            let f = 7.0 + 3.0 * (k / 2) as f64;
            let phase = if k % 2 == 1 { TAU / 4.0 } else { 0.0 };
            *c = adc_volts(0.6 * (TAU * f * t + phase).sin());
        }
        EfieldSample {
            index: i,
            t_rel,
            segment: Default::default(),
            channels,
        }
    }
    fn rate(&self) -> RateHz {
        self.rate
    }
}

/// Simulated motion stage: a raster scan, one line per second along x, stepping y.
#[derive(Debug, Clone, Copy)]
pub struct SimStage {
    /// Sample rate.
    pub rate: RateHz,
}

impl SignalGenerator for SimStage {
    type Sample = StagePosition;
    fn sample(&self, i: u64) -> StagePosition {
        let r = u64::from(self.rate.0);
        let line = i / r;
        let frac = (i % r) as f64 / r as f64;
        let x = if line % 2 == 0 { frac } else { 1.0 - frac } * 10.0;
        StagePosition {
            index: i,
            t_rel: self.rate.time_of(i),
            segment: Default::default(),
            x,
            y: line as f64 * 0.5,
        }
    }
    fn rate(&self) -> RateHz {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic() {
        let g = SimEfield {
            rate: RateHz::try_from(128_000).unwrap(),
        };
        assert_eq!(g.sample(12345), g.sample(12345));
        assert_eq!(g.sample(128_000).t_rel, RelMicros(1_000_000));
        let imu = SimImu {
            rate: RateHz::try_from(25).unwrap(),
        };
        assert_eq!(imu.sample(50).millis, 2000);
        assert!(RateHz::try_from(0).is_err());
    }
}
