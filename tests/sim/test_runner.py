"""Running a simulation: windows, live pacing, clean stops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from musify.errors import UsageError
from musify.sim import GenerateOptions, MemorySink, plan_run, run
from musify.sim.clock import DAY, to_epoch
from musify.sim.config import BUILTIN_CONFIG
from musify.sim.engine import NEVER
from musify.sim.runner import Plan, _window, history_chunk

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


def _live_plan(**kw: object) -> Plan:
    opts = GenerateOptions(
        config=BUILTIN_CONFIG,
        n_users=800,
        continuous=True,
        start=datetime.fromtimestamp(NOW - 3 * 3600 - 1234, UTC),
        end=datetime.fromtimestamp(NOW + 900, UTC),
        seed=3,
        workers=1,
        **kw,  # type: ignore[arg-type]
    )
    return plan_run(opts, now=datetime.fromtimestamp(NOW, UTC))


def test_live_from_is_fixed_when_planned() -> None:
    plan = _live_plan()
    assert plan.live_from == NOW and plan.live_anchor == NOW
    floor = plan.grid_floor()
    assert floor is not None and floor <= NOW < floor + history_chunk(800)
    assert (floor - plan.start) % history_chunk(800) == 0
    batch = plan_run(GenerateOptions(n_users=10, start=datetime(2024, 3, 1, tzinfo=UTC)))
    assert batch.grid_floor() is None and batch.live_from == batch.end


def test_output_does_not_depend_on_the_wall_clock() -> None:
    """The same plan gives the same events whether live steps come on time, late, in a
    burst after a long pause (a resumed run catching up) or all at once."""
    plan = _live_plan()
    outputs = []
    for jitter in (0.0, 0.37, 7.3):
        clock = FakeClock(NOW)
        sleep = clock.sleep if not jitter else (lambda s, c=clock, j=jitter: c.sleep(s + j))
        sink = MemorySink()
        run(plan, sink, clock=clock, sleep=sleep)
        outputs.append(sink.lines)
    sink = MemorySink()
    run(plan, sink, clock=lambda: NOW + 10**6, sleep=lambda _s: None)
    outputs.append(sink.lines)
    assert sum(len(v) for v in outputs[0].values()) > 1000
    assert all(o == outputs[0] for o in outputs[1:])


class MarkingSink(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.marked_at: int | None = None
        self.mark: tuple[int, float] | None = None

    def mark_live(self, live_from: int, anchor: float) -> None:
        assert self.mark is None, "marked once"
        self.mark = (live_from, anchor)
        self.marked_at = len(self.lines["page_view_events"])


def test_the_live_switch_is_marked_before_the_events_that_depend_on_it() -> None:
    plan = _live_plan()
    sink = MarkingSink()
    run(plan, sink, clock=lambda: NOW + 10**6, sleep=lambda _s: None)
    assert sink.mark == (plan.live_from, plan.live_anchor)
    floor = plan.grid_floor()
    assert floor is not None
    ts = [orjson.loads(x)["ts"] // 1000 for x in sink.lines["page_view_events"]]
    assert sink.marked_at == sum(1 for t in ts if t < floor)
    batch = MarkingSink()
    run(replace(plan, continuous=False), batch)
    assert batch.mark is None


def test_resume_needs_a_reproducible_run(tmp_path: Path) -> None:
    from musify.sim.faults import FaultRates
    from musify.sim.runner import check_resumable

    raw = orjson.loads(BUILTIN_CONFIG.read_bytes())
    assert "seed" in raw  # Musify's own config fixes it: no --seed needed
    del raw["seed"]
    seedless = tmp_path / "seedless.json"
    seedless.write_bytes(orjson.dumps(raw))
    fixed = GenerateOptions(
        config=seedless, n_users=5, start=datetime(2024, 3, 1, tzinfo=UTC), seed=1
    )
    check_resumable(fixed, plan_run(fixed))
    no_start = replace(fixed, start=None)
    with pytest.raises(UsageError, match="--start-time"):
        check_resumable(no_start, plan_run(no_start))
    no_seed = replace(fixed, seed=None)
    with pytest.raises(UsageError, match=r"--seed \(the config has no seed\)"):
        check_resumable(no_seed, plan_run(no_seed))
    faulty = replace(fixed, faults=FaultRates(duplicate=0.01))
    with pytest.raises(UsageError, match="cannot be combined with --faults"):
        check_resumable(faulty, plan_run(faulty))


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.medium  # worker processes started and killed: seconds
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_exit_when_the_generator_is_killed(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSIFY_")}
    env["MUSIFY_HOME"] = str(tmp_path / "home")
    args = ["generate", "--nusers", "20000", "--days", "60", "--workers", "2", "-q"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "musify", *args, "--output-dir", str(tmp_path / "out")],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while len(workers := _children(proc.pid)) < 2:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no workers started"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while alive := [w for w in workers if Path(f"/proc/{w}").exists()]:
            if time.monotonic() > deadline:
                for w in alive:
                    os.kill(w, signal.SIGKILL)
                pytest.fail(f"workers {alive} outlived the killed generator")
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_idle_blocks_are_skipped_without_changing_a_step() -> None:
    """A block answers "nothing due" from its wake-up bound instead of scanning its users;
    stepping second by second with the bound must give what scanning every block gives
    (a bound too late would drop events, too early only costs time)."""
    from musify.sim.engine import Block, Model
    from musify.sim.runner import _Growth, _step_blocks

    plan = _live_plan(growth_rate=200.0, attrition_rate=1.0)
    spec = replace(plan.spec, n_users=3000)
    model = Model(spec)
    skipping = [Block(model, b) for b in range(spec.n_blocks)]
    scanning = [Block(model, b) for b in range(spec.n_blocks)]
    assert spec.n_blocks >= 3
    growth_fast, growth_slow = _Growth(spec), _Growth(spec)
    t, skipped, arrived = plan.start, 0, 0
    for t_end in [plan.start, *range(plan.start + 1, plan.start + 1800)]:
        skipped += sum(not b.due_before(t_end) for b in skipping)
        for b in scanning:
            b.wake = -NEVER  # forget the bound: every block scans its users
        arrivals = growth_fast.until(t_end)
        arrived += sum(map(len, arrivals.values()))
        fast = _step_blocks(skipping, t_end, arrivals)
        slow = _step_blocks(scanning, t_end, growth_slow.until(t_end))
        for a, b in zip(fast, slow, strict=True):
            assert [(o.ts, o.keys, o.lines) for o in a] == [(o.ts, o.keys, o.lines) for o in b]
        t = t_end
    assert t == plan.start + 1799
    assert skipped > 1000, "most blocks have nothing due in a one-second step"
    assert arrived > 0, "new users arrived during the steps"


class PaceSink(MemorySink):
    """Records (newest event time, wall clock) of every write."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.writes: list[tuple[float, float]] = []

    def write(self, topic: str, keys: Sequence[int], lines: Sequence[bytes]) -> None:
        super().write(topic, keys, lines)
        if lines:
            self.writes.append((max(orjson.loads(x)["ts"] for x in lines) / 1000, self.clock.now))


def test_replay_plays_the_history_at_speed_and_never_passes_the_clock() -> None:
    clock = FakeClock(NOW)
    start = NOW - 3600
    opts = GenerateOptions(
        config=BUILTIN_CONFIG,
        n_users=2000,
        continuous=True,
        replay=True,
        speed=60,
        start=datetime.fromtimestamp(start, UTC),
        end=datetime.fromtimestamp(NOW + 300, UTC),
        workers=1,
    )
    plan = plan_run(opts, now=datetime.fromtimestamp(NOW, UTC))
    assert plan.live_from == start
    sink = PaceSink(clock)
    progress = run(plan, sink, clock=clock, sleep=clock.sleep)
    assert progress.sim_time == NOW + 300
    # The hour of history took about a minute (3600 / (60 - 1) s), not an instant ...
    history = [wall for ts, wall in sink.writes if ts < NOW - 600]
    assert history and max(history) - NOW > 40
    for ts, wall in sink.writes:
        assert ts <= start + (wall - NOW) * 60 + 1, "released ahead of the replay's pace"
        assert ts <= wall + 1, "released ahead of the wall clock"
    # ... and the live part then followed the clock at speed 1.
    assert NOW + 300 <= clock.now <= NOW + 310
    with pytest.raises(UsageError, match="--continuous"):
        plan_run(replace(opts, continuous=False), now=datetime.fromtimestamp(NOW, UTC))
