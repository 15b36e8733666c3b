"""The ``musify_kafka`` data source itself: ``KafkaSource`` (the native ``kafka``
format's columns, ``SCHEMA``), which Spark asks for a ``KafkaStreamReader``
(``reader``), and ``register``.

Options are parsed by ``options``. The package docstring lists every part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql.datasource import DataSource, DataSourceStreamReader
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from musify.errors import UsageError
from musify.stream.kafka_source.options import FORMAT, parse_options
from musify.stream.kafka_source.ranges import RANGES_DDL, RANGES_SCHEMA
from musify.stream.kafka_source.reader import KafkaStreamReader

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The native ``kafka`` format's columns, in its order.
SCHEMA = StructType(
    [
        StructField("key", BinaryType()),
        StructField("value", BinaryType()),
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("timestamp", TimestampType()),
        StructField("timestampType", IntegerType()),
    ]
)
SCHEMA_DDL = (
    "key binary, value binary, topic string, partition int, offset long, "
    "timestamp timestamp, timestampType int"
)


def _same_schema(a: StructType, b: StructType) -> bool:
    return [(f.name, f.dataType) for f in a.fields] == [(f.name, f.dataType) for f in b.fields]


class KafkaSource(DataSource):
    """Spark data source ``musify_kafka``: Kafka topics as a stream, like ``kafka``
    (with ``output=ranges``: the offset ranges only, ``ranges``)."""

    @classmethod
    def name(cls) -> str:
        return FORMAT

    def schema(self) -> str:
        # bad options fail at load(), not at start()
        return RANGES_DDL if parse_options(self.options).output == "ranges" else SCHEMA_DDL

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        opts = parse_options(self.options)
        ranges = opts.output == "ranges"
        fixed, ddl = (RANGES_SCHEMA, RANGES_DDL) if ranges else (SCHEMA, SCHEMA_DDL)
        if not _same_schema(schema, fixed):
            raise UsageError(
                f"{FORMAT} source has a fixed schema ({ddl}) and cannot be read "
                f"with another one ({schema.simpleString()})"
            )
        return KafkaStreamReader(opts)


def register(spark: SparkSession) -> None:
    """Make ``spark.readStream.format("musify_kafka")`` available in this session."""
    spark.dataSource.register(KafkaSource)
