"""What must hold before the stream starts Spark: one stream per checkpoint, and a broker
that answers.

Spark takes seconds to start and, when it then fails, prints pages of Java; these two
checks take milliseconds (a second or two for a host that does not answer) and fail
with one line.
"""

from __future__ import annotations

from pathlib import Path

from musify import locks
from musify.settings import Settings

#: How long the broker may take to answer a metadata request before the stream gives up.
REACHABLE_TIMEOUT_S = 5.0


def checkpoint_key(location: str) -> str:
    """One spelling per checkpoint: a URL without its trailing slash, a folder as its
    absolute path."""
    if "://" in location and not location.startswith("file://"):
        return location.rstrip("/")
    return str(Path(location.removeprefix("file://")).expanduser().resolve())


def lock_path(settings: Settings) -> Path:
    """The lock file of ``settings.checkpoint_location``.

    It lives under MUSIFY_HOME/run, keyed by the location, not inside the checkpoint:
    the checkpoint may be a gs:// URL, and object stores have no locks. So it guards one
    machine: a stream started on another machine (or with another MUSIFY_HOME) on the
    same checkpoint is not seen."""
    key = checkpoint_key(settings.checkpoint_location)
    return locks.keyed_path(settings.run_dir, "stream", key)


def claim(settings: Settings, bootstrap_servers: str) -> locks.Lock:
    """Hold the checkpoint's lock and check that Kafka answers, or raise: ``LockHeld``
    naming the running stream's pid, ``BrokerError`` naming the bootstrap servers."""
    from musify.broker.kafka import check_reachable

    settings.ensure_dirs()
    lock = locks.acquire(
        lock_path(settings),
        f"musify stream on the checkpoint {settings.checkpoint_location}",
        hint="one stream per checkpoint: stop that one first",
    )
    try:
        check_reachable(bootstrap_servers, timeout=REACHABLE_TIMEOUT_S)
    except BaseException:
        lock.release()
        raise
    return lock
