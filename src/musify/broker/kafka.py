"""Kafka helpers: reachability, topic creation, and the generator's Kafka sink.

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
import socket
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from musify.broker.partitioner import KeyRouter, partition_for
from musify.broker.resume import LastMessage, ResumeFilter, live_header, read_last_messages
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
    # The sink names each message's partition itself (``partition_for``); this is the
    # same function, for messages produced without one.
    "partitioner": "murmur2_random",
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

#: (sequence number, topic, partition, key, value, headers) of a message not yet
#: acknowledged; the sequence number is its place in the order first produced.
_Message = tuple[int, str, int, bytes, bytes, list[tuple[str, bytes]] | None]


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
    counts: Mapping[str, int] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created.

    ``counts``: partitions per topic, overriding ``partitions`` (a sink recreates lost
    topics as it found them, so that its key → partition map stays valid).
    """
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
    counts = counts or {}
    new = [
        NewTopic(t, num_partitions=counts.get(t, partitions), replication_factor=replication)
        for t in missing
    ]
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
                f"cannot create topic {topic} ({counts.get(topic, partitions)} partitions, "
                f"replication {replication}) at Kafka {bootstrap}: {_error_text(exc)}"
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


def _partition_counts(
    admin: AdminClient, bootstrap: str, topics: Sequence[str], timeout: float
) -> dict[str, int]:
    """Partitions of each topic, as the broker reports them (waiting a little for topics
    just created, whose metadata may lag on a real cluster)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            meta = admin.list_topics(timeout=timeout).topics
        except KafkaException as exc:
            raise BrokerError(
                f"cannot read topic metadata from Kafka at {bootstrap}: {_error_text(exc)}"
            ) from None
        counts: dict[str, int] = {}
        problems: list[str] = []
        for topic in topics:
            info = meta.get(topic)
            if info is None or info.error is not None or not info.partitions:
                why = info.error.str() if info is not None and info.error else "no partitions"
                problems.append(f"{topic} ({why})")
            else:
                counts[topic] = len(info.partitions)
        if not problems:
            return counts
        if time.monotonic() >= deadline:
            raise BrokerError(f"topics at Kafka {bootstrap} are not usable: {', '.join(problems)}")
        time.sleep(0.1)


def _topic_ids(admin: AdminClient, topics: Sequence[str], timeout: float) -> dict[str, str]:
    """Topic ids (they change when a topic is recreated); empty if the broker can't say."""
    try:
        futures = admin.describe_topics(TopicCollection(list(topics)), request_timeout=timeout)
        return {t: str(f.result(timeout=timeout + 5).topic_id) for t, f in futures.items()}
    except (KafkaException, FutureTimeout, ValueError, TypeError, AttributeError):
        return {}


class KafkaSink(Sink):
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
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
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
        if self._producer is not None:
            self._flush(final=False)

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

    def _forget_acknowledged(self) -> None:
        """Drop what the producer must have acknowledged from the partitions' queues."""
        held = len(self._producer) + len(self._failed)
        for queues in self._in_flight.values():
            for queue in queues:
                if len(queue) > held:
                    del queue[: len(queue) - held]

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
