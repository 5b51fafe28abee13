#![no_main]
//! See `kwik::fuzz::session`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kwik::fuzz::session(data));
