"""Loading lake hours into the DuckDB raw tables: idempotent, late data, corrupt files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.lake.read import MissingLakeFile, plan
from musify.lake.writer import write_events
from musify.warehouse.duckdb_engine import CorruptLakeFile, DuckDBWarehouse, hours_between
from tests.warehouse.lake_events import START, events, late_listen


@pytest.fixture
def lake_and_events(tmp_path: Path, musify_cache: Path) -> tuple[Lake, dict[str, Any]]:
    lake = Lake(tmp_path / "lake")
    evs = events(musify_cache)
    write_events(lake, evs, 0)
    return lake, evs


def snapshot(wh: DuckDBWarehouse) -> dict[str, list[Any]]:
    return {
        t: wh.con.execute(f"select * exclude (loaded_at) from raw.{t} order by all").fetchall()
        for t in TOPIC_NAMES
    }


def test_load_is_idempotent(tmp_path: Path, lake_and_events: Any) -> None:
    lake, evs = lake_and_events
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    hours = hours_between(START, START + timedelta(hours=6))
    r1 = wh.load_hours(lake, hours)
    assert {t: r1.total(t) for t in TOPIC_NAMES} == {t: len(evs[t]) for t in TOPIC_NAMES}
    first = snapshot(wh)
    wh.load_hours(lake, hours)
    wh.load_hours(lake, hours[2:4])
    assert snapshot(wh) == first
    assert wh.raw_count("listen_events", START, START + timedelta(hours=6)) == len(
        evs["listen_events"]
    )


def test_missing_hours_load_zero_rows(tmp_path: Path, lake_and_events: Any) -> None:
    lake, _ = lake_and_events
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    later = START + timedelta(days=3)
    r = wh.load_hours(lake, [later])
    assert r.total() == 0 and r.missing_hours == (f"{later:%Y-%m-%dT%H}",)


def test_late_events_are_picked_up_once(
    tmp_path: Path, lake_and_events: Any, musify_cache: Path
) -> None:
    lake, evs = lake_and_events
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    hours = hours_between(START, START + timedelta(hours=6))
    wh.load_hours(lake, hours)
    # a later micro-batch brings events of an hour already loaded
    late = [dict(e, sessionId=e["sessionId"] + 10**9) for e in evs["listen_events"][:5]]
    write_events(lake, {"listen_events": late}, 7, first_offset={"listen_events": 10**6})
    late_hours = sorted(
        {datetime.fromtimestamp(e["ts"] / 1000, UTC).replace(minute=0, second=0) for e in late}
    )
    wh.load_hours(lake, late_hours)
    wh.load_hours(lake, late_hours)
    assert (
        wh.raw_count("listen_events", START, START + timedelta(hours=6))
        == len(evs["listen_events"]) + 5
    )


def test_corrupt_file_fails_by_name_and_changes_nothing(
    tmp_path: Path, lake_and_events: Any
) -> None:
    lake, _ = lake_and_events
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    hours = hours_between(START, START + timedelta(hours=6))
    wh.load_hours(lake, hours)
    before = snapshot(wh)
    bad = Path(plan(lake, "page_view_events", [START + timedelta(hours=3)]).paths()[0])
    good = bad.read_bytes()
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(CorruptLakeFile, match=str(bad)):
        wh.load_hours(lake, hours)
    assert snapshot(wh) == before
    bad.write_bytes(good)  # the fix: a re-run succeeds
    wh.load_hours(lake, hours)
    assert snapshot(wh) == before


def test_only_committed_files_load_and_a_missing_one_fails_by_name(
    tmp_path: Path, lake_and_events: Any
) -> None:
    """A stray file no commit names is not loaded; a committed file deleted by hand
    fails the load naming it, and the warehouse keeps the hour's rows."""
    lake, _ = lake_and_events
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    hours = hours_between(START, START + timedelta(hours=6))
    wh.load_hours(lake, hours)
    before = snapshot(wh)
    committed = Path(plan(lake, "listen_events", [START + timedelta(hours=2)]).paths()[0])
    stray = committed.with_name("part-stray.parquet")
    stray.write_bytes(committed.read_bytes())
    wh.load_hours(lake, hours)
    assert snapshot(wh) == before
    committed.unlink()
    with pytest.raises(MissingLakeFile, match=str(committed)):
        wh.load_hours(lake, hours)
    assert snapshot(wh) == before


def test_a_writer_waits_for_the_file_lock_then_fails_clearly(tmp_path: Path) -> None:
    """Another process holding the DuckDB file (a dashboard read, a second batch): the
    batch's writer waits for it, and names the file when it waited too long."""
    import subprocess
    import sys

    from musify.warehouse.duckdb_engine import DuckDBWarehouse, WarehouseLocked

    path = tmp_path / "warehouse.duckdb"
    first = DuckDBWarehouse(path)
    first.ensure_raw_tables()
    first.close()
    holder = (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
        "print('held', flush=True); time.sleep(float(sys.argv[2]))"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder, str(path), "1.5"], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(WarehouseLocked, match=str(path)):
            DuckDBWarehouse(path, lock_wait_s=0.2).ensure_raw_tables()
        waiting = DuckDBWarehouse(path, lock_wait_s=60)
        waiting.ensure_raw_tables()  # opens once the holder exits
        waiting.close()
        assert proc.wait() == 0


def test_unknown_fields_reach_raw_and_older_warehouses_gain_the_column(
    tmp_path: Path, lake_and_events: Any
) -> None:
    import pyarrow.parquet as pq

    lake, evs = lake_and_events
    path = tmp_path / "wh.duckdb"
    wh = DuckDBWarehouse(path)
    # a raw table as an earlier version made it, before the lake had `extra`
    wh.con.execute("create schema raw")
    wh.con.execute("create table raw.listen_events (sessionId bigint, event_hour timestamp)")
    # a lake file an earlier version wrote, without the column
    old = next((lake.local_root / "listen_events").rglob("*.parquet"))
    pq.write_table(pq.read_table(old).drop_columns(["extra"]), old)
    odd = [dict(e, sessionId=-e["sessionId"], mood="calm") for e in evs["listen_events"][:3]]
    write_events(lake, {"listen_events": odd}, 8, first_offset={"listen_events": 10**6})
    hours = hours_between(START, START + timedelta(hours=6))
    wh.load_hours(lake, hours)
    got = wh.con.execute(
        "select sessionId < 0, count(*), count(extra), any_value(extra) "
        "from raw.listen_events group by all order by all"
    ).fetchall()
    assert got == [(False, len(evs["listen_events"]), 0, None), (True, 3, 3, '{"mood":"calm"}')]


def test_hours_unchanged_since_loaded_are_found_and_late_files_change_them(
    tmp_path: Path, lake_and_events: Any
) -> None:
    from musify.warehouse.base import unchanged_hours

    lake, evs = lake_and_events
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    hours = hours_between(START, START + timedelta(hours=3))
    wh.load_hours(lake, hours)
    loaded = wh.loaded_snapshots(hours[0], hours[-1] + timedelta(hours=1))
    assert unchanged_hours(lake, hours, loaded) == set(hours)
    # a late listen of hour 1, in a new lake batch: hour 1 changed, the others did not
    write_events(
        lake,
        {"listen_events": [late_listen(evs, hours[1])]},
        1,
        first_offset={"listen_events": 10**6},
    )
    assert unchanged_hours(lake, hours, loaded) == {hours[0], hours[2]}
    # rows from a snapshot the table no longer knows, or none at all: not provably the same
    unknown = {h: {**t, "listen_events": 12345} for h, t in loaded.items()}
    assert unchanged_hours(lake, hours, unknown) == set()
    assert unchanged_hours(lake, hours, {}) == set()
