//! QUIC variable-length integers (RFC 9000 §16): 1, 2, 4 or 8 bytes, the two high
//! bits of the first byte giving the length, values below 2^62.

use bytes::{Buf, BufMut};

/// Largest value a varint can carry (2^62 - 1).
pub const VARINT_MAX: u64 = (1 << 62) - 1;

/// Number of bytes `value` takes on the wire (values above [`VARINT_MAX`] are not
/// encodable; callers check with [`encode`]).
pub(crate) const fn encoded_len(value: u64) -> usize {
    if value < 1 << 6 {
        1
    } else if value < 1 << 14 {
        2
    } else if value < 1 << 30 {
        4
    } else {
        8
    }
}

/// Appends `value` as a varint. Values above [`VARINT_MAX`] are clamped to it, which
/// never happens for values the crate produces (offsets and ids are bounded earlier).
pub(crate) fn encode<B: BufMut>(buf: &mut B, value: u64) {
    let value = value.min(VARINT_MAX);
    match encoded_len(value) {
        1 => buf.put_u8(value as u8),
        2 => buf.put_u16(0x4000 | value as u16),
        4 => buf.put_u32(0x8000_0000 | value as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | value),
    }
}

/// Reads one varint; `None` when `buf` holds too few bytes (nothing consumed then).
pub(crate) fn decode<B: Buf>(buf: &mut B) -> Option<u64> {
    if !buf.has_remaining() {
        return None;
    }
    let first = buf.chunk()[0];
    let len = 1usize << (first >> 6);
    if buf.remaining() < len {
        return None;
    }
    Some(match len {
        1 => u64::from(buf.get_u8() & 0x3f),
        2 => u64::from(buf.get_u16() & 0x3fff),
        4 => u64::from(buf.get_u32() & 0x3fff_ffff),
        _ => buf.get_u64() & 0x3fff_ffff_ffff_ffff,
    })
}

/// A varint being read one byte at a time, across chunk boundaries.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct VarintAccumulator {
    needed: u8,
    have: u8,
    value: u64,
}

impl VarintAccumulator {
    /// Feeds one byte; returns the value once complete (and resets).
    pub(crate) fn push(&mut self, byte: u8) -> Option<u64> {
        if self.have == 0 {
            self.needed = 1 << (byte >> 6);
            self.value = u64::from(byte & 0x3f);
        } else {
            self.value = (self.value << 8) | u64::from(byte);
        }
        self.have += 1;
        if self.have == self.needed {
            let value = self.value;
            *self = Self::default();
            Some(value)
        } else {
            None
        }
    }

    /// True when no byte of a varint has been fed since the last complete value.
    pub(crate) fn is_empty(&self) -> bool {
        self.have == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(value in 0..=VARINT_MAX) {
            let mut buf = Vec::new();
            encode(&mut buf, value);
            prop_assert_eq!(buf.len(), encoded_len(value));
            let mut slice = &buf[..];
            prop_assert_eq!(decode(&mut slice), Some(value));
            prop_assert!(slice.is_empty());
            let mut acc = VarintAccumulator::default();
            let mut out = None;
            for b in &buf {
                prop_assert!(out.is_none());
                out = acc.push(*b);
            }
            prop_assert_eq!(out, Some(value));
            prop_assert!(acc.is_empty());
        }

        #[test]
        fn truncated_is_none(value in 64..=VARINT_MAX) {
            let mut buf = Vec::new();
            encode(&mut buf, value);
            let mut short = &buf[..buf.len() - 1];
            prop_assert_eq!(decode(&mut short), None);
        }
    }

    #[test]
    fn rfc_examples() {
        let mut s: &[u8] = &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c];
        assert_eq!(decode(&mut s), Some(151_288_809_941_952_652));
        let mut s: &[u8] = &[0x9d, 0x7f, 0x3e, 0x7d];
        assert_eq!(decode(&mut s), Some(494_878_333));
        let mut s: &[u8] = &[0x7b, 0xbd];
        assert_eq!(decode(&mut s), Some(15_293));
        let mut s: &[u8] = &[0x25];
        assert_eq!(decode(&mut s), Some(37));
    }
}
