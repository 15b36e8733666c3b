"""All tiles of one page load, read in one short session, cached per warehouse version.

A refresh opens one read-only session, runs every tile's query and closes it. Results
are kept per (filters, data version), so re-rendering the page (a widget change elsewhere,
the periodic freshness check) costs no query while the warehouse is unchanged. When the
warehouse is busy (DuckDB: a batch is writing) the last results for the same filters are
returned, marked stale, for the page to show with a "refreshing" note.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import pandas as pd

from musify.dashboard import queries as q
from musify.warehouse import Reader, Session, WarehouseBusy


@dataclass(frozen=True)
class Overview:
    """What the page needs before its filters: are the marts there, and their span."""

    readiness: q.Readiness
    bounds: q.Bounds | None


@dataclass(frozen=True)
class Tiles:
    filters: q.Filters
    streams_today: q.StreamsToday
    total_users: int
    active_users: int
    by_state: pd.DataFrame
    top_songs: pd.DataFrame
    top_artists: pd.DataFrame
    gender: pd.DataFrame
    level_by_gender: pd.DataFrame
    streams_by_hour: pd.DataFrame
    status_changes: pd.DataFrame
    session_lengths: pd.DataFrame
    songs_per_session: pd.DataFrame
    active_hourly: pd.DataFrame
    active_daily: pd.DataFrame
    top_song_per_state: pd.DataFrame
    published: q.Published


def load_overview(s: Session) -> Overview:
    ready = q.readiness(s)
    return Overview(ready, q.bounds(s) if ready.ready else None)


def load_tiles(s: Session, f: q.Filters) -> Tiles:
    return Tiles(
        filters=f,
        streams_today=q.streams_today(s, f),
        total_users=q.total_users(s, f),
        active_users=q.active_users(s, f),
        by_state=q.activity_by_state(s, f),
        top_songs=q.top_songs(s, f),
        top_artists=q.top_artists(s, f),
        gender=q.gender_distribution(s, f),
        level_by_gender=q.level_by_gender(s, f),
        streams_by_hour=q.streams_by_hour(s, f),
        status_changes=q.status_changes(s, f),
        session_lengths=q.session_lengths(s, f),
        songs_per_session=q.songs_per_session(s, f),
        active_hourly=q.active_users_hourly(s, f),
        active_daily=q.active_users_daily(s, f),
        top_song_per_state=q.top_song_per_state(s, f),
        published=q.last_published(s),
    )


T = TypeVar("T")


@dataclass(frozen=True)
class Result(Generic[T]):
    value: T
    #: True when the warehouse was busy and these are the last results read before.
    stale: bool = False


class Refresher:
    """Reads overview and tiles through a backend, with the caching described above.

    Shared by all browser sessions of one server (Streamlit runs them in threads).
    """

    def __init__(self, backend: Reader, max_entries: int = 64) -> None:
        self.backend = backend
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._fresh: OrderedDict[object, object] = OrderedDict()  # (key, version) ->
        self._last: OrderedDict[object, object] = OrderedDict()

    def overview(self) -> Result[Overview]:
        return self._get("overview", load_overview)

    def tiles(self, f: q.Filters) -> Result[Tiles]:
        return self._get(f, lambda s: load_tiles(s, f))

    def _get(self, key: object, load: Callable[[Session], T]) -> Result[T]:
        version = self.backend.data_version()
        if version is not None:
            with self._lock:
                hit = self._fresh.get((key, version))
            if hit is not None:
                return Result(hit)  # type: ignore[arg-type]
        try:
            with self.backend.session() as s:
                value = load(s)
        except WarehouseBusy:
            with self._lock:
                last = self._last.get(key)
            if last is None:
                raise
            return Result(last, stale=True)  # type: ignore[arg-type]
        with self._lock:
            if version is not None:
                self._remember(self._fresh, (key, version), value)
            self._remember(self._last, key, value)
        return Result(value)

    def _remember(self, cache: OrderedDict[object, object], key: object, value: object) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.max_entries:
            cache.popitem(last=False)
