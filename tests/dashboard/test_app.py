"""The page, headless (Streamlit's AppTest): every warehouse state, numbers, filters."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from musify.dashboard import app as app_module
from musify.settings import Settings
from tests.dashboard.conftest import APP, FIRST_DAY, LAST_DAY, Facts, metrics, midnight, text
from tests.dashboard.warehouse_writer import writer_holding

STREAMS = (
    "select count(*) from analytics.fact_streams f"
    " join analytics.dim_location l using (location_key)"
    " where f.event_hour >= ? and f.event_hour < ? and (cast(? as varchar) is null"
    " or l.state_code = ?)"
)
USERS = (
    "select count(distinct f.user_id) from analytics.fact_page_views f"
    " join analytics.dim_location l using (location_key)"
    " where f.event_hour >= ? and f.event_hour < ? and (cast(? as varchar) is null"
    " or l.state_code = ?)"
)


def run_app(settings: Settings, use: Callable[[Settings], None]) -> AppTest:
    use(settings)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="session")
def empty_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Built by the pipeline from an empty lake: every mart exists, none has a row."""
    from musify.batch import run_batch

    settings = Settings(home=tmp_path_factory.mktemp("empty-home"))
    start = datetime(2024, 3, 18, tzinfo=UTC)
    run_batch(settings, start, start + timedelta(hours=1), lookback_hours=0)
    return settings


def test_no_warehouse_explains_how_to_fill_it(tmp_path: Path, musify_env: Any) -> None:
    at = run_app(Settings(home=tmp_path / "home"), musify_env)
    body = text(at)
    assert "There is no warehouse yet" in body
    assert "musify batch" in body and "musify up" in body
    assert str(tmp_path / "home" / "warehouse.duckdb") in body
    assert not at.metric
    assert not (tmp_path / "home" / "warehouse.duckdb").exists()


def test_warehouse_without_marts(tmp_path: Path, musify_env: Any) -> None:
    settings = Settings(home=tmp_path)
    duckdb.connect(str(settings.warehouse_path)).close()
    at = run_app(settings, musify_env)
    body = text(at)
    assert "no dashboard marts yet" in body
    assert "mart_user_activity_hourly" in body
    assert not at.metric


@pytest.mark.slow
def test_built_but_empty_warehouse(empty_warehouse: Settings, musify_env: Any) -> None:
    at = run_app(empty_warehouse, musify_env)
    assert "holds no streams yet" in text(at)
    assert not at.metric


@pytest.mark.slow
def test_numbers_equal_the_facts_and_follow_the_filters(
    warehouse: Settings, facts: Facts, musify_env: Any
) -> None:
    at = run_app(warehouse, musify_env)
    day = midnight(LAST_DAY)
    nxt = day + timedelta(days=1)

    def expect(state: str | None, start: datetime, end: datetime) -> dict[str, str]:
        streams = facts.one(STREAMS, [end - timedelta(days=1), end, state, state])
        return {
            "Streams today": f"{streams:,}",
            "Total users": f"{facts.one(USERS, [datetime(2000, 1, 1), end, state, state]):,}",
            "Active users": f"{facts.one(USERS, [start, end, state, state]):,}",
        }

    # default: all states, the newest day
    assert at.date_input(key="dates").value == (LAST_DAY, LAST_DAY)
    assert metrics(at) == expect(None, day, nxt)
    top = facts.rows(
        "select s.title from analytics.fact_streams f join analytics.dim_songs s using (song_key)"
        " where f.event_hour >= ? group by s.song_key, s.title, s.artist"
        " order by count(*) desc, s.title, s.artist, s.song_key limit 1",
        [day],
    )[0][0]
    chart = next(m.value for m in at.markdown if 'data-ranking="song"' in m.value)
    assert f"<td>{top} " in chart.split("<tbody>")[1].split("</tr>")[0]
    assert "newest hour in the marts" in text(at)  # no publish records: says so

    # one state
    state = facts.busiest_state()
    at.selectbox(key="state").select(state).run()
    assert not at.exception
    assert metrics(at) == expect(state, day, nxt)
    assert metrics(at)["Active users"] != expect(None, day, nxt)["Active users"]

    # both days, one state
    at.date_input(key="dates").set_value((FIRST_DAY, LAST_DAY)).run()
    assert not at.exception
    assert metrics(at) == expect(state, midnight(FIRST_DAY), nxt)

    # back to all states
    at.selectbox(key="state").select("").run()
    assert metrics(at) == expect(None, midnight(FIRST_DAY), nxt)


@pytest.mark.slow
def test_busy_warehouse_shows_last_results_or_a_note(
    warehouse: Settings, tmp_path: Path, musify_env: Any
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(warehouse.warehouse_path, home / "warehouse.duckdb")
    settings = Settings(home=home)
    # no results yet while a batch writes: a note, no numbers, no error
    with writer_holding(settings.warehouse_path):
        at = run_app(settings, musify_env)
        assert "warehouse is busy" in text(at)
        assert not at.metric
    # results read once, then a batch starts writing: the last results, marked
    at = run_app(settings, musify_env)
    before = metrics(at)
    con = duckdb.connect(str(settings.warehouse_path))
    con.execute("create table analytics.touched as select 1 as x")  # a new data version
    con.close()
    with writer_holding(settings.warehouse_path):
        at.run()
        assert not at.exception
        assert metrics(at) == before
        assert "warehouse busy, refreshing" in text(at)


def test_freshness_line_names_the_published_hour_and_the_stream(tmp_path: Path) -> None:
    import time as time_

    from musify.dashboard.queries import Published
    from musify.stream.status import StatusRecord, record

    settings = Settings(home=tmp_path)
    now = datetime.now(UTC).replace(tzinfo=None)
    published = Published(datetime(2024, 3, 19, 11), now - timedelta(minutes=5), "published_hours")
    line = app_module._freshness_line(published, settings)
    assert "last published hour: 2024-03-19 11:00 UTC, published 5 min ago" in line
    assert "stream not running, no micro-batch yet" in line
    record(settings, StatusRecord(batch_id=3, lag=12, freshness_s=95.0, epoch=time_.time() - 30))
    line = app_module._freshness_line(Published(datetime(2024, 3, 19, 11), None, "marts"), settings)
    assert "newest hour in the marts: 2024-03-19 11:00 UTC (no publish records yet)" in line
    assert "lag 12 messages" in line and "newest event 95 s old" in line
    assert "last micro-batch 30 s ago" in line


@pytest.mark.slow
def test_the_default_day_follows_new_data_a_chosen_range_stays(
    warehouse: Settings, tmp_path: Path, musify_env: Any
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(warehouse.warehouse_path, home / "warehouse.duckdb")
    settings = Settings(home=home)
    at = run_app(settings, musify_env)
    assert at.date_input(key="dates").value == (LAST_DAY, LAST_DAY)
    assert not at.warning and not at.exception

    def add_a_day() -> None:
        con = duckdb.connect(str(settings.warehouse_path))
        con.execute(
            "insert into analytics.mart_hourly_activity (hour, state_code, streams, active_users)"
            " select hour + interval 1 day, state_code, streams, active_users"
            " from analytics.mart_hourly_activity where hour = (select max(hour)"
            " from analytics.mart_hourly_activity)"
        )
        con.close()

    add_a_day()
    at.run()
    newest = LAST_DAY + timedelta(days=1)
    assert at.date_input(key="dates").value == (newest, newest)
    at.date_input(key="dates").set_value((FIRST_DAY, LAST_DAY)).run()
    add_a_day()
    at.run()
    assert at.date_input(key="dates").value == (FIRST_DAY, LAST_DAY)
    assert not at.warning and not at.exception
