//! Pure text formatting and parsing: numbers (lossless: integers digit
//! pairs straight into the row, floats via `zmij`), the standard
//! CSV layout and the legacy LabVIEW block layout. No I/O, no clock.

use std::str::FromStr;

use crate::schema::{LabviewValues, LineState, RelMicros, Schema, Segment, SegmentId};

/// Why one CSV row could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseRowError {
    /// The row has the wrong number of fields.
    #[error("expected {expected} fields, found {found}")]
    FieldCount {
        /// Fields the schema has.
        expected: usize,
        /// Fields found.
        found: usize,
    },
    /// A field is not a valid number of the column's type.
    #[error("field {column} ({text:?}) is not a valid number")]
    BadNumber {
        /// Zero-based column.
        column: usize,
        /// The text found.
        text: String,
    },
}

// ---------------------------------------------------------------------------------
// number formatting

/// Appends an unsigned integer.
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    RowWriter::new(out, U64_MAX_LEN).u64(v);
}

/// Appends the shortest text that parses back to exactly `v`.
pub fn put_f64(out: &mut Vec<u8>, v: f64) {
    RowWriter::new(out, F64_MAX_LEN).f64(v);
}

/// Appends the shortest text that parses back to exactly `v` as an `f32`.
pub fn put_f32(out: &mut Vec<u8>, v: f32) {
    RowWriter::new(out, F32_MAX_LEN).f32(v);
}

/// Appends relative time as seconds with exactly 6 decimals (exact: it is integer µs).
pub fn put_rel_time(out: &mut Vec<u8>, t: RelMicros) {
    RowWriter::new(out, REL_TIME_MAX_LEN).rel_time(t);
}

/// Longest text of a `u64` (`18446744073709551615`).
pub const U64_MAX_LEN: usize = 20;
/// Bound of the text of an `f32` from [`RowWriter::f32`] (the formatter's buffer size).
pub const F32_MAX_LEN: usize = 24;
/// Bound of the text of an `f64` from [`RowWriter::f64`] (the formatter's buffer size).
pub const F64_MAX_LEN: usize = 24;
/// Longest text of a [`RelMicros`] from [`RowWriter::rel_time`].
pub const REL_TIME_MAX_LEN: usize = U64_MAX_LEN + 1 + 6;
/// Longest `index,timestamp_rel,segment_id,is_active_line` prefix.
pub const INDEXED_PREFIX_MAX_LEN: usize = U64_MAX_LEN + 1 + REL_TIME_MAX_LEN + 1 + 10 + 1 + 1;

/// Writes one row's text straight into the spare capacity of a `Vec<u8>`.
///
/// [`RowWriter::new`] reserves the row's worst-case length once; every field then goes
/// into that room (floats as the shortest text that reads back exactly, via `zmij`,
/// a Schubfach-based formatter measured ~10-20 % faster than `ryu` here, even against
/// `ryu::raw` writing straight into the row; integers two digits at a time, in place)
/// with no per-field reallocation check and no heap string. The bytes written become
/// part of the vector when the writer is dropped. A field that would not fit in the room
/// reserved panics (a wrong `max_len` is a bug in the schema, not bad input): the check
/// is one predictable comparison per field and keeps the unsafe writes sound.
///
/// ```
/// use kwik_recorder::RowWriter;
/// let mut out = Vec::new();
/// {
///     let mut row = RowWriter::new(&mut out, 64);
///     row.u64(7);
///     row.byte(b',');
///     row.f64(0.1);
///     row.byte(b',');
///     row.f32(f32::NAN);
/// }
/// assert_eq!(out, b"7,0.1,NaN");
/// ```
#[derive(Debug)]
pub struct RowWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Start of the reserved room (`out`'s length at creation).
    start: usize,
    /// Bytes written into the room so far.
    len: usize,
    /// Bytes reserved.
    room: usize,
}

impl<'a> RowWriter<'a> {
    /// Reserves `max_len` bytes at the end of `out` for one row.
    #[inline]
    pub fn new(out: &'a mut Vec<u8>, max_len: usize) -> Self {
        out.reserve(max_len);
        let start = out.len();
        RowWriter {
            out,
            start,
            len: 0,
            room: max_len,
        }
    }

    /// Pointer to the next free byte, after checking that `n` more bytes fit in the room.
    #[inline(always)]
    fn tail(&mut self, n: usize) -> *mut u8 {
        assert!(
            self.len + n <= self.room,
            "RowWriter: row longer than the {} bytes reserved",
            self.room
        );
        // SAFETY: `start + room <= capacity` (reserved in `new`; `out` is borrowed
        // mutably for our lifetime so nobody else can shrink it) and `len + n <= room`.
        unsafe { self.out.as_mut_ptr().add(self.start + self.len) }
    }

    /// Appends raw bytes.
    #[inline]
    pub fn bytes(&mut self, b: &[u8]) {
        let p = self.tail(b.len());
        // SAFETY: `tail` checked that `b.len()` bytes fit; `b` cannot overlap the spare
        // capacity of a vector we borrow mutably.
        unsafe { copy_short(b, p) };
        self.len += b.len();
    }

    /// Appends one byte.
    #[inline]
    pub fn byte(&mut self, b: u8) {
        let p = self.tail(1);
        // SAFETY: `tail` checked that one byte fits.
        unsafe { p.write(b) };
        self.len += 1;
    }

    /// Appends an unsigned integer (at most [`U64_MAX_LEN`] bytes).
    ///
    /// The digits go straight into the row, last pair first: no intermediate buffer
    /// whose narrow stores a wide copy would then have to wait for.
    #[inline]
    pub fn u64(&mut self, v: u64) {
        let n = decimal_len(v);
        let p = self.tail(n);
        // SAFETY: `tail` checked that `n` bytes are free at `p`, and `write_digits`
        // writes exactly the `n` digits of `v` there.
        unsafe { write_digits(v, p, n) };
        self.len += n;
    }

    /// Appends the shortest text that parses back to exactly `v` (at most
    /// [`F64_MAX_LEN`] bytes; `NaN`, `inf`, `-inf` for the non-finite values).
    #[inline]
    pub fn f64(&mut self, v: f64) {
        if v.is_finite() {
            self.bytes(zmij::Buffer::new().format_finite(v).as_bytes());
        } else {
            self.bytes(nonfinite(v.is_nan(), v.is_sign_negative()));
        }
    }

    /// Appends the shortest text that parses back to exactly `v` as an `f32` (at most
    /// [`F32_MAX_LEN`] bytes; `NaN`, `inf`, `-inf` for the non-finite values).
    #[inline]
    pub fn f32(&mut self, v: f32) {
        if v.is_finite() {
            self.bytes(zmij::Buffer::new().format_finite(v).as_bytes());
        } else {
            self.bytes(nonfinite(v.is_nan(), v.is_sign_negative()));
        }
    }

    /// Appends relative time as seconds with exactly 6 decimals (at most
    /// [`REL_TIME_MAX_LEN`] bytes; exact, it is integer µs).
    #[inline]
    pub fn rel_time(&mut self, t: RelMicros) {
        self.u64(t.0 / 1_000_000);
        let frac = (t.0 % 1_000_000) as u32;
        let p = self.tail(7);
        // SAFETY: `tail` checked that 7 bytes are free at `p`: the point, then the
        // 6 digits (`frac` < 10^6, zero-padded) that `write_digits` puts after it.
        unsafe {
            p.write(b'.');
            write_digits(u64::from(frac), p.add(1), 6);
        }
        self.len += 7;
    }

    /// Appends `index,timestamp_rel,segment_id,is_active_line` (at most
    /// [`INDEXED_PREFIX_MAX_LEN`] bytes).
    #[inline]
    pub fn indexed_prefix(&mut self, index: u64, t: RelMicros, seg: Segment) {
        self.u64(index);
        self.byte(b',');
        self.rel_time(t);
        self.byte(b',');
        self.u64(u64::from(seg.id.0));
        self.byte(b',');
        self.byte(b'0' + seg.line.as_flag());
    }
}

impl Drop for RowWriter<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the `len` bytes after `start` were all written (initialised) by the
        // methods above, and lie within the capacity reserved in `new`.
        unsafe { self.out.set_len(self.start + self.len) };
    }
}

/// Copies `src` to `dst` like `copy_nonoverlapping`, but inline for the short fields a
/// row is made of: two overlapping fixed-size moves instead of a call to `memcpy` with
/// a variable length (which showed up as a fifth of the writer thread's time).
///
/// # Safety
/// `dst` must be valid for `src.len()` bytes of writes and not overlap `src`.
#[inline(always)]
unsafe fn copy_short(src: &[u8], dst: *mut u8) {
    let n = src.len();
    let s = src.as_ptr();
    // SAFETY (all arms): every read is within `src` (the second of each pair ends at
    // `n`), every write within `dst[..n]`, as the caller guarantees.
    unsafe {
        if (16..=32).contains(&n) {
            let a = s.cast::<u128>().read_unaligned();
            let b = s.add(n - 16).cast::<u128>().read_unaligned();
            dst.cast::<u128>().write_unaligned(a);
            dst.add(n - 16).cast::<u128>().write_unaligned(b);
        } else if (8..16).contains(&n) {
            let a = s.cast::<u64>().read_unaligned();
            let b = s.add(n - 8).cast::<u64>().read_unaligned();
            dst.cast::<u64>().write_unaligned(a);
            dst.add(n - 8).cast::<u64>().write_unaligned(b);
        } else if (4..8).contains(&n) {
            let a = s.cast::<u32>().read_unaligned();
            let b = s.add(n - 4).cast::<u32>().read_unaligned();
            dst.cast::<u32>().write_unaligned(a);
            dst.add(n - 4).cast::<u32>().write_unaligned(b);
        } else if n < 4 {
            for i in 0..n {
                dst.add(i).write(*s.add(i));
            }
        } else {
            std::ptr::copy_nonoverlapping(s, dst, n);
        }
    }
}

/// `"00" "01" ... "99"`: two digits per entry.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Digits of `v` in decimal (1 for 0).
#[inline(always)]
fn decimal_len(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// Writes the last `n` decimal digits of `v` to `dst[..n]`, zero-padded on the left
/// when `v` has fewer; two digits per step, from the right.
///
/// # Safety
/// `dst` must be valid for `n` bytes of writes.
#[inline(always)]
unsafe fn write_digits(mut v: u64, dst: *mut u8, n: usize) {
    let mut end = n;
    // SAFETY (all writes): `end` only decreases, by at most what is left above 0, so
    // every write lands in `dst[..n]`, which the caller guarantees.
    unsafe {
        while end >= 2 {
            let pair = (v % 100) as usize * 2;
            v /= 100;
            end -= 2;
            dst.add(end)
                .cast::<[u8; 2]>()
                .write_unaligned([DIGIT_PAIRS[pair], DIGIT_PAIRS[pair + 1]]);
        }
        if end == 1 {
            dst.write(b'0' + (v % 10) as u8);
        }
    }
}

/// The text `Display` gives non-finite values (and `str::parse` reads back).
fn nonfinite(nan: bool, negative: bool) -> &'static [u8] {
    match (nan, negative) {
        (true, _) => b"NaN",
        (false, false) => b"inf",
        (false, true) => b"-inf",
    }
}

// ---------------------------------------------------------------------------------
// number parsing

pub(crate) fn expect_len(f: &[&str], expected: usize) -> Result<(), ParseRowError> {
    if f.len() == expected {
        Ok(())
    } else {
        Err(ParseRowError::FieldCount {
            expected,
            found: f.len(),
        })
    }
}

fn parse_at<T: FromStr>(f: &[&str], column: usize) -> Result<T, ParseRowError> {
    let text = f.get(column).copied().unwrap_or("");
    text.trim().parse().map_err(|_| ParseRowError::BadNumber {
        column,
        text: text.to_owned(),
    })
}

pub(crate) fn parse_int<T: FromStr>(f: &[&str], column: usize) -> Result<T, ParseRowError> {
    parse_at(f, column)
}

pub(crate) fn parse_f32(f: &[&str], column: usize) -> Result<f32, ParseRowError> {
    parse_at(f, column)
}

pub(crate) fn parse_f64(f: &[&str], column: usize) -> Result<f64, ParseRowError> {
    parse_at(f, column)
}

/// Parses `secs[.fraction]` with at most 6 decimals into exact microseconds.
pub fn parse_rel_time(text: &str) -> Option<RelMicros> {
    let text = text.trim();
    let (secs, frac) = match text.split_once('.') {
        Some((s, f)) => (s, f),
        None => (text, ""),
    };
    if secs.is_empty()
        || frac.len() > 6
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let mut micros: u64 = 0;
    for i in 0..6 {
        let d = frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        micros = micros * 10 + d;
    }
    secs.checked_mul(1_000_000)?
        .checked_add(micros)
        .map(RelMicros)
}

pub(crate) fn parse_indexed_prefix(f: &[&str]) -> Result<(u64, RelMicros, Segment), ParseRowError> {
    let index = parse_int(f, 0)?;
    let t = parse_rel_time(f[1]).ok_or_else(|| ParseRowError::BadNumber {
        column: 1,
        text: f[1].to_owned(),
    })?;
    let id = parse_int(f, 2)?;
    let flag: u8 = parse_int(f, 3)?;
    let line = LineState::from_flag(flag).ok_or_else(|| ParseRowError::BadNumber {
        column: 3,
        text: f[3].to_owned(),
    })?;
    Ok((
        index,
        t,
        Segment {
            id: SegmentId(id),
            line,
        },
    ))
}

// ---------------------------------------------------------------------------------
// layouts

/// Options of the standard CSV layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Write `#` comment lines (start time, device, settings) before the header row.
    /// Default: true. Some tools choke on comment lines; turn it off for those.
    pub comment_header: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            comment_header: true,
        }
    }
}

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
            Format::Labview(l) => Vec::with_capacity(l.block),
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
            if opts.comment_header {
                for c in comments {
                    out.extend_from_slice(b"# ");
                    // A newline inside a comment would break the layout.
                    out.extend(c.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
                    out.push(b'\n');
                }
            }
            out.extend_from_slice(S::COLUMNS.join(",").as_bytes());
            out.push(b'\n');
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
                if self.block.len() >= layout.block {
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
                let consts: usize = l.constants.iter().map(|c| c.len() + 1).sum();
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

fn write_labview_block(layout: &LabviewLayout, block: &[LabviewValues], out: &mut Vec<u8>) {
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

// ---------------------------------------------------------------------------------
// parsing whole files

/// Why a file's text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The header row does not match the schema's columns.
    #[error("header row {found:?} does not match schema `{schema}`")]
    Header {
        /// Schema name.
        schema: &'static str,
        /// The line found.
        found: String,
    },
    /// No header row.
    #[error("the file has no header row")]
    NoHeader,
    /// A data row is malformed.
    #[error("line {line}: {error}")]
    Row {
        /// One-based line number.
        line: usize,
        /// What is wrong.
        error: ParseRowError,
    },
    /// A line after the footer, or a malformed footer.
    #[error("line {line}: unexpected text after or in the footer")]
    Footer {
        /// One-based line number.
        line: usize,
    },
    /// A LabVIEW block is malformed.
    #[error("LabVIEW block {block}: {what}")]
    Labview {
        /// Zero-based block number.
        block: usize,
        /// What is wrong.
        what: String,
    },
    /// The file is not UTF-8 text.
    #[error("the file is not UTF-8 text")]
    NotText,
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

/// Parses a standard CSV file written by [`Encoder`].
pub fn parse_csv<S: Schema>(bytes: &[u8]) -> Result<ParsedCsv<S>, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ParseError::NotText)?;
    let (whole, partial_tail) = match text.rfind('\n') {
        Some(i) => (&text[..=i], text.len() - i - 1),
        None => ("", text.len()),
    };
    let mut comments = Vec::new();
    let mut rows = Vec::new();
    let mut footer = None;
    let mut header_seen = false;
    let header = S::COLUMNS.join(",");
    let mut fields: Vec<&str> = Vec::with_capacity(S::COLUMNS.len());
    for (n, line) in whole.lines().enumerate() {
        let lineno = n + 1;
        if footer.is_some() {
            return Err(ParseError::Footer { line: lineno });
        }
        if !header_seen {
            if let Some(c) = line.strip_prefix('#') {
                comments.push(c.strip_prefix(' ').unwrap_or(c).to_owned());
                continue;
            }
            if line != header {
                return Err(ParseError::Header {
                    schema: S::NAME,
                    found: line.to_owned(),
                });
            }
            header_seen = true;
            continue;
        }
        if line.starts_with('#') {
            footer = Some(Footer::parse(line).ok_or(ParseError::Footer { line: lineno })?);
            continue;
        }
        fields.clear();
        fields.extend(line.split(','));
        let row = S::parse_row(&fields).map_err(|error| ParseError::Row {
            line: lineno,
            error,
        })?;
        rows.push(row);
    }
    if !header_seen {
        return Err(ParseError::NoHeader);
    }
    Ok(ParsedCsv {
        comments,
        rows,
        footer,
        partial_tail,
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_time_is_exact_with_six_decimals() {
        let mut out = Vec::new();
        put_rel_time(&mut out, RelMicros(12_000_250));
        assert_eq!(out, b"12.000250");
        assert_eq!(parse_rel_time("12.000250"), Some(RelMicros(12_000_250)));
        assert_eq!(parse_rel_time("3.5"), Some(RelMicros(3_500_000)));
        assert_eq!(parse_rel_time("3.1234567"), None);
        assert_eq!(parse_rel_time("-1.0"), None);
    }

    #[test]
    fn floats_round_trip_exactly() {
        for v in [
            0.1f64,
            -3.41e-1,
            1e-300,
            123_456_789.123_456_79,
            f64::MAX,
            1.0 / 3.0,
        ] {
            let mut out = Vec::new();
            put_f64(&mut out, v);
            let back: f64 = std::str::from_utf8(&out).unwrap().parse().unwrap();
            assert_eq!(back.to_bits(), v.to_bits());
        }
    }

    proptest::proptest! {
        /// The row writer gives integers' decimal text and the shortest float text that reads
        /// back to the same bits, within the documented bounds, for any bit pattern
        /// (subnormals, extremes, NaN payloads, infinities).
        #[test]
        fn row_writer_is_lossless(a in proptest::num::f64::ANY, b_bits: u32, c_bits: u64, n: u64) {
            let b = f32::from_bits(b_bits);
            let c = f64::from_bits(c_bits);
            let mut out = b"x".to_vec();
            {
                let mut row = RowWriter::new(&mut out, U64_MAX_LEN + F64_MAX_LEN * 2 + F32_MAX_LEN + 3);
                row.u64(n);
                row.byte(b',');
                row.f64(a);
                row.byte(b',');
                row.f32(b);
                row.byte(b',');
                row.f64(c);
            }
            let text = std::str::from_utf8(&out).unwrap();
            let f: Vec<&str> = text.split(',').collect();
            proptest::prop_assert_eq!(f.len(), 4);
            proptest::prop_assert_eq!(f[0], format!("x{n}"));
            let (a2, b2, c2): (f64, f32, f64) =
                (f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap());
            proptest::prop_assert!(a2.to_bits() == a.to_bits() || (a.is_nan() && a2.is_nan()));
            proptest::prop_assert!(b2.to_bits() == b.to_bits() || (b.is_nan() && b2.is_nan()));
            proptest::prop_assert!(c2.to_bits() == c.to_bits() || (c.is_nan() && c2.is_nan()));
            // Shortest: never longer than ryu's shortest form.
            for (got, shortest) in [
                (f[1], ryu::Buffer::new().format(a).len()),
                (f[2], ryu::Buffer::new().format(b).len()),
                (f[3], ryu::Buffer::new().format(c).len()),
            ] {
                proptest::prop_assert!(got.len() <= shortest + 1, "{} vs {}", got, shortest);
            }
        }
    }

    #[test]
    fn integers_match_display_at_every_length() {
        let mut values = vec![0u64, u64::MAX];
        for k in 0..20 {
            let p = 10u64.pow(k);
            values.extend([p, p - 1, p + 1, p.saturating_mul(7) / 3]);
        }
        for v in values {
            let mut out = b"x".to_vec();
            put_u64(&mut out, v);
            assert_eq!(out, format!("x{v}").as_bytes());
        }
    }

    #[test]
    fn short_copies_are_exact_at_every_length() {
        let src: Vec<u8> = (1..=64).collect();
        for n in 0..=64 {
            let mut out = vec![0u8; 2];
            {
                let mut row = RowWriter::new(&mut out, 65);
                row.bytes(&src[..n]);
                row.byte(b'!');
            }
            let mut want = vec![0u8; 2];
            want.extend_from_slice(&src[..n]);
            want.push(b'!');
            assert_eq!(out, want, "length {n}");
        }
    }

    #[test]
    #[should_panic(expected = "row longer than")]
    fn row_writer_refuses_to_overrun_its_room() {
        let mut out = Vec::new();
        let mut row = RowWriter::new(&mut out, 4);
        row.f64(0.123_456_789);
    }

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
