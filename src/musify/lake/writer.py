"""Write events into the lake without Spark, through the same committer.

The stream job is the lake's production writer. This one exists for what must not need a
JVM: building large lakes for benchmarks in seconds, test fixtures, and backfills from
generator files. Its files are indistinguishable from the stream's (same columns, same
tables, the same kind of commit carrying the batch id), so everything downstream of
the lake treats them alike.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from musify.events import TOPICS
from musify.lake.commit import Committer, TableBatch, data_prefix
from musify.lake.layout import Lake, hour_folder
from musify.lake.schema import EXTRA_COLUMN, lake_schema

_MS_TIMESTAMPS = ("ts", "registration")
#: Where the Spark-free writer says it comes from (the tables' musify.checkpoint).
WRITER_CHECKPOINT = "musify.lake.writer"


def arrow_schema(topic: str) -> pa.Schema:
    """The Arrow schema of a topic's lake files: the stream's, derived from the one
    event schema, so files from either writer are interchangeable."""
    return lake_schema(TOPICS[topic])


@dataclass(frozen=True)
class Written:
    batch_id: int
    #: Rows committed now per topic (a topic that already held the batch: absent).
    rows: dict[str, int]
    already_committed: bool = False


def _hour_of(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms // 3_600_000 * 3600, UTC)


def write_events(
    lake: Lake,
    events: Mapping[str, Iterable[Mapping[str, Any]]],
    batch_id: int,
    *,
    partition: int = 0,
    first_offset: Mapping[str, int] | None = None,
    ingested_at: datetime | None = None,
) -> Written:
    """Commit already-valid events (generator dicts, ``ts`` in ms) as lake batch ``batch_id``.

    Events get consecutive Kafka offsets per topic from ``first_offset`` (default 0) in
    ``partition``, as if one producer had sent them; ``kafka_timestamp`` is the event time.
    Re-committing a committed batch id is a no-op, like a stream replay.
    """
    committer = Committer(lake.tables, WRITER_CHECKPOINT)
    pending = set(committer.pending(batch_id, refresh=True))
    storage = lake.storage
    now = ingested_at or datetime.now(UTC)
    batch: dict[str, TableBatch] = {}
    for topic, evs in events.items():
        if topic not in pending:
            continue
        schema = arrow_schema(topic)
        names = schema.names
        known = set(TOPICS[topic].field_names)
        by_hour: dict[datetime, dict[str, list[Any]]] = defaultdict(
            lambda names=names: {n: [] for n in names}  # type: ignore[misc]
        )
        first = offset = (first_offset or {}).get(topic, 0)
        for e in evs:
            cols = by_hour[_hour_of(int(e["ts"]))]
            for name in names:
                v = e.get(name)
                if name in _MS_TIMESTAMPS and v is not None:
                    v = datetime.fromtimestamp(v / 1000, UTC)
                cols[name].append(v)
            cols["kafka_partition"][-1] = partition
            cols["kafka_offset"][-1] = offset
            cols["kafka_timestamp"][-1] = cols["ts"][-1]
            cols["ingested_at"][-1] = now
            # fields the schema does not know go to `extra`, as the stream keeps them
            cols[EXTRA_COLUMN][-1] = (
                orjson.dumps({k: e[k] for k in e if k not in known}).decode()
                if e.keys() - known
                else None
            )
            offset += 1
        if offset == first:
            continue
        storage.remove_prefix(data_prefix(topic, batch_id))  # an interrupted earlier try
        paths = []
        for hour, cols in sorted(by_hour.items()):
            fname = f"part-{uuid.uuid4().hex}.parquet"
            key = f"{data_prefix(topic, batch_id)}/{hour_folder(hour)}/{fname}"
            with storage.open_write(key) as f:
                pq.write_table(pa.table(cols, schema=schema), f, compression="snappy")
            paths.append(storage.uri(key))
        batch[topic] = TableBatch(
            tuple(paths), offset - first, {str(partition): (first, offset - 1)}
        )
    done = committer.commit(batch_id, batch)
    rows = {t: batch[t].rows for t, committed in done.items() if committed}
    given = {t for t, evs in events.items() if evs}
    return Written(batch_id, rows, already_committed=bool(given) and not given & pending)
