"""The DuckDB warehouse: a single file under MUSIFY_HOME, the local default."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from musify.errors import MusifyError
from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.warehouse.base import (
    MODELS_SCHEMA,
    PUBLISHED_HOURS,
    RAW_SCHEMA,
    CorruptLakeFile,
    LoadResult,
    Session,
    Warehouse,
    WarehouseBusy,
    WarehouseMissing,
    WarehouseUnavailable,
    hour_label,
    hours_between,
    plan_load,
)
from musify.warehouse.raw import SONG_METADATA, lake_columns, raw_columns, song_metadata_columns

if TYPE_CHECKING:
    import pandas as pd

    from musify.settings import Settings

_SQL_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "long": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP",
}

__all__ = [
    "MODELS_SCHEMA",
    "RAW_SCHEMA",
    "CorruptLakeFile",
    "DuckDBSession",
    "DuckDBWarehouse",
    "WarehouseUnreadable",
    "hours_between",
    "release_dbt_connections",
    "unreadable_reason",
]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _create(con: Any, table: str, columns: list[tuple[str, str]]) -> None:
    """Create the table, or add the columns a table made by an earlier version lacks
    (new columns are nullable and appended, so older rows read as null)."""
    cols = ", ".join(f"{_q(n)} {_SQL_TYPES[t]}" for n, t in columns)
    con.execute(f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.{table} ({cols})")
    for name, kind in columns:
        con.execute(
            f"ALTER TABLE {RAW_SCHEMA}.{table} ADD COLUMN IF NOT EXISTS {_q(name)} "
            f"{_SQL_TYPES[kind]}"
        )


class WarehouseLocked(MusifyError):
    """Another process kept the DuckDB file locked for longer than we wait."""


def is_lock_conflict(exc: BaseException) -> bool:
    """Whether DuckDB refused a file because another process holds its lock."""
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


class WarehouseUnreadable(MusifyError):
    """The warehouse file exists but DuckDB cannot open it (damaged, truncated, not a
    DuckDB file, or unreadable); the message names the file and what to do."""


def _unreadable(path: Path, exc: BaseException) -> WarehouseUnreadable:
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    if "permission" in first.lower():
        hint = "check the file's owner and permissions"
    else:
        hint = (
            "move it away and rebuild the warehouse from the lake with `musify batch "
            "--full-refresh --start <first hour> --end <last hour>`"
        )
    return WarehouseUnreadable(f"cannot open the warehouse {path} ({first}): {hint}")


def connect(path: Path, *, read_only: bool = False, wait_s: float = 60.0) -> Any:
    """Open the warehouse file, waiting (with backoff) while another process holds it:
    DuckDB allows one writing process, and the dashboard's reads hold the file for
    milliseconds, so a writer that waits a little never fails for them.

    ``WarehouseLocked`` when it stays locked for ``wait_s`` seconds (0: no waiting),
    ``WarehouseUnreadable`` when the file cannot be opened at all."""
    import duckdb

    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if not is_lock_conflict(exc):
                raise _unreadable(path, exc) from None
            if time.monotonic() >= deadline:
                raise WarehouseLocked(
                    f"{path} stayed locked by another process for {wait_s:.0f} s: {exc}"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        except duckdb.ConnectionException:
            raise  # this process has it open differently: not the file's fault
        except duckdb.Error as exc:  # "Corrupt database file: computed checksum ..."
            raise _unreadable(path, exc) from None


def unreadable_reason(path: Path) -> str | None:
    """Why the warehouse file cannot be opened read-only (``WarehouseUnreadable``'s
    message), or None: also when there is no file, or when another process holds it (a
    lock is not damage, and this never waits for it). Opens and closes it at once."""
    import duckdb

    if not path.is_file():
        return None
    try:
        con = connect(path, read_only=True, wait_s=0)
    except WarehouseUnreadable as exc:
        return str(exc)
    except (WarehouseLocked, duckdb.ConnectionException):
        return None
    con.close()
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


class DuckDBWarehouse(Warehouse):
    """The warehouse file. The write side holds one connection, opened on first use and
    waiting up to ``lock_wait_s`` for another writer. DuckDB allows one writing process,
    and while it writes, others cannot even open the file read-only: so each read
    session opens a short-lived read-only connection (never held between refreshes,
    which would block the batch), retries briefly on a lock conflict, and then raises
    ``WarehouseBusy`` (the dashboard shows its last results)."""

    dbt_target: ClassVar[str] = "duckdb"

    def __init__(
        self,
        path: Path,
        *,
        lock_wait_s: float = 60.0,
        read_retries: int = 5,
        read_retry_delay_s: float = 0.2,
    ) -> None:
        self.path = Path(path)
        self.description = f"DuckDB {self.path}"
        self.lock_wait_s = lock_wait_s
        self.read_retries = read_retries
        self.read_retry_delay_s = read_retry_delay_s
        self._con: Any = None
        self._remote_fs = False

    @classmethod
    def from_settings(cls, settings: Settings) -> DuckDBWarehouse:
        return cls(settings.warehouse_path)

    @property
    def con(self) -> Any:
        """The write connection (opened on first use)."""
        if self._con is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = connect(self.path, wait_s=self.lock_wait_s)
            self._con.execute("SET TimeZone = 'UTC'")
        return self._con

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

    def _connect_read_only(self) -> Any:
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
                if attempt > self.read_retries:
                    raise WarehouseBusy(
                        f"{self.path} is locked by another process (a batch is writing)"
                    ) from None
                time.sleep(self.read_retry_delay_s * attempt)

    @contextmanager
    def session(self) -> Iterator[Session]:
        con = self._connect_read_only()
        try:
            yield DuckDBSession(con)
        finally:
            con.close()

    def ensure_raw_tables(self) -> None:
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
        for topic in TOPIC_NAMES:
            _create(self.con, topic, raw_columns(topic))
        _create(self.con, SONG_METADATA, song_metadata_columns())

    def load_hours(self, lake: Lake, hours: list[datetime]) -> LoadResult:
        """One DELETE and one INSERT per topic, whatever the number of hours.

        The files come from each topic's lake table (one snapshot per topic, recorded
        in ``lake_snapshot``); each holds the events of one hour, so a reload replaces
        exactly the rows of the hours it plans.
        """
        self.ensure_raw_tables()
        plan = plan_load(lake, hours)
        if lake.remote and not self._remote_fs:
            # DuckDB's own httpfs cannot be installed offline; fsspec's filesystem can
            # serve its reads of gs:// files (platform notes).
            self.con.register_filesystem(lake.storage.filesystem())
            self._remote_fs = True
        rows: dict[str, dict[str, int]] = {
            t: dict.fromkeys(map(hour_label, hours), 0) for t in TOPIC_NAMES
        }
        now = datetime.now(UTC).replace(tzinfo=None)
        naive = [h.astimezone(UTC).replace(tzinfo=None) for h in hours]
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("CREATE OR REPLACE TEMP TABLE load_hours (h TIMESTAMP)")
            con.executemany("INSERT INTO load_hours VALUES (?)", [[h] for h in naive])
            for topic in TOPIC_NAMES:
                table = f"{RAW_SCHEMA}.{topic}"
                con.execute(f"DELETE FROM {table} WHERE event_hour IN (SELECT h FROM load_hours)")
                files = plan.topic_files(topic)
                if not files:
                    continue
                select = ", ".join(_q(n) for n, _ in lake_columns(topic))
                file_list = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                con.execute(
                    f"INSERT INTO {table} ({select}, event_hour, loaded_at, lake_snapshot) "
                    f"SELECT {select}, date_trunc('hour', ts), ?::TIMESTAMP, ?::BIGINT "
                    f"FROM read_parquet([{file_list}], union_by_name = true)",
                    [now, plan.snapshots.get(topic)],
                )
                counts = con.execute(
                    f"SELECT event_hour, count(*) FROM {table} "
                    "WHERE event_hour IN (SELECT h FROM load_hours) GROUP BY event_hour"
                ).fetchall()
                for h, n in counts:
                    rows[topic][hour_label(h)] = int(n)
            con.execute("DROP TABLE load_hours")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        return LoadResult(rows, plan.missing_hours)

    def load_song_metadata(self, path: Path) -> bool:
        from musify.warehouse.song_metadata import file_sha256, read_song_metadata

        self.ensure_raw_tables()
        digest = file_sha256(path)
        loaded = self.con.execute(
            f"SELECT any_value(source_sha256) FROM {RAW_SCHEMA}.{SONG_METADATA}"
        ).fetchone()[0]
        if loaded == digest:
            return False
        table = read_song_metadata(path, digest)
        names = ", ".join(_q(n) for n, _ in song_metadata_columns())
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DELETE FROM {RAW_SCHEMA}.{SONG_METADATA}")
            con.register("song_metadata_file", table)
            con.execute(
                f"INSERT INTO {RAW_SCHEMA}.{SONG_METADATA} ({names}) "
                f"SELECT {names} FROM song_metadata_file"
            )
            con.unregister("song_metadata_file")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        return True

    def raw_count(self, topic: str, start: datetime, end: datetime) -> int:
        s = start.astimezone(UTC).replace(tzinfo=None)
        e = end.astimezone(UTC).replace(tzinfo=None)
        return int(
            self.con.execute(
                f"SELECT count(*) FROM {RAW_SCHEMA}.{topic} WHERE ts >= ? AND ts < ?", [s, e]
            ).fetchone()[0]
        )

    def fact_counts(
        self, facts: Mapping[str, str], start: datetime, end: datetime
    ) -> dict[str, int]:
        s, e = _naive(start), _naive(end)
        out = {}
        for topic, fact in facts.items():
            row = self.con.execute(
                f"SELECT count(*) FROM {MODELS_SCHEMA}.{fact} "
                "WHERE event_hour >= ? AND event_hour < ?",
                [s, e],
            ).fetchone()
            out[topic] = int(row[0]) if row else 0
        return out

    def loaded_snapshots(self, start: datetime, end: datetime) -> dict[datetime, dict[str, int]]:
        self.ensure_raw_tables()
        out: dict[datetime, dict[str, int]] = {}
        for topic in TOPIC_NAMES:
            rows = self.con.execute(
                f"SELECT event_hour, max(lake_snapshot) FROM {RAW_SCHEMA}.{topic} "
                "WHERE event_hour >= ? AND event_hour < ? AND lake_snapshot IS NOT NULL "
                "GROUP BY event_hour",
                [_naive(start), _naive(end)],
            ).fetchall()
            for h, snap in rows:
                out.setdefault(h.replace(tzinfo=UTC), {})[topic] = int(snap)
        return out

    def published_snapshots(
        self, start: datetime, end: datetime
    ) -> dict[datetime, dict[str, int | None]]:
        import orjson

        # Read only: the table appears with the first publication (the dashboard tells
        # "no publish records yet" by its absence).
        columns = {
            r[0]
            for r in self.con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?",
                [RAW_SCHEMA, PUBLISHED_HOURS],
            ).fetchall()
        }
        if not columns:
            return {}
        snapshots = "lake_snapshots" if "lake_snapshots" in columns else "NULL"
        rows = self.con.execute(
            f"SELECT hour, {snapshots} FROM {RAW_SCHEMA}.{PUBLISHED_HOURS} "
            "WHERE hour >= ? AND hour < ?",
            [_naive(start), _naive(end)],
        ).fetchall()
        return {h.replace(tzinfo=UTC): dict(orjson.loads(s or "{}")) for h, s in rows}

    def record_published(
        self,
        counts: Mapping[datetime, Mapping[str, int]],
        snapshots: Mapping[datetime, Mapping[str, int | None]] | None = None,
    ) -> None:
        if not counts:
            return
        import orjson

        table = f"{RAW_SCHEMA}.{PUBLISHED_HOURS}"
        con = self.con
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {table} "
            "(hour TIMESTAMP PRIMARY KEY, published_at TIMESTAMP, events JSON)"
        )
        # the lake snapshots each topic was counted at (added after the first version)
        con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS lake_snapshots JSON")
        now = _naive(datetime.now(UTC))
        con.execute("BEGIN TRANSACTION")
        try:
            for h, per_topic in sorted(counts.items()):
                snaps = dict((snapshots or {}).get(h, {}))
                con.execute(f"DELETE FROM {table} WHERE hour = ?", [_naive(h)])
                con.execute(
                    f"INSERT INTO {table} (hour, published_at, events, lake_snapshots) "
                    "VALUES (?, ?, ?, ?)",
                    [
                        _naive(h),
                        now,
                        orjson.dumps(dict(per_topic)).decode(),
                        orjson.dumps(snaps).decode(),
                    ],
                )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def _naive(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None)


def release_dbt_connections() -> None:
    """Close the DuckDB handle dbt-duckdb keeps in the process after a build.

    Its connection manager holds one environment per process and only drops the
    reference on cleanup; until it is closed, opening the same file with another
    configuration (e.g. read-only, or from the next load) fails.
    """
    import gc

    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    env = DuckDBConnectionManager._ENV
    if env is not None:
        env.close()
    DuckDBConnectionManager.close_all_connections()  # type: ignore[no-untyped-call]
    gc.collect()
