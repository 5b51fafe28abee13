//! Puts `memory.x` where the linker finds it and turns the `XIAO_RATE_HZ`
//! environment variable (sample rate, 1..=1000 Hz, default 25) into a
//! compile-time constant, checked by the same `SampleRate` the firmware uses.

use std::env;
use std::fs;
use std::path::PathBuf;

use xiao_fw_core::SampleRate;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    fs::write(out.join("memory.x"), include_bytes!("memory.x")).expect("OUT_DIR is writable");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");

    println!("cargo:rerun-if-env-changed=XIAO_RATE_HZ");
    let rate = match env::var("XIAO_RATE_HZ") {
        Ok(text) => match text.trim().parse::<u32>().ok().map(SampleRate::try_from) {
            Some(Ok(rate)) => rate,
            _ => panic!(
                "XIAO_RATE_HZ must be an integer in 1..={}, got {text:?}",
                SampleRate::MAX_HZ
            ),
        },
        Err(_) => SampleRate::DEFAULT,
    };
    println!("cargo:rustc-env=XIAO_RATE_HZ={}", rate.hz());
}
