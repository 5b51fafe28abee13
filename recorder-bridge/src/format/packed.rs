//! A sample as a fixed number of 64-bit words: the form in which the ring buffer
//! stores it.
//!
//! The ring lets a reader copy a slot while the writer may be overwriting it, and
//! throws the copy away when the slot's sequence number moved (a seqlock). Such a
//! copy must not be a data race, so the slot holds atomic words rather than the
//! value itself: the writer stores the packed words, the reader loads them and
//! unpacks only a copy the sequence number vouches for. No `unsafe` is needed.

/// A `Copy` value stored as `WORDS` 64-bit words.
///
/// `unpack(pack(v)) == v` for every value. `unpack` accepts any words without
/// panicking (a value it was not given by `pack` maps to some value).
pub trait Packed: Copy + Send + 'static {
    /// Words one value takes (at least 1).
    const WORDS: usize;
    /// Writes the value into `words` (exactly `WORDS` long).
    fn pack(&self, words: &mut [u64]);
    /// Rebuilds a value from `words` (exactly `WORDS` long).
    fn unpack(words: &[u64]) -> Self;
}

/// Two `f32` in one word (first in the low half).
pub(crate) fn f32_pair(a: f32, b: f32) -> u64 {
    u64::from(a.to_bits()) | (u64::from(b.to_bits()) << 32)
}

/// The two `f32` of a word made by [`f32_pair`].
pub(crate) fn split_f32_pair(w: u64) -> (f32, f32) {
    (f32::from_bits(w as u32), f32::from_bits((w >> 32) as u32))
}

macro_rules! packed_as_one_word {
    ($($t:ty),*) => {$(
        impl Packed for $t {
            const WORDS: usize = 1;
            fn pack(&self, words: &mut [u64]) {
                words[0] = u64::from(*self);
            }
            fn unpack(words: &[u64]) -> Self {
                // Truncation is the documented total mapping of foreign words.
                words[0] as $t
            }
        }
    )*};
}

packed_as_one_word!(u8, u16, u32, u64);

impl Packed for (u64, u64) {
    const WORDS: usize = 2;
    fn pack(&self, words: &mut [u64]) {
        words[0] = self.0;
        words[1] = self.1;
    }
    fn unpack(words: &[u64]) -> Self {
        (words[0], words[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Packed + PartialEq + std::fmt::Debug>(v: T) {
        let mut w = vec![0; T::WORDS];
        v.pack(&mut w);
        assert_eq!(T::unpack(&w), v);
    }

    #[test]
    fn primitives_round_trip() {
        round_trip(0xabu8);
        round_trip(u16::MAX);
        round_trip(0xdead_beefu32);
        round_trip(u64::MAX);
        round_trip((1u64, u64::MAX));
        let (a, b) = split_f32_pair(f32_pair(-1.5, f32::MIN_POSITIVE));
        assert_eq!((a, b), (-1.5, f32::MIN_POSITIVE));
    }
}
