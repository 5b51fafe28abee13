//! The legacy LabVIEW block layout of the E-field schema: no header, blocks of N samples
//! written as 16 transposed rows with configurable constant rows; and its parser.

use crate::format::number::{parse_rel_time, put_f64, put_rel_time};
use crate::format::parse_error::ParseError;
use crate::format::schema::LabviewValues;
use crate::format::segment::LineState;

/// The legacy LabVIEW layout (E-field only): no header, blocks of `block` samples
/// written as 16 transposed rows.
///
/// Rows of a block: time, c0, c1, Ex imag, Ex real, time, c2, c3, Ey imag, Ey real,
/// time, c4, c5, Ez imag, Ez real, scan state (0/1). Time is seconds with 6 decimals.
/// The last block of a file may be shorter than `block`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabviewLayout {
    block: usize,
    constants: [String; 6],
}

/// Why a LabVIEW layout setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabviewLayoutError {
    /// Block size zero.
    #[error("the LabVIEW block size must be at least 1 sample")]
    ZeroBlock,
    /// A constant row value is not a number.
    #[error("LabVIEW constant {0:?} is not a number; give it like -3.41E-01")]
    BadConstant(String),
}

/// Default samples per LabVIEW block.
pub const DEFAULT_LABVIEW_BLOCK: usize = 1000;

impl Default for LabviewLayout {
    fn default() -> Self {
        let c = |s: &str| s.to_owned();
        LabviewLayout {
            block: DEFAULT_LABVIEW_BLOCK,
            constants: [
                c("-3.41E-01"),
                c("-2.06E-04"),
                c("-3.41E-01"),
                c("-4.98E-04"),
                c("-3.41E-01"),
                c("2.48E-04"),
            ],
        }
    }
}

impl LabviewLayout {
    /// Samples per block (default 1000). Larger blocks mean longer rows.
    pub fn with_block(mut self, block: usize) -> Result<Self, LabviewLayoutError> {
        if block == 0 {
            return Err(LabviewLayoutError::ZeroBlock);
        }
        self.block = block;
        Ok(self)
    }

    /// The six constant rows (pairs for Ex, Ey, Ez), written verbatim in every column.
    /// Defaults: -3.41E-01, -2.06E-04, -3.41E-01, -4.98E-04, -3.41E-01, 2.48E-04.
    pub fn with_constants(mut self, constants: [&str; 6]) -> Result<Self, LabviewLayoutError> {
        for c in constants {
            if c.trim().parse::<f64>().is_err() || c.contains(',') {
                return Err(LabviewLayoutError::BadConstant(c.to_owned()));
            }
        }
        self.constants = constants.map(|c| c.trim().to_owned());
        Ok(self)
    }

    /// Samples per block.
    pub fn block(&self) -> usize {
        self.block
    }

    /// The six constant row values.
    pub fn constants(&self) -> &[String; 6] {
        &self.constants
    }
}

/// Appends one block of samples as its 16 rows.
pub(crate) fn write_labview_block(
    layout: &LabviewLayout,
    block: &[LabviewValues],
    out: &mut Vec<u8>,
) {
    fn row<F: Fn(&LabviewValues, &mut Vec<u8>)>(b: &[LabviewValues], out: &mut Vec<u8>, f: F) {
        for (i, v) in b.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            f(v, out);
        }
        out.push(b'\n');
    }
    let constant = |c: &str, b: &[LabviewValues], out: &mut Vec<u8>| {
        row(b, out, |_, o| o.extend_from_slice(c.as_bytes()))
    };
    let c = &layout.constants;
    type Pick = fn(&LabviewValues) -> f64;
    let axes: [(usize, Pick, Pick); 3] = [
        (0, |v| v.ex_imag, |v| v.ex_real),
        (2, |v| v.ey_imag, |v| v.ey_real),
        (4, |v| v.ez_imag, |v| v.ez_real),
    ];
    for (ci, imag, real) in axes {
        row(block, out, |v, o| put_rel_time(o, v.time));
        constant(&c[ci], block, out);
        constant(&c[ci + 1], block, out);
        row(block, out, |v, o| put_f64(o, imag(v)));
        row(block, out, |v, o| put_f64(o, real(v)));
    }
    row(block, out, |v, o| o.push(b'0' + v.line.as_flag()));
}

/// Rows per LabVIEW block.
pub const LABVIEW_ROWS: usize = 16;

/// A parsed LabVIEW file: the samples' projections and the constants found.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLabview {
    /// Samples in file order.
    pub samples: Vec<LabviewValues>,
    /// Columns of each block.
    pub block_sizes: Vec<usize>,
    /// Bytes after the last newline (a row cut by a crash), if any.
    pub partial_tail: usize,
}

/// Parses a LabVIEW layout file; checks the constants against `layout`.
pub fn parse_labview(bytes: &[u8], layout: &LabviewLayout) -> Result<ParsedLabview, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ParseError::NotText)?;
    let (whole, partial_tail) = match text.rfind('\n') {
        Some(i) => (&text[..=i], text.len() - i - 1),
        None => ("", text.len()),
    };
    let lines: Vec<&str> = whole.lines().collect();
    if lines.len() % LABVIEW_ROWS != 0 {
        return Err(ParseError::Labview {
            block: lines.len() / LABVIEW_ROWS,
            what: format!(
                "{} lines is not a whole number of 16-row blocks",
                lines.len()
            ),
        });
    }
    let mut samples = Vec::new();
    let mut block_sizes = Vec::new();
    for (b, chunk) in lines.chunks(LABVIEW_ROWS).enumerate() {
        let cells: Vec<Vec<&str>> = chunk.iter().map(|l| l.split(',').collect()).collect();
        let n = cells[0].len();
        let bad = |what: String| ParseError::Labview { block: b, what };
        if cells.iter().any(|r| r.len() != n) {
            return Err(bad("rows of unequal length".into()));
        }
        let consts = [1, 2, 6, 7, 11, 12];
        for (k, &r) in consts.iter().enumerate() {
            if cells[r].iter().any(|c| *c != layout.constants[k]) {
                return Err(bad(format!(
                    "row {} is not the constant {}",
                    r + 1,
                    layout.constants[k]
                )));
            }
        }
        for t in [5, 10] {
            if cells[t] != cells[0] {
                return Err(bad(format!("time row {} differs from row 1", t + 1)));
            }
        }
        let num = |r: usize, i: usize| -> Result<f64, ParseError> {
            cells[r][i]
                .parse()
                .map_err(|_| bad(format!("row {} column {} is not a number", r + 1, i + 1)))
        };
        #[allow(clippy::needless_range_loop)] // `i` indexes a column across 16 rows
        for i in 0..n {
            let time = parse_rel_time(cells[0][i])
                .ok_or_else(|| bad(format!("time {:?} in column {}", cells[0][i], i + 1)))?;
            let line = match cells[15][i] {
                "0" => LineState::Inactive,
                "1" => LineState::Active,
                other => return Err(bad(format!("scan state {other:?} in column {}", i + 1))),
            };
            samples.push(LabviewValues {
                time,
                ex_imag: num(3, i)?,
                ex_real: num(4, i)?,
                ey_imag: num(8, i)?,
                ey_real: num(9, i)?,
                ez_imag: num(13, i)?,
                ez_real: num(14, i)?,
                line,
            });
        }
        block_sizes.push(n);
    }
    Ok(ParsedLabview {
        samples,
        block_sizes,
        partial_tail,
    })
}
