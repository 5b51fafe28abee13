"""Reads a `--compat xiao` recording the way the XIAO recorder's notebooks did: the
comment header's lines by their labels, the rows with polars skipping `#` lines, the
sidecar by its field names. Checks they agree. Usage: xiao_notebook.py FILE.csv META.json"""
import json
import sys

import polars as pl

csv_path, meta_path = sys.argv[1], sys.argv[2]
header = {}
with open(csv_path) as f:
    first = f.readline().strip()
    assert first == "# XIAO nRF52840 Sense Recording Session", first
    for line in f:
        if not line.startswith("#"):
            break
        key, _, value = line[2:].partition(":")
        header[key.strip()] = value.strip()
    assert line.strip() == "millis,ax,ay,az,gx,gy,gz,tempC,audioRMS", line

df = pl.read_csv(csv_path, comment_prefix="#")
meta = json.load(open(meta_path))
n = int(header["Total Samples"])
rate = float(header["Sample Rate"].split()[0])
h, m, s = header["Recording Duration"].split(":")
duration = int(h) * 3600 + int(m) * 60 + float(s)
assert df.columns == ["millis", "ax", "ay", "az", "gx", "gy", "gz", "tempC", "audioRMS"], df.columns
assert df.height == n == meta["total_samples"], (df.height, n, meta["total_samples"])
assert df.schema["millis"] == pl.Int64, df.schema
span = (df["millis"].max() - df["millis"].min()) / 1000
assert abs(duration - span) <= 0.1, (duration, span)
if span > 0:
    assert abs(rate - n / span) <= 0.051, (rate, n, span)
for key in ["session_id", "start_time", "end_time", "duration_seconds", "total_samples",
            "average_sample_rate_hz", "file_path", "file_size_bytes", "device_info",
            "recording_settings"]:
    assert key in meta, key
assert set(meta["device_info"]) == {"name", "connection_type"}, meta["device_info"]
assert header["Device"] == meta["device_info"]["name"], (header["Device"], meta["device_info"])
print(f"ok {n} rows, {duration} s, {rate} Hz")
