//! Encoded frames collected into USB full-speed bulk packets.

/// Why [`PacketBatch::push`] refused bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchFull {
    /// The bytes do not fit in the room left; nothing was added.
    #[error("{needed} bytes do not fit in the {room} left")]
    NoRoom {
        /// Length of the refused bytes.
        needed: usize,
        /// Room that was left.
        room: usize,
    },
}

/// A fixed buffer of `N` bytes that is filled with whole frames and then
/// sent as packets of at most `packet` bytes.
///
/// A USB bulk transfer ends with a packet shorter than the maximum; if the
/// data is an exact multiple of the packet size, a zero-length packet ends
/// it, or the host would keep waiting for more before returning the data to
/// the reader. [`PacketBatch::packets`] yields that empty packet when needed.
#[derive(Debug, Clone)]
pub struct PacketBatch<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for PacketBatch<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PacketBatch<N> {
    /// An empty batch.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// Bytes queued.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Nothing queued.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes that can still be added.
    pub const fn room(&self) -> usize {
        N - self.len
    }

    /// Appends `bytes` whole, or refuses them whole.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), BatchFull> {
        let dst = self
            .buf
            .get_mut(self.len..self.len + bytes.len())
            .ok_or(BatchFull::NoRoom {
                needed: bytes.len(),
                room: N - self.len,
            })?;
        dst.copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }

    /// Lets `fill` write into the free space; it returns how many bytes it
    /// wrote (clamped to the free space).
    pub fn fill_with<E>(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let written = fill(&mut self.buf[self.len..])?.min(N - self.len);
        self.len += written;
        Ok(written)
    }

    /// The queued bytes as packets of at most `packet` bytes (`packet` > 0),
    /// plus a final zero-length packet when the bytes fill whole packets.
    /// An empty batch yields nothing.
    pub fn packets(&self, packet: usize) -> Packets<'_> {
        Packets {
            rest: &self.buf[..self.len],
            packet: packet.max(1),
            zlp: self.len > 0 && self.len.is_multiple_of(packet.max(1)),
        }
    }

    /// Empties the batch.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// Iterator of [`PacketBatch::packets`].
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    rest: &'a [u8],
    packet: usize,
    zlp: bool,
}

impl<'a> Iterator for Packets<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if !self.rest.is_empty() {
            let (head, tail) = self.rest.split_at(self.packet.min(self.rest.len()));
            self.rest = tail;
            Some(head)
        } else if self.zlp {
            self.zlp = false;
            Some(&[])
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn lengths(batch: &PacketBatch<256>) -> Vec<usize> {
        batch.packets(64).map(<[u8]>::len).collect()
    }

    #[test]
    fn packets_end_with_a_short_or_empty_packet() {
        let cases: [(usize, &[usize]); 7] = [
            (0, &[]),
            (1, &[1]),
            (48, &[48]),
            (63, &[63]),
            (64, &[64, 0]),
            (65, &[64, 1]),
            (256, &[64, 64, 64, 64, 0]),
        ];
        for (len, expected) in cases {
            let mut b = PacketBatch::<256>::new();
            b.push(&std::vec![7u8; len]).unwrap();
            assert_eq!(lengths(&b), expected, "{len} bytes");
        }
    }

    #[test]
    fn packets_carry_the_bytes_in_order() {
        let mut b = PacketBatch::<256>::new();
        let data: Vec<u8> = (0..200u8).collect();
        b.push(&data[..48]).unwrap();
        b.push(&data[48..]).unwrap();
        let joined: Vec<u8> = b.packets(64).flatten().copied().collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn a_push_that_does_not_fit_is_refused_whole() {
        let mut b = PacketBatch::<100>::new();
        b.push(&[1; 60]).unwrap();
        assert_eq!(
            b.push(&[2; 41]),
            Err(BatchFull::NoRoom {
                needed: 41,
                room: 40
            })
        );
        assert_eq!(b.len(), 60);
        b.push(&[3; 40]).unwrap();
        assert_eq!(b.room(), 0);
        b.clear();
        assert!(b.is_empty() && b.packets(64).next().is_none());
    }

    #[test]
    fn fill_with_writes_into_the_free_space() {
        let mut b = PacketBatch::<16>::new();
        b.push(b"ab").unwrap();
        let n = b
            .fill_with(|out| {
                assert_eq!(out.len(), 14);
                out[..3].copy_from_slice(b"cde");
                Ok::<_, ()>(3)
            })
            .unwrap();
        assert_eq!(n, 3);
        assert_eq!(b.packets(64).next(), Some(&b"abcde"[..]));
        assert_eq!(b.fill_with(|_| Err::<usize, _>("refused")), Err("refused"));
        assert_eq!(b.len(), 5);
    }
}
