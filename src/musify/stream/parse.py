"""From Kafka records to lake rows: parse, validate, quarantine (Arrow, no Spark).

Every representation here is derived from ``musify.events``: the JSON types messages
are parsed with, the lake columns, and the rules that send a message to the
quarantine. It works on Arrow arrays, so the stream job runs it in Spark's Python
workers (``mapInArrow``) on the columns of Spark's native ``kafka`` format, whichever
source produced them.

A message is quarantined, with its raw bytes, the reason and its Kafka coordinates,
when it is not UTF-8, not a JSON object, has a field of the wrong type (integers out of
their range included), lacks a required field (or has it null), or has a timestamp
outside the years 1-9999, or (when the caller gives the stream's clock) an event time
too far in the future of that clock. Nothing is dropped: every input row becomes exactly
one lake row or one quarantine row. Fields the schema does not know are kept: the lake's
``extra`` column holds them as one JSON object per event (null when there are none),
and ``Parsed.unknown_fields`` counts them per field name for the stream's report.

Two parsers give the same answer: a block of messages is first parsed at once by
Arrow's JSON reader, which rejects the whole block on the first bad message; a
rejected block is split in halves down to small pieces, and those are checked one
message at a time with orjson. The per-message rules are the reference; the block
parser is only trusted where it is at least as strict (strings must be strings,
integers must fit, no NaN, valid UTF-8), which ``tests/stream/test_parse.py`` checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from musify.events import TS_RANGE_MS, FieldType, Topic, wrong_type
from musify.lake.schema import UTC_MICROS, lake_schema

_JSON_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.STRING: pa.string(),
    FieldType.INT: pa.int32(),
    FieldType.LONG: pa.int64(),
    FieldType.DOUBLE: pa.float64(),
    FieldType.BOOLEAN: pa.bool_(),
    FieldType.TIMESTAMP_MS: pa.int64(),  # epoch milliseconds in the JSON
}
_MS_PER_HOUR = 3_600_000
#: A rejected block is split down to pieces of this many messages, checked one by one.
_SMALL = 32
_LBRACE, _RBRACE, _NEWLINE = ord("{"), ord("}"), ord("\n")


def json_schema(topic: Topic) -> pa.Schema:
    """The types a topic's messages are parsed with (timestamps as epoch ms)."""
    return pa.schema([pa.field(f.name, _JSON_TYPES[f.type]) for f in topic.fields])


@dataclass(frozen=True)
class Parsed:
    """The messages of one topic, parsed: one row per message, in input order."""

    #: The event's fields with JSON types (``json_schema``); null on quarantined rows.
    fields: pa.Table
    #: Why each quarantined row is (row index → reason); the others are good.
    reasons: dict[int, str]
    #: The unknown fields of good rows, as JSON objects (row index → text).
    extras: dict[int, str] = field(default_factory=dict)

    @property
    def unknown_fields(self) -> dict[str, int]:
        """How many good rows carry each unknown field."""
        counts: dict[str, int] = {}
        for i, text in self.extras.items():
            if i in self.reasons:
                continue
            for name in orjson.loads(text):
                counts[name] = counts.get(name, 0) + 1
        return counts

    def extra_column(self) -> pa.Array:
        """The ``extra`` lake column of every row (null where nothing was unknown)."""
        texts: list[str | None] = [None] * self.fields.num_rows
        for i, text in self.extras.items():
            texts[i] = text
        return pa.array(texts, pa.string())

    def good_mask(self) -> np.ndarray[Any, np.dtype[np.bool_]]:
        mask = np.ones(self.fields.num_rows, dtype=bool)
        if self.reasons:
            mask[np.fromiter(self.reasons, dtype=np.int64, count=len(self.reasons))] = False
        return mask


# -- one message at a time (the reference) -------------------------------------------


def _extras(topic: Topic, event: dict[str, Any]) -> str | None:
    """The fields of ``event`` the topic does not know, as a JSON object (or None)."""
    names = topic.field_names
    unknown = {k: v for k, v in event.items() if k not in names}
    return orjson.dumps(unknown).decode() if unknown else None


def check_message(topic: Topic, value: bytes | None) -> tuple[list[Any] | None, str | None]:
    """One message: its field values in ``topic.fields`` order, or why it is
    quarantined. Wrong types are reported before missing fields, each time the first
    field in the topic's order."""
    row, reason, _ = _check(topic, value)
    return row, reason


def _check(topic: Topic, value: bytes | None) -> tuple[list[Any] | None, str | None, str | None]:
    """``check_message``, plus the message's unknown fields (``_extras``)."""
    if value is None:
        return None, "not a JSON object", None
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8", None
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, "not a JSON object", None
    if type(event) is not dict:
        return None, "not a JSON object", None
    out: list[Any] = []
    missing: str | None = None
    for f in topic.fields:
        x = event.get(f.name)
        if x is None:
            if f.required and missing is None:
                missing = f.name
        elif wrong_type(f.type, x):
            return None, f"wrong type for field {f.name} ({f.type.value})", None
        elif f.type is FieldType.DOUBLE:
            x = float(x)
        out.append(x)
    if missing is not None:
        return None, f"missing required field {missing}", None
    return out, None, _extras(topic, event)


#: What a parser returns for a block: the fields (``json_schema``), the reasons of the
#: quarantined rows and the unknown fields of the good ones (both by row index).
_Block = tuple[pa.Table, dict[int, str], dict[int, str]]


def _one_by_one(topic: Topic, values: Sequence[bytes | None]) -> _Block:
    columns: list[list[Any]] = [[] for _ in topic.fields]
    reasons: dict[int, str] = {}
    extras: dict[int, str] = {}
    for i, value in enumerate(values):
        row, reason, extra = _check(topic, value)
        if row is None:
            reasons[i] = reason or "not a JSON object"
            for col in columns:
                col.append(None)
        else:
            for col, x in zip(columns, row, strict=True):
                col.append(x)
            if extra is not None:
                extras[i] = extra
    schema = json_schema(topic)
    arrays = [pa.array(col, f.type) for col, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema), reasons, extras


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


def _unknown_in_block(
    topic: Topic, values: pa.BinaryArray, table: pa.Table, names: list[str]
) -> dict[int, str]:
    """The unknown fields of a block the JSON reader parsed (it added a column per
    unknown field). Only the rows that have one are decoded again, with orjson, so
    each keeps its unknown fields exactly as sent."""
    unknown = [table.column(n) for n in table.column_names if n not in names]
    if not unknown:
        return {}
    if any(c.null_count == len(c) for c in unknown):
        # a field that is only ever null: which rows carry it is not in the columns
        rows = np.arange(len(values))
    else:
        valid = np.zeros(len(values), dtype=bool)
        for c in unknown:
            valid |= np.asarray(c.is_valid())
        rows = np.flatnonzero(valid)
    extras: dict[int, str] = {}
    for i in rows.tolist():
        text = _extras(topic, orjson.loads(values[i].as_py()))
        if text is not None:
            extras[i] = text
    return extras


def _at_once(topic: Topic, values: pa.BinaryArray) -> tuple[pa.Table, dict[int, str]] | None:
    """Parse a block with Arrow's JSON reader; None when any message would not pass
    the one-by-one rules (or might not: the caller then looks closer). Returns the
    fields and the unknown fields of each row that has some."""
    buffer = _ndjson(values)
    if buffer is None:
        return None
    names = json_schema(topic).names
    try:
        values.cast(pa.string())  # validates UTF-8: the JSON reader does not
        table = pa_json.read_json(
            pa.BufferReader(buffer),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=buffer.size + 1),
            parse_options=pa_json.ParseOptions(
                explicit_schema=json_schema(topic), unexpected_field_behavior="infer"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None  # unknown fields of mixed types included: looked at one by one
    if table.num_rows != len(values):  # e.g. two objects on one line
        return None
    extras = _unknown_in_block(topic, values, table, names)
    table = table.select(names).combine_chunks()
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
    return table, extras


def _parse_block(topic: Topic, values: pa.BinaryArray) -> _Block:
    parsed = _at_once(topic, values) if len(values) > 1 else None
    if parsed is not None:
        return parsed[0], {}, parsed[1]
    if len(values) <= _SMALL:
        return _one_by_one(topic, values.to_pylist())
    half = len(values) // 2
    left, bad_left, extra_left = _parse_block(topic, values.slice(0, half))
    right, bad_right, extra_right = _parse_block(topic, values.slice(half))
    reasons = {**bad_left, **{half + i: r for i, r in bad_right.items()}}
    extras = {**extra_left, **{half + i: x for i, x in extra_right.items()}}
    return pa.concat_tables([left, right]).combine_chunks(), reasons, extras


def future_reason(ts_ms: int, not_after_ms: int) -> str:
    """Why an event from the future is quarantined."""
    return (
        f"ts {_iso(ts_ms)} is in the future: after {_iso(not_after_ms)}, the stream's "
        "clock plus the allowed skew (MUSIFY_MAX_EVENT_FUTURE_SECONDS)"
    )


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def parse_values(topic: Topic, values: pa.Array, *, not_after_ms: int | None = None) -> Parsed:
    """Parse and validate one topic's messages (``value`` bytes, as binary).

    ``not_after_ms``: the latest event time (epoch ms) the stream accepts; events
    after it are quarantined (their time is wrong, and would mislead readiness).
    """
    if not (pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)):
        values = values.cast(pa.binary())
    table, reasons, extras = _parse_block(topic, values)
    # What the block parser leaves to us: required fields that are missing or null,
    # first field in order wins; rows already rejected keep their reason.
    for f in topic.fields:
        column = table.column(f.name)
        if f.required and column.null_count:
            why = f"missing required field {f.name}"
            for i in np.flatnonzero(np.asarray(column.is_null())).tolist():
                reasons.setdefault(i, why)
    if not_after_ms is not None:
        ts = np.asarray(table.column("ts").fill_null(0), dtype=np.int64)
        for i in np.flatnonzero(ts > not_after_ms).tolist():
            reasons.setdefault(i, future_reason(int(ts[i]), not_after_ms))
    return Parsed(table, reasons, {i: x for i, x in extras.items() if i not in reasons})


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
    extra: pa.Array | None = None,
) -> pa.Table:
    """Good rows (already filtered) as the topic's lake columns; ``extra``: their
    unknown fields (``Parsed.extra_column``), null when not given."""
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
        pa.nulls(parsed.num_rows, pa.string()) if extra is None else extra,
    ]
    return pa.Table.from_arrays(arrays, schema=lake_schema(topic))
