"""Stream benchmarks (issue: streaming ingestion).

1. Backlog ingest: about 500,000 events already in Kafka (4 topics x 3 partitions),
   ``musify stream --until-caught-up`` on local[2]: rows/s end to end and excluding
   Spark's start-up, Spark start-up time, peak memory (PSS of the job's process tree).
   Baseline measured in the same run: one Python process consuming the same backlog
   with confluent-kafka and decoding every message with orjson.
2. Freshness under a live generator at about 500 events/s with a 10 s trigger: for
   every event, (commit of its micro-batch into the lake) - (its Kafka timestamp, i.e.
   when it was produced); p50/p99 against the target trigger + 15 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import orjson

from benchmarks.common import measure, median, musify_cmd, save, tree_rss
from musify.broker.local import free_port, running_broker
from musify.events import TOPIC_NAMES


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSIFY_")}
    env["MUSIFY_HOME"] = str(home)
    return env


def _fill(bootstrap: str, home: Path, users: int, days: float) -> int:
    out = subprocess.run(
        musify_cmd(
            "generate",
            "--nusers",
            str(users),
            "--start-time",
            "2024-03-04T00:00:00",
            "--days",
            str(days),
            "--seed",
            "3",
            "--bootstrap-servers",
            bootstrap,
            "--json",
            "-q",
        ),
        env=_env(home),
        check=True,
        capture_output=True,
    )
    return int(sum(orjson.loads(out.stdout)["events"].values()))


def _consume_baseline(bootstrap: str, expected: int) -> float:
    """Messages/s for one Python process: consume every message and decode its JSON."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-baseline",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(t, p, 0) for t in TOPIC_NAMES for p in range(3)])
    n = 0
    t0 = time.perf_counter()
    while n < expected and time.perf_counter() - t0 < 300:
        for m in c.consume(10_000, timeout=1.0):
            if m.error() is None:
                orjson.loads(m.value())
                n += 1
    dt = time.perf_counter() - t0
    c.close()
    return n / dt


def backlog(repeats: int) -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        with running_broker(port, Path(tmp) / "broker") as bootstrap:
            total = _fill(bootstrap, Path(tmp) / "gen", users=48_000, days=1)
            baseline = [_consume_baseline(bootstrap, total) for _ in range(repeats)]
            for i in range(repeats):
                home = Path(tmp) / f"run{i}"
                m = measure(
                    musify_cmd(
                        "stream",
                        "--bootstrap-servers",
                        bootstrap,
                        "--until-caught-up",
                        "--master",
                        "local[2]",
                        "--json",
                    ),
                    env=_env(home),
                )
                s = m.json()
                rows = sum(s["rows"].values()) + s["quarantined"]
                assert rows == total, f"stream landed {rows} of {total} events"
                steady = m.seconds - s["spark_startup_seconds"]
                runs.append(
                    {
                        "events": rows,
                        "wall_seconds": m.seconds,
                        "spark_startup_seconds": s["spark_startup_seconds"],
                        "rows_per_s_end_to_end": rows / m.seconds,
                        "rows_per_s_after_startup": rows / steady,
                        "peak_memory_mb": m.peak_rss / 2**20,
                        "batches": s["batches"],
                    }
                )
    return {
        "runs": runs,
        "events": total,
        "baseline_consume_per_s": median(baseline),
        "median_rows_per_s_after_startup": median([r["rows_per_s_after_startup"] for r in runs]),
        "median_rows_per_s_end_to_end": median([r["rows_per_s_end_to_end"] for r in runs]),
        "median_spark_startup_seconds": median([r["spark_startup_seconds"] for r in runs]),
        "median_peak_memory_mb": median([r["peak_memory_mb"] for r in runs]),
    }


def freshness(seconds: float, trigger: int = 10) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        port = free_port()
        with running_broker(port, Path(tmp) / "broker") as bootstrap:
            stream = subprocess.Popen(
                musify_cmd(
                    "stream",
                    "--bootstrap-servers",
                    bootstrap,
                    "--trigger",
                    f"{trigger}s",
                    "--master",
                    "local[2]",
                ),
                env=_env(home),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            # ~500 events/s: 100k users of Musify's config at 60x simulated speed
            gen = subprocess.Popen(
                musify_cmd(
                    "generate",
                    "--nusers",
                    "100000",
                    "--continuous",
                    "--speed",
                    "60",
                    "--bootstrap-servers",
                    bootstrap,
                    "-q",
                    "--json",
                ),
                env=_env(home),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            peak = 0
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                peak = max(peak, tree_rss(stream.pid))
                time.sleep(0.5)
            gen.send_signal(signal.SIGTERM)
            g_out, _ = gen.communicate(timeout=120)
            produced = orjson.loads(g_out)
            total = sum(produced["events"].values())
            time.sleep(2 * trigger + 5)  # let the stream take the last events in
            stream.send_signal(signal.SIGTERM)
            stream.communicate(timeout=120)
        lake = home / "lake"
        con = duckdb.connect()
        commits = [orjson.loads(p.read_bytes()) for p in (lake / "_commits").glob("*.json")]
        con.execute("create table commits (batch bigint, committed_at timestamptz)")
        con.executemany(
            "insert into commits values (?, ?)",
            [(c["batch_id"], c["committed_at"]) for c in commits],
        )
        parts = " union all ".join(
            f"select filename, kafka_timestamp from read_parquet('{lake}/{t}/**/*.parquet', "
            "filename=true, hive_partitioning=true)"
            for t in TOPIC_NAMES
        )
        row = con.execute(f"""
            with rows as ({parts}),
            lat as (
              select epoch(c.committed_at) - epoch(r.kafka_timestamp::timestamptz) as s
              from rows r join commits c
                on c.batch = cast(regexp_extract(r.filename, 'part-b(\\d+)-', 1) as bigint))
            select count(*), quantile_cont(s, 0.5), quantile_cont(s, 0.99), max(s) from lat
        """).fetchone()
    assert row is not None
    n, p50, p99, mx = row
    return {
        "events_produced": total,
        "events_in_lake": n,
        "events_per_s": total / seconds,
        "trigger_s": trigger,
        "p50_s": p50,
        "p99_s": p99,
        "max_s": mx,
        "target_p99_s": trigger + 15,
        "peak_memory_mb": peak / 2**20,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--live-seconds", type=float, default=120)
    args = ap.parse_args(argv)
    print(f"stream benchmarks (local[2], {os.cpu_count()} cores; median of {args.repeats})")
    b = backlog(args.repeats)
    print(f"  backlog of {b['events']:,} events, musify stream --until-caught-up:")
    print(
        f"    {b['median_rows_per_s_after_startup']:,.0f} rows/s after Spark start-up "
        f"(target >= 50,000), {b['median_rows_per_s_end_to_end']:,.0f} rows/s end to end"
    )
    print(
        f"    baseline, one Python consumer decoding JSON (same run): "
        f"{b['baseline_consume_per_s']:,.0f} msgs/s -> ratio "
        f"x{b['median_rows_per_s_after_startup'] / b['baseline_consume_per_s']:.2f}"
    )
    print(
        f"    Spark start-up {b['median_spark_startup_seconds']:.1f} s, peak memory "
        f"{b['median_peak_memory_mb']:,.0f} MiB (PSS, whole job)"
    )
    f = freshness(args.live_seconds)
    print(
        f"  live generator at {f['events_per_s']:,.0f} events/s, trigger {f['trigger_s']} s "
        f"({f['events_in_lake']:,} of {f['events_produced']:,} events in the lake):"
    )
    print(
        f"    event produced -> in the lake: p50 {f['p50_s']:.1f} s, p99 {f['p99_s']:.1f} s, "
        f"max {f['max_s']:.1f} s (target p99 <= {f['target_p99_s']} s); "
        f"peak memory {f['peak_memory_mb']:,.0f} MiB"
    )
    result = {"backlog": b, "freshness": f}
    save("stream", result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
