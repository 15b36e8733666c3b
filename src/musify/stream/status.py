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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from musify.procs import rotate_log

if TYPE_CHECKING:
    from musify.settings import Settings

T = TypeVar("T")


#: The version of the status record's JSON; a reader accepts this one and the unversioned
#: records of earlier jobs (same keys), and ignores keys it does not know.
STATUS_VERSION = 1


@dataclass(frozen=True)
class StatusRecord:
    """One committed micro-batch as the stream reports it: the contract between the
    job and every reader (``musify status``, the hourly DAG, ``musify up``, the
    dashboard, the container health check). Times are aware UTC datetimes here and
    ISO-8601 strings in the JSON."""

    batch_id: int
    #: When the job recorded the batch (``epoch``: the same instant, in seconds).
    at: datetime | None = None
    epoch: float | None = None
    rows: Mapping[str, int] = field(default_factory=dict)
    quarantined: int = 0
    input_rows: int = 0
    lag: int | None = None  # messages in Kafka not yet in the lake
    duration_ms: int = 0
    #: How long the Iceberg commits of the batch took (all its tables), in ms.
    commit_ms: int = 0
    newest_event: datetime | None = None  # the newest event in this batch
    freshness_s: float | None = None  # at - newest event written so far by this job
    replayed: bool = False  # the batch was already committed before (a restart)
    #: Everything the broker acknowledged before this instant is in the lake.
    watermark: datetime | None = None
    #: Committed event time of the slowest active partition, see the module docstring.
    event_watermark: datetime | None = None
    #: Partition of EVENT_TIME_TOPIC → (newest event time committed, when).
    event_marks: Mapping[int, tuple[datetime, datetime]] = field(default_factory=dict)
    #: "topic.field" → events of this batch carrying a field the schema does not know
    #: (kept in the lake's ``extra`` column).
    unknown_fields: Mapping[str, int] = field(default_factory=dict)
    #: When an idle trigger last confirmed the ``watermark`` (``advance``).
    checked_at: datetime | None = None

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def newest_committed(self) -> datetime | None:
        """The newest event the job has committed: this batch's, or (a batch without
        events) the record's time minus the freshness it reports."""
        if self.newest_event is not None:
            return self.newest_event
        if self.at is not None and self.freshness_s is not None:
            return self.at - timedelta(seconds=self.freshness_s)
        return None

    def to_json_dict(self) -> dict[str, object]:
        """The record as JSON values (what the files and the log record carry)."""

        def iso(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat()

        return {
            "version": STATUS_VERSION,
            "batch_id": self.batch_id,
            "rows": dict(self.rows),
            "quarantined": self.quarantined,
            "input_rows": self.input_rows,
            "lag": self.lag,
            "duration_ms": self.duration_ms,
            "commit_ms": self.commit_ms,
            "newest_event": iso(self.newest_event),
            "freshness_s": self.freshness_s,
            "at": iso(self.at),
            "epoch": self.epoch,
            "replayed": self.replayed,
            "watermark": iso(self.watermark),
            "event_watermark": iso(self.event_watermark),
            "event_marks": {
                str(p): [ev.isoformat(), when.isoformat()]
                for p, (ev, when) in sorted(self.event_marks.items())
            },
            "unknown_fields": dict(self.unknown_fields),
            "checked_at": iso(self.checked_at),
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_json_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> StatusRecord | None:
        """The record in ``data``; None when it is not one (a torn or foreign file, a
        newer version): readers then behave as before the first batch."""
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        if not isinstance(doc, dict):
            return None
        try:
            if int(doc.get("version", STATUS_VERSION)) > STATUS_VERSION:
                return None
            return cls(
                batch_id=int(doc["batch_id"]),
                at=parse_watermark(doc.get("at")),
                epoch=_opt(float, doc.get("epoch")),
                rows={str(k): int(v) for k, v in (doc.get("rows") or {}).items()},
                quarantined=int(doc.get("quarantined") or 0),
                input_rows=int(doc.get("input_rows") or 0),
                lag=_opt(int, doc.get("lag")),
                duration_ms=int(doc.get("duration_ms") or 0),
                commit_ms=int(doc.get("commit_ms") or 0),
                newest_event=parse_watermark(doc.get("newest_event")),
                freshness_s=_opt(float, doc.get("freshness_s")),
                replayed=bool(doc.get("replayed", False)),
                watermark=parse_watermark(doc.get("watermark")),
                event_watermark=parse_watermark(doc.get("event_watermark")),
                event_marks=_marks(doc.get("event_marks")),
                unknown_fields={
                    str(k): int(v) for k, v in (doc.get("unknown_fields") or {}).items()
                },
                checked_at=parse_watermark(doc.get("checked_at")),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def _opt(kind: Callable[[Any], T], value: object) -> T | None:
    return None if value is None else kind(value)


def _marks(raw: object) -> dict[int, tuple[datetime, datetime]]:
    """A record's ``event_marks``; a pair that does not parse is left out (its partition
    starts again from nothing rather than the whole record being lost)."""
    out: dict[int, tuple[datetime, datetime]] = {}
    if not isinstance(raw, dict):
        return out
    for part, pair in raw.items():
        try:
            ev, at = parse_watermark(pair[0]), parse_watermark(pair[1])
            if ev is not None and at is not None:
                out[int(part)] = (ev, at)
        except (TypeError, ValueError, IndexError, KeyError):
            continue
    return out


@dataclass(frozen=True)
class StreamStatus:
    """What ``stream_status`` reads: whether this machine's job runs, and its latest
    record."""

    running: bool
    pid: int | None
    last: StatusRecord | None
    #: Seconds since the latest record was written (None without one).
    age_s: float | None

    def to_json_dict(self) -> dict[str, object]:
        return {
            "running": self.running,
            "pid": self.pid,
            "last_batch": None if self.last is None else self.last.to_json_dict(),
            "age_s": self.age_s,
        }


def status_path(settings: Settings) -> Path:
    return settings.run_dir / "stream-status.json"


def pid_path(settings: Settings) -> Path:
    return settings.run_dir / "stream.pid"


def log_path(settings: Settings) -> Path:
    return settings.logs_dir / "stream.jsonl"


def record(settings: Settings, rec: StatusRecord) -> bytes:
    """Append the record to the stream log and make it the latest status."""
    body = rec.to_json()
    settings.ensure_dirs()
    rotate_log(log_path(settings))
    with log_path(settings).open("ab") as f:
        f.write(body + b"\n")
    _write_latest(settings, body)
    return body


def advance(settings: Settings, last: StatusRecord, watermark: datetime, at: datetime) -> bytes:
    """An idle trigger found nothing new in the broker: the latest status record (not
    the journal, which keeps one line per batch) gets the later ``watermark``, and
    ``checked_at`` says when it was confirmed."""
    body = replace(last, watermark=watermark, checked_at=at).to_json()
    settings.ensure_dirs()
    _write_latest(settings, body)
    return body


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


def last_record(settings: Settings) -> StatusRecord | None:
    """The latest status record, if any."""
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
    return StatusRecord.from_json(data)


def stream_status(settings: Settings) -> StreamStatus:
    """The latest record plus whether the job is running on this machine."""
    running, pid = False, None
    try:
        pid = int(pid_path(settings).read_text().strip())
        os.kill(pid, 0)
        running = True
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        pid = None
    last = last_record(settings)
    age = None
    if last is not None:
        age = round(time.time() - (time.time() if last.epoch is None else last.epoch), 1)
    return StreamStatus(running=running, pid=pid, last=last, age_s=age)


def parse_watermark(text: object) -> datetime | None:
    """An ISO-8601 time of a status record as an aware UTC datetime (None stays None)."""
    if not text:
        return None
    moment = datetime.fromisoformat(str(text))
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


def event_watermark(settings: Settings) -> datetime | None:
    """The stream's latest event-time watermark (None before the first record that has
    one)."""
    last = last_record(settings)
    return None if last is None else last.event_watermark


def watermark(settings: Settings) -> datetime | None:
    """The stream's latest watermark: every message the broker acknowledged before it
    is committed in the lake. None when there is no stream status yet or the job has
    not completed a caught-up batch since it (re)started."""
    last = last_record(settings)
    return None if last is None else last.watermark
