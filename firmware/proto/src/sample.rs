//! The sample types carried by every encoding of this crate.

/// Sequence number of a sample, assigned by the device and incremented by one for
/// every sample it takes (including samples it then fails to send), wrapping at
/// `u32::MAX`. A jump in the received numbers therefore means lost samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeqNo(pub u32);

impl SeqNo {
    /// The number that follows this one (wrapping).
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.wrapping_add(1))
    }

    /// How many numbers lie strictly between `self` and a later `other`, modulo 2^32.
    ///
    /// `SeqNo(5).distance_to(SeqNo(6)) == 1`; wrapping is handled.
    #[must_use]
    pub const fn distance_to(self, other: Self) -> u32 {
        other.0.wrapping_sub(self.0)
    }
}

/// One reading of all sensors of the XIAO nRF52840 Sense.
///
/// Units are part of the contract: every encoding in this crate carries these units.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImuSample {
    /// Sequence number (see [`SeqNo`]).
    pub seq: SeqNo,
    /// Device time in milliseconds since boot (wraps after ~49.7 days).
    pub millis: u32,
    /// Acceleration x, y, z in g (standard gravity, 9.806 65 m/s²), sensor frame.
    pub accel_g: [f32; 3],
    /// Angular rate x, y, z in degrees per second, sensor frame.
    pub gyro_dps: [f32; 3],
    /// Temperature in degrees Celsius (nRF52840 die sensor, or the IMU's sensor).
    pub temp_c: f32,
    /// RMS of the microphone PCM window after DC removal, in full-scale 16-bit
    /// counts (0 ..= 32768; 32768 is a full-scale square wave).
    pub audio_rms: f32,
}

impl ImuSample {
    /// True when every field of `self` and `other` has the same bit pattern
    /// (unlike `==`, NaN equals an identical NaN and `0.0` differs from `-0.0`).
    #[must_use]
    pub fn bitwise_eq(&self, other: &Self) -> bool {
        fn same(a: &[f32], b: &[f32]) -> bool {
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
        }
        self.seq == other.seq
            && self.millis == other.millis
            && same(&self.accel_g, &other.accel_g)
            && same(&self.gyro_dps, &other.gyro_dps)
            && self.temp_c.to_bits() == other.temp_c.to_bits()
            && self.audio_rms.to_bits() == other.audio_rms.to_bits()
    }
}

/// What a device says about itself, sent once at start-up and then periodically so a
/// host that attaches late still learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DeviceInfo {
    /// Firmware version, major/minor/patch.
    pub firmware_version: [u8; 3],
    /// Configured sample rate in hertz.
    pub rate_hz: u16,
    /// Accelerometer full-scale range in ±g.
    pub accel_range_g: u8,
    /// Gyroscope full-scale range in ±dps.
    pub gyro_range_dps: u16,
}
