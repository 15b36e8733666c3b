"""One query per dashboard tile, each on the marts only, in SQL DuckDB and BigQuery share.

Every function takes an open ``Session`` and the page's ``Filters`` (a state or all
states, and an inclusive range of UTC days) and returns a small DataFrame or a frozen
dataclass. Tables are written ``{schema.table}`` and qualified by the session; parameters
are ``$name``. Definitions the tiles rely on:

- *streams*: rows of fact_streams (one per song played), via mart_hourly_activity.
- *active users*: identified users with at least one event (any page) in the range,
  counted distinct in mart_user_activity_hourly; *total users*: the same up to the end
  of the range, from the start of the data.
- *today*: the last day of the range. When that day is still being filled (it holds the
  newest hour of the warehouse), it is compared with the previous day up to the same
  hour, so a morning is not compared with a whole day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd

from musify.warehouse.base import MODELS_SCHEMA, PUBLISHED_HOURS, RAW_SCHEMA, Session
from musify.warehouse.models import MARTS

_STATE = "($state is null or state_code = $state)"


@dataclass(frozen=True)
class Filters:
    """The page's filters: days ``start``..``end`` inclusive (UTC), one state or all."""

    start: date
    end: date
    state: str | None = None

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"date range ends ({self.end}) before it starts ({self.start})")

    def params(self) -> dict[str, Any]:
        return {
            "start": _midnight(self.start),
            "end": _midnight(self.end + timedelta(days=1)),
            "start_date": self.start,
            "end_date": self.end,
            "state": self.state,
        }


def _midnight(d: date) -> datetime:
    # The warehouse keeps UTC wall-clock timestamps without a zone.
    return datetime.combine(d, time())


def _naive(ts: Any) -> datetime | None:
    """A warehouse timestamp as a naive UTC datetime (BigQuery returns aware ones)."""
    if ts is None or pd.isna(ts):
        return None
    value = pd.Timestamp(ts).to_pydatetime()
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _int(value: Any) -> int:
    return 0 if value is None or pd.isna(value) else int(value)


# --- the warehouse itself -----------------------------------------------------------


@dataclass(frozen=True)
class Readiness:
    """Whether the marts exist and hold data; ``missing`` lists absent marts."""

    missing: tuple[str, ...] = ()
    empty: bool = False

    @property
    def ready(self) -> bool:
        return not self.missing and not self.empty


def readiness(s: Session) -> Readiness:
    missing = tuple(m for m in MARTS if m not in s.tables(MODELS_SCHEMA))
    if missing:
        return Readiness(missing=missing)
    n = s.query("select count(*) as n from {analytics.mart_hourly_activity}")
    return Readiness(empty=_int(n["n"].iloc[0]) == 0)


@dataclass(frozen=True)
class Bounds:
    """What the filters can choose from: the days with data and the states seen."""

    first_hour: datetime
    last_hour: datetime
    states: tuple[tuple[str, str], ...] = field(default=())  # (code, name), by code

    @property
    def first_day(self) -> date:
        return self.first_hour.date()

    @property
    def last_day(self) -> date:
        return self.last_hour.date()


def bounds(s: Session) -> Bounds | None:
    """The first and last hour with streams, and the states; None when there are none."""
    span = s.query(
        "select min(hour) as first_hour, max(hour) as last_hour"
        " from {analytics.mart_hourly_activity}"
    )
    first, last = _naive(span["first_hour"].iloc[0]), _naive(span["last_hour"].iloc[0])
    if first is None or last is None:
        return None
    states = s.query(
        "select state_code, max(state_name) as state_name"
        " from {analytics.mart_hourly_activity}"
        " where state_code is not null group by state_code order by state_code"
    )
    pairs = tuple(
        (str(code), str(name) if name is not None and not pd.isna(name) else str(code))
        for code, name in zip(states["state_code"], states["state_name"], strict=True)
    )
    return Bounds(first, last, pairs)


# --- the original dashboard's tiles --------------------------------------------------


@dataclass(frozen=True)
class StreamsToday:
    day: date
    streams: int
    previous: int
    #: Set when ``day`` is still being filled: both days are counted up to this hour.
    through_hour: int | None = None

    @property
    def change(self) -> float | None:
        """Relative change against the previous day; None without a previous day."""
        return (self.streams - self.previous) / self.previous if self.previous else None


def _newest_hour(s: Session) -> datetime | None:
    """The newest hour in the marts (naive UTC): later hours are not published yet."""
    return _naive(s.query("select max(hour) as h from {analytics.mart_hourly_activity}")["h"][0])


def _through_hour(s: Session, day: date) -> int | None:
    last = _newest_hour(s)
    if last is not None and last.date() == day and last.hour < 23:
        return last.hour
    return None


def streams_today(s: Session, f: Filters) -> StreamsToday:
    """Streams on the range's last day, and on the day before (up to the same hour)."""
    day = f.end
    through = _through_hour(s, day)
    prev_end = _midnight(day) - timedelta(hours=23 - through if through is not None else 0)
    df = s.query(
        "select"
        " sum(case when hour >= $day then streams else 0 end) as today,"
        " sum(case when hour < $prev_end then streams else 0 end) as previous"
        " from {analytics.mart_hourly_activity}"
        f" where hour >= $prev and hour < $next and {_STATE}",
        {
            "day": _midnight(day),
            "prev": _midnight(day - timedelta(days=1)),
            "prev_end": prev_end,
            "next": _midnight(day + timedelta(days=1)),
            "state": f.state,
        },
    )
    return StreamsToday(day, _int(df["today"][0]), _int(df["previous"][0]), through)


def total_users(s: Session, f: Filters) -> int:
    """Distinct identified users seen from the start of the data to the range's end."""
    df = s.query(
        "select count(distinct user_id) as n from {analytics.mart_user_activity_hourly}"
        f" where hour < $end and {_STATE}",
        {"end": f.params()["end"], "state": f.state},
    )
    return _int(df["n"][0])


def active_users(s: Session, f: Filters) -> int:
    """Distinct identified users with at least one event in the range."""
    df = s.query(
        "select count(distinct user_id) as n from {analytics.mart_user_activity_hourly}"
        f" where hour >= $start and hour < $end and {_STATE}",
        _p(f, "start", "end", "state"),
    )
    return _int(df["n"][0])


def _p(f: Filters, *names: str) -> dict[str, Any]:
    all_ = f.params()
    return {n: all_[n] for n in names}


def activity_by_state(s: Session, f: Filters) -> pd.DataFrame:
    """Per state: streams and active users in the range (columns state_code, streams,
    active_users), states with neither left out, by streams descending."""
    df = s.query(
        "with streams as ("
        "  select state_code, sum(streams) as streams"
        "  from {analytics.mart_hourly_activity}"
        f"  where hour >= $start and hour < $end and {_STATE} and state_code is not null"
        "  group by state_code"
        "), users as ("
        "  select state_code, count(distinct user_id) as active_users"
        "  from {analytics.mart_user_activity_hourly}"
        f"  where hour >= $start and hour < $end and {_STATE} and state_code is not null"
        "  group by state_code"
        ")"
        " select coalesce(streams.state_code, users.state_code) as state_code,"
        "  coalesce(streams.streams, 0) as streams,"
        "  coalesce(users.active_users, 0) as active_users"
        " from streams full outer join users on users.state_code = streams.state_code"
        " order by streams desc, state_code",
        _p(f, "start", "end", "state"),
    )
    return df.astype({"state_code": str, "streams": "int64", "active_users": "int64"})


def top_songs(s: Session, f: Filters, limit: int = 10) -> pd.DataFrame:
    """The most played songs of the range (rank, song, artist, streams); ties by title."""
    df = s.query(
        "select song, artist, sum(streams) as streams"
        " from {analytics.mart_song_streams_daily}"
        f" where date >= $start_date and date <= $end_date and {_STATE}"
        " group by song_key, song, artist"
        " order by streams desc, song, artist, song_key"
        f" limit {int(limit)}",
        _p(f, "start_date", "end_date", "state"),
    )
    df.insert(0, "rank", range(1, len(df) + 1))
    return df.astype({"streams": "int64"})


def top_artists(s: Session, f: Filters, limit: int = 10) -> pd.DataFrame:
    """The most played artists of the range (rank, artist, streams); ties by name."""
    df = s.query(
        "select artist, sum(streams) as streams"
        " from {analytics.mart_artist_streams_daily}"
        f" where date >= $start_date and date <= $end_date and {_STATE}"
        " group by artist_key, artist"
        " order by streams desc, artist, artist_key"
        f" limit {int(limit)}",
        _p(f, "start_date", "end_date", "state"),
    )
    df.insert(0, "rank", range(1, len(df) + 1))
    return df.astype({"streams": "int64"})


def gender_distribution(s: Session, f: Filters) -> pd.DataFrame:
    """Active users of the range by gender (gender, users); unknown gender as null."""
    df = s.query(
        "select gender, count(distinct user_id) as users"
        " from {analytics.mart_user_activity_hourly}"
        f" where hour >= $start and hour < $end and {_STATE}"
        " group by gender order by users desc, gender",
        _p(f, "start", "end", "state"),
    )
    return df.astype({"users": "int64"})


def level_by_gender(s: Session, f: Filters) -> pd.DataFrame:
    """Active users of the range by gender and level (gender, level, users); a user's
    level is the one at their last active hour in the range."""
    df = s.query(
        "select gender, level, count(*) as users from ("
        "  select user_id, gender, level,"
        "   row_number() over (partition by user_id order by hour desc) as recency"
        "  from {analytics.mart_user_activity_hourly}"
        f"  where hour >= $start and hour < $end and {_STATE}"
        " ) as latest"
        " where recency = 1"
        " group by gender, level order by gender, level",
        _p(f, "start", "end", "state"),
    )
    return df.astype({"users": "int64"})


def streams_by_hour(s: Session, f: Filters) -> pd.DataFrame:
    """Streams per hour of day (hour 0-23) on the range's last day (``today``) and the
    day before (``previous``); hours of today not reached yet are missing (NaN)."""
    day = f.end
    df = s.query(
        "select extract(hour from hour) as hour_of_day,"
        " sum(case when hour >= $day then streams else 0 end) as today,"
        " sum(case when hour < $day then streams else 0 end) as previous"
        " from {analytics.mart_hourly_activity}"
        f" where hour >= $prev and hour < $next and {_STATE}"
        " group by extract(hour from hour)",
        {
            "day": _midnight(day),
            "prev": _midnight(day - timedelta(days=1)),
            "next": _midnight(day + timedelta(days=1)),
            "state": f.state,
        },
    )
    out = pd.DataFrame({"hour_of_day": range(24)})
    df = df.astype({"hour_of_day": "int64"})
    out = out.merge(df, on="hour_of_day", how="left").fillna(0)
    out = out.astype({"today": "float64", "previous": "int64"})
    through = _through_hour(s, day)
    if through is not None:
        out.loc[out["hour_of_day"] > through, "today"] = float("nan")
    return out


# --- beyond the original -------------------------------------------------------------


def _hourly(f: Filters) -> bool:
    """Time series of a range of up to two days are drawn per hour, longer ones per day."""
    return (f.end - f.start).days < 2


def _periods(f: Filters) -> pd.DatetimeIndex:
    if _hourly(f):
        return pd.date_range(f.params()["start"], f.params()["end"], freq="h", inclusive="left")
    return pd.date_range(f.params()["start"], f.params()["end"], freq="D", inclusive="left")


def status_changes(s: Session, f: Filters) -> pd.DataFrame:
    """Upgrades (free -> paid), downgrades and cancellations per period of the range
    (per hour for ranges up to two days, else per day), zeros included."""
    period = "hour" if _hourly(f) else "cast(hour as date)"
    df = s.query(
        f"select {period} as period, sum(upgrades) as upgrades,"
        " sum(downgrades) as downgrades, sum(cancellations) as cancellations"
        " from {analytics.mart_status_changes_hourly}"
        f" where hour >= $start and hour < $end and {_STATE}"
        f" group by {period}",
        _p(f, "start", "end", "state"),
    )
    df["period"] = pd.to_datetime(df["period"]).dt.tz_localize(None)
    out = pd.DataFrame({"period": _periods(f)}).merge(df, on="period", how="left").fillna(0)
    return out.astype({"upgrades": "int64", "downgrades": "int64", "cancellations": "int64"})


def _session_histogram(s: Session, f: Filters, metric: str) -> pd.DataFrame:
    df = s.query(
        "select bucket, sum(sessions) as sessions"
        " from {analytics.mart_session_distributions_daily}"
        f" where metric = $metric and date >= $start_date and date <= $end_date and {_STATE}"
        " group by bucket order by bucket",
        {**_p(f, "start_date", "end_date", "state"), "metric": metric},
    )
    return df.astype({"bucket": "int64", "sessions": "int64"})


def session_lengths(s: Session, f: Filters) -> pd.DataFrame:
    """Sessions started in the range by length in whole minutes (minutes, sessions)."""
    return _session_histogram(s, f, "minutes").rename(columns={"bucket": "minutes"})


def songs_per_session(s: Session, f: Filters) -> pd.DataFrame:
    """Sessions started in the range by songs played (songs, sessions)."""
    return _session_histogram(s, f, "songs").rename(columns={"bucket": "songs"})


def active_users_hourly(s: Session, f: Filters) -> pd.DataFrame:
    """Distinct active users per hour of the range (hour, active_users), zeros included
    up to the newest published hour; the hours after it are pending (NaN), not zero."""
    df = s.query(
        "select hour, count(distinct user_id) as active_users"
        " from {analytics.mart_user_activity_hourly}"
        f" where hour >= $start and hour < $end and {_STATE} group by hour",
        _p(f, "start", "end", "state"),
    )
    df["hour"] = pd.to_datetime(df["hour"]).dt.tz_localize(None)
    hours = pd.date_range(f.params()["start"], f.params()["end"], freq="h", inclusive="left")
    out = pd.DataFrame({"hour": hours}).merge(df, on="hour", how="left").fillna(0)
    out = out.astype({"active_users": "float64"})
    newest = _newest_hour(s)
    out.loc[out["hour"] > (newest or datetime.min), "active_users"] = float("nan")
    return out


def active_users_daily(s: Session, f: Filters) -> pd.DataFrame:
    """Distinct active users per day of the range (date, active_users), zeros included."""
    df = s.query(
        "select date, count(distinct user_id) as active_users"
        " from {analytics.mart_user_activity_hourly}"
        f" where date >= $start_date and date <= $end_date and {_STATE} group by date",
        _p(f, "start_date", "end_date", "state"),
    )
    df["date"] = pd.to_datetime(df["date"])
    days = pd.date_range(f.start, f.end, freq="D")
    out = pd.DataFrame({"date": days}).merge(df, on="date", how="left").fillna(0)
    return out.astype({"active_users": "int64"})


def top_song_per_state(s: Session, f: Filters) -> pd.DataFrame:
    """Each state's most played song of the range (state_code, song, artist, streams),
    ties by title, states by streams descending."""
    df = s.query(
        "select state_code, song, artist, streams from ("
        "  select state_code, song, artist, sum(streams) as streams,"
        "   row_number() over ("
        "    partition by state_code order by sum(streams) desc, song, artist, song_key"
        "   ) as position"
        "  from {analytics.mart_song_streams_daily}"
        f"  where date >= $start_date and date <= $end_date and {_STATE}"
        "   and state_code is not null"
        "  group by state_code, song_key, song, artist"
        " ) as ranked"
        " where position = 1 order by streams desc, state_code",
        _p(f, "start_date", "end_date", "state"),
    )
    return df.astype({"streams": "int64"})


@dataclass(frozen=True)
class Published:
    """The newest hour the pipeline published. ``source`` says where it comes from:
    ``published_hours`` (the batch's publish step) or ``marts`` (the newest hour with
    streams, when the warehouse has no publish records)."""

    hour: datetime | None
    published_at: datetime | None
    source: str


def last_published(s: Session) -> Published:
    if PUBLISHED_HOURS in s.tables(RAW_SCHEMA):
        df = s.query(
            "select max(hour) as hour, max(published_at) as published_at from {raw.published_hours}"
        )
        hour = _naive(df["hour"][0])
        if hour is not None:
            return Published(hour, _naive(df["published_at"][0]), PUBLISHED_HOURS)
    df = s.query("select max(hour) as hour from {analytics.mart_hourly_activity}")
    return Published(_naive(df["hour"][0]), None, "marts")
