"""START and events(): a few hours of generated events, for the warehouse and pipeline tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from musify.events import TOPIC_NAMES
from musify.sim import GenerateOptions, MemorySink, plan_run, run
from musify.sim.config import BUILTIN_CONFIG

START = datetime(2024, 3, 18, tzinfo=UTC)


def events(cache: Path, users: int = 200, hours: int = 6) -> dict[str, list[dict[str, Any]]]:
    plan = plan_run(
        GenerateOptions(
            config=BUILTIN_CONFIG,
            n_users=users,
            start=START,
            days=hours / 24,
            seed=4,
            workers=1,
            cache_dir=cache,
        )
    )
    sink = MemorySink()
    run(plan, sink)
    return {t: [orjson.loads(x) for x in sink.lines[t]] for t in TOPIC_NAMES}


def late_listen(evs: dict[str, list[dict[str, Any]]], hour: datetime) -> dict[str, Any]:
    """A new listen event of ``hour`` (a copy of its first one, another itemInSession),
    as if it arrived after the hour was loaded."""
    first = next(e for e in evs["listen_events"] if e["ts"] >= hour.timestamp() * 1000)
    return dict(first, itemInSession=first["itemInSession"] + 50_000)
