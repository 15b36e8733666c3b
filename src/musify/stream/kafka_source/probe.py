"""Where the partitions of the ``musify_kafka`` source begin and end, on the driver:
``_OffsetProbe`` (why ListOffsets alone is not trusted: its docstring) and the
``_Snapshot`` it takes.

The driver's reader (``reader``) owns one probe; topic ids and errors come from
``loss``. The package docstring lists every part.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from musify.errors import BrokerError
from musify.stream.kafka_source.loss import (
    _TOPIC_GONE,
    KafkaSourceError,
    _code,
    _describe_topic_ids,
    _error_text,
    _new_admin,
)
from musify.stream.kafka_source.offsets import TP
from musify.stream.kafka_source.options import METADATA_TIMEOUT, SourceOptions, _option_error, log

#: Seconds the driver waits for the fetch responses that say where partitions end.
PROBE_TIMEOUT = 5.0
#: Seconds the probe keeps waiting for end-of-partition once every partition answered.
PROBE_SETTLE = 0.3


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

    @staticmethod
    def _jump(consumer: Any, tp: TP, position: int, jumped: dict[TP, float]) -> None:
        """Move a partition's fetch to the high watermark a fetch response reported, once
        one has, when that lies beyond where the fetch stands.

        Tansu's disk-backed (s3://) engine answers ListOffsets(latest) with 1 whatever
        the partition holds, and a fetch from inside a record batch with nothing (it
        finds batches by their base offset): from offset 1 the probe would never see the
        end. The high watermark is a batch boundary, and from there end-of-partition
        comes with the next fetch. Under read_committed an open transaction holds
        end-of-partition back to the last stable offset, below the high watermark: then
        no answer comes, and the end is what was seen before (smaller, still readable).
        On Apache Kafka ListOffsets is already the end: nothing moves.
        """
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
        except KafkaException:
            return
        if high < 0:  # no fetch response yet
            return
        jumped[tp] = time.monotonic()
        if high > position:
            consumer.seek(TopicPartition(tp[0], tp[1], high))

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
        #: Partitions moved on to their fetched high watermark - 1: when (monotonic).
        jumped: dict[TP, float] = {}
        began = time.monotonic()
        try:
            while len(eof) < len(listed):
                now = time.monotonic()
                elapsed = now - began
                if elapsed > PROBE_TIMEOUT:
                    break
                if elapsed > PROBE_SETTLE and all(
                    tp in eof or (tp in seen and now - jumped.get(tp, began) > PROBE_SETTLE)
                    for tp in listed
                ):
                    break  # records keep arriving: the last one seen is a fine end
                for tp in listed:
                    if tp not in eof and tp not in jumped:
                        self._jump(consumer, tp, max(listed[tp], seen.get(tp, 0)), jumped)
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
