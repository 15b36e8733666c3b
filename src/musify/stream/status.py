"""What the stream reports about itself: one structured record per micro-batch.

The job appends each record to ``MUSIFY_HOME/logs/stream.jsonl`` (rotated like every
log, ``musify.procs.rotate_log``), logs it as one line, and keeps the latest in
``MUSIFY_HOME/run/stream-status.json`` for ``musify status``. Standard library only:
reading the status (``stream_status``, ``watermark``) needs neither Spark nor any other
package, so an orchestrator's own virtual environment can import this module.

The ``watermark`` of a record (ISO-8601 UTC, or null) is a promise: every message the
broker acknowledged before that instant is committed in the lake (as an event or in
the quarantine). It is the time the source asked the broker where its partitions end
while planning a batch that read up to exactly those ends; batches that stop short
(``maxOffsetsPerTrigger``, a broker end the source could not confirm) keep the previous
watermark, and a restarted job starts at null until its first caught-up batch.

The ``event_watermark`` is how far the committed events have come in event time: the
lowest, over the partitions of ``page_view_events`` (which holds every event) that
committed something in the last ``IDLE_AFTER_S`` seconds, of the newest event time
committed from that partition (``event_marks``). A producer writes each partition in
event-time order, so one event with a wrong time moves one partition's mark at most,
never the minimum; and events too far ahead of the stream's clock are quarantined
before they count (``MUSIFY_MAX_EVENT_FUTURE_SECONDS``). Readiness of an hour needs
both watermarks past its end (``musify.orchestration.hourly``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musify.procs import rotate_log

if TYPE_CHECKING:
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
    #: Everything the broker acknowledged before this instant is in the lake (ISO UTC).
    watermark: str | None = None
    #: Committed event time of the slowest active partition (ISO UTC), see above.
    event_watermark: str | None = None
    #: Partition of EVENT_TIME_TOPIC → [newest event time committed, when] (ISO UTC).
    event_marks: dict[str, list[str]] = field(default_factory=dict)
    #: "topic.field" → events of this batch carrying a field the schema does not know
    #: (kept in the lake's ``extra`` column).
    unknown_fields: dict[str, int] = field(default_factory=dict)
    #: How long the Iceberg commits of the batch took (all its tables), in ms.
    commit_ms: int = 0

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
    body = _encode({**report.as_dict(), **extra})
    settings.ensure_dirs()
    rotate_log(log_path(settings))
    with log_path(settings).open("ab") as f:
        f.write(body + b"\n")
    _write_latest(settings, body)
    return body


def advance(settings: Settings, last: dict[str, Any], watermark: datetime, at: datetime) -> bytes:
    """An idle trigger found nothing new in the broker: the latest status record (not
    the journal, which keeps one line per batch) gets the later ``watermark``, and
    ``checked_at`` says when it was confirmed."""
    body = _encode({**last, "watermark": watermark.isoformat(), "checked_at": at.isoformat()})
    settings.ensure_dirs()
    _write_latest(settings, body)
    return body


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _write_latest(settings: Settings, body: bytes) -> None:
    """Atomically: a reader never sees half a record."""
    tmp = status_path(settings).with_suffix(".tmp")
    tmp.write_bytes(body)
    tmp.replace(status_path(settings))


def write_pid(settings: Settings) -> None:
    settings.ensure_dirs()
    pid_path(settings).write_text(f"{os.getpid()}\n")


def clear_pid(settings: Settings) -> None:
    with contextlib.suppress(FileNotFoundError):
        pid_path(settings).unlink()


#: The copy of the latest status record a job with a ``gs://`` lake keeps in the lake,
#: for orchestrators and dashboards on other machines than the job's.
LAKE_STATUS_KEY = "_status/stream.json"


def _last_batch(settings: Settings) -> dict[str, Any] | None:
    data: bytes | None = None
    if "://" in settings.lake_root:
        # The job may run on a cluster: the lake's copy is the one every machine sees.
        from musify.lake.storage import open_storage

        data = open_storage(settings.lake_root).read(LAKE_STATUS_KEY)
    if data is None:
        try:
            data = status_path(settings).read_bytes()
        except FileNotFoundError:
            return None
    try:
        last = json.loads(data)
    except ValueError:
        return None
    return last if isinstance(last, dict) else None


def stream_status(settings: Settings) -> dict[str, Any]:
    """The latest batch report plus whether the job is running."""
    out: dict[str, Any] = {"running": False, "pid": None, "last_batch": None}
    try:
        pid = int(pid_path(settings).read_text().strip())
        os.kill(pid, 0)
        out.update(running=True, pid=pid)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        pass
    last = _last_batch(settings)
    if last is not None:
        out["last_batch"] = last
        out["age_s"] = round(time.time() - float(last.get("epoch", time.time())), 1)
    return out


def parse_watermark(text: str | None) -> datetime | None:
    """A status record's ``watermark`` as an aware UTC datetime (None stays None)."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


#: The topic whose partitions measure the stream's progress in event time: every event
#: is a page view (musify.events).
EVENT_TIME_TOPIC = "page_view_events"
#: A partition that committed no event for this long stops holding the event-time
#: watermark back (its users may simply have left).
IDLE_AFTER_S = 600.0


def event_watermark_of(
    marks: dict[int, tuple[datetime, datetime]], now: datetime
) -> datetime | None:
    """The event-time watermark from per-partition (newest event, committed at) marks:
    the lowest newest event of the partitions active in the last IDLE_AFTER_S seconds
    (of all of them when none is)."""
    if not marks:
        return None
    active = [ev for ev, at in marks.values() if (now - at).total_seconds() <= IDLE_AFTER_S]
    return min(active or [ev for ev, _ in marks.values()])


def event_marks_from(record: dict[str, Any] | None) -> dict[int, tuple[datetime, datetime]]:
    """The ``event_marks`` of a status record (a restarted job carries them on)."""
    out: dict[int, tuple[datetime, datetime]] = {}
    raw = (record or {}).get("event_marks") or {}
    if not isinstance(raw, dict):
        return out
    for part, pair in raw.items():
        try:
            ev, at = parse_watermark(pair[0]), parse_watermark(pair[1])
            if ev is not None and at is not None:
                out[int(part)] = (ev, at)
        except (TypeError, ValueError, IndexError):
            continue
    return out


def last_record(settings: Settings) -> dict[str, Any] | None:
    """The latest status record, if any."""
    return _last_batch(settings)


def event_watermark(settings: Settings) -> datetime | None:
    """The stream's latest event-time watermark (None before the first record that has
    one)."""
    last = _last_batch(settings)
    return None if last is None else parse_watermark(last.get("event_watermark"))


def watermark(settings: Settings) -> datetime | None:
    """The stream's latest watermark: every message the broker acknowledged before it
    is committed in the lake. None when there is no stream status yet or the job has
    not completed a caught-up batch since it (re)started."""
    last = _last_batch(settings)
    return None if last is None else parse_watermark(last.get("watermark"))
