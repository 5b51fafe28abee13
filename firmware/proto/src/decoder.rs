//! Streaming decoder: bytes in arbitrary chunks in, frames and counted errors out.

use crate::cobs;
use crate::frame::{DecodeError, FRAME_DELIMITER, Frame, MAX_RAW_FRAME_LEN, decode_frame};

/// Largest stuffed frame (without delimiter) the decoder buffers.
const CAPACITY: usize = cobs::max_encoded_len(MAX_RAW_FRAME_LEN);

/// Counters kept by a [`FrameDecoder`]. Every rejected frame is counted exactly once,
/// under the variant of the [`DecodeError`] it produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecoderStats {
    /// Frames decoded successfully (all kinds).
    pub frames: u64,
    /// Bytes consumed in total (including delimiters and discarded bytes).
    pub bytes: u64,
    /// Frames rejected because of invalid stuffing.
    pub cobs_errors: u64,
    /// Frames rejected as truncated.
    pub truncated: u64,
    /// Runs of bytes rejected as oversized.
    pub oversized: u64,
    /// Frames rejected because the CRC did not match.
    pub crc_errors: u64,
    /// Frames with a valid CRC rejected for their version, kind or payload length.
    pub unsupported: u64,
    /// Bytes thrown away while skipping to the next delimiter after an oversized run.
    pub discarded_bytes: u64,
}

impl DecoderStats {
    /// Total number of rejected frames / runs.
    #[must_use]
    pub const fn errors(&self) -> u64 {
        self.cobs_errors + self.truncated + self.oversized + self.crc_errors + self.unsupported
    }

    fn count(&mut self, err: &DecodeError) {
        match err {
            DecodeError::Cobs => self.cobs_errors += 1,
            DecodeError::Truncated { .. } => self.truncated += 1,
            DecodeError::Oversized { .. } => self.oversized += 1,
            DecodeError::Crc { .. } => self.crc_errors += 1,
            DecodeError::UnsupportedVersion(_)
            | DecodeError::UnknownKind(_)
            | DecodeError::PayloadLength { .. } => self.unsupported += 1,
        }
    }
}

/// Splits a byte stream at [`FRAME_DELIMITER`] bytes and decodes each frame.
///
/// * Bytes may arrive in chunks of any size; a frame split across chunks is reassembled.
/// * Empty frames (two delimiters in a row) are skipped silently, so a sender may
///   start with a delimiter to flush whatever the line held before.
/// * A corrupt frame yields one error and decoding continues with the next frame.
/// * More than the largest valid frame without a delimiter yields one
///   [`DecodeError::Oversized`] and everything up to the next delimiter is dropped.
///
/// Memory is a fixed buffer of about 50 bytes; it never grows and never panics.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: [u8; CAPACITY],
    len: usize,
    skipping: bool,
    stats: DecoderStats,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder at a frame boundary with zeroed counters.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            buf: [0; CAPACITY],
            len: 0,
            skipping: false,
            stats: DecoderStats {
                frames: 0,
                bytes: 0,
                cobs_errors: 0,
                truncated: 0,
                oversized: 0,
                crc_errors: 0,
                unsupported: 0,
                discarded_bytes: 0,
            },
        }
    }

    /// Counters so far.
    #[must_use]
    pub const fn stats(&self) -> &DecoderStats {
        &self.stats
    }

    /// Number of bytes of an unfinished frame held in the buffer.
    #[must_use]
    pub const fn pending(&self) -> usize {
        self.len
    }

    /// Feeds one byte; returns a result when the byte completes a frame (or overflows).
    pub fn push_byte(&mut self, byte: u8) -> Option<Result<Frame, DecodeError>> {
        self.advance(&[byte]).1
    }

    /// Consumes `chunk` up to and including the first byte that completes a frame or
    /// overflows the buffer; returns how many bytes were consumed and the result, if
    /// any. Copies runs of bytes at once rather than one byte at a time.
    pub(crate) fn advance(&mut self, chunk: &[u8]) -> (usize, Option<Result<Frame, DecodeError>>) {
        let end = chunk
            .iter()
            .position(|&b| b == FRAME_DELIMITER)
            .unwrap_or(chunk.len());
        let run = &chunk[..end];
        if self.skipping {
            self.stats.discarded_bytes += run.len() as u64;
        } else if let Some(dst) = self.buf.get_mut(self.len..self.len + run.len()) {
            dst.copy_from_slice(run);
            self.len += run.len();
        } else {
            // The byte after the ones that fit overflows: this cannot be a valid frame.
            // Everything buffered plus that byte is discarded, then the rest up to the
            // next delimiter.
            let consumed = CAPACITY - self.len + 1;
            self.stats.bytes += consumed as u64;
            self.stats.discarded_bytes += CAPACITY as u64 + 1;
            self.len = 0;
            self.skipping = true;
            let err = DecodeError::Oversized { max: CAPACITY };
            self.stats.count(&err);
            return (consumed, Some(Err(err)));
        }
        if end == chunk.len() {
            self.stats.bytes += end as u64;
            return (end, None);
        }
        self.stats.bytes += end as u64 + 1;
        (end + 1, self.end_of_frame())
    }

    /// A delimiter arrived: decode what was buffered.
    fn end_of_frame(&mut self) -> Option<Result<Frame, DecodeError>> {
        if self.skipping {
            self.skipping = false;
            return None;
        }
        let len = core::mem::take(&mut self.len);
        if len == 0 {
            return None;
        }
        let result = decode_frame(&self.buf[..len]);
        match &result {
            Ok(_) => self.stats.frames += 1,
            Err(e) => self.stats.count(e),
        }
        Some(result)
    }

    /// Feeds a chunk; the returned iterator yields one item per completed frame or error.
    ///
    /// The chunk is consumed as the iterator advances: drain it (e.g. with a `for`
    /// loop) or bytes after the last item taken are not fed.
    pub fn decode<'a>(&'a mut self, chunk: &'a [u8]) -> Decoded<'a> {
        Decoded {
            decoder: self,
            rest: chunk,
        }
    }

    /// Feeds a chunk and calls `on_frame` for every completed frame or error.
    pub fn decode_with(
        &mut self,
        chunk: &[u8],
        mut on_frame: impl FnMut(Result<Frame, DecodeError>),
    ) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (consumed, result) = self.advance(rest);
            rest = rest.get(consumed..).unwrap_or_default();
            if let Some(result) = result {
                on_frame(result);
            }
        }
    }

    /// Drops a partial frame (e.g. after the link was reconnected) without counting it.
    pub fn reset(&mut self) {
        self.len = 0;
        self.skipping = false;
    }
}

/// Iterator over the frames completed by one chunk; see [`FrameDecoder::decode`].
#[derive(Debug)]
pub struct Decoded<'a> {
    decoder: &'a mut FrameDecoder,
    rest: &'a [u8],
}

impl Iterator for Decoded<'_> {
    type Item = Result<Frame, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let (consumed, result) = self.decoder.advance(self.rest);
            self.rest = self.rest.get(consumed..).unwrap_or_default();
            if result.is_some() {
                return result;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{ImuSample, SeqNo};

    fn frame(seq: u32) -> crate::WireFrame {
        Frame::Sample(ImuSample {
            seq: SeqNo(seq),
            millis: seq * 10,
            ..ImuSample::default()
        })
        .encode()
    }

    #[test]
    fn byte_by_byte_and_split_chunks() {
        let mut stream = [0u8; 3 * crate::MAX_WIRE_FRAME_LEN];
        let mut n = 0;
        for seq in 0..3 {
            let f = frame(seq);
            stream[n..n + f.len()].copy_from_slice(f.as_bytes());
            n += f.len();
        }
        for split in 0..n {
            let mut d = FrameDecoder::new();
            let mut seqs = [0u32; 3];
            let mut k = 0;
            for chunk in [&stream[..split], &stream[split..n]] {
                for r in d.decode(chunk) {
                    let Ok(Frame::Sample(s)) = r else {
                        panic!("{r:?}")
                    };
                    seqs[k] = s.seq.0;
                    k += 1;
                }
            }
            assert_eq!((k, seqs), (3, [0, 1, 2]));
            assert_eq!(d.stats().frames, 3);
            assert_eq!(d.stats().errors(), 0);
        }
    }

    #[test]
    fn oversized_run_then_resync() {
        let mut d = FrameDecoder::new();
        let garbage = [0x55u8; 300];
        let errs: usize = d.decode(&garbage).filter(|r| r.is_err()).count();
        assert_eq!(errs, 1);
        // The next delimiter ends the skip; the frame after it decodes.
        assert_eq!(d.decode(&[0]).count(), 0);
        let f = frame(9);
        let got: Option<Result<Frame, DecodeError>> = d.decode(f.as_bytes()).next();
        assert!(matches!(got, Some(Ok(Frame::Sample(s))) if s.seq == SeqNo(9)));
        assert_eq!(d.stats().oversized, 1);
        assert_eq!(d.stats().discarded_bytes, 300);
        assert_eq!(d.stats().frames, 1);
    }
}
