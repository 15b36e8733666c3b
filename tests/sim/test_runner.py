"""Running a simulation: windows, live pacing, clean stops."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import pytest

from musify.errors import UsageError
from musify.sim import GenerateOptions, MemorySink, plan_run, run
from musify.sim.clock import DAY, to_epoch
from musify.sim.config import BUILTIN_CONFIG
from musify.sim.engine import NEVER
from musify.sim.runner import _window, history_chunk

NOW = to_epoch(datetime(2024, 3, 20, 12, tzinfo=UTC))


def test_window_rules() -> None:
    assert _window(None, None, None, False, NOW) == (NOW - DAY, NOW)
    assert _window(None, None, 2, False, NOW) == (NOW - 2 * DAY, NOW)
    assert _window(100, None, None, False, NOW) == (100, 100 + DAY)
    assert _window(100, 500, None, False, NOW) == (100, 500)
    assert _window(100, None, None, True, NOW) == (100, NEVER)
    assert _window(None, None, None, True, NOW) == (NOW, NEVER)
    assert _window(None, None, 1, True, NOW) == (NOW, NOW + DAY)


def test_bad_options() -> None:
    with pytest.raises(UsageError, match="not both"):
        plan_run(GenerateOptions(end=datetime(2024, 1, 1, tzinfo=UTC), days=1))
    with pytest.raises(UsageError, match="--nusers"):
        plan_run(GenerateOptions(n_users=0))
    with pytest.raises(UsageError, match="--speed"):
        plan_run(GenerateOptions(speed=0))


def test_chunks_shrink_for_huge_populations() -> None:
    assert history_chunk(1000) == 3600
    assert history_chunk(1_000_000) == 720
    assert history_chunk(10**9) == 60


class FakeClock:
    """Wall clock that only moves when the runner sleeps."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class RecordingSink(MemorySink):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.late: list[tuple[float, float]] = []
        self.early: list[tuple[float, float]] = []
        self.live_writes = 0

    def write(self, topic: str, keys: Sequence[int], lines: Sequence[bytes]) -> None:
        super().write(topic, keys, lines)
        if topic == "page_view_events" and lines:
            newest = max(orjson.loads(x)["ts"] for x in lines) / 1000
            if newest >= START_LIVE:
                self.live_writes += 1
                if newest > self.clock.now:
                    self.early.append((newest, self.clock.now))


START_LIVE = NOW


def test_history_then_live_paced_by_the_clock() -> None:
    clock = FakeClock(NOW)
    opts = GenerateOptions(
        config=BUILTIN_CONFIG,
        n_users=3000,
        continuous=True,
        start=datetime.fromtimestamp(NOW - 3 * 3600, UTC),
        end=datetime.fromtimestamp(NOW + 600, UTC),
        workers=1,
    )
    plan = plan_run(opts, now=datetime.fromtimestamp(NOW, UTC))
    sink = RecordingSink(clock)
    progress = run(plan, sink, clock=clock, sleep=clock.sleep)
    assert progress.live
    assert progress.sim_time == NOW + 600
    ts = [orjson.loads(x)["ts"] / 1000 for x in sink.lines["page_view_events"]]
    assert ts == sorted(ts)
    assert min(ts) >= NOW - 3 * 3600 and max(ts) < NOW + 600
    assert any(t >= NOW for t in ts), "the live part produced events"
    assert sink.live_writes > 20, "live events go out in small steps"
    assert not sink.early, "no event is released before the clock reaches it"
    assert clock.now >= NOW + 600


def test_speed_runs_simulated_time_faster() -> None:
    clock = FakeClock(NOW)
    opts = GenerateOptions(
        config=BUILTIN_CONFIG, n_users=200, continuous=True, speed=60, days=1 / 24, workers=1
    )
    plan = plan_run(opts, now=datetime.fromtimestamp(NOW, UTC))
    run(plan, MemorySink(), clock=clock, sleep=clock.sleep)
    # an hour of simulated time at 60x takes about a minute of wall-clock time
    assert 55 <= clock.now - NOW <= 70
