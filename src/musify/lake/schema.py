"""The lake's tables, derived from the one event schema (``musify.events``).

One Iceberg table per topic and one for the quarantine. Each topic table has the
event's fields (``ts`` and ``registration`` as UTC timestamps), the Kafka coordinates,
``ingested_at`` and ``extra`` (fields the event schema does not know, as JSON), and is
partitioned by the hour of ``ts``: Streamify's hourly partitions, and the unit the
hourly batch loads. The quarantine keeps what could not be parsed, with its raw bytes,
partitioned by topic and ingestion day.

The Arrow schemas here are what the stream's tasks write; the Iceberg schemas are built
from them, so the two cannot disagree. Column ids are positional when a table is
created; afterwards the table's own ids are the truth and new event fields are appended
(``musify.lake.tables``), so adding an optional field never renumbers a column.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from musify.events import TOPICS, FieldType, Topic

#: Columns every lake row carries besides the event's own fields.
KAFKA_COLUMNS = ("kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_at")
#: The column with the fields of an event that its topic's schema does not know.
EXTRA_COLUMN = "extra"
#: The quarantine's table name (the topics' tables are named after their topics).
QUARANTINE = "quarantine"
UTC_MICROS = pa.timestamp("us", tz="UTC")

_LAKE_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.STRING: pa.string(),
    FieldType.INT: pa.int32(),
    FieldType.LONG: pa.int64(),
    FieldType.DOUBLE: pa.float64(),
    FieldType.BOOLEAN: pa.bool_(),
    FieldType.TIMESTAMP_MS: UTC_MICROS,  # epoch milliseconds in the JSON, a timestamp here
}

for _topic in TOPICS.values():
    assert EXTRA_COLUMN not in _topic.field_names, f"{_topic.name} has a field named extra"


def lake_schema(topic: Topic) -> pa.Schema:
    """The columns of a topic's data files."""
    return pa.schema(
        [
            *(pa.field(f.name, _LAKE_TYPES[f.type]) for f in topic.fields),
            pa.field("kafka_partition", pa.int32()),
            pa.field("kafka_offset", pa.int64()),
            pa.field("kafka_timestamp", UTC_MICROS),
            pa.field("ingested_at", UTC_MICROS, nullable=False),
            pa.field(EXTRA_COLUMN, pa.string()),
        ]
    )


QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string()),
        pa.field("kafka_partition", pa.int32()),
        pa.field("kafka_offset", pa.int64()),
        pa.field("kafka_timestamp", UTC_MICROS),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("reason", pa.string()),
        pa.field("ingested_at", UTC_MICROS, nullable=False),
    ]
)


def table_names() -> tuple[str, ...]:
    """Every table of the lake: the topics', then the quarantine."""
    return (*TOPICS, QUARANTINE)


def arrow_schema(table: str) -> pa.Schema:
    return QUARANTINE_SCHEMA if table == QUARANTINE else lake_schema(TOPICS[table])


def iceberg_schema(table: str) -> Any:
    """The table's Iceberg schema: the Arrow schema's columns, all optional (a new
    column must be optional for old files), ids 1..n."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import (
        BinaryType,
        BooleanType,
        DoubleType,
        IntegerType,
        LongType,
        NestedField,
        StringType,
        TimestamptzType,
    )

    types = {
        pa.string(): StringType(),
        pa.int32(): IntegerType(),
        pa.int64(): LongType(),
        pa.float64(): DoubleType(),
        pa.bool_(): BooleanType(),
        UTC_MICROS: TimestamptzType(),
        pa.binary(): BinaryType(),
    }
    fields = [
        NestedField(i, f.name, types[f.type], required=False)
        for i, f in enumerate(arrow_schema(table), start=1)
    ]
    return Schema(*fields)


def partition_spec(table: str, schema: Any) -> Any:
    """Topics: the hour of ``ts``. The quarantine: its topic and ingestion day."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import DayTransform, HourTransform, IdentityTransform

    def source(name: str) -> int:
        return int(schema.find_field(name).field_id)

    if table == QUARANTINE:
        return PartitionSpec(
            PartitionField(source("topic"), 1000, IdentityTransform(), "topic"),
            PartitionField(source("ingested_at"), 1001, DayTransform(), "ingested_day"),
        )
    return PartitionSpec(PartitionField(source("ts"), 1000, HourTransform(), "ts_hour"))
