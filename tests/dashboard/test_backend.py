"""The DuckDB backend and the refresher: read-only, short-lived, patient with a writer."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from musify.dashboard import queries as q
from musify.dashboard.backend import backend_for
from musify.dashboard.tiles import Refresher
from musify.errors import UsageError
from musify.settings import Settings
from musify.warehouse import Reader, Session, WarehouseBusy, WarehouseMissing
from musify.warehouse.duckdb_engine import DuckDBWarehouse
from tests.dashboard.warehouse_writer import writer_holding


def small_warehouse(path: Path) -> Path:
    con = duckdb.connect(str(path))
    con.execute("create schema analytics")
    con.execute("create table analytics.t as select 42 as answer")
    con.close()
    return path


def test_missing_file(tmp_path: Path) -> None:
    backend = DuckDBWarehouse(tmp_path / "nope.duckdb")
    with pytest.raises(WarehouseMissing, match=r"nope\.duckdb"), backend.session():
        pass
    assert not (tmp_path / "nope.duckdb").exists()  # reading never creates it


def test_session_reads_and_qualifies(tmp_path: Path) -> None:
    backend = DuckDBWarehouse(small_warehouse(tmp_path / "w.duckdb"))
    with backend.session() as s:
        assert s.tables("analytics") == {"t"}
        assert s.tables("nothing") == set()
        df = s.query("select answer + $x as a from {analytics.t}", {"x": 1})
        assert df["a"].tolist() == [43]
        with pytest.raises(duckdb.Error):  # read-only
            s.query("create table {analytics.u} as select 1")


def test_sessions_do_not_hold_the_file(tmp_path: Path) -> None:
    """After a refresh, a writer can open the warehouse at once."""
    path = small_warehouse(tmp_path / "w.duckdb")
    backend = DuckDBWarehouse(path)
    with backend.session() as s:
        s.query("select 1")
    code = "import duckdb,sys; duckdb.connect(sys.argv[1]).execute('select 1')"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)


def test_busy_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    path = small_warehouse(tmp_path / "w.duckdb")
    backend = DuckDBWarehouse(path, read_retries=2, read_retry_delay_s=0.05)
    with writer_holding(path), pytest.raises(WarehouseBusy, match="locked"), backend.session():
        pass
    with backend.session() as s:  # and readable again afterwards
        assert s.query("select answer from {analytics.t}")["answer"].tolist() == [42]


def test_data_version_changes_with_writes(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    backend = DuckDBWarehouse(path)
    empty = backend.data_version()
    small_warehouse(path)
    built = backend.data_version()
    assert built != empty
    with backend.session() as s:
        s.query("select 1")
    assert backend.data_version() == built  # reading changes nothing
    con = duckdb.connect(str(path))
    con.execute("insert into analytics.t values (7)")
    con.close()
    assert backend.data_version() != built


def test_backend_for_settings(tmp_path: Path) -> None:
    b = backend_for(Settings(home=tmp_path))
    assert isinstance(b, DuckDBWarehouse) and b.path == tmp_path / "warehouse.duckdb"
    with pytest.raises(UsageError, match="MUSIFY_BQ_PROJECT"):  # BigQuery: test_bigquery.py
        backend_for(Settings(home=tmp_path, warehouse_engine="bigquery"))


class FakeBackend(Reader):
    """Counts sessions; can be made busy; its version is set by the test."""

    description = "fake"

    def __init__(self) -> None:
        self.version: object = 1
        self.busy = False
        self.sessions = 0

    def data_version(self) -> object:
        return self.version

    @contextmanager
    def session(self) -> Iterator[Session]:
        if self.busy:
            raise WarehouseBusy("busy")
        self.sessions += 1
        yield None  # type: ignore[misc]


def test_refresher_caches_per_version_and_serves_stale_when_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import date

    import musify.dashboard.tiles as tiles

    loads: list[object] = []
    monkeypatch.setattr(tiles, "load_tiles", lambda s, f: loads.append(f) or ("tiles", len(loads)))
    backend = FakeBackend()
    r = Refresher(backend)
    f = q.Filters(date(2024, 3, 18), date(2024, 3, 18))
    first = r.tiles(f)
    assert first.value == ("tiles", 1) and not first.stale
    assert r.tiles(f).value == ("tiles", 1) and backend.sessions == 1  # cached
    backend.version = 2
    assert r.tiles(f).value == ("tiles", 2) and backend.sessions == 2  # new data: re-read
    backend.version, backend.busy = 3, True
    stale = r.tiles(f)
    assert stale.value == ("tiles", 2) and stale.stale
    other = q.Filters(date(2024, 3, 17), date(2024, 3, 18), "CA")
    with pytest.raises(WarehouseBusy):  # nothing read before for these filters
        r.tiles(other)
    backend.busy = False
    assert r.tiles(f).value == ("tiles", 3) and not r.tiles(f).stale
