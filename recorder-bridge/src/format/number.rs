//! The text of numbers in rows: integers as digit pairs straight into the row, floats
//! as the shortest text that reads back exactly (via `zmij`), relative time with exactly
//! six decimals, and the parsers of the same fields. Pure: no I/O, no clock.

use std::str::FromStr;

use crate::format::segment::{LineState, Segment, SegmentId};
use crate::format::time::RelMicros;

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

/// Most decimals `--decimals` accepts: 17 is past the precision of an `f64`.
pub const MAX_DECIMALS: u8 = 17;
/// Magnitude from which a fixed-decimal float is written in its shortest form instead:
/// below it the integer part has at most 15 digits, which bounds the row length.
const FIXED_LIMIT: f64 = 1e15;
/// Longest fixed-decimal float text: sign, 15 integer digits, point, decimals.
pub const FIXED_MAX_LEN: usize = 1 + 15 + 1 + MAX_DECIMALS as usize;

/// A number of decimals for fixed-point float text, `0..=`[`MAX_DECIMALS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimals(u8);

/// A decimals setting out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} decimals is out of range; give 0 to {MAX_DECIMALS}")]
pub struct DecimalsError(pub u32);

impl TryFrom<u32> for Decimals {
    type Error = DecimalsError;
    fn try_from(n: u32) -> Result<Self, DecimalsError> {
        match u8::try_from(n) {
            Ok(d) if d <= MAX_DECIMALS => Ok(Decimals(d)),
            _ => Err(DecimalsError(n)),
        }
    }
}

impl Decimals {
    /// The number of decimals.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// How float cells are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FloatText {
    /// The shortest text that reads back to the same value (default): exact, but small
    /// values come out in exponent form (`2.4492935e-17`).
    #[default]
    Shortest,
    /// Exactly this many decimals, never an exponent (`0.000000`), rounded to nearest
    /// (ties to even, on the value's exact binary expansion).
    /// Some spreadsheet and LabVIEW import paths mis-read exponents; this text does not
    /// read back exactly. Magnitudes from 1e15 on, and non-finite values, keep the
    /// shortest form (no sensor here reaches them).
    Fixed(Decimals),
}

impl FloatText {
    /// Extra bytes a float cell may take in this form over [`F64_MAX_LEN`].
    pub fn extra_len(self) -> usize {
        match self {
            FloatText::Shortest => 0,
            FloatText::Fixed(_) => FIXED_MAX_LEN.saturating_sub(F64_MAX_LEN),
        }
    }
}

/// A small stack buffer that `write!` can fill (the fixed-decimal text of one float).
struct StackText {
    buf: [u8; FIXED_MAX_LEN + 8],
    len: usize,
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn fixed_text(v: impl std::fmt::Display, decimals: Decimals) -> StackText {
    use std::fmt::Write as _;
    let mut t = StackText {
        buf: [0; FIXED_MAX_LEN + 8],
        len: 0,
    };
    // Cannot fail: the callers keep |v| < 1e15, whose text fits in the buffer.
    let _ = write!(t, "{:.*}", usize::from(decimals.0), v);
    t
}

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

    /// Appends an `f64` in the form `text` asks for (at most [`F64_MAX_LEN`] +
    /// [`FloatText::extra_len`] bytes).
    #[inline]
    pub fn f64_as(&mut self, v: f64, text: FloatText) {
        match text {
            FloatText::Fixed(d) if v.abs() < FIXED_LIMIT => {
                let t = fixed_text(v, d);
                self.bytes(&t.buf[..t.len]);
            }
            _ => self.f64(v),
        }
    }

    /// Appends an `f32` in the form `text` asks for (its own value, not widened: the
    /// decimals of the `f32` itself).
    #[inline]
    pub fn f32_as(&mut self, v: f32, text: FloatText) {
        match text {
            FloatText::Fixed(d) if v.abs() < FIXED_LIMIT as f32 => {
                let t = fixed_text(v, d);
                self.bytes(&t.buf[..t.len]);
            }
            _ => self.f32(v),
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
    fn fixed_decimals_have_no_exponent_and_round_to_nearest() {
        let d = |n| FloatText::Fixed(Decimals::try_from(n).unwrap());
        let cases: [(f64, u32, &str); 5] = [
            (2.449_293_5e-17, 6, "0.000000"),
            (-0.125, 2, "-0.12"),
            (1.5, 0, "2"),
            (123.456, 1, "123.5"),
            (-3.41e-1, 17, "-0.34100000000000003"),
        ];
        for (v, n, want) in cases {
            let mut out = Vec::new();
            RowWriter::new(&mut out, F64_MAX_LEN + d(n).extra_len()).f64_as(v, d(n));
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{v} with {n}");
        }
        // From 1e15 on: the shortest form, as without decimals.
        let (mut fixed, mut shortest) = (Vec::new(), Vec::new());
        RowWriter::new(&mut fixed, F64_MAX_LEN + d(3).extra_len()).f64_as(1e300, d(3));
        put_f64(&mut shortest, 1e300);
        assert_eq!(fixed, shortest);
        let mut out = Vec::new();
        RowWriter::new(&mut out, F32_MAX_LEN + d(3).extra_len()).f32_as(0.1f32, d(9));
        assert_eq!(out, b"0.100000001", "the f32's own digits");
        assert!(Decimals::try_from(18).is_err());
    }

    proptest::proptest! {
        /// Fixed-decimal text stays within the row bound and reads back within half a
        /// unit of the last decimal, for every finite value below the limit.
        #[test]
        fn fixed_decimals_stay_in_bounds(v in -1e15f64..1e15, n in 0u32..=17) {
            let text = FloatText::Fixed(Decimals::try_from(n).unwrap());
            let mut out = Vec::new();
            RowWriter::new(&mut out, F64_MAX_LEN + text.extra_len()).f64_as(v, text);
            let s = std::str::from_utf8(&out).unwrap();
            proptest::prop_assert!(!s.contains('e'));
            let back: f64 = s.parse().unwrap();
            let half = 0.5 * 10f64.powi(-(n as i32));
            proptest::prop_assert!((back - v).abs() <= half * (1.0 + 1e-9) + v.abs() * 1e-15);
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
}
