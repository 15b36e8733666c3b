"""The stream writes Iceberg tables that any reader can trust, over real connections
(local broker, real Spark, the SQLite catalog): exactly once after a kill -9 between two
tables' commits, no partial micro-batch ever visible, one writer per lake, and
maintenance running beside the stream without changing a count."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.lake.maintenance import maintain
from musify.lake.read import plan
from tests.lake.conftest import unreferenced_data_files
from tests.stream.streaming import START, lake_counts, produce

pytestmark = [pytest.mark.spark, pytest.mark.broker, pytest.mark.slow]

#: Loaded by every Python process of the job when its folder is on PYTHONPATH: after the
#: first table's commit of a batch, the driver says so in a file and waits, so the test
#: can kill it between two tables' commits.
PAUSE = textwrap.dedent(
    """
    import os, time
    marker = os.environ.get("TEST_PAUSE_AFTER_FIRST_COMMIT")
    if marker:
        from musify.lake import commit
        real = commit.Committer._commit_table
        def paused(self, name, batch_id, tb):
            done = real(self, name, batch_id, tb)
            if done and not os.path.exists(marker):
                with open(marker, "w") as f:
                    f.write(f"{batch_id} {name}")
                time.sleep(600)
            return done
        commit.Committer._commit_table = paused
    """
)


def stream(home: Path, bootstrap: str, *args: str, env: dict[str, str] | None = None) -> Any:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MUSIFY_")}
    base["MUSIFY_HOME"] = str(home)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "musify",
            "stream",
            "--bootstrap-servers",
            bootstrap,
            "--master",
            "local[2]",
            *args,
        ],
        env={**base, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _wait_for(path: Path, proc: Any, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_kill_9_between_two_tables_commits(
    broker: Any, tmp_path: Path, musify_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLARS_ICEBERG_PLANNER", "pyiceberg")  # no polars_iceberg here
    bootstrap, _, _ = broker
    home = tmp_path / "home"
    produced = produce(bootstrap, musify_cache, users=150)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PAUSE)
    marker = tmp_path / "paused"
    env = {"PYTHONPATH": str(hook), "TEST_PAUSE_AFTER_FIRST_COMMIT": str(marker)}
    p = stream(home, bootstrap, "--trigger", "1s", "--max-offsets-per-trigger", "2000", env=env)
    _wait_for(marker, p)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    batch, first = marker.read_text().split()
    lake = Lake(home / "lake")
    last = {
        n: int(lake.tables.table(n, refresh=True).properties.get("musify.last-batch", -1))
        for n in TOPIC_NAMES
    }
    behind = [n for n in ("listen_events", "page_view_events") if n != first]
    assert last[first] == int(batch) > last[behind[0]], last  # truly in between
    # restarted (without the pause): every message once, in every table
    p = stream(home, bootstrap, "--until-caught-up")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err.decode()[-3000:]
    assert lake_counts(home / "lake") == produced
    assert unreferenced_data_files(lake) == []
    # other engines read the same counts from the tables
    for topic, n in produced.items():
        table = lake.tables.table(topic, refresh=True)
        assert pl.scan_iceberg(table).select(pl.len()).collect().item() == n
        files = plan(lake, topic, [START + timedelta(hours=h) for h in range(24)]).paths()
        listed = ", ".join(f"'{f}'" for f in files)
        if files:
            got = duckdb.connect().execute(f"select count(*) from read_parquet([{listed}])")
            assert got.fetchall() == [(n,)]


def _batch_rows(table: Any, snapshot: Any) -> int:
    """Rows of every micro-batch the snapshot's lineage claims (musify.rows)."""
    total = 0
    while snapshot is not None:
        total += int((snapshot.summary or {}).get("musify.rows", 0) or 0)
        parent = snapshot.parent_snapshot_id
        snapshot = None if parent is None else table.snapshot_by_id(parent)
    return total


def test_a_reader_never_sees_part_of_a_micro_batch(
    broker: Any, tmp_path: Path, musify_cache: Path
) -> None:
    bootstrap, _, _ = broker
    home = tmp_path / "home"
    produced = produce(bootstrap, musify_cache, users=200)
    p = stream(home, bootstrap, "--trigger", "1s", "--max-offsets-per-trigger", "1500")
    lake = Lake(home / "lake")
    seen: dict[int, int] = {}
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if not (home / "lake" / "catalog.db").exists():
                time.sleep(0.2)
                continue
            table = lake.tables.table("page_view_events", refresh=True)
            snap = table.current_snapshot()
            if snap is not None and snap.snapshot_id not in seen:
                read = table.scan(snapshot_id=snap.snapshot_id).to_arrow().num_rows
                assert read == _batch_rows(table, snap) == int(snap.summary["total-records"])
                seen[snap.snapshot_id] = read
            if read_all := (seen and max(seen.values()) == produced["page_view_events"]):
                break
            time.sleep(0.05)
        assert read_all, seen
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.communicate(timeout=120)
    assert len(seen) >= 3, "the reader saw several micro-batches land"


def test_a_second_stream_on_the_lake_is_refused(
    broker: Any, tmp_path: Path, musify_cache: Path
) -> None:
    bootstrap, _, _ = broker
    home = tmp_path / "home"
    produced = produce(bootstrap, musify_cache, users=100)
    p = stream(home, bootstrap, "--until-caught-up")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-2000:]
    # the same lake through another checkpoint (a mistake: it would read every topic again)
    other = stream(
        home,
        bootstrap,
        "--until-caught-up",
        env={"MUSIFY_CHECKPOINT": str(tmp_path / "other-checkpoint")},
    )
    _, err = other.communicate(timeout=300)
    lines = err.decode().strip().splitlines()
    assert other.returncode == 1 and len(lines) == 1, lines
    assert "is written by the stream whose checkpoint is" in lines[0]
    assert lake_counts(home / "lake") == produced


def test_maintenance_beside_a_live_stream_changes_no_count(
    broker: Any, tmp_path: Path, musify_cache: Path
) -> None:
    bootstrap, _, _ = broker
    home = tmp_path / "home"
    produced = produce(bootstrap, musify_cache, users=200)
    p = stream(home, bootstrap, "--trigger", "1s", "--max-offsets-per-trigger", "1500")
    lake = Lake(home / "lake")
    errors: list[BaseException] = []
    stop = threading.Event()

    def read_counts() -> None:  # a reader beside both: never an error, never a lost row
        reader = Lake(home / "lake")
        last = 0
        while not stop.is_set():
            try:
                n = reader.tables.table("listen_events", refresh=True).scan().to_arrow().num_rows
                assert n >= last
                last = n
            except BaseException as exc:
                errors.append(exc)
                return
            time.sleep(0.1)

    try:
        _wait_for(home / "run" / "stream-status.json", p)
        reader = threading.Thread(target=read_counts)
        reader.start()
        beside = 0  # maintenance runs that started while the stream was still writing
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            writing = lake_counts(home / "lake") != produced
            maintain(
                lake,
                retention=timedelta(0),
                orphan_age=timedelta(minutes=1),
                closed_before=START + timedelta(days=2),
            )
            beside += writing
            if lake_counts(home / "lake") == produced:
                break
        maintain(
            lake,
            retention=timedelta(0),
            orphan_age=timedelta(minutes=1),
            closed_before=START + timedelta(days=2),
        )
    finally:
        stop.set()
        os.killpg(p.pid, signal.SIGTERM)
        p.communicate(timeout=120)
    reader.join(30)
    assert errors == []
    # (how many depends on how fast the machine compacts: one whole run beside the
    # stream is the point)
    assert beside >= 1
    assert lake_counts(home / "lake") == produced
    files = plan(lake, "listen_events", [START + timedelta(hours=h) for h in range(24)]).files
    assert all(len(f) <= 1 for f in files.values()), "every hour compacted to one file"
