"""``musify status``: the state of every component on one screen, from files and local
endpoints only (no Spark), so it answers instantly while the stack runs. The warehouse
file is opened read-only for a moment, and Airflow's database checked read-only, only to
tell a broken file: a writer's lock is never waited for, and is not damage.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from musify import locks, procs
from musify.orchestration.hourly import last_published
from musify.orchestration.stack import (
    airflow_db_problem,
    airflow_health,
    read_up,
    up_lock_path,
)
from musify.settings import Settings


def _up_doc(settings: Settings) -> dict[str, Any]:
    """What the running ``musify up`` (the holder of its lock) started; {} when none runs."""
    doc, _ = read_up(settings)
    try:
        running = locks.holder(up_lock_path(settings)) is not None
    except locks.LockHeld:  # a musify up that is starting
        running = True
    return doc if doc is not None and running else {}


def _warehouse_problem(settings: Settings) -> str | None:
    if settings.warehouse_engine != "duckdb":
        return None
    from musify.warehouse.duckdb_engine import unreadable_reason

    return unreadable_reason(settings.warehouse_path)


def _row(name: str, state: str, details: str) -> dict[str, str]:
    return {"name": name, "state": state, "details": details}


def collect(settings: Settings) -> dict[str, Any]:
    from musify.broker.local import broker_status
    from musify.stream.status import stream_status

    now = datetime.now(UTC)
    up = _up_doc(settings)
    comps: dict[str, Any] = up.get("components", {})
    rows = []

    b = broker_status(settings)
    rows.append(
        _row(
            "broker",
            "running" if b.running else "stopped",
            b.bootstrap_servers + (f" (pid {b.pid})" if b.pid else ""),
        )
    )

    def managed(name: str) -> tuple[str, str]:
        c = comps.get(name)
        if not c:
            return "stopped", ""
        alive = bool(c.get("pid")) and procs.alive(int(c["pid"]))
        where = c.get("url") or c.get("log") or ""
        return ("running" if alive else "exited"), f"pid {c['pid']} {where}".strip()

    state, where = managed("generator")
    rows.append(_row("generator", state, where))

    s = stream_status(settings)
    last = s.get("last_batch") or {}
    if last:
        rows_n = sum((last.get("rows") or {}).values())
        details = (
            f"batch {last.get('batch_id')} {s.get('age_s', '?')} s ago: {rows_n:,} rows, "
            f"{last.get('quarantined', 0):,} quarantined, lag {last.get('lag')}, "
            f"freshness {last.get('freshness_s')} s, watermark {last.get('watermark') or '-'}"
        )
    else:
        details = "no micro-batch yet"
    rows.append(_row("stream", "running" if s["running"] else "stopped", details))

    health = airflow_health(settings) if "airflow-api" in comps else None
    airflow_broken = airflow_db_problem(settings)
    if airflow_broken:
        rows.append(_row("airflow", "broken", airflow_broken))
    elif health is not None:
        # components Airflow does not run here (the triggerer) report no status
        parts = [
            f"{k} {v['status']}"
            for k, v in health.items()
            if isinstance(v, dict) and v.get("status") is not None
        ]
        url = comps["airflow-api"].get("url", "")
        healthy = all("healthy" in p for p in parts)
        rows.append(
            _row("airflow", "healthy" if healthy else "degraded", f"{url} " + ", ".join(parts))
        )
    else:
        state, where = managed("airflow-scheduler")
        rows.append(_row("airflow", "starting" if state == "running" else state, where))

    pub = last_published(settings)
    warehouse_broken = _warehouse_problem(settings)
    if warehouse_broken:
        rows.append(_row("warehouse", "broken", warehouse_broken))
    elif pub is not None:
        behind = (now - pub).total_seconds() / 3600 - 1
        details = f"last published hour {pub:%Y-%m-%d %H:00} UTC ({max(0.0, behind):.1f} h behind)"
        rows.append(_row("warehouse", "running", details))
    else:
        rows.append(_row("warehouse", "stopped", "no hour published yet"))

    if "dashboard" in comps:
        state, where = managed("dashboard")
        rows.append(_row("dashboard", state, where))

    return {
        "home": str(settings.home.resolve()),
        "at": now.isoformat(),
        "up_pid": up.get("pid"),
        "components": rows,
        "stream": s,
        "airflow": health,
        "last_published_hour": pub.isoformat() if pub else None,
    }
