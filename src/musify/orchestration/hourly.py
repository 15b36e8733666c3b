"""The steps of the hourly publication around ``run_batch``: wait, reconcile, publish,
and ``run_steps``, which runs any of them in order (what ``musify batch`` runs).

An hour is *published* when the stream has passed its end (so the lake holds every event
of the hour that was produced before then), it was loaded and built, and the facts for
the hour reconcile with the distinct events in the lake. Airflow runs these steps as the
tasks of ``musify_hourly``; ``musify batch --steps`` runs any of them by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from musify.batch import BatchResult, first_changed_hour, lookback_hours_of, run_batch
from musify.errors import MusifyError, UsageError
from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.settings import Settings
from musify.warehouse import open_warehouse
from musify.warehouse.base import PUBLISHED_HOURS, hours_between
from musify.warehouse.models import FACTS

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


@dataclass(frozen=True)
class StepsRun:
    """What ``run_steps`` did, step by step (None: the step did not run)."""

    start: datetime
    end: datetime
    steps: tuple[str, ...]
    wait: Readiness | None = None
    batch: BatchResult | None = None
    reconciled: Reconciled | None = None
    published: bool = False

    def as_dict(self) -> dict[str, object]:
        """``musify batch --json``."""
        doc: dict[str, object] = {"start": self.start.isoformat(), "end": self.end.isoformat()}
        if self.wait is not None:
            doc["wait"] = self.wait.describe()
        if self.batch is not None:
            doc.update(self.batch.as_dict())
        if self.reconciled is not None:
            doc["reconciled"] = {h.isoformat(): c for h, c in self.reconciled.counts.items()}
            doc["lake_snapshots"] = {h.isoformat(): s for h, s in self.reconciled.snapshots.items()}
        if self.published and self.reconciled is not None:
            doc["published"] = [h.isoformat() for h in self.reconciled.counts]
        return doc

    def describe(self) -> str:
        """One human line."""
        parts = [f"batch {self.start:%Y-%m-%dT%H:%M} → {self.end:%Y-%m-%dT%H:%M}"]
        if self.wait is not None:
            parts.append(self.wait.describe())
        if self.batch is not None:
            b = self.batch.as_dict()
            rows = ", ".join(f"{t} {n:,}" for t, n in b["rows"].items())
            parts.append(f"built from {b['loaded_from']}; loaded {rows}")
            parts.append(f"missing hours: {len(b['missing_hours'])}")
            parts.append(f"load {b['load_seconds']} s, dbt {b['dbt_seconds']} s")
        if self.reconciled is not None:
            parts.append(f"{len(self.reconciled.counts)} hour(s) reconcile with the lake")
        if self.published:
            parts.append("published")
        return "; ".join(parts)


def parse_steps(text: str, option: str = "--steps") -> tuple[str, ...]:
    """Comma-separated step names as a tuple in STEPS order; UsageError naming
    ``option`` for a name that is not a step."""
    return _in_order([n.strip() for n in text.split(",") if n.strip()], option)


def _in_order(names: Sequence[str], option: str) -> tuple[str, ...]:
    unknown = sorted(set(names) - set(STEPS))
    if unknown:
        raise UsageError(
            f"{option}: unknown step(s) {', '.join(unknown)}; the steps are {', '.join(STEPS)}"
        )
    return tuple(s for s in STEPS if s in names)


def run_steps(
    settings: Settings,
    start: datetime,
    end: datetime,
    steps: Sequence[str] = STEPS[1:],
    *,
    lookback_hours: int | None = None,
    grace: timedelta = timedelta(seconds=60),
    wait_timeout: float = 0.0,
    full_refresh: bool = False,
    reload_lookback: bool = False,
) -> StepsRun:
    """Run the chosen ``steps`` of the publication of [start, end), in STEPS order:
    wait for the stream (NotReady after ``wait_timeout`` s), load the lake's hours and
    build the models (``musify.batch.run_batch``), reconcile them with the lake, record
    them as published. A failing step raises (ReconcileError, DbtError, ...) and the
    later ones do not run."""
    chosen = _in_order(steps, "steps")
    run = StepsRun(start, end, chosen)
    if "wait" in chosen:
        run = replace(run, wait=wait_for_stream(settings, end, grace, wait_timeout))
    if "load" in chosen or "transform" in chosen:
        result = run_batch(
            settings,
            start,
            end,
            lookback_hours=lookback_hours,
            load="load" in chosen,
            run_dbt="transform" in chosen,
            full_refresh=full_refresh,
            reload_lookback=reload_lookback,
        )
        run = replace(run, batch=result)
    if "reconcile" in chosen or "publish" in chosen:
        # The look-back hours the batch rebuilt (late events) are reconciled and
        # published again with the hour; unchanged ones stay as published.
        lookback = lookback_hours_of(settings, start, lookback_hours)
        first = first_changed_hour(settings, start, lookback)
        run = replace(run, reconciled=reconcile(settings, first, end))
    if "publish" in chosen and run.reconciled is not None:
        publish(settings, run.reconciled)
        run = replace(run, published=True)
    return run
