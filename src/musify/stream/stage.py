"""Writing one micro-batch's data files, in Spark's tasks.

The batch goes through ``mapInArrow``: each Spark task parses its records
(``parse.py``) and writes Parquet files with pyarrow, one per table and event hour
(quarantine: per topic and ingestion day), then returns one small row per file. With
the ``musify_kafka`` source the task gets only its offset ranges (the source's
``output=ranges``) and reads their records itself (``read_ranges``): the records never
cross into the JVM and back, which cost more than reading and parsing them. With
Spark's native ``kafka`` source it gets the records (that format's columns).
Everything stays columnar from the broker to the files: no JSON parsing in the JVM, no
per-row conversions, one Spark job per batch.

Files go straight to their table's folder for this batch
(``<table>/data/batch-<id>/…``, ``musify.lake.commit.data_prefix``) in the lake's own
storage (a folder, or the bucket: on a cluster, every executor writes there directly).
They are part of the lake only once the driver registers them in the table's metadata:
only the files the successful tasks reported are registered, so a failed or straggling
task attempt can add nothing. The rows reported per file must add up to the rows the
tasks read, or the batch fails (nothing is ever dropped). Tables that already hold the
batch (a replay after a crash between two tables' commits) are skipped: their rows are
counted, not written.

Besides its files, a task reports per table and Kafka partition the newest event time
(the stream's event-time watermark is built from them) and the offset range it wrote
(the commit records it), and how many events carried each field the schema does not
know (kept in the lake's ``extra`` column).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from musify.events import TOPICS, Topic
from musify.lake import QUARANTINE, Lake
from musify.lake.commit import TableBatch, data_prefix
from musify.lake.layout import hour_folder
from musify.lake.schema import QUARANTINE_SCHEMA
from musify.lake.storage import open_storage

if TYPE_CHECKING:
    from musify.stream.kafka_source import SourceOptions

#: The input columns a task needs (the native kafka format's names).
INPUT_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp")
#: What a task reports, one row each, by ``kind``: a ``file`` (target, path, rows,
#: newest_ms), its ``input`` (rows read), rows it ``skipped`` (of a target that already
#: holds the batch), a ``mark`` (a target's kafka_partition: newest_ms, and the offsets
#: first..last it wrote; ``name`` is the partition's key in the commit's offsets) and an
#: ``unknown`` field (rows of a target that carried the field ``name``).
RESULT_DDL = (
    "kind string, target string, path string, rows long, newest_ms long, "
    "kafka_partition int, name string, first_offset long, last_offset long"
)
RESULT_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string()),
        pa.field("target", pa.string()),
        pa.field("path", pa.string()),
        pa.field("rows", pa.int64()),
        pa.field("newest_ms", pa.int64()),
        pa.field("kafka_partition", pa.int32()),
        pa.field("name", pa.string()),
        pa.field("first_offset", pa.int64()),
        pa.field("last_offset", pa.int64()),
    ]
)
#: A task writes what it holds once it holds this many rows (bounded memory).
FLUSH_ROWS = 400_000


class StagingError(RuntimeError):
    """The tasks' files do not account for every record read."""


# -- in a Spark task ----------------------------------------------------------------------

_Row = tuple[str, str, str, int, int | None, int | None, str | None, int | None, int | None]


@dataclass
class _TaskWriter:
    lake_url: str
    batch_id: int
    ingested_us: int
    #: The latest event time accepted (epoch ms); later ones are quarantined.
    not_after_ms: int | None = None
    #: Tables that already hold this batch: count their rows, write nothing.
    skip: frozenset[str] = frozenset()
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    groups: dict[tuple[str, str], list[pa.Table]] = field(default_factory=dict)
    held: int = 0
    files: int = 0
    results: list[_Row] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    #: (table, partition key) → [newest event ms, first offset, last offset, partition]
    marks: dict[tuple[str, str], list[int | None]] = field(default_factory=dict)
    #: (topic, unknown field) → events that carried it.
    unknown: dict[tuple[str, str], int] = field(default_factory=dict)

    def note(
        self,
        target: str,
        key_prefix: str,
        partitions: pa.Array,
        offsets: pa.Array,
        ts_ms: np.ndarray[Any, Any] | None,
    ) -> None:
        """Record, per Kafka partition, the offsets (and newest event) of rows added."""
        parts = np.asarray(partitions.cast(pa.int32()))
        offs = np.asarray(offsets.cast(pa.int64()))
        for p in np.unique(parts).tolist():
            sel = parts == p
            key = (target, f"{key_prefix}{p}")
            newest = None if ts_ms is None else int(ts_ms[sel].max())
            first, last = int(offs[sel].min()), int(offs[sel].max())
            old = self.marks.get(key)
            if old is not None:
                if newest is not None and old[0] is not None:
                    newest = max(newest, int(old[0]))
                first, last = min(first, int(old[1] or 0)), max(last, int(old[2] or 0))
            self.marks[key] = [newest, first, last, int(p)]

    def report(self, read: int) -> pa.RecordBatch:
        rows: list[_Row] = list(self.results)
        rows.append(("input", "", "", read, None, None, None, None, None))
        rows += [
            ("skipped", t, "", n, None, None, None, None, None) for t, n in self.skipped.items()
        ]
        rows += [("mark", t, "", 0, m[0], m[3], k, m[1], m[2]) for (t, k), m in self.marks.items()]
        rows += [
            ("unknown", t, "", n, None, None, f, None, None) for (t, f), n in self.unknown.items()
        ]
        n = len(RESULT_SCHEMA)
        return pa.RecordBatch.from_arrays(
            [pa.array([r[i] for r in rows], RESULT_SCHEMA.field(i).type) for i in range(n)],
            schema=RESULT_SCHEMA,
        )

    def add(self, target: str, folder: str, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if target in self.skip:
            self.skipped[target] = self.skipped.get(target, 0) + table.num_rows
            return
        self.groups.setdefault((target, folder), []).append(table)
        self.held += table.num_rows

    def flush(self) -> None:
        import pyarrow.parquet as pq

        storage = open_storage(self.lake_url)
        for (target, folder), pieces in self.groups.items():
            table = pa.concat_tables(pieces)
            name = f"part-{self.prefix}-{self.files:05d}.parquet"
            key = f"{data_prefix(target, self.batch_id)}/{folder}/{name}"
            self.files += 1
            with storage.open_write(key) as f:
                pq.write_table(table, f, compression="snappy")
            newest: int | None = None
            if target != QUARANTINE:
                newest = int(np.asarray(table.column("ts").cast(pa.int64())).max()) // 1000
            self.results.append(
                ("file", target, storage.uri(key), table.num_rows, newest, None, None, None, None)
            )
        self.groups.clear()
        self.held = 0


def _stage_topic(
    writer: _TaskWriter,
    topics: Mapping[str, Topic],
    name: str,
    batch: pa.RecordBatch,
    quarantine_day: str,
) -> None:
    from musify.stream.parse import hour_keys, lake_rows, parse_values

    topic = topics.get(name)
    n = batch.num_rows
    if topic is None:  # records of topics we do not know cannot be parsed
        good = np.zeros(n, dtype=bool)
        reasons: dict[int, str] = dict.fromkeys(range(n), "unknown topic")
        fields = extra = None
    else:
        parsed = parse_values(topic, batch.column("value"), not_after_ms=writer.not_after_ms)
        good, reasons, fields = parsed.good_mask(), parsed.reasons, parsed.fields
        extra = parsed.extra_column() if parsed.extras else None
        for unknown, count in parsed.unknown_fields.items():
            key = (name, unknown)
            writer.unknown[key] = writer.unknown.get(key, 0) + count
    if reasons:
        bad = np.fromiter(sorted(reasons), dtype=np.int64, count=len(reasons))
        rows = batch.take(pa.array(bad))
        quarantine = pa.Table.from_arrays(
            [
                pa.array([name] * len(bad), pa.string()),
                rows.column("partition").cast(pa.int32()),
                rows.column("offset").cast(pa.int64()),
                rows.column("timestamp").cast(QUARANTINE_SCHEMA.field("kafka_timestamp").type),
                rows.column("key").cast(pa.binary()),
                rows.column("value").cast(pa.binary()),
                pa.array([reasons[i] for i in bad.tolist()], pa.string()),
                pa.array(np.full(len(bad), writer.ingested_us, dtype=np.int64)).cast(
                    QUARANTINE_SCHEMA.field("ingested_at").type
                ),
            ],
            schema=QUARANTINE_SCHEMA,
        )
        writer.add(QUARANTINE, f"{name}/{quarantine_day}", quarantine)
        if QUARANTINE not in writer.skip:
            writer.note(
                QUARANTINE, f"{name}:", rows.column("partition"), rows.column("offset"), None
            )
    if topic is None or fields is None or not good.any():
        return
    keep = None if good.all() else pa.array(np.flatnonzero(good))
    chosen = batch if keep is None else batch.take(keep)
    if extra is not None and keep is not None:
        extra = extra.take(keep)
    table = lake_rows(
        topic,
        fields if keep is None else fields.take(keep),
        chosen.column("partition"),
        chosen.column("offset"),
        chosen.column("timestamp"),
        writer.ingested_us,
        extra,
    )
    ts = fields.column("ts") if keep is None else fields.column("ts").take(keep)
    ts_ms = np.asarray(ts, dtype=np.int64)
    if name not in writer.skip:
        writer.note(name, "", chosen.column("partition"), chosen.column("offset"), ts_ms)
    hours = hour_keys(ts)
    if (hours == hours[0]).all():
        writer.add(name, _folder(int(hours[0])), table)
        return
    order = np.argsort(hours, kind="stable")  # keeps the offsets' order within an hour
    sorted_hours = hours[order]
    cuts = np.flatnonzero(np.diff(sorted_hours)) + 1
    for run in np.split(np.arange(len(order)), cuts):
        writer.add(name, _folder(int(sorted_hours[run[0]])), table.take(order[run]))


def _folder(hours_since_epoch: int) -> str:
    return hour_folder(datetime.fromtimestamp(hours_since_epoch * 3600, UTC))


def stage_partition(
    batches: Iterator[pa.RecordBatch],
    lake_url: str,
    batch_id: int,
    ingested_us: int,
    not_after_ms: int | None = None,
    skip: frozenset[str] = frozenset(),
    topics: Mapping[str, Topic] | None = None,
) -> Iterator[pa.RecordBatch]:
    """The ``mapInArrow`` function: parse and write one task's records. ``topics``: the
    event schema the driver's tables have (default: this process's ``TOPICS``)."""
    topics = TOPICS if topics is None else topics
    writer = _TaskWriter(lake_url, batch_id, ingested_us, not_after_ms, skip)
    day = datetime.fromtimestamp(ingested_us / 1e6, UTC).strftime("%Y-%m-%d")
    read = 0
    for batch in batches:
        read += batch.num_rows
        if not batch.num_rows:
            continue
        column = batch.column("topic")
        names = column.unique()
        if len(names) == 1 and names.null_count == 0:
            _stage_topic(writer, topics, str(names[0].as_py()), batch, day)
        else:
            for name in names.to_pylist():
                mask = column.is_null() if name is None else pc.equal(column, name)
                _stage_topic(writer, topics, str(name), batch.filter(mask), day)
        if writer.held >= FLUSH_ROWS:
            writer.flush()
    writer.flush()
    yield writer.report(read)


def stage_ranges(
    ranges: Iterator[pa.RecordBatch], source: SourceOptions, **stage: Any
) -> Iterator[pa.RecordBatch]:
    """The ``mapInArrow`` function over the ``musify_kafka`` source's offset ranges:
    read them (``read_ranges``), then ``stage_partition`` (``stage``: its arguments)."""
    from musify.stream.kafka_source.ranges import read_ranges

    yield from stage_partition(read_ranges(source, ranges), **stage)


# -- on the driver --------------------------------------------------------------------------


@dataclass(frozen=True)
class StagedBatch:
    #: What to commit into each table (the files the successful tasks reported).
    tables: dict[str, TableBatch]
    #: Rows written per table (tables skipped as already holding the batch: absent).
    rows: dict[str, int]
    #: The newest event time written, if any.
    newest: datetime | None
    input_rows: int
    #: (topic, Kafka partition) → the newest event time written from that partition.
    marks: dict[tuple[str, int], datetime] = field(default_factory=dict)
    #: "topic.field" → events that carried that unknown field (kept in ``extra``).
    unknown_fields: dict[str, int] = field(default_factory=dict)
    #: Rows of tables that already held the batch (counted, not written again).
    skipped: dict[str, int] = field(default_factory=dict)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def stage_batch(
    df: Any,
    lake: Lake,
    batch_id: int,
    ingested_at: datetime,
    max_future: timedelta | None = None,
    skip: frozenset[str] = frozenset(),
    topics: Mapping[str, Topic] | None = None,
    source: SourceOptions | None = None,
) -> StagedBatch:
    """Write a micro-batch's records as data files of the lake's tables: one Spark job;
    returns what the tasks reported. ``df`` has the kafka format's columns, or with
    ``source`` (the ``musify_kafka`` source's options) its ``output=ranges`` columns,
    whose records the tasks read. Events more than ``max_future`` after
    ``ingested_at`` are quarantined; tables in ``skip`` already hold the batch."""
    ingested_us = int(ingested_at.timestamp() * 1_000_000)
    not_after_ms = (
        None if max_future is None else int((ingested_at + max_future).timestamp() * 1000)
    )
    stage: dict[str, Any] = {
        "lake_url": lake.url,
        "batch_id": batch_id,
        "ingested_us": ingested_us,
        "not_after_ms": not_after_ms,
        "skip": skip,
        "topics": dict(TOPICS if topics is None else topics),
    }
    if source is None:
        df, fn = df.select(*INPUT_COLUMNS), partial(stage_partition, **stage)
    else:
        fn = partial(stage_ranges, source=source, **stage)
    result = df.mapInArrow(fn, RESULT_DDL).toArrow().to_pylist()
    return collect_results(result)


def collect_results(result: list[dict[str, Any]]) -> StagedBatch:
    """The batch's files, counts, marks and offsets from every task's report rows."""
    paths: dict[str, list[str]] = {}
    rows: dict[str, int] = {}
    skipped: dict[str, int] = {}
    newest_ms: int | None = None
    input_rows = written = 0
    marks: dict[tuple[str, int], int] = {}
    offsets: dict[str, dict[str, tuple[int, int]]] = {}
    unknown: dict[str, int] = {}
    for r in result:
        kind, target = r["kind"], r["target"]
        if kind == "input":
            input_rows += r["rows"]
        elif kind == "skipped":
            skipped[target] = skipped.get(target, 0) + r["rows"]
        elif kind == "mark":
            ranges = offsets.setdefault(target, {})
            first, last = r["first_offset"], r["last_offset"]
            if r["name"] in ranges:
                was = ranges[r["name"]]
                first, last = min(first, was[0]), max(last, was[1])
            ranges[r["name"]] = (first, last)
            if r["newest_ms"] is not None:
                key = (target, int(r["kafka_partition"]))
                marks[key] = max(r["newest_ms"], marks.get(key, r["newest_ms"]))
        elif kind == "unknown":
            name = f"{target}.{r['name']}"
            unknown[name] = unknown.get(name, 0) + r["rows"]
        else:
            paths.setdefault(target, []).append(r["path"])
            rows[target] = rows.get(target, 0) + r["rows"]
            written += r["rows"]
            if r["newest_ms"] is not None:
                newest_ms = r["newest_ms"] if newest_ms is None else max(newest_ms, r["newest_ms"])
    if written + sum(skipped.values()) != input_rows:
        raise StagingError(
            f"the batch's tasks read {input_rows} records but wrote {written} rows "
            f"(and skipped {sum(skipped.values())}); nothing was committed"
        )
    tables = {
        t: TableBatch(tuple(sorted(p)), rows[t], offsets.get(t, {})) for t, p in paths.items()
    }
    return StagedBatch(
        tables,
        rows,
        None if newest_ms is None else _utc(newest_ms),
        input_rows,
        {k: _utc(ms) for k, ms in marks.items()},
        unknown,
        skipped,
    )
