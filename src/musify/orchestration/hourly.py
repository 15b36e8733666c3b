"""The steps of the hourly publication around ``run_batch``: wait, reconcile, publish.

An hour is *published* when the stream has passed its end (so the lake holds every event
of the hour that was produced before then), it was loaded and built, and the facts for
the hour reconcile with the distinct events in the lake. Airflow runs these steps as the
tasks of ``musify_hourly``; ``musify batch --steps`` runs any of them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from musify.errors import MusifyError
from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.settings import Settings
from musify.warehouse import open_warehouse
from musify.warehouse.base import PUBLISHED_HOURS, hours_between

#: Each topic's fact table: one row per distinct event (sessionId, itemInSession).
FACTS = {
    "listen_events": "fact_streams",
    "page_view_events": "fact_page_views",
    "auth_events": "fact_auth",
    "status_change_events": "fact_status_changes",
}
assert set(FACTS) == set(TOPIC_NAMES)
PUBLISHED_TABLE = f"raw.{PUBLISHED_HOURS}"
#: The steps of an hourly run, in order.
STEPS = ("wait", "load", "transform", "reconcile", "publish")


class ReconcileError(MusifyError):
    """The facts of an hour do not match the lake: the hour must not be published."""


class NotReady(MusifyError):
    """The stream has not yet passed the end of the hour: try again later."""

    exit_code = 75  # EX_TEMPFAIL: the DAG's sensor pokes again on this code


@dataclass(frozen=True)
class Readiness:
    ready: bool
    #: Produce time: every message acknowledged before it is committed in the lake.
    watermark: datetime | None
    #: Event time: how far the committed events have come (musify.stream.status).
    event_watermark: datetime | None
    needed: datetime

    def describe(self) -> str:
        if self.watermark is None:
            return f"the stream has no watermark yet (needs {self.needed.isoformat()})"
        if self.event_watermark is None:
            return f"the lake has no event yet (needs one after {self.needed.isoformat()})"
        state = "has passed" if self.ready else "has not passed"
        return (
            f"stream watermark {self.watermark.isoformat()} and event-time watermark "
            f"{self.event_watermark.isoformat()}: the stream {state} {self.needed.isoformat()}"
        )


def stream_readiness(settings: Settings, end: datetime, grace: timedelta) -> Readiness:
    """Whether the lake holds the hours before ``end``: the stream's produce-time
    watermark *and* its event-time watermark are past ``end + grace``.

    The produce-time watermark alone is not enough: a generator replaying history
    produces events of past hours long after those hours ended. The event-time
    watermark (the slowest active partition's newest committed event) past ``end``
    means the producer had moved past the hour in every partition, and a produce-time
    watermark past that moment means what it produced before is committed. Both come
    from the stream's records of what it committed, and neither can be moved by one
    event's timestamp (musify.stream.status). What arrives later still is late data:
    the look-back of the following runs loads it.
    """
    from musify.stream.status import event_watermark, watermark

    mark, events = watermark(settings), event_watermark(settings)
    needed = end + grace
    ready = mark is not None and events is not None and min(mark, events) >= needed
    return Readiness(ready, mark, events, needed)


def wait_for_stream(
    settings: Settings, end: datetime, grace: timedelta, timeout: float, poll: float = 5.0
) -> Readiness:
    """Block until the stream passed ``end + grace``; NotReady after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        r = stream_readiness(settings, end, grace)
        if r.ready:
            return r
        if time.monotonic() >= deadline:
            raise NotReady(r.describe())
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))


@dataclass(frozen=True)
class Reconciled:
    """Hours whose facts equal the lake's distinct events, per topic, and the lake table
    snapshots they were counted at (those the load read)."""

    counts: dict[datetime, dict[str, int]]
    snapshots: dict[datetime, dict[str, int | None]]


def lake_counts(
    lake: Lake, hours: list[datetime], loaded: dict[datetime, dict[str, int]] | None = None
) -> Reconciled:
    """Distinct events per hour and topic in the lake's tables, each hour and topic read
    at the snapshot its rows were loaded from (``loaded``), else at the current one."""
    from musify.lake.read import distinct_events

    counts: dict[datetime, dict[str, int]] = {h: {} for h in hours}
    snapshots: dict[datetime, dict[str, int | None]] = {h: {} for h in hours}
    for topic in TOPIC_NAMES:
        by_snapshot: dict[int | None, list[datetime]] = {}
        for h in hours:
            by_snapshot.setdefault((loaded or {}).get(h, {}).get(topic), []).append(h)
        for snapshot, its_hours in by_snapshot.items():
            found, used = distinct_events(lake, topic, its_hours, snapshot)
            for h in its_hours:
                counts[h][topic] = found.get(h, 0)
                snapshots[h][topic] = used
    return Reconciled(counts, snapshots)


def reconcile(settings: Settings, start: datetime, end: datetime) -> Reconciled:
    """Check facts == distinct lake events per topic, hour by hour, at the lake snapshots
    the load read; returns the counts and those snapshots."""
    lake = Lake.from_settings(settings)
    hours = hours_between(start, end)
    wrong: list[str] = []
    wh = open_warehouse(settings)
    try:
        found = lake_counts(lake, hours, wh.loaded_snapshots(start, end))
        for h in hours:
            facts = wh.fact_counts(FACTS, h, h + timedelta(hours=1))
            in_lake = found.counts[h]
            wrong += [
                f"{h:%Y-%m-%dT%H} {t}: lake {in_lake[t]:,} vs {FACTS[t]} {facts[t]:,}"
                for t in in_lake
                if in_lake[t] != facts[t]
            ]
    finally:
        wh.close()
    if wrong:
        raise ReconcileError("the warehouse does not reconcile with the lake: " + "; ".join(wrong))
    return found


def _published_file(settings: Settings) -> Path:
    return settings.run_dir / "published.json"


def publish(settings: Settings, reconciled: Reconciled) -> None:
    """Record each reconciled hour as published, with its event counts and the lake
    snapshots they were counted at (idempotent)."""
    counts = reconciled.counts
    if not counts:
        return
    wh = open_warehouse(settings)
    try:
        wh.record_published(counts, reconciled.snapshots)
    finally:
        wh.close()
    # A copy outside the warehouse, so `musify status` never waits on its lock.
    newest = max(counts)
    last = last_published(settings)
    if last is None or newest > last:
        settings.ensure_dirs()
        now = datetime.now(UTC).replace(tzinfo=None)
        doc = {"hour": newest.isoformat(), "published_at": f"{now.isoformat()}Z"}
        tmp = _published_file(settings).with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({**doc, "events": counts[newest]}))
        tmp.replace(_published_file(settings))


def last_published(settings: Settings) -> datetime | None:
    """The newest published hour (start of the hour), from the status copy.

    The copy is a cache of the warehouse's records, rewritten by the next publication:
    one that is unreadable or edited by hand counts as absent, never as a traceback.
    """
    try:
        doc = orjson.loads(_published_file(settings).read_bytes())
        return datetime.fromisoformat(doc["hour"]).astimezone(UTC)
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
