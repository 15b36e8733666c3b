"""Generator benchmarks (issue: foundation + musify generate).

1. Files, Streamify's example config, 5,000 users over 12 weeks: page views/s and
   lines/s (median of repeats), with the default workers and with one worker (the
   baseline measured in the same run), and the ratio to eventsim's anchor figure.
2. 1,000,000 users (growth 10) over one peak hour: start-up time (until the first
   chunk is simulated: users created and placed), total time and peak memory of the
   whole process tree.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

from benchmarks.common import SHARED, measure, median, musify_cmd, save

#: eventsim (viirya fork, JVM 17, file output) on this machine kind: 5,000 users, 12 weeks.
EVENTSIM_PAGE_VIEWS_PER_S = 44_000
EVENTSIM_LINES_PER_S = 83_000
#: eventsim, 1M users, growth 10, first hour: 55 s, 2.85 GB.
EVENTSIM_1M_SECONDS = 55.0
EVENTSIM_1M_RSS_GB = 2.85


def _config() -> list[str]:
    path = SHARED / "eventsim" / "example-config.json"
    return ["--config", str(path)] if path.exists() else []


def throughput(repeats: int, workers: int | None) -> dict[str, Any]:
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            args = [
                "generate",
                *_config(),
                "--nusers",
                "5000",
                "--start-time",
                "2022-02-28T00:00:00",
                "--end-time",
                "2022-05-23T00:00:00",
                "--seed",
                "7",
                "--output-dir",
                tmp,
                "--json",
                "-q",
            ]
            if workers:
                args += ["--workers", str(workers)]
            m = measure(musify_cmd(*args))
            s = m.json()
            pv = s["events"]["page_view_events"]
            lines = sum(s["events"].values())
            runs.append(
                {
                    "wall_seconds": m.seconds,
                    "page_views": pv,
                    "lines": lines,
                    "page_views_per_s": pv / m.seconds,
                    "lines_per_s": lines / m.seconds,
                    "peak_rss_mb": m.peak_rss / 2**20,
                    "workers": s["workers"],
                }
            )
    return {
        "runs": runs,
        "page_views": runs[0]["page_views"],
        "lines": runs[0]["lines"],
        "workers": runs[0]["workers"],
        "median_page_views_per_s": median([r["page_views_per_s"] for r in runs]),
        "median_lines_per_s": median([r["lines_per_s"] for r in runs]),
        "median_wall_seconds": median([r["wall_seconds"] for r in runs]),
    }


def million_users(repeats: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            m = measure(
                musify_cmd(
                    "generate",
                    *_config(),
                    "--nusers",
                    "1000000",
                    "--growth-rate",
                    "10",
                    "--start-time",
                    "2022-03-21T15:00:00",
                    "--end-time",
                    "2022-03-21T16:00:00",
                    "--seed",
                    "1",
                    "--output-dir",
                    tmp,
                    "--json",
                    "-q",
                )
            )
            s = m.json()
            runs.append(
                {
                    "wall_seconds": m.seconds,
                    "startup_seconds": s["startup_seconds"],
                    "peak_rss_mb": m.peak_rss / 2**20,
                    "page_views": s["events"]["page_view_events"],
                }
            )
    return {
        "runs": runs,
        "median_startup_seconds": median([r["startup_seconds"] for r in runs]),
        "median_wall_seconds": median([r["wall_seconds"] for r in runs]),
        "median_peak_rss_mb": median([r["peak_rss_mb"] for r in runs]),
        "page_views": runs[0]["page_views"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    config = "eventsim example config" if _config() else "Musify's built-in config"
    print(f"generator benchmarks ({config}; {os.cpu_count()} cores; median of {args.repeats})")
    many = throughput(args.repeats, None)
    one = throughput(args.repeats, 1)
    big = million_users(args.repeats)
    result = {
        "config": config,
        "throughput": many,
        "throughput_1_worker": one,
        "million_users_1h": big,
    }
    save("generator", result)
    pv, lines = many["median_page_views_per_s"], many["median_lines_per_s"]
    print(
        f"  5,000 users x 12 weeks, {many['page_views']:,} page views, "
        f"{many['lines']:,} lines, {many['workers']} workers:"
    )
    print(
        f"    {pv:,.0f} page views/s, {lines:,.0f} lines/s "
        f"(wall {many['median_wall_seconds']:.1f} s)"
    )
    print(
        f"    vs 1 worker (same run): {one['median_page_views_per_s']:,.0f} page views/s "
        f"-> speed-up x{pv / one['median_page_views_per_s']:.2f}"
    )
    print(
        f"    vs eventsim anchor ({EVENTSIM_PAGE_VIEWS_PER_S:,} page views/s): "
        f"x{pv / EVENTSIM_PAGE_VIEWS_PER_S:.2f} (target >= x2)"
    )
    print(f"  1,000,000 users, growth 10, one peak hour ({big['page_views']:,} page views):")
    print(
        f"    ready in {big['median_startup_seconds']:.2f} s (target <= 10 s), "
        f"total {big['median_wall_seconds']:.1f} s (eventsim {EVENTSIM_1M_SECONDS:.0f} s), "
        f"peak memory {big['median_peak_rss_mb']:,.0f} MiB for all processes "
        f"(target <= 1 GB; eventsim {EVENTSIM_1M_RSS_GB} GB)"
    )
    return result


if __name__ == "__main__":
    main()
