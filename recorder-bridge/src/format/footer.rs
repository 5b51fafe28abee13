//! The last line of a standard CSV file: how many samples it holds and how many of the
//! stream were lost up to its closing.

use crate::format::compat::CsvCompat;
use crate::format::number::put_u64;

/// The footer of a standard CSV file: `# end samples=N dropped=D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footer {
    /// Data rows in this file.
    pub samples: u64,
    /// Samples of this stream lost at any stage up to the moment the file was closed.
    pub dropped: u64,
}

const FOOTER_PREFIX: &str = "# end samples=";
/// The bench position exporter's footer: `# End of export,N` (no loss count).
const BENCH_PREFIX: &str = "# End of export,";

impl Footer {
    /// Appends the footer line of a file in `compat`'s layout (with newline).
    pub fn write_for(&self, compat: CsvCompat, out: &mut Vec<u8>) {
        if compat == CsvCompat::Bench {
            out.extend_from_slice(BENCH_PREFIX.as_bytes());
            put_u64(out, self.samples);
            out.push(b'\n');
        } else {
            self.write(out);
        }
    }

    /// Appends KWIK's footer line (with newline).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(FOOTER_PREFIX.as_bytes());
        put_u64(out, self.samples);
        out.extend_from_slice(b" dropped=");
        put_u64(out, self.dropped);
        out.push(b'\n');
    }

    /// Parses a footer line (without newline), in KWIK's or the bench's form (whose
    /// loss count reads as 0).
    pub fn parse(line: &str) -> Option<Footer> {
        if let Some(n) = line.strip_prefix(BENCH_PREFIX) {
            return Some(Footer {
                samples: n.trim().parse().ok()?,
                dropped: 0,
            });
        }
        let rest = line.strip_prefix(FOOTER_PREFIX)?;
        let (s, d) = rest.split_once(" dropped=")?;
        Some(Footer {
            samples: s.trim().parse().ok()?,
            dropped: d.trim().parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trips() {
        let f = Footer {
            samples: 10,
            dropped: 3,
        };
        let mut out = Vec::new();
        f.write(&mut out);
        let s = std::str::from_utf8(&out).unwrap();
        assert_eq!(Footer::parse(s.trim_end()), Some(f));
        let mut bench = Vec::new();
        f.write_for(CsvCompat::Bench, &mut bench);
        assert_eq!(bench, b"# End of export,10\n");
        assert_eq!(
            Footer::parse("# End of export,10"),
            Some(Footer {
                samples: 10,
                dropped: 0
            })
        );
    }
}
