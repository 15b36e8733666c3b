"""Fixtures of the lake's tests: a local lake with its SQLite catalog, and events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from musify.lake import Lake

T0 = 1_710_720_000_000  # 2024-03-18T00:00Z in ms


def listen(i: int, ts: int, **kw: Any) -> dict[str, Any]:
    """A valid listen event (generator dict: ``ts`` in epoch ms)."""
    return {
        "artist": "A",
        "song": f"S{i}",
        "duration": 200.0,
        "ts": ts,
        "sessionId": 1,
        "auth": "Logged In",
        "level": "free",
        "itemInSession": i,
        "city": "X",
        "zip": "00000",
        "state": "CA",
        "userAgent": "ua",
        "lon": 0.0,
        "lat": 0.0,
        "userId": 1,
        "lastName": "L",
        "firstName": "F",
        "gender": "F",
        "registration": T0,
        **kw,
    }


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """An empty local lake (its catalog is the SQLite file inside it)."""
    return Lake(tmp_path / "lake")


def rows(lake: Lake, table: str) -> Any:
    """Every row of a table, read by pyiceberg through its current snapshot."""
    return lake.tables.table(table, refresh=True).scan().to_arrow()


def table_rows(root: Lake | Path | str, table: str, columns: tuple[str, ...] = ()) -> Any:
    """A table's rows (``columns`` only, when given), read through its current
    snapshot as any Iceberg reader would: never by listing files."""
    lake = root if isinstance(root, Lake) else Lake(root)
    scan = lake.tables.table(table, refresh=True).scan(selected_fields=columns or ("*",))
    return scan.to_arrow()


def unreferenced_data_files(lake: Lake) -> list[str]:
    """Data files in the lake's folders that no snapshot of their table names."""
    out = []
    for name in lake.tables:
        table = lake.tables.table(name, refresh=True)
        referenced = {
            str(entry.data_file.file_path)
            for snap in table.snapshots()
            for manifest in snap.manifests(table.io)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False)
        }
        data = Path(str(lake.root)) / name / "data"
        found = {str(p) for p in data.rglob("*.parquet")} if data.exists() else set()
        out += sorted(found - referenced)
    return out
