"""Processes: start one in its own group, stop the whole group, tell whether it is alive,
measure a process tree (memory as PSS, CPU seconds) and rotate the logs children append
to. Used by the local broker's lifecycle, the local stack (``musify up``) and the
benchmarks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """The process and everything below it."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children(p))
    return out


def pss(pid: int) -> int:
    """Proportional set size: resident memory with pages shared by n processes counted
    1/n each, so forked workers sharing copy-on-write pages are not counted twice."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except OSError:
        return 0


def tree_rss(pid: int) -> int:
    """Memory of a process and all its descendants (sum of PSS), in bytes."""
    return sum(pss(p) for p in descendants(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process and of the children it has reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process tree, including descendants that exited and were reaped."""
    return sum(cpu_seconds(p) for p in descendants(pid))


def spawn(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a component in its own session, its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


#: A log over this size is rotated (``rotate_log``), keeping LOG_KEEP older generations.
LOG_MAX_BYTES = 20 * 2**20
LOG_KEEP = 3


def rotate_log(path: Path, max_bytes: int = LOG_MAX_BYTES, keep: int = LOG_KEEP) -> bool:
    """Rotate ``path`` once it is over ``max_bytes``: ``path.1`` … ``path.<keep>`` hold
    the older generations (the oldest is dropped). True when it rotated.

    The children that write a log keep it open (``spawn``): renaming it would leave them
    writing to the renamed file. So it is copied to ``path.1`` and truncated in place,
    logrotate's ``copytruncate``: their descriptors append, so their next line starts
    the emptied file. Lines written during the copy (milliseconds) are lost."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for i in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{i + 1}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    with path.open("r+b") as f:
        f.truncate(0)
    return True


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Does the process still exist (any of its threads)?

    A multi-threaded program whose main thread exited on SIGTERM is a zombie
    thread-group leader while its other threads finish (Tansu holds its port for up to
    ~5 s that way): it is only dead once its last thread is gone.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[:1]
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return True  # no /proc: trust kill(0)
    return state != ["Z"] or threads > 1


def stop_group(
    pid: int,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    *,
    leader_first: bool = False,
) -> bool:
    """SIGTERM the process group led by ``pid``; SIGKILL it after ``timeout`` seconds.

    ``leader_first``: SIGTERM only the leader, the rest of the group once it is gone,
    for a leader that stops its own children in order (the stream stops its query
    before its JVM; a SIGTERM to the whole group would stop the JVM under it).
    Returns True when it stopped on SIGTERM."""

    def signal_group(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    def gone() -> bool:
        if proc is not None:
            return proc.poll() is not None
        return not alive(pid)

    if gone():
        return True
    if leader_first:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    else:
        signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone():
            signal_group(signal.SIGTERM)  # stragglers of the group
            return True
        time.sleep(0.2)
    signal_group(signal.SIGKILL)
    if proc is not None:
        proc.wait(10)
    return False
