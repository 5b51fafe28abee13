//! The sequence journal kept next to each remotely recorded data file: which source
//! run the rows belong to and, at every discontinuity, which sequence number a row
//! has. With it a restarted server knows exactly which samples are already on disk
//! (rows in the file, after `recover`) and resumes without duplicates.
//!
//! Text, one entry per line: `run <16 hex digits> <stream>` first, then
//! `<row> <seq>` for the first row and for every row whose sequence number does not
//! follow the previous row's.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use crate::remote::wire::RunId;

/// Run-length map from row index to sequence number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqMap {
    runs: Vec<(u64, u64)>,
    rows: u64,
    last_seq: Option<u64>,
}

impl SeqMap {
    /// Records that the next row holds `seq`; returns the new run entry if it starts one.
    pub fn push(&mut self, seq: u64) -> Option<(u64, u64)> {
        let row = self.rows;
        self.rows += 1;
        let follows = self.last_seq.is_some_and(|l| l.checked_add(1) == Some(seq));
        self.last_seq = Some(seq);
        if follows {
            None
        } else {
            self.runs.push((row, seq));
            Some((row, seq))
        }
    }

    /// Sequence number of row `row`, if the map covers it.
    pub fn seq_of(&self, row: u64) -> Option<u64> {
        if row >= self.rows {
            return None;
        }
        let i = self.runs.partition_point(|&(r, _)| r <= row);
        let (r0, s0) = *self.runs.get(i.checked_sub(1)?)?;
        Some(s0 + (row - r0))
    }

    /// Rows recorded in the map.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

/// The journal file of one data file.
#[derive(Debug)]
pub struct Journal {
    file: File,
    map: SeqMap,
}

/// Path of the journal of data file `csv`.
pub fn journal_path(csv: &Path) -> PathBuf {
    csv.with_extension("seq")
}

impl Journal {
    /// Creates the journal for a recording of `stream` from source run `run`.
    pub fn create(path: &Path, run: RunId, stream: &str) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        writeln!(file, "run {:016x} {stream}", run.0)?;
        Ok(Journal {
            file,
            map: SeqMap::default(),
        })
    }

    /// Records the next row's sequence number (writes a line at discontinuities, before
    /// the row can reach the data file).
    pub fn push(&mut self, seq: u64) -> io::Result<()> {
        if let Some((row, seq)) = self.map.push(seq) {
            writeln!(self.file, "{row} {seq}")?;
        }
        Ok(())
    }

    /// The map so far.
    pub fn map(&self) -> &SeqMap {
        &self.map
    }
}

/// A journal read back: its run, stream and row map (`rows` unknown: set to `u64::MAX`
/// so every row after the last entry maps by continuation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalContents {
    /// Source run.
    pub run: RunId,
    /// Stream name.
    pub stream: String,
    /// Run entries `(row, seq)`.
    pub runs: Vec<(u64, u64)>,
}

impl JournalContents {
    /// Reads a journal; `None` if it is not one.
    pub fn read(path: &Path) -> Option<Self> {
        let f = io::BufReader::new(File::open(path).ok()?);
        let mut lines = f.lines();
        let first = lines.next()?.ok()?;
        let mut parts = first.splitn(3, ' ');
        if parts.next()? != "run" {
            return None;
        }
        let run = RunId(u64::from_str_radix(parts.next()?, 16).ok()?);
        let stream = parts.next()?.to_owned();
        let mut runs = Vec::new();
        for l in lines {
            let Ok(l) = l else { break };
            let mut p = l.split(' ');
            let (Some(r), Some(s)) = (p.next(), p.next()) else {
                break; // a line cut by a crash
            };
            let (Ok(r), Ok(s)) = (r.parse(), s.parse()) else {
                break;
            };
            runs.push((r, s));
        }
        Some(JournalContents { run, stream, runs })
    }

    /// The sequence number that follows the first `rows` rows (`None` for no rows).
    pub fn next_after(&self, rows: u64) -> Option<u64> {
        let last = rows.checked_sub(1)?;
        let i = self.runs.partition_point(|&(r, _)| r <= last);
        let (r0, s0) = *self.runs.get(i.checked_sub(1)?)?;
        Some(s0 + (last - r0) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_and_file_agree() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.seq");
        let mut j = Journal::create(&p, RunId(0xabc), "imu").unwrap();
        let seqs = [5u64, 6, 7, 10, 11, 20, 21, 22];
        for s in seqs {
            j.push(s).unwrap();
        }
        for (row, s) in seqs.iter().enumerate() {
            assert_eq!(j.map().seq_of(row as u64), Some(*s));
        }
        assert_eq!(j.map().seq_of(8), None);
        let c = JournalContents::read(&p).unwrap();
        assert_eq!(c.run, RunId(0xabc));
        assert_eq!(c.stream, "imu");
        assert_eq!(c.next_after(0), None);
        assert_eq!(c.next_after(3), Some(8));
        assert_eq!(c.next_after(4), Some(11));
        assert_eq!(c.next_after(8), Some(23));
    }
}
