"""Reading the lake as its tables say: the files of given hours at one snapshot.

Readers never list folders. ``plan`` asks a table which data files hold the requested
event hours (partition pruning on the hour of ``ts``) at its current snapshot, or at a
snapshot named for reproducibility (time travel), and checks that every one of them is
there: a committed file that is missing fails the read, naming it; a file no snapshot
references is never read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

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
    paths = sorted(
        str(task.file.file_path)
        for task in t.scan(row_filter=row_filter, snapshot_id=snapshot_id).plan_files()
    )
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
