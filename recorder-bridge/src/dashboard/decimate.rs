//! Min/max decimation: runs of samples become one column each holding the smallest and
//! largest value of every channel, so a plot `width` pixels wide draws at most `width`
//! columns whatever the sample rate, and a spike narrower than a pixel still shows.
//! Pure: no I/O, no clock; the live feed and the file preview both use it.

use serde::Serialize;

/// Decimated columns of several channels: column `k` starts at time `t[k]` (the time of
/// its first sample) and spans `min[c][k] ..= max[c][k]` on channel `c`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Columns {
    /// Start time of each column, seconds.
    pub t: Vec<f64>,
    /// Per channel, the minimum of each column.
    pub min: Vec<Vec<f32>>,
    /// Per channel, the maximum of each column.
    pub max: Vec<Vec<f32>>,
}

impl Columns {
    /// Empty columns for `channels` channels.
    pub fn new(channels: usize) -> Self {
        Columns {
            t: Vec::new(),
            min: vec![Vec::new(); channels],
            max: vec![Vec::new(); channels],
        }
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.t.len()
    }

    /// True when there is no column.
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// Removes every column, keeping the channel count.
    pub fn clear(&mut self) {
        self.t.clear();
        self.min.iter_mut().for_each(Vec::clear);
        self.max.iter_mut().for_each(Vec::clear);
    }
}

/// How many samples one column covers so that `window_s` seconds at `rate_hz` fill at
/// most `width` columns (at least one sample per column).
pub fn samples_per_column(rate_hz: f64, window_s: f64, width: usize) -> u64 {
    let samples = (rate_hz * window_s).max(1.0);
    (samples / width.max(1) as f64).ceil().max(1.0) as u64
}

/// An incremental min/max decimator: push samples one at a time; each full run of
/// `per_column` samples is appended to the output as a column.
#[derive(Debug, Clone)]
pub struct MinMax {
    per_column: u64,
    filled: u64,
    t: f64,
    min: Vec<f64>,
    max: Vec<f64>,
}

impl MinMax {
    /// A decimator for `channels` channels and `per_column` samples per column (at least 1).
    pub fn new(channels: usize, per_column: u64) -> Self {
        MinMax {
            per_column: per_column.max(1),
            filled: 0,
            t: 0.0,
            min: vec![f64::INFINITY; channels],
            max: vec![f64::NEG_INFINITY; channels],
        }
    }

    /// Samples per column.
    pub fn per_column(&self) -> u64 {
        self.per_column
    }

    /// Adds one sample at time `t` with one value per channel; completes a column into
    /// `out` when the run is full.
    pub fn push(&mut self, t: f64, values: &[f64], out: &mut Columns) {
        if self.filled == 0 {
            self.t = t;
        }
        for ((lo, hi), &v) in self.min.iter_mut().zip(&mut self.max).zip(values) {
            if v < *lo {
                *lo = v;
            }
            if v > *hi {
                *hi = v;
            }
        }
        self.filled += 1;
        if self.filled == self.per_column {
            self.flush(out);
        }
    }

    /// Emits the current partial column, if any (the end of a file).
    pub fn flush(&mut self, out: &mut Columns) {
        if self.filled == 0 {
            return;
        }
        out.t.push(self.t);
        for (c, (lo, hi)) in self.min.iter_mut().zip(&mut self.max).enumerate() {
            out.min[c].push(*lo as f32);
            out.max[c].push(*hi as f32);
            *lo = f64::INFINITY;
            *hi = f64::NEG_INFINITY;
        }
        self.filled = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_survives_and_column_count_is_bounded() {
        let mut d = MinMax::new(2, samples_per_column(128_000.0, 1.0, 1000));
        assert_eq!(d.per_column(), 128);
        let mut out = Columns::new(2);
        for i in 0..128_000u64 {
            let spike = if i == 70_001 { 5.0 } else { 0.0 };
            d.push(i as f64 / 128e3, &[spike, -(i as f64)], &mut out);
        }
        assert_eq!(out.len(), 1000);
        assert_eq!(out.max[0].iter().filter(|&&v| v == 5.0).count(), 1);
        assert_eq!(out.max[0][70_001 / 128], 5.0);
        assert_eq!(out.min[1][0], -127.0);
        assert_eq!(out.max[1][0], 0.0);
        assert_eq!(out.t[1], 128.0 / 128e3);
    }

    #[test]
    fn slow_streams_keep_every_sample_and_flush_ends_a_file() {
        assert_eq!(samples_per_column(100.0, 1.0, 1000), 1);
        let mut d = MinMax::new(1, 3);
        let mut out = Columns::new(1);
        for i in 0..7 {
            d.push(f64::from(i), &[f64::from(i)], &mut out);
        }
        assert_eq!(out.len(), 2);
        d.flush(&mut out);
        d.flush(&mut out);
        assert_eq!(out.t, vec![0.0, 3.0, 6.0]);
        assert_eq!(out.min[0], vec![0.0, 3.0, 6.0]);
        assert_eq!(out.max[0], vec![2.0, 5.0, 6.0]);
    }
}
