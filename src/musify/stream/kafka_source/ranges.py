"""The source's ``output=ranges`` mode: ``read()`` returns the offset ranges a task was
given (``RANGES_SCHEMA``, one row each) instead of their records, and
``read_ranges`` reads those ranges where the next stage of the same task consumes
them (the stream's ``mapInArrow``, ``musify.stream.stage``).

Why: with records, every record crosses from the source's Python worker into the JVM,
is copied into Spark's rows, and crosses again into the next Python worker. On two
cores that costs more than reading and parsing it (a backlog was ingested at 0.40x the
rate of one plain Python consumer). The offsets are planned, checkpointed and replayed
by Spark exactly as with records; a range is read with the same consumer code and the
same data-loss and topic-id checks, in a replay as the first time.

The reader (``reader``) makes these rows from its input partitions; ``consume`` reads.
The package docstring lists every part.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa
from pyspark.sql.datasource import InputPartition
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from musify.stream.kafka_source.consume import _read_group, _record_batches, consume_range
from musify.stream.kafka_source.options import SourceOptions
from musify.stream.kafka_source.partitions import KafkaInputGroup, KafkaInputPartition

#: One row per offset range ``[start_offset, end_offset)`` of a Kafka partition.
RANGES_SCHEMA = StructType(
    [
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("start_offset", LongType()),
        StructField("end_offset", LongType()),
        StructField("topic_id", StringType()),
    ]
)
RANGES_DDL = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in RANGES_SCHEMA.fields)
RANGES_ARROW_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("start_offset", pa.int64()),
        pa.field("end_offset", pa.int64()),
        pa.field("topic_id", pa.string()),
    ]
)


def ranges_batch(partition: InputPartition) -> pa.RecordBatch:
    """An input partition's ranges as one Arrow batch of ``RANGES_ARROW_SCHEMA``."""
    if isinstance(partition, KafkaInputGroup):
        parts = list(partition.parts)
    else:
        assert isinstance(partition, KafkaInputPartition), type(partition)
        parts = [partition]
    return pa.RecordBatch.from_pylist(
        [
            {
                "topic": p.topic,
                "partition": p.partition,
                "start_offset": p.start,
                "end_offset": p.end,
                "topic_id": p.topic_id,
            }
            for p in parts
        ],
        schema=RANGES_ARROW_SCHEMA,
    )


def read_ranges(opts: SourceOptions, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The records of every range in ``batches`` (rows of ``RANGES_SCHEMA``), as Arrow
    batches of ``consume.ARROW_SCHEMA``: one range as ``consume_range`` reads it,
    several as one group (one topic-id check for all of them, before and after)."""
    parts = [
        KafkaInputPartition(
            row["topic"], row["partition"], row["start_offset"], row["end_offset"], row["topic_id"]
        )
        for batch in batches
        for row in batch.to_pylist()
    ]
    if len(parts) == 1:
        yield from _record_batches(parts[0], consume_range(opts, parts[0]))
    elif parts:
        yield from _read_group(opts, KafkaInputGroup(tuple(parts)))
