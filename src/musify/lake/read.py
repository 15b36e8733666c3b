"""Reading the lake as its tables say: the files of given hours at one snapshot.

Readers never list folders. ``plan`` asks a table which data files hold the requested
event hours (partition pruning on the hour of ``ts``) at its current snapshot, or at a
snapshot named for reproducibility (time travel), and checks that every one of them is
there: a committed file that is missing fails the read, naming it; a file no snapshot
references is never read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from musify.lake.layout import Lake
from musify.lake.tables import LakeError

_HOUR_S = 3600


class MissingLakeFile(LakeError):
    """A file the table's metadata names is not in the lake's storage."""


@dataclass(frozen=True)
class Plan:
    """The data files of one table for some event hours, at one snapshot."""

    table: str
    snapshot_id: int | None  # None: the table has no snapshot yet (it is empty)
    files: dict[datetime, list[str]] = field(default_factory=dict)

    def paths(self) -> list[str]:
        return [p for h in sorted(self.files) for p in self.files[h]]

    @property
    def missing_hours(self) -> list[datetime]:
        return [h for h, paths in sorted(self.files.items()) if not paths]


def _hour_filter(hours: list[datetime]) -> str:
    first, last = min(hours), max(hours) + timedelta(hours=1)
    return f"ts >= '{first.isoformat()}' and ts < '{last.isoformat()}'"


def plan(lake: Lake, table: str, hours: list[datetime], snapshot_id: int | None = None) -> Plan:
    """The files of ``table`` holding events of ``hours`` (UTC, whole hours), at the
    table's current snapshot or at ``snapshot_id``; fails naming any missing file."""
    t = lake.tables.table(table, refresh=True)
    if snapshot_id is None:
        current = t.current_snapshot()
        snapshot_id = None if current is None else int(current.snapshot_id)
    wanted = {h.astimezone(UTC) for h in hours}
    files: dict[datetime, list[str]] = {h: [] for h in sorted(wanted)}
    if snapshot_id is None or not hours:
        return Plan(table, snapshot_id, files)
    by_hour: dict[datetime, list[str]] = defaultdict(list)
    for task in t.scan(
        row_filter=_hour_filter(sorted(wanted)), snapshot_id=snapshot_id
    ).plan_files():
        hour = datetime.fromtimestamp(int(task.file.partition[0]) * _HOUR_S, UTC)
        if hour in wanted:
            by_hour[hour].append(str(task.file.file_path))
    for h, paths in by_hour.items():
        files[h] = sorted(paths)
    check_present(lake, [p for paths in files.values() for p in paths], table, snapshot_id)
    return Plan(table, snapshot_id, files)


def files(
    lake: Lake, table: str, row_filter: str, snapshot_id: int | None = None, *, check: bool = True
) -> tuple[int | None, list[str]]:
    """The data files of ``table`` that may hold rows matching ``row_filter`` (pyiceberg's
    filter syntax; partition and column-statistics pruning), at the current snapshot or
    ``snapshot_id``; with ``check``, fails naming any missing file. Returns the snapshot
    id and the paths."""
    t = lake.tables.table(table, refresh=True)
    if snapshot_id is None:
        current = t.current_snapshot()
        snapshot_id = None if current is None else int(current.snapshot_id)
    if snapshot_id is None:
        return None, []
    paths = _scan_paths(t, snapshot_id, row_filter)
    if check:
        check_present(lake, paths, table, snapshot_id)
    return snapshot_id, paths


def check_present(lake: Lake, paths: list[str], table: str, snapshot_id: int | None) -> None:
    """Fail naming the first committed file the storage does not have."""
    if not paths:
        return
    for p in paths:
        if not lake.storage.uri_exists(p):
            raise MissingLakeFile(
                f"table {table} (snapshot {snapshot_id}) names the data file {p}, which is "
                "not in the lake: restore it (or repair the table) before loading"
            )


def distinct_events(
    lake: Lake, table: str, hours: list[datetime], snapshot_id: int | None = None
) -> tuple[dict[datetime, int], int | None]:
    """Distinct events (sessionId, itemInSession) per hour, read through the table at
    one snapshot; returns the counts and the snapshot id used."""
    import pyarrow as pa
    import pyarrow.compute as pc

    p = plan(lake, table, hours, snapshot_id)
    counts = dict.fromkeys(p.files, 0)
    paths = p.paths()
    if not paths:
        return counts, p.snapshot_id
    rows = lake.storage.read_parquet_uris(paths, ["ts", "sessionId", "itemInSession"])
    hour = pc.floor_temporal(rows.column("ts"), unit="hour")
    keyed = pa.table(
        {"hour": hour, "s": rows.column("sessionId"), "i": rows.column("itemInSession")}
    )
    distinct = keyed.group_by(["hour", "s", "i"]).aggregate([])
    for r in distinct.group_by("hour").aggregate([([], "count_all")]).to_pylist():
        h = r["hour"].astimezone(UTC)
        if h in counts:
            counts[h] = int(r["count_all"])
    return counts, p.snapshot_id


@dataclass(frozen=True)
class TimeRange:
    """Rows whose ``column`` (a timestamp) is in [start, end)."""

    column: str
    start: datetime
    end: datetime

    def filter(self) -> str:
        # Built from datetimes only (no user input reaches the filter text).
        start, end = self.start.astimezone(UTC).isoformat(), self.end.astimezone(UTC).isoformat()
        return f"{self.column} >= '{start}' and {self.column} < '{end}'"


_EPOCH_DAY = date(1970, 1, 1)
#: Seconds per partition value of the time transforms the lake's tables use.
_TRANSFORM_SECONDS = {"HourTransform": _HOUR_S, "DayTransform": 86_400}


class ManifestCache:
    """Plans a table's data files for a time range from its manifests, each manifest read
    once: manifests are immutable, so a reader planning every few seconds (the live
    section) reads only the manifests a commit wrote since, and its plans stay flat as the
    table's history grows. Without a usable partition (a hour or day of ``column``) or
    with delete files, it asks pyiceberg's planner instead (the same files or more: rows
    are always filtered by time after reading)."""

    def __init__(self, kept: int = 4096) -> None:
        self.kept = kept
        self._entries: OrderedDict[str, list[tuple[Any, str]]] = OrderedDict()
        self._lock = threading.Lock()
        #: Manifest files read (not from the cache) since this cache was made.
        self.manifests_read = 0

    def files(self, table: Any, snapshot_id: int, window: TimeRange) -> list[str]:
        from pyiceberg.manifest import ManifestContent

        snapshot = table.snapshot_by_id(snapshot_id)
        field_id = int(table.schema().find_field(window.column).field_id)
        # per partition spec: the position of the column's hour/day field and the range
        # of its values the window covers (a table has a few specs, a snapshot many
        # manifests)
        ranges: dict[int, tuple[int, int, int] | None] = {}
        for spec_id, spec in table.specs().items():
            ranges[spec_id] = None
            for i, f in enumerate(spec.fields):
                step = _TRANSFORM_SECONDS.get(type(f.transform).__name__)
                if f.source_id == field_id and step is not None:
                    first = int(window.start.timestamp()) // step
                    ranges[spec_id] = (i, first, (int(window.end.timestamp()) - 1) // step)
                    break
        paths: list[str] = []
        for manifest in snapshot.manifests(table.io):
            covered = ranges.get(manifest.partition_spec_id)
            if manifest.content != ManifestContent.DATA or covered is None:
                return _scan_paths(table, snapshot_id, window.filter())
            position, first, last = covered
            for partition, path in self._manifest(manifest, table.io):
                value = partition[position]
                if isinstance(value, date):
                    value = (value - _EPOCH_DAY).days
                if value is None or first <= int(value) <= last:
                    paths.append(path)
        return sorted(paths)

    def _manifest(self, manifest: Any, io: Any) -> list[tuple[Any, str]]:
        key = str(manifest.manifest_path)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        entries = [
            (e.data_file.partition, str(e.data_file.file_path))
            for e in manifest.fetch_manifest_entry(io, discard_deleted=True)
        ]
        with self._lock:
            self.manifests_read += 1
            self._entries[key] = entries
            while len(self._entries) > self.kept:
                self._entries.popitem(last=False)
        return entries


def _scan_paths(table: Any, snapshot_id: int, row_filter: str) -> list[str]:
    return sorted(
        str(task.file.file_path)
        for task in table.scan(row_filter=row_filter, snapshot_id=snapshot_id).plan_files()
    )
