"""The streaming job: Kafka → Spark Structured Streaming → the exactly-once lake.

One code path whatever the source: the built-in ``musify_kafka`` Python data source
(confluent-kafka; works where Spark's Kafka connector jar cannot be installed) or
Spark's native ``kafka`` format. Both produce the native format's columns. Each
micro-batch is parsed and split (``parse.py``), written by Spark to a private staging
folder, and committed into the lake by ``musify.lake.commit``: a batch is in the lake
completely and once, also when the job is killed at any moment and restarted.

After every micro-batch the job logs one structured line (rows per topic, quarantined
rows, consumer lag, batch duration, freshness) and updates the status ``musify status``
shows.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from musify.errors import MusifyError, UsageError
from musify.events import TOPIC_NAMES
from musify.lake import Lake, commit_batch, committed_batches
from musify.settings import Settings
from musify.stream import status

SOURCES = ("musify_kafka", "kafka")
_TRIGGER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|seconds?|m|min|minutes?|h|hours?)?\s*$")
_UNIT = {
    "ms": 0.001,
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
}


class StreamError(MusifyError):
    """The streaming query failed (e.g. the broker lost data); the message says why."""


def parse_trigger(text: str) -> float:
    """'2m', '30s', '10 seconds', '500ms' → seconds."""
    m = _TRIGGER.match(text.lower())
    if not m:
        raise UsageError(f"--trigger {text!r}: expected a duration such as 2m, 30s or 500ms")
    seconds = float(m.group(1)) * _UNIT[m.group(2) or "s"]
    if seconds <= 0:
        raise UsageError("--trigger must be positive")
    return seconds


@dataclass(frozen=True)
class StreamOptions:
    bootstrap_servers: str
    trigger_seconds: float = 120.0
    until_caught_up: bool = False
    master: str = "local[*]"
    source: str = "musify_kafka"
    reset_on_data_loss: bool = False
    max_offsets_per_trigger: int | None = None
    #: Extra Spark settings, e.g. for a cluster.
    spark_conf: dict[str, str] = field(default_factory=dict)


def _java_check() -> None:
    if os.environ.get("JAVA_HOME") or shutil.which("java"):
        return
    raise UsageError(
        "the stream job needs Java 17 or newer (Spark runs on the JVM): install it, "
        "e.g. `apt-get install openjdk-17-jre-headless`, or set JAVA_HOME"
    )


def build_spark(opts: StreamOptions, settings: Settings, app_name: str = "musify-stream") -> Any:
    """A SparkSession bound to loopback, in UTC, quiet."""
    _java_check()
    host = settings.bind_host
    os.environ.setdefault("SPARK_LOCAL_IP", host)
    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers must import musify
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName(app_name)
        .master(opts.master)
        .config("spark.driver.bindAddress", host)
        .config("spark.driver.host", host)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.shuffle.partitions", "4")
        .config(
            "spark.sql.streaming.stateStore.providerClass",
            "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider",
        )
        .config("spark.python.worker.reuse", "true")
        .config("spark.log.level", "WARN")
    )
    for k, v in opts.spark_conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _read_stream(spark: Any, opts: StreamOptions) -> Any:
    if opts.source not in SOURCES:
        raise UsageError(f"unknown Kafka source {opts.source!r} (choose {' or '.join(SOURCES)})")
    if opts.source == "musify_kafka":
        from musify.stream.kafka_source import register

        register(spark)
    reader = (
        spark.readStream.format(opts.source)
        .option("kafka.bootstrap.servers", opts.bootstrap_servers)
        .option("subscribe", ",".join(TOPIC_NAMES))
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", "false" if opts.reset_on_data_loss else "true")
    )
    if opts.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(opts.max_offsets_per_trigger))
    return reader.load()


def _staged_stats(staged: dict[str, Path]) -> tuple[dict[str, int], datetime | None]:
    """Rows per target from the Parquet footers; drop empty files; newest event time."""
    import pyarrow.parquet as pq

    rows: dict[str, int] = {}
    newest: datetime | None = None
    for target, root in staged.items():
        n = 0
        for f in root.rglob("*.parquet") if root.is_dir() else ():
            md = pq.read_metadata(f)
            if md.num_rows == 0:
                f.unlink()
                continue
            n += md.num_rows
            if target == "_quarantine":
                continue
            idx = md.schema.names.index("ts") if "ts" in md.schema.names else -1
            for rg in range(md.num_row_groups) if idx >= 0 else ():
                st = md.row_group(rg).column(idx).statistics
                if st is not None and st.has_min_max:
                    mx = st.max
                    if isinstance(mx, datetime):
                        mx = mx if mx.tzinfo else mx.replace(tzinfo=UTC)
                        newest = mx if newest is None or mx > newest else newest
        rows[target] = n
    return rows, newest


class _BatchWriter:
    """The foreachBatch function: stage with Spark, commit into the lake."""

    def __init__(self, lake: Lake, staging: Path) -> None:
        self.lake = lake
        self.staging = staging
        self.reports: dict[int, status.BatchReport] = {}
        self.newest: datetime | None = None
        self._committed = committed_batches(lake)

    def __call__(self, df: Any, batch_id: int) -> None:
        t0 = time.monotonic()
        if batch_id in self._committed:
            # Already in the lake (the job died between our commit and Spark's): the
            # replayed batch has the same offsets, so there is nothing to do.
            self.reports[batch_id] = status.BatchReport(batch_id=batch_id, replayed=True)
            return
        from pyspark import StorageLevel

        from musify.stream.parse import parse_batch, split_batch

        stage = self.staging / f"{batch_id:012d}"
        shutil.rmtree(stage, ignore_errors=True)
        parsed = parse_batch(df).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            goods, quarantine = split_batch(parsed)
            staged: dict[str, Path] = {}
            for name, good in goods.items():
                staged[name] = stage / name
                good.write.mode("overwrite").partitionBy("date", "hour").parquet(str(staged[name]))
            staged["_quarantine"] = stage / "_quarantine"
            quarantine.write.mode("overwrite").partitionBy("topic", "date").parquet(
                str(staged["_quarantine"])
            )
        finally:
            parsed.unpersist()
        rows, newest = _staged_stats(staged)
        if newest is not None and (self.newest is None or newest > self.newest):
            self.newest = newest
        now = datetime.now(UTC)
        commit_batch(
            self.lake,
            batch_id,
            staged,
            rows,
            meta={
                "committed_at": now.isoformat(),
                "newest_event": newest.isoformat() if newest else None,
            },
        )
        shutil.rmtree(stage, ignore_errors=True)
        self._committed.add(batch_id)
        self.reports[batch_id] = status.BatchReport(
            batch_id=batch_id,
            rows={t: rows.get(t, 0) for t in TOPIC_NAMES},
            quarantined=rows.get("_quarantine", 0),
            duration_ms=int((time.monotonic() - t0) * 1000),
            newest_event=newest.isoformat() if newest else None,
        )


def _lag(progress: dict[str, Any]) -> int | None:
    """Messages in Kafka the query has not read yet, from its progress report."""
    try:
        src = progress["sources"][0]
        end, latest = src.get("endOffset"), src.get("latestOffset")
        if isinstance(end, str):
            end = orjson.loads(end)
        if isinstance(latest, str):
            latest = orjson.loads(latest)
        if not isinstance(end, dict) or not isinstance(latest, dict):
            return None
        total = 0
        for topic, parts in latest.items():
            for part, off in parts.items():
                total += max(0, int(off) - int(end.get(topic, {}).get(part, 0)))
        return total
    except (KeyError, IndexError, TypeError, ValueError, orjson.JSONDecodeError):
        return None


@contextlib.contextmanager
def _stop_signals(flag: list[bool]) -> Iterator[None]:
    """SIGINT/SIGTERM ask for a stop after the running micro-batch."""

    def handle(signum: int, _: object) -> None:
        if flag[0]:  # a second signal: stop now
            raise KeyboardInterrupt
        flag[0] = True
        print(
            f"musify stream: {signal.Signals(signum).name} received, stopping after "
            "the current micro-batch (again to stop now)",
            file=sys.stderr,
            flush=True,
        )

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for s in old:
            signal.signal(s, handle)
    except ValueError:  # not the main thread: no signal handling
        old = {}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


_OUR_ERROR = re.compile(r"musify\.[\w.]+(?:Error|Exception): (.+)")


def _failure_message(exc: BaseException) -> str:
    """The useful line of a failed query: our own error's message if it is one."""
    text = str(getattr(exc, "desc", None) or exc)
    m = _OUR_ERROR.search(text)
    if m:
        return m.group(1).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else repr(exc)


OnBatch = Callable[[dict[str, Any]], None]


def run_stream(
    settings: Settings, opts: StreamOptions, on_batch: OnBatch | None = None
) -> dict[str, Any]:
    """Run the stream until caught up (``until_caught_up``) or until stopped."""
    settings.ensure_dirs()
    lake_root = settings.lake_root
    if "://" in lake_root:
        raise UsageError(f"lake {lake_root}: only local lakes are supported by this version")
    lake = Lake(Path(lake_root))
    lake.root.mkdir(parents=True, exist_ok=True)
    checkpoint = settings.checkpoints_dir / "stream"
    staging = settings.home / "staging" / "stream"
    staging.mkdir(parents=True, exist_ok=True)

    from pyspark.errors import StreamingQueryException
    from pyspark.sql import SparkSession

    own_session = SparkSession.getActiveSession() is None
    t_spark = time.monotonic()
    spark = build_spark(opts, settings)
    spark_startup = round(time.monotonic() - t_spark, 2)
    print(
        orjson.dumps(
            {
                "event": "spark_ready",
                "spark_startup_s": spark_startup,
                "master": opts.master,
                "source": opts.source,
            }
        ).decode(),
        file=sys.stderr,
        flush=True,
    )
    writer = _BatchWriter(lake, staging)
    stop = [False]
    totals: dict[str, int] = dict.fromkeys([*TOPIC_NAMES, "_quarantine"], 0)
    batches = 0
    started = time.monotonic()
    status.write_pid(settings)
    try:
        source = _read_stream(spark, opts)
        w = source.writeStream.foreachBatch(writer).option("checkpointLocation", str(checkpoint))
        if opts.until_caught_up:
            w = w.trigger(availableNow=True)
        else:
            w = w.trigger(processingTime=f"{int(opts.trigger_seconds * 1000)} milliseconds")
        with _stop_signals(stop):
            query = w.start()
            seen = -1
            try:
                while True:
                    active = query.isActive
                    for prog in query.recentProgress:
                        bid = int(prog.get("batchId", -1))
                        if bid <= seen or bid not in writer.reports:
                            continue
                        seen = bid
                        rep = writer.reports.pop(bid)
                        rep.input_rows = int(prog.get("numInputRows", 0))
                        rep.lag = _lag(prog)
                        rep.duration_ms = int(prog.get("batchDuration", rep.duration_ms))
                        now = datetime.now(UTC)
                        rep.at = now.isoformat()
                        if writer.newest is not None:
                            rep.freshness_s = round((now - writer.newest).total_seconds(), 1)
                        line = status.record(settings, rep, {"epoch": time.time()})
                        print(line.decode(), file=sys.stderr, flush=True)
                        for k, v in rep.rows.items():
                            totals[k] += v
                        totals["_quarantine"] += rep.quarantined
                        batches += 1
                        if on_batch:
                            on_batch(rep.as_dict())
                    if not active:
                        break
                    if stop[0] and not query.status.get("isTriggerActive", False):
                        query.stop()
                    query.awaitTermination(0.5)
            except KeyboardInterrupt:
                query.stop()
            except StreamingQueryException as exc:
                raise StreamError(f"the stream stopped: {_failure_message(exc)}") from None
            failure = query.exception()
            if failure is not None:
                raise StreamError(f"the stream stopped: {_failure_message(failure)}")
    finally:
        status.clear_pid(settings)
        if own_session:  # a session the caller already had is theirs to stop
            with contextlib.suppress(Exception):
                spark.stop()
    return {
        "batches": batches,
        "rows": {t: totals[t] for t in TOPIC_NAMES},
        "quarantined": totals["_quarantine"],
        "seconds": round(time.monotonic() - started, 2),
        "spark_startup_seconds": spark_startup,
        "lake": str(lake.root),
    }
