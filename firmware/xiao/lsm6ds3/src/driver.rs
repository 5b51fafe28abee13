//! The driver proper.

use embedded_hal_async::i2c::I2c;
use xiao_proto::lsm6::{BURST_LEN, CTRL3_C_BDU_IF_INC, ImuBurst, WHO_AM_I_VALUE, imu_temp_c, reg};

use crate::config::{Config, INT1_CTRL};
use crate::status::Status;

/// 7-bit I2C address, selected by the SA0 pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Address {
    /// SA0 low: 0x6A (the XIAO nRF52840 Sense wiring).
    Sa0Low,
    /// SA0 high: 0x6B.
    Sa0High,
}

impl Address {
    /// The 7-bit bus address.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Sa0Low => xiao_proto::lsm6::I2C_ADDRESS,
            Self::Sa0High => 0x6B,
        }
    }
}

/// Why [`Lsm6ds3tr::init`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError<E: core::fmt::Debug> {
    /// The bus transaction failed (no ACK, arbitration loss, ...).
    #[error("I2C transfer failed: {0:?}")]
    Bus(E),
    /// Something answered, but `WHO_AM_I` was not 0x6A.
    #[error("unexpected WHO_AM_I value {0:#04x} (expected 0x6a)")]
    WrongChip(u8),
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError<E: core::fmt::Debug> {
    /// The bus transaction failed.
    #[error("I2C transfer failed: {0:?}")]
    Bus(E),
}

/// An LSM6DS3TR-C on an async I2C bus. Owns the bus handle; give it a shared
/// bus device if other chips sit on the same wires.
#[derive(Debug)]
pub struct Lsm6ds3tr<I> {
    i2c: I,
    address: u8,
    config: Config,
}

impl<I: I2c> Lsm6ds3tr<I> {
    /// Wraps the bus; does no I/O. Call [`Self::init`] before reading.
    pub fn new(i2c: I, address: Address) -> Self {
        Self {
            i2c,
            address: address.bits(),
            config: Config::default(),
        }
    }

    /// Checks `WHO_AM_I`, then writes `CTRL3_C` (block data update +
    /// address auto-increment), `INT1_CTRL`, `CTRL1_XL` and `CTRL2_G` from
    /// `config`. Nothing is written if the identity check fails.
    ///
    /// Not cancel-safe: dropping the future mid-way can leave some registers
    /// written; call it again to finish.
    pub async fn init(&mut self, config: Config) -> Result<(), InitError<I::Error>> {
        let id = self
            .read_register(reg::WHO_AM_I)
            .await
            .map_err(InitError::Bus)?;
        if id != WHO_AM_I_VALUE {
            return Err(InitError::WrongChip(id));
        }
        let writes = [
            (reg::CTRL3_C, CTRL3_C_BDU_IF_INC),
            (INT1_CTRL, config.int1_ctrl()),
            (reg::CTRL1_XL, config.ctrl1_xl()),
            (reg::CTRL2_G, config.ctrl2_g()),
        ];
        for (register, value) in writes {
            self.i2c
                .write(self.address, &[register, value])
                .await
                .map_err(InitError::Bus)?;
        }
        self.config = config;
        Ok(())
    }

    /// The configuration last applied by [`Self::init`] (the default before).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reads `WHO_AM_I`.
    pub async fn who_am_i(&mut self) -> Result<u8, ReadError<I::Error>> {
        self.read_register(reg::WHO_AM_I)
            .await
            .map_err(ReadError::Bus)
    }

    /// Reads the data-ready flags.
    pub async fn status(&mut self) -> Result<Status, ReadError<I::Error>> {
        self.read_register(reg::STATUS_REG)
            .await
            .map(Status)
            .map_err(ReadError::Bus)
    }

    /// Reads gyro and accel in one 12-byte burst starting at `OUTX_L_G`.
    /// With block data update on, the pair always comes from one sample.
    ///
    /// Cancel-safe: a dropped read has no effect on the chip.
    pub async fn read_burst(&mut self) -> Result<ImuBurst, ReadError<I::Error>> {
        let mut buf = [0u8; BURST_LEN];
        self.i2c
            .write_read(self.address, &[reg::OUTX_L_G], &mut buf)
            .await
            .map_err(ReadError::Bus)?;
        Ok(ImuBurst(buf))
    }

    /// The raw `OUT_TEMP` register (256 LSB/°C, 0 at 25 °C).
    pub async fn read_temperature_raw(&mut self) -> Result<i16, ReadError<I::Error>> {
        let mut buf = [0u8; 2];
        self.i2c
            .write_read(self.address, &[reg::OUT_TEMP_L], &mut buf)
            .await
            .map_err(ReadError::Bus)?;
        Ok(i16::from_le_bytes(buf))
    }

    /// The IMU's own temperature sensor in °C.
    pub async fn read_temperature(&mut self) -> Result<f32, ReadError<I::Error>> {
        self.read_temperature_raw().await.map(imu_temp_c)
    }

    /// Gives the bus back.
    pub fn release(self) -> I {
        self.i2c
    }

    async fn read_register(&mut self, register: u8) -> Result<u8, I::Error> {
        let mut buf = [0u8; 1];
        self.i2c
            .write_read(self.address, &[register], &mut buf)
            .await?;
        Ok(buf[0])
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec;

    use embassy_futures::block_on;
    use embedded_hal_async::i2c::{ErrorKind, NoAcknowledgeSource};
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};

    use super::*;
    use crate::config::DataReadyRoute;
    use xiao_proto::lsm6::{AccelRange, GyroRange, Odr};

    const ADDR: u8 = 0x6A;

    #[test]
    fn init_checks_identity_then_writes_the_configuration() {
        let config = Config::default()
            .with_rate(Odr::Hz833)
            .with_accel_range(AccelRange::G8)
            .with_gyro_range(GyroRange::Dps1000)
            .with_data_ready(DataReadyRoute::Accel);
        let expected = [
            Transaction::write_read(ADDR, vec![0x0F], vec![0x6A]),
            Transaction::write(ADDR, vec![0x12, 0x44]),
            Transaction::write(ADDR, vec![0x0D, 0x01]),
            // CTRL1_XL: ODR 833 Hz (0111), FS_XL ±8 g (11).
            Transaction::write(ADDR, vec![0x10, 0x7C]),
            // CTRL2_G: ODR 833 Hz (0111), FS_G ±1000 dps (10), FS_125 off.
            Transaction::write(ADDR, vec![0x11, 0x78]),
        ];
        let mut imu = Lsm6ds3tr::new(Mock::new(&expected), Address::Sa0Low);
        block_on(imu.init(config)).unwrap();
        assert_eq!(imu.config(), &config);
        imu.release().done();
    }

    #[test]
    fn init_rejects_another_chip_without_writing() {
        let expected = [Transaction::write_read(ADDR, vec![0x0F], vec![0x69])];
        let mut imu = Lsm6ds3tr::new(Mock::new(&expected), Address::Sa0Low);
        match block_on(imu.init(Config::default())) {
            Err(InitError::WrongChip(0x69)) => {}
            other => panic!("expected WrongChip, got {other:?}"),
        }
        imu.release().done();
    }

    #[test]
    fn bus_errors_are_reported_not_panicked() {
        let expected = [
            Transaction::write_read(ADDR, vec![0x0F], vec![0x6A])
                .with_error(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)),
            Transaction::write_read(ADDR, vec![0x22], vec![0; 12])
                .with_error(ErrorKind::ArbitrationLoss),
        ];
        let mut imu = Lsm6ds3tr::new(Mock::new(&expected), Address::Sa0Low);
        assert!(matches!(
            block_on(imu.init(Config::default())),
            Err(InitError::Bus(_))
        ));
        assert!(matches!(block_on(imu.read_burst()), Err(ReadError::Bus(_))));
        imu.release().done();
    }

    #[test]
    fn one_burst_reads_gyro_then_accel() {
        let burst = vec![
            0x01, 0x00, 0xFF, 0xFF, 0x00, 0x80, // gyro x=1, y=-1, z=i16::MIN
            0x00, 0x40, 0x00, 0xC0, 0xFF, 0x7F, // accel x=16384, y=-16384, z=i16::MAX
        ];
        let expected = [Transaction::write_read(ADDR, vec![0x22], burst)];
        let mut imu = Lsm6ds3tr::new(Mock::new(&expected), Address::Sa0Low);
        let burst = block_on(imu.read_burst()).unwrap();
        assert_eq!(burst.gyro_raw(), [1, -1, i16::MIN]);
        assert_eq!(burst.accel_raw(), [16384, -16384, i16::MAX]);
        imu.release().done();
    }

    #[test]
    fn status_temperature_and_secondary_address() {
        let expected = [
            Transaction::write_read(0x6B, vec![0x1E], vec![0x03]),
            Transaction::write_read(0x6B, vec![0x20], vec![0x00, 0x02]),
            Transaction::write_read(0x6B, vec![0x0F], vec![0x6A]),
        ];
        let mut imu = Lsm6ds3tr::new(Mock::new(&expected), Address::Sa0High);
        let s = block_on(imu.status()).unwrap();
        assert!(s.accel_ready() && s.gyro_ready() && !s.temperature_ready());
        let t = block_on(imu.read_temperature()).unwrap();
        assert!((t - 27.0).abs() < 1e-6, "{t}");
        assert_eq!(block_on(imu.who_am_i()).unwrap(), 0x6A);
        imu.release().done();
    }
}
