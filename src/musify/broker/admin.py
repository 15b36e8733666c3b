"""Kafka admin helpers: reachability checks, topic creation, topic metadata.

``check_reachable`` fails fast when no broker answers; ``ensure_topics`` creates the
topics that do not exist yet. The private helpers here (``_admin``, ``_refused``,
``_create_missing``, ``_partition_counts``, ``_topic_ids``) serve ``KafkaSink``, which
lives in ``musify.broker.kafka`` (the module that also re-exports ``check_reachable`` and
``ensure_topics``); its outage handling, which probes the broker with them, lives in
``musify.broker.recovery``. Plain Kafka protocol through confluent-kafka: the same
against Apache Kafka and the local Tansu broker.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from musify.errors import BrokerError, UsageError

#: Short-lived probes report failures through BrokerError; their librdkafka lines
#: ("connection refused", ...) would only be noise. A logger outside the hierarchy.
_quiet_log = logging.Logger("musify.broker.probe")
_quiet_log.addHandler(logging.NullHandler())

_START_HINT = "is the broker running? `musify broker start` starts a local one"


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


__all__ = ["check_reachable", "ensure_topics"]
