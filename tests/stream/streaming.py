"""produce, stream_once, lake_counts: feed the broker, run the stream, count the lake, for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from musify.broker.produce import produce_events
from musify.events import TOPIC_NAMES
from musify.settings import Settings
from musify.sim import GenerateOptions
from musify.sim.config import BUILTIN_CONFIG
from musify.sim.faults import FaultRates
from musify.stream.job import StreamSummary
from tests.lake.conftest import table_rows

START = datetime(2024, 3, 18, tzinfo=UTC)


def produce(
    bootstrap: str,
    cache: Path,
    *,
    users: int = 150,
    day: int = 0,
    seed: int = 1,
    first_user_id: int = 1,
    faults: FaultRates | None = None,
    manifest: Path | None = None,
) -> dict[str, int]:
    opts = GenerateOptions(
        config=BUILTIN_CONFIG,
        n_users=users,
        start=START + timedelta(days=day),
        days=1,
        seed=seed,
        first_user_id=first_user_id,
        workers=1,
        cache_dir=cache,
        faults=faults,
        fault_manifest=manifest,
    )
    counts: dict[str, int] = produce_events(opts, bootstrap).events
    return counts


def lake_counts(lake_root: Path) -> dict[str, int]:
    """Rows per topic read through the tables, checking Kafka coordinates are unique."""
    out = {}
    for t in TOPIC_NAMES:
        got = table_rows(lake_root, t, ("kafka_partition", "kafka_offset"))
        coords = set(
            zip(
                got.column("kafka_partition").to_pylist(),
                got.column("kafka_offset").to_pylist(),
                strict=True,
            )
        )
        assert len(coords) == got.num_rows, f"{t}: a Kafka message appears twice in the lake"
        out[t] = got.num_rows
    return out


def stream_once(home: Path, bootstrap: str, **kw: Any) -> StreamSummary:
    from musify.stream import StreamOptions, run_stream

    settings = Settings(home=home)
    opts = StreamOptions(bootstrap_servers=bootstrap, until_caught_up=True, master="local[2]", **kw)
    return run_stream(settings, opts)
