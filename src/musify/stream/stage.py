"""Writing one micro-batch into its private staging folder, in Spark's tasks.

The batch's records (the native ``kafka`` format's columns) go through ``mapInArrow``:
each Spark task parses its records (``parse.py``) and writes Parquet files with
pyarrow, one per topic and event hour (quarantine: per topic and ingestion date), then
returns one small row per file. Everything stays columnar from the source to the
files: no JSON parsing in the JVM, no per-row conversions, one Spark job per batch.

Files go to the batch's staging prefix in the lake's own storage (a folder, or the
bucket: on a cluster, every executor writes there directly). Only the files the
successful tasks reported are handed to the commit, so a failed or straggling task
attempt can add nothing to the lake. The rows reported per file must add up to the
rows the tasks read, or the batch fails (nothing is ever dropped).

Besides its files, a task reports the newest event time per Kafka partition (the
stream's event-time watermark is built from them) and how many events carried each
field the schema does not know (kept in the lake's ``extra`` column).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from musify.events import TOPICS
from musify.lake import QUARANTINE, Lake
from musify.lake.commit import StagedFile
from musify.lake.storage import open_storage

#: The input columns a task needs (the native kafka format's names).
INPUT_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp")
#: What a task reports, one row each, by ``kind``: a staged ``file`` (target, path,
#: rows, newest_ms), its ``input`` (rows read), a ``mark`` (the newest event time,
#: newest_ms, of a target's kafka_partition) and an ``unknown`` field (rows of a target
#: that carried the field ``name``).
RESULT_DDL = (
    "kind string, target string, path string, rows long, newest_ms long, "
    "kafka_partition int, name string"
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
    ]
)
#: A task writes what it holds once it holds this many rows (bounded memory).
FLUSH_ROWS = 400_000


class StagingError(RuntimeError):
    """The tasks' files do not account for every record read."""


# -- in a Spark task ----------------------------------------------------------------------


@dataclass
class _TaskWriter:
    lake_url: str
    prefix_key: str  # the batch's task folder in the lake's storage
    ingested_us: int
    #: The latest event time accepted (epoch ms); later ones are quarantined.
    not_after_ms: int | None = None
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    groups: dict[tuple[str, str], list[pa.Table]] = field(default_factory=dict)
    held: int = 0
    files: int = 0
    results: list[tuple[str, str, int, int | None]] = field(default_factory=list)
    #: (topic, Kafka partition) → the newest event time written (epoch ms).
    marks: dict[tuple[str, int], int] = field(default_factory=dict)
    #: (topic, unknown field) → events that carried it.
    unknown: dict[tuple[str, str], int] = field(default_factory=dict)

    def mark(self, topic: str, partitions: pa.Array, ts_ms: np.ndarray[Any, Any]) -> None:
        parts = np.asarray(partitions.cast(pa.int32()))
        for p in np.unique(parts).tolist():
            newest = int(ts_ms[parts == p].max())
            key = (topic, int(p))
            self.marks[key] = max(newest, self.marks.get(key, newest))

    def report(self, read: int) -> pa.RecordBatch:
        rows: list[tuple[str, str, str, int, int | None, int | None, str | None]] = [
            ("file", t, path, n, newest, None, None) for t, path, n, newest in self.results
        ]
        rows.append(("input", "", "", read, None, None, None))
        rows += [("mark", t, "", 0, ms, p, None) for (t, p), ms in self.marks.items()]
        rows += [("unknown", t, "", n, None, None, f) for (t, f), n in self.unknown.items()]
        return pa.RecordBatch.from_arrays(
            [pa.array([r[i] for r in rows], RESULT_SCHEMA.field(i).type) for i in range(7)],
            schema=RESULT_SCHEMA,
        )

    def add(self, target: str, folder: str, table: pa.Table) -> None:
        if table.num_rows:
            self.groups.setdefault((target, folder), []).append(table)
            self.held += table.num_rows

    def flush(self) -> None:
        import pyarrow.parquet as pq

        storage = open_storage(self.lake_url)
        for (target, folder), pieces in self.groups.items():
            table = pa.concat_tables(pieces)
            rel = f"{target}/{folder}/part-{self.prefix}-{self.files:05d}.parquet"
            self.files += 1
            with storage.open_write(f"{self.prefix_key}/{rel}") as f:
                pq.write_table(table, f, compression="snappy")
            newest: int | None = None
            if target != QUARANTINE:
                newest = int(np.asarray(table.column("ts").cast(pa.int64())).max()) // 1000
            self.results.append((target, rel, table.num_rows, newest))
        self.groups.clear()
        self.held = 0


def _hour_folder(hour: int) -> str:
    moment = datetime.fromtimestamp(hour * 3600, UTC)
    return f"date={moment:%Y-%m-%d}/hour={moment:%H}"


def _stage_topic(
    writer: _TaskWriter, name: str, batch: pa.RecordBatch, quarantine_day: str
) -> None:
    from musify.stream.parse import QUARANTINE_SCHEMA, hour_keys, lake_rows, parse_values

    topic = TOPICS.get(name)
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
        writer.add(QUARANTINE, f"topic={name}/date={quarantine_day}", quarantine)
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
    writer.mark(name, chosen.column("partition"), np.asarray(ts, dtype=np.int64))
    hours = hour_keys(ts)
    if (hours == hours[0]).all():
        writer.add(name, _hour_folder(int(hours[0])), table)
        return
    order = np.argsort(hours, kind="stable")  # keeps the offsets' order within an hour
    sorted_hours = hours[order]
    cuts = np.flatnonzero(np.diff(sorted_hours)) + 1
    for run in np.split(np.arange(len(order)), cuts):
        writer.add(name, _hour_folder(int(sorted_hours[run[0]])), table.take(order[run]))


def stage_partition(
    batches: Iterator[pa.RecordBatch],
    lake_url: str,
    prefix_key: str,
    ingested_us: int,
    not_after_ms: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """The ``mapInArrow`` function: parse and write one task's records."""
    writer = _TaskWriter(lake_url, prefix_key, ingested_us, not_after_ms)
    day = datetime.fromtimestamp(ingested_us / 1e6, UTC).strftime("%Y-%m-%d")
    read = 0
    for batch in batches:
        read += batch.num_rows
        if not batch.num_rows:
            continue
        topics = batch.column("topic")
        names = topics.unique()
        if len(names) == 1 and names.null_count == 0:
            _stage_topic(writer, str(names[0].as_py()), batch, day)
        else:
            for name in names.to_pylist():
                mask = topics.is_null() if name is None else pc.equal(topics, name)
                _stage_topic(writer, str(name), batch.filter(mask), day)
        if writer.held >= FLUSH_ROWS:
            writer.flush()
    writer.flush()
    yield writer.report(read)


# -- on the driver --------------------------------------------------------------------------


@dataclass(frozen=True)
class StagedBatch:
    #: The files to commit (what the successful tasks reported).
    files: list[StagedFile]
    #: Rows per target.
    rows: dict[str, int]
    #: The newest event time written, if any.
    newest: datetime | None
    input_rows: int
    #: (topic, Kafka partition) → the newest event time written from that partition.
    marks: dict[tuple[str, int], datetime] = field(default_factory=dict)
    #: "topic.field" → events that carried that unknown field (kept in ``extra``).
    unknown_fields: dict[str, int] = field(default_factory=dict)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def stage_batch(
    df: Any,
    lake: Lake,
    stage_key: str,
    ingested_at: datetime,
    max_future: timedelta | None = None,
) -> StagedBatch:
    """Write a micro-batch's records (a DataFrame with the kafka format's columns)
    under ``stage_key`` in the lake's storage: one Spark job; returns the files the
    tasks reported. The caller removes ``stage_key`` after the commit. Events more than
    ``max_future`` after ``ingested_at`` are quarantined."""
    lake.storage.remove_prefix(stage_key)  # what an earlier attempt of this batch left
    ingested_us = int(ingested_at.timestamp() * 1_000_000)
    not_after_ms = (
        None if max_future is None else int((ingested_at + max_future).timestamp() * 1000)
    )
    fn = partial(
        stage_partition,
        lake_url=lake.url,
        prefix_key=stage_key,
        ingested_us=ingested_us,
        not_after_ms=not_after_ms,
    )
    result = df.select(*INPUT_COLUMNS).mapInArrow(fn, RESULT_DDL).toArrow().to_pylist()
    return collect_results(result, stage_key)


def collect_results(result: list[dict[str, Any]], stage_key: str) -> StagedBatch:
    """The batch's files, counts and marks from every task's report rows."""
    rows: dict[str, int] = {}
    newest_ms: int | None = None
    input_rows = written = 0
    files: list[StagedFile] = []
    marks: dict[tuple[str, int], int] = {}
    unknown: dict[str, int] = {}
    for r in result:
        kind, target = r["kind"], r["target"]
        if kind == "input":
            input_rows += r["rows"]
        elif kind == "mark":
            key = (target, int(r["kafka_partition"]))
            marks[key] = max(r["newest_ms"], marks.get(key, r["newest_ms"]))
        elif kind == "unknown":
            name = f"{target}.{r['name']}"
            unknown[name] = unknown.get(name, 0) + r["rows"]
        else:
            rel = r["path"]
            folder = rel.split("/", 1)[1].rsplit("/", 1)[0]
            files.append(StagedFile(target, folder, f"{stage_key}/{rel}"))
            rows[target] = rows.get(target, 0) + r["rows"]
            written += r["rows"]
            if r["newest_ms"] is not None:
                newest_ms = r["newest_ms"] if newest_ms is None else max(newest_ms, r["newest_ms"])
    if written != input_rows:
        raise StagingError(
            f"the batch's tasks read {input_rows} records but staged {written} rows; "
            "nothing was committed"
        )
    return StagedBatch(
        files,
        rows,
        None if newest_ms is None else _utc(newest_ms),
        input_rows,
        {k: _utc(ms) for k, ms in marks.items()},
        unknown,
    )
