"""The warehouse adapter interface (one adapter per engine, as in SQLMesh).

One class per engine serves everything that touches the warehouse: the hourly load,
reconciliation and publication (``musify batch``) and the dashboard's reads (read-only
``Session``s). Opening an adapter connects to nothing: the write side connects on first
use, and each read session briefly on its own, so the dashboard never holds what the
batch needs. The part of a load that does not depend on the engine is shared here:
planning an hour's data files from the lake's tables and checking them before anything
changes.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from musify.errors import MusifyError
from musify.events import TOPIC_NAMES
from musify.lake import Lake, LakeError

if TYPE_CHECKING:
    import pandas as pd

    from musify.settings import Settings

#: The publish records: one row per reconciled hour (the dashboard reads it too).
PUBLISHED_HOURS = "published_hours"
#: The dbt project's schemas (BigQuery: datasets): models (staging, dims, facts, marts)
#: and the loaded raw tables.
MODELS_SCHEMA = "analytics"
RAW_SCHEMA = "raw"


class WarehouseUnavailable(MusifyError):
    """The warehouse cannot be read right now."""


class WarehouseMissing(WarehouseUnavailable):
    """There is no warehouse at the configured place yet."""


class WarehouseBusy(WarehouseUnavailable):
    """Another process is writing the warehouse (DuckDB: the batch holds the lock)."""


class Session(ABC):
    """An open, read-only view of the warehouse; queries use ``$name`` parameters and
    ``{schema.table}`` placeholders, so one SQL text runs on every engine."""

    @abstractmethod
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a query; a small result as a DataFrame."""

    @abstractmethod
    def tables(self, schema: str) -> set[str]:
        """Names of the tables and views in a schema (empty if it does not exist)."""

    @abstractmethod
    def qualify(self, schema: str, table: str) -> str:
        """The engine's name for a table in one of the dbt project's schemas."""

    def render(self, sql: str) -> str:
        """Replace ``{analytics.mart_x}``-style placeholders with qualified names."""
        return re.sub(r"\{(\w+)\.(\w+)\}", lambda m: self.qualify(m.group(1), m.group(2)), sql)


class CorruptLakeFile(MusifyError):
    """A lake file cannot be read; the message names it."""


@dataclass(frozen=True)
class LoadResult:
    """Rows loaded per topic and hour; hours with no lake files load 0 rows."""

    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> hour -> rows
    missing_hours: tuple[str, ...] = ()

    def total(self, topic: str | None = None) -> int:
        topics = [topic] if topic else list(self.rows)
        return sum(sum(self.rows.get(t, {}).values()) for t in topics)


@dataclass(frozen=True)
class LoadPlan:
    """The data files of each topic and hour to load, as the lake's tables name them at
    one snapshot per topic, checked present and readable.

    Files are URIs as strings (local paths, or ``gs://`` URIs when the lake is on GCS),
    so engines that load by URI need not know where the lake lives.
    """

    hours: tuple[datetime, ...]
    files: dict[str, dict[datetime, list[str]]]  # topic -> hour -> files
    #: The table snapshot each topic's files come from (None: the table is empty).
    snapshots: dict[str, int | None] = field(default_factory=dict)

    @property
    def missing_hours(self) -> tuple[str, ...]:
        return tuple(
            hour_label(h) for h in self.hours if not any(self.files[t][h] for t in TOPIC_NAMES)
        )

    def topic_files(self, topic: str) -> list[str]:
        return [f for h in self.hours for f in self.files[topic][h]]


def hour_label(h: datetime) -> str:
    return f"{h:%Y-%m-%dT%H}"


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """The hour starts in [start, end); both must be on the hour."""
    out = []
    h = start
    while h < end:
        out.append(h)
        h += timedelta(hours=1)
    return out


def check_files(files: list[str]) -> None:
    """Read every local file's footer first, so a corrupt file is reported by name.

    Remote files (``gs://``) are checked by the engine's load job, which fails before
    anything visible changes.
    """
    import pyarrow.parquet as pq

    for f in files:
        if "://" in f:
            continue
        try:
            pq.read_metadata(f)
        except Exception as exc:
            raise CorruptLakeFile(
                f"corrupt lake file {f}: {exc}; the warehouse was left unchanged "
                "(repair or remove the file, then run the batch again)"
            ) from None


def plan_load(lake: Lake, hours: list[datetime]) -> LoadPlan:
    """The files of every topic for these hours, planned from each table's current
    snapshot: a committed file that is missing, or a corrupt one, fails here."""
    from musify.lake.read import plan

    files: dict[str, dict[datetime, list[str]]] = {}
    snapshots: dict[str, int | None] = {}
    for topic in TOPIC_NAMES:
        p = plan(lake, topic, hours)
        files[topic] = {h: p.files.get(h, []) for h in hours}
        snapshots[topic] = p.snapshot_id
        check_files(p.paths())
    return LoadPlan(tuple(hours), files, snapshots)


def unchanged_hours(
    lake: Lake, hours: list[datetime], loaded: Mapping[datetime, Mapping[str, int]]
) -> set[datetime]:
    """The hours among ``hours`` whose raw rows are what the lake holds for them now:
    for every topic, the table names the same data files for the hour at its current
    snapshot as at the snapshot the rows were loaded from (``loaded``, from
    ``Warehouse.loaded_snapshots``), and no files for a topic with no rows loaded.

    Data files are immutable, so the same files mean the same rows; a late event, a
    compaction or an expired snapshot counts as a change (reloading is always safe).
    """
    from musify.lake.read import plan

    same = set(hours)
    for topic in TOPIC_NAMES:
        if not same:
            break
        now = plan(lake, topic, sorted(same)).files
        by_snapshot: dict[int | None, list[datetime]] = {}
        for h in sorted(same):
            by_snapshot.setdefault(loaded.get(h, {}).get(topic), []).append(h)
        for snapshot, its_hours in by_snapshot.items():
            before: dict[datetime, list[str]] = {}
            if snapshot is not None:
                try:
                    before = plan(lake, topic, its_hours, snapshot).files
                except (LakeError, ValueError):
                    # expired, or its files removed since: not provably the same
                    same.difference_update(its_hours)
                    continue
            same.difference_update(h for h in its_hours if now[h] != before.get(h, []))
    return same


class Reader(ABC):
    """The read side of a warehouse adapter (what the dashboard needs)."""

    #: Shown in the dashboard's footer and errors: which engine and where.
    description: str

    @abstractmethod
    def session(self) -> AbstractContextManager[Session]:
        """A context manager yielding a read-only Session; raises WarehouseUnavailable
        (WarehouseMissing, WarehouseBusy) when the warehouse cannot be read now."""

    def data_version(self) -> object:
        """Something that changes whenever the warehouse may have changed, obtainable
        without opening the warehouse (readers cache results per version); ``None``
        means unknown, so never reuse cached results."""
        return None


class Warehouse(Reader):
    """One engine's warehouse: loads lake hours into raw tables, atomically and
    idempotently; counts facts and records published hours; opens read-only sessions."""

    #: The dbt target that builds models on this engine (``musify.warehouse.dbt_target``).
    dbt_target: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> Warehouse:
        """The adapter the settings describe (no connection yet)."""

    @abstractmethod
    def ensure_raw_tables(self) -> None:
        """Create the raw schema and tables if they do not exist."""

    @abstractmethod
    def load_hours(self, lake: Lake, hours: list[datetime]) -> LoadResult:
        """Replace the raw rows of these hours with the lake's committed files for them.

        Loading an hour twice leaves the tables as loading it once. A corrupt lake file
        fails the whole load with a message naming the file and changes nothing.
        """

    @abstractmethod
    def load_song_metadata(self, path: Path) -> bool:
        """Replace ``raw.song_metadata`` with a Million Song ``songs.csv``.

        Returns False (and changes nothing) when the table already holds this file's
        content, so a batch can call it every hour at no cost.
        """

    @abstractmethod
    def raw_count(self, topic: str, start: datetime, end: datetime) -> int:
        """Raw rows of a topic with event time in [start, end)."""

    @abstractmethod
    def fact_counts(
        self, facts: Mapping[str, str], start: datetime, end: datetime
    ) -> dict[str, int]:
        """Rows per topic of its fact table (``facts``: topic -> model) with
        ``event_hour`` in [start, end)."""

    @abstractmethod
    def loaded_snapshots(self, start: datetime, end: datetime) -> dict[datetime, dict[str, int]]:
        """Per hour in [start, end) and topic, the lake table snapshot its raw rows were
        loaded from (hours or topics without rows are absent)."""

    @abstractmethod
    def published_snapshots(
        self, start: datetime, end: datetime
    ) -> dict[datetime, dict[str, int | None]]:
        """Per published hour in [start, end), the lake snapshot each topic was counted
        at when it was published (``record_published``); unpublished hours are absent."""

    @abstractmethod
    def record_published(
        self,
        counts: Mapping[datetime, Mapping[str, int]],
        snapshots: Mapping[datetime, Mapping[str, int | None]] | None = None,
    ) -> None:
        """Replace the rows of these hours in ``published_hours`` (raw schema), with
        their event counts per topic and the lake snapshots they were counted at (so
        the hour can be read again exactly, by time travel), in one transaction."""

    def close(self) -> None:
        """Release connections."""
