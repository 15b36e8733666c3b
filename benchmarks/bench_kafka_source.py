"""The ``musify_kafka`` Spark source: how fast it drains a Kafka backlog into Parquet.

A local broker (Tansu, on a free port) gets a backlog of 500,000 JSON messages of about
400 bytes (eventsim-like listen events) over 4 topics x 3 partitions; then a Spark
``local[2]`` query with ``trigger(availableNow=True)`` reads all of it into Parquet. Each
Spark run is a child process (its JVM ends with it): rows/s over the query's own time
(start() to termination; the JVM's start-up is reported apart), and the peak memory of
the child's whole process tree.

The same run with a variant of the source whose ``read()`` yields Python tuples instead
of Arrow record batches shows what the record batches buy; so does an in-process
comparison on one partition, without Spark: consuming only, consuming + building record
batches, consuming + tuples + Spark's own tuple-to-Arrow conversion.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import REPO, measure, median, save

TOPICS = ("listen_events", "page_view_events", "auth_events", "status_change_events")
PARTITIONS = 3
MESSAGES = 500_000


# -- the backlog ----------------------------------------------------------------------


def _event(rng: random.Random, i: int) -> bytes:
    """An eventsim-like listen event, about 400 bytes of JSON."""
    return orjson.dumps(
        {
            "artist": f"Artist {rng.randrange(50_000)}",
            "song": f"Song title number {rng.randrange(500_000)}",
            "duration": round(rng.uniform(60, 600), 5),
            "ts": 1_710_000_000_000 + i * 37,
            "sessionId": rng.randrange(100_000),
            "auth": "Logged In",
            "level": rng.choice(("free", "paid")),
            "itemInSession": rng.randrange(200),
            "city": "Springfield",
            "zip": f"{rng.randrange(100_000):05d}",
            "state": "IL",
            "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            "lon": round(rng.uniform(-120, -70), 6),
            "lat": round(rng.uniform(25, 48), 6),
            "userId": rng.randrange(1, 1_000_000),
            "lastName": "Johnson",
            "firstName": "Alexandra",
            "gender": rng.choice("MF"),
            "registration": 1_700_000_000_000 + rng.randrange(10**9),
        }
    )


def produce_backlog(bootstrap: str, messages: int) -> dict[str, Any]:
    from confluent_kafka import Producer

    from musify.broker.kafka import PRODUCER_DEFAULTS, ensure_topics

    ensure_topics(bootstrap, TOPICS, PARTITIONS, 1)
    rng = random.Random(7)
    values = [_event(rng, i) for i in range(messages)]
    producer = Producer({**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap})
    began = time.perf_counter()
    for i, value in enumerate(values):
        key = str(rng.randrange(1, 1_000_000)).encode()
        while True:
            try:
                producer.produce(TOPICS[i % len(TOPICS)], value, key)
                break
            except BufferError:
                producer.poll(0.05)
        if i & 1023 == 0:
            producer.poll(0)
    left = producer.flush(120)
    seconds = time.perf_counter() - began
    if left:
        raise RuntimeError(f"{left} messages were not delivered")
    return {
        "messages": messages,
        "value_bytes_avg": sum(map(len, values)) / len(values),
        "produce_seconds": seconds,
    }


# -- one Spark run (child process) -------------------------------------------------------


def _tuple_source() -> Any:
    """The source with a ``read()`` that yields tuples (Spark converts them to Arrow)."""
    from musify.stream.kafka_source import (
        SCHEMA,
        KafkaInputPartition,
        KafkaSource,
        KafkaStreamReader,
        consume_range,
        parse_options,
    )

    class TupleReader(KafkaStreamReader):
        def read(self, partition: Any) -> Iterator[Any]:
            assert isinstance(partition, KafkaInputPartition)
            for chunk in consume_range(self.opts, partition):
                for m in chunk:
                    kind, millis = m.timestamp()
                    yield (
                        m.key(),
                        m.value(),
                        partition.topic,
                        partition.partition,
                        m.offset(),
                        datetime.fromtimestamp(millis / 1000, UTC),
                        kind - 1,
                    )

    class TupleSource(KafkaSource):
        @classmethod
        def name(cls) -> str:
            return "musify_kafka_tuples"

        def streamReader(self, schema: Any) -> Any:
            assert schema == SCHEMA
            return TupleReader(parse_options(self.options))

    return TupleSource


def child(bootstrap: str, out: str, mode: str) -> dict[str, Any]:
    """Run one availableNow query into Parquet; returns its figures (printed as JSON)."""
    began = time.perf_counter()
    from musify.settings import Settings
    from musify.stream.job import StreamOptions, build_spark
    from musify.stream.kafka_source import register

    # The stream job's own session settings (loopback, UTC, micros), so the figures
    # are the job's.
    spark = build_spark(
        StreamOptions(bootstrap_servers=bootstrap, master="local[2]"),
        Settings(),
        app_name="bench-kafka-source",
    )
    spark.sparkContext.setLogLevel("ERROR")
    fmt = "musify_kafka"
    if mode == "tuples":
        source = _tuple_source()
        spark.dataSource.register(source)
        fmt = source.name()
    else:
        register(spark)
    ready = time.perf_counter()
    figures: dict[str, Any] = {"mode": mode, "startup_seconds": ready - began}
    # The first query pays for the JVM's and the Python workers' warm-up; a second one
    # over the same backlog (new checkpoint) shows the steady state.
    for run in ("cold", "warm"):
        began = time.perf_counter()
        query = (
            spark.readStream.format(fmt)
            .option("kafka.bootstrap.servers", bootstrap)
            .option("subscribe", ",".join(TOPICS))
            .load()
            .writeStream.format("parquet")
            .option("path", f"{out}/{run}/data")
            .option("checkpointLocation", f"{out}/{run}/checkpoint")
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        seconds = time.perf_counter() - began
        every = list(query.recentProgress)
        progress = [p for p in every if p["numInputRows"]]
        rows = spark.read.parquet(f"{out}/{run}/data").count()
        figures[run] = {
            "rows": rows,
            "input_rows": sum(p["numInputRows"] for p in progress),
            "batches": len(progress),
            "query_seconds": seconds,
            "rows_per_s": rows / seconds,
            # Where the query's time went, per micro-batch (Spark's own accounting, ms).
            "duration_ms": [dict(p["durationMs"]) for p in every],
        }
    spark.stop()
    return figures


def spark_run(bootstrap: str, mode: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "benchmarks.bench_kafka_source", "--child", mode]
        cmd += ["--bootstrap", bootstrap, "--out", tmp]
        pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        m = measure(cmd, env={"PYTHONPATH": pythonpath, "SPARK_LOCAL_IP": "127.0.0.1"})
    figures: dict[str, Any] = orjson.loads(m.stdout.strip().splitlines()[-1])
    figures["wall_seconds"] = m.seconds
    figures["peak_rss_mb"] = m.peak_rss / 2**20
    return figures


# -- in-process: record batches vs tuples, without Spark -------------------------------------


def in_process(bootstrap: str, repeats: int) -> dict[str, Any]:
    from pyspark.sql.streaming.datasource import ReadAllAvailable
    from pyspark.sql.worker.plan_data_source_read import records_to_arrow_batches

    from musify.stream.kafka_source import (
        BATCH_ROWS,
        SCHEMA,
        KafkaInputPartition,
        KafkaSource,
        KafkaStreamReader,
        consume_range,
        parse_options,
        to_record_batch,
    )

    opts = parse_options({"kafka.bootstrap.servers": bootstrap, "subscribe": TOPICS[0]})
    reader = KafkaStreamReader(opts)
    end = reader.latestOffset({}, ReadAllAvailable())[TOPICS[0]]["0"]
    reader.stop()
    part = KafkaInputPartition(TOPICS[0], 0, 0, end)
    source = KafkaSource({"kafka.bootstrap.servers": bootstrap, "subscribe": TOPICS[0]})

    def consume_only() -> int:
        return sum(len(chunk) for chunk in consume_range(opts, part))

    def arrow() -> int:
        n, rows = 0, []
        for chunk in consume_range(opts, part):
            rows.extend(chunk)
            if len(rows) >= BATCH_ROWS:
                n += to_record_batch(part.topic, part.partition, rows).num_rows
                rows = []
        return n + (to_record_batch(part.topic, part.partition, rows).num_rows if rows else 0)

    def tuples() -> int:
        def gen() -> Iterator[tuple[Any, ...]]:
            for chunk in consume_range(opts, part):
                for m in chunk:
                    kind, millis = m.timestamp()
                    yield (
                        m.key(),
                        m.value(),
                        part.topic,
                        part.partition,
                        m.offset(),
                        datetime.fromtimestamp(millis / 1000, UTC),
                        kind - 1,
                    )

        # Spark's own conversion, with its default batch size (arrow.maxRecordsPerBatch).
        return sum(b.num_rows for b in records_to_arrow_batches(gen(), 10_000, SCHEMA, source))

    result: dict[str, Any] = {"partition_rows": end}
    for name, fn in (("consume_only", consume_only), ("arrow", arrow), ("tuples", tuples)):
        fn()  # warm-up: pyarrow imports pandas on its first conversion of Python objects
        speeds = []
        for _ in range(repeats):
            began = time.perf_counter()
            n = fn()
            speeds.append(n / (time.perf_counter() - began))
        result[f"{name}_rows_per_s"] = median(speeds)
    return result


# -- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=2, help="Spark runs per variant")
    ap.add_argument("--messages", type=int, default=MESSAGES)
    ap.add_argument("--no-tuples", action="store_true", help="skip the tuple variant's Spark run")
    ap.add_argument("--child", choices=("arrow", "tuples"), help=argparse.SUPPRESS)
    ap.add_argument("--bootstrap", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        figures = child(args.bootstrap, args.out, args.child)
        sys.stdout.write(orjson.dumps(figures).decode() + "\n")
        return figures

    from musify.broker.local import free_port, running_broker

    print(
        f"musify_kafka source benchmark: {args.messages:,} messages, {len(TOPICS)} topics x "
        f"{PARTITIONS} partitions, local[2], availableNow into Parquet "
        f"({os.cpu_count()} cores; median of {args.repeats})"
    )
    with tempfile.TemporaryDirectory() as home, running_broker(free_port(), Path(home)) as bs:
        backlog = produce_backlog(bs, args.messages)
        print(
            f"  backlog: {backlog['messages']:,} messages of {backlog['value_bytes_avg']:.0f} B "
            f"produced in {backlog['produce_seconds']:.1f} s"
        )
        variants = ["arrow"] if args.no_tuples else ["arrow", "tuples"]
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        for _ in range(args.repeats):
            for variant in variants:
                run = spark_run(bs, variant)
                for phase in ("cold", "warm"):
                    if run[phase]["rows"] != args.messages:
                        raise RuntimeError(
                            f"{variant} ({phase}): read {run[phase]['rows']} rows, "
                            f"not {args.messages}"
                        )
                runs[variant].append(run)
        local = in_process(bs, repeats=3)
    result: dict[str, Any] = {"backlog": backlog, "in_process": local}
    for variant, vruns in runs.items():
        result[variant] = {
            "runs": vruns,
            "median_startup_seconds": median([r["startup_seconds"] for r in vruns]),
            "median_peak_rss_mb": median([r["peak_rss_mb"] for r in vruns]),
            "batches": vruns[0]["cold"]["batches"],
        }
        for phase in ("cold", "warm"):
            result[variant][phase] = {
                "median_rows_per_s": median([r[phase]["rows_per_s"] for r in vruns]),
                "median_query_seconds": median([r[phase]["query_seconds"] for r in vruns]),
            }
    save("kafka_source", result)
    for variant in variants:
        r = result[variant]
        cold, warm = r["cold"], r["warm"]
        print(
            f"  Spark, read() yields {'record batches' if variant == 'arrow' else 'tuples'}: "
            f"{cold['median_rows_per_s']:,.0f} rows/s on a fresh session "
            f"({cold['median_query_seconds']:.1f} s), {warm['median_rows_per_s']:,.0f} rows/s "
            f"warm ({warm['median_query_seconds']:.1f} s); {r['batches']} micro-batch(es); "
            f"session start {r['median_startup_seconds']:.1f} s; peak memory "
            f"{r['median_peak_rss_mb']:,.0f} MiB, all processes"
        )
    if "tuples" in result:
        for phase in ("cold", "warm"):
            ratio = (
                result["arrow"][phase]["median_rows_per_s"]
                / result["tuples"][phase]["median_rows_per_s"]
            )
            print(f"    record batches vs tuples ({phase}): x{ratio:.2f}")
    print(
        f"  in-process, one partition ({local['partition_rows']:,} rows), no Spark: consume "
        f"{local['consume_only_rows_per_s']:,.0f} rows/s; + record batches "
        f"{local['arrow_rows_per_s']:,.0f} rows/s; + tuples and Spark's conversion "
        f"{local['tuples_rows_per_s']:,.0f} rows/s"
    )
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
