//! Output data rate, full scale and interrupt routing.

use crate::register;

/// Output data rate of one sensor (ODR_XL / ODR_G, bits 7:4 of CTRL1_XL / CTRL2_G).
///
/// The gyroscope tops out at 1.66 kHz; asking it for more is clamped to
/// [`OutputDataRate::Hz1660`] by [`Config`] when the register value is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum OutputDataRate {
    /// Sensor off.
    PowerDown,
    /// 12.5 Hz.
    Hz12_5,
    /// 26 Hz.
    Hz26,
    /// 52 Hz.
    Hz52,
    /// 104 Hz.
    Hz104,
    /// 208 Hz.
    Hz208,
    /// 416 Hz.
    Hz416,
    /// 833 Hz.
    Hz833,
    /// 1.66 kHz.
    Hz1660,
    /// 3.33 kHz (accelerometer only).
    Hz3330,
    /// 6.66 kHz (accelerometer only).
    Hz6660,
}

impl OutputDataRate {
    /// The 4-bit ODR code.
    pub const fn code(self) -> u8 {
        match self {
            Self::PowerDown => 0b0000,
            Self::Hz12_5 => 0b0001,
            Self::Hz26 => 0b0010,
            Self::Hz52 => 0b0011,
            Self::Hz104 => 0b0100,
            Self::Hz208 => 0b0101,
            Self::Hz416 => 0b0110,
            Self::Hz833 => 0b0111,
            Self::Hz1660 => 0b1000,
            Self::Hz3330 => 0b1001,
            Self::Hz6660 => 0b1010,
        }
    }

    /// Rate in millihertz (0 when powered down).
    pub const fn millihertz(self) -> u32 {
        match self {
            Self::PowerDown => 0,
            Self::Hz12_5 => 12_500,
            Self::Hz26 => 26_000,
            Self::Hz52 => 52_000,
            Self::Hz104 => 104_000,
            Self::Hz208 => 208_000,
            Self::Hz416 => 416_000,
            Self::Hz833 => 833_000,
            Self::Hz1660 => 1_660_000,
            Self::Hz3330 => 3_330_000,
            Self::Hz6660 => 6_660_000,
        }
    }

    /// The slowest rate that is at least `hz`, so a poll at `hz` never reads
    /// the same output twice; rates above 6.66 kHz give [`Self::Hz6660`].
    pub const fn at_least(hz: u32) -> Self {
        const ALL: [OutputDataRate; 10] = [
            OutputDataRate::Hz12_5,
            OutputDataRate::Hz26,
            OutputDataRate::Hz52,
            OutputDataRate::Hz104,
            OutputDataRate::Hz208,
            OutputDataRate::Hz416,
            OutputDataRate::Hz833,
            OutputDataRate::Hz1660,
            OutputDataRate::Hz3330,
            OutputDataRate::Hz6660,
        ];
        let wanted = hz.saturating_mul(1000);
        let mut i = 0;
        while i < ALL.len() {
            if ALL[i].millihertz() >= wanted {
                return ALL[i];
            }
            i += 1;
        }
        Self::Hz6660
    }
}

/// Accelerometer full scale (FS_XL, bits 3:2 of CTRL1_XL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccelScale {
    /// ±2 g, 0.061 mg/LSB.
    G2,
    /// ±4 g, 0.122 mg/LSB.
    G4,
    /// ±8 g, 0.244 mg/LSB.
    G8,
    /// ±16 g, 0.488 mg/LSB.
    G16,
}

impl AccelScale {
    /// The FS_XL field already shifted into place (note the datasheet's
    /// non-monotonic encoding: 01 is ±16 g).
    pub const fn bits(self) -> u8 {
        match self {
            Self::G2 => 0b00 << 2,
            Self::G16 => 0b01 << 2,
            Self::G4 => 0b10 << 2,
            Self::G8 => 0b11 << 2,
        }
    }

    /// Sensitivity in g per LSB.
    pub const fn g_per_lsb(self) -> f32 {
        match self {
            Self::G2 => 0.061e-3,
            Self::G4 => 0.122e-3,
            Self::G8 => 0.244e-3,
            Self::G16 => 0.488e-3,
        }
    }
}

/// Gyroscope full scale (FS_G bits 3:2 and FS_125 bit 1 of CTRL2_G).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GyroScale {
    /// ±125 dps, 4.375 mdps/LSB.
    Dps125,
    /// ±245 dps, 8.75 mdps/LSB.
    Dps245,
    /// ±500 dps, 17.5 mdps/LSB.
    Dps500,
    /// ±1000 dps, 35 mdps/LSB.
    Dps1000,
    /// ±2000 dps, 70 mdps/LSB.
    Dps2000,
}

impl GyroScale {
    /// The FS_G / FS_125 bits already shifted into place.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Dps125 => register::CTRL2_G_FS_125,
            Self::Dps245 => 0b00 << 2,
            Self::Dps500 => 0b01 << 2,
            Self::Dps1000 => 0b10 << 2,
            Self::Dps2000 => 0b11 << 2,
        }
    }

    /// Sensitivity in degrees per second per LSB.
    pub const fn dps_per_lsb(self) -> f32 {
        match self {
            Self::Dps125 => 4.375e-3,
            Self::Dps245 => 8.75e-3,
            Self::Dps500 => 17.5e-3,
            Self::Dps1000 => 35e-3,
            Self::Dps2000 => 70e-3,
        }
    }
}

/// Which data-ready signals drive the INT1 pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataReadyRoute {
    /// INT1 stays idle; the caller polls on a timer.
    None,
    /// INT1 pulses when new accelerometer data is ready.
    Accel,
    /// INT1 pulses when new gyroscope data is ready.
    Gyro,
    /// Both data-ready signals on INT1.
    Both,
}

impl DataReadyRoute {
    const fn bits(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Accel => register::INT1_DRDY_XL,
            Self::Gyro => register::INT1_DRDY_G,
            Self::Both => register::INT1_DRDY_XL | register::INT1_DRDY_G,
        }
    }
}

/// Sensor settings applied by [`crate::Lsm6ds3tr::init`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    accel_rate: OutputDataRate,
    accel_scale: AccelScale,
    gyro_rate: OutputDataRate,
    gyro_scale: GyroScale,
    data_ready: DataReadyRoute,
}

impl Default for Config {
    /// 104 Hz for both sensors, ±4 g, ±500 dps, INT1 idle: enough headroom for
    /// the firmware's 25 Hz default poll and the ranges of hand-held motion.
    fn default() -> Self {
        Self {
            accel_rate: OutputDataRate::Hz104,
            accel_scale: AccelScale::G4,
            gyro_rate: OutputDataRate::Hz104,
            gyro_scale: GyroScale::Dps500,
            data_ready: DataReadyRoute::None,
        }
    }
}

impl Config {
    /// Sets both sensors' output data rate. Higher rates cost current
    /// (about 0.9 mA at 1.66 kHz against 0.4 mA at 104 Hz for the pair).
    pub const fn with_rate(mut self, rate: OutputDataRate) -> Self {
        self.accel_rate = rate;
        self.gyro_rate = rate;
        self
    }

    /// Sets the accelerometer full scale; a wider range costs resolution.
    pub const fn with_accel_scale(mut self, scale: AccelScale) -> Self {
        self.accel_scale = scale;
        self
    }

    /// Sets the gyroscope full scale; a wider range costs resolution.
    pub const fn with_gyro_scale(mut self, scale: GyroScale) -> Self {
        self.gyro_scale = scale;
        self
    }

    /// Routes data-ready signals to INT1 (default: none).
    pub const fn with_data_ready(mut self, route: DataReadyRoute) -> Self {
        self.data_ready = route;
        self
    }

    /// Accelerometer full scale.
    pub const fn accel_scale(&self) -> AccelScale {
        self.accel_scale
    }

    /// Gyroscope full scale.
    pub const fn gyro_scale(&self) -> GyroScale {
        self.gyro_scale
    }

    /// Accelerometer output data rate.
    pub const fn accel_rate(&self) -> OutputDataRate {
        self.accel_rate
    }

    /// Gyroscope output data rate after clamping to its 1.66 kHz maximum.
    pub const fn gyro_rate(&self) -> OutputDataRate {
        match self.gyro_rate {
            OutputDataRate::Hz3330 | OutputDataRate::Hz6660 => OutputDataRate::Hz1660,
            other => other,
        }
    }

    /// Value written to CTRL1_XL.
    pub const fn ctrl1_xl(&self) -> u8 {
        (self.accel_rate.code() << 4) | self.accel_scale.bits()
    }

    /// Value written to CTRL2_G.
    pub const fn ctrl2_g(&self) -> u8 {
        (self.gyro_rate().code() << 4) | self.gyro_scale.bits()
    }

    /// Value written to INT1_CTRL.
    pub const fn int1_ctrl(&self) -> u8 {
        self.data_ready.bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_values_follow_the_datasheet_encoding() {
        let c = Config::default()
            .with_rate(OutputDataRate::Hz833)
            .with_accel_scale(AccelScale::G16)
            .with_gyro_scale(GyroScale::Dps2000);
        assert_eq!(c.ctrl1_xl(), 0x74);
        assert_eq!(c.ctrl2_g(), 0x7C);
        let c = Config::default().with_gyro_scale(GyroScale::Dps125);
        assert_eq!(c.ctrl2_g(), 0x42);
        assert_eq!(Config::default().ctrl1_xl(), 0x48);
    }

    #[test]
    fn gyro_rate_is_clamped_to_its_maximum() {
        let c = Config::default().with_rate(OutputDataRate::Hz6660);
        assert_eq!(c.accel_rate(), OutputDataRate::Hz6660);
        assert_eq!(c.gyro_rate(), OutputDataRate::Hz1660);
        assert_eq!(c.ctrl2_g() >> 4, 0b1000);
    }

    #[test]
    fn at_least_picks_the_slowest_sufficient_rate() {
        assert_eq!(OutputDataRate::at_least(0), OutputDataRate::Hz12_5);
        assert_eq!(OutputDataRate::at_least(25), OutputDataRate::Hz26);
        assert_eq!(OutputDataRate::at_least(26), OutputDataRate::Hz26);
        assert_eq!(OutputDataRate::at_least(27), OutputDataRate::Hz52);
        assert_eq!(OutputDataRate::at_least(1000), OutputDataRate::Hz1660);
        assert_eq!(OutputDataRate::at_least(100_000), OutputDataRate::Hz6660);
    }

    #[test]
    fn data_ready_route_bits() {
        let c = Config::default().with_data_ready(DataReadyRoute::Both);
        assert_eq!(c.int1_ctrl(), 0b11);
        assert_eq!(Config::default().int1_ctrl(), 0);
    }
}
