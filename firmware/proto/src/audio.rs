//! RMS of a window of microphone PCM samples, computed in integers (the same result on
//! the Cortex-M4 and the host; no floating-point square root needed in `no_std`).

/// Accumulates 16-bit PCM samples (in chunks, as the PDM driver delivers them) and
/// gives their RMS after removing the mean (the PDM microphone has a DC offset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioWindow {
    count: u32,
    sum: i64,
    sum_sq: u64,
}

impl AudioWindow {
    /// An empty window.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            count: 0,
            sum: 0,
            sum_sq: 0,
        }
    }

    /// Adds samples. After `u32::MAX` samples further ones are ignored (the sums are
    /// sized so that this bound is what keeps them from overflowing).
    pub fn push(&mut self, pcm: &[i16]) {
        for &x in pcm {
            if self.count == u32::MAX {
                return;
            }
            self.count += 1;
            self.sum += i64::from(x);
            self.sum_sq += u64::from(x.unsigned_abs()) * u64::from(x.unsigned_abs());
        }
    }

    /// Number of samples in the window.
    #[must_use]
    pub const fn len(&self) -> u32 {
        self.count
    }

    /// True when no sample was pushed.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// RMS of the samples about their mean, in counts with 1/256 resolution; 0 for an
    /// empty window.
    #[must_use]
    pub fn rms(&self) -> f32 {
        if self.count == 0 {
            return 0.0;
        }
        let n = u128::from(self.count);
        // n² · variance = n·Σx² − (Σx)², non-negative up to rounding of nothing: exact.
        let sum = self.sum.unsigned_abs() as u128;
        let scaled = (n * u128::from(self.sum_sq)).saturating_sub(sum * sum);
        // variance · 2^16 fits u64: variance ≤ 2^30.
        let var_q16 = ((scaled << 16) / (n * n)) as u64;
        var_q16.isqrt() as f32 / 256.0
    }

    /// Empties the window for the next sample period.
    pub fn reset(&mut self) {
        *self = Self::new();
    }
}

/// RMS about the mean of one PCM buffer, in counts.
#[must_use]
pub fn pcm_rms(pcm: &[i16]) -> f32 {
    let mut w = AudioWindow::new();
    w.push(pcm);
    w.rms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_values() {
        assert_eq!(pcm_rms(&[]), 0.0);
        assert_eq!(pcm_rms(&[500; 64]), 0.0);
        assert_eq!(pcm_rms(&[100, -100, 100, -100]), 100.0);
        // DC offset removed.
        assert_eq!(pcm_rms(&[1100, 900, 1100, 900]), 100.0);
        assert_eq!(pcm_rms(&[i16::MAX, i16::MIN]), 32767.5);
        let mut w = AudioWindow::new();
        w.push(&[3, -3]);
        w.push(&[3, -3]);
        assert_eq!((w.len(), w.rms()), (4, 3.0));
    }
}
