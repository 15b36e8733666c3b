"""Dashboard benchmark (issue: the analytics web app).

The page's interactive time over a warehouse of 30 days of 5,000 users (Streamify's
config, built by ``benchmarks.fixtures.build_warehouse`` and cached): ``musify
dashboard`` serves it, Debian's Chromium (Playwright) opens the page again and again in
one browser profile, as a returning visitor would, and each load is timed from
navigation to "interactive": the headline numbers, tables and all eight charts drawn,
no rerun pending. Target: <= 2 s (median).

- *fresh*: before each load the warehouse's modification time is bumped, as a
  published hour does, so the page re-runs every query (nothing served from the
  dashboard's result cache);
- *cached*: loads without new data (the results of the previous load are reused);
- *state filter*: choosing a state on an open page until it is interactive again;
- *baseline*, measured in the same run: the same server code over an empty MUSIFY_HOME
  (the "no warehouse yet" page: Streamlit and the browser without data or charts).
Also the query layer alone (every tile's query in one session) for the default day and
for the whole 30 days.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import median, save
from benchmarks.fixtures import build_warehouse, read_manifest, streamify_config
from musify.broker.local import free_port
from musify.dashboard import browser, server
from musify.dashboard.app import ready_key
from musify.dashboard.queries import Filters, bounds
from musify.dashboard.tiles import load_overview, load_tiles
from musify.settings import Settings
from musify.warehouse.duckdb_engine import DuckDBWarehouse

USERS = 5_000
DAYS = 30
TARGET_S = 2.0


def _bump(path: Path) -> None:
    """A new data version, as when the batch publishes an hour."""
    now = time.time()
    os.utime(path, (now, now))


def _page_loads(
    page: Any, url: str, repeats: int, warehouse: Path | None
) -> tuple[float, list[float], list[dict[str, int]]]:
    """The first (cold) load, then ``repeats`` more; with a warehouse, a new version each.
    Also what each of those loads took on the server (``browser.server_ms``)."""
    cold = browser.load(page, url)
    times, server = [], []
    for _ in range(repeats):
        if warehouse is not None:
            _bump(warehouse)
        times.append(browser.load(page, url))
        server.append(browser.server_ms(page))
    return cold, times, server


def _median_ms(loads: list[dict[str, int]], key: str) -> int | None:
    xs = [d[key] for d in loads if key in d]
    return round(median(xs)) if xs else None


def _query_layer(settings: Settings, repeats: int) -> dict[str, float]:
    backend = DuckDBWarehouse(settings.warehouse_path)
    with backend.session() as s:
        b = bounds(s)
    assert b is not None
    out = {}
    for name, f in (
        ("last_day", Filters(b.last_day, b.last_day)),
        ("all_days", Filters(b.first_day, b.last_day)),
    ):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with backend.session() as s:
                load_overview(s)
                load_tiles(s, f)
            times.append(time.perf_counter() - t0)
        out[f"median_{name}_s"] = round(median(times), 3)
    return out


def _serve(settings: Settings) -> tuple[Any, str]:
    port = free_port()
    proc = server.start(settings, "127.0.0.1", port)
    server.wait_ready("127.0.0.1", port, proc, timeout_s=120)
    return proc, server.url("127.0.0.1", port)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--users", type=int, default=USERS)
    ap.add_argument("--days", type=int, default=DAYS)
    ap.add_argument(
        "--home",
        type=Path,
        help="time the page over this MUSIFY_HOME's warehouse and lake (e.g. what "
        "`python -m benchmarks scale` or `soak` left) instead of building one",
    )
    args = ap.parse_args(argv)
    what = str(args.home) if args.home else f"{args.users:,} users x {args.days} days"
    print(f"dashboard benchmark ({what}; {os.cpu_count()} cores; median of {args.repeats})")
    with tempfile.TemporaryDirectory(prefix="musify-bench-dashboard-") as tmp:
        t0 = time.monotonic()
        if args.home:
            settings, events = Settings(home=args.home), None
        else:
            settings = build_warehouse(
                Path(tmp) / "home", args.users, args.days, streamify_config()
            )
            events = read_manifest(settings)["total_events"]
            print(f"  warehouse ready in {time.monotonic() - t0:.0f} s ({events:,} events)")
        empty = Settings(home=Path(tmp) / "empty")
        queries = _query_layer(settings, args.repeats)
        full, full_url = _serve(settings)
        base, base_url = _serve(empty)
        try:
            with browser.chromium() as chromium:
                context = chromium.new_context(viewport=browser.VIEWPORT)
                page = context.new_page()
                base_cold, base_times, _ = _page_loads(page, base_url, args.repeats, None)
                cold, fresh, fresh_server = _page_loads(
                    page, full_url, args.repeats, settings.warehouse_path
                )
                _, cached, cached_server = _page_loads(page, full_url, args.repeats, None)
                with DuckDBWarehouse(settings.warehouse_path).session() as s:
                    b = bounds(s)
                assert b is not None
                states = [code for code, _ in b.states][: args.repeats]
                names = dict(b.states)
                browser.load(page, full_url)
                filter_times = []
                for code in states:
                    t1 = time.perf_counter()
                    browser.choose_state(page, f"{code} · {names[code]}")
                    browser.wait_settled(page, ready_key(Filters(b.last_day, b.last_day, code)))
                    filter_times.append(time.perf_counter() - t1)
                context.close()
        finally:
            server.stop(full)
            server.stop(base)
    load_avg = os.getloadavg()[0]
    result = {
        "home": str(args.home) if args.home else None,
        "users": None if args.home else args.users,
        "days": None if args.home else args.days,
        "events": events,
        "repeats": args.repeats,
        "load_average_1m": round(load_avg, 2),
        "query_layer": queries,
        "page_fresh_median_s": round(median(fresh), 3),
        "page_fresh_all_s": [round(x, 3) for x in fresh],
        "page_cached_median_s": round(median(cached), 3),
        # the script's own time on the server, and the live section's read of the lake
        "server_fresh_median_ms": _median_ms(fresh_server, "page"),
        "server_cached_median_ms": _median_ms(cached_server, "page"),
        "live_read_fresh_median_ms": _median_ms(fresh_server, "live_read"),
        "page_cold_first_load_s": round(cold, 3),
        "state_filter_median_s": round(median(filter_times), 3),
        "baseline_empty_page_median_s": round(median(base_times), 3),
        "baseline_cold_first_load_s": round(base_cold, 3),
        "target_s": TARGET_S,
    }
    result["fresh_over_baseline"] = round(
        result["page_fresh_median_s"] / result["baseline_empty_page_median_s"], 2
    )
    save("dashboard", result)
    ok = "ok" if result["page_fresh_median_s"] <= TARGET_S else "over target"
    print(
        f"  page interactive, new data each load: {result['page_fresh_median_s']:.2f} s "
        f"median (target <= {TARGET_S:.0f} s: {ok}); without new data "
        f"{result['page_cached_median_s']:.2f} s; first load of the browser {cold:.2f} s"
    )
    print(
        f"  on the server, new data each load: the page's script "
        f"{result['server_fresh_median_ms']} ms, the live section's read of the lake "
        f"{result['live_read_fresh_median_ms']} ms; without new data "
        f"{result['server_cached_median_ms']} ms"
    )
    print(
        f"  baseline (same run), the empty-warehouse page: "
        f"{result['baseline_empty_page_median_s']:.2f} s -> x{result['fresh_over_baseline']:.2f}"
    )
    print(f"  state filter to interactive: {result['state_filter_median_s']:.2f} s median")
    print(
        f"  query layer (all tiles, one session): last day {queries['median_last_day_s']:.3f} s,"
        f" all days {queries['median_all_days_s']:.3f} s"
    )
    print(f"  machine load average while measuring: {load_avg:.1f} on {os.cpu_count()} cores")
    return result


if __name__ == "__main__":
    main()
