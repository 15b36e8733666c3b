"""What one Spark task of the ``musify_kafka`` source reads: ``KafkaInputPartition``
(offsets ``[start, end)`` of one Kafka partition) and ``KafkaInputGroup`` (several
short ranges, read one after the other).

``split_range`` cuts a partition's new offsets into ranges of at most
``SPLIT_OFFSETS``; ``pack_ranges`` packs the short ones into groups of up to
``PACK_OFFSETS``. Spark pickles these objects to its Python workers; the driver's
reader (``reader``) makes them, ``consume`` reads them. The package docstring lists
every part.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql.datasource import InputPartition

#: An offset range longer than this is read by several Spark tasks.
SPLIT_OFFSETS = 200_000
#: Ranges shorter than this are packed together into one Spark task, up to this many
#: offsets per task (a task costs about 0.1 s more than its records on 2 cores).
PACK_OFFSETS = 50_000


def split_range(start: int, end: int, size: int = SPLIT_OFFSETS) -> list[tuple[int, int]]:
    """``[start, end)`` as consecutive ranges of at most ``size`` offsets, near-equal."""
    if end <= start:
        return []
    pieces = math.ceil((end - start) / size)
    step = math.ceil((end - start) / pieces)
    return [(s, min(s + step, end)) for s in range(start, end, step)]


@dataclass(frozen=True)
class KafkaInputPartition(InputPartition):
    """Offsets ``[start, end)`` of one Kafka partition, read by one Spark task."""

    topic: str
    partition: int
    start: int
    end: int
    #: The topic's id when the range was planned; the task checks the broker still
    #: has that topic (None: unknown, e.g. a checkpoint written before ids were kept).
    topic_id: str | None = None


@dataclass(frozen=True)
class KafkaInputGroup(InputPartition):
    """Several short ranges (``KafkaInputPartition``), read one after the other by
    one Spark task."""

    parts: tuple[KafkaInputPartition, ...]

    @property
    def size(self) -> int:
        return sum(p.end - p.start for p in self.parts)


def pack_ranges(
    parts: Sequence[KafkaInputPartition], pack: int = PACK_OFFSETS
) -> list[InputPartition]:
    """The input partitions of a batch: ranges of ``pack`` offsets or more alone, shorter
    ones packed into groups of at most ``pack`` offsets (first fit, largest first);
    everything largest first (a long task started last would finish last)."""
    alone: list[InputPartition] = [p for p in parts if p.end - p.start >= pack]
    bins: list[list[KafkaInputPartition]] = []
    room: list[int] = []
    for p in sorted(
        (p for p in parts if p.end - p.start < pack),
        key=lambda p: (-(p.end - p.start), p.topic, p.partition, p.start),
    ):
        n = p.end - p.start
        for i, free in enumerate(room):
            if n <= free:
                bins[i].append(p)
                room[i] -= n
                break
        else:
            bins.append([p])
            room.append(pack - n)
    packed = [b[0] if len(b) == 1 else KafkaInputGroup(tuple(b)) for b in bins]
    return sorted([*alone, *packed], key=lambda p: -_size(p))


def _size(part: InputPartition) -> int:
    if isinstance(part, KafkaInputGroup):
        return part.size
    assert isinstance(part, KafkaInputPartition), type(part)
    return part.end - part.start
