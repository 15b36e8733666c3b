"""Fixtures for tests against a real local broker (Tansu), each on a free port."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from musify.broker.local import free_port, start_broker, stop_broker
from musify.settings import Settings

_QUIET = logging.Logger("musify.tests.consumer")  # librdkafka lines are noise here
_QUIET.addHandler(logging.NullHandler())


@pytest.fixture
def broker_settings(tmp_path: Path) -> Settings:
    """Settings for a broker on a free port, with a private MUSIFY home."""
    return Settings(home=tmp_path / "home", broker_port=free_port())


@pytest.fixture
def broker(broker_settings: Settings) -> Iterator[str]:
    """A running broker; yields its bootstrap address and stops it afterwards."""
    info = start_broker(broker_settings)
    try:
        yield info.bootstrap_servers
    finally:
        stop_broker(broker_settings)


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def _consumer(bootstrap: str, eof: bool) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "musify-tests",
            "enable.auto.commit": False,
            "enable.partition.eof": eof,
            "logger": _QUIET,
        }
    )


def consume(
    bootstrap: str, topic: str, expected: int, timeout: float = 15.0, settle: float = 0.3
) -> list[Record]:
    """Read a topic from offset 0 on every partition until ``expected`` records arrived
    (or ``timeout``), then ``settle`` s more to catch extras. No watermarks involved."""
    consumer = _consumer(bootstrap, eof=False)
    try:
        meta = consumer.list_topics(topic, timeout=5).topics[topic]
        assert meta.error is None, meta.error
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < (settle_until or deadline):
            for msg in consumer.consume(num_messages=10_000, timeout=0.1):
                assert msg.error() is None, msg.error()
                part, offset, value = msg.partition(), msg.offset(), msg.value()
                assert part is not None and offset is not None and value is not None
                records.append(Record(part, offset, msg.key(), value))
            if settle_until is None and len(records) >= expected:
                settle_until = time.monotonic() + settle
        return records
    finally:
        consumer.close()


def read_to_end(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Record]:
    """Every record of a topic no producer writes to any more: each partition is read
    from its beginning until the broker reports its end (``enable.partition.eof``), so
    nothing waits for a quiet period. (Tansu's ListOffsets undercounts the end: see
    ``musify.stream.kafka_source.probe``; its fetch responses do not.)"""
    consumer = _consumer(bootstrap, eof=True)
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        assert meta.error is None, meta.error
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        pending = set(meta.partitions)
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, f"{topic}: no end reported for {sorted(pending)}"
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                err, part = msg.error(), msg.partition()
                assert part is not None
                if err is not None:
                    assert err.code() == KafkaError._PARTITION_EOF, err
                    pending.discard(part)
                    continue
                offset, value = msg.offset(), msg.value()
                assert offset is not None and value is not None
                records.append(Record(part, offset, msg.key(), value))
        return records
    finally:
        consumer.close()
