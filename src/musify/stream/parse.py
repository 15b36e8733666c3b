"""From Kafka records to lake rows: parse, validate, quarantine.

Every Spark representation here is derived from ``musify.events``: the JSON schema
``from_json`` parses with, the lake columns, and the rules that send a message to the
quarantine. The input has the columns of Spark's native ``kafka`` format (key, value,
topic, partition, offset, timestamp, timestampType), whichever source produced it.

A message is quarantined, with its raw bytes, the reason and its Kafka coordinates,
when it is not UTF-8, not a JSON object, has a field of the wrong type, or lacks a
required field. Nothing is dropped: every input row becomes exactly one lake row or one
quarantine row.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from musify.events import TOPICS, FieldType, Topic

CORRUPT = "_corrupt"
#: Columns every lake row carries besides the event's own fields.
KAFKA_COLUMNS = ("kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_at")
PARTITION_COLUMNS = ("date", "hour")

_JSON_TYPES: dict[FieldType, T.DataType] = {
    FieldType.STRING: T.StringType(),
    FieldType.INT: T.IntegerType(),
    FieldType.LONG: T.LongType(),
    FieldType.DOUBLE: T.DoubleType(),
    FieldType.BOOLEAN: T.BooleanType(),
    FieldType.TIMESTAMP_MS: T.LongType(),  # epoch milliseconds in the JSON
}
_LAKE_TYPES: dict[FieldType, T.DataType] = {
    **_JSON_TYPES,
    FieldType.TIMESTAMP_MS: T.TimestampType(),  # a real timestamp in the lake
}


def json_schema(topic: Topic) -> T.StructType:
    """The schema ``from_json`` parses a topic's messages with (plus the corrupt column)."""
    fields = [T.StructField(f.name, _JSON_TYPES[f.type], True) for f in topic.fields]
    return T.StructType([*fields, T.StructField(CORRUPT, T.StringType(), True)])


def lake_schema(topic: Topic) -> T.StructType:
    """The columns of a topic's Parquet files (partition columns come from the path)."""
    fields = [T.StructField(f.name, _LAKE_TYPES[f.type], not f.required) for f in topic.fields]
    return T.StructType(
        [
            *fields,
            T.StructField("kafka_partition", T.IntegerType(), False),
            T.StructField("kafka_offset", T.LongType(), False),
            T.StructField("kafka_timestamp", T.TimestampType(), True),
            T.StructField("ingested_at", T.TimestampType(), False),
        ]
    )


QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("kafka_partition", T.IntegerType(), False),
        T.StructField("kafka_offset", T.LongType(), False),
        T.StructField("kafka_timestamp", T.TimestampType(), True),
        T.StructField("key", T.BinaryType(), True),
        T.StructField("value", T.BinaryType(), True),
        T.StructField("reason", T.StringType(), False),
        T.StructField("ingested_at", T.TimestampType(), False),
    ]
)


def _reason(topic: Topic, p: Column) -> Column:
    """Why a parsed message is unusable, or NULL when it is fine. First reason wins.

    The map parse that names a wrongly typed field runs only for the rare rows
    ``from_json`` already flagged as corrupt.
    """
    raw_map = F.from_json(F.col("value").cast("string"), T.MapType(T.StringType(), T.StringType()))
    corrupt = F.when(raw_map.isNull(), F.lit("not a JSON object"))
    for f in topic.fields:
        corrupt = corrupt.when(
            F.map_contains_key(raw_map, f.name) & raw_map[f.name].isNotNull() & p[f.name].isNull(),
            F.lit(f"wrong type for field {f.name} ({f.type.value})"),
        )
    corrupt = corrupt.otherwise(F.lit("not valid JSON for the schema"))
    expr = F.when(~F.is_valid_utf8(F.col("value")), F.lit("not UTF-8"))
    expr = expr.when(p.isNull(), F.lit("not a JSON object"))
    expr = expr.when(p[CORRUPT].isNotNull(), corrupt)
    for f in topic.fields:
        if f.required:
            expr = expr.when(p[f.name].isNull(), F.lit(f"missing required field {f.name}"))
    return expr


def _parsed_column(topic: Topic) -> str:
    return f"parsed_{topic.name}"


def parse_batch(df: DataFrame) -> DataFrame:
    """Parse every record once with its topic's schema; persist the result.

    The caller must persist what this returns: the cache is also the barrier that keeps
    Spark from inlining ``from_json`` into every filter and column that uses it (which
    parses each message dozens of times).
    """
    text = F.col("value").cast("string")
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
    return df.select(
        "key",
        "value",
        "topic",
        "partition",
        "offset",
        "timestamp",
        F.current_timestamp().alias("ingested_at"),
        *[
            F.when(F.col("topic") == t.name, F.from_json(text, json_schema(t), options)).alias(
                _parsed_column(t)
            )
            for t in TOPICS.values()
        ],
    )


def _quarantine_columns(topic: Column) -> list[Column]:
    return [
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("key"),
        F.col("value"),
        F.col("reason"),
        F.col("ingested_at"),
        topic.alias("topic"),
        F.date_format("ingested_at", "yyyy-MM-dd").alias("date"),
    ]


def split_topic(parsed: DataFrame, topic: Topic) -> tuple[DataFrame, DataFrame]:
    """(lake rows, quarantine rows) of one topic's records in a ``parse_batch`` result."""
    p = F.col(_parsed_column(topic))
    rows = parsed.where(F.col("topic") == topic.name).withColumn("reason", _reason(topic, p))
    cols = []
    for f in topic.fields:
        c = p[f.name]
        if f.type is FieldType.TIMESTAMP_MS:
            c = F.timestamp_millis(c)
        cols.append(c.cast(_LAKE_TYPES[f.type]).alias(f.name))
    good = rows.where(F.col("reason").isNull()).select(
        *cols,
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("ingested_at"),
    )
    good = good.withColumn("date", F.date_format("ts", "yyyy-MM-dd")).withColumn(
        "hour", F.date_format("ts", "HH")
    )
    bad = rows.where(F.col("reason").isNotNull()).select(*_quarantine_columns(F.lit(topic.name)))
    return good, bad


def split_batch(parsed: DataFrame) -> tuple[dict[str, DataFrame], DataFrame]:
    """Per topic, the lake rows; and all quarantined rows of a ``parse_batch`` result."""
    goods: dict[str, DataFrame] = {}
    quarantine: DataFrame | None = None
    for name, topic in TOPICS.items():
        good, bad = split_topic(parsed, topic)
        goods[name] = good
        quarantine = bad if quarantine is None else quarantine.unionByName(bad)
    # Records of topics we do not know cannot be parsed: quarantine them too.
    stray = parsed.where(~F.col("topic").isin(list(TOPICS))).withColumn(
        "reason", F.lit("unknown topic")
    )
    assert quarantine is not None
    return goods, quarantine.unionByName(stray.select(*_quarantine_columns(F.col("topic"))))
