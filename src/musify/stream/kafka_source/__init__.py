"""``musify_kafka``: a Kafka source for Spark Structured Streaming, built on confluent-kafka.

Spark's own ``kafka`` format needs the spark-sql-kafka jars, which cannot be downloaded
here; this Python data source (``pyspark.sql.datasource``) stands in for it with the same
columns and option names, so the stream job has one code path whichever it uses::

    register(spark)
    df = (spark.readStream.format("musify_kafka")
          .option("kafka.bootstrap.servers", "127.0.0.1:9092")
          .option("subscribe", "listen_events,page_view_events")
          .load())

Columns (exactly the native format's): ``key binary, value binary, topic string,
partition int, offset long, timestamp timestamp, timestampType int``.

Options (case-insensitive, as in Spark):

- ``kafka.bootstrap.servers`` (required) and ``subscribe`` (required, comma-separated);
- ``startingOffsets``: ``earliest`` (default) or ``latest``; only for a new query, a
  restarted one continues from its checkpoint;
- ``maxOffsetsPerTrigger``: at most this many offsets per micro-batch, shared fairly
  (max-min) between the partitions that have data;
- ``failOnDataLoss``: ``true`` (default) stops the query with a ``KafkaDataLossError``
  when the broker no longer has records the checkpoint says are next; ``false`` logs a
  warning and continues from what the broker has;
- ``kafkaConsumer.pollTimeoutMs``: how long a task waits for records it was promised
  (default 120000, as in Spark);
- ``output``: ``records`` (default, the columns above) or ``ranges``: one row per
  offset range a task was given (``topic string, partition int, start_offset long,
  end_offset long, topic_id string``), for a next stage that reads the records itself
  with ``read_ranges`` in the same task (the stream job does: see ``ranges``);
- any other ``kafka.*`` option goes to the confluent-kafka (librdkafka) client without
  the prefix, e.g. ``kafka.isolation.level`` or ``kafka.security.protocol``. Offsets
  are Spark's, so ``kafka.enable.auto.commit``, ``kafka.auto.offset.reset`` and
  ``kafka.enable.partition.eof`` are refused.

Offsets, kept in Spark's checkpoint, are ``{topic: {str(partition): next_offset}}``
plus ``"$topic_ids": {topic: id}`` (no topic name can contain ``$``). The ids catch a
topic that was created again, e.g. by a restarted memory-only broker, even when it
already holds more records than the checkpoint expects (offsets alone cannot tell);
checkpoints written without ids still load. The progress's ``latestOffset`` also says
when the ends were fetched (``$fetched_at``, see ``reportLatestOffset``).
Each micro-batch reads ``[start, end)`` of every partition with new records, split into
ranges of at most ``SPLIT_OFFSETS`` offsets, each read on an executor by its own
consumer (``assign()``, no group join, nothing committed to Kafka) and returned as
Arrow record batches. Ranges shorter than ``PACK_OFFSETS`` are packed together into one
Spark task (``KafkaInputGroup``), up to ``PACK_OFFSETS`` offsets each: every task has a
fixed cost (Python workers, consumers, topic id checks), which dominates a small range,
and a live micro-batch of a few thousand records is then one task, not one per Kafka
partition. Input partitions come largest first, so the small ones fill the end of the
batch on the cores the large ones leave free.

Where a partition ends (see ``_OffsetProbe``): the Kafka ListOffsets(latest) answer is
not trusted alone, because the local Tansu broker answers it wrongly (in memory: the
last batch's base offset + 1; on disk: 1); fetch responses' high watermarks decide.

Parts (one source over several small modules; each one's docstring says more):

- ``options``: ``SourceOptions`` and ``parse_options``; the format name, the Kafka
  client timeouts and the loggers the other parts share;
- ``offsets``: the checkpointed offsets (``to_offsets``, ``from_offsets``,
  ``topic_ids_of``, the ``$`` keys ``TOPIC_IDS`` and ``FETCHED_AT``) and
  ``fair_limit`` (``maxOffsetsPerTrigger``);
- ``partitions``: ``KafkaInputPartition`` and ``KafkaInputGroup``, what one Spark task
  reads; ``split_range`` and ``pack_ranges`` (``SPLIT_OFFSETS``, ``PACK_OFFSETS``);
- ``loss``: data loss (``KafkaDataLossError``, ``DATA_LOSS``, ``data_loss_message``),
  topic ids through an AdminClient (``_describe_topic_ids``, ``_recreated``), the
  Kafka error helpers and ``KafkaSourceError``;
- ``probe``: ``_OffsetProbe``, the driver's consumer that finds where partitions begin
  and end, and its ``_Snapshot``;
- ``reader``: ``KafkaStreamReader``, which plans micro-batches on the driver;
- ``consume``: what a task runs (``consume_range``, ``to_record_batch``,
  ``ARROW_SCHEMA``, ``BATCH_ROWS``), with the task's topic id and data-loss checks;
- ``ranges``: ``output=ranges`` (``RANGES_SCHEMA``, ``ranges_batch``) and
  ``read_ranges``, which reads such rows' records where they are consumed;
- ``source``: ``KafkaSource`` (``SCHEMA``, ``SCHEMA_DDL``) and ``register``.

Tunables are read where they are defined (e.g. ``consume.LOSS_GRACE``,
``probe.PROBE_TIMEOUT``, ``options.METADATA_TIMEOUT``): patch them there.
"""

from __future__ import annotations

from musify.stream.kafka_source.consume import ARROW_SCHEMA, consume_range
from musify.stream.kafka_source.consume import BATCH_ROWS as BATCH_ROWS
from musify.stream.kafka_source.consume import to_record_batch as to_record_batch
from musify.stream.kafka_source.loss import DATA_LOSS, KafkaDataLossError, KafkaSourceError
from musify.stream.kafka_source.offsets import (
    FETCHED_AT,
    TOPIC_IDS,
    fair_limit,
    from_offsets,
    to_offsets,
    topic_ids_of,
)
from musify.stream.kafka_source.offsets import META as META
from musify.stream.kafka_source.offsets import TP as TP
from musify.stream.kafka_source.offsets import Offsets as Offsets
from musify.stream.kafka_source.options import FORMAT, SourceOptions, parse_options
from musify.stream.kafka_source.partitions import PACK_OFFSETS as PACK_OFFSETS
from musify.stream.kafka_source.partitions import SPLIT_OFFSETS as SPLIT_OFFSETS
from musify.stream.kafka_source.partitions import (
    KafkaInputGroup,
    KafkaInputPartition,
    pack_ranges,
    split_range,
)
from musify.stream.kafka_source.partitions import _size as _size
from musify.stream.kafka_source.ranges import RANGES_DDL, RANGES_SCHEMA, read_ranges
from musify.stream.kafka_source.reader import KafkaStreamReader
from musify.stream.kafka_source.source import SCHEMA, SCHEMA_DDL, KafkaSource, register

__all__ = [
    "ARROW_SCHEMA",
    "DATA_LOSS",
    "FETCHED_AT",
    "FORMAT",
    "RANGES_DDL",
    "RANGES_SCHEMA",
    "SCHEMA",
    "SCHEMA_DDL",
    "TOPIC_IDS",
    "KafkaDataLossError",
    "KafkaInputGroup",
    "KafkaInputPartition",
    "KafkaSource",
    "KafkaSourceError",
    "KafkaStreamReader",
    "SourceOptions",
    "consume_range",
    "fair_limit",
    "from_offsets",
    "pack_ranges",
    "parse_options",
    "read_ranges",
    "register",
    "split_range",
    "to_offsets",
    "topic_ids_of",
]
