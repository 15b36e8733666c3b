"""`musify generate --resume`: a generator killed at any moment and started again leaves
every topic holding each event of the run exactly once, in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from musify.broker.partitioner import key_bytes, partition_for
from musify.broker.produce import produce_events
from musify.broker.resume import read_last_messages
from musify.errors import BrokerError
from musify.events import TOPIC_NAMES
from musify.settings import Settings
from musify.sim import GenerateOptions, MemorySink, plan_run, run
from musify.sim.clock import from_epoch
from tests.broker.conftest import consume

pytestmark = pytest.mark.broker

PARTITIONS = 3


def _musify(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "musify", *args]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSIFY_")}
    env["MUSIFY_HOME"] = str(home)
    return env


def _expected(sink: MemorySink) -> dict[str, dict[int, list[bytes]]]:
    """A clean run's events as each partition must hold them."""
    out: dict[str, dict[int, list[bytes]]] = {}
    for topic in TOPIC_NAMES:
        parts: dict[int, list[bytes]] = defaultdict(list)
        for key, line in zip(sink.keys[topic], sink.lines[topic], strict=True):
            parts[partition_for(key_bytes(key), PARTITIONS)].append(line)
        out[topic] = dict(parts)
    return out


def _topics(bootstrap: str, expected: dict[str, dict[int, list[bytes]]]) -> dict[str, Any]:
    got: dict[str, dict[int, list[bytes]]] = {}
    for topic, parts in expected.items():
        records = consume(bootstrap, topic, sum(len(v) for v in parts.values()), timeout=30)
        by_part: dict[int, list[bytes]] = defaultdict(list)
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            by_part[r.partition].append(r.value)
        got[topic] = dict(by_part)
    return got


def _stored(bootstrap: str) -> int:
    """Messages in the topics now (the offset of each partition's last message + 1)."""
    try:
        last = read_last_messages(bootstrap, dict.fromkeys(TOPIC_NAMES, PARTITIONS), timeout=10)
    except BrokerError:  # the generator has not created the topics yet
        return 0
    return sum(m.offset + 1 for parts in last.values() for m in parts.values())


def _kill_when(proc: subprocess.Popen[bytes], ready: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"the generator ended (code {proc.returncode}) before the kill: {out}")
        assert time.monotonic() < deadline, "the generator made no progress"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.slow
def test_killed_history_run_resumes_exactly(broker: str, broker_settings: Settings) -> None:
    home = broker_settings.home
    opts = GenerateOptions(
        n_users=3000,
        start=datetime(2024, 3, 1, tzinfo=UTC),
        days=12,
        seed=7,
        workers=1,
        cache_dir=home / "cache",  # builds the people tables the subprocesses then reuse
    )
    clean = MemorySink()
    run(plan_run(opts), clean)
    expected = _expected(clean)
    total = sum(len(v) for v in clean.lines.values())

    args = _musify(
        home,
        "generate",
        "--bootstrap-servers",
        broker,
        "--partitions",
        str(PARTITIONS),
        "--nusers",
        "3000",
        "--start-time",
        "2024-03-01T00:00:00",
        "--days",
        "12",
        "--seed",
        "7",
        "--workers",
        "2",
        "--quiet",
        "--json",
    )
    # Early marks leave room: each look at the topics takes a moment while the generator
    # keeps producing, and a quiet machine produces fast.
    marks = [total // 10, total // 4]
    for attempt, mark in enumerate(marks):
        proc = subprocess.Popen(
            args + (["--resume"] if attempt else []),
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _kill_when(proc, lambda m=mark: _stored(broker) >= m)
        stored = _stored(broker)
        assert stored < total, "killed after the run was complete: make the run longer"

    done = subprocess.run([*args, "--resume"], env=_env(home), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    summary = orjson.loads(done.stdout)
    assert summary["events"] == {t: len(v) for t, v in clean.lines.items()}
    assert sum(summary["skipped"].values()) >= stored
    assert sum(summary["produced"].values()) == total - sum(summary["skipped"].values())
    assert _topics(broker, expected) == expected  # each event once, in order


def test_resume_after_a_complete_run_produces_nothing(broker: str, musify_cache: Path) -> None:
    opts = GenerateOptions(
        n_users=300,
        start=datetime(2024, 3, 1, tzinfo=UTC),
        days=1,
        seed=3,
        workers=1,
        cache_dir=musify_cache,
    )
    first = produce_events(opts, broker, partitions=PARTITIONS)
    again = produce_events(opts, broker, partitions=PARTITIONS, resume=True)
    assert again.events == first.events
    assert again.skipped == first.events
    assert again.produced is not None and set(again.produced.values()) == {0}
    clean = MemorySink()
    run(plan_run(opts), clean)
    expected = _expected(clean)
    assert _topics(broker, expected) == expected


def test_resume_of_a_different_run_is_refused(broker: str, musify_cache: Path) -> None:
    from musify.errors import UsageError

    opts = GenerateOptions(
        n_users=300,
        start=datetime(2024, 3, 1, tzinfo=UTC),
        days=1,
        seed=3,
        workers=1,
        cache_dir=musify_cache,
    )
    produce_events(opts, broker, partitions=PARTITIONS)
    with pytest.raises(UsageError, match="cannot resume"):
        produce_events(replace(opts, seed=4), broker, resume=True)
    with pytest.raises(UsageError, match="outside this run's window"):
        later = replace(opts, start=datetime(2024, 3, 5, tzinfo=UTC))
        produce_events(later, broker, resume=True)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--faults", "default"], "--resume cannot be combined with --faults"),
        (["--start-time", "now-2d"], "--resume needs a fixed --start-time"),
        ([], "give --start-time"),
    ],
)
def test_resume_refuses_runs_it_cannot_reproduce(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    args = ["generate", "--bootstrap-servers", "127.0.0.1:1", "--resume", "--nusers", "5"]
    r = subprocess.run(
        _musify(tmp_path, *args, *extra), env=_env(tmp_path), capture_output=True, timeout=120
    )
    assert r.returncode == 2, r.stderr
    assert message in r.stderr.decode()
    assert "Traceback" not in r.stderr.decode()


def test_resume_needs_kafka(tmp_path: Path) -> None:
    args = ["generate", "--output-dir", str(tmp_path / "out"), "--resume", "--nusers", "5"]
    r = subprocess.run(
        _musify(tmp_path, *args), env=_env(tmp_path), capture_output=True, timeout=120
    )
    assert r.returncode == 2, r.stderr
    assert "give --bootstrap-servers" in r.stderr.decode()
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_killed_live_run_resumes_exactly(broker: str, broker_settings: Settings) -> None:
    """A continuous run killed after it went live resumes with the same chunking."""
    home = broker_settings.home
    now = int(time.time())
    start, end = now - 2 * 3600 - 77, now + 9 * 60
    opts = GenerateOptions(
        n_users=3000,
        continuous=True,
        start=from_epoch(start),
        end=from_epoch(end),
        seed=11,
        workers=1,
        cache_dir=home / "cache",
    )
    plan_run(opts)  # fail early on bad options; the reference needs the live switch
    args = _musify(
        home,
        "generate",
        "--bootstrap-servers",
        broker,
        "--partitions",
        str(PARTITIONS),
        "--continuous",
        "--nusers",
        "3000",
        "--start-time",
        from_epoch(start).isoformat(),
        "--end-time",
        from_epoch(end).isoformat(),
        "--seed",
        "11",
        "--speed",
        "30",
        "--workers",
        "1",
        "--quiet",
        "--json",
    )
    counts = dict.fromkeys(TOPIC_NAMES, PARTITIONS)

    went_live: list[float] = []

    def live_for_a_while() -> bool:
        """Some seconds (a minute or more of simulated time) after the switch to live."""
        if not went_live:
            try:
                last = read_last_messages(broker, counts, timeout=10)
            except BrokerError:  # no topics yet
                return False
            if any(m.live for parts in last.values() for m in parts.values()):
                went_live.append(time.monotonic())
        return bool(went_live) and time.monotonic() - went_live[0] > 3

    proc = subprocess.Popen(args, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _kill_when(proc, live_for_a_while)

    done = subprocess.run([*args, "--resume"], env=_env(home), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    resumed = orjson.loads(done.stdout)
    assert sum(resumed["skipped"].values()) > 0 and sum(resumed["produced"].values()) > 0

    last = read_last_messages(broker, counts, timeout=10)
    lives = {m.live for parts in last.values() for m in parts.values() if m.live}
    assert len(lives) == 1
    live_from, anchor = lives.pop()
    plan = replace(plan_run(opts), live_from=live_from, live_anchor=anchor)
    clean = MemorySink()
    run(plan, clean, clock=lambda: end + 10**6, sleep=lambda _s: None)
    expected = _expected(clean)
    assert sum(len(v) for v in clean.lines.values()) > 100
    assert _topics(broker, expected) == expected
