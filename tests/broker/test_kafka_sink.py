"""KafkaSink and the Kafka helpers against a real (local Tansu) broker."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient

from musify.broker.kafka import KafkaSink, check_reachable, ensure_topics
from musify.broker.local import free_port, producer_options, start_broker, stop_broker
from musify.errors import BrokerError, UsageError
from musify.events import TOPIC_NAMES
from musify.settings import Settings
from tests.broker.conftest import Record, consume

pytestmark = pytest.mark.broker

TOPIC = "listen_events"


def _lines(tag: str, n: int, n_keys: int, start: int = 0) -> tuple[list[int], list[bytes]]:
    """n lines over n_keys users; each line carries its user and a sequence number."""
    keys = [1000 + (start + i) % n_keys for i in range(n)]
    lines = [
        orjson.dumps({"tag": tag, "user": k, "seq": start + i}) + b"\n" for i, k in enumerate(keys)
    ]
    return keys, lines


def _write(sink: KafkaSink, keys: list[int], lines: list[bytes], batch: int = 500) -> None:
    for i in range(0, len(lines), batch):
        sink.write(TOPIC, keys[i : i + batch], lines[i : i + batch])


def _check_keyed_order(records: list[Record]) -> None:
    """Each user on one partition, with the user's lines in the order written."""
    by_key: dict[bytes | None, list[Record]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key[r.key].append(r)
    for key, recs in by_key.items():
        assert len({r.partition for r in recs}) == 1, f"user {key!r} on several partitions"
        events = [orjson.loads(r.value) for r in recs]
        assert all(str(e["user"]).encode() == key for e in events)
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs), f"user {key!r}'s events are out of order"


def test_check_reachable_fails_fast_on_a_closed_port() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(BrokerError, match=f"cannot reach Kafka at {bootstrap} within 3 s"):
        check_reachable(bootstrap, timeout=3)
    assert time.monotonic() - t0 < 6


def test_open_fails_fast_without_a_broker() -> None:
    sink = KafkaSink(f"127.0.0.1:{free_port()}")
    t0 = time.monotonic()
    with pytest.raises(BrokerError, match="cannot reach Kafka"):
        sink.open()
    assert time.monotonic() - t0 < 8


def test_ensure_topics_creates_missing_topics_once(broker: str) -> None:
    check_reachable(broker)
    ensure_topics(broker, ["a", "b"], partitions=3, replication=1)
    ensure_topics(broker, ["a", "b", "c"], partitions=2, replication=1)  # a, b exist
    meta = AdminClient({"bootstrap.servers": broker}).list_topics(timeout=5).topics
    assert {t: len(meta[t].partitions) for t in "abc"} == {"a": 3, "b": 3, "c": 2}


def test_ensure_topics_reports_bad_requests_quickly() -> None:
    # (Tansu accepts any partition count and replication factor, so the broker's own
    # refusals cannot be tested here.)
    with pytest.raises(UsageError, match="partitions must be at least 1"):
        ensure_topics("127.0.0.1:1", ["x"], partitions=0, replication=1)
    t0 = time.monotonic()
    with pytest.raises(BrokerError, match="cannot reach Kafka"):
        ensure_topics(f"127.0.0.1:{free_port()}", ["x"], 1, 1, timeout=3)
    assert time.monotonic() - t0 < 5


def test_sink_delivers_every_line_keyed_and_in_order(broker: str) -> None:
    n = 20_000
    keys, lines = _lines("a", n, n_keys=97)
    sink = KafkaSink(broker, partitions=3)
    assert sink.target == f"kafka {broker}"
    with sink:
        _write(sink, keys, lines)
    assert sink.delivered == n and sink.failed_attempts == 0

    meta = AdminClient({"bootstrap.servers": broker}).list_topics(timeout=5).topics
    assert set(TOPIC_NAMES) <= set(meta)
    assert all(len(meta[t].partitions) == 3 for t in TOPIC_NAMES)

    records = consume(broker, TOPIC, n)
    assert len(records) == n
    assert sorted(r.value for r in records) == sorted(lines)  # trailing newline kept
    assert len({r.partition for r in records}) == 3  # keys spread over partitions
    _check_keyed_order(records)


def test_a_sink_with_a_minimum_flush_interval_flushes_at_most_that_often(broker: str) -> None:
    """The disk-backed broker's generator (``producer_options``): a flush right after a
    flush leaves delivery to the producer's linger; closing delivers everything."""
    assert producer_options(Settings(broker_storage="memory")) == {}
    options = producer_options(Settings(broker_storage="disk"))
    assert options["min_flush_interval"] >= 1.0
    keys, lines = _lines("f", 2_000, n_keys=7)
    sink = KafkaSink(broker, partitions=3, **{**options, "min_flush_interval": 60.0})
    with sink:
        _write(sink, keys[:1000], lines[:1000])
        sink.flush()  # the first one delivers
        assert sink.delivered == 1000
        _write(sink, keys[1000:], lines[1000:])
        sink.flush()  # within the interval: does not wait for them (linger: 1 s)
        assert sink.delivered < 2_000
    assert sink.delivered == 2_000 and sink.failed_attempts == 0
    assert sorted(r.value for r in consume(broker, TOPIC, 2_000)) == sorted(lines)


def test_sink_recovers_from_a_broker_restart(broker_settings: Settings) -> None:
    s = broker_settings
    bootstrap = start_broker(s).bootstrap_servers
    try:
        sink = KafkaSink(bootstrap)
        sink.open()
        _write(sink, *_lines("before", 2_000, n_keys=10))
        sink.flush()
        assert sink.delivered == 2_000

        stop_broker(s, timeout=1.0)  # memory-only: its topics are gone
        start_broker(s)
        keys, lines = _lines("after", 3_000, n_keys=10)
        t0 = time.monotonic()
        _write(sink, keys, lines)
        sink.flush()
        assert time.monotonic() - t0 < 15
        sink.close()
        assert sink.producers_created >= 2  # the stale idempotent producer was replaced

        records = consume(bootstrap, TOPIC, 3_000)
        after = [r for r in records if orjson.loads(r.value)["tag"] == "after"]
        assert sorted(r.value for r in after) == sorted(lines)
        _check_keyed_order(after)
    finally:
        stop_broker(s)


def test_sink_replaces_a_producer_after_a_fatal_error(broker: str) -> None:
    keys, lines = _lines("fatal", 5_000, n_keys=20)
    with KafkaSink(broker) as sink:
        assert isinstance(sink, KafkaSink)
        _write(sink, keys[:2_500], lines[:2_500])
        # What librdkafka reports when, e.g., an idempotent producer is fenced.
        sink._on_error(KafkaError(KafkaError._FATAL, "injected", fatal=True))
        _write(sink, keys[2_500:], lines[2_500:])
    assert sink.producers_created == 2
    records = consume(broker, TOPIC, 5_000)
    # At least once: messages purged in flight may have been stored already.
    assert {r.value for r in records} == set(lines)


def test_continuous_sink_buffers_while_the_broker_is_down(broker_settings: Settings) -> None:
    s = broker_settings
    bootstrap = start_broker(s).bootstrap_servers
    try:
        sink = KafkaSink(bootstrap, continuous=True)
        sink.open()
        _write(sink, *_lines("first", 500, n_keys=5))
        sink.flush()

        stop_broker(s, timeout=1.0)
        down_keys, down_lines = _lines("down", 1_000, n_keys=5, start=500)
        _write(sink, down_keys, down_lines)
        t0 = time.monotonic()
        sink.flush()  # the broker is away: keeps the events, does not raise
        assert time.monotonic() - t0 < 10

        start_broker(s)
        up_keys, up_lines = _lines("up", 1_000, n_keys=5, start=1_500)
        _write(sink, up_keys, up_lines)
        sink.close()  # waits for everything

        records = consume(bootstrap, TOPIC, 2_000)
        got = [r for r in records if orjson.loads(r.value)["tag"] in ("down", "up")]
        assert sorted(r.value for r in got) == sorted(down_lines + up_lines)
        _check_keyed_order(got)
    finally:
        stop_broker(s)


def test_flush_reports_undelivered_events(broker_settings: Settings) -> None:
    s = broker_settings
    bootstrap = start_broker(s).bootstrap_servers
    try:
        sink = KafkaSink(bootstrap, flush_timeout=2.0)
        sink.open()
        stop_broker(s, timeout=1.0)
        _write(sink, *_lines("lost", 10, n_keys=2))
        t0 = time.monotonic()
        with pytest.raises(BrokerError, match="10 events"):
            sink.flush()
        assert time.monotonic() - t0 < 8
        sink.close()  # after the error: does not wait again
    finally:
        stop_broker(s)


@pytest.mark.slow
def test_generate_into_the_broker(broker: str, example_config: Path, musify_cache: Path) -> None:
    from musify.broker.produce import produce_events
    from musify.sim import GenerateOptions

    opts = GenerateOptions(
        config=example_config, n_users=50, days=1, seed=1, workers=1, cache_dir=musify_cache
    )
    summary = produce_events(opts, broker)
    assert summary.target == f"kafka {broker}"
    counts = summary.events
    assert set(counts) == set(TOPIC_NAMES) and counts["page_view_events"] > 0
    for topic in TOPIC_NAMES:
        records = consume(broker, topic, counts[topic])
        assert len(records) == counts[topic], topic
        # One user's events are on one partition, in event-time order.
        by_key: dict[bytes | None, list[Record]] = defaultdict(list)
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            by_key[r.key].append(r)
        for key, recs in by_key.items():
            assert len({r.partition for r in recs}) == 1
            ts = [orjson.loads(r.value)["ts"] for r in recs]
            assert ts == sorted(ts), f"{topic}: user {key!r} out of order"


class _FakeMessage:
    def __init__(self, topic: str, partition: int, key: bytes, value: bytes) -> None:
        self._t, self._p, self._k, self._v = topic, partition, key, value

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def key(self) -> bytes:
        return self._k

    def value(self) -> bytes:
        return self._v


class _FakeProducer:
    """Holds what it is given; acknowledges on request; reports purges out of order."""

    def __init__(self, on_delivery: Any) -> None:
        self.on_delivery = on_delivery
        self.held: list[_FakeMessage] = []
        self.reports: list[tuple[KafkaError, _FakeMessage]] = []
        self.stored: list[_FakeMessage] = []

    def produce(
        self, topic: str, value: bytes, key: bytes, partition: int, headers: Any = None
    ) -> None:
        self.held.append(_FakeMessage(topic, partition, key, value))

    def acknowledge(self, n: int) -> None:
        self.stored += self.held[:n]
        del self.held[:n]

    def purge(self, **_: Any) -> None:
        err = KafkaError(KafkaError._PURGE_QUEUE)
        # librdkafka does not promise any order: report the newest first.
        self.reports += [(err, m) for m in reversed(self.held)]
        self.held = []

    def poll(self, _timeout: float = 0) -> int:
        reports, self.reports = self.reports, []
        for err, msg in reports:
            self.on_delivery(err, msg)
        return len(reports)

    def flush(self, _timeout: float = 0) -> int:
        self.acknowledge(len(self.held))
        return 0

    def __len__(self) -> int:
        return len(self.held) + len(self.reports)


def test_a_replaced_producer_resends_in_the_order_first_produced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from musify.broker.partitioner import KeyRouter

    producers: list[_FakeProducer] = []

    def new_producer(self: KafkaSink) -> _FakeProducer:
        self.producers_created += 1
        self._replace = self._retired = False
        producers.append(_FakeProducer(self._on_delivery))
        return producers[-1]

    monkeypatch.setattr(KafkaSink, "_new_producer", new_producer)
    sink = KafkaSink("fake:9092")
    sink.partition_counts = dict.fromkeys(TOPIC_NAMES, 3)
    router = KeyRouter(3)
    sink._routers = dict.fromkeys(TOPIC_NAMES, router)
    sink._in_flight = {t: [[], [], []] for t in TOPIC_NAMES}
    sink._producer = sink._new_producer()
    sink._last_ok_probe = time.monotonic() + 3600  # no broker to probe

    keys, lines = _lines("fake", 3_000, n_keys=17)
    _write(sink, keys[:2_000], lines[:2_000])
    producers[0].acknowledge(700)
    sink._on_error(KafkaError(KafkaError._FATAL, "injected", fatal=True))
    _write(sink, keys[2_000:], lines[2_000:])
    sink.flush()
    assert len(producers) == 2
    assert sink.delivered == 3_000
    stored = [m.value() for p in producers for m in p.stored]
    assert sorted(stored) == sorted(lines)  # nothing lost, nothing twice
    for part in range(3):
        mine = [m.value() for p in producers for m in p.stored if m.partition() == part]
        assert mine == [v for k, v in zip(keys, lines, strict=True) if router.route(k)[1] == part]
