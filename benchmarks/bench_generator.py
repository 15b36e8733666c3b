"""Generator benchmarks (issue: foundation + musify generate).

1. Files, Streamify's example config, 5,000 users over 12 weeks: page views/s and
   lines/s (median of repeats), with the default workers and with one worker (the
   baseline measured in the same run), and the ratio to eventsim's anchor figure.
2. 1,000,000 users (growth 10) over one peak hour: start-up time (until the first
   chunk is simulated: users created and placed), total time and peak memory of the
   whole process tree.
3. Live pace at 1,000,000 users: a continuous run's one-second live steps as fast as
   they go (a start in the future is live from its first second), as simulated seconds
   per wall second after start-up: how much faster than real time ``musify up`` at
   Streamify's scale can run, and the CPU share real time costs. ``--baseline-src DIR``
   measures another checkout's ``src`` in the same run, interleaved.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from datetime import UTC, datetime, timedelta
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


#: Simulated seconds of the live-pace runs (one live step each).
LIVE_SECONDS = 600


def live_pace(repeats: int, baseline_src: str | None) -> dict[str, Any]:
    variants = {"current": None, **({"baseline_src": baseline_src} if baseline_src else {})}
    start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    runs: dict[str, list[float]] = {name: [] for name in variants}
    lines = 0
    for _ in range(repeats):
        for name, src in variants.items():
            env = {"PYTHONPATH": src} if src else None
            with tempfile.TemporaryDirectory() as tmp:
                m = measure(
                    musify_cmd(
                        "generate", "--nusers", "1000000", "--seed", "1", "--workers", "1",
                        "--start-time", start.isoformat(), "--end-time",
                        (start + timedelta(seconds=LIVE_SECONDS)).isoformat(),
                        "--continuous", "--speed", "1000000", "--output-dir", tmp,
                        "--json", "-q",
                    ),
                    env,
                )  # fmt: skip
            s = m.json()
            lines = sum(s["events"].values())
            runs[name].append(LIVE_SECONDS / max(m.seconds - s["startup_seconds"], 1e-9))
    out: dict[str, Any] = {
        "simulated_seconds": LIVE_SECONDS,
        "events": lines,
        **{f"{name}_sim_s_per_wall_s": round(median(v), 1) for name, v in runs.items()},
        "runs": runs,
    }
    if baseline_src:
        out["speedup_vs_baseline_src"] = round(
            out["current_sim_s_per_wall_s"] / out["baseline_src_sim_s_per_wall_s"], 2
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=["live"], help="only the live pace")
    ap.add_argument("--baseline-src", help="another checkout's src, for the live pace")
    args = ap.parse_args(argv)
    if args.only == "live":
        pace = live_pace(args.repeats, args.baseline_src)
        save("generator-live", pace)
        _print_pace(pace)
        return pace
    config = "eventsim example config" if _config() else "Musify's built-in config"
    print(f"generator benchmarks ({config}; {os.cpu_count()} cores; median of {args.repeats})")
    many = throughput(args.repeats, None)
    one = throughput(args.repeats, 1)
    big = million_users(args.repeats)
    pace = live_pace(args.repeats, args.baseline_src)
    result = {
        "config": config,
        "throughput": many,
        "throughput_1_worker": one,
        "million_users_1h": big,
        "live_pace_1m": pace,
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
    _print_pace(pace)
    return result


def _print_pace(pace: dict[str, Any]) -> None:
    print(
        f"  live pace, 1,000,000 users: {pace['current_sim_s_per_wall_s']:,.1f} simulated s "
        f"per wall s after start-up ({pace['events']:,} events in {pace['simulated_seconds']} s)"
    )
    if "speedup_vs_baseline_src" in pace:
        print(
            f"    baseline src (same run): {pace['baseline_src_sim_s_per_wall_s']:,.1f} "
            f"-> x{pace['speedup_vs_baseline_src']:.2f}"
        )


if __name__ == "__main__":
    main()
