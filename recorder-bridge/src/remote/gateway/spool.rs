//! The gateway's on-disk spool: a bounded append-only file of encoded sample
//! messages, read back in order. Used when the in-memory queue is full because the
//! server is unreachable or withholds credit.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes of a record's header on disk: sequence number (u64 LE) and length (u32 LE).
const RECORD_HEADER: usize = 12;

/// One spooled record: a sample's sequence number and its encoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Sequence number of the sample.
    pub seq: u64,
    /// The encoded [`Message::Sample`](crate::remote::wire::Message::Sample).
    pub bytes: bytes::Bytes,
}

/// Why the spool could not store a record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The spool holds its maximum number of bytes; the record was not stored.
    #[error("the spool is full ({0} bytes)")]
    Full(u64),
    /// The spool file could not be written or read.
    #[error("spool file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A bounded FIFO of records in one file. The file is truncated whenever it has been
/// read to the end, so its size stays within `max_bytes` plus one write buffer.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    max_bytes: u64,
    /// Offset of the next record to read.
    read_at: u64,
    /// Bytes in the file (records written and flushed).
    file_len: u64,
    /// Records not yet written to the file.
    pending: Vec<u8>,
    records: u64,
}

impl Spool {
    /// Creates (or empties) the spool file `path`, holding at most `max_bytes`.
    pub fn create(path: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let io_err = |source| SpoolError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(io_err)?;
        Ok(Spool {
            path: path.to_path_buf(),
            file,
            max_bytes,
            read_at: 0,
            file_len: 0,
            pending: Vec::new(),
            records: 0,
        })
    }

    /// Records held.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes held (unread records).
    pub fn bytes(&self) -> u64 {
        self.file_len - self.read_at + self.pending.len() as u64
    }

    /// The spool file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: io::Error) -> SpoolError {
        SpoolError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends a record. On error the record was not stored.
    pub fn push(&mut self, seq: u64, bytes: &[u8]) -> Result<(), SpoolError> {
        let size = (RECORD_HEADER + bytes.len()) as u64;
        if self.bytes() + size > self.max_bytes {
            return Err(SpoolError::Full(self.max_bytes));
        }
        self.pending.extend_from_slice(&seq.to_le_bytes());
        self.pending
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.pending.extend_from_slice(bytes);
        self.records += 1;
        if self.pending.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SpoolError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all_at(&self.pending, self.file_len) {
            return Err(self.io(e));
        }
        self.file_len += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Removes and returns up to `max` records from the front.
    pub fn pop(&mut self, max: usize) -> Result<Vec<SpoolRecord>, SpoolError> {
        let mut out = Vec::new();
        if self.records == 0 || max == 0 {
            return Ok(out);
        }
        self.flush()?;
        let want = (self.file_len - self.read_at).min(256 * 1024) as usize;
        let mut buf = vec![0; want];
        if let Err(e) = self.file.read_exact_at(&mut buf, self.read_at) {
            return Err(self.io(e));
        }
        let mut at = 0;
        while out.len() < max && buf.len() - at >= RECORD_HEADER {
            let seq = u64::from_le_bytes(buf[at..at + 8].try_into().unwrap_or([0; 8]));
            let len =
                u32::from_le_bytes(buf[at + 8..at + 12].try_into().unwrap_or([0; 4])) as usize;
            if buf.len() - at - RECORD_HEADER < len {
                if at == 0 {
                    // A record larger than the read window: read it whole.
                    let mut rec = vec![0; len];
                    if let Err(e) = self
                        .file
                        .read_exact_at(&mut rec, self.read_at + RECORD_HEADER as u64)
                    {
                        return Err(self.io(e));
                    }
                    out.push(SpoolRecord {
                        seq,
                        bytes: rec.into(),
                    });
                    at = RECORD_HEADER + len;
                }
                break;
            }
            let start = at + RECORD_HEADER;
            out.push(SpoolRecord {
                seq,
                bytes: bytes::Bytes::copy_from_slice(&buf[start..start + len]),
            });
            at = start + len;
        }
        self.read_at += at as u64;
        self.records -= out.len() as u64;
        if self.read_at == self.file_len {
            // Everything read: start the file over so it does not grow.
            if let Err(e) = self.file.set_len(0) {
                return Err(self.io(e));
            }
            self.read_at = 0;
            self.file_len = 0;
        }
        Ok(out)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_order_bound_and_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::create(&dir.path().join("a.spool"), 1000).unwrap();
        let mut next = 0u64;
        let mut expect = 0u64;
        for round in 0..50 {
            while s.push(next, &[next as u8; 30]).is_ok() {
                next += 1;
            }
            assert!(s.bytes() <= 1000);
            let got = s.pop(7 + round % 5).unwrap();
            for r in got {
                assert_eq!(r.seq, expect);
                assert_eq!(&r.bytes[..], &[expect as u8; 30]);
                expect += 1;
            }
        }
        while !s.is_empty() {
            for r in s.pop(100).unwrap() {
                assert_eq!(r.seq, expect);
                expect += 1;
            }
        }
        assert_eq!(expect, next);
        assert!(matches!(s.push(0, &[0; 2000]), Err(SpoolError::Full(1000))));
    }
}
