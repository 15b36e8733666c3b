"""Reusable, cached MUSIFY_HOMEs for benchmarks: a generated lake, and a warehouse on it.

``build_lake`` runs the generator in-process (worker processes, as ``musify generate``
does) and commits its events to the lake with ``musify.lake.writer`` in chunks (one lake
batch id per chunk), so millions of events never sit in memory at once. The lake is the
stream job's format exactly, without a broker or a JVM. ``build_warehouse`` then runs
``musify.batch.run_batch`` over the whole range (or all but the last hours, so a
benchmark can time the next ones on top of the history).

Built homes are cached under ``.musify/bench-cache/<key>`` (the key covers the arguments,
the config's content and the code that shapes the output), and each call clones the
cached home into ``home``: lake files are hard-linked (the lake's files are immutable once
committed: new batches add files, nothing rewrites one), the warehouse file is copied
(benchmarks change it). A rerun with the same arguments therefore takes seconds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import REPO, SHARED
from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.lake.writer import write_events
from musify.settings import Settings
from musify.sim import GenerateOptions, Sink, plan_run, run

#: Where built homes are kept between runs (ignored by git with the rest of .musify).
CACHE_ROOT = REPO / ".musify" / "bench-cache"
#: Default end of the simulated window: fixed, so cached homes stay valid (a Monday).
DEFAULT_END = datetime(2024, 3, 25, tzinfo=UTC)
#: Events per lake batch: bounds the memory of the build (~1 KiB per parsed event).
CHUNK_EVENTS = 400_000
MANIFEST = "bench-manifest.json"
#: Bump when the layout of a cached home changes.
_FORMAT = 1

#: Code whose changes change what a built lake / warehouse contains.
_LAKE_CODE = (
    "src/musify/sim",
    "src/musify/events.py",
    "src/musify/lake",
    "src/musify/warehouse/raw.py",
)
_WAREHOUSE_CODE = (
    *("dbt/models", "dbt/macros", "dbt/seeds", "dbt/tests", "dbt/dbt_project.yml"),
    *("src/musify/batch.py", "src/musify/settings.py"),
)


def streamify_config() -> Path | None:
    """eventsim's example config (what Streamify ran); None = Musify's built-in config."""
    path = SHARED / "eventsim" / "example-config.json"
    if path.exists():
        return path
    print(f"note: {path} is absent; using Musify's built-in generator config instead")
    return None


class _LakeSink(Sink):
    """Buffers generated lines and commits them to the lake every ``chunk`` events."""

    def __init__(self, lake: Lake, chunk: int) -> None:
        self.lake = lake
        self.chunk = chunk
        self.target = str(lake.root)
        self.batch_id = 0
        self.offsets: dict[str, int] = dict.fromkeys(TOPIC_NAMES, 0)
        self.rows: dict[str, int] = dict.fromkeys(TOPIC_NAMES, 0)
        self._buf: dict[str, list[bytes]] = {t: [] for t in TOPIC_NAMES}
        self._pending = 0

    def write(self, topic: str, keys: Sequence[int], lines: Sequence[bytes]) -> None:
        self._buf[topic].extend(lines)
        self._pending += len(lines)
        if self._pending >= self.chunk:
            self._commit()

    def close(self) -> None:
        if self._pending:
            self._commit()

    def _commit(self) -> None:
        events = {t: [orjson.loads(x) for x in ls] for t, ls in self._buf.items() if ls}
        write_events(self.lake, events, self.batch_id, first_offset=dict(self.offsets))
        for t, evs in events.items():
            self.offsets[t] += len(evs)
            self.rows[t] += len(evs)
        self._buf = {t: [] for t in TOPIC_NAMES}
        self._pending = 0
        self.batch_id += 1


def _fingerprint(paths: Sequence[str]) -> str:
    h = hashlib.sha256()
    for rel in paths:
        root = REPO / rel
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            h.update(str(f.relative_to(REPO)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _key(kind: str, params: dict[str, Any], code: Sequence[str]) -> str:
    body = orjson.dumps({"format": _FORMAT, "kind": kind, **params}, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(body + _fingerprint(code).encode()).hexdigest()[:16]
    return f"{kind}-{digest}"


def _window(days: float, end: datetime | None) -> tuple[datetime, datetime]:
    end = (end or DEFAULT_END).astimezone(UTC)
    start = end - timedelta(days=days)
    if start.minute or start.second or start.microsecond or end.minute or end.second:
        raise ValueError(f"the window {start:%Y-%m-%dT%H:%M}..{end:%H:%M} is not on the hour")
    return start, end


def _clone(src: Path, dest: Path) -> None:
    """Lake and cache hard-linked (immutable files), everything else copied."""
    if (dest / "lake").exists() or (dest / "warehouse.duckdb").exists():
        raise FileExistsError(f"{dest} already holds a lake or warehouse; give an empty folder")
    for f in sorted(src.rglob("*")):
        if f.is_dir():
            continue
        rel = f.relative_to(src)
        if rel.parts[0] in ("dbt-target", "logs", "run"):
            continue  # dbt's compiled files and logs are rebuilt by the next run
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.parts[0] in ("lake", "cache"):
            try:
                os.link(f, target)
                continue
            except OSError:
                pass  # another filesystem: copy
        shutil.copy2(f, target)


def _cached(key: str, build: Any, home: Path, cache: Path | None) -> None:
    """Build into the cache unless there, then clone.

    Built in place, not in a temp folder renamed afterwards: the lake's Iceberg catalog
    records absolute metadata paths, which a rename would break. The manifest, written
    last, marks a finished build; a folder without one is removed and built again.
    """
    if cache is None:
        build(home)
        return
    built = cache / key
    if not (built / MANIFEST).exists():
        shutil.rmtree(built, ignore_errors=True)
        built.mkdir(parents=True)
        try:
            build(built)
        except BaseException:
            shutil.rmtree(built, ignore_errors=True)
            raise
    home.mkdir(parents=True, exist_ok=True)
    _clone(built, home)


def read_manifest(settings: Settings) -> dict[str, Any]:
    """What ``build_lake`` / ``build_warehouse`` built into a home: window, counts, timings."""
    data: dict[str, Any] = orjson.loads((settings.home / MANIFEST).read_bytes())
    return data


def build_lake(
    home: Path,
    users: int,
    days: float,
    config: Path | None,
    seed: int = 1,
    end: datetime | None = None,
    *,
    cache: Path | None = CACHE_ROOT,
    workers: int = 0,
    chunk_events: int = CHUNK_EVENTS,
) -> Settings:
    """A MUSIFY_HOME at ``home`` whose lake holds ``days`` of ``users`` ending at ``end``.

    ``config`` is a generator config file (None: Musify's built-in one). ``cache=None``
    builds straight into ``home`` without caching.
    """
    start, stop = _window(days, end)
    params = {
        "users": users,
        "start": start.isoformat(),
        "end": stop.isoformat(),
        "seed": seed,
        "config": hashlib.sha256(config.read_bytes()).hexdigest() if config else "builtin",
        "chunk": chunk_events,
    }
    people = (cache or home) / "people"

    def build(target: Path) -> None:
        settings = Settings(home=target)
        settings.ensure_dirs()
        lake = Lake(Path(settings.lake_root))
        t0 = time.monotonic()
        plan = plan_run(
            GenerateOptions(
                config=config,
                n_users=users,
                start=start,
                end=stop,
                seed=seed,
                workers=workers,
                cache_dir=people,
            )
        )
        sink = _LakeSink(lake, chunk_events)
        run(plan, sink)
        manifest = {
            "params": params,
            "start": start.isoformat(),
            "end": stop.isoformat(),
            "events": sink.rows,
            "total_events": sum(sink.rows.values()),
            "lake_batches": sink.batch_id,
            "build_seconds": round(time.monotonic() - t0, 1),
        }
        (target / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))

    _cached(_key("lake", params, _LAKE_CODE), build, home, cache)
    return Settings(home=home)


def build_warehouse(
    home: Path,
    users: int,
    days: float,
    config: Path | None,
    seed: int = 1,
    end: datetime | None = None,
    *,
    hold_back_hours: int = 0,
    cache: Path | None = CACHE_ROOT,
    workers: int = 0,
    chunk_events: int = CHUNK_EVENTS,
) -> Settings:
    """``build_lake``, then ``run_batch`` over its window (DuckDB, the local default).

    ``hold_back_hours`` leaves the window's last hours out of the warehouse (they stay in
    the lake), so a benchmark can time the hourly batches that come next.
    """
    from musify.batch import run_batch

    start, stop = _window(days, end)
    until = stop - timedelta(hours=hold_back_hours)
    lake_kw: dict[str, Any] = {"cache": cache, "workers": workers, "chunk_events": chunk_events}
    params = {
        "users": users,
        "days": days,
        "end": stop.isoformat(),
        "seed": seed,
        "config": hashlib.sha256(config.read_bytes()).hexdigest() if config else "builtin",
        "chunk": chunk_events,
        "until": until.isoformat(),
    }

    def build(target: Path) -> None:
        settings = build_lake(target, users, days, config, seed, end, **lake_kw)
        manifest = read_manifest(settings)
        result = run_batch(settings, start, until, lookback_hours=0)
        manifest["warehouse_until"] = until.isoformat()
        manifest["warehouse_load_seconds"] = round(result.load_seconds, 2)
        manifest["warehouse_dbt_seconds"] = round(result.dbt_seconds, 2)
        (target / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))

    _cached(_key("warehouse", params, _LAKE_CODE + _WAREHOUSE_CODE), build, home, cache)
    return Settings(home=home)
