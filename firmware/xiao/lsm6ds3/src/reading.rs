//! What the sensor hands back.

use crate::config::{AccelScale, GyroScale};
use crate::register;

/// One gyro + accel burst as the chip's raw two's-complement counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawMotion {
    /// Angular rate X, Y, Z in LSB.
    pub gyro: [i16; 3],
    /// Acceleration X, Y, Z in LSB.
    pub accel: [i16; 3],
}

impl RawMotion {
    /// Decodes the 12 bytes read from `OUTX_L_G` (0x22) through `OUTZ_H_XL`
    /// (0x2D): gyro X/Y/Z then accel X/Y/Z, each little-endian.
    pub fn from_burst(bytes: &[u8; 12]) -> Self {
        let word = |i: usize| i16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]);
        Self {
            gyro: [word(0), word(1), word(2)],
            accel: [word(3), word(4), word(5)],
        }
    }

    /// The inverse of [`Self::from_burst`].
    pub fn to_burst(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        for (i, w) in self.gyro.iter().chain(self.accel.iter()).enumerate() {
            out[2 * i..2 * i + 2].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Acceleration in g for the given full scale.
    pub fn accel_g(&self, scale: AccelScale) -> [f32; 3] {
        self.accel.map(|v| f32::from(v) * scale.g_per_lsb())
    }

    /// Angular rate in degrees per second for the given full scale.
    pub fn gyro_dps(&self, scale: GyroScale) -> [f32; 3] {
        self.gyro.map(|v| f32::from(v) * scale.dps_per_lsb())
    }
}

/// The data-ready flags of `STATUS_REG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u8);

impl Status {
    /// New accelerometer data is available.
    pub const fn accel_ready(self) -> bool {
        self.0 & 0b001 != 0
    }

    /// New gyroscope data is available.
    pub const fn gyro_ready(self) -> bool {
        self.0 & 0b010 != 0
    }

    /// New temperature data is available.
    pub const fn temperature_ready(self) -> bool {
        self.0 & 0b100 != 0
    }
}

// The burst length is the register span; keep the two in step.
const _: () = assert!(register::OUTX_L_XL - register::OUTX_L_G == 6);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_round_trips_and_is_little_endian() {
        let m = RawMotion {
            gyro: [1, -2, i16::MAX],
            accel: [i16::MIN, 0x1234, -1],
        };
        let b = m.to_burst();
        assert_eq!(&b[0..2], &[1, 0]);
        assert_eq!(&b[2..4], &[0xFE, 0xFF]);
        assert_eq!(&b[8..10], &[0x34, 0x12]);
        assert_eq!(RawMotion::from_burst(&b), m);
    }

    #[test]
    fn scaling_uses_the_datasheet_sensitivities() {
        let m = RawMotion {
            gyro: [1000, -1000, 0],
            accel: [16393, -8197, 0],
        };
        let g = m.accel_g(AccelScale::G2);
        assert!((g[0] - 1.0).abs() < 1e-3, "{g:?}");
        let g = m.accel_g(AccelScale::G4);
        assert!((g[1] + 1.0).abs() < 1e-3, "{g:?}");
        let d = m.gyro_dps(GyroScale::Dps2000);
        assert!(
            (d[0] - 70.0).abs() < 1e-3 && (d[1] + 70.0).abs() < 1e-3,
            "{d:?}"
        );
    }

    #[test]
    fn status_flags() {
        let s = Status(0b101);
        assert!(s.accel_ready() && !s.gyro_ready() && s.temperature_ready());
    }
}
