"""What a Spark task of the ``musify_kafka`` source runs: ``consume_range`` reads one
range of offsets with its own consumer (``assign()``, nothing committed), checks the
topic's id before and after, and ``to_record_batch`` turns the records into Arrow
batches of ``ARROW_SCHEMA``; a ``KafkaInputGroup``'s ranges are read one after the other.

``KafkaStreamReader.read`` (``reader``) calls it; the ranges are ``partitions``' and
the data-loss reporting is ``loss``'s. The package docstring lists every part.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from musify.errors import BrokerError
from musify.stream.kafka_source.loss import (
    _TOPIC_GONE,
    DATA_LOSS,
    KafkaDataLossError,
    KafkaSourceError,
    _code,
    _describe_topic_ids,
    _error_text,
    _Loss,
    _new_admin,
    _recreated,
    data_loss_message,
)
from musify.stream.kafka_source.offsets import TP
from musify.stream.kafka_source.options import METADATA_TIMEOUT, SourceOptions, log
from musify.stream.kafka_source.partitions import KafkaInputGroup, KafkaInputPartition

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

#: Rows per Arrow record batch handed to Spark.
BATCH_ROWS = 4096

#: Seconds a task waits before it believes the broker has fewer records than planned
#: (a leader change can lower the high watermark for a moment).
LOSS_GRACE = 2.0


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
