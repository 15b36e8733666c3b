"""Readers trust the tables' metadata only: planned files of an hour, a missing committed
file named, a file nobody committed ignored, an earlier snapshot read again exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from musify.lake import Lake
from musify.lake.read import MissingLakeFile, distinct_events, plan
from musify.lake.writer import write_events
from tests.lake.conftest import T0, listen

START = datetime.fromtimestamp(T0 / 1000, UTC)
HOURS = [START + timedelta(hours=h) for h in range(3)]


def _lake(lake: Lake) -> None:
    evs = [listen(i, T0 + i * 1_800_000) for i in range(6)]  # 2 per hour, hours 0..2
    write_events(lake, {"listen_events": evs}, 0)


def test_a_stray_file_nobody_committed_is_not_read(lake: Lake) -> None:
    _lake(lake)
    p = plan(lake, "listen_events", HOURS)
    stray = Path(p.files[HOURS[1]][0]).with_name("part-stray.parquet")
    pq.write_table(pq.read_table(p.files[HOURS[1]][0]), stray)
    again = plan(lake, "listen_events", HOURS)
    assert str(stray) not in again.paths() and again.files == p.files
    counts, _ = distinct_events(lake, "listen_events", HOURS)
    assert counts == dict.fromkeys(HOURS, 2)


def test_a_missing_committed_file_fails_naming_it(lake: Lake) -> None:
    _lake(lake)
    gone = plan(lake, "listen_events", HOURS).files[HOURS[2]][0]
    Path(gone).unlink()
    with pytest.raises(MissingLakeFile, match=gone):
        plan(lake, "listen_events", HOURS)
    # hours that do not need the file still plan
    assert plan(lake, "listen_events", HOURS[:2]).files[HOURS[0]]


def test_an_earlier_snapshot_reads_exactly_what_it_held(lake: Lake) -> None:
    _lake(lake)
    before = plan(lake, "listen_events", HOURS).snapshot_id
    late = [listen(100 + i, T0 + 60_000 * i) for i in range(3)]  # hour 0, later
    write_events(lake, {"listen_events": late}, 1, first_offset={"listen_events": 6})
    now, current = distinct_events(lake, "listen_events", HOURS)
    then, used = distinct_events(lake, "listen_events", HOURS, before)
    assert used == before != current
    assert then[HOURS[0]] == 2 and now[HOURS[0]] == 5


def test_an_empty_table_plans_nothing(lake: Lake) -> None:
    p = plan(lake, "auth_events", HOURS)
    assert p.snapshot_id is None and p.paths() == [] and p.missing_hours == HOURS


def test_the_manifest_cache_plans_what_pyiceberg_plans_reading_each_manifest_once(
    lake: Lake,
) -> None:
    from musify.lake.read import ManifestCache, TimeRange, _scan_paths

    _lake(lake)
    for batch in range(1, 4):  # more commits, some of them to an hour already there
        later = [listen(100 * batch + i, T0 + (batch + i) * 1_800_000) for i in range(3)]
        write_events(lake, {"listen_events": later}, batch)
    table = lake.tables.table("listen_events", refresh=True)
    snapshot = int(table.current_snapshot().snapshot_id)
    cache = ManifestCache()
    windows = [
        TimeRange("ts", HOURS[0], HOURS[1]),
        TimeRange("ts", HOURS[1], HOURS[2] + timedelta(hours=2)),
        TimeRange("ts", HOURS[0] - timedelta(days=1), HOURS[0]),  # before everything
    ]
    for w in windows:
        assert cache.files(table, snapshot, w) == _scan_paths(table, snapshot, w.filter())
    read = cache.manifests_read
    assert 0 < read <= len(table.current_snapshot().manifests(table.io))
    cache.files(table, snapshot, windows[1])
    assert cache.manifests_read == read  # nothing read again

    # a compaction replaces an hour's files: the new snapshot plans the new file only
    from musify.lake.maintenance import TableReport, compact

    compact(lake, "listen_events", HOURS[2] + timedelta(hours=3), TableReport())
    table = lake.tables.table("listen_events", refresh=True)
    compacted = int(table.current_snapshot().snapshot_id)
    for w in windows:
        assert cache.files(table, compacted, w) == _scan_paths(table, compacted, w.filter())
    assert len(cache.files(table, compacted, windows[0])) == 1
