"""Write events into the lake without Spark, through the same commit protocol.

The stream job is the lake's production writer. This one exists for what must not need a
JVM: building large lakes for benchmarks in seconds, test fixtures, and backfills from
generator files. Its files are indistinguishable from the stream's (same columns, same
``date=/hour=`` layout, same batch-named parts and commit records), so everything
downstream of the lake treats them alike.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from musify.events import TOPICS
from musify.lake.commit import BatchCommit, StagedFile, commit_batch
from musify.lake.layout import STAGING, Lake, hour_folder
from musify.stream.parse import EXTRA_COLUMN, lake_schema

_MS_TIMESTAMPS = ("ts", "registration")


def arrow_schema(topic: str) -> pa.Schema:
    """The Arrow schema of a topic's lake files: the stream's, derived from the one
    event schema, so files from either writer are interchangeable."""
    return lake_schema(TOPICS[topic])


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
) -> BatchCommit:
    """Commit already-valid events (generator dicts, ``ts`` in ms) as lake batch ``batch_id``.

    Events get consecutive Kafka offsets per topic from ``first_offset`` (default 0) in
    ``partition``, as if one producer had sent them; ``kafka_timestamp`` is the event time.
    Re-committing a committed batch id is a no-op, like a stream replay.
    """
    storage = lake.storage
    staging = f"{STAGING}/writer-{batch_id}-{uuid.uuid4().hex[:8]}"
    try:
        staged: list[StagedFile] = []
        rows: dict[str, int] = {}
        now = ingested_at or datetime.now(UTC)
        for topic, evs in events.items():
            schema = arrow_schema(topic)
            names = schema.names
            by_hour: dict[datetime, dict[str, list[Any]]] = defaultdict(
                lambda names=names: {n: [] for n in names}  # type: ignore[misc]
            )
            offset = (first_offset or {}).get(topic, 0)
            known = set(TOPICS[topic].field_names)
            for e in evs:
                cols = by_hour[_hour_of(int(e["ts"]))]
                for name in schema.names:
                    v = e.get(name)
                    if name in _MS_TIMESTAMPS and v is not None:
                        v = datetime.fromtimestamp(v / 1000, UTC)
                    cols[name].append(v)
                # fields the schema does not know go to `extra`, as the stream keeps them
                cols[EXTRA_COLUMN][-1] = (
                    orjson.dumps({k: e[k] for k in e if k not in known}).decode()
                    if e.keys() - known
                    else None
                )
                cols["kafka_partition"][-1] = partition
                cols["kafka_offset"][-1] = offset
                cols["kafka_timestamp"][-1] = cols["ts"][-1]
                cols["ingested_at"][-1] = now
                offset += 1
            for hour, cols in sorted(by_hour.items()):
                folder = hour_folder(f"{hour:%Y-%m-%d}", hour.hour)
                key = f"{staging}/{topic}/{folder}/part.parquet"
                with storage.open_write(key) as f:
                    pq.write_table(pa.table(cols, schema=schema), f)
                staged.append(StagedFile(topic, folder, key))
            rows[topic] = offset - (first_offset or {}).get(topic, 0)
        return commit_batch(lake, batch_id, staged, rows, {"writer": "musify.lake.writer"})
    finally:
        storage.remove_prefix(staging)
