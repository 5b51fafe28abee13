//! LSM6DS3TR-C facts shared by the firmware's driver and the simulator: the I²C address,
//! the registers used, the full-scale settings and the conversion of raw counts.
//!
//! Values from the ST LSM6DS3TR-C datasheet (register map, tables 3 and 4).

/// I²C address of the IMU on the XIAO nRF52840 Sense (SDO/SA0 tied low).
pub const I2C_ADDRESS: u8 = 0x6A;

/// Register addresses.
pub mod reg {
    /// Identification register.
    pub const WHO_AM_I: u8 = 0x0F;
    /// Accelerometer control: ODR (bits 7..4), full scale (bits 3..2).
    pub const CTRL1_XL: u8 = 0x10;
    /// Gyroscope control: ODR (bits 7..4), full scale (bits 3..1).
    pub const CTRL2_G: u8 = 0x11;
    /// Control 3: BDU (bit 6), IF_INC (bit 2, auto-increment), SW_RESET (bit 0).
    pub const CTRL3_C: u8 = 0x12;
    /// Status: TDA (bit 2), GDA (bit 1), XLDA (bit 0).
    pub const STATUS_REG: u8 = 0x1E;
    /// Temperature output, low byte (16-bit LE, 256 LSB/°C, 0 = 25 °C).
    pub const OUT_TEMP_L: u8 = 0x20;
    /// First gyroscope output register; a 12-byte burst from here reads gyro x, y, z
    /// then accel x, y, z, each i16 little-endian.
    pub const OUTX_L_G: u8 = 0x22;
    /// First accelerometer output register.
    pub const OUTX_L_XL: u8 = 0x28;
}

/// Value of [`reg::WHO_AM_I`] on an LSM6DS3TR-C.
pub const WHO_AM_I_VALUE: u8 = 0x6A;
/// [`reg::CTRL3_C`] value: block data update and register auto-increment.
pub const CTRL3_C_BDU_IF_INC: u8 = 0x44;
/// Length of the gyro + accel burst read starting at [`reg::OUTX_L_G`].
pub const BURST_LEN: usize = 12;

/// Accelerometer full-scale range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AccelRange {
    /// ±2 g, 0.061 mg/LSB.
    G2,
    /// ±4 g, 0.122 mg/LSB.
    #[default]
    G4,
    /// ±8 g, 0.244 mg/LSB.
    G8,
    /// ±16 g, 0.488 mg/LSB.
    G16,
}

impl AccelRange {
    /// Sensitivity in g per LSB.
    #[must_use]
    pub const fn g_per_lsb(self) -> f32 {
        match self {
            Self::G2 => 0.061e-3,
            Self::G4 => 0.122e-3,
            Self::G8 => 0.244e-3,
            Self::G16 => 0.488e-3,
        }
    }

    /// The range in ±g.
    #[must_use]
    pub const fn range_g(self) -> u8 {
        match self {
            Self::G2 => 2,
            Self::G4 => 4,
            Self::G8 => 8,
            Self::G16 => 16,
        }
    }

    /// FS_XL bits of [`reg::CTRL1_XL`] (already shifted to bits 3..2).
    #[must_use]
    pub const fn ctrl1_fs_bits(self) -> u8 {
        match self {
            Self::G2 => 0b00 << 2,
            Self::G16 => 0b01 << 2,
            Self::G4 => 0b10 << 2,
            Self::G8 => 0b11 << 2,
        }
    }

    /// Converts a raw count to g.
    #[must_use]
    pub fn to_g(self, raw: i16) -> f32 {
        f32::from(raw) * self.g_per_lsb()
    }

    /// Converts g to the nearest raw count, saturating (used to synthesise registers).
    #[must_use]
    pub fn to_raw(self, g: f32) -> i16 {
        round_i16(g / self.g_per_lsb())
    }
}

/// Gyroscope full-scale range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum GyroRange {
    /// ±125 dps, 4.375 mdps/LSB.
    Dps125,
    /// ±250 dps, 8.75 mdps/LSB.
    Dps250,
    /// ±500 dps, 17.5 mdps/LSB.
    Dps500,
    /// ±1000 dps, 35 mdps/LSB.
    Dps1000,
    /// ±2000 dps, 70 mdps/LSB.
    #[default]
    Dps2000,
}

impl GyroRange {
    /// Sensitivity in dps per LSB.
    #[must_use]
    pub const fn dps_per_lsb(self) -> f32 {
        match self {
            Self::Dps125 => 4.375e-3,
            Self::Dps250 => 8.75e-3,
            Self::Dps500 => 17.5e-3,
            Self::Dps1000 => 35e-3,
            Self::Dps2000 => 70e-3,
        }
    }

    /// The range in ±dps.
    #[must_use]
    pub const fn range_dps(self) -> u16 {
        match self {
            Self::Dps125 => 125,
            Self::Dps250 => 250,
            Self::Dps500 => 500,
            Self::Dps1000 => 1000,
            Self::Dps2000 => 2000,
        }
    }

    /// FS_G and FS_125 bits of [`reg::CTRL2_G`] (already shifted to bits 3..1).
    #[must_use]
    pub const fn ctrl2_fs_bits(self) -> u8 {
        match self {
            Self::Dps125 => 0b001 << 1,
            Self::Dps250 => 0b000 << 1,
            Self::Dps500 => 0b010 << 1,
            Self::Dps1000 => 0b100 << 1,
            Self::Dps2000 => 0b110 << 1,
        }
    }

    /// Converts a raw count to dps.
    #[must_use]
    pub fn to_dps(self, raw: i16) -> f32 {
        f32::from(raw) * self.dps_per_lsb()
    }

    /// Converts dps to the nearest raw count, saturating.
    #[must_use]
    pub fn to_raw(self, dps: f32) -> i16 {
        round_i16(dps / self.dps_per_lsb())
    }
}

/// Output data rate of accelerometer and gyroscope (bits 7..4 of CTRL1_XL / CTRL2_G).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Odr {
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
}

impl Odr {
    const ALL: [(Self, u32); 8] = [
        (Self::Hz12_5, 12),
        (Self::Hz26, 26),
        (Self::Hz52, 52),
        (Self::Hz104, 104),
        (Self::Hz208, 208),
        (Self::Hz416, 416),
        (Self::Hz833, 833),
        (Self::Hz1660, 1660),
    ];

    /// The slowest rate at least `rate_hz` (so every poll sees a fresh sample);
    /// 1.66 kHz for anything faster.
    #[must_use]
    pub fn at_least(rate_hz: u32) -> Self {
        Self::ALL
            .iter()
            .find(|(_, hz)| *hz >= rate_hz)
            .map_or(Self::Hz1660, |(odr, _)| *odr)
    }

    /// ODR bits, already shifted to bits 7..4.
    #[must_use]
    pub const fn ctrl_bits(self) -> u8 {
        let code = match self {
            Self::Hz12_5 => 1,
            Self::Hz26 => 2,
            Self::Hz52 => 3,
            Self::Hz104 => 4,
            Self::Hz208 => 5,
            Self::Hz416 => 6,
            Self::Hz833 => 7,
            Self::Hz1660 => 8,
        };
        code << 4
    }
}

/// The 12 bytes of one burst read from [`reg::OUTX_L_G`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ImuBurst(pub [u8; BURST_LEN]);

impl ImuBurst {
    /// Builds the register bytes for raw gyro and accel counts (what the chip would hold).
    #[must_use]
    pub fn from_raw(gyro: [i16; 3], accel: [i16; 3]) -> Self {
        let mut bytes = [0u8; BURST_LEN];
        for (i, v) in gyro.iter().chain(&accel).enumerate() {
            bytes[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
        }
        Self(bytes)
    }

    /// Raw gyroscope counts x, y, z.
    #[must_use]
    pub fn gyro_raw(&self) -> [i16; 3] {
        [0, 1, 2].map(|i| i16::from_le_bytes([self.0[2 * i], self.0[2 * i + 1]]))
    }

    /// Raw accelerometer counts x, y, z.
    #[must_use]
    pub fn accel_raw(&self) -> [i16; 3] {
        [3, 4, 5].map(|i| i16::from_le_bytes([self.0[2 * i], self.0[2 * i + 1]]))
    }
}

/// Converts the IMU's raw temperature (OUT_TEMP) to °C.
#[must_use]
pub fn imu_temp_c(raw: i16) -> f32 {
    25.0 + f32::from(raw) / 256.0
}

fn round_i16(x: f32) -> i16 {
    // `as` saturates and maps NaN to 0; core has no f32::round without std.
    if x >= 0.0 {
        (x + 0.5) as i16
    } else {
        (x - 0.5) as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(AccelRange::G4.to_raw(1.0), 8197);
        assert!((AccelRange::G4.to_g(8197) - 1.0).abs() < 1e-3);
        assert_eq!(AccelRange::G2.to_raw(5.0), i16::MAX);
        assert_eq!(GyroRange::Dps2000.to_raw(-70.0), -1000);
        assert_eq!(Odr::at_least(25), Odr::Hz26);
        assert_eq!(Odr::at_least(1000), Odr::Hz1660);
        assert_eq!(
            Odr::Hz104.ctrl_bits() | AccelRange::G16.ctrl1_fs_bits(),
            0x44
        );
        let b = ImuBurst::from_raw([1, -2, 3], [-4, 5, -6]);
        assert_eq!((b.gyro_raw(), b.accel_raw()), ([1, -2, 3], [-4, 5, -6]));
        assert_eq!(imu_temp_c(256), 26.0);
    }
}
