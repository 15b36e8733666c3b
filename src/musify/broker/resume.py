"""Resuming a generator run in Kafka: produce only what the topics do not hold yet.

A generator run is deterministic (same plan, same events in the same order), and
``KafkaSink`` puts each event on a partition that is a function of its key
(``musify.broker.partitioner``), with an idempotent producer that keeps each
partition's order. So every partition holds a prefix of that partition's share of the
run, and its last message says how long the prefix is. A resumed run reads the last
message of every partition (``read_last_messages``), regenerates the run from its
start and drops, per partition, the events up to and including that message
(``ResumeFilter``): events in event-time order, so everything earlier than the last
message's ``ts`` is present, and among events with the same ``ts`` the order of
generation decides, up to the one whose bytes equal the last message. Before that,
``_check_resume_point`` makes sure the topics' ends come from one run of ours
(``KafkaSink.prepare`` in ``musify.broker.kafka`` calls it).

A continuous run's output also depends on when it switched from hour-long history
chunks to one-second live steps (``live_from``); the sink records that time in a
header of every message whose chunk depended on it, and a resumed run reads it back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from musify.broker.partitioner import partition_for
from musify.errors import BrokerError, UsageError
from musify.sim.clock import from_epoch

#: Header with the live switch of a continuous run: b"<live_from> <anchor>", epoch seconds.
LIVE_HEADER = "musify-live-from"
#: Events kept back while some partition has not found its last message yet. Legitimately
#: at most what the killed producer still had queued; far more means a different run.
MAX_HELD = 1_000_000

_quiet_log = logging.Logger("musify.broker.resume")
_quiet_log.addHandler(logging.NullHandler())

_RERUN_HINT = (
    "resume needs the same --config, --nusers, --seed, --start-time, --first-user-id, "
    "--tag, --catalog and growth/attrition rates as the run that wrote the topics, or "
    "empty topics"
)


def live_header(live_from: int, anchor: float) -> list[tuple[str, bytes]]:
    return [(LIVE_HEADER, f"{live_from} {anchor:.3f}".encode())]


def _parse_live(headers: Sequence[tuple[str, bytes | None]] | None) -> tuple[int, float] | None:
    for name, value in headers or ():
        if name == LIVE_HEADER and value:
            live_from, _, anchor = value.decode("ascii", "replace").partition(" ")
            try:
                return int(live_from), float(anchor or live_from)
            except ValueError:
                return None
    return None


def event_ts(line: bytes) -> int:
    """The ``ts`` (epoch milliseconds) of a generated event line."""
    # Generated lines have exactly one `"ts":` and it is a key: a quote inside a JSON
    # string is escaped, so the fast path cannot hit a value.
    i = line.find(b'"ts":')
    if i >= 0:
        j = line.find(b",", i)
        try:
            return int(line[i + 5 : j if j > 0 else len(line) - 2])
        except ValueError:
            pass
    ts = orjson.loads(line).get("ts")
    if not isinstance(ts, int):
        raise ValueError("no integer ts")
    return ts


def _when(ts_ms: int) -> str:
    return f"{from_epoch(ts_ms / 1000):%Y-%m-%dT%H:%M:%S}Z"


@dataclass(frozen=True)
class LastMessage:
    """The last message of one partition."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    ts: int  # the event's ts, epoch milliseconds
    live: tuple[int, float] | None  # (live_from, anchor) from the header, if any

    def where(self) -> str:
        return f"partition {self.partition} of {self.topic} (offset {self.offset})"


def read_last_messages(
    bootstrap: str, counts: Mapping[str, int], timeout: float = 30.0
) -> dict[str, dict[int, LastMessage]]:
    """The last message of every non-empty partition of the given topics.

    Reads from one before the end of each partition up to the end-of-partition event.
    The end offset comes from ListOffsets, which some brokers undercount (Tansu answers
    the last record batch's base offset + 1), so the read goes on until the Fetch
    responses' high watermark says the partition is exhausted; where that finds no
    message although the partition is not empty (a control record at the end, a
    compacted tail), it starts further back.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "musify-generator-resume",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_uncommitted",
            "fetch.wait.max.ms": 50,
            "logger": _quiet_log,
        }
    )
    deadline = time.monotonic() + timeout
    try:
        bounds: dict[tuple[str, int], tuple[int, int]] = {}
        for topic, n in counts.items():
            for p in range(n):
                try:
                    lo, hi = consumer.get_watermark_offsets(
                        TopicPartition(topic, p), timeout=max(0.1, deadline - time.monotonic())
                    )
                except KafkaException as exc:
                    raise BrokerError(
                        f"cannot read the offsets of partition {p} of {topic} at Kafka "
                        f"{bootstrap}: {exc}"
                    ) from None
                bounds[(topic, p)] = (lo, hi)
        found: dict[tuple[str, int], Any] = {}
        back = dict.fromkeys(bounds, 1)
        todo = set(bounds)
        while todo:
            starts = {tp: max(bounds[tp][0], bounds[tp][1] - back[tp]) for tp in todo}
            last = _read_to_end(consumer, starts, deadline, bootstrap)
            for tp in list(todo):
                if last.get(tp) is not None:
                    found[tp] = last[tp]
                    todo.discard(tp)
                elif starts[tp] <= bounds[tp][0]:
                    todo.discard(tp)  # read from the start: empty
                else:
                    back[tp] *= 64
        out: dict[str, dict[int, LastMessage]] = {t: {} for t in counts}
        for (topic, p), msg in found.items():
            value = msg.value() or b""
            try:
                ts = event_ts(value)
            except ValueError:
                raise UsageError(
                    f"cannot resume: the last message of partition {p} of {topic} (offset "
                    f"{msg.offset()}) is not a generator event: {value[:80]!r}. Was the "
                    "topic written with --faults, or by another program?"
                ) from None
            out[topic][p] = LastMessage(
                topic, p, msg.offset(), msg.key(), value, ts, _parse_live(msg.headers())
            )
        return out
    finally:
        consumer.close()


def _read_to_end(
    consumer: Any, starts: Mapping[tuple[str, int], int], deadline: float, bootstrap: str
) -> dict[tuple[str, int], Any]:
    consumer.assign([TopicPartition(t, p, off) for (t, p), off in starts.items()])
    last: dict[tuple[str, int], Any] = {}
    waiting = set(starts)
    try:
        while waiting:
            if time.monotonic() > deadline:
                names = ", ".join(f"{t}[{p}]" for t, p in sorted(waiting))
                raise BrokerError(
                    f"reading the last messages of {names} at Kafka {bootstrap} timed out"
                )
            for msg in consumer.consume(num_messages=10_000, timeout=0.2):
                err = msg.error()
                tp = (msg.topic(), msg.partition())
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        waiting.discard(tp)
                        continue
                    raise BrokerError(f"cannot read {tp[0]} at Kafka {bootstrap}: {err.str()}")
                prev = last.get(tp)
                if prev is None or msg.offset() > prev.offset():
                    last[tp] = msg
    finally:
        consumer.unassign()
    return last


def _check_resume_point(
    last: Mapping[str, Mapping[int, LastMessage]], counts: Mapping[str, int]
) -> tuple[int, float] | None:
    """Are the topics' ends from a run of ours? Returns the live switch they record."""
    lives = set()
    for topic, parts in last.items():
        for m in parts.values():
            if m.key is None or partition_for(m.key, counts[topic]) != m.partition:
                raise UsageError(
                    f"cannot resume: {m.where()} ends with a message keyed {m.key!r}, "
                    "which Kafka's default partitioner does not place there; the topic "
                    "was not written by `musify generate` (or its partitions changed)"
                )
            if m.live is not None:
                lives.add(m.live)
    if len(lives) > 1:
        raise UsageError(
            "cannot resume: the topics' last messages come from continuous runs that "
            f"switched to live time at different moments ({sorted(lives)}): they hold "
            "more than one run"
        )
    return lives.pop() if lives else None


class ResumeFilter:
    """Drops regenerated events that the topics already hold; keeps the rest in order.

    ``offer`` takes the events of one topic in generation order and returns the
    batches to produce now. Until every partition has met its last message, events to
    produce are held back, so nothing is produced before the whole resume point is
    confirmed (a different run is reported before it can mix events into the topics).
    """

    def __init__(
        self,
        last: Mapping[str, Mapping[int, LastMessage]],
        partition_of: Callable[[str, int], int],
    ) -> None:
        self.pending: dict[str, dict[int, LastMessage]] = {
            t: dict(parts) for t, parts in last.items() if parts
        }
        self.partition_of = partition_of
        self.skipped: dict[str, int] = dict.fromkeys(last, 0)
        self.held: list[tuple[str, list[int], list[bytes]]] = []
        self.n_held = 0

    @property
    def done(self) -> bool:
        return not self.pending

    def check_window(self, start: int, end: int) -> None:
        """Every last message must lie in the run's window [start, end) (epoch seconds)."""
        for parts in self.pending.values():
            for m in parts.values():
                if not start * 1000 <= m.ts < end * 1000:
                    raise UsageError(
                        f"cannot resume: {m.where()} ends with an event at {_when(m.ts)}, "
                        f"outside this run's window {_when(start * 1000)} to "
                        f"{_when(end * 1000) if end < 2**40 else '(open)'}; {_RERUN_HINT}"
                    )

    def unmatched(self) -> list[LastMessage]:
        return [m for parts in self.pending.values() for m in parts.values()]

    def offer(
        self, topic: str, keys: Sequence[int], lines: Sequence[bytes]
    ) -> list[tuple[str, Sequence[int], Sequence[bytes]]]:
        if not self.pending:
            return [(topic, keys, lines)]
        pending = self.pending.get(topic)
        if pending:
            keep_keys: list[int] = []
            keep_lines: list[bytes] = []
            skipped = 0
            part = self.partition_of
            for key, line in zip(keys, lines, strict=True):
                if pending:
                    point = pending.get(part(topic, key))
                    if point is not None:
                        ts = event_ts(line)
                        if ts > point.ts:
                            raise UsageError(
                                f"cannot resume: {point.where()} ends with an event at "
                                f"{_when(point.ts)} that this run does not generate; "
                                f"{_RERUN_HINT}"
                            )
                        skipped += 1
                        if ts == point.ts and line == point.value:
                            del pending[point.partition]
                        continue
                keep_keys.append(key)
                keep_lines.append(line)
            self.skipped[topic] = self.skipped.get(topic, 0) + skipped
            if not pending:
                del self.pending[topic]
            keys, lines = keep_keys, keep_lines
        if lines:
            self.held.append((topic, list(keys), list(lines)))
            self.n_held += len(lines)
            if self.n_held > MAX_HELD:
                first = self.unmatched()[0]
                raise UsageError(
                    f"cannot resume: {first.where()} ends with an event at {_when(first.ts)} "
                    f"that has not come up after {self.n_held:,} newer events; {_RERUN_HINT}"
                )
        if self.pending:
            return []
        out: list[tuple[str, Sequence[int], Sequence[bytes]]] = list(self.held)
        self.held = []
        self.n_held = 0
        return out


__all__ = [
    "LIVE_HEADER",
    "LastMessage",
    "ResumeFilter",
    "event_ts",
    "live_header",
    "read_last_messages",
]
