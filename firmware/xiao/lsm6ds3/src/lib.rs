//! A small async driver for the ST LSM6DS3TR-C 6-axis IMU (accelerometer +
//! gyroscope), as fitted to the Seeed XIAO nRF52840 Sense.
//!
//! The driver is generic over [`embedded_hal_async::i2c::I2c`], owns its bus
//! handle, and does three things: check the chip identity (`WHO_AM_I` 0x0F
//! reads 0x6A), configure output data rate and full scale of both sensors
//! (`CTRL1_XL` 0x10, `CTRL2_G` 0x11, `CTRL3_C` 0x12, `INT1_CTRL` 0x0D), and
//! read gyro + accel in one 12-byte burst (`OUTX_L_G` 0x22 .. `OUTZ_H_XL`
//! 0x2D). It does I/O only: the register map, the range/rate encodings and
//! the conversion of raw counts to g and dps live in [`xiao_proto::lsm6`],
//! which the host-side device simulator shares, so the firmware and the
//! simulator cannot disagree on them.
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
mod status;

pub use config::{Config, DataReadyRoute, INT1_CTRL};
pub use driver::{Address, InitError, Lsm6ds3tr, ReadError};
pub use status::Status;
pub use xiao_proto::lsm6::{AccelRange, GyroRange, ImuBurst, Odr};
