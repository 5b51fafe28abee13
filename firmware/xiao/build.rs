//! Puts `memory.x` where the linker finds it and turns the `XIAO_RATE_HZ`
//! environment variable (sample rate, 1..=1000 Hz, default 25) into a
//! compile-time constant.

use std::env;
use std::fs;
use std::path::PathBuf;

/// Default sample rate when `XIAO_RATE_HZ` is unset.
const DEFAULT_RATE_HZ: u32 = 25;
/// The IMU is polled by a timer; above 1 kHz the I2C burst (about 0.4 ms at
/// 400 kHz) and the transports no longer keep up.
const MAX_RATE_HZ: u32 = 1000;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    fs::write(out.join("memory.x"), include_bytes!("memory.x")).expect("OUT_DIR is writable");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");

    println!("cargo:rerun-if-env-changed=XIAO_RATE_HZ");
    let rate = match env::var("XIAO_RATE_HZ") {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(hz) if (1..=MAX_RATE_HZ).contains(&hz) => hz,
            _ => panic!("XIAO_RATE_HZ must be an integer in 1..={MAX_RATE_HZ}, got {text:?}"),
        },
        Err(_) => DEFAULT_RATE_HZ,
    };
    println!("cargo:rustc-env=XIAO_RATE_HZ={rate}");
}
