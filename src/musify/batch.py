"""The hourly batch as one idempotent function: load lake hours, then ``dbt build``.

``run_batch`` loads the requested hours from the lake into the warehouse's raw tables in
one transaction, then builds the dbt project for them. The look-back hours before them
(so that events which arrived late are picked up) are reloaded only where the lake's
tables changed since they were loaded, and rebuilt only where their raw rows changed
since they were published: in the usual hourly run, nothing arrived late, and loading
and building three hours instead of one would triple the run's cost. Running the same
hours twice leaves every table identical; a missing hour loads zero rows and is logged;
a corrupt lake file fails the batch naming the file, before anything changes.
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
from musify.warehouse.base import Warehouse, hours_between, unchanged_hours
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
    #: The first hour built: ``start``, or the first look-back hour that had changed.
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


def lookback_hours_of(
    settings: Settings, start: datetime, lookback_hours: int | None = None
) -> list[datetime]:
    """The look-back hours before ``start`` (MUSIFY_BATCH_LOOKBACK_HOURS by default)."""
    back = settings.batch_lookback_hours if lookback_hours is None else lookback_hours
    return hours_between(start - timedelta(hours=max(0, back)), start)


def unpublished_changes(wh: Warehouse, hours: list[datetime]) -> list[datetime]:
    """The hours among ``hours`` whose raw rows changed since they were published: loaded
    from other lake snapshots than those they were published at, or loaded and never
    published. Hours with no raw rows have nothing to build."""
    if not hours:
        return []
    end = hours[-1] + timedelta(hours=1)
    loaded = wh.loaded_snapshots(hours[0], end)
    published = wh.published_snapshots(hours[0], end)
    return [
        h
        for h in hours
        if h in loaded
        and (h not in published or any(published[h].get(t) != s for t, s in loaded[h].items()))
    ]


def first_changed_hour(
    settings: Settings, start: datetime, lookback: list[datetime], wh: Warehouse | None = None
) -> datetime:
    """Where the window of a run starting at ``start`` begins: its first look-back hour
    whose raw rows changed since published (``unpublished_changes``), else ``start``."""
    own = wh is None
    wh = wh or open_warehouse(settings)
    try:
        changed = unpublished_changes(wh, lookback)
    finally:
        if own:
            wh.close()
    return min([*changed, start])


def run_batch(
    settings: Settings,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    lookback_hours: int | None = None,
    run_dbt: bool = True,
    load: bool = True,
    full_refresh: bool = False,
    reload_lookback: bool = False,
) -> BatchResult:
    """Load [start, end) from the lake, with the look-back hours the lake changed since
    they were loaded, and build the models from the first hour that changed; idempotent.

    ``reload_lookback`` loads and builds every look-back hour even when unchanged (after
    the warehouse's raw tables were edited by hand, say).
    """
    start, end = resolve_window(start, end)
    lookback = lookback_hours_of(settings, start, lookback_hours)
    settings.ensure_dirs()
    lake = Lake.from_settings(settings)
    t0 = time.monotonic()
    rows: dict[str, dict[str, int]] = {}
    missing: tuple[str, ...] = ()
    loaded_from = lookback[0] if (reload_lookback and lookback) else start
    if load or run_dbt:
        wh = open_warehouse(settings)
        try:
            if load:
                if settings.song_metadata:
                    # Replaced only when the file changed; dim_songs picks the change up.
                    wh.load_song_metadata(Path(settings.song_metadata))
                stale = lookback
                if not reload_lookback and lookback:
                    same = unchanged_hours(lake, lookback, wh.loaded_snapshots(lookback[0], start))
                    stale = [h for h in lookback if h not in same]
                result = wh.load_hours(lake, stale + hours_between(start, end))
                rows, missing = result.rows, tuple(result.missing_hours)
                for h in missing:
                    log.info("hour %s has no events in the lake: loaded 0 rows", h)
            if not reload_lookback:
                loaded_from = first_changed_hour(settings, start, lookback, wh)
        finally:
            wh.close()
    load_s = time.monotonic() - t0
    dbt_s = dbt_build(settings, loaded_from, end, full_refresh=full_refresh) if run_dbt else 0.0
    return BatchResult(start, end, loaded_from, rows, missing, dbt_s, load_s)
