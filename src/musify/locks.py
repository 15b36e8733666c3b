"""Single-instance locks: at most one process per resource on this machine.

A lock is an exclusive ``flock`` on a small file that records the holder's pid. The
kernel releases it when the holder's descriptor is closed, which also happens when the
process exits or is killed (``kill -9`` included), so a crashed holder never blocks the
next start and there is no stale lock to clean up. The recorded pid is believed only
while the lock is held: a pid left in the file by a process that is gone is ignored.

The descriptor is not inherited by programs the holder starts (Python opens files
non-inheritable), so a child that outlives its parent does not keep the lock.

``musify up`` holds ``MUSIFY_HOME/run/up.lock`` (``musify down`` stops its holder), and
``musify stream`` holds one lock per checkpoint location (``keyed_path``). The locks
are advisory and local: they guard one machine, not a cluster.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import time
from pathlib import Path
from types import TracebackType

from musify.errors import MusifyError

#: A failed attempt is retried for this long, every few ms: ``holder`` takes a shared
#: lock for a few microseconds to look, and must not make a start fail, also on a loaded
#: machine where a looker can be descheduled while it holds it (0.3 s with 50 ms
#: between attempts failed there, two lookers in a loop).
RETRY_S = 1.0
RETRY_EVERY_S = 0.005
#: How long ``holder`` waits for a new holder to record its pid.
PID_WAIT_S = 1.0


class LockHeld(MusifyError):
    """Another live process holds the lock (exit code 1: not bad input).

    ``pid`` is the holder's process id, None if it had not recorded it yet."""

    def __init__(self, message: str, path: Path, pid: int | None) -> None:
        super().__init__(message)
        self.path = path
        self.pid = pid


class Lock:
    """A held lock; ``release`` (or the end of a ``with`` block) gives it up.

    A lock that is dropped without ``release`` is released when it is garbage
    collected, at the latest when the process exits."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> Lock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace")
        pid = int(text.split()[0]) if text.split() else 0
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


def _try_lock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def acquire(path: Path, what: str, hint: str = "") -> Lock:
    """Take the lock at ``path`` for this process and record its pid there.

    Raises ``LockHeld`` at once when another process holds it, with the one-line
    message "``what`` is already running (pid N)" followed by ``hint``."""
    fd = _open(path)
    try:
        deadline = time.monotonic() + RETRY_S
        while not _try_lock(fd, fcntl.LOCK_EX):
            if time.monotonic() >= deadline:
                pid = _wait_for_pid(fd)
                who = f"pid {pid}" if pid else "its pid is not recorded yet"
                raise LockHeld(
                    f"{what} is already running ({who})" + (f"; {hint}" if hint else ""),
                    path,
                    pid,
                )
            time.sleep(RETRY_EVERY_S)
        # Fixed width, written in place: a reader never sees a half-truncated file.
        os.pwrite(fd, f"{os.getpid():<20}\n".encode(), 0)
        os.ftruncate(fd, 21)
    except BaseException:
        os.close(fd)
        raise
    return Lock(path, fd)


def _wait_for_pid(fd: int) -> int | None:
    deadline = time.monotonic() + PID_WAIT_S
    while True:
        pid = _read_pid(fd)
        if pid is not None or time.monotonic() >= deadline:
            return pid
        time.sleep(0.02)


def holder(path: Path) -> int | None:
    """The pid of the process holding the lock at ``path``; None when no process holds
    it (also when the file does not exist). A holder that has not recorded its pid
    within ``PID_WAIT_S`` raises ``LockHeld``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if _try_lock(fd, fcntl.LOCK_SH):
            return None  # free; closing the descriptor drops this shared lock at once
        pid = _wait_for_pid(fd)
        if pid is None:
            raise LockHeld(f"{path} is held by a process that recorded no pid", path, None)
        return pid
    finally:
        os.close(fd)


def keyed_path(folder: Path, kind: str, key: str) -> Path:
    """``folder/<kind>-<hash of key>.lock``: a lock file per ``key`` (e.g. a checkpoint
    location, which may be a URL) with a safe, bounded file name."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return folder / f"{kind}-{digest}.lock"


__all__ = ["Lock", "LockHeld", "acquire", "holder", "keyed_path"]
