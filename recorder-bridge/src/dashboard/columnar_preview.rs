//! Previews of the columnar layouts: a Parquet file's rows through the Parquet row
//! reader and an MCAP file's JSON messages, both read by column name into the channels
//! the CSV preview draws (the same names, units and time), so a recording previews
//! alike in every layout.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

use crate::dashboard::channels::Channels;
use crate::dashboard::library::{
    LABVIEW_CHANNELS, LABVIEW_UNITS, Preview, PreviewDraw, PreviewError, RecordingsRoot,
};
use crate::format::columns::{ColumnSpec, ColumnType, Columnar};
use crate::format::json_rows::json_key;
use crate::format::schema::{EfieldSample, ImuRow, LabviewValues, SchemaKind, StagePosition};
use crate::store::mcap::for_each_message;
use crate::store::sidecar::Sidecar;

/// The preview of a Parquet or MCAP recording (`meta.format`), whose data files are
/// `parts`.
pub(super) fn preview(
    root: &RecordingsRoot,
    path: String,
    meta: &Sidecar,
    parts: &[PathBuf],
    width: usize,
) -> Result<Preview, PreviewError> {
    fn of<S: Channels + Columnar>() -> (
        &'static [ColumnSpec],
        &'static [&'static str],
        &'static [&'static str],
    ) {
        (<S as Columnar>::TYPED_COLUMNS, S::NAMES, S::UNITS)
    }
    let (specs, channels, units) = match SchemaKind::from_name(&meta.schema) {
        Some(SchemaKind::Imu) => of::<ImuRow>(),
        Some(SchemaKind::Efield) => of::<EfieldSample>(),
        Some(SchemaKind::Stage) => of::<StagePosition>(),
        // A LabVIEW recording exported: its rows are the LabVIEW file's.
        None if meta.schema == LabviewValues::NAME => (
            LabviewValues::TYPED_COLUMNS,
            LABVIEW_CHANNELS,
            LABVIEW_UNITS,
        ),
        _ => return Err(PreviewError::Unsupported(format!("schema {}", meta.schema))),
    };
    let plan = Plan::new(specs, channels.len())
        .ok_or_else(|| PreviewError::Unsupported(format!("schema {}", meta.schema)))?;
    let mut draw = PreviewDraw::new(meta, channels.len(), width);
    for part in parts {
        let mut each = |t: f64, values: &[f64]| draw.push(t, values);
        let read = if meta.format == "mcap" {
            plan.read_mcap(part, &mut each)
        } else {
            plan.read_parquet(part, &mut each)
        };
        read.map_err(|reason| PreviewError::Data {
            path: root.relative(part),
            reason,
        })?;
    }
    Ok(draw.finish(path, meta, channels, units))
}

/// Which columns of a row type the preview draws, and where its time is.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plan {
    /// Column names of the drawn channels, in channel order.
    values: Vec<&'static str>,
    /// The time column.
    time: &'static str,
    /// What turns the time column into seconds.
    time_scale: f64,
}

/// What one column of a file is to the preview.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    Skip,
    Time,
    Value(usize),
}

impl Plan {
    /// The plan for rows of `specs` drawn as `channels` channels: the float columns in
    /// order, then the flag column when one channel is left (the LabVIEW scan state);
    /// the time is the `Seconds` column, or else the device's millisecond clock (the
    /// time the CSV preview draws). `None` when the columns do not fit the channels.
    pub(super) fn new(specs: &'static [ColumnSpec], channels: usize) -> Option<Plan> {
        let floats = specs
            .iter()
            .filter(|c| matches!(c.ty, ColumnType::Float32 | ColumnType::Float64));
        let mut values: Vec<&'static str> = floats.map(|c| c.name).collect();
        if values.len() + 1 == channels {
            values.push(specs.iter().find(|c| c.ty == ColumnType::Bool)?.name);
        }
        if values.len() != channels {
            return None;
        }
        let (time, time_scale) = match specs.iter().find(|c| c.ty == ColumnType::Seconds) {
            Some(c) => (c.name, 1.0),
            None => (
                specs
                    .iter()
                    .find(|c| c.ty == ColumnType::UInt32 && c.name == "millis")?
                    .name,
                1e-3,
            ),
        };
        Some(Plan {
            values,
            time,
            time_scale,
        })
    }

    /// Channels drawn.
    pub(super) fn channels(&self) -> usize {
        self.values.len()
    }

    /// What the Parquet column `column` is to this plan.
    fn slot(&self, column: &str) -> Slot {
        if column == self.time {
            return Slot::Time;
        }
        match self.values.iter().position(|v| *v == column) {
            Some(k) => Slot::Value(k),
            None => Slot::Skip,
        }
    }

    /// Calls `each(time_s, values)` for every row of the Parquet file at `path`.
    pub(super) fn read_parquet(
        &self,
        path: &Path,
        mut each: impl FnMut(f64, &[f64]),
    ) -> Result<(), String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let reader = SerializedFileReader::new(file).map_err(|e| {
            format!("not a readable Parquet file (a live one has no footer yet): {e}")
        })?;
        let slots: Vec<Slot> = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| self.slot(c.name()))
            .collect();
        self.check_found(&slots)?;
        let mut values = vec![f64::NAN; self.channels()];
        for row in reader.get_row_iter(None).map_err(|e| e.to_string())? {
            let row = row.map_err(|e| e.to_string())?;
            let mut t = f64::NAN;
            for (slot, (_, field)) in slots.iter().zip(row.get_column_iter()) {
                match slot {
                    Slot::Skip => {}
                    Slot::Time => t = field_f64(field) * self.time_scale,
                    Slot::Value(k) => values[*k] = field_f64(field),
                }
            }
            each(t, &values);
        }
        Ok(())
    }

    /// Calls `each(time_s, values)` for every message of the MCAP file at `path`, up to
    /// the first damaged record.
    pub(super) fn read_mcap(
        &self,
        path: &Path,
        mut each: impl FnMut(f64, &[f64]),
    ) -> Result<(), String> {
        let mut values = vec![f64::NAN; self.channels()];
        let mut bad = None;
        let time_key = json_key(self.time);
        let keys: Vec<String> = self.values.iter().map(|v| json_key(v)).collect();
        // A damaged record (the tail of a file being recorded) ends the preview there,
        // as a row cut short ends the CSV preview.
        for_each_message(path, |body| {
            let row: serde_json::Map<String, serde_json::Value> = match serde_json::from_slice(body)
            {
                Ok(r) => r,
                Err(e) => {
                    bad = Some(format!("a message is not a JSON object: {e}"));
                    return false;
                }
            };
            // A member missing is an error, as a missing Parquet column is.
            let missing = std::iter::once(&time_key)
                .chain(&keys)
                .find(|k| !row.contains_key(*k));
            if let Some(k) = missing {
                bad = Some(format!("a message has no {k:?} member"));
                return false;
            }
            for (v, key) in values.iter_mut().zip(&keys) {
                *v = json_f64(&row[key]);
            }
            each(json_f64(&row[&time_key]) * self.time_scale, &values);
            true
        })
        .map_err(|e| e.to_string())?;
        bad.map_or(Ok(()), Err)
    }

    fn check_found(&self, slots: &[Slot]) -> Result<(), String> {
        let found = |s: Slot| slots.contains(&s);
        if !found(Slot::Time) {
            return Err(format!("no {:?} column", self.time));
        }
        for (k, name) in self.values.iter().enumerate() {
            if !found(Slot::Value(k)) {
                return Err(format!("no {name:?} column"));
            }
        }
        Ok(())
    }
}

/// A Parquet value as a number (flags as 0/1; anything else NaN, drawn as a gap).
fn field_f64(f: &Field) -> f64 {
    match *f {
        Field::Bool(b) => f64::from(u8::from(b)),
        Field::Int(v) => f64::from(v),
        Field::UInt(v) => f64::from(v),
        Field::Long(v) => v as f64,
        Field::ULong(v) => v as f64,
        Field::Float(v) => f64::from(v),
        Field::Double(v) => v,
        _ => f64::NAN,
    }
}

/// A JSON member as a number: the MCAP rows write NaN and the infinities as strings.
fn json_f64(v: &serde_json::Value) -> f64 {
    match v {
        serde_json::Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        serde_json::Value::Bool(b) => f64::from(u8::from(*b)),
        serde_json::Value::String(s) => match s.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            _ => f64::NAN,
        },
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of<S: Channels + Columnar>() -> Plan {
        Plan::new(<S as Columnar>::TYPED_COLUMNS, S::NAMES.len()).unwrap()
    }

    #[test]
    fn every_row_type_has_a_plan_with_the_csv_preview_time() {
        let imu = plan_of::<ImuRow>();
        assert_eq!((imu.time, imu.time_scale), ("millis", 1e-3));
        assert_eq!(imu.values, ImuRow::NAMES);
        let e = plan_of::<EfieldSample>();
        assert_eq!((e.time, e.channels()), ("timestamp_rel", 8));
        assert_eq!(e.values[0], "ADC1_Ch1 Ex_real");
        assert_eq!(plan_of::<StagePosition>().channels(), 2);
        let lv = Plan::new(<LabviewValues as Columnar>::TYPED_COLUMNS, 7).unwrap();
        assert_eq!(lv.values.last(), Some(&"is_active_line"));
        assert_eq!(Plan::new(<ImuRow as Columnar>::TYPED_COLUMNS, 3), None);
    }

    #[test]
    fn json_members_read_as_the_rows_wrote_them() {
        let v: serde_json::Value = serde_json::json!([1.5, "NaN", "-inf", true, null]);
        let got: Vec<f64> = v.as_array().unwrap().iter().map(json_f64).collect();
        assert_eq!(got[0], 1.5);
        assert!(got[1].is_nan());
        assert_eq!((got[2], got[3]), (f64::NEG_INFINITY, 1.0));
        assert!(got[4].is_nan());
    }
}
