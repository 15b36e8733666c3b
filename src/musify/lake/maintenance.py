"""Keeping the lake's tables small and fast: compaction, snapshot expiry, orphan files.

Every step is safe while the stream writes, and none changes what any reader counts:

- **Compaction** rewrites each closed partition (an event hour that ended before
  ``closed_before``; the quarantine: a closed ingestion day) that has several data files
  into one. It reads the partition's rows through the table at one snapshot and commits
  one Iceberg ``overwrite`` that removes exactly the files it read and adds the new one,
  conditional on that snapshot still being current: if the stream committed meanwhile
  (a late event of that hour, say), the commit fails, nothing changes, and the partition
  is planned again. Rows never change, only how many files hold them.
- **Snapshot expiry** drops snapshots older than the retention
  (``MUSIFY_LAKE_SNAPSHOT_RETENTION_HOURS``): time travel, and reproducing a published
  hour from the snapshots it records, reaches back that far. The current snapshot is
  never expired.
- **Orphan files**: files under a table's folder that no remaining snapshot (nor the
  table's metadata log) references, and that are older than ``orphan_age`` (so the files
  of a micro-batch being written are never taken), are deleted: what killed attempts
  left, files compacted away whose snapshots expired, metadata no longer needed.

``musify lake maintain`` runs all three; the Airflow DAG ``musify_maintenance`` runs it
daily. Running it again at once changes nothing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from musify.lake.layout import Lake, hour_folder
from musify.lake.schema import QUARANTINE
from musify.lake.tables import LakeError

_HOUR_S = 3600
_DAY_S = 86_400
#: How often a partition whose compaction lost a race with the stream is tried again.
_ATTEMPTS = 5


@dataclass
class TableReport:
    partitions_compacted: int = 0
    files_before: int = 0
    files_after: int = 0
    snapshots_expired: int = 0
    orphans_removed: int = 0


@dataclass
class MaintenanceReport:
    tables: dict[str, TableReport] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "tables": {n: vars(r) for n, r in self.tables.items()},
            "seconds": round(self.seconds, 2),
        }


def _partition_start(table: str, partition: Any) -> tuple[datetime, str]:
    """The start of a partition's interval and a folder name for its compacted file."""
    if table == QUARANTINE:
        topic, day = partition[0], int(partition[1])
        start = datetime.fromtimestamp(day * _DAY_S, UTC)
        return start, f"{topic}/{start:%Y-%m-%d}"
    start = datetime.fromtimestamp(int(partition[0]) * _HOUR_S, UTC)
    return start, hour_folder(start)


def _partition_filter(table: str, partition: Any) -> str:
    start, _ = _partition_start(table, partition)
    if table == QUARANTINE:
        end = start + timedelta(days=1)
        return (
            f"topic == '{partition[0]}' and ingested_at >= '{start.isoformat()}' "
            f"and ingested_at < '{end.isoformat()}'"
        )
    end = start + timedelta(hours=1)
    return f"ts >= '{start.isoformat()}' and ts < '{end.isoformat()}'"


def _closed(table: str, partition: Any, closed_before: datetime) -> bool:
    start, _ = _partition_start(table, partition)
    length = timedelta(days=1) if table == QUARANTINE else timedelta(hours=1)
    return start + length <= closed_before


def compact(lake: Lake, name: str, closed_before: datetime, report: TableReport) -> None:
    """Rewrite every closed partition of ``name`` that has several files into one."""
    from pyiceberg.exceptions import CommitFailedException

    table = lake.tables.table(name, refresh=True)
    if table.current_snapshot() is None:
        return
    groups: dict[Any, list[Any]] = {}
    for task in table.scan().plan_files():
        groups.setdefault(task.file.partition, []).append(task.file)
    for partition, files in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if len(files) < 2 or not _closed(name, partition, closed_before):
            continue
        for _ in range(_ATTEMPTS):
            try:
                if _compact_partition(lake, name, partition, report):
                    break
            except CommitFailedException:
                continue  # the stream committed meanwhile: plan the partition again
        else:
            raise LakeError(f"could not compact a partition of {name}: too many conflicts")


def _compact_partition(lake: Lake, name: str, partition: Any, report: TableReport) -> bool:
    """One partition: read it at the current snapshot, write one file, swap them in one
    commit conditional on that snapshot. False when there was nothing to do."""
    import pyarrow.parquet as pq
    from pyiceberg.table import _parquet_files_to_data_files

    table = lake.tables.table(name, refresh=True)
    snapshot = table.current_snapshot()
    flt = _partition_filter(name, partition)
    tasks = [
        t
        for t in table.scan(row_filter=flt, snapshot_id=snapshot.snapshot_id).plan_files()
        if t.file.partition == partition
    ]
    if len(tasks) < 2:
        return True
    rows = table.scan(row_filter=flt, snapshot_id=snapshot.snapshot_id).to_arrow()
    expected = sum(int(t.file.record_count) for t in tasks)
    if rows.num_rows != expected:
        raise LakeError(
            f"compaction of {name} read {rows.num_rows} rows where its files hold {expected}"
        )
    _, folder = _partition_start(name, partition)
    key = f"{name}/data/compacted/{folder}/part-{uuid.uuid4().hex}.parquet"
    with lake.storage.open_write(key) as f:
        pq.write_table(rows, f, compression="snappy")
    path = lake.storage.uri(key)
    try:
        new = list(_parquet_files_to_data_files(table.metadata, [path], table.io))
        with table.transaction() as tx:
            props = {"musify.maintenance": "compact", "musify.compacted-files": str(len(tasks))}
            with tx.update_snapshot(snapshot_properties=props).overwrite() as overwrite:
                for t in tasks:
                    overwrite.delete_data_file(t.file)
                for data_file in new:
                    overwrite.append_data_file(data_file)
    except Exception:
        lake.storage.remove([key])  # never registered: not part of the lake
        raise
    report.partitions_compacted += 1
    report.files_before += len(tasks)
    report.files_after += 1
    return True


def expire_snapshots(lake: Lake, name: str, older_than: datetime, report: TableReport) -> None:
    table = lake.tables.table(name, refresh=True)
    current = table.current_snapshot()
    old = [
        s.snapshot_id
        for s in table.snapshots()
        if s.timestamp_ms < older_than.timestamp() * 1000
        and (current is None or s.snapshot_id != current.snapshot_id)
    ]
    if old:
        table.maintenance.expire_snapshots().by_ids(old).commit()
        report.snapshots_expired += len(old)


def referenced_files(table: Any) -> set[str]:
    """Every file a table's metadata still needs: data files and manifests of all its
    snapshots, their manifest lists, and the metadata files in its log."""
    out: set[str] = {str(table.metadata_location)}
    out.update(str(entry.metadata_file) for entry in table.metadata.metadata_log)
    for snap in table.snapshots():
        out.add(str(snap.manifest_list))
        for manifest in snap.manifests(table.io):
            out.add(str(manifest.manifest_path))
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                out.add(str(entry.data_file.file_path))
    return out


def remove_orphans(lake: Lake, name: str, orphan_age: timedelta, report: TableReport) -> None:
    table = lake.tables.table(name, refresh=True)
    keep = {lake.storage.native_uri(p) for p in referenced_files(table)}
    cutoff = time.time() - orphan_age.total_seconds()
    gone = [
        key
        for key, modified in lake.storage.list_modified(name)
        if modified < cutoff
        and lake.storage.native_uri(lake.storage.uri(key)) not in keep
        and not key.rsplit("/", 1)[-1].startswith(".")
    ]
    if gone:
        lake.storage.remove(gone)
        report.orphans_removed += len(gone)


def maintain(
    lake: Lake,
    *,
    retention: timedelta,
    orphan_age: timedelta = timedelta(days=1),
    closed_before: datetime | None = None,
    now: datetime | None = None,
) -> MaintenanceReport:
    """Compact closed partitions, expire old snapshots, remove orphan files: every table.

    ``closed_before``: partitions that ended before it are compacted (default: two hours
    ago, the batch's look-back for late events).
    """
    t0 = time.monotonic()
    now = now or datetime.now(UTC)
    closed_before = closed_before or now - timedelta(hours=2)
    out = MaintenanceReport()
    for name in lake.tables:
        r = out.tables[name] = TableReport()
        compact(lake, name, closed_before, r)
        expire_snapshots(lake, name, now - retention, r)
        remove_orphans(lake, name, orphan_age, r)
    out.seconds = time.monotonic() - t0
    return out
