//! The XIAO board's own types as the recorder sees them: its sample as an [`ImuRow`]
//! (and back, for the wire) and its self-description as device entries.

use xiao_proto::{ImuSample, SeqNo};

use crate::format::schema::ImuRow;

/// The row recorded for a XIAO sample (all fields but the sequence number).
pub fn imu_row(s: &ImuSample) -> ImuRow {
    ImuRow {
        millis: s.millis,
        ax: s.accel_g[0],
        ay: s.accel_g[1],
        az: s.accel_g[2],
        gx: s.gyro_dps[0],
        gy: s.gyro_dps[1],
        gz: s.gyro_dps[2],
        temp_c: s.temp_c,
        audio_rms: s.audio_rms,
    }
}

/// The XIAO sample of a row, with sequence number `seq` (low 32 bits).
pub fn imu_sample(seq: u64, r: &ImuRow) -> ImuSample {
    ImuSample {
        seq: SeqNo(seq as u32),
        millis: r.millis,
        accel_g: [r.ax, r.ay, r.az],
        gyro_dps: [r.gx, r.gy, r.gz],
        temp_c: r.temp_c,
        audio_rms: r.audio_rms,
    }
}

/// A XIAO board's self-description as entries of a recording's `device` map.
pub fn device_entries(info: &xiao_proto::DeviceInfo) -> std::collections::BTreeMap<String, String> {
    let [major, minor, patch] = info.firmware_version;
    [
        ("firmware", format!("{major}.{minor}.{patch}")),
        ("device_rate_hz", info.rate_hz.to_string()),
        ("accel_range_g", info.accel_range_g.to_string()),
        ("gyro_range_dps", info.gyro_range_dps.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
