"""Where the dashboard's queries run: one backend class per warehouse engine.

The query functions (``musify.dashboard.queries``) are written once, in SQL that DuckDB
and BigQuery both accept, against a ``Session``: an open, read-only view of the
warehouse that runs a query with named parameters (``$name``) and returns a small
DataFrame. A ``Backend`` opens sessions. A BigQuery backend is one more subclass: it
qualifies table names with its project and dataset, turns ``$name`` into ``@name`` and
runs the query through the BigQuery client.

DuckDB allows one writing process, and while ``musify batch`` writes, other processes
cannot even open the file read-only. So the DuckDB backend opens a short-lived
read-only connection for each refresh (never holding one between refreshes, which
would block the batch), retries briefly on a lock conflict, and then reports
``WarehouseBusy``, for the app to show its last results.
"""

from __future__ import annotations

import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from musify.errors import MusifyError, UsageError
from musify.settings import Settings

#: The dbt project's schemas: models (staging, dims, facts, marts) and loaded raw tables.
MODELS_SCHEMA = "analytics"
RAW_SCHEMA = "raw"


class WarehouseUnavailable(MusifyError):
    """The warehouse cannot be read right now."""


class WarehouseMissing(WarehouseUnavailable):
    """There is no warehouse at the configured place yet."""


class WarehouseBusy(WarehouseUnavailable):
    """Another process is writing the warehouse (DuckDB: the batch holds the lock)."""


class Session(ABC):
    """An open, read-only view of the warehouse; queries use ``$name`` parameters."""

    @abstractmethod
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run one query; ``{schema.table}`` placeholders are qualified first."""

    @abstractmethod
    def tables(self, schema: str) -> set[str]:
        """Names of the tables and views in a schema (empty if it does not exist)."""

    @abstractmethod
    def qualify(self, schema: str, table: str) -> str:
        """The engine's name for a table in one of the dbt project's schemas."""

    def render(self, sql: str) -> str:
        """Replace ``{analytics.mart_x}``-style placeholders with qualified names."""
        return re.sub(r"\{(\w+)\.(\w+)\}", lambda m: self.qualify(m.group(1), m.group(2)), sql)


class Backend(ABC):
    """Opens sessions on one warehouse."""

    #: Shown in the app's footer and errors: which engine and where.
    description: str

    @abstractmethod
    def session(self) -> AbstractContextManager[Session]:
        """A context manager yielding a Session; raises WarehouseUnavailable."""

    def data_version(self) -> object:
        """Something that changes whenever the warehouse may have changed, obtainable
        without opening the warehouse (results are cached per version); ``None`` means
        unknown, so never reuse cached results."""
        return None


class DuckDBSession(Session):
    def __init__(self, con: Any) -> None:
        self._con = con

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        df: pd.DataFrame = self._con.execute(self.render(sql), dict(params or {})).df()
        return df

    def tables(self, schema: str) -> set[str]:
        rows = self._con.execute(
            "select table_name from information_schema.tables where table_schema = ?",
            [schema],
        ).fetchall()
        return {str(r[0]) for r in rows}

    def qualify(self, schema: str, table: str) -> str:
        return f'"{schema}"."{table}"'


def _is_lock_conflict(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


class DuckDBBackend(Backend):
    """The local warehouse file, read through short-lived read-only connections."""

    def __init__(self, path: Path, *, retries: int = 5, retry_delay_s: float = 0.2) -> None:
        self.path = Path(path)
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.description = f"DuckDB {self.path}"

    def data_version(self) -> object:
        # The file, and the write-ahead log beside it, change on every commit.
        stamps: list[tuple[int, int]] = []
        for p in (self.path, self.path.with_name(self.path.name + ".wal")):
            try:
                st = os.stat(p)
            except FileNotFoundError:
                stamps.append((0, 0))
            else:
                stamps.append((st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    def _connect(self) -> Any:
        import duckdb

        if not self.path.exists():
            raise WarehouseMissing(f"no warehouse at {self.path}")
        attempt = 0
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=True)
            except duckdb.IOException as exc:
                if not _is_lock_conflict(exc):
                    if not self.path.exists():
                        raise WarehouseMissing(f"no warehouse at {self.path}") from None
                    raise WarehouseUnavailable(f"cannot open {self.path}: {exc}") from None
                attempt += 1
                if attempt > self.retries:
                    raise WarehouseBusy(
                        f"{self.path} is locked by another process (a batch is writing)"
                    ) from None
                time.sleep(self.retry_delay_s * attempt)

    @contextmanager
    def session(self) -> Iterator[Session]:
        con = self._connect()
        try:
            yield DuckDBSession(con)
        finally:
            con.close()


def backend_for(settings: Settings) -> Backend:
    """The backend of the configured warehouse (DuckDB at ``settings.warehouse_path``)."""
    if settings.warehouse_engine != "duckdb":
        raise UsageError(
            f"the dashboard reads DuckDB warehouses only so far, not MUSIFY_WAREHOUSE_ENGINE="
            f"{settings.warehouse_engine!r} (a BigQuery backend is one Backend subclass in "
            "musify/dashboard/backend.py)"
        )
    return DuckDBBackend(settings.warehouse_path)
