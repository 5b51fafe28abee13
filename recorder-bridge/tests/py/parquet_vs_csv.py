"""Reads a KWIK Parquet file with pyarrow and with polars and compares every value with
the CSV of the same samples; checks the column types and the key-value metadata.
Usage: parquet_vs_csv.py FILE.parquet FILE.csv SESSION_ID"""
import sys
from datetime import datetime

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

pq_path, csv_path, session = sys.argv[1], sys.argv[2], sys.argv[3]

SCHEMAS = {
    "xiao-imu": {"millis": pa.uint32(), **{c: pa.float32() for c in
                 ["ax", "ay", "az", "gx", "gy", "gz", "tempC", "audioRMS"]}},
    "efield": {"index": pa.uint64(), "timestamp_rel": pa.float64(), "segment_id": pa.uint32(),
               "is_active_line": pa.bool_(),
               **{c: pa.float64() for c in ["ADC1_Ch1 Ex_real", "ADC1_Ch2 Ex_imag",
                  "ADC1_Ch3 Ey_real", "ADC1_Ch4 Ey_imag", "ADC2_Ch1 Ez_real",
                  "ADC2_Ch2 Ez_imag", "ADC2_Ch3", "ADC2_Ch4"]}},
    "stage": {"index": pa.uint64(), "timestamp_rel": pa.float64(), "segment_id": pa.uint32(),
              "is_active_line": pa.bool_(), "x": pa.float64(), "y": pa.float64()},
    # A LabVIEW recording exported: the columns the layout holds, compared with the
    # same columns of the standard CSV of the same samples.
    "efield-labview": {"timestamp_rel": pa.float64(), "is_active_line": pa.bool_(),
                       **{c: pa.float64() for c in ["ADC1_Ch1 Ex_real", "ADC1_Ch2 Ex_imag",
                          "ADC1_Ch3 Ey_real", "ADC1_Ch4 Ey_imag", "ADC2_Ch1 Ez_real",
                          "ADC2_Ch2 Ez_imag"]}},
}
POLARS = {pa.uint32(): pl.UInt32, pa.uint64(): pl.UInt64, pa.float32(): pl.Float32,
          pa.float64(): pl.Float64, pa.bool_(): pl.Boolean}

table = pq.read_table(pq_path)
meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
assert meta["kwik.session_id"] == session, meta
schema = meta["kwik.schema"]
want = SCHEMAS[schema]
assert table.schema.field("time").type == pa.timestamp("us", tz="UTC"), table.schema
for name, ty in want.items():
    assert table.schema.field(name).type == ty, (name, table.schema.field(name).type, ty)
assert set(table.column_names) == set(want) | {"time"}, table.column_names

overrides = {n: POLARS[t] for n, t in want.items() if t != pa.bool_()}
if "is_active_line" in want:
    overrides["is_active_line"] = pl.Int8
csv = pl.read_csv(csv_path, comment_prefix="#", schema_overrides=overrides)
if schema == "efield-labview":
    csv = csv.select(list(want))
if "is_active_line" in csv.columns:
    csv = csv.with_columns(pl.col("is_active_line") == 1)
assert csv.columns == [c for c in want], (csv.columns, list(want))
assert table.num_rows == csv.height, (table.num_rows, csv.height)

from_arrow = pl.from_arrow(table)
from_polars = pl.read_parquet(pq_path)
assert from_polars.schema == from_arrow.schema, (from_polars.schema, from_arrow.schema)
assert from_polars.equals(from_arrow), "polars and pyarrow read different values"
for name, ty in want.items():
    assert from_polars.schema[name] == POLARS[ty], (name, from_polars.schema[name])
    a = from_polars[name]
    b = csv[name]
    # Same bits (NaN equal to NaN), value by value.
    same = (a == b) | (a.is_nan() & b.is_nan()) if ty in (pa.float32(), pa.float64()) else (a == b)
    bad = (~same).arg_true()
    assert bad.len() == 0, (name, bad[:5].to_list(), a.gather(bad[:5]).to_list(), b.gather(bad[:5]).to_list())
assert from_polars.schema["time"] == pl.Datetime("us", "UTC"), from_polars.schema["time"]
time_us = from_polars["time"].cast(pl.Int64)
if schema == "xiao-imu":
    rel = (from_polars["millis"].cast(pl.Int64) - from_polars["millis"].cast(pl.Int64)[0]) * 1000
    rel0 = time_us - time_us[0]
else:
    start = datetime.fromisoformat(meta["kwik.start_utc"])
    start_us = int(start.timestamp()) * 1_000_000 + start.microsecond
    rel = (from_polars["timestamp_rel"] * 1e6).round().cast(pl.Int64)
    rel0 = time_us - start_us
assert (rel == rel0).all(), "time column disagrees with the relative time"
print(f"ok {table.num_rows} rows, {len(want) + 1} columns, schema {schema}")
