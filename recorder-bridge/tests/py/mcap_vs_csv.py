"""Reads a KWIK MCAP file with the mcap reader (through its summary and indexes) and
compares every message with the CSV of the same samples; checks the summary, the chunk
and message indexes, the channel, the schema and the metadata.
Usage: mcap_vs_csv.py FILE.mcap FILE.csv SESSION_ID STREAM SCHEMA"""
import json
import math
import struct
import sys
from datetime import datetime

import polars as pl
from mcap.reader import make_reader

mcap_path, csv_path, session, stream, kind = sys.argv[1:6]

with open(mcap_path, "rb") as f:
    reader = make_reader(f)
    summary = reader.get_summary()
    assert summary is not None, "no summary section"
    assert summary.statistics is not None, "no statistics in the summary"
    assert summary.chunk_indexes, "no chunk index"
    for ci in summary.chunk_indexes:
        assert ci.compression == "zstd", ci.compression
    # The first chunk holds the schema and the channel only (synced before the first
    # sample); every other chunk holds messages and has their index.
    first, *rest = summary.chunk_indexes
    assert not first.message_index_offsets, first
    assert rest and all(ci.message_index_offsets for ci in rest), "a chunk without a message index"
    channels = list(summary.channels.values())
    assert len(channels) == 1, channels
    channel = channels[0]
    assert channel.topic == "/" + stream, channel.topic
    assert channel.message_encoding == "json", channel.message_encoding
    schema = summary.schemas[channel.schema_id]
    assert schema.name == "kwik." + kind, schema.name
    assert schema.encoding == "jsonschema", schema.encoding
    properties = json.loads(schema.data)["properties"]
    meta = {m.name: m.metadata for m in reader.iter_metadata()}
    assert meta["kwik"]["session_id"] == session, meta
    assert meta["kwik"]["stream"] == stream, meta
    assert "dropped" in meta["kwik.end"], meta
    messages = []
    for _, ch, msg in reader.iter_messages():
        assert ch.id == channel.id
        assert msg.log_time == msg.publish_time, (msg.log_time, msg.publish_time)
        messages.append((msg.log_time, json.loads(msg.data)))

assert summary.statistics.message_count == len(messages), (
    summary.statistics.message_count, len(messages))

# The CSV as text: each cell is compared as the number it stands for.
csv = pl.read_csv(csv_path, comment_prefix="#", infer_schema=False)
assert csv.height == len(messages), (csv.height, len(messages))
columns = {c.replace(" ", "_"): c for c in csv.columns}
assert set(properties) <= set(columns), (sorted(properties), sorted(columns))
f32 = kind == "xiao-imu"


def number(v):
    return float(v) if isinstance(v, str) else v


def same_float(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    fmt = "<f" if f32 else "<d"
    return struct.pack(fmt, a) == struct.pack(fmt, b)


rows = csv.rows()
index = {c: i for i, c in enumerate(csv.columns)}
for n, ((log_time, msg), row) in enumerate(zip(messages, rows)):
    assert set(msg) == set(properties), (n, sorted(msg))
    for key, spec in properties.items():
        cell = row[index[columns[key]]]
        v = msg[key]
        ty = spec["type"]
        if ty == "integer":
            assert v == int(cell), (n, key, v, cell)
        elif ty == "boolean":
            assert v == (cell == "1"), (n, key, v, cell)
        elif key == "timestamp_rel":
            assert v == float(cell), (n, key, v, cell)
        else:
            assert same_float(number(v), float(cell)), (n, key, v, cell)

times = [t for t, _ in messages]
if kind == "xiao-imu":
    millis = [m["millis"] for _, m in messages]
    assert all(t - times[0] == (ms - millis[0]) * 1_000_000 for t, ms in zip(times, millis)), \
        "log time disagrees with millis"
else:
    start = datetime.fromisoformat(meta["kwik"]["start_utc"])
    start_us = int(start.timestamp()) * 1_000_000 + start.microsecond
    for t, (_, m) in zip(times, messages):
        rel_us = round(m["timestamp_rel"] * 1e6)
        assert t == (start_us + rel_us) * 1000, (t, start_us, rel_us)
print(f"ok {len(messages)} messages, {len(properties)} fields, schema {kind}")
