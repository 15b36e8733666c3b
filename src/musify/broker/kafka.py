"""Kafka helpers: reachability, topic creation, and the generator's Kafka sink.

Everything here speaks the plain Kafka protocol through confluent-kafka and works the
same against Apache Kafka and the local Tansu broker; nothing relies on Tansu's quirks.

``KafkaSink`` never loses an event silently. Every message stays accounted for until
the broker acknowledges it: messages whose delivery fails are collected from their
delivery reports and re-sent, in their original order, by a new producer. A new
producer is also made after a fatal producer error, and when the broker turns out to
have lost its state (our topics are missing or have new topic ids, as after a restart
of a memory-only broker), because an idempotent producer cannot continue there.
Delivery is at-least-once: a message whose acknowledgement was lost may be stored twice.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from musify.errors import BrokerError, UsageError
from musify.events import TOPIC_NAMES
from musify.sim.sinks import Sink

log = logging.getLogger(__name__)
#: librdkafka's own log lines from our producers.
client_log = logging.getLogger("musify.broker.librdkafka")
#: Short-lived probes report failures through BrokerError; their librdkafka lines
#: ("connection refused", ...) would only be noise. A logger outside the hierarchy.
_quiet_log = logging.Logger("musify.broker.probe")
_quiet_log.addHandler(logging.NullHandler())

_START_HINT = "is the broker running? `musify broker start` starts a local one"

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
    "reconnect.backoff.max.ms": 2_000,
}

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

_Message = tuple[str, bytes | None, bytes]


def _admin(bootstrap: str, **extra: Any) -> AdminClient:
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "logger": _quiet_log,
        "reconnect.backoff.max.ms": 1_000,
        **extra,
    }
    try:
        return AdminClient(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        raise BrokerError(f"invalid Kafka bootstrap servers {bootstrap!r}: {exc}") from None


def _error_text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, KafkaError):
        return str(arg.str())
    return str(exc) or type(exc).__name__


def _refused(bootstrap: str, timeout: float) -> str | None:
    """Why no bootstrap server accepts a TCP connection, if each one says so at once.

    None when some server accepts, or the answer is unclear (a timeout): then only a
    Kafka request can tell. Lets a missing broker be reported in milliseconds.
    """
    reasons = []
    for server in bootstrap.split(","):
        hostport = server.strip().rpartition("://")[2]
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            return None
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        except ConnectionRefusedError:
            reasons.append(f"{hostport}: connection refused")
        except socket.gaierror:
            reasons.append(f"{hostport}: unknown host")
        except OSError:
            return None
        else:
            return None
    return "; ".join(reasons) or None


def check_reachable(bootstrap: str, timeout: float = 5.0) -> None:
    """Raise ``BrokerError`` unless a Kafka metadata request succeeds within ``timeout`` s."""
    refused = _refused(bootstrap, min(timeout, 1.0))
    if refused:
        raise BrokerError(
            f"cannot reach Kafka at {bootstrap} within {timeout:g} s ({refused}); {_START_HINT}"
        )
    errors: list[str] = []
    admin = _admin(bootstrap, error_cb=lambda err: errors.append(str(err.str())))
    try:
        admin.list_topics(timeout=max(timeout, 0.01))
    except KafkaException as exc:
        admin.poll(0)  # serve error callbacks: they say *why* (refused, unresolved, ...)
        reason = errors[-1] if errors else _error_text(exc)
        raise BrokerError(
            f"cannot reach Kafka at {bootstrap} within {timeout:g} s ({reason}); {_START_HINT}"
        ) from None


def _create_missing(
    admin: AdminClient,
    bootstrap: str,
    topics: Iterable[str],
    partitions: int,
    replication: int,
    timeout: float,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    if partitions < 1:
        raise UsageError(f"topic partitions must be at least 1, not {partitions}")
    if replication < 1:
        raise UsageError(f"topic replication must be at least 1, not {replication}")
    refused = _refused(bootstrap, min(timeout, 1.0))
    if refused:
        raise BrokerError(
            f"cannot reach Kafka at {bootstrap} within {timeout:g} s ({refused}); {_START_HINT}"
        )
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise BrokerError(
            f"cannot reach Kafka at {bootstrap} within {timeout:g} s ({_error_text(exc)}); "
            f"{_START_HINT}"
        ) from None
    missing = [t for t in dict.fromkeys(topics) if t not in existing]
    if not missing:
        return []
    new = [NewTopic(t, num_partitions=partitions, replication_factor=replication) for t in missing]
    futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
    created = []
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout + 5)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise BrokerError(
                f"cannot create topic {topic} ({partitions} partitions, replication "
                f"{replication}) at Kafka {bootstrap}: {_error_text(exc)}"
            ) from None
        except FutureTimeout:
            raise BrokerError(
                f"creating topic {topic} at Kafka {bootstrap} did not finish within {timeout:g} s"
            ) from None
        created.append(topic)
    return created


def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int,
    replication: int,
    timeout: float = 10,
) -> None:
    """Create whichever of ``topics`` do not exist yet; existing topics are left alone."""
    _create_missing(_admin(bootstrap), bootstrap, topics, partitions, replication, timeout)


def _topic_ids(admin: AdminClient, topics: Sequence[str], timeout: float) -> dict[str, str]:
    """Topic ids (they change when a topic is recreated); empty if the broker can't say."""
    try:
        futures = admin.describe_topics(TopicCollection(list(topics)), request_timeout=timeout)
        return {t: str(f.result(timeout=timeout + 5).topic_id) for t, f in futures.items()}
    except (KafkaException, FutureTimeout, ValueError, TypeError, AttributeError):
        return {}


class KafkaSink(Sink):
    """Produces each event line to its topic, keyed by user id; loses nothing silently.

    ``continuous``: while the broker is unreachable, events wait in a bounded buffer
    (``max_buffered`` messages, then ``write`` blocks) and the broker is retried with
    exponential backoff, forever. Otherwise an unreachable broker, or messages still
    undelivered after ``flush_timeout`` seconds, raise ``BrokerError``.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        partitions: int = 3,
        replication: int = 1,
        continuous: bool = False,
        producer_config: dict[str, Any] | None = None,
        topics: Sequence[str] = TOPIC_NAMES,
        flush_timeout: float = 120.0,
        max_buffered: int = 200_000,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.partitions = partitions
        self.replication = replication
        self.continuous = continuous
        self.topics = tuple(topics)
        self.flush_timeout = flush_timeout
        self.max_buffered = max_buffered
        self.target = f"kafka {bootstrap_servers}"
        #: Messages the broker acknowledged.
        self.delivered = 0
        #: Failed delivery attempts (each such message is re-sent).
        self.failed_attempts = 0
        #: Producers made so far: more than one means the sink recovered.
        self.producers_created = 0
        self._config = {
            **PRODUCER_DEFAULTS,
            **(producer_config or {}),
            "bootstrap.servers": bootstrap_servers,
        }
        self._producer: Any = None
        self._admin: Any = None
        self._ids: dict[str, str] = {}
        # Un-acknowledged messages outside the producer, in the order to send them:
        # failures reported by the current producer, then older failures not yet
        # re-sent, then events written while the sink was recovering.
        self._failed: deque[_Message] = deque()
        self._retry: deque[_Message] = deque()
        self._backlog: deque[_Message] = deque()
        self._rejected: list[str] = []
        self._in_producer = 0  # messages handed to the producer, not yet reported on
        self._replace = False
        self._broken = False
        self._unreachable_since: float | None = None
        self._next_probe = 0.0
        self._backoff = BACKOFF_MIN
        self._last_ok_probe = -1e9
        self._mark_count = 0
        self._mark_time = time.monotonic()
        self._blocked_warned = False

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        if self._producer is not None:
            return
        check_reachable(self.bootstrap_servers, timeout=5.0)
        self._admin = _admin(self.bootstrap_servers)
        _create_missing(
            self._admin,
            self.bootstrap_servers,
            self.topics,
            self.partitions,
            self.replication,
            timeout=10.0,
        )
        self._ids = _topic_ids(self._admin, self.topics, PROBE_TIMEOUT)
        self._producer = self._new_producer()

    def write(self, topic: str, keys: Sequence[int], lines: Sequence[bytes]) -> None:
        if not lines:
            return
        if self._producer is None:
            self.open()
        self._service()
        done = 0 if self._degraded() else self._produce_batch(topic, keys, lines)
        if done < len(lines):
            self._buffer(topic, keys, lines, done)

    def flush(self) -> None:
        if self._producer is not None:
            self._flush(final=False)

    def close(self) -> None:
        if self._producer is None:
            return
        try:
            if not self._broken:
                self._flush(final=True)
        finally:
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.poll(0)
            self._producer = None
            self._admin = None

    # -- producing -----------------------------------------------------------------------

    def _new_producer(self) -> Any:
        conf = dict(self._config)
        conf["on_delivery"] = self._on_delivery
        conf["error_cb"] = self._on_error
        conf.setdefault("logger", client_log)
        try:
            producer = Producer(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            raise BrokerError(f"invalid Kafka producer configuration: {exc}") from None
        self.producers_created += 1
        return producer

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        self._in_producer -= 1
        if err is None:
            self.delivered += 1
            return
        self.failed_attempts += 1
        code = err.code()
        if code in _PERMANENT_ERRORS:
            self._rejected.append(f"{msg.topic()}: {err.str()}")
            return
        self._failed.append((msg.topic(), msg.key(), msg.value()))
        if code not in _PURGED:
            if not self._replace:
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

    def _produce_batch(self, topic: str, keys: Sequence[int], lines: Sequence[bytes]) -> int:
        """Produce directly while all is well; returns how many lines were produced."""
        produce = self._producer.produce
        poll = self._producer.poll
        for i, (key, line) in enumerate(zip(keys, lines, strict=True)):
            k = str(key).encode()
            while True:
                try:
                    produce(topic, line, k)
                    self._in_producer += 1
                    break
                except BufferError:  # the local queue is full: wait for deliveries
                    if not self._wait_for_room():
                        return i
                except KafkaException as exc:
                    self._produce_failed(exc)
                    return i
            if i & 1023 == 1023:
                poll(0)
                if self._troubled():  # keep the order: stop until the failures are re-sent
                    return i + 1
        return len(lines)

    def _buffer(self, topic: str, keys: Sequence[int], lines: Sequence[bytes], start: int) -> None:
        """Keep events while the sink recovers; block while the buffer is full."""
        backlog = self._backlog
        for key, line in zip(keys[start:], lines[start:], strict=True):
            backlog.append((topic, str(key).encode(), line))
        if len(backlog) >= self.max_buffered and not self._blocked_warned:
            log.warning(
                "%d events are waiting for Kafka at %s; generation pauses until they are delivered",
                len(backlog),
                self.bootstrap_servers,
            )
            self._blocked_warned = True
        while len(self._backlog) >= self.max_buffered:
            self._producer.poll(0.1)
            self._service()
        self._blocked_warned = False

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
                topic, key, value = queue[0]
                try:
                    producer.produce(topic, value, key)
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
                self._in_producer += 1
                sent += 1
                if sent & 1023 == 0:
                    producer.poll(0)
                    if self._troubled():
                        return

    def _outstanding(self) -> int:
        return self._in_producer + len(self._failed) + len(self._retry) + len(self._backlog)

    def _troubled(self) -> bool:
        """The producer must be replaced, or the broker is unreachable."""
        return bool(self._replace or self._failed or self._unreachable_since is not None)

    def _degraded(self) -> bool:
        """Troubled, or messages wait outside the producer: new events must queue up."""
        return bool(self._troubled() or self._retry or self._backlog)

    # -- watching and recovering ---------------------------------------------------------

    def _service(self) -> None:
        """Serve callbacks, notice trouble, and recover if needed (never sleeps long)."""
        self._producer.poll(0)
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
        if self.delivered != self._mark_count:
            self._backoff = BACKOFF_MIN
            self._mark_count = self.delivered
            self._mark_time = now
        elif self._in_producer == 0:
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
            now = time.monotonic()
            if now - self._last_ok_probe > 0.5:
                if now < self._next_probe:
                    return
                if not self._probe():
                    return
            if self._replace or self._failed:
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

    def _replace_producer(self) -> None:
        """Drop the producer, collect every message it still held, and make a new one."""
        old = self._producer
        old.purge(in_queue=True, in_flight=True, blocking=False)
        waited = time.monotonic()
        while self._in_producer > 0:  # purged messages come back in delivery reports
            old.poll(0.1)
            if time.monotonic() - waited > 10:
                log.warning(
                    "still waiting for %d purged messages from the old producer",
                    self._in_producer,
                )
                waited = time.monotonic()
        self._failed.extend(self._retry)
        self._retry, self._failed = self._failed, deque()
        self._replace = False
        self._producer = self._new_producer()
        self._mark_time = time.monotonic()
        log.info(
            "new Kafka producer; re-sending %d events, then %d buffered ones",
            len(self._retry),
            len(self._backlog),
        )

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
            self._producer.flush(0.1)


__all__ = ["PRODUCER_DEFAULTS", "KafkaSink", "check_reachable", "ensure_topics"]
