"""Warehouse benchmarks (issue: the hourly batch and a dbt star schema).

1. Incremental cost: one hourly ``run_batch`` (load with the default 2-hour look-back,
   then ``dbt build`` of the window) on top of 1 day and on top of 30 days of
   accumulated data; 5,000 users, Streamify's config (eventsim's example). The same
   clock hours are timed on both warehouses, alternately, after one warm-up run each;
   figures are medians, and the ratio 30 days / 1 day is the result (target <= 1.5).
2. A full build from about 5 million events on DuckDB: the load of every lake hour
   and the first ``dbt build`` over them, timed separately (target <= 15 s for dbt).
3. The look-back at scale: hourly publications (load, transform, reconcile, publish,
   as the DAG's tasks run them) on a day of 1,000,000 users (``musify up``'s config)
   whose hours are published, the look-back hours left alone when the lake did not
   change them vs reloaded and rebuilt every hour (``--reload-lookback``, what every run
   did before), the same hours alternately on two copies; medians and their ratio.

Lakes and warehouses come from ``benchmarks.fixtures`` (built once, then cached under
.musify/bench-cache); every timed run works on a fresh clone.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import median, save
from benchmarks.fixtures import (
    DEFAULT_END,
    build_lake,
    build_warehouse,
    read_manifest,
    streamify_config,
)
from musify.batch import run_batch
from musify.settings import Settings

HOURLY_USERS = 5_000
FULL_USERS = 20_000
FULL_DAYS = 54  # about 5.2 million lake rows with the example config
HOURLY_TARGET = 1.5
DBT_TARGET_S = 15.0


def _hourly_run(settings: Settings, hour_index: int, held_back: int) -> dict[str, float]:
    hour = DEFAULT_END - timedelta(hours=held_back - hour_index)
    t0 = time.perf_counter()
    result = run_batch(settings, hour, hour + timedelta(hours=1))
    return {
        "seconds": time.perf_counter() - t0,
        "load_seconds": result.load_seconds,
        "dbt_seconds": result.dbt_seconds,
        "rows": float(sum(sum(h.values()) for h in result.rows.values())),
    }


def hourly(repeats: int, config: Path | None, tmp: Path) -> dict[str, Any]:
    """The same next hours on a 1-day and a 30-day warehouse, alternately."""
    homes = {}
    for days in (1, 30):
        t0 = time.perf_counter()
        homes[days] = build_warehouse(
            tmp / f"hourly-{days}d",
            HOURLY_USERS,
            days + repeats / 24,
            config,
            hold_back_hours=repeats,
        )
        print(f"  {days}-day warehouse ready in {time.perf_counter() - t0:.0f} s")
    # Warm-up (dbt's first parse in a fresh target folder): the last loaded hour again,
    # which an idempotent batch leaves as it was.
    for settings in homes.values():
        _hourly_run(settings, -1, repeats)
    runs: dict[int, list[dict[str, float]]] = {1: [], 30: []}
    for i in range(repeats):
        for days, settings in homes.items():
            runs[days].append(_hourly_run(settings, i, repeats))
    out: dict[str, Any] = {"users": HOURLY_USERS, "repeats": repeats}
    for days, rs in runs.items():
        manifest = read_manifest(homes[days])
        out[f"{days}d"] = {
            "runs": rs,
            "history_events": manifest["total_events"],
            "median_seconds": median([r["seconds"] for r in rs]),
            "median_load_seconds": median([r["load_seconds"] for r in rs]),
            "median_dbt_seconds": median([r["dbt_seconds"] for r in rs]),
        }
    out["ratio"] = out["30d"]["median_seconds"] / out["1d"]["median_seconds"]
    out["ratio_dbt"] = out["30d"]["median_dbt_seconds"] / out["1d"]["median_dbt_seconds"]
    return out


def full_build(repeats: int, config: Path | None, tmp: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    runs = []
    for i in range(repeats):
        settings = build_lake(tmp / f"full-{i}", FULL_USERS, FULL_DAYS, config)
        if i == 0:
            print(f"  lake ready in {time.perf_counter() - t0:.0f} s")
        manifest = read_manifest(settings)
        start = DEFAULT_END - timedelta(days=FULL_DAYS)
        result = run_batch(settings, start, DEFAULT_END, lookback_hours=0)
        runs.append(
            {
                "load_seconds": result.load_seconds,
                "dbt_seconds": result.dbt_seconds,
                "rows": sum(sum(h.values()) for h in result.rows.values()),
                # Other work on a shared machine moves these figures: keep it on record.
                "loadavg_1m": os.getloadavg()[0],
            }
        )
    return {
        "users": FULL_USERS,
        "days": FULL_DAYS,
        "events": manifest["events"],
        "total_events": manifest["total_events"],
        "runs": runs,
        "median_load_seconds": median([r["load_seconds"] for r in runs]),
        "median_dbt_seconds": median([r["dbt_seconds"] for r in runs]),
    }


def _publication(settings: Settings, hour: Any, reload: bool) -> dict[str, float]:
    from musify.orchestration import hourly

    t0 = time.perf_counter()
    run = hourly.run_steps(
        settings, hour, hour + timedelta(hours=1), hourly.STEPS[1:], reload_lookback=reload
    )
    seconds = time.perf_counter() - t0
    assert run.batch is not None
    return {
        "seconds": seconds,
        "load_seconds": run.batch.load_seconds,
        "dbt_seconds": run.batch.dbt_seconds,
        "hours_built": (hour - run.batch.loaded_from) / timedelta(hours=1) + 1,
        "rows": float(sum(sum(h.values()) for h in run.batch.rows.values())),
    }


def lookback(users: int, repeats: int, tmp: Path) -> dict[str, Any]:
    """Hourly publications with the look-back left alone vs reloaded, alternately."""
    import shutil

    from musify.orchestration import hourly

    t0 = time.perf_counter()
    settings = build_warehouse(
        tmp / "lookback", users, 1 + repeats / 24, None, hold_back_hours=repeats
    )
    manifest = read_manifest(settings)
    print(f"  warehouse of {users:,} users ready in {time.perf_counter() - t0:.0f} s")
    first, until = (
        DEFAULT_END - timedelta(days=1, hours=repeats),
        DEFAULT_END - timedelta(hours=repeats),
    )
    hourly.run_steps(settings, first, until, ["reconcile", "publish"], lookback_hours=0)
    homes = {}
    for mode in ("skip", "reload"):
        shutil.copytree(settings.home, tmp / f"lookback-{mode}", symlinks=True)
        homes[mode] = Settings(home=tmp / f"lookback-{mode}")
    # Warm-up (dbt's first parse): the last published hour again.
    for mode, home in homes.items():
        _publication(home, until - timedelta(hours=1), mode == "reload")
    runs: dict[str, list[dict[str, float]]] = {"skip": [], "reload": []}
    for i in range(repeats):
        order = ("skip", "reload") if i % 2 == 0 else ("reload", "skip")
        for mode in order:
            runs[mode].append(
                _publication(homes[mode], until + timedelta(hours=i), mode == "reload")
            )
    out: dict[str, Any] = {"users": users, "repeats": repeats, "events": manifest["total_events"]}
    for mode, rs in runs.items():
        out[mode] = {
            "runs": rs,
            "median_seconds": median([r["seconds"] for r in rs]),
            "median_load_seconds": median([r["load_seconds"] for r in rs]),
            "median_dbt_seconds": median([r["dbt_seconds"] for r in rs]),
            "median_rows": median([r["rows"] for r in rs]),
        }
    out["ratio"] = out["skip"]["median_seconds"] / out["reload"]["median_seconds"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5, help="hourly runs per warehouse")
    ap.add_argument("--full-repeats", type=int, default=3, help="full builds")
    ap.add_argument("--skip-full", action="store_true", help="only the hourly comparison")
    ap.add_argument("--skip-hourly", action="store_true", help="no hourly comparison")
    ap.add_argument("--skip-lookback", action="store_true", help="no look-back comparison")
    ap.add_argument(
        "--lookback-users", type=int, default=1_000_000, help="users of the look-back part"
    )
    ap.add_argument("--lookback-repeats", type=int, default=4, help="publications per mode")
    args = ap.parse_args(argv)
    config = streamify_config()
    label = "eventsim example config" if config else "Musify's built-in config"
    print(f"warehouse benchmarks ({label}; DuckDB; {os.cpu_count()} cores)")
    result: dict[str, Any] = {"config": label}
    with tempfile.TemporaryDirectory(prefix="musify-bench-wh-") as d:
        tmp = Path(d)
        if not args.skip_hourly:
            h = hourly(args.repeats, config, tmp)
            result["hourly"] = h
            print(
                f"  one hourly batch (look-back 2 h), {HOURLY_USERS:,} users, median of "
                f"{args.repeats}: on 1 day ({h['1d']['history_events']:,} events) "
                f"{h['1d']['median_seconds']:.2f} s (dbt {h['1d']['median_dbt_seconds']:.2f} s), "
                f"on 30 days ({h['30d']['history_events']:,} events) "
                f"{h['30d']['median_seconds']:.2f} s (dbt {h['30d']['median_dbt_seconds']:.2f} s)"
            )
            print(
                f"    ratio 30 d / 1 d: x{h['ratio']:.2f} (dbt alone x{h['ratio_dbt']:.2f}; "
                f"target <= {HOURLY_TARGET})"
            )
        if not args.skip_full:
            f = full_build(args.full_repeats, config, tmp)
            result["full_build"] = f
            print(
                f"  full build, {FULL_USERS:,} users x {FULL_DAYS} days, "
                f"{f['total_events']:,} lake rows ({f['events']['page_view_events']:,} page "
                f"views), median of {args.full_repeats}: load {f['median_load_seconds']:.1f} s, "
                f"dbt {f['median_dbt_seconds']:.1f} s (target <= {DBT_TARGET_S:.0f} s)"
            )
            print(
                "    dbt per run: "
                + ", ".join(f"{r['dbt_seconds']:.1f} s" for r in f["runs"])
                + "; load average after each: "
                + ", ".join(f"{r['loadavg_1m']:.1f}" for r in f["runs"])
            )
        if not args.skip_lookback:
            lb = lookback(args.lookback_users, args.lookback_repeats, tmp)
            result["lookback"] = lb
            skip, reload = lb["skip"], lb["reload"]
            print(
                f"  an hourly publication over a day of {lb['users']:,} users "
                f"({lb['events']:,} events), median of {lb['repeats']}: look-back left alone "
                f"{skip['median_seconds']:.1f} s (load {skip['median_load_seconds']:.1f}, dbt "
                f"{skip['median_dbt_seconds']:.1f}; {skip['median_rows']:,.0f} rows loaded) vs "
                f"reloaded {reload['median_seconds']:.1f} s (load "
                f"{reload['median_load_seconds']:.1f}, dbt {reload['median_dbt_seconds']:.1f}; "
                f"{reload['median_rows']:,.0f} rows): x{lb['ratio']:.2f}"
            )
    save("warehouse", result)
    return result


if __name__ == "__main__":
    main()
