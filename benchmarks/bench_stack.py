"""The whole local stack (`musify up`): peak memory and CPU on this machine.

Starts `musify up` in a fresh MUSIFY_HOME on free ports (by default as `make run` does:
1,000 users, 2 days of history, `musify up`'s own triggers, dashboard included), samples the
process tree every second for the given duration (by default until the first hour is
published and the live section has moved, then two more minutes), and reports: time to
the first published hour, to the live section's first data and to its first move, peak
memory of the whole tree (PSS, so shared pages are counted once), memory per component
at the peak, and the CPU the stack used (cores, mean over the run). Target: <= 4 GB in
total.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from benchmarks.common import UpHome, save
from musify import procs
from musify.orchestration.hourly import last_published
from musify.orchestration.stack import UP_TRIGGER, UpOptions
from musify.settings import Settings


def _live_clock(settings: Settings) -> tuple[str | None, str]:
    """The live section's clock as the dashboard computes it (None: nothing to show),
    and which stream status it read (batch, and when an idle trigger confirmed it)."""
    from musify.dashboard.live import read_view

    try:
        view, status = read_view(settings, None)
    except Exception:  # the lake is being created
        return None, ""
    last = status.last
    seen = "None@None" if last is None else f"{last.batch_id}@{last.checked_at}"
    return (None if view is None or view.clock is None else view.clock.isoformat()), seen


def run(
    users: int, history: str, after_publish: float, limit: float, trigger: str | None
) -> dict[str, Any]:
    extra = {"MUSIFY_STREAM_TRIGGER": trigger} if trigger else {}
    up_home = UpHome.fresh("musify-stack-", **extra)
    settings = Settings(home=up_home.home)
    t0 = time.monotonic()
    up, log = up_home.start(users, history)
    peak, at_peak, first_publish = 0, {}, None
    live_first: float | None = None
    live_moved: float | None = None
    clock: str | None = None
    first_status = ""  # the stream status when the section first showed data
    try:
        while time.monotonic() - t0 < limit:
            time.sleep(1.0)
            per = {n: procs.tree_rss(p) for n, p in up_home.components().items()}
            per["musify up"] = procs.pss(up.pid)
            total = sum(per.values())
            if total > peak:
                peak, at_peak = total, per
            if live_moved is None:
                now_clock, seen = _live_clock(settings)
                if now_clock is not None and clock is None:
                    live_first, first_status = time.monotonic() - t0, seen
                    print(f"  live section shows data after {live_first:.0f} s", flush=True)
                elif now_clock is not None and first_status.startswith("None@"):
                    # the first batch's status record, written after its tables
                    first_status = seen
                elif now_clock is not None and now_clock != clock and seen != first_status:
                    # a later batch or idle trigger moved it
                    live_moved = time.monotonic() - t0
                    print(f"  live section moved after {live_moved:.0f} s", flush=True)
                clock = now_clock or clock
            if first_publish is None and last_published(settings) is not None:
                first_publish = time.monotonic() - t0
                print(f"  first hour published after {first_publish:.0f} s", flush=True)
            if (
                first_publish is not None
                and live_moved is not None
                and time.monotonic() - t0 > first_publish + after_publish
            ):
                break
        cpu = procs.tree_cpu(up.pid)
        elapsed = time.monotonic() - t0
    finally:
        up_home.stop(up, 400)
    return {
        "users": users,
        "history": history,
        "seconds": round(elapsed, 1),
        "trigger": trigger or UP_TRIGGER,
        "first_publish_s": round(first_publish, 1) if first_publish else None,
        # the live section (as the dashboard computes it, polled every second): first
        # data, then the first time its clock moved on
        "live_first_data_s": round(live_first, 1) if live_first else None,
        "live_first_move_s": round(live_moved, 1) if live_moved else None,
        "peak_mib": round(peak / 2**20),
        "at_peak_mib": {n: round(v / 2**20) for n, v in sorted(at_peak.items())},
        "cpu_cores_mean": round(cpu / elapsed, 2),
        "log": str(log),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks stack")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument(
        "--history", default=f"{UpOptions().history.days}d", help="default: as make run"
    )
    ap.add_argument("--after-publish", type=float, default=120.0)
    ap.add_argument("--limit", type=float, default=1800.0)
    ap.add_argument(
        "--trigger", help=f"MUSIFY_STREAM_TRIGGER (default: musify up's own, {UP_TRIGGER})"
    )
    args = ap.parse_args(argv)
    print(
        f"stack: musify up, {args.users:,} users, {args.history} of history, "
        f"trigger {args.trigger or UP_TRIGGER}"
    )
    r = run(args.users, args.history, args.after_publish, args.limit, args.trigger)
    print(
        f"  live section: first data after {r['live_first_data_s']} s, moved after "
        f"{r['live_first_move_s']} s; first hour published after {r['first_publish_s']} s"
    )
    print(f"  peak memory of the whole stack: {r['peak_mib']:,} MiB (target <= 4,096)")
    for name, mib in r["at_peak_mib"].items():
        print(f"    {name:<22} {mib:>6,} MiB")
    print(f"  CPU: {r['cpu_cores_mean']} cores on average over {r['seconds']} s (2 here)")
    print(f"  saved {save('stack', r)}")


if __name__ == "__main__":
    main(sys.argv[1:])
