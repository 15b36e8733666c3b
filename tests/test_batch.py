"""musify batch: lake hours → raw tables → dbt build, reconciled and idempotent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from musify.batch import DbtError, run_batch
from musify.errors import UsageError
from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.lake.writer import write_events
from musify.settings import Settings
from tests.warehouse.lake_events import START, events

pytestmark = [pytest.mark.slow]

TABLES = (
    "fact_streams",
    "fact_page_views",
    "fact_sessions",
    "dim_users",
    "mart_hourly_activity",
    "mart_top_songs_daily",
)


def dump(path: Path) -> dict[str, list[Any]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            t: con.execute(f"select * from analytics.{t} order by all").fetchall() for t in TABLES
        }
    finally:
        con.close()


def test_batch_builds_reconciled_star_schema(tmp_path: Path, musify_cache: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    lake = Lake(Path(settings.lake_root))
    evs = events(musify_cache, users=300, hours=6)
    write_events(lake, evs, 0)
    first = run_batch(settings, START, START + timedelta(hours=6), lookback_hours=0)
    assert first.as_dict()["rows"] == {t: len(evs[t]) for t in TOPIC_NAMES}
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    streams = con.execute("select count(*) from analytics.fact_streams").fetchone()
    views = con.execute("select count(*) from analytics.fact_page_views").fetchone()
    con.close()
    assert streams == (len(evs["listen_events"]),)
    assert views == (len(evs["page_view_events"]),)
    before = dump(settings.warehouse_path)
    # the same hours again, and one hour with its look-back: nothing changes
    run_batch(settings, START, START + timedelta(hours=6), lookback_hours=0)
    run_batch(settings, START + timedelta(hours=4), START + timedelta(hours=5))
    assert dump(settings.warehouse_path) == before
    # a missing hour is not an error
    empty = run_batch(
        settings, START + timedelta(days=5), START + timedelta(days=5, hours=1), lookback_hours=0
    )
    assert sum(empty.as_dict()["rows"].values()) == 0 and empty.missing_hours

    # A warehouse built by other models (an upgrade changed a fact's columns): the batch
    # says what to do, and --full-refresh rebuilds it to the same tables.
    con = duckdb.connect(str(settings.warehouse_path))
    last = con.execute(
        "select column_name from information_schema.columns where table_schema = 'analytics' "
        "and table_name = 'fact_streams' order by ordinal_position desc limit 1"
    ).fetchone()
    assert last is not None
    con.execute(f'alter table analytics.fact_streams drop column "{last[0]}"')
    con.close()
    with pytest.raises(DbtError, match="musify batch --full-refresh"):
        run_batch(settings, START + timedelta(hours=4), START + timedelta(hours=5))
    run_batch(settings, START, START + timedelta(hours=6), lookback_hours=0, full_refresh=True)
    assert dump(settings.warehouse_path) == before


def test_window_must_be_on_the_hour(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not on the hour"):
        run_batch(Settings(home=tmp_path), START + timedelta(minutes=5), START + timedelta(hours=1))
