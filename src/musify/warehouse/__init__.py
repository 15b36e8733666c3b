"""The warehouse: lake hours loaded into raw tables, modelled by dbt.

One adapter per engine behind a small base class (``base.Warehouse``), with its
capabilities declared on the class: DuckDB (``duckdb_engine``, the local default) and
BigQuery (``bigquery_engine``). ``open_warehouse`` picks one from the settings. See
README.md in this folder.
"""

from __future__ import annotations

from musify.errors import UsageError
from musify.settings import Settings
from musify.warehouse.base import CorruptLakeFile, LoadResult, Warehouse
from musify.warehouse.raw import raw_columns

ENGINES = ("duckdb", "bigquery")


def open_warehouse(settings: Settings) -> Warehouse:
    """The adapter of ``settings.warehouse_engine`` (MUSIFY_WAREHOUSE_ENGINE)."""
    engine = settings.warehouse_engine.strip().lower()
    if engine == "duckdb":
        from musify.warehouse.duckdb_engine import DuckDBWarehouse

        return DuckDBWarehouse(settings.warehouse_path)
    if engine == "bigquery":
        from musify.warehouse.bigquery_engine import BigQueryWarehouse

        return BigQueryWarehouse.from_settings(settings)
    raise UsageError(
        f"MUSIFY_WAREHOUSE_ENGINE={settings.warehouse_engine!r} is not a warehouse engine "
        f"(choose {' or '.join(ENGINES)})"
    )


def dbt_target(settings: Settings) -> str:
    """The dbt profile target that builds on the engine the settings select."""
    engine = settings.warehouse_engine.strip().lower()
    if engine not in ENGINES:
        open_warehouse(settings)  # raises the UsageError naming the setting
    return engine


__all__ = [
    "ENGINES",
    "CorruptLakeFile",
    "LoadResult",
    "Warehouse",
    "dbt_target",
    "open_warehouse",
    "raw_columns",
]
