//! Shared protocol self-tests: fixed vectors and checks that run unchanged in the host
//! test suite and on a Cortex-M4 under QEMU (`firmware/proto-qemu`). `no_std`, no
//! allocation, deterministic.

use crate::audio::{AudioWindow, pcm_rms};
use crate::ble::{BLE_ACCEL_LSB_PER_G, BLE_GYRO_LSB_PER_DPS, decode_ble, encode_ble};
use crate::csv::{CSV_LINE_CAPACITY, parse_csv_line, write_csv_line};
use crate::decoder::FrameDecoder;
use crate::frame::{DecodeError, Frame, MAX_WIRE_FRAME_LEN, decode_frame};
use crate::lsm6::{AccelRange, GyroRange, ImuBurst};
use crate::sample::{ImuSample, SeqNo};
use crate::sampler::{
    MAX_SAMPLE_BYTES, RawReading, Sampler, SamplerConfig, StreamFormat, Temperature,
};

/// A failed self-test check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Name of the test.
    pub test: &'static str,
    /// What went wrong.
    pub check: &'static str,
    /// Index of the vector, bit or round that failed.
    pub case: u32,
}

/// A named self-test.
pub type SelfTest = (&'static str, fn() -> Result<(), Failure>);

/// Every self-test, in the order [`run_all`] runs them.
pub const TESTS: &[SelfTest] = &[
    ("golden_frame", golden_frame),
    ("frame_round_trip", frame_round_trip),
    ("every_bit_flip_detected", every_bit_flip_detected),
    ("resync_after_garbage", resync_after_garbage),
    ("random_bytes_never_accepted_silently", random_bytes),
    ("ble_round_trip", ble_round_trip),
    ("csv_round_trip", csv_round_trip),
    ("sampler_pipeline", sampler_pipeline),
];

/// Runs every test, calling `report` after each; returns the number that passed or the
/// first failure.
///
/// # Errors
/// The first [`Failure`].
pub fn run_all(
    mut report: impl FnMut(&'static str, &Result<(), Failure>),
) -> Result<usize, Failure> {
    for (name, test) in TESTS {
        let result = test();
        report(name, &result);
        result?;
    }
    Ok(TESTS.len())
}

/// The sample vectors: typical values, range ends and IEEE special values.
pub const VECTORS: [ImuSample; 6] = [
    ImuSample {
        seq: SeqNo(0),
        millis: 0,
        accel_g: [0.0; 3],
        gyro_dps: [0.0; 3],
        temp_c: 0.0,
        audio_rms: 0.0,
    },
    ImuSample {
        seq: SeqNo(1),
        millis: 40,
        accel_g: [0.0123, -0.9981, 0.0456],
        gyro_dps: [1.75, -0.35, 12.6],
        temp_c: 24.25,
        audio_rms: 181.5,
    },
    ImuSample {
        seq: SeqNo(u32::MAX),
        millis: u32::MAX,
        accel_g: [15.99, -16.0, 3.5],
        gyro_dps: [2000.0, -2000.0, -0.0],
        temp_c: -40.0,
        audio_rms: 32767.0,
    },
    ImuSample {
        seq: SeqNo(0x0100_0000),
        millis: 0x00FF_00FF,
        accel_g: [f32::MIN_POSITIVE, f32::MAX, f32::MIN],
        gyro_dps: [f32::INFINITY, f32::NEG_INFINITY, 1e-30],
        temp_c: 85.0,
        audio_rms: 1.0,
    },
    ImuSample {
        seq: SeqNo(123_456),
        millis: 4_938_240,
        accel_g: [0.5, 0.25, -0.125],
        gyro_dps: [-125.0, 250.0, -500.0],
        temp_c: 31.75,
        audio_rms: 2048.0,
    },
    ImuSample {
        seq: SeqNo(0x0000_0100),
        millis: 256,
        accel_g: [f32::NAN, 1.0, -1.0],
        gyro_dps: [0.0, 0.0, 0.0],
        temp_c: f32::NAN,
        audio_rms: 0.0,
    },
];

/// Wire bytes of `Frame::Sample(VECTORS[1])`; pins the format (endianness, field order,
/// CRC, stuffing) so host and target agree byte for byte.
pub const GOLDEN_FRAME: [u8; 48] = [
    0x04, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02, 0x28, 0x01, 0x01, 0x0d, 0xf0, 0x85, 0x49, 0x3c, 0x7b,
    0x83, 0x7f, 0xbf, 0x11, 0xc7, 0x3a, 0x3d, 0x01, 0x0b, 0xe0, 0x3f, 0x33, 0x33, 0xb3, 0xbe, 0x9a,
    0x99, 0x49, 0x41, 0x01, 0x03, 0xc2, 0x41, 0x07, 0x80, 0x35, 0x43, 0xc0, 0x97, 0xf7, 0x01, 0x00,
];

fn fail(test: &'static str, check: &'static str, case: usize) -> Failure {
    Failure {
        test,
        check,
        case: case as u32,
    }
}

fn golden_frame() -> Result<(), Failure> {
    const T: &str = "golden_frame";
    let wire = Frame::Sample(VECTORS[1]).encode();
    if wire.as_bytes() != GOLDEN_FRAME {
        return Err(fail(T, "encoding differs from the golden bytes", 1));
    }
    match decode_frame(&GOLDEN_FRAME[..GOLDEN_FRAME.len() - 1]) {
        Ok(Frame::Sample(s)) if s.bitwise_eq(&VECTORS[1]) => Ok(()),
        _ => Err(fail(T, "golden bytes do not decode to the vector", 1)),
    }
}

fn frame_round_trip() -> Result<(), Failure> {
    const T: &str = "frame_round_trip";
    let mut decoder = FrameDecoder::new();
    for (i, v) in VECTORS.iter().enumerate() {
        let wire = Frame::Sample(*v).encode();
        // Feed in two chunks split at every position of the frame.
        for split in 0..=wire.len() {
            let (a, b) = wire.as_bytes().split_at(split);
            let mut got = 0;
            for chunk in [a, b] {
                for r in decoder.decode(chunk) {
                    match r {
                        Ok(Frame::Sample(s)) if s.bitwise_eq(v) => got += 1,
                        _ => return Err(fail(T, "wrong frame decoded", i)),
                    }
                }
            }
            if got != 1 {
                return Err(fail(T, "frame not decoded exactly once", i));
            }
        }
    }
    if decoder.stats().errors() != 0 {
        return Err(fail(T, "errors counted on valid frames", 0));
    }
    Ok(())
}

/// Outcome of feeding a corrupted frame followed by two good frames.
fn feed_corrupted(
    corrupt: &[u8],
    good: [&[u8]; 2],
    expect: [SeqNo; 2],
) -> Result<(), &'static str> {
    let mut decoder = FrameDecoder::new();
    let mut good_seen = [false; 2];
    for chunk in [corrupt, good[0], good[1]] {
        for r in decoder.decode(chunk) {
            match r {
                Ok(Frame::Sample(s)) => {
                    let Some(k) = expect.iter().position(|e| *e == s.seq) else {
                        return Err("a corrupted frame was accepted");
                    };
                    if good_seen[k] {
                        return Err("a good frame was decoded twice");
                    }
                    good_seen[k] = true;
                }
                Ok(_) => return Err("a corrupted frame was accepted as another kind"),
                Err(_) => {}
            }
        }
    }
    if decoder.stats().errors() == 0 {
        return Err("no error counted");
    }
    if !good_seen[1] {
        return Err("decoder did not resynchronise");
    }
    Ok(())
}

fn every_bit_flip_detected() -> Result<(), Failure> {
    const T: &str = "every_bit_flip_detected";
    let good_a = Frame::Sample(ImuSample {
        seq: SeqNo(0xAAAA),
        ..VECTORS[4]
    })
    .encode();
    let good_b = Frame::Sample(ImuSample {
        seq: SeqNo(0xBBBB),
        ..VECTORS[4]
    })
    .encode();
    let expect = [SeqNo(0xAAAA), SeqNo(0xBBBB)];
    let mut case = 0usize;
    for v in &VECTORS {
        let wire = Frame::Sample(*v).encode();
        for bit in 0..wire.len() * 8 {
            let mut bytes = [0u8; MAX_WIRE_FRAME_LEN];
            let bytes = &mut bytes[..wire.len()];
            bytes.copy_from_slice(wire.as_bytes());
            bytes[bit / 8] ^= 1 << (bit % 8);
            feed_corrupted(bytes, [good_a.as_bytes(), good_b.as_bytes()], expect)
                .map_err(|check| fail(T, check, case))?;
            case += 1;
        }
    }
    Ok(())
}

/// xorshift32: deterministic garbage, identical on every target.
struct Garbage(u32);

impl Garbage {
    fn next_byte(&mut self) -> u8 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x >> 24) as u8
    }
}

fn resync_after_garbage() -> Result<(), Failure> {
    const T: &str = "resync_after_garbage";
    let mut rng = Garbage(0x1234_5678);
    let frames = [0u32, 1, 2].map(|i| {
        Frame::Sample(ImuSample {
            seq: SeqNo(i),
            ..VECTORS[1]
        })
        .encode()
    });
    for round in 0..64usize {
        let mut decoder = FrameDecoder::new();
        let mut garbage = [0u8; 300];
        let len = (round * 37) % 300 + 1;
        for b in &mut garbage[..len] {
            // Half the rounds have no zero bytes, so they end in an oversized run.
            *b = if round % 2 == 0 {
                rng.next_byte() | 1
            } else {
                rng.next_byte()
            };
        }
        // With a delimiter after the garbage every frame must decode; without one the
        // first frame may merge with the garbage, but the rest must decode.
        let flush: &[u8] = if round % 4 < 2 { &[0] } else { &[] };
        let mut seen = [false; 3];
        for chunk in [
            &garbage[..len],
            flush,
            frames[0].as_bytes(),
            frames[1].as_bytes(),
            frames[2].as_bytes(),
        ] {
            for r in decoder.decode(chunk) {
                match r {
                    Ok(Frame::Sample(s))
                        if s.seq.0 < 3
                            && s.bitwise_eq(&ImuSample {
                                seq: s.seq,
                                ..VECTORS[1]
                            }) =>
                    {
                        seen[s.seq.0 as usize] = true;
                    }
                    Ok(_) => return Err(fail(T, "garbage accepted as a frame", round)),
                    Err(_) => {}
                }
            }
        }
        let first_ok = seen[0] || flush.is_empty();
        if !(first_ok && seen[1] && seen[2]) {
            return Err(fail(T, "frames after garbage were lost", round));
        }
    }
    Ok(())
}

fn random_bytes() -> Result<(), Failure> {
    const T: &str = "random_bytes_never_accepted_silently";
    let mut rng = Garbage(0xDEAD_BEEF);
    let mut decoder = FrameDecoder::new();
    let mut accepted = 0u32;
    let mut chunk = [0u8; 97];
    for _ in 0..200 {
        for b in &mut chunk {
            // Bias towards zeros so many short "frames" reach the CRC check.
            let x = rng.next_byte();
            *b = if x < 24 { 0 } else { x };
        }
        for r in decoder.decode(&chunk) {
            if r.is_ok() {
                accepted += 1;
            }
        }
    }
    let stats = *decoder.stats();
    if stats.bytes != 200 * 97 {
        return Err(fail(T, "not every byte was consumed", 0));
    }
    if accepted != 0 || stats.frames != 0 || stats.errors() == 0 {
        return Err(fail(T, "random bytes produced a valid frame", 0));
    }
    // Direct calls on every prefix of a random run must return errors, not panic.
    for len in 0..chunk.len() {
        if let Ok(_) | Err(DecodeError::UnknownKind(_)) = decode_frame(&chunk[..len]) {
            return Err(fail(T, "decode_frame accepted random bytes", len));
        }
    }
    Ok(())
}

fn within(a: f32, b: f32, tolerance: f32) -> bool {
    (a - b).abs() <= tolerance
}

fn ble_round_trip() -> Result<(), Failure> {
    const T: &str = "ble_round_trip";
    // Vectors 1 and 4 lie inside the BLE ranges.
    for i in [1usize, 4] {
        let v = &VECTORS[i];
        let Ok(d) = decode_ble(&encode_ble(v)) else {
            return Err(fail(T, "payload rejected", i));
        };
        let accel_ok =
            (0..3).all(|k| within(d.accel_g[k], v.accel_g[k], 0.5 / BLE_ACCEL_LSB_PER_G + 1e-6));
        let gyro_ok = (0..3).all(|k| {
            within(
                d.gyro_dps[k],
                v.gyro_dps[k],
                0.5 / BLE_GYRO_LSB_PER_DPS + 1e-6,
            )
        });
        if d.seq.0 != v.seq.0 & 0xFFFF || d.millis != v.millis {
            return Err(fail(T, "seq or millis differ", i));
        }
        if !accel_ok || !gyro_ok || !within(d.temp_c, v.temp_c, 0.25) {
            return Err(fail(T, "value outside quantisation tolerance", i));
        }
        // ⌊√rms⌋² ≤ rms < (⌊√rms⌋ + 1)²
        let root = d.audio_rms;
        if root > v.audio_rms || v.audio_rms >= (root.max(0.0) + 1.0) * (root.max(0.0) + 1.0) + 1.0
        {
            return Err(fail(T, "audio outside tolerance", i));
        }
    }
    if decode_ble(&[0; 21]).is_ok() {
        return Err(fail(T, "wrong length accepted", 21));
    }
    Ok(())
}

fn csv_round_trip() -> Result<(), Failure> {
    const T: &str = "csv_round_trip";
    for i in [0usize, 1, 2, 4] {
        let v = &VECTORS[i];
        let mut buf = [0u8; CSV_LINE_CAPACITY];
        let Ok(n) = write_csv_line(v, &mut buf) else {
            return Err(fail(T, "line did not fit", i));
        };
        let Ok(line) = core::str::from_utf8(&buf[..n]) else {
            return Err(fail(T, "line is not UTF-8", i));
        };
        let Ok(r) = parse_csv_line(line) else {
            return Err(fail(T, "line did not parse", i));
        };
        let ok = r.millis == v.millis
            && (0..3).all(|k| within(r.accel_g[k], v.accel_g[k], 0.5e-4 * 1.01))
            && (0..3).all(|k| within(r.gyro_dps[k], v.gyro_dps[k], 0.5e-3 * 1.01 + 1e-4))
            && within(r.temp_c, v.temp_c, 0.005 * 1.01)
            && within(r.audio_rms, v.audio_rms, 0.005 * 1.01 + 1e-3);
        if !ok {
            return Err(fail(
                T,
                "parsed values differ beyond the printed decimals",
                i,
            ));
        }
    }
    Ok(())
}

/// The firmware's path from raw registers to bytes: conversions, integer RMS,
/// numbering, encoding, decoding.
fn sampler_pipeline() -> Result<(), Failure> {
    const T: &str = "sampler_pipeline";
    // Integer RMS: exact values, chunked accumulation, DC removal.
    let mut window = AudioWindow::new();
    window.push(&[1100, 900]);
    window.push(&[1100, 900]);
    if window.rms() != 100.0 || pcm_rms(&[i16::MAX, i16::MIN]) != 32767.5 || pcm_rms(&[7; 9]) != 0.0
    {
        return Err(fail(T, "integer RMS", 0));
    }
    let config = SamplerConfig {
        accel_range: AccelRange::G16,
        gyro_range: GyroRange::Dps250,
    };
    let mut sampler = Sampler::starting_at(config, SeqNo(u32::MAX));
    let raw = RawReading {
        millis: 1234,
        imu: ImuBurst::from_raw([400, -400, 0], [2048, -2049, i16::MIN]),
        temperature: Temperature::DieQuarterCelsius(-41),
        audio_rms: window.rms(),
    };
    let a = sampler.sample(&raw);
    let skipped = sampler.skip();
    let b = sampler.sample(&raw);
    if a.seq != SeqNo(u32::MAX) || skipped != SeqNo(0) || b.seq != SeqNo(1) {
        return Err(fail(T, "sequence numbering", 1));
    }
    let expect_accel = [2048.0 * 0.488e-3, -2049.0 * 0.488e-3, -32768.0 * 0.488e-3];
    let expect_gyro = [400.0 * 8.75e-3, -400.0 * 8.75e-3, 0.0];
    let same =
        |x: &[f32; 3], y: &[f32; 3]| x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
    if !same(&a.accel_g, &expect_accel) || !same(&a.gyro_dps, &expect_gyro) || a.temp_c != -10.25 {
        return Err(fail(T, "register conversion", 2));
    }
    let mut out = [0u8; MAX_SAMPLE_BYTES];
    let Ok(n) = Sampler::encode(&a, StreamFormat::Frames, &mut out) else {
        return Err(fail(T, "encode", 3));
    };
    let mut decoder = FrameDecoder::new();
    let mut got = decoder.decode(&out[..n]);
    match (got.next(), got.next()) {
        (Some(Ok(Frame::Sample(s))), None) if s.bitwise_eq(&a) => {}
        _ => return Err(fail(T, "encoded sample does not decode", 3)),
    }
    if Sampler::encode(&a, StreamFormat::Frames, &mut out[..10]).is_ok() {
        return Err(fail(T, "short buffer accepted", 4));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn all_self_tests_pass_on_the_host() {
        let n = super::run_all(|name, r| assert!(r.is_ok(), "{name}: {r:?}")).unwrap();
        assert_eq!(n, super::TESTS.len());
    }
}
