"""The generator's Kafka sink, ``KafkaSink``: its state, lifecycle and produce path.

Its outage handling (delivery and error callbacks, stall detection, probing the broker,
replacing the producer) is ``RecoveryMixin`` in ``musify.broker.recovery``; the admin
helpers (``check_reachable``, ``ensure_topics``, reading topic metadata) are in
``musify.broker.admin``; checking a resume point is in ``musify.broker.resume``. This
module re-exports ``check_reachable`` and ``ensure_topics``.

Everything here speaks the plain Kafka protocol through confluent-kafka and works the
same against Apache Kafka and the local Tansu broker; nothing relies on Tansu's quirks.

``KafkaSink`` never loses an event silently. Every message stays accounted for until
the broker acknowledges it: when a delivery fails, or the producer hits a fatal error,
or the broker turns out to have lost its state (our topics are missing or have new
topic ids, as after a restart of a memory-only broker), the producer is purged at once
and every message it had not delivered is re-sent, in the order first produced, by a
new producer. Delivery is at-least-once: a message whose acknowledgement was lost may
be stored twice. Per partition, the messages are stored in the order written, each
partition's last message being the newest one; that is what lets a killed generator
resume exactly (``musify.broker.resume``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException, Producer

from musify.broker.admin import (
    _admin,
    _create_missing,
    _partition_counts,
    _topic_ids,
    check_reachable,
    ensure_topics,
)
from musify.broker.partitioner import KeyRouter
from musify.broker.recovery import BACKOFF_MIN, PROBE_TIMEOUT, RecoveryMixin, _Message
from musify.broker.resume import (
    ResumeFilter,
    _check_resume_point,
    live_header,
    read_last_messages,
)
from musify.errors import BrokerError
from musify.events import TOPIC_NAMES
from musify.sim.sinks import Sink

log = logging.getLogger(__name__)
#: librdkafka's own log lines from our producers.
client_log = logging.getLogger("musify.broker.librdkafka")

#: Producer settings; ``producer_config`` overrides them.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "client.id": "musify-generator",
    "acks": "all",
    "enable.idempotence": True,
    "compression.type": "lz4",
    "linger.ms": 25,
    "batch.num.messages": 10_000,
    "batch.size": 1_048_576,
    "queue.buffering.max.messages": 100_000,
    "message.timeout.ms": 120_000,
    # Topics are created by us with the configured partitions, never by a metadata
    # request with the broker's defaults (which would change the key → partition map).
    "allow.auto.create.topics": False,
    # The sink names each message's partition itself (``partition_for``); this is the
    # same function, for messages produced without one.
    "partitioner": "murmur2_random",
    "reconnect.backoff.max.ms": 2_000,
}


class KafkaSink(RecoveryMixin, Sink):
    """Produces each event line to its topic, keyed by user id; loses nothing silently.

    The partition of every message is chosen here, ``partition_for(key, partitions)``
    (Kafka's default partitioner), so a user's events stay on one partition in order and
    a resumed run knows where each regenerated event went.

    ``continuous``: while the broker is unreachable, events wait in a bounded buffer
    (``max_buffered`` messages, then ``write`` blocks) and the broker is retried with
    exponential backoff, forever. Otherwise an unreachable broker, or messages still
    undelivered after ``flush_timeout`` seconds, raise ``BrokerError``.

    ``resume``: on open, read the last message of every partition and drop the events
    written until each partition meets its own (``musify.broker.resume``); ``skipped``
    counts them per topic.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        partitions: int = 3,
        replication: int = 1,
        continuous: bool = False,
        resume: bool = False,
        producer_config: dict[str, Any] | None = None,
        topics: Sequence[str] = TOPIC_NAMES,
        flush_timeout: float = 120.0,
        max_buffered: int = 200_000,
        min_flush_interval: float = 0.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        #: ``flush`` delivers at most this often (s); in between the producer's own
        #: linger sends (``musify.broker.local.producer_options``: the disk-backed broker).
        self.min_flush_interval = min_flush_interval
        self._flushed_at = float("-inf")
        self.partitions = partitions
        self.replication = replication
        self.continuous = continuous
        self.resume = resume
        self.topics = tuple(topics)
        self.flush_timeout = flush_timeout
        self.max_buffered = max_buffered
        self.target = f"kafka {bootstrap_servers}"
        #: Failed delivery attempts (each such message is re-sent).
        self.failed_attempts = 0
        #: Producers made so far: more than one means the sink recovered.
        self.producers_created = 0
        #: Resumed runs: events not produced because the topics already held them.
        self.skipped: dict[str, int] = {}
        #: Resumed runs: (live_from, anchor) of the continuous run that wrote the topics.
        self.recorded_live: tuple[int, float] | None = None
        #: Partitions of each topic, as the broker has them (they define the key → partition map).
        self.partition_counts: dict[str, int] = {}
        self._config = {
            **PRODUCER_DEFAULTS,
            **(producer_config or {}),
            "bootstrap.servers": bootstrap_servers,
        }
        self._producer: Any = None
        self._admin: Any = None
        self._ids: dict[str, str] = {}
        self._routers: dict[str, KeyRouter] = {}
        self._headers: list[tuple[str, bytes]] | None = None
        self._filter: ResumeFilter | None = None
        # Messages handed to the current producer that may not be acknowledged yet, per
        # topic and partition in produce order, and the reports of failed deliveries
        # (topic, partition, key, value). The producer reports failures only (a report
        # per success would cost more than the produce call); a partition's messages
        # are acknowledged in produce order, so of its queue only the newest
        # len(producer) + failures entries can be unacknowledged, and the rest is
        # dropped as we go. Whatever order librdkafka reports failures and purges in,
        # they are re-sent sorted by their sequence number.
        self._seq = 0
        self._handed = 0  # messages handed to producers, ever
        self._in_flight: dict[str, list[list[_Message]]] = {}
        self._failed: list[tuple[str, int, bytes, bytes]] = []
        # Un-acknowledged messages outside the producer, in the order to send them:
        # those taken back from a retired producer, then events written while the sink
        # was recovering.
        self._retry: deque[_Message] = deque()
        self._backlog: deque[_Message] = deque()
        self._rejected: list[str] = []
        self._replace = False  # the producer must be replaced
        self._retired = False  # the producer was purged: nothing in it, nothing more to it
        self._broken = False
        self._unreachable_since: float | None = None
        self._next_probe = 0.0
        self._backoff = BACKOFF_MIN
        self._last_ok_probe = -1e9
        self._mark_count = 0
        self._mark_time = time.monotonic()
        self._blocked_warned = False

    # -- lifecycle ---------------------------------------------------------------------

    def prepare(self) -> None:
        """Check the broker, create missing topics, learn their partitions and, when
        resuming, where each partition ends. Leaves no Kafka client running: a generator
        forks its worker processes after this and before ``open``."""
        if self.partition_counts:
            return
        check_reachable(self.bootstrap_servers, timeout=5.0)
        admin = _admin(self.bootstrap_servers)
        _create_missing(
            admin, self.bootstrap_servers, self.topics, self.partitions, self.replication, 10.0
        )
        counts = _partition_counts(admin, self.bootstrap_servers, self.topics, 10.0)
        self._ids = _topic_ids(admin, self.topics, PROBE_TIMEOUT)
        del admin
        routers: dict[int, KeyRouter] = {}
        self._routers = {t: routers.setdefault(n, KeyRouter(n)) for t, n in counts.items()}
        self._in_flight = {t: [[] for _ in range(n)] for t, n in counts.items()}
        if self.resume:
            last = read_last_messages(self.bootstrap_servers, counts)
            self.recorded_live = _check_resume_point(last, counts)
            self._filter = ResumeFilter(last, self._partition_of)
            self.skipped = self._filter.skipped
        self.partition_counts = counts

    def open(self) -> None:
        if self._producer is not None:
            return
        self.prepare()
        self._admin = _admin(self.bootstrap_servers)
        self._producer = self._new_producer()

    def mark_live(self, live_from: int, anchor: float) -> None:
        # Every later message carries the switch, so a resumed run can find it in the
        # last message of any partition that got one of them.
        self._headers = live_header(live_from, anchor)

    def check_resume_window(self, start: int, end: int) -> None:
        """Resumed runs: fail early if a partition ends outside the run's window."""
        if self._filter is not None:
            self._filter.check_window(start, end)

    def resume_unmatched(self) -> list[str]:
        """Partitions whose last message the run has not regenerated (yet)."""
        if self._filter is None:
            return []
        return [m.where() for m in self._filter.unmatched()]

    def write(self, topic: str, keys: Sequence[int], lines: Sequence[bytes]) -> None:
        if not lines:
            return
        if self._producer is None:
            self.open()
        batches: list[tuple[str, Sequence[int], Sequence[bytes]]] = [(topic, keys, lines)]
        if self._filter is not None:
            batches = self._filter.offer(topic, keys, lines)
            if self._filter.done:
                self._filter = None
        self._service()
        for t, k, v in batches:
            done = 0 if self._degraded() else self._produce_batch(t, k, v)
            if done < len(v):
                self._buffer(t, k, v, done)

    def flush(self) -> None:
        if self._producer is None:
            return
        now = time.monotonic()
        if now - self._flushed_at < self.min_flush_interval:
            self._service()  # delivery reports; the producer sends on its own linger
            return
        self._flush(final=False)
        self._flushed_at = now

    def close(self) -> None:
        if self._producer is None:
            return
        try:
            if not self._broken:
                self._flush(final=True)
        finally:
            if self._filter is not None and self._filter.n_held:
                log.info(
                    "%d regenerated events were not produced: the run stopped before every "
                    "partition reached its last message",
                    self._filter.n_held,
                )
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.poll(0)
            self._producer = None
            self._admin = None

    # -- producing -----------------------------------------------------------------------

    def _partition_of(self, topic: str, user_id: int) -> int:
        return self._routers[topic].route(user_id)[1]

    def _new_producer(self) -> Any:
        conf = dict(self._config)
        conf["on_delivery"] = self._on_delivery
        conf["delivery.report.only.error"] = True
        conf["error_cb"] = self._on_error
        conf.setdefault("logger", client_log)
        try:
            producer = Producer(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            raise BrokerError(f"invalid Kafka producer configuration: {exc}") from None
        self.producers_created += 1
        self._replace = False
        self._retired = False
        return producer

    @property
    def delivered(self) -> int:
        """Messages the broker acknowledged."""
        return self._handed - self.failed_attempts - self._in_producer()

    def _in_producer(self) -> int:
        """Messages the producer holds: not acknowledged, or failed and not reported yet."""
        return len(self._producer) if self._producer is not None and not self._retired else 0

    def _forget_acknowledged(self) -> None:
        """Drop what the producer must have acknowledged from the partitions' queues."""
        held = len(self._producer) + len(self._failed)
        for queues in self._in_flight.values():
            for queue in queues:
                if len(queue) > held:
                    del queue[: len(queue) - held]

    def _produce_batch(self, topic: str, keys: Sequence[int], lines: Sequence[bytes]) -> int:
        """Produce directly while all is well; returns how many lines were produced."""
        produce = self._producer.produce
        poll = self._producer.poll
        router = self._routers[topic]
        cached, route = router.get, router.route
        in_flight = self._in_flight[topic]
        headers = self._headers
        seq = self._seq
        try:
            for i, (user, line) in enumerate(zip(keys, lines, strict=True)):
                key, part = cached(user) or route(user)
                while True:
                    try:
                        if headers is None:
                            produce(topic, line, key, part)
                        else:
                            produce(topic, line, key, part, headers=headers)
                        seq += 1
                        in_flight[part].append((seq, topic, part, key, line, headers))
                        break
                    except BufferError:  # the local queue is full: wait for deliveries
                        if not self._wait_for_room():
                            return i
                    except KafkaException as exc:
                        self._produce_failed(exc)
                        return i
                if i & 1023 == 1023:
                    poll(0)
                    self._handed += seq - self._seq
                    self._seq = seq
                    self._forget_acknowledged()
                    if self._troubled():  # keep the order: stop until the failures are re-sent
                        return i + 1
            return len(lines)
        finally:
            self._handed += seq - self._seq
            self._seq = seq

    def _buffer(self, topic: str, keys: Sequence[int], lines: Sequence[bytes], start: int) -> None:
        """Keep events while the sink recovers; block while the buffer is full."""
        backlog = self._backlog
        route = self._routers[topic].route
        headers = self._headers
        for user, line in zip(keys[start:], lines[start:], strict=True):
            key, part = route(user)
            self._seq += 1
            backlog.append((self._seq, topic, part, key, line, headers))
        if len(backlog) >= self.max_buffered and not self._blocked_warned:
            log.warning(
                "%d events are waiting for Kafka at %s; generation pauses until they are delivered",
                len(backlog),
                self.bootstrap_servers,
            )
            self._blocked_warned = True
        while len(self._backlog) >= self.max_buffered:
            self._wait(0.1)
            self._service()
        self._blocked_warned = False

    def _wait(self, seconds: float) -> None:
        """Serve the producer for a while (a retired one has nothing left to serve)."""
        if self._retired:
            time.sleep(seconds)
        else:
            self._producer.poll(seconds)

    def _wait_for_room(self) -> bool:
        """The producer's queue is full: wait a little. False if the sink must recover."""
        self._producer.poll(0.1)
        self._check_stall()
        return not self._troubled()

    def _pump(self) -> None:
        """Hand the messages waiting outside the producer to it, oldest first."""
        producer = self._producer
        sent = 0
        for queue in (self._retry, self._backlog):
            while queue:
                message = queue[0]
                _, topic, part, key, value, headers = message
                try:
                    if headers:
                        producer.produce(topic, value, key, part, headers=headers)
                    else:
                        producer.produce(topic, value, key, part)
                except BufferError:
                    producer.poll(0.1)
                    self._check_stall()
                    if self._troubled():
                        return
                    continue
                except KafkaException as exc:
                    self._produce_failed(exc)
                    return
                queue.popleft()
                self._in_flight[topic][part].append(message)
                self._handed += 1
                sent += 1
                if sent & 1023 == 0:
                    producer.poll(0)
                    self._forget_acknowledged()
                    if self._troubled():
                        return

    def _outstanding(self) -> int:
        return self._in_producer() + len(self._failed) + len(self._retry) + len(self._backlog)

    def _troubled(self) -> bool:
        """The producer must be replaced, or the broker is unreachable."""
        return self._replace or self._unreachable_since is not None

    def _degraded(self) -> bool:
        """Troubled, or messages wait outside the producer: new events must queue up."""
        return bool(self._troubled() or self._retry or self._backlog)

    def _flush(self, *, final: bool) -> None:
        deadline = time.monotonic() + self.flush_timeout
        while True:
            self._service()
            outstanding = self._outstanding()
            if outstanding == 0:
                return
            if self.continuous and not final and self._unreachable_since is not None:
                return  # kept in the buffer; retried on the next write or flush
            if time.monotonic() >= deadline:
                if self.continuous and not final:
                    log.warning(
                        "%d events are not yet delivered to Kafka at %s after %g s",
                        outstanding,
                        self.bootstrap_servers,
                        self.flush_timeout,
                    )
                    return
                self._broken = True
                raise BrokerError(
                    f"{outstanding} events were not delivered to Kafka at "
                    f"{self.bootstrap_servers} within {self.flush_timeout:g} s"
                )
            if self._retired:
                time.sleep(0.1)
            else:
                self._producer.flush(0.1)


__all__ = ["PRODUCER_DEFAULTS", "KafkaSink", "check_reachable", "ensure_topics"]
