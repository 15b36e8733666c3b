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
not trusted alone, because the local Tansu broker answers it wrongly.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)
from pyspark.sql.types import (
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from musify.errors import BrokerError, MusifyError, UsageError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)
#: librdkafka's own log lines from the source's consumers.
client_log = logging.getLogger("musify.stream.kafka_source.librdkafka")

FORMAT = "musify_kafka"

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
#: What Spark expects from ``read()`` for SCHEMA, field for field (its
#: ``to_arrow_schema(SCHEMA, timezone="UTC")``).
ARROW_SCHEMA = pa.schema(
    [
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("timestampType", pa.int32()),
    ]
)

#: An offset range longer than this is read by several Spark tasks.
SPLIT_OFFSETS = 200_000
#: Ranges shorter than this are packed together into one Spark task, up to this many
#: offsets per task (a task costs about 0.1 s more than its records on 2 cores).
PACK_OFFSETS = 50_000
#: Rows per Arrow record batch handed to Spark.
BATCH_ROWS = 4096
#: Default of ``kafkaConsumer.pollTimeoutMs`` (Spark's default, spark.network.timeout).
POLL_TIMEOUT_MS = 120_000
#: Seconds to wait for the broker's metadata and ListOffsets answers.
METADATA_TIMEOUT = 10.0
#: Seconds the driver waits for the fetch responses that say where partitions end.
PROBE_TIMEOUT = 5.0
#: Seconds the probe keeps waiting for end-of-partition once every partition answered.
PROBE_SETTLE = 0.3
#: Seconds a task waits before it believes the broker has fewer records than planned
#: (a leader change can lower the high watermark for a moment).
LOSS_GRACE = 2.0

#: Marks the messages of data-loss errors; the stream job can look for it.
DATA_LOSS = "Kafka data loss"
_RESET_HINT = (
    "The lost records cannot be recovered. To continue from what the broker has now, "
    "restart with --reset-on-data-loss (source option failOnDataLoss=false); the loss "
    "is then logged as a warning."
)

_OPTIONS = (
    "kafka.bootstrap.servers",
    "subscribe",
    "startingOffsets",
    "maxOffsetsPerTrigger",
    "failOnDataLoss",
    "kafkaConsumer.pollTimeoutMs",
)
_NATIVE_ONLY = {
    "subscribepattern": "subscribe with a comma-separated list of topics",
    "assign": "subscribe with a comma-separated list of topics",
    "endingoffsets": "a streaming query (trigger availableNow to stop at the end)",
    "startingtimestamp": "startingOffsets",
    "startingoffsetsbytimestamp": "startingOffsets",
    "includeheaders": "the native format (headers are not read)",
    "minpartitions": "the default split (a task per 200,000 offsets; short ranges share one)",
}
#: Consumer settings an AdminClient rejects or ignores.
_CONSUMER_ONLY = frozenset(
    {
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.partition.eof",
        "auto.offset.reset",
        "isolation.level",
        "queued.min.messages",
        "fetch.wait.max.ms",
        "allow.auto.create.topics",
    }
)
#: librdkafka settings the source owns: offsets live in Spark's checkpoint.
_OWNED = {
    "enable.auto.commit": "offsets are kept in Spark's checkpoint",
    "auto.offset.reset": "use startingOffsets; lost offsets follow failOnDataLoss",
    "enable.partition.eof": "the source needs end-of-partition events",
    "enable.auto.offset.store": "offsets are kept in Spark's checkpoint",
}
_TOPIC_GONE = frozenset(
    getattr(KafkaError, name)
    for name in (
        "UNKNOWN_TOPIC_OR_PART",
        "_UNKNOWN_TOPIC",
        "_UNKNOWN_PARTITION",
        "UNKNOWN_TOPIC_ID",
    )
    if hasattr(KafkaError, name)
)

TP = tuple[str, int]
Offsets = dict[str, Any]  # {topic: {str(partition): offset}}, plus "$..." metadata keys

#: Offsets' keys that are not topics start with this (never valid in a topic name).
META = "$"
#: In ``reportLatestOffset``: when the source asked the broker for these offsets (ISO
#: UTC), present only when every partition's end was confirmed by a fetch, so that
#: every record the broker acknowledged before that instant lies below them.
FETCHED_AT = "$fetched_at"
#: In offsets: ``{topic: topic id}``. A memory-only broker that restarts, or a topic
#: deleted and created again, gives the topic a new id and restarts its offsets at 0;
#: if it then holds more records than the checkpoint expects, offsets alone cannot
#: tell, the id can.
TOPIC_IDS = "$topic_ids"
#: The id Kafka uses for "no id" (brokers before topic ids).
_NO_TOPIC_ID = "AAAAAAAAAAAAAAAAAAAAAA"


class KafkaDataLossError(MusifyError):
    """The broker no longer has records the query was about to read."""


class KafkaSourceError(MusifyError):
    """The source cannot read what it planned (other than data loss)."""


# -- options --------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceOptions:
    """The source's options, validated."""

    bootstrap_servers: str
    topics: tuple[str, ...]
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = None
    fail_on_data_loss: bool = True
    poll_timeout_ms: int = POLL_TIMEOUT_MS
    #: ``kafka.*`` options other than bootstrap.servers, without the prefix.
    client_config: dict[str, str] = field(default_factory=dict)

    def consumer_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka settings for an assign-only consumer that commits nothing."""
        conf: dict[str, Any] = {
            "client.id": "musify-kafka-source",
            # Required by confluent-kafka; never joined (assign() only), nothing committed.
            "group.id": "musify-kafka-source",
            **self.client_config,
            "bootstrap.servers": self.bootstrap_servers,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            # An offset the broker no longer has must surface as an error, never be
            # skipped silently: failOnDataLoss decides.
            "auto.offset.reset": "error",
            "logger": client_log,
        }
        conf.update(overrides)
        return conf


def _option_error(problem: str) -> UsageError:
    return UsageError(f"{FORMAT} source: {problem}")


def parse_options(options: Mapping[str, str]) -> SourceOptions:
    """Validate the source's options (keys case-insensitive, as Spark passes them)."""
    known = {name.lower(): name for name in _OPTIONS}
    values: dict[str, str] = {}
    client: dict[str, str] = {}
    for raw_key, raw_value in options.items():
        key = raw_key.lower()
        value = "" if raw_value is None else str(raw_value)
        if key in known:
            values[known[key]] = value.strip()
        elif key.startswith("kafka."):
            name = raw_key[len("kafka.") :]
            if name.lower() in _OWNED:
                raise _option_error(f"option {raw_key!r} is not supported ({_OWNED[name.lower()]})")
            client[name] = value
        elif key in _NATIVE_ONLY:
            raise _option_error(
                f"option {raw_key!r} of Spark's kafka format is not supported; "
                f"use {_NATIVE_ONLY[key]}"
            )
        else:
            raise _option_error(
                f"unknown option {raw_key!r} (known: {', '.join(_OPTIONS)}, and kafka.* "
                "options for the Kafka client)"
            )
    bootstrap = values.get("kafka.bootstrap.servers", "")
    if not bootstrap:
        raise _option_error("option 'kafka.bootstrap.servers' is required")
    topics = tuple(dict.fromkeys(t.strip() for t in values.get("subscribe", "").split(",")))
    topics = tuple(t for t in topics if t)
    if not topics:
        raise _option_error("option 'subscribe' is required: a comma-separated list of topics")
    starting = values.get("startingOffsets", "earliest").lower()
    if starting not in ("earliest", "latest"):
        raise _option_error(
            f"option 'startingOffsets' must be 'earliest' or 'latest', not "
            f"{values['startingOffsets']!r}"
        )
    max_offsets: int | None = None
    if values.get("maxOffsetsPerTrigger"):
        max_offsets = _positive_int("maxOffsetsPerTrigger", values["maxOffsetsPerTrigger"])
    fail = values.get("failOnDataLoss", "true").lower()
    if fail not in ("true", "false"):
        raise _option_error(
            f"option 'failOnDataLoss' must be 'true' or 'false', not {values['failOnDataLoss']!r}"
        )
    poll_timeout = POLL_TIMEOUT_MS
    if values.get("kafkaConsumer.pollTimeoutMs"):
        poll_timeout = _positive_int(
            "kafkaConsumer.pollTimeoutMs", values["kafkaConsumer.pollTimeoutMs"]
        )
    return SourceOptions(
        bootstrap_servers=bootstrap,
        topics=topics,
        starting_offsets=starting,
        max_offsets_per_trigger=max_offsets,
        fail_on_data_loss=fail == "true",
        poll_timeout_ms=poll_timeout,
        client_config=client,
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _positive_int(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _option_error(f"option {name!r} must be a positive integer, not {text!r}") from None
    if value < 1:
        raise _option_error(f"option {name!r} must be a positive integer, not {text!r}")
    return value


# -- offsets ---------------------------------------------------------------------------


def to_offsets(positions: Mapping[TP, int], topic_ids: Mapping[str, str] | None = None) -> Offsets:
    """``{(topic, partition): offset}`` as the checkpointed JSON form, in a canonical
    order (Spark compares offsets by their JSON text), with the ids of those topics
    the broker told (``$topic_ids``)."""
    out: Offsets = {}
    for (topic, partition), offset in sorted(positions.items()):
        out.setdefault(topic, {})[str(partition)] = int(offset)
    ids = {t: topic_ids[t] for t in sorted(out) if topic_ids and topic_ids.get(t)}
    if ids:
        out[TOPIC_IDS] = ids
    return out


def topic_ids_of(offsets: Mapping[str, Any] | None) -> dict[str, str]:
    """The topic ids an offset recorded; empty for offsets written before ids were
    kept (such checkpoints still load; their next offsets carry ids)."""
    ids = (offsets or {}).get(TOPIC_IDS)
    return {str(t): str(i) for t, i in ids.items()} if isinstance(ids, dict) else {}


def from_offsets(offsets: Mapping[str, Any] | None) -> dict[TP, int]:
    """The checkpointed JSON form back to ``{(topic, partition): offset}`` (keys that
    start with ``$`` carry metadata: no Kafka topic name can contain a ``$``)."""
    out: dict[TP, int] = {}
    for topic, parts in (offsets or {}).items():
        if topic.startswith(META):
            continue
        for partition, offset in dict(parts).items():
            out[(str(topic), int(partition))] = int(offset)
    return out


def fair_limit(froms: Mapping[TP, int], ends: Mapping[TP, int], max_offsets: int) -> dict[TP, int]:
    """End offsets that admit at most ``max_offsets`` offsets in total, shared max-min
    fairly: every partition gets the same share unless it has fewer available, whose
    leftover goes to the others. A remainder too small to share goes to the partitions
    furthest behind, so none starves when the limit is below the number of partitions.
    """
    avail = {tp: max(0, ends[tp] - froms[tp]) for tp in ends}
    if sum(avail.values()) <= max_offsets:
        return dict(ends)
    alloc = dict.fromkeys(avail, 0)
    remaining = max_offsets
    active = sorted((tp for tp, n in avail.items() if n > 0), key=lambda tp: (avail[tp], tp))
    while active and remaining > 0:
        share = remaining // len(active)
        if share == 0:
            behind = sorted(active, key=lambda tp: (-(avail[tp] - alloc[tp]), tp))
            for tp in behind[:remaining]:
                alloc[tp] += 1
            break
        give = min(share, min(avail[tp] - alloc[tp] for tp in active))
        for tp in active:
            alloc[tp] += give
        remaining -= give * len(active)
        active = [tp for tp in active if alloc[tp] < avail[tp]]
    return {tp: froms[tp] + alloc[tp] for tp in ends}


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


@dataclass(frozen=True)
class _Loss:
    tp: TP
    expected: int
    broker_has: str

    def text(self) -> str:
        topic, partition = self.tp
        return (
            f"topic {topic} partition {partition}: expected offset {self.expected} "
            f"(the next one after the checkpoint), but {self.broker_has}"
        )


def _recreated(topic: str, old_id: str, new_id: str) -> str:
    return (
        f"topic {topic} is not the one the checkpoint read: its topic id is {new_id} on "
        f"the broker, {old_id} in the checkpoint (the topic was created again, and its "
        "offsets restarted)"
    )


def _new_admin(opts: SourceOptions, role: str) -> Any:
    from confluent_kafka.admin import AdminClient

    # The consumer's own client settings (security, timeouts), minus what only a
    # consumer understands.
    conf = {
        k: v
        for k, v in opts.consumer_config(**{"client.id": f"musify-kafka-source-{role}"}).items()
        if k not in _CONSUMER_ONLY
    }
    try:
        return AdminClient(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        raise _option_error(f"invalid Kafka client options: {_error_text(exc)}") from None


def _describe_topic_ids(admin: Any, topics: Sequence[str], timeout: float) -> dict[str, str]:
    """Ids of the topics that exist; empty where the broker cannot tell (no ids before
    Kafka 2.8, or an error: the id check is then skipped, never guessed)."""
    if not topics:
        return {}
    from confluent_kafka import TopicCollection

    out: dict[str, str] = {}
    try:
        futures = admin.describe_topics(TopicCollection(list(topics)), request_timeout=timeout)
    except (KafkaException, ValueError, TypeError, AttributeError) as exc:
        log.debug("describe_topics failed: %s", _error_text(exc))
        return out
    for topic, future in futures.items():
        try:
            topic_id = str(future.result(timeout=timeout + 5).topic_id)
        except Exception as exc:  # any failure: no id, so no check (never a guess)
            log.debug("no topic id for %s: %s", topic, _error_text(exc))
            continue
        if topic_id and topic_id != _NO_TOPIC_ID and topic_id != "None":
            out[topic] = topic_id
    return out


def data_loss_message(losses: Sequence[_Loss], bootstrap: str) -> str:
    shown = "; ".join(loss.text() for loss in losses[:10])
    more = f" (and {len(losses) - 10} more partitions)" if len(losses) > 10 else ""
    return (
        f"{DATA_LOSS} at {bootstrap}: {shown}{more}. The broker lost records that were "
        f"never read (was it restarted? the local broker keeps topics in memory only). "
        f"{_RESET_HINT}"
    )


# -- where partitions end (driver) ----------------------------------------------------


@dataclass
class _Snapshot:
    """What the broker has: per partition the earliest offset and where it ends."""

    lows: dict[TP, int]
    ends: dict[TP, int]
    #: Partitions whose end came from a fetch response (not only from ListOffsets).
    confirmed: set[TP]
    #: Subscribed topics the broker does not have.
    missing: set[str]
    partition_counts: dict[str, int]
    #: Wall-clock time (epoch s) before the first request of this snapshot.
    fetched_at: float = 0.0
    #: Topic ids, for the topics whose id the broker told.
    topic_ids: dict[str, str] = field(default_factory=dict)
    #: Partitions whose end a fetch reported (end-of-partition): there the end covers
    #: every record the broker had acknowledged at ``fetched_at``.
    exact: set[TP] = field(default_factory=set)

    def complete(self) -> bool:
        """Does every end cover all records acknowledged before ``fetched_at``?"""
        return all(tp in self.exact for tp in self.ends)


class _OffsetProbe:
    """The driver's consumer, which finds where partitions begin and end.

    Why not simply ListOffsets (``get_watermark_offsets(cached=False)``)? The local
    broker, Tansu 0.6, answers ListOffsets(latest) with the base offset of the last
    record batch + 1, so with batched producers it undercounts, by up to a whole batch
    (measured: a partition holding 333 records in one batch answered 1). Its ListOffsets
    under read_committed answers 0 while a transaction is open. Fetch responses are
    right: they carry the true high watermark (librdkafka's cached
    ``get_watermark_offsets(cached=True)`` after a fetch) and the last stable offset.
    Tansu also answers a fetch beyond the end with an empty response, not
    OFFSET_OUT_OF_RANGE, and does not filter aborted transactions under
    read_committed (aborted records and control records leave holes in the offsets).

    So the probe asks ListOffsets for (low, L), assigns every partition at L and
    fetches: with ``enable.partition.eof`` librdkafka reports end-of-partition at the
    offset where the fetch reached the end *for this consumer's isolation level* — the
    high watermark under read_uncommitted, the last stable offset under read_committed
    (librdkafka's default). Its cached high watermark would be wrong there: it is the
    high watermark even under read_committed, and a task told to read up to it would
    wait for an open transaction. The end is max(L, end-of-partition offset, last
    record seen + 1); records fetched here (at most the last batch on Tansu, none on
    Kafka, where L is already the end) are dropped. On Apache Kafka L is right and the
    fetch only confirms it. A snapshot of 12 partitions takes 25-60 ms here.
    """

    def __init__(self, opts: SourceOptions) -> None:
        self.opts = opts
        self._consumer: Any = None
        self._admin: Any = None

    def _new_consumer(self, role: str, **overrides: Any) -> Any:
        conf = self.opts.consumer_config(
            **{"client.id": f"musify-kafka-source-{role}", "allow.auto.create.topics": False},
            **overrides,
        )
        try:
            return Consumer(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            raise _option_error(f"invalid Kafka client options: {_error_text(exc)}") from None

    @property
    def consumer(self) -> Any:
        """The long-lived consumer for metadata and ListOffsets (it fetches nothing)."""
        if self._consumer is None:
            self._consumer = self._new_consumer("driver")
        return self._consumer

    def close(self) -> None:
        self._admin = None  # an AdminClient has no close(); dropping it ends its threads
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.close()

    def _unreachable(self, exc: BaseException) -> BrokerError:
        return BrokerError(
            f"cannot reach Kafka at {self.opts.bootstrap_servers} within "
            f"{METADATA_TIMEOUT:g} s ({_error_text(exc)})"
        )

    def low(self, tp: TP) -> int:
        """The earliest offset the broker has for a partition (ListOffsets is right
        there); 0 for a partition that does not exist."""
        marks = self._watermarks(tp, time.monotonic() + METADATA_TIMEOUT)
        return 0 if marks is None else marks[0]

    def _metadata(self, deadline: float) -> Any:
        """Cluster metadata; errors other than "no such topic" (a leader election, a
        topic being created) are retried until ``deadline``."""
        while True:
            try:
                metadata = self.consumer.list_topics(timeout=max(0.1, deadline - time.monotonic()))
            except KafkaException as exc:
                raise self._unreachable(exc) from None
            troubled = [
                (topic, meta.error)
                for topic in self.opts.topics
                if (meta := metadata.topics.get(topic)) is not None
                and meta.error is not None
                and meta.error.code() not in _TOPIC_GONE
            ]
            if not troubled:
                return metadata
            if time.monotonic() >= deadline:
                topic, err = troubled[0]
                raise BrokerError(
                    f"Kafka at {self.opts.bootstrap_servers} cannot describe topic {topic}: "
                    f"{err.str()}"
                )
            time.sleep(0.2)

    def _watermarks(self, tp: TP, deadline: float) -> tuple[int, int] | None:
        """ListOffsets (low, high) of a partition; None if it does not exist; other
        errors are retried until ``deadline``."""
        while True:
            try:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(*tp), timeout=max(0.1, deadline - time.monotonic()), cached=False
                )
                return int(low), int(high)
            except KafkaException as exc:
                if _code(exc) in _TOPIC_GONE:  # deleted since the metadata answer
                    return None
                if time.monotonic() >= deadline:
                    raise self._unreachable(exc) from None
            time.sleep(0.2)

    def snapshot(self) -> _Snapshot:
        fetched_at = time.time()
        deadline = time.monotonic() + METADATA_TIMEOUT
        metadata = self._metadata(deadline)
        snap = _Snapshot({}, {}, set(), set(), {}, fetched_at=fetched_at)
        tps: list[TP] = []
        for topic in self.opts.topics:
            meta = metadata.topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                snap.missing.add(topic)
                continue
            snap.partition_counts[topic] = len(meta.partitions)
            tps.extend((topic, p) for p in sorted(meta.partitions))
        listed: dict[TP, int] = {}
        for tp in tps:
            marks = self._watermarks(tp, deadline)
            if marks is None:
                snap.missing.add(tp[0])
                continue
            low, high = marks
            snap.lows[tp] = low
            listed[tp] = max(high, low)
        for topic in snap.missing:
            for tp in [tp for tp in listed if tp[0] == topic]:
                del listed[tp], snap.lows[tp]
            snap.partition_counts.pop(topic, None)
        snap.ends = dict(listed)
        snap.topic_ids = self.topic_ids(sorted(snap.partition_counts), deadline)
        if listed:
            self._fetch_ends(listed, snap)
        return snap

    @property
    def admin(self) -> Any:
        if self._admin is None:
            self._admin = _new_admin(self.opts, "driver")
        return self._admin

    def topic_ids(self, topics: Sequence[str], deadline: float) -> dict[str, str]:
        return _describe_topic_ids(self.admin, topics, max(0.5, deadline - time.monotonic()))

    def _fetch_ends(self, listed: dict[TP, int], snap: _Snapshot) -> None:
        # A fresh consumer each time: librdkafka reports end-of-partition only once per
        # offset, so a consumer re-assigned where it already saw the end stays silent.
        consumer = self._new_consumer(
            "probe", **{"fetch.wait.max.ms": 10, "queued.min.messages": 1_000}
        )
        consumer.assign([TopicPartition(t, p, off) for (t, p), off in listed.items()])
        eof: dict[TP, int] = {}
        seen: dict[TP, int] = {}
        began = time.monotonic()
        try:
            while len(eof) < len(listed):
                elapsed = time.monotonic() - began
                if elapsed > PROBE_TIMEOUT:
                    break
                if elapsed > PROBE_SETTLE and all(tp in eof or tp in seen for tp in listed):
                    break  # records keep arriving: the last one seen is a fine end
                for msg in consumer.consume(num_messages=10_000, timeout=0.01):
                    tp = (msg.topic(), msg.partition())
                    if tp not in listed:
                        continue
                    err = msg.error()
                    if err is None:
                        seen[tp] = max(seen.get(tp, 0), msg.offset() + 1)
                    elif err.code() == KafkaError._PARTITION_EOF and msg.offset() is not None:
                        eof[tp] = msg.offset()
                    elif err.fatal():
                        raise KafkaSourceError(f"Kafka consumer failed: {err.str()}")
                    else:
                        log.debug("probe: %s[%d]: %s", tp[0], tp[1], err.str())
        finally:
            consumer.close()
        for tp, listed_end in listed.items():
            if tp in eof or tp in seen:
                snap.ends[tp] = max(listed_end, eof.get(tp, 0), seen.get(tp, 0))
                snap.confirmed.add(tp)
                if tp in eof:
                    # The fetch ended at the high watermark of its time (or the last
                    # stable offset), which is after fetched_at: every record acked
                    # before fetched_at lies below it. Records seen alone prove less
                    # (a fetch response may stop short of the end).
                    snap.exact.add(tp)
            else:
                log.debug("probe: no fetch answer for %s[%d] within %g s", *tp, PROBE_TIMEOUT)


# -- the stream reader (driver) -------------------------------------------------------


class KafkaStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Plans micro-batches on the driver; ``read()`` runs on executors.

    Spark pickles this object (before any of the driver methods ran) to run ``read()``
    in its Python workers, so everything driver-side is created lazily.
    """

    def __init__(self, opts: SourceOptions) -> None:
        self.opts = opts
        self._reset()

    def _reset(self) -> None:
        self._probe: _OffsetProbe | None = None
        self._target: _Snapshot | None = None
        self._lows: dict[TP, int] = {}
        self._latest: Offsets | None = None
        self._warned: set[tuple[TP, int]] = set()
        self._warned_missing: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {"opts": self.opts}  # never the driver's consumer

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.opts = state["opts"]
        self._reset()

    @property
    def probe(self) -> _OffsetProbe:
        if self._probe is None:
            self._probe = _OffsetProbe(self.opts)
        return self._probe

    def _snapshot(self) -> _Snapshot:
        snap = self.probe.snapshot()
        self._lows.update(snap.lows)
        self._latest = to_offsets(snap.ends, snap.topic_ids)
        if snap.complete():
            self._latest[FETCHED_AT] = _iso(snap.fetched_at)
        missing = sorted(snap.missing - self._warned_missing)
        if missing:
            self._warned_missing.update(missing)
            log.warning(
                "Kafka at %s has no topic %s (yet); it is read from its earliest offset "
                "once it exists",
                self.opts.bootstrap_servers,
                ", ".join(missing),
            )
        return snap

    # Spark's API -------------------------------------------------------------------

    def initialOffset(self) -> Offsets:
        snap = self._target or self._snapshot()
        chosen = snap.lows if self.opts.starting_offsets == "earliest" else snap.ends
        return to_offsets(chosen, snap.topic_ids)

    def getDefaultReadLimit(self) -> ReadLimit:
        if self.opts.max_offsets_per_trigger is not None:
            return ReadMaxRows(self.opts.max_offsets_per_trigger)
        return ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:
        # The target: everything the broker has now. latestOffset never goes beyond it.
        self._target = self._snapshot()

    def latestOffset(self, start: Offsets, limit: ReadLimit) -> Offsets:
        snap = self._snapshot()
        froms, ends = self._plan(from_offsets(start), snap, topic_ids_of(start))
        if self._target is not None:
            target = self._target.ends
            ends = {
                tp: max(froms[tp], min(end, target[tp])) if tp in target else froms[tp]
                for tp, end in ends.items()
            }
        if isinstance(limit, ReadMaxRows):
            ends = fair_limit(froms, ends, limit.max_rows)
        # An id the broker did not tell this time is carried over, so that a topic
        # recreated meanwhile is still caught once the broker tells again.
        return to_offsets(ends, {**topic_ids_of(start), **snap.topic_ids})

    def reportLatestOffset(self) -> Offsets | None:
        """Where the partitions ended when the last batch was planned (Spark shows it as
        the progress's ``latestOffset``), with ``$fetched_at`` when that is exact: the
        job's watermark comes from it."""
        return self._latest

    def partitions(self, start: Offsets, end: Offsets) -> Sequence[InputPartition]:
        return pack_ranges(self.ranges(start, end))

    def ranges(self, start: Offsets, end: Offsets) -> list[KafkaInputPartition]:
        """The offset ranges ``partitions`` packs into input partitions."""
        starts = from_offsets(start)
        old_ids, new_ids = topic_ids_of(start), topic_ids_of(end)
        result: list[KafkaInputPartition] = []
        for tp, until in from_offsets(end).items():
            begin = starts.get(tp)
            old_id, new_id = old_ids.get(tp[0]), new_ids.get(tp[0])
            if begin is None:  # a partition new since the last batch: from its earliest
                begin = self._low(tp)
            elif old_id and new_id and old_id != new_id:
                # The topic was recreated (failOnDataLoss=false got us here): the new
                # topic is read from its earliest offset.
                self._data_loss([_Loss(tp, begin, _recreated(tp[0], old_id, new_id))])
                begin = self._low(tp)
            elif until < begin:  # a reset after data loss (failOnDataLoss=false)
                self._data_loss(
                    [_Loss(tp, begin, f"the broker's partition ends at offset {until}")]
                )
                begin = self._low(tp)
            elif self._lows.get(tp, begin) > begin:
                low = self._lows[tp]
                self._data_loss([_Loss(tp, begin, f"its earliest offset is {low}")])
                begin = low
            result.extend(
                KafkaInputPartition(tp[0], tp[1], s, e, new_id)
                for s, e in split_range(begin, until)
            )
        return result

    def commit(self, end: Offsets) -> None:
        """Nothing to do: offsets live in Spark's checkpoint, never in Kafka."""

    def stop(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    # planning ----------------------------------------------------------------------

    def _low(self, tp: TP) -> int:
        if tp not in self._lows:
            self._lows[tp] = self.probe.low(tp)
        return self._lows[tp]

    def _plan(
        self, starts: dict[TP, int], snap: _Snapshot, start_ids: Mapping[str, str]
    ) -> tuple[dict[TP, int], dict[TP, int]]:
        """From where to where each partition can be read, after checking ``starts``
        (and the topic ids they were read under) against what the broker has: data
        loss raises, or is logged and skipped over."""
        froms: dict[TP, int] = {}
        ends: dict[TP, int] = {}
        losses: list[_Loss] = []
        subscribed = set(self.opts.topics)
        for tp, begin in starts.items():
            topic = tp[0]
            if topic not in subscribed:
                continue  # no longer subscribed: forgotten
            if topic in snap.missing:
                losses.append(_Loss(tp, begin, f"the broker has no topic {topic}"))
                continue
            if tp not in snap.ends:
                count = snap.partition_counts.get(topic, 0)
                losses.append(
                    _Loss(tp, begin, f"topic {topic} has only {count} partitions on the broker")
                )
                continue
            low, end = snap.lows[tp], snap.ends[tp]
            old_id, new_id = start_ids.get(topic), snap.topic_ids.get(topic)
            if old_id and new_id and old_id != new_id:
                losses.append(_Loss(tp, begin, _recreated(topic, old_id, new_id)))
                froms[tp], ends[tp] = low, end
            elif end < begin and tp not in snap.confirmed:
                froms[tp] = ends[tp] = begin  # unsure where it ends: no new records now
            elif end < begin:
                has = f"offsets {low}..{end - 1}" if end > low else f"no records (next {end})"
                losses.append(_Loss(tp, begin, f"the broker has {has}"))
                froms[tp], ends[tp] = low, end
            elif low > begin:
                losses.append(
                    _Loss(tp, begin, f"the broker's earliest offset is {low} (retention?)")
                )
                froms[tp], ends[tp] = low, end
            else:
                froms[tp], ends[tp] = begin, end
        for tp, end in snap.ends.items():
            if tp not in froms and tp not in starts:
                froms[tp], ends[tp] = snap.lows[tp], end  # new partition: from its earliest
        if losses:
            self._data_loss(losses)
        return froms, ends

    def _data_loss(self, losses: list[_Loss]) -> None:
        if self.opts.fail_on_data_loss:
            raise KafkaDataLossError(data_loss_message(losses, self.opts.bootstrap_servers))
        for loss in losses:
            key = (loss.tp, loss.expected)
            if key in self._warned:
                continue
            self._warned.add(key)
            log.warning(
                "%s at %s: %s; continuing with what the broker has (failOnDataLoss=false)",
                DATA_LOSS,
                self.opts.bootstrap_servers,
                loss.text(),
            )

    # executors -----------------------------------------------------------------------

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        if isinstance(partition, KafkaInputGroup):
            yield from _read_group(self.opts, partition)
            return
        assert isinstance(partition, KafkaInputPartition), type(partition)
        yield from _record_batches(partition, consume_range(self.opts, partition))


def _record_batches(
    part: KafkaInputPartition, chunks: Iterator[list[Message]]
) -> Iterator[pa.RecordBatch]:
    rows: list[Message] = []
    for chunk in chunks:
        rows.extend(chunk)
        if len(rows) >= BATCH_ROWS:
            yield to_record_batch(part.topic, part.partition, rows)
            rows = []
    if rows:
        yield to_record_batch(part.topic, part.partition, rows)


def _read_group(opts: SourceOptions, group: KafkaInputGroup) -> Iterator[pa.RecordBatch]:
    """The ranges of a group one after the other, with one admin client that checks
    the topic ids of all of them before the first read and after the last (as
    ``consume_range`` does for one range)."""
    checked = [p for p in group.parts if p.topic_id and p.end > p.start]
    admin = _new_admin(opts, "task") if checked else None
    if admin is not None:
        _check_topic_ids(opts, admin, checked, at_end=False)
    for part in group.parts:
        yield from _record_batches(part, _consume_range(opts, part))
    if admin is not None:
        _check_topic_ids(opts, admin, checked, at_end=True)


def to_record_batch(topic: str, partition: int, msgs: Sequence[Message]) -> pa.RecordBatch:
    """Records of one partition as an Arrow batch with exactly ARROW_SCHEMA."""
    n = len(msgs)
    stamps = [m.timestamp() for m in msgs]
    millis = np.fromiter((s[1] for s in stamps), dtype=np.int64, count=n)
    # librdkafka's timestamp types (0 none, 1 create, 2 log append) as Kafka's Java ids
    # (-1, 0, 1), which the native format returns.
    kinds = np.fromiter((s[0] for s in stamps), dtype=np.int32, count=n) - 1
    return pa.RecordBatch.from_arrays(
        [
            pa.array([m.key() for m in msgs], pa.binary()),
            pa.array([m.value() for m in msgs], pa.binary()),
            _repeated(topic, n),
            pa.array(np.full(n, partition, dtype=np.int32), pa.int32()),
            pa.array([m.offset() for m in msgs], pa.int64()),
            pa.array(millis * 1000, pa.timestamp("us", tz="UTC")),
            pa.array(kinds, pa.int32()),
        ],
        schema=ARROW_SCHEMA,
    )


def _repeated(text: str, n: int) -> pa.Array:
    """``n`` times the same string, built from buffers (no Python objects, and neither
    pyarrow.compute nor pandas to import on a worker's first call)."""
    data = text.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(data)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data * n))


def consume_range(opts: SourceOptions, part: KafkaInputPartition) -> Iterator[list[Message]]:
    """The records of ``[part.start, part.end)``, in chunks; stops at the end offset.

    When the range was planned with the topic's id, the broker must still have that
    topic before and after the read: a topic recreated meanwhile (a restarted memory
    broker) holds other records at the same offsets, which is data loss.
    """
    admin = _new_admin(opts, "task") if part.topic_id and part.end > part.start else None
    if admin is not None:
        _check_topic_id(opts, admin, part, part.start)
    yield from _consume_range(opts, part)
    if admin is not None:
        _check_topic_id(opts, admin, part, part.end)


def _check_topic_id(opts: SourceOptions, admin: Any, part: KafkaInputPartition, at: int) -> None:
    now = _describe_topic_ids(admin, [part.topic], METADATA_TIMEOUT).get(part.topic)
    if now and part.topic_id and now != part.topic_id:
        _task_data_loss(
            opts, (part.topic, part.partition), at, _recreated(part.topic, part.topic_id, now)
        )


def _check_topic_ids(
    opts: SourceOptions, admin: Any, parts: Sequence[KafkaInputPartition], at_end: bool
) -> None:
    """``_check_topic_id`` for several ranges, one request for all their topics."""
    ids = _describe_topic_ids(admin, sorted({p.topic for p in parts}), METADATA_TIMEOUT)
    for part in parts:
        now = ids.get(part.topic)
        if now and part.topic_id and now != part.topic_id:
            _task_data_loss(
                opts,
                (part.topic, part.partition),
                part.end if at_end else part.start,
                _recreated(part.topic, part.topic_id, now),
            )


def _consume_range(opts: SourceOptions, part: KafkaInputPartition) -> Iterator[list[Message]]:
    """``consume_range`` without the topic id checks.

    The end is reached when a record at or beyond it arrives, or at end-of-partition at
    or beyond it: offsets can have holes (transaction markers, aborted or compacted
    records), so the record at ``end - 1`` may never come. A broker that turns out to
    have fewer records than planned is data loss (``failOnDataLoss``).
    """
    tp = (part.topic, part.partition)
    where = f"topic {part.topic} partition {part.partition}"
    if part.end <= part.start:
        return
    span = part.end - part.start
    consumer = Consumer(
        opts.consumer_config(
            **{"queued.min.messages": max(1_000, min(100_000, span))},
        )
    )
    try:
        position = part.start
        try:
            low, _ = consumer.get_watermark_offsets(
                TopicPartition(*tp), timeout=METADATA_TIMEOUT, cached=False
            )
        except KafkaException as exc:
            if _code(exc) not in _TOPIC_GONE:
                raise BrokerError(
                    f"cannot reach Kafka at {opts.bootstrap_servers} to read {where}: "
                    f"{_error_text(exc)}"
                ) from None
            _task_data_loss(opts, tp, position, "the broker has no such partition")
            return
        if low > position:
            _task_data_loss(opts, tp, position, f"the broker's earliest offset is {low}")
            position = low
            if position >= part.end:
                return
        consumer.assign([TopicPartition(part.topic, part.partition, position)])
        timeout = opts.poll_timeout_ms / 1000
        progress = time.monotonic()
        short_since: float | None = None  # since when the broker seems to end before us
        while True:
            # consume() waits for all num_messages (or the timeout): ask for no more
            # than the range still holds, or the last chunk of every task waits.
            want = max(1, min(BATCH_ROWS, part.end - position))
            msgs = consumer.consume(num_messages=want, timeout=0.5)
            chunk: list[Message] = []
            done = False
            if msgs and _plain(msgs):
                # The common case, records only: no per-record branching (offsets
                # within a partition increase, so the end cuts once).
                last = msgs[-1].offset()
                if last is not None and last < part.end:
                    chunk, position = msgs, last + 1
                    msgs = []
            for msg in msgs:
                err = msg.error()
                offset = msg.offset()
                if err is None:
                    assert offset is not None
                    if offset >= part.end:
                        done = True
                        break
                    chunk.append(msg)
                    position = offset + 1
                    continue
                code = err.code()
                if code == KafkaError._PARTITION_EOF:
                    if offset is not None and offset >= part.end:
                        done = True
                        break
                    short_since = short_since or time.monotonic()
                elif code in _TOPIC_GONE:
                    _task_data_loss(opts, tp, position, "the broker no longer has the partition")
                    done = True
                    break
                elif code == KafkaError._AUTO_OFFSET_RESET:
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(*tp), timeout=METADATA_TIMEOUT, cached=False
                    )
                    _task_data_loss(opts, tp, position, f"the broker has offsets {low}..{high - 1}")
                    if position < low < part.end:
                        position = low
                        consumer.assign([TopicPartition(part.topic, part.partition, low)])
                    else:
                        done = True
                        break
                elif err.fatal():
                    raise KafkaSourceError(f"Kafka consumer failed reading {where}: {err.str()}")
                else:
                    log.debug("reading %s: %s", where, err.str())
            if chunk:
                progress = time.monotonic()
                short_since = None
                yield chunk
            if done or position >= part.end:
                return
            now = time.monotonic()
            if not chunk:
                _, high = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
                if 0 <= high < part.end:  # a fetch said the partition ends before us
                    short_since = short_since or now
                if short_since is not None and now - short_since >= LOSS_GRACE:
                    _task_data_loss(
                        opts,
                        tp,
                        position,
                        f"the broker's partition ends at offset {max(high, 0)}, before the "
                        f"planned end {part.end}",
                    )
                    return
                if now - progress >= timeout:
                    raise KafkaSourceError(
                        f"no records from Kafka at {opts.bootstrap_servers} for {timeout:g} s "
                        f"reading {where} at offset {position} (planned up to {part.end}); "
                        "raise kafkaConsumer.pollTimeoutMs if the broker is just slow"
                    )
    finally:
        consumer.close()


def _plain(msgs: Sequence[Message]) -> bool:
    """Are these all records (no error or end-of-partition event among them)?"""
    return all(m.error() is None for m in msgs)  # `is`: KafkaError's == refuses None


def _task_data_loss(opts: SourceOptions, tp: TP, expected: int, broker_has: str) -> None:
    loss = _Loss(tp, expected, broker_has)
    if opts.fail_on_data_loss:
        raise KafkaDataLossError(data_loss_message([loss], opts.bootstrap_servers))
    log.warning(
        "%s at %s: %s; continuing with what the broker has (failOnDataLoss=false)",
        DATA_LOSS,
        opts.bootstrap_servers,
        loss.text(),
    )


def _code(exc: BaseException) -> Any:
    err = exc.args[0] if exc.args else None
    return err.code() if isinstance(err, KafkaError) else None


def _error_text(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return str(err.str())
    return str(exc) or type(exc).__name__


# -- the data source ------------------------------------------------------------------


def _same_schema(a: StructType, b: StructType) -> bool:
    return [(f.name, f.dataType) for f in a.fields] == [(f.name, f.dataType) for f in b.fields]


class KafkaSource(DataSource):
    """Spark data source ``musify_kafka``: Kafka topics as a stream, like ``kafka``."""

    @classmethod
    def name(cls) -> str:
        return FORMAT

    def schema(self) -> str:
        parse_options(self.options)  # bad options fail at load(), not at start()
        return SCHEMA_DDL

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        if not _same_schema(schema, SCHEMA):
            raise UsageError(
                f"{FORMAT} source has a fixed schema ({SCHEMA_DDL}) and cannot be read "
                f"with another one ({schema.simpleString()})"
            )
        return KafkaStreamReader(parse_options(self.options))


def register(spark: SparkSession) -> None:
    """Make ``spark.readStream.format("musify_kafka")`` available in this session."""
    spark.dataSource.register(KafkaSource)


__all__ = [
    "ARROW_SCHEMA",
    "DATA_LOSS",
    "FETCHED_AT",
    "FORMAT",
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
    "register",
    "split_range",
    "to_offsets",
    "topic_ids_of",
]
