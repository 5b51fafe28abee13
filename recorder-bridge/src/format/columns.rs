//! Typed columns of the columnar formats (Parquet, and the messages of MCAP): what each
//! schema's columns are and the buffers a batch of samples is split into. Pure: no I/O,
//! no clock.

/// Options of the Parquet layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetOptions {
    /// zstd level of the pages (default 3: most of level 19's size at a fraction of its
    /// time on sensor data).
    pub zstd_level: i32,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions { zstd_level: 3 }
    }
}

/// Options of the MCAP layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McapOptions {
    /// zstd level of the chunks (default 3, as for Parquet pages).
    pub zstd_level: u32,
}

impl Default for McapOptions {
    fn default() -> Self {
        McapOptions { zstd_level: 3 }
    }
}

/// Rows that split into typed columns: every [`crate::Schema`], and the LabVIEW
/// projection of the E-field samples (what a LabVIEW file holds), so the columnar
/// writers take either.
pub trait Columnar: Copy + Send + 'static {
    /// Name of the row type (`efield`, `stage`, `xiao-imu`, `efield-labview`).
    const NAME: &'static str;
    /// The typed columns, in order (one of type `Timestamp` at most).
    const TYPED_COLUMNS: &'static [ColumnSpec];
    /// Whether [`Columnar::time_us`] is a device clock whose zero is not the group's t0
    /// (the first row is then put at t0).
    const DEVICE_CLOCK: bool;
    /// The row's time in µs (since t0, or on the device clock).
    fn time_us(&self) -> u64;
    /// Pushes the row's values, one per [`Columnar::TYPED_COLUMNS`] entry.
    fn put_columns(&self, row: &mut RowSink<'_>);
}

/// The type of one typed column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnType {
    /// Unsigned 32-bit integer.
    UInt32,
    /// Unsigned 64-bit integer.
    UInt64,
    /// The device's 32-bit float, as it was sampled.
    Float32,
    /// 64-bit float.
    Float64,
    /// Flag.
    Bool,
    /// Wall-clock time, µs since the Unix epoch, UTC.
    Timestamp,
    /// Seconds since the recording group's t0 (64-bit float).
    Seconds,
}

/// One typed column: its name and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Column name.
    pub name: &'static str,
    /// Column type.
    pub ty: ColumnType,
}

/// Shorthand for the schemas' column tables.
pub(crate) const fn col(name: &'static str, ty: ColumnType) -> ColumnSpec {
    ColumnSpec { name, ty }
}

/// The values of one column for a run of samples, in the representation the file
/// stores (unsigned integers as the same bits in signed storage, flags as bools).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ColumnData {
    /// `UInt32` (bits of the `u32`).
    Int32(Vec<i32>),
    /// `UInt64` (bits of the `u64`) and `Timestamp`.
    Int64(Vec<i64>),
    /// `Float32`.
    Float(Vec<f32>),
    /// `Float64` and `Seconds`.
    Double(Vec<f64>),
    /// `Bool`.
    Bool(Vec<bool>),
}

impl ColumnData {
    /// An empty buffer for a column of type `ty`.
    pub fn for_type(ty: ColumnType) -> Self {
        match ty {
            ColumnType::UInt32 => ColumnData::Int32(Vec::new()),
            ColumnType::UInt64 | ColumnType::Timestamp => ColumnData::Int64(Vec::new()),
            ColumnType::Float32 => ColumnData::Float(Vec::new()),
            ColumnType::Float64 | ColumnType::Seconds => ColumnData::Double(Vec::new()),
            ColumnType::Bool => ColumnData::Bool(Vec::new()),
        }
    }

    /// Values held.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Int32(v) => v.len(),
            ColumnData::Int64(v) => v.len(),
            ColumnData::Float(v) => v.len(),
            ColumnData::Double(v) => v.len(),
            ColumnData::Bool(v) => v.len(),
        }
    }

    /// True when no value is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the values, keeping the allocation.
    pub fn clear(&mut self) {
        match self {
            ColumnData::Int32(v) => v.clear(),
            ColumnData::Int64(v) => v.clear(),
            ColumnData::Float(v) => v.clear(),
            ColumnData::Double(v) => v.clear(),
            ColumnData::Bool(v) => v.clear(),
        }
    }
}

/// Column buffers for one schema's typed columns, filled sample by sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnBatch {
    /// One buffer per column, in the schema's column order.
    pub columns: Vec<ColumnData>,
    /// Added to a sample's time (µs) to get its `Timestamp`.
    time_base_us: i64,
}

impl ColumnBatch {
    /// Empty buffers for `specs`; `time_base_us` turns sample times into UTC µs.
    pub fn new(specs: &[ColumnSpec], time_base_us: i64) -> Self {
        ColumnBatch {
            columns: specs.iter().map(|s| ColumnData::for_type(s.ty)).collect(),
            time_base_us,
        }
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, ColumnData::len)
    }

    /// Forgets the rows, keeping the allocations.
    pub fn clear(&mut self) {
        self.columns.iter_mut().for_each(ColumnData::clear);
    }

    /// A sink for one row: the schema pushes its values in column order.
    pub fn row(&mut self) -> RowSink<'_> {
        RowSink {
            columns: &mut self.columns,
            at: 0,
            time_base_us: self.time_base_us,
        }
    }
}

/// Takes one row's values, column after column (see [`ColumnBatch::row`]). A value of
/// the wrong type for its column is a bug in the schema's table: it is skipped, and the
/// columns' unequal lengths are caught before anything is written.
#[derive(Debug)]
pub struct RowSink<'a> {
    columns: &'a mut [ColumnData],
    at: usize,
    time_base_us: i64,
}

impl RowSink<'_> {
    fn next(&mut self) -> Option<&mut ColumnData> {
        let c = self.columns.get_mut(self.at);
        self.at += 1;
        c
    }

    /// A `UInt32` value.
    pub fn u32(&mut self, v: u32) {
        if let Some(ColumnData::Int32(c)) = self.next() {
            c.push(v as i32);
        }
    }

    /// A `UInt64` value.
    pub fn u64(&mut self, v: u64) {
        if let Some(ColumnData::Int64(c)) = self.next() {
            c.push(v as i64);
        }
    }

    /// A `Float32` value.
    pub fn f32(&mut self, v: f32) {
        if let Some(ColumnData::Float(c)) = self.next() {
            c.push(v);
        }
    }

    /// A `Float64` value.
    pub fn f64(&mut self, v: f64) {
        if let Some(ColumnData::Double(c)) = self.next() {
            c.push(v);
        }
    }

    /// A `Bool` value.
    pub fn bool(&mut self, v: bool) {
        if let Some(ColumnData::Bool(c)) = self.next() {
            c.push(v);
        }
    }

    /// A `Timestamp` from the sample's time in µs (see [`crate::Schema::time_us`]).
    pub fn time(&mut self, time_us: u64) {
        let base = self.time_base_us;
        if let Some(ColumnData::Int64(c)) = self.next() {
            c.push(base.saturating_add(i64::try_from(time_us).unwrap_or(i64::MAX)));
        }
    }

    /// `Seconds` from µs since t0.
    pub fn seconds(&mut self, rel_us: u64) {
        if let Some(ColumnData::Double(c)) = self.next() {
            c.push(rel_us as f64 / 1e6);
        }
    }
}
