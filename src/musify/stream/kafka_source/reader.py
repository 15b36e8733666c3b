"""The ``musify_kafka`` source's stream reader, ``KafkaStreamReader``: it plans
micro-batches on the driver (offsets, data loss, input partitions) and hands
``read()`` to the tasks.

Where partitions end comes from ``probe``, the checkpointed offsets from ``offsets``,
the input partitions from ``partitions``, data loss from ``loss``; ``read()`` runs
``consume`` on the executors. The package docstring lists every part.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pyspark.sql.datasource import DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)

from musify.stream.kafka_source.consume import _read_group, _record_batches, consume_range
from musify.stream.kafka_source.loss import (
    DATA_LOSS,
    KafkaDataLossError,
    _Loss,
    _recreated,
    data_loss_message,
)
from musify.stream.kafka_source.offsets import (
    FETCHED_AT,
    TP,
    Offsets,
    fair_limit,
    from_offsets,
    to_offsets,
    topic_ids_of,
)
from musify.stream.kafka_source.options import SourceOptions, log
from musify.stream.kafka_source.partitions import (
    KafkaInputGroup,
    KafkaInputPartition,
    pack_ranges,
    split_range,
)
from musify.stream.kafka_source.probe import _OffsetProbe, _Snapshot
from musify.stream.kafka_source.ranges import ranges_batch


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


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
        if self.opts.output == "ranges":  # the next stage reads them (``ranges``)
            yield ranges_batch(partition)
            return
        if isinstance(partition, KafkaInputGroup):
            yield from _read_group(self.opts, partition)
            return
        assert isinstance(partition, KafkaInputPartition), type(partition)
        yield from _record_batches(partition, consume_range(self.opts, partition))
