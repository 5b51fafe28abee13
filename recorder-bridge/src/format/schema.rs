//! Sample schemas: the row types the recorder writes, and the one trait every exporter,
//! parser and test goes through.

use std::fmt;

use crate::format::columns::{ColumnSpec, ColumnType as T, RowSink, col};
use crate::format::number::{
    self as codec, F32_MAX_LEN, F64_MAX_LEN, FloatText, INDEXED_PREFIX_MAX_LEN, ParseRowError,
    RowWriter,
};
use crate::format::packed::{Packed, f32_pair, split_f32_pair};
use crate::format::segment::{LineState, Segment, SegmentId};
use crate::format::time::RelMicros;

/// The values the legacy LabVIEW layout carries for one E-field sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabviewValues {
    /// Relative time.
    pub time: RelMicros,
    /// ADC1 ch1.
    pub ex_real: f64,
    /// ADC1 ch2.
    pub ex_imag: f64,
    /// ADC1 ch3.
    pub ey_real: f64,
    /// ADC1 ch4.
    pub ey_imag: f64,
    /// ADC2 ch1.
    pub ez_real: f64,
    /// ADC2 ch2.
    pub ez_imag: f64,
    /// Scan state (active line).
    pub line: LineState,
}

/// A row type the recorder can store. Everything generic in this crate (ring, exporter,
/// encoders, parsers, verify, the test suite) works through this trait; the ring stores
/// samples in their [`Packed`] form.
pub trait Schema: Packed + Copy + Send + Sync + PartialEq + fmt::Debug + 'static {
    /// Schema name, written into headers and sidecars (`xiao-imu`, `efield`, `stage`).
    const NAME: &'static str;
    /// Column names of the standard CSV header row, in order.
    const COLUMNS: &'static [&'static str];
    /// Whether [`Schema::labview`] returns values (the LabVIEW layout is E-field only).
    const LABVIEW: bool = false;

    /// Upper bound of the bytes [`Schema::write_row`] appends for any sample with
    /// shortest float text. The file writer uses it to encode whole runs of rows
    /// without a per-row size check when they cannot reach the size limit.
    const MAX_ROW_LEN: usize;
    /// Float cells of a row (what fixed-decimal text can lengthen).
    const FLOAT_COLUMNS: usize;

    /// Upper bound of the bytes [`Schema::write_row`] appends with float text `floats`.
    fn max_row_len(floats: FloatText) -> usize {
        Self::MAX_ROW_LEN + Self::FLOAT_COLUMNS * floats.extra_len()
    }

    /// Appends this sample's standard CSV cells, comma-separated, without a newline,
    /// floats in the form `floats` asks for. At most [`Schema::max_row_len`] bytes;
    /// [`RowWriter`] writes them fast.
    fn write_row(&self, out: &mut Vec<u8>, floats: FloatText);
    /// Parses one standard CSV row, already split into exactly `COLUMNS.len()` fields.
    fn parse_row(fields: &[&str]) -> Result<Self, ParseRowError>;
    /// The sample's time in microseconds: device time for the XIAO rows (their
    /// `millis`), time since the group's t0 for the others.
    fn time_us(&self) -> u64;
    /// Whether [`Schema::time_us`] is the device's own clock (whose zero is not the
    /// group's t0): columnar files then put the first sample at t0.
    const DEVICE_CLOCK: bool = false;
    /// The typed columns of the columnar formats, in order: the CSV columns with their
    /// own types plus a `time` column (UTC timestamp).
    const TYPED_COLUMNS: &'static [ColumnSpec];
    /// Pushes this sample's values into `row`, one per [`Schema::TYPED_COLUMNS`] entry.
    fn put_columns(&self, row: &mut RowSink<'_>);
    /// The segment this sample carries, if the schema has segment columns.
    fn segment(&self) -> Option<Segment> {
        None
    }
    /// Stamps a segment marker (no-op for schemas without segment columns).
    fn set_segment(&mut self, _segment: Segment) {}
    /// The LabVIEW projection of this sample (only when `LABVIEW` is true).
    fn labview(&self) -> Option<LabviewValues> {
        None
    }
}

// The trait is named by its path, not imported: in scope beside `Schema` its items
// would be ambiguous for every schema.
impl<S: Schema> crate::format::columns::Columnar for S {
    const NAME: &'static str = <S as Schema>::NAME;
    const TYPED_COLUMNS: &'static [ColumnSpec] = <S as Schema>::TYPED_COLUMNS;
    const DEVICE_CLOCK: bool = <S as Schema>::DEVICE_CLOCK;

    fn time_us(&self) -> u64 {
        Schema::time_us(self)
    }

    fn put_columns(&self, row: &mut RowSink<'_>) {
        Schema::put_columns(self, row)
    }
}

/// The LabVIEW projection as rows: what a LabVIEW file holds (time, the six channels it
/// carries, the scan state; no index, no segment id, no ADC2 ch3/ch4).
impl crate::format::columns::Columnar for LabviewValues {
    const NAME: &'static str = "efield-labview";
    const TYPED_COLUMNS: &'static [ColumnSpec] = &[
        col("time", T::Timestamp),
        col("timestamp_rel", T::Seconds),
        col("is_active_line", T::Bool),
        col("ADC1_Ch1 Ex_real", T::Float64),
        col("ADC1_Ch2 Ex_imag", T::Float64),
        col("ADC1_Ch3 Ey_real", T::Float64),
        col("ADC1_Ch4 Ey_imag", T::Float64),
        col("ADC2_Ch1 Ez_real", T::Float64),
        col("ADC2_Ch2 Ez_imag", T::Float64),
    ];
    const DEVICE_CLOCK: bool = false;

    fn time_us(&self) -> u64 {
        self.time.0
    }

    fn put_columns(&self, row: &mut RowSink<'_>) {
        row.time(self.time.0);
        row.seconds(self.time.0);
        row.bool(self.line == LineState::Active);
        for v in [
            self.ex_real,
            self.ex_imag,
            self.ey_real,
            self.ey_imag,
            self.ez_real,
            self.ez_imag,
        ] {
            row.f64(v);
        }
    }
}

/// One XIAO nRF52840 Sense sample: `millis,ax,ay,az,gx,gy,gz,tempC,audioRMS`.
///
/// Field-for-field the same as the `xiao-proto` sample (device milliseconds, IMU in g
/// and deg/s, temperature in °C, microphone RMS).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImuRow {
    /// Device time in milliseconds.
    pub millis: u32,
    /// Acceleration x (g).
    pub ax: f32,
    /// Acceleration y (g).
    pub ay: f32,
    /// Acceleration z (g).
    pub az: f32,
    /// Angular rate x (deg/s).
    pub gx: f32,
    /// Angular rate y (deg/s).
    pub gy: f32,
    /// Angular rate z (deg/s).
    pub gz: f32,
    /// Temperature (°C).
    pub temp_c: f32,
    /// Microphone RMS.
    pub audio_rms: f32,
}

impl ImuRow {
    /// The eight sensor values in column order (ax .. audioRMS).
    pub fn values(&self) -> [f32; 8] {
        [
            self.ax,
            self.ay,
            self.az,
            self.gx,
            self.gy,
            self.gz,
            self.temp_c,
            self.audio_rms,
        ]
    }
}

impl Schema for ImuRow {
    const NAME: &'static str = "xiao-imu";
    const COLUMNS: &'static [&'static str] = &[
        "millis", "ax", "ay", "az", "gx", "gy", "gz", "tempC", "audioRMS",
    ];
    const MAX_ROW_LEN: usize = 10 + 8 * (1 + F32_MAX_LEN);
    const FLOAT_COLUMNS: usize = 8;

    fn write_row(&self, out: &mut Vec<u8>, floats: FloatText) {
        // One reservation for the row; every field then goes straight into it.
        let mut row = RowWriter::new(out, Self::max_row_len(floats));
        row.u64(u64::from(self.millis));
        for v in self.values() {
            row.byte(b',');
            row.f32_as(v, floats);
        }
    }

    fn time_us(&self) -> u64 {
        u64::from(self.millis) * 1000
    }

    const DEVICE_CLOCK: bool = true;
    const TYPED_COLUMNS: &'static [ColumnSpec] = &[
        col("time", T::Timestamp),
        col("millis", T::UInt32),
        col("ax", T::Float32),
        col("ay", T::Float32),
        col("az", T::Float32),
        col("gx", T::Float32),
        col("gy", T::Float32),
        col("gz", T::Float32),
        col("tempC", T::Float32),
        col("audioRMS", T::Float32),
    ];

    fn put_columns(&self, row: &mut RowSink<'_>) {
        row.time(self.time_us());
        row.u32(self.millis);
        for v in self.values() {
            row.f32(v);
        }
    }

    fn parse_row(f: &[&str]) -> Result<Self, ParseRowError> {
        codec::expect_len(f, Self::COLUMNS.len())?;
        Ok(ImuRow {
            millis: codec::parse_int(f, 0)?,
            ax: codec::parse_f32(f, 1)?,
            ay: codec::parse_f32(f, 2)?,
            az: codec::parse_f32(f, 3)?,
            gx: codec::parse_f32(f, 4)?,
            gy: codec::parse_f32(f, 5)?,
            gz: codec::parse_f32(f, 6)?,
            temp_c: codec::parse_f32(f, 7)?,
            audio_rms: codec::parse_f32(f, 8)?,
        })
    }
}

impl Packed for ImuRow {
    const WORDS: usize = 5;

    fn pack(&self, w: &mut [u64]) {
        w[0] = u64::from(self.millis);
        w[1] = f32_pair(self.ax, self.ay);
        w[2] = f32_pair(self.az, self.gx);
        w[3] = f32_pair(self.gy, self.gz);
        w[4] = f32_pair(self.temp_c, self.audio_rms);
    }

    fn unpack(w: &[u64]) -> Self {
        let (ax, ay) = split_f32_pair(w[1]);
        let (az, gx) = split_f32_pair(w[2]);
        let (gy, gz) = split_f32_pair(w[3]);
        let (temp_c, audio_rms) = split_f32_pair(w[4]);
        ImuRow {
            millis: w[0] as u32,
            ax,
            ay,
            az,
            gx,
            gy,
            gz,
            temp_c,
            audio_rms,
        }
    }
}

/// A segment marker in one word: the id in the low half, the line flag above it.
fn pack_segment(s: Segment) -> u64 {
    u64::from(s.id.0) | (u64::from(s.line.as_flag()) << 32)
}

/// The segment marker of a word made by [`pack_segment`] (any nonzero flag is active).
fn unpack_segment(w: u64) -> Segment {
    Segment {
        id: SegmentId(w as u32),
        line: if w >> 32 == 0 {
            LineState::Inactive
        } else {
            LineState::Active
        },
    }
}

/// One E-field sample from the two ADS131A04 ADCs (4 channels each).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EfieldSample {
    /// Sample index from the acquisition.
    pub index: u64,
    /// Time since the group's t0.
    pub t_rel: RelMicros,
    /// Segment marker at acquisition time.
    pub segment: Segment,
    /// ADC1 ch1-4 then ADC2 ch1-4 (Ex re, Ex im, Ey re, Ey im, Ez re, Ez im, ch3, ch4).
    pub channels: [f64; 8],
}

impl Schema for EfieldSample {
    const NAME: &'static str = "efield";
    const COLUMNS: &'static [&'static str] = &[
        "index",
        "timestamp_rel",
        "segment_id",
        "is_active_line",
        "ADC1_Ch1 Ex_real",
        "ADC1_Ch2 Ex_imag",
        "ADC1_Ch3 Ey_real",
        "ADC1_Ch4 Ey_imag",
        "ADC2_Ch1 Ez_real",
        "ADC2_Ch2 Ez_imag",
        "ADC2_Ch3",
        "ADC2_Ch4",
    ];
    const MAX_ROW_LEN: usize = INDEXED_PREFIX_MAX_LEN + 8 * (1 + F64_MAX_LEN);
    const FLOAT_COLUMNS: usize = 8;
    const LABVIEW: bool = true;

    fn write_row(&self, out: &mut Vec<u8>, floats: FloatText) {
        let mut row = RowWriter::new(out, Self::max_row_len(floats));
        row.indexed_prefix(self.index, self.t_rel, self.segment);
        for v in self.channels {
            row.byte(b',');
            row.f64_as(v, floats);
        }
    }

    fn time_us(&self) -> u64 {
        self.t_rel.0
    }

    const TYPED_COLUMNS: &'static [ColumnSpec] = &[
        col("index", T::UInt64),
        col("time", T::Timestamp),
        col("timestamp_rel", T::Seconds),
        col("segment_id", T::UInt32),
        col("is_active_line", T::Bool),
        col("ADC1_Ch1 Ex_real", T::Float64),
        col("ADC1_Ch2 Ex_imag", T::Float64),
        col("ADC1_Ch3 Ey_real", T::Float64),
        col("ADC1_Ch4 Ey_imag", T::Float64),
        col("ADC2_Ch1 Ez_real", T::Float64),
        col("ADC2_Ch2 Ez_imag", T::Float64),
        col("ADC2_Ch3", T::Float64),
        col("ADC2_Ch4", T::Float64),
    ];

    fn put_columns(&self, row: &mut RowSink<'_>) {
        indexed_columns(row, self.index, self.t_rel.0, self.segment);
        for v in self.channels {
            row.f64(v);
        }
    }

    fn parse_row(f: &[&str]) -> Result<Self, ParseRowError> {
        codec::expect_len(f, Self::COLUMNS.len())?;
        let (index, t_rel, segment) = codec::parse_indexed_prefix(f)?;
        let mut channels = [0.0; 8];
        for (i, c) in channels.iter_mut().enumerate() {
            *c = codec::parse_f64(f, 4 + i)?;
        }
        Ok(EfieldSample {
            index,
            t_rel,
            segment,
            channels,
        })
    }

    fn segment(&self) -> Option<Segment> {
        Some(self.segment)
    }

    fn set_segment(&mut self, segment: Segment) {
        self.segment = segment;
    }

    fn labview(&self) -> Option<LabviewValues> {
        let c = &self.channels;
        Some(LabviewValues {
            time: self.t_rel,
            ex_real: c[0],
            ex_imag: c[1],
            ey_real: c[2],
            ey_imag: c[3],
            ez_real: c[4],
            ez_imag: c[5],
            line: self.segment.line,
        })
    }
}

impl Packed for EfieldSample {
    const WORDS: usize = 11;

    fn pack(&self, w: &mut [u64]) {
        w[0] = self.index;
        w[1] = self.t_rel.0;
        w[2] = pack_segment(self.segment);
        for (dst, c) in w[3..11].iter_mut().zip(self.channels) {
            *dst = c.to_bits();
        }
    }

    fn unpack(w: &[u64]) -> Self {
        let mut channels = [0.0; 8];
        for (c, src) in channels.iter_mut().zip(&w[3..11]) {
            *c = f64::from_bits(*src);
        }
        EfieldSample {
            index: w[0],
            t_rel: RelMicros(w[1]),
            segment: unpack_segment(w[2]),
            channels,
        }
    }
}

/// One motion-stage position sample: `index,timestamp_rel,segment_id,is_active_line,x,y`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StagePosition {
    /// Sample index.
    pub index: u64,
    /// Time since the group's t0.
    pub t_rel: RelMicros,
    /// Segment marker.
    pub segment: Segment,
    /// X position (stage units).
    pub x: f64,
    /// Y position (stage units).
    pub y: f64,
}

impl Schema for StagePosition {
    const NAME: &'static str = "stage";
    const COLUMNS: &'static [&'static str] = &[
        "index",
        "timestamp_rel",
        "segment_id",
        "is_active_line",
        "x",
        "y",
    ];
    const MAX_ROW_LEN: usize = INDEXED_PREFIX_MAX_LEN + 2 * (1 + F64_MAX_LEN);
    const FLOAT_COLUMNS: usize = 2;

    fn write_row(&self, out: &mut Vec<u8>, floats: FloatText) {
        let mut row = RowWriter::new(out, Self::max_row_len(floats));
        row.indexed_prefix(self.index, self.t_rel, self.segment);
        row.byte(b',');
        row.f64_as(self.x, floats);
        row.byte(b',');
        row.f64_as(self.y, floats);
    }

    fn time_us(&self) -> u64 {
        self.t_rel.0
    }

    const TYPED_COLUMNS: &'static [ColumnSpec] = &[
        col("index", T::UInt64),
        col("time", T::Timestamp),
        col("timestamp_rel", T::Seconds),
        col("segment_id", T::UInt32),
        col("is_active_line", T::Bool),
        col("x", T::Float64),
        col("y", T::Float64),
    ];

    fn put_columns(&self, row: &mut RowSink<'_>) {
        indexed_columns(row, self.index, self.t_rel.0, self.segment);
        row.f64(self.x);
        row.f64(self.y);
    }

    fn parse_row(f: &[&str]) -> Result<Self, ParseRowError> {
        codec::expect_len(f, Self::COLUMNS.len())?;
        let (index, t_rel, segment) = codec::parse_indexed_prefix(f)?;
        Ok(StagePosition {
            index,
            t_rel,
            segment,
            x: codec::parse_f64(f, 4)?,
            y: codec::parse_f64(f, 5)?,
        })
    }

    fn segment(&self) -> Option<Segment> {
        Some(self.segment)
    }

    fn set_segment(&mut self, segment: Segment) {
        self.segment = segment;
    }
}

impl Packed for StagePosition {
    const WORDS: usize = 5;

    fn pack(&self, w: &mut [u64]) {
        w[0] = self.index;
        w[1] = self.t_rel.0;
        w[2] = pack_segment(self.segment);
        w[3] = self.x.to_bits();
        w[4] = self.y.to_bits();
    }

    fn unpack(w: &[u64]) -> Self {
        StagePosition {
            index: w[0],
            t_rel: RelMicros(w[1]),
            segment: unpack_segment(w[2]),
            x: f64::from_bits(w[3]),
            y: f64::from_bits(w[4]),
        }
    }
}

/// The typed columns every indexed schema starts with.
fn indexed_columns(row: &mut RowSink<'_>, index: u64, rel_us: u64, segment: Segment) {
    row.u64(index);
    row.time(rel_us);
    row.seconds(rel_us);
    row.u32(segment.id.0);
    row.bool(segment.line == LineState::Active);
}

/// Schema names known to this crate, for files whose schema is read from a sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaKind {
    /// [`ImuRow`].
    Imu,
    /// [`EfieldSample`].
    Efield,
    /// [`StagePosition`].
    Stage,
}

impl SchemaKind {
    /// Looks up a schema by its `NAME`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            n if n == ImuRow::NAME => Some(SchemaKind::Imu),
            n if n == EfieldSample::NAME => Some(SchemaKind::Efield),
            n if n == StagePosition::NAME => Some(SchemaKind::Stage),
            _ => None,
        }
    }
}
