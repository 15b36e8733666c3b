"""The Spark-free lake writer commits files a glob reader counts exactly once."""

from __future__ import annotations

from pathlib import Path

import duckdb

from musify.lake import Lake, committed_batches
from musify.lake.writer import arrow_schema, write_events

T0 = 1_710_720_000_000  # 2024-03-18T00:00Z in ms


def _listen(i: int, ts: int) -> dict[str, object]:
    return {
        "artist": "A",
        "song": f"S{i}",
        "duration": 200.0,
        "ts": ts,
        "sessionId": 1,
        "auth": "Logged In",
        "level": "free",
        "itemInSession": i,
        "city": "X",
        "zip": "00000",
        "state": "CA",
        "userAgent": "ua",
        "lon": 0.0,
        "lat": 0.0,
        "userId": 1,
        "lastName": "L",
        "firstName": "F",
        "gender": "F",
        "registration": T0,
    }


def test_writes_hour_partitions_and_commits_once(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    evs = [_listen(i, T0 + i * 1_800_000) for i in range(5)]  # 3 hours
    first = write_events(lake, {"listen_events": evs}, 3, first_offset={"listen_events": 100})
    again = write_events(lake, {"listen_events": evs}, 3)
    assert first.rows == {"listen_events": 5} and again.already_committed
    assert committed_batches(lake) == {3}
    hours = sorted(p.parent.name for p in lake.topic_dir("listen_events").rglob("*.parquet"))
    assert hours == ["hour=00", "hour=01", "hour=02"]
    rows = duckdb.sql(
        f"select kafka_offset, ts from read_parquet('{lake.glob('listen_events')}') order by 1"
    ).fetchall()
    assert [r[0] for r in rows] == list(range(100, 105))
    assert lake.storage.list("_staging") == []


def test_schema_follows_the_event_schema() -> None:
    schema = arrow_schema("status_change_events")
    assert "page" in schema.names and schema.names[-2:] == ["ingested_at", "extra"]
