"""KafkaSink's outage handling: noticing trouble and recovering without losing events.

``RecoveryMixin`` holds the part of ``musify.broker.kafka.KafkaSink`` that watches the
producer and the broker: the producer's delivery and error callbacks, stall detection,
probing the broker (recreating lost topics), and retiring a producer so that a new one
re-sends, in the order first produced, every message it had not delivered
(``_taken_back``). The sink's state, its lifecycle and the produce path live in
``musify.broker.kafka``; the admin requests a probe makes, in ``musify.broker.admin``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError

from musify.broker.admin import _create_missing, _error_text, _topic_ids
from musify.errors import BrokerError

#: The sink's logger: its lines keep the name they had when all of it was one module.
log = logging.getLogger("musify.broker.kafka")

#: Delivery errors caused by the message or our permissions: re-sending cannot help.
_PERMANENT_ERRORS = frozenset(
    getattr(KafkaError, name)
    for name in (
        "MSG_SIZE_TOO_LARGE",
        "RECORD_LIST_TOO_LARGE",
        "INVALID_RECORD",
        "TOPIC_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        "UNSUPPORTED_COMPRESSION_TYPE",
        "POLICY_VIOLATION",
        "INVALID_REQUIRED_ACKS",
        "_INVALID_ARG",
    )
    if hasattr(KafkaError, name)
)
_PURGED = frozenset((KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT))

#: Seconds without any delivery, with messages outstanding, before the sink checks on
#: the broker (is it reachable, does it still have our topics?).
STALL_SECONDS = 1.0
#: Backoff between checks/recovery attempts, doubling from MIN up to MAX seconds.
BACKOFF_MIN = 0.25
BACKOFF_MAX = 30.0
#: Timeout of one check on the broker.
PROBE_TIMEOUT = 2.0

#: (sequence number, topic, partition, key, value, headers) of a message not yet
#: acknowledged; the sequence number is its place in the order first produced.
_Message = tuple[int, str, int, bytes, bytes, list[tuple[str, bytes]] | None]


def _seq_of(message: _Message) -> int:
    return message[0]


def _taken_back(
    in_flight: Mapping[str, list[list[_Message]]],
    failed: Sequence[tuple[str, int, bytes, bytes]],
    headers: list[tuple[str, bytes]] | None,
) -> list[_Message]:
    """The failed messages, found in their partitions' queues, in produce order."""
    by_partition: dict[tuple[str, int], list[tuple[str, int, bytes, bytes]]] = {}
    for report in failed:
        by_partition.setdefault(report[:2], []).append(report)
    taken: list[_Message] = []
    for (topic, part), reports in by_partition.items():
        queued = {m[4]: m for m in in_flight[topic][part]}
        for _, _, key, value in reports:
            message = queued.get(value)
            if message is None:
                # Dropped as acknowledged: only a partition whose later messages were
                # acknowledged before this one failed does that, so its order is broken
                # already. Re-send it first among its partition's messages.
                message = (-1, topic, part, key, value, headers)
            taken.append(message)
    taken.sort(key=_seq_of)  # stable: reports of unknown order keep theirs
    return taken


class RecoveryMixin:
    """Watching and recovering, for ``KafkaSink`` (the only class that uses it).

    It keeps no state of its own: what it reads and changes is the sink's, set in
    ``KafkaSink.__init__`` and declared here for the type checker, as are the sink's
    methods it calls.
    """

    bootstrap_servers: str
    partitions: int
    replication: int
    continuous: bool
    topics: tuple[str, ...]
    flush_timeout: float
    failed_attempts: int
    partition_counts: dict[str, int]
    _producer: Any
    _admin: Any
    _ids: dict[str, str]
    _headers: list[tuple[str, bytes]] | None
    _in_flight: dict[str, list[list[_Message]]]
    _failed: list[tuple[str, int, bytes, bytes]]
    _retry: deque[_Message]
    _backlog: deque[_Message]
    _rejected: list[str]
    _replace: bool
    _retired: bool
    _broken: bool
    _unreachable_since: float | None
    _next_probe: float
    _backoff: float
    _last_ok_probe: float
    _mark_count: int
    _mark_time: float

    if TYPE_CHECKING:

        @property
        def delivered(self) -> int: ...
        def _in_producer(self) -> int: ...
        def _new_producer(self) -> Any: ...
        def _forget_acknowledged(self) -> None: ...
        def _pump(self) -> None: ...
        def _outstanding(self) -> int: ...
        def _troubled(self) -> bool: ...
        def _degraded(self) -> bool: ...

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:  # only with delivery.report.only.error off
            return
        self.failed_attempts += 1
        code = err.code()
        if code in _PERMANENT_ERRORS:
            self._rejected.append(f"{msg.topic()}: {err.str()}")
            return
        self._failed.append((msg.topic(), msg.partition(), msg.key() or b"", msg.value() or b""))
        if code not in _PURGED and not self._replace:
            log.warning(
                "delivery to Kafka at %s failed (%s); re-sending with a new producer",
                self.bootstrap_servers,
                err.str(),
            )
        self._replace = True

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error(
                "the Kafka producer hit a fatal error (%s); replacing it and re-sending "
                "every unacknowledged event",
                err.str(),
            )
            self._replace = True
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning(
                "lost the connection to Kafka at %s (%s)", self.bootstrap_servers, err.str()
            )
        else:
            log.debug("Kafka client error: %s", err.str())

    def _produce_failed(self, exc: BaseException) -> None:
        """``produce()`` itself refused a message (fatal state, unknown topic, ...)."""
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and err.code() in _PERMANENT_ERRORS:
            self._broken = True
            raise BrokerError(
                f"Kafka at {self.bootstrap_servers} cannot take an event: {err.str()}"
            ) from None
        if not isinstance(exc, BufferError):
            log.warning("the Kafka producer refused an event (%s); replacing it", _error_text(exc))
            self._replace = True

    # -- watching and recovering ---------------------------------------------------------

    def _service(self) -> None:
        """Serve callbacks, notice trouble, and recover if needed (never sleeps long)."""
        self._producer.poll(0)
        if not self._retired:
            self._forget_acknowledged()
        self._check_rejected()
        self._check_stall()
        if self._degraded():
            self._recover()

    def _check_rejected(self) -> None:
        if self._rejected:
            self._broken = True
            raise BrokerError(
                f"Kafka at {self.bootstrap_servers} rejected {len(self._rejected)} events "
                f"(first: {self._rejected[0]}); they were not delivered"
            )

    def _check_stall(self) -> None:
        """With messages outstanding but no delivery for a while, check on the broker."""
        now = time.monotonic()
        delivered = self.delivered
        if delivered != self._mark_count:
            self._backoff = BACKOFF_MIN
            self._mark_count = delivered
            self._mark_time = now
        elif self._in_producer() == 0:
            self._mark_time = now
        elif (
            now - self._mark_time >= STALL_SECONDS
            and now >= self._next_probe
            and not self._troubled()
        ):
            self._probe()

    def _schedule_next_probe(self, now: float) -> None:
        self._next_probe = now + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _recover(self) -> None:
        if self._troubled():
            if self._replace:
                # At once, not after the broker is back: a producer that lost a message
                # must not deliver the ones behind it first.
                self._retire()
            now = time.monotonic()
            if now - self._last_ok_probe > 0.5:
                if now < self._next_probe:
                    return
                if not self._probe():
                    return
            if self._replace:
                self._replace_producer()
        self._pump()

    def _probe(self) -> bool:
        """Is the broker reachable, with our topics? Recreates lost topics.

        Marks the producer for replacement when the broker lost its state. The next
        probe may come after the current backoff.
        """
        try:
            created = _create_missing(
                self._admin,
                self.bootstrap_servers,
                self.topics,
                self.partitions,
                self.replication,
                PROBE_TIMEOUT,
                counts=self.partition_counts,
            )
        except BrokerError as exc:
            self._schedule_next_probe(time.monotonic())
            self._mark_unreachable(str(exc))
            return False
        ids = _topic_ids(self._admin, self.topics, PROBE_TIMEOUT)
        changed = bool(ids and self._ids and ids != self._ids)
        if created or changed:
            log.warning(
                "Kafka at %s lost its state (topics %s); recreated them and re-sending the "
                "%d unacknowledged events with a new producer",
                self.bootstrap_servers,
                ", ".join(created) if created else "recreated",
                self._outstanding(),
            )
            self._replace = True
        if ids:
            self._ids = ids
        if self._unreachable_since is not None:
            log.warning(
                "Kafka at %s is reachable again after %.1f s",
                self.bootstrap_servers,
                time.monotonic() - self._unreachable_since,
            )
            self._unreachable_since = None
        self._last_ok_probe = time.monotonic()
        self._schedule_next_probe(self._last_ok_probe)
        return True

    def _mark_unreachable(self, reason: str) -> None:
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        waited = now - self._unreachable_since
        if not self.continuous and waited >= self.flush_timeout:
            self._broken = True
            raise BrokerError(
                f"{reason}; gave up after {waited:.0f} s with {self._outstanding()} events "
                "not delivered"
            )
        log.warning(
            "%s; %d events wait in memory, next attempt in %.1f s",
            reason.split("; is the broker")[0],
            self._outstanding(),
            max(0.0, self._next_probe - now),
        )

    def _retire(self) -> None:
        """Purge the producer and take back every message it has not delivered, in order."""
        if self._retired:
            return
        old = self._producer
        old.purge(in_queue=True, in_flight=True, blocking=False)
        waited = time.monotonic()
        while len(old) > 0:  # purged messages come back in delivery reports
            old.poll(0.1)
            if time.monotonic() - waited > 10:
                log.warning("still waiting for %d purged messages from the old producer", len(old))
                waited = time.monotonic()
        # Every message the producer held came back as failed; the rest of the queues
        # was acknowledged.
        taken = _taken_back(self._in_flight, self._failed, self._headers)
        for queues in self._in_flight.values():
            for queue in queues:
                queue.clear()
        self._failed = []
        taken_back = deque(taken)
        taken_back.extend(self._retry)
        self._retry = taken_back
        self._retired = True
        self._replace = True

    def _replace_producer(self) -> None:
        """Retire the producer (if not yet) and make a new one to re-send from."""
        self._retire()
        self._producer = self._new_producer()
        self._mark_time = time.monotonic()
        log.info(
            "new Kafka producer; re-sending %d events, then %d buffered ones",
            len(self._retry),
            len(self._backlog),
        )
