//! Rates and medians.

/// Bits per second of `bytes` moved in `secs`.
pub(crate) fn bits_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs
}

/// The median of `values` (the mean of the middle two for an even count).
///
/// # Panics
///
/// If `values` is empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}
