//! The sensor task: IMU burst + die temperature + latest microphone RMS,
//! once per tick, turned into numbered samples by the shared
//! [`xiao_proto::Sampler`] and queued in [`SAMPLES`].

use core::sync::atomic::{AtomicU32, Ordering};

use embassy_nrf::gpio::Output;
use embassy_nrf::twim::Twim;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::channel::Channel;
use embassy_time::{Duration, Instant, Timer};
use lsm6ds3tr::{Address, Config, Lsm6ds3tr, Odr};
use xiao_proto::{ImuSample, RawReading, Sampler, SamplerConfig};

use crate::mic;
use crate::rate::{RATE_HZ, SampleClock};
use crate::thermometer::{DieThermometer, Thermometer};

/// Samples waiting for the transport. 32 slots ride out a 1.3 s stall at
/// 25 Hz or 32 ms at 1 kHz before samples are dropped.
pub(crate) static SAMPLES: Channel<CriticalSectionRawMutex, ImuSample, 32> = Channel::new();

/// Samples dropped because [`SAMPLES`] was full (their sequence numbers are
/// used up, so the host also sees them as gaps). These counters are for a
/// debugger; the host learns the same from the sequence numbers.
pub(crate) static DROPPED: AtomicU32 = AtomicU32::new(0);
/// Sample periods that passed while the task could not run (numbers skipped).
pub(crate) static MISSED: AtomicU32 = AtomicU32::new(0);
/// IMU reads that failed on the bus (their sequence numbers are skipped too).
pub(crate) static READ_ERRORS: AtomicU32 = AtomicU32::new(0);

/// Ranges used for conversion and reported in [`xiao_proto::DeviceInfo`]:
/// the shared defaults (±4 g, ±2000 dps).
pub(crate) const SAMPLER_CONFIG: SamplerConfig = SamplerConfig {
    accel_range: xiao_proto::lsm6::AccelRange::G4,
    gyro_range: xiao_proto::lsm6::GyroRange::Dps2000,
};

/// Power-up to first I2C access: the regulator's 3 ms start-up plus the
/// IMU's boot time (datasheet: 15 ms typ.), with margin.
const IMU_BOOT: Duration = Duration::from_millis(35);
/// Back-off between attempts to bring up an IMU that does not answer.
const IMU_RETRY: Duration = Duration::from_millis(500);
/// The die sensor takes ~36 µs and changes slowly: read it at most this often.
const TEMP_HZ: u32 = 10;

/// Owns the IMU bus, the IMU's power switch and the thermometer.
#[embassy_executor::task]
pub(crate) async fn sensor_task(
    i2c: Twim<'static>,
    mut imu_power: Output<'static>,
    mut thermometer: Thermometer,
) -> ! {
    // ODR: the slowest rate at least the poll rate, so each poll reads fresh data.
    let config = Config::default()
        .with_rate(Odr::at_least(RATE_HZ))
        .with_accel_range(SAMPLER_CONFIG.accel_range)
        .with_gyro_range(SAMPLER_CONFIG.gyro_range);
    let mut imu = Lsm6ds3tr::new(i2c, Address::Sa0Low);
    loop {
        imu_power.set_high();
        Timer::after(IMU_BOOT).await;
        if imu.init(config).await.is_ok() {
            break;
        }
        // Power-cycle: a wedged IMU (e.g. mid-transfer at reset) comes back.
        imu_power.set_low();
        Timer::after(IMU_RETRY).await;
    }

    let mut sampler = Sampler::new(SAMPLER_CONFIG);
    let temp_every = (RATE_HZ / TEMP_HZ).max(1);
    let mut temperature = thermometer.measure().await;
    let mut tick: u32 = 0;
    let mut clock = SampleClock::new(Instant::now());
    loop {
        for _ in 0..clock.tick().await {
            MISSED.fetch_add(1, Ordering::Relaxed);
            sampler.skip();
        }
        let at = Instant::now();
        if tick.is_multiple_of(temp_every) {
            temperature = thermometer.measure().await;
        }
        tick = tick.wrapping_add(1);
        let Ok(imu_burst) = imu.read_burst().await else {
            READ_ERRORS.fetch_add(1, Ordering::Relaxed);
            sampler.skip();
            continue;
        };
        let sample = sampler.sample(&RawReading {
            // Device millis wrap after ~49.7 days by contract.
            millis: at.as_millis() as u32,
            imu: imu_burst,
            temperature,
            audio_rms: mic::latest_rms(),
        });
        if SAMPLES.try_send(sample).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}
