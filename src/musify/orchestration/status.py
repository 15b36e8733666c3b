"""``musify status``: the state of every component on one screen, from files and local
endpoints only (no Spark), so it answers instantly while the stack runs. The warehouse
file is opened read-only for a moment, and Airflow's database checked read-only, only to
tell a broken file: a writer's lock is never waited for, and is not damage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from musify import locks, procs
from musify.orchestration.hourly import last_published
from musify.orchestration.stack import (
    UpRecord,
    airflow_db_problem,
    airflow_health,
    read_up,
    up_lock_path,
)
from musify.settings import Settings
from musify.stream.status import StreamStatus


def _running_up(settings: Settings) -> UpRecord | None:
    """What the running ``musify up`` (the holder of its lock) started; None when none
    runs."""
    doc, _ = read_up(settings)
    try:
        running = locks.holder(up_lock_path(settings)) is not None
    except locks.LockHeld:  # a musify up that is starting
        running = True
    return doc if doc is not None and running else None


def _warehouse_problem(settings: Settings) -> str | None:
    if settings.warehouse_engine != "duckdb":
        return None
    from musify.warehouse.duckdb_engine import unreadable_reason

    return unreadable_reason(settings.warehouse_path)


@dataclass(frozen=True)
class ComponentState:
    """One row of ``musify status``."""

    name: str
    state: str  # running, healthy, degraded, starting, stopped, exited, broken
    details: str


@dataclass(frozen=True)
class StackStatus:
    """What ``musify status`` shows (``as_dict`` is its ``--json``)."""

    home: str
    at: datetime
    up_pid: int | None  # the running ``musify up``, if any
    components: list[ComponentState]
    stream: StreamStatus
    #: Airflow's own health report, component → status (None: not answering).
    airflow: dict[str, str] | None
    last_published_hour: datetime | None

    def as_dict(self) -> dict[str, object]:
        return {
            "home": self.home,
            "at": self.at.isoformat(),
            "up_pid": self.up_pid,
            "components": [asdict(c) for c in self.components],
            "stream": self.stream.to_json_dict(),
            "airflow": self.airflow,
            "last_published_hour": (
                None if self.last_published_hour is None else self.last_published_hour.isoformat()
            ),
        }


def collect(settings: Settings) -> StackStatus:
    from musify.broker.local import broker_status
    from musify.stream.status import stream_status

    now = datetime.now(UTC)
    up = _running_up(settings)
    comps = {} if up is None else up.components
    rows: list[ComponentState] = []

    b = broker_status(settings)
    rows.append(
        ComponentState(
            "broker",
            "running" if b.running else "stopped",
            b.bootstrap_servers + (f" (pid {b.pid}, {b.storage})" if b.pid else ""),
        )
    )

    def managed(name: str) -> tuple[str, str]:
        c = comps.get(name)
        if c is None:
            return "stopped", ""
        alive = c.pid is not None and procs.alive(c.pid)
        where = c.url or c.log
        return ("running" if alive else "exited"), f"pid {c.pid} {where}".strip()

    state, where = managed("generator")
    rows.append(ComponentState("generator", state, where))

    s = stream_status(settings)
    last = s.last
    if last is not None:
        mark = "-" if last.watermark is None else last.watermark.isoformat()
        details = (
            f"batch {last.batch_id} {s.age_s} s ago: {last.total_rows:,} rows, "
            f"{last.quarantined:,} quarantined, lag {last.lag}, "
            f"freshness {last.freshness_s} s, watermark {mark}"
        )
    else:
        details = "no micro-batch yet"
    rows.append(ComponentState("stream", "running" if s.running else "stopped", details))

    health = airflow_health(settings) if "airflow-api" in comps else None
    airflow_broken = airflow_db_problem(settings)
    if airflow_broken:
        rows.append(ComponentState("airflow", "broken", airflow_broken))
    elif health is not None:
        parts = [f"{k} {v}" for k, v in health.items()]
        url = comps["airflow-api"].url or ""
        state = "healthy" if all(v == "healthy" for v in health.values()) else "degraded"
        rows.append(ComponentState("airflow", state, f"{url} " + ", ".join(parts)))
    else:
        state, where = managed("airflow-scheduler")
        rows.append(ComponentState("airflow", "starting" if state == "running" else state, where))

    pub = last_published(settings)
    warehouse_broken = _warehouse_problem(settings)
    if warehouse_broken:
        rows.append(ComponentState("warehouse", "broken", warehouse_broken))
    elif pub is not None:
        behind = (now - pub).total_seconds() / 3600 - 1
        details = f"last published hour {pub:%Y-%m-%d %H:00} UTC ({max(0.0, behind):.1f} h behind)"
        rows.append(ComponentState("warehouse", "running", details))
    else:
        rows.append(ComponentState("warehouse", "stopped", "no hour published yet"))

    if "dashboard" in comps:
        state, where = managed("dashboard")
        rows.append(ComponentState("dashboard", state, where))

    return StackStatus(
        home=str(settings.home.resolve()),
        at=now,
        up_pid=None if up is None else up.pid,
        components=rows,
        stream=s,
        airflow=health,
        last_published_hour=pub,
    )
