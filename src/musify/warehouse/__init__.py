"""The warehouse: lake hours loaded into raw tables, modelled by dbt, read by the
dashboard.

One adapter per engine behind a small base class (``base.Warehouse``): DuckDB
(``duckdb_engine``, the local default) and BigQuery (``bigquery_engine``), each serving
the load, reconciliation, publication and read-only sessions. ``open_warehouse`` picks
one from the settings (connecting to nothing yet). See README.md in this folder.
"""

from __future__ import annotations

from musify.errors import UsageError
from musify.settings import Settings
from musify.warehouse.base import (
    CorruptLakeFile,
    LoadResult,
    Reader,
    Session,
    Warehouse,
    WarehouseBusy,
    WarehouseMissing,
    WarehouseUnavailable,
)
from musify.warehouse.raw import raw_columns

ENGINES = ("duckdb", "bigquery")


def engine_class(settings: Settings) -> type[Warehouse]:
    """The adapter class of ``settings.warehouse_engine`` (MUSIFY_WAREHOUSE_ENGINE)."""
    engine = settings.warehouse_engine.strip().lower()
    if engine == "duckdb":
        from musify.warehouse.duckdb_engine import DuckDBWarehouse

        return DuckDBWarehouse
    if engine == "bigquery":
        from musify.warehouse.bigquery_engine import BigQueryWarehouse

        return BigQueryWarehouse
    raise UsageError(
        f"MUSIFY_WAREHOUSE_ENGINE={settings.warehouse_engine!r} is not a warehouse engine "
        f"(choose {' or '.join(ENGINES)})"
    )


def open_warehouse(settings: Settings) -> Warehouse:
    """The adapter of the configured engine; it connects on first use."""
    return engine_class(settings).from_settings(settings)


def dbt_target(settings: Settings) -> str:
    """The dbt profile target that builds on the engine the settings select."""
    return engine_class(settings).dbt_target


__all__ = [
    "ENGINES",
    "CorruptLakeFile",
    "LoadResult",
    "Reader",
    "Session",
    "Warehouse",
    "WarehouseBusy",
    "WarehouseMissing",
    "WarehouseUnavailable",
    "dbt_target",
    "engine_class",
    "open_warehouse",
    "raw_columns",
]
