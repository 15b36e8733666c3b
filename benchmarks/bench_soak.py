"""A live soak at accelerated time: `musify up --users N --history D --speed S`.

`musify up` in a fresh MUSIFY_HOME replays D of simulated history at S simulated
seconds per wall second (``musify generate --replay``: never ahead of the clock), and
the hourly DAG publishes every hour of it as the stream passes it, as it would in real
time. The benchmark samples every component's process tree every 10 s until the replay
has reached the present (D / (S - 1) of wall time) plus ``--tail`` seconds, and reports:

- the memory curve of every component (broker, generator, stream, Airflow, dashboard,
  ``musify up``) and of the whole stack, and each one's growth per simulated day over the
  second half of the run (a bounded component grows by about nothing);
- whether published hours kept pace with the replay: the lag between the replay's clock
  (the stream's newest committed event) and the end of the newest published hour, at
  every sample (p50, max, at the end);
- the size of the logs (``musify up`` rotates them) and of MUSIFY_HOME.

Issue 17 asks for at least 3 simulated days at 1,000,000 users
(``--users 1000000 --history 3d``); a short smoke run checks the machinery. Not in
``make test``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import UpHome, save
from musify import procs
from musify.orchestration.hourly import last_published
from musify.settings import Settings
from musify.sim.clock import parse_duration
from musify.stream.status import last_record

#: The benchmark stops the stack above this (the machine has 24 GiB; its own tools too).
MEMORY_GUARD = 18 * 2**30
SAMPLE_S = 10.0


def _size(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _quantile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _growth_per_day(samples: list[dict[str, Any]], name: str, until: float) -> float | None:
    """MiB per simulated day over the second half of the replay (samples before
    ``until`` s), by least squares: about 0 for a component whose memory is bounded."""
    replay = [s for s in samples if s["t"] <= until]
    half = [s for s in replay[len(replay) // 2 :] if name in s["mib"] and s["sim"]]
    if len(half) < 3:
        return None
    xs = [s["sim"] / 86400 for s in half]
    ys = [float(s["mib"][name]) for s in half]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    slope: float = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
    return slope


def run(
    users: int,
    history: str,
    speed: float,
    tail: float,
    trigger: str,
    storage: str,
    retention_hours: float | None = None,
) -> dict[str, Any]:
    span = parse_duration(history)
    env = {"MUSIFY_BROKER_STORAGE": storage}
    if retention_hours is not None:
        env["MUSIFY_BROKER_RETENTION_HOURS"] = f"{retention_hours:g}"
    up_home = UpHome.fresh("musify-soak-", **env)
    home, settings = up_home.home, Settings(home=up_home.home)
    began = datetime.now(UTC)
    start = (began - span).replace(second=0, microsecond=0)
    catch_up = span.total_seconds() / (speed - 1)
    limit = catch_up + tail
    print(
        f"  replay of {history} at {speed:g}x reaches the present after ~{catch_up / 60:.0f} min;"
        f" sampling until {limit / 60:.0f} min",
        flush=True,
    )
    t0 = time.monotonic()
    up, log = up_home.start(users, history, "--speed", f"{speed:g}", "--trigger", trigger)
    samples: list[dict[str, Any]] = []
    aborted: str | None = None
    next_print = 0.0
    try:
        while (elapsed := time.monotonic() - t0) < limit:
            if up.poll() is not None:
                aborted = f"musify up exited ({up.returncode}) after {elapsed:.0f} s"
                break
            pids = up_home.processes()
            mib = {n: round(procs.tree_rss(p) / 2**20) for n, p in pids.items()}
            mib["musify up"] = round(procs.pss(up.pid) / 2**20)
            rec = last_record(settings)
            newest = rec.newest_committed if rec else None
            published = last_published(settings)
            sim = (newest - start).total_seconds() if newest else None
            lag = (
                (newest - (published + timedelta(hours=1))).total_seconds()
                if newest and published
                else None
            )
            total = sum(mib.values())
            sample = {"t": round(elapsed), "sim": sim, "lag_s": lag, "mib": mib, "total": total}
            if len(samples) % 6 == 0:  # the broker's files (disk storage), once a minute
                sample["broker_disk_mib"] = round(_size(home / "broker") / 2**20)
            samples.append(sample)
            if total * 2**20 > MEMORY_GUARD:
                aborted = f"whole stack above {MEMORY_GUARD / 2**30:.0f} GiB after {elapsed:.0f} s"
                break
            if elapsed >= next_print:
                next_print = elapsed + 300
                print(
                    f"  {elapsed / 60:5.1f} min: replay at {newest:%m-%d %H:%M}, "
                    f"published to {published:%m-%d %H:00}, {total:,} MiB"
                    if newest and published
                    else f"  {elapsed / 60:5.1f} min: {total:,} MiB",
                    flush=True,
                )
            time.sleep(SAMPLE_S)
    finally:
        up_home.stop(up, 600)
    names = sorted({n for s in samples for n in s["mib"]})
    lags = [s["lag_s"] for s in samples if s["lag_s"] is not None]
    simulated = max((s["sim"] or 0 for s in samples), default=0)
    logs = home / "logs"
    return {
        "users": users,
        "history": history,
        "speed": speed,
        "trigger": trigger,
        "broker_storage": storage,
        "seconds": round(time.monotonic() - t0),
        "aborted": aborted,
        "simulated_days": round(simulated / 86400, 2),
        "hours_published": None if not samples else _hours(settings, start),
        "peak_total_mib": max((s["total"] for s in samples), default=0),
        "peak_mib": {n: max(s["mib"].get(n, 0) for s in samples) for n in names},
        "end_mib": samples[-1]["mib"] if samples else {},
        "growth_mib_per_sim_day": {n: _round(_growth_per_day(samples, n, catch_up)) for n in names},
        "publication_lag_s": {
            "p50": _quantile(lags, 0.5),
            "max": max(lags) if lags else None,
            "end": lags[-1] if lags else None,
        },
        "logs_mib": round(_size(logs) / 2**20, 1),
        "biggest_log_mib": round(
            max((p.stat().st_size for p in logs.glob("*") if p.is_file()), default=0) / 2**20, 1
        ),
        "home_mib": round(_size(home) / 2**20),
        "broker_disk_mib": round(_size(home / "broker") / 2**20),
        "broker_retention_hours": retention_hours,
        "broker_disk_curve": [
            {"t": s["t"], "sim_h": round((s["sim"] or 0) / 3600, 1), "mib": s["broker_disk_mib"]}
            for s in samples
            if "broker_disk_mib" in s
        ][:: max(1, len(samples) // 360)],
        "memory_curve": [
            {"t": s["t"], "sim_h": round((s["sim"] or 0) / 3600, 1), **s["mib"]}
            for s in samples[:: max(1, len(samples) // 60)]
        ],
        "log": str(log),
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _hours(settings: Settings, start: datetime) -> int:
    last = last_published(settings)
    if last is None:
        return 0
    return int((last - start.replace(minute=0)).total_seconds() // 3600) + 1


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks soak")
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--history", default="3d", help="simulated time replayed")
    ap.add_argument("--speed", type=float, default=48.0)
    ap.add_argument("--tail", type=float, default=600.0, help="seconds sampled after catch-up")
    ap.add_argument("--trigger", default="30s", help="the stream's micro-batch period")
    ap.add_argument(
        "--broker-storage", choices=["memory", "disk"], default="disk", help="MUSIFY_BROKER_STORAGE"
    )
    ap.add_argument(
        "--broker-retention-hours",
        type=float,
        help="MUSIFY_BROKER_RETENTION_HOURS for the disk-backed broker (wall-clock hours)",
    )
    args = ap.parse_args(argv)
    print(
        f"soak: musify up, {args.users:,} users, {args.history} replayed at {args.speed:g}x, "
        f"broker storage {args.broker_storage}"
    )
    r = run(
        args.users,
        args.history,
        args.speed,
        args.tail,
        args.trigger,
        args.broker_storage,
        args.broker_retention_hours,
    )
    print(f"  {r['simulated_days']} simulated days in {r['seconds']} s; aborted: {r['aborted']}")
    print(f"  hours published: {r['hours_published']}; lag {r['publication_lag_s']}")
    print(f"  peak memory of the whole stack: {r['peak_total_mib']:,} MiB (target <= 8,192)")
    for name, mib in r["peak_mib"].items():
        growth = r["growth_mib_per_sim_day"].get(name)
        print(f"    {name:<22} {mib:>7,} MiB peak, growth {growth} MiB per simulated day")
    print(f"  logs {r['logs_mib']} MiB (largest file {r['biggest_log_mib']} MiB)")
    print(f"  broker files at the end: {r['broker_disk_mib']:,} MiB")
    print(f"  saved {save('soak', r)}")


if __name__ == "__main__":
    main(sys.argv[1:])
