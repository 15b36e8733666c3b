"""Live-section benchmarks (issue: live).

1. Refresh cost against history: one ``Live.view`` (what the dashboard's live section
   computes every ``MUSIFY_LIVE_REFRESH_SECONDS``) over a lake holding 1 day and 30 days
   of 5,000 users (Streamify's config). Each lake is built as the stream and the daily
   maintenance leave it: the last day as micro-batches of 2 minutes (the default
   trigger: 720 commits), the days before it one commit per hour (fewer snapshots than
   the stream makes, but those expire: the default retention is 24 h), and every
   simulated day ``musify lake maintain``'s compaction of closed hours and snapshot
   expiry (the retention scaled to the build's own clock). The last 20 minutes are held
   back. Timed in one process, the two lakes alternately: refreshes with nothing new
   committed (the common case: a refresh every 5 s, a micro-batch every 2 min) and
   refreshes right after one more 2-minute micro-batch; medians, ratio 30 d / 1 d. Also
   the cost of parsing a table's metadata by the snapshots it retains.
2. Event produced -> visible in a live tile: a broker, ``musify stream`` (10 s trigger,
   then the default 2 minutes), the generator live at about 500 events/s, ``musify
   dashboard`` and Chromium watching the live section's marker (the listen table's
   snapshot the section was drawn from, polled every 250 ms). An event is visible once
   the page shows a snapshot at or after the one that committed it; per listen event,
   visible - produced (its Kafka timestamp): p50/p99 (target p99 <= 30 s at 10 s), split
   into produced -> committed and committed -> visible. Steady state: events produced
   after the stream's first commit; those produced during Spark's start-up and first
   (slower) micro-batch are reported apart as warm-up.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import median, musify_cmd, save
from benchmarks.fixtures import DEFAULT_END, streamify_config
from musify.events import TOPIC_NAMES
from musify.lake import Lake
from musify.lake.writer import write_events
from musify.settings import Settings

USERS = 5000
#: Musify's default snapshot retention (MUSIFY_LAKE_SNAPSHOT_RETENTION_HOURS).
RETENTION = timedelta(hours=Settings().lake_snapshot_retention_hours)
MICRO_BATCH = timedelta(minutes=2)


# --- 1. refresh cost -------------------------------------------------------------------


def _events_by_slice(users: int, days: int, end: datetime) -> dict[datetime, dict[str, list[Any]]]:
    """The generator's events of ``days`` up to ``end``, per hour (and per 2-minute slice
    in the last day), keyed by the slice's start."""
    from musify.sim import GenerateOptions, MemorySink, plan_run, run

    plan = plan_run(
        GenerateOptions(
            config=streamify_config(),
            n_users=users,
            start=end - timedelta(days=days),
            end=end,
            seed=7,
            workers=1,
        )
    )
    sink = MemorySink()
    run(plan, sink)
    last_day = (end - timedelta(days=1)).timestamp() * 1000
    out: dict[datetime, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for topic in TOPIC_NAMES:
        for line in sink.lines[topic]:
            e = orjson.loads(line)
            ts = e["ts"] // 1000
            step = 120 if e["ts"] >= last_day else 3600
            out[datetime.fromtimestamp(ts - ts % step, UTC)][topic].append(e)
        sink.lines[topic] = []
    return dict(sorted(out.items()))


def build_history(root: Path, users: int, days: int, end: datetime) -> tuple[Lake, list[Any]]:
    """A lake with ``days`` of history committed as the stream and the daily maintenance
    leave it; returns it with the micro-batches of the hour after ``end`` - 1 h held back
    (the last 20 minutes' slices, committed one by one while timing)."""
    from musify.lake.maintenance import TableReport, compact, expire_snapshots

    slices = _events_by_slice(users, days, end)
    held = [(k, v) for k, v in slices.items() if k >= end - timedelta(minutes=20)]
    lake = Lake(root)
    offsets = dict.fromkeys(TOPIC_NAMES, 0)
    day_ended: list[float] = []  # wall time at which each simulated day was committed
    t0 = time.monotonic()
    for batch_id, (start, events) in enumerate(slices.items()):
        if start >= end - timedelta(minutes=20):
            break
        write_events(lake, events, batch_id, first_offset=dict(offsets))
        for topic, evs in events.items():
            offsets[topic] += len(evs)
        nxt = start + timedelta(hours=1)
        if nxt.hour == 0 and start.minute == 0:
            # the daily maintenance: compaction of closed hours, snapshots older than the
            # retention expired (the retention scaled to this build's clock)
            day_ended.append(time.time())
            kept = math.ceil(RETENTION / timedelta(days=1))
            cutoff = day_ended[-kept - 1] if len(day_ended) > kept else None
            for name in lake.tables:
                report = TableReport()
                compact(lake, name, nxt - timedelta(hours=2), report)
                if cutoff is not None:
                    expire_snapshots(lake, name, datetime.fromtimestamp(cutoff, UTC), report)
    print(
        f"    built {days} d of history in {time.monotonic() - t0:.0f} s "
        f"({len(slices) - len(held)} commits)",
        flush=True,
    )
    state = {"offsets": offsets, "batch_id": len(slices) - len(held)}
    return lake, [state, held]


def _metadata_parse(lake: Lake) -> dict[str, float]:
    """Seconds to parse the listen table's metadata with its snapshots multiplied to what
    a retention keeps at a 2-minute trigger: 24 h, 48 h (just before the daily expiry),
    7 days."""
    from pyiceberg.table.metadata import TableMetadataUtil

    table = lake.tables.table("listen_events", refresh=True)
    raw = orjson.loads(table.metadata.model_dump_json())
    snaps = raw["snapshots"]
    out: dict[str, float] = {}
    for label, count in (("720", 720), ("1440", 1440), ("5040", 5040)):
        copy = dict(raw)
        copy["snapshots"] = [
            {**snaps[i % len(snaps)], "snapshot-id": 10_000_000 + i} for i in range(count)
        ]
        copy["snapshot-log"] = []
        body = orjson.dumps(copy).decode()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            TableMetadataUtil.parse_raw(body)
            times.append(time.perf_counter() - t0)
        out[label] = median(times)
    return out


def refresh_cost(users: int, days: tuple[int, ...], repeats: int) -> dict[str, Any]:
    from musify.live.view import Live

    end = DEFAULT_END
    with tempfile.TemporaryDirectory(prefix="musify-live-") as tmp:
        lakes = {d: build_history(Path(tmp) / f"lake-{d}d", users, d, end) for d in days}
        lives = {d: Live(lake) for d, (lake, _) in lakes.items()}
        quiet: dict[int, list[float]] = {d: [] for d in days}
        after: dict[int, list[float]] = {d: [] for d in days}
        files_read: dict[int, list[int]] = {d: [] for d in days}
        for d in days:  # first view: reads the last hours' files once
            t0 = time.perf_counter()
            lives[d].view(at=end)
            print(f"    {d} d: first view {time.perf_counter() - t0:.2f} s", flush=True)
        for i in range(repeats):
            for d in days:
                lake, (state, held) = lakes[d]
                live = lives[d]
                for _ in range(3):
                    t0 = time.perf_counter()
                    live.view(at=end)
                    quiet[d].append(time.perf_counter() - t0)
                if i < len(held):
                    _, events = held[i]
                    write_events(
                        lake, events, state["batch_id"], first_offset=dict(state["offsets"])
                    )
                    for topic, evs in events.items():
                        state["offsets"][topic] += len(evs)
                    state["batch_id"] += 1
                    before = live.rows.files_read
                    t0 = time.perf_counter()
                    live.view(at=end)
                    after[d].append(time.perf_counter() - t0)
                    files_read[d].append(live.rows.files_read - before)
        parse = _metadata_parse(lakes[days[-1]][0])
    result: dict[str, Any] = {"users": users, "days": list(days), "repeats": repeats}
    for d in days:
        result[f"{d}d"] = {
            "quiet_median_ms": median(quiet[d]) * 1000,
            "quiet_max_ms": max(quiet[d]) * 1000,
            "after_commit_median_ms": median(after[d]) * 1000 if after[d] else None,
            "after_commit_max_ms": max(after[d]) * 1000 if after[d] else None,
            "files_read_per_commit_median": median(files_read[d]) if files_read[d] else None,
        }
    first, last = result[f"{days[0]}d"], result[f"{days[-1]}d"]
    result["ratio_quiet"] = last["quiet_median_ms"] / first["quiet_median_ms"]
    if first["after_commit_median_ms"] and last["after_commit_median_ms"]:
        result["ratio_after_commit"] = (
            last["after_commit_median_ms"] / first["after_commit_median_ms"]
        )
    result["metadata_parse_ms_by_snapshots"] = {k: v * 1000 for k, v in parse.items()}
    return result


# --- 2. produced -> visible --------------------------------------------------------------


def _pcts(values: list[float]) -> tuple[float, float, float] | None:
    if not values:
        return None
    values = sorted(values)
    return (
        values[len(values) // 2],
        values[min(len(values) - 1, int(0.99 * len(values)))],
        values[-1],
    )


def _visible_latencies(lake_root: Path, seen: list[tuple[float, str]]) -> dict[str, Any]:
    """Per listen event: (first page observation showing a snapshot at or after the one
    that committed it) - (its Kafka timestamp), and its two parts: committed - produced
    (the stream) and visible - committed (the dashboard). p50/p99/max in s."""
    import pyarrow.parquet as pq

    table = Lake(lake_root).tables.table("listen_events", refresh=True)
    snaps = list(table.snapshots())
    seq = {int(s.snapshot_id): int(s.sequence_number or 0) for s in snaps}
    by_batch = {
        int(s.summary["musify.batch-id"]): (int(s.sequence_number or 0), s.timestamp_ms / 1000)
        for s in snaps
        if s.summary and s.summary.get("musify.batch-id")
    }
    shown = sorted((t, seq[int(snap)]) for t, snap in seen if snap and int(snap) in seq)
    total: list[float] = []
    stream: list[float] = []
    page: list[float] = []
    warm_up: list[float] = []
    if not by_batch:
        return {"listens_measured": 0}
    # Steady state: events produced once the stream had committed its first micro-batch
    # (a table's creation is a snapshot too, before any batch). Those produced before it
    # waited for Spark's start-up and first batch: reported apart, as warm-up.
    first = min(t for _, t in by_batch.values())
    for task in table.scan().plan_files():
        m = re.search(r"/batch-(\d+)/", task.file.file_path)
        if m is None or int(m.group(1)) not in by_batch:
            continue
        need, committed = by_batch[int(m.group(1))]
        at = next((t for t, s in shown if s >= need), None)
        if at is None:
            continue  # committed after the page was last looked at
        stamps = pq.read_table(task.file.file_path, columns=["kafka_timestamp"]).column(0)
        produced = [p.timestamp() for p in stamps.to_pylist()]
        warm_up.extend(at - p for p in produced if p < first)
        produced = [p for p in produced if p >= first]
        total.extend(at - p for p in produced)
        stream.extend(committed - p for p in produced)
        page.extend([at - committed] * len(produced))
    out: dict[str, Any] = {"listens_measured": len(total), "warm_up_listens": len(warm_up)}
    for name, values in (
        ("", total),
        ("commit_", stream),
        ("page_", page),
        ("warm_up_", warm_up),
    ):
        pcts = _pcts(values)
        if pcts is not None:
            out[f"{name}p50_s"], out[f"{name}p99_s"], out[f"{name}max_s"] = pcts
    # the micro-batches' cadence: seconds between consecutive commits
    times = sorted(t for _, t in by_batch.values())
    gaps = _pcts([b - a for a, b in itertools.pairwise(times)])
    if gaps is not None:
        out["commit_gap_p50_s"], out["commit_gap_p99_s"], out["commit_gap_max_s"] = gaps
    return out


def visible(trigger_s: int, seconds: float, users: int, speed: float) -> dict[str, Any]:
    from musify.broker.local import free_port, running_broker
    from musify.dashboard import browser
    from musify.dashboard.server import wait_ready

    with tempfile.TemporaryDirectory(prefix="musify-live-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUSIFY_")}
        env["MUSIFY_HOME"] = str(home)
        port = free_port()
        with running_broker(port, Path(tmp) / "broker") as bootstrap:
            stream = subprocess.Popen(
                musify_cmd(
                    "stream", "--bootstrap-servers", bootstrap, "--trigger", f"{trigger_s}s",
                    "--master", "local[2]",
                ),
                # accelerated simulated time runs ahead of the clock: not bad timestamps
                env={**env, "MUSIFY_MAX_EVENT_FUTURE_SECONDS": str(365 * 86400)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            dash_port = free_port()
            dash = subprocess.Popen(
                musify_cmd("dashboard", "--port", str(dash_port)),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            gen = None
            try:
                wait_ready("127.0.0.1", dash_port, dash, timeout_s=120)
                gen = subprocess.Popen(
                    musify_cmd(
                        "generate", "--nusers", str(users), "--continuous", "--speed",
                        f"{speed:g}", "--bootstrap-servers", bootstrap, "-q", "--json",
                    ),
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                seen: list[tuple[float, str]] = []
                with browser.chromium() as chromium:
                    page = chromium.new_page(viewport=browser.VIEWPORT)
                    page.goto(f"http://127.0.0.1:{dash_port}/", wait_until="commit")
                    t_end = time.monotonic() + seconds
                    last = None
                    while time.monotonic() < t_end:
                        snap = browser.live_marker(page).get("snapshot") or ""
                        if snap != last:
                            seen.append((time.time(), snap))
                            last = snap
                        page.wait_for_timeout(250)
                    gen.send_signal(signal.SIGTERM)
                    g_out, _ = gen.communicate(timeout=120)
                    produced = orjson.loads(g_out)
                    # keep watching until the stream took the last events in
                    t_end = time.monotonic() + trigger_s + 30
                    while time.monotonic() < t_end:
                        snap = browser.live_marker(page).get("snapshot") or ""
                        if snap != last:
                            seen.append((time.time(), snap))
                            last = snap
                        page.wait_for_timeout(250)
            finally:
                for proc in (gen, stream):
                    if proc is not None and proc.poll() is None:
                        proc.send_signal(signal.SIGTERM)
                        try:
                            proc.wait(timeout=120)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                if dash.poll() is None:
                    os.killpg(dash.pid, signal.SIGINT)
                    try:
                        dash.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        os.killpg(dash.pid, signal.SIGKILL)
        latencies = _visible_latencies(home / "lake", seen)
        shutil.rmtree(home, ignore_errors=True)
    return {
        "trigger_s": trigger_s,
        "seconds": seconds,
        "generator_users": users,
        "generator_speed": speed,
        "events_produced": sum(produced["events"].values()),
        "events_per_s": sum(produced["events"].values()) / seconds,
        "page_changes": len(seen),
        **latencies,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", choices=("refresh", "visible"))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--users", type=int, default=USERS)
    ap.add_argument("--live-users", type=int, default=100_000)
    ap.add_argument("--live-speed", type=float, default=80)
    ap.add_argument("--fast-seconds", type=float, default=180)
    ap.add_argument("--slow-seconds", type=float, default=600)
    ap.add_argument(
        "--triggers", type=int, nargs="+", default=[10, 120], help="stream triggers, in s"
    )
    args = ap.parse_args(argv)
    print(f"live benchmarks ({os.cpu_count()} cores)", flush=True)
    result: dict[str, Any] = {}
    if args.only in (None, "refresh"):
        r = result["refresh"] = refresh_cost(args.users, (1, 30), args.repeats)
        for d in r["days"]:
            x = r[f"{d}d"]
            print(
                f"  refresh, {d:>2} d x {r['users']:,} users of history: "
                f"{x['quiet_median_ms']:.0f} ms with nothing new (max {x['quiet_max_ms']:.0f}), "
                f"{x['after_commit_median_ms']:.0f} ms after a 2-min micro-batch "
                f"(max {x['after_commit_max_ms']:.0f}; {x['files_read_per_commit_median']:g} "
                "files read)"
            )
        ratio_after = r.get("ratio_after_commit")
        print(
            f"  ratio 30 d / 1 d: x{r['ratio_quiet']:.2f} quiet"
            + (f", x{ratio_after:.2f} after a commit" if ratio_after else "")
            + " (target <= 300 ms, flat)"
        )
        parse = r["metadata_parse_ms_by_snapshots"]
        print(
            "  parsing a table's metadata with 720 / 1,440 / 5,040 snapshots: "
            + " / ".join(f"{v:.0f}" for v in parse.values())
            + " ms"
        )
    if args.only in (None, "visible"):
        runs = {10: args.fast_seconds, 120: args.slow_seconds}
        for trigger in args.triggers:
            v = result[f"visible_{trigger}s"] = visible(
                trigger, runs.get(trigger, args.fast_seconds), args.live_users, args.live_speed
            )
            if not v["listens_measured"]:
                print(f"  trigger {trigger} s: no listen was seen on the page", flush=True)
                continue
            print(
                f"  produced -> visible in the live section, trigger {trigger} s, "
                f"{v['events_per_s']:,.0f} events/s: p50 {v['p50_s']:.1f} s, "
                f"p99 {v['p99_s']:.1f} s, max {v['max_s']:.1f} s "
                f"({v['listens_measured']:,} listens, {v['page_changes']} page changes)\n"
                f"    of which produced -> committed p50 {v['commit_p50_s']:.1f} s, "
                f"p99 {v['commit_p99_s']:.1f} s; committed -> visible p50 "
                f"{v['page_p50_s']:.1f} s, p99 {v['page_p99_s']:.1f} s; a commit every "
                f"{v['commit_gap_p50_s']:.1f} s (p99 {v['commit_gap_p99_s']:.1f} s)"
                + (
                    f"\n    before the first commit (Spark's start-up): {v['warm_up_listens']:,} "
                    f"listens, p50 {v['warm_up_p50_s']:.1f} s, max {v['warm_up_max_s']:.1f} s"
                    if v["warm_up_listens"]
                    else ""
                ),
                flush=True,
            )
    print(f"saved {save('live', result)}")
    return result


if __name__ == "__main__":
    main()
