//! Firmware for the Seeed XIAO nRF52840 Sense.
//!
//! Samples the LSM6DS3TR-C IMU (one I2C burst of gyro + accel), the die
//! temperature and the PDM microphone's RMS level at a fixed rate (25 Hz by
//! default, `XIAO_RATE_HZ` at build time, up to 1 kHz) and streams every sample
//! as an `xiao-proto` frame over USB CDC-ACM (default), as CSV lines over USB
//! (feature `csv`), or as 20-byte BLE notifications (feature `ble`).
//!
//! Structure: one embassy task per peripheral owner. The sensor task owns the
//! IMU bus and the thermometer and pushes [`xiao_proto::ImuSample`]s into a
//! bounded channel; the microphone task owns the PDM peripheral and publishes
//! the latest window RMS; the transport task drains the channel. A full channel
//! never blocks sampling: the sample is dropped and its sequence number is
//! skipped, so the host sees the loss as a gap.
#![no_std]
#![no_main]

#[cfg(feature = "ble")]
mod ble;
mod board;
#[cfg(not(feature = "ble"))]
mod interrupts;
mod mic;
mod rate;
mod sensor;
mod thermometer;
#[cfg(not(feature = "ble"))]
mod usb;

use embassy_executor::Spawner;
use panic_halt as _;

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_nrf::init(board::clock_config());
    board::start(spawner, p);
}
