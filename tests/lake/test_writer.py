"""The Spark-free lake writer commits into the tables, once per batch id."""

from __future__ import annotations

import duckdb

from musify.lake import Lake
from musify.lake.read import plan
from musify.lake.writer import arrow_schema, write_events
from tests.lake.conftest import T0, listen, rows


def test_writes_hour_partitions_and_commits_once(lake: Lake) -> None:
    evs = [listen(i, T0 + i * 1_800_000) for i in range(5)]  # 3 hours
    first = write_events(lake, {"listen_events": evs}, 3, first_offset={"listen_events": 100})
    again = write_events(lake, {"listen_events": evs}, 3)
    assert first.rows == {"listen_events": 5} and again.already_committed
    table = lake.tables.table("listen_events", refresh=True)
    assert table.properties["musify.last-batch"] == "3"
    summary = table.current_snapshot().summary
    assert summary["musify.batch-id"] == "3" and summary["musify.rows"] == "5"
    assert summary["musify.offsets"] == '{"0":[100,104]}'
    got = rows(lake, "listen_events")
    assert sorted(got.column("kafka_offset").to_pylist()) == list(range(100, 105))
    # one file per event hour, each planned under its own hour
    from datetime import UTC, datetime, timedelta

    start = datetime.fromtimestamp(T0 / 1000, UTC)
    p = plan(lake, "listen_events", [start + timedelta(hours=h) for h in range(4)])
    assert [len(p.files[start + timedelta(hours=h)]) for h in range(4)] == [1, 1, 1, 0]
    # what DuckDB reads from the planned files is the same
    files = ", ".join(f"'{f}'" for f in p.paths())
    assert duckdb.connect().execute(f"select count(*) from read_parquet([{files}])").fetchall() == [
        (5,)
    ]


def test_unknown_fields_go_to_extra(lake: Lake) -> None:
    write_events(lake, {"listen_events": [listen(0, T0, mood="calm")]}, 0)
    assert rows(lake, "listen_events").column("extra").to_pylist() == ['{"mood":"calm"}']


def test_schema_follows_the_event_schema() -> None:
    schema = arrow_schema("status_change_events")
    assert "page" in schema.names and schema.names[-2:] == ["ingested_at", "extra"]
