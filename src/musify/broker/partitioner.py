"""Which partition an event goes to: Kafka's default partitioner, computed by us.

``KafkaSink`` names the partition of every message itself instead of leaving it to
librdkafka, so the partition of each generated event is a documented function of its
key that a resuming generator can evaluate: ``murmur2(key) & 0x7fffffff`` modulo the
topic's partition count, where ``key`` is the user id in decimal ASCII. That is the Java
client's default partitioner and librdkafka's ``murmur2_random`` for non-empty keys, so
other Kafka clients keyed by user id agree with us (co-partitioned joins work).
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 hash (``org.apache.kafka.common.utils.Utils.murmur2``),
    as an unsigned integer."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a message with this key in a topic of ``partitions`` partitions."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def key_bytes(user_id: int) -> bytes:
    """The message key of a user's events."""
    return str(user_id).encode()


class KeyRouter:
    """Key bytes and partition per user id for one partition count, memoised: a run has
    a bounded set of users, and hashing in Python per message would cost more than
    producing it."""

    def __init__(self, partitions: int) -> None:
        if partitions < 1:
            raise ValueError(f"a topic has at least one partition, not {partitions}")
        self.partitions = partitions
        self._routes: dict[int, tuple[bytes, int]] = {}
        self.get = self._routes.get

    def route(self, user_id: int) -> tuple[bytes, int]:
        hit = self._routes.get(user_id)
        if hit is None:
            key = key_bytes(user_id)
            hit = self._routes[user_id] = (key, partition_for(key, self.partitions))
        return hit


__all__ = ["KeyRouter", "key_bytes", "murmur2", "partition_for"]
