//! What [`crate::Lsm6ds3tr::init`] writes.

use xiao_proto::lsm6::{AccelRange, GyroRange, Odr};

/// Interrupt 1 routing register (`INT1_CTRL`); not part of the shared
/// register map because only the driver touches it.
pub const INT1_CTRL: u8 = 0x0D;
const INT1_DRDY_XL: u8 = 1 << 0;
const INT1_DRDY_G: u8 = 1 << 1;

/// Which data-ready signals drive the INT1 pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataReadyRoute {
    /// INT1 stays idle; the caller polls on a timer.
    None,
    /// INT1 goes high when new accelerometer data is ready.
    Accel,
    /// INT1 goes high when new gyroscope data is ready.
    Gyro,
    /// Both data-ready signals on INT1.
    Both,
}

impl DataReadyRoute {
    const fn bits(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Accel => INT1_DRDY_XL,
            Self::Gyro => INT1_DRDY_G,
            Self::Both => INT1_DRDY_XL | INT1_DRDY_G,
        }
    }
}

/// Sensor settings: one output data rate for both sensors, a full scale for
/// each, and the INT1 routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    rate: Odr,
    accel_range: AccelRange,
    gyro_range: GyroRange,
    data_ready: DataReadyRoute,
}

impl Default for Config {
    /// 104 Hz, the shared defaults of `xiao-proto` for the ranges (±4 g,
    /// ±2000 dps), INT1 idle.
    fn default() -> Self {
        Self {
            rate: Odr::Hz104,
            accel_range: AccelRange::default(),
            gyro_range: GyroRange::default(),
            data_ready: DataReadyRoute::None,
        }
    }
}

impl Config {
    /// Sets both sensors' output data rate. Faster costs current (datasheet:
    /// about 0.9 mA at 1.66 kHz against 0.4 mA at 104 Hz for the pair); use
    /// [`Odr::at_least`] with the poll rate so every poll sees fresh data.
    pub const fn with_rate(mut self, rate: Odr) -> Self {
        self.rate = rate;
        self
    }

    /// Sets the accelerometer full scale; a wider range costs resolution.
    pub const fn with_accel_range(mut self, range: AccelRange) -> Self {
        self.accel_range = range;
        self
    }

    /// Sets the gyroscope full scale; a wider range costs resolution.
    pub const fn with_gyro_range(mut self, range: GyroRange) -> Self {
        self.gyro_range = range;
        self
    }

    /// Routes data-ready signals to INT1 (default: none).
    pub const fn with_data_ready(mut self, route: DataReadyRoute) -> Self {
        self.data_ready = route;
        self
    }

    /// Output data rate of both sensors.
    pub const fn rate(&self) -> Odr {
        self.rate
    }

    /// Accelerometer full scale.
    pub const fn accel_range(&self) -> AccelRange {
        self.accel_range
    }

    /// Gyroscope full scale.
    pub const fn gyro_range(&self) -> GyroRange {
        self.gyro_range
    }

    /// Value written to `CTRL1_XL`: ODR_XL in bits 7..4, FS_XL in bits 3..2.
    pub const fn ctrl1_xl(&self) -> u8 {
        self.rate.ctrl_bits() | self.accel_range.ctrl1_fs_bits()
    }

    /// Value written to `CTRL2_G`: ODR_G in bits 7..4, FS_G/FS_125 in bits 3..1.
    pub const fn ctrl2_g(&self) -> u8 {
        self.rate.ctrl_bits() | self.gyro_range.ctrl2_fs_bits()
    }

    /// Value written to `INT1_CTRL`.
    pub const fn int1_ctrl(&self) -> u8 {
        self.data_ready.bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values worked out by hand from the datasheet's register
    /// tables (CTRL1_XL table 52, CTRL2_G table 55), not from the code.
    #[test]
    fn register_values_follow_the_datasheet() {
        let c = Config::default()
            .with_rate(Odr::Hz833)
            .with_accel_range(AccelRange::G16)
            .with_gyro_range(GyroRange::Dps2000);
        assert_eq!(c.ctrl1_xl(), 0b0111_0100);
        assert_eq!(c.ctrl2_g(), 0b0111_1100);
        let c = Config::default()
            .with_rate(Odr::Hz12_5)
            .with_accel_range(AccelRange::G2)
            .with_gyro_range(GyroRange::Dps125);
        assert_eq!(c.ctrl1_xl(), 0b0001_0000);
        assert_eq!(c.ctrl2_g(), 0b0001_0010);
        let c = Config::default()
            .with_rate(Odr::Hz1660)
            .with_accel_range(AccelRange::G8)
            .with_gyro_range(GyroRange::Dps500);
        assert_eq!(c.ctrl1_xl(), 0b1000_1100);
        assert_eq!(c.ctrl2_g(), 0b1000_0100);
        // Default: 104 Hz, ±4 g, ±2000 dps.
        assert_eq!(Config::default().ctrl1_xl(), 0b0100_1000);
        assert_eq!(Config::default().ctrl2_g(), 0b0100_1100);
    }

    #[test]
    fn data_ready_route_bits() {
        let c = Config::default().with_data_ready(DataReadyRoute::Both);
        assert_eq!(c.int1_ctrl(), 0b11);
        assert_eq!(
            Config::default()
                .with_data_ready(DataReadyRoute::Gyro)
                .int1_ctrl(),
            0b10
        );
        assert_eq!(Config::default().int1_ctrl(), 0);
    }
}
