"""The BigQuery backend on the bqemulator emulator: the same queries, the same answers.

One small lake is built into DuckDB and into BigQuery by the pipeline (``run_batch``);
every tile of a page is read through both backends and must be equal.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import fields, is_dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from musify.dashboard import queries as q
from musify.dashboard.backend import backend_for
from musify.dashboard.tiles import load_overview, load_tiles
from musify.errors import UsageError
from musify.settings import Settings
from musify.warehouse import WarehouseUnavailable
from musify.warehouse.bigquery_engine import BigQueryWarehouse, bq_parameter
from musify.warehouse.duckdb_engine import DuckDBWarehouse
from tests.conftest import Emulator
from tests.dashboard.conftest import FIRST_DAY, START, Facts, build_warehouse

#: Small enough for the emulator to build in well under a minute.
USERS = 60


def test_backend_for_bigquery_settings(tmp_path: Path) -> None:
    b = backend_for(
        Settings(
            home=tmp_path,
            warehouse_engine="bigquery",
            bq_project="p",
            bq_dataset="marts",
            bq_raw_dataset="landing",
        )
    )
    assert isinstance(b, BigQueryWarehouse) and b.description == "BigQuery p.marts"
    with pytest.raises(UsageError, match="MUSIFY_BQ_PROJECT"):
        backend_for(Settings(home=tmp_path, warehouse_engine="bigquery"))


def test_parameters_are_typed() -> None:
    kinds = {
        "s": ("CA", "STRING"),
        "none": (None, "STRING"),
        "n": (3, "INT64"),
        "d": (date(2024, 3, 18), "DATE"),
        "t": (datetime(2024, 3, 18, 5), "TIMESTAMP"),
    }
    for name, (value, kind) in kinds.items():
        p = bq_parameter(name, value)
        assert (p.name, p.type_) == (name, kind)
    # naive datetimes are UTC wall-clock times
    assert bq_parameter("t", datetime(2024, 3, 18, 5)).value == datetime(2024, 3, 18, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def both(
    bq_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory, musify_cache: Path
) -> Iterator[tuple[DuckDBWarehouse, BigQueryWarehouse, Settings]]:
    """One lake, built into DuckDB and into BigQuery (the emulator) by ``run_batch``."""
    from musify.batch import run_batch

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BIGQUERY_TOKEN", "emulator-accepts-any-token")
        local = build_warehouse(tmp_path_factory.mktemp("bq-dash"), musify_cache, users=USERS)
        tag = uuid.uuid4().hex[:8]
        bq = Settings(
            home=local.home,  # the same lake
            warehouse_engine="bigquery",
            bq_project=bq_emulator.project,
            bq_dataset=f"analytics_{tag}",
            bq_raw_dataset=f"raw_{tag}",
            bq_api_endpoint=bq_emulator.endpoint,
        )
        run_batch(bq, START, START + timedelta(days=2), lookback_hours=0)
        backend = backend_for(bq)
        assert isinstance(backend, BigQueryWarehouse)
        yield DuckDBWarehouse(local.warehouse_path), backend, bq


def plain(value: Any) -> Any:
    """Query results in one comparable form: BigQuery returns aware timestamps, object
    columns of ints and None where DuckDB has naive timestamps, int64 and NaN."""
    if isinstance(value, pd.DataFrame):
        return [[plain(v) for v in row] for row in value.itertuples(index=False)]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, datetime):
        return q._naive(value)
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def test_every_tile_matches_duckdb(
    both: tuple[DuckDBWarehouse, BigQueryWarehouse, Settings],
) -> None:
    duck, bq, _ = both
    with duck.session() as d, bq.session() as b:
        overview = load_overview(d)
        assert overview.readiness.ready and overview.bounds is not None
        assert plain(load_overview(b)) == plain(overview)
        state = Facts(duck.path).busiest_state()
        for f in (
            q.Filters(FIRST_DAY, FIRST_DAY + timedelta(days=1)),  # per-day series
            q.Filters(FIRST_DAY + timedelta(days=1), FIRST_DAY + timedelta(days=1), state),
        ):
            want, got = plain(load_tiles(d, f)), plain(load_tiles(b, f))
            for name in want:
                assert got[name] == want[name], f"{name} differs for {f}"
            assert len(got["top_songs"]) == 10 and got["active_users"] > 0
        # the numbers are not trivially equal: there is something to show, and the state
        # filter changes it
        day = q.Filters(FIRST_DAY + timedelta(days=1), FIRST_DAY + timedelta(days=1))
        everywhere = q.streams_today(b, day).streams
        assert 0 < q.streams_today(b, replace(day, state=state)).streams < everywhere


def test_tables_version_and_errors(
    both: tuple[DuckDBWarehouse, BigQueryWarehouse, Settings],
) -> None:
    _, bq, settings = both
    with bq.session() as b:
        assert set(q.MARTS) <= b.tables("analytics")
        assert "listen_events" in b.tables("raw")
    version = bq.data_version()
    assert version is not None and version == bq.data_version()  # stable while unchanged
    with pytest.raises(WarehouseUnavailable, match="BigQuery"), bq.session() as b:
        b.query("select * from {analytics.no_such_mart}")
    # a dataset that does not exist: no marts (the page explains), not an error
    empty = BigQueryWarehouse.from_settings(
        replace(settings, bq_dataset="nothing_here", bq_raw_dataset="none")
    )
    with empty.session() as e:
        assert q.readiness(e).missing == q.MARTS
