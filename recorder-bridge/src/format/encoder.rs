//! Samples of one schema to file bytes in one layout ([`Format`]): the standard CSV or
//! the legacy LabVIEW blocks.

use crate::format::csv::{CsvOptions, write_header};
use crate::format::footer::Footer;
use crate::format::labview::{LabviewLayout, write_labview_block};
use crate::format::number::{F64_MAX_LEN, REL_TIME_MAX_LEN};
use crate::format::schema::{LabviewValues, Schema};

/// A file layout.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Standard CSV: optional comment header, header row, rows, footer.
    Csv(CsvOptions),
    /// The legacy LabVIEW layout (E-field schema only).
    Labview(LabviewLayout),
}

impl Default for Format {
    fn default() -> Self {
        Format::Csv(CsvOptions::default())
    }
}

impl Format {
    /// Short name (`csv` or `labview`), as used by the CLI and sidecars.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Csv(_) => "csv",
            Format::Labview(_) => "labview",
        }
    }
}

/// Why an encoder could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncoderError {
    /// The LabVIEW layout was asked for a schema that has no LabVIEW projection.
    #[error("the LabVIEW layout exists only for the E-field schema, not `{0}`; use --format csv")]
    LabviewUnsupported(&'static str),
}

/// Turns samples of one schema into file bytes in one layout. Stateful only for the
/// LabVIEW layout, which holds up to one block of samples before emitting it.
#[derive(Debug)]
pub struct Encoder<S> {
    format: Format,
    block: Vec<LabviewValues>,
    _schema: std::marker::PhantomData<S>,
}

impl<S: Schema> Encoder<S> {
    /// Creates an encoder; fails if the layout does not fit the schema.
    pub fn new(format: Format) -> Result<Self, EncoderError> {
        let block = match &format {
            Format::Labview(l) if !S::LABVIEW => {
                let _ = l;
                return Err(EncoderError::LabviewUnsupported(S::NAME));
            }
            Format::Labview(l) => Vec::with_capacity(l.block()),
            Format::Csv(_) => Vec::new(),
        };
        Ok(Encoder {
            format,
            block,
            _schema: std::marker::PhantomData,
        })
    }

    /// The layout.
    pub fn format(&self) -> &Format {
        &self.format
    }

    /// Appends the start of a file: comment lines (each gets a `# ` prefix, when the
    /// layout has them) and the header row.
    pub fn begin(&mut self, comments: &[String], out: &mut Vec<u8>) {
        if let Format::Csv(opts) = &self.format {
            write_header::<S>(opts, comments, out);
        }
    }

    /// Encodes one sample. CSV emits a row at once; LabVIEW emits a whole block every
    /// `block` samples. Returns true when bytes were appended.
    pub fn push(&mut self, sample: &S, out: &mut Vec<u8>) -> bool {
        match &self.format {
            Format::Csv(_) => {
                sample.write_row(out);
                out.push(b'\n');
                true
            }
            Format::Labview(layout) => {
                // Invariant: `new` refused layouts whose schema has no projection.
                if let Some(v) = sample.labview() {
                    self.block.push(v);
                }
                if self.block.len() >= layout.block() {
                    write_labview_block(layout, &self.block, out);
                    self.block.clear();
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Encodes a run of samples, as [`Encoder::push`] on each in turn but without a
    /// per-sample layout dispatch. Returns how many samples were emitted (rows, or the
    /// samples of the LabVIEW blocks completed, counting ones held from earlier runs).
    pub fn push_all(&mut self, samples: &[S], out: &mut Vec<u8>) -> usize {
        match &self.format {
            Format::Csv(_) => {
                for sample in samples {
                    sample.write_row(out);
                    out.push(b'\n');
                }
                samples.len()
            }
            Format::Labview(_) => {
                let held = self.block.len();
                samples.iter().for_each(|s| {
                    self.push(s, out);
                });
                held + samples.len() - self.block.len()
            }
        }
    }

    /// Upper bound of the bytes one sample can add in this layout (a CSV row with its
    /// newline, or one sample's column of a LabVIEW block), for size-limit planning.
    pub fn max_bytes_per_sample(&self) -> usize {
        match &self.format {
            Format::Csv(_) => S::MAX_ROW_LEN + 1,
            Format::Labview(l) => {
                // 3 time cells, 6 values, 6 constants, 1 flag; each with its comma.
                let consts: usize = l.constants().iter().map(|c| c.len() + 1).sum();
                3 * (REL_TIME_MAX_LEN + 1) + 6 * (F64_MAX_LEN + 1) + consts + 2
            }
        }
    }

    /// Samples held back (a LabVIEW block in progress).
    pub fn pending(&self) -> usize {
        self.block.len()
    }

    /// Ends a file: emits a partial LabVIEW block, or the CSV footer.
    pub fn finish(&mut self, footer: Footer, out: &mut Vec<u8>) {
        match &self.format {
            Format::Csv(_) => footer.write(out),
            Format::Labview(layout) => {
                if !self.block.is_empty() {
                    write_labview_block(layout, &self.block, out);
                    self.block.clear();
                }
            }
        }
    }
}
