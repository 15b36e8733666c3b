"""From Kafka records to lake rows: parse, validate, quarantine (Arrow, no Spark).

Every representation here is derived from ``musify.events``: the JSON types messages
are parsed with, the lake columns, and the rules that send a message to the
quarantine. It works on Arrow arrays, so the stream job runs it in Spark's Python
workers (``mapInArrow``) on the columns of Spark's native ``kafka`` format, whichever
source produced them.

A message is quarantined, with its raw bytes, the reason and its Kafka coordinates,
when it is not UTF-8, not a JSON object, has a field of the wrong type (integers out of
their range included), lacks a required field (or has it null), or has a timestamp
outside the years 1-9999. Nothing is dropped: every input row becomes exactly one
lake row or one quarantine row. Unknown extra fields are ignored.

Two parsers give the same answer: a block of messages is first parsed at once by
Arrow's JSON reader, which rejects the whole block on the first bad message; a
rejected block is split in halves down to small pieces, and those are checked one
message at a time with orjson. The per-message rules are the reference; the block
parser is only trusted where it is at least as strict (strings must be strings,
integers must fit, no NaN, valid UTF-8), which ``tests/stream/test_parse.py`` checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from musify.events import FieldType, Topic

#: Columns every lake row carries besides the event's own fields.
KAFKA_COLUMNS = ("kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_at")
PARTITION_COLUMNS = ("date", "hour")
UTC_MICROS = pa.timestamp("us", tz="UTC")

_JSON_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.STRING: pa.string(),
    FieldType.INT: pa.int32(),
    FieldType.LONG: pa.int64(),
    FieldType.DOUBLE: pa.float64(),
    FieldType.BOOLEAN: pa.bool_(),
    FieldType.TIMESTAMP_MS: pa.int64(),  # epoch milliseconds in the JSON
}
_LAKE_TYPES: dict[FieldType, pa.DataType] = {
    **_JSON_TYPES,
    FieldType.TIMESTAMP_MS: UTC_MICROS,  # a real timestamp in the lake
}
#: Epoch milliseconds of 0001-01-01 and 10000-01-01: the timestamps a lake holds.
TS_RANGE_MS = (-62_135_596_800_000, 253_402_300_800_000)
_INT_RANGE = {
    FieldType.INT: (-(2**31), 2**31),
    FieldType.LONG: (-(2**63), 2**63),
    FieldType.TIMESTAMP_MS: TS_RANGE_MS,
}
_MS_PER_HOUR = 3_600_000
#: A rejected block is split down to pieces of this many messages, checked one by one.
_SMALL = 32
_LBRACE, _RBRACE, _NEWLINE = ord("{"), ord("}"), ord("\n")


def json_schema(topic: Topic) -> pa.Schema:
    """The types a topic's messages are parsed with (timestamps as epoch ms)."""
    return pa.schema([pa.field(f.name, _JSON_TYPES[f.type]) for f in topic.fields])


def lake_schema(topic: Topic) -> pa.Schema:
    """The columns of a topic's Parquet files (partition columns come from the path)."""
    return pa.schema(
        [
            *(pa.field(f.name, _LAKE_TYPES[f.type]) for f in topic.fields),
            pa.field("kafka_partition", pa.int32()),
            pa.field("kafka_offset", pa.int64()),
            pa.field("kafka_timestamp", UTC_MICROS),
            pa.field("ingested_at", UTC_MICROS, nullable=False),
        ]
    )


QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("kafka_partition", pa.int32()),
        pa.field("kafka_offset", pa.int64()),
        pa.field("kafka_timestamp", UTC_MICROS),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("reason", pa.string()),
        pa.field("ingested_at", UTC_MICROS, nullable=False),
    ]
)


@dataclass(frozen=True)
class Parsed:
    """The messages of one topic, parsed: one row per message, in input order."""

    #: The event's fields with JSON types (``json_schema``); null on quarantined rows.
    fields: pa.Table
    #: Why each quarantined row is (row index → reason); the others are good.
    reasons: dict[int, str]

    def good_mask(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        mask = np.ones(self.fields.num_rows, dtype=bool)
        if self.reasons:
            mask[np.fromiter(self.reasons, dtype=np.int64, count=len(self.reasons))] = False
        return mask


# -- one message at a time (the reference) -------------------------------------------


def _wrong_type(kind: FieldType, value: Any) -> bool:
    t = type(value)
    if kind is FieldType.STRING:
        return t is not str
    if kind is FieldType.BOOLEAN:
        return t is not bool
    if kind is FieldType.DOUBLE:
        return t is not float and t is not int
    low, high = _INT_RANGE[kind]
    return t is not int or not low <= value < high


def check_message(topic: Topic, value: bytes | None) -> tuple[list[Any] | None, str | None]:
    """One message: its field values in ``topic.fields`` order, or why it is
    quarantined. Wrong types are reported before missing fields, each time the first
    field in the topic's order."""
    if value is None:
        return None, "not a JSON object"
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8"
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, "not a JSON object"
    if type(event) is not dict:
        return None, "not a JSON object"
    out: list[Any] = []
    missing: str | None = None
    for f in topic.fields:
        x = event.get(f.name)
        if x is None:
            if f.required and missing is None:
                missing = f.name
        elif _wrong_type(f.type, x):
            return None, f"wrong type for field {f.name} ({f.type.value})"
        elif f.type is FieldType.DOUBLE:
            x = float(x)
        out.append(x)
    if missing is not None:
        return None, f"missing required field {missing}"
    return out, None


def _one_by_one(topic: Topic, values: Sequence[bytes | None]) -> tuple[pa.Table, dict[int, str]]:
    columns: list[list[Any]] = [[] for _ in topic.fields]
    reasons: dict[int, str] = {}
    for i, value in enumerate(values):
        row, reason = check_message(topic, value)
        if row is None:
            reasons[i] = reason or "not a JSON object"
            for col in columns:
                col.append(None)
        else:
            for col, x in zip(columns, row, strict=True):
                col.append(x)
    schema = json_schema(topic)
    arrays = [pa.array(col, f.type) for col, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema), reasons


# -- a block at once ------------------------------------------------------------------


def _ndjson(values: pa.BinaryArray) -> pa.Buffer | None:
    """The block as newline-delimited JSON if every message can be one line: it starts
    with ``{``, ends with ``}`` (a newline after it is fine) and has no other newline.
    Anything else goes to the one-by-one parser."""
    n = len(values)
    if values.null_count:
        return None
    _, offsets_buffer, data_buffer = values.buffers()
    if offsets_buffer is None or data_buffer is None:
        return None
    width = np.int64 if pa.types.is_large_binary(values.type) else np.int32
    offsets = np.frombuffer(
        offsets_buffer, dtype=width, count=n + 1, offset=values.offset * np.dtype(width).itemsize
    )
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    lengths = np.diff(offsets)
    if (lengths < 2).any():
        return None
    ends = offsets[1:] - 1
    if (data[offsets[:-1]] != _LBRACE).any():
        return None
    body = data[offsets[0] : offsets[-1]]
    newlines = int(np.count_nonzero(body == _NEWLINE))
    ended = data[ends] == _NEWLINE  # messages that end with a newline already
    if newlines != int(np.count_nonzero(ended)):
        return None  # a newline inside a message
    closed = np.where(ended, data[ends - 1], data[ends]) == _RBRACE
    if not closed.all():
        return None
    if ended.all():
        return pa.py_buffer(body)  # already one message per line: no copy
    lines = [v if v.endswith(b"\n") else v + b"\n" for v in values.to_pylist()]
    return pa.py_buffer(b"".join(lines))


def _at_once(topic: Topic, values: pa.BinaryArray) -> pa.Table | None:
    """Parse a block with Arrow's JSON reader; None when any message would not pass
    the one-by-one rules (or might not: the caller then looks closer)."""
    buffer = _ndjson(values)
    if buffer is None:
        return None
    try:
        values.cast(pa.string())  # validates UTF-8: the JSON reader does not
        table = pa_json.read_json(
            pa.BufferReader(buffer),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=buffer.size + 1),
            parse_options=pa_json.ParseOptions(
                explicit_schema=json_schema(topic), unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != len(values):  # e.g. two objects on one line
        return None
    table = table.select(json_schema(topic).names).combine_chunks()
    for f in topic.fields:
        if f.type is FieldType.DOUBLE:  # NaN and Infinity are not JSON: orjson refuses them
            column = table.column(f.name)
            doubles = np.asarray(column.fill_null(0.0))
            if not np.isfinite(doubles).all():
                return None
        elif f.type is FieldType.TIMESTAMP_MS:  # beyond the years 1-9999: a wrong type
            column = table.column(f.name)
            ms = np.asarray(column.fill_null(0))
            if ((ms < TS_RANGE_MS[0]) | (ms >= TS_RANGE_MS[1])).any():
                return None
    return table


def _parse_block(topic: Topic, values: pa.BinaryArray) -> tuple[pa.Table, dict[int, str]]:
    table = _at_once(topic, values) if len(values) > 1 else None
    if table is not None:
        return table, {}
    if len(values) <= _SMALL:
        return _one_by_one(topic, values.to_pylist())
    half = len(values) // 2
    left, bad_left = _parse_block(topic, values.slice(0, half))
    right, bad_right = _parse_block(topic, values.slice(half))
    reasons = {**bad_left, **{half + i: r for i, r in bad_right.items()}}
    return pa.concat_tables([left, right]).combine_chunks(), reasons


def parse_values(topic: Topic, values: pa.Array) -> Parsed:
    """Parse and validate one topic's messages (``value`` bytes, as binary)."""
    if not (pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)):
        values = values.cast(pa.binary())
    table, reasons = _parse_block(topic, values)
    # What the block parser leaves to us: required fields that are missing or null,
    # first field in order wins; rows already rejected keep their reason.
    for f in topic.fields:
        column = table.column(f.name)
        if f.required and column.null_count:
            why = f"missing required field {f.name}"
            for i in np.flatnonzero(np.asarray(column.is_null())).tolist():
                reasons.setdefault(i, why)
    return Parsed(table, reasons)


def hour_keys(ts_ms: pa.Array) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Hours since the epoch of event times in epoch milliseconds (the lake partition)."""
    return np.floor_divide(np.asarray(ts_ms, dtype=np.int64), _MS_PER_HOUR)


def lake_rows(
    topic: Topic,
    parsed: pa.Table,
    partition: pa.Array,
    offset: pa.Array,
    timestamp: pa.Array,
    ingested_us: int,
) -> pa.Table:
    """Good rows (already filtered) as the topic's lake columns."""
    arrays: list[pa.Array] = []
    for f in topic.fields:
        column = parsed.column(f.name).combine_chunks()
        if f.type is FieldType.TIMESTAMP_MS:
            column = pc.multiply(column, 1000).cast(UTC_MICROS)
        arrays.append(column)
    arrays += [
        partition.cast(pa.int32()),
        offset.cast(pa.int64()),
        timestamp.cast(UTC_MICROS),
        pa.array(np.full(parsed.num_rows, ingested_us, dtype=np.int64)).cast(UTC_MICROS),
    ]
    return pa.Table.from_arrays(arrays, schema=lake_schema(topic))
