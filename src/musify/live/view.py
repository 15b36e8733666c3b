"""The live numbers: what the stream has committed in the last hour, as typed records.

Every number is a query over committed rows of the lake's tables (``read.py``), never a
running total kept beside them: a replayed micro-batch is in the lake once (the
committer's guarantee), so it is counted once, and a window's number is a recount of the
lake by construction. Events are counted once per (sessionId, itemInSession), the first
delivery kept, as the warehouse's staging does, so where a live window and a published
hour cover the same closed interval they agree exactly.

**The clock** is the newest committed listen event (``clock``), not the wall clock:
whatever the stream's pace (history, ``--speed``, a pause), the last hour is the last
hour of the stream. When the stream's watermark (everything the broker acknowledged
before it is committed; idle triggers move it on too) is later and near the hint, the
clock is the watermark: minutes without a listen are then known to have none, and the
windows move on through quiet periods. A minute is *final* once the clock is the allowed lateness
(``MUSIFY_LIVE_ALLOWED_LATENESS_SECONDS``) past its end; until then late events still
land in it and it is drawn as provisional. Nothing is dropped: an event later than that
is still in the lake and in the next refresh's recount (and in the hourly marts).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from musify.lake.layout import QUARANTINE, Lake
from musify.lake.read import TimeRange
from musify.live.read import CommittedRows

MINUTE = timedelta(minutes=1)
#: Listens per minute: this many minutes up to the clock, and the same a day earlier.
LISTENS_WINDOW = timedelta(minutes=60)
ACTIVE_WINDOW = timedelta(minutes=5)
#: Trending, the map and the auth failure rate: this window up to the clock...
RECENT_WINDOW = timedelta(minutes=15)
#: ...and trending's ranks compared with the hour before it.
PREVIOUS_WINDOW = timedelta(minutes=60)
STATUS_CHANGES_WINDOW = timedelta(minutes=60)
TOP = 10
#: Day-earlier minute counts kept (one per state filter and minute the page shows).
DAY_BEFORE_KEPT = 64
LATEST_CHANGES = 8
CHANGE_KIND = {"Submit Upgrade": "upgrade", "Submit Downgrade": "downgrade", "Cancel": "cancel"}
#: How far back the clock is looked for when nothing is committed near the hint...
SEARCH_BACK = timedelta(hours=2)
#: ...and ahead of it: the stream quarantines events further ahead of its own clock
#: (MUSIFY_MAX_EVENT_FUTURE_SECONDS, default 300 s).
AHEAD = timedelta(minutes=5)

_LISTEN_COLUMNS = ("ts", "sessionId", "itemInSession", "kafka_partition", "kafka_offset",
                   "userId", "song", "artist", "state")  # fmt: skip
_AUTH_COLUMNS = ("ts", "sessionId", "itemInSession", "kafka_partition", "kafka_offset",
                 "state", "success")  # fmt: skip
_CHANGE_COLUMNS = ("ts", "sessionId", "itemInSession", "kafka_partition", "kafka_offset",
                   "userId", "firstName", "lastName", "state", "level", "page")  # fmt: skip


@dataclass(frozen=True)
class MinuteListens:
    minute: datetime
    listens: int
    day_before: int
    final: bool


@dataclass(frozen=True)
class Trend:
    rank: int
    name: str
    artist: str | None  # None for artists
    listens: int
    previous_rank: int | None  # None: not in the previous hour's ranking

    @property
    def change(self) -> int | None:
        return None if self.previous_rank is None else self.previous_rank - self.rank


@dataclass(frozen=True)
class StatusChange:
    ts: datetime
    kind: str  # upgrade | downgrade | cancel
    user_id: int | None
    name: str
    state: str | None
    level_before: str | None


@dataclass(frozen=True)
class LiveView:
    """The live section's numbers at one read of the lake (all times UTC)."""

    read_at: datetime
    #: The newest committed listen event or the stream's watermark, if later (the live
    #: windows end here); None: nothing yet.
    clock: datetime | None
    allowed_lateness_s: float
    state: str | None
    listens_per_minute: tuple[MinuteListens, ...] = ()
    active_listeners: int = 0
    trending_songs: tuple[Trend, ...] = ()
    trending_artists: tuple[Trend, ...] = ()
    listens_by_state: dict[str, int] = field(default_factory=dict)
    status_changes: tuple[StatusChange, ...] = ()
    auth_attempts: int = 0
    auth_failures: int = 0
    #: Quarantined messages per minute of ingestion over the last hour (wall clock).
    quarantined_per_minute: tuple[tuple[datetime, int], ...] = ()
    #: The snapshot each table was read at (what "committed" meant for this view).
    snapshots: dict[str, int | None] = field(default_factory=dict)
    #: Newest committed event time per topic table, ingestion time for the quarantine.
    newest: dict[str, datetime | None] = field(default_factory=dict)

    @property
    def auth_failure_rate(self) -> float | None:
        return None if not self.auth_attempts else self.auth_failures / self.auth_attempts

    def age_s(self, table: str) -> float | None:
        """How old a tile's data is: now minus the newest committed time it read."""
        newest = self.newest.get(table)
        return None if newest is None else max(0.0, (self.read_at - newest).total_seconds())


def _filter(start: datetime, end: datetime, column: str = "ts") -> TimeRange:
    return TimeRange(column, start.astimezone(UTC), end.astimezone(UTC))


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    moment: datetime = value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Live:
    """Computes ``LiveView`` records over one lake, reusing the files it has read."""

    def __init__(self, lake: Lake, allowed_lateness_s: float = 60.0) -> None:
        import duckdb

        self.rows = CommittedRows(lake)
        self.allowed_lateness_s = allowed_lateness_s
        # The deduplicated listens of the newest view, by what they are made of (the files
        # read and the clock): refreshes between two micro-batches (every 5 s against a
        # commit every 30 s or 2 min) and page loads reuse them instead of copying the
        # last 76 minutes again (~0.35 s at 1M users).
        self._listens: tuple[tuple[tuple[str, ...], datetime], Any] | None = None
        self._listens_lock = threading.Lock()
        #: How often the deduplicated listens were built (tests count them).
        self.listens_built = 0
        # The listens per minute a day earlier, by (files, first minute, state filter).
        self._day_before: OrderedDict[tuple[Any, ...], dict[datetime, int]] = OrderedDict()
        # One in-memory database; each view works in its own cursor (a connection of its
        # own: views, registrations and temp views stay apart between threads).
        self._duckdb = duckdb.connect()

    def _db(self) -> Any:
        con = self._duckdb.cursor()
        con.execute("set TimeZone = 'UTC'")
        return con

    def view(
        self,
        *,
        state: str | None = None,
        at: datetime | None = None,
        now: datetime | None = None,
        floor: datetime | None = None,
    ) -> LiveView:
        """The live numbers. ``at``: where to look for the clock (default: now); the
        clock is the newest committed listen event before ``at`` + ``AHEAD``, searched
        back ``SEARCH_BACK`` (None when there is none), or ``floor`` if that is later:
        the stream's watermark, before which everything the broker acknowledged is
        committed, so minutes without a listen are known to have none."""
        read_at = (now or datetime.now(UTC)).astimezone(UTC)
        hint = (at or read_at).astimezone(UTC)
        if floor is not None and not hint - SEARCH_BACK <= floor <= hint + AHEAD:
            floor = None  # another part of the stream's time (history, --speed)
        con = self._db()
        try:
            return self._view(con, state, hint, read_at, floor)
        finally:
            con.close()

    def listens_per_minute(
        self, start: datetime, end: datetime, state: str | None = None
    ) -> dict[datetime, int]:
        """Listens per minute of [start, end) (whole minutes, UTC) by the live layer's
        rules: what the "listens per minute" tile shows for those minutes."""
        con = self._db()
        try:
            rows = self.rows.read("listen_events", _filter(start, end), _LISTEN_COLUMNS)
            con.register("listens_now", rows.data)
            counts = _first_delivery_minute_counts(con, "listens_now", start, end, state)
            return {_aware(m) or start: n for m, n in counts.items()}
        finally:
            con.close()

    def _view(
        self,
        con: Any,
        state: str | None,
        hint: datetime,
        read_at: datetime,
        floor: datetime | None,
    ) -> LiveView:
        snapshots: dict[str, int | None] = {}
        newest: dict[str, datetime | None] = {}
        first = hint - SEARCH_BACK - PREVIOUS_WINDOW - RECENT_WINDOW
        listens = self.rows.read("listen_events", _filter(first, hint + AHEAD), _LISTEN_COLUMNS)
        snapshots["listen_events"] = listens.snapshot_id
        con.register("listens_now", listens.data)
        clock = _aware(
            con.execute(
                "select max(ts) from listens_now where ts < $limit",
                {"limit": hint + AHEAD},
            ).fetchall()[0][0]
        )
        if floor is not None and clock is not None and floor > clock:
            # Only next to committed listens: with none near the hint the stream is
            # elsewhere in time (history far back), and the caller looks there.
            clock = floor.astimezone(UTC)
        newest["listen_events"] = clock
        base = LiveView(read_at, clock, self.allowed_lateness_s, state, snapshots=snapshots)
        quarantine = self._quarantine(con, read_at)
        snapshots[QUARANTINE] = quarantine[0]
        newest[QUARANTINE] = quarantine[1]
        if clock is None:
            return _replace(base, quarantined_per_minute=quarantine[2], newest=newest)

        day_start = clock - timedelta(days=1) - LISTENS_WINDOW
        earlier = self.rows.read(
            "listen_events", _filter(day_start, clock - timedelta(days=1) + MINUTE), _LISTEN_COLUMNS
        )
        con.register("listens_earlier", earlier.data)
        # From the oldest minute a tile reads (the clock was searched further back); a
        # redelivered event has its event's ts, so both copies are in or out. The day
        # before is only counted per minute (``_per_minute``), not copied here.
        key = (listens.paths, clock)
        with self._listens_lock:
            kept = self._listens[1] if self._listens and self._listens[0] == key else None
        if kept is None:
            kept = _dedup_arrow(
                con,
                "select * from listens_now where cast(ts as timestamp) >= $since",
                {"since": _naive(clock - RECENT_WINDOW - PREVIOUS_WINDOW - MINUTE)},
            )
            with self._listens_lock:
                self._listens = (key, kept)
                self.listens_built += 1
        con.register("listens", kept)
        params = {"state": state}
        per_minute = self._per_minute(con, clock, params, earlier.paths)
        active = con.execute(
            "select count(distinct userId) from listens where ts > $start and ts <= $clock"
            " and ($state is null or upper(trim(state)) = $state)",
            {**params, "start": _naive(clock - ACTIVE_WINDOW), "clock": _naive(clock)},
        ).fetchall()[0][0]
        songs = self._trending(con, clock, params, "song", "artist")
        artists = self._trending(con, clock, params, "artist", None)
        by_state = dict(
            con.execute(
                "select upper(trim(state)), count(*) from listens"
                " where ts > $start and ts <= $clock"
                " and state is not null and trim(state) <> '' group by 1",
                {"start": _naive(clock - RECENT_WINDOW), "clock": _naive(clock)},
            ).fetchall()
        )

        auth = self.rows.read(
            "auth_events", _filter(clock - RECENT_WINDOW, clock + MINUTE), _AUTH_COLUMNS
        )
        snapshots["auth_events"] = auth.snapshot_id
        con.register("auth_raw", auth.data)
        _dedup(con, "auth", "select * from auth_raw")
        attempts, failures, auth_newest = con.execute(
            "select count(*) filter (where ts > $start and ts <= $clock),"
            " count(*) filter (where ts > $start and ts <= $clock and not success),"
            " max(ts) filter (where ts <= $clock)"
            " from auth where ($state is null or upper(trim(state)) = $state)",
            {**params, "start": _naive(clock - RECENT_WINDOW), "clock": _naive(clock)},
        ).fetchall()[0]
        newest["auth_events"] = _aware(auth_newest)

        changes = self.rows.read(
            "status_change_events",
            _filter(clock - STATUS_CHANGES_WINDOW, clock + MINUTE),
            _CHANGE_COLUMNS,
        )
        snapshots["status_change_events"] = changes.snapshot_id
        con.register("changes_raw", changes.data)
        _dedup(con, "changes", "select * from changes_raw")
        rows = con.execute(
            "select ts, page, userId,"
            " trim(coalesce(firstName, '') || ' ' || coalesce(lastName, '')),"
            " upper(trim(state)), lower(trim(level)) from changes"
            " where ts > $start and ts <= $clock"
            " and ($state is null or upper(trim(state)) = $state)"
            " order by ts desc, sessionId, itemInSession limit $n",
            {**params, "start": _naive(clock - STATUS_CHANGES_WINDOW), "clock": _naive(clock),
             "n": LATEST_CHANGES},
        ).fetchall()  # fmt: skip
        newest["status_change_events"] = clock
        status_changes = tuple(
            StatusChange(_aware(ts) or clock, CHANGE_KIND.get(page, page), uid, name, st, lvl)
            for ts, page, uid, name, st, lvl in rows
        )
        return _replace(
            base,
            listens_per_minute=per_minute,
            active_listeners=int(active),
            trending_songs=songs,
            trending_artists=artists,
            listens_by_state={str(k): int(v) for k, v in by_state.items()},
            status_changes=status_changes,
            auth_attempts=int(attempts),
            auth_failures=int(failures),
            quarantined_per_minute=quarantine[2],
            newest=newest,
        )

    def _per_minute(
        self, con: Any, clock: datetime, params: dict[str, Any], earlier: tuple[str, ...]
    ) -> tuple[MinuteListens, ...]:
        last = _floor_minute(clock)
        first = last - LISTENS_WINDOW + MINUTE
        day = timedelta(days=1)
        counts = _minute_counts(con, first, last + MINUTE, params["state"])
        # A day earlier is history: its counts change only with its files (late events)
        key = (earlier, first, params["state"])
        with self._listens_lock:
            before = self._day_before.get(key)
        if before is None:
            before = _first_delivery_minute_counts(
                con, "listens_earlier", first - day, last + MINUTE - day, params["state"]
            )
            with self._listens_lock:
                self._day_before[key] = before
                while len(self._day_before) > DAY_BEFORE_KEPT:
                    self._day_before.popitem(last=False)
        counts.update(before)
        lateness = timedelta(seconds=self.allowed_lateness_s)
        out = []
        for i in range(int(LISTENS_WINDOW / MINUTE)):
            minute = first + i * MINUTE
            naive = _naive(minute)
            out.append(
                MinuteListens(
                    minute,
                    int(counts.get(naive, 0)),
                    int(counts.get(naive - timedelta(days=1), 0)),
                    final=minute + MINUTE + lateness <= clock,
                )
            )
        return tuple(out)

    def _trending(
        self, con: Any, clock: datetime, params: dict[str, Any], key: str, detail: str | None
    ) -> tuple[Trend, ...]:
        group = f"{key}, {detail}" if detail else key
        sql = f"""
            with recent as (
                select {group}, count(*) as n from listens
                where ts > $start and ts <= $clock and {key} is not null
                  and ($state is null or upper(trim(state)) = $state)
                group by {group}
            ), previous as (
                select {group}, count(*) as n from listens
                where ts > $before and ts <= $start and {key} is not null
                  and ($state is null or upper(trim(state)) = $state)
                group by {group}
            ), ranked_previous as (
                select *, row_number() over (order by n desc, {group}) as r from previous
            )
            select recent.{key}, {"recent." + detail if detail else "null"}, recent.n, p.r
            from recent left join ranked_previous p using ({group})
            order by recent.n desc, recent.{key}{", recent." + detail if detail else ""}
            limit {TOP}
        """
        rows = con.execute(
            sql,
            {
                **params,
                "before": _naive(clock - RECENT_WINDOW - PREVIOUS_WINDOW),
                "start": _naive(clock - RECENT_WINDOW),
                "clock": _naive(clock),
            },
        ).fetchall()
        return tuple(
            Trend(
                rank,
                str(name),
                None if art is None else str(art),
                int(n),
                None if r is None else int(r),
            )
            for rank, (name, art, n, r) in enumerate(rows, start=1)
        )

    def _quarantine(
        self, con: Any, read_at: datetime
    ) -> tuple[int | None, datetime | None, tuple[tuple[datetime, int], ...]]:
        start = _floor_minute(read_at) - LISTENS_WINDOW + MINUTE
        # the filter's end moves once a minute, so its plan is reused in between
        end = _floor_minute(read_at) + 2 * MINUTE
        q = self.rows.read(QUARANTINE, _filter(start, end, "ingested_at"), ("ingested_at",))
        con.register("quarantine_rows", q.data)
        rows = con.execute(
            "select date_trunc('minute', cast(ingested_at as timestamp)), count(*)"
            " from quarantine_rows where cast(ingested_at as timestamp) >= $start"
            " group by 1 order by 1",
            {"start": _naive(start)},
        ).fetchall()
        newest = con.execute("select max(ingested_at) from quarantine_rows").fetchall()[0][0]
        per_minute = tuple((_aware(m) or start, int(n)) for m, n in rows)
        return q.snapshot_id, _aware(newest), per_minute


def _minute_counts(
    con: Any, start: datetime, end: datetime, state: str | None, source: str = "listens"
) -> dict[datetime, int]:
    """Listens per minute of ``source`` (the ``listens`` view) in [start, end), naive UTC
    minutes."""
    rows = con.execute(
        f"select date_trunc('minute', ts), count(*) from {source}"
        " where ts >= $first and ts < $end"
        " and ($state is null or upper(trim(state)) = $state)"
        " group by 1",
        {"state": state, "first": _naive(start), "end": _naive(end)},
    ).fetchall()
    return {m: int(n) for m, n in rows}


def _first_delivery_minute_counts(
    con: Any, table: str, start: datetime, end: datetime, state: str | None
) -> dict[datetime, int]:
    """What ``_minute_counts`` counts after ``_dedup`` of ``table``, without copying its
    rows: each event's first delivery (its ts and state) by one aggregation over the
    few columns the count needs (at 1M users the day before's hour is ~560,000 rows;
    copying them with every column into the temp table was half of a refresh)."""
    first_deliveries = (
        "(select arg_min(ts, delivery) as ts, arg_min(state, delivery) as state from ("
        " select cast(ts as timestamp) as ts, sessionId, itemInSession, state,"
        f" (kafka_partition, kafka_offset) as delivery from {table})"
        " group by date_trunc('hour', ts), sessionId, itemInSession)"
    )
    return _minute_counts(con, start, end, state, first_deliveries)


def _dedup_arrow(con: Any, source: str, params: dict[str, Any]) -> Any:
    """``source`` with each event once (its first delivery), as an Arrow table: what
    ``_dedup`` makes, kept outside the connection so later views can read it too."""
    relation = con.sql(
        f"select * replace (cast(ts as timestamp) as ts) from ({source})"
        " qualify row_number() over (partition by date_trunc('hour', ts), sessionId,"
        " itemInSession order by kafka_partition, kafka_offset) = 1",
        params=params,
    )
    # DuckDB 2 calls it to_arrow_table, 1.x fetch_arrow_table (the declared range has both)
    fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    return fetch()


def _dedup(con: Any, name: str, source: str, params: dict[str, Any] | None = None) -> None:
    """``name``: ``source`` with each event once (its first delivery), as staging does.
    A temp table, not a view: every tile's query reads it, and at 1M users re-running
    the window function per query cost ~2 s a refresh (benchmarks/README.md)."""
    con.execute(
        f"create or replace temp table {name} as"
        f" select * replace (cast(ts as timestamp) as ts) from ({source})"
        " qualify row_number() over (partition by date_trunc('hour', ts), sessionId,"
        " itemInSession order by kafka_partition, kafka_offset) = 1",
        params,
    )


def _replace(view: LiveView, **changes: Any) -> LiveView:
    from dataclasses import replace

    return replace(view, **changes)
