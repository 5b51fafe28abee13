//! Frames from any [`std::io::Read`] byte source: a serial port, a pseudo-terminal, a
//! simulator stream or a file (feature `std`).

use crate::decoder::{DecoderStats, FrameDecoder};
use crate::frame::{DecodeError, Frame};
use std::io::{self, Read};

/// Size of the read buffer: a few frames, so a serial port's read returns promptly.
const READ_BUF: usize = 256;

/// Reads frames from a byte source through a [`FrameDecoder`].
///
/// Owns the source and a fixed 256-byte buffer. An I/O error (for instance a serial
/// port's read timeout, [`io::ErrorKind::TimedOut`]) is returned as is and loses
/// nothing: the next call continues where the previous one stopped.
/// [`io::ErrorKind::Interrupted`] is retried internally.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    decoder: FrameDecoder,
    buf: [u8; READ_BUF],
    start: usize,
    end: usize,
}

impl<R: Read> FrameReader<R> {
    /// Wraps `inner`, starting at a frame boundary.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            decoder: FrameDecoder::new(),
            buf: [0; READ_BUF],
            start: 0,
            end: 0,
        }
    }

    /// The next decoded frame or frame error; `Ok(None)` at end of input (a partial
    /// frame left at the end is dropped, and not counted, see [`FrameDecoder::reset`]).
    ///
    /// # Errors
    /// The source's I/O errors other than `Interrupted`.
    pub fn read_frame(&mut self) -> io::Result<Option<Result<Frame, DecodeError>>> {
        loop {
            while self.start < self.end {
                let (consumed, result) = self.decoder.advance(&self.buf[self.start..self.end]);
                self.start += consumed;
                if let Some(result) = result {
                    return Ok(Some(result));
                }
            }
            match self.inner.read(&mut self.buf) {
                Ok(0) => {
                    self.decoder.reset();
                    return Ok(None);
                }
                Ok(n) => {
                    self.start = 0;
                    self.end = n.min(READ_BUF);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The decoder's counters.
    pub fn stats(&self) -> &DecoderStats {
        self.decoder.stats()
    }

    /// The source.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The source, mutably (reading from it directly desynchronises the stream).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Gives the source back; buffered bytes are dropped.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Frames until end of input; an I/O error ends nothing, it is yielded like a frame.
impl<R: Read> Iterator for FrameReader<R> {
    type Item = io::Result<Result<Frame, DecodeError>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read_frame().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{ImuSample, SeqNo};
    use std::vec::Vec;

    /// Returns its bytes a few at a time with interruptions and timeouts in between.
    struct Choppy {
        data: Vec<u8>,
        at: usize,
        calls: usize,
    }

    impl Read for Choppy {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            match self.calls % 4 {
                0 => return Err(io::ErrorKind::Interrupted.into()),
                2 => return Err(io::ErrorKind::TimedOut.into()),
                _ => {}
            }
            let n = buf.len().min(7).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn reads_all_frames_through_timeouts() {
        let mut data = Vec::new();
        for i in 0..20 {
            let s = ImuSample {
                seq: SeqNo(i),
                ..ImuSample::default()
            };
            data.extend_from_slice(Frame::Sample(s).encode().as_bytes());
        }
        data.extend_from_slice(&[1, 2, 3, 0]); // one corrupt frame
        data.extend_from_slice(&[5, 5]); // partial frame at end of input
        let mut reader = FrameReader::new(Choppy {
            data,
            at: 0,
            calls: 0,
        });
        let mut seqs = Vec::new();
        let mut errors = 0;
        let mut timeouts = 0;
        for item in &mut reader {
            match item {
                Ok(Ok(Frame::Sample(s))) => seqs.push(s.seq.0),
                Ok(Ok(other)) => panic!("{other:?}"),
                Ok(Err(_)) => errors += 1,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
                    timeouts += 1;
                }
            }
        }
        assert_eq!(seqs, (0..20).collect::<Vec<_>>());
        assert_eq!(errors, 1);
        assert!(timeouts > 10);
        assert_eq!(reader.stats().frames, 20);
        assert_eq!(reader.stats().errors(), 1);
    }
}
