"""The hourly batch as one idempotent function: load lake hours, then ``dbt build``.

``run_batch`` loads the requested hours (plus a look-back of recent hours, so events
that arrived late are picked up) from the lake into the warehouse's raw tables in one
transaction, then builds the dbt project for the same window. Running the same hours
twice leaves every table identical; a missing hour loads zero rows and is logged; a
corrupt lake file fails the batch naming the file, before anything changes.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from musify.errors import MusifyError, UsageError
from musify.lake import Lake
from musify.settings import Settings
from musify.warehouse.duckdb_engine import (
    DuckDBWarehouse,
    hours_between,
    release_dbt_connections,
)

log = logging.getLogger("musify.batch")
#: The dbt project, kept in the repository beside the package.
DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt"


class DbtError(MusifyError):
    """dbt build failed; the message lists the failing nodes."""


@dataclass(frozen=True)
class BatchResult:
    start: datetime
    end: datetime
    loaded_from: datetime
    rows: dict[str, dict[str, int]]
    missing_hours: tuple[str, ...]
    dbt_seconds: float
    load_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "loaded_from": self.loaded_from.isoformat(),
            "rows": {t: sum(h.values()) for t, h in self.rows.items()},
            "missing_hours": list(self.missing_hours),
            "load_seconds": round(self.load_seconds, 2),
            "dbt_seconds": round(self.dbt_seconds, 2),
        }


def _hour(dt: datetime, option: str) -> datetime:
    dt = dt.astimezone(UTC)
    if dt.minute or dt.second or dt.microsecond:
        raise UsageError(f"{option} {dt.isoformat()} is not on the hour")
    return dt


def default_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last complete hour."""
    end = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(hours=1), end


def dbt_build(
    settings: Settings,
    start: datetime,
    end: datetime,
    project: Path = DBT_PROJECT,
    target: str = "duckdb",
) -> float:
    """``dbt build`` for the window, in-process; raises DbtError naming failed nodes."""
    from dbt.cli.main import dbtRunner

    if not (project / "dbt_project.yml").exists():
        raise UsageError(f"no dbt project at {project}")
    os.environ["MUSIFY_WAREHOUSE"] = str(settings.warehouse_path.resolve())
    vars_ = orjson.dumps(
        {"start": start.strftime("%Y-%m-%d %H:%M:%S"), "end": end.strftime("%Y-%m-%d %H:%M:%S")}
    ).decode()
    args = [
        "build",
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target",
        target,
        "--vars",
        vars_,
        "--quiet",
        "--log-path",
        str(settings.logs_dir / "dbt"),
        "--target-path",
        str(settings.home / "dbt-target"),
    ]
    t0 = time.monotonic()
    try:
        res = dbtRunner().invoke(args)
    finally:
        # dbt-duckdb keeps its connection open in the process; close it so the next
        # load, or a reader, can open the warehouse file.
        release_dbt_connections()
    if not res.success:
        failed = []
        for r in getattr(res.result, "results", None) or []:
            if str(getattr(r, "status", "")).lower() in {"error", "fail"}:
                failed.append(f"{r.node.name}: {(r.message or '').strip()[:300]}")
        detail = "; ".join(failed) or str(res.exception or "see logs/dbt")
        raise DbtError(f"dbt build failed for {start:%Y-%m-%dT%H}..{end:%Y-%m-%dT%H}: {detail}")
    return time.monotonic() - t0


def run_batch(
    settings: Settings,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    lookback_hours: int | None = None,
    run_dbt: bool = True,
) -> BatchResult:
    """Load [start - lookback, end) from the lake and build the models; idempotent."""
    if start is None and end is None:
        start, end = default_window()
    elif start is None:
        assert end is not None
        start = end - timedelta(hours=1)
    elif end is None:
        end = start + timedelta(hours=1)
    start, end = _hour(start, "--start"), _hour(end, "--end")
    if end <= start:
        raise UsageError("--end must be after --start")
    back = settings.batch_lookback_hours if lookback_hours is None else lookback_hours
    loaded_from = start - timedelta(hours=max(0, back))
    settings.ensure_dirs()
    lake = Lake(Path(settings.lake_root))
    wh = DuckDBWarehouse(settings.warehouse_path)
    t0 = time.monotonic()
    try:
        result = wh.load_hours(lake, hours_between(loaded_from, end))
    finally:
        wh.close()
    load_s = time.monotonic() - t0
    for h in result.missing_hours:
        log.info("hour %s has no events in the lake: loaded 0 rows", h)
    dbt_s = dbt_build(settings, loaded_from, end) if run_dbt else 0.0
    return BatchResult(start, end, loaded_from, result.rows, result.missing_hours, dbt_s, load_s)
