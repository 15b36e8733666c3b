"""The warehouse: lake hours loaded into raw tables, modelled by dbt.

One adapter per engine behind a small base class (``base.Warehouse``), with its
capabilities declared on the class: DuckDB (``duckdb_engine``, the local default).
See README.md in this folder.
"""

from musify.warehouse.base import LoadResult, Warehouse
from musify.warehouse.raw import raw_columns

__all__ = ["LoadResult", "Warehouse", "raw_columns"]
