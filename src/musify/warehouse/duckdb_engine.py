"""The DuckDB warehouse: a single file under MUSIFY_HOME, the local default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from musify.errors import MusifyError
from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.warehouse.base import LoadResult, Warehouse
from musify.warehouse.raw import lake_columns, raw_columns

_SQL_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "long": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP",
}
RAW_SCHEMA = "raw"


class CorruptLakeFile(MusifyError):
    """A lake file cannot be read; the message names it."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _check_files(files: list[Path]) -> None:
    """Read every footer first, so a corrupt file is reported by name."""
    import pyarrow.parquet as pq

    for f in files:
        try:
            pq.read_metadata(f)
        except Exception as exc:
            raise CorruptLakeFile(
                f"corrupt lake file {f}: {exc}; the warehouse was left unchanged "
                "(repair or remove the file, then run the batch again)"
            ) from None


class DuckDBWarehouse(Warehouse):
    dbt_target: ClassVar[str] = "duckdb"
    transactional_load: ClassVar[bool] = True

    def __init__(self, path: Path) -> None:
        import duckdb

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.con: Any = duckdb.connect(str(path))
        self.con.execute("SET TimeZone = 'UTC'")

    def ensure_raw_tables(self) -> None:
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
        for topic in TOPIC_NAMES:
            cols = ", ".join(f"{_q(n)} {_SQL_TYPES[t]}" for n, t in raw_columns(topic))
            self.con.execute(f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.{topic} ({cols})")

    def load_hours(self, lake: Lake, hours: list[datetime]) -> LoadResult:
        self.ensure_raw_tables()
        plan: dict[str, dict[datetime, list[Path]]] = {}
        for topic in TOPIC_NAMES:
            plan[topic] = {}
            for h in hours:
                d = lake.hour_dir(topic, f"{h:%Y-%m-%d}", h.hour)
                files = sorted(d.glob("*.parquet")) if d.is_dir() else []
                _check_files(files)
                plan[topic][h] = files
        rows: dict[str, dict[str, int]] = {t: {} for t in TOPIC_NAMES}
        missing = [f"{h:%Y-%m-%dT%H}" for h in hours if not any(plan[t][h] for t in TOPIC_NAMES)]
        now = datetime.now(UTC).replace(tzinfo=None)
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            for topic in TOPIC_NAMES:
                names = [n for n, _ in lake_columns(topic)]
                select = ", ".join(_q(n) for n in names)
                for h in hours:
                    naive = h.astimezone(UTC).replace(tzinfo=None)
                    con.execute(f"DELETE FROM {RAW_SCHEMA}.{topic} WHERE event_hour = ?", [naive])
                    files = plan[topic][h]
                    if not files:
                        rows[topic][f"{h:%Y-%m-%dT%H}"] = 0
                        continue
                    file_list = "[" + ", ".join(f"'{f}'" for f in files) + "]"
                    con.execute(
                        f"INSERT INTO {RAW_SCHEMA}.{topic} ({select}, event_hour, loaded_at) "
                        f"SELECT {select}, ?::TIMESTAMP, ?::TIMESTAMP "
                        f"FROM read_parquet({file_list}, union_by_name=true)",
                        [naive, now],
                    )
                    n = con.execute(
                        f"SELECT count(*) FROM {RAW_SCHEMA}.{topic} WHERE event_hour = ?", [naive]
                    ).fetchone()[0]
                    rows[topic][f"{h:%Y-%m-%dT%H}"] = int(n)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        return LoadResult(rows, tuple(missing))

    def raw_count(self, topic: str, start: datetime, end: datetime) -> int:
        s = start.astimezone(UTC).replace(tzinfo=None)
        e = end.astimezone(UTC).replace(tzinfo=None)
        return int(
            self.con.execute(
                f"SELECT count(*) FROM {RAW_SCHEMA}.{topic} WHERE ts >= ? AND ts < ?", [s, e]
            ).fetchone()[0]
        )

    def close(self) -> None:
        self.con.close()


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """The hour starts in [start, end); both must be on the hour."""
    out = []
    h = start
    while h < end:
        out.append(h)
        h += timedelta(hours=1)
    return out


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
