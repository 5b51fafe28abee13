//! The numeric view of a sample that plots and previews draw: channel names, units and
//! values, and the sample's time. One implementation per schema; everything above it
//! (decimation, live frames, previews) is written once for all of them.

use crate::format::schema::{EfieldSample, ImuRow, Schema, StagePosition};

/// A schema whose samples can be plotted.
pub trait Channels: Schema {
    /// Channel names, in the order [`Channels::values`] fills them.
    const NAMES: &'static [&'static str];
    /// Unit of each channel; the page draws channels of one unit in one plot.
    const UNITS: &'static [&'static str];
    /// The sample's time in seconds (device time for the IMU, time since t0 otherwise).
    fn time_s(&self) -> f64;
    /// Writes the channel values into `out` (`out.len() == NAMES.len()`).
    fn values(&self, out: &mut [f64]);
}

impl Channels for ImuRow {
    const NAMES: &'static [&'static str] =
        &["ax", "ay", "az", "gx", "gy", "gz", "tempC", "audioRMS"];
    const UNITS: &'static [&'static str] = &["g", "g", "g", "deg/s", "deg/s", "deg/s", "°C", "rms"];
    fn time_s(&self) -> f64 {
        f64::from(self.millis) / 1e3
    }
    fn values(&self, out: &mut [f64]) {
        for (o, v) in out.iter_mut().zip(self.values()) {
            *o = f64::from(v);
        }
    }
}

impl Channels for EfieldSample {
    const NAMES: &'static [&'static str] = &[
        "adc1_ch1", "adc1_ch2", "adc1_ch3", "adc1_ch4", "adc2_ch1", "adc2_ch2", "adc2_ch3",
        "adc2_ch4",
    ];
    const UNITS: &'static [&'static str] = &["V"; 8];
    fn time_s(&self) -> f64 {
        self.t_rel.as_secs_f64()
    }
    fn values(&self, out: &mut [f64]) {
        out.copy_from_slice(&self.channels);
    }
}

impl Channels for StagePosition {
    const NAMES: &'static [&'static str] = &["x", "y"];
    const UNITS: &'static [&'static str] = &["mm", "mm"];
    fn time_s(&self) -> f64 {
        self.t_rel.as_secs_f64()
    }
    fn values(&self, out: &mut [f64]) {
        out[0] = self.x;
        out[1] = self.y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::sources::signal::{RateHz, SignalGenerator, SimEfield, SimImu, SimStage};

    fn check<S: Channels>(sample: S) {
        assert_eq!(S::NAMES.len(), S::UNITS.len());
        let mut v = vec![f64::NAN; S::NAMES.len()];
        sample.values(&mut v);
        assert!(v.iter().all(|x| x.is_finite()), "{v:?}");
        assert!(sample.time_s() >= 0.0);
    }

    #[test]
    fn every_schema_fills_every_channel() {
        let rate = RateHz::try_from(1000).unwrap();
        check(SimImu { rate }.sample(1234));
        check(SimEfield { rate }.sample(1234));
        check(SimStage { rate }.sample(1234));
        let mut v = [0.0; 8];
        SimEfield { rate }.sample(7).values(&mut v);
        assert_eq!(v, SimEfield { rate }.sample(7).channels);
    }
}
