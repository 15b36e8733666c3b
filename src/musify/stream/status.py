"""What the stream reports about itself: one structured record per micro-batch.

The job appends each record to ``MUSIFY_HOME/logs/stream.jsonl``, prints it as one log
line, and keeps the latest in ``MUSIFY_HOME/run/stream-status.json`` for ``musify
status``. Only the standard library and orjson here: reading status needs no Spark.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from musify.settings import Settings


@dataclass
class BatchReport:
    batch_id: int
    rows: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    input_rows: int = 0
    lag: int | None = None  # messages in Kafka not yet in the lake
    duration_ms: int = 0
    newest_event: str | None = None  # ISO time of the newest event in this batch
    freshness_s: float | None = None  # now - newest event written so far
    at: str = ""
    replayed: bool = False  # the batch was already committed before (a restart)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def status_path(settings: Settings) -> Path:
    return settings.run_dir / "stream-status.json"


def pid_path(settings: Settings) -> Path:
    return settings.run_dir / "stream.pid"


def log_path(settings: Settings) -> Path:
    return settings.logs_dir / "stream.jsonl"


def record(settings: Settings, report: BatchReport, extra: dict[str, Any]) -> bytes:
    """Append the report to the stream log and make it the latest status."""
    body = orjson.dumps({**report.as_dict(), **extra})
    settings.ensure_dirs()
    with log_path(settings).open("ab") as f:
        f.write(body + b"\n")
    tmp = status_path(settings).with_suffix(".tmp")
    tmp.write_bytes(body)
    tmp.replace(status_path(settings))
    return body


def write_pid(settings: Settings) -> None:
    settings.ensure_dirs()
    pid_path(settings).write_text(f"{os.getpid()}\n")


def clear_pid(settings: Settings) -> None:
    with contextlib.suppress(FileNotFoundError):
        pid_path(settings).unlink()


def stream_status(settings: Settings) -> dict[str, Any]:
    """The latest batch report plus whether the job is running."""
    out: dict[str, Any] = {"running": False, "pid": None, "last_batch": None}
    try:
        pid = int(pid_path(settings).read_text().strip())
        os.kill(pid, 0)
        out.update(running=True, pid=pid)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        pass
    try:
        last = orjson.loads(status_path(settings).read_bytes())
        out["last_batch"] = last
        out["age_s"] = round(time.time() - float(last.get("epoch", time.time())), 1)
    except (FileNotFoundError, orjson.JSONDecodeError):
        pass
    return out
