"""Shared fixtures: paths to ../shared (skipped cleanly when absent) and small runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared is absent)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _no_broker_left_behind() -> Iterator[None]:
    """Whatever a failing test leaves running is stopped at the end of the session."""
    yield
    from musify.broker import local

    leftovers = [pid for pid, proc in list(local._children.items()) if proc.poll() is None]
    for pid in leftovers:
        local._terminate(pid, timeout=2.0)
    assert not leftovers, f"tests left brokers running: {leftovers}"


@pytest.fixture(scope="session")
def example_config() -> Path:
    """eventsim's example config, as the original Streamify pipeline used it."""
    return shared_file("eventsim", "example-config.json")


@pytest.fixture(scope="session")
def musify_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One people-table cache for the whole session (building it takes seconds)."""
    return tmp_path_factory.mktemp("cache")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


@pytest.fixture(scope="session")
def run_generator(musify_cache: Path) -> Callable[..., tuple[Path, dict[str, Any]]]:
    """Run the generator into a fresh folder: run_generator(out_dir, **options)."""
    from musify.sim import GenerateOptions, generate_events
    from musify.sim.clock import parse_time

    def _run(out: Path, **kw: Any) -> tuple[Path, dict[str, Any]]:
        for key in ("start", "end"):
            if isinstance(kw.get(key), str):
                kw[key] = parse_time(kw[key])
        kw.setdefault("workers", 1)
        kw.setdefault("cache_dir", musify_cache)
        summary = generate_events(GenerateOptions(**kw), output_dir=out)
        return out, summary

    return _run


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session for all tests that need one (the JVM takes seconds)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers need musify importable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("musify-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
