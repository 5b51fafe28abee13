//! The 20-byte BLE notification payload: fits the default ATT MTU of 23 bytes, so it
//! needs no MTU negotiation.
//!
//! Layout (little-endian, fixed point, values saturate at the ends of their range and
//! NaN becomes 0):
//!
//! | bytes   | field | scale | range |
//! |---------|-------|-------|-------|
//! | 0..2    | seq, low 16 bits | – | – |
//! | 2..6    | millis u32 | 1 ms | full |
//! | 6..12   | accel x,y,z i16 | [`BLE_ACCEL_LSB_PER_G`] = 2048 LSB/g (0.49 mg) | ±16 g |
//! | 12..18  | gyro x,y,z i16 | [`BLE_GYRO_LSB_PER_DPS`] = 16 LSB/dps (62.5 mdps) | ±2048 dps |
//! | 18      | temp i8 | [`BLE_TEMP_LSB_PER_C`] = 2 LSB/°C (0.5 °C) | −64 ..= 63.5 °C |
//! | 19      | audio u8 | ⌊√rms⌋, decoded as value² | 0 ..= 65025 counts |
//!
//! BLE's link layer carries its own CRC, so the payload has none.

use crate::sample::{ImuSample, SeqNo};

/// Length of a BLE notification payload.
pub const BLE_PAYLOAD_LEN: usize = 20;
/// Accelerometer scale of the BLE payload.
pub const BLE_ACCEL_LSB_PER_G: f32 = 2048.0;
/// Gyroscope scale of the BLE payload.
pub const BLE_GYRO_LSB_PER_DPS: f32 = 16.0;
/// Temperature scale of the BLE payload.
pub const BLE_TEMP_LSB_PER_C: f32 = 2.0;

/// Why a BLE payload was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum BleDecodeError {
    /// The notification is not exactly [`BLE_PAYLOAD_LEN`] bytes long.
    #[error("BLE payload of {0} bytes, expected {BLE_PAYLOAD_LEN}")]
    Length(usize),
}

/// Rounds half away from zero and saturates (core has no `f32::round` without std).
fn quantise_i16(value: f32, scale: f32) -> i16 {
    let x = value * scale;
    // `as` saturates at the i16 range and maps NaN to 0.
    if x >= 0.0 {
        (x + 0.5) as i16
    } else {
        (x - 0.5) as i16
    }
}

fn quantise_i8(value: f32, scale: f32) -> i8 {
    let x = value * scale;
    if x >= 0.0 {
        (x + 0.5) as i8
    } else {
        (x - 0.5) as i8
    }
}

/// Encodes a sample into a BLE notification payload.
#[must_use]
pub fn encode_ble(sample: &ImuSample) -> [u8; BLE_PAYLOAD_LEN] {
    let mut out = [0u8; BLE_PAYLOAD_LEN];
    out[0..2].copy_from_slice(&(sample.seq.0 as u16).to_le_bytes());
    out[2..6].copy_from_slice(&sample.millis.to_le_bytes());
    for (i, v) in sample.accel_g.iter().enumerate() {
        let at = 6 + 2 * i;
        out[at..at + 2].copy_from_slice(&quantise_i16(*v, BLE_ACCEL_LSB_PER_G).to_le_bytes());
    }
    for (i, v) in sample.gyro_dps.iter().enumerate() {
        let at = 12 + 2 * i;
        out[at..at + 2].copy_from_slice(&quantise_i16(*v, BLE_GYRO_LSB_PER_DPS).to_le_bytes());
    }
    out[18] = quantise_i8(sample.temp_c, BLE_TEMP_LSB_PER_C) as u8;
    // `as u32` saturates (negative and NaN give 0); the root is at most 65535.
    let root = (sample.audio_rms as u32).isqrt();
    out[19] = root.min(255) as u8;
    out
}

/// Decodes a BLE notification payload. The returned sample's `seq` holds only the low
/// 16 bits the payload carries; widen it with [`widen_seq16`].
///
/// # Errors
/// [`BleDecodeError::Length`] when `payload` is not 20 bytes; never panics.
pub fn decode_ble(payload: &[u8]) -> Result<ImuSample, BleDecodeError> {
    let p: &[u8; BLE_PAYLOAD_LEN] = payload
        .try_into()
        .map_err(|_| BleDecodeError::Length(payload.len()))?;
    let i16_at = |at: usize| f32::from(i16::from_le_bytes([p[at], p[at + 1]]));
    let audio_root = f32::from(p[19]);
    Ok(ImuSample {
        seq: SeqNo(u32::from(u16::from_le_bytes([p[0], p[1]]))),
        millis: u32::from_le_bytes([p[2], p[3], p[4], p[5]]),
        accel_g: [6, 8, 10].map(|at| i16_at(at) / BLE_ACCEL_LSB_PER_G),
        gyro_dps: [12, 14, 16].map(|at| i16_at(at) / BLE_GYRO_LSB_PER_DPS),
        temp_c: f32::from(p[18] as i8) / BLE_TEMP_LSB_PER_C,
        audio_rms: audio_root * audio_root,
    })
}

/// Widens a 16-bit sequence number to the first full [`SeqNo`] after `last` (exclusive)
/// whose low 16 bits are `low`. With `last` the previous widened number, this recovers
/// the device's numbering as long as fewer than 65 536 samples go missing in a row.
#[must_use]
pub const fn widen_seq16(last: SeqNo, low: u16) -> SeqNo {
    let step = (low as u32).wrapping_sub(last.0) & 0xFFFF;
    let step = if step == 0 { 0x1_0000 } else { step };
    SeqNo(last.0.wrapping_add(step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_and_saturation() {
        let s = ImuSample {
            seq: SeqNo(0x1_0005),
            millis: 99,
            accel_g: [1.0, -0.5, 100.0],
            gyro_dps: [250.0, -3000.0, f32::NAN],
            temp_c: 25.3,
            audio_rms: 100.0,
        };
        let d = decode_ble(&encode_ble(&s)).unwrap();
        assert_eq!(d.seq, SeqNo(5));
        assert_eq!(d.millis, 99);
        assert_eq!(d.accel_g, [1.0, -0.5, 32767.0 / 2048.0]);
        assert_eq!(d.gyro_dps, [250.0, -2048.0, 0.0]);
        assert_eq!(d.temp_c, 25.5);
        assert_eq!(d.audio_rms, 100.0);
        assert_eq!(decode_ble(&[0; 19]), Err(BleDecodeError::Length(19)));
    }

    #[test]
    fn widening() {
        assert_eq!(widen_seq16(SeqNo(0x1_FFFE), 0xFFFF), SeqNo(0x1_FFFF));
        assert_eq!(widen_seq16(SeqNo(0x1_FFFF), 0x0001), SeqNo(0x2_0001));
        assert_eq!(widen_seq16(SeqNo(7), 7), SeqNo(0x1_0007));
        assert_eq!(widen_seq16(SeqNo(u32::MAX), 0), SeqNo(0));
    }
}
