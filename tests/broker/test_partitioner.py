"""The sink's partitioner: Kafka's default, computed by us."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import Producer

from musify.broker.kafka import ensure_topics
from musify.broker.partitioner import KeyRouter, key_bytes, murmur2, partition_for


def _signed(h: int) -> int:
    return h - 2**32 if h >= 2**31 else h


@pytest.mark.parametrize(
    ("text", "expected"),
    [  # the values Apache Kafka's own tests expect from Utils.murmur2
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_murmur2_is_kafkas(text: str, expected: int) -> None:
    assert _signed(murmur2(text.encode())) == expected


def test_key_router_memoises_the_partition_of_each_user() -> None:
    router = KeyRouter(3)
    assert router.get(42) is None
    assert router.route(42) == (b"42", partition_for(b"42", 3))
    assert router.get(42) == router.route(42)
    assert key_bytes(42) == b"42"
    assert {router.route(u)[1] for u in range(1, 200)} == {0, 1, 2}
    with pytest.raises(ValueError, match="at least one partition"):
        KeyRouter(0)


@pytest.mark.broker
def test_librdkafka_places_keys_where_we_say(broker: str) -> None:
    """librdkafka's murmur2_random partitioner agrees with ``partition_for``."""
    ensure_topics(broker, ["placed"], partitions=5, replication=1)
    placed: dict[bytes, int] = {}

    def report(err: object, msg: object) -> None:
        assert err is None
        placed[msg.key()] = msg.partition()  # type: ignore[attr-defined]

    quiet = logging.Logger("musify.tests.producer")
    quiet.addHandler(logging.NullHandler())
    producer = Producer(
        {"bootstrap.servers": broker, "partitioner": "murmur2_random", "logger": quiet}
    )
    for user in range(1, 300):
        producer.produce("placed", b"x", key_bytes(user), on_delivery=report)
    assert producer.flush(15) == 0
    assert placed == {key_bytes(u): partition_for(key_bytes(u), 5) for u in range(1, 300)}
