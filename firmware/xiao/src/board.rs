//! The XIAO nRF52840 Sense wiring, and which task gets which peripheral.
//!
//! Pins (Seeed's schematic and board files, cross-checked with the Zephyr
//! `xiao_ble` sense board definition):
//!
//! | function | pin |
//! |---|---|
//! | IMU power switch (LSM6DS3TR-C VDD) | P1.08, high = on, high drive |
//! | IMU I2C SDA / SCL (address 0x6A) | P0.07 / P0.27 |
//! | IMU INT1 | P0.11 (unused: the IMU is polled on a timer) |
//! | microphone power | P1.10, high = on |
//! | PDM clock / data | P1.00 / P0.16 |

use embassy_executor::Spawner;
use embassy_nrf::gpio::{Level, Output, OutputDrive};
use embassy_nrf::interrupt::{self, InterruptExt, Priority};
use embassy_nrf::pdm::{self, Pdm};
use embassy_nrf::twim::{self, Twim};
use embassy_nrf::{Peripherals, bind_interrupts, peripherals};
use static_cell::StaticCell;
use xiao_proto::{DeviceInfo, Sampler};

use crate::mic::mic_task;
use crate::rate::{RATE_HZ, parse_decimal};
use crate::sensor::{SAMPLER_CONFIG, sensor_task};

#[cfg(not(feature = "ble"))]
bind_interrupts!(pub(crate) struct Irqs {
    TWISPI0 => twim::InterruptHandler<peripherals::TWISPI0>;
    PDM => pdm::InterruptHandler<peripherals::PDM>;
    TEMP => embassy_nrf::temp::InterruptHandler;
    USBD => embassy_nrf::usb::InterruptHandler<peripherals::USBD>;
    CLOCK_POWER => embassy_nrf::usb::vbus_detect::InterruptHandler;
});

#[cfg(feature = "ble")]
bind_interrupts!(pub(crate) struct Irqs {
    TWISPI0 => twim::InterruptHandler<peripherals::TWISPI0>;
    PDM => pdm::InterruptHandler<peripherals::PDM>;
    RNG => embassy_nrf::rng::InterruptHandler<peripherals::RNG>;
    EGU0_SWI0 => nrf_mpsl::LowPrioInterruptHandler;
    CLOCK_POWER => nrf_mpsl::ClockInterruptHandler;
    RADIO => nrf_mpsl::HighPrioInterruptHandler;
    TIMER0 => nrf_mpsl::HighPrioInterruptHandler;
    RTC0 => nrf_mpsl::HighPrioInterruptHandler;
});

/// What the device reports about itself (not sent in the CSV text stream,
/// which has no place for it).
#[cfg_attr(all(feature = "csv", not(feature = "ble")), allow(dead_code))]
pub(crate) const DEVICE_INFO: DeviceInfo = Sampler::new(SAMPLER_CONFIG).device_info(
    [
        parse_decimal(env!("CARGO_PKG_VERSION_MAJOR")) as u8,
        parse_decimal(env!("CARGO_PKG_VERSION_MINOR")) as u8,
        parse_decimal(env!("CARGO_PKG_VERSION_PATCH")) as u8,
    ],
    // RATE_HZ <= 1000 (checked in rate.rs), so this never truncates.
    RATE_HZ as u16,
);

/// Clock setup. USB needs the 32 MHz crystal; the board also has a 32.768 kHz
/// crystal for the RTC. In the BLE build the MPSL owns the clocks, so embassy
/// keeps its defaults and the MPSL starts what the radio needs.
pub(crate) fn clock_config() -> embassy_nrf::config::Config {
    let mut config = embassy_nrf::config::Config::default();
    config.time_interrupt_priority = APP_PRIORITY;
    config.gpiote_interrupt_priority = APP_PRIORITY;
    #[cfg(not(feature = "ble"))]
    {
        config.hfclk_source = embassy_nrf::config::HfclkSource::ExternalXtal;
        config.lfclk_source = embassy_nrf::config::LfclkSource::ExternalXtal;
    }
    config
}

/// Priority of every interrupt this firmware handles. Priorities 0 and 1
/// belong to the MPSL in the BLE build (radio timing must not wait behind a
/// driver's handler); the USB build uses the same value so both builds
/// schedule alike.
const APP_PRIORITY: Priority = Priority::P2;

/// Hands each peripheral to the task that owns it and starts the tasks.
pub(crate) fn start(spawner: Spawner, p: Peripherals) {
    interrupt::TWISPI0.set_priority(APP_PRIORITY);
    interrupt::PDM.set_priority(APP_PRIORITY);
    #[cfg(not(feature = "ble"))]
    for irq in [interrupt::TEMP, interrupt::USBD, interrupt::CLOCK_POWER] {
        irq.set_priority(APP_PRIORITY);
    }
    #[cfg(feature = "ble")]
    interrupt::RNG.set_priority(APP_PRIORITY);

    let imu_power = Output::new(p.P1_08, Level::Low, OutputDrive::HighDrive);
    let mut twim_config = twim::Config::default();
    twim_config.frequency = twim::Frequency::K400;
    // All writes come from RAM (stack arrays), so no flash-to-RAM bounce buffer.
    static TWIM_TX: StaticCell<[u8; 0]> = StaticCell::new();
    let i2c = Twim::new(
        p.TWISPI0,
        Irqs,
        p.P0_07,
        p.P0_27,
        twim_config,
        TWIM_TX.init([]),
    );

    let mic_power = Output::new(p.P1_10, Level::High, OutputDrive::Standard);
    // 1.280 MHz / 80 = 16 kHz PCM, mono, 0 dB gain.
    let pdm_config = pdm::Config {
        frequency: pdm::Frequency::_1280k,
        ratio: pdm::Ratio::Ratio80,
        ..Default::default()
    };
    let pdm = Pdm::new(p.PDM, Irqs, p.P1_00, p.P0_16, pdm_config);
    // Invariant for every `unwrap` on a spawn below: each task's pool holds
    // one instance and each task is spawned exactly once.
    spawner.spawn(mic_task(pdm, mic_power).unwrap());

    #[cfg(not(feature = "ble"))]
    {
        let thermometer = embassy_nrf::temp::Temp::new(p.TEMP, Irqs);
        spawner.spawn(sensor_task(i2c, imu_power, thermometer).unwrap());
        crate::usb::start(spawner, p.USBD);
    }

    #[cfg(feature = "ble")]
    {
        let mpsl = crate::ble::start_mpsl(
            spawner,
            nrf_mpsl::Peripherals::new(
                p.RTC0, p.TIMER0, p.TEMP, p.PPI_CH19, p.PPI_CH30, p.PPI_CH31,
            ),
        );
        spawner.spawn(sensor_task(i2c, imu_power, mpsl).unwrap());
        let sdc_p = nrf_sdc::Peripherals::new(
            p.PPI_CH17, p.PPI_CH18, p.PPI_CH20, p.PPI_CH21, p.PPI_CH22, p.PPI_CH23, p.PPI_CH24,
            p.PPI_CH25, p.PPI_CH26, p.PPI_CH27, p.PPI_CH28, p.PPI_CH29,
        );
        crate::ble::start(spawner, mpsl, sdc_p, p.RNG);
    }
}
