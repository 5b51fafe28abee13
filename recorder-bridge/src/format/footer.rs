//! The last line of a standard CSV file: how many samples it holds and how many of the
//! stream were lost up to its closing.

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

impl Footer {
    /// Appends the footer line (with newline).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(FOOTER_PREFIX.as_bytes());
        put_u64(out, self.samples);
        out.extend_from_slice(b" dropped=");
        put_u64(out, self.dropped);
        out.push(b'\n');
    }

    /// Parses a footer line (without newline).
    pub fn parse(line: &str) -> Option<Footer> {
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
    }
}
