//! A small async driver for the ST LSM6DS3TR-C 6-axis IMU (accelerometer +
//! gyroscope), as fitted to the Seeed XIAO nRF52840 Sense.
//!
//! The driver is generic over [`embedded_hal_async::i2c::I2c`], owns its bus
//! handle, and does three things: check the chip identity, configure output
//! data rate and full scale of both sensors, and read gyro + accel in one
//! 12-byte burst (`OUTX_L_G` 0x22 .. `OUTZ_H_XL` 0x2D). Register addresses and
//! bit fields come from the LSM6DS3TR-C datasheet (DocID030071).
//!
//! It is `no_std`, allocation-free, and builds for both the firmware target
//! and the host, where its unit tests run against `embedded-hal-mock`:
//!
//! ```text
//! cd firmware/xiao/lsm6ds3 && cargo test --target x86_64-unknown-linux-gnu
//! ```
#![no_std]

mod config;
mod driver;
mod reading;
pub mod register;

pub use config::{AccelScale, Config, DataReadyRoute, GyroScale, OutputDataRate};
pub use driver::{Address, InitError, Lsm6ds3tr, ReadError, WHO_AM_I_VALUE};
pub use reading::{RawMotion, Status};
