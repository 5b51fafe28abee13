//! Simulated sources: deterministic signal generators (sample `i` depends only on `i`
//! and the rate) and a paced thread that pushes them into a ring. The device simulator
//! speaking the firmware's frames lives with the firmware work; these exist so the
//! recorder can be run and tested without hardware.

use std::f64::consts::TAU;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::capture::ring::RingWriter;
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

/// A thread that feeds a ring until it is stopped or its source ends, and reports
/// what it fed. Dropping it stops the thread and waits for it.
#[derive(Debug)]
pub(crate) struct FeedThread<R> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<R>>,
}

impl<R: Default + Send + 'static> FeedThread<R> {
    /// Runs `body` on a thread named `name`; `body` returns once the flag it is given
    /// is set (or its source has ended).
    pub(crate) fn spawn(
        name: &str,
        body: impl FnOnce(&AtomicBool) -> R + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&flag))?;
        Ok(FeedThread {
            stop,
            handle: Some(handle),
        })
    }

    /// True once the thread has returned.
    pub(crate) fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stops the thread and returns its report (the default if it panicked).
    pub(crate) fn stop(mut self) -> R {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl<R> Drop for FeedThread<R> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A thread pushing a generator's samples into a ring at its rate (paced against the
/// wall clock, in bursts of at most 10 ms worth).
#[derive(Debug)]
pub struct SimSource(FeedThread<u64>);

impl SimSource {
    /// Starts pushing samples `0, 1, 2, ...` into `ring`. `limit` stops after that many.
    pub fn spawn<G: SignalGenerator>(
        generator: G,
        mut ring: RingWriter<G::Sample>,
        limit: Option<u64>,
    ) -> std::io::Result<Self> {
        let thread = FeedThread::spawn("kwik-sim-source", move |stop| {
            let rate = f64::from(generator.rate().get());
            let t0 = Instant::now();
            let mut i = 0u64;
            let limit = limit.unwrap_or(u64::MAX);
            while !stop.load(Ordering::Relaxed) && i < limit {
                let due = ((t0.elapsed().as_secs_f64() * rate) as u64).min(limit);
                while i < due {
                    ring.push(generator.sample(i));
                    i += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            i
        })?;
        Ok(SimSource(thread))
    }

    /// True once the source has pushed its `limit`.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Stops the source; returns how many samples it pushed.
    pub fn stop(self) -> u64 {
        self.0.stop()
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
