"""hold_lock: another process holding a musify lock, for the lock, CLI, stack and guard tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HOLDER = (
    "import sys, time; from pathlib import Path; from musify import locks; "
    "held = locks.acquire(Path(sys.argv[1]), 'the test holder'); "
    "print('held', flush=True); time.sleep(600)"
)


@contextmanager
def hold_lock(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock at ``path`` until the block ends (or it is
    killed); it exits on SIGTERM, as ``musify up`` does."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
