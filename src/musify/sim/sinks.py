"""Where generated events go: files, standard output or Kafka.

A sink receives, per topic, batches of (key, line) in event-time order. Keys are the
simulated user's id, so a Kafka sink can keep one user's events on one partition.
Sinks are small classes behind one base class, in the style of quixstreams' sinks.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import IO, BinaryIO

from musify.errors import UsageError
from musify.events import TOPIC_NAMES


class Sink(ABC):
    """Receives event lines (JSON plus a trailing newline) per topic, in order."""

    #: Human-readable destination, for summaries.
    target: str = ""

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources; called once before the first write."""

    @abstractmethod
    def write(self, topic: str, keys: Sequence[int], lines: Sequence[bytes]) -> None:
        """Accept a batch of one topic's events (keys and lines are parallel)."""

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Make everything written so far durable or delivered."""

    def mark_live(self, live_from: int, anchor: float) -> None:  # noqa: B027 - optional hook
        """A continuous run's next events depend on when it switched to live time
        (``Plan.live_from``, ``Plan.live_anchor``); a sink that can resume a run records
        it with them."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources."""

    def __enter__(self) -> Sink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileSink(Sink):
    """One newline-delimited JSON file per topic: ``DIR/<topic>.jsonl``."""

    def __init__(self, directory: str | Path, *, append: bool = False) -> None:
        self.directory = Path(directory)
        self.append = append
        self.target = str(self.directory)
        self._files: dict[str, IO[bytes]] = {}

    def paths(self) -> dict[str, Path]:
        return {t: self.directory / f"{t}.jsonl" for t in TOPIC_NAMES}

    def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            mode = "ab" if self.append else "wb"
            for topic, path in self.paths().items():
                self._files[topic] = path.open(mode, buffering=1 << 20)
        except OSError as exc:
            self.close()
            raise UsageError(f"cannot write to {self.directory}: {exc.strerror}") from None

    def write(self, topic: str, keys: Sequence[int], lines: Sequence[bytes]) -> None:
        if lines:
            f = self._files[topic]  # a local: the CLI names it when a write fails (ENOSPC)
            f.write(b"".join(lines))

    def flush(self) -> None:
        for f in self._files.values():
            f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class StdoutSink(Sink):
    """One topic's lines on standard output (page_view_events: every event)."""

    def __init__(self, topic: str = "page_view_events", stream: BinaryIO | None = None) -> None:
        if topic not in TOPIC_NAMES:
            raise UsageError(f"unknown topic {topic!r} (topics: {', '.join(TOPIC_NAMES)})")
        self.topic = topic
        self.stream = stream or sys.stdout.buffer
        self.target = f"stdout ({topic})"

    def write(self, topic: str, keys: Sequence[int], lines: Sequence[bytes]) -> None:
        if topic == self.topic and lines:
            try:
                self.stream.write(b"".join(lines))
            except BrokenPipeError:
                raise SystemExit(0) from None  # `musify generate --stdout | head` is fine

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise SystemExit(0) from None


class MemorySink(Sink):
    """Keeps everything in memory: for tests and the Python API."""

    def __init__(self) -> None:
        self.target = "memory"
        self.lines: dict[str, list[bytes]] = {t: [] for t in TOPIC_NAMES}
        self.keys: dict[str, list[int]] = {t: [] for t in TOPIC_NAMES}

    def write(self, topic: str, keys: Sequence[int], lines: Sequence[bytes]) -> None:
        self.lines[topic].extend(lines)
        self.keys[topic].extend(keys)
