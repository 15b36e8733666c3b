"""Streamify's scale on one box: `musify up --users 1000000 --history 1d`.

Starts `musify up` in a fresh MUSIFY_HOME on free ports with Streamify's user count and
a day of history, samples every component's process tree every 2 s (memory: RSS of the
tree; CPU seconds), and reports:

- time until every hour of the history is published (polled through the published
  status copy; afterwards every hour is checked in the warehouse's ``published_hours``,
  with when it was published), and until the stream first caught up with the backlog;
- throughput: events produced (the stream's rows), the stream's backlog rows/s, hours
  published per minute;
- peak memory of each component and of the whole stack, CPU seconds of each;
- disk used by MUSIFY_HOME (lake, warehouse, checkpoints, logs);
- the dashboard's interactive time over that warehouse (Chromium, as
  ``bench_dashboard``: a cold load, then loads with a new data version each);
- which stage limited: the component that was busiest (CPU) until the last hour was
  published.

Targets (issue 17): the day published in <= 15 minutes, whole-stack peak memory
<= 8 GB, the dashboard interactive in <= 2 s. Not in ``make test``; ``make bench`` runs
it last (about 15 minutes here).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import UpHome, median, save
from musify import procs
from musify.orchestration.hourly import last_published
from musify.settings import Settings

#: The benchmark stops the stack above this (the machine has 24 GiB; its own tools too).
MEMORY_GUARD = 18 * 2**30
#: The stream has caught up with the history once a batch's newest event is this fresh.
CAUGHT_UP_S = 60.0


def _stream_batches(home: Path) -> list[dict[str, Any]]:
    try:
        raw = (home / "logs" / "stream.jsonl").read_bytes()
    except FileNotFoundError:
        return []
    return [orjson.loads(x) for x in raw.splitlines() if x.strip()]


def _published(home: Path) -> list[tuple[datetime, datetime | None]]:
    """(hour, published_at) of every published hour, read from a copy of the warehouse
    (DuckDB refuses a second process while the batch holds the file)."""
    import duckdb

    src = home / "warehouse.duckdb"
    if not src.exists():
        return []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "w.duckdb"
        shutil.copy(src, copy)
        con = duckdb.connect(str(copy), read_only=True)
        try:
            rows = con.execute(
                "select hour, published_at from raw.published_hours order by hour"
            ).fetchall()
        finally:
            con.close()
    return [(h.replace(tzinfo=UTC), p.replace(tzinfo=UTC) if p else None) for h, p in rows]


def _du(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for child in sorted(path.iterdir()):
        files = [child] if child.is_file() else [p for p in child.rglob("*") if p.is_file()]
        out[child.name] = sum(p.stat().st_size for p in files if not p.is_symlink())
    return out


def _dashboard_times(url: str, repeats: int, warehouse: Path) -> dict[str, Any]:
    from musify.dashboard import browser

    with browser.chromium() as chromium:
        context = chromium.new_context(viewport=browser.VIEWPORT)
        page = context.new_page()
        cold = browser.load(page, url, timeout_s=300)
        fresh, server = [], []
        for _ in range(repeats):
            now = time.time()
            os.utime(warehouse, (now, now))  # a new data version, as a published hour
            fresh.append(browser.load(page, url, timeout_s=300))
            server.append(browser.server_ms(page))
        context.close()
    return {
        "cold_s": round(cold, 2),
        "fresh_median_s": round(median(fresh), 2),
        # the page's script on the server / its live section's read of the lake
        "server_fresh_median_ms": median([s.get("page", 0) for s in server]),
        "live_read_fresh_median_ms": median([s.get("live_read", 0) for s in server]),
    }


def run(users: int, history: str, limit: float, repeats: int) -> dict[str, Any]:
    up_home = UpHome.fresh("musify-scale-")
    home, settings = up_home.home, Settings(home=up_home.home)
    started = datetime.now(UTC)
    # the newest complete hour at start; hours up to it are history
    newest = started.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    t0 = time.monotonic()
    up, log = up_home.start(users, history)
    peak_total = 0
    peak: dict[str, int] = {}
    cpu: dict[str, float] = {}
    curve: list[tuple[float, int]] = []
    caught_up: float | None = None
    all_published: float | None = None
    newest_seen: float | None = None
    next_check = 0.0
    aborted: str | None = None
    try:
        while time.monotonic() - t0 < limit:
            time.sleep(2.0)
            pids = up_home.processes()
            per = {n: procs.tree_rss(p) for n, p in pids.items()}
            per["musify up"] = procs.pss(up.pid)
            for n, p in pids.items():
                cpu[n] = max(cpu.get(n, 0.0), procs.tree_cpu(p))
            for n, v in per.items():
                peak[n] = max(peak.get(n, 0), v)
            total = sum(per.values())
            peak_total = max(peak_total, total)
            elapsed = time.monotonic() - t0
            curve.append((round(elapsed), round(total / 2**20)))
            if total > MEMORY_GUARD:
                aborted = f"whole stack above {MEMORY_GUARD / 2**30:.0f} GiB after {elapsed:.0f} s"
                print(f"  stopping: {aborted}", flush=True)
                break
            batches = _stream_batches(home)
            fresh = batches and (batches[-1].get("freshness_s") or 1e9) < CAUGHT_UP_S
            if caught_up is None and fresh and batches[-1].get("lag") == 0:
                caught_up = elapsed
                print(f"  stream caught up after {elapsed:.0f} s", flush=True)
            last = last_published(settings)
            if newest_seen is None and last is not None and last >= newest:
                newest_seen = elapsed
                print(f"  newest history hour published after {elapsed:.0f} s", flush=True)
            if newest_seen is not None and elapsed >= next_check:
                next_check = elapsed + 60
                try:
                    hours = {h for h, _ in _published(home)}
                except Exception as exc:  # a copy taken mid-checkpoint: next time
                    print(f"  (warehouse copy unreadable: {exc})", flush=True)
                    continue
                expected = _expected_hours(home, newest)
                missing = expected - hours
                print(f"  {len(expected) - len(missing)}/{len(expected)} hours published")
                if not missing:
                    all_published = elapsed
                    break
        elapsed = time.monotonic() - t0
        dashboard = None
        if all_published is not None:
            url = f"http://127.0.0.1:{up_home.dashboard_port}/"
            print("  timing the dashboard over the warehouse ...", flush=True)
            dashboard = _dashboard_times(url, repeats, settings.warehouse_path)
    finally:
        up_home.stop(up, 600)
    batches = _stream_batches(home)
    rows = sum(sum(b.get("rows", {}).values()) + b.get("quarantined", 0) for b in batches)
    backlog = [b for b in batches if sum(b.get("rows", {}).values()) > 10_000]
    backlog_rows = sum(sum(b["rows"].values()) for b in backlog)
    backlog_s = sum(b.get("duration_ms", 0) for b in backlog) / 1000
    published = _published(home)
    busiest = max(cpu.items(), key=lambda kv: kv[1])[0] if cpu else None
    return {
        "users": users,
        "history": history,
        "seconds": round(elapsed, 1),
        "aborted": aborted,
        "stream_caught_up_s": caught_up,
        "newest_hour_published_s": newest_seen,
        "all_history_published_s": all_published,
        "hours_published": len(published),
        "events_in_lake": rows,
        "stream_backlog_rows_per_s": round(backlog_rows / backlog_s) if backlog_s else None,
        "stream_batches": len(batches),
        "peak_total_mib": round(peak_total / 2**20),
        "peak_mib": {n: round(v / 2**20) for n, v in sorted(peak.items())},
        "cpu_s": {n: round(v) for n, v in sorted(cpu.items())},
        "busiest": busiest,
        "disk_mib": {n: round(v / 2**20) for n, v in _du(home).items()},
        "dashboard": dashboard,
        "memory_curve_mib": curve[::15],
        "log": str(log),
    }


def _expected_hours(home: Path, newest: datetime) -> set[datetime]:
    doc = orjson.loads((home / "run" / "stack.json").read_bytes())
    start = datetime.fromisoformat(doc["history_start"]).astimezone(UTC)
    hour = start.replace(minute=0, second=0, microsecond=0)
    out = set()
    while hour <= newest:
        out.add(hour)
        hour += timedelta(hours=1)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks scale")
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--history", default="1d")
    ap.add_argument("--limit", type=float, default=3600.0, help="give up after (s)")
    ap.add_argument("--repeats", type=int, default=5, help="dashboard loads")
    args = ap.parse_args(argv)
    print(f"scale: musify up, {args.users:,} users, {args.history} of history")
    r = run(args.users, args.history, args.limit, args.repeats)
    print(
        f"  every history hour published after {r['all_history_published_s']} s "
        f"(target <= 900); {r['hours_published']} hours, {r['events_in_lake']:,} events"
    )
    print(f"  stream backlog: {r['stream_backlog_rows_per_s']} rows/s")
    print(f"  peak memory of the whole stack: {r['peak_total_mib']:,} MiB (target <= 8,192)")
    for name, mib in r["peak_mib"].items():
        print(f"    {name:<22} {mib:>7,} MiB peak, {r['cpu_s'].get(name, 0):>6,} CPU-s")
    print(f"  disk: {r['disk_mib']}")
    print(f"  dashboard: {r['dashboard']} (target <= 2 s)")
    print(f"  saved {save('scale', r)}")


if __name__ == "__main__":
    main(sys.argv[1:])
