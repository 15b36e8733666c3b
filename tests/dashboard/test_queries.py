"""Every tile's query against the same figure computed straight from the facts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from musify.dashboard import queries as q
from musify.settings import Settings
from musify.warehouse import Session
from musify.warehouse.duckdb_engine import DuckDBWarehouse
from tests.dashboard.conftest import FIRST_DAY, LAST_DAY, Facts, midnight

pytestmark = [pytest.mark.slow]

STREAMS = (
    "from analytics.fact_streams f"
    " left join analytics.dim_location l on l.location_key = f.location_key"
)
VIEWS = (
    "from analytics.fact_page_views f"
    " left join analytics.dim_location l on l.location_key = f.location_key"
)
IN_STATE = "(cast(? as varchar) is null or l.state_code = ?)"


@pytest.fixture(scope="module")
def session(warehouse: Settings) -> Iterator[Session]:
    with DuckDBWarehouse(warehouse.warehouse_path).session() as s:
        yield s


@pytest.fixture(params=["all-both-days", "state-last-day", "all-first-day"])
def filters(request: pytest.FixtureRequest, facts: Facts) -> q.Filters:
    if request.param == "all-both-days":
        return q.Filters(FIRST_DAY, LAST_DAY)
    if request.param == "state-last-day":
        return q.Filters(LAST_DAY, LAST_DAY, facts.busiest_state())
    return q.Filters(FIRST_DAY, FIRST_DAY)


def window(f: q.Filters) -> list[object]:
    """Parameters: range start, range end, state, state."""
    return [midnight(f.start), midnight(f.end + timedelta(days=1)), f.state, f.state]


def test_readiness_and_bounds(session: Session, facts: Facts) -> None:
    assert q.readiness(session).ready
    b = q.bounds(session)
    assert b is not None
    lo, hi = facts.rows("select min(event_hour), max(event_hour) from analytics.fact_streams")[0]
    assert (b.first_hour, b.last_hour) == (lo, hi)
    assert (b.first_day, b.last_day) == (FIRST_DAY, LAST_DAY)
    states = facts.rows("select distinct l.state_code, l.state_name " + STREAMS + " order by 1")
    assert b.states == tuple((str(c), str(n)) for c, n in states)


def test_streams_today(session: Session, facts: Facts, filters: q.Filters) -> None:
    got = q.streams_today(session, filters)
    day = filters.end

    def streams(d: date) -> int:
        return int(
            facts.one(
                "select count(*) " + STREAMS + " where f.event_hour >= ? and f.event_hour < ?"
                f" and {IN_STATE}",
                [midnight(d), midnight(d + timedelta(days=1)), filters.state, filters.state],
            )
        )

    assert got.day == day
    assert got.through_hour is None  # both days are complete
    assert got.streams == streams(day) > 0
    assert got.previous == streams(day - timedelta(days=1))
    if got.previous:
        assert got.change == pytest.approx((got.streams - got.previous) / got.previous)
    else:
        assert got.change is None


def test_streams_today_on_a_day_still_being_filled(warehouse: Settings, tmp_path: Path) -> None:
    """The newest day holds hours 0..9 only: yesterday counts up to 09:59 too."""
    path = tmp_path / "partial.duckdb"
    shutil.copy(warehouse.warehouse_path, path)
    cut = midnight(LAST_DAY) + timedelta(hours=10)
    con = duckdb.connect(str(path))
    con.execute("delete from analytics.mart_hourly_activity where hour >= ?", [cut])
    expected = con.execute(
        "select sum(streams) filter (where hour >= ?), sum(streams) filter (where hour < ?)"
        " from analytics.mart_hourly_activity where hour >= ?",
        [midnight(LAST_DAY), midnight(LAST_DAY) - timedelta(hours=14), midnight(FIRST_DAY)],
    ).fetchone()
    con.close()
    with DuckDBWarehouse(path).session() as s:
        got = q.streams_today(s, q.Filters(LAST_DAY, LAST_DAY))
        by_hour = q.streams_by_hour(s, q.Filters(LAST_DAY, LAST_DAY))
    assert got.through_hour == 9
    assert (got.streams, got.previous) == expected
    assert by_hour["today"].isna().tolist() == [h > 9 for h in range(24)]


def test_total_and_active_users(session: Session, facts: Facts, filters: q.Filters) -> None:
    start, end, *state = window(filters)
    total = facts.one(
        "select count(distinct f.user_id) " + VIEWS + f" where f.event_hour < ? and {IN_STATE}",
        [end, *state],
    )
    active = facts.one(
        "select count(distinct f.user_id) " + VIEWS + " where f.event_hour >= ?"
        f" and f.event_hour < ? and {IN_STATE}",
        [start, end, *state],
    )
    assert q.total_users(session, filters) == total > 0
    assert q.active_users(session, filters) == active > 0
    assert active <= total


def test_activity_by_state(session: Session, facts: Facts, filters: q.Filters) -> None:
    got = q.activity_by_state(session, filters)
    start, end, *state = window(filters)
    streams = dict(
        facts.rows(
            "select l.state_code, count(*) " + STREAMS + " where f.event_hour >= ?"
            f" and f.event_hour < ? and {IN_STATE} and l.state_code is not null group by 1",
            [start, end, *state],
        )
    )
    users = dict(
        facts.rows(
            "select l.state_code, count(distinct f.user_id) " + VIEWS + " where f.event_hour >= ?"
            f" and f.event_hour < ? and {IN_STATE} and l.state_code is not null"
            " and f.user_id is not null group by 1",
            [start, end, *state],
        )
    )
    assert dict(zip(got["state_code"], got["streams"], strict=True)) == {
        s: streams.get(s, 0) for s in set(streams) | set(users)
    }
    assert dict(zip(got["state_code"], got["active_users"], strict=True)) == {
        s: users.get(s, 0) for s in set(streams) | set(users)
    }
    assert got["streams"].is_monotonic_decreasing
    if filters.state:
        assert got["state_code"].tolist() == [filters.state]


def test_top_songs_and_artists(session: Session, facts: Facts, filters: q.Filters) -> None:
    start, end, *state = window(filters)
    songs = facts.rows(
        "select s.title, s.artist, count(*) as n "
        + STREAMS
        + " join analytics.dim_songs s on s.song_key = f.song_key"
        f" where f.event_hour >= ? and f.event_hour < ? and {IN_STATE}"
        " group by s.song_key, s.title, s.artist order by n desc, s.title, s.artist, s.song_key"
        " limit 10",
        [start, end, *state],
    )
    artists = facts.rows(
        "select a.artist, count(*) as n "
        + STREAMS
        + " join analytics.dim_artists a on a.artist_key = f.artist_key"
        f" where f.event_hour >= ? and f.event_hour < ? and {IN_STATE}"
        " group by a.artist_key, a.artist order by n desc, a.artist, a.artist_key limit 10",
        [start, end, *state],
    )
    top = q.top_songs(session, filters)
    assert list(top.itertuples(index=False, name=None)) == [
        (i, *row) for i, row in enumerate(songs, start=1)
    ]
    assert len(top) == 10
    top_a = q.top_artists(session, filters)
    assert list(top_a.itertuples(index=False, name=None)) == [
        (i, *row) for i, row in enumerate(artists, start=1)
    ]
    assert len(q.top_songs(session, filters, limit=3)) == 3


def _users_with_last_event(facts: Facts, f: q.Filters) -> pd.DataFrame:
    start, end, *state = window(f)
    rows = facts.rows(
        "select f.user_id, u.gender, f.level from ("
        "  select f.*, row_number() over (partition by f.user_id"
        "   order by f.ts desc, f.session_id desc, f.item_in_session desc) as r "
        + VIEWS
        + f"  where f.user_id is not null and f.event_hour >= ? and f.event_hour < ?"
        f"  and {IN_STATE}"
        " ) f join analytics.dim_users u on u.user_id = f.user_id and u.is_current"
        " where f.r = 1",
        [start, end, *state],
    )
    return pd.DataFrame(rows, columns=["user_id", "gender", "level"])


def test_gender_and_level(session: Session, facts: Facts, filters: q.Filters) -> None:
    users = _users_with_last_event(facts, filters)
    gender = q.gender_distribution(session, filters)
    assert dict(zip(gender["gender"], gender["users"], strict=True)) == (
        users.groupby("gender")["user_id"].nunique().to_dict()
    )
    levels = q.level_by_gender(session, filters)
    got = {(g, lv): n for g, lv, n in levels.itertuples(index=False, name=None)}
    assert got == users.groupby(["gender", "level"]).size().to_dict()
    assert sum(got.values()) == q.active_users(session, filters)


def test_streams_by_hour(session: Session, facts: Facts, filters: q.Filters) -> None:
    got = q.streams_by_hour(session, filters)
    assert got["hour_of_day"].tolist() == list(range(24))

    def per_hour(d: date) -> list[int]:
        rows = dict(
            facts.rows(
                "select extract(hour from f.event_hour), count(*) "
                + STREAMS
                + f" where f.event_hour >= ? and f.event_hour < ? and {IN_STATE} group by 1",
                [midnight(d), midnight(d + timedelta(days=1)), filters.state, filters.state],
            )
        )
        return [int(rows.get(h, 0)) for h in range(24)]

    assert got["today"].astype(int).tolist() == per_hour(filters.end)
    assert got["previous"].tolist() == per_hour(filters.end - timedelta(days=1))
    assert int(got["today"].sum()) == q.streams_today(session, filters).streams


def test_status_changes(session: Session, facts: Facts, filters: q.Filters) -> None:
    got = q.status_changes(session, filters)
    start, end, *state = window(filters)
    hourly = (filters.end - filters.start).days < 2
    period = "f.event_hour" if hourly else "cast(f.event_hour as date)"
    rows = facts.rows(
        f"select {period}, count(*) filter (where change_type = 'upgrade'),"
        " count(*) filter (where change_type = 'downgrade'),"
        " count(*) filter (where change_type = 'cancel')"
        " from analytics.fact_status_changes f"
        " left join analytics.dim_location l on l.location_key = f.location_key"
        f" where f.event_hour >= ? and f.event_hour < ? and {IN_STATE} group by 1",
        [start, end, *state],
    )
    expected = {pd.Timestamp(p): (u, d, c) for p, u, d, c in rows}
    periods = (
        24 * ((filters.end - filters.start).days + 1)
        if hourly
        else ((filters.end - filters.start).days + 1)
    )
    assert len(got) == periods
    for row in got.itertuples(index=False):
        assert (row.upgrades, row.downgrades, row.cancellations) == expected.get(
            pd.Timestamp(row.period), (0, 0, 0)
        )
    total = facts.one("select count(*) from analytics.fact_status_changes")
    assert total > 0, "the fixture should have some status changes"


def test_session_distributions(session: Session, facts: Facts, filters: q.Filters) -> None:
    start, end, *state = window(filters)
    where = (
        " from analytics.fact_sessions f"
        " left join analytics.dim_location l on l.location_key = f.location_key"
        f" where f.session_start >= ? and f.session_start < ? and {IN_STATE}"
    )
    minutes = dict(
        facts.rows(
            "select cast(floor(f.duration_s / 60) as int), count(*)" + where + " group by 1",
            [start, end, *state],
        )
    )
    songs = dict(
        facts.rows("select f.songs, count(*)" + where + " group by 1", [start, end, *state])
    )
    lengths = q.session_lengths(session, filters)
    assert dict(zip(lengths["minutes"], lengths["sessions"], strict=True)) == minutes
    assert lengths["minutes"].is_monotonic_increasing
    per_songs = q.songs_per_session(session, filters)
    assert dict(zip(per_songs["songs"], per_songs["sessions"], strict=True)) == songs
    assert lengths["sessions"].sum() == per_songs["sessions"].sum() > 0


def test_active_users_per_hour_and_day(session: Session, facts: Facts, filters: q.Filters) -> None:
    start, end, *state = window(filters)
    base = VIEWS + (
        f" where f.user_id is not null and f.event_hour >= ? and f.event_hour < ? and {IN_STATE}"
    )
    hourly = dict(
        facts.rows(
            "select f.event_hour, count(distinct f.user_id)" + base + " group by 1",
            [start, end, *state],
        )
    )
    daily = dict(
        facts.rows(
            "select cast(f.event_hour as date), count(distinct f.user_id)" + base + " group by 1",
            [start, end, *state],
        )
    )
    got_h = q.active_users_hourly(session, filters)
    assert len(got_h) == 24 * ((filters.end - filters.start).days + 1)
    for row in got_h.itertuples(index=False):
        assert row.active_users == hourly.get(row.hour.to_pydatetime(), 0)
    got_d = q.active_users_daily(session, filters)
    assert {r.date.date(): r.active_users for r in got_d.itertuples(index=False)} == {
        filters.start + timedelta(days=i): daily.get(filters.start + timedelta(days=i), 0)
        for i in range((filters.end - filters.start).days + 1)
    }


def test_hours_not_published_yet_are_pending_not_zero(session: Session) -> None:
    """A range reaching past the newest published hour: those hours are NaN (drawn as
    pending), the published ones keep their counts, zeros included."""
    got = q.active_users_hourly(session, q.Filters(LAST_DAY, LAST_DAY + timedelta(days=1)))
    newest = midnight(LAST_DAY + timedelta(days=1)) - timedelta(hours=1)
    published = got[got["hour"] <= newest]
    assert len(published) == 24 and published["active_users"].notna().all()
    assert published["active_users"].sum() > 0
    pending = got[got["hour"] > newest]
    assert len(pending) == 24 and pending["active_users"].isna().all()


def test_top_song_per_state(session: Session, facts: Facts, filters: q.Filters) -> None:
    start, end, *state = window(filters)
    rows = facts.rows(
        "select state_code, title, artist, n from ("
        " select l.state_code, s.title, s.artist, count(*) as n,"
        "  row_number() over (partition by l.state_code"
        "   order by count(*) desc, s.title, s.artist, s.song_key) as r "
        + STREAMS
        + " join analytics.dim_songs s on s.song_key = f.song_key"
        f" where f.event_hour >= ? and f.event_hour < ? and {IN_STATE}"
        " and l.state_code is not null"
        " group by l.state_code, s.song_key, s.title, s.artist"
        ") where r = 1 order by n desc, state_code",
        [start, end, *state],
    )
    got = q.top_song_per_state(session, filters)
    assert list(got.itertuples(index=False, name=None)) == rows
    assert len(rows) > 0


def test_last_published_falls_back_to_the_marts(session: Session, facts: Facts) -> None:
    got = q.last_published(session)
    assert got.source == "marts"
    assert got.hour == facts.one("select max(event_hour) from analytics.fact_streams")
    assert got.published_at is None


def test_last_published_from_the_publish_records(warehouse: Settings, tmp_path: Path) -> None:
    path = tmp_path / "published.duckdb"
    shutil.copy(warehouse.warehouse_path, path)
    con = duckdb.connect(str(path))
    con.execute("create table raw.published_hours (hour timestamp, published_at timestamp)")
    at = datetime(2024, 3, 19, 12, 5)
    con.execute(
        "insert into raw.published_hours values (?, ?), (?, ?)",
        [datetime(2024, 3, 19, 10), at - timedelta(hours=1), datetime(2024, 3, 19, 11), at],
    )
    con.close()
    with DuckDBWarehouse(path).session() as s:
        got = q.last_published(s)
    assert (got.hour, got.published_at, got.source) == (
        datetime(2024, 3, 19, 11),
        at,
        "published_hours",
    )


def test_filters_reject_a_reversed_range() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        q.Filters(date(2024, 3, 19), date(2024, 3, 18))
