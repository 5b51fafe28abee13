//! The data-ready flags of `STATUS_REG` (0x1E).

/// The data-ready flags of `STATUS_REG`: TDA bit 2, GDA bit 1, XLDA bit 0.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let s = Status(0b101);
        assert!(s.accel_ready() && !s.gyro_ready() && s.temperature_ready());
        assert!(!Status(0).accel_ready());
    }
}
