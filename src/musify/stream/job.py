"""The streaming job: Kafka → Spark Structured Streaming → the exactly-once lake.

One code path whatever the source: the built-in ``musify_kafka`` Python data source
(confluent-kafka; works where Spark's Kafka connector jar cannot be installed) or
Spark's native ``kafka`` format. Both produce the native format's columns. Each
micro-batch is parsed, split and written to a private staging folder by Spark's Python
workers in one ``mapInArrow`` job (``stage.py``, ``parse.py``), and committed into the
lake by ``musify.lake.commit``: a batch is in the lake completely and once, also when
the job is killed at any moment and restarted.

After every micro-batch the job logs one structured line (rows per topic, quarantined
rows, consumer lag, batch duration, freshness) and updates the status ``musify status``
shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from musify.errors import MusifyError, UsageError
from musify.events import TOPIC_NAMES, TOPICS
from musify.lake import QUARANTINE, Lake, LakeError
from musify.lake.commit import Committer, data_prefix
from musify.settings import Settings
from musify.stream import guard, status

if TYPE_CHECKING:
    from pyspark.sql.streaming.query import StreamingQuery

    from musify.stream.kafka_source import SourceOptions

log = logging.getLogger(__name__)

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


#: ``musify stream``'s micro-batch period when MUSIFY_STREAM_TRIGGER is empty.
DEFAULT_TRIGGER = "2m"


def parse_trigger(text: str, option: str = "--trigger") -> float:
    """'2m', '30s', '10 seconds', '500ms' → seconds (``option`` names it in errors)."""
    m = _TRIGGER.match(text.lower())
    if not m:
        raise UsageError(f"{option} {text!r}: expected a duration such as 2m, 30s or 500ms")
    seconds = float(m.group(1)) * _UNIT[m.group(2) or "s"]
    if seconds <= 0:
        raise UsageError(f"{option} must be positive")
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
    #: A shorter period for the stream's first ``warmup_seconds`` (None: none), so the
    #: first data and the first changes show sooner while the long-run period keeps
    #: the lake's snapshot count down. Ignored with ``until_caught_up``.
    warmup_trigger_seconds: float | None = None
    warmup_seconds: float = 120.0
    #: Extra Spark settings, e.g. for a cluster.
    spark_conf: dict[str, str] = field(default_factory=dict)


_SPARK_HOME_MARKER = ".musify-pyspark"
#: The SPARK_HOME build_spark set in this process, if any.
_SPARK_HOME_SET: str | None = None


def pip_spark_home(settings: Settings) -> Path | None:
    """A SPARK_HOME for a pip-installed pyspark whose Python processes import pyspark
    from the virtual environment, or None when there is nothing to gain.

    Spark puts ``SPARK_HOME/python/lib/pyspark.zip`` first on its Python processes'
    path, and pip's pyspark ships that zip without bytecode: every Python process
    Spark starts (a daemon and a planner per data source step, the stream reader, the
    task workers) compiles the pyspark modules it imports from source, about 0.4 s of
    CPU each, most of it on the cold micro-batch's critical path. The same pyspark is
    installed in the environment, compiled; this home links every entry of the
    package except ``python``, so the zip is not found and the environment's copy is.
    """
    import pyspark

    real = Path(pyspark.__file__).resolve().parent
    if not (real / "python" / "lib" / "pyspark.zip").is_file() or not (real / "jars").is_dir():
        return None
    home = settings.cache_dir / "spark-home"
    marker = home / _SPARK_HOME_MARKER
    if marker.is_file() and marker.read_text() == str(real):
        return home
    settings.ensure_dirs()
    building = Path(tempfile.mkdtemp(prefix=".spark-home-", dir=settings.cache_dir))
    try:
        for entry in real.iterdir():
            if entry.name not in ("python", "__pycache__"):
                (building / entry.name).symlink_to(entry)
        (building / _SPARK_HOME_MARKER).write_text(str(real))
        shutil.rmtree(home, ignore_errors=True)
        try:
            building.replace(home)
        except OSError:  # another job built it meanwhile
            if not (marker.is_file() and marker.read_text() == str(real)):
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return home


def build_spark(opts: StreamOptions, settings: Settings, app_name: str = "musify-stream") -> Any:
    """A SparkSession bound to loopback, in UTC, quiet."""
    from musify.stream.java import ensure_java

    ensure_java(settings)
    host = settings.bind_host
    os.environ.setdefault("SPARK_LOCAL_IP", host)
    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers must import musify
    # pyspark from pip: see pip_spark_home. A SPARK_HOME of the user's is kept; one this
    # process set for another MUSIFY_HOME is replaced (that home may be gone).
    global _SPARK_HOME_SET
    if os.environ.get("SPARK_HOME", _SPARK_HOME_SET) == _SPARK_HOME_SET:
        home = pip_spark_home(settings)
        if home is not None:
            _SPARK_HOME_SET = os.environ["SPARK_HOME"] = str(home)
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName(app_name)
        .master(opts.master)
        .config("spark.driver.bindAddress", host)
        .config("spark.driver.host", host)
        .config("spark.ui.enabled", "false")
        # the console progress bar would interleave with the per-batch log lines
        .config("spark.ui.showConsoleProgress", "false")
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


def _source(opts: StreamOptions) -> tuple[dict[str, str], SourceOptions | None]:
    """The source's options and, for ``musify_kafka``, those options parsed: that
    source returns offset ranges, which the stage's tasks read with them
    (``musify.stream.stage``)."""
    if opts.source not in SOURCES:
        raise UsageError(f"unknown Kafka source {opts.source!r} (choose {' or '.join(SOURCES)})")
    options = {
        "kafka.bootstrap.servers": opts.bootstrap_servers,
        "subscribe": ",".join(TOPIC_NAMES),
        "startingOffsets": "earliest",
        "failOnDataLoss": "false" if opts.reset_on_data_loss else "true",
    }
    if opts.max_offsets_per_trigger:
        options["maxOffsetsPerTrigger"] = str(opts.max_offsets_per_trigger)
    if opts.source != "musify_kafka":
        return options, None
    from musify.stream.kafka_source import parse_options

    options["output"] = "ranges"
    return options, parse_options(options)


def _read_stream(spark: Any, opts: StreamOptions, options: dict[str, str]) -> Any:
    if opts.source == "musify_kafka":
        from musify.stream.kafka_source import register

        register(spark)
    return spark.readStream.format(opts.source).options(**options).load()


@dataclass(frozen=True)
class _Committed:
    """What the writer knows of a batch it committed; the recorder adds Spark's
    figures and the watermarks to make its status record."""

    batch_id: int
    rows: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    duration_ms: int = 0
    newest_event: datetime | None = None
    unknown_fields: dict[str, int] = field(default_factory=dict)
    commit_ms: int = 0
    replayed: bool = False
    #: Records the tasks read (Spark's numInputRows counts ranges with musify_kafka).
    input_rows: int = 0


class _BatchWriter:
    """The foreachBatch function: write the files with Spark, commit them into the
    lake's tables (``musify.lake.commit``)."""

    def __init__(
        self,
        lake: Lake,
        settings: Settings,
        committer: Committer,
        source: SourceOptions | None = None,
    ) -> None:
        self.lake = lake
        self.settings = settings
        self.committer = committer
        #: The musify_kafka source's options: its batches are offset ranges to read.
        self.source = source
        self.reports: dict[int, _Committed] = {}
        self.newest: datetime | None = None
        self.max_future = timedelta(seconds=settings.max_event_future_seconds)
        # Partition → (newest event committed, when), carried over a restart so the
        # event-time watermark does not start again from nothing.
        last = status.last_record(settings)
        self.marks = {} if last is None else dict(last.event_marks)
        self.retention = timedelta(hours=settings.lake_snapshot_retention_hours)
        self.next_expiry = 0.0  # monotonic time of the next snapshot expiry

    def event_watermark(self, now: datetime) -> datetime | None:
        return status.event_watermark_of(self.marks, now)

    def __call__(self, df: Any, batch_id: int) -> None:
        t0 = time.monotonic()
        pending = self.committer.pending(batch_id)
        if not pending:
            # Already in every table (the job died between our commits and Spark's):
            # the replayed batch has the same offsets, so there is nothing to do.
            self.reports[batch_id] = _Committed(batch_id=batch_id, replayed=True)
            return
        from musify.stream.stage import stage_batch

        for name in pending:  # files an interrupted attempt of this batch left
            self.lake.storage.remove_prefix(data_prefix(name, batch_id))
        skip = frozenset(self.lake.tables) - set(pending)
        staged = stage_batch(
            df, self.lake, batch_id, datetime.now(UTC), self.max_future, skip, TOPICS, self.source
        )
        rows, newest = staged.rows, staged.newest
        if newest is not None and (self.newest is None or newest > self.newest):
            self.newest = newest
        t_commit = time.monotonic()
        self.committer.commit(batch_id, staged.tables)
        commit_ms = int((time.monotonic() - t_commit) * 1000)
        now = datetime.now(UTC)
        for (topic, part), mark in staged.marks.items():
            if topic == status.EVENT_TIME_TOPIC:
                before = self.marks.get(part)
                self.marks[part] = (max(mark, before[0]) if before else mark, now)
        if staged.unknown_fields:
            log_unknown(staged.unknown_fields)
        if time.monotonic() >= self.next_expiry:
            self.expire_snapshots(now)
        self.reports[batch_id] = _Committed(
            batch_id=batch_id,
            rows={t: rows.get(t, 0) for t in TOPIC_NAMES},
            quarantined=rows.get(QUARANTINE, 0),
            duration_ms=int((time.monotonic() - t0) * 1000),
            newest_event=newest,
            unknown_fields=dict(staged.unknown_fields),
            commit_ms=commit_ms,
            input_rows=staged.input_rows,
        )

    def expire_snapshots(self, now: datetime) -> None:
        """Expire snapshots past the retention, hourly: every commit rewrites a table's
        metadata with all its snapshots, so their number is what a commit costs (the
        daily maintenance expires them too, and compacts)."""
        from musify.lake.maintenance import TableReport, expire_snapshots

        for name in self.lake.tables:
            expire_snapshots(self.lake, name, now - self.retention, TableReport())
        self.next_expiry = time.monotonic() + EXPIRY_INTERVAL_S


#: How often the stream expires its tables' old snapshots.
EXPIRY_INTERVAL_S = 3600.0


def checkpoint_last_batch(checkpoint: str) -> int:
    """The newest batch Spark's checkpoint has committed (-1 for a new checkpoint)."""
    from musify.lake.storage import open_storage

    keys = open_storage(checkpoint).list("commits", suffix="")
    ids = [int(name) for k in keys if (name := k.rsplit("/", 1)[-1]).isdigit()]
    return max(ids, default=-1)


def describe_batch(rep: status.StatusRecord) -> str:
    """One human line for a micro-batch (the log record carries the whole report)."""
    if rep.replayed:
        return f"batch {rep.batch_id}: replayed, already in every table"
    rows = sum(rep.rows.values())
    parts = [f"batch {rep.batch_id}: {rows:,} rows in {rep.duration_ms / 1000:.1f} s"]
    if rep.quarantined:
        parts.append(f"{rep.quarantined:,} quarantined")
    if rep.lag is not None:
        parts.append(f"lag {rep.lag:,}")
    if rep.freshness_s is not None:
        parts.append(f"newest event {rep.freshness_s:g} s old")
    return ", ".join(parts)


def log_unknown(counts: dict[str, int]) -> None:
    """Say once per batch which unknown fields arrived (kept in the lake's ``extra``)."""
    listed = ", ".join(f"{name} ({n:,})" for name, n in sorted(counts.items()))
    log.warning(
        "events carry fields the schema does not know, kept in the lake's extra column: %s",
        listed,
        extra={"unknown_fields": counts},
    )


#: Offsets keys that carry metadata, not topics (see musify.stream.kafka_source).
_META = "$"
_FETCHED_AT = "$fetched_at"


def _source_offsets(progress: dict[str, Any], which: str) -> dict[str, Any] | None:
    """A source offset (``endOffset``, ``latestOffset``) of a progress report as a dict."""
    try:
        value = progress["sources"][0].get(which)
        if isinstance(value, str):
            value = orjson.loads(value)
    except (KeyError, IndexError, TypeError, AttributeError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _positions(offsets: dict[str, Any]) -> dict[tuple[str, int], int]:
    return {
        (topic, int(part)): int(off)
        for topic, parts in offsets.items()
        if not topic.startswith(_META)
        for part, off in parts.items()
    }


def _lag(progress: dict[str, Any]) -> int | None:
    """Messages in Kafka the query has not read yet, from its progress report."""
    end, latest = _source_offsets(progress, "endOffset"), _source_offsets(progress, "latestOffset")
    if end is None or latest is None:
        return None
    try:
        ends = _positions(end)
        return sum(max(0, off - ends.get(tp, 0)) for tp, off in _positions(latest).items())
    except (AttributeError, TypeError, ValueError):
        return None


def _caught_up_at(progress: dict[str, Any]) -> datetime | None:
    """When the broker was asked for the ends this batch read up to, if it read up to
    all of them: every message acknowledged before that instant is in this batch or an
    earlier one. None when the batch stopped short of some partition's end (a read
    limit, an availableNow target), when the source could not confirm an end, or for a
    batch replayed after a restart (its progress carries no latest offsets).

    ``musify_kafka`` reports the time it fetched the ends (``$fetched_at``), only when
    every end was confirmed by a fetch. Spark's ``kafka`` source reports none; there the
    trigger's start, which precedes its offset requests, stands in for it.
    """
    end, latest = _source_offsets(progress, "endOffset"), _source_offsets(progress, "latestOffset")
    if end is None or latest is None:
        return None
    try:
        if _positions(end) != _positions(latest):
            return None
        if any(k.startswith(_META) for k in latest):
            stamp = latest.get(_FETCHED_AT)
        else:
            stamp = progress.get("timestamp")
        if not isinstance(stamp, str):
            return None
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (AttributeError, TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@contextlib.contextmanager
def _stop_signals(flag: list[bool]) -> Iterator[None]:
    """SIGINT/SIGTERM ask for a stop after the running micro-batch."""

    def handle(signum: int, _: object) -> None:
        if flag[0]:  # a second signal: stop now
            raise KeyboardInterrupt
        flag[0] = True
        log.info(
            "%s received, stopping after the current micro-batch (again to stop now)",
            signal.Signals(signum).name,
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


OnBatch = Callable[[status.StatusRecord], None]


@dataclass(frozen=True)
class StreamSummary:
    """What one run of the job did (``musify stream --json`` prints it)."""

    batches: int
    rows: dict[str, int]  # committed events per topic
    quarantined: int
    unknown_fields: dict[str, int]  # "topic.field" → events that carried it
    seconds: float
    #: From the query's start (source registration, planning) until the last batch was
    #: committed and recorded: the ingest itself, without Spark's start-up
    #: (``spark_startup_seconds``) or its shutdown. None without a batch.
    ingest_seconds: float | None
    spark_startup_seconds: float
    lake: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Recorder:
    """Turns each committed micro-batch's progress into its status record and log
    line, and keeps the run's totals (across restarts of the query)."""

    def __init__(
        self, settings: Settings, lake: Lake, writer: _BatchWriter, on_batch: OnBatch | None
    ) -> None:
        self.settings, self.lake, self.writer, self.on_batch = settings, lake, writer, on_batch
        self.seen = -1  # the newest batch recorded
        # Restarts begin without a watermark: only a caught-up batch of this run sets it.
        self.watermark: datetime | None = None
        self.totals: dict[str, int] = dict.fromkeys([*TOPIC_NAMES, "_quarantine"], 0)
        self.unknown: dict[str, int] = {}  # "topic.field" → events that carried it
        self.batches = 0
        self.last_commit: float | None = None  # when the newest batch was recorded
        self.last_record: status.StatusRecord | None = None

    def drain(self, query: StreamingQuery) -> None:
        writer = self.writer
        for prog in query.recentProgress:
            bid = int(prog.get("batchId", -1))
            if bid > self.seen and bid not in writer.reports and not prog.get("numInputRows"):
                self._idle(prog)
                continue
            if bid <= self.seen or bid not in writer.reports:
                continue
            self.seen = bid
            done = writer.reports.pop(bid)
            caught_up = None if done.replayed else _caught_up_at(prog)
            if caught_up is not None and (self.watermark is None or caught_up > self.watermark):
                self.watermark = caught_up
            now = datetime.now(UTC)
            freshness = None
            if writer.newest is not None:
                # never negative: an event up to max_future ahead is allowed
                freshness = round(max(0.0, (now - writer.newest).total_seconds()), 1)
            rec = status.StatusRecord(
                batch_id=bid,
                at=now,
                epoch=now.timestamp(),
                rows=done.rows,
                quarantined=done.quarantined,
                input_rows=done.input_rows,
                lag=_lag(prog),
                duration_ms=int(prog.get("batchDuration", done.duration_ms)),
                commit_ms=done.commit_ms,
                newest_event=done.newest_event,
                freshness_s=freshness,
                replayed=done.replayed,
                watermark=self.watermark,
                event_watermark=writer.event_watermark(now),
                event_marks=dict(sorted(writer.marks.items())),
                unknown_fields=done.unknown_fields,
            )
            self.last_record = rec
            self._publish(status.record(self.settings, rec))
            log.info(describe_batch(rec), extra={"batch": rec.to_json_dict()})
            for k, v in rec.rows.items():
                self.totals[k] += v
            for k, v in rec.unknown_fields.items():
                self.unknown[k] = self.unknown.get(k, 0) + v
            self.totals["_quarantine"] += rec.quarantined
            self.batches += 1
            self.last_commit = time.monotonic()
            if self.on_batch:
                self.on_batch(rec)

    def _idle(self, prog: dict[str, Any]) -> None:
        """Spark's progress of a trigger that found no new messages (every
        ``spark.sql.streaming.noDataProgressEventInterval``): the broker's ends were
        all read at that instant, so the watermark moves on without a batch, and the
        hourly DAG and the live section move on through quiet periods."""
        caught_up = _caught_up_at(prog)
        last = self.last_record
        if caught_up is None or last is None:
            return
        if self.watermark is not None and caught_up <= self.watermark:
            return
        self.watermark = caught_up
        line = status.advance(self.settings, last, caught_up, datetime.now(UTC))
        self._publish(line)

    def _publish(self, line: bytes) -> None:
        if self.lake.remote:  # for orchestrators on other machines
            self.lake.storage.write_atomic(status.LAKE_STATUS_KEY, line)


def run_stream(
    settings: Settings,
    opts: StreamOptions,
    on_batch: OnBatch | None = None,
    stop_event: threading.Event | None = None,
) -> StreamSummary:
    """Run the stream until caught up (``until_caught_up``) or until stopped.

    ``on_batch`` gets each micro-batch's status record once it is committed and
    recorded. Setting ``stop_event`` stops the job after the current micro-batch, as
    SIGTERM does.
    """
    options, source_opts = _source(opts)
    settings.ensure_dirs()
    lake = Lake.from_settings(settings)
    if lake.has_legacy_layout():
        raise LakeError(
            f"the lake {lake.url} holds Parquet files of an earlier Musify (its _commits "
            "folder): convert it once with `musify lake migrate`, then start the stream"
        )
    # Before anything else, Spark above all: one stream per checkpoint, a broker that
    # answers (one line each, instead of pages of Java).
    checkpoint_lock = guard.claim(settings, opts.bootstrap_servers)
    checkpoint = settings.checkpoint_location
    try:
        lake.storage.check_writable()
        # Creates the tables on the first start; refuses a checkpoint that is not the
        # lake's, and fences off any other stream still writing it.
        committer = Committer(lake.tables, checkpoint)
        committer.claim(checkpoint_last_batch(checkpoint))
    except BaseException:
        checkpoint_lock.release()
        raise

    from pyspark.errors import StreamingQueryException
    from pyspark.sql import SparkSession

    own_session = SparkSession.getActiveSession() is None
    t_spark = time.monotonic()
    spark = build_spark(opts, settings)
    spark_startup = round(time.monotonic() - t_spark, 2)
    log.info(
        "Spark ready after %.1f s (master %s, source %s)",
        spark_startup,
        opts.master,
        opts.source,
        extra={"spark_startup_s": spark_startup, "master": opts.master, "source": opts.source},
    )
    writer = _BatchWriter(lake, settings, committer, source_opts)
    rec = _Recorder(settings, lake, writer, on_batch)
    stop = [False]
    started = time.monotonic()
    status.write_pid(settings)
    try:
        source = _read_stream(spark, opts, options)

        def start(period: float | None) -> StreamingQuery:
            w = source.writeStream.foreachBatch(writer).option("checkpointLocation", checkpoint)
            if period is None:
                w = w.trigger(availableNow=True)
            else:
                w = w.trigger(processingTime=f"{int(period * 1000)} milliseconds")
                # An idle trigger's progress moves the watermark on (_Recorder._idle):
                # at most every 10 s (Spark's default), every trigger when shorter.
                idle_ms = int(min(period, 10.0) * 1000)
                spark.conf.set("spark.sql.streaming.noDataProgressEventInterval", str(idle_ms))
            query: StreamingQuery = w.start()
            return query

        warming = (
            not opts.until_caught_up
            and opts.warmup_trigger_seconds is not None
            and opts.warmup_trigger_seconds < opts.trigger_seconds
        )
        with _stop_signals(stop):
            if opts.until_caught_up:
                query = start(None)
            else:
                query = start(opts.warmup_trigger_seconds if warming else opts.trigger_seconds)
            warm_until = time.monotonic() + opts.warmup_seconds
            stop_after: int | None = None  # the last batch recorded when a stop was asked
            try:
                while True:
                    active = query.isActive
                    rec.drain(query)
                    if not active:
                        break
                    stopping = stop[0] or (stop_event is not None and stop_event.is_set())
                    if stopping and stop_after is None:
                        stop_after = rec.seen
                    idle = not query.status.get("isTriggerActive", False)
                    if warming and not stopping and idle and time.monotonic() >= warm_until:
                        # A running query's period is fixed: restart it between batches
                        # from the same checkpoint (nothing is lost or done twice).
                        warming = False
                        query.stop()
                        rec.drain(query)
                        query = start(opts.trigger_seconds)
                        log.info("warm-up over: a micro-batch every %g s", opts.trigger_seconds)
                        continue
                    # Stop between batches, or as soon as the running one is committed:
                    # under a steady load the next batch starts at once, and stopping it
                    # early is safe (it is replayed from Spark's offset log).
                    if stop_after is not None and (rec.seen > stop_after or idle):
                        query.stop()
                    # pyspark's stub says int; the method takes seconds as a float
                    query.awaitTermination(0.5)  # type: ignore[arg-type]
            except KeyboardInterrupt:
                query.stop()
            except StreamingQueryException as exc:
                raise StreamError(f"the stream stopped: {_failure_message(exc)}") from None
            finally:
                if query.isActive:  # e.g. on_batch raised: never leave the query running
                    with contextlib.suppress(Exception):
                        query.stop()
            failure = query.exception()
            if failure is not None:
                raise StreamError(f"the stream stopped: {_failure_message(failure)}")
    finally:
        status.clear_pid(settings)
        checkpoint_lock.release()
        if own_session:  # a session the caller already had is theirs to stop
            with contextlib.suppress(Exception):
                spark.stop()
    totals, last_commit = rec.totals, rec.last_commit
    return StreamSummary(
        batches=rec.batches,
        rows={t: totals[t] for t in TOPIC_NAMES},
        quarantined=totals["_quarantine"],
        unknown_fields=rec.unknown,
        seconds=round(time.monotonic() - started, 2),
        ingest_seconds=None if last_commit is None else round(last_commit - started, 2),
        spark_startup_seconds=spark_startup,
        lake=lake.url,
    )
