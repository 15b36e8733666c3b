"""Where the dashboard's queries run: one backend class per warehouse engine.

The query functions (``musify.dashboard.queries``) are written once, in SQL that DuckDB
and BigQuery both accept, against a ``Session``: an open, read-only view of the
warehouse that runs a query with named parameters (``$name``) and returns a small
DataFrame. A ``Backend`` opens sessions. The BigQuery backend qualifies table names with
its project and datasets, turns ``$name`` into a typed ``@name`` query parameter and runs
the query through the client the warehouse engine builds.

DuckDB allows one writing process, and while ``musify batch`` writes, other processes
cannot even open the file read-only. So the DuckDB backend opens a short-lived
read-only connection for each refresh (never holding one between refreshes, which
would block the batch), retries briefly on a lock conflict, and then reports
``WarehouseBusy``, for the app to show its last results.
"""

from __future__ import annotations

import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from musify.errors import MusifyError, UsageError
from musify.settings import Settings
from musify.warehouse.duckdb_engine import is_lock_conflict

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
                if not is_lock_conflict(exc):
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


#: BigQuery's numeric result types (legacy and standard names) as pandas dtypes.
_BQ_NUMBERS = {"INTEGER": "int64", "INT64": "int64", "FLOAT": "float64", "FLOAT64": "float64"}


def bq_parameter(name: str, value: Any) -> Any:
    """A typed BigQuery query parameter. Naive datetimes are UTC wall-clock times, as the
    queries pass them, and the marts' hours are TIMESTAMPs; a null is a STRING (the only
    nullable parameter is the state filter)."""
    from google.cloud import bigquery

    if value is None or isinstance(value, str):
        kind = "STRING"
    elif isinstance(value, bool):
        kind = "BOOL"
    elif isinstance(value, int):
        kind = "INT64"
    elif isinstance(value, float):
        kind = "FLOAT64"
    elif isinstance(value, datetime):
        kind = "TIMESTAMP"
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        kind = "DATE"
    else:
        raise TypeError(f"no BigQuery type for query parameter {name}={value!r}")
    return bigquery.ScalarQueryParameter(name, kind, value)


class BigQuerySession(Session):
    def __init__(self, client: Any, project: str, datasets: Mapping[str, str], location: str):
        self._client = client
        self._project = project
        self._datasets = datasets
        self._location = location

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        from google.cloud import bigquery

        values = dict(params or {})
        config = bigquery.QueryJobConfig(
            query_parameters=[bq_parameter(n, v) for n, v in values.items()]
        )
        text = re.sub(r"\$(\w+)", r"@\1", self.render(sql))
        result = self._client.query(text, job_config=config, location=self._location).result()
        # Rows to a frame directly: the marts' results are small, and this needs no
        # db-dtypes; timestamps come back timezone-aware (UTC), dates as dates. Numbers
        # get numeric columns (NaN for null) as DuckDB gives, also when there are no rows.
        df = pd.DataFrame(
            [list(row.values()) for row in result], columns=[f.name for f in result.schema]
        )
        for f in result.schema:
            if f.field_type in _BQ_NUMBERS:
                df[f.name] = (
                    pd.to_numeric(df[f.name])
                    if len(df)
                    else df[f.name].astype(_BQ_NUMBERS[f.field_type])
                )
        return df

    def tables(self, schema: str) -> set[str]:
        from google.api_core.exceptions import NotFound

        try:
            return {t.table_id for t in self._client.list_tables(self._dataset_id(schema))}
        except NotFound:
            return set()

    def qualify(self, schema: str, table: str) -> str:
        return f"`{self._dataset_id(schema)}.{table}`"

    def _dataset_id(self, schema: str) -> str:
        if schema not in self._datasets:
            raise ValueError(f"no BigQuery dataset for schema {schema!r}")
        return f"{self._project}.{self._datasets[schema]}"


class BigQueryBackend(Backend):
    """The marts in a BigQuery dataset, through one client (BigQuery has no locks to
    respect). The client is the warehouse engine's (``musify.warehouse.bigquery_engine``):
    same credentials, location and API endpoint (an emulator in tests)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.datasets = {MODELS_SCHEMA: settings.bq_dataset, RAW_SCHEMA: settings.bq_raw_dataset}
        self.description = f"BigQuery {settings.bq_project}.{settings.bq_dataset}"
        self._client: Any = None
        self._lock = threading.Lock()

    def _client_or_fail(self) -> Any:
        from musify.warehouse.bigquery_engine import BigQueryWarehouse

        with self._lock:
            if self._client is None:
                try:
                    self._client = BigQueryWarehouse.from_settings(self.settings).client
                except MusifyError:
                    raise
                except Exception as exc:  # e.g. no credentials: google.auth's errors
                    raise WarehouseUnavailable(
                        f"cannot connect to {self.description}: {exc}"
                    ) from None
            return self._client

    def data_version(self) -> object:
        # When the marts or the publish records last changed: one metadata call per
        # table, no query job. Any failure means unknown (so nothing is cached).
        from google.api_core.exceptions import NotFound

        from musify.dashboard.queries import PUBLISHED_HOURS
        from musify.warehouse.models import MARTS

        tables = [(MODELS_SCHEMA, m) for m in MARTS] + [(RAW_SCHEMA, PUBLISHED_HOURS)]
        stamps: list[object] = []
        try:
            client = self._client_or_fail()
            for schema, table in tables:
                table_id = f"{self.settings.bq_project}.{self.datasets[schema]}.{table}"
                try:
                    got = client.get_table(table_id)
                except NotFound:
                    stamps.append(None)
                else:
                    stamps.append((got.modified, got.num_rows))
        except Exception:
            return None
        return tuple(stamps)

    @contextmanager
    def session(self) -> Iterator[Session]:
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError
        from requests.exceptions import ConnectionError, Timeout

        client = self._client_or_fail()
        try:
            yield BigQuerySession(
                client, self.settings.bq_project, self.datasets, self.settings.bq_location
            )
        except (GoogleAPIError, GoogleAuthError, ConnectionError, Timeout) as exc:
            # Shown on the page instead of a stack trace; the message says what failed.
            raise WarehouseUnavailable(f"{self.description}: {exc}") from None


def backend_for(settings: Settings) -> Backend:
    """The backend of the configured warehouse: DuckDB at ``settings.warehouse_path``, or
    BigQuery (``bq_project``, ``bq_dataset``, ``bq_raw_dataset``)."""
    if settings.warehouse_engine == "bigquery":
        if not settings.bq_project:
            raise UsageError(
                "the dashboard reads BigQuery (MUSIFY_WAREHOUSE_ENGINE=bigquery) but no project "
                "is set: set MUSIFY_BQ_PROJECT"
            )
        return BigQueryBackend(settings)
    if settings.warehouse_engine != "duckdb":
        raise UsageError(
            f"the dashboard cannot read MUSIFY_WAREHOUSE_ENGINE={settings.warehouse_engine!r}: "
            "use duckdb or bigquery"
        )
    return DuckDBBackend(settings.warehouse_path)
