"""The ``musify_kafka`` source: options, planning, and reading from a real local broker,
alone and through Spark Structured Streaming (availableNow runs into Parquet)."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

from musify.broker.kafka import ensure_topics
from musify.broker.local import free_port, running_broker
from musify.errors import UsageError
from musify.stream import kafka_source as ks
from musify.stream.kafka_source import (
    ARROW_SCHEMA,
    SCHEMA,
    KafkaDataLossError,
    KafkaInputGroup,
    KafkaInputPartition,
    KafkaSource,
    KafkaStreamReader,
    fair_limit,
    pack_ranges,
    parse_options,
    split_range,
    to_offsets,
)

_QUIET = logging.Logger("musify.tests.kafka_source")  # librdkafka lines are noise here
_QUIET.addHandler(logging.NullHandler())

Produced = dict[tuple[str, int, int], tuple[bytes | None, bytes]]


# -- helpers ---------------------------------------------------------------------------


def value_of(tag: str, i: int) -> bytes:
    """Binary values, not valid UTF-8, of varying length: byte-identity is checked."""
    digest = hashlib.sha256(f"{tag}-{i}".encode()).digest()
    return b"\xff\x00" + digest * (1 + i % 5)


def produce(
    bootstrap: str,
    topics: list[str],
    n: int,
    tag: str,
    produced: Produced | None = None,
    **conf: Any,
) -> Produced:
    """``n`` keyed messages per topic (every 7th without a key), batched like KafkaSink
    (so the broker stores multi-record batches); returns where each one landed."""
    out: Produced = {} if produced is None else produced

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        out[(msg.topic(), msg.partition(), msg.offset())] = (msg.key(), msg.value())

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "logger": _QUIET, **conf})
    for topic in topics:
        for i in range(n):
            key = None if i % 7 == 0 else f"user-{i % 40}".encode()
            producer.produce(topic, value_of(f"{tag}-{topic}", i), key, on_delivery=delivered)
    assert producer.flush(30) == 0
    return out


def plain(offsets: dict[str, Any]) -> dict[str, Any]:
    """Offsets without their metadata keys ($topic_ids, $fetched_at)."""
    return {k: v for k, v in offsets.items() if not k.startswith("$")}


def reader(bootstrap: str, topics: str, **options: str) -> KafkaStreamReader:
    source = KafkaSource({"kafka.bootstrap.servers": bootstrap, "subscribe": topics, **options})
    stream_reader = source.streamReader(
        ks.RANGES_SCHEMA if options.get("output") == "ranges" else SCHEMA
    )
    assert isinstance(stream_reader, KafkaStreamReader)
    return stream_reader


def read_all(r: KafkaStreamReader, start: dict[str, Any], end: dict[str, Any]) -> list[Any]:
    rows: list[Any] = []
    for part in r.partitions(start, end):
        for batch in r.read(part):
            assert batch.schema.equals(ARROW_SCHEMA)
            rows.extend(batch.to_pylist())
    return rows


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One broker for the module (separate from the one the data-loss test restarts)."""
    with running_broker(free_port(), tmp_path_factory.mktemp("broker")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="module")
def kspark(spark: Any) -> Any:
    """The shared test Spark session (tests/conftest.py) with ``musify_kafka`` registered.

    Spark's Python workers run ``PYSPARK_PYTHON`` (default: ``python3`` on the PATH),
    which must be this interpreter, the one that has musify; a data source's workers
    use the interpreter recorded when it is registered.
    """
    spark.sparkContext.pythonExec = sys.executable
    ks.register(spark)
    return spark


def run_available_now(
    spark: Any, bootstrap: str, topics: str, out: Path, checkpoint: Path, **options: str
) -> Any:
    """One availableNow run into Parquet; returns the finished query (raises on failure)."""
    df = (
        spark.readStream.format("musify_kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topics)
        .options(**options)
        .load()
    )
    query = (
        df.writeStream.format("parquet")
        .option("path", str(out))
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    try:
        assert query.awaitTermination(120), "the availableNow query did not finish in 120 s"
    finally:
        query.stop()
    return query


def lake_rows(spark: Any, out: Path) -> list[Any]:
    rows: list[Any] = spark.read.parquet(str(out)).collect()  # the sink's committed files
    return rows


def input_rows(query: Any) -> list[int]:
    return [p["numInputRows"] for p in query.recentProgress if p["numInputRows"]]


# -- options, limits, splits (no broker) ---------------------------------------------------


def test_options_mirror_the_native_names() -> None:
    opts = parse_options(
        {
            "kafka.bootstrap.servers": "h:1",
            "subscribe": " a, b ,a,",
            "startingoffsets": "LATEST",
            "maxOffsetsPerTrigger": "500",
            "FAILONDATALOSS": "false",
            "kafka.isolation.level": "read_uncommitted",
        }
    )
    assert opts.topics == ("a", "b")
    assert opts.starting_offsets == "latest"
    assert opts.max_offsets_per_trigger == 500
    assert opts.fail_on_data_loss is False
    assert opts.client_config == {"isolation.level": "read_uncommitted"}
    conf = opts.consumer_config()
    assert conf["bootstrap.servers"] == "h:1"
    assert conf["isolation.level"] == "read_uncommitted"
    assert conf["enable.auto.commit"] is False and conf["enable.partition.eof"] is True
    defaults = parse_options({"kafka.bootstrap.servers": "h:1", "subscribe": "a"})
    assert defaults.starting_offsets == "earliest" and defaults.fail_on_data_loss is True
    assert defaults.max_offsets_per_trigger is None


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"colour": "blue"}, "'colour'"),
        ({"subscribePattern": "a.*"}, "'subscribePattern'"),
        ({"kafka.enable.auto.commit": "true"}, "'kafka.enable.auto.commit'"),
        ({"startingOffsets": "yesterday"}, "'startingOffsets'"),
        ({"maxOffsetsPerTrigger": "0"}, "'maxOffsetsPerTrigger'"),
        ({"maxOffsetsPerTrigger": "many"}, "'maxOffsetsPerTrigger'"),
        ({"failOnDataLoss": "maybe"}, "'failOnDataLoss'"),
        ({"subscribe": " , "}, "'subscribe'"),
        ({"kafka.bootstrap.servers": ""}, "'kafka.bootstrap.servers'"),
        ({"output": "rows"}, "'output'"),
    ],
)
def test_bad_options_are_named(extra: dict[str, str], named: str) -> None:
    with pytest.raises(UsageError, match=named):
        parse_options({"kafka.bootstrap.servers": "h:1", "subscribe": "a", **extra})


def test_arrow_schema_is_sparks_own() -> None:
    from pyspark.sql.pandas.types import to_arrow_schema

    assert to_arrow_schema(SCHEMA, timezone="UTC").equals(ARROW_SCHEMA)
    assert SCHEMA.simpleString() == (
        "struct<key:binary,value:binary,topic:string,partition:int,offset:bigint,"
        "timestamp:timestamp,timestampType:int>"
    )


def test_the_schema_is_fixed() -> None:
    from pyspark.sql.types import StringType, StructField, StructType

    source = KafkaSource({"kafka.bootstrap.servers": "h:1", "subscribe": "a"})
    assert KafkaSource.name() == "musify_kafka"
    assert source.schema() == ks.SCHEMA_DDL
    with pytest.raises(UsageError, match="fixed schema"):
        source.streamReader(StructType([StructField("value", StringType())]))
    ranges = KafkaSource({"kafka.bootstrap.servers": "h:1", "subscribe": "a", "output": "ranges"})
    assert ranges.schema() == ks.RANGES_DDL
    assert isinstance(ranges.streamReader(ks.RANGES_SCHEMA), KafkaStreamReader)
    with pytest.raises(UsageError, match="fixed schema"):
        ranges.streamReader(SCHEMA)


def test_ranges_arrow_schema_is_sparks_own() -> None:
    from pyspark.sql.pandas.types import to_arrow_schema

    from musify.stream.kafka_source.ranges import RANGES_ARROW_SCHEMA

    assert to_arrow_schema(ks.RANGES_SCHEMA, timezone="UTC").equals(RANGES_ARROW_SCHEMA)


def test_fair_limit_shares_max_min_and_never_exceeds() -> None:
    froms = {("a", 0): 0, ("a", 1): 100, ("b", 0): 10, ("b", 1): 0}
    ends = {("a", 0): 1000, ("a", 1): 130, ("b", 0): 10, ("b", 1): 500}
    got = fair_limit(froms, ends, 600)
    taken = {tp: got[tp] - froms[tp] for tp in froms}
    assert sum(taken.values()) == 600
    assert taken == {("a", 0): 285, ("a", 1): 30, ("b", 0): 0, ("b", 1): 285}
    assert fair_limit(froms, ends, 10_000) == ends  # everything fits
    tiny = fair_limit(froms, ends, 2)  # fewer offsets than partitions with data
    assert sum(tiny[tp] - froms[tp] for tp in froms) == 2
    assert all(froms[tp] <= tiny[tp] <= ends[tp] for tp in froms)
    for limit in (1, 3, 7, 99, 333, 1_400):
        out = fair_limit(froms, ends, limit)
        assert sum(out[tp] - froms[tp] for tp in froms) == min(limit, 1_420)
        assert all(froms[tp] <= out[tp] <= ends[tp] for tp in froms)


def test_split_range_and_canonical_offsets() -> None:
    assert split_range(5, 5) == [] and split_range(9, 5) == []
    assert split_range(0, 10, size=4) == [(0, 4), (4, 8), (8, 10)]
    pieces = split_range(100, 450_100)
    assert len(pieces) == 3 and pieces[0][0] == 100 and pieces[-1][1] == 450_100
    assert all(b - a <= ks.SPLIT_OFFSETS for a, b in pieces)
    assert all(pieces[i][1] == pieces[i + 1][0] for i in range(len(pieces) - 1))
    offsets = to_offsets({("b", 10): 1, ("b", 2): 2, ("a", 0): 3})
    assert list(offsets) == ["a", "b"] and list(offsets["b"]) == ["2", "10"]


def test_short_ranges_are_packed_into_tasks_largest_first() -> None:
    def part(topic: str, partition: int, n: int, start: int = 0) -> KafkaInputPartition:
        return KafkaInputPartition(topic, partition, start, start + n, "id")

    big = [part("listen", 0, 73_000), part("page", 1, 90_000), part("page", 2, 50_000)]
    small = [part("auth", p, 500 + p) for p in range(3)] + [part("status", 0, 100)]
    mid = [part("listen", 1, 30_000), part("listen", 2, 25_000)]
    tasks = pack_ranges([*small, *big, *mid], pack=50_000)
    sizes = [ks._size(t) for t in tasks]
    assert sizes == sorted(sizes, reverse=True)  # largest first
    assert tasks[:3] == [big[1], big[0], big[2]]  # at least `pack` offsets: alone
    groups = [t for t in tasks if isinstance(t, KafkaInputGroup)]
    assert all(g.size <= 50_000 for g in groups)
    # every range exactly once, whether alone or in a group
    flat = [p for t in tasks for p in (t.parts if isinstance(t, KafkaInputGroup) else (t,))]
    assert sorted(flat, key=repr) == sorted([*small, *big, *mid], key=repr)
    # 30,000 and the four short ones fit one task of 50,000; then 25,000 does not: alone
    assert len(tasks) == 5
    assert pack_ranges([part("a", 0, 10)]) == [part("a", 0, 10)]  # one range: no group
    assert pack_ranges([]) == []


# -- the reader against the broker (no Spark) -------------------------------------------------


@pytest.mark.broker
def test_latest_offsets_are_exact_where_list_offsets_undercounts(broker: str) -> None:
    ensure_topics(broker, ["exact"], 2, 1)
    produced = produce(broker, ["exact"], 900, "exact", None, **{"linger.ms": 200})
    truth = {p: 1 + max(o for (_, pp, o) in produced if pp == p) for p in (0, 1)}
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "t", "logger": _QUIET})
    try:
        listed = {
            p: consumer.get_watermark_offsets(TopicPartition("exact", p), timeout=5)[1]
            for p in (0, 1)
        }
    finally:
        consumer.close()
    # Tansu answers ListOffsets(latest) with the last batch's base offset + 1; a broker
    # that answers right is fine too.
    assert all(listed[p] <= truth[p] for p in (0, 1))
    r = reader(broker, "exact")
    try:
        start = r.initialOffset()
        assert plain(start) == {"exact": {"0": 0, "1": 0}}
        assert set(start[ks.TOPIC_IDS]) == {"exact"}
        end = r.latestOffset(start, ReadAllAvailable())
        assert plain(end) == {"exact": {str(p): truth[p] for p in (0, 1)}}
        assert end[ks.TOPIC_IDS] == start[ks.TOPIC_IDS]
        reported = r.reportLatestOffset()
        assert reported is not None
        # every end was confirmed by a fetch: the source says when it asked (watermark)
        fetched = datetime.fromisoformat(reported.pop(ks.FETCHED_AT))
        assert reported == end and abs(time.time() - fetched.timestamp()) < 60
        assert r.latestOffset(end, ReadAllAvailable()) == end  # nothing new: start as is
        assert reader(broker, "exact", startingOffsets="latest").initialOffset() == end
        limited = r.latestOffset(start, ReadMaxRows(101))
        assert sum(limited["exact"].values()) == 101
        rows = read_all(r, start, end)
    finally:
        r.stop()
    assert len(rows) == len(produced) == 900
    assert {(x["topic"], x["partition"], x["offset"]) for x in rows} == set(produced)
    assert all(
        produced[("exact", x["partition"], x["offset"])] == (x["key"], x["value"]) for x in rows
    )
    assert all(x["timestampType"] == 0 for x in rows)  # CreateTime, as Kafka's Java id


@pytest.mark.broker
@pytest.mark.parametrize("partitions", [1, 3], ids=["one-range", "a-group"])
def test_ranges_output_is_read_where_it_is_consumed(broker: str, partitions: int) -> None:
    """``output=ranges``: each task's rows name its offset ranges, and ``read_ranges``
    reads from them exactly the records the default output returns."""
    topic = f"ranged-{partitions}"
    ensure_topics(broker, [topic], partitions, 1)
    produced = produce(broker, [topic], 700, topic)
    records, ranged = reader(broker, topic), reader(broker, topic, output="ranges")
    try:
        start = records.initialOffset()
        end = records.latestOffset(start, ReadAllAvailable())
        expected = read_all(records, start, end)
        parts = ranged.partitions(start, end)
        rows = [batch for part in parts for batch in ranged.read(part)]
        named = [r for batch in rows for r in batch.to_pylist()]
        got = [x for batch in ks.read_ranges(ranged.opts, rows) for x in batch.to_pylist()]
    finally:
        records.stop()
        ranged.stop()
    assert len(parts) == 1 and len(named) == partitions  # short ranges: one task
    assert {(r["topic"], r["partition"]) for r in named} == {(topic, p) for p in range(partitions)}
    assert sum(r["end_offset"] - r["start_offset"] for r in named) == 700
    assert {r["topic_id"] for r in named} == {start[ks.TOPIC_IDS][topic]}
    assert len(got) == len(expected) == len(produced) == 700
    assert sorted(got, key=lambda x: (x["partition"], x["offset"])) == sorted(
        expected, key=lambda x: (x["partition"], x["offset"])
    )
    assert list(ks.read_ranges(ranged.opts, [])) == []


@pytest.mark.broker
def test_a_topic_created_later_is_read_from_its_earliest(broker: str) -> None:
    ensure_topics(broker, ["early"], 1, 1)
    produce(broker, ["early"], 5, "early")
    r = reader(broker, "early,late", startingOffsets="latest")
    try:
        start = r.initialOffset()
        assert plain(start) == {"early": {"0": 5}}  # "late" does not exist yet
        ensure_topics(broker, ["late"], 2, 1)
        late = produce(broker, ["late"], 30, "late")
        end = r.latestOffset(start, ReadAllAvailable())
        assert end["early"] == {"0": 5}
        assert sum(end["late"].values()) == 30
        rows = read_all(r, start, end)
    finally:
        r.stop()
    assert {(x["topic"], x["partition"], x["offset"]) for x in rows} == set(late)


@pytest.mark.broker
def test_reading_stops_at_the_end_across_transaction_markers(broker: str) -> None:
    """Transaction markers (and aborted records) leave offsets that never come as
    records; a range ending on one must still end."""
    ensure_topics(broker, ["tx"], 1, 1)
    producer = Producer(
        {"bootstrap.servers": broker, "transactional.id": "tx-test", "logger": _QUIET}
    )
    producer.init_transactions(10)
    producer.begin_transaction()
    for i in range(3):
        producer.produce("tx", b"committed-%d" % i, partition=0)
    producer.commit_transaction(10)  # records 0-2, marker 3
    producer.begin_transaction()
    for i in range(3):
        producer.produce("tx", b"aborted-%d" % i, partition=0)
    producer.flush(10)
    producer.abort_transaction(10)  # records 4-6, marker 7
    r = reader(broker, "tx")
    try:
        end = r.latestOffset({"tx": {"0": 0}}, ReadAllAvailable())
        assert plain(end) == {"tx": {"0": 8}}
        began = time.monotonic()
        upto_marker = [x["offset"] for x in read_all(r, {"tx": {"0": 0}}, {"tx": {"0": 4}})]
        everything = [x for x in read_all(r, {"tx": {"0": 0}}, end)]
        assert time.monotonic() - began < 5
    finally:
        r.stop()
    assert upto_marker == [0, 1, 2]
    offsets = [x["offset"] for x in everything]
    # Kafka hides aborted records under read_committed; Tansu 0.6 does not filter them.
    assert offsets[:3] == [0, 1, 2] and set(offsets) <= {0, 1, 2, 4, 5, 6}
    assert all(x["value"].startswith(b"committed") for x in everything[:3])


@pytest.mark.broker
def test_data_loss_is_reported_or_skipped_over(
    broker: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_topics(broker, ["lossy"], 2, 1)
    produced = produce(broker, ["lossy"], 40, "lossy")
    has = {p: 1 + max(o for (_, pp, o) in produced if pp == p) for p in (0, 1)}
    # A checkpoint from a broker that had more (as before a restart of a memory-only one).
    start = {"lossy": {"0": has[0] + 500, "1": 0}, "vanished": {"0": 7}}
    r = reader(broker, "lossy,vanished")
    try:
        with pytest.raises(KafkaDataLossError) as failed:
            r.latestOffset(start, ReadAllAvailable())
    finally:
        r.stop()
    message = str(failed.value)
    assert message.startswith("Kafka data loss")
    assert f"topic lossy partition 0: expected offset {has[0] + 500}" in message
    assert f"the broker has offsets 0..{has[0] - 1}" in message
    assert "topic vanished partition 0: expected offset 7" in message
    assert "no topic vanished" in message
    assert "--reset-on-data-loss" in message and "failOnDataLoss=false" in message

    lenient = reader(broker, "lossy,vanished", failOnDataLoss="false")
    try:
        with caplog.at_level(logging.WARNING, logger="musify.stream.kafka_source"):
            end = lenient.latestOffset(start, ReadAllAvailable())
            parts = lenient.ranges(start, end)
        assert plain(end) == {"lossy": {"0": has[0], "1": has[1]}}  # vanished: dropped
        lossy_id = end[ks.TOPIC_IDS]["lossy"]
        # from the new earliest
        assert KafkaInputPartition("lossy", 0, 0, has[0], lossy_id) in parts
        assert KafkaInputPartition("lossy", 1, 0, has[1], lossy_id) in parts
        warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
        assert any("topic lossy partition 0" in w for w in warnings)
        assert any("vanished" in w for w in warnings)
    finally:
        lenient.stop()

    # A task promised more than the broker has (it lost records after planning).
    monkeypatch.setattr("musify.stream.kafka_source.consume.LOSS_GRACE", 0.3)  # read there
    beyond = KafkaInputPartition("lossy", 1, 0, has[1] + 25)
    with pytest.raises(KafkaDataLossError, match=f"ends at offset {has[1]}"):
        list(reader(broker, "lossy").read(beyond))
    got = [b.num_rows for b in reader(broker, "lossy", failOnDataLoss="false").read(beyond)]
    assert sum(got) == has[1]


@pytest.mark.broker
def test_a_recreated_topic_holding_more_records_is_data_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A restarted memory-only broker that already received more records than the
    checkpoint's offsets: offsets alone see nothing wrong, the topic ids do."""
    port = free_port()
    with running_broker(port, tmp_path / "b1") as bootstrap:
        ensure_topics(bootstrap, ["again"], 2, 1)
        produce(bootstrap, ["again"], 20, "before")
        r = reader(bootstrap, "again")
        try:
            checkpoint = r.latestOffset(r.initialOffset(), ReadAllAvailable())
        finally:
            r.stop()
    old_id = checkpoint[ks.TOPIC_IDS]["again"]
    with running_broker(port, tmp_path / "b2") as bootstrap:  # restarted: empty
        ensure_topics(bootstrap, ["again"], 2, 1)
        after = produce(bootstrap, ["again"], 200, "after")
        held = {p: 1 + max(o for (_, pp, o) in after if pp == p) for p in (0, 1)}
        assert all(held[p] > checkpoint["again"][str(p)] for p in (0, 1)), "more than before"
        r = reader(bootstrap, "again")
        try:
            # A checkpoint written before ids were kept still loads, and cannot tell.
            end = r.latestOffset(plain(checkpoint), ReadAllAvailable())
            assert all(end["again"][p] >= checkpoint["again"][p] for p in ("0", "1"))
            new_id = end[ks.TOPIC_IDS]["again"]
            assert new_id != old_id
            with pytest.raises(KafkaDataLossError) as failed:
                r.latestOffset(checkpoint, ReadAllAvailable())
        finally:
            r.stop()
        message = str(failed.value)
        assert message.startswith("Kafka data loss")
        assert f"topic again partition 0: expected offset {checkpoint['again']['0']}" in message
        assert f"topic id is {new_id} on the broker, {old_id} in the checkpoint" in message
        assert "--reset-on-data-loss" in message and "failOnDataLoss=false" in message

        lenient = reader(bootstrap, "again", failOnDataLoss="false")
        try:
            with caplog.at_level(logging.WARNING, logger="musify.stream.kafka_source"):
                end = lenient.latestOffset(checkpoint, ReadAllAvailable())
                rows = read_all(lenient, checkpoint, end)  # the new topic, from its earliest
            assert any("created again" in rec.getMessage() for rec in caplog.records)
        finally:
            lenient.stop()
        assert {("again", x["partition"], x["offset"]) for x in rows} == set(after)

        # A task planned under the old id (e.g. a batch replayed after a crash) checks it,
        # also when it reads several short ranges.
        stale = KafkaInputPartition("again", 0, 0, 5, old_id)
        group = KafkaInputGroup((stale, KafkaInputPartition("again", 1, 0, 3, old_id)))
        for task, rows in ((stale, 5), (group, 8)):
            with pytest.raises(KafkaDataLossError, match="created again"):
                list(reader(bootstrap, "again").read(task))
            got = reader(bootstrap, "again", failOnDataLoss="false").read(task)
            assert sum(b.num_rows for b in got) == rows


# -- through Spark -------------------------------------------------------------------------------


@pytest.mark.spark
@pytest.mark.broker
def test_stream_reads_every_record_once_across_restarts(
    kspark: Any, broker: str, tmp_path: Path
) -> None:
    topics = ["plays", "views"]
    ensure_topics(broker, topics, 3, 1)
    produced = produce(broker, topics, 600, "first")
    out, checkpoint = tmp_path / "out", tmp_path / "checkpoint"

    df = (
        kspark.readStream.format("musify_kafka")
        .option("kafka.bootstrap.servers", broker)
        .option("subscribe", "plays,views")
        .load()
    )
    assert df.isStreaming
    assert df.schema == SCHEMA  # the native kafka format's columns, types and nullability

    first = run_available_now(kspark, broker, "plays,views", out, checkpoint)
    assert sum(input_rows(first)) == 1200
    rows = lake_rows(kspark, out)
    assert len(rows) == 1200
    assert {(x.topic, x.partition, x.offset) for x in rows} == set(produced)
    assert all(produced[(x.topic, x.partition, x.offset)] == (x.key, x.value) for x in rows)
    assert {x.timestampType for x in rows} == {0}
    assert all(abs(time.time() - x.timestamp.timestamp()) < 600 for x in rows)

    produce(broker, topics, 250, "second", produced)
    second = run_available_now(kspark, broker, "plays,views", out, checkpoint)
    assert sum(input_rows(second)) == 500  # only the new records
    rows = lake_rows(kspark, out)
    keys = [(x.topic, x.partition, x.offset) for x in rows]
    assert len(keys) == len(set(keys)) == 1700  # each exactly once
    assert set(keys) == set(produced)
    assert all(produced[(x.topic, x.partition, x.offset)] == (x.key, x.value) for x in rows)

    third = run_available_now(kspark, broker, "plays,views", out, checkpoint)
    assert input_rows(third) == []  # nothing new: nothing read
    assert len(lake_rows(kspark, out)) == 1700


@pytest.mark.spark
@pytest.mark.broker
def test_a_checkpoint_without_topic_ids_still_loads(
    kspark: Any, broker: str, tmp_path: Path
) -> None:
    """Checkpoints written before the source kept topic ids resume where they were."""
    ensure_topics(broker, ["legacy"], 2, 1)
    produced = produce(broker, ["legacy"], 100, "first")
    out, checkpoint = tmp_path / "out", tmp_path / "checkpoint"
    run_available_now(kspark, broker, "legacy", out, checkpoint)
    logs = sorted((checkpoint / "offsets").glob("[0-9]*"), key=lambda f: int(f.name))
    for log_file in logs:  # rewrite the offset log as the previous format had it
        version, metadata, offsets = log_file.read_text().split("\n", 2)
        assert ks.TOPIC_IDS in offsets
        old = json.dumps(plain(json.loads(offsets)))
        log_file.write_text("\n".join([version, metadata, old]))
    produce(broker, ["legacy"], 50, "second", produced)
    again = run_available_now(kspark, broker, "legacy", out, checkpoint)
    assert sum(input_rows(again)) == 50  # only the new ones
    keys = [(x.topic, x.partition, x.offset) for x in lake_rows(kspark, out)]
    assert len(keys) == len(set(keys)) == 150 and set(keys) == set(produced)
    newest = max((checkpoint / "offsets").glob("[0-9]*"), key=lambda f: int(f.name))
    assert ks.TOPIC_IDS in newest.read_text()  # ids are kept from now on


@pytest.mark.spark
@pytest.mark.broker
def test_max_offsets_per_trigger_makes_several_batches(
    kspark: Any, broker: str, tmp_path: Path
) -> None:
    ensure_topics(broker, ["limited"], 3, 1)
    produced = produce(broker, ["limited"], 1000, "limited")
    query = run_available_now(
        kspark,
        broker,
        "limited",
        tmp_path / "out",
        tmp_path / "checkpoint",
        maxOffsetsPerTrigger="300",
    )
    batches = input_rows(query)
    assert len(batches) == 4 and all(n <= 300 for n in batches)
    assert batches[:3] == [300, 300, 300] and sum(batches) == 1000
    rows = lake_rows(kspark, tmp_path / "out")
    assert {(x.topic, x.partition, x.offset) for x in rows} == set(produced)


@pytest.mark.spark
def test_bad_option_fails_at_load(kspark: Any) -> None:
    with pytest.raises(Exception, match="unknown option 'colour'"):
        (
            kspark.readStream.format("musify_kafka")
            .option("kafka.bootstrap.servers", "127.0.0.1:1")
            .option("subscribe", "a")
            .option("colour", "blue")
            .load()
        )


@pytest.mark.spark
@pytest.mark.broker
@pytest.mark.parametrize("after_restart", [30, 600], ids=["fewer-records", "more-records"])
def test_broker_restart_is_data_loss(kspark: Any, tmp_path: Path, after_restart: int) -> None:
    """A restarted memory-only broker has fewer records than the checkpoint expects, or
    already more (only the topic ids tell): failOnDataLoss=true stops with a clear
    message; false continues with the new data, from its earliest offset."""
    port = free_port()
    out, checkpoint = tmp_path / "out", tmp_path / "checkpoint"
    with running_broker(port, tmp_path / "home1") as bootstrap:
        ensure_topics(bootstrap, ["events"], 3, 1)
        produce(bootstrap, ["events"], 300, "before")
        run_available_now(kspark, bootstrap, "events", out, checkpoint)
    assert len(lake_rows(kspark, out)) == 300

    with running_broker(port, tmp_path / "home2") as bootstrap:
        ensure_topics(bootstrap, ["events"], 3, 1)
        after = produce(bootstrap, ["events"], after_restart, "after")
        with pytest.raises(Exception) as failed:
            run_available_now(kspark, bootstrap, "events", out, checkpoint)
        message = str(failed.value)
        assert "Kafka data loss" in message
        assert "topic events partition" in message and "expected offset" in message
        assert "--reset-on-data-loss" in message and "failOnDataLoss=false" in message

        resumed = run_available_now(
            kspark, bootstrap, "events", out, checkpoint, failOnDataLoss="false"
        )
        assert sum(input_rows(resumed)) == after_restart
    rows = lake_rows(kspark, out)
    assert len(rows) == 300 + after_restart
    new = [x for x in rows if x.value in {v for _, v in after.values()}]
    assert {(x.partition, x.offset) for x in new} == {(p, o) for (_, p, o) in after}
