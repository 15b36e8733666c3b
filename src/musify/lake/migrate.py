"""Converting a lake written by Musify before Iceberg into the lake's tables, once.

That lake was Parquet files under ``<topic>/date=…/hour=…/part-b<batch>-<n>.parquet``
and ``_quarantine/topic=<topic>/date=…/…``, made exactly-once by commit records
(``_commits/<batch>.json`` naming each batch's files). ``migrate`` registers exactly the
files those records name, in place, into the topics' tables (they already hold one
event hour each; their missing ``extra`` column reads as null), rewrites the quarantine's
files with the ``topic`` column its table has (the old layout kept it in the folder
name), records the newest migrated batch id as each table's last batch (so a stream
resuming from the same checkpoint neither skips nor repeats a batch), and finally moves
the commit records to ``_commits.migrated``. Files of an interrupted batch (a
``.pending.json`` record) and staging leftovers are removed, never registered.

It can be run again after a crash: a table that holds its migration snapshot is skipped.
``musify stream`` refuses to start on a lake that still has the old records, naming
``musify lake migrate``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from musify.events import TOPIC_NAMES
from musify.lake.commit import CHECKPOINT, LAST_BATCH
from musify.lake.layout import LEGACY_COMMITS, Lake
from musify.lake.schema import QUARANTINE, QUARANTINE_SCHEMA
from musify.lake.tables import LakeError

MIGRATED = "musify.migrated-from"
_LEGACY_QUARANTINE = "_quarantine"


@dataclass
class MigrationReport:
    batches: int = 0
    files: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    removed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "files": self.files,
            "rows": self.rows,
            "removed": self.removed,
        }


def _target(key: str) -> str | None:
    head = key.split("/", 1)[0]
    if head == _LEGACY_QUARANTINE:
        return QUARANTINE
    return head if head in TOPIC_NAMES else None


def _topic_of(key: str) -> str:
    for part in key.split("/"):
        if part.startswith("topic="):
            return part.removeprefix("topic=")
    raise LakeError(f"quarantine file {key} has no topic= folder")


def migrate(
    lake: Lake, checkpoint: str, say: Callable[[str], None] = lambda _: None
) -> MigrationReport:
    """Register the committed files of a pre-Iceberg lake (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    storage = lake.storage
    report = MigrationReport()
    records = storage.list(LEGACY_COMMITS, ".json")
    if not records:
        raise LakeError(f"the lake {lake.url} has no {LEGACY_COMMITS}/ records: nothing to migrate")
    files: dict[str, list[str]] = {}
    last = -1
    for key in records:
        body = orjson.loads(storage.read(key) or b"{}")
        if key.endswith(".pending.json"):
            storage.remove(body.get("files", ()))  # an interrupted batch: never committed
            report.removed += len(body.get("files", ()))
            continue
        last = max(last, int(body["batch_id"]))
        report.batches += 1
        for f in body.get("files", ()):
            target = _target(f)
            if target is None:
                raise LakeError(f"commit record {key} names {f}, which is in no table's folder")
            files.setdefault(target, []).append(f)
    for name in lake.tables:
        table = lake.tables.table(name, refresh=True)
        if any(s.summary and s.summary.get(MIGRATED) for s in table.snapshots()):
            say(f"  {name}: migrated before")
            continue
        keys = sorted(files.get(name, []))
        if name == QUARANTINE:
            keys = _rewrite_quarantine(lake, keys, pa, pq)
        paths = [storage.uri(k) for k in keys]
        props = {MIGRATED: "parquet lake", "musify.migrated-batches": str(report.batches)}
        with table.transaction() as tx:
            if paths:
                tx.add_files(paths, snapshot_properties=props, check_duplicate_files=False)
            else:
                with tx.update_snapshot(snapshot_properties=props).fast_append():
                    pass
            tx.set_properties({LAST_BATCH: str(last), CHECKPOINT: checkpoint})
        rows = table.refresh().current_snapshot().summary.get("total-records", "0")
        report.files[name] = len(paths)
        report.rows[name] = int(rows)
        say(f"  {name}: {len(paths):,} files, {int(rows):,} rows")
    storage.remove(files.get(QUARANTINE, []))  # rewritten with their topic column above
    storage.remove_prefix("_staging")
    storage.move([(k, k.replace(LEGACY_COMMITS, f"{LEGACY_COMMITS}.migrated", 1)) for k in records])
    return report


def _rewrite_quarantine(lake: Lake, keys: list[str], pa: Any, pq: Any) -> list[str]:
    """The old quarantine files with the ``topic`` column added, as new files of the
    quarantine table's folder; returns their keys."""
    out = []
    for key in keys:
        data = lake.storage.read(key)
        if data is None:
            raise LakeError(f"the commit records name {key}, which is not in the lake")
        old = pq.read_table(pa.BufferReader(data))
        topic = pa.array([_topic_of(key)] * old.num_rows, pa.string())
        table = pa.Table.from_arrays(
            [topic if n == "topic" else old.column(n) for n in QUARANTINE_SCHEMA.names],
            schema=QUARANTINE_SCHEMA,
        )
        new = f"{QUARANTINE}/data/migrated/{_topic_of(key)}/part-{uuid.uuid4().hex}.parquet"
        with lake.storage.open_write(new) as f:
            pq.write_table(table, f, compression="snappy")
        out.append(new)
    return out
