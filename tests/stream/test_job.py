"""The stream job end to end: real broker, real Spark, counted exactly once.

Each test produces events with the generator into a local broker, runs the stream and
counts what a plain DuckDB glob over the lake returns.
"""

from __future__ import annotations

import base64
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from musify.broker.local import free_port, running_broker
from musify.events import TOPIC_NAMES
from musify.lake import QUARANTINE, Lake
from musify.lake.read import plan
from musify.settings import Settings
from musify.sim.faults import FaultRates
from musify.stream.status import StatusRecord
from tests.lake.conftest import table_rows, unreferenced_data_files
from tests.stream.streaming import START, lake_counts, produce, stream_once

pytestmark = [pytest.mark.spark, pytest.mark.broker, pytest.mark.slow]


def quarantine_count(lake_root: Path) -> int:
    return int(table_rows(lake_root, QUARANTINE, ("kafka_offset",)).num_rows)


def test_lands_exactly_the_generated_events(
    broker: Any, tmp_path: Path, spark: Any, musify_cache: Path
) -> None:
    bootstrap, _, _ = broker
    home = tmp_path / "home"
    produced = produce(bootstrap, musify_cache)
    summary = stream_once(home, bootstrap)
    assert summary.rows == produced
    assert summary.ingest_seconds is not None and 0 < summary.ingest_seconds <= summary.seconds
    assert lake_counts(home / "lake") == produced
    # partitioned by event time: every planned file of an hour holds that hour's events
    hours = [START + timedelta(hours=h) for h in range(24)]
    planned = plan(Lake(home / "lake"), "page_view_events", hours)
    for hour, paths in planned.files.items():
        for path in paths:
            ts = pq.read_table(path, columns=["ts"]).column("ts")
            assert pc.min(ts).as_py() >= hour and pc.max(ts).as_py() < hour + timedelta(hours=1)
    assert sum(len(p) for p in planned.files.values()) > 0
    # restart from the checkpoint: only new events are read
    more = produce(bootstrap, musify_cache, day=1, seed=2, first_user_id=10_000)
    again = stream_once(home, bootstrap)
    assert again.rows == more
    assert lake_counts(home / "lake") == {t: produced[t] + more[t] for t in TOPIC_NAMES}
    st = orjson.loads((home / "run" / "stream-status.json").read_bytes())
    assert st["lag"] == 0 and sum(st["rows"].values()) > 0
    journal = (home / "logs" / "stream.jsonl").read_bytes().splitlines()
    assert len(journal) >= 2
    # input_rows counts the records the tasks read (the source hands them ranges)
    records = [orjson.loads(line) for line in journal]
    assert sum(r["input_rows"] for r in records) == sum(produced.values()) + sum(more.values())
    assert all(r["input_rows"] == sum(r["rows"].values()) + r["quarantined"] for r in records)


def test_a_disk_backed_broker_killed_between_batches_loses_and_repeats_nothing(
    tmp_path: Path, spark: Any, musify_cache: Path
) -> None:
    """MUSIFY_BROKER_STORAGE=disk: the broker keeps its records and topic ids across a
    kill -9, so the stream continues from its checkpoint (no data-loss alarm) and the
    lake holds every produced event once."""
    from musify.broker.local import broker_status, start_broker, stop_broker

    home = tmp_path / "home"
    broker = Settings(home=tmp_path / "broker-home", broker_port=free_port(), broker_storage="disk")
    info = start_broker(broker)
    try:
        produced = produce(info.bootstrap_servers, musify_cache)
        assert stream_once(home, info.bootstrap_servers).rows == produced
        os.kill(info.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while broker_status(broker).running and time.monotonic() < deadline:
            time.sleep(0.05)
        # A new port: the killed broker's sockets to the stream's clients can hold the old
        # one for a while (FIN_WAIT2), which is not what this test is about.
        broker = replace(broker, broker_port=free_port())
        again = start_broker(broker)
        more = produce(again.bootstrap_servers, musify_cache, day=1, seed=2, first_user_id=10_000)
        assert stream_once(home, again.bootstrap_servers).rows == more
        assert lake_counts(home / "lake") == {t: produced[t] + more[t] for t in TOPIC_NAMES}
    finally:
        stop_broker(broker)


def test_faults_are_quarantined_and_late_events_placed(
    broker: Any, tmp_path: Path, spark: Any, musify_cache: Path
) -> None:
    bootstrap, _, _ = broker
    home = tmp_path / "home"
    manifest = tmp_path / "faults.jsonl"
    rates = FaultRates(duplicate=0.01, late=0.02, reorder=0.01, malformed=0.01)
    produced = produce(bootstrap, musify_cache, users=200, faults=rates, manifest=manifest)
    stream_once(home, bootstrap)
    injected = [orjson.loads(x) for x in manifest.read_bytes().splitlines()]
    malformed = [m for m in injected if m["kind"] == "malformed"]
    assert malformed and any(m["kind"] == "late" for m in injected)
    lake = lake_counts(home / "lake")
    assert quarantine_count(home / "lake") == len(malformed)
    assert sum(lake.values()) + len(malformed) == sum(produced.values()), "nothing lost"
    q = table_rows(home / "lake", QUARANTINE, ("topic", "value", "reason")).to_pylist()
    expected = sorted((m["topic"], base64.b64decode(m["raw"])) for m in malformed)
    assert sorted((r["topic"], bytes(r["value"])) for r in q) == expected, "raw bytes kept"
    assert all(r["reason"] for r in q)
    # late events sit in the partition of their event time, not of their arrival
    lake = Lake(home / "lake")
    late = [m for m in injected if m["kind"] == "late" and m["topic"] == "page_view_events"]
    for m in late[:20]:
        ts = datetime.fromtimestamp(m["ts"] / 1000, UTC)
        hour = ts.replace(minute=0, second=0, microsecond=0)
        paths = plan(lake, "page_view_events", [hour]).files[hour]
        found = pq.ParquetDataset(paths).read(columns=["sessionId", "itemInSession"]).to_pylist()
        assert {"sessionId": m["sessionId"], "itemInSession": m["itemInSession"]} in found


def _musify(home: Path, *args: str, **kw: Any) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSIFY_")}
    env["MUSIFY_HOME"] = str(home)
    return subprocess.Popen(
        [sys.executable, "-m", "musify", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        **kw,
    )


def test_kill_9_at_any_moment_then_restart(broker: Any, tmp_path: Path, musify_cache: Path) -> None:
    """Kill the whole job (driver, JVM, Python workers) mid-flight, three times."""
    bootstrap, _, _ = broker
    home = tmp_path / "home"
    expected = dict.fromkeys(TOPIC_NAMES, 0)
    rng = random.Random(7)
    for round_ in range(3):
        p = _musify(
            home,
            "stream",
            "--bootstrap-servers",
            bootstrap,
            "--trigger",
            "1s",
            "--master",
            "local[2]",
        )
        counts = produce(
            bootstrap,
            musify_cache,
            users=120,
            day=round_,
            seed=round_ + 1,
            first_user_id=1 + 10_000 * round_,
        )
        for t in TOPIC_NAMES:
            expected[t] += counts[t]
        # wait until the job is committing batches, then kill it at a random moment
        status_file = home / "run" / "stream-status.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not status_file.exists():
            time.sleep(0.2)
        time.sleep(rng.uniform(0.0, 3.0))
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
        lake_counts(home / "lake")  # readable and duplicate-free even right after a kill
    p = _musify(
        home,
        "stream",
        "--bootstrap-servers",
        bootstrap,
        "--until-caught-up",
        "--master",
        "local[2]",
    )
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-2000:]
    assert lake_counts(home / "lake") == expected
    # what the killed attempts wrote was removed before their batches ran again
    assert unreferenced_data_files(Lake(home / "lake")) == []


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["sigterm-to-the-job", "ctrl-c-to-the-process-group"],
)
def test_signals_stop_cleanly(
    broker: Any, tmp_path: Path, musify_cache: Path, sig: signal.Signals, group: bool
) -> None:
    bootstrap, _, _ = broker
    home = tmp_path / "home"
    produced = produce(bootstrap, musify_cache, users=100)
    p = _musify(
        home, "stream", "--bootstrap-servers", bootstrap, "--trigger", "1s", "--master", "local[2]"
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and lake_counts(home / "lake") != produced:
        time.sleep(0.5)
    if group:  # a terminal's Ctrl-C reaches every process of the foreground group
        os.killpg(p.pid, sig)
    else:  # a process manager signals the job's own process
        os.kill(p.pid, sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()[-3000:]
    assert b"stopping after the current micro-batch" in err
    assert lake_counts(home / "lake") == produced
    assert not (home / "run" / "stream.pid").exists()


@pytest.mark.parametrize("users_after", [5, 400], ids=["fewer-records", "more-records"])
def test_broker_data_loss_stops_with_a_clear_message(
    tmp_path: Path, spark: Any, musify_cache: Path, users_after: int
) -> None:
    """The restarted broker holds fewer records than the checkpoint expects, or already
    more (then only the topic ids in the checkpoint tell)."""
    from musify.stream import StreamError

    port = free_port()
    home = tmp_path / "home"
    with running_broker(port, tmp_path / "b1") as bootstrap:
        first = produce(bootstrap, musify_cache, users=150)
        stream_once(home, bootstrap)
    with running_broker(port, tmp_path / "b2") as bootstrap:  # a restart: memory is empty
        produce(bootstrap, musify_cache, users=users_after, day=3, first_user_id=50_000)
        with pytest.raises(StreamError) as info:
            stream_once(home, bootstrap)
        msg = str(info.value)
        assert "listen_events" in msg or "page_view_events" in msg
        assert "--reset-on-data-loss" in msg
        assert lake_counts(home / "lake") == first, "nothing skipped or written"
        summary = stream_once(home, bootstrap, reset_on_data_loss=True)
        assert sum(summary.rows.values()) > 0


def lake_coordinates(lake_root: Path, topic: str) -> set[tuple[int, int]]:
    """(partition, offset) of every message of a topic in the lake, quarantine included."""
    found: set[tuple[int, int]] = set()
    got = table_rows(lake_root, topic, ("kafka_partition", "kafka_offset")).to_pylist()
    found.update((r["kafka_partition"], r["kafka_offset"]) for r in got)
    bad = table_rows(lake_root, QUARANTINE, ("topic", "kafka_partition", "kafka_offset"))
    found.update(
        (r["kafka_partition"], r["kafka_offset"]) for r in bad.to_pylist() if r["topic"] == topic
    )
    return found


def test_watermark_covers_every_acknowledged_message(
    broker: Any, tmp_path: Path, spark: Any
) -> None:
    """While a producer keeps writing, every status record's watermark W promises that
    each message the broker acknowledged before W is already in the lake."""
    from confluent_kafka import Producer

    from musify.broker.kafka import ensure_topics
    from musify.stream import StreamOptions, run_stream
    from musify.stream.status import watermark
    from tests.stream.messages import listen

    bootstrap, _, _ = broker
    home = tmp_path / "home"
    ensure_topics(bootstrap, list(TOPIC_NAMES), 3, 1)
    acked: list[tuple[float, int, int]] = []  # (when the client got the ack, partition, offset)
    lock = threading.Lock()
    producing = threading.Event()
    stop = threading.Event()

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        with lock:
            acked.append((time.time(), msg.partition(), msg.offset()))

    def produce_live() -> None:
        quiet = logging.Logger("musify.tests.watermark")
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "logger": quiet})
        i = 0
        while not producing.is_set():
            for _ in range(40):
                i += 1
                value = orjson.dumps(listen(itemInSession=i)) if i % 10 else b"not json"
                producer.produce(
                    "listen_events", value, str(i % 17).encode(), on_delivery=delivered
                )
            producer.poll(0)
            time.sleep(0.05)
        producer.flush(30)

    checks: list[tuple[int, int]] = []  # (messages due, of which missing from the lake)
    marks: list[datetime] = []
    deadline = time.monotonic() + 150

    def check(report: StatusRecord) -> None:
        mark = report.watermark
        if mark is not None:
            assert watermark(Settings(home=home)) == mark  # the stdlib reader agrees
            with lock:
                due = {(p, o) for at, p, o in acked if at < mark.timestamp()}
            missing = due - lake_coordinates(home / "lake", "listen_events")
            checks.append((len(due), len(missing)))
            marks.append(mark)
            assert report.at is not None and mark <= report.at
        if len(checks) >= 4 or time.monotonic() > deadline:
            stop.set()

    producer = threading.Thread(target=produce_live, daemon=True)
    producer.start()
    try:
        run_stream(
            Settings(home=home),
            StreamOptions(bootstrap_servers=bootstrap, trigger_seconds=1, master="local[2]"),
            on_batch=check,
            stop_event=stop,
        )
    finally:
        producing.set()
        producer.join(60)
    assert len(checks) >= 4, f"the watermark advanced in only {len(checks)} batches"
    assert all(missing == 0 for _, missing in checks), checks
    assert checks[-1][0] > checks[0][0] > 0, "the watermark moves forward with the data"
    assert marks == sorted(marks)


def test_spark_home_for_pip_pyspark_hides_the_uncompiled_zip(tmp_path: Path) -> None:
    """Spark's Python processes must import the environment's compiled pyspark, not
    SPARK_HOME/python/lib/pyspark.zip: the home links everything else."""
    import pyspark

    from musify.stream.job import pip_spark_home

    real = Path(pyspark.__file__).resolve().parent
    settings = Settings(home=tmp_path)
    home = pip_spark_home(settings)
    if not (real / "python" / "lib" / "pyspark.zip").is_file():
        assert home is None
        return
    assert home is not None and home.parent == settings.cache_dir
    assert not (home / "python").exists()
    assert (home / "jars").resolve() == real / "jars"
    assert (home / "bin" / "spark-submit").is_file()
    assert pip_spark_home(settings) == home  # kept, not rebuilt
    assert [p.name for p in settings.cache_dir.iterdir()] == ["spark-home"]


def test_warmup_period_then_the_long_one_loses_and_repeats_nothing(
    broker: Any, tmp_path: Path, spark: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """``warmup_trigger_seconds`` runs the first batches at a short period, then the
    query restarts at the long one between batches: every acknowledged message is in
    the lake exactly once, with batches committed on both sides of the switch."""
    from confluent_kafka import Producer

    from musify.broker.kafka import ensure_topics
    from musify.stream import StreamOptions, run_stream
    from tests.stream.messages import listen

    bootstrap, _, _ = broker
    home = tmp_path / "home"
    ensure_topics(bootstrap, list(TOPIC_NAMES), 3, 1)
    producing, stop = threading.Event(), threading.Event()
    acked: list[tuple[int, int]] = []

    def produce_live() -> None:
        quiet = logging.Logger("musify.tests.warmup")
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "logger": quiet})
        i = 0
        while not producing.is_set():
            i += 1
            producer.produce(
                "listen_events",
                orjson.dumps(listen(itemInSession=i)),
                str(i % 17).encode(),
                on_delivery=lambda err, msg: acked.append((msg.partition(), msg.offset())),
            )
            producer.poll(0)
            time.sleep(0.02)
        producer.flush(30)

    phases: list[bool] = []  # per batch: committed after the warm-up ended

    def on_batch(report: StatusRecord) -> None:
        phases.append(any("warm-up over" in r.getMessage() for r in caplog.records))
        if phases.count(True) >= 2:
            stop.set()

    opts = StreamOptions(
        bootstrap_servers=bootstrap,
        trigger_seconds=3,
        warmup_trigger_seconds=1,
        warmup_seconds=4,
        master="local[2]",
    )
    producer = threading.Thread(target=produce_live, daemon=True)
    producer.start()
    deadline = threading.Timer(150, stop.set)
    deadline.start()
    try:
        with caplog.at_level(logging.INFO, logger="musify.stream.job"):
            first = run_stream(Settings(home=home), opts, on_batch=on_batch, stop_event=stop)
    finally:
        deadline.cancel()
        producing.set()
        producer.join(60)
    assert phases.count(False) >= 2 and phases.count(True) >= 2, phases
    assert phases == sorted(phases), "the switch happens once"
    rest = stream_once(home, bootstrap)
    assert first.rows["listen_events"] + rest.rows["listen_events"] == len(acked)
    got = table_rows(home / "lake", "listen_events", ("kafka_partition", "kafka_offset"))
    coords = list(
        zip(
            got.column("kafka_partition").to_pylist(),
            got.column("kafka_offset").to_pylist(),
            strict=True,
        )
    )
    assert sorted(coords) == sorted(acked)


def test_an_idle_trigger_moves_the_watermark_on_without_a_batch(
    broker: Any, tmp_path: Path, spark: Any
) -> None:
    """Nothing new in the broker: Spark's no-data progress (every 10 s) carries the ends
    the source fetched, all read, so the latest status record's watermark moves on
    (``checked_at``) while the journal keeps one line per batch."""
    from confluent_kafka import Producer

    from musify.broker.kafka import ensure_topics
    from musify.stream import StreamOptions, run_stream
    from musify.stream.status import last_record, log_path, parse_watermark
    from tests.stream.messages import listen

    bootstrap, _, _ = broker
    settings = Settings(home=tmp_path / "home")
    ensure_topics(bootstrap, list(TOPIC_NAMES), 3, 1)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(20):
        producer.produce("listen_events", orjson.dumps(listen(itemInSession=i)), str(i).encode())
    producer.flush(30)
    stop = threading.Event()
    advanced: list[StatusRecord] = []

    def watch() -> None:
        deadline = time.monotonic() + 90
        while not stop.is_set() and time.monotonic() < deadline:
            last = last_record(settings)
            if last is not None and last.checked_at is not None:
                advanced.append(last)
                if len(advanced) > 1 and advanced[-1].watermark != advanced[0].watermark:
                    break
            time.sleep(0.2)
        stop.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    summary = run_stream(
        settings,
        StreamOptions(bootstrap_servers=bootstrap, trigger_seconds=1, master="local[2]"),
        stop_event=stop,
    )
    watcher.join(10)
    assert summary.rows["listen_events"] == 20 and summary.batches == 1
    journal = [orjson.loads(x) for x in log_path(settings).read_bytes().splitlines()]
    assert len(journal) == 1, "idle triggers add no line to the journal"
    assert len(advanced) > 1, "the watermark did not move on while the stream was idle"
    batch_mark = parse_watermark(journal[0]["watermark"])
    marks = [a.watermark for a in advanced]
    assert batch_mark is not None and all(m is not None and m > batch_mark for m in marks)
    assert marks == sorted(marks) and marks[-1] != marks[0]  # type: ignore[type-var]
    assert advanced[-1].batch_id == 0 and advanced[-1].rows == journal[0]["rows"]
