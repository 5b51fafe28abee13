//! The sample rate, fixed at build time.

/// Samples per second, from `XIAO_RATE_HZ` (validated to 1..=1000 by build.rs).
pub(crate) const RATE_HZ: u32 = parse_decimal(env!("XIAO_RATE_HZ"));

/// Parses the decimal string build.rs emitted; build.rs already rejected
/// anything else, so a bad digit is a build-time (const evaluation) error.
pub(crate) const fn parse_decimal(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        assert!(digit.is_ascii_digit(), "XIAO_RATE_HZ is not decimal");
        value = value * 10 + (digit - b'0') as u32;
        i += 1;
    }
    value
}

const _: () = assert!(RATE_HZ >= 1 && RATE_HZ <= 1000);
