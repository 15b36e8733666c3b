"""Loading lake hours into the DuckDB raw tables: idempotent, late data, corrupt files."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.sim import GenerateOptions, MemorySink, plan_run, run
from musify.sim.config import BUILTIN_CONFIG
from musify.warehouse.duckdb_engine import CorruptLakeFile, DuckDBWarehouse, hours_between
from musify.warehouse.raw import lake_columns

START = datetime(2024, 3, 18, tzinfo=UTC)
_ARROW = {
    "string": pa.string(),
    "int": pa.int32(),
    "long": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", "UTC"),
}


def events(cache: Path, users: int = 200, hours: int = 6) -> dict[str, list[dict[str, Any]]]:
    plan = plan_run(
        GenerateOptions(
            config=BUILTIN_CONFIG,
            n_users=users,
            start=START,
            days=hours / 24,
            seed=4,
            workers=1,
            cache_dir=cache,
        )
    )
    sink = MemorySink()
    run(plan, sink)
    return {t: [orjson.loads(x) for x in sink.lines[t]] for t in TOPIC_NAMES}


def write_lake(
    lake: Lake, topic: str, evs: list[dict[str, Any]], batch: int = 0, offset0: int = 0
) -> None:
    """Files as the stream commits them: one per hour, lake columns, batch-named."""
    by_hour: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    for e in evs:
        ts = datetime.fromtimestamp(e["ts"] / 1000, UTC)
        by_hour[ts.replace(minute=0, second=0)].append(e)
    cols = lake_columns(topic)
    for n, (hour, rows) in enumerate(sorted(by_hour.items())):
        data: dict[str, list[Any]] = {c: [] for c, _ in cols}
        for i, e in enumerate(rows):
            for c, _ in cols:
                v = e.get(c)
                if c in ("ts", "registration") and v is not None:
                    v = datetime.fromtimestamp(v / 1000, UTC)
                data[c].append(v)
            data["kafka_partition"][-1] = 0
            data["kafka_offset"][-1] = offset0 + i
            data["kafka_timestamp"][-1] = hour
            data["ingested_at"][-1] = hour
        table = pa.table({c: pa.array(data[c], _ARROW[t]) for c, t in cols})
        d = lake.hour_dir(topic, f"{hour:%Y-%m-%d}", hour.hour)
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, d / f"part-b{batch:012d}-{n:05d}.parquet")


@pytest.fixture
def lake_and_events(tmp_path: Path, musify_cache: Path) -> tuple[Lake, dict[str, Any]]:
    lake = Lake(tmp_path / "lake")
    evs = events(musify_cache)
    for t in TOPIC_NAMES:
        write_lake(lake, t, evs[t])
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
    write_lake(lake, "listen_events", late, batch=7, offset0=10**6)
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
    bad = (
        lake.hour_dir("page_view_events", f"{START:%Y-%m-%d}", 3)
        / "part-b000000000009-00000.parquet"
    )
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(CorruptLakeFile, match=str(bad)):
        wh.load_hours(lake, hours)
    assert snapshot(wh) == before
    bad.unlink()  # the fix: a re-run succeeds
    wh.load_hours(lake, hours)
    assert snapshot(wh) == before
