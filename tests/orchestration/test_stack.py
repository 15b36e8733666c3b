"""The stack's pieces that need no servers: its fixed plan, process groups, down, status."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from musify import procs
from musify.orchestration.stack import UpOptions, down, load_or_create_plan
from musify.orchestration.status import collect
from musify.settings import Settings
from musify.sim.clock import parse_duration

NOW = datetime(2024, 3, 18, 10, 25, 7, tzinfo=UTC)


def test_the_first_up_fixes_the_plan_and_later_ones_reuse_it(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    opts = UpOptions(users=70, history=timedelta(hours=5), catchup_hours=2, seed=9)
    plan, created = load_or_create_plan(settings, opts, NOW)
    assert created
    assert plan.history_start == datetime(2024, 3, 18, 5, 25, tzinfo=UTC)
    assert plan.dag_start == datetime(2024, 3, 18, 8, tzinfo=UTC)
    again, created = load_or_create_plan(settings, UpOptions(users=5), NOW + timedelta(days=1))
    assert not created and again == plan


def test_a_short_history_has_no_backfill_before_the_dag(tmp_path: Path) -> None:
    plan, _ = load_or_create_plan(
        Settings(home=tmp_path), UpOptions(history=timedelta(minutes=30), catchup_hours=3), NOW
    )
    assert plan.dag_start == datetime(2024, 3, 18, 9, tzinfo=UTC) <= plan.history_start


def test_durations() -> None:
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("90m") == timedelta(minutes=90)
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_stop_group_stops_the_children_too(tmp_path: Path) -> None:
    code = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    p = procs.spawn([sys.executable, "-c", code], {}, tmp_path / "x.log")
    deadline = time.monotonic() + 10
    while len(procs.descendants(p.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    family = procs.descendants(p.pid)
    assert len(family) == 2 and procs.tree_rss(p.pid) > 0
    assert procs.stop_group(p.pid, timeout=5, proc=p)
    time.sleep(0.2)
    assert not any(procs.alive(pid) for pid in family)


def test_stop_group_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    p = procs.spawn([sys.executable, "-c", code], {}, tmp_path / "x.log")
    time.sleep(0.5)
    assert not procs.stop_group(p.pid, timeout=1, proc=p)
    assert p.poll() is not None


def test_down_and_status_without_a_stack(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    said: list[str] = []
    assert not down(settings, say=said.append)
    assert "no musify up" in said[0]
    doc = collect(settings)
    names = [r["name"] for r in doc["components"]]
    assert names[:3] == ["broker", "generator", "stream"]
    assert doc["last_published_hour"] is None


def test_status_cli_json(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "musify", "status", "--json"],
        env={"MUSIFY_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"components"' in res.stdout
