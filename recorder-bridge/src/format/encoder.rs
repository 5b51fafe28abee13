//! Samples of one schema to file bytes in one layout ([`Format`]): the standard CSV or
//! the legacy LabVIEW blocks.

use crate::format::columns::{McapOptions, ParquetOptions};
use crate::format::compat::{CsvCompat, HeaderFacts, xiao_totals};
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
    /// Parquet: typed columns, zstd (written by the Parquet writer, not as text).
    Parquet(ParquetOptions),
    /// MCAP: one JSON message per sample in zstd chunks (written by the MCAP writer).
    Mcap(McapOptions),
}

impl Default for Format {
    fn default() -> Self {
        Format::Csv(CsvOptions::default())
    }
}

impl Format {
    /// The layout a stream of `schema` is written in when its recording asks for this
    /// one: the same, except that a LabVIEW recording writes stage positions as the
    /// bench's position exporter did beside its LabVIEW E-field files
    /// ([`CsvCompat::Bench`]); other schemas without a LabVIEW layout are refused
    /// when the recording starts.
    pub fn for_schema(&self, schema: &str) -> Format {
        match self {
            Format::Labview(_) if CsvCompat::Bench.schema() == Some(schema) => {
                Format::Csv(CsvOptions {
                    compat: CsvCompat::Bench,
                    ..CsvOptions::default()
                })
            }
            other => other.clone(),
        }
    }

    /// Short name (`csv` or `labview`), as used by the CLI and sidecars.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Csv(_) => "csv",
            Format::Labview(_) => "labview",
            Format::Parquet(_) => "parquet",
            Format::Mcap(_) => "mcap",
        }
    }

    /// The data files' extension.
    pub fn extension(&self) -> &'static str {
        match self {
            Format::Csv(_) | Format::Labview(_) => "csv",
            Format::Parquet(_) => "parquet",
            Format::Mcap(_) => "mcap",
        }
    }

    /// Whether the layout is text that an [`Encoder`] writes.
    pub fn is_text(&self) -> bool {
        !matches!(self, Format::Parquet(_) | Format::Mcap(_))
    }
}

/// Why an encoder could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncoderError {
    /// The LabVIEW layout was asked for a schema that has no LabVIEW projection.
    #[error("the LabVIEW layout exists only for the E-field schema, not `{0}`; use --format csv")]
    LabviewUnsupported(&'static str),
    /// A compatibility layout was asked for a schema its tool never wrote.
    #[error(
        "the {compat} CSV compatibility layout is for the xiao-imu schema, not `{schema}`; leave --compat out for this stream"
    )]
    CompatUnsupported {
        /// The compatibility layout.
        compat: &'static str,
        /// The schema.
        schema: &'static str,
    },
    /// A size limit that stops the recording was asked for a layout that can only
    /// split into parts.
    #[error(
        "a size limit on {0} files splits them into parts; add --split or leave --size-limit out"
    )]
    SizeLimitUnsupported(&'static str),
    /// The layout is not text (Parquet has its own writer).
    #[error("the {0} layout is not text; it has its own writer")]
    NotText(&'static str),
}

/// Turns samples of one schema into file bytes in one layout. Stateful only for the
/// LabVIEW layout, which holds up to one block of samples before emitting it.
#[derive(Debug)]
pub struct Encoder<S> {
    format: Format,
    block: Vec<LabviewValues>,
    /// What a header that states facts (the XIAO one) says.
    facts: HeaderFacts,
    /// Where the open part's XIAO totals block sits, from the part's start.
    totals_at: Option<usize>,
    /// Time of the open part's first and last sample (tracked for the XIAO totals).
    span: Option<(u64, u64)>,
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
            Format::Csv(o) if o.compat.schema().is_some_and(|only| only != S::NAME) => {
                return Err(EncoderError::CompatUnsupported {
                    compat: o.compat.name(),
                    schema: S::NAME,
                });
            }
            Format::Csv(_) => Vec::new(),
            Format::Parquet(_) | Format::Mcap(_) => {
                return Err(EncoderError::NotText(format.name()));
            }
        };
        Ok(Encoder {
            format,
            block,
            facts: HeaderFacts::default(),
            totals_at: None,
            span: None,
            _schema: std::marker::PhantomData,
        })
    }

    /// Sets what a header that states facts says (start time, device): the XIAO
    /// header has such lines.
    pub fn with_facts(mut self, facts: HeaderFacts) -> Self {
        self.facts = facts;
        self
    }

    /// The XIAO totals of the open part (duration from its first to its last sample,
    /// `samples`, average rate), with where they go from the part's start; `None` for
    /// layouts without them. The file writer overwrites the placeholders with these
    /// when the part closes.
    pub fn totals_patch(&self, samples: u64) -> Option<(usize, Vec<u8>)> {
        let at = self.totals_at?;
        let span = self.span.map_or(0, |(a, b)| b.saturating_sub(a));
        Some((at, xiao_totals(samples, span)))
    }

    fn track(&mut self, samples: &[S]) {
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            let a = self.span.map_or(first.time_us(), |(a, _)| a);
            self.span = Some((a, last.time_us()));
        }
    }

    /// The layout.
    pub fn format(&self) -> &Format {
        &self.format
    }

    /// Appends the start of a file: comment lines (each gets a `# ` prefix, when the
    /// layout has them) and the header row.
    pub fn begin(&mut self, comments: &[String], out: &mut Vec<u8>) {
        self.span = None;
        if let Format::Csv(opts) = &self.format {
            self.totals_at = write_header::<S>(opts, comments, &self.facts, out);
        }
    }

    /// Encodes one sample. CSV emits a row at once; LabVIEW emits a whole block every
    /// `block` samples. Returns true when bytes were appended.
    pub fn push(&mut self, sample: &S, out: &mut Vec<u8>) -> bool {
        match &self.format {
            Format::Csv(o) => {
                sample.write_row(out, o.floats);
                out.push(b'\n');
                if self.totals_at.is_some() {
                    self.track(std::slice::from_ref(sample));
                }
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
            // Invariant: `new` refuses layouts that are not text.
            Format::Parquet(_) | Format::Mcap(_) => false,
        }
    }

    /// Encodes a run of samples, as [`Encoder::push`] on each in turn but without a
    /// per-sample layout dispatch. Returns how many samples were emitted (rows, or the
    /// samples of the LabVIEW blocks completed, counting ones held from earlier runs).
    pub fn push_all(&mut self, samples: &[S], out: &mut Vec<u8>) -> usize {
        match &self.format {
            Format::Csv(o) => {
                let floats = o.floats;
                for sample in samples {
                    sample.write_row(out, floats);
                    out.push(b'\n');
                }
                if self.totals_at.is_some() {
                    self.track(samples);
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
            Format::Parquet(_) | Format::Mcap(_) => 0,
        }
    }

    /// Upper bound of the bytes one sample can add in this layout (a CSV row with its
    /// newline, or one sample's column of a LabVIEW block), for size-limit planning.
    pub fn max_bytes_per_sample(&self) -> usize {
        match &self.format {
            Format::Csv(o) => S::max_row_len(o.floats) + 1,
            Format::Parquet(_) | Format::Mcap(_) => 0,
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
            Format::Csv(o) if o.compat.has_footer() => footer.write_for(o.compat, out),
            Format::Csv(_) | Format::Parquet(_) | Format::Mcap(_) => {}
            Format::Labview(layout) => {
                if !self.block.is_empty() {
                    write_labview_block(layout, &self.block, out);
                    self.block.clear();
                }
            }
        }
    }
}
