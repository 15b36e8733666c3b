"""A small warehouse built by the pipeline, shared by the dashboard's tests.

Two simulated days of a few hundred users: generator -> lake (``musify.lake.writer``,
the stream's format without a JVM) -> ``musify.batch.run_batch``, first for 36 hours,
then the remaining 12 as an incremental run, so the marts are checked as the hourly
batch maintains them, not only as a first build makes them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.lake.writer import write_events
from musify.settings import Settings
from musify.sim import GenerateOptions, MemorySink, plan_run, run
from musify.sim.config import BUILTIN_CONFIG

START = datetime(2024, 3, 18, tzinfo=UTC)
DAYS = 2
USERS = 300
FIRST_DAY = START.date()
LAST_DAY = FIRST_DAY + timedelta(days=DAYS - 1)


def build_warehouse(home: Path, cache: Path, users: int = USERS, days: int = DAYS) -> Settings:
    from musify.batch import run_batch

    plan = plan_run(
        GenerateOptions(
            config=BUILTIN_CONFIG,
            n_users=users,
            start=START,
            days=days,
            seed=11,
            workers=1,
            cache_dir=cache,
        )
    )
    sink = MemorySink()
    run(plan, sink)
    events = {t: [orjson.loads(x) for x in sink.lines[t]] for t in TOPIC_NAMES}
    settings = Settings(home=home)
    write_events(Lake(Path(settings.lake_root)), events, 0)
    split = START + timedelta(hours=36)
    run_batch(settings, START, split, lookback_hours=0)
    run_batch(settings, split, START + timedelta(days=days))  # incremental, with look-back
    return settings


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory, musify_cache: Path) -> Settings:
    """Settings of a MUSIFY_HOME whose warehouse the pipeline built (read-only for tests)."""
    return build_warehouse(tmp_path_factory.mktemp("dashboard-home"), musify_cache)


class Facts:
    """Direct SQL over the star schema's facts and dimensions: what the tiles must show."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        con = duckdb.connect(str(self.path), read_only=True)
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def one(self, sql: str, params: list[Any] | None = None) -> Any:
        return self.rows(sql, params)[0][0]

    def busiest_state(self) -> str:
        """The state with the most streams (a state filter that changes every number)."""
        return str(
            self.one(
                "select l.state_code from analytics.fact_streams f"
                " join analytics.dim_location l using (location_key)"
                " group by 1 order by count(*) desc, 1 limit 1"
            )
        )


@pytest.fixture(scope="session")
def facts(warehouse: Settings) -> Facts:
    return Facts(warehouse.warehouse_path)


#: The page's script, where Musify is installed (AppTest runs it by path).
APP = Path(str(importlib.util.find_spec("musify.dashboard.app").origin))  # type: ignore[union-attr]


def text(at: Any) -> str:
    """Everything an AppTest page says (info boxes, markdown, errors, captions)."""
    parts = [e.value for e in (*at.info, *at.markdown, *at.error, *at.caption)]
    return "\n".join(str(p) for p in parts)


def metrics(at: Any) -> dict[str, str]:
    """The page's metric tiles: label -> value as shown."""
    return {m.label: m.value for m in at.metric}


def midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day)


@pytest.fixture
def musify_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point the process's MUSIFY_* settings at a home (the app reads the environment)."""
    import os

    for key in [k for k in os.environ if k.startswith("MUSIFY_")]:
        monkeypatch.delenv(key)

    def use(settings: Settings) -> None:
        monkeypatch.setenv("MUSIFY_HOME", str(settings.home))

    yield use
