//! Rows as JSON objects, the message encoding of the MCAP layout, and the JSON Schema
//! that describes them (what Foxglove reads to offer a row's fields for plotting).
//! Pure: no I/O, no clock.
//!
//! One object per row, one member per typed column except the `Timestamp` one (that is
//! the message's log time). Keys are the column names with spaces turned into
//! underscores (`ADC1_Ch1 Ex_real` → `ADC1_Ch1_Ex_real`): Foxglove's message paths
//! take no spaces. Numbers are the shortest text that reads back to the same value (an
//! `f32` column's own digits, not a widened `f64`'s), the same text as the CSV cells;
//! JSON has no NaN or infinities, so those are the strings `"NaN"`, `"inf"`, `"-inf"`.

use crate::format::columns::{ColumnBatch, ColumnData, ColumnSpec, ColumnType};
use crate::format::number::{put_f32, put_f64, put_u64};

/// The JSON key of a typed column.
pub fn json_key(column: &str) -> String {
    column.replace(' ', "_")
}

/// The JSON Schema (draft 2020-12) of the rows of `specs`, titled `title`.
pub fn json_schema(title: &str, specs: &[ColumnSpec]) -> String {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for c in specs {
        let ty = match c.ty {
            ColumnType::Timestamp => continue,
            ColumnType::UInt32 | ColumnType::UInt64 => {
                serde_json::json!({ "type": "integer", "minimum": 0 })
            }
            ColumnType::Bool => serde_json::json!({ "type": "boolean" }),
            ColumnType::Seconds => serde_json::json!({
                "type": "number",
                "description": "seconds since the recording's start"
            }),
            ColumnType::Float32 | ColumnType::Float64 => serde_json::json!({
                "type": ["number", "string"],
                "description": "a number; NaN, inf and -inf as strings"
            }),
        };
        properties.insert(json_key(c.name), ty);
        required.push(serde_json::Value::String(json_key(c.name)));
    }
    serde_json::json!({
        "title": title,
        "type": "object",
        "properties": properties,
        "required": required,
    })
    .to_string()
}

/// Writes rows of a [`ColumnBatch`] as JSON objects.
#[derive(Debug, Clone)]
pub struct JsonRows {
    /// Per column: the text before its value (`{"key":` or `,"key":`), or `None` for
    /// the timestamp column.
    prefixes: Vec<Option<Vec<u8>>>,
}

impl JsonRows {
    /// A writer for rows of `specs`.
    pub fn new(specs: &[ColumnSpec]) -> Self {
        let mut first = true;
        let prefixes = specs
            .iter()
            .map(|c| {
                if c.ty == ColumnType::Timestamp {
                    return None;
                }
                let mut p = Vec::new();
                p.push(if first { b'{' } else { b',' });
                first = false;
                // Keys are column names: letters, digits, '_' only after `json_key`.
                p.extend_from_slice(
                    serde_json::Value::String(json_key(c.name))
                        .to_string()
                        .as_bytes(),
                );
                p.push(b':');
                Some(p)
            })
            .collect();
        JsonRows { prefixes }
    }

    /// Appends row `i` of `batch` as one JSON object; returns the row's `Timestamp`
    /// value (µs since the Unix epoch; 0 for rows without one).
    pub fn write_row(&self, batch: &ColumnBatch, i: usize, out: &mut Vec<u8>) -> i64 {
        let mut time = 0;
        let mut any = false;
        for (prefix, data) in self.prefixes.iter().zip(&batch.columns) {
            let Some(prefix) = prefix else {
                if let ColumnData::Int64(v) = data {
                    time = v.get(i).copied().unwrap_or(0);
                }
                continue;
            };
            any = true;
            out.extend_from_slice(prefix);
            match data {
                ColumnData::Int32(v) => put_u64(out, u64::from(v[i] as u32)),
                ColumnData::Int64(v) => put_u64(out, v[i] as u64),
                ColumnData::Float(v) if v[i].is_finite() => put_f32(out, v[i]),
                ColumnData::Float(v) => nonfinite(f64::from(v[i]), out),
                ColumnData::Double(v) if v[i].is_finite() => put_f64(out, v[i]),
                ColumnData::Double(v) => nonfinite(v[i], out),
                ColumnData::Bool(v) => out.extend_from_slice(if v[i] { b"true" } else { b"false" }),
            }
        }
        out.extend_from_slice(if any { b"}" } else { b"{}" });
        time
    }
}

fn nonfinite(v: f64, out: &mut Vec<u8>) {
    out.extend_from_slice(match (v.is_nan(), v.is_sign_negative()) {
        (true, _) => b"\"NaN\"",
        (false, false) => b"\"inf\"",
        (false, true) => b"\"-inf\"",
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::schema::{EfieldSample, ImuRow, Schema};

    #[test]
    fn rows_are_json_with_the_csv_numbers() {
        let mut b = ColumnBatch::new(ImuRow::TYPED_COLUMNS, 1_000_000);
        let row = ImuRow {
            millis: 7,
            ax: 0.1,
            ay: f32::NAN,
            az: f32::NEG_INFINITY,
            gx: -0.0,
            gy: 1e-40,
            ..ImuRow::default()
        };
        row.put_columns(&mut b.row());
        let mut out = Vec::new();
        let t = JsonRows::new(ImuRow::TYPED_COLUMNS).write_row(&b, 0, &mut out);
        assert_eq!(t, 1_007_000);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            r#"{"millis":7,"ax":0.1,"ay":"NaN","az":"-inf","gx":-0.0,"gy":1e-40,"gz":0.0,"tempC":0.0,"audioRMS":0.0}"#
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["millis"], 7);
        let schema: serde_json::Value =
            serde_json::from_str(&json_schema("kwik.xiao-imu", ImuRow::TYPED_COLUMNS)).unwrap();
        assert_eq!(schema["required"].as_array().unwrap().len(), 9);
        assert!(schema["properties"]["time"].is_null());
    }

    #[test]
    fn keys_have_no_spaces() {
        let schema: serde_json::Value =
            serde_json::from_str(&json_schema("kwik.efield", EfieldSample::TYPED_COLUMNS)).unwrap();
        assert!(schema["properties"]["ADC1_Ch1_Ex_real"].is_object());
        assert_eq!(schema["properties"]["is_active_line"]["type"], "boolean");
    }
}
