"""Single-instance locks: another process holds one, a crashed holder never blocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from musify import locks
from tests.locking import hold_lock


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    path = tmp_path / "run" / "x.lock"
    with hold_lock(path) as proc:
        assert locks.holder(path) == proc.pid
        with pytest.raises(locks.LockHeld, match=rf"thing is already running \(pid {proc.pid}\)"):
            locks.acquire(path, "thing")
    assert locks.holder(path) is None  # its pid is still in the file, and not believed
    with locks.acquire(path, "thing") as lock:
        assert lock.held and locks.holder(path) == os.getpid()
    assert not lock.held and locks.holder(path) is None


def test_kill_9_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with hold_lock(path) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        lock = locks.acquire(path, "thing")
        lock.release()


def test_no_file_no_holder(tmp_path: Path) -> None:
    assert locks.holder(tmp_path / "absent.lock") is None


def test_looking_at_a_lock_does_not_make_a_start_fail(tmp_path: Path) -> None:
    """``holder`` takes a shared lock for an instant; ``acquire`` retries past it."""
    path = tmp_path / "x.lock"
    stop = threading.Event()

    def look() -> None:
        while not stop.is_set():
            locks.holder(path)

    lookers = [threading.Thread(target=look) for _ in range(2)]
    for t in lookers:
        t.start()
    try:
        for _ in range(50):
            locks.acquire(path, "thing").release()
    finally:
        stop.set()
        for t in lookers:
            t.join()


def test_a_dropped_lock_is_released(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    locks.acquire(path, "thing")  # not kept: garbage at once
    locks.acquire(path, "thing").release()


def test_keyed_paths_are_safe_file_names(tmp_path: Path) -> None:
    a = locks.keyed_path(tmp_path, "stream", "gs://bucket/checkpoints/stream")
    b = locks.keyed_path(tmp_path, "stream", "/home/me/.musify/checkpoints/stream")
    assert a != b and a.parent == tmp_path and a.name.startswith("stream-")
    assert a == locks.keyed_path(tmp_path, "stream", "gs://bucket/checkpoints/stream")


def test_a_child_that_outlives_the_holder_does_not_keep_the_lock(tmp_path: Path) -> None:
    """``musify up`` starts the broker, which keeps running after it: the lock must not
    pass to it."""
    path = tmp_path / "x.lock"
    code = (
        "import sys, subprocess; from pathlib import Path; from musify import locks; "
        "held = locks.acquire(Path(sys.argv[1]), 'parent'); "
        "null = subprocess.DEVNULL; child = subprocess.Popen(['sleep', '60'], stdout=null, "
        "stderr=null, start_new_session=True); print(child.pid)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    child = int(out.stdout)
    try:
        assert locks.holder(path) is None
        locks.acquire(path, "thing").release()
    finally:
        os.kill(child, signal.SIGKILL)
