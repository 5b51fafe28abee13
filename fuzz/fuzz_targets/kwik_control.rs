#![no_main]
//! See `kwik::fuzz::control_stream`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kwik::fuzz::control_stream(data));
