"""Which warehouse the dashboard reads: the warehouse's own adapter for the configured
engine (``musify.warehouse``), whose read-only ``Session``s run the dashboard's queries.

The query functions (``musify.dashboard.queries``) are written once, in SQL that DuckDB
and BigQuery both accept, against a ``Session``. The DuckDB adapter opens a short-lived
read-only connection for each refresh and reports ``WarehouseBusy`` while the batch
writes (the app then shows its last results); the BigQuery adapter qualifies table
names with its project and datasets and runs typed query parameters.
"""

from __future__ import annotations

from musify.errors import UsageError
from musify.settings import Settings
from musify.warehouse import Warehouse, engine_class


def backend_for(settings: Settings) -> Warehouse:
    """The adapter of the configured warehouse: DuckDB at ``settings.warehouse_path``,
    or BigQuery (``bq_project``, ``bq_dataset``, ``bq_raw_dataset``)."""
    if settings.warehouse_engine == "bigquery" and not settings.bq_project:
        raise UsageError(
            "the dashboard reads BigQuery (MUSIFY_WAREHOUSE_ENGINE=bigquery) but no project "
            "is set: set MUSIFY_BQ_PROJECT"
        )
    if settings.warehouse_engine not in ("duckdb", "bigquery"):
        raise UsageError(
            f"the dashboard cannot read MUSIFY_WAREHOUSE_ENGINE={settings.warehouse_engine!r}: "
            "use duckdb or bigquery"
        )
    return engine_class(settings).from_settings(settings)
