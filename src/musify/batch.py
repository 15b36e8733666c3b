"""The hourly batch as one idempotent function: load lake hours, then ``dbt build``.

``run_batch`` loads the requested hours (plus a look-back of recent hours, so events
that arrived late are picked up) from the lake into the warehouse's raw tables in one
transaction, then builds the dbt project for the same window. Running the same hours
twice leaves every table identical; a missing hour loads zero rows and is logged; a
corrupt lake file fails the batch naming the file, before anything changes.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from musify.errors import MusifyError, UsageError
from musify.lake import Lake
from musify.settings import Settings
from musify.warehouse import dbt_target, open_warehouse
from musify.warehouse.base import hours_between
from musify.warehouse.duckdb_engine import release_dbt_connections

log = logging.getLogger("musify.batch")
#: The dbt project ships inside the package (``musify/dbt``), so an installed wheel
#: runs ``musify batch`` as well as a checkout; dbt writes its target and logs under
#: MUSIFY_HOME, never into the project.
DBT_PROJECT = Path(str(importlib.resources.files("musify") / "dbt"))


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


def _engine_vars(settings: Settings, target: str) -> dict[str, str]:
    return {"raw_schema": settings.bq_raw_dataset} if target == "bigquery" else {}


@contextlib.contextmanager
def _profile_env(settings: Settings, extra: dict[str, str] | None = None) -> Iterator[None]:
    """The variables dbt/profiles.yml reads, from the settings, for one dbt run."""
    wanted = {
        **(extra or {}),
        "MUSIFY_WAREHOUSE": str(settings.warehouse_path.resolve()),
        "MUSIFY_BQ_PROJECT": settings.bq_project,
        "MUSIFY_BQ_DATASET": settings.bq_dataset,
        "MUSIFY_BQ_LOCATION": settings.bq_location,
        "MUSIFY_BQ_API_ENDPOINT": settings.bq_api_endpoint,
    }
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def dbt_build(
    settings: Settings,
    start: datetime,
    end: datetime,
    project: Path = DBT_PROJECT,
    target: str | None = None,
    *,
    full_refresh: bool = False,
) -> float:
    """``dbt build`` for the window, in-process; raises DbtError naming failed nodes.

    ``target`` defaults to the engine the settings select (MUSIFY_WAREHOUSE_ENGINE).
    ``full_refresh`` rebuilds every incremental model from all raw rows (dbt's
    ``--full-refresh``): once after an upgrade changed the models' columns.
    """
    from dbt.cli.main import dbtRunner

    if not (project / "dbt_project.yml").exists():
        raise UsageError(f"no dbt project at {project}")
    target = target or dbt_target(settings)
    # The window goes in the environment, not --vars: dbt re-parses the whole project
    # when --vars change (every hour), not when an env var it reads only while executing
    # does (dbt/macros/window.sql), so hourly runs keep partial parsing.
    window = {
        "DBT_MUSIFY_WINDOW_START": f"{start:%Y-%m-%d %H:%M:%S}",
        "DBT_MUSIFY_WINDOW_END": f"{end:%Y-%m-%d %H:%M:%S}",
    }
    vars_ = orjson.dumps(_engine_vars(settings, target)).decode()
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
        *(["--full-refresh"] if full_refresh else []),
    ]
    t0 = time.monotonic()
    try:
        with _profile_env(settings, window):
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
        if "out of sync" in detail:  # dbt's message for on_schema_change='fail'
            detail += (
                " (the warehouse was built by another version of the models: run "
                "`musify batch --full-refresh` once)"
            )
        raise DbtError(f"dbt build failed for {start:%Y-%m-%dT%H}..{end:%Y-%m-%dT%H}: {detail}")
    return time.monotonic() - t0


def resolve_window(
    start: datetime | None, end: datetime | None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """[start, end) from either bound (one hour) or neither (the last complete hour)."""
    if start is None and end is None:
        return default_window(now)
    if start is None:
        assert end is not None
        start = end - timedelta(hours=1)
    elif end is None:
        end = start + timedelta(hours=1)
    start, end = _hour(start, "--start"), _hour(end, "--end")
    if end <= start:
        raise UsageError("--end must be after --start")
    return start, end


def run_batch(
    settings: Settings,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    lookback_hours: int | None = None,
    run_dbt: bool = True,
    load: bool = True,
    full_refresh: bool = False,
) -> BatchResult:
    """Load [start - lookback, end) from the lake and build the models; idempotent."""
    start, end = resolve_window(start, end)
    back = settings.batch_lookback_hours if lookback_hours is None else lookback_hours
    loaded_from = start - timedelta(hours=max(0, back))
    settings.ensure_dirs()
    lake = Lake.from_settings(settings)
    t0 = time.monotonic()
    rows: dict[str, dict[str, int]] = {}
    missing: tuple[str, ...] = ()
    if load:
        wh = open_warehouse(settings)
        try:
            if settings.song_metadata:
                # Replaced only when the file changed; dim_songs picks the change up.
                wh.load_song_metadata(Path(settings.song_metadata))
            result = wh.load_hours(lake, hours_between(loaded_from, end))
        finally:
            wh.close()
        rows, missing = result.rows, tuple(result.missing_hours)
        for h in missing:
            log.info("hour %s has no events in the lake: loaded 0 rows", h)
    load_s = time.monotonic() - t0
    dbt_s = dbt_build(settings, loaded_from, end, full_refresh=full_refresh) if run_dbt else 0.0
    return BatchResult(start, end, loaded_from, rows, missing, dbt_s, load_s)
