#![no_main]
//! See `kwik::fuzz::data_stream`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kwik::fuzz::data_stream(data));
