"""Runs a simulation: blocks of users in worker processes, merged in event-time order.

The main process owns the clock. For each chunk of simulated time it tells every
worker to advance its blocks to the chunk's end (with the growth users that arrived in
the chunk), gathers the blocks' events in block order and sorts them by event time
(stably, so ties keep block order: output is the same for any number of workers),
injects faults if asked, and hands the lines to the sink. Workers already compute the
next chunk while the main process writes the current one.

A block's events depend on where the chunks end (its users share one random stream),
so chunk ends are a function of the plan alone, never of the wall clock: history
chunks of ``history_chunk`` seconds from the window start up to the plan's
``live_from`` (a continuous run's switch to live time, fixed when it is planned), then
steps of ``LIVE_STEP`` seconds. Re-running a plan therefore regenerates the same
events, which is what lets a killed generator resume (``musify.broker.resume``).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import operator
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from musify.errors import UsageError
from musify.events import TOPIC_NAMES
from musify.sim.clock import DAY, YEAR, from_epoch, to_epoch
from musify.sim.config import BUILTIN_CONFIG, SimConfig, check_growth_group, load_config
from musify.sim.engine import (
    ENGINE_TOPICS,
    NEVER,
    WARMUP_SECONDS,
    Block,
    Model,
    ModelSpec,
    TopicOut,
    block_seed,
    new_outs,
)
from musify.sim.faults import Batch, FaultInjector, FaultRates
from musify.sim.people import load_people
from musify.sim.sinks import Sink

#: Simulated seconds per chunk when catching up on history, for up to CHUNK_USERS users;
#: larger populations get proportionally shorter chunks so a chunk's events stay small.
HISTORY_CHUNK = 3600
CHUNK_USERS = 200_000
#: Simulated seconds per step of a continuous run once it has reached ``live_from``.
LIVE_STEP = 1


def history_chunk(n_users: int) -> int:
    """Chunk length: a function of the arguments only, so output stays deterministic."""
    return max(60, HISTORY_CHUNK * CHUNK_USERS // max(n_users, CHUNK_USERS))


assert set(ENGINE_TOPICS) == set(TOPIC_NAMES)


@dataclass(frozen=True)
class GenerateOptions:
    """A generator run. ``None`` means: take the config's value, else the default.

    Command-line options override the config, as eventsim's README promises.
    """

    config: Path | None = None  # None: Musify's built-in config
    n_users: int | None = None
    growth_rate: float | None = None
    attrition_rate: float | None = None
    start: datetime | None = None
    end: datetime | None = None
    days: float | None = None
    seed: int | None = None
    first_user_id: int | None = None
    tag: str | None = None
    catalog: Path | None = None
    continuous: bool = False
    speed: float = 1.0
    #: Continuous runs: play the history too at ``speed`` from its start (not all at
    #: once), never ahead of the wall clock: accelerated time a whole pipeline can follow.
    replay: bool = False
    workers: int = 0
    faults: FaultRates | None = None
    fault_manifest: Path | None = None
    cache_dir: Path | None = None


@dataclass(frozen=True)
class Plan:
    """Options resolved against the config: what will actually run."""

    config: SimConfig
    spec: ModelSpec
    start: int
    end: int  # NEVER when unbounded
    continuous: bool
    speed: float
    workers: int
    #: Continuous runs: history chunks end here, live steps start here (epoch seconds);
    #: the time the run was planned, or the window start if that is later.
    live_from: int = NEVER
    #: The wall-clock time (epoch seconds) at which simulated time was ``live_from``;
    #: live steps are released when ``live_from + (now - live_anchor) * speed`` passes them.
    live_anchor: float = 0.0
    #: ``GenerateOptions.replay``: the history is live from the start, and simulated time
    #: never passes the wall clock.
    replay: bool = False

    def grid_floor(self) -> int | None:
        """Where the output starts to depend on ``live_from``: the end of the last history
        chunk that ends at or before it (None if the run never gets there)."""
        if not self.continuous or self.live_from >= self.end:
            return None
        chunk = history_chunk(self.spec.n_users)
        k = (self.live_from - self.start) // chunk
        return self.start + k * chunk if k >= 1 else self.start - WARMUP_SECONDS


def plan_run(opts: GenerateOptions, now: datetime | None = None) -> Plan:
    cfg = load_config(opts.config or BUILTIN_CONFIG)
    now_s = to_epoch(now) if now else int(time.time())

    def pick(cli: Any, conf: Any, default: Any) -> Any:
        return cli if cli is not None else conf if conf is not None else default

    n_users = int(pick(opts.n_users, cfg.n_users, 1))
    growth = float(pick(opts.growth_rate, cfg.growth_rate, 0.0))
    attrition = float(pick(opts.attrition_rate, cfg.attrition_rate, 0.0))
    seed = int(pick(opts.seed, cfg.seed, 0))
    first_id = int(pick(opts.first_user_id, cfg.first_user_id, 1))
    tag = pick(opts.tag, cfg.tag, None)
    if n_users < 1:
        raise UsageError("--nusers must be at least 1")
    if growth < 0 or attrition < 0:
        raise UsageError("--growth-rate and --attrition-rate must be >= 0")
    if opts.speed <= 0:
        raise UsageError("--speed must be > 0")
    if opts.replay and not opts.continuous:
        raise UsageError("--replay plays the history at --speed up to now: give --continuous")
    if opts.days is not None and opts.days <= 0:
        raise UsageError("--days must be > 0")
    if opts.end is not None and opts.days is not None:
        raise UsageError("give --end-time or --days, not both")
    if growth > 0:
        check_growth_group(cfg)

    start_dt = pick(opts.start, cfg.start_date, None)
    end_dt = pick(opts.end, cfg.end_date if opts.days is None else None, None)
    start, end = _window(
        to_epoch(start_dt) if start_dt else None,
        to_epoch(end_dt) if end_dt else None,
        opts.days,
        opts.continuous,
        now_s,
    )
    if start < _FIRST_SECOND or (end != NEVER and end > _LAST_SECOND):
        raise UsageError(
            "the simulated window must lie within the years 1-9999: check --start-time, "
            "--end-time and --days"
        )
    if end <= start:
        raise UsageError(
            f"the end time {from_epoch(end):%Y-%m-%dT%H:%M:%S} is not after "
            f"the start time {from_epoch(start):%Y-%m-%dT%H:%M:%S}"
        )
    spec = ModelSpec(
        config_raw=dict(cfg.raw),
        config_source=cfg.source,
        catalog_path=str(opts.catalog) if opts.catalog else None,
        cache_dir=str(opts.cache_dir) if opts.cache_dir else None,
        tag=tag,
        window_start=start,
        window_end=end,
        first_user_id=first_id,
        n_users=n_users,
        growth_rate=growth,
        attrition_rate=attrition,
        seed=seed,
    )
    workers = opts.workers or (os.cpu_count() or 1)
    workers = max(1, min(workers, spec.n_blocks))
    live_from = (start if opts.replay else max(now_s, start)) if opts.continuous else end
    return Plan(
        cfg,
        spec,
        start,
        end,
        opts.continuous,
        opts.speed,
        workers,
        live_from,
        float(now_s),
        opts.replay,
    )


def check_resumable(opts: GenerateOptions, plan: Plan) -> None:
    """A run can be resumed only if re-running it regenerates the same events."""
    if opts.faults is not None and opts.faults.any():
        raise UsageError(
            "--resume cannot be combined with --faults: injected duplicates, late and "
            "reordered events make it ambiguous which events are already delivered"
        )
    missing = []
    if opts.start is None and plan.config.start_date is None:
        missing.append("--start-time (an absolute date-time; the config has no start-date)")
    if opts.seed is None and "seed" not in plan.config.raw:
        missing.append("--seed (the config has no seed)")
    if missing:
        raise UsageError(
            "--resume needs a run that regenerates the same events every time; give "
            + " and ".join(missing)
        )


#: The first and last second a simulated window may cover (Python's datetimes).
_FIRST_SECOND = -62_135_596_800  # 0001-01-01T00:00:00Z
_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z


def _window(
    start: int | None, end: int | None, days: float | None, continuous: bool, now: int
) -> tuple[int, int]:
    """The simulated window [start, end); end is NEVER for an open continuous run.

    A batch run without a start ends at --end-time (default now) and lasts --days
    (default 1); a continuous run without a start begins now. With a start, the end is
    --end-time, else start + --days, else open (continuous) or one day (batch).
    """
    span = int((days or 1) * DAY)
    if start is None:
        if continuous:
            start = now
        else:
            end = now if end is None else end
            return end - span, end
    if end is None:
        end = start + span if days is not None or not continuous else NEVER
    return start, end


@dataclass
class Progress:
    """What a run has done so far; passed to the progress callback after each chunk."""

    start: int
    end: int
    sim_time: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOPIC_NAMES, 0))
    users: int = 0
    started: float = field(default_factory=time.monotonic)
    live: bool = False
    startup_seconds: float = 0.0
    faults: dict[str, int] = field(default_factory=dict)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def page_views(self) -> int:
        return self.counts["page_view_events"]

    @property
    def lines(self) -> int:
        return sum(self.counts.values())

    def summary(self, target: str, workers: int, fault_manifest: Path | None) -> GenerateSummary:
        el = max(self.elapsed, 1e-9)
        return GenerateSummary(
            start=from_epoch(self.start),
            end=None if self.end >= NEVER else from_epoch(self.end),
            simulated_until=from_epoch(self.sim_time),
            events=dict(self.counts),
            users=self.users,
            seconds=round(el, 3),
            startup_seconds=round(self.startup_seconds, 3),
            page_views_per_second=round(self.page_views / el, 1),
            lines_per_second=round(self.lines / el, 1),
            target=target,
            workers=workers,
            faults=dict(self.faults),
            fault_manifest=str(fault_manifest) if self.faults and fault_manifest else None,
        )


@dataclass(frozen=True)
class GenerateSummary:
    """What a finished generator job did (``musify generate --json`` prints
    ``as_dict``)."""

    start: datetime
    end: datetime | None  # None: a continuous run
    simulated_until: datetime
    events: dict[str, int]  # per topic
    users: int
    seconds: float
    startup_seconds: float
    page_views_per_second: float
    lines_per_second: float
    target: str  # where the events went ("kafka HOST:PORT", a folder, stdout)
    workers: int
    faults: dict[str, int] = field(default_factory=dict)  # injected, per kind
    fault_manifest: str | None = None
    #: A resumed run into Kafka: per topic, the events regenerated but found in the
    #: topics already, and those produced (None when not resuming).
    skipped: dict[str, int] | None = None
    produced: dict[str, int] | None = None

    def as_dict(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "start": self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "simulated_until": self.simulated_until.isoformat(),
            "events": dict(self.events),
            "users": self.users,
            "seconds": self.seconds,
            "startup_seconds": self.startup_seconds,
            "page_views_per_second": self.page_views_per_second,
            "lines_per_second": self.lines_per_second,
            "target": self.target,
            "workers": self.workers,
        }
        if self.faults:
            doc["faults"] = dict(self.faults)
            doc["fault_manifest"] = self.fault_manifest
        if self.skipped is not None:
            doc["skipped"] = dict(self.skipped)
        if self.produced is not None:
            doc["produced"] = dict(self.produced)
        return doc


class _Growth:
    """Arrivals of new users: a Poisson process whose rate grows with the user count."""

    def __init__(self, spec: ModelSpec) -> None:
        self.rate = spec.growth_rate
        self.n = spec.n_users
        self.index = 0
        self.rand = random.Random(block_seed(spec.seed, -1, "growth")).random
        self.n_blocks = spec.n_blocks
        self.clock = float(spec.window_start)
        self.pending = self._draw() if self.rate > 0 else math.inf

    def _draw(self) -> float:
        mean_gap = YEAR / (self.n * self.rate)
        self.clock += -mean_gap * math.log(1.0 - self.rand())
        return self.clock

    def until(self, t_end: int) -> dict[int, list[tuple[int, int]]]:
        """Arrivals before t_end, per block: (arrival second, growth index)."""
        out: dict[int, list[tuple[int, int]]] = {}
        while self.pending < t_end:
            b = self.index % self.n_blocks
            out.setdefault(b, []).append((math.ceil(self.pending), self.index))
            self.index += 1
            self.n += 1
            self.pending = self._draw()
        return out


# ------------------------------------------------------------------------ workers
#: The output of a block with nothing due in a step: shared, so never written to
#: (``merge`` only reads its inputs).
_IDLE = new_outs()


def _step_blocks(
    blocks: Sequence[Block], t_end: int, growth: dict[int, list[tuple[int, int]]]
) -> list[tuple[TopicOut, ...]]:
    results: list[tuple[TopicOut, ...]] = []
    for b in blocks:
        arrivals = growth.get(b.block)
        if arrivals:
            b.add_growth_users(arrivals)
        if not b.due_before(t_end):
            results.append(_IDLE)
            continue
        outs = new_outs()
        b.advance(t_end, outs)
        results.append(outs)
    return results


def _worker_main(
    conn: Connection, spec: ModelSpec, block_ids: list[int], inherited: Sequence[Connection] = ()
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    for c in inherited:  # so that the parent's death, even by SIGKILL, ends our recv()
        c.close()
    try:
        model = Model(spec)
        blocks = [Block(model, b) for b in block_ids]
        conn.send(("ready", None))
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                break
            _, t_end, growth = msg
            conn.send(("ok", _step_blocks(blocks, t_end, growth)))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    except BaseException as exc:  # report, don't hang the parent
        with contextlib.suppress(BrokenPipeError, OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class _Pool:
    """Blocks spread over processes; block b lives in worker b % workers."""

    def __init__(self, spec: ModelSpec, workers: int) -> None:
        self.spec = spec
        self.n_blocks = spec.n_blocks
        self.workers = workers
        self.local: list[Block] | None = None
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        self._pending = False
        if workers == 1:
            model = Model(spec)
            self.local = [Block(model, b) for b in range(self.n_blocks)]
            return
        # Build the people tables (and their on-disk cache) once, before the workers
        # start: forked workers inherit them instead of each building them again.
        load_people(Path(spec.cache_dir) if spec.cache_dir else None)
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        ctx: Any = mp.get_context(method)
        for w in range(workers):
            parent, child = ctx.Pipe()
            ids = list(range(w, self.n_blocks, workers))
            # A forked worker inherits the parent's end of its own pipe and of the earlier
            # workers' pipes; while it held them, no worker would see the parent die.
            inherited = [*self.conns, parent] if method == "fork" else []
            p = ctx.Process(target=_worker_main, args=(child, spec, ids, inherited), daemon=True)
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)
        for c in self.conns:
            self._recv(c)

    def _recv(self, conn: Connection) -> Any:
        try:
            kind, payload = conn.recv()
        except EOFError:
            raise RuntimeError("a generator worker process died") from None
        if kind == "error":
            raise RuntimeError(f"generator worker failed: {payload}")
        return payload

    def send(self, t_end: int, growth: dict[int, list[tuple[int, int]]]) -> None:
        if self.local is not None:
            self._request = (t_end, growth)
        else:
            for c in self.conns:
                c.send(("step", t_end, growth))
        self._pending = True

    def receive(self) -> list[tuple[TopicOut, ...]]:
        """Per-block outputs, in block order."""
        self._pending = False
        if self.local is not None:
            t_end, growth = self._request
            return _step_blocks(self.local, t_end, growth)
        per_worker = [self._recv(c) for c in self.conns]
        return [per_worker[b % self.workers][b // self.workers] for b in range(self.n_blocks)]

    def close(self) -> None:
        for c in self.conns:
            try:
                if self._pending:
                    c.recv()
                c.send(("stop",))
            except (OSError, EOFError):
                pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
        for c in self.conns:
            c.close()


def merge(per_block: Sequence[tuple[TopicOut, ...]]) -> list[Batch]:
    """Per engine topic: (ts, keys, lines) of all blocks in event-time order.

    Blocks are concatenated in block order and stably sorted by time, so equal times
    keep (block, user, event) order whatever process computed each block.
    """
    merged: list[Batch] = []
    for k in range(4):
        ts: list[int] = []
        keys: list[int] = []
        lines: list[bytes] = []
        for outs in per_block:
            o = outs[k]
            if not o.ts:
                continue
            ts.extend(o.ts)
            keys.extend(o.keys)
            lines.extend(o.lines)
        if len(ts) > 1:
            order = np.argsort(np.asarray(ts, dtype=np.int64), kind="stable").tolist()
            get = operator.itemgetter(*order)
            ts, keys, lines = list(get(ts)), list(get(keys)), list(get(lines))
        merged.append((ts, keys, lines))
    return merged


ProgressCallback = Callable[[Progress], None]


class _Stop:
    """Turns SIGTERM into a clean stop at the next chunk boundary."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> _Stop:
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not in the main thread
            self._old = None
        return self

    def _handle(self, *_: object) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def run(
    plan: Plan,
    sink: Sink,
    *,
    faults: FaultRates | None = None,
    fault_manifest: Path | None = None,
    on_progress: ProgressCallback | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Progress:
    """Simulate ``plan`` into ``sink``; returns the final counts.

    History (simulated time before ``plan.live_from``) runs as fast as possible in hour
    chunks; in a continuous run, simulated time then follows the wall clock (times
    ``speed``) in one-second steps; a replay (``plan.replay``) has no history, and its
    simulated time never passes the wall clock. Ctrl-C or SIGTERM stops cleanly after
    the current chunk.
    """
    spec = plan.spec
    progress = Progress(start=plan.start, end=plan.end, sim_time=plan.start, users=spec.n_users)
    growth = _Growth(spec)
    injector = FaultInjector(faults, spec.seed, fault_manifest) if faults and faults.any() else None
    t0 = time.monotonic()
    pool = _Pool(spec, plan.workers)
    progress.startup_seconds = time.monotonic() - t0
    cursor = plan.start - WARMUP_SECONDS

    chunk = history_chunk(spec.n_users)
    limit = min(plan.end, plan.live_from) if plan.continuous else plan.end
    mark_after = plan.grid_floor()

    def history_target() -> int:
        nxt = plan.start + chunk if cursor < plan.start else cursor + chunk
        return min(nxt, limit)

    def deliver(per_block: list[tuple[TopicOut, ...]], until: int) -> None:
        nonlocal mark_after
        if mark_after is not None and until > mark_after:
            sink.mark_live(plan.live_from, plan.live_anchor)
            mark_after = None
        merged = merge(per_block)
        if injector is not None:
            merged = injector.apply(merged, until)
        for name, (_, keys, lines) in zip(ENGINE_TOPICS, merged, strict=True):
            if lines:
                sink.write(name, keys, lines)
                progress.counts[name] += len(lines)
        progress.sim_time = min(until, plan.end)
        progress.users = growth.n

    try:
        with sink, _Stop() as stop:
            # History: as fast as possible, pipelined with the workers.
            target = history_target()
            if target > cursor:
                pool.send(target, growth.until(target))
                while True:
                    per_block = pool.receive()
                    done_until = target
                    cursor = target
                    target = history_target()
                    more = target > cursor and not stop.requested
                    if more:
                        pool.send(target, growth.until(target))
                    deliver(per_block, done_until)
                    if on_progress:
                        on_progress(progress)
                    if not more:
                        break
            # Live: simulated time follows the wall clock, in steps of LIVE_STEP seconds
            # (several in a row when behind, as after a resume).
            if plan.continuous and cursor < plan.end and not stop.requested:
                progress.live = True
                written = False
                reported = time.monotonic()
                while cursor < plan.end and not stop.requested:
                    wall = clock()
                    now_sim = plan.live_from + (wall - plan.live_anchor) * plan.speed
                    pace = plan.speed
                    if plan.replay and now_sim > wall:  # caught up with the present
                        now_sim, pace = wall, 1.0
                    target = min(cursor + LIVE_STEP, plan.end)
                    if target > now_sim:
                        if written:  # caught up: deliver before waiting
                            sink.flush()
                            written = False
                            if on_progress:
                                on_progress(progress)
                                reported = time.monotonic()
                        sleep(min(0.25, max(0.01, (target - now_sim) / pace)))
                        continue
                    pool.send(target, growth.until(target))
                    deliver(pool.receive(), target)
                    cursor = target
                    written = True
                    if on_progress and time.monotonic() - reported >= 0.2:
                        on_progress(progress)
                        reported = time.monotonic()
                if written and on_progress:
                    on_progress(progress)
            if injector is not None:
                for name, (keys, lines) in zip(ENGINE_TOPICS, injector.drain(), strict=True):
                    if lines:
                        sink.write(name, keys, lines)
                        progress.counts[name] += len(lines)
    except KeyboardInterrupt:
        pass  # Ctrl-C: the sink was flushed and closed on the way out
    finally:
        pool.close()
        if injector is not None:
            injector.close()
            progress.faults = dict(injector.counts)
    return progress
