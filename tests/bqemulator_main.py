"""Runs bqemulator (in its own venv) with one fix to the emulator, not to Musify.

bqemulator 1.4 loads Parquet with DuckDB's ``read_parquet(path)``, whose hive-partition
auto-detection turns the folders of a ``gs://…/date=2024-03-18/hour=16/x.parquet`` URI
into two extra columns, so every load of our lake's files fails ("N columns but N+2
values"). BigQuery adds partition columns only when a load job asks for them
(``hivePartitioningOptions``), which ours does not; this keeps the emulator to that.
Usage: ``.venv-bqemu/bin/python tests/bqemulator_main.py start ...`` (tests/conftest.py).
"""

from __future__ import annotations

import sys
from typing import Any

from bqemulator.cli import main
from bqemulator.jobs import executor


def _load_parquet(path: str, target_ref: str, ctx: Any) -> None:
    ctx.engine.execute(
        f"INSERT INTO {target_ref} SELECT * FROM read_parquet(?, hive_partitioning = false)",
        [path],
    )


executor._LOAD_FORMAT_HANDLERS["PARQUET"] = _load_parquet

if __name__ == "__main__":
    sys.exit(main())
