"""The BigQuery engine on the bqemulator emulator: load jobs, and the same dbt project."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from musify.batch import run_batch
from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.lake.read import plan
from musify.lake.writer import write_events
from musify.settings import Settings
from musify.warehouse import open_warehouse
from musify.warehouse.base import CorruptLakeFile, hours_between
from musify.warehouse.bigquery_engine import BQ_TYPES, BigQueryWarehouse, bigquery_schema
from musify.warehouse.raw import raw_columns
from tests.conftest import shared_file
from tests.warehouse.lake_events import START, events

SIX_HOURS = hours_between(START, START + timedelta(hours=6))
#: Working tables that hold one run's delta by design.
RUN_DELTAS = {"int_dim_users_changes"}


def test_raw_schema_is_derived_from_the_event_schema() -> None:
    for topic in TOPIC_NAMES:
        fields = bigquery_schema(raw_columns(topic))
        assert [f.name for f in fields] == [n for n, _ in raw_columns(topic)]
        assert [f.field_type for f in fields] == [BQ_TYPES[t] for _, t in raw_columns(topic)]
    ts = {f.name: f.field_type for f in bigquery_schema(raw_columns("listen_events"))}
    assert ts["ts"] == ts["event_hour"] == "TIMESTAMP" and ts["sessionId"] == "INT64"


def _wh(settings: Settings) -> BigQueryWarehouse:
    wh = open_warehouse(settings)
    assert isinstance(wh, BigQueryWarehouse)
    return wh


def raw_snapshot(wh: BigQueryWarehouse) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for topic in TOPIC_NAMES:
        cols = ", ".join(f"`{n}`" for n, _ in raw_columns(topic) if n != "loaded_at")
        rows = wh.query(f"SELECT {cols} FROM {wh.sql_table(topic)}")
        out[topic] = sorted((tuple(r.values()) for r in rows), key=repr)
    return out


def test_load_jobs_idempotent_late_and_corrupt(
    bq_settings: Settings, tmp_path: Path, musify_cache: Path
) -> None:
    lake = Lake(tmp_path / "lake")
    evs = events(musify_cache)
    write_events(lake, evs, 0)
    wh = _wh(bq_settings)
    try:
        first = wh.load_hours(lake, SIX_HOURS)
        assert {t: first.total(t) for t in TOPIC_NAMES} == {t: len(evs[t]) for t in TOPIC_NAMES}
        before = raw_snapshot(wh)
        wh.load_hours(lake, SIX_HOURS)
        wh.load_hours(lake, SIX_HOURS[2:4])
        assert raw_snapshot(wh) == before
        # a missing hour: zero rows, reported
        later = START + timedelta(days=3)
        assert wh.load_hours(lake, [later]).missing_hours == (f"{later:%Y-%m-%dT%H}",)
        # late events of a loaded hour, in a new lake batch: picked up once
        late = [dict(e, sessionId=e["sessionId"] + 10**9) for e in evs["listen_events"][:5]]
        write_events(lake, {"listen_events": late}, 7, first_offset={"listen_events": 10**6})
        wh.load_hours(lake, SIX_HOURS)
        wh.load_hours(lake, SIX_HOURS)
        end = START + timedelta(hours=6)
        assert wh.raw_count("listen_events", START, end) == len(evs["listen_events"]) + 5
        with_late = raw_snapshot(wh)
        # a corrupt file fails by name and changes nothing; after the fix, a re-run works
        bad = Path(plan(lake, "page_view_events", SIX_HOURS[3:4]).paths()[0])
        good = bad.read_bytes()
        bad.write_bytes(b"PAR1 this is not parquet")
        with pytest.raises(CorruptLakeFile, match=str(bad)):
            wh.load_hours(lake, SIX_HOURS)
        assert raw_snapshot(wh) == with_late
        bad.write_bytes(good)
        wh.load_hours(lake, SIX_HOURS)
        assert raw_snapshot(wh) == with_late
        # no staging table is left behind
        tables = {t.table_id for t in wh.client.list_tables(f"{wh.project}.{wh.dataset}")}
        assert tables == {*TOPIC_NAMES, "song_metadata"}
    finally:
        wh.close()


def test_song_metadata_is_loaded_once_per_file(bq_settings: Settings) -> None:
    songs = shared_file("eventsim", "songs.csv")
    wh = _wh(bq_settings)
    try:
        assert wh.load_song_metadata(songs) is True
        assert wh.load_song_metadata(songs) is False  # same content: nothing to do
        rows = wh.query(
            f"SELECT COUNT(*) AS n, COUNT(DISTINCT track_id) AS tracks, MAX(year) AS year "
            f"FROM {wh.sql_table('song_metadata')}"
        )
        assert rows[0]["n"] == 10_000 and rows[0]["year"] >= 2000
    finally:
        wh.close()


def analytics_snapshot(wh: BigQueryWarehouse, dataset: str) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in wh.client.list_tables(f"{wh.project}.{dataset}"):
        if table.table_type != "TABLE" or table.table_id in RUN_DELTAS:
            continue
        rows = wh.query(f"SELECT * FROM `{wh.project}.{dataset}.{table.table_id}`")
        out[table.table_id] = sorted((tuple(r.values()) for r in rows), key=repr)
    return out


@pytest.mark.slow
def test_dbt_project_builds_on_bigquery_reconciled_and_idempotent(
    bq_settings: Settings, musify_cache: Path
) -> None:
    settings = bq_settings
    lake = Lake(Path(settings.lake_root))
    evs = events(musify_cache, users=300, hours=6)
    write_events(lake, evs, 0)
    end = START + timedelta(hours=6)
    first = run_batch(settings, START, end, lookback_hours=0)
    assert first.as_dict()["rows"] == {t: len(evs[t]) for t in TOPIC_NAMES}

    wh = _wh(settings)
    try:
        dataset = settings.bq_dataset

        def count(table: str) -> int:
            sql = f"SELECT COUNT(*) AS n FROM `{wh.project}.{dataset}.{table}`"
            return int(wh.query(sql)[0]["n"])

        # facts reconcile with the lake (the generator's events are distinct)
        assert count("fact_streams") == len(evs["listen_events"]) > 100
        assert count("fact_page_views") == len(evs["page_view_events"])
        assert count("fact_auth") == len(evs["auth_events"])
        assert count("fact_status_changes") == len(evs["status_change_events"])
        sessions = {e["sessionId"] for e in evs["page_view_events"]}
        assert count("fact_sessions") == len(sessions)
        identified = {e["userId"] for e in evs["page_view_events"] if e.get("userId") is not None}
        current = f"SELECT COUNT(*) AS n FROM `{wh.project}.{dataset}.dim_users` WHERE is_current"
        assert int(wh.query(current)[0]["n"]) == len(identified)
        hours = {
            datetime.fromtimestamp(e["ts"] // 3_600_000 * 3600, UTC)
            for e in evs["page_view_events"]
        }
        assert count("dim_datetime") == int((max(hours) - min(hours)).total_seconds() // 3600) + 1
        before = analytics_snapshot(wh, dataset)
        assert {"fact_streams", "dim_users", "mart_hourly_activity"} <= before.keys()

        # an hourly batch with its look-back over hours already loaded: nothing changes
        run_batch(settings, START + timedelta(hours=4), START + timedelta(hours=5))
        assert analytics_snapshot(wh, dataset) == before
    finally:
        wh.close()
