"""The dashboard's marts under the hourly batch: re-running hours changes nothing."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from musify.settings import Settings
from musify.warehouse.models import MARTS
from tests.dashboard.conftest import START

pytestmark = [pytest.mark.slow]


def dump(path: Path) -> dict[str, list[Any]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            m: con.execute(f"select * from analytics.{m} order by all").fetchall() for m in MARTS
        }
    finally:
        con.close()


def test_rerunning_hours_leaves_the_marts_identical(warehouse: Settings, tmp_path: Path) -> None:
    from musify.batch import run_batch

    home = tmp_path / "home"
    shutil.copytree(warehouse.home / "lake", home / "lake")
    shutil.copy(warehouse.warehouse_path, home / "warehouse.duckdb")
    settings = Settings(home=home)
    before = dump(settings.warehouse_path)
    assert all(before[m] for m in MARTS)
    # an hour across midnight with its look-back: two days of the daily marts rebuilt
    run_batch(settings, START + timedelta(hours=24), START + timedelta(hours=25))
    assert dump(settings.warehouse_path) == before
