"""Opening the DuckDB warehouse: a damaged file is named, with what to do about it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from musify.warehouse.duckdb_engine import (
    DuckDBWarehouse,
    WarehouseUnreadable,
    connect,
    unreadable_reason,
)


def _good(path: Path) -> Path:
    con = duckdb.connect(str(path))
    con.execute("create table t as select range i, 'x' || range s from range(100000)")
    con.close()
    return path


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "not-duckdb":
        path.write_bytes(b"this is not a database" * 300)
    elif how == "truncated":
        path.write_bytes(bytes(data[:5000]))
    else:  # a damaged block: DuckDB's checksum catches it
        data[2048:2560] = os.urandom(512)
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["not-duckdb", "truncated", "bad-checksum"])
def test_a_damaged_file_is_named_with_the_cure(tmp_path: Path, how: str) -> None:
    path = _good(tmp_path / "warehouse.duckdb")
    _damage(path, how)
    for read_only in (True, False):
        with pytest.raises(WarehouseUnreadable, match=str(path)) as exc:
            connect(path, read_only=read_only, wait_s=0)
        assert "--full-refresh" in str(exc.value) and "\n" not in str(exc.value)
    wh = DuckDBWarehouse(path)  # connects to nothing yet: the write side on first use
    with pytest.raises(WarehouseUnreadable):
        wh.ensure_raw_tables()
    reason = unreadable_reason(path)
    assert reason is not None and str(path) in reason


def test_a_sound_absent_or_locked_file_is_not_unreadable(tmp_path: Path) -> None:
    assert unreadable_reason(tmp_path / "absent.duckdb") is None
    path = _good(tmp_path / "warehouse.duckdb")
    assert unreadable_reason(path) is None
    holder = (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
        "print('held', flush=True); time.sleep(60)"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder, str(path)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            assert unreadable_reason(path) is None  # a writer's lock is not damage
        finally:
            proc.kill()
