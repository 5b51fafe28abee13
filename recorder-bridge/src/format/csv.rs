//! The standard CSV layout: an optional `#` comment header, the header row, one row per
//! sample and the footer ([`Footer`]); and its parser.

use crate::format::compat::{CsvCompat, HeaderFacts, write_xiao_title, xiao_totals};
use crate::format::footer::Footer;
use crate::format::number::FloatText;
use crate::format::parse_error::ParseError;
use crate::format::schema::Schema;

/// Options of the standard CSV layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Write `#` comment lines (start time, device, settings) before the header row.
    /// Default: true. Some tools choke on comment lines; turn it off for those.
    pub comment_header: bool,
    /// How float cells are written (default: shortest exact text).
    pub floats: FloatText,
    /// Whose conventions the file follows (default KWIK's).
    pub compat: CsvCompat,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            comment_header: true,
            floats: FloatText::Shortest,
            compat: CsvCompat::Kwik,
        }
    }
}

/// Appends the start of a standard CSV file: comment lines (each gets a `# ` prefix,
/// when `opts` has them) and the header row. Returns where, from the start of what it
/// appended, the XIAO totals block sits (to be overwritten when the file closes).
pub(crate) fn write_header<S: Schema>(
    opts: &CsvOptions,
    comments: &[String],
    facts: &HeaderFacts,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let start = out.len();
    let mut totals_at = None;
    if opts.comment_header && opts.compat == CsvCompat::Xiao {
        write_xiao_title(facts, out);
        totals_at = Some(out.len() - start);
        out.extend_from_slice(&xiao_totals(0, 0));
    } else if opts.comment_header {
        if opts.compat == CsvCompat::Bench {
            out.extend_from_slice(b"# Metadata\n");
        }
        for c in comments {
            out.extend_from_slice(b"# ");
            // A newline inside a comment would break the layout.
            out.extend(c.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
            out.push(b'\n');
        }
    }
    if opts.comment_header && opts.compat == CsvCompat::Bench {
        out.push(b'\n');
    }
    out.extend_from_slice(S::COLUMNS.join(",").as_bytes());
    out.push(b'\n');
    totals_at
}

/// A standard CSV file parsed one line at a time, for files too large to hold (the
/// same rules as [`parse_csv`]). Pure: the caller reads the lines.
#[derive(Debug)]
pub struct CsvLines<S> {
    header: String,
    header_seen: bool,
    /// Comment lines before the header row, without the `# ` prefix.
    comments: Vec<String>,
    footer: Option<Footer>,
    line: usize,
    _schema: std::marker::PhantomData<S>,
}

impl<S: Schema> Default for CsvLines<S> {
    fn default() -> Self {
        CsvLines {
            header: S::COLUMNS.join(","),
            header_seen: false,
            comments: Vec::new(),
            footer: None,
            line: 0,
            _schema: std::marker::PhantomData,
        }
    }
}

impl<S: Schema> CsvLines<S> {
    /// Takes the next line (without its newline); returns its row, if it is one.
    pub fn push(&mut self, line: &str) -> Result<Option<S>, ParseError> {
        self.line += 1;
        let lineno = self.line;
        if self.footer.is_some() {
            return Err(ParseError::Footer { line: lineno });
        }
        if !self.header_seen {
            if let Some(c) = line.strip_prefix('#') {
                self.comments
                    .push(c.strip_prefix(' ').unwrap_or(c).to_owned());
                return Ok(None);
            }
            // The empty line after the bench layout's metadata.
            if line.is_empty() {
                return Ok(None);
            }
            if line != self.header {
                return Err(ParseError::Header {
                    schema: S::NAME,
                    found: line.to_owned(),
                });
            }
            self.header_seen = true;
            return Ok(None);
        }
        if line.starts_with('#') {
            self.footer = Some(Footer::parse(line).ok_or(ParseError::Footer { line: lineno })?);
            return Ok(None);
        }
        let mut fields = [""; 16];
        let mut n = 0;
        for f in line.split(',') {
            if let Some(slot) = fields.get_mut(n) {
                *slot = f;
            }
            n += 1;
        }
        let fields = &fields[..n.min(16)];
        let row = if n > 16 {
            Err(crate::format::number::ParseRowError::FieldCount {
                expected: S::COLUMNS.len(),
                found: n,
            })
        } else {
            S::parse_row(fields)
        };
        row.map(Some).map_err(|error| ParseError::Row {
            line: lineno,
            error,
        })
    }

    /// Lines taken so far.
    pub fn lines(&self) -> usize {
        self.line
    }

    /// The footer, once seen.
    pub fn footer(&self) -> Option<Footer> {
        self.footer
    }

    /// Ends the file: fails if no header row was seen.
    pub fn finish(&self) -> Result<(), ParseError> {
        if self.header_seen {
            Ok(())
        } else {
            Err(ParseError::NoHeader)
        }
    }
}

/// A parsed standard CSV file.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCsv<S> {
    /// Comment lines before the header row, without the `# ` prefix.
    pub comments: Vec<String>,
    /// Data rows.
    pub rows: Vec<S>,
    /// The footer, if the file has one.
    pub footer: Option<Footer>,
    /// Bytes after the last newline (a row cut by a crash), if any.
    pub partial_tail: usize,
}

/// Parses a standard CSV file written by [`Encoder`](crate::format::encoder::Encoder).
pub fn parse_csv<S: Schema>(bytes: &[u8]) -> Result<ParsedCsv<S>, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ParseError::NotText)?;
    let (whole, partial_tail) = match text.rfind('\n') {
        Some(i) => (&text[..=i], text.len() - i - 1),
        None => ("", text.len()),
    };
    let mut lines = CsvLines::<S>::default();
    let mut rows = Vec::new();
    for line in whole.lines() {
        rows.extend(lines.push(line)?);
    }
    lines.finish()?;
    Ok(ParsedCsv {
        footer: lines.footer,
        comments: lines.comments,
        rows,
        partial_tail,
    })
}
