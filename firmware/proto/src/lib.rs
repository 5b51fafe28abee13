//! The wire protocol of the KWIK XIAO nRF52840 Sense sensor board, shared by the
//! firmware (`no_std`, no allocation) and the host (decoder, recorder, simulator).
//!
//! * [`ImuSample`]: one reading of all sensors, with units fixed in its docs.
//! * Serial frames: [`Frame::encode`] gives a COBS-stuffed, CRC-32-protected frame
//!   ending in `0x00`; [`FrameDecoder`] splits a byte stream back into frames, counts
//!   typed errors and resynchronises on the next delimiter.
//! * BLE: [`encode_ble`] / [`decode_ble`], a 20-byte fixed-point notification payload.
//! * CSV: [`CsvLine`], [`write_csv_line`], [`parse_csv_line`] for the text stream
//!   `millis,ax,ay,az,gx,gy,gz,tempC,audioRMS`.
//! * Firmware logic: [`Sampler`] turns raw LSM6DS3TR-C registers, temperature and
//!   [`AudioWindow`] RMS into numbered samples and their output bytes.
//! * Host accounting: [`SequenceTracker`] turns sequence gaps into lost-sample counts.
//!
//! ```
//! use xiao_proto::{Frame, FrameDecoder, ImuSample, SeqNo};
//!
//! let sample = ImuSample { seq: SeqNo(1), millis: 40, accel_g: [0.0, 0.0, 1.0], ..Default::default() };
//! let wire = Frame::Sample(sample).encode();
//! let mut decoder = FrameDecoder::new();
//! let frames: Vec<_> = decoder.decode(wire.as_bytes()).collect();
//! assert_eq!(frames, [Ok(Frame::Sample(sample))]);
//! ```
//!
//! Feature `std` adds `FrameReader`, frames from any `std::io::Read` source (a serial
//! port, a pseudo-terminal, the simulator), and std error integration; feature `selftest` exposes the module `selftest`, the shared test vectors run
//! on the host and under QEMU.
#![no_std]

#[cfg(any(test, feature = "std"))]
extern crate std;

mod audio;
mod ble;
mod cobs;
mod csv;
mod decoder;
mod frame;
pub mod lsm6;
#[cfg(feature = "std")]
mod reader;
mod sample;
mod sampler;
#[cfg(any(test, feature = "selftest"))]
pub mod selftest;
mod sequence;

pub use audio::{AudioWindow, pcm_rms};
pub use ble::{
    BLE_ACCEL_LSB_PER_G, BLE_GYRO_LSB_PER_DPS, BLE_PAYLOAD_LEN, BLE_TEMP_LSB_PER_C, BleDecodeError,
    decode_ble, encode_ble, widen_seq16,
};
pub use cobs::max_encoded_len;
pub use csv::{
    CSV_HEADER, CSV_LINE_CAPACITY, CSV_LINE_END, CsvLine, CsvParseError, CsvRecord, CsvWriteError,
    parse_csv_line, write_csv_line,
};
pub use decoder::{Decoded, DecoderStats, FrameDecoder};
pub use frame::{
    DecodeError, FRAME_DELIMITER, Frame, FrameKind, INFO_PAYLOAD_LEN, MAX_RAW_FRAME_LEN,
    MAX_WIRE_FRAME_LEN, PROTOCOL_VERSION, SAMPLE_PAYLOAD_LEN, WireFrame, decode_frame,
};
#[cfg(feature = "std")]
pub use reader::FrameReader;
pub use sample::{DeviceInfo, ImuSample, SeqNo};
pub use sampler::{
    MAX_SAMPLE_BYTES, RawReading, Sampler, SamplerConfig, StreamFormat, Temperature,
};
pub use sequence::{SeqEvent, SequenceTracker};
